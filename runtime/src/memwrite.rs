//! Writing the memory of an image: which chunks to store (from pagemap; and the data extents
//! of deleted files), and compressing and writing them with several threads.
//!
//! The threads are raw `clone`s sharing the caller's memory and TLS (no CLONE_SETTLS), not
//! pthreads: in the snapshot child, pthread_create could block forever on a glibc lock that a
//! program thread held at the moment of the snapshot. They only run `work` below, which uses
//! raw system calls, zstd and the runtime's allocator (the scratch arena, whose lock only the
//! runtime's own threads take), never TLS.

use crate::dirty::Track;
use crate::freeze::{Frozen, FrozenFile};
use crate::progress::Progress;
use crate::maps::{self, MapEntry, PAGE};
use crate::sys;
use ckpt_image::{Backing, Chunk, ChunkEncoder, Codec, FdKind, FdState, RegionAttrs, Writer, CHUNK_SIZE};
use ckpt_kinds::deleted;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

/// One chunk to store: `len` bytes at address `addr`, `offset` bytes into its region.
#[derive(Clone, Copy)]
pub struct Job {
    pub region: usize,
    pub offset: u64,
    pub addr: u64,
    pub len: usize,
    /// Readable private anonymous memory (or a frozen copy): read in place. Otherwise through
    /// /proc/self/mem.
    pub direct: bool,
    /// A deleted file's data: read from this fd of ours at `offset` (`region` is then the fd's
    /// entry in the fd table), not from memory. -1 for memory.
    pub file: i32,
}

/// Pages of a region, and whether the others come from the parent image (an increment).
struct Stored {
    runs: Vec<(u64, u64)>,
    inherit: bool,
    guards: Vec<(u64, u64)>,
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
/// the VmFlags bits of entry i). For an increment, `tracks` says which pages of tracked regions
/// were written since the parent. Regions with no backing to store (vsyscall) get None. Regions
/// that `frozen` holds a copy of are read from the copy.
pub fn plan(pagemap: i32, maps: &[(MapEntry, bool)], flags: &[u64], tracks: Option<&[Track]>, frozen: &[Option<Frozen>]) -> (Vec<Option<Described>>, Vec<Job>) {
    let mut backings = Vec::with_capacity(maps.len());
    let mut jobs = Vec::new();
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
        let copy = frozen.get(i).and_then(Option::as_ref);
        let stored = match tracks.map(|t| &t[i]) {
            _ if *scratch => Stored { runs: Vec::new(), inherit: false, guards: Vec::new() },
            _ if copy.is_some() => Stored { runs: Vec::new(), inherit: false, guards: maps::guard_pages(pagemap, m) },
            Some(Track::Dirty(runs)) if backing == Backing::Anon => Stored { runs: runs.clone(), inherit: true, guards: maps::guard_pages(pagemap, m) },
            _ => {
                let p = maps::stored_pages(pagemap, m, &backing, maps::file_refs(maps, i, &written).as_deref());
                Stored { runs: p.runs, inherit: false, guards: p.guards }
            }
        };
        let own_stack = m.start <= here && here < m.end;
        let direct = maps::directly_readable(m, &backing) && !own_stack;
        // (first page, pages, address of the first page's bytes, read in place)
        let runs: Vec<(u64, u64, u64, bool)> = match copy {
            Some(f) => f.runs.iter().map(|&(first, n, at)| (first, n, at, true)).collect(),
            None => stored.runs.iter().map(|&(first, n)| (first, n, m.start + first * PAGE, direct)).collect(),
        };
        for (first, n, at, direct) in runs {
            let mut off = first * PAGE;
            let end = (first + n) * PAGE;
            while off < end {
                let len = (end - off).min(CHUNK_SIZE as u64) as usize;
                jobs.push(Job { region: i, offset: off, addr: at + (off - first * PAGE), len, direct, file: -1 });
                off += len as u64;
            }
        }
        let attrs = RegionAttrs { flags: if *scratch { 0 } else { m.flags }, guards: stored.guards };
        backings.push(Some(Described { backing, inherit: stored.inherit, attrs }));
    }
    (backings, jobs)
}

/// Jobs for the data of the deleted files of the fd table (`deleted::data_owners`), appended
/// to `jobs`: their data extents, read through fds of ours opened here (returned, to be closed
/// once written). A file we cannot open again (its mode denies us reading) is read through the
/// program's own fd with pread, which leaves its offset alone, all of it (holes cannot be told
/// without an offset of our own); a file that cannot be read at all fails the checkpoint.
/// Files in `frozen` were copied while the program was stopped: read from the copy.
pub fn plan_files(fds: &[FdState], jobs: &mut Vec<Job>, frozen: &[FrozenFile]) -> Result<Vec<i32>, String> {
    let mut opened = Vec::new();
    for i in deleted::data_owners(fds) {
        let f = &fds[i];
        let FdKind::Deleted(d) = &f.kind else { continue };
        if let Some(copy) = frozen.iter().find(|c| c.fd == f.fd) {
            for &(s, e) in &copy.runs {
                let mut off = s;
                while off < e {
                    let len = (e - off).min(CHUNK_SIZE as u64) as usize;
                    jobs.push(Job { region: i, offset: off, addr: copy.base as u64 + off, len, direct: true, file: -1 });
                    off += len as u64;
                }
            }
            continue;
        }
        let (fd, runs) = match sys::open(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(f.fd)]), libc::O_RDONLY, 0) {
            Ok(fd) => {
                opened.push(fd);
                (fd, deleted::extents(fd, d.size))
            }
            Err(_) if f.flags & libc::O_ACCMODE != libc::O_WRONLY && f.flags & libc::O_PATH == 0 => (f.fd, vec![(0, d.size.div_ceil(PAGE) * PAGE)]),
            Err(e) => {
                opened.iter().for_each(|&fd| sys::close(fd));
                return Err(format!("cannot read the deleted file {} (fd {}): errno {e}", String::from_utf8_lossy(&d.path), f.fd));
            }
        };
        for (s, e) in runs {
            let mut off = s;
            while off < e {
                let len = (e - off).min(CHUNK_SIZE as u64) as usize;
                jobs.push(Job { region: i, offset: off, addr: 0, len, direct: false, file: fd });
                off += len as u64;
            }
        }
    }
    Ok(opened)
}

/// Give each deleted file its chunks (`jobs` and `chunks`: the file jobs and what they wrote).
pub fn attach_files(fds: &mut [FdState], jobs: &[Job], chunks: &[Chunk]) {
    for (j, c) in jobs.iter().zip(chunks) {
        if let FdKind::Deleted(d) = &mut fds[j.region].kind {
            d.chunks.push(*c);
        }
    }
}

struct Shared<'a> {
    writer: &'a Writer,
    mem: i32,
    jobs: &'a [Job],
    /// One slot per job, written once by the thread that took the job.
    out: *mut Chunk,
    progress: &'a Progress,
    next: AtomicUsize,
    error: AtomicPtr<String>,
}

/// Compress and write every job with `threads` threads (the caller is one of them), counting
/// the bytes in `progress`; the chunks come back in job order.
pub fn write_all(writer: &Writer, mem: i32, jobs: &[Job], threads: usize, progress: &Progress) -> Result<Vec<Chunk>, String> {
    let empty = Chunk { offset: 0, raw_len: 0, file_offset: 0, stored_len: 0, codec: Codec::Zero, hash: 0 };
    let mut out = vec![empty; jobs.len()];
    let shared = Shared { writer, mem, jobs, out: out.as_mut_ptr(), progress, next: AtomicUsize::new(0), error: AtomicPtr::new(std::ptr::null_mut()) };
    let mut extra = threads.saturating_sub(1).min(jobs.len().saturating_sub(1));
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
    loop {
        if !sh.error.load(Ordering::Acquire).is_null() {
            return;
        }
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = sh.jobs.get(i) else { return };
        let data: &[u8] = if job.file >= 0 {
            buf.resize(job.len, 0);
            let mut got = 0;
            while got < job.len {
                match sys::pread(job.file, &mut buf[got..], job.offset + got as u64) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            buf[got..].fill(0);
            &buf
        } else if job.direct {
            // SAFETY: [addr, addr+len) lies in a readable private anonymous mapping of this
            // process that nothing writes while the image is written (threads stopped, or the
            // snapshot child's copy of the program's memory, or its frozen copy of shared memory).
            unsafe { std::slice::from_raw_parts(job.addr as *const u8, job.len) }
        } else {
            buf.resize(job.len, 0);
            sys::pread_pages(sh.mem, &mut buf, job.addr);
            &buf
        };
        match sh.writer.write_chunk_with(&mut enc, job.offset, data) {
            // SAFETY: slot i belongs to this job alone; out has jobs.len() slots.
            Ok(c) => unsafe { sh.out.add(i).write(c) },
            Err(e) => return fail(e.to_string()),
        }
        sh.progress.add(job.len as u64);
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
