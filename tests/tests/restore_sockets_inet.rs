//! TCP, UDP, UDP-lite and netlink sockets across checkpoint, SIGKILL and restart, one
//! self-checking program per behaviour (tests/programs/sock_*.c, zdtm style): unbound sockets
//! and their options, options getsockopt reads back (with a socket filter), connected UDP
//! sockets and queued datagrams with their senders' addresses, TCP connections with both ends
//! in the program (one with full buffers), listeners with connections waiting, netlink sockets
//! with their port id and groups. Each restarted run prints what an uninterrupted one prints.

mod restore_util;
use restore_util::*;

#[test]
fn unbound_sockets_stay_unbound_with_their_options() {
    ready_go("sock_unbound", "sock_unbound", false, |_| {}, &[]);
}

#[test]
fn unbound_sockets_stay_unbound_with_their_options_as_nobody() {
    ready_go("sock_unbound", "sock_unbound_nobody", true, |_| {}, &[]);
}

/// TCP connections that had ended (both sides shut down; the killed program's TIME_WAIT remains
/// hold a port) come back ended: unread bytes, then EOF, and EPIPE on write.
#[test]
fn ended_tcp_connections_stay_ended() {
    ready_go("sock_tcp_ended", "sock_tcp_ended", false, |_| {}, &[]);
}

#[test]
fn ended_tcp_connections_stay_ended_as_nobody() {
    ready_go("sock_tcp_ended", "sock_tcp_ended_nobody", true, |_| {}, &[]);
}

#[test]
fn socket_options_and_filters_come_back() {
    ready_go("sock_opts", "sock_opts", false, |_| {}, &[]);
}

#[test]
fn socket_options_and_filters_come_back_as_nobody() {
    ready_go("sock_opts", "sock_opts_nobody", true, |_| {}, &[]);
}

#[test]
fn udp_datagrams_keep_their_senders() {
    ready_go("sock_udp", "sock_udp", false, |_| {}, &[]);
}

#[test]
fn udp_datagrams_keep_their_senders_as_nobody() {
    ready_go("sock_udp", "sock_udp_nobody", true, |_| {}, &[]);
}

#[test]
fn tcp_connections_inside_the_program_keep_every_byte() {
    ready_go("sock_tcp_pair", "sock_tcp_pair", false, |_| {}, &[]);
}

#[test]
fn tcp_connections_inside_the_program_keep_every_byte_as_nobody() {
    ready_go("sock_tcp_pair", "sock_tcp_pair_nobody", true, |_| {}, &[]);
}

/// A connection between an IPv4 and an IPv6 socket (an IPv6 listener's v4-mapped client, an
/// IPv6 client of an IPv4 listener) is one connection again (it used to come back as two ends
/// whose peer was gone: the program read EOF).
#[test]
fn tcp_connections_between_ipv4_and_ipv6_ends_keep_every_byte() {
    ready_go("sock_tcp_mapped", "sock_tcp_mapped", false, |_| {}, &[]);
}

#[test]
fn tcp_connections_between_ipv4_and_ipv6_ends_keep_every_byte_as_nobody() {
    ready_go("sock_tcp_mapped", "sock_tcp_mapped_nobody", true, |_| {}, &[]);
}

#[test]
fn listeners_keep_their_waiting_connections() {
    ready_go("sock_listen_queue", "sock_listen_queue", false, |_| {}, &[]);
}

#[test]
fn listeners_keep_their_waiting_connections_as_nobody() {
    ready_go("sock_listen_queue", "sock_listen_queue_nobody", true, |_| {}, &[]);
}

/// Connections accepted through two listeners that share a port with SO_REUSEPORT (zdtm
/// socket-tcp-reuseport): the kernel queues a connection made again through that port in the
/// listener its addresses select, not always the first; the restart waited for ever in accept on
/// the other one.
#[test]
fn connections_through_listeners_sharing_a_port_come_back() {
    ready_go("sock_reuseport_conns", "sock_reuseport_conns", false, |_| {}, &[]);
}

#[test]
fn connections_through_listeners_sharing_a_port_come_back_as_nobody() {
    ready_go("sock_reuseport_conns", "sock_reuseport_conns_nobody", true, |_| {}, &[]);
}

#[test]
fn netlink_sockets_keep_their_address_and_groups() {
    ready_go("sock_netlink", "sock_netlink", false, |_| {}, &[]);
}

#[test]
fn netlink_sockets_keep_their_address_and_groups_as_nobody() {
    ready_go("sock_netlink", "sock_netlink_nobody", true, |_| {}, &[]);
}

/// Listeners whose ports the killed program's closed connections still hold (TIME_WAIT, one
/// with SO_REUSEADDR on it, which made listen fail with EADDRINUSE; one without, which made
/// every bind fail for a minute) listen again at once, with the program's SO_REUSEADDR (0).
#[test]
fn listener_comes_back_over_its_lingering_connection() {
    listener_over_time_wait("sock_listen_reuse", false);
}

#[test]
fn listener_comes_back_over_its_lingering_connection_as_nobody() {
    listener_over_time_wait("sock_listen_reuse_nobody", true);
}

fn listener_over_time_wait(tag: &str, nobody: bool) {
    let r = ready_go("sock_listen_reuse", tag, nobody, |_| {}, &[]);
    assert!(!r.stderr.contains("waiting for"), "the restart waited for the port: {}", r.stderr);
}
