//! The background snapshot's userfaultfd: write-protection with *synchronous* faults, in user
//! mode only (UFFD_USER_MODE_ONLY: no privilege, whatever vm.unprivileged_userfaultfd says).
//!
//! A write of the program to a protected page stops the writing thread until the snapshot has
//! saved the page and lifts the protection (bgsnap.rs). Writes by the kernel (a read() into
//! protected memory, a shared futex) are not delivered in user-mode-only mode: they fail with
//! EFAULT (measured here: read, FUTEX_WAIT without the private flag, FUTEX_WAKE_OP, a syscall's
//! clock_gettime). Syscall user dispatch (sud.rs) makes sure no system call of the program
//! meets a protected page.
//!
//! The fd is made once and kept (hidden from the program, like the control socket): regions stay
//! registered between checkpoints, which costs nothing while no page is protected (a registered
//! region merges only with registered neighbours, as with any userfaultfd).

use crate::sys::{self, syscall};
use std::sync::atomic::{AtomicI32, Ordering};

const UFFD_USER_MODE_ONLY: i64 = 1;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
const UFFDIO_REGISTER_MODE_WP: u64 = 2;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1;
const UFFDIO_WRITEPROTECT_MODE_DONTWAKE: u64 = 2;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// struct uffd_msg for a page fault: event, reserved, then flags and address.
#[repr(C)]
struct UffdMsg {
    event: u8,
    reserved1: u8,
    reserved2: u16,
    reserved3: u32,
    flags: u64,
    address: u64,
    ptid: u32,
    pad: u32,
}

/// -1: not made yet; -2: unavailable here.
static FD: AtomicI32 = AtomicI32::new(-1);

/// The userfaultfd, made on first use; None where the kernel refuses it.
pub fn fd() -> Option<i32> {
    match FD.load(Ordering::Acquire) {
        -2 => return None,
        fd if fd >= 0 => return Some(fd),
        _ => {}
    }
    let fd = match syscall!(libc::SYS_userfaultfd, UFFD_USER_MODE_ONLY | libc::O_CLOEXEC as i64) {
        Ok(fd) => sys::own(sys::move_high(fd as i32)),
        Err(e) => {
            crate::log::log!(crate::log::DEBUG, "no background snapshots (userfaultfd: errno {e})");
            FD.store(-2, Ordering::Release);
            return None;
        }
    };
    let mut api = UffdioApi { api: UFFD_API, features: 0, ioctls: 0 };
    if let Err(e) = syscall!(libc::SYS_ioctl, fd, UFFDIO_API, &mut api as *mut UffdioApi) {
        crate::log::log!(crate::log::DEBUG, "no background snapshots (userfaultfd API: errno {e})");
        sys::close(fd);
        FD.store(-2, Ordering::Release);
        return None;
    }
    FD.store(fd, Ordering::Release);
    Some(fd)
}

/// Whether `fd` is ours (not part of the program's fd table).
pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && FD.load(Ordering::Relaxed) == fd
}

/// Forget the fd (a restart: its number means nothing now; a forked child: the parent's).
pub fn forget(close: bool) {
    let fd = FD.swap(-1, Ordering::AcqRel);
    if close && fd >= 0 {
        sys::close_inherited(fd);
    }
}

/// Register [start, start + len) for write-protect faults (idempotent).
pub fn register(fd: i32, start: u64, len: u64) -> Result<(), i32> {
    let mut reg = UffdioRegister { range: UffdioRange { start, len }, mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
    syscall!(libc::SYS_ioctl, fd, UFFDIO_REGISTER, &mut reg as *mut UffdioRegister).map(|_| ())
}

/// Protect [start, start + len) (pages not in memory are left alone).
pub fn protect(fd: i32, start: u64, len: u64) -> Result<(), i32> {
    let mut wp = UffdioWriteprotect { range: UffdioRange { start, len }, mode: UFFDIO_WRITEPROTECT_MODE_WP };
    syscall!(libc::SYS_ioctl, fd, UFFDIO_WRITEPROTECT, &mut wp as *mut UffdioWriteprotect).map(|_| ())
}

/// Lift the protection of [start, start + len) and wake the threads waiting on it (unless
/// `wake` is false).
pub fn unprotect(fd: i32, start: u64, len: u64, wake: bool) -> Result<(), i32> {
    let mode = if wake { 0 } else { UFFDIO_WRITEPROTECT_MODE_DONTWAKE };
    let mut wp = UffdioWriteprotect { range: UffdioRange { start, len }, mode };
    syscall!(libc::SYS_ioctl, fd, UFFDIO_WRITEPROTECT, &mut wp as *mut UffdioWriteprotect).map(|_| ())
}

/// Wait for the next write fault; its address. None on an error (EINTR included).
pub fn next_fault(fd: i32) -> Option<u64> {
    // SAFETY: an all-zero uffd_msg is a valid buffer.
    let mut m: UffdMsg = unsafe { std::mem::zeroed() };
    let n = syscall!(libc::SYS_read, fd, &mut m as *mut UffdMsg, std::mem::size_of::<UffdMsg>()).ok()?;
    (n as usize == std::mem::size_of::<UffdMsg>() && m.event == UFFD_EVENT_PAGEFAULT).then_some(m.address)
}
