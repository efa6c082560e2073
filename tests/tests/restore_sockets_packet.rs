//! Packet sockets' mapped rings (PACKET_RX_RING, PACKET_TX_RING, TPACKET_V2 and V3) across
//! checkpoint, SIGKILL and restart (tests/programs/sock_packet_ring*.c, zdtm style): the rings
//! are set again and mapped at the program's address, and packets sent after the restart are
//! read from them where the program looks; a ring that had held packets refuses the restart in
//! one line (or goes on, warned, with --ignore-missing-files). Packet sockets need CAP_NET_RAW:
//! root here. An ordinary user has it only in a network namespace of its own, which ckpt-run
//! does not give a program (a thread that enters one refuses the checkpoint).

mod restore_util;
use restore_util::*;
#[path = "restore_util/refuse.rs"]
mod refuse;
use ckpt_tests::scenario::is_root;
use ckpt_tests::skip_test;

#[test]
fn mapped_packet_rings_are_read_at_the_same_address_after_a_restart() {
    if !is_root() {
        skip_test!("packet sockets need CAP_NET_RAW (root)");
        return;
    }
    let r = ready_go("sock_packet_ring", "sock_packet_ring", false, |_| {}, &[]);
    assert!(r.stdout.contains("A received: ping0@0 ping1@1 ping2@2\n"), "{}", r.stdout);
    assert!(r.stdout.contains("B received: tx0 tx1, the first in block 0\n"), "{}", r.stdout);
    assert!(r.stdout.contains("mappings: A's B's\n"), "{}", r.stdout);
}

#[test]
fn mapped_packet_rings_are_read_at_the_same_address_after_a_restart_as_nobody() {
    skip_test!("packet sockets need CAP_NET_RAW, which user nobody has only in a network namespace of its own: ckpt-run gives a program none");
}

#[test]
fn a_mapped_packet_ring_that_held_packets_refuses_the_restart() {
    if !is_root() {
        skip_test!("packet sockets need CAP_NET_RAW (root)");
        return;
    }
    let r = refuse::refused_then_ignored("sock_packet_ring_used", "sock_packet_ring_used", false, "its mapped ring has held packets");
    assert!(r.stdout.contains("mapped: yes"), "{}", r.stdout);
}
