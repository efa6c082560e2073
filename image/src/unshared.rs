//! Objects that several processes of a tree share but that a tree's restart cannot share again
//! yet (it shares pipes (`tree_pipes`), shared memory, socketpairs and TCP connections
//! (`TreeSocks::connections`), listeners (`TreeSocks::shared_listeners`), and open files, event fds, timer fds,
//! signal fds, epoll and inotify instances that the manifest says two processes hold as one
//! (`tree_files`, `tree_objects`), UNIX sockets that reach each other by name (`TreeSocks::unix_links`),
//! deleted files (`tree_deleted`)): one other socket held by two processes (or linked by name
//! with a file in flight in a queue), one open file with its common offset (inherited by
//! fork) in a set without the manifest's `same` lines, an event, timer or signal fd, epoll or
//! inotify instance inherited by fork at fds 0-2 (or an epoll instance no holder's image has
//! every watched file of), one deleted file in a set without `same` lines, held in flight
//! too with no fd or other process's file in flight one with it, or whose data no holder's
//! image stores, a file in flight that another process holds otherwise than as
//! one with its fd (below), an epoll instance only in flight whose entry's file only another
//! process holds where no fd of the set's images is found to be that file (`EpollEntry::held_by`:
//! else the tree makes it and that process adds the entry, `flight_epolls`), an inotify instance
//! only in flight whose watch another process added where no other process's runtime saw its
//! inode being watched through a path that still names it (`Index::watched`: else that path is
//! taken, `flight_inotify`) (`in_flight_partial`). Restarted, each
//! process would get its own copy (a socket whose peer is closed, a file with its own offset):
//! ckpt-restart refuses such a set unless the user asked to go on (--ignore-missing-files), and
//! the checkpoint that wrote it says so in one line.
//!
//! Found from the images and the manifest. Sockets and deleted files by their inodes and peers.
//! Open files, event fds, timer fds, signal fds, epoll and inotify instances held by two
//! processes (inherited by fork) exactly, by the manifest's `same` groups (kcmp at the cut). A
//! set without them (version 1) falls back for open files to a heuristic: the same file
//! (device, inode) at the same fd number with the same flags and offset in both processes, which
//! could also match a file each process opened on its own (and sees none of the others).
//!
//! Files in flight (passed with SCM_RIGHTS, still queued in a socket: the entries with negative
//! numbers) that are one open file with another process's fd are made once with it: a pipe or
//! socket by its inode (`tree_pipes`, `TreeSocks::connections` and `shared_listeners` count
//! holders in flight), a regular or deleted file (memfd), an event, timer or signal fd, an epoll or inotify
//! instance by the fds kcmp found at the cut (`FdState::held_with`, `join_in_flight`; in flight
//! in several processes' sockets at once, each joins the one group: `tree_files`,
//! `tree_deleted`, `tree_objects`; held by no fd but in flight in two processes, by the runtime's
//! fd of it that the other process's image names: a regular or deleted file, a memfd, an event,
//! timer or signal fd). A deleted file or memfd only in flight in one process (its sender closed
//! its fd) is that process's own, with the data its image stores. Any other has
//! no fd number to compare: one is the same object as another process's fd or file in flight
//! when everything the image says of it matches (a socket's or deleted file's inode;
//! a file's device, inode, flags and offset; an event fd's count, a timer's clock and interval,
//! a signal fd's mask, ...; a pipe's inode when the tree's restart does not share that pipe).
//! One object gives the same description in every process of one consistent cut, so no shared
//! one is missed; two objects that merely look alike are refused too (the safe side).

use crate::inetaddr::same_inet;
use crate::{FdKind, FdState, Index, Socket};
use std::collections::{HashMap, HashSet};

/// One object shared by two processes: what it is, as one clause naming both.
pub struct Unshared {
    pub what: String,
    /// What the processes get back instead.
    pub instead: &'static str,
}

/// Where one fd is: (pid, fd).
type At = (i32, i32);

/// Every object of the images of `socks` (pid, image index) held by two processes that comes
/// back separate; `same`: the manifest's exact groups of fds that are one open file (None: not
/// known).
pub fn find(socks: &TreeSocks, same: Option<&[Vec<At>]>) -> Vec<Unshared> {
    let indexes = socks.indexes();
    // The fds that are not dups of a lower fd (a dup is the same object), and not in flight.
    let fds = || indexes.iter().flat_map(|(pid, ix)| ix.fds.iter().filter(|f| f.fd >= 0 && f.dup_of.is_none()).map(move |f| (*pid, f)));
    let mut out = Vec::new();
    let mut pairs: HashSet<u64> = socks.connections().iter().flat_map(|(a, b)| [a.ino, b.ino]).collect();
    pairs.extend(socks.shared_listeners().iter().map(|l| l.ino));
    pairs.extend(socks.unix_links().iter().flatten().map(|(_, s)| s.ino));
    pairs.extend(socks.lone_sockets().iter().map(|s| s.ino));
    // Connections to other tasks of a step: made once by the tree's root, whichever processes
    // held them (ckpt-restart's step::join_tree), and handed to each.
    pairs.extend(job_connections(indexes));
    // (Shared again only where the manifest tells open files apart: `same`.)
    let deleted_held = if same.is_some() { tree_deleted(indexes) } else { Vec::new() };
    let deleted: HashSet<(u64, u64)> = deleted_held.iter().map(|(id, _)| *id).collect();
    // The groups of `same` the tree's restart makes once, asked once (each pass looks every
    // holder of every group up: 87,000 at 128 processes x 682 fds).
    let pipes = tree_pipes(indexes);
    let by_at = if same.is_some() { by_holder(indexes) } else { HashMap::new() };
    let made_once: Vec<&Vec<At>> = same.map_or_else(Vec::new, |groups| files_of(&by_at, groups).into_iter().chain(objects_of(&by_at, &pipes, groups)).collect());
    let mut first: HashMap<Key, At> = HashMap::new();
    for (pid, f) in fds() {
        let made_once = |k: &Key| match k {
            Key::Socket(ino) => pairs.contains(ino),
            Key::Deleted(dev, ino) => deleted.contains(&(*dev, *ino)),
            Key::File(..) => false,
        };
        let Some(key) = key(f).filter(|k| !made_once(k)) else { continue };
        if same.is_some() && matches!(key, Key::File(..)) {
            continue; // known exactly below
        }
        match first.get(&key) {
            Some(&(p, fd)) if p != pid => out.push(describe(&key, (p, fd), (pid, f.fd), f)),
            Some(_) => {}
            None => {
                first.insert(key, (pid, f.fd));
            }
        }
    }
    if let Some(groups) = same {
        exact(&by_at, groups, &made_once, &mut out);
    }
    // Files in flight made once with the fds they are one open file with (`join_in_flight`).
    let mut joined: HashSet<At> = made_once.iter().copied().flatten().copied().collect();
    joined.extend(deleted_held.iter().flat_map(|(_, at)| at.iter().copied()));
    in_flight(indexes, &pipes, &pairs, &joined, &mut out);
    in_flight_partial(indexes, &joined, same.is_some(), &mut out);
    // The two ends of one connection in two processes (either end may be in flight).
    let mut sockets: HashMap<u64, (At, &Socket)> = HashMap::new();
    for (pid, f) in entries(indexes) {
        if let FdKind::Socket(s) = &f.kind {
            sockets.entry(s.ino).or_insert(((pid, f.fd), s));
        }
    }
    let mut reported: HashSet<(At, At)> = HashSet::new();
    for (pid, f) in entries(indexes) {
        let FdKind::Socket(s) = &f.kind else { continue };
        if pairs.contains(&s.ino) {
            continue;
        }
        let peer = if s.family == libc::AF_UNIX {
            sockets.get(&s.peer).filter(|_| s.peer != 0)
        } else {
            // (Two ended ends come back ended each on its own: nothing passes between them.)
            sockets.values().find(|(_, o)| tcp_ends(s, o) && !(s.state == crate::SockState::PeerGone && o.state == crate::SockState::PeerGone))
        };
        if let Some(&((p, fd), o)) = peer {
            // Each pair once (a datagram client's server need not be connected back to it).
            let me = (pid, f.fd);
            if p != pid && reported.insert((me.min((p, fd)), me.max((p, fd)))) {
                let shut_unsent = |x: &Socket| x.shutdown & 2 != 0 && x.unsent > 0;
                let conn = if s.family != libc::AF_UNIX && (shut_unsent(s) || shut_unsent(o)) {
                    let x = if shut_unsent(s) { s } else { o };
                    format!(
                        "the two ends of one TCP connection, one of which had shut down writing with {} bytes not yet sent (a closing state: they did not fit in the other end's receive buffer at checkpoint time, and cannot be read without CAP_NET_ADMIN, TCP_REPAIR)",
                        x.unsent
                    )
                } else if s.family != libc::AF_UNIX {
                    "the two ends of one TCP connection".to_string()
                } else if unnamed(&s.name) && unnamed(&s.peer_name) && unnamed(&o.name) {
                    "the two ends of one socketpair".to_string()
                } else {
                    "the two ends of one UNIX connection".to_string()
                };
                out.push(Unshared { what: format!("{} and {} are {conn}", at((pid, f.fd)), at((p, fd))), instead: "separate, closed connections" });
            }
        }
    }
    out
}

/// The open files, event/timer/signal fds, epoll and inotify instances that `groups` (kcmp at
/// the cut) say two processes hold as one: the first two holders of each (not the groups the
/// tree's restart makes once, `made_once`). `by_at`: `by_holder`.
fn exact(by_at: &HashMap<At, &FdState>, groups: &[Vec<At>], made_once: &[&Vec<At>], out: &mut Vec<Unshared>) {
    let state = |at: At| by_at.get(&at).copied().filter(|f| f.dup_of.is_none());
    for group in groups.iter().filter(|g| !made_once.contains(g)) {
        let held: Vec<(At, &FdState)> = group.iter().filter_map(|&at| Some((at, state(at)?))).filter(|(_, f)| comes_back_separate(f)).collect();
        let Some(&(a, f)) = held.first() else { continue };
        let Some(&(b, _)) = held.iter().find(|(o, _)| o.0 != a.0) else { continue };
        let both = format!("{} and {}", at(a), at(b));
        out.push(match &f.kind {
            FdKind::Path { path, .. } => Unshared {
                what: format!("{both} are one open file {} (offset {}, shared by fork)", String::from_utf8_lossy(path), f.pos),
                instead: "separate open files, each with its own offset",
            },
            k => Unshared { what: format!("{both} are one {} (shared by fork)", kind_name(k)), instead: "separate objects" },
        });
    }
}

/// The open files (regular, by path) that `groups` say two processes or more hold as one, which
/// a tree's restart opens once and shares (with their one offset): every holder that is not a
/// dup at a fd above 2 (stdio is whoever runs the restart's) or in flight (`join_in_flight`),
/// in two processes or more.
pub fn tree_files<'a>(indexes: &[(i32, Index)], groups: &'a [Vec<At>]) -> Vec<&'a Vec<At>> {
    files_of(&by_holder(indexes), groups)
}

/// `tree_files` with `by_holder`'s table.
fn files_of<'a>(by_at: &HashMap<At, &FdState>, groups: &'a [Vec<At>]) -> Vec<&'a Vec<At>> {
    let state = |at: At| by_at.get(&at).copied();
    let shareable = |group: &Vec<At>| {
        let held: Vec<(At, &FdState)> = group.iter().filter_map(|&at| Some((at, state(at)?))).filter(|(_, f)| f.dup_of.is_none()).collect();
        held.iter().all(|(_, f)| matches!(f.kind, FdKind::Path { is_dir: false, .. }) && (f.fd > 2 || f.fd < 0) && f.flags & libc::O_PATH == 0 && f.id.ino != 0)
            && held.iter().any(|(a, _)| a.0 != held[0].0.0)
    };
    groups.iter().filter(|g| shareable(g)).collect()
}

/// The deleted regular files (memfds too) that two processes or more hold, which a tree's
/// restart makes once (one inode, with its data) and opens for every holder: each inode (device,
/// inode) with its holders (pid, fd; not dups), lowest first. The manifest's `same` (kcmp at the
/// cut) tells which holders are one open file description (opened once) and which each have
/// their own open; a set without it is refused. Files in flight that are one open file with
/// other processes' fds or files in flight are holders too (`join_in_flight`); not made
/// (refused by `find`): one another file in flight refers to, or one whose data no holder's
/// image stores (`stores_data`).
pub fn tree_deleted(indexes: &[(i32, Index)]) -> Vec<((u64, u64), Vec<At>)> {
    let by_at = by_holder(indexes);
    // (One in flight that is one open file with other processes' fds or files in flight is
    // opened with them: `join_in_flight`.)
    let linked: HashSet<At> = flight_links(indexes).into_iter().flat_map(|(me, with)| with.into_iter().chain([me])).collect();
    let mut held: HashMap<(u64, u64), (Vec<At>, bool)> = HashMap::new();
    for (pid, f) in entries(indexes) {
        let FdKind::Deleted(d) = &f.kind else { continue };
        if !d.is_file() {
            continue;
        }
        let h = held.entry((d.dev, d.ino)).or_default();
        if f.fd < 0 && !linked.contains(&(pid, f.fd)) {
            h.1 = true;
        } else {
            h.0.push((pid, f.fd));
        }
    }
    let stored = |at: &At| by_at.get(at).is_some_and(|f| stores_data(at.0, f));
    let mut out: Vec<((u64, u64), Vec<At>)> = held
        .into_iter()
        .filter(|(_, (at, flying))| !flying && at.iter().any(|a| a.0 != at[0].0) && at.iter().any(stored))
        .map(|(id, (mut at, _))| {
            at.sort_unstable();
            (id, at)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Whether the image of process `pid` stores the data of the deleted file (or memfd) entry `f`
/// (the runtime's `deleted::data_owners` asks the same): an fd always (its first of the inode);
/// a file in flight unless its image names a process of lower pid holding it as one open file
/// (`FdState::held_with`: an fd, or a runtime's fd of it in flight there too), whose image
/// stores it (or one of lower pid still). The lowest pid holding it stores it, whoever found
/// whom at the cut; a process of higher pid holding it as an fd stores it too.
pub fn stores_data(pid: i32, f: &FdState) -> bool {
    f.fd >= 0 || !f.held_with.iter().any(|h| h.0 != pid && h.0 < pid)
}

/// Whether a runtime of a tree names its own fd of file in flight `f` in the entry's `held_with`
/// (and keeps that fd until every process is captured, for the others' kcmp): a regular file, a
/// deleted file or memfd, an event, timer or signal fd, which a tree's restart makes once for
/// holders that all hold it only in flight (`tree_files`, `tree_deleted`, `tree_objects`).
pub fn named_when_in_flight(f: &FdState) -> bool {
    match &f.kind {
        FdKind::Path { is_dir: false, .. } => f.flags & libc::O_PATH == 0,
        FdKind::Deleted(d) => d.is_file(),
        FdKind::EventFd { .. } | FdKind::TimerFd { .. } | FdKind::SignalFd { .. } => true,
        _ => false,
    }
}

/// Put each file in flight whose image names fds of other processes that are one open file
/// description with it (`FdState::held_with`, kcmp at the cut) into their group of `same` (a
/// new group where none holds them): the tree's restart then makes it once with them, as an
/// fd shared by fork (`tree_files`, `tree_deleted`). Only fds the set's images hold count (not
/// a runtime's own, not a process outside the set), and a runtime's fd of a file only in flight
/// in that process, which its image names in the entry's own `held_with` (its pid,
/// `named_when_in_flight`): that process's file in flight (a file only in flight in two
/// processes' queues).
pub fn join_in_flight(indexes: &[(i32, Index)], same: &mut Vec<Vec<At>>) {
    for (me, with) in flight_links(indexes) {
        match same.iter_mut().find(|g| with.iter().any(|at| g.contains(at))) {
            Some(g) => {
                for at in with.into_iter().chain([me]) {
                    if !g.contains(&at) {
                        g.push(at);
                    }
                }
            }
            None => same.push(with.into_iter().chain([me]).collect()),
        }
    }
}

/// Each file in flight (pid, number) whose image names entries of other processes of the set
/// that are one open file with it (`join_in_flight`), with those entries.
fn flight_links(indexes: &[(i32, Index)]) -> Vec<(At, Vec<At>)> {
    let by_at = by_holder(indexes);
    let read_through: HashMap<At, At> = entries(indexes)
        .filter(|(_, f)| f.fd < 0 && named_when_in_flight(f))
        .flat_map(|(pid, f)| f.held_with.iter().filter(move |h| h.0 == pid && h.1 >= 0).map(move |&h| (h, (pid, f.fd))))
        .collect();
    let mut out = Vec::new();
    for (pid, f) in entries(indexes).filter(|(_, f)| f.fd < 0) {
        let as_entry = |at: &At| if at.1 >= 0 && by_at.contains_key(at) { Some(*at) } else { read_through.get(at).copied() };
        let with: Vec<At> = f.held_with.iter().filter(|at| at.0 != pid).filter_map(as_entry).collect();
        if !with.is_empty() {
            out.push(((pid, f.fd), with));
        }
    }
    out
}

/// The POSIX message queues that two processes or more hold (by inode), which a tree's restart
/// makes once and opens for every holder (once for holders that are one open file description):
/// each queue's inode with its holders (pid, fd; not dups, not in flight), lowest first.
pub fn tree_mqueues(indexes: &[(i32, Index)]) -> Vec<(u64, Vec<At>)> {
    let mut held: HashMap<u64, Vec<At>> = HashMap::new();
    for (pid, f) in entries(indexes).filter(|(_, f)| f.fd >= 0) {
        if let FdKind::Mqueue(q) = &f.kind {
            held.entry(q.ino).or_default().push((pid, f.fd));
        }
    }
    let mut out: Vec<(u64, Vec<At>)> = held
        .into_iter()
        .filter(|(_, at)| at.iter().any(|a| a.0 != at[0].0))
        .map(|(ino, mut at)| {
            at.sort_unstable();
            (ino, at)
        })
        .collect();
    out.sort_unstable();
    out
}

/// The event fds, timer fds, signal fds, epoll and inotify instances, and ends of the tree's
/// pipes (`tree_pipes`: one open file of the pipe, with its flags, which an epoll entry is
/// known by) that `groups` say two processes or more hold as one (inherited by fork, or in flight
/// as one with another's fd: `join_in_flight`), which a tree's restart makes once and shares:
/// every holder not a dup at a fd above 2 or in flight, in two processes or more, all of one kind;
/// an epoll instance when one holder's image has every entry's file (`epoll_filler`).
pub fn tree_objects<'a>(indexes: &[(i32, Index)], groups: &'a [Vec<At>]) -> Vec<&'a Vec<At>> {
    objects_of(&by_holder(indexes), &tree_pipes(indexes), groups)
}

/// `tree_objects` with `by_holder`'s table and the tree's pipes (`tree_pipes`).
fn objects_of<'a>(by_at: &HashMap<At, &FdState>, pipes: &HashSet<u64>, groups: &'a [Vec<At>]) -> Vec<&'a Vec<At>> {
    let state = |at: At| by_at.get(&at).copied();
    let shareable = |group: &Vec<At>| {
        let held: Vec<(At, &FdState)> = group.iter().filter_map(|&at| Some((at, state(at)?))).filter(|(_, f)| f.dup_of.is_none()).collect();
        let kind = |f: &FdState| match f.kind {
            FdKind::EventFd { .. } => 1,
            FdKind::TimerFd { .. } => 2,
            FdKind::SignalFd { .. } => 3,
            FdKind::Epoll { .. } => 4,
            FdKind::Inotify { .. } => 5,
            FdKind::Pipe { ino, .. } if pipes.contains(&ino) => 6,
            _ => 0,
        };
        let Some(&(first, f0)) = held.first() else { return false };
        kind(f0) != 0
            && held.iter().all(|(_, f)| kind(f) == kind(f0) && (f.fd > 2 || f.fd < 0))
            && held.iter().any(|(a, _)| a.0 != first.0)
            && (kind(f0) != 4 || filler(by_at, group).is_some())
    };
    groups.iter().filter(|g| shareable(g)).collect()
}

/// The holder (pid, fd) of shared epoll instance `group` that adds its interest list again once
/// its own fds are in place: the first whose image has every entry's file (an entry is known
/// by its file and fd number: another holder may have closed the file since).
pub fn epoll_filler(indexes: &[(i32, Index)], group: &[At]) -> Option<At> {
    filler(&by_holder(indexes), group)
}

fn filler(by_at: &HashMap<At, &FdState>, group: &[At]) -> Option<At> {
    group.iter().copied().find(|at| {
        let f = by_at.get(at).copied().filter(|f| f.dup_of.is_none());
        matches!(f, Some(FdState { kind: FdKind::Epoll { entries }, .. }) if entries.iter().all(|e| e.holder.is_some()))
    })
}

/// Every entry of `indexes` by holder (pid, fd number; the first of a number), looked up once
/// per holder of a group: a tree whose hundreds of processes all hold hundreds of the same fds
/// (zdtm session03) made a search of every image's fds per holder cost processes x fds again.
fn by_holder(indexes: &[(i32, Index)]) -> HashMap<At, &FdState> {
    let mut out = HashMap::new();
    for (pid, ix) in indexes {
        for f in &ix.fds {
            out.entry((*pid, f.fd)).or_insert(f);
        }
    }
    out
}

/// Whether a fd that two processes hold as one comes back as one object per process: a file
/// (not stdio, which whoever runs the restart gives every process again), an event, timer or
/// signal fd, an epoll or inotify instance.
fn comes_back_separate(f: &FdState) -> bool {
    match &f.kind {
        FdKind::Path { is_dir: false, .. } => f.fd > 2 && f.flags & libc::O_PATH == 0,
        FdKind::EventFd { .. } | FdKind::TimerFd { .. } | FdKind::SignalFd { .. } | FdKind::Epoll { .. } | FdKind::Inotify { .. } => true,
        _ => false,
    }
}

/// The inodes of the connections to other tasks of a step that `indexes` hold (`Socket::job`).
fn job_connections(indexes: &[(i32, Index)]) -> impl Iterator<Item = u64> + '_ {
    entries(indexes).filter_map(|(_, f)| match &f.kind {
        FdKind::Socket(s) if s.job.is_some() => Some(s.ino),
        _ => None,
    })
}

/// Every entry of `indexes` that is not a dup of another of its process (a dup is the same
/// object): the fds and the files in flight.
fn entries(indexes: &[(i32, Index)]) -> impl Iterator<Item = (i32, &FdState)> {
    indexes.iter().flat_map(|(pid, ix)| ix.fds.iter().filter(|f| f.dup_of.is_none()).map(move |f| (*pid, f)))
}

/// Files in flight that are the same object as an fd or a file in flight of another process
/// (by `Seen`), each pair once; `shared_pipes`: `tree_pipes`.
fn in_flight(indexes: &[(i32, Index)], shared_pipes: &HashSet<u64>, pairs: &HashSet<u64>, joined: &HashSet<At>, out: &mut Vec<Unshared>) {
    let seen = |f: &FdState| seen(f).filter(|k| !matches!(k, Seen::Pipe(ino) if shared_pipes.contains(ino)) && !matches!(k, Seen::Socket(ino) if pairs.contains(ino)));
    let mut held: HashMap<Seen, Vec<At>> = HashMap::new();
    for (pid, f) in entries(indexes) {
        if let Some(k) = seen(f) {
            held.entry(k).or_default().push((pid, f.fd));
        }
    }
    for (pid, f) in entries(indexes).filter(|(pid, f)| f.fd < 0 && !joined.contains(&(*pid, f.fd))) {
        let Some(k) = seen(f) else { continue };
        let me = (pid, f.fd);
        // Another process's fd, or its file in flight when that one is not reported as well.
        let Some(&other) = held[&k].iter().find(|o| o.0 != pid && (o.1 >= 0 || **o > me)) else { continue };
        let what = match &f.kind {
            FdKind::Socket(_) => "one socket".to_string(),
            FdKind::Deleted(d) => format!("one deleted file {}", String::from_utf8_lossy(&d.path)),
            FdKind::Path { path, .. } => format!("one open file {} (offset {})", String::from_utf8_lossy(path), f.pos),
            FdKind::Pipe { .. } => "one end of one pipe".to_string(),
            _ => format!("one {}", kind_name(&f.kind)),
        };
        out.push(Unshared { what: format!("{} and {} are {what}", at(me), at(other)), instead: "separate objects" });
    }
}

/// Epoll and inotify instances in flight that come back as themselves (not made with another
/// process's fd of them, `joined`) without part of what they hold: an epoll entry whose file
/// their process has no fd of and that no other process's fd of the set holds either
/// (`EpollEntry::held_by`; with the manifest's `same` lines, `exact`, the tree's restart makes
/// such an instance and that process adds the entry: `flight_epolls`), an inotify watch their
/// process's runtime did not see being added (another process added it) and whose inode no
/// other process's runtime saw being watched through a path that still names it
/// (`Index::watched`; else, `exact`, the watch is added through that path: `flight_inotify`).
fn in_flight_partial(indexes: &[(i32, Index)], joined: &HashSet<At>, exact: bool, out: &mut Vec<Unshared>) {
    let by_at = by_holder(indexes);
    for (pid, f) in entries(indexes).filter(|(pid, f)| f.fd < 0 && !joined.contains(&(*pid, f.fd))) {
        let what = match &f.kind {
            FdKind::Epoll { entries } => entries.iter().find(|e| e.holder.is_none() && !(exact && added_by(&by_at, pid, e).is_some())).map(|e| {
                format!("{} is an epoll instance whose entry added as fd {} watches a file that another process of the tree holds and pid {pid} has no fd of", at((pid, f.fd)), e.fd)
            }),
            FdKind::Inotify { watches, .. } => watches.iter().find(|w| w.wd > 0 && !w.gone && w.path.is_empty() && !(exact && watched_by_another(indexes, pid, w).is_some())).map(|w| {
                format!("{} is an inotify instance whose watch {} another process of the tree added (pid {pid} did not see its path, and no process of the tree saw a path that still names its inode)", at((pid, f.fd)), w.wd)
            }),
            _ => None,
        };
        if let Some(what) = what {
            out.push(Unshared { what, instead: "separate objects: the instance without that entry or watch" });
        }
    }
}

/// The path another process's runtime saw the inode of watch `w` of process `pid` being
/// watched through, which still names it (`Index::watched`): of a watch `pid`'s runtime did not
/// see being added.
pub fn watched_by_another<'a>(indexes: &'a [(i32, Index)], pid: i32, w: &crate::InotifyWatch) -> Option<&'a crate::WatchedPath> {
    if w.ino == 0 {
        return None;
    }
    indexes.iter().filter(|(p, _)| *p != pid).find_map(|(_, ix)| ix.watched.iter().find(|o| (o.ino, o.sdev) == (w.ino, w.sdev)))
}

/// The inotify instances only in flight, not made with another process's fd of them (not in a
/// group of `tree_objects(indexes, groups)`), with a watch their process's runtime did not see
/// being added and another's did (`watched_by_another`): each (pid, number in flight) with its
/// description, those watches' paths filled in.
pub fn flight_inotify(indexes: &[(i32, Index)], groups: &[Vec<At>]) -> Vec<(At, FdState)> {
    let by_at = by_holder(indexes);
    let joined: HashSet<At> = objects_of(&by_at, &tree_pipes(indexes), groups).into_iter().flatten().copied().collect();
    let mut out = Vec::new();
    for (pid, f) in entries(indexes).filter(|(pid, f)| f.fd < 0 && !joined.contains(&(*pid, f.fd))) {
        let FdKind::Inotify { watches, .. } = &f.kind else { continue };
        if !watches.iter().any(|w| w.wd > 0 && !w.gone && w.path.is_empty() && watched_by_another(indexes, pid, w).is_some()) {
            continue;
        }
        let mut g = f.clone();
        if let FdKind::Inotify { watches, .. } = &mut g.kind {
            for w in watches.iter_mut().filter(|w| w.wd > 0 && !w.gone && w.path.is_empty()) {
                if let Some(o) = watched_by_another(indexes, pid, w) {
                    w.path = o.path.clone();
                    w.dont_follow = o.dont_follow;
                }
            }
        }
        out.push(((pid, f.fd), g));
    }
    out
}

/// The fd of another process of the set that adds entry `e` of an epoll instance only in
/// flight in process `pid` (`EpollEntry::held_by`): one its image describes as an fd.
fn added_by(by_at: &HashMap<At, &FdState>, pid: i32, e: &crate::EpollEntry) -> Option<At> {
    e.held_by.filter(|h| h.0 != pid && h.1 >= 0 && by_at.contains_key(h))
}

/// One epoll instance only in flight (its process holds it by no fd) with entries whose files
/// only other processes of the tree hold (`EpollEntry::held_by`): the tree's restart makes it
/// (empty), its process takes it and adds the entries whose files it holds, and each other
/// process adds the entries whose file it holds with its own fd of it.
pub struct FlightEpoll {
    /// The instance: (pid, its number in flight).
    pub at: At,
    /// Each entry another process adds: the entry and that process's fd of its file.
    pub adds: Vec<(crate::EpollEntry, At)>,
}

/// The epoll instances only in flight, not made with another process's fd of them (not in a
/// group of `tree_objects(indexes, groups)`), every entry of which some process of the set
/// holds the file of, some only another (`FlightEpoll`).
pub fn flight_epolls(indexes: &[(i32, Index)], groups: &[Vec<At>]) -> Vec<FlightEpoll> {
    let by_at = by_holder(indexes);
    let joined: HashSet<At> = objects_of(&by_at, &tree_pipes(indexes), groups).into_iter().flatten().copied().collect();
    let mut out = Vec::new();
    for (pid, f) in entries(indexes).filter(|(pid, f)| f.fd < 0 && !joined.contains(&(*pid, f.fd))) {
        let FdKind::Epoll { entries } = &f.kind else { continue };
        let others: Option<Vec<(crate::EpollEntry, At)>> = entries.iter().filter(|e| e.holder.is_none()).map(|e| Some((e.clone(), added_by(&by_at, pid, e)?))).collect();
        match others {
            Some(adds) if !adds.is_empty() => out.push(FlightEpoll { at: (pid, f.fd), adds }),
            _ => {}
        }
    }
    out
}

/// What a file in flight is compared by (None: it comes back as itself wherever it is held).
#[derive(PartialEq, Eq, Hash)]
enum Seen {
    Socket(u64),
    Deleted(u64, u64),
    /// Device, inode, flags (without close-on-exec), offset.
    File(u64, u64, i32, i64),
    Pipe(u64),
    Mqueue(u64),
    EventFd(u64, bool),
    /// Clock and interval (the time left goes on between two processes' captures).
    TimerFd(i32, u64),
    SignalFd(u64),
    /// Number of entries (their fd numbers are each process's own).
    Epoll(usize),
    Inotify(Vec<(Vec<u8>, u32)>),
    Other(Vec<u8>),
}

fn seen(f: &FdState) -> Option<Seen> {
    Some(match &f.kind {
        FdKind::Socket(s) => Seen::Socket(s.ino),
        // (Resolved before this is asked, `treesockets`.)
        FdKind::TreeSocket { ino } => Seen::Socket(*ino),
        FdKind::Deleted(d) => Seen::Deleted(d.dev, d.ino),
        // (fdinfo's flags carry the fd's close-on-exec, which is not the open file's.)
        FdKind::Path { .. } if f.flags & libc::O_PATH == 0 && f.id.ino != 0 => Seen::File(f.id.dev, f.id.ino, f.flags & !libc::O_CLOEXEC, f.pos),
        FdKind::Pipe { ino, .. } => Seen::Pipe(*ino),
        FdKind::EventFd { count, semaphore } => Seen::EventFd(*count, *semaphore),
        FdKind::TimerFd { clockid, interval_ns, .. } => Seen::TimerFd(*clockid, *interval_ns),
        FdKind::SignalFd { mask } => Seen::SignalFd(*mask),
        FdKind::Epoll { entries } => Seen::Epoll(entries.len()),
        FdKind::Inotify { watches, .. } => Seen::Inotify(watches.iter().map(|w| (w.path.clone(), w.mask)).collect()),
        FdKind::Other { link } => Seen::Other(link.clone()),
        FdKind::Fanotify { .. } => Seen::Other(b"anon_inode:[fanotify]".to_vec()),
        FdKind::Mqueue(q) => Seen::Mqueue(q.ino),
        // Reopened by path: the same FIFO or terminal wherever it is held; a pidfd by its pid
        // (it holds no state of its own).
        FdKind::Path { .. } | FdKind::Fifo { .. } | FdKind::Tty(_) | FdKind::PidFd { .. } | FdKind::ExitedPidFd { .. } => return None,
    })
}

fn kind_name(k: &FdKind) -> &'static str {
    match k {
        FdKind::EventFd { .. } => "event fd",
        FdKind::TimerFd { .. } => "timer fd",
        FdKind::SignalFd { .. } => "signal fd",
        FdKind::Epoll { .. } => "epoll instance",
        FdKind::Inotify { .. } => "inotify instance",
        _ => "object",
    }
}

/// The pipes a tree's restart makes once and shares (by inode): held by two processes or more,
/// read and written in the tree. (A pipe that only one side of is in the tree, like the output
/// pipe of whatever ran ckpt-run, is not.)
pub fn tree_pipes(indexes: &[(i32, Index)]) -> HashSet<u64> {
    let mut holders: HashMap<u64, (Vec<i32>, bool, bool)> = HashMap::new();
    for (pid, f) in indexes.iter().flat_map(|(pid, ix)| ix.fds.iter().map(move |f| (*pid, f))) {
        if let FdKind::Pipe { ino, .. } = &f.kind {
            let h = holders.entry(*ino).or_default();
            if !h.0.contains(&pid) {
                h.0.push(pid);
            }
            let mode = f.flags & libc::O_ACCMODE;
            h.1 |= mode != libc::O_WRONLY;
            h.2 |= mode != libc::O_RDONLY;
        }
    }
    holders.into_iter().filter(|(_, (pids, read, written))| pids.len() > 1 && *read && *written).map(|(ino, _)| ino).collect()
}

/// Every socket of a set's images (fds and in flight) by inode, with the pids holding it, and
/// the sockets a tree's restart makes once of them, built once per set: `find` (the
/// checkpoint's check, the restart's refusal) and the restart's making of them (ckpt-restart's
/// treeshare) ask the same (each of the four asked built this table of every socket's holders
/// again: 87,000 entries at 128 processes x 341 socketpairs, a sixth of the coordinator's CPU).
pub struct TreeSocks<'a> {
    indexes: &'a [(i32, Index)],
    /// By inode: the pids holding it (in the order of `indexes`) and the description of the
    /// lowest of them (only that process captured its unread messages: the runtime's treesocks).
    holders: HashMap<u64, (Vec<i32>, &'a Socket)>,
    /// `shared_listeners`.
    listeners: Vec<&'a Socket>,
    /// `connections`.
    conns: Vec<(&'a Socket, &'a Socket)>,
}

impl<'a> TreeSocks<'a> {
    pub fn of(indexes: &'a [(i32, Index)]) -> TreeSocks<'a> {
        let holders = socket_holders(indexes);
        let listeners = shared_listeners_of(&holders);
        let conns = connections_of(&holders, &listeners);
        TreeSocks { indexes, holders, listeners, conns }
    }

    /// The images the sockets are of.
    pub fn indexes(&self) -> &'a [(i32, Index)] {
        self.indexes
    }

    /// The first process (in the order of the images) that holds socket `ino`, as an fd or in
    /// flight.
    pub fn first_holder(&self, ino: u64) -> Option<i32> {
        self.holders.get(&ino).and_then(|(pids, _)| pids.first().copied())
    }

    /// The connections a tree's restart makes once and shares: two unnamed UNIX sockets
    /// connected to each other (not through a listener: a socketpair), or the two ends of one
    /// TCP connection, held (as fds or in flight) by two processes or more together, with no
    /// file in flight in a TCP end's queue (a UNIX end's is refilled by its process:
    /// `carries_files`) and nothing a TCP end sent still unsent. Each pair once, as its two
    /// descriptions (TCP: the end on a listener's port first, the server).
    pub fn connections(&self) -> &[(&'a Socket, &'a Socket)] {
        &self.conns
    }

    /// The listening sockets two processes or more hold (inherited by fork: MPICH's mpiexec
    /// and its proxy and ranks), which a tree's restart makes once and shares: TCP, and UNIX
    /// (named, abstract) stream and seqpacket ones, with no connection waiting in their queue
    /// (each holder would queue it again), a UNIX one with no connection accepted from it in
    /// the tree (those are made through its name by their process), a TCP one whose
    /// connections in the tree can all be made once with it (`connections`).
    pub fn shared_listeners(&self) -> &[&'a Socket] {
        &self.listeners
    }

    /// The listeners that the tree's restart makes once: those two processes or more hold
    /// (`shared_listeners`), and the TCP listeners on the port of a server end of `connections`
    /// (made with the connections, which are accepted from them): each once.
    pub fn listeners(&self) -> Vec<&'a Socket> {
        let mut out: Vec<&'a Socket> = self.listeners.clone();
        for (_, f) in entries(self.indexes) {
            let FdKind::Socket(l) = &f.kind else { continue };
            if l.state != crate::SockState::Listening || !matches!(l.family, libc::AF_INET | libc::AF_INET6) || out.iter().any(|o| o.ino == l.ino) {
                continue;
            }
            if self.conns.iter().any(|(server, _)| server.family == l.family && serves(l, server)) {
                out.push(l);
            }
        }
        out
    }

    /// The UNIX sockets that reach each other by name across processes of the tree, which a
    /// tree's restart makes once, together, with the single-process restore of names (each
    /// group as if one process held it all): a stream or seqpacket connection accepted from a
    /// named listener (or whose ends were bound since), and a named datagram socket with the
    /// datagram sockets connected to it, held by two processes or more. Each group with the
    /// process whose description each socket is (`socket_holders`). Not made (refused by
    /// `find`): a group with a file in flight in a queue, something lost, or a socket outside
    /// the group connected to one of it (a client the group's restore would not connect);
    /// socketpairs and unnamed datagram pairs are `connections`'.
    pub fn unix_links(&self) -> Vec<Vec<(i32, &'a Socket)>> {
        let holders = &self.holders;
        let pairs: HashSet<u64> = self.conns.iter().flat_map(|(a, b)| [a.ino, b.ino]).collect();
        let linkable = |s: &Socket| {
            s.family == libc::AF_UNIX
                && [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&s.sock_type)
                && s.state != crate::SockState::Listening
                && s.queue.iter().all(|m| m.fds.is_empty())
                && s.lost.is_empty()
                && s.job.is_none()
                && s.unsent == 0
                && !pairs.contains(&s.ino)
        };
        // Groups by union of the links (client to peer).
        let mut up: HashMap<u64, u64> = HashMap::new();
        fn top(up: &HashMap<u64, u64>, mut x: u64) -> u64 {
            while let Some(&p) = up.get(&x).filter(|&&p| p != x) {
                x = p;
            }
            x
        }
        for (_, s) in holders.values() {
            if s.state != crate::SockState::Connected || !linkable(s) {
                continue;
            }
            let Some((_, p)) = holders.get(&s.peer).filter(|_| s.peer != 0 && s.peer != s.ino) else { continue };
            let mutual = p.peer == s.ino && p.state == crate::SockState::Connected;
            if !linkable(p) || p.sock_type != s.sock_type || (s.sock_type != libc::SOCK_DGRAM && !mutual) {
                continue;
            }
            up.entry(s.ino).or_insert(s.ino);
            up.entry(p.ino).or_insert(p.ino);
            let (a, b) = (top(&up, s.ino), top(&up, p.ino));
            up.insert(b, a);
        }
        let mut groups: HashMap<u64, Vec<u64>> = HashMap::new();
        for &ino in up.keys() {
            groups.entry(top(&up, ino)).or_default().push(ino);
        }
        let mut out: Vec<Vec<(i32, &'a Socket)>> = groups
            .into_values()
            .filter(|g| {
                let pids: HashSet<i32> = g.iter().flat_map(|i| holders[i].0.iter().copied()).collect();
                let named = g.iter().any(|i| !unnamed(&holders[i].1.name));
                let outside_client = holders.values().any(|(_, s)| s.family == libc::AF_UNIX && s.peer != 0 && g.contains(&s.peer) && !g.contains(&s.ino));
                pids.len() > 1 && named && !outside_client
            })
            .map(|mut g| {
                g.sort_unstable();
                g.iter().map(|i| (*holders[i].0.iter().min().expect("held"), holders[i].1)).collect()
            })
            .collect();
        out.sort_by_key(|g| g[0].1.ino);
        out
    }

    /// The other sockets (not UNIX) that two processes or more hold (inherited by fork), which
    /// a tree's restart makes once, alone, with the single-process restore of sockets, and
    /// gives every holder: UDP, ping and raw sockets, netlink and packet sockets, TCP sockets
    /// not connected or connected outside the tree; not a listener (`shared_listeners`), not an
    /// end of a TCP connection whose other end is in the tree (`connections`), not one whose
    /// queue holds a file in flight, not one in flight, nothing lost, no step's connection.
    pub fn lone_sockets(&self) -> Vec<&'a Socket> {
        let holders = &self.holders;
        let flying: HashSet<u64> = entries(self.indexes)
            .filter(|(_, f)| f.fd < 0)
            .filter_map(|(_, f)| match &f.kind {
                FdKind::Socket(s) => Some(s.ino),
                _ => None,
            })
            .collect();
        let mut out: Vec<&'a Socket> = holders
            .values()
            .filter(|(pids, s)| {
                pids.len() > 1
                    && s.family != libc::AF_UNIX
                    && s.state != crate::SockState::Listening
                    && s.queue.iter().all(|m| m.fds.is_empty())
                    && s.lost.is_empty()
                    && s.job.is_none()
                    && !flying.contains(&s.ino)
                    && !holders.values().any(|(_, o)| tcp_ends(s, o))
            })
            .map(|(_, s)| *s)
            .collect();
        out.sort_by_key(|s| s.ino);
        out
    }
}

/// `TreeSocks::connections` of `holders`, with the listeners two processes or more hold
/// (`shared`).
fn connections_of<'a>(holders: &HashMap<u64, (Vec<i32>, &'a Socket)>, shared: &[&'a Socket]) -> Vec<(&'a Socket, &'a Socket)> {
    let listened: HashSet<(i32, u16)> = holders
        .values()
        .filter(|(_, s)| s.state == crate::SockState::Listening && matches!(s.family, libc::AF_INET | libc::AF_INET6))
        .filter_map(|(_, s)| Some((s.family, port(&s.name)?)))
        .collect();
    // Connections accepted from a listener the tree shares are made with it even when one
    // process holds both ends: processes that connect and accept through one listener at the
    // same time would take each other's connections.
    let mut out: Vec<(&'a Socket, &'a Socket)> = Vec::new();
    for (pa, a) in holders.values() {
        let peer = if a.family == libc::AF_UNIX {
            holders.get(&a.peer).filter(|(_, b)| b.peer == a.ino)
        } else {
            holders.values().find(|(_, b)| tcp_ends(a, b))
        };
        let Some((pb, b)) = peer else { continue };
        // (A queue refilled later is sent from the other end: not shut down either.)
        let feedable = |x: &Socket, from: &Socket| !carries_files(x) || from.shutdown == 0;
        if a.ino < b.ino && pairable(a) && pairable(b) && a.sock_type == b.sock_type && feedable(a, b) && feedable(b, a) {
            let mut pids: Vec<i32> = pa.iter().chain(pb.iter()).copied().collect();
            pids.sort_unstable();
            pids.dedup();
            let on_shared = |s: &Socket| shared.iter().any(|l| l.family == s.family && serves(l, s));
            if pids.len() > 1 || on_shared(a) || on_shared(b) {
                let on_listener = |s: &Socket| port(&s.name).is_some_and(|p| listened.contains(&(s.family, p)));
                out.push(if a.family != libc::AF_UNIX && on_listener(b) && !on_listener(a) { (b, a) } else { (a, b) });
            }
        }
    }
    out.sort_by_key(|(a, b)| a.ino.min(b.ino));
    out
}

/// Whether the unread messages of socket `s` carry files in flight (SCM_RIGHTS). A socketpair
/// end of the tree's whose queue does is made once by the tree's root with that queue empty,
/// and refilled by the process whose image describes it (and holds those files): its files in
/// flight are made with its other fds, as the tree's objects where the tree shares them.
pub fn carries_files(s: &Socket) -> bool {
    s.queue.iter().any(|m| !m.fds.is_empty())
}

/// Whether connection end `s` can be made once for the tree (`TreeSocks::connections`): connected,
/// no file in flight in its queue (but a UNIX end not shut down, without a socket filter: its
/// queue is refilled later by its process, see `carries_files`), nothing lost, not a step's connection; a UNIX socketpair's
/// end, or a TCP end with nothing unsent.
fn pairable(s: &Socket) -> bool {
    s.state == crate::SockState::Connected
        && (!carries_files(s) || (s.family == libc::AF_UNIX && s.shutdown == 0 && s.filter.is_empty()))
        && s.lost.is_empty()
        && s.job.is_none()
        && if s.family == libc::AF_UNIX {
            [libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&s.sock_type) && unnamed(&s.name) && unnamed(&s.peer_name)
        } else {
            s.unsent == 0
        }
}

/// Every socket of `indexes` (fds and in flight) by inode: the pids holding it and the
/// description of the lowest of them (only that process captured its unread messages: the
/// runtime's treesocks).
fn socket_holders(indexes: &[(i32, Index)]) -> HashMap<u64, (Vec<i32>, &Socket)> {
    let mut holders: HashMap<u64, (Vec<i32>, &Socket)> = HashMap::new();
    // The lowest holder of each so far (compared once per entry, not with every holder: a
    // tree of hundreds of processes holding the same hundreds of sockets, zdtm session03).
    let mut lowest: HashMap<u64, i32> = HashMap::new();
    for (pid, f) in entries(indexes) {
        if let FdKind::Socket(s) = &f.kind {
            let h = holders.entry(s.ino).or_insert_with(|| (Vec::new(), &**s));
            let low = lowest.entry(s.ino).or_insert(i32::MAX);
            if pid < *low {
                *low = pid;
                h.1 = s;
            }
            // (A process's entries come one after another.)
            if h.0.last() != Some(&pid) {
                h.0.push(pid);
            }
        }
    }
    holders
}

/// `TreeSocks::shared_listeners` of `holders`.
fn shared_listeners_of<'a>(holders: &HashMap<u64, (Vec<i32>, &'a Socket)>) -> Vec<&'a Socket> {
    let accepted_from = |l: &Socket| {
        holders.values().any(|(ps, s)| {
            s.ino != l.ino
                && s.family == l.family
                && s.state != crate::SockState::Listening
                && if l.family == libc::AF_UNIX {
                    s.name == l.name
                } else {
                    // (Its peer outside the tree: it comes back closed, without the listener.
                    // Two ended ends in two processes come back each closed on its own, without
                    // it too.)
                    serves(l, s) && holders.values().any(|(qs, p)| tcp_ends(s, p) && !(pairable(s) && pairable(p)) && !ended_apart((ps, s), (qs, p)))
                }
        })
    };
    let mut out: Vec<&Socket> = holders
        .values()
        .filter(|(pids, l)| {
            pids.len() > 1
                && l.state == crate::SockState::Listening
                && l.pending.is_empty()
                && l.lost.is_empty()
                && match l.family {
                    libc::AF_INET | libc::AF_INET6 => l.sock_type == libc::SOCK_STREAM,
                    libc::AF_UNIX => [libc::SOCK_STREAM, libc::SOCK_SEQPACKET].contains(&l.sock_type) && !unnamed(&l.name),
                    _ => false,
                }
                && !accepted_from(l)
        })
        .map(|(_, l)| *l)
        .collect();
    out.sort_by_key(|l| l.ino);
    out
}

/// Two ends of one TCP connection (with the pids holding each) that had both ended (each shut
/// down both ways) and that no process holds both of: each comes back closed on its own.
fn ended_apart((ps, s): (&[i32], &Socket), (qs, p): (&[i32], &Socket)) -> bool {
    let ended = |x: &Socket| x.state == crate::SockState::PeerGone && x.shutdown == 3;
    ended(s) && ended(p) && !ps.iter().any(|x| qs.contains(x))
}

/// Whether listener `l` is on the address of connection end `s` (its port, any or that address).
pub fn serves(l: &Socket, s: &Socket) -> bool {
    let ip = |a: &[u8]| -> Vec<u8> {
        match a.len() {
            16 => a[4..8].to_vec(),
            n if n >= 24 => a[8..24].to_vec(),
            _ => Vec::new(),
        }
    };
    port(&l.name).is_some() && port(&l.name) == port(&s.name) && (ip(&l.name).iter().all(|&b| b == 0) || ip(&l.name) == ip(&s.name))
}

/// The port of an INET or INET6 socket address.
fn port(addr: &[u8]) -> Option<u16> {
    (addr.len() >= 4).then(|| u16::from_be_bytes([addr[2], addr[3]]))
}

/// One fd, or a file in flight, in words.
fn at((pid, fd): At) -> String {
    if fd < 0 {
        format!("a file in flight in pid {pid} (passed with SCM_RIGHTS, not yet received)")
    } else {
        format!("pid {pid} fd {fd}")
    }
}

/// The objects of the set at `set` that come back separate, read from its images (for the
/// checkpoint's warning; an image that does not read is left out).
pub fn in_set(set: &std::path::Path) -> Vec<Unshared> {
    let Some(Ok(m)) = crate::tree::Manifest::read(set) else { return Vec::new() };
    let mut indexes: Vec<(i32, Index)> = m.live().filter_map(|(p, image)| Some((p.pid, crate::Reader::open(&set.join(image)).ok()?.index))).collect();
    if let Err(e) = crate::treesockets::resolve_all(&mut indexes) {
        return vec![Unshared { what: e, instead: "nothing (the set cannot be restarted)" }];
    }
    let mut same = m.same;
    if let Some(s) = same.as_mut() {
        join_in_flight(&indexes, s);
    }
    find(&TreeSocks::of(&indexes), same.as_deref())
}

/// What identifies an object held by two processes (None: nothing this module looks at).
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Socket(u64),
    Deleted(u64, u64),
    /// Device, inode, fd number, flags, offset.
    File(u64, u64, i32, i32, i64),
}

fn key(f: &FdState) -> Option<Key> {
    match &f.kind {
        FdKind::Socket(s) => Some(Key::Socket(s.ino)),
        FdKind::Deleted(d) if d.is_file() => Some(Key::Deleted(d.dev, d.ino)),
        // Not stdio: whoever ran the program gave every process of it the same fds 0 to 2.
        FdKind::Path { is_dir: false, .. } if f.fd > 2 && f.flags & libc::O_PATH == 0 && f.id.ino != 0 => Some(Key::File(f.id.dev, f.id.ino, f.fd, f.flags & !libc::O_CLOEXEC, f.pos)),
        _ => None,
    }
}

fn describe(key: &Key, a: At, b: At, f: &FdState) -> Unshared {
    let both = format!("pid {} fd {} and pid {} fd {}", a.0, a.1, b.0, b.1);
    match (key, &f.kind) {
        (Key::Socket(_), _) => Unshared { what: format!("{both} are one socket"), instead: "separate sockets" },
        (Key::Deleted(..), FdKind::Deleted(d)) => {
            Unshared { what: format!("{both} are one deleted file {}", String::from_utf8_lossy(&d.path)), instead: "separate files" }
        }
        (_, FdKind::Path { path, .. }) => Unshared {
            what: format!("{both} are one open file {} (offset {}, shared by fork)", String::from_utf8_lossy(path), f.pos),
            instead: "separate open files, each with its own offset",
        },
        _ => Unshared { what: both, instead: "separate objects" },
    }
}

/// Whether `a` and `b` are the two ends of one INET connection (each one's name the other's peer).
fn tcp_ends(a: &Socket, b: &Socket) -> bool {
    matches!(a.family, libc::AF_INET | libc::AF_INET6) && a.sock_type == libc::SOCK_STREAM && matches!(b.family, libc::AF_INET | libc::AF_INET6) && a.ino != b.ino && same_inet(&a.name, &b.peer_name) && same_inet(&a.peer_name, &b.name)
}

/// A UNIX socket address without a name (just its family, or nothing): socketpair's ends.
fn unnamed(addr: &[u8]) -> bool {
    addr.len() <= std::mem::size_of::<libc::sa_family_t>()
}
