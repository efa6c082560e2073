//! UNIX sockets that processes of a tree reach each other through by name (issue 13), not
//! socketpairs: made once by the tree's restart, with their names, and shared again. The
//! program (tree_unix_names.c) keeps talking across the checkpoint; the whole tree is SIGKILLed
//! and restarted, and each process checks every round that the names are still there:
//! - a stream connection the parent accepted from its named listener (still open: a new client
//!   is accepted at the end) and the child holds the client end of, with a request unread in
//!   the child's socket and an answer unread in the parent's most of the time (also twice
//!   restarted as nobody);
//! - the same with the listener closed and its file removed before the checkpoint (the accepted
//!   end keeps the name of a file that is gone), and over seqpacket;
//! - a named datagram socket of the parent, its file removed, to which two children's
//!   datagram sockets are connected, with datagrams unread in it.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn stream(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_unix_names.c", &[], &["stream", "200", "40"])
}

fn stream_deleted(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_unix_names.c", &[], &["stream-deleted", "200", "40"])
}

fn seqpacket(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_unix_names.c", &[], &["seqpacket", "200", "40"])
}

fn dgram(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_unix_names.c", &[], &["dgram", "200", "40"])
}

#[test]
fn a_connection_accepted_from_a_named_listener_continues() -> Result<()> {
    ckpt_tests::trees::verify("unix-named-stream", stream, &[20], false, 2).map(drop)
}

#[test]
fn a_connection_accepted_from_a_named_listener_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("unix-named-stream-nobody", stream, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_connection_whose_listener_was_closed_and_removed_continues() -> Result<()> {
    ckpt_tests::trees::verify("unix-named-deleted", stream_deleted, &[20], false, 2).map(drop)
}

#[test]
fn a_seqpacket_connection_accepted_from_a_named_listener_continues() -> Result<()> {
    ckpt_tests::trees::verify("unix-named-seqpacket", seqpacket, &[20], false, 2).map(drop)
}

#[test]
fn datagram_sockets_connected_to_a_removed_name_continue() -> Result<()> {
    ckpt_tests::trees::verify("unix-named-dgram", dgram, &[20], false, 3).map(drop)
}
