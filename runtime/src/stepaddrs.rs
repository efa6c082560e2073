//! The `connect` hook of a restarted task of a step (issue 14, docs/multinode.md part 6): a
//! connection first made after the restart goes to the address and port the peer published
//! before the checkpoint (MPI's modex, a ports file); where that listener is now (another node,
//! another port) comes from the restart's rendezvous (ckpt-restart's stepaddrs), handed over in
//! RestartInfo, and the connect is sent there. A connect to an old address of a task's node
//! that no listener covers, or from a socket that is no TCP one, is left alone (said at debug
//! level). Nothing changes for a program that is no task of a step (the map is empty: one
//! atomic load per connect). UDP (sendto, sendmsg, a datagram socket's connect) is not mapped
//! (docs/restored.md).

use crate::gate;
use crate::hooks::RealFn;
use crate::log::{log, DEBUG};
use ckpt_image::RestartInfo;
use ckpt_step::addrmap::{Lookup, Map};
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static REAL_CONNECT: RealFn = RealFn::new(b"connect\0");

type ConnectFn = unsafe extern "C" fn(c_int, *const libc::sockaddr, libc::socklen_t) -> c_int;

/// Whether MAP holds anything (the hook's fast path).
static ANY: AtomicBool = AtomicBool::new(false);
/// Locked only inside the gate (never while a checkpoint stops the threads) or before the
/// restarted program's threads exist.
static MAP: Mutex<Option<Map>> = Mutex::new(None);

pub fn resolve() {
    REAL_CONNECT.get();
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
    *g = Some(m);
}

fn lookup(dest: &[u8]) -> Lookup {
    let _g = gate::enter();
    let m = MAP.lock().unwrap_or_else(|e| e.into_inner());
    m.as_ref().map_or(Lookup::Other, |m| m.lookup(dest))
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
    match lookup(dest) {
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
