//! Writing the memory of an image: which chunks to store (from pagemap; and the data extents
//! of deleted files), and compressing and writing them with several threads.
//!
//! The threads are raw `clone`s sharing the caller's memory and TLS (no CLONE_SETTLS), not
//! pthreads: in the snapshot child, pthread_create could block forever on a glibc lock that a
//! program thread held at the moment of the snapshot. They only run `work` below, which uses
//! raw system calls, zstd and the runtime's allocator (the scratch arena, whose lock only the
//! runtime's own threads take), never TLS.

use crate::freeze::{Frozen, FrozenFile};
use crate::progress::Progress;
use crate::log::{log, DEBUG};
use crate::maps::{self, MapEntry, PAGE};
use crate::{bgsnap, pagehash};
use crate::sys;
use ckpt_image::{Backing, Chunk, ChunkEncoder, FdKind, FdState, RegionAttrs, Writer, CHUNK_SIZE};
use ckpt_kinds::deleted;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// A part of a region (or of a deleted file) to store: `len` bytes at `offset` in it, read from
/// address `addr` (memory, or a frozen copy) or from the job's file.
#[derive(Clone, Copy)]
pub struct Piece {
    pub offset: u64,
    pub len: u64,
    pub addr: u64,
    /// Pages that held nothing at the checkpoint (not in memory) but had data in the image an
    /// increment builds on: stored as zeros, not read.
    pub zero: bool,
}

/// One frame to store: the pieces `first..first + count` of the plan, all inside one window of
/// CHUNK_SIZE bytes of one region (or file), stored together (a packed frame when they are
/// several, see ckpt_image::Chunk).
#[derive(Clone, Copy)]
pub struct Job {
    pub region: usize,
    pub first: usize,
    pub count: usize,
    /// Readable private anonymous memory (or a frozen copy): read in place. Otherwise through
    /// /proc/self/mem.
    pub direct: bool,
    /// A deleted file's data: read from this fd of ours at each piece's `offset` (`region` is
    /// then the fd's entry in the fd table), not from memory. -1 for memory.
    pub file: i32,
    /// A tracked region (pagehash.rs), starting at address `start`: its pages are hashed for the
    /// next increment's table; with `filter` (an increment) only the pages whose hash differs
    /// from the table's are stored.
    pub hashed: bool,
    pub filter: bool,
    pub start: u64,
    /// A window of a background snapshot (bgsnap.rs): its pages are found when the job is
    /// stored (the pieces are only those copied at the instant). u32::MAX: none.
    pub window: u32,
}

/// A background snapshot's part in the plan: its engine, and which regions it protects.
pub struct Bg<'a> {
    pub engine: &'a bgsnap::Engine,
    pub armed: &'a [bool],
}

/// What the writer does with page hashes (pagehash.rs): the table an increment compares with,
/// and the area that receives this image's table.
pub struct Hashing<'a> {
    pub old: Option<pagehash::Table>,
    pub work: &'a pagehash::Work,
}

/// How a region's pieces are read and stored.
#[derive(Clone, Copy, PartialEq)]
struct Source {
    direct: bool,
    file: i32,
    hashed: bool,
    filter: bool,
    start: u64,
}

impl Source {
    fn memory(direct: bool) -> Source {
        Source { direct, file: -1, hashed: false, filter: false, start: 0 }
    }
}

/// What to store: jobs, and the pieces they are made of.
#[derive(Default)]
pub struct Plan {
    pub jobs: Vec<Job>,
    pub pieces: Vec<Piece>,
}

impl Plan {
    /// Bytes of memory (and file data) the pieces hold.
    pub fn bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.len).sum()
    }

    /// Add the runs `(offset, len, addr, zero)` (sorted, disjoint) of region (or fd entry)
    /// `region` as jobs, one per CHUNK_SIZE window of offsets that holds any.
    fn add(&mut self, region: usize, runs: impl Iterator<Item = (u64, u64, u64, bool)>, src: Source) {
        let window = CHUNK_SIZE as u64;
        for (offset, len, addr, zero) in runs {
            let mut off = offset;
            while off < offset + len {
                let w = off / window;
                let n = (offset + len).min((w + 1) * window) - off;
                let piece = Piece { offset: off, len: n, addr: addr + (off - offset), zero };
                match self.jobs.last_mut() {
                    Some(j) if j.region == region && j.file == src.file && self.pieces[j.first].offset / window == w => j.count += 1,
                    _ => self.jobs.push(Job { region, first: self.pieces.len(), count: 1, direct: src.direct, file: src.file, hashed: src.hashed, filter: src.filter, start: src.start, window: u32::MAX }),
                }
                self.pieces.push(piece);
                off += n;
            }
        }
    }

    pub fn pieces_of(&self, j: &Job) -> &[Piece] {
        &self.pieces[j.first..j.first + j.count]
    }
}

/// How a region is described in the index besides its chunks.
pub struct Described {
    pub backing: Backing,
    /// Pages not covered by chunks come from the parent image.
    pub inherit: bool,
    pub attrs: RegionAttrs,
}

/// The chunks to store for `maps` (entries flagged true are stored empty), with each entry's
/// description (backing, whether it inherits from the parent, flags and guard pages; `flags[i]`:
/// the VmFlags bits of entry i). With `hashing`, the pages of tracked regions
/// (`eligible`) are hashed, and an increment (a table to compare with) stores of each tracked
/// region that the table covers only the pages that changed. Regions with no backing to store
/// (vsyscall) get None. Regions that `frozen` holds a copy of are read from the copy.
pub fn plan(pagemap: i32, maps: &[(MapEntry, bool)], flags: &[u64], eligible: &[bool], hashing: Option<&Hashing>, frozen: &[Option<Frozen>], bg: Option<&Bg>) -> (Vec<Option<Described>>, Plan) {
    let mut backings = Vec::with_capacity(maps.len());
    let mut plan = Plan::default();
    // Our own stack changes while we write it: copy it, so each chunk's bytes and hash agree.
    let here = &backings as *const _ as u64;
    let written = maps::shared_written_inodes(maps);
    for (i, (m, scratch)) in maps.iter().enumerate() {
        if m.name == b"[vsyscall]" {
            backings.push(None);
            continue;
        }
        let backing = if *scratch { Backing::Anon } else { maps::backing_of(m) };
        let m = &MapEntry { flags: flags.get(i).copied().unwrap_or(m.flags), ..m.clone() };
        let described = |inherit: bool, guards: Vec<(u64, u64)>| Some(Described { backing: backing.clone(), inherit, attrs: RegionAttrs { flags: if *scratch { 0 } else { m.flags }, guards } });
        if *scratch {
            backings.push(described(false, Vec::new()));
            continue;
        }
        let copy = frozen.get(i).and_then(Option::as_ref);
        if let Some(b) = bg.filter(|b| b.armed.get(i) == Some(&true)) {
            let tracked = hashing.filter(|_| eligible.get(i) == Some(&true));
            let inherit = snapshot_windows(&mut plan, b.engine, i, m, copy, tracked);
            backings.push(described(inherit, maps::guard_pages(pagemap, m)));
            continue;
        }
        if let Some(f) = copy {
            plan.add(i, f.runs.iter().map(|&(first, n, at)| (first * PAGE, n * PAGE, at, false)), Source::memory(true));
            backings.push(described(false, maps::guard_pages(pagemap, m)));
            continue;
        }
        let maps::Pages { runs, guards } = maps::stored_pages(pagemap, m, &backing, maps::file_refs(maps, i, &written).as_deref());
        let own_stack = m.start <= here && here < m.end;
        let direct = maps::directly_readable(m, &backing) && !own_stack;
        let tracked = hashing.filter(|_| eligible.get(i) == Some(&true) && backing == Backing::Anon);
        let Some(h) = tracked else {
            plan.add(i, runs.iter().map(|&(first, n)| (first * PAGE, n * PAGE, m.start + first * PAGE, false)), Source::memory(direct));
            backings.push(described(false, guards));
            continue;
        };
        // An increment inherits what the table says the parent holds, and must hide with zeros
        // the pages of the parent that are empty now.
        let old = h.old.filter(|t| t.covers(m.start, m.end));
        let emptied: Vec<u64> = match old {
            Some(t) => t.pages_in(m.start, m.end).map(|p| (p - m.start) / PAGE).filter(|&pg| !in_runs(&runs, pg)).collect(),
            None => Vec::new(),
        };
        let mut all: Vec<(u64, u64, bool)> = runs.iter().map(|&(f, n)| (f, n, false)).chain(emptied.iter().map(|&pg| (pg, 1, true))).collect();
        all.sort_unstable();
        let src = Source { direct, file: -1, hashed: true, filter: old.is_some(), start: m.start };
        plan.add(i, all.iter().map(|&(first, n, zero)| (first * PAGE, n * PAGE, m.start + first * PAGE, zero)), src);
        backings.push(described(old.is_some(), guards));
    }
    (backings, plan)
}

/// Jobs for a region the background snapshot protects (`m`, region `i`): one per window that may
/// hold something to store: pages still protected, pages in the snapshot's buffer, pages copied
/// at the instant (`copy`: stacks, TLS blocks), and for an increment, pages the table of the
/// parent lists (which may have to be stored as zeros). Returns whether the region inherits.
fn snapshot_windows(plan: &mut Plan, e: &bgsnap::Engine, i: usize, m: &MapEntry, copy: Option<&Frozen>, tracked: Option<&Hashing>) -> bool {
    let Some((w0, nw)) = e.windows_of(m.start) else { return false };
    let window = CHUNK_SIZE as u64;
    let old = tracked.and_then(|h| h.old).filter(|t| t.covers(m.start, m.end));
    let mut wins: Vec<usize> = e.candidates(w0, nw);
    let copied: Vec<(u64, u64, u64)> = copy.map(|f| f.runs.iter().map(|&(first, n, at)| (first * PAGE, n * PAGE, at)).collect()).unwrap_or_default();
    wins.extend(copied.iter().flat_map(|&(off, len, _)| (off / window)..(off + len).div_ceil(window)).map(|k| k as usize));
    if let Some(t) = old {
        wins.extend(t.pages_in(m.start, m.end).map(|p| ((p - m.start) / window) as usize));
    }
    wins.sort_unstable();
    wins.dedup();
    for k in wins.into_iter().filter(|&k| k < nw) {
        let (ws, we) = (k as u64 * window, (k as u64 + 1) * window);
        let first = plan.pieces.len();
        for &(off, len, at) in &copied {
            let (s, t) = (off.max(ws), (off + len).min(we));
            if s < t {
                plan.pieces.push(Piece { offset: s, len: t - s, addr: at + (s - off), zero: false });
            }
        }
        let count = plan.pieces.len() - first;
        e.set_job(w0 + k, plan.jobs.len());
        plan.jobs.push(Job { region: i, first, count, direct: true, file: -1, hashed: tracked.is_some(), filter: old.is_some(), start: m.start, window: (w0 + k) as u32 });
    }
    old.is_some()
}

/// Whether page `pg` lies in one of the sorted runs (first page, pages).
fn in_runs(runs: &[(u64, u64)], pg: u64) -> bool {
    let i = runs.partition_point(|&(f, n)| f + n <= pg);
    runs.get(i).is_some_and(|&(f, _)| f <= pg)
}

/// Jobs for the data of the deleted files of the fd table of process `pid`
/// (`deleted::data_owners`), appended to `jobs`: their data extents, read through fds of ours opened here (returned, to be closed
/// once written). A file we cannot open again (its mode denies us reading) is read through the
/// program's own fd with pread, which leaves its offset alone, all of it (holes cannot be told
/// without an offset of our own); a file that cannot be read at all fails the checkpoint.
/// Files in `frozen` were copied while the program was stopped: read from the copy.
pub fn plan_files(fds: &[FdState], pid: i32, plan: &mut Plan, frozen: &[FrozenFile]) -> Result<Vec<i32>, String> {
    let mut opened = Vec::new();
    for i in deleted::data_owners(fds, pid) {
        let f = &fds[i];
        let FdKind::Deleted(d) = &f.kind else { continue };
        if let Some(copy) = frozen.iter().find(|c| c.fd == f.fd) {
            plan.add(i, copy.runs.iter().map(|&(s, e)| (s, e - s, copy.base as u64 + s, false)), Source::memory(true));
            continue;
        }
        // (A file only in flight: through our fd of it, `flightdata`.)
        let through = crate::flightdata::reader(f.fd);
        let (fd, runs) = match sys::open(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(through)]), libc::O_RDONLY, 0) {
            Ok(fd) => {
                opened.push(fd);
                (fd, deleted::extents(fd, d.size))
            }
            Err(_) if f.flags & libc::O_ACCMODE != libc::O_WRONLY && f.flags & libc::O_PATH == 0 => (through, vec![(0, d.size.div_ceil(PAGE) * PAGE)]),
            Err(e) => {
                opened.iter().for_each(|&fd| sys::close(fd));
                return Err(format!("cannot read the deleted file {} (fd {}): errno {e}", String::from_utf8_lossy(&d.path), f.fd));
            }
        };
        plan.add(i, runs.into_iter().map(|(s, e)| (s, e - s, 0, false)), Source { file: fd, ..Source::memory(false) });
    }
    Ok(opened)
}

/// Give each deleted file its chunks (`jobs` and `chunks`: the file jobs and what they wrote).
pub fn attach_files(fds: &mut [FdState], jobs: &[Job], chunks: &[Vec<Chunk>]) {
    for (j, c) in jobs.iter().zip(chunks) {
        if let FdKind::Deleted(d) = &mut fds[j.region].kind {
            d.chunks.extend_from_slice(c);
        }
    }
}

struct Shared<'a> {
    writer: &'a Writer,
    mem: i32,
    plan: &'a Plan,
    hashing: Option<&'a Hashing<'a>>,
    /// A background snapshot's engine: its urgent windows go first.
    bg: Option<&'a bgsnap::Engine>,
    /// One slot per job, written once by the thread that took the job.
    out: *mut Vec<Chunk>,
    progress: &'a Progress,
    next: AtomicUsize,
    /// Jobs a thread has taken.
    taken: Vec<AtomicBool>,
    error: AtomicPtr<String>,
}

impl Shared<'_> {
    /// The next job to store: a window the program waits for first, else the next in order.
    fn take(&self) -> Option<usize> {
        if let Some(e) = self.bg {
            while let Some(w) = e.next_urgent() {
                if let Some(j) = e.job_of(w).filter(|&j| !self.taken[j].swap(true, Ordering::AcqRel)) {
                    return Some(j);
                }
            }
        }
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.plan.jobs.len() {
                return None;
            }
            if !self.taken[i].swap(true, Ordering::AcqRel) {
                return Some(i);
            }
        }
    }
}

/// Compress and write every job of `plan` with `threads` threads (the caller is one of them),
/// counting the bytes in `progress`; each job's chunks come back in job order.
pub fn write_all(writer: &Writer, mem: i32, plan: &Plan, hashing: Option<&Hashing>, bg: Option<&bgsnap::Engine>, threads: usize, progress: &Progress) -> Result<Vec<Vec<Chunk>>, String> {
    let mut out: Vec<Vec<Chunk>> = (0..plan.jobs.len()).map(|_| Vec::new()).collect();
    let taken = (0..plan.jobs.len()).map(|_| AtomicBool::new(false)).collect();
    let shared = Shared { writer, mem, plan, hashing, bg, out: out.as_mut_ptr(), progress, next: AtomicUsize::new(0), taken, error: AtomicPtr::new(std::ptr::null_mut()) };
    let used0 = crate::alloc::scratch_used();
    let mut extra = threads.saturating_sub(1).min(plan.jobs.len().saturating_sub(1));
    // Each thread's encoder and buffers come from the scratch arena: map them now, with fewer
    // threads if the address space is short, so that no thread runs out half-way.
    while !crate::alloc::scratch_reserve((extra + 1) * PER_THREAD) {
        if extra == 0 {
            return Err(format!("cannot map {} MiB for the image writer (address-space limit, ulimit -v?)", PER_THREAD >> 20));
        }
        extra -= 1;
    }
    let mut helpers: Vec<(usize, Box<AtomicU32>)> = Vec::with_capacity(extra);
    for _ in 0..extra {
        match spawn(&shared) {
            Ok(h) => helpers.push(h),
            Err(_) => break, // fewer threads: slower, not wrong
        }
    }
    work(&shared);
    for (stack, tid) in &helpers {
        // CLONE_CHILD_CLEARTID zeroes the word and wakes us when the thread is gone.
        loop {
            let v = tid.load(Ordering::Acquire);
            if v == 0 {
                break;
            }
            // Not FUTEX_PRIVATE_FLAG: the kernel's wake on thread exit is a shared futex op.
            let _ = sys::syscall!(libc::SYS_futex, tid.as_ptr(), libc::FUTEX_WAIT, v, 0, 0, 0);
        }
        sys::munmap(*stack, HELPER_STACK);
    }
    log!(DEBUG, "image writer: {} threads; scratch memory handed out {} KiB (before writing {} KiB)", extra + 1, crate::alloc::scratch_used() >> 10, used0 >> 10);
    let err = shared.error.load(Ordering::Acquire);
    if !err.is_null() {
        // SAFETY: set once from Box::into_raw by a thread that has exited.
        return Err(*unsafe { Box::from_raw(err) });
    }
    Ok(out)
}

const HELPER_STACK: usize = 256 * 1024;

/// Scratch memory one writing thread uses: its ChunkEncoder (two zstd contexts with a 4 MiB
/// window, a compression buffer and a shuffle buffer: 10.4 MiB measured) and its share of the
/// rest (read buffer, chunk list).
pub const PER_THREAD: usize = 12 << 20;

fn spawn(shared: &Shared) -> Result<(usize, Box<AtomicU32>), i32> {
    let stack = sys::mmap(0, HELPER_STACK, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)?;
    let tid = Box::new(AtomicU32::new(0));
    let flags = crate::threads::THREAD_CLONE_FLAGS;
    let word = tid.as_ptr() as u64;
    // SAFETY: the new thread runs `helper` on its own stack; `shared` outlives it (write_all
    // waits for it to exit before returning).
    let r = unsafe { crate::threads::ckpt_clone_thread(flags, (stack + HELPER_STACK) as u64, word, word, 0, helper, shared as *const Shared as u64) };
    if r < 0 {
        sys::munmap(stack, HELPER_STACK);
        return Err(-r as i32);
    }
    Ok((stack, tid))
}

extern "C" fn helper(arg: u64) -> ! {
    // SAFETY: arg is the &Shared that write_all keeps alive until we have exited.
    work(unsafe { &*(arg as *const Shared) });
    loop {
        let _ = sys::syscall!(libc::SYS_exit, 0);
    }
}

fn work(sh: &Shared) {
    let fail = |e: String| {
        let p = Box::into_raw(Box::new(e));
        if sh.error.compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: p is ours and was not published.
            drop(unsafe { Box::from_raw(p) });
        }
    };
    let mut enc = match ChunkEncoder::new(sh.writer.level()) {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut parts: Vec<(u64, u64)> = Vec::new();
    let mut found: Vec<(u64, u64, u64)> = Vec::new();
    let mut window_pieces: Vec<Piece> = Vec::new();
    loop {
        if !sh.error.load(Ordering::Acquire).is_null() {
            return;
        }
        let Some(i) = sh.take() else { return };
        let job = &sh.plan.jobs[i];
        let mut pieces = sh.plan.pieces_of(job);
        // A window of a background snapshot: its pages now (protected or buffered), then
        // stored, then unprotected.
        let window = sh.bg.filter(|_| job.window != u32::MAX).map(|e| (e, job.window as usize));
        if let Some((e, w)) = window {
            if !e.activate(w) {
                continue;
            }
            let (ws, we) = e.window_range(w);
            found.clear();
            e.pages(w, ws, we, &mut found);
            window_pieces.clear();
            window_pieces.extend(pieces.iter().copied());
            window_pieces.extend(found.iter().map(|&(addr, len, src)| Piece { offset: addr - job.start, len, addr: src, zero: false }));
            sh.progress.add_total(found.iter().map(|f| f.1).sum());
            window_pieces.sort_unstable_by_key(|p| p.offset);
            if let Some(t) = sh.hashing.and_then(|h| h.old).filter(|_| job.filter) {
                // Pages the parent had data in and nothing holds now: zeros.
                let from = window_pieces.len();
                for pg in t.pages_in(ws, we) {
                    let off = pg - job.start;
                    if !window_pieces[..from].iter().any(|p| p.offset <= off && off < p.offset + p.len) {
                        window_pieces.push(Piece { offset: off, len: PAGE, addr: 0, zero: true });
                    }
                }
                window_pieces.sort_unstable_by_key(|p| p.offset);
            }
            pieces = &window_pieces;
        }
        // A window is done (unprotected, its waiters woken) as soon as its pages are read:
        // copied or encoded, before the disk write.
        let mut released = false;
        let mut release = || {
            if let Some((e, w)) = window.filter(|_| !released) {
                let (ws, we) = e.window_range(w);
                e.done(w, ws, we);
            }
            released = true;
        };
        let r = store(sh, &mut enc, job, pieces, &mut buf, &mut parts, &mut release);
        release();
        match r {
            // SAFETY: slot i belongs to this job alone; out has one slot per job.
            Ok(c) => unsafe { *sh.out.add(i) = c },
            Err(e) => return fail(e),
        }
        sh.progress.add(pieces.iter().map(|p| p.len).sum());
    }
}

/// Store one job made of `pieces`: hashed and, for an increment, cut down to the pages that
/// changed; one frame. Its chunks (none when nothing is left to store).
/// `release` is called once the pieces' memory is no longer read (it may be called again after).
fn store(sh: &Shared, enc: &mut ChunkEncoder, job: &Job, pieces: &[Piece], buf: &mut Vec<u8>, parts: &mut Vec<(u64, u64)>, release: &mut dyn FnMut()) -> Result<Vec<Chunk>, String> {
    // One chunk per run of adjacent pieces: a background snapshot's window gives a piece per
    // page saved ahead of the writer, and a chunk each made the index of a 4 GiB program that
    // rewrites its memory ~60 MiB in the writer (and as much again when the regions' chunks
    // were joined at the end).
    parts.clear();
    for p in pieces {
        match parts.last_mut() {
            Some((o, l)) if *o + *l == p.offset => *l += p.len,
            _ => parts.push((p.offset, p.len)),
        }
    }
    let data: &[u8] = match pieces {
        // SAFETY: [addr, addr+len) lies in a readable private anonymous mapping of this
        // process that nothing writes while the image is written (threads stopped, the
        // snapshot child's copy of the program's memory, a frozen copy, or pages the
        // background snapshot keeps write-protected until the job is done).
        [p] if job.direct && job.file < 0 && !p.zero && !job.filter => unsafe { std::slice::from_raw_parts(p.addr as *const u8, p.len as usize) },
        _ => {
            gather(sh, job, pieces, buf);
            release();
            buf
        }
    };
    let data = match sh.hashing.filter(|_| job.hashed) {
        Some(h) if job.filter => {
            // Only the pages that changed, moved to the front of the buffer.
            hash_pages(h, job, pieces, data, parts);
            let n = compact(buf, pieces, parts);
            &buf[..n]
        }
        Some(h) => {
            hash_pages(h, job, pieces, data, parts);
            data
        }
        None => data,
    };
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    sh.writer.write_frame_then(enc, parts, data, release).map_err(|e| e.to_string())
}

/// Hash the pages of a tracked job (`data`: its pieces' bytes one after the other) into the new
/// table. For an increment (`job.filter`), `parts` becomes the runs of pages whose hash differs
/// from the old table's (a page the table does not list held zeros).
fn hash_pages(h: &Hashing, job: &Job, pieces: &[Piece], data: &[u8], parts: &mut Vec<(u64, u64)>) {
    let pages = data.len() / PAGE as usize;
    let mut block = h.work.block(pages);
    let zero = pagehash::zero();
    let old = h.old.filter(|_| job.filter);
    let mut cursor = old.map_or(0, |t| t.seek(job.start + pieces.first().map_or(0, |p| p.offset)));
    if job.filter {
        parts.clear();
    }
    let mut at = 0usize;
    for p in pieces {
        for k in 0..p.len / PAGE {
            let page = &data[at..at + PAGE as usize];
            at += PAGE as usize;
            let off = p.offset + k * PAGE;
            let addr = job.start + off;
            let hv = if p.zero { zero } else { pagehash::hash(page) };
            if let Some(b) = block.as_mut() {
                b.push(addr, hv);
            }
            let Some(t) = old else { continue };
            while t.at(cursor).is_some_and(|(pg, _)| pg < addr) {
                cursor += 1;
            }
            let before = match t.at(cursor) {
                Some((pg, ho)) if pg == addr => ho,
                _ => zero,
            };
            if hv != before {
                match parts.last_mut() {
                    Some((o, l)) if *o + *l == off => *l += PAGE,
                    _ => parts.push((off, PAGE)),
                }
            }
        }
    }
}

/// Move the bytes of the runs `parts` (offsets in the region) of the job's gathered `buf` (its
/// `pieces` one after the other) to the front of `buf`; returns their length.
fn compact(buf: &mut [u8], pieces: &[Piece], parts: &[(u64, u64)]) -> usize {
    let mut to = 0usize;
    let (mut pi, mut base) = (0usize, 0u64);
    for &(off, len) in parts {
        while pieces[pi].offset + pieces[pi].len <= off {
            base += pieces[pi].len;
            pi += 1;
        }
        let from = (base + off - pieces[pi].offset) as usize;
        buf.copy_within(from..from + len as usize, to);
        to += len as usize;
    }
    to
}

/// The bytes of a job's pieces, one after the other, into `buf`: from memory in place (direct),
/// through /proc/self/mem, or from the job's file. What cannot be read is stored as zeros.
fn gather(sh: &Shared, job: &Job, pieces: &[Piece], buf: &mut Vec<u8>) {
    let total: u64 = pieces.iter().map(|p| p.len).sum();
    buf.resize(total as usize, 0);
    let mut at = 0usize;
    for p in pieces {
        let dst = &mut buf[at..at + p.len as usize];
        let got = if p.zero {
            0
        } else if job.file >= 0 {
            let mut got = 0;
            while got < dst.len() {
                match sys::pread(job.file, &mut dst[got..], p.offset + got as u64) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            got
        } else if job.direct {
            // SAFETY: as in `work`: readable memory nothing writes meanwhile.
            dst.copy_from_slice(unsafe { std::slice::from_raw_parts(p.addr as *const u8, p.len as usize) });
            dst.len()
        } else {
            sys::pread_pages(sh.mem, dst, p.addr);
            dst.len()
        };
        dst[got..].fill(0);
        at += p.len as usize;
    }
}

/// CPUs this process may run on (at least 1).
pub fn cpus() -> usize {
    let mut mask = [0u64; 16];
    match sys::syscall!(libc::SYS_sched_getaffinity, 0, std::mem::size_of_val(&mask), mask.as_mut_ptr()) {
        Ok(_) => (mask.iter().map(|w| w.count_ones() as usize).sum::<usize>()).max(1),
        Err(_) => 1,
    }
}
