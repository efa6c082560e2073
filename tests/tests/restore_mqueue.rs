//! POSIX message queues (mq_open) across checkpoint, SIGKILL and restart, and in the program
//! that goes on after a checkpoint: a named queue and a removed one come back with their
//! attributes, mode and messages in the order a receiver gets them, each fd as it was (a dup,
//! a second open that does not block); an mq_notify registration (SIGEV_SIGNAL) fires once,
//! with its value, when the emptied queue gets a message after the restart, and so does one
//! with SIGEV_THREAD (done by the runtime).

mod restore_util;
use restore_util::*;
use std::fs;

/// `name` checkpointed at READY, SIGKILLed and restarted (as nobody when asked): the same
/// output as uninterrupted, which holds `line`.
fn comes_back(name: &str, tag: &str, nobody: bool, line: &str) {
    let r = ready_go(name, tag, nobody, |_| {}, &[]);
    assert!(r.stdout.contains(line), "{}", r.stdout);
}

#[test]
fn a_message_queue_comes_back_with_its_messages_in_order() {
    comes_back("mq_queue", "mq_queue", false, "queue (through the dup): b priority 5\n");
}

#[test]
fn a_message_queue_comes_back_with_its_messages_in_order_as_nobody() {
    comes_back("mq_queue", "mq_queue_nobody", true, "queue (through the dup): b priority 5\n");
}

const SIGNALLED: &str = "notified: value 4242, code SI_MESGQ\n";

#[test]
fn an_mq_notify_signal_registration_fires_after_the_restart() {
    comes_back("mq_notify_signal", "mq_notify_signal", false, SIGNALLED);
}

#[test]
fn an_mq_notify_signal_registration_fires_after_the_restart_as_nobody() {
    comes_back("mq_notify_signal", "mq_notify_signal_nobody", true, SIGNALLED);
}

/// The checkpoint reads the messages and puts them back: the program that goes on finds its
/// queues exactly as they were (same messages in the same order) and no notification fired.
fn goes_on(name: &str, tag: &str) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile(name, &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");
    let dir = workdir(tag);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, name);
    fs::write(dir.join("go"), b"").unwrap();
    let st = p.wait();
    assert!(st.success(), "the program failed after the checkpoint ({st:?}): {}", p.stderr());
    assert_eq!(p.stdout(), expected, "stderr: {}", p.stderr());
}

#[test]
fn a_message_queue_is_unchanged_for_the_program_that_goes_on() {
    goes_on("mq_queue", "mq_queue_on");
}

#[test]
fn an_mq_notify_registration_is_kept_for_the_program_that_goes_on() {
    goes_on("mq_notify_signal", "mq_notify_signal_on");
}

/// SIGEV_THREAD is done by the runtime (glibc's helper thread blocks every signal: no
/// checkpoint could be taken); the notification's thread runs after the restart.
const THREAD_RAN: &str = "notified: value 77, received ping\n";

#[test]
fn an_mq_notify_thread_registration_fires_after_the_restart() {
    comes_back("mq_notify_thread", "mq_notify_thread", false, THREAD_RAN);
}

#[test]
fn an_mq_notify_thread_registration_fires_after_the_restart_as_nobody() {
    comes_back("mq_notify_thread", "mq_notify_thread_nobody", true, THREAD_RAN);
}

#[test]
fn an_mq_notify_thread_registration_fires_in_the_program_that_goes_on() {
    goes_on("mq_notify_thread", "mq_notify_thread_on");
}
