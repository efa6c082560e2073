//! AIO contexts (io_setup). A context is a ring of completion events that the kernel maps into
//! the process (`/[aio] (deleted)` in /proc/self/maps); its id, which the program keeps, is the
//! ring's address, and the kernel finds the context from it. The ring's memory is stored like
//! any shared memory; this module makes it a kernel context again.
//!
//! Capture (runtime, threads stopped): the address and length of every ring whose header is
//! sane, kept in this module's static data, which is part of the memory image.
//!
//! Restore: ckpt-restart first checks, before the switch, that this kernel makes rings of the
//! same size for the same request count (the count is found back from the ring's size, as the
//! kernel computes it: it depends on the number of possible CPUs); the restart is refused
//! otherwise. After the switch, the runtime (single-threaded, before the program's threads
//! run) calls `restore`: for each ring, io_setup makes a new context, completions are generated
//! (1-byte writes to /dev/null, which complete at once) until the kernel's tail is where the old
//! one was, the old head and events are copied in, and the new ring is moved over the old
//! ring's address (mremap keeps the context, whose id becomes that address).
//!
//! Requests in flight at checkpoint time (submitted, not completed) cannot be seen from user
//! space: they are lost, and the program never gets their completion.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The name /proc/self/maps gives a ring.
pub const RING_NAME: &[u8] = b"/[aio] (deleted)";
const PAGE: u64 = 4096;
/// struct aio_ring (the ring's header) and struct io_event: 32 bytes each.
const HEADER: u64 = 32;
const EVENT: u64 = 32;
const MAGIC: u32 = 0xa10a_10a1;
const IOCB_CMD_PWRITE: u16 = 1;

/// The kernel's aio_ring header.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ring {
    id: u32,
    nr: u32,
    head: u32,
    tail: u32,
    magic: u32,
    compat_features: u32,
    incompat_features: u32,
    header_length: u32,
}

/// The kernel's struct iocb.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

/// The io_setup request count that gives a ring of `len` bytes: the kernel doubles the count
/// (after raising it to 4 per possible CPU), adds 2, and rounds the ring up to whole pages.
pub fn requests(len: u64) -> u64 {
    let events = (len - HEADER) / EVENT;
    events.saturating_sub(2) / 2
}

fn io_setup(nr: u64) -> Result<u64, i32> {
    let mut ctx: u64 = 0;
    // SAFETY: ctx is a valid out-parameter.
    if unsafe { libc::syscall(libc::SYS_io_setup, nr, &mut ctx as *mut u64) } < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
    }
    Ok(ctx)
}

fn io_destroy(ctx: u64) {
    // SAFETY: destroying a context of ours.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
}

/// Restore, before the switch: whether this kernel makes a ring of `len` bytes for the request
/// count a ring of `len` bytes had (a context made and destroyed again to see).
pub fn check(addr: u64, len: u64) -> crate::Result<()> {
    let nr = requests(len);
    let ctx = io_setup(nr).map_err(|e| {
        crate::Error::Refused(format!("the AIO context at {addr:#x} cannot be made again: io_setup({nr}): {}", std::io::Error::from_raw_os_error(e)))
    })?;
    // SAFETY: ctx is the address of the new ring's header, mapped by the kernel.
    let got = unsafe { (*(ctx as *const Ring)).nr } as u64;
    io_destroy(ctx);
    if got != (len - HEADER) / EVENT {
        return Err(crate::Error::Refused(format!(
            "the AIO context at {addr:#x} cannot be made again with its size here ({} events; this machine makes {got}: another number of CPUs?)",
            (len - HEADER) / EVENT
        )));
    }
    Ok(())
}

const MAX: usize = 16;
/// Rings recorded at checkpoint time: (address, length) pairs, `COUNT` of them.
static RINGS: [AtomicUsize; 2 * MAX] = [const { AtomicUsize::new(0) }; 2 * MAX];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Capture: record the rings among `maps` (start, end, name), threads stopped.
pub fn capture<'a>(maps: impl Iterator<Item = (u64, u64, &'a [u8])>) {
    let mut n = 0;
    for (start, end, name) in maps {
        if name != RING_NAME || n == MAX || end - start < PAGE {
            continue;
        }
        // SAFETY: the ring's header is mapped readable at `start` (a ring of this process).
        let r = unsafe { *(start as *const Ring) };
        let sane = r.magic == MAGIC && r.header_length as u64 == HEADER && r.nr as u64 == (end - start - HEADER) / EVENT;
        if !sane {
            continue;
        }
        RINGS[2 * n].store(start as usize, Ordering::Relaxed);
        RINGS[2 * n + 1].store((end - start) as usize, Ordering::Relaxed);
        n += 1;
    }
    COUNT.store(n, Ordering::Release);
}

/// Restore, after the switch (single thread, before the program's threads run): make each
/// recorded ring a kernel context again at its address. Returns what failed, for the log.
pub fn restore() -> Vec<String> {
    let mut errors = Vec::new();
    for i in 0..COUNT.load(Ordering::Acquire) {
        let addr = RINGS[2 * i].load(Ordering::Relaxed) as u64;
        let len = RINGS[2 * i + 1].load(Ordering::Relaxed) as u64;
        if let Err(e) = restore_ring(addr, len) {
            errors.push(format!("AIO context at {addr:#x}: {e}"));
        }
    }
    errors
}

fn restore_ring(addr: u64, len: u64) -> Result<(), String> {
    let errno = || std::io::Error::last_os_error().to_string();
    // SAFETY: the old ring's contents were restored at addr (shared memory of the image).
    let old = unsafe { *(addr as *const Ring) };
    let ctx = io_setup(requests(len)).map_err(|e| format!("io_setup: {}", std::io::Error::from_raw_os_error(e)))?;
    let new = ctx as *mut Ring;
    // SAFETY: the new ring's header, mapped by the kernel.
    let nr = unsafe { (*new).nr };
    if nr != old.nr || old.head >= nr || old.tail >= nr {
        io_destroy(ctx);
        return Err(format!("ring of {nr} events made for one of {} (head {}, tail {})", old.nr, old.head, old.tail));
    }
    // Move the kernel's tail to the old one with completions that cost nothing.
    let count = if old.tail < old.head { nr + old.tail } else { old.tail } as usize;
    if count > 0 {
        // SAFETY: a constant path.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if null < 0 {
            io_destroy(ctx);
            return Err(format!("/dev/null: {}", errno()));
        }
        let byte = 0u8;
        let iocb = Iocb { fildes: null as u32, buf: &byte as *const u8 as u64, nbytes: 1, opcode: IOCB_CMD_PWRITE, ..Default::default() };
        let list: Vec<*const Iocb> = vec![&iocb; count.min(nr as usize - 1)];
        let mut done = 0usize;
        while done < count {
            let want = (count - done).min(list.len());
            // SAFETY: list holds `want` valid iocb pointers.
            let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx, want, list.as_ptr()) };
            if r <= 0 {
                let e = errno();
                // SAFETY: closing our fd.
                unsafe { libc::close(null) };
                io_destroy(ctx);
                return Err(format!("io_submit: {e}"));
            }
            done += r as usize;
            // Consume what completed (as io_getevents would), up to the old head.
            // SAFETY: the new ring's header.
            unsafe { (*new).head = (done as u32).min(old.head) };
        }
        // SAFETY: closing our fd.
        unsafe { libc::close(null) };
    }
    // SAFETY: both rings are `len` bytes; the events follow the header.
    unsafe {
        std::ptr::copy_nonoverlapping((addr + HEADER) as *const u8, (ctx + HEADER) as *mut u8, (len - HEADER) as usize);
        (*new).head = old.head;
    }
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    // SAFETY: moving the new ring over the old one's address (which it replaces).
    let r = unsafe { libc::syscall(libc::SYS_mremap, ctx, len, len, flags, addr) };
    if r as u64 != addr {
        let e = errno();
        io_destroy(ctx);
        return Err(format!("mremap: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring made here, found back from its size, gives a ring of the same size.
    #[test]
    fn request_count_from_ring_size() {
        for nr in [1u64, 16, 128, 1000] {
            let Ok(ctx) = io_setup(nr) else { return }; // no AIO here
            // SAFETY: the new ring's header.
            let events = unsafe { (*(ctx as *const Ring)).nr } as u64;
            let len = (HEADER + events * EVENT).div_ceil(PAGE) * PAGE;
            io_destroy(ctx);
            assert!(check(0, len).is_ok(), "{nr} requests: ring of {len} bytes");
        }
    }
}
