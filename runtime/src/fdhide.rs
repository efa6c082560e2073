//! The runtime's own fds kept out of the program's listings of an fd table. The runtime keeps a
//! few fds open while the program runs (its /proc directory, its control socket, its link to the
//! process tree's coordinator...), at the end of the table (`sys::high_fd`) and marked
//! (`sys::own`: not a regular file, O_APPEND). A program that lists /proc/self/fd, or the fd
//! directory of another process of its tree (CRIU's zdtm `fd` checks that its child, having
//! closed everything, has no fd left), would see them: it must not be able to tell. Here
//! readdir, readdir_r (and their 64 variants) and getdents64 skip an entry of a /proc fd or fdinfo
//! directory that names such an fd, told from /proc itself (that process's fdinfo flags, the file
//! the link leads to, its fd limit), so it works for any process of the tree. Also left out: a
//! file of /proc the runtime has open for an instant (read-only with O_APPEND, at any number), and
//! an entry that names no open fd: glibc's readdir hands out entries the kernel listed a moment
//! ago, which may name such an instant's file, closed since, or, when the program was
//! checkpointed in the middle of a listing, the old process's runtime fds, gone after the
//! restart. (close, closefrom
//! and close_range keep those fds: fdguard.rs.) A raw getdents64 system call, and glibc's
//! scandir (which reads through glibc's internal readdir), still see them.

use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void, CStr};

static REAL_READDIR: RealFn = RealFn::new(b"readdir\0");
static REAL_READDIR64: RealFn = RealFn::new(b"readdir64\0");
static REAL_READDIR_R: RealFn = RealFn::new(b"readdir_r\0");
static REAL_READDIR64_R: RealFn = RealFn::new(b"readdir64_r\0");
static REAL_GETDENTS64: RealFn = RealFn::new(b"getdents64\0");

type ReaddirFn = unsafe extern "C" fn(*mut libc::DIR) -> *mut libc::dirent;
type ReaddirRFn = unsafe extern "C" fn(*mut libc::DIR, *mut libc::dirent, *mut *mut libc::dirent) -> c_int;
type GetdentsFn = unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize;

const DT_REG: u8 = 8;
const DT_LNK: u8 = 10;
const DT_UNKNOWN: u8 = 0;

/// The fd number an entry's name gives, if it is one (a decimal of at most 9 digits).
fn fd_number(name: &[u8]) -> Option<i32> {
    if name.is_empty() || name.len() > 9 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(name.iter().fold(0i32, |v, d| v * 10 + (d - b'0') as i32))
}

/// The value after `key` in /proc text (`key` includes the separator), up to the end of line.
fn field<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &text[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len())..];
    Some(&rest[..rest.iter().position(|&b| b == b'\n' || b == b' ').unwrap_or(rest.len())])
}

/// The lowest number of the runtime fds of the process whose /proc directory is `base` (as
/// `sys::high_fd` computes it there, from that process's fd limit).
fn high_fd_of(base: &[u8]) -> i32 {
    let limits = sys::read_file(&sys::cpath(&[base, b"/limits"])).unwrap_or_default();
    let soft = field(&limits, b"Max open files").and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
    sys::high_fd_for(soft.unwrap_or(u64::MAX))
}

/// Whether entry `name` (type `d_type`) of the directory open at `dfd` is a runtime fd in a
/// listing of a /proc fd or fdinfo directory.
fn hidden(dfd: c_int, name: &[u8], d_type: u8) -> bool {
    if !matches!(d_type, DT_LNK | DT_REG | DT_UNKNOWN) {
        return false;
    }
    let Some(fd) = fd_number(name).filter(|&fd| fd >= 3) else { return false };
    if sys::fs_type(dfd).ok() != Some(sys::PROC_SUPER_MAGIC) {
        return false;
    }
    // The rest opens files of /proc for a moment and allocates (the runtime's allocator lock):
    // under the gate, so that a checkpoint never stops the thread half-way (it took the open
    // fdinfo file for the program's, `/proc/self/fdinfo/1006`, which the restart refused; or the
    // allocator lock held, on which the restarted runtime spun for ever). Only listings of /proc
    // get here: the runtime's own (std::fs::read_dir of the image directory, with the gate held
    // by the checkpoint) do not.
    let _g = crate::gate::enter();
    let Ok(dir) = sys::readlink(&sys::cpath(&[b"/proc/self/fd/", &sys::decimal(dfd)])) else { return false };
    let Some(base) = dir.strip_suffix(b"/fd").or_else(|| dir.strip_suffix(b"/fdinfo")) else { return false };
    if !base.starts_with(b"/proc/") {
        return false;
    }
    let info = match sys::read_file(&sys::cpath(&[base, b"/fdinfo/", name])) {
        Ok(info) => info,
        // No such fd now: an entry the kernel listed a moment ago, which glibc's readdir keeps in
        // its buffer. Before a restart (the program was checkpointed in the middle of a listing):
        // one of the old process's runtime fds, which the restarted process does not have (listed
        // right after a restart: 1004-1006), or a file the runtime had open for an instant then
        // (4). Without a restart: such an instant's file, closed since. Either way no file of
        // the program's (only a program closing its own fds while it lists them could tell).
        Err(libc::ENOENT) => return true,
        Err(_) => return false,
    };
    let Some(flags) = field(&info, b"flags:").and_then(|v| i64::from_str_radix(std::str::from_utf8(v).ok()?, 8).ok()) else { return false };
    if flags & libc::O_APPEND as i64 == 0 || flags & libc::O_PATH as i64 != 0 {
        return false;
    }
    let target = sys::cpath(&[base, b"/fd/", name]);
    // A file of /proc the runtime has open for an instant (`sys::Transient`), at a low number.
    if sys::transient_mark(flags) && sys::readlink(&target).is_ok_and(|l| l.starts_with(b"/proc/")) {
        return true;
    }
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, target.as_ptr(), &mut st as *mut libc::stat, 0).is_err() || st.st_mode & libc::S_IFMT == libc::S_IFREG {
        return false;
    }
    fd >= high_fd_of(base)
}

/// # Safety
/// `e` is null or an entry readdir returned.
unsafe fn entry_hidden(d: *mut libc::DIR, e: *const libc::dirent) -> bool {
    // SAFETY: a dirent from readdir holds a NUL-terminated name; dirfd of an open DIR.
    !e.is_null() && hidden(unsafe { libc::dirfd(d) }, unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes(), unsafe { (*e).d_type })
}

unsafe fn readdir_with(real: &RealFn, d: *mut libc::DIR) -> *mut libc::dirent {
    let f = real.get();
    if f == 0 {
        sys::set_errno(libc::ENOSYS);
        return std::ptr::null_mut();
    }
    loop {
        // SAFETY: f is libc's readdir (or readdir64: the same struct on x86-64), d the caller's.
        let e = unsafe { std::mem::transmute::<usize, ReaddirFn>(f)(d) };
        // SAFETY: e is what readdir returned for d.
        if !unsafe { entry_hidden(d, e) } {
            return e;
        }
    }
}

unsafe fn readdir_r_with(real: &RealFn, d: *mut libc::DIR, entry: *mut libc::dirent, result: *mut *mut libc::dirent) -> c_int {
    let f = real.get();
    if f == 0 {
        return libc::ENOSYS;
    }
    loop {
        // SAFETY: f is libc's readdir_r (or readdir64_r), with the caller's arguments.
        let r = unsafe { std::mem::transmute::<usize, ReaddirRFn>(f)(d, entry, result) };
        // SAFETY: result points at the caller's pointer, which readdir_r has just set.
        if r != 0 || !unsafe { entry_hidden(d, *result) } {
            return r;
        }
    }
}

/// # Safety
/// libc's contract for readdir.
#[no_mangle]
pub unsafe extern "C" fn readdir(d: *mut libc::DIR) -> *mut libc::dirent {
    // SAFETY: the caller's contract.
    unsafe { readdir_with(&REAL_READDIR, d) }
}

/// # Safety
/// libc's contract for readdir64.
#[no_mangle]
pub unsafe extern "C" fn readdir64(d: *mut libc::DIR) -> *mut libc::dirent {
    // SAFETY: the caller's contract.
    unsafe { readdir_with(&REAL_READDIR64, d) }
}

/// # Safety
/// libc's contract for readdir_r.
#[no_mangle]
pub unsafe extern "C" fn readdir_r(d: *mut libc::DIR, entry: *mut libc::dirent, result: *mut *mut libc::dirent) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { readdir_r_with(&REAL_READDIR_R, d, entry, result) }
}

/// # Safety
/// libc's contract for readdir64_r.
#[no_mangle]
pub unsafe extern "C" fn readdir64_r(d: *mut libc::DIR, entry: *mut libc::dirent, result: *mut *mut libc::dirent) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { readdir_r_with(&REAL_READDIR64_R, d, entry, result) }
}

/// Drop the hidden entries of `n` bytes of linux_dirent64 records read from `fd`; the bytes
/// left.
fn filter_records(fd: c_int, buf: &mut [u8]) -> usize {
    let (mut off, mut end) = (0, buf.len());
    while off + 19 <= end {
        let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
        if reclen < 19 || off + reclen > end {
            break;
        }
        let name = &buf[off + 19..off + reclen];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        if hidden(fd, name, buf[off + 18]) {
            buf.copy_within(off + reclen..end, off);
            end -= reclen;
        } else {
            off += reclen;
        }
    }
    end
}

/// # Safety
/// libc's contract for getdents64.
#[no_mangle]
pub unsafe extern "C" fn getdents64(fd: c_int, buf: *mut c_void, len: usize) -> isize {
    let f = REAL_GETDENTS64.get();
    loop {
        let n = if f == 0 {
            syscall!(libc::SYS_getdents64, fd, buf, len).map_or_else(|e| {
                sys::set_errno(e);
                -1
            }, |n| n as isize)
        } else {
            // SAFETY: f is libc's getdents64, with the caller's arguments.
            unsafe { std::mem::transmute::<usize, GetdentsFn>(f)(fd, buf, len) }
        };
        if n <= 0 {
            return n;
        }
        // SAFETY: the kernel wrote n bytes of records into the caller's buffer.
        let left = filter_records(fd, unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, n as usize) });
        if left > 0 {
            return left as isize;
        }
        // Every record was hidden: read on, as 0 would mean the end of the directory.
    }
}
