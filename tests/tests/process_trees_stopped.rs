//! Process trees (issue 13) with a process stopped by job control at the checkpoint: the
//! coordinator wakes it for its part and stops it again with the same signal before any other
//! process resumes; the restart brings it back stopped before any process of the tree runs, and
//! the program's SIGCONT continues it.
//! - tree_stopped.c: the parent stops its child (its own process group), and every round checks
//!   that the child is stopped (state T, its count in shared memory unchanged, waitid reporting
//!   CLD_STOPPED with the signal); later it sends SIGCONT (waitid reports CLD_CONTINUED) and the
//!   child counts. A checkpoint refused, a child that ran a moment while it was woken (its
//!   count), or one restarted running or stopped by another signal changes the result;
//! - with SIGTSTP and with SIGSTOP, two checkpoints (the second of a restarted stopped
//!   process), also as nobody;
//! - a child stopped right after the fork, before its runtime joined the tree (its threads park
//!   in the runtime's fork handler when woken: CRIU's zdtm stopped does this), and one SIGSTOPped
//!   before it ran at all (stopped inside the fork handlers, where the runtime blocks signals).

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn tstp(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stopped.c", &[], &["TSTP", "300", "20", "5", "260"])
}

fn stop(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stopped.c", &[], &["STOP", "300", "20", "5", "260"])
}

#[test]
fn a_child_stopped_by_sigtstp_is_stopped_again_after_the_restart_and_continues() -> Result<()> {
    ckpt_tests::trees::verify("trees-stopped-tstp", tstp, &[20], false, 2).map(drop)
}

#[test]
fn a_child_stopped_by_sigstop_stays_stopped_across_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-stopped-stop-nobody", stop, &[20, 80], true, 2).map(drop)
}

#[test]
fn a_child_stopped_by_sigtstp_stays_stopped_across_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-stopped-tstp-nobody", tstp, &[20, 80], true, 2).map(drop)
}

fn at_fork(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stopped.c", &[], &["TSTP", "300", "20", "0", "260"])
}

#[test]
fn a_child_stopped_before_it_joined_the_tree_is_stopped_after_the_restart() -> Result<()> {
    ckpt_tests::trees::verify("trees-stopped-at-fork", at_fork, &[20, 80], false, 2).map(drop)
}

fn sigstop_at_fork(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stopped.c", &[], &["STOP", "300", "20", "0", "260", "1"])
}

/// SIGSTOP cannot be blocked: it stops the child at its first instruction, inside the fork
/// handlers, where the runtime's fork-time locking (forklock.rs) blocks the program's signals
/// (CRIU's zdtm stopped). Woken for the checkpoint, the child must still park in the runtime and
/// be stopped again, so that the parent's waitid finds it stopped after the restart.
#[test]
fn a_child_sigstopped_inside_the_fork_handlers_is_stopped_after_the_restart() -> Result<()> {
    ckpt_tests::trees::verify("trees-stopped-in-fork", sigstop_at_fork, &[20, 80], false, 2).map(drop)
}

#[test]
fn a_child_sigstopped_inside_the_fork_handlers_is_stopped_after_the_restart_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-stopped-in-fork-nobody", sigstop_at_fork, &[20, 80], true, 2).map(drop)
}
