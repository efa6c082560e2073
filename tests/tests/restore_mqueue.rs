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

/// Without ckpt's namespace the queues are the host's: a queue of that name there already
/// (here the one the killed program left) makes the restart refuse in one line naming it,
/// rather than join a queue that is not the image's; once it is removed, the restart makes it
/// again from the image.
#[test]
fn a_queue_of_that_name_outside_a_namespace_refuses_the_restart_until_removed() {
    let base = workdir("mq_queue_nons_ref");
    let prog = compile("mq_queue", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);
    let dir = workdir("mq_queue_nons");
    let mut p = run_with(&prog, &[], &dir, false, &["--no-namespace"]);
    p.wait_line(|l| l == "READY");
    // (Without a namespace the program is ckpt-run's own process.)
    let name = format!("/ckpt-mq-{}", p.pid());
    let img = p.checkpoint(&dir, "mq_queue");
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&img, &["--no-namespace"], &dir);
    let st = r.wait();
    let err = r.stderr();
    assert!(!st.success() && err.contains(&format!("POSIX message queue {name} exists already")) && err.lines().count() == 1, "{err}");
    assert!(!r.stdout().contains("queue"), "the program ran: {}", r.stdout());
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mq_unlink(c.as_ptr()) }, 0, "the killed program's queue is not there");
    let mut r = restart(&img, &["--no-namespace"], &dir);
    let st = r.wait();
    assert!(st.success(), "restart failed ({st:?}): {}", r.stderr());
    assert_eq!(r.stdout(), expected.replacen("READY\n", "", 1));
}
