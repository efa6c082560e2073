//! The runtime's own fds (`sys::own`: its link to the process tree's coordinator, its control
//! socket, its image directory...) kept from the program's close calls. A daemon closes every fd
//! it may have (a loop up to its fd limit, closefrom, close_range) after it forks; that took the
//! runtime's fds too, and no checkpoint of its tree could be taken any more. Here close() of one
//! of them does nothing and returns 0 (the program believes it closed it; the number stays
//! taken, at the end of the fd table, as by a file it inherited without knowing), and closefrom and
//! close_range close around them. A raw close system call, or dup2 onto one of them, still takes
//! it (the program's file is then at that number, and the runtime knows it is not its own).
//! The runtime fds of another process that shares this fd table (clone with CLONE_FILES) are
//! kept the same way (`sys::foreign_own`).

use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_uint};

static REAL_CLOSE: RealFn = RealFn::new(b"close\0");

type CloseFn = unsafe extern "C" fn(c_int) -> c_int;

pub fn resolve() {
    REAL_CLOSE.get();
    // Now, at start: computed later inside a hook it would be a system call the program's
    // seccomp filter (strict mode) may forbid.
    sys::high_fd();
}

/// # Safety
/// libc's contract for close.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if fd >= sys::high_fd() && (sys::still_own(fd) || sys::foreign_own(fd)) {
        return 0;
    }
    crate::inotifyq::closed(fd as c_uint, fd as c_uint);
    crate::inotifywd::closed(fd as c_uint, fd as c_uint);
    // SAFETY: forwarding to libc's close.
    unsafe { std::mem::transmute::<usize, CloseFn>(REAL_CLOSE.get())(fd) }
}

/// close_range(2) of [first, last] but the runtime's own fds (with CLOSE_RANGE_CLOEXEC, which
/// only marks them close-on-exec as they are already, all of it).
fn close_range_around(first: c_uint, last: c_uint, flags: c_uint) -> c_int {
    if flags & libc::CLOSE_RANGE_CLOEXEC == 0 {
        crate::inotifyq::closed(first, last);
        crate::inotifywd::closed(first, last);
    }
    let call = |a: c_uint, b: c_uint| match syscall!(libc::SYS_close_range, a, b, flags) {
        Ok(_) => 0,
        Err(e) => {
            sys::set_errno(e);
            -1
        }
    };
    if flags & libc::CLOSE_RANGE_CLOEXEC != 0 || last < sys::high_fd() as c_uint {
        return call(first, last);
    }
    let (own, n) = sys::own_fds();
    let mut from = first;
    for &fd in &own[..n] {
        let fd = fd as c_uint;
        if fd < from || fd > last {
            continue;
        }
        if fd > from && call(from, fd - 1) < 0 {
            return -1;
        }
        from = fd + 1;
    }
    if from <= last { call(from, last) } else { 0 }
}

/// # Safety
/// libc's contract for close_range.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last {
        sys::set_errno(libc::EINVAL);
        return -1;
    }
    close_range_around(first, last, flags as c_uint)
}

/// # Safety
/// libc's contract for closefrom.
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    let _ = close_range_around(lowfd.max(0) as c_uint, c_uint::MAX, 0);
}
