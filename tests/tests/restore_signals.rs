//! Signals, timers and identity across checkpoint, SIGKILL and restart: per-thread signal masks,
//! pending signals (per thread and process-wide), sigaltstack, setitimer and a POSIX timer with
//! their remaining time, getpid()/gettid() unchanged and kill/tgkill by those ids arriving,
//! cwd/umask/rlimits, thread names, CPU affinity, and the checkpoint signal staying the
//! runtime's although the program blocks it and installs a handler for it.

mod restore_util;
#[path = "restore_util/refuse.rs"]
mod refuse;
use restore_util::*;
use std::fs;

#[test]
fn signals_timers_and_ids_survive() {
    check("signals", false);
}

#[test]
fn signals_timers_and_ids_survive_as_nobody() {
    check("signals_nobody", true);
}

fn check(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("sig_ids", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);
    assert!(expected.contains("posix timer fired: 1 value 1234"), "reference run: {expected}");

    let dir = workdir(&format!("{tag}_ckpt"));
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, "sig_ids");
    // A second checkpoint of the same run: the program's SIGUSR2 handler still never runs.
    let img = p.checkpoint(&dir, "sig_ids");
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("READY"), "the program started over: {out}");
    assert_eq!(out, expected.replacen("READY\n", "", 1));
}


/// Restarted twice: the restarted program is checkpointed again before it goes on, so ids,
/// timers and pending signals pass through two restarts.
#[test]
fn signals_timers_and_ids_survive_two_restarts() {
    survives_two_restarts("sig_ids");
}

/// Pending signals come back with their siginfo (sigqueue values, si_code, sender), each queued
/// real-time signal once per send, in the queue it was in (the process's, a thread's own).
#[test]
fn pending_signals_keep_their_siginfo() {
    ready_go("sig_siginfo", "sig_siginfo", false, |_| {}, &[]);
}

#[test]
fn pending_signals_keep_their_siginfo_as_nobody() {
    ready_go("sig_siginfo", "sig_siginfo_nobody", true, |_| {}, &[]);
}

/// POSIX timers whose signals pile up in the process's queue while the checkpoint holds the
/// threads: each comes back with its siginfo (SI_TIMER, the timer's value), not as a bare
/// signal by number (DMTCP's timer1 crashed in its handler 5 restarts in 6).
#[test]
fn timer_signals_queued_during_the_checkpoint_keep_their_value() {
    ready_go("timer_signals", "timer_signals", false, |_| {}, &[]);
}

#[test]
fn timer_signals_queued_during_the_checkpoint_keep_their_value_as_nobody() {
    ready_go("timer_signals", "timer_signals_nobody", true, |_| {}, &[]);
}

/// Signals directed at one thread that reach it while the checkpoint holds it (a POSIX timer
/// aimed at the thread; values another thread pthread_sigqueue()s to it until it is stopped too)
/// come back with their siginfo: the timer's value, each sigqueued value once and in order (they
/// were queued again by number only: SI_TKILL, no value).
#[test]
fn thread_directed_signals_queued_during_the_checkpoint_keep_their_value() {
    ready_go("thread_sigqueue", "thread_sigqueue", false, |_| {}, &[]);
}

#[test]
fn thread_directed_signals_queued_during_the_checkpoint_keep_their_value_as_nobody() {
    ready_go("thread_sigqueue", "thread_sigqueue_nobody", true, |_| {}, &[]);
}

/// A pidfd of the program itself names the restarted program: signals sent through it arrive.
#[test]
fn pidfd_of_itself() {
    ready_go("pidfd_self", "pidfd_self", false, |_| {}, &[]);
}

#[test]
fn pidfd_of_itself_as_nobody() {
    ready_go("pidfd_self", "pidfd_self_nobody", true, |_| {}, &[]);
}

/// pidfds of processes that had exited and been reaped are pidfds of an exited process again
/// (they were /dev/null): one inode per process, poll reports the exit, signals get ESRCH.
#[test]
fn pidfds_of_exited_processes() {
    ready_go("pidfd_exited", "pidfd_exited", false, |_| {}, &[]);
}

#[test]
fn pidfds_of_exited_processes_as_nobody() {
    ready_go("pidfd_exited", "pidfd_exited_nobody", true, |_| {}, &[]);
}

/// A pidfd of one of the program's threads (PIDFD_THREAD) and its dup name that thread again
/// (they were /dev/null: the thread is made by the runtime after the fds are restored), so a
/// thread-directed signal through them reaches it (zdtm pidfd_of_thread).
#[test]
fn pidfd_of_a_thread() {
    ready_go("pidfd_thread", "pidfd_thread", false, |_| {}, &[]);
}

#[test]
fn pidfd_of_a_thread_as_nobody() {
    ready_go("pidfd_thread", "pidfd_thread_nobody", true, |_| {}, &[]);
}

/// A pidfd of a process that is not there again after the restart (a child left out of a
/// single-process image, `--no-namespace`) refuses the restart in one line naming the fd;
/// `--ignore-missing-files` gives the program /dev/null with a warning (before: /dev/null with a
/// warning, without being asked).
#[test]
fn a_pidfd_of_a_process_not_restarted_refuses_the_restart() {
    let r = refuse::refused_then_ignored_with("pidfd_other", "pidfd_other", false, "pidfd", &["--no-namespace"]);
    assert!(r.refusal.contains("fd 3"), "refusal: {}", r.refusal);
}

#[test]
fn a_pidfd_of_a_process_not_restarted_refuses_the_restart_as_nobody() {
    refuse::refused_then_ignored_with("pidfd_other", "pidfd_other_nobody", true, "pidfd", &["--no-namespace"]);
}

/// More signals queued than the runtime records with their siginfo (4096): a checkpoint is
/// refused in one line (a restart would bring the others back by number, their values lost),
/// and the program goes on with every value, in order.
#[test]
fn more_queued_signals_than_recorded_refuse_the_checkpoint_in_one_line() {
    let bins = ckpt_tests::Bins::locate().expect("binaries");
    let work = ckpt_tests::Workdir::new("many-queued").expect("workdir");
    let program = ckpt_tests::Program::c(&work, "many_queued_signals.c", &[], &["40"]).expect("program");
    let (rec, line) = ckpt_tests::scenario::refused_checkpoint(&bins, &program, &work.images(), false).expect("refused checkpoint");
    assert!(rec.success() && rec.stdout.contains("result 40"), "the program did not go on unharmed{}", ckpt_tests::process::transcript(&[rec.clone()]));
    assert!(line.contains("more than 4096 signals are queued"), "the refusal does not say why: {line}");
}
