//! The runtime's own memory allocator, so that it never calls libc's malloc (a stopped thread
//! may hold malloc's locks).
//!
//! Two parts:
//! - a general size-class allocator on mmap'd slabs, guarded by a spin lock. Program threads only
//!   enter it from inside hooks, which run under the gate, so no stopped thread can hold the lock.
//! - a scratch arena used while a checkpoint is in progress. It is excluded from images: the
//!   checkpoint's own allocations happen after /proc/self/maps was read, and must not leave traces
//!   in the captured allocator state. It is reset at the start of each checkpoint and at restart.

use crate::sys;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const PAGE: usize = 4096;
const MIN_CLASS: usize = 4; // 16 bytes
const MAX_CLASS: usize = 16; // 64 KiB
const NCLASSES: usize = MAX_CLASS - MIN_CLASS + 1;
const SCRATCH_SIZE: usize = 1 << 30;

pub struct RuntimeAlloc;

struct General {
    lock: AtomicBool,
    free: [AtomicUsize; NCLASSES],
}

static GENERAL: General = General { lock: AtomicBool::new(false), free: [const { AtomicUsize::new(0) }; NCLASSES] };

/// Scratch arena: [SCRATCH_BASE, SCRATCH_BASE + SCRATCH_SIZE), bump pointer SCRATCH_NEXT.
static SCRATCH_BASE: AtomicUsize = AtomicUsize::new(0);
static SCRATCH_NEXT: AtomicUsize = AtomicUsize::new(0);
static SCRATCH_ACTIVE: AtomicBool = AtomicBool::new(false);

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    if size > 1 << MAX_CLASS || layout.align() > PAGE {
        return None;
    }
    let bits = usize::BITS as usize - (size - 1).leading_zeros() as usize;
    Some(bits - MIN_CLASS)
}

fn big_len(layout: &Layout) -> usize {
    (layout.size() + PAGE - 1) & !(PAGE - 1)
}

impl General {
    fn lock(&self) {
        let mut spins = 0u32;
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                let _ = sys::syscall!(libc::SYS_sched_yield);
            }
        }
    }

    fn unlock(&self) {
        self.lock.store(false, Ordering::Release);
    }

    fn alloc_class(&self, c: usize) -> *mut u8 {
        let size = 1usize << (c + MIN_CLASS);
        self.lock();
        let mut head = self.free[c].load(Ordering::Relaxed);
        if head == 0 {
            let slab = (size * 16).max(256 * 1024);
            let Ok(base) = sys::mmap(0, slab, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) else {
                self.unlock();
                return std::ptr::null_mut();
            };
            // Thread the new blocks into a free list, first block first.
            let n = slab / size;
            for i in 0..n {
                let next = if i + 1 < n { base + (i + 1) * size } else { 0 };
                // SAFETY: the block lies inside the slab we just mapped read-write.
                unsafe { ((base + i * size) as *mut usize).write(next) };
            }
            head = base;
        }
        // SAFETY: head is a free block of this class; its first word holds the next free block.
        let next = unsafe { (head as *const usize).read() };
        self.free[c].store(next, Ordering::Relaxed);
        self.unlock();
        head as *mut u8
    }

    fn free_class(&self, p: *mut u8, c: usize) {
        self.lock();
        // SAFETY: p is a block of class c that the caller no longer uses.
        unsafe { (p as *mut usize).write(self.free[c].load(Ordering::Relaxed)) };
        self.free[c].store(p as usize, Ordering::Relaxed);
        self.unlock();
    }
}

fn in_scratch(p: *mut u8) -> bool {
    let base = SCRATCH_BASE.load(Ordering::Relaxed);
    base != 0 && (p as usize) >= base && (p as usize) < base + SCRATCH_SIZE
}

fn scratch_alloc(layout: &Layout) -> *mut u8 {
    let base = SCRATCH_BASE.load(Ordering::Relaxed);
    let align = layout.align().max(16);
    let mut cur = SCRATCH_NEXT.load(Ordering::Relaxed);
    loop {
        let start = (cur + align - 1) & !(align - 1);
        let end = start + layout.size();
        if end > base + SCRATCH_SIZE {
            return std::ptr::null_mut();
        }
        match SCRATCH_NEXT.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return start as *mut u8,
            Err(c) => cur = c,
        }
    }
}

unsafe impl GlobalAlloc for RuntimeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if SCRATCH_ACTIVE.load(Ordering::Relaxed) {
            let p = scratch_alloc(&layout);
            if !p.is_null() {
                return p;
            }
        }
        match class_of(&layout) {
            Some(c) => GENERAL.alloc_class(c),
            None => {
                if layout.align() > PAGE {
                    return std::ptr::null_mut();
                }
                sys::mmap(0, big_len(&layout), libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
                    .map(|a| a as *mut u8)
                    .unwrap_or(std::ptr::null_mut())
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if in_scratch(p) {
            return;
        }
        match class_of(&layout) {
            Some(c) => GENERAL.free_class(p, c),
            None => sys::munmap(p as usize, big_len(&layout)),
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Grow the last scratch allocation in place (Vec growth during a checkpoint).
        if in_scratch(p) && SCRATCH_ACTIVE.load(Ordering::Relaxed) {
            let end = p as usize + layout.size();
            let base = SCRATCH_BASE.load(Ordering::Relaxed);
            if p as usize + new_size <= base + SCRATCH_SIZE
                && SCRATCH_NEXT.compare_exchange(end, p as usize + new_size, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                return p;
            }
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: forwarding to our own alloc/dealloc with matching layouts.
        unsafe {
            let q = self.alloc(new_layout);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
            q
        }
    }
}

/// Reserve the scratch arena (lazily backed memory). Called once at startup.
pub fn init_scratch() {
    if SCRATCH_BASE.load(Ordering::Relaxed) != 0 {
        return;
    }
    if let Ok(base) = sys::mmap(
        0,
        SCRATCH_SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    ) {
        SCRATCH_BASE.store(base, Ordering::Relaxed);
        SCRATCH_NEXT.store(base, Ordering::Relaxed);
    }
}

/// The scratch arena's address range, which images record as empty memory.
pub fn scratch_range() -> (u64, u64) {
    let b = SCRATCH_BASE.load(Ordering::Relaxed) as u64;
    (b, b + if b == 0 { 0 } else { SCRATCH_SIZE as u64 })
}

/// Route this thread's (the checkpoint thread's) allocations to the scratch arena, from empty.
pub fn scratch_begin() {
    SCRATCH_NEXT.store(SCRATCH_BASE.load(Ordering::Relaxed), Ordering::Relaxed);
    SCRATCH_ACTIVE.store(SCRATCH_BASE.load(Ordering::Relaxed) != 0, Ordering::Release);
}

/// Back to the general allocator; give the arena's pages back to the kernel.
pub fn scratch_end() {
    SCRATCH_ACTIVE.store(false, Ordering::Release);
    let base = SCRATCH_BASE.load(Ordering::Relaxed);
    let used = SCRATCH_NEXT.load(Ordering::Relaxed) - base;
    if base != 0 && used > 0 {
        let _ = sys::syscall!(libc::SYS_madvise, base, (used + PAGE - 1) & !(PAGE - 1), libc::MADV_DONTNEED);
    }
    SCRATCH_NEXT.store(base, Ordering::Relaxed);
}
