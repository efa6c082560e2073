//! A checkpoint whose parked thread does not take its pending signals again in time is refused
//! (runtime threads.rs `late_capture`, kstate.rs): the test traces the program's thread from
//! before the checkpoint and holds it at the entry of the call by which it tells the checkpoint
//! thread it is parked (the futex wake on the runtime's `STOPPED` counter, whose address is
//! found from the runtime's symbols). The checkpoint thread then asks the parked threads for
//! their queues, and the held one cannot answer: that checkpoint must fail with its one line
//! and the program go on; a later checkpoint, SIGKILL and restart give the uninterrupted result.
//!
//! Exact: the thread is held at a system call, not caught at a moment; one checkpoint is tried.

mod restore_util;

use restore_util::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const REFUSAL: &str = "did not take its pending signals again within 10 s";

/// The address in the program of a runtime static whose mangled name contains `part`: its
/// value in the library's symbol table plus the library's load base in the program.
fn runtime_symbol(pid: i32, part: &str) -> u64 {
    let lib = bin("libckpt_runtime.so");
    let out = Command::new("nm").arg(&lib).output().expect("nm (binutils)");
    let syms = String::from_utf8_lossy(&out.stdout);
    let value = syms
        .lines()
        .find(|l| l.contains(part))
        .and_then(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .unwrap_or_else(|| panic!("no symbol {part} in {}", lib.display()));
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let base = maps
        .lines()
        .filter(|l| l.ends_with("libckpt_runtime.so"))
        .find(|l| l.split_whitespace().nth(2) == Some("00000000"))
        .and_then(|l| u64::from_str_radix(l.split('-').next()?, 16).ok())
        .expect("the runtime is mapped in the program");
    base + value
}

fn checkpoints_ended(err: &Path) -> usize {
    let s = fs::read_to_string(err).unwrap_or_default();
    s.lines().filter(|l| l.contains("checkpoint") && (l.contains("failed") || l.contains(".ckpt ("))).count()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The thread's stop, held: the thread is traced (PTRACE_SEIZE, syscall stops) from before the
/// checkpoint is asked for, every signal it is given passed on, until it enters the system call
/// that tells the checkpoint thread it is parked (the futex wake on the runtime's `STOPPED`
/// counter). It has read the late-capture round before that call (threads.rs `stop_handler`):
/// held at the call's entry, it cannot answer the checkpoint thread's ask, which comes after.
/// Held until the checkpoint has ended, then let go.
fn hold_at_park(p: &Proc, tid: i32, stopped: u64, ended: usize) {
    // SAFETY: ptrace of a thread of this test's own program; detached below.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0, libc::PTRACE_O_TRACESYSGOOD) } == 0;
    assert!(seized, "PTRACE_SEIZE: {}", std::io::Error::last_os_error());
    let wait_stop = || {
        let t0 = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waiting for our tracee's next stop, without blocking.
            let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
            assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if r == tid {
                assert!(libc::WIFSTOPPED(status), "the program's thread ended (status {status:#x}): {}", p.stderr());
                return status;
            }
            assert!(t0.elapsed() < TIMEOUT, "the traced thread did not stop: {}", p.stderr());
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    // SAFETY: our tracee: an interrupt stop, then on to its next system call.
    unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) };
    wait_stop();
    // SAFETY: as above.
    unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, 0) };
    // SAFETY: our own child (ckpt-run): its checkpoint signal.
    unsafe { libc::kill(p.pid(), libc::SIGUSR2) };
    loop {
        let status = wait_stop();
        let sig = libc::WSTOPSIG(status);
        let mut pass = 0;
        if sig == libc::SIGTRAP | 0x80 {
            // SAFETY: our tracee, in a syscall stop; regs is written whole.
            let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs as *mut libc::user_regs_struct) };
            let entry = regs.rax as i64 == -i64::from(libc::ENOSYS);
            let wake = (regs.rsi as i32 & 0x7f) == libc::FUTEX_WAKE;
            if entry && regs.orig_rax == libc::SYS_futex as u64 && regs.rdi == stopped && wake {
                wait_until("the checkpoint's end", || checkpoints_ended(&p.err) > ended);
                // SAFETY: our tracee, still in that syscall stop.
                unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
                return;
            }
        } else if status >> 16 == 0 {
            // A signal-delivery-stop (not a group or interrupt stop): the signal goes on.
            pass = sig;
        }
        // SAFETY: our tracee, in a stop.
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, pass) };
    }
}

fn late_capture(nobody: bool) {
    let tag = if nobody { "late_capture_nobody" } else { "late_capture" };
    let dir = workdir(tag);
    let prog = compile("late_capture", &dir);
    fs::write(dir.join("go"), "").unwrap();
    let expected = plain_as(&prog, &[], &dir, nobody);
    fs::remove_file(dir.join("go")).unwrap();
    assert!(expected.starts_with("READY\nsteps 300 "), "uninterrupted run: {expected}");

    // Forked snapshots: one capture per checkpoint (a background snapshot whose capture fails
    // is taken again with a fork, a second stop the test would have to catch too).
    let mut p = run_with(&prog, &[], &dir, nobody, &["--snapshot", "fork"]);
    p.wait_line(|l| l == "READY");
    let pid = ckpt_tests::process::program_pid(p.pid());
    let stopped = runtime_symbol(pid, "7threads7STOPPED");
    let ended = checkpoints_ended(&p.err);
    hold_at_park(&p, pid, stopped, ended);
    let last = p.stderr().lines().filter(|l| l.contains("checkpoint")).last().unwrap_or_default().to_string();
    assert!(last.contains(REFUSAL), "the held checkpoint was not refused with its line: {}", p.stderr());
    assert!(p.child.try_wait().unwrap().is_none(), "the program ended after the refused checkpoint: {}", p.stderr());

    let img = p.checkpoint(&dir, "late_capture");
    p.kill9();
    let mut r = restart_as(&img, &[], &dir, nobody);
    r.wait_restarted();
    fs::write(dir.join("go"), "").unwrap();
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(format!("READY\n{}", r.stdout()), expected, "{}", r.stderr());
}

#[test]
fn a_thread_held_before_the_late_capture_refuses_the_checkpoint_and_the_program_goes_on() {
    late_capture(false);
}

#[test]
fn a_thread_held_before_the_late_capture_refuses_the_checkpoint_as_nobody() {
    late_capture(true);
}
