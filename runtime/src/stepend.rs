//! A task of a step whose program exits normally while the other tasks run on (issue 14).
//!
//! The task: its runtime registers an `on_exit` handler before the program's main (glibc runs
//! it for exit(3) and a return from main, with the status; not for _exit(2), a signal or the
//! runtime's own exit after a checkpoint-and-exit, which are raw exit_group calls). The handler
//! tells rank 0 the status on a connection of its own (`step::report_end`) and waits for its
//! word, so the status is recorded before the task's link closes.
//!
//! Rank 0: the statuses it was told (`record`), kept across its checkpoints and restarts (they
//! are in its image). A rank with a status and no link is ended: rank 0 does not wait for it,
//! sends it no `Begin`, and the manifest records it as `rank R ended STATUS`; a restart of the
//! step does not run it again (its `ckpt-run --resume` exits at once with the status). A task
//! that links up as that rank again (a new srun of a joined step took it) clears it (`forget`),
//! as does the end of every task above a rank (`forget_from`). In a joined step a status holds
//! only while the processes that hold the rank are those that held it when it was told
//! (`prune`: a new srun that took the rank of one that ended has tasks still to link up).
//! A task that ends otherwise (killed, crashed) says nothing: its rank is missing, and rank 0
//! abandons a checkpoint for it as before.

use crate::forklock::Mutex;
use std::ffi::c_void;

/// A rank that said it ended: its status, and for a joined step the processes (pid, start
/// time) that held its rank then.
struct Exit {
    rank: u32,
    status: u8,
    holders: Vec<(u32, u64)>,
}

/// Rank 0: the ranks that said they ended.
static EXITS: Mutex<Vec<Exit>> = Mutex::new(Vec::new());

extern "C" {
    fn on_exit(f: extern "C" fn(i32, *mut c_void), arg: *mut c_void) -> i32;
}

/// A task of a step other than rank 0: report the program's normal end (before main, after the
/// step's identity is known; the runtime's exit handlers registered after it run before it).
pub fn register() {
    if crate::step::is_member() {
        // SAFETY: registering a plain function with glibc, with no argument.
        unsafe { on_exit(program_exits, std::ptr::null_mut()) };
    }
}

extern "C" fn program_exits(status: i32, _: *mut c_void) {
    crate::step::report_end((status & 0xff) as u8);
}

/// Rank 0: task `rank` said it ended with `status`.
pub fn record(rank: u32, status: u8, holders: Vec<(u32, u64)>) {
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

/// Rank 0 of a joined step: the step shrank to `size` tasks (the sruns above it ended).
pub fn forget_from(size: u32) {
    if let Ok(mut e) = EXITS.lock() {
        e.retain(|x| x.rank < size);
    }
}

/// Rank 0 of a joined step, as a checkpoint begins: forget a status whose rank a process holds
/// now that did not hold it when the status was told (`holders_now(rank)`).
pub fn prune(holders_now: impl Fn(u32) -> Vec<(u32, u64)>) {
    if let Ok(mut e) = EXITS.lock() {
        e.retain(|x| holders_now(x.rank).iter().all(|h| x.holders.contains(h)));
    }
}
