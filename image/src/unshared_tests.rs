//! Unit tests of `unshared::TreeSocks` and `find` on small sets: a socketpair whose ends two
//! processes hold is made once (and not reported), its holders in the images' order; a UDP
//! socket two processes hold is a lone socket; a socket a restart cannot share is reported.

use crate::unshared::{find, TreeSocks};
use crate::{FdKind, FdState, Index, SockState, Socket};

fn fd(fd: i32, s: Socket) -> FdState {
    FdState { fd, flags: 2, pos: 0, cloexec: false, kind: FdKind::Socket(Box::new(s)), dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() }
}

/// One end of a socketpair (unnamed UNIX stream sockets).
fn end(ino: u64, peer: u64) -> Socket {
    Socket { ino, peer, family: libc::AF_UNIX, sock_type: libc::SOCK_STREAM, state: SockState::Connected, ..Default::default() }
}

fn udp(ino: u64) -> Socket {
    Socket { ino, family: libc::AF_INET, sock_type: libc::SOCK_DGRAM, name: vec![2, 0, 0x1f, 0x90, 127, 0, 0, 1], ..Default::default() }
}

fn set(procs: Vec<(i32, Vec<FdState>)>) -> Vec<(i32, Index)> {
    procs.into_iter().map(|(pid, fds)| (pid, Index { fds, ..Default::default() })).collect()
}

#[test]
fn a_socketpair_held_by_two_processes_is_made_once_and_not_reported() {
    // Both processes hold both ends (a fork after socketpair); the parent's pid is the higher.
    let indexes = set(vec![(20, vec![fd(3, end(7, 8)), fd(4, end(8, 7))]), (10, vec![fd(3, end(7, 8)), fd(4, end(8, 7))])]);
    let socks = TreeSocks::of(&indexes);
    let conns: Vec<(u64, u64)> = socks.connections().iter().map(|(a, b)| (a.ino, b.ino)).collect();
    assert_eq!(conns, vec![(7, 8)]);
    assert!(socks.shared_listeners().is_empty() && socks.unix_links().is_empty() && socks.lone_sockets().is_empty());
    // The first holder in the images' order.
    assert_eq!((socks.first_holder(7), socks.first_holder(9)), (Some(20), None));
    assert!(find(&socks, None).is_empty());
}

#[test]
fn a_udp_socket_held_by_two_processes_is_a_lone_socket() {
    let indexes = set(vec![(10, vec![fd(5, udp(30))]), (11, vec![fd(5, udp(30))])]);
    let socks = TreeSocks::of(&indexes);
    assert_eq!(socks.lone_sockets().iter().map(|s| s.ino).collect::<Vec<_>>(), vec![30]);
    assert!(socks.connections().is_empty());
    assert!(find(&socks, None).is_empty());
}

#[test]
fn a_shared_socket_the_restart_cannot_make_once_is_reported() {
    // A UNIX end whose peer is outside the set, held by two processes: not a pair, not linked.
    let lonely = || Socket { state: SockState::PeerGone, ..end(40, 0) };
    let indexes = set(vec![(10, vec![fd(6, lonely())]), (11, vec![fd(6, lonely())])]);
    let socks = TreeSocks::of(&indexes);
    let found = find(&socks, None);
    assert_eq!(found.len(), 1);
    assert!(found[0].what.contains("pid 10 fd 6 and pid 11 fd 6 are one socket"), "{}", found[0].what);
}
