//! The checkpoint signal as the program sees it. A SIGUSR2 from outside takes a checkpoint and
//! never reaches the program's handler; one the program sends itself (raise, kill, sigqueue,
//! pthread_kill: the JVM suspends its threads that way) runs the program's handler with the
//! kernel's semantics (siginfo, mask, SA_RESETHAND, SIG_IGN, pending while blocked, nested
//! delivery in sigsuspend), before and after a restart, whether the handler was installed with
//! sigaction, sigset, bsd_signal or sysv_signal (tests/programs/self_signal.c). With SIG_DFL a
//! self-sent one kills the program like the kernel would. `--signal` takes every name the
//! kernel has; programs the program starts get its own signal mask back.

mod restore_util;
use ckpt_tests::scenario::{ckpt_run_with, user_command};
use ckpt_tests::{result_of, run_plain, Bins, Proc, Program, Workdir};
use restore_util::*;
use std::ffi::OsString;
use std::fs;
use std::os::unix::process::ExitStatusExt;

/// self_signal in `mode`: checkpointed twice by SIGUSR2 from outside (its handler must not run:
/// "handler ran 0 times while waiting"), SIGKILLed, restarted: its whole output, before and
/// after, is the uninterrupted run's.
fn own_signal(mode: &str, nobody: bool) {
    let base = workdir(&format!("self_{mode}_ref"));
    let prog = compile("self_signal", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[mode], &base);
    assert!(expected.contains("handler ran 0 times while waiting"), "reference run: {expected}");

    let dir = workdir(&format!("self_{mode}_ckpt{}", if nobody { "_nobody" } else { "" }));
    let mut p = run_as(&prog, &[mode], &dir, nobody);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, "self_signal");
    let img = p.checkpoint(&dir, "self_signal");
    p.kill9();
    let before = p.stdout();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(before + &r.stdout(), expected, "stderr: {}", r.stderr());
}

#[test]
fn own_checkpoint_signal_goes_to_its_sigaction_handler() {
    own_signal("sigaction", false);
}

#[test]
fn own_checkpoint_signal_goes_to_its_sigaction_handler_as_nobody() {
    own_signal("sigaction", true);
}

#[test]
fn own_checkpoint_signal_goes_to_its_sigset_handler() {
    own_signal("sigset", false);
}

#[test]
fn own_checkpoint_signal_goes_to_its_bsd_signal_handler() {
    own_signal("bsd", false);
}

#[test]
fn own_checkpoint_signal_goes_to_its_sysv_signal_handler() {
    own_signal("sysv", false);
}

/// raise(SIGUSR2) with the default disposition: the program dies of SIGUSR2, as without ckpt.
#[test]
fn own_checkpoint_signal_with_default_action_kills_the_program() {
    let dir = workdir("self_die");
    let prog = compile("self_signal", &dir);
    let mut p = run(&prog, &["die"], &dir);
    let st = p.wait();
    assert_eq!(st.signal(), Some(libc::SIGUSR2), "status {st:?}; stdout: {} stderr: {}", p.stdout(), p.stderr());
    assert_eq!(p.stdout(), "dying\n");
}

/// counter under `ckpt-run --signal NAME`, checkpointed with signal `sig` from outside,
/// SIGKILLed and restarted: it continues to the uninterrupted run's result.
fn checkpoint_with(name: &str, sig: i32) {
    let bins = Bins::locate().unwrap();
    let work = Workdir::new(&format!("signal-{}", name.replace('+', "plus"))).unwrap();
    let program = Program::c(&work, "counter.c", &[], &["40", "30"]).unwrap();
    let want = run_plain(&program, false, TIMEOUT).unwrap();
    let mut p = Proc::spawn("ckpt-run", ckpt_run_with(&bins, &program, &work.images(), &["--signal", name], false)).unwrap();
    p.wait_for_step(5, TIMEOUT).unwrap();
    p.signal(sig).unwrap();
    p.wait_for_stderr("ckpt: checkpoint 1:", TIMEOUT).unwrap_or_else(|e| panic!("no checkpoint on signal {sig}: {e:#}"));
    p.kill().unwrap();
    let image = work.images().join(program.image_name());
    let argv: Vec<OsString> = vec![bins.restart.clone().into(), image.into()];
    let mut r = Proc::spawn("ckpt-restart", user_command(&argv, false, &program.cwd)).unwrap();
    r.wait(TIMEOUT).unwrap();
    let rec = r.record();
    assert!(rec.success() && result_of(&rec.stdout) == result_of(&want.stdout), "{rec}");
    assert!(!rec.stdout.contains("start "), "started over: {rec}");
}

#[test]
fn checkpoint_signal_by_realtime_name() {
    checkpoint_with("RTMIN+3", libc::SIGRTMIN() + 3);
}

#[test]
fn checkpoint_signal_by_name_with_default_ignore() {
    checkpoint_with("WINCH", libc::SIGWINCH);
}

#[test]
fn checkpoint_signal_vtalrm() {
    checkpoint_with("SIGVTALRM", libc::SIGVTALRM);
}

/// Programs started by system, popen, posix_spawnp, vfork + execlp and fork + execvp see the
/// mask the program set (SIGINT blocked), not the runtime's (SIGUSR2 blocked too). Without a
/// namespace: in one, a program that a forked child execs is a member of the process tree and
/// runs the runtime, which blocks the trigger signals in its threads as in the program's own.
#[test]
fn started_programs_get_the_programs_mask() {
    let dir = workdir("spawn_mask");
    let prog = compile("spawn_mask", &dir);
    let expected = plain(&prog, &[], &dir);
    assert_eq!(expected.matches("SigBlk:\t0000000000000002").count(), 5, "reference run: {expected}");
    let mut p = run_with(&prog, &[], &dir, false, &["--no-namespace"]);
    assert!(p.wait().success(), "{}", p.stderr());
    assert_eq!(p.stdout(), expected);
}
