//! INET sockets between processes of a tree (issue 13), beyond what process_trees_shared covers
//! (tree_inet.c checks every byte and datagram; the whole tree is SIGKILLed and restarted):
//! - a loopback TCP connection between parent and child whose two directions are full at every
//!   moment (bytes unread in each receiver's queue and unsent in each sender's, which cannot be
//!   read without privileges) comes back with every byte once, in order: the two processes
//!   drain it together at the cut and put it back, and the restart makes it once with what
//!   each end had to read (also twice restarted as nobody);
//! - UDP sockets held by parent and child (inherited by fork), one bound that both receive from
//!   and one both send from, with a datagram queued unread at the cut: made once and given to
//!   both, the datagram queued again once from its sender's address (also as nobody).
//! - TCP connections in closing states with megabytes unsent behind a FIN between parent and
//!   child (FIN_WAIT1, CLOSING, LAST_ACK, as zdtm socket-tcp-fin-wait1, -closing, -last-ack
//!   leave them): the receivers' buffers are grown at the cut until every byte and FIN has
//!   reached them (nothing is read), and the restart gives the child every byte once, then the
//!   end of the stream (also as nobody); the direction still open carries bytes after it;
//! - one whose receiver the program sized too small for them (a locked SO_RCVBUF): refused in
//!   one line naming the closing state.
//! - a [::] listener with IPV6_V6ONLY beside a 0.0.0.0 one at the same port, both held by
//!   parent and child: made once with IPV6_V6ONLY before the bind, both accept after the
//!   restart (from ::1 and 127.0.0.1; also twice restarted as nobody).

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn buffers(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inet.c", &[], &["buffers", "150", "30"])
}

#[test]
fn a_tcp_connection_with_full_buffers_both_ways_between_two_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-buffers", buffers, &[20], false, 2).map(drop)
}

#[test]
fn a_tcp_connection_with_full_buffers_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-buffers-nobody", buffers, &[15, 60], true, 2).map(drop)
}

fn udp(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inet.c", &[], &["udp", "120", "30"])
}

#[test]
fn udp_sockets_held_by_parent_and_child_continue() -> Result<()> {
    ckpt_tests::trees::verify("inet-udp", udp, &[20], false, 2).map(drop)
}

#[test]
fn udp_sockets_held_by_parent_and_child_continue_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inet-udp-nobody", udp, &[15, 60], true, 2).map(drop)
}

fn closing(mode: &'static str) -> impl Fn(&Workdir) -> Result<Program> {
    move |work| Program::c(work, "tree_inet.c", &[], &[mode, "120", "30"])
}

fn fin_wait1(work: &Workdir) -> Result<Program> {
    closing("fin-wait1")(work)
}

fn closing_both(work: &Workdir) -> Result<Program> {
    closing("closing")(work)
}

fn last_ack(work: &Workdir) -> Result<Program> {
    closing("last-ack")(work)
}

/// FIN_WAIT1 with megabytes behind the FIN (the child has read nothing): the child reads every
/// byte once and the end after the restart, then sends its own bytes the other way.
#[test]
fn a_tcp_connection_in_fin_wait1_with_bytes_behind_its_fin_continues() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-fin-wait1", fin_wait1, &[20], false, 2).map(drop)
}

#[test]
fn a_tcp_connection_in_fin_wait1_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-fin-wait1-nobody", fin_wait1, &[15, 60], true, 2).map(drop)
}

/// CLOSING: both ends shut down, the child's bytes read, the parent's megabytes behind its FIN.
#[test]
fn a_tcp_connection_in_closing_with_bytes_behind_a_fin_continues() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-closing", closing_both, &[20], false, 2).map(drop)
}

/// LAST_ACK: the child shut down first, the parent then wrote megabytes and shut down.
#[test]
fn a_tcp_connection_in_last_ack_with_bytes_behind_its_fin_continues() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-last-ack", last_ack, &[20], false, 2).map(drop)
}

#[test]
fn a_tcp_connection_in_last_ack_continues_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inet-tcp-last-ack-nobody", last_ack, &[20], true, 2).map(drop)
}

/// A closing connection whose receiver the program sized too small for the bytes behind the
/// FIN (SO_RCVBUF, locked): they stay in the sender's send queue, which cannot be read without
/// TCP_REPAIR: the checkpoint says so, the restart refuses in one line naming the closing state.
#[test]
fn a_tcp_connection_closing_with_bytes_that_cannot_reach_its_receiver_is_refused() -> Result<()> {
    ckpt_tests::trees::shared_object_refused("inet-tcp-closing-locked", "tree_inet.c", "fin-wait1-locked", "closing state", false)
}

fn v6only(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inet.c", &[], &["v6only", "150", "30"])
}

/// A [::] listener with IPV6_V6ONLY and a 0.0.0.0 one at the same port, both held by parent
/// and child (made once by the tree's root at the restart): IPV6_V6ONLY is set before the bind,
/// or the second bind fails (EADDRINUSE); both accept after it, from ::1 and 127.0.0.1.
#[test]
fn an_ipv6_only_listener_beside_an_ipv4_one_at_its_port_shared_by_two_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("inet-v6only", v6only, &[20], false, 2).map(drop)
}

#[test]
fn an_ipv6_only_listener_beside_an_ipv4_one_at_its_port_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inet-v6only-nobody", v6only, &[15, 60], true, 2).map(drop)
}
