//! The `connect` hook of a restarted task of a step (issue 14, docs/multinode.md part 6): a
//! connection first made after the restart goes to the address and port the peer published
//! before the checkpoint (MPI's modex, a ports file); where that listener is now (another node,
//! another port) comes from the restart's rendezvous (ckpt-restart's stepaddrs), handed over in
//! RestartInfo, and the connect is sent there. A connect to an old address of a task's node
//! that no listener covers, or from a socket that is no TCP one, is left alone (said at debug
//! level). Nothing changes for a program that is no task of a step (the map is empty: one
//! atomic load per connect).
//!
//! UDP the same way (`Map::udp`, the step's bound UDP sockets): a datagram to a task's old
//! address and port (sendto, sendmsg, a UDP socket's connect) is sent where that socket is
//! now, and a datagram's source (recvfrom, recvmsg) shows as a peer's address does below.
//! sendmmsg and recvmmsg the same way, message by message. A datagram queued unread at the
//! checkpoint from another task, which ckpt-restart sent again from a stand-in address of its
//! own (`Map::queued`, kinds' stepudp), shows its source at the checkpoint instead, once
//! (recvfrom, recvmsg, recvmmsg; MSG_PEEK leaves it for the read).
//!
//! A task restarted on a node that lacks its old node's addresses keeps them in its view
//! (`Map::bind`, `Map::back`): a bind of an inet socket to such an address is made at the
//! task's new address instead (fdhooks' `bind` asks `bind_addr`; Open MPI's TCP BTL binds its
//! connecting socket to its address of the modex), a socket's own name at that new address
//! shows the old one (getsockname), and a peer's address that is a task's new address shows
//! that task's old one (accept, accept4, getpeername: Open MPI's accepting rank drops a
//! connection from an address the connector did not publish). Nothing changes where the map
//! has no such pairs (one atomic load per call).

use crate::gate;
use crate::hooks::RealFn;
use crate::log::{log, DEBUG};
use ckpt_image::RestartInfo;
use ckpt_step::addrmap::{ip_of, with_ip, Lookup, Map};
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use crate::forklock::Mutex;

static REAL_CONNECT: RealFn = RealFn::new(b"connect\0");
static REAL_ACCEPT: RealFn = RealFn::new(b"accept\0");
static REAL_ACCEPT4: RealFn = RealFn::new(b"accept4\0");
static REAL_GETPEERNAME: RealFn = RealFn::new(b"getpeername\0");
static REAL_GETSOCKNAME: RealFn = RealFn::new(b"getsockname\0");
static REAL_SENDTO: RealFn = RealFn::new(b"sendto\0");
static REAL_SENDMSG: RealFn = RealFn::new(b"sendmsg\0");
static REAL_RECVFROM: RealFn = RealFn::new(b"recvfrom\0");
static REAL_RECVMSG: RealFn = RealFn::new(b"recvmsg\0");
static REAL_SENDMMSG: RealFn = RealFn::new(b"sendmmsg\0");
static REAL_RECVMMSG: RealFn = RealFn::new(b"recvmmsg\0");

type ConnectFn = unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;
type NameFn = unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;
type Accept4Fn = unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t, c_int) -> c_int;
type SendtoFn = unsafe extern "C" fn(c_int, *const libc::c_void, libc::size_t, c_int, *const libc::sockaddr, libc::socklen_t) -> libc::ssize_t;
type RecvfromFn = unsafe extern "C" fn(c_int, *mut libc::c_void, libc::size_t, c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::ssize_t;
type SendmsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> libc::ssize_t;
type RecvmsgFn = unsafe extern "C" fn(c_int, *mut libc::msghdr, c_int) -> libc::ssize_t;
type SendmmsgFn = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, libc::c_uint, c_int) -> c_int;
type RecvmmsgFn = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, libc::c_uint, c_int, *mut libc::timespec) -> c_int;

/// Whether MAP holds anything (the hook's fast path).
static ANY: AtomicBool = AtomicBool::new(false);
/// Whether MAP has addresses of a node left behind (`bind`, `back`): the other hooks' fast path.
static VIEW: AtomicBool = AtomicBool::new(false);
/// Whether MAP has datagrams sent again from stand-ins not read yet (`Map::queued`).
static QUEUED: AtomicBool = AtomicBool::new(false);
/// The most messages one sendmmsg or recvmmsg takes (the kernel's UIO_MAXIOV).
const MMSG_MAX: usize = 1024;
/// Locked only inside the gate (never while a checkpoint stops the threads) or before the
/// restarted program's threads exist.
pub(crate) static MAP: Mutex<Option<Map>> = Mutex::new(None);

pub fn resolve() {
    for f in [&REAL_CONNECT, &REAL_ACCEPT, &REAL_ACCEPT4, &REAL_GETPEERNAME, &REAL_GETSOCKNAME, &REAL_SENDTO, &REAL_SENDMSG, &REAL_RECVFROM, &REAL_RECVMSG, &REAL_SENDMMSG, &REAL_RECVMMSG] {
        f.get();
    }
}

/// Restart entry (only thread): take the map ckpt-restart made (over one of an earlier restart,
/// whose old addresses then reach the listeners where they are now).
pub fn after_restart(info: &RestartInfo) {
    if info.magic != RestartInfo::MAGIC || info.addr_map == 0 || info.addr_map_len == 0 {
        return;
    }
    // SAFETY: the restarter wrote addr_map_len bytes at addr_map, in the switch area (mapped
    // until the restart entry unmaps it, after this).
    let b = unsafe { std::slice::from_raw_parts(info.addr_map as *const u8, info.addr_map_len as usize) };
    let Some(next) = Map::decode(b) else {
        log!(crate::log::ERROR, "the table of the step's listeners from ckpt-restart is unreadable: connects to their old addresses are not sent where they are now");
        return;
    };
    let mut g = MAP.lock().unwrap_or_else(|e| e.into_inner());
    let m = match g.take() {
        Some(old) => old.then(next),
        None => next,
    };
    ANY.store(!m.is_empty(), Ordering::Release);
    VIEW.store(!(m.bind.is_empty() && m.back.is_empty()), Ordering::Release);
    QUEUED.store(!m.queued.is_empty(), Ordering::Release);
    *g = Some(m);
}

/// Where a connect (`udp`: a datagram) to `dest` goes.
fn lookup(dest: &[u8], udp: bool) -> Lookup {
    let _g = gate::enter();
    let m = MAP.lock().unwrap_or_else(|e| e.into_inner());
    m.as_ref().map_or(Lookup::Other, |m| if udp { m.lookup_udp(dest) } else { m.lookup(dest) })
}

/// The sockaddr a datagram of `fd` to `addr` (`len` bytes; or its connect) goes to instead: a
/// bound UDP socket of the step's at its old address and port goes where it is now. None: as
/// asked (one atomic load when nothing moved).
fn datagram_to(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<Vec<u8>> {
    if !ANY.load(Ordering::Acquire) || addr.is_null() || (len as usize) < 8 {
        return None;
    }
    // SAFETY: addr holds len bytes (the caller's sockaddr).
    let dest = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    let Lookup::To(to) = lookup(dest, true) else { return None };
    let udp = |o| ckpt_step::sys::getsockopt_int(fd, libc::SOL_SOCKET, o);
    if udp(libc::SO_TYPE) != Ok(libc::SOCK_DGRAM) || udp(libc::SO_PROTOCOL) != Ok(libc::IPPROTO_UDP) {
        return None;
    }
    log!(DEBUG, "a datagram to {}, the old address of a UDP socket of the step: sent to {}", ckpt_step::sys::show_addr(dest), ckpt_step::sys::show_addr(&to));
    Some(to)
}

/// The sockaddr a bind to `addr` (`len` bytes) is made at instead: an old address of this
/// task's node that its node now lacks goes to the task's address now, the port kept. None:
/// as asked (one atomic load when no node was left behind).
pub fn bind_addr(addr: *const libc::sockaddr, len: libc::socklen_t) -> Option<Vec<u8>> {
    if !VIEW.load(Ordering::Acquire) || addr.is_null() || (len as usize) < 8 {
        return None;
    }
    // SAFETY: addr holds len bytes (the caller's sockaddr).
    let asked = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    let ip = ip_of(asked)?;
    let to = {
        let _g = gate::enter();
        let m = MAP.lock().unwrap_or_else(|e| e.into_inner());
        with_ip(asked, m.as_ref()?.bind_to(&ip)?)?
    };
    log!(DEBUG, "bind to {}, an address of this task's node at the checkpoint that its node lacks now: made at {}", ckpt_step::sys::show_addr(asked), ckpt_step::sys::show_addr(&to));
    Some(to)
}

/// Show the sockaddr the kernel wrote at `addr` (`*len` bytes, of a buffer of `room`) as the
/// program knew it before the restart: `own`, a socket's own name (this task's address now ->
/// its old one); else a peer's (a task's address now -> its old one).
fn show_old(addr: *mut libc::sockaddr, len: *mut libc::socklen_t, room: libc::socklen_t, own: bool) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: len is the caller's, just written by the kernel.
    let n = unsafe { *len };
    if n > room || (n as usize) < 8 {
        return;
    }
    // SAFETY: the kernel wrote n (<= room) bytes at addr.
    let got = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, n as usize) };
    let Some(ip) = ip_of(got) else { return };
    let shown = {
        let _g = gate::enter();
        let m = MAP.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = m.as_ref() else { return };
        let old = if own { m.own_shown(&ip) } else { m.peer_shown(&ip) };
        old.and_then(|o| with_ip(got, o))
    };
    if let Some(s) = shown.filter(|s| s.len() == got.len()) {
        got.copy_from_slice(&s);
    }
}

/// The room the caller gave for the address (0: none).
fn room(addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> libc::socklen_t {
    room_if(addr, len, VIEW.load(Ordering::Acquire))
}

/// `*len` where there is an `addr` and something to show (`wanted`), else 0.
fn room_if(addr: *mut libc::sockaddr, len: *mut libc::socklen_t, wanted: bool) -> libc::socklen_t {
    if addr.is_null() || len.is_null() || !wanted {
        return 0;
    }
    // SAFETY: the caller's len, readable by libc's contract.
    unsafe { *len }
}

/// `call` (libc's accept, accept4, getpeername or getsockname with the
/// caller's arguments) with the address it gives at `addr` as the program knew it (`own`: a
/// socket's own name).
fn named<R: PartialOrd + Default>(addr: *mut libc::sockaddr, len: *mut libc::socklen_t, own: bool, call: impl FnOnce() -> R) -> R {
    let room = room(addr, len);
    let r = call();
    if r >= R::default() && room > 0 {
        show_old(addr, len, room, own);
    }
    r
}

fn real_named(real: &RealFn) -> NameFn {
    // SAFETY: `real` resolves to libc's accept, getpeername or getsockname (all of this type).
    unsafe { std::mem::transmute::<usize, NameFn>(real.get()) }
}

/// # Safety
/// libc's contract for accept.
#[no_mangle]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    // SAFETY: the caller's arguments, to libc's accept.
    named(addr, len, false, || unsafe { real_named(&REAL_ACCEPT)(fd, addr, len) })
}

/// # Safety
/// libc's contract for accept4.
#[no_mangle]
pub unsafe extern "C" fn accept4(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t, flags: c_int) -> c_int {
    // SAFETY: REAL_ACCEPT4 resolves to libc's accept4; the caller's arguments.
    named(addr, len, false, || unsafe { std::mem::transmute::<usize, Accept4Fn>(REAL_ACCEPT4.get())(fd, addr, len, flags) })
}

/// # Safety
/// libc's contract for getpeername.
#[no_mangle]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    // SAFETY: the caller's arguments, to libc's getpeername.
    named(addr, len, false, || unsafe { real_named(&REAL_GETPEERNAME)(fd, addr, len) })
}

/// # Safety
/// libc's contract for getsockname.
#[no_mangle]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> c_int {
    // SAFETY: the caller's arguments, to libc's getsockname.
    named(addr, len, true, || unsafe { real_named(&REAL_GETSOCKNAME)(fd, addr, len) })
}

/// # Safety
/// libc's contract for connect.
#[no_mangle]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> c_int {
    // SAFETY: REAL_CONNECT resolves to libc's connect.
    let real = unsafe { std::mem::transmute::<usize, ConnectFn>(REAL_CONNECT.get()) };
    if !ANY.load(Ordering::Acquire) || addr.is_null() || (len as usize) < 8 {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(fd, addr, len) };
    }
    // SAFETY: addr holds len bytes (the caller's sockaddr).
    let dest = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
    // The step's listeners are TCP's: a datagram socket's connect is not theirs.
    let stream = || ckpt_step::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).is_ok_and(|t| t == libc::SOCK_STREAM);
    if let Some(to) = datagram_to(fd, addr, len) {
        // SAFETY: `to` is a sockaddr of its length.
        return unsafe { real(fd, to.as_ptr().cast(), to.len() as libc::socklen_t) };
    }
    match lookup(dest, false) {
        Lookup::To(to) if stream() => {
            log!(DEBUG, "connect to {}, an old address of a listener of the step: sent to {}", ckpt_step::sys::show_addr(dest), ckpt_step::sys::show_addr(&to));
            // SAFETY: `to` is a sockaddr of its length.
            unsafe { real(fd, to.as_ptr().cast(), to.len() as libc::socklen_t) }
        }
        Lookup::Uncovered | Lookup::To(_) => {
            log!(DEBUG, "connect to {}: an old address of a node of the step's tasks, but no TCP listener of the step was at that port: left as it is", ckpt_step::sys::show_addr(dest));
            // SAFETY: forwarding the caller's arguments.
            unsafe { real(fd, addr, len) }
        }
        // SAFETY: forwarding the caller's arguments.
        Lookup::Other => unsafe { real(fd, addr, len) },
    }
}

/// # Safety
/// libc's contract for sendto.
#[no_mangle]
pub unsafe extern "C" fn sendto(fd: c_int, buf: *const libc::c_void, n: libc::size_t, flags: c_int, addr: *const libc::sockaddr, len: libc::socklen_t) -> libc::ssize_t {
    // SAFETY: REAL_SENDTO resolves to libc's sendto.
    let real = unsafe { std::mem::transmute::<usize, SendtoFn>(REAL_SENDTO.get()) };
    match datagram_to(fd, addr, len) {
        // SAFETY: the caller's arguments, `to` a sockaddr of its length.
        Some(to) => unsafe { real(fd, buf, n, flags, to.as_ptr().cast(), to.len() as libc::socklen_t) },
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { real(fd, buf, n, flags, addr, len) },
    }
}

/// # Safety
/// libc's contract for sendmsg.
#[no_mangle]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> libc::ssize_t {
    // SAFETY: REAL_SENDMSG resolves to libc's sendmsg.
    let real = unsafe { std::mem::transmute::<usize, SendmsgFn>(REAL_SENDMSG.get()) };
    // SAFETY: msg, when not null, is the caller's msghdr (libc's contract).
    let to = unsafe { msg.as_ref() }.and_then(|m| datagram_to(fd, m.msg_name.cast(), m.msg_namelen));
    match to {
        Some(to) => {
            // SAFETY: as above; a copy of the caller's msghdr with the name it goes to.
            let mut m = unsafe { *msg };
            m.msg_name = to.as_ptr() as *mut libc::c_void;
            m.msg_namelen = to.len() as libc::socklen_t;
            // SAFETY: `m` is the caller's message with `to`, alive for the call.
            unsafe { real(fd, &m, flags) }
        }
        // SAFETY: forwarding the caller's arguments.
        None => unsafe { real(fd, msg, flags) },
    }
}

/// After a receive of `fd` that gave a source at `addr` (`*len` bytes, in a buffer of `room`;
/// `peek`: MSG_PEEK): a datagram sent again from a stand-in shows its source at the checkpoint
/// (once, unless peeked), any other a peer's address as the program knew it.
fn after_recv(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t, room: libc::socklen_t, peek: bool) {
    if room == 0 || addr.is_null() || len.is_null() {
        return;
    }
    if QUEUED.load(Ordering::Acquire) && queued_source(fd, addr, len, room, peek) {
        return;
    }
    if VIEW.load(Ordering::Acquire) {
        show_old(addr, len, room, false);
    }
}

/// Whether the source the kernel wrote at `addr` is a stand-in's of a datagram queued on
/// `fd`'s socket at the checkpoint: then its source at the checkpoint is written there instead.
fn queued_source(fd: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t, room: libc::socklen_t, peek: bool) -> bool {
    // SAFETY: len is the caller's, just written by the kernel.
    let n = unsafe { *len };
    if n > room || (n as usize) < 8 {
        return false;
    }
    // SAFETY: the kernel wrote n (<= room) bytes at addr.
    let got = unsafe { std::slice::from_raw_parts(addr as *const u8, n as usize) };
    let same = |at: &[u8]| ip_of(at) == ip_of(got) && ckpt_step::sys::port_of(at) == ckpt_step::sys::port_of(got);
    let _g = gate::enter();
    let mut g = MAP.lock().unwrap_or_else(|e| e.into_inner());
    let Some(m) = g.as_mut() else { return false };
    if !m.queued.iter().any(|(_, at, _)| same(at)) {
        return false;
    }
    let ino = crate::sys::fstat(fd).map_or(0, |st| st.st_ino);
    let Some(i) = m.queued.iter().position(|(i, at, _)| *i == ino && same(at)) else { return false };
    let from = if peek { m.queued[i].2.clone() } else { m.queued.remove(i).2 };
    QUEUED.store(!m.queued.is_empty(), Ordering::Release);
    log!(DEBUG, "a datagram queued at the checkpoint, sent again from {}: shown from {}", ckpt_step::sys::show_addr(got), ckpt_step::sys::show_addr(&from));
    // As the kernel does: as much as there is room for, and the source's whole length.
    let k = from.len().min(room as usize);
    // SAFETY: addr has room for `room` bytes (the caller's buffer); len is the caller's.
    unsafe {
        std::ptr::copy_nonoverlapping(from.as_ptr(), addr as *mut u8, k);
        *len = from.len() as libc::socklen_t;
    }
    true
}

/// The room the caller gave for a received datagram's source (0: none, or nothing to show).
fn recv_room(addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> libc::socklen_t {
    room_if(addr, len, VIEW.load(Ordering::Acquire) || QUEUED.load(Ordering::Acquire))
}

/// # Safety
/// libc's contract for recvfrom.
#[no_mangle]
pub unsafe extern "C" fn recvfrom(fd: c_int, buf: *mut libc::c_void, n: libc::size_t, flags: c_int, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> libc::ssize_t {
    let room = recv_room(addr, len);
    // SAFETY: REAL_RECVFROM resolves to libc's recvfrom; the caller's arguments.
    let r = unsafe { std::mem::transmute::<usize, RecvfromFn>(REAL_RECVFROM.get())(fd, buf, n, flags, addr, len) };
    if r >= 0 {
        after_recv(fd, addr, len, room, flags & libc::MSG_PEEK != 0);
    }
    r
}

/// # Safety
/// libc's contract for recvmsg.
#[no_mangle]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> libc::ssize_t {
    // SAFETY: REAL_RECVMSG resolves to libc's recvmsg.
    let real = unsafe { std::mem::transmute::<usize, RecvmsgFn>(REAL_RECVMSG.get()) };
    if msg.is_null() {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(fd, msg, flags) };
    }
    // SAFETY: msg is the caller's msghdr; its name and its length field, as the kernel fills them.
    let (addr, len) = unsafe { ((*msg).msg_name.cast::<libc::sockaddr>(), &raw mut (*msg).msg_namelen) };
    let room = recv_room(addr, len);
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real(fd, msg, flags) };
    if r >= 0 {
        after_recv(fd, addr, len, room, flags & libc::MSG_PEEK != 0);
    }
    r
}

/// # Safety
/// libc's contract for recvmmsg.
#[no_mangle]
pub unsafe extern "C" fn recvmmsg(fd: c_int, vec: *mut libc::mmsghdr, vlen: libc::c_uint, flags: c_int, timeout: *mut libc::timespec) -> c_int {
    // SAFETY: REAL_RECVMMSG resolves to libc's recvmmsg.
    let real = unsafe { std::mem::transmute::<usize, RecvmmsgFn>(REAL_RECVMMSG.get()) };
    if vec.is_null() || !(VIEW.load(Ordering::Acquire) || QUEUED.load(Ordering::Acquire)) {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(fd, vec, vlen, flags, timeout) };
    }
    // SAFETY: vec holds vlen messages (libc's contract); the kernel reads no more than MMSG_MAX.
    let name = |i: usize| unsafe { ((*vec.add(i)).msg_hdr.msg_name.cast::<libc::sockaddr>(), &raw mut (*vec.add(i)).msg_hdr.msg_namelen) };
    let rooms: Vec<libc::socklen_t> = (0..(vlen as usize).min(MMSG_MAX)).map(|i| recv_room(name(i).0, name(i).1)).collect();
    // SAFETY: forwarding the caller's arguments.
    let r = unsafe { real(fd, vec, vlen, flags, timeout) };
    for (i, &room) in rooms.iter().enumerate().take(r.max(0) as usize) {
        let (addr, len) = name(i);
        after_recv(fd, addr, len, room, flags & libc::MSG_PEEK != 0);
    }
    r
}

/// # Safety
/// libc's contract for sendmmsg.
#[no_mangle]
pub unsafe extern "C" fn sendmmsg(fd: c_int, vec: *mut libc::mmsghdr, vlen: libc::c_uint, flags: c_int) -> c_int {
    // SAFETY: REAL_SENDMMSG resolves to libc's sendmmsg.
    let real = unsafe { std::mem::transmute::<usize, SendmmsgFn>(REAL_SENDMMSG.get()) };
    if vec.is_null() || !ANY.load(Ordering::Acquire) {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(fd, vec, vlen, flags) };
    }
    let n = (vlen as usize).min(MMSG_MAX);
    // SAFETY: vec holds vlen messages (libc's contract).
    let mut copy: Vec<libc::mmsghdr> = (0..n).map(|i| unsafe { *vec.add(i) }).collect();
    let to: Vec<Option<Vec<u8>>> = copy.iter().map(|m| datagram_to(fd, m.msg_hdr.msg_name.cast(), m.msg_hdr.msg_namelen)).collect();
    if to.iter().all(Option::is_none) {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(fd, vec, vlen, flags) };
    }
    for (m, to) in copy.iter_mut().zip(&to) {
        if let Some(to) = to {
            m.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_namelen = to.len() as libc::socklen_t;
        }
    }
    // SAFETY: the caller's messages, each with the name it goes to (alive for the call).
    let r = unsafe { real(fd, copy.as_mut_ptr(), n as libc::c_uint, flags) };
    for (i, m) in copy.iter().enumerate().take(r.max(0) as usize) {
        // SAFETY: vec holds at least n >= r messages; their msg_len is the caller's to read.
        unsafe { (*vec.add(i)).msg_len = m.msg_len };
    }
    r
}
