//! UNIX sockets across checkpoint, SIGKILL and restart, one self-checking program per
//! behaviour (tests/programs/sock_*.c, zdtm style): shutdown states, sockets never bound or
//! connected, abstract names, datagram senders' names, relative names bound from another
//! directory, socket file modes, a name in a directory removed since, a name whose file a FIFO
//! replaced, files in flight (SCM_RIGHTS); and a connection not yet accepted holding bytes
//! that cannot be read, which refuses the restart (or warns with --ignore-missing-files); and
//! SO_PEERCRED of a socketpair a child made (its pid, and its ids when run as root).

mod restore_util;
use restore_util::*;
#[path = "restore_util/refuse.rs"]
mod refuse;

#[test]
fn shutdown_unconnected_and_datagram_state_comes_back() {
    ready_go("sock_unix_state", "sock_unix_state", false, |_| {}, &[]);
}

#[test]
fn shutdown_unconnected_and_datagram_state_comes_back_as_nobody() {
    ready_go("sock_unix_state", "sock_unix_state_nobody", true, |_| {}, &[]);
}

#[test]
fn names_and_their_files_come_back() {
    ready_go("sock_unix_names", "sock_unix_names", false, |_| {}, &[]);
}

#[test]
fn names_and_their_files_come_back_as_nobody() {
    ready_go("sock_unix_names", "sock_unix_names_nobody", true, |_| {}, &[]);
}

#[test]
fn files_in_flight_are_received_after_a_restart() {
    ready_go("sock_scm", "sock_scm", false, |_| {}, &[]);
}

#[test]
fn files_in_flight_are_received_after_a_restart_as_nobody() {
    ready_go("sock_scm", "sock_scm_nobody", true, |_| {}, &[]);
}

/// Connections not yet accepted with bytes in them (from a client the program holds, from one
/// that has closed since; stream and seqpacket): read at the cut and queued again, so after the
/// restart they are accepted in order with the same bytes and clients.
#[test]
fn bytes_in_connections_not_yet_accepted_come_back() {
    ready_go("sock_listen_pending", "sock_listen_pending", false, |_| {}, &[]);
}

#[test]
fn bytes_in_connections_not_yet_accepted_come_back_as_nobody() {
    ready_go("sock_listen_pending", "sock_listen_pending_nobody", true, |_| {}, &[]);
}

/// The same connections, read and queued again at a checkpoint after which the program goes on
/// (no restart): it sees them as they were.
#[test]
fn a_checkpoint_leaves_connections_not_yet_accepted_as_they_were() {
    let base = workdir("sock_listen_pending_on_ref");
    let prog = compile("sock_listen_pending", &base);
    std::fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");
    let dir = workdir("sock_listen_pending_on");
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, "sock_listen_pending");
    std::fs::write(dir.join("go"), b"").unwrap();
    let st = p.wait();
    assert!(st.success(), "the program failed after the checkpoint ({st:?}): {}", p.stderr());
    assert_eq!(p.stdout(), expected, "stderr: {}", p.stderr());
}

/// A waiting connection whose client the program holds at two fds is not given back at the cut
/// (the new client could take only one fd's place): its bytes stay unknown and the restart
/// refuses in one line.
#[test]
fn bytes_in_a_connection_not_yet_accepted_refuse_the_restart() {
    let r = refuse::refused_then_ignored("sock_listen_data", "sock_listen_data", true, "not yet accepted");
    assert!(r.stdout.contains("accepted, read: ''"), "{}", r.stdout);
}

#[test]
fn a_socketpair_a_child_made_keeps_its_peer_credentials() {
    let r = ready_go("sock_peercred", "sock_peercred", false, |_| {}, &[]);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

#[test]
fn a_socketpair_a_child_made_keeps_its_peer_credentials_as_nobody() {
    let r = ready_go("sock_peercred", "sock_peercred_nobody", true, |_| {}, &[]);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}
