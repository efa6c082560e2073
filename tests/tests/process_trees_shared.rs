//! Objects that several processes of a process tree share (issue 13), beyond pipes and shared
//! memory: each comes back shared after a restart, or the restart refuses the set in one line
//! (and goes on only with --ignore-missing-files, with a warning naming what was lost). The
//! programs (tree_shared_objects.c) keep working through the shared object across the checkpoint; the
//! whole tree is SIGKILLed and restarted.
//! - a file in flight (SCM_RIGHTS, queued in a socketpair only the parent holds) that the
//!   child holds as an fd (inherited): one open file again (found with kcmp at the cut, made
//!   once with the child's fd), so that both write at one offset (also twice as nobody);
//! - an epoll instance inherited by fork, whose interest list the child changes and the parent
//!   waits on, and an inotify instance to which the child adds watches whose events the parent
//!   reads: made once before the tree is forked (the interest list added by one holder once its
//!   fds are in place), so that both use one again (the inotify one twice restarted as nobody);
//! - an event fd, a timer fd and a signal fd inherited by fork, through which the child signals
//!   the parent (it adds to the counter, arms the timer, changes the signal fd's O_NONBLOCK and
//!   sends a signal): found exactly (kcmp at the cut), made once before the tree is forked and
//!   inherited, so that both use one object again (the event fd also twice restarted as nobody);
//! - socketpairs (stream, datagram, seqpacket) between parent and child, with an answer queued
//!   unread at checkpoint time: made once before the tree is forked, each end at its fd numbers
//!   in each process, the unread answer there exactly once (the stream one held by both
//!   processes, both ends; also twice restarted as nobody);
//! - a socketpair whose child end is the child's stdin (fd 0, which is otherwise left to
//!   whoever runs the restart): placed there too;
//! - a loopback TCP connection between parent (accepted from its listener, still open) and
//!   child, with an answer queued unread: made once with its two addresses, refilled once (also
//!   twice restarted as nobody);
//! - a listening socket (TCP, UNIX named, UNIX abstract) held by parent and child, from which
//!   each accepts in turn the connections the other makes: made once before the tree is forked
//!   and inherited, so that both accept from one listener again (the UNIX one twice restarted
//!   as nobody).

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn inflight_file(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["inflight-file", "200", "30"])
}

#[test]
fn a_file_in_flight_in_the_parents_own_socket_that_the_child_holds_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-inflight-file", inflight_file, &[20], false, 2).map(drop)
}

#[test]
fn a_file_in_flight_in_the_parents_own_socket_that_the_child_holds_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-inflight-file-nobody", inflight_file, &[15, 50], true, 2).map(drop)
}

fn epoll(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["epoll", "200", "40"])
}

fn inotify(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["inotify", "200", "40"])
}

#[test]
fn an_epoll_instance_shared_by_fork_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-epoll", epoll, &[20], false, 2).map(drop)
}

#[test]
fn an_inotify_instance_shared_by_fork_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-inotify-nobody", inotify, &[15, 50], true, 2).map(drop)
}

fn eventfd(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["eventfd", "200", "40"])
}

fn timerfd(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["timerfd", "200", "40"])
}

fn signalfd(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["signalfd", "200", "40"])
}

#[test]
fn an_event_fd_shared_by_fork_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-eventfd", eventfd, &[20], false, 2).map(drop)
}

#[test]
fn an_event_fd_shared_by_fork_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-eventfd-nobody", eventfd, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_timer_fd_shared_by_fork_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-timerfd", timerfd, &[20], false, 2).map(drop)
}

#[test]
fn a_signal_fd_shared_by_fork_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-signalfd", signalfd, &[20], false, 2).map(drop)
}

fn pair_stream(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["socketpair-stream", "200", "40"])
}

fn pair_stdin(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["socketpair-stdin", "200", "40"])
}

#[test]
fn a_socketpair_that_is_the_childs_stdin_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-pair-stdin", pair_stdin, &[20], false, 2).map(drop)
}

fn pair_dgram(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["socketpair-dgram", "200", "40"])
}

fn pair_seqpacket(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["socketpair-seqpacket", "200", "40"])
}

#[test]
fn a_stream_socketpair_held_by_both_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-pair-stream", pair_stream, &[20], false, 2).map(drop)
}

#[test]
fn a_stream_socketpair_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-pair-stream-nobody", pair_stream, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_datagram_socketpair_between_two_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-pair-dgram", pair_dgram, &[15, 50], false, 2).map(drop)
}

#[test]
fn a_seqpacket_socketpair_between_two_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-pair-seqpacket", pair_seqpacket, &[20], false, 2).map(drop)
}

fn tcp(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["tcp", "200", "40"])
}

#[test]
fn a_loopback_tcp_connection_between_two_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-tcp", tcp, &[20], false, 2).map(drop)
}

#[test]
fn a_loopback_tcp_connection_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-tcp-nobody", tcp, &[15, 50], true, 2).map(drop)
}

fn tcp_mapped(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["tcp-mapped", "200", "40"])
}

/// The parent's end accepted from a dual-stack IPv6 listener, the child's an IPv4 socket: one
/// connection whose ends name each other in different families (it used to come back as two
/// ends whose peer was gone).
#[test]
fn a_tcp_connection_between_an_ipv6_and_an_ipv4_end_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-tcp-mapped", tcp_mapped, &[20], false, 2).map(drop)
}

#[test]
fn a_tcp_connection_between_an_ipv6_and_an_ipv4_end_continues_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-tcp-mapped-nobody", tcp_mapped, &[20], true, 2).map(drop)
}

fn listener_tcp(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["listener-tcp", "200", "40"])
}

fn listener_unix(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["listener-unix", "200", "40"])
}

fn listener_abstract(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["listener-abstract", "200", "40"])
}

#[test]
fn a_tcp_listener_held_by_both_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-listener-tcp", listener_tcp, &[20], false, 2).map(drop)
}

#[test]
fn a_unix_listener_held_by_both_processes_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("shared-listener-unix-nobody", listener_unix, &[15, 50], true, 2).map(drop)
}

#[test]
fn an_abstract_unix_listener_held_by_both_processes_continues() -> Result<()> {
    ckpt_tests::trees::verify("shared-listener-abstract", listener_abstract, &[20], false, 2).map(drop)
}
