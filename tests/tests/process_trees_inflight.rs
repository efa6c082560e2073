//! Files in flight (SCM_RIGHTS, queued in a socket, not yet received) whose object another
//! process of the tree holds (issue 13): a parent that passes an object it keeps to its child
//! over a socketpair between them ("send my fd to a worker and keep it"), one message always
//! queued, so every checkpoint finds the object in flight in the child's end and held by the
//! parent as an fd (tree_inflight.c). The whole tree is SIGKILLed and restarted; the child
//! receives the object and the two use one object again (same result as an uninterrupted run,
//! which a child with an object of its own cannot reach: it waits 5 s and exits 92):
//! - a pipe's read end: one pipe (the parent's bytes are read by the child through its copy)
//!   and one open file (the child's O_NONBLOCK is the parent's); also as nobody, and twice;
//! - a TCP listener: connections accepted from the one listener through either fd; also as
//!   nobody and twice.
//!
//! The socketpair carrying the message is made once by the tree's root, empty on that side, and
//! its queue sent again by the child (whose image holds the files in flight) from the other end.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn pipe(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &["pipe", "200", "30"])
}

fn listener(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &["listener", "200", "30"])
}

#[test]
fn a_pipe_end_in_flight_to_the_child_that_the_parent_keeps_is_one_pipe() -> Result<()> {
    ckpt_tests::trees::verify("inflight-pipe", pipe, &[20], false, 2).map(drop)
}

#[test]
fn a_pipe_end_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-pipe-nobody", pipe, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_listener_in_flight_to_the_child_that_the_parent_keeps_is_one_listener() -> Result<()> {
    ckpt_tests::trees::verify("inflight-listener", listener, &[20], false, 2).map(drop)
}

#[test]
fn a_listener_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-listener-nobody", listener, &[15, 50], true, 2).map(drop)
}
