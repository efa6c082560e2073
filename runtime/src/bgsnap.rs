//! Background snapshots: the program's private memory is write-protected at the checkpoint's
//! instant and the program runs on at once; the image is written from the protected pages, and
//! a page the program is about to write is saved first (QEMU's background snapshot, with a
//! user-mode userfaultfd and syscall user dispatch, both unprivileged). The pause no longer
//! grows with memory (no page-table copy at fork), and the extra memory is bounded: a page
//! saved ahead of the writer waits in a buffer of `budget` bytes; when it is full, a thread
//! that writes an unsaved page waits until the writer has stored its window.
//!
//! Phases (`phase`):
//! - ARMING, while the program runs (syscall dispatch already on, sud.rs): the tracked regions
//!   (private anonymous memory, minus stacks, TLS blocks, alternate signal stacks, which the
//!   kernel writes by itself, and the runtime's own writable segments, which the runtime writes
//!   meanwhile: all copied at the instant instead, freeze.rs) are registered and write-protected
//!   (~20-60 ms per GiB here). A write now just lifts the protection of its page.
//! - the instant, with the threads stopped: the window table is made and saving starts; then
//!   pages that are in memory but not protected (written or new since arming) are protected
//!   again: one PAGEMAP_SCAN of each range the arming noted as possibly written (bgarm.rs), or,
//!   when it noted too many, of all the tracked memory (~1 ms per GiB).
//! - SAVING, while the program runs: the writer threads store the regions window by window
//!   (CHUNK_SIZE of addresses, as memwrite plans them). The pages of a window to store are those
//!   still protected (in memory at the instant, not saved yet) and those in the buffer. As soon
//!   as a window's pages are read (encoded, or copied into the writer's buffer: before the
//!   disk write), its protection is lifted. A write fault on a page of a window not started
//!   copies the page (and its protected neighbours, 64 KiB at most) into the buffer and lifts
//!   their protection; without room, the window is queued urgently and the thread waits for it.
//!   A system call that would write or drop protected memory gets the same treatment first
//!   (`secure`, from sud.rs).
//!
//! The fault handler runs on a thread of the writer process (snapshot.rs: a CLONE_VM child), never
//! takes a lock a program thread holds, and writes only runtime memory. Locks here are spin locks
//! between that thread, the writer threads and program threads inside the SIGSYS handler (with
//! every signal blocked).

use crate::maps::PAGE;
use crate::pagescan::{self, PageRegion, Query, PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_WRITTEN};
use crate::sys::{self, syscall};
use crate::bgarm::{Arming, Spin};
use crate::uffdwp;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub const ARMING: u32 = 1;
pub const SAVING: u32 = 2;
pub const OVER: u32 = 3;

/// Window states.
const PENDING: u32 = 0;
const BUSY: u32 = 1;
const ACTIVE: u32 = 2;
const DONE: u32 = 3;

const WINDOW: u64 = ckpt_image::CHUNK_SIZE as u64;
/// Pages a fault saves at most: its own and the protected ones after it, up to this block.
const BLOCK_PAGES: u64 = 16;

// ---- PAGEMAP_SCAN ----

/// Which pages to find.
#[derive(Clone, Copy)]
enum Want {
    /// In memory (or swap) and write-protected: not saved yet.
    Protected,
    /// In memory (or swap) and not write-protected.
    Unprotected,
    /// Neither in memory nor in swap.
    Absent,
}

/// Call `f` with the runs [a, b) of the pages of [start, end) that are `want` (adjacent runs
/// merged), in address order. No allocation: also used in the SIGSYS handler.
fn scan(pagemap: i32, start: u64, end: u64, want: Want, f: &mut dyn FnMut(u64, u64)) -> Result<(), i32> {
    let mut buf = [PageRegion::default(); 32];
    // A page that is neither in memory nor swapped has no category at all: "not written" alone
    // would match it. "Written" alone implies in memory or swapped, and the scan is twice as
    // fast without the any-of test (~0.3 ms per GiB here): the instant uses it. (Guard pages
    // are never write-protected: they count as written, and only a protection no-op is spent
    // on them.)
    let q = match want {
        Want::Protected => Query { inverted: PAGE_IS_WRITTEN, mask: PAGE_IS_WRITTEN, anyof: PAGE_IS_PRESENT | PAGE_IS_SWAPPED, ret: PAGE_IS_WRITTEN, ..Default::default() },
        Want::Unprotected => Query { mask: PAGE_IS_WRITTEN, ret: PAGE_IS_WRITTEN, ..Default::default() },
        // Unpopulated page tables are reported whole, and fast.
        Want::Absent => Query { inverted: PAGE_IS_PRESENT | PAGE_IS_SWAPPED, mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED, ret: PAGE_IS_PRESENT, ..Default::default() },
    };
    let mut pending: Option<(u64, u64)> = None;
    pagescan::scan(pagemap, start, end, q, &mut buf, |first, n, _| {
        let (a, b) = (start + first * PAGE, start + (first + n) * PAGE);
        match pending.as_mut() {
            Some(p) if p.1 == a => p.1 = b,
            _ => {
                if let Some((x, y)) = pending {
                    f(x, y);
                }
                pending = Some((a, b));
            }
        }
    })?;
    if let Some((a, b)) = pending {
        f(a, b);
    }
    Ok(())
}

/// The runs of `scan` as a vector (writer and instant only: they may allocate).
fn scan_vec(pagemap: i32, start: u64, end: u64, want: Want, out: &mut Vec<(u64, u64)>) -> Result<(), i32> {
    scan(pagemap, start, end, want, &mut |a, b| out.push((a, b)))
}

// ---- the engine ----

/// A tracked region at the instant.
struct Reg {
    start: u64,
    end: u64,
    /// Its first window in the tables.
    first: usize,
}

/// The windows of the tracked regions, made at the instant.
struct Tables {
    regs: Vec<Reg>,
    /// Per window: state, and the buffer slots holding its pages (a list: slot + 1, 0 none).
    state: Vec<AtomicU32>,
    head: Vec<AtomicU32>,
    /// Per window: the writer's job for it (u32::MAX: none yet).
    job: Vec<AtomicU32>,
}

pub struct Engine {
    fd: i32,
    pagemap: i32,
    phase: AtomicU32,
    /// The arming's progress (bgarm.rs).
    arming: Arming,
    /// The window tables, made at the instant (null while arming).
    tables: AtomicPtr<Tables>,
    /// The buffer: `slots` pages at `pool`; per slot the page's address and the next slot of its
    /// window's list.
    pool: usize,
    slots: usize,
    slot_page: Vec<AtomicU64>,
    slot_next: Vec<AtomicU32>,
    lock: Spin,
    free: std::cell::UnsafeCell<Vec<u32>>,
    /// Windows to store first (room for every window, made with the tables: program threads
    /// add to it from their SIGSYS handler, where nothing may be allocated).
    urgent: std::cell::UnsafeCell<Vec<u32>>,
    /// Buffered pages now, and the most at any time (for the log line).
    used: AtomicUsize,
    peak: AtomicUsize,
    faults: AtomicU64,
    waits: AtomicU64,
    /// Write faults being served as the arming's (their page noted, then unprotected): the
    /// instant waits for them before it reads what the arming noted.
    arming_faults: AtomicU32,
}

// SAFETY: the UnsafeCells are used under `lock` only; everything else is atomic or read-only
// after construction.
unsafe impl Sync for Engine {}

static ENGINE: AtomicPtr<Engine> = AtomicPtr::new(std::ptr::null_mut());

/// The pagemap fd of the engine that exists (-1: none), from its making (before it is
/// published) to its drop: a child the program forks while a background snapshot is taken
/// closes its copy (`after_fork`).
static PAGEMAP: AtomicI32 = AtomicI32::new(-1);

/// In a forked child: the engine of the snapshot its parent was taking is not the child's (its
/// userfaultfd is closed by `uffdwp::forget`); close its copy of the engine's pagemap (a
/// child forked during a background checkpoint held its parent's /proc/PID/task/TID/pagemap,
/// which a restart of that child met as the program's file) and forget the engine.
pub fn after_fork() {
    let fd = PAGEMAP.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        sys::close_inherited(fd);
    }
    forget();
}

fn engine() -> Option<&'static Engine> {
    // SAFETY: published by `start` and unpublished by `stop` only once no thread can use it
    // (after the window is over and the writer process is gone); program threads hold it
    // through `Use`, which `stop` waits for.
    unsafe { ENGINE.load(Ordering::SeqCst).as_ref() }
}

/// Program threads using the engine (`secure`, in their SIGSYS handler; `is_own_fd`).
static USERS: AtomicU32 = AtomicU32::new(0);

/// A program thread's use of the engine: the engine stays alive until it is dropped. (A
/// thread still saving a range, or waiting for its window, when the snapshot ended went on in
/// an engine that was freed: it waited for a window state in freed memory, with every signal
/// blocked, and the next checkpoint failed as it could not stop it.)
struct Use(&'static Engine);

impl Use {
    fn new() -> Option<Use> {
        USERS.fetch_add(1, Ordering::SeqCst);
        match engine() {
            Some(e) => Some(Use(e)),
            None => {
                release_use();
                None
            }
        }
    }
}

impl Drop for Use {
    fn drop(&mut self) {
        release_use();
    }
}

fn release_use() {
    if USERS.fetch_sub(1, Ordering::SeqCst) == 1 {
        let _ = syscall!(libc::SYS_futex, USERS.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
    }
}

impl Engine {
    /// An engine for arming (no windows yet) on userfaultfd `fd`, with a buffer of `budget` bytes
    /// for pages saved ahead of the writer (mapped now, filled only as needed; smaller if the
    /// address space is short, down to none: every such write then waits for its window).
    pub fn new(fd: i32, budget: usize) -> Result<Box<Engine>, String> {
        // Ours, not the program's: moved high and left out of the image's fd table (it was
        // saved, and a restarted program found it open at a number of its own).
        // thread-self: /proc/self is the thread-group leader, gone (ESRCH) once the main thread
        // has exited.
        let pagemap = sys::open(&sys::cpath(&[b"/proc/thread-self/pagemap"]), libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(|e| format!("cannot open /proc/thread-self/pagemap: errno {e}"))?;
        let pagemap = sys::own(sys::move_high(pagemap));
        PAGEMAP.store(pagemap, Ordering::Release);
        let mut slots = budget / PAGE as usize;
        let mut pool = 0;
        // At most half of the address space left (ulimit -v): the writer's own allocations need
        // the rest (the buffer took all it could, and the writer died of a failed allocation).
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        let map = |len: usize, prot: i32| sys::mmap(0, len, prot, flags, -1, 0).ok();
        while slots > 0 {
            let len = slots * PAGE as usize;
            if let Some(p) = map(len, libc::PROT_READ | libc::PROT_WRITE) {
                if let Some(probe) = map(len, libc::PROT_NONE) {
                    sys::munmap(probe, len);
                    pool = p;
                    crate::transient::add(pool, len);
                    break;
                }
                sys::munmap(p, len);
            }
            slots /= 2;
        }
        Ok(Box::new(Engine {
            fd,
            pagemap,
            phase: AtomicU32::new(ARMING),
            arming: Arming::new(),
            tables: AtomicPtr::new(std::ptr::null_mut()),
            pool,
            slots,
            slot_page: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            slot_next: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            lock: Spin::new(),
            free: std::cell::UnsafeCell::new((0..slots as u32).rev().collect()),
            urgent: std::cell::UnsafeCell::new(Vec::new()),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            faults: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            arming_faults: AtomicU32::new(0),
        }))
    }

    /// Publish the engine for the fault handler and the SIGSYS handler.
    pub fn publish(&self) {
        ENGINE.store(self as *const Engine as *mut Engine, Ordering::Release);
    }

    /// The window tables (made at the instant: only used once saving).
    fn t(&self) -> &Tables {
        // SAFETY: published once by `instant` (before the phase says SAVING) and freed only when
        // the engine is dropped, after the writer process is gone.
        unsafe { &*self.tables.load(Ordering::Acquire) }
    }

    /// Whether the window tables exist.
    fn has_tables(&self) -> bool {
        !self.tables.load(Ordering::Acquire).is_null()
    }

    /// The fds the engine uses (the writer process keeps them).
    pub fn fds(&self) -> [i32; 2] {
        [self.fd, self.pagemap]
    }

    pub fn phase(&self) -> u32 {
        self.phase.load(Ordering::Acquire)
    }

    /// What the arming will protect: `regions` (sorted) minus the `excluded` ranges (sorted);
    /// `whole`: ranges whose pages may come and go without a fault (protected again whole at
    /// the instant). Said before the writer starts, so that calls made meanwhile know what they
    /// need.
    pub fn plan(&self, regions: &[(u64, u64)], excluded: &[(u64, u64)], whole: &[(u64, u64)]) {
        self.arming.set_plan(crate::bgranges::subtract(regions, excluded), whole);
    }

    /// Register `regions` and write-protect the plan (while the program runs). Err: the address
    /// and errno of what failed.
    pub fn arm(&self, regions: &[(u64, u64)]) -> Result<(), (u64, i32)> {
        for &(s, e) in regions {
            uffdwp::register(self.fd, s, e - s).map_err(|e| (s, e))?;
        }
        self.arming.protect_all(self.fd, |a, b, out| scan_vec(self.pagemap, a, b, Want::Absent, out))
    }

    /// Arming is over (done or given up): calls that waited for it go on.
    pub fn set_armed(&self) {
        self.arming.end();
    }

    /// At the instant (threads stopped): make the window table and start saving; then protect
    /// again the pages of the tracked regions `regs` ((start, end), sorted; registered here if
    /// they were not) that are in memory but not protected, except `excluded`.
    ///
    /// Saving starts first: the runtime's own threads run on meanwhile (this one allocates), and
    /// a write that meets a page protected here must save it first, not just lift the
    /// protection as while arming (the page was then missing from the image, read back as
    /// zeros).
    ///
    /// Only the ranges the arming noted as possibly written are scanned (and the regions they
    /// meet registered: those the arming registered are unchanged), or every region when it
    /// noted too many. Returns (ranges scanned, bytes, whether every region was).
    pub fn instant(&self, regs: &[(u64, u64)], excluded: &[(u64, u64)]) -> Result<(usize, u64, bool), String> {
        self.make_tables(regs);
        // A fault served as the arming's notes its page before lifting the protection: wait
        // for those under way (the phase says SAVING now: the next ones save their page).
        while self.arming_faults.load(Ordering::SeqCst) != 0 {
            let _ = syscall!(libc::SYS_sched_yield);
        }
        let noted = self.arming.written(regs);
        let every = noted.is_none();
        let targets = noted.unwrap_or_else(|| regs.to_vec());
        let mut found = Vec::new();
        let mut registered = usize::MAX;
        for &(s, e) in &targets {
            // Each target lies in one region (bgarm: cut at the regions).
            let i = regs.partition_point(|r| r.1 <= s);
            if i != registered {
                let (rs, re) = regs[i];
                uffdwp::register(self.fd, rs, re - rs).map_err(|e| format!("cannot register memory for the snapshot: errno {e}"))?;
                registered = i;
            }
            found.clear();
            scan_vec(self.pagemap, s, e, Want::Unprotected, &mut found).map_err(|e| format!("cannot scan memory: errno {e}"))?;
            for &(a, b) in &found {
                for (x, y) in minus(a, b, excluded) {
                    uffdwp::protect(self.fd, x, y - x).map_err(|e| format!("cannot write-protect memory: errno {e}"))?;
                }
            }
        }
        Ok((targets.len(), targets.iter().map(|r| r.1 - r.0).sum(), every))
    }

    /// The window tables of `regs`, published; the phase is SAVING from now on.
    fn make_tables(&self, regs: &[(u64, u64)]) {
        let mut first = 0;
        let mut t = Tables { regs: Vec::with_capacity(regs.len()), state: Vec::new(), head: Vec::new(), job: Vec::new() };
        for &(s, e) in regs {
            t.regs.push(Reg { start: s, end: e, first });
            first += (e - s).div_ceil(WINDOW) as usize;
        }
        t.state = (0..first).map(|_| AtomicU32::new(PENDING)).collect();
        t.head = (0..first).map(|_| AtomicU32::new(0)).collect();
        t.job = (0..first).map(|_| AtomicU32::new(u32::MAX)).collect();
        // Made here, by the writer, in the checkpoint's own memory: grown by a program thread it
        // was allocated in the program's memory, which may be write-protected, and a push into
        // it faulted with the lock held, which the fault handler then waited for (a hang).
        let urgent = Vec::with_capacity(first);
        self.lock.lock();
        // SAFETY: under the lock.
        let old = unsafe { std::mem::replace(&mut *self.urgent.get(), urgent) };
        self.lock.unlock();
        drop(old);
        self.tables.store(Box::into_raw(Box::new(t)), Ordering::Release);
        // SeqCst: against `fault`'s count of the arming's faults (see `instant`).
        self.phase.store(SAVING, Ordering::SeqCst);
    }

    /// The window of `addr`: its index in the tables and its address range.
    fn window(&self, addr: u64) -> Option<(usize, u64, u64)> {
        let i = self.t().regs.partition_point(|r| r.end <= addr);
        let r = self.t().regs.get(i).filter(|r| r.start <= addr)?;
        let k = (addr - r.start) / WINDOW;
        let ws = r.start + k * WINDOW;
        Some((r.first + k as usize, ws, (ws + WINDOW).min(r.end)))
    }

    /// The windows of the tracked region starting at `start`: (first index, count).
    pub fn windows_of(&self, start: u64) -> Option<(usize, usize)> {
        let r = self.t().regs.iter().find(|r| r.start == start)?;
        Some((r.first, (r.end - r.start).div_ceil(WINDOW) as usize))
    }

    /// The windows k (0..`nw`) of the region whose windows start at `w0` that hold pages to
    /// store now: still protected, or buffered.
    pub fn candidates(&self, w0: usize, nw: usize) -> Vec<usize> {
        let (rs, _) = self.window_range(w0);
        let re = self.window_range(w0 + nw - 1).1;
        let mut out = Vec::new();
        let _ = scan(self.pagemap, rs, re, Want::Protected, &mut |a, b| {
            let (k0, k1) = ((a - rs) / WINDOW, (b - 1 - rs) / WINDOW);
            for k in k0..=k1 {
                if out.last() != Some(&(k as usize)) {
                    out.push(k as usize);
                }
            }
        });
        out.extend((0..nw).filter(|&k| self.t().head[w0 + k].load(Ordering::Acquire) != 0));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Say which writer job stores window `w`.
    pub fn set_job(&self, w: usize, job: usize) {
        self.t().job[w].store(job as u32, Ordering::Release);
    }

    /// Save the protected pages among [a, b) (inside window `w`, which the caller holds BUSY)
    /// into the buffer and lift their protection. `all`: every such page or none (a system call
    /// needs all of them); otherwise as many as fit. Returns whether every page was saved. No
    /// allocation (program threads call this from the SIGSYS handler).
    fn buffer(&self, w: usize, a: u64, b: u64, all: bool) -> bool {
        let mut need = 0u64;
        if scan(self.pagemap, a, b, Want::Protected, &mut |s, e| need += (e - s) / PAGE).is_err() {
            return false;
        }
        if need == 0 {
            return true;
        }
        if all {
            self.lock.lock();
            // SAFETY: under the lock.
            let room = unsafe { (*self.free.get()).len() } as u64;
            self.lock.unlock();
            // Only the window's own threads take slots meanwhile for other windows; a shortfall
            // found later leaves some pages protected, and the caller then waits for the window.
            if room < need {
                return false;
            }
        }
        let mut saved = 0u64;
        let _ = scan(self.pagemap, a, b, Want::Protected, &mut |s, e| {
            let mut p = s;
            while p < e {
                self.lock.lock();
                // SAFETY: under the lock.
                let slot = unsafe { (*self.free.get()).pop() };
                self.lock.unlock();
                let Some(slot) = slot else { break };
                // SAFETY: the page is protected (nobody writes it) and readable; the slot is ours.
                unsafe { std::ptr::copy_nonoverlapping(p as *const u8, (self.pool + slot as usize * PAGE as usize) as *mut u8, PAGE as usize) };
                self.slot_page[slot as usize].store(p, Ordering::Relaxed);
                let mut h = self.t().head[w].load(Ordering::Acquire);
                loop {
                    self.slot_next[slot as usize].store(h, Ordering::Relaxed);
                    match self.t().head[w].compare_exchange_weak(h, slot + 1, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => break,
                        Err(x) => h = x,
                    }
                }
                p += PAGE;
            }
            if p > s {
                // The copies are in place: the program may write these pages now.
                let _ = uffdwp::unprotect(self.fd, s, p - s, true);
                let n = ((p - s) / PAGE) as usize;
                let now = self.used.fetch_add(n, Ordering::AcqRel) + n;
                self.peak.fetch_max(now, Ordering::Relaxed);
                saved += n as u64;
            }
        });
        saved == need
    }

    /// Queue window `w` for the writers first.
    fn make_urgent(&self, w: usize) {
        self.lock.lock();
        // SAFETY: under the lock.
        let q = unsafe { &mut *self.urgent.get() };
        // Never grown (see `urgent`): a window is in it once at most.
        if !q.contains(&(w as u32)) && q.len() < q.capacity() {
            q.push(w as u32);
        }
        self.lock.unlock();
    }

    /// A window the writers should store first, if any.
    pub fn next_urgent(&self) -> Option<usize> {
        self.lock.lock();
        // SAFETY: under the lock.
        let w = unsafe { (*self.urgent.get()).pop() };
        self.lock.unlock();
        w.map(|w| w as usize)
    }

    /// The job of window `w`, if the writers have one for it.
    pub fn job_of(&self, w: usize) -> Option<usize> {
        let j = self.t().job[w].load(Ordering::Acquire);
        (j != u32::MAX).then_some(j as usize)
    }

    /// Wait until window `w` is stored.
    fn wait_done(&self, w: usize) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        loop {
            let s = self.t().state[w].load(Ordering::Acquire);
            if s == DONE {
                return;
            }
            let ts = sys::timespec_ms(50);
            let _ = syscall!(libc::SYS_futex, self.t().state[w].as_ptr(), libc::FUTEX_WAIT, s, &ts as *const libc::timespec, 0, 0);
        }
    }

    /// Make [a, b) of window `w` safe to write: its unsaved pages saved (buffered, or the window
    /// stored) and unprotected. `fault`: for a write fault of the program (the faulting page and
    /// its protected neighbours are enough, and the thread need not be waited for here: the
    /// kernel wakes it when the protection goes).
    fn save_range(&self, w: usize, a: u64, b: u64, fault: bool) {
        loop {
            match self.t().state[w].compare_exchange(PENDING, BUSY, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let ok = self.buffer(w, a, b, !fault);
                    self.t().state[w].store(PENDING, Ordering::Release);
                    let _ = syscall!(libc::SYS_futex, self.t().state[w].as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
                    if ok {
                        return;
                    }
                    self.make_urgent(w);
                    if fault {
                        return; // the fault stays pending until the window is stored
                    }
                    self.wait_done(w);
                    return;
                }
                Err(BUSY) => {
                    let _ = syscall!(libc::SYS_sched_yield);
                }
                Err(DONE) => {
                    if fault {
                        let _ = uffdwp::unprotect(self.fd, a, PAGE, true);
                    }
                    return;
                }
                Err(_) => {
                    // Being stored: its protection goes when it is done (which wakes a fault).
                    if !fault {
                        self.wait_done(w);
                    }
                    return;
                }
            }
        }
    }

    /// A write fault at `addr` (the fault handler thread).
    fn fault(&self, addr: u64) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        let page = addr & !(PAGE - 1);
        self.arming_faults.fetch_add(1, Ordering::SeqCst);
        if self.phase.load(Ordering::SeqCst) != SAVING {
            // While arming: the page is noted (the instant protects it again), then written.
            self.arming.fault(page);
            let _ = uffdwp::unprotect(self.fd, page, PAGE, true);
            self.arming_faults.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.arming_faults.fetch_sub(1, Ordering::SeqCst);
        let Some((w, ws, we)) = self.window(page) else {
            let _ = uffdwp::unprotect(self.fd, page, PAGE, true);
            return;
        };
        let block = PAGE * BLOCK_PAGES;
        let end = ((page / block + 1) * block).min(we).max(page + PAGE);
        self.save_range(w, page.max(ws), end, true);
    }

    /// Writer: take window `w` for storing (false: already stored or taken).
    pub fn activate(&self, w: usize) -> bool {
        loop {
            match self.t().state[w].compare_exchange(PENDING, ACTIVE, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(BUSY) => {
                    let _ = syscall!(libc::SYS_sched_yield);
                }
                Err(_) => return false,
            }
        }
    }

    /// Writer, window `w` active: the pages to store, as (address, source) runs in address order:
    /// still protected (read in place), or buffered (read from the buffer, one page each).
    pub fn pages(&self, w: usize, ws: u64, we: u64, out: &mut Vec<(u64, u64, u64)>) {
        let mut prot = Vec::new();
        let _ = scan_vec(self.pagemap, ws, we, Want::Protected, &mut prot);
        out.extend(prot.iter().map(|&(s, e)| (s, e - s, s)));
        let mut h = self.t().head[w].load(Ordering::Acquire);
        while h != 0 {
            let slot = (h - 1) as usize;
            let page = self.slot_page[slot].load(Ordering::Relaxed);
            out.push((page, PAGE, (self.pool + slot * PAGE as usize) as u64));
            h = self.slot_next[slot].load(Ordering::Relaxed);
        }
        out.sort_unstable_by_key(|p| p.0);
    }

    /// Writer: window `w` ([ws, we)) is stored: lift its protection, free its buffer slots,
    /// wake whoever waits for it.
    pub fn done(&self, w: usize, ws: u64, we: u64) {
        let _ = uffdwp::unprotect(self.fd, ws, we - ws, true);
        let mut h = self.t().head[w].swap(0, Ordering::AcqRel);
        let mut freed = 0;
        self.lock.lock();
        while h != 0 {
            let slot = h - 1;
            h = self.slot_next[slot as usize].load(Ordering::Relaxed);
            // SAFETY: under the lock.
            unsafe { (*self.free.get()).push(slot) };
            freed += 1;
        }
        self.lock.unlock();
        self.used.fetch_sub(freed, Ordering::AcqRel);
        self.t().state[w].store(DONE, Ordering::Release);
        let _ = syscall!(libc::SYS_futex, self.t().state[w].as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
    }

    /// The window range of window index `w` (for the writer).
    pub fn window_range(&self, w: usize) -> (u64, u64) {
        let i = self.t().regs.partition_point(|r| r.first + ((r.end - r.start).div_ceil(WINDOW) as usize) <= w);
        let r = &self.t().regs[i];
        let ws = r.start + (w - r.first) as u64 * WINDOW;
        (ws, (ws + WINDOW).min(r.end))
    }

    /// Every window stored (or the snapshot given up): nothing may stay protected. Stores the
    /// windows nobody stored as done, lifts every protection left, ends the snapshot.
    pub fn finish(&self) {
        let n = if self.has_tables() { self.t().state.len() } else { 0 };
        for w in 0..n {
            if self.t().state[w].load(Ordering::Acquire) != DONE {
                let (ws, we) = self.window_range(w);
                self.done(w, ws, we);
            }
        }
        self.phase.store(OVER, Ordering::Release);
        crate::sud::end();
    }

    /// Give up (while arming or saving): every protection goes; the program runs on unhindered.
    pub fn abort(&self, regions: &[(u64, u64)]) {
        self.phase.store(OVER, Ordering::Release);
        self.arming.end();
        for &(s, e) in regions {
            let _ = uffdwp::unprotect(self.fd, s, e - s, true);
        }
        self.all_done();
        crate::sud::end();
    }

    /// Every window counts as stored: whoever waits for one goes on.
    fn all_done(&self) {
        let n = if self.has_tables() { self.t().state.len() } else { 0 };
        for w in 0..n {
            self.t().state[w].store(DONE, Ordering::Release);
            let _ = syscall!(libc::SYS_futex, self.t().state[w].as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
        }
    }

    /// (pages buffered at most, buffer slots, write faults, waits for a window, calls that
    /// waited for the arming).
    pub fn stats(&self) -> (usize, usize, u64, u64, u64) {
        (self.peak.load(Ordering::Relaxed), self.slots, self.faults.load(Ordering::Relaxed), self.waits.load(Ordering::Relaxed), self.arming.waited())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let me = self as *mut Engine;
        let _ = ENGINE.compare_exchange(me, std::ptr::null_mut(), Ordering::AcqRel, Ordering::Acquire);
        if self.pool != 0 {
            crate::transient::remove(self.pool);
            sys::munmap(self.pool, self.slots * PAGE as usize);
        }
        let t = self.tables.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !t.is_null() {
            // SAFETY: made by Box::into_raw in `instant`; nobody uses it any more.
            drop(unsafe { Box::from_raw(t) });
        }
        let _ = PAGEMAP.compare_exchange(self.pagemap, -1, Ordering::AcqRel, Ordering::Relaxed);
        sys::close(self.pagemap);
    }
}

/// [start, end) minus the sorted, disjoint ranges `ex`.
pub(crate) fn minus(start: u64, end: u64, ex: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for &(s, e) in ex.iter().filter(|&&(s, e)| s < end && e > start) {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// The fault handler's loop (a thread of the writer process): until the writer process ends.
pub fn serve_faults(fd: i32) -> ! {
    loop {
        match uffdwp::next_fault(fd) {
            Some(addr) => match engine() {
                Some(e) => e.fault(addr),
                None => {
                    let _ = uffdwp::unprotect(fd, addr & !(PAGE - 1), PAGE, true);
                }
            },
            None => {
                let _ = syscall!(libc::SYS_sched_yield);
            }
        }
    }
}

extern "C" fn handler_entry(fd: u64) -> ! {
    serve_faults(fd as i32)
}

/// Start the fault handler: a thread of the calling process (the writer process) on `stack`,
/// which it keeps until that process exits.
pub fn start_handler(fd: i32, stack: &'static mut [u8]) -> Result<(), i32> {
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64 - 64) & !15;
    // The tid word: the last bytes of the stack area, above the stack itself.
    let word = top + 16;
    // SAFETY: the thread runs handler_entry on its own stack, which outlives it (it lives as
    // long as the process).
    let r = unsafe { crate::threads::ckpt_clone_thread(crate::threads::THREAD_CLONE_FLAGS, top, word, word, 0, handler_entry, fd as u64) };
    if r < 0 {
        return Err(-r as i32);
    }
    Ok(())
}

/// From the SIGSYS handler (sud.rs): make [addr, addr + len) safe for the kernel to write or
/// drop. While arming, protection is simply lifted (the instant protects again what is in
/// memory, and the stop moves a call made meanwhile to be dispatched again, sud::reroute), and
/// the arming leaves the range alone from then on (bgarm.rs): protected again under a call that
/// blocks, a read() failed with EFAULT when its data came. While saving, the pages are saved
/// first.
pub fn secure(addr: u64, len: u64) {
    if addr == 0 || len == 0 {
        return;
    }
    let Some(u) = Use::new() else { return };
    let e = u.0;
    let (start, end) = (addr & !(PAGE - 1), addr.saturating_add(len).div_ceil(PAGE) * PAGE);
    match e.phase() {
        ARMING => e.arming.lift(e.fd, start, end),
        SAVING => {
            let mut at = start;
            while at < end {
                let Some((w, ws, we)) = e.window(at) else {
                    // Not tracked here: the next tracked window, if any.
                    let i = e.t().regs.partition_point(|r| r.end <= at);
                    match e.t().regs.get(i) {
                        Some(r) if r.start < end => at = r.start,
                        _ => return,
                    }
                    continue;
                };
                let _ = ws;
                let stop = we.min(end);
                e.save_range(w, at, stop, false);
                at = stop;
            }
        }
        _ => {}
    }
}

/// Whether `fd` is the engine's own (its pagemap).
pub fn is_own_fd(fd: i32) -> bool {
    // No engine: no fd of its (asked for every fd at each checkpoint; a `Use` costs a futex
    // wake when it ends).
    if ENGINE.load(Ordering::SeqCst).is_null() {
        return false;
    }
    Use::new().is_some_and(|u| u.0.pagemap == fd)
}

/// After a restart: the engine of the checkpoint the image was taken in is not in this process
/// (its memory came back empty and is unmapped): forget it.
pub fn forget() {
    ENGINE.store(std::ptr::null_mut(), Ordering::SeqCst);
    USERS.store(0, Ordering::SeqCst);
}

/// The engine is no longer used, for cleanup by the checkpoint thread once the writer process
/// is gone: unpublished, every wait for it ends (nothing is protected any more), and the
/// program threads still inside it leave before it may be dropped.
pub fn stop() {
    let e = ENGINE.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: the engine published until now, alive (its owner calls us before dropping it).
    if let Some(e) = unsafe { e.as_ref() } {
        e.arming.end();
        e.all_done();
    }
    loop {
        let n = USERS.load(Ordering::SeqCst);
        if n == 0 {
            return;
        }
        let ts = sys::timespec_ms(10);
        let _ = syscall!(libc::SYS_futex, USERS.as_ptr(), libc::FUTEX_WAIT, n, &ts as *const libc::timespec, 0, 0);
    }
}
