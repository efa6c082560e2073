//! Events queued unread in an inotify instance or a fanotify group at checkpoint time. The
//! kernel gives no way to read them without consuming them, nor to queue them again: the
//! checkpoint reads them (the program's threads stopped) into memory of the runtime's own, which
//! the image holds, and the read hooks here serve them to the program first, in order, before
//! whatever the kernel queues after: in the program that goes on after the checkpoint and after
//! a restart alike.
//!
//! Readiness: poll, select and epoll look at the kernel's queue. While saved events remain, the
//! queue holds one event of ours at its head, the marker, and the fd is readable. inotify: a
//! watch added on a memfd of ours and removed at once queues its IN_IGNORED event. fanotify: an
//! inode mark added on an unnamed file of ours (O_TMPFILE in /dev/shm or /tmp), a write to it,
//! the mark removed: its FAN_MODIFY event, known by that file (the event's fd, or its file
//! handle in a FAN_REPORT_FID group). The read that serves the last saved events takes the
//! marker off with them (in the same read when the buffer has room, else on its own: it is at
//! the head), so the program never sees it. The inotify marker's watch takes a watch number: a
//! watch the program adds later gets one more than it would have.
//!
//! Reads follow the kernel's rules: whole events only, as many as fit, EINVAL when the next one
//! does not fit. The saved events of an fd go with its number; a dup of it (kcmp) is served
//! them too; close, close_range and closefrom drop them. A fanotify group without
//! FAN_REPORT_FID gives each event an fd of its file, opened by the read: the checkpoint's read
//! opens them before the fd table is read (`drain_fanotify_groups`), so they are the program's
//! fds, in the image and restored as any other. Only notification groups are drained, with no
//! report flags beyond FAN_REPORT_FID and FAN_REPORT_TID (permission events await the program's
//! answer to a group that a restart cannot have; other records carry more fds or names).
//! Left to the kernel (and a restart refuses as before): in a tree of processes (another one
//! may hold the instance), and when a thread was stopped blocked in a read of the instance
//! (events came during the stop): the blocked-call machinery makes that read again as it was,
//! past these hooks. Not seen: a read by a raw system call, dup2 over the fd, a forked child (it
//! has a copy of the table, so both processes are served the events), exec (the events are
//! gone, the marker shows).
//! Fixed-size table and raw system calls: the checkpoint fills it with the threads stopped,
//! where no allocation of ours may outlive the checkpoint.

use crate::gate;
use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use crate::forklock::Mutex;

/// inotify and fanotify fds with saved events, at most (more: left to the kernel, as before).
const SLOTS: usize = 32;
/// Size of struct inotify_event without its name, and so of the inotify marker event.
const EVENT: usize = 16;
/// Size of struct fanotify_event_metadata; FIONREAD counts this much per fanotify event.
const META: usize = 24;
/// The largest fanotify event of a group that is drained: metadata, one FID record (header,
/// fsid, struct file_handle, MAX_HANDLE_SZ bytes of handle).
const FAN_MAX: usize = META + 4 + 8 + 8 + 128;
/// FAN_EVENT_INFO_TYPE_FID.
const INFO_FID: u8 = 1;
const PAGE: usize = 4096;
/// Room for events queued between FIONREAD and the read at checkpoint time.
const SLACK: usize = 4096;

/// The file of a fanotify marker: (device, inode) and its file handle.
#[derive(Clone, Copy)]
struct FanMark {
    dev: u64,
    ino: u64,
    handle: [u8; 32],
    hlen: usize,
}

const NO_MARK: FanMark = FanMark { dev: 0, ino: 0, handle: [0; 32], hlen: 0 };

#[derive(Clone, Copy)]
pub(crate) struct Saved {
    /// The program's fd number (-1: slot free).
    fd: i32,
    /// inotify: the marker's watch number; fanotify: 1 (-1: no marker in the kernel's queue).
    marker: i32,
    /// Our mapping holding the events: [pos, len) not yet served.
    buf: usize,
    cap: usize,
    pos: usize,
    len: usize,
    /// A fanotify group (else an inotify instance), and its marker's file.
    fan: bool,
    mark: FanMark,
}

const FREE: Saved = Saved { fd: -1, marker: -1, buf: 0, cap: 0, pos: 0, len: 0, fan: false, mark: NO_MARK };

pub(crate) static TABLE: Mutex<[Saved; SLOTS]> = Mutex::new([FREE; SLOTS]);
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

fn table() -> crate::forklock::MutexGuard<'static, [Saved; SLOTS]> {
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

fn release(s: &mut Saved) {
    if s.buf != 0 {
        sys::munmap(s.buf, s.cap);
        USED.fetch_sub(1, Ordering::Release);
    }
    *s = FREE;
}

fn u32_at(p: usize) -> u32 {
    // SAFETY: the caller has at least 4 bytes at p.
    unsafe { (p as *const u32).read_unaligned() }
}

/// (wd, mask) of the inotify event at `p`.
fn head(p: usize) -> (i32, u32) {
    (u32_at(p) as i32, u32_at(p + 4))
}

/// Size of the event at `p` (the caller has its header) of an fd of kind `fan`.
fn event_size(fan: bool, p: usize) -> usize {
    if fan {
        (u32_at(p) as usize).max(META)
    } else {
        EVENT + u32_at(p + 12) as usize
    }
}

/// Whether the `n` bytes at `p` begin with the marker of `s`.
fn is_marker(s: &Saved, p: usize, n: usize) -> bool {
    if s.marker <= 0 {
        return false;
    }
    if !s.fan {
        return n >= EVENT && head(p) == (s.marker, libc::IN_IGNORED);
    }
    // SAFETY (both reads): within the META bytes checked first.
    if n < META || unsafe { ((p + 8) as *const u64).read_unaligned() } != libc::FAN_MODIFY {
        return false;
    }
    let fd = u32_at(p + 16) as i32;
    if fd >= 0 {
        return sys::fstat(fd).is_ok_and(|st| (st.st_dev, st.st_ino) == (s.mark.dev, s.mark.ino));
    }
    // FAN_REPORT_FID: header (type, pad, len), fsid, struct file_handle (bytes, type), handle.
    let (rec, len) = (p + META, event_size(true, p).min(n));
    let hlen = s.mark.hlen;
    // SAFETY: rec is within the event's `len` bytes, checked before each read.
    len >= META + 20 + hlen && unsafe { *(rec as *const u8) } == INFO_FID && u32_at(rec + 12) as usize == hlen && {
        // SAFETY: as above.
        let h = unsafe { std::slice::from_raw_parts((rec + 20) as *const u8, hlen) };
        h == &s.mark.handle[..hlen]
    }
}

/// The marker at `p` is taken off: close the fd a fanotify read opened for it.
fn drop_marker(s: &Saved, p: usize) {
    if s.fan && (u32_at(p + 16) as i32) >= 0 {
        sys::close(u32_at(p + 16) as i32);
    }
}

/// Queue a marker event in the instance or group of `s` (its `marker`, and for fanotify its
/// `mark`, are set; -1: the fd is not made readable, the saved events are still served by the
/// next read).
fn queue_marker(s: &mut Saved) {
    if s.fan {
        s.marker = match fan_marker(s.fd) {
            Some(m) => {
                s.mark = m;
                1
            }
            None => -1,
        };
    } else {
        s.marker = inotify_marker(s.fd);
        // Its number is handed out: the program's next watch gets the one after.
        crate::inotifywd::noted(s.fd, s.marker);
    }
}

/// A fanotify marker in group `fd`: an inode mark on an unnamed file of ours, a write to it,
/// the mark removed (raw calls: not the program's marks).
fn fan_marker(fd: i32) -> Option<FanMark> {
    let t = [c"/dev/shm", c"/tmp"].iter().find_map(|d| sys::open(d, libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600).ok())?;
    let mut mark = NO_MARK;
    let made = (|| {
        let st = sys::fstat(t).ok()?;
        (mark.dev, mark.ino) = (st.st_dev, st.st_ino);
        // struct file_handle: handle_bytes, handle_type, then the handle.
        let mut fh = [0u8; 8 + 32];
        fh[..4].copy_from_slice(&32u32.to_ne_bytes());
        let mut mnt: i32 = 0;
        if syscall!(libc::SYS_name_to_handle_at, t, c"".as_ptr(), fh.as_mut_ptr(), &mut mnt as *mut i32, libc::AT_EMPTY_PATH).is_ok() {
            mark.hlen = (u32_at(fh.as_ptr() as usize) as usize).min(32);
            mark.handle[..mark.hlen].copy_from_slice(&fh[8..8 + mark.hlen]);
        }
        let path = sys::cpath(&[b"/proc/self/fd/", &sys::decimal(t)]);
        syscall!(libc::SYS_fanotify_mark, fd, libc::FAN_MARK_ADD, libc::FAN_MODIFY, libc::AT_FDCWD, path.as_ptr()).ok()?;
        let wrote = syscall!(libc::SYS_write, t, b"x".as_ptr(), 1).is_ok();
        let _ = syscall!(libc::SYS_fanotify_mark, fd, libc::FAN_MARK_REMOVE, libc::FAN_MODIFY, libc::AT_FDCWD, path.as_ptr());
        wrote.then_some(())
    })();
    sys::close(t);
    made.map(|_| mark)
}

/// Queue a marker event in inotify instance `fd`: a watch on a memfd of ours, removed at once
/// (then the memfd closed: closing first would queue IN_DELETE_SELF too). Its watch number, or
/// -1.
fn inotify_marker(fd: i32) -> i32 {
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
    drain_as(fd, false)
}

/// Checkpoint time, threads stopped, before the fd table is read: the events queued in each
/// fanotify notification group of the program, as `drain` (a group without FAN_REPORT_FID
/// gives each an fd: opened now, so they are in the table read next).
pub fn drain_fanotify_groups() {
    const DRAINED: u32 = libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_UNLIMITED_QUEUE | libc::FAN_UNLIMITED_MARKS | libc::FAN_ENABLE_AUDIT | libc::FAN_REPORT_FID | libc::FAN_REPORT_TID;
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])) else { return };
    for n in names {
        let Some(fd) = std::str::from_utf8(&n).ok().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if crate::control::is_runtime_fd(fd) || sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &n])).ok().as_deref() != Some(b"anon_inode:[fanotify]") {
            continue;
        }
        let info = sys::read_file(&sys::cpath(&[b"/proc/thread-self/fdinfo/", &n])).unwrap_or_default();
        let flags = std::str::from_utf8(&info).ok().and_then(|s| {
            let v = &s[s.find("fanotify flags:")? + 15..];
            u32::from_str_radix(&v[..v.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(v.len())], 16).ok()
        });
        // Notification groups only (class bits 0), with no report flags beyond those known.
        if flags.is_none_or(|f| f & !DRAINED != 0) {
            continue;
        }
        // A dup of a group drained already: its events are the same.
        let t = table();
        let dup = find(&t, fd).is_some_and(|i| t[i].fd != fd);
        drop(t);
        if !dup {
            drain_as(fd, true);
        }
    }
}

/// Whether the events of the program's fd `fd` (or a dup of it) are saved here: the kernel's
/// queue holds none of them (only the marker, and events after the cut).
pub fn saved(fd: i32) -> bool {
    find(&table(), fd).is_some()
}

fn drain_as(fd: i32, fan: bool) -> u32 {
    let mut queued: i32 = 0;
    let _ = syscall!(libc::SYS_ioctl, fd, libc::FIONREAD, &mut queued as *mut i32);
    let queued = queued.max(0) as usize;
    // A thread blocked in a read of this instance makes it again, past our hooks: it must find
    // the events in the kernel's queue, not the marker (left there; a restart refuses).
    let pid = sys::getpid();
    if queued > 0 && crate::blocked::reading(&|other| other == fd || syscall!(libc::SYS_kcmp, pid, pid, sys::KCMP_FILE, fd, other) == Ok(0)) {
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
    // (fanotify's FIONREAD counts META bytes per event, whatever its size.)
    let room = if fan { queued / META * FAN_MAX } else { queued };
    let cap = (left + room + SLACK).div_ceil(PAGE) * PAGE;
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
    if old.buf != 0 && is_marker(&old, buf + left, n) {
        drop_marker(&old, buf + left);
        let m = event_size(fan, buf + left);
        // SAFETY: within our mapping.
        unsafe { std::ptr::copy((buf + left + m) as *const u8, (buf + left) as *mut u8, n - m) };
        len -= m;
    }
    if old.buf == 0 {
        USED.fetch_add(1, Ordering::Release);
    } else {
        sys::munmap(old.buf, old.cap);
    }
    t[i] = Saved { fd, marker: -1, buf, cap, pos: 0, len, fan, mark: NO_MARK };
    if len == 0 {
        release(&mut t[i]);
        return 0;
    }
    queue_marker(&mut t[i]);
    0
}

/// After a restart: the instances and groups are new, their markers are not there; queue them
/// again.
pub fn after_restart() {
    let mut t = table();
    for s in t.iter_mut().filter(|s| s.fd >= 0) {
        queue_marker(s);
    }
}

/// The slot of the program's fd `fd` (its number, or a dup of one).
fn find(t: &[Saved; SLOTS], fd: i32) -> Option<usize> {
    if let Some(i) = t.iter().position(|s| s.fd == fd) {
        return Some(i);
    }
    let pid = sys::getpid();
    t.iter().position(|s| s.fd >= 0 && syscall!(libc::SYS_kcmp, pid, pid, sys::KCMP_FILE, s.fd, fd) == Ok(0))
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
        // (An event header lies at pos: the kernel gave whole events.)
        let size = event_size(s.fan, s.buf + s.pos);
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
    // The marker's size: inotify's is fixed; fanotify's is its metadata, and its FID record.
    let mlen = match (s.fan, s.mark.hlen) {
        (false, _) => EVENT,
        (true, 0) => META,
        (true, h) => META + (20 + h).div_ceil(4) * 4,
    };
    if s.marker > 0 && queued > 0 {
        let room = count - n;
        if room >= mlen {
            if let Ok(r) = syscall!(libc::SYS_read, s.fd, out + n, room) {
                let r = r as usize;
                if is_marker(s, out + n, r) {
                    drop_marker(s, out + n);
                    let m = event_size(s.fan, out + n);
                    // SAFETY: within the program's buffer.
                    unsafe { std::ptr::copy((out + n + m) as *const u8, (out + n) as *mut u8, r - m) };
                    n += r - m;
                } else {
                    n += r;
                }
            }
        } else {
            let mut ev = [0u8; FAN_MAX];
            if let Ok(r) = syscall!(libc::SYS_read, s.fd, ev.as_mut_ptr(), mlen) {
                if is_marker(s, ev.as_ptr() as usize, r as usize) {
                    drop_marker(s, ev.as_ptr() as usize);
                } else {
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

/// FIONREAD of an fd with saved events counts them (and not the marker), as the kernel does.
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
        // inotify counts bytes; fanotify META bytes per event.
        let (marker, saved) = if s.fan {
            let mut k = 0;
            let mut p = s.pos;
            while p < s.len {
                p += event_size(true, s.buf + p);
                k += 1;
            }
            (META, k * META)
        } else {
            (EVENT, s.len - s.pos)
        };
        let marker = if s.marker > 0 { marker as i32 } else { 0 };
        // SAFETY: the kernel just wrote an int there.
        unsafe { *(arg as *mut c_int) = *(arg as *const c_int) - marker + saved as c_int };
    }
    r
}
