//! Processes the program leaves behind (issue 13): a daemon it started, a background job of a
//! script that ended, the children of a parent that exited at once. Natively they live on when
//! the program ends; so they do here. When the program ends and another process of the
//! namespace lives (`others_live`; ckpt's own snapshot writers do not count), init stops
//! dying with the outer process (`detach`: its parent-death signal and the outer process's
//! lifeline are disarmed) and reports `Outlived`; the outer process exits at once with the
//! program's status, and init stays, reaping and coordinating, until no process is left.
//!
//! Not for a task of a Slurm step (`allowed`): slurmstepd ends the step when the task's process
//! ends and kills what is left, as natively; the namespace then ends with the program, as
//! before, and the step's code (runtime step.rs, stepend.rs) sees no task outliving its program.

use std::os::fd::{OwnedFd, RawFd};

/// PF_EXITING (include/linux/sched.h), in the flags field (9) of /proc/PID/stat.
const PF_EXITING: u64 = 0x4;

/// Whether the namespace may outlive its outer process: not for a task srun started
/// (SLURM_STEP_NUM_TASKS, which srun sets for its tasks), nor for rank 0 of a joined step
/// (CKPT_JOIN_SRUN=1 in a Slurm job: its srun's tasks are the step's).
pub(crate) fn allowed() -> bool {
    let var = |k: &str| std::env::var_os(k).is_some();
    !var("SLURM_STEP_NUM_TASKS") && !(std::env::var("CKPT_JOIN_SRUN").as_deref() == Ok("1") && var("SLURM_JOB_ID"))
}

/// Whether a process of the namespace other than init and `gone` (the program, just reaped)
/// lives on: not a zombie, not exiting, not killed (SIGKILL pending), not one of ckpt's
/// snapshot writers (`WRITER_NAME`: init waits for those anyway).
pub(crate) fn others_live(gone: i32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else { return false };
    rd.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).any(|pid| pid > 1 && pid != gone && lives_on(pid))
}

fn lives_on(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let (Some(open), Some((_, rest))) = (stat.find('('), stat.rsplit_once(") ")) else { return false };
    let comm = &stat[open + 1..stat.len() - rest.len() - 2];
    let f: Vec<&str> = rest.split(' ').collect();
    // Field N of proc(5) is f[N - 3].
    let flags: u64 = f.get(6).and_then(|v| v.parse().ok()).unwrap_or(0);
    if matches!(f.first(), Some(&("Z" | "X" | "x"))) || flags & PF_EXITING != 0 || comm.as_bytes() == crate::WRITER_NAME.to_bytes() {
        return false;
    }
    !sigkill_pending(pid)
}

/// Whether process `pid` has a SIGKILL pending (killed, not yet exiting).
fn sigkill_pending(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let bit = 1u64 << (libc::SIGKILL - 1);
    status.lines().filter_map(|l| l.strip_prefix("ShdPnd:").or_else(|| l.strip_prefix("SigPnd:"))).any(|v| u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & bit != 0))
}

/// In init, before it reports `Outlived`: stop dying with the outer process and let go of its
/// stdio (`let_stdio_go`). Its parent-death signal is cleared and the lifeline (`lifeline`: init's end of the start pipe, whose last
/// close by the outer process would SIGKILL the process group: spawn.rs `kill_with_us`) is
/// closed. False when the outer process (`outer`: a pidfd of it) is gone already: it was killed
/// before this point, and the namespace must end with it, as it would have.
pub(crate) fn detach(lifeline: Option<OwnedFd>, outer: Option<RawFd>) -> bool {
    // SAFETY: prctl on our own process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0) };
    drop(lifeline);
    let_stdio_go();
    let Some(fd) = outer else { return true };
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; a pidfd is readable once its process has exited.
    let exited = unsafe { libc::poll(&mut p, 1, 0) } > 0 && p.revents & libc::POLLIN != 0;
    !exited
}

/// Init holds the outer process's stdin, stdout and stderr: whoever reads a pipe of them (a
/// shell's `$(ckpt-run ...)`, a pipeline, a test) would wait for init's end, where natively the
/// program's end is enough when what it left behind holds none of them. Its stdin and stdout go
/// to /dev/null; its stderr too when it is a pipe or a socket (the coordinator's lines then
/// go nowhere; on a terminal or in a file they are still written there). What they were is
/// noted first: a process's fd that is one of them is still the stdio the tree was given, not
/// its own (`samefds::note_given_stdio`).
fn let_stdio_go() {
    crate::samefds::note_given_stdio();
    // SAFETY: opening /dev/null and dup2 over our own fds 0 to 2; fstat with a valid buffer.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            return;
        }
        let mut st: libc::stat = std::mem::zeroed();
        let kind = if libc::fstat(2, &mut st) == 0 { st.st_mode & libc::S_IFMT } else { 0 };
        let last = if kind == libc::S_IFIFO || kind == libc::S_IFSOCK { 2 } else { 1 };
        for fd in 0..=last {
            libc::dup2(null, fd);
        }
        libc::close(null);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_lives_on() {
        let me = std::process::id() as i32;
        assert!(super::lives_on(me));
        assert!(!super::lives_on(i32::MAX));
    }
}
