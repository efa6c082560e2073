//! File locks and leases across checkpoint, SIGKILL and restart (tests/programs/files_locks.c):
//! flock, POSIX record locks, an OFD lock and a read lease are held again by the restarted
//! program, and another process sees them; a lock that another process took after the kill
//! stops the restart with one clear line. The owners of I/O signals (tests/programs/files_fown.c:
//! F_SETOWN, F_SETOWN_EX of the main thread, F_SETSIG) are the restarted process's, and data
//! arriving raises each fd's signal again.

mod restore_util;
use restore_util::*;
use std::fs;
use std::os::fd::AsRawFd;

#[test]
fn locks_and_leases_are_held_again_and_seen_from_outside() {
    ready_go("files_locks", "files_locks", false, |_| {}, &[]);
}

#[test]
fn locks_and_leases_are_held_again_and_seen_from_outside_as_nobody() {
    ready_go("files_locks", "files_locks_nobody", true, |_| {}, &[]);
}

#[test]
fn io_signal_owners_and_signals_are_kept() {
    ready_go("files_fown", "files_fown", false, |_| {}, &[]);
}

#[test]
fn io_signal_owners_and_signals_are_kept_as_nobody() {
    ready_go("files_fown", "files_fown_nobody", true, |_| {}, &[]);
}

#[test]
fn locks_survive_two_restarts() {
    survives_two_restarts("files_locks");
}

#[test]
fn a_lock_taken_by_another_process_meanwhile_refuses_the_restart() {
    let dir = workdir("files_locks_taken");
    let prog = compile("files_locks", &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "files_locks");
    p.kill9();
    let other = fs::File::open(dir.join("flock.dat")).unwrap();
    // SAFETY: flock on a file we opened.
    assert_eq!(unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&img, &[], &dir);
    assert_eq!(r.wait().code(), Some(1), "the restart went on: {}", r.stdout());
    let err = r.stderr();
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    assert!(err.starts_with("ckpt-restart: ") && err.contains("flock.dat") && err.contains("another process"), "unclear: {err}");
    drop(other);
}
