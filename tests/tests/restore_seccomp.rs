//! Seccomp filters across checkpoint, SIGKILL and restart (issue 12): each thread runs under the
//! same filters as before (installed through prctl, through syscall(SYS_seccomp), inherited by a
//! thread created after, given to every thread by TSYNC, one that makes the runtime's own prctl
//! calls in its thread fail); a filter ckpt did not see installed
//! makes the checkpoint refuse in one line naming the thread.

mod ready_go;
mod restore_util;
use anyhow::{bail, Result};
use ckpt_tests::scenario::refused_checkpoint;
use ckpt_tests::{Bins, Program, Workdir};
use ready_go::same_after_restart;

const PER_THREAD: &[&str] = &[
    "early: getppid ok, getcpu ok, prctl ok, Seccomp 0, filters 0",
    "main: getppid EPERM, getcpu ok, prctl ok, Seccomp 2, filters 1",
    "late: getppid EPERM, getcpu EDOM, prctl ok, Seccomp 2, filters 2",
    "later: getppid EPERM, getcpu EDOM, prctl EDOM, Seccomp 2, filters 3",
];

#[test]
fn filters_of_each_thread_survive() {
    same_after_restart("attr_seccomp", "seccomp", false, PER_THREAD);
}

#[test]
fn filters_of_each_thread_survive_as_nobody() {
    same_after_restart("attr_seccomp", "seccomp_nobody", true, PER_THREAD);
}

const TSYNC: &[&str] = &[
    "early: getppid EPERM, getcpu ok, prctl ok, Seccomp 2, filters 1",
    "main: getppid EPERM, getcpu ok, prctl ok, Seccomp 2, filters 1",
    "later: getppid EPERM, getcpu ok, prctl ok, Seccomp 2, filters 1",
];

#[test]
fn a_tsync_filter_survives_in_every_thread() {
    same_after_restart("attr_seccomp_tsync", "seccomp_tsync", false, TSYNC);
}

#[test]
fn a_tsync_filter_survives_in_every_thread_as_nobody() {
    same_after_restart("attr_seccomp_tsync", "seccomp_tsync_nobody", true, TSYNC);
}

/// A filter installed with a raw system call (tests/programs/seccomp_unseen.c), or strict mode:
/// the checkpoint fails with a line naming the thread, and the program goes on.
fn unseen(tag: &str, mode: &str, nobody: bool, says: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "seccomp_unseen.c", &["-pthread"], &["40", mode])?;
    let (rec, line) = refused_checkpoint(&bins, &program, &work.images(), nobody)?;
    if !rec.success() || !rec.stdout.contains("result 40") || !line.contains("thread") || !line.contains(says) {
        bail!("expected a failed checkpoint naming the sandboxed thread and the program going on{}", ckpt_tests::process::transcript(&[rec]));
    }
    Ok(())
}

#[test]
fn a_filter_installed_unseen_fails_the_checkpoint_in_one_line() -> Result<()> {
    unseen("seccomp-unseen", "raw", false, "seccomp filter ckpt did not see installed")
}

#[test]
fn a_filter_installed_unseen_fails_the_checkpoint_in_one_line_as_nobody() -> Result<()> {
    unseen("seccomp-unseen-nobody", "raw", true, "seccomp filter ckpt did not see installed")
}

#[test]
fn strict_mode_fails_the_checkpoint_in_one_line() -> Result<()> {
    unseen("seccomp-strict", "strict", false, "sandboxed")
}

#[test]
fn strict_mode_fails_the_checkpoint_in_one_line_as_nobody() -> Result<()> {
    unseen("seccomp-strict-nobody", "strict", true, "sandboxed")
}
