//! Events queued unread in an inotify instance at checkpoint time. The kernel gives no way to
//! read them without consuming them, nor to queue them again: the checkpoint reads them (the
//! program's threads stopped) into memory of the runtime's own, which the image holds, and the
//! read hooks here serve them to the program first, in order, before whatever the kernel queues
//! after: in the program that goes on after the checkpoint and after a restart alike.
//!
//! Readiness: poll, select and epoll look at the kernel's queue. While saved events remain, the
//! queue holds one event of ours at its head, the marker: a watch added on a memfd of ours and
//! removed at once queues its IN_IGNORED event, and the fd is readable. The read that serves
//! the last saved events takes the marker off with them (in the same read when the buffer has
//! room, else on its own: it is always 16 bytes, at the head), so the program never sees it.
//! The marker's watch takes a watch number: a watch the program adds later gets one more than
//! it would have.
//!
//! Reads follow inotify's rules: whole events only, as many as fit, EINVAL when the next one
//! does not fit. The saved events of an fd go with its number; a dup of it (kcmp) is served
//! them too; close, close_range and closefrom drop them. Left to the kernel (and a restart
//! refuses as before): in a tree of processes (another one may hold the instance), and when a
//! thread was stopped blocked in a read of the instance (events came during the stop): the
//! blocked-call machinery makes that read again as it was, past these hooks. Not seen: a read
//! by a raw system call, dup2 over the fd, a forked child (it has a copy of the table, so
//! both processes are served the events), exec (the events are gone, the marker shows).
//! Fixed-size table and raw system calls: the checkpoint fills it with the threads stopped,
//! where no allocation of ours may outlive the checkpoint.

use crate::gate;
use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// inotify fds with saved events, at most (more: left to the kernel, as before).
const SLOTS: usize = 32;
/// Size of struct inotify_event without its name, and so of the marker event.
const EVENT: usize = 16;
const PAGE: usize = 4096;
/// Room for events queued between FIONREAD and the read at checkpoint time.
const SLACK: usize = 4096;
const KCMP_FILE: i64 = 0;

#[derive(Clone, Copy)]
struct Saved {
    /// The program's fd number (-1: slot free).
    fd: i32,
    /// The marker's watch number (-1: no marker in the kernel's queue).
    marker: i32,
    /// Our mapping holding the events: [pos, len) not yet served.
    buf: usize,
    cap: usize,
    pos: usize,
    len: usize,
}

const FREE: Saved = Saved { fd: -1, marker: -1, buf: 0, cap: 0, pos: 0, len: 0 };

static TABLE: Mutex<[Saved; SLOTS]> = Mutex::new([FREE; SLOTS]);
/// Slots in use: the read hooks' fast path.
static USED: AtomicUsize = AtomicUsize::new(0);

/// Whether a hook has saved events to look at: some are saved, and the caller is a program
/// thread (the checkpoint thread and its helpers read and close files of their own through libc
/// too, with the gate held).
fn watching() -> bool {
    USED.load(Ordering::Acquire) != 0 && !crate::alloc::on_checkpoint_thread()
}

static REAL_READ: RealFn = RealFn::new(b"read\0");
static REAL_READV: RealFn = RealFn::new(b"readv\0");
static REAL_READ_CHK: RealFn = RealFn::new(b"__read_chk\0");
static REAL_IOCTL: RealFn = RealFn::new(b"ioctl\0");

type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize;
type ReadvFn = unsafe extern "C" fn(c_int, *const libc::iovec, c_int) -> isize;
type ReadChkFn = unsafe extern "C" fn(c_int, *mut c_void, usize, usize) -> isize;
type IoctlFn = unsafe extern "C" fn(c_int, libc::c_ulong, *mut c_void) -> c_int;

pub fn resolve() {
    for f in [&REAL_READ, &REAL_READV, &REAL_READ_CHK, &REAL_IOCTL] {
        f.get();
    }
}

fn table() -> std::sync::MutexGuard<'static, [Saved; SLOTS]> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn release(s: &mut Saved) {
    if s.buf != 0 {
        sys::munmap(s.buf, s.cap);
        USED.fetch_sub(1, Ordering::Release);
    }
    *s = FREE;
}

/// (wd, mask) of the event at `p`.
fn head(p: usize) -> (i32, u32) {
    // SAFETY: the caller has at least EVENT bytes at p.
    unsafe { ((p as *const i32).read_unaligned(), ((p + 4) as *const u32).read_unaligned()) }
}

fn is_marker(p: usize, n: usize, marker: i32) -> bool {
    marker > 0 && n >= EVENT && head(p) == (marker, libc::IN_IGNORED)
}

/// Queue a marker event in inotify instance `fd`: a watch on a memfd of ours, removed at once
/// (then the memfd closed: closing first would queue IN_DELETE_SELF too). Its watch number, or
/// -1 (the fd is not made readable: the saved events are still served by the next read).
fn queue_marker(fd: i32) -> i32 {
    let Ok(m) = syscall!(libc::SYS_memfd_create, c"ckpt-inotify".as_ptr(), libc::MFD_CLOEXEC) else { return -1 };
    let path = sys::cpath(&[b"/proc/self/fd/", &sys::decimal(m as i32)]);
    let wd = syscall!(libc::SYS_inotify_add_watch, fd, path.as_ptr(), libc::IN_DELETE_SELF | libc::IN_MASK_CREATE).map_or(-1, |w| w as i32);
    if wd > 0 && syscall!(libc::SYS_inotify_rm_watch, fd, wd).is_err() {
        sys::close(m as i32);
        return -1;
    }
    sys::close(m as i32);
    wd
}

/// Checkpoint time, threads stopped: read the events queued in the program's inotify fd `fd`
/// into our memory (after those saved before and not yet served) and queue the marker. The
/// bytes left in the kernel's queue: 0 once saved (the image needs none of them).
pub fn drain(fd: i32) -> u32 {
    let mut queued: i32 = 0;
    let _ = syscall!(libc::SYS_ioctl, fd, libc::FIONREAD, &mut queued as *mut i32);
    let queued = queued.max(0) as usize;
    // A thread blocked in a read of this instance makes it again, past our hooks: it must find
    // the events in the kernel's queue, not the marker (left there; a restart refuses).
    let pid = sys::getpid();
    if queued > 0 && crate::blocked::reading(&|other| other == fd || syscall!(libc::SYS_kcmp, pid, pid, KCMP_FILE, fd, other) == Ok(0)) {
        return queued as u32;
    }
    let mut t = table();
    let slot = t.iter().position(|s| s.fd == fd).or_else(|| if queued > 0 { t.iter().position(|s| s.fd < 0) } else { None });
    let Some(i) = slot else { return queued as u32 };
    let old = t[i];
    let left = old.len - old.pos;
    if queued == 0 && left == 0 {
        return 0;
    }
    let cap = (left + queued + SLACK).div_ceil(PAGE) * PAGE;
    let Ok(buf) = sys::mmap(0, cap, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) else { return queued as u32 };
    if left > 0 {
        // SAFETY: both ranges are ours and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping((old.buf + old.pos) as *const u8, buf as *mut u8, left) };
    }
    let mut n = 0;
    if queued > 0 {
        match syscall!(libc::SYS_read, fd, buf + left, cap - left) {
            Ok(r) => n = r as usize,
            Err(_) => {
                sys::munmap(buf, cap);
                return queued as u32;
            }
        }
    }
    let mut len = left + n;
    if old.buf != 0 && is_marker(buf + left, n, old.marker) {
        // SAFETY: within our mapping.
        unsafe { std::ptr::copy((buf + left + EVENT) as *const u8, (buf + left) as *mut u8, n - EVENT) };
        len -= EVENT;
    }
    if old.buf == 0 {
        USED.fetch_add(1, Ordering::Release);
    } else {
        sys::munmap(old.buf, old.cap);
    }
    t[i] = Saved { fd, marker: -1, buf, cap, pos: 0, len };
    if len == 0 {
        release(&mut t[i]);
        return 0;
    }
    t[i].marker = queue_marker(fd);
    0
}

/// After a restart: the instances are new, their markers are not there; queue them again.
pub fn after_restart() {
    let mut t = table();
    for s in t.iter_mut().filter(|s| s.fd >= 0) {
        s.marker = queue_marker(s.fd);
    }
}

/// The slot of the program's fd `fd` (its number, or a dup of one).
fn find(t: &[Saved; SLOTS], fd: i32) -> Option<usize> {
    if let Some(i) = t.iter().position(|s| s.fd == fd) {
        return Some(i);
    }
    let pid = sys::getpid();
    t.iter().position(|s| s.fd >= 0 && syscall!(libc::SYS_kcmp, pid, pid, KCMP_FILE, s.fd, fd) == Ok(0))
}

/// read(2) of an fd with saved events: Some(result), errno set on failure; None: not one.
fn serve(fd: i32, out: usize, count: usize) -> Option<isize> {
    let _g = gate::enter();
    let mut t = table();
    let i = find(&t, fd)?;
    let s = &mut t[i];
    // Whole events, as many as fit.
    let mut n = 0;
    while s.pos < s.len {
        // SAFETY: an event header lies at pos (the kernel gave whole events).
        let size = EVENT + unsafe { ((s.buf + s.pos + 12) as *const u32).read_unaligned() } as usize;
        if n + size > count {
            break;
        }
        // SAFETY: `out` has `count` bytes (the program's buffer), ours has the event.
        unsafe { std::ptr::copy_nonoverlapping((s.buf + s.pos) as *const u8, (out + n) as *mut u8, size) };
        n += size;
        s.pos += size;
    }
    if n == 0 {
        sys::set_errno(libc::EINVAL);
        return Some(-1);
    }
    if s.pos < s.len {
        return Some(n as isize);
    }
    // The last saved events: take the marker off, with what the kernel has after it when there
    // is room. It is at the head of the queue, so these reads do not block (unless the program
    // took it with a raw system call: FIONREAD first).
    let mut queued: i32 = 0;
    let _ = syscall!(libc::SYS_ioctl, s.fd, libc::FIONREAD, &mut queued as *mut i32);
    if s.marker > 0 && queued > 0 {
        let room = count - n;
        if room >= EVENT {
            if let Ok(r) = syscall!(libc::SYS_read, s.fd, out + n, room) {
                let r = r as usize;
                if is_marker(out + n, r, s.marker) {
                    // SAFETY: within the program's buffer.
                    unsafe { std::ptr::copy((out + n + EVENT) as *const u8, (out + n) as *mut u8, r - EVENT) };
                    n += r - EVENT;
                } else {
                    n += r;
                }
            }
        } else {
            let mut ev = [0u8; EVENT];
            if let Ok(r) = syscall!(libc::SYS_read, s.fd, ev.as_mut_ptr(), EVENT) {
                if !is_marker(ev.as_ptr() as usize, r as usize, s.marker) {
                    // Not ours (the marker went elsewhere): keep this event for the next read.
                    // SAFETY: our mapping holds at least one event's room.
                    unsafe { std::ptr::copy_nonoverlapping(ev.as_ptr(), s.buf as *mut u8, r as usize) };
                    *s = Saved { pos: 0, len: r as usize, marker: -1, ..*s };
                    return Some(n as isize);
                }
            }
        }
    }
    release(s);
    Some(n as isize)
}

/// The program closed `fd` (or [first, last]): its saved events go.
pub fn closed(first: u32, last: u32) {
    if !watching() {
        return;
    }
    let _g = gate::enter();
    let mut t = table();
    for s in t.iter_mut().filter(|s| s.fd >= 0 && (first..=last).contains(&(s.fd as u32))) {
        release(s);
    }
}

fn real_read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    // SAFETY: forwarding to libc's read.
    unsafe { std::mem::transmute::<usize, ReadFn>(REAL_READ.get())(fd, buf, count) }
}

/// # Safety
/// libc's contract for read.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    if watching() {
        if let Some(r) = serve(fd, buf as usize, count) {
            return r;
        }
    }
    real_read(fd, buf, count)
}

/// # Safety
/// libc's contract for __read_chk (read with the buffer's size known to the compiler).
#[no_mangle]
pub unsafe extern "C" fn __read_chk(fd: c_int, buf: *mut c_void, count: usize, buflen: usize) -> isize {
    if count <= buflen && watching() {
        if let Some(r) = serve(fd, buf as usize, count) {
            return r;
        }
    }
    // SAFETY: forwarding to libc's __read_chk.
    unsafe { std::mem::transmute::<usize, ReadChkFn>(REAL_READ_CHK.get())(fd, buf, count, buflen) }
}

/// readv of an inotify fd is a read per buffer, until one is not filled (as the kernel does for
/// a file without vectored reads).
///
/// # Safety
/// libc's contract for readv.
#[no_mangle]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const libc::iovec, iovcnt: c_int) -> isize {
    if !watching() || iovcnt <= 0 || iov.is_null() {
        // SAFETY: forwarding to libc's readv.
        return unsafe { std::mem::transmute::<usize, ReadvFn>(REAL_READV.get())(fd, iov, iovcnt) };
    }
    // SAFETY: the program passed iovcnt iovecs.
    let v = unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) };
    let mut total = 0isize;
    for (k, e) in v.iter().enumerate() {
        if e.iov_len == 0 {
            continue;
        }
        let r = match serve(fd, e.iov_base as usize, e.iov_len) {
            Some(r) => r,
            None if k == 0 => {
                // SAFETY: forwarding to libc's readv.
                return unsafe { std::mem::transmute::<usize, ReadvFn>(REAL_READV.get())(fd, iov, iovcnt) };
            }
            None => real_read(fd, e.iov_base, e.iov_len),
        };
        if r < 0 {
            return if total > 0 { total } else { r };
        }
        total += r;
        if r as usize != e.iov_len {
            break;
        }
    }
    total
}

/// FIONREAD of an fd with saved events counts them (and not the marker).
///
/// # Safety
/// libc's contract for ioctl (at most one argument after the request).
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: libc::c_ulong, arg: *mut c_void) -> c_int {
    // SAFETY: forwarding to libc's ioctl.
    let real = || unsafe { std::mem::transmute::<usize, IoctlFn>(REAL_IOCTL.get())(fd, request, arg) };
    if request != libc::FIONREAD || !watching() {
        return real();
    }
    let _g = gate::enter();
    let t = table();
    let Some(i) = find(&t, fd) else { return real() };
    let r = real();
    if r == 0 && !arg.is_null() {
        let s = &t[i];
        let marker = if s.marker > 0 { EVENT as i32 } else { 0 };
        // SAFETY: the kernel just wrote an int there.
        unsafe { *(arg as *mut c_int) = *(arg as *const c_int) - marker + (s.len - s.pos) as c_int };
    }
    r
}
