//! A time namespace the program made for its children (unshare(CLONE_NEWTIME) by the
//! thread-group leader: its clocks for the children it will fork, zdtm timens_for_kids).
//!
//! At a checkpoint the leader, in its stop handler, sees its `time_for_children` namespace differ
//! from its own and records that namespace's offsets over its own (`capture`: the offsets of
//! both are in /proc: its own namespace is init's for children, /proc/1/timens_offsets, since
//! ckpt's init makes the program's). A restart makes such a namespace again on the leader before
//! it resumes (`restore`), with those offsets over the restarted program's own (which ckpt-restart
//! chose so that its clocks go on): the children it forks later see the same clocks relative to
//! their parent's as before. Any other thread with a namespace of its own, or one whose offsets
//! cannot be read, is refused by nshooks::refusal as before. Raw system calls and stack buffers
//! only (the stop handler).

use crate::log::{log, ERROR};
use crate::sys::{self, syscall};
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

const CLONE_NEWTIME: i64 = 0x80;
const NS: i64 = 1_000_000_000;

/// Set by the leader's `capture` when it recorded its namespace for children (so that
/// nshooks::refusal lets that one difference pass).
static CAPTURED: AtomicBool = AtomicBool::new(false);

pub fn captured() -> bool {
    CAPTURED.load(Ordering::Acquire)
}

/// The target of a /proc namespace link, in `buf`: its length (0: unreadable).
fn link(path: &CStr, buf: &mut [u8; 64]) -> usize {
    syscall!(libc::SYS_readlinkat, libc::AT_FDCWD, path.as_ptr(), buf.as_mut_ptr(), buf.len()).map_or(0, |n| n as usize)
}

fn same(a: &CStr, b: &CStr) -> bool {
    let (mut x, mut y) = ([0u8; 64], [0u8; 64]);
    let (n, m) = (link(a, &mut x), link(b, &mut y));
    n > 0 && x[..n] == y[..m]
}

/// (monotonic, boottime) offsets in ns from a timens_offsets file.
fn offsets(path: &CStr) -> Option<(i64, i64)> {
    let mut buf = [0u8; 256];
    let n = sys::read_start(path, &mut buf).ok()?;
    let (mut mono, mut boot) = (None, None);
    for line in buf[..n].split(|&b| b == b'\n') {
        let mut it = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
        let (Some(name), Some(s), Some(ns)) = (it.next(), it.next(), it.next()) else { continue };
        let num = |w: &[u8]| std::str::from_utf8(w).ok()?.parse::<i64>().ok();
        let v = num(s)?.checked_mul(NS)?.checked_add(num(ns)?)?;
        match name {
            b"monotonic" => mono = Some(v),
            b"boottime" => boot = Some(v),
            _ => {}
        }
    }
    Some((mono?, boot?))
}

/// The offsets of the namespace this process is in: init's for its children (ckpt's init made
/// it), or none when this process is in the namespace init itself is in.
fn own_offsets() -> Option<(i64, i64)> {
    if same(c"/proc/thread-self/ns/time", c"/proc/1/ns/time_for_children") {
        offsets(c"/proc/1/timens_offsets")
    } else if same(c"/proc/thread-self/ns/time", c"/proc/1/ns/time") {
        Some((0, 0))
    } else {
        None
    }
}

/// In the stop handler: (1, monotonic, boottime) when the calling thread is the leader and made
/// a time namespace for its children whose offsets over its own could be read; else zeros.
pub fn capture() -> (u32, i64, i64) {
    if sys::gettid() != sys::getpid() {
        return (0, 0, 0);
    }
    CAPTURED.store(false, Ordering::Release);
    if same(c"/proc/thread-self/ns/time", c"/proc/thread-self/ns/time_for_children") {
        return (0, 0, 0);
    }
    // (/proc/self is the leader: its timens_offsets are those of its namespace for children.)
    let (Some(kids), Some(own)) = (offsets(c"/proc/self/timens_offsets"), own_offsets()) else { return (0, 0, 0) };
    CAPTURED.store(true, Ordering::Release);
    (1, kids.0 - own.0, kids.1 - own.1)
}

/// On the recreated leader, before it resumes: make its namespace for children again.
pub fn restore(monotonic: i64, boottime: i64) {
    // (A tree's restart made it already, shared with its children of before: restarter
    // treetime.rs.)
    if !same(c"/proc/thread-self/ns/time", c"/proc/thread-self/ns/time_for_children") {
        return;
    }
    let fail = |what: &str, e: i32| log!(ERROR, "warning: the program's time namespace for its children is not made again ({what}: {}): the children it forks see the clocks it sees", crate::checkpoint::strerror(e));
    let Some(own) = own_offsets() else {
        return fail("the restarted program's own clock offsets cannot be read", libc::ENOENT);
    };
    if let Err(e) = syscall!(libc::SYS_unshare, CLONE_NEWTIME) {
        return fail("unshare", e);
    }
    let (m, b) = (own.0 + monotonic, own.1 + boottime);
    let mut text = Vec::with_capacity(96);
    for (name, v) in [(&b"monotonic "[..], m), (&b"boottime "[..], b)] {
        text.extend_from_slice(name);
        text.extend_from_slice(format!("{} {}\n", v.div_euclid(NS), v.rem_euclid(NS)).as_bytes());
    }
    let r = sys::open(c"/proc/self/timens_offsets", libc::O_WRONLY | libc::O_CLOEXEC, 0).and_then(|fd| {
        let r = sys::write_all(fd, &text);
        sys::close(fd);
        r
    });
    if let Err(e) = r {
        fail("its offsets", e);
    }
}
