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
//! - a TCP connection in a closing state with bytes behind its FIN between parent and child:
//!   refused in one line naming it.

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

/// A TCP connection between parent and child in a closing state with bytes behind the FIN
/// (FIN_WAIT1 with a full receiver, as zdtm socket-tcp-fin-wait1 leaves it): the shut end
/// cannot send drained bytes back, so the bytes cannot be had without TCP_REPAIR: the
/// checkpoint says so, the restart refuses in one line naming the closing state.
#[test]
fn a_tcp_connection_closing_with_bytes_behind_its_fin_is_refused() -> Result<()> {
    ckpt_tests::trees::shared_object_refused("inet-tcp-closing", "tree_inet.c", "closing", "closing state", false)
}
