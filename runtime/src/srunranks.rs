//! Which ranks of its tree's joined step a rewritten srun takes (srunjoin.rs): two sruns of one
//! tree at once (`srun A & srun B`, two launchers side by side) each get ranks of their own,
//! the lowest that no live srun of the tree holds (`ckpt_step::join::free_offset`), so that
//! their tasks' images (`NAME.RANK`) and links to rank 0 are apart.
//!
//! The claims are kept in `DIR/NAME.srun-ranks` (0600, one line per exec: pid, start time,
//! ranks; `ckpt_step::join::Claim`), read and rewritten under an exclusive lock on it: the
//! process that execs srun writes its claim before its exec, so a srun exec'd at the same
//! moment sees it. A claim counts while its process lives (the same pid and start time: an
//! exec keeps both). A srun that a restart ran again (its record's `CKPT_STEP_JOIN`, not
//! rewritten again) is not in the file under its new start time: the sruns of the job that
//! run with a joined identity of this tree (their environment, in /proc) count too.

use crate::sys;
use ckpt_step::join::{self, Claim};

/// A process's start time (field 22 of /proc/PID/stat), None when it is gone.
fn start_time(pid: &[u8]) -> Option<u64> {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/", pid, b"/stat"])).ok()?;
    crate::kstate::stat_number(&stat, 22)
}

/// The ranks (offset, size) taken by the live processes of this job and PID namespace that run
/// with a joined identity of step `tag` (its sruns, those a restart ran again too; their tasks,
/// when they run here). Rank 0 counts on them: its step must hold every live srun's tasks.
pub fn running(tag: &str, job: &[u8]) -> Vec<(u32, u32)> {
    running_procs(tag, job).into_iter().map(|p| (p.offset, p.size)).collect()
}

/// A live process that holds ranks of the joined step: its pid, and the ranks [offset, size).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub offset: u32,
    pub size: u32,
}

/// The processes of `running`, each with its pid.
pub fn running_procs(tag: &str, job: &[u8]) -> Vec<Holder> {
    let Ok(pids) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return Vec::new() };
    let me = sys::decimal(sys::getpid());
    let job_var = [b"SLURM_JOB_ID=", job].concat();
    // Only our PID namespace's (the tree's, when it has one: another job's processes on this
    // machine may have the same job id and name, in another cluster).
    let ns = |p: &[u8]| sys::readlink(&sys::cpath(&[b"/proc/", p, b"/ns/pid"])).ok();
    let ours = ns(&me);
    pids.iter()
        .filter(|p| p.iter().all(u8::is_ascii_digit) && **p != me && ours.is_some() && ns(p) == ours)
        .filter_map(|p| {
            let env = sys::read_file(&sys::cpath(&[b"/proc/", p, b"/environ"])).ok()?;
            let j = join::in_environ(&env)?;
            let pid = std::str::from_utf8(p).ok()?.parse().ok()?;
            (j.tag == tag && env.split(|&b| b == 0).any(|e| e == job_var.as_slice())).then_some(Holder { pid, offset: j.offset, size: j.size })
        })
        .collect()
}

fn registry(dir: &[u8], tag: &str) -> std::ffi::CString {
    sys::cpath(&[dir, b"/", tag.as_bytes(), b".srun-ranks"])
}

/// Open the registry and lock it; run `f` on its fd and the claims of live processes in it.
fn locked<T>(dir: &[u8], tag: &str, f: impl FnOnce(i32, Vec<Claim>) -> Result<T, String>) -> Result<T, String> {
    let path = registry(dir, tag);
    let fd = sys::open(&path, libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW, 0o600).map_err(|e| format!("{}: errno {e}", String::from_utf8_lossy(path.to_bytes())))?;
    let r = (|| {
        sys::syscall!(libc::SYS_flock, fd, libc::LOCK_EX).map_err(|e| format!("locking the srun registry: errno {e}"))?;
        let st = sys::fstat(fd).map_err(|e| format!("the srun registry: errno {e}"))?;
        if st.st_uid != sys::geteuid() || st.st_mode & 0o077 != 0 {
            return Err("the srun registry is not ours alone (owner or mode)".to_string());
        }
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match sys::pread(fd, &mut buf, text.len() as u64) {
                Ok(0) => break,
                Ok(k) => text.extend_from_slice(&buf[..k]),
                Err(e) => return Err(format!("reading the srun registry: errno {e}")),
            }
        }
        let live = Claim::decode_all(&String::from_utf8_lossy(&text)).into_iter().filter(|c| start_time(&sys::decimal(c.pid)) == Some(c.start)).collect();
        f(fd, live)
    })();
    sys::close(fd);
    r
}

fn rewrite(fd: i32, claims: &[Claim]) -> Result<(), String> {
    let out: String = claims.iter().map(Claim::encode).collect();
    sys::syscall!(libc::SYS_ftruncate, fd, 0).map_err(|e| format!("rewriting the srun registry: errno {e}"))?;
    sys::syscall!(libc::SYS_pwrite64, fd, out.as_ptr(), out.len(), 0).map_err(|e| format!("rewriting the srun registry: errno {e}"))?;
    Ok(())
}

/// The exec of the srun `take` was called for failed: its ranks are free again.
pub fn release(dir: &[u8], tag: &str) {
    let me = sys::getpid();
    let _ = locked(dir, tag, |fd, mut live| {
        live.retain(|c| c.pid != me);
        rewrite(fd, &live)
    });
}

/// Take `n` ranks for the srun this process is about to exec, in `dir` for step `tag` of job
/// `job`: (offset, size) for its `join::Join`. Err: why not (the rewrite is then not made).
pub fn take(dir: &[u8], tag: &str, job: &[u8], n: u32) -> Result<(u32, u32), String> {
    locked(dir, tag, |fd, mut live| {
        let mut taken: Vec<(u32, u32)> = live.iter().map(|c| (c.offset, c.size)).collect();
        taken.extend(running(tag, job));
        let offset = join::free_offset(&taken, n).ok_or("no ranks left for the srun")?;
        let size = offset.checked_add(n).ok_or("no ranks left for the srun")?;
        let pid = sys::getpid();
        live.push(Claim { pid, start: start_time(&sys::decimal(pid)).ok_or("no start time of our own")?, offset, size });
        rewrite(fd, &live)?;
        Ok((offset, size))
    })
}
