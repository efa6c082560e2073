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
