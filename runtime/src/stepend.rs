//! A task of a step whose program exits normally while the other tasks run on (issue 14).
//!
//! The task: its runtime registers an `on_exit` handler before the program's main (glibc runs
//! it for exit(3) and a return from main, with the status), and its `_exit` and `_Exit` hooks
//! (hooks.rs: a shell such as dash ends so) call `exiting` too; not a signal, a raw exit_group
//! or the runtime's own exit after a checkpoint-and-exit (a raw exit_group). Once, in the
//! task's own process only (a vfork child shares its memory and may `_exit`), the status goes
//! to rank 0 on a connection of its own (`step::report_end`), which waits for rank 0's word, so
//! the status is recorded before the task's link closes.
//!
//! Rank 0: the statuses it was told (`record`), kept across its checkpoints and restarts (they
//! are in its image). A rank with a status and no link is ended: rank 0 does not wait for it,
//! sends it no `Begin`, and the manifest records it as `rank R ended STATUS`; a restart of the
//! step does not run it again (its `ckpt-run --resume` exits at once with the status). A task
//! that links up as that rank again (a new srun of a joined step took it) clears it (`forget`).
//! In a joined step a status holds only while no process holds the rank or one of those that
//! held it when it was told still does (`prune`: a new srun that took the rank of one that
//! ended has tasks still to link up; the srun a restart runs again keeps its pid).
//! A task that ends otherwise (killed, crashed) says nothing: its rank is missing, and rank 0
//! abandons a checkpoint for it as before.
//!
//! Rank 0 ending first (its program exits normally while other tasks run): it is the
//! coordinator, and the step's sets name its image, so the step cannot be checkpointed as one
//! without it. Its exit handler (`step::coordinator_ends`) lets a checkpoint being coordinated
//! end, begins none after (`ending`), and marks its published address ended with its status;
//! from then on every checkpoint asked of another task is refused there in one line
//! (`refusal`), nothing is written, and the last complete set stays (it was taken with task 0
//! alive: a restart runs task 0 again from it). A task that ends after task 0 tells no one.

use crate::forklock::Mutex;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

/// A rank that said it ended: its status, and for a joined step the processes (pids) that
/// held its rank then.
struct Exit {
    rank: u32,
    status: u8,
    holders: Vec<u32>,
}

/// Rank 0: the ranks that said they ended.
static EXITS: Mutex<Vec<Exit>> = Mutex::new(Vec::new());

extern "C" {
    fn on_exit(f: extern "C" fn(i32, *mut c_void), arg: *mut c_void) -> i32;
}

/// The task's process (its pid as the kernel gives it: a vfork child has another).
static OWN_PID: AtomicI64 = AtomicI64::new(-1);
/// The end was reported (or tried): once.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// A task of a step: report the program's normal end (before main, after the step's identity
/// is known; the runtime's exit handlers registered after it run before it).
pub fn register() {
    if crate::step::is_task() {
        note_pid();
        // SAFETY: registering a plain function with glibc, with no argument.
        unsafe { on_exit(program_exits, std::ptr::null_mut()) };
    }
}

/// The task's process is this one (at start, and after a restart, which may give it another
/// pid outside a namespace).
pub fn note_pid() {
    OWN_PID.store(crate::sys::syscall!(libc::SYS_getpid).unwrap_or(-1), Ordering::Relaxed);
}

extern "C" fn program_exits(status: i32, _: *mut c_void) {
    exiting(status);
}

/// The program ends with `status` (exit(3), a return from main, _exit, _Exit): a task of a
/// step tells rank 0, once; rank 0 tells the others it has ended.
pub fn exiting(status: i32) {
    let own = OWN_PID.load(Ordering::Relaxed);
    if own < 0 || crate::sys::syscall!(libc::SYS_getpid).ok() != Some(own) || REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    if crate::step::is_member() {
        crate::step::report_end((status & 0xff) as u8);
    } else {
        crate::step::coordinator_ends((status & 0xff) as u8);
    }
}

/// This task's program is exiting with this status (+1; 0: it is not). Rank 0 begins no
/// checkpoint of the step from then on; a member links up no more (step.rs `link_up`).
static ENDING: AtomicU32 = AtomicU32::new(0);
/// Another task: task 0 has ended with this status (+1; 0: not that it knows).
static TASK_0_ENDED: AtomicU32 = AtomicU32::new(0);

/// This task's program exits with `status` (rank 0: no checkpoint of the step begins from now
/// on; a member: it links up no more).
pub fn note_ending(status: u8) {
    ENDING.store(status as u32 + 1, Ordering::SeqCst);
}

/// The status this task's program is exiting with, if it is.
pub fn ending() -> Option<u8> {
    ENDING.load(Ordering::SeqCst).checked_sub(1).map(|st| st as u8)
}

/// Another task: task 0's published address says it ended with `status`.
pub fn note_task_0_ended(status: u8) {
    TASK_0_ENDED.store(status as u32 + 1, Ordering::Relaxed);
}

/// Another task: the status task 0 ended with, if it is known to have.
pub fn task_0_ended() -> Option<u8> {
    TASK_0_ENDED.load(Ordering::Relaxed).checked_sub(1).map(|st| st as u8)
}

/// A restarted task: task 0 runs again (the set was taken with it alive). (A member taken
/// while its program was exiting goes on exiting: it still links up no more.)
pub fn after_restart() {
    if !crate::step::is_member() {
        ENDING.store(0, Ordering::SeqCst);
    }
    TASK_0_ENDED.store(0, Ordering::Relaxed);
}

/// The one line a checkpoint asked of a task after task 0 ended with `status` is refused with
/// (`last`: the step's last complete checkpoint, 0: none).
pub fn refusal(status: u8, last: u64) -> String {
    let kept = match last {
        0 => "no checkpoint of the step was completed before".to_string(),
        n => format!("its last complete checkpoint ({n}) stays"),
    };
    format!("checkpoint of the step refused, the program continues: task 0 has ended (exit status {status}): the step cannot be checkpointed as one without its coordinator; {kept}")
}

/// Rank 0: task `rank` said it ended with `status`.
pub fn record(rank: u32, status: u8, holders: Vec<u32>) {
    if let Ok(mut e) = EXITS.lock() {
        e.retain(|x| x.rank != rank);
        e.push(Exit { rank, status, holders });
    }
}

/// Rank 0: the status task `rank` said it ended with, if it did.
pub fn status(rank: usize) -> Option<u8> {
    EXITS.lock().ok()?.iter().find(|x| x.rank as usize == rank).map(|x| x.status)
}

/// Rank 0: a task links up as `rank`: it runs.
pub fn forget(rank: u32) {
    if let Ok(mut e) = EXITS.lock() {
        e.retain(|x| x.rank != rank);
    }
}

/// Rank 0 of a joined step, as a checkpoint begins: forget a status whose rank is held now
/// (`holders_now(rank)`) only by processes that did not hold it when the status was told.
pub fn prune(holders_now: impl Fn(u32) -> Vec<u32>) {
    if let Ok(mut e) = EXITS.lock() {
        e.retain(|x| {
            let now = holders_now(x.rank);
            now.is_empty() || now.iter().any(|h| x.holders.contains(h))
        });
    }
}
