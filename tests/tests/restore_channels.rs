//! In-process channels and event sources across checkpoint, SIGKILL and restart: a pipe and
//! stream/datagram socketpairs with unread bytes (nothing lost, nothing duplicated), a dup'd
//! fd, eventfd, timerfd, signalfd, epoll, inotify and a deleted-but-open file. The program
//! prints what each object holds after the restart; it must match an uninterrupted run.

mod restore_util;
use restore_util::*;
use std::fs;

#[test]
fn channels_and_event_fds_hold_their_state() {
    check("channels", false);
}

#[test]
fn channels_and_event_fds_hold_their_state_as_nobody() {
    check("channels_nobody", true);
}

fn check(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("fd_channels", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);
    assert!(expected.contains("pipe: pipe-bytes"), "reference run: {expected}");

    let dir = workdir(&format!("{tag}_ckpt"));
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "fd_channels");
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("READY"), "the program started over: {out}");
    assert_eq!(out, expected.replacen("READY\n", "", 1));
    assert!(!r.stderr().contains("warning"), "unexpected warnings: {}", r.stderr());
}

#[test]
fn checkpoint_leaves_the_running_program_unchanged() {
    let base = workdir("channels_ref2");
    let prog = compile("fd_channels", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);

    let dir = workdir("channels_live");
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, "fd_channels");
    fs::write(dir.join("go"), b"").unwrap();
    assert!(p.wait().success(), "program failed after a checkpoint: {}", p.stderr());
    assert_eq!(p.stdout(), expected);
}

/// Restarted twice: pipes, sockets and event fds recreated by a restart are checkpointed again.
#[test]
fn channels_survive_two_restarts() {
    survives_two_restarts("fd_channels");
}
