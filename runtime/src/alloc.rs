//! The runtime's own memory allocator, so that it never calls libc's malloc (a stopped thread
//! may hold malloc's locks).
//!
//! Two parts:
//! - a general size-class allocator on mmap'd slabs, guarded by a spin lock. Program threads only
//!   enter it from inside hooks, which run under the gate, so no stopped thread can hold the lock.
//! - a scratch arena used while a checkpoint is in progress. It is excluded from images: the
//!   checkpoint's own allocations happen after /proc/self/maps was read, and must not leave traces
//!   in the captured allocator state. It exists only during a checkpoint (and the restart path):
//!   segments are mapped when needed and unmapped at the end, so that between checkpoints the
//!   runtime holds no address space for it (a program under `ulimit -v` keeps what it had).
//!
//! Segments come from mmap (a raw system call: safe while threads are stopped). Before stopping
//! the threads, the checkpoint reserves what the stopped part needs (`scratch_reserve`, sized
//! from what earlier checkpoints used), so that running out of address space fails the
//! checkpoint cleanly before the stop rather than in the middle of it. Growth beyond the
//! reservation still works while address space is left.

use crate::sys;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const PAGE: usize = 4096;
const MIN_CLASS: usize = 4; // 16 bytes
const MAX_CLASS: usize = 16; // 64 KiB
const NCLASSES: usize = MAX_CLASS - MIN_CLASS + 1;

pub struct RuntimeAlloc;

struct General {
    lock: Spin,
    free: [AtomicUsize; NCLASSES],
}

static GENERAL: General = General { lock: Spin(AtomicBool::new(false)), free: [const { AtomicUsize::new(0) }; NCLASSES] };

/// A spin lock for the runtime's own threads (never taken by a thread that can be stopped
/// while holding it: program threads take it only inside hooks, under the gate).
struct Spin(AtomicBool);

impl Spin {
    fn lock(&self) {
        let mut spins = 0u32;
        while self.0.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                let _ = sys::syscall!(libc::SYS_sched_yield);
            }
        }
    }

    fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    if size > 1 << MAX_CLASS || layout.align() > PAGE {
        return None;
    }
    let bits = usize::BITS as usize - (size - 1).leading_zeros() as usize;
    Some(bits - MIN_CLASS)
}

fn page_up(n: usize) -> usize {
    (n + PAGE - 1) & !(PAGE - 1)
}

fn map_anon(len: usize, flags: i32) -> Option<usize> {
    sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags, -1, 0).ok()
}

impl General {
    fn alloc_class(&self, c: usize) -> *mut u8 {
        let size = 1usize << (c + MIN_CLASS);
        self.lock.lock();
        let mut head = self.free[c].load(Ordering::Relaxed);
        if head == 0 {
            let slab = (size * 16).max(256 * 1024);
            let Some(base) = map_anon(slab, 0) else {
                self.lock.unlock();
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
        self.lock.unlock();
        head as *mut u8
    }

    fn free_class(&self, p: *mut u8, c: usize) {
        self.lock.lock();
        // SAFETY: p is a block of class c that the caller no longer uses.
        unsafe { (p as *mut usize).write(self.free[c].load(Ordering::Relaxed)) };
        self.free[c].store(p as usize, Ordering::Relaxed);
        self.lock.unlock();
    }
}

// ---- scratch arena ----

/// At most this many segments (`in_image` has a bit for each); each new one is at least a
/// quarter of those before it together, so that few are needed and little is left unused.
const MAX_SEGS: usize = 64;
/// The smallest segment.
const MIN_SEG: usize = 1 << 20;

/// The segments mapped for the checkpoint in progress: `base[i]`, `len[i]` for i < `count`;
/// allocations bump `next` within the last one. Growth takes `lock`; `count` is published
/// (Release) after the segment's bounds, so lock-free readers (`in_scratch`) see whole segments.
struct Scratch {
    lock: Spin,
    active: AtomicBool,
    count: AtomicUsize,
    base: [AtomicUsize; MAX_SEGS],
    len: [AtomicUsize; MAX_SEGS],
    next: AtomicUsize,
    /// Bytes handed out since `scratch_begin` (for sizing the next reservation).
    used: AtomicUsize,
    /// Bit i: segment i was in the memory map read for the image being taken (it is in that
    /// image, as empty memory). After a restart from that image, those segments exist again
    /// (mapped empty by the restarter); the others do not.
    in_image: AtomicU64,
}

static SCRATCH: Scratch = Scratch {
    lock: Spin(AtomicBool::new(false)),
    active: AtomicBool::new(false),
    count: AtomicUsize::new(0),
    base: [const { AtomicUsize::new(0) }; MAX_SEGS],
    len: [const { AtomicUsize::new(0) }; MAX_SEGS],
    next: AtomicUsize::new(0),
    used: AtomicUsize::new(0),
    in_image: AtomicU64::new(0),
};

/// The largest number of scratch bytes a checkpoint used while the threads were stopped.
static PEAK_STOPPED: AtomicUsize = AtomicUsize::new(0);

/// The scratch arena's segments (a copy: no allocation), for code that must leave them alone.
#[derive(Clone, Copy)]
pub struct ScratchRanges {
    n: usize,
    r: [(u64, u64); MAX_SEGS],
}

impl ScratchRanges {
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.r[..self.n]
    }
}

impl Scratch {
    fn segment(&self, i: usize) -> (usize, usize) {
        let b = self.base[i].load(Ordering::Relaxed);
        (b, b + self.len[i].load(Ordering::Relaxed))
    }

    fn contains(&self, p: usize) -> bool {
        let n = self.count.load(Ordering::Acquire);
        (0..n).any(|i| {
            let (s, e) = self.segment(i);
            p >= s && p < e
        })
    }

    /// Bump-allocate in the last segment; None when it has no room. Under `lock`.
    fn bump(&self, size: usize, align: usize) -> Option<usize> {
        let n = self.count.load(Ordering::Relaxed);
        if n == 0 {
            return None;
        }
        let (_, end) = self.segment(n - 1);
        let cur = self.next.load(Ordering::Relaxed);
        let start = cur.checked_add(align - 1)? & !(align - 1);
        let stop = start.checked_add(size)?;
        if stop > end {
            return None;
        }
        self.next.store(stop, Ordering::Relaxed);
        self.used.fetch_add(stop - cur, Ordering::Relaxed);
        Some(start)
    }

    /// Map a segment with at least `need` bytes free. Under `lock`.
    fn grow(&self, need: usize) -> bool {
        let n = self.count.load(Ordering::Relaxed);
        if n == MAX_SEGS {
            return false;
        }
        let mapped: usize = (0..n).map(|i| self.len[i].load(Ordering::Relaxed)).sum();
        let len = page_up(need).max(MIN_SEG).max(page_up(mapped / 4));
        // Lazily backed: only the pages used cost memory. Ask for just what is needed if that
        // is all the address space left.
        let Some((base, len)) = map_anon(len, libc::MAP_NORESERVE).map(|b| (b, len)).or_else(|| {
            let len = page_up(need).max(MIN_SEG);
            map_anon(len, libc::MAP_NORESERVE).map(|b| (b, len))
        }) else {
            return false;
        };
        self.base[n].store(base, Ordering::Relaxed);
        self.len[n].store(len, Ordering::Relaxed);
        self.next.store(base, Ordering::Relaxed);
        self.count.store(n + 1, Ordering::Release);
        true
    }

    fn alloc(&self, layout: &Layout) -> *mut u8 {
        let align = layout.align().max(16);
        self.lock.lock();
        let p = self.bump(layout.size(), align).or_else(|| {
            // A fresh segment is page-aligned: enough for any alignment up to a page.
            (align <= PAGE && self.grow(layout.size())).then(|| self.bump(layout.size(), align)).flatten()
        });
        self.lock.unlock();
        p.map_or(std::ptr::null_mut(), |p| p as *mut u8)
    }

    /// Grow the last allocation in place (Vec growth during a checkpoint), if it is `p`.
    fn grow_in_place(&self, p: usize, old: usize, new: usize) -> bool {
        self.lock.lock();
        let n = self.count.load(Ordering::Relaxed);
        let ok = n > 0 && self.next.load(Ordering::Relaxed) == p + old && {
            let (_, end) = self.segment(n - 1);
            p + new <= end && p >= self.base[n - 1].load(Ordering::Relaxed)
        };
        if ok {
            self.next.store(p + new, Ordering::Relaxed);
            self.used.fetch_add(new.saturating_sub(old), Ordering::Relaxed);
        }
        self.lock.unlock();
        ok
    }

    /// Unmap the segments that exist (all, or the ones in the image), forget every one.
    fn release(&self, which: u64) {
        let n = self.count.load(Ordering::Relaxed);
        for i in 0..n {
            let (s, e) = self.segment(i);
            if which & (1 << i) != 0 {
                sys::munmap(s, e - s);
            }
        }
        self.count.store(0, Ordering::Release);
        self.next.store(0, Ordering::Relaxed);
        self.used.store(0, Ordering::Relaxed);
    }
}

/// Whether the caller runs on the checkpoint thread's TLS: the checkpoint thread itself, the
/// image writer's helper threads (clones that share its TLS) and the snapshot child (a copy of
/// it). Only they allocate from the scratch arena; a program thread in a hook during a
/// checkpoint gets general memory, which outlives the checkpoint.
pub(crate) fn on_checkpoint_thread() -> bool {
    let tp: u64;
    // SAFETY: reads the first word of the thread control block, which glibc sets to the
    // block's own address (the thread pointer) in every thread.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp == crate::CKPT_THREAD.fs_base.load(Ordering::Relaxed)
}

fn scratch_mode() -> bool {
    SCRATCH.active.load(Ordering::Relaxed) && on_checkpoint_thread()
}

/// Whether the caller's allocations come from the scratch arena now (a checkpoint's, freed as a
/// whole at its end). Outside it, general memory: a size class not used before maps a slab of
/// its own (256 KiB at least) that stays, and a restarted program that then allocates in a new
/// class has a mapping it did not have (restore_memory_maps).
pub(crate) fn in_scratch() -> bool {
    scratch_mode()
}

fn big_len(layout: &Layout) -> usize {
    page_up(layout.size())
}

/// While an image is written (`scratch_direct`), scratch allocations of at least this many
/// bytes are mapped on their own and unmapped when freed, instead of bumped in the arena, which
/// never reuses what is freed: the writer's encoders and read buffers, zstd's workspaces (which
/// zstd frees and allocates again as the sizes it compresses change) and the growing vectors of
/// the index held 87 MiB of the arena at the end of the chunks and 212 MiB at the end of the
/// image of a 4 GiB program, nearly all of it freed memory. Only after the memory map was read
/// for the image, so that none of these mappings is in it.
const DIRECT_MIN: usize = (1 << MAX_CLASS) + 1;

static DIRECT: AtomicBool = AtomicBool::new(false);

/// Map large scratch allocations on their own (see DIRECT_MIN) from now on, or no longer.
pub fn scratch_direct(on: bool) {
    DIRECT.store(on, Ordering::Release);
}

unsafe impl GlobalAlloc for RuntimeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if scratch_mode() {
            if layout.size() >= DIRECT_MIN && layout.align() <= PAGE && DIRECT.load(Ordering::Acquire) {
                // Freed by `dealloc`'s large path (DIRECT_MIN is above every size class). Out of
                // address space: the arena, which was reserved for it.
                if let Some(a) = map_anon(big_len(&layout), 0) {
                    return a as *mut u8;
                }
            }
            let p = SCRATCH.alloc(&layout);
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
                map_anon(big_len(&layout), 0).map_or(std::ptr::null_mut(), |a| a as *mut u8)
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if SCRATCH.contains(p as usize) {
            return;
        }
        match class_of(&layout) {
            Some(c) => GENERAL.free_class(p, c),
            None => sys::munmap(p as usize, big_len(&layout)),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarding to our own alloc.
        let p = unsafe { self.alloc(layout) };
        // A large block outside the arena is a fresh mapping, zero already: not touched here, so
        // that only what is used costs memory (a writer's shuffle buffer, 4 MiB, when the data
        // is stored raw).
        if !p.is_null() && (class_of(&layout).is_some() || SCRATCH.contains(p as usize)) {
            // SAFETY: p is a block of layout.size() bytes we just allocated.
            unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if scratch_mode() && SCRATCH.contains(p as usize) && SCRATCH.grow_in_place(p as usize, layout.size(), new_size) {
            return p;
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

/// The scratch arena's segments, which images record as empty memory.
pub fn scratch_ranges() -> ScratchRanges {
    let mut out = ScratchRanges { n: 0, r: [(0, 0); MAX_SEGS] };
    out.n = SCRATCH.count.load(Ordering::Acquire);
    for i in 0..out.n {
        let (s, e) = SCRATCH.segment(i);
        out.r[i] = (s as u64, e as u64);
    }
    out
}

/// The image being taken holds the segments of `ranges` (read with the memory map it stores).
pub fn note_in_image(ranges: &ScratchRanges) {
    SCRATCH.in_image.store(if ranges.n >= 64 { u64::MAX } else { (1u64 << ranges.n) - 1 }, Ordering::Relaxed);
    const _: () = assert!(MAX_SEGS <= 64);
}

/// Route the checkpoint thread's allocations (and its helpers') to the scratch arena, from empty.
pub fn scratch_begin() {
    SCRATCH.used.store(0, Ordering::Relaxed);
    SCRATCH.active.store(true, Ordering::Release);
}

/// Make sure `bytes` can be allocated from the scratch arena without mapping anything more
/// (call before stopping the threads). False: no address space for it.
pub fn scratch_reserve(bytes: usize) -> bool {
    SCRATCH.lock.lock();
    let n = SCRATCH.count.load(Ordering::Relaxed);
    let room = if n == 0 { 0 } else { SCRATCH.segment(n - 1).1 - SCRATCH.next.load(Ordering::Relaxed) };
    let ok = room >= bytes || SCRATCH.grow(bytes);
    SCRATCH.lock.unlock();
    ok
}

/// Scratch bytes handed out since `scratch_begin`.
pub fn scratch_used() -> usize {
    SCRATCH.used.load(Ordering::Relaxed)
}

/// Record what a stop used (`used` scratch bytes), for sizing later reservations.
pub fn note_stopped_use(used: usize) {
    PEAK_STOPPED.fetch_max(used, Ordering::Relaxed);
}

/// What to reserve before stopping the threads: `floor`, or more if an earlier stop used more.
pub fn stopped_reserve(floor: usize) -> usize {
    let peak = PEAK_STOPPED.load(Ordering::Relaxed);
    floor.max(peak + peak / 2)
}

/// Back to the general allocator; unmap the arena (nothing allocated in it outlives the
/// checkpoint).
pub fn scratch_end() {
    SCRATCH.active.store(false, Ordering::Release);
    SCRATCH.release(u64::MAX);
}

/// In a child made by fork (one thread, a copy of the parent's memory), before it allocates:
/// a thread of the parent that held a lock of the allocator at the fork (the checkpoint thread
/// allocates in its loop) does not exist here and never releases it, so every allocation of
/// the child spun forever (seen: MPICH's hydra_pmi_proxy's children between fork and exec,
/// their job's start without output). The lists and the arena are whole at every instant of
/// the locked sections (each changes by one store of a finished value; a block or slab taken
/// half-way is lost to the child, no more), so the child takes them as they are.
pub fn after_fork_child() {
    GENERAL.lock.unlock();
    SCRATCH.lock.unlock();
}

/// At restart, before anything else: the segment table is the one of the moment the image was
/// read, partly stale. The segments that were in the image exist again (the restarter mapped
/// them, empty): unmap them. The others never existed in this process: forget them.
pub fn after_restart() {
    SCRATCH.active.store(false, Ordering::Release);
    // The image holds this process's memory as the writer left it, with large scratch
    // allocations mapped on their own (`scratch_direct`) while it wrote: off again, so that
    // none is made before the next checkpoint has read its memory map (it would be taken for
    // the program's: "not copied by fork").
    DIRECT.store(false, Ordering::Release);
    SCRATCH.lock.unlock();
    SCRATCH.release(SCRATCH.in_image.load(Ordering::Relaxed));
    SCRATCH.in_image.store(0, Ordering::Relaxed);
}
