//! Filling fresh staged memory by UFFDIO_COPY instead of by writing into it. Writing into fresh
//! anonymous memory makes the kernel fault in and zero every page before the data overwrites it;
//! on the VMs measured here that first touch was most of a cold restart (docs/benchmarks.md:
//! What bounds a cold restart). UFFDIO_COPY allocates each page and fills it from a buffer
//! without zeroing it first and without a fault per page. The userfaultfd is user-mode only
//! (UFFD_USER_MODE_ONLY: no privilege needed); it is registered for missing pages of the regions
//! filled this way while their first image is applied, and closed right after (the registration
//! goes with it), before anything else touches that memory.
//!
//! While it is registered, nothing may touch a missing page of those regions: a user-mode access
//! would wait for a fault handler that does not exist, a kernel access (O_DIRECT, read(2)) fails
//! with EFAULT. So every layer of such a region is decoded into a buffer of the thread's own and
//! copied from there; pages no layer writes stay missing (they read as zeros afterwards).

use anyhow::{bail, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const UFFD_USER_MODE_ONLY: libc::c_int = 1;
const UFFD_API: u64 = 0xAA;
const UFFDIO_API: libc::c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: libc::c_ulong = 0xC020_AA00;
const UFFDIO_COPY: libc::c_ulong = 0xC028_AA03;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const PAGE: u64 = 4096;

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Register {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// A userfaultfd with the ranges to fill registered (closing it, on drop, unregisters them),
/// and the buffers of the threads that fill them.
pub struct CopyFill {
    fd: OwnedFd,
    buffers: std::sync::Mutex<Vec<Bounce>>,
}

impl CopyFill {
    /// Register `ranges` (start, len; page-aligned), with `threads` buffers of `buffer` bytes
    /// mapped first. None when the kernel refuses (no userfaultfd, a seccomp filter, a kernel
    /// before 5.11, no room for the buffers under an address-space limit): the caller writes
    /// into the memory as usual.
    pub fn register(ranges: &[(u64, u64)], threads: usize, buffer: usize) -> Option<CopyFill> {
        let buffers = (0..threads).map(|_| Bounce::new(buffer)).collect::<Result<Vec<_>>>().ok()?;
        // SAFETY: plain system call; the fd it returns is ours.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | UFFD_USER_MODE_ONLY) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut api = Api { api: UFFD_API, features: 0, ioctls: 0 };
        // SAFETY: UFFDIO_API reads and writes the struct we pass.
        if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api) } != 0 {
            return None;
        }
        for &(start, len) in ranges {
            let mut reg = Register { start, len, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
            // SAFETY: UFFDIO_REGISTER reads and writes the struct; the range is our staged mapping.
            if unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER, &mut reg) } != 0 {
                return None;
            }
        }
        Some(CopyFill { fd, buffers: std::sync::Mutex::new(buffers) })
    }

    /// A buffer for one filling thread (it keeps it until the fill ends).
    pub fn buffer(&self) -> Result<Bounce> {
        let mut b = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        b.pop().ok_or_else(|| anyhow::anyhow!("internal: more filling threads than buffers"))
    }

    /// Copy `src` into the missing pages at `dst` (both a whole number of pages).
    pub fn copy(&self, dst: u64, src: &[u8]) -> Result<()> {
        let len = src.len() as u64;
        if !dst.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            bail!("internal: copy into staged memory at {dst:#x} ({len} bytes) is not page-aligned");
        }
        let mut done = 0u64;
        while done < len {
            let mut c = Copy { dst: dst + done, src: src.as_ptr() as u64 + done, len: len - done, mode: 0, copy: 0 };
            // SAFETY: UFFDIO_COPY reads src (our buffer, len bytes) and fills missing pages of our
            // registered staged mapping; it writes only the struct's `copy` field.
            let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY, &mut c) };
            if rc == 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // Interrupted part-way (a signal, or contention): go on after what was copied.
                Some(libc::EAGAIN) | Some(libc::EINTR) => done += c.copy.max(0) as u64,
                _ => bail!("cannot fill staged memory at {:#x}: {e}", dst + done),
            }
        }
        Ok(())
    }
}

/// A page-aligned buffer of one thread (so that O_DIRECT reads of raw chunks still go straight
/// into it), mapped outside the staged memory.
pub struct Bounce {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a private mapping owned by the Bounce, used by one thread at a time (&mut self).
unsafe impl Send for Bounce {}

impl Bounce {
    fn new(len: usize) -> Result<Bounce> {
        // SAFETY: a new private anonymous mapping, ours alone.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            bail!("cannot map a staging buffer: {}", std::io::Error::last_os_error());
        }
        Ok(Bounce { ptr: p as *mut u8, len })
    }

    /// Its first `n` bytes (at most its length).
    pub fn get(&mut self, n: usize) -> &mut [u8] {
        // SAFETY: our mapping of self.len bytes, borrowed mutably through self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, n.min(self.len)) }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        // SAFETY: our mapping, no longer borrowed.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}
