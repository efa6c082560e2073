//! Unit tests of `unshared::TreeSocks` and `find` on small sets: a socketpair whose ends two
//! processes hold is made once (and not reported), its holders in the images' order; a UDP
//! socket two processes hold is a lone socket; a socket a restart cannot share is reported; a
//! memfd only in flight in two processes (each runtime naming its own fd of it, one finding the
//! other's) is made once, its data the lower pid's, and refused when no image stores its data;
//! an epoll instance only in flight whose entry's file another process's fd is (found at the
//! cut) is made by the tree, refused when that fd is not found or not in an image; an inotify
//! instance only in flight gets the path another process's runtime saw its watch's inode
//! watched through, refused when none did.

use crate::unshared::{find, flight_epolls, flight_inotify, join_in_flight, stores_data, tree_deleted, TreeSocks};
use crate::{Deleted, EpollEntry, FdKind, InotifyWatch, WatchedPath, FdState, Index, SockState, Socket};

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

/// A memfd (device 1, inode 2) in flight as entry `no`, whose runtime kept it as fd `kept` and
/// found `found` one with it (kcmp at the cut), in process `pid`.
fn flying_memfd(pid: i32, no: i32, kept: i32, found: &[(i32, i32)]) -> FdState {
    let d = Deleted { path: b"/memfd:m".to_vec(), dev: 1, ino: 2, mode: libc::S_IFREG | 0o600, ..Default::default() };
    let held_with = [(pid, kept)].into_iter().chain(found.iter().copied()).collect();
    FdState { fd: no, flags: 2, pos: 16, cloexec: false, kind: FdKind::Deleted(d), dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with }
}

#[test]
fn a_memfd_only_in_flight_in_two_processes_is_made_once_with_the_lower_pids_data() {
    // Pid 11 peeked later and found pid 10's kept fd 900; pid 10 found nothing.
    let indexes = set(vec![(10, vec![flying_memfd(10, -1, 900, &[])]), (11, vec![flying_memfd(11, -1, 901, &[(10, 900)])])]);
    let mut same = Vec::new();
    join_in_flight(&indexes, &mut same);
    assert_eq!(same, vec![vec![(10, -1), (11, -1)]]);
    assert_eq!(tree_deleted(&indexes), vec![((1, 2), vec![(10, -1), (11, -1)])]);
    assert!(stores_data(10, &indexes[0].1.fds[0]) && !stores_data(11, &indexes[1].1.fds[0]));
    assert!(find(&TreeSocks::of(&indexes), Some(&same)).is_empty());
    // Both found the other's: the lower pid stores it, the other not.
    let both = set(vec![(10, vec![flying_memfd(10, -1, 900, &[(11, 901)])]), (11, vec![flying_memfd(11, -1, 901, &[(10, 900)])])]);
    assert!(stores_data(10, &both[0].1.fds[0]) && !stores_data(11, &both[1].1.fds[0]));
    assert_eq!(tree_deleted(&both).len(), 1);
}

#[test]
fn a_memfd_only_in_flight_whose_data_no_image_stores_is_refused() {
    // Both name a process of lower pid outside the set (found at the cut): neither stored it.
    let indexes = set(vec![(10, vec![flying_memfd(10, -1, 900, &[(5, 3)])]), (11, vec![flying_memfd(11, -1, 901, &[(10, 900), (5, 3)])])]);
    let mut same = Vec::new();
    join_in_flight(&indexes, &mut same);
    assert!(tree_deleted(&indexes).is_empty());
    let found = find(&TreeSocks::of(&indexes), Some(&same));
    assert_eq!(found.len(), 1);
    assert!(found[0].what.contains("are one deleted file /memfd:m"), "{}", found[0].what);
}

#[test]
fn a_memfd_only_in_flight_in_one_process_is_its_own() {
    let indexes = set(vec![(10, vec![flying_memfd(10, -1, 900, &[])]), (11, vec![])]);
    let mut same = Vec::new();
    join_in_flight(&indexes, &mut same);
    assert!(same.is_empty() && tree_deleted(&indexes).is_empty());
    assert!(find(&TreeSocks::of(&indexes), Some(&same)).is_empty());
}

/// An epoll instance in flight as entry -1 of process 11, whose entry (added as fd 5) watches a
/// file process 11 holds nowhere; `held_by`: the fd of another process found to be that file.
fn flying_epoll(held_by: Option<(i32, i32)>) -> FdState {
    let e = EpollEntry { fd: 5, events: libc::EPOLLIN as u32, data: 7, holder: None, held_by };
    FdState { fd: -1, flags: 2, pos: 0, cloexec: false, kind: FdKind::Epoll { entries: vec![e] }, dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() }
}

#[test]
fn an_epoll_instance_only_in_flight_whose_entrys_file_another_process_holds_is_made_by_the_tree() {
    let pipe = FdState { fd: 5, kind: FdKind::Pipe { ino: 77, size: 65536, data: Vec::new() }, ..flying_epoll(None) };
    let indexes = set(vec![(10, vec![pipe.clone()]), (11, vec![flying_epoll(Some((10, 5)))])]);
    let same: Vec<Vec<(i32, i32)>> = Vec::new();
    let made = flight_epolls(&indexes, &same);
    assert_eq!(made.len(), 1);
    assert_eq!((made[0].at, made[0].adds[0].1), ((11, -1), (10, 5)));
    assert!(find(&TreeSocks::of(&indexes), Some(&same)).is_empty());
    // Not found at the cut, or found as an fd no image describes (a runtime's own), or without
    // the manifest's `same` lines: refused as before.
    for held_by in [None, Some((10, 900))] {
        let indexes = set(vec![(10, vec![pipe.clone()]), (11, vec![flying_epoll(held_by)])]);
        assert!(flight_epolls(&indexes, &same).is_empty());
        let found = find(&TreeSocks::of(&indexes), Some(&same));
        assert!(found.len() == 1 && found[0].what.contains("is an epoll instance whose entry added as fd 5"));
    }
    assert_eq!(find(&TreeSocks::of(&indexes), None).len(), 1);
}

/// An inotify instance in flight as entry -2 of process 11 with watch 1 on inode 12 (device 3)
/// whose path its runtime did not see.
fn flying_inotify() -> FdState {
    let w = InotifyWatch { wd: 1, mask: libc::IN_CREATE, path: Vec::new(), dont_follow: false, gone: false, ino: 12, sdev: 3 };
    FdState { fd: -2, kind: FdKind::Inotify { watches: vec![w], queued: 0, last_wd: 1 }, ..flying_epoll(None) }
}

#[test]
fn an_inotify_instance_only_in_flight_whose_watch_another_process_saw_gets_its_path() {
    let seen = |ino: u64| WatchedPath { ino, sdev: 3, path: b"/tmp/d".to_vec(), dont_follow: false };
    let with = |ino: u64| {
        let mut v = set(vec![(10, vec![]), (11, vec![flying_inotify()])]);
        v[0].1.watched = vec![seen(ino)];
        v
    };
    let same: Vec<Vec<(i32, i32)>> = Vec::new();
    let indexes = with(12);
    let made = flight_inotify(&indexes, &same);
    assert_eq!(made.len(), 1);
    let FdKind::Inotify { watches, .. } = &made[0].1.kind else { panic!("not an inotify instance") };
    assert_eq!((made[0].0, &watches[0].path[..]), ((11, -2), &b"/tmp/d"[..]));
    assert!(find(&TreeSocks::of(&indexes), Some(&same)).is_empty());
    // Another inode seen, or no `same` lines: refused as before.
    let other = with(13);
    assert!(flight_inotify(&other, &same).is_empty());
    assert!(find(&TreeSocks::of(&other), Some(&same))[0].what.contains("is an inotify instance whose watch 1"));
    assert_eq!(find(&TreeSocks::of(&indexes), None).len(), 1);
}
