//! Processes of a tree that the restart runs again instead of restoring (the manifest's
//! `reexec` lines; `ckpt_image::rerun`): Slurm's srun, whose job step the new allocation must
//! start again (docs/multinode.md, part 3). `tree.rs` makes such a process with its pid, parent,
//! group and session, and none of its descendants; here it places the fds it held other than
//! sockets (its pipes to the launcher that reads it: the tree's shared ones, as every process
//! takes them), waits with the tree at its barrier and execs its record's command, with the
//! Slurm job's variables of the new allocation. Its sockets were its connections to Slurm's
//! daemons of the old allocation: never restored.
//!
//! It runs again under the runtime, as it ran before (`under_runtime`): its record keeps the
//! launch settings it was exec'd with, made this restart's (its pid, the namespace's outer
//! process, a member of the tree), so it joins the restarted tree's coordinator and a later
//! checkpoint of the restarted joined step records it again instead of refusing a process
//! without the runtime. A record without them (written before) runs it without the runtime.
//!
//! It execs without waiting at the tree's barrier: the tasks of the step it starts are what the
//! tree's root waits for in the step's restart rendezvous, which the root therefore makes in its
//! own restore, after the tree is made, rather than before (`root_meets_later`); so only the root
//! may hold connections to the step's other tasks (mpirun's to its daemons, mpiexec's to its
//! proxies), else the restart is refused. Its pipes keep their unread bytes (put back before it
//! was made) ahead of what it writes.
//!
//! A restart in an allocation with another node count than the one the step ran on is refused
//! before anything is made: the step's tasks' images are one per task of the old layout.

use anyhow::{anyhow, bail, Context, Result};
use ckpt_image::rerun::Rerun;
use ckpt_image::tree::Manifest;
use ckpt_image::FdKind;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

/// The records of the set's processes run again, by pid.
static RECORDS: OnceLock<Vec<(i32, Rerun)>> = OnceLock::new();

/// The fds of a process run again that it gets back (its sockets are Slurm's, not the tree's).
pub fn keeps(f: &ckpt_image::FdState) -> bool {
    !matches!(f.kind, FdKind::Socket(_) | FdKind::TreeSocket { .. })
}

/// Read the record of every process of `m` run again, and refuse a restart the step could not
/// be run again in (another node count). Called once, before the tree is made.
pub fn check(set: &Path, m: &Manifest, euid: u32) -> Result<()> {
    let mut records = Vec::new();
    let now = std::env::var("SLURM_JOB_NUM_NODES").ok();
    for &pid in &m.reexec {
        let r = Rerun::read(set, pid, euid).map_err(|e| anyhow!(e))?;
        if let Some(was) = r.var("SLURM_JOB_NUM_NODES") {
            let was = String::from_utf8_lossy(was).into_owned();
            match now.as_deref() {
                Some(n) if n == was => {}
                Some(n) => bail!("process {pid} ({}) started a job step on the {was} nodes of its allocation, and this allocation has {n}: the step's tasks restart one per node of the old layout; restart in an allocation of {was} nodes (sbatch -N {was})", name(&r)),
                None => bail!("process {pid} ({}) started a job step on the {was} nodes of a Slurm allocation, and this restart is not inside one: restart in a job of {was} nodes (sbatch -N {was})", name(&r)),
            }
        }
        records.push((pid, r));
    }
    RECORDS.set(records).map_err(|_| anyhow!("internal: the records were read twice"))
}

fn name(r: &Rerun) -> String {
    String::from_utf8_lossy(&r.exe).into_owned()
}

/// This process's record, if the restart runs it again.
pub fn mine() -> Option<&'static Rerun> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    RECORDS.get()?.iter().find(|(pid, _)| *pid == me).map(|(_, r)| r)
}

fn cstrings(v: &[Vec<u8>]) -> Result<Vec<CString>> {
    v.iter().map(|s| CString::new(s.clone()).map_err(|_| anyhow!("a NUL inside a word of the command"))).collect()
}

/// Whether the root of the tree `m` (`indexes`) meets the other tasks of its step in its own
/// restore rather than before the tree is made: when the tree runs a process again (srun starts
/// those tasks). Refused when another process of the tree holds connections to them.
pub fn root_meets_later(m: &Manifest, indexes: &[(i32, ckpt_image::Index)]) -> Result<bool> {
    if m.reexec.is_empty() {
        return Ok(false);
    }
    if crate::step::others_hold(indexes, m.root) {
        bail!("the tree runs srun again (process {:?}) and processes other than its root hold connections to the step's tasks: their restart would wait for tasks that srun starts only later; not supported yet", m.reexec);
    }
    Ok(true)
}

/// The record's environment `env` with its launch settings (`ckpt_image::Launch`) made this
/// process's in the restarted tree: its pid, the namespace's outer process, the image directory
/// as the restart checked it, a member (no timer of its own). Settings that do not read are
/// dropped (it runs without the runtime, as before).
fn under_runtime(mut env: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let var = format!("{}=", ckpt_image::LAUNCH_VAR);
    let Some(at) = env.iter().position(|e| e.starts_with(var.as_bytes())) else { return env };
    let Some(l) = ckpt_image::Launch::decode(&env[at][var.len()..]) else {
        env.remove(at);
        return env;
    };
    let (dir_dev, dir_ino) = crate::plan::trusted_dir();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let outer_pid = i32::try_from(crate::plan::outer_pid()).unwrap_or(0);
    let l = ckpt_image::Launch { pid, spawner: 0, outer_pid, dir_dev, dir_ino, tree_child: true, interval_ms: 0, ..l };
    env[at] = [var.as_bytes(), l.encode().as_bytes()].concat();
    env
}

/// The command `argv` with the image directory its ckpt-run is given (`--dir D` or `--dir=D`,
/// between the word ckpt-run and `--`) made `dir` when D is no longer that directory: the user
/// moved or copied the image directory and restarts from there, where the restarted tree's root
/// now waits for the step's tasks and where their images are (a task run with the old D would
/// find no image to resume and start over).
fn in_dir(argv: &[Vec<u8>], dir: &Path) -> Vec<Vec<u8>> {
    let mut out = argv.to_vec();
    let Some(at) = argv.iter().position(|a| Path::new(std::ffi::OsStr::from_bytes(a)).file_name().is_some_and(|f| f == "ckpt-run")) else { return out };
    let end = argv[at..].iter().position(|a| a == b"--").map_or(argv.len(), |e| at + e);
    let Ok(now) = dir.canonicalize() else { return out };
    let same = |d: &[u8]| std::fs::metadata(std::ffi::OsStr::from_bytes(d)).ok().zip(std::fs::metadata(&now).ok()).is_some_and(|(a, b)| {
        use std::os::unix::fs::MetadataExt;
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    });
    let new = now.as_os_str().as_bytes().to_vec();
    for i in at + 1..end {
        if argv[i] == b"--dir" && i + 1 < end {
            if !same(&argv[i + 1]) {
                out[i + 1] = new;
            }
            break;
        }
        if let Some(d) = argv[i].strip_prefix(b"--dir=") {
            if !same(d) {
                out[i] = [b"--dir=".as_slice(), &new].concat();
            }
            break;
        }
    }
    out
}

/// Place this process's fds from its image at `image` and exec
/// the record's command (returns only on failure, before the exec).
pub fn run(image: &Path, r: &Rerun, no_truncate: bool, ignore_missing: bool) -> Result<std::convert::Infallible> {
    let chain = ckpt_image::Chain::open_owned(image, ckpt_image::trust::euid()).with_context(|| format!("{}", image.display()))?;
    let mut index = chain.index().clone();
    ckpt_kinds::deleted::resolve_saved(&mut index.fds);
    index.fds.retain(keeps);
    let same_boot = !index.meta.origin.boot_id.is_empty() && index.meta.origin.boot_id == ckpt_image::boot_id();
    let opts = &crate::fds::Options { no_truncate, ignore_missing, same_boot, exact_ids: true, other_port: false, rebind: Vec::new() };
    let now: Vec<Vec<u8>> = std::env::vars_os().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
    let dir = image.parent().and_then(Path::parent).ok_or_else(|| anyhow!("{}: not in a set's directory", image.display()))?;
    let argv = in_dir(&r.argv, dir);
    let (exe, argv, env) = (CString::new(r.exe.clone())?, cstrings(&argv)?, cstrings(&under_runtime(r.env_with_job_of(&now)))?);
    let cwd = CString::new(r.cwd.clone())?;
    crate::tree::before_fds()?;
    let job = crate::tree::sockets(&index.fds)?;
    crate::fds::restore(&index.fds, opts, chain.newest(), job, &[])?;
    crate::tree::after_fds();
    // Restoring the fds closed every fd of ours, the image's too.
    std::mem::forget(chain);
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
        bail!("process {} cannot enter its working directory {}: {}", std::process::id(), cwd.to_string_lossy(), std::io::Error::last_os_error());
    }
    crate::fds::close_stdio_the_program_closed(&index.fds);
    let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    let (argv_p, env_p) = (ptrs(&argv), ptrs(&env));
    // SAFETY: NUL-terminated arrays of valid C strings, alive across the call.
    unsafe { libc::execve(exe.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    bail!("process {} cannot run {} again: {}", std::process::id(), exe.to_string_lossy(), std::io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Vec<u8>> {
        s.split_whitespace().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn the_image_directory_given_to_ckpt_run_follows_a_moved_directory() {
        let base = std::env::temp_dir().join(format!("ckpt-rerun-test-{}", std::process::id()));
        let (old, new) = (base.join("old"), base.join("new"));
        std::fs::create_dir_all(&new).unwrap();
        let n = new.canonicalize().unwrap().display().to_string();
        let o = old.display().to_string();
        let cmd = |d: &str| words(&format!("srun -n 2 /b/ckpt-run --resume --dir {d} --name m -- orted --dir {d}"));
        // The old directory is gone: the word after --dir names the new one, the program's own
        // arguments after -- are left alone.
        let got = in_dir(&cmd(&o), &new);
        assert_eq!(got, [&cmd(&n)[..7], &cmd(&o)[7..]].concat());
        // The same directory by another name: left as it was.
        std::fs::create_dir_all(&old).unwrap();
        std::os::unix::fs::symlink(&new, base.join("link")).unwrap();
        let l = base.join("link").display().to_string();
        assert_eq!(in_dir(&cmd(&l), &new), cmd(&l));
        // Another directory that exists: the new one.
        assert_eq!(in_dir(&cmd(&o), &new)[6], n.as_bytes());
        let eq = words(&format!("srun /b/ckpt-run --dir={o} -- p"));
        assert_eq!(in_dir(&eq, &new)[2], format!("--dir={n}").into_bytes());
        // No ckpt-run in the command: unchanged.
        assert_eq!(in_dir(&words("srun -n 2 orted --dir x"), &new), words("srun -n 2 orted --dir x"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
