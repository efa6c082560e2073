//! Freezing what a forked snapshot does not: a copy-on-write child sees the program's private
//! memory as it was at the fork, but shared memory (MAP_SHARED mappings of files, shared
//! anonymous memory, memfd, POSIX and System V shm) is the same memory in both processes, and
//! the program keeps writing it while the child writes the image. So the snapshot child, while
//! the program's threads are still stopped, copies the pages of those regions that the image
//! stores into private memory of its own; the image is then written from that copy. The pause
//! grows with the shared memory only (and the copy lives only as long as the child; a background
//! snapshot's writer, which shares the program's address space, unmaps its copies: `Frozen`).
//!
//! Private file mappings of a file that the program also maps shared and writable are copied too
//! (their pages inside the file that are stored, see maps::file_refs), and private mappings of
//! memfds and deleted files: the pages the program never wrote are the file's, and the file
//! changes under the child.
//!
//! Pages of shmem objects (shared anonymous memory, memfd, System V and /dev/shm) that are not in
//! memory are holes when the system has no swap: they are left out of the copy (they read as
//! zeros, like the hole) instead of being read, which would allocate them in the object.
//! Runs in the snapshot child: raw system calls and the runtime's allocator only.

use crate::maps::{self, MapEntry, PAGE};
use ckpt_kinds::deleted;
use crate::sys::{self, syscall};
use ckpt_image::{Backing, CHUNK_SIZE};

/// The frozen copy of one region: runs of its pages (first page, pages) and where in our memory
/// the copy of each run starts. The copy is one mapping of ours, unmapped when this is dropped:
/// a background snapshot's writer shares the program's address space (a CLONE_VM child), so a
/// copy it left behind stayed in the program for good, and in every later image (a forked
/// snapshot child exits without dropping it: its memory goes with it).
pub struct Frozen {
    pub runs: Vec<(u64, u64, u64)>,
    /// The mapping that holds the copy: (address, length); length 0 when nothing was copied.
    map: (usize, usize),
}

impl Frozen {
    fn empty() -> Frozen {
        Frozen { runs: Vec::new(), map: (0, 0) }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if self.map.1 != 0 {
            sys::munmap(self.map.0, self.map.1);
        }
    }
}

/// Whether region `m` with `backing` must be copied before the program runs on: memory that a
/// fork shares instead of copying, a private file mapping whose file the program writes
/// through a shared mapping (`refs`, see maps::file_refs), or a private mapping of a memfd or
/// deleted file (stored whole; its unwritten pages are the file's, which the program may write
/// through a shared mapping or its fd).
fn needed(m: &MapEntry, backing: &Backing, refs: bool) -> bool {
    match backing {
        Backing::SharedAnon => true,
        Backing::File { shared: true, .. } => m.prot & libc::PROT_WRITE as u32 != 0,
        Backing::File { shared: false, .. } => refs,
        Backing::Anon => maps::is_deleted_file(m),
        Backing::Special => false,
    }
}

/// A shmem object, whose pages that are not in memory hold nothing (without swap).
fn shmem(m: &MapEntry) -> bool {
    [&b"/dev/zero"[..], b"/SYSV", b"/memfd:", b"/dev/shm/"].iter().any(|p| m.name.starts_with(p))
}

/// Whether the system has swap configured (/proc/swaps lists more than its header line).
fn has_swap() -> bool {
    match sys::read_file(&sys::cpath(&[b"/proc/swaps"])) {
        Ok(t) => t.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() > 1,
        Err(_) => true,
    }
}

/// Copy the stored pages of every region that needs it (`maps` entries flagged true are the
/// scratch arena, stored empty). One entry per region: None when the region is read in place.
pub fn freeze(maps: &[(MapEntry, bool)], pagemap: i32, mem: i32) -> Result<Vec<Option<Frozen>>, String> {
    let holes_ok = !has_swap();
    let written = maps::shared_written_inodes(maps);
    let mut out = Vec::with_capacity(maps.len());
    for (i, (m, scratch)) in maps.iter().enumerate() {
        if *scratch || m.name == b"[vsyscall]" {
            out.push(None);
            continue;
        }
        // Cheap tests first: a private mapping needs no stat unless its file is mapped shared.
        let refs = if m.shared { None } else { maps::file_refs(maps, i, &written) };
        if !m.shared && refs.is_none() && !maps::is_deleted_file(m) {
            out.push(None);
            continue;
        }
        let backing = maps::backing_of(m);
        if !needed(m, &backing, refs.is_some()) {
            out.push(None);
            continue;
        }
        let runs = maps::stored_pages(pagemap, m, &backing, refs.as_deref()).runs;
        let pages: u64 = runs.iter().map(|r| r.1).sum();
        if pages == 0 {
            out.push(Some(Frozen::empty()));
            continue;
        }
        out.push(Some(copy_runs(m, &runs, mem, holes_ok && shmem(m))?));
    }
    Ok(out)
}

/// Background snapshots (bgsnap.rs): copy, at the instant, what write-protection does not hold
/// still: every region that is not protected (`armed` false: shared memory, file mappings,
/// stacks, the runtime's own memory, DMA buffers (MADV_DONTFORK)) with the pages it stores, and
/// of the protected ones the pages in `excluded` (sorted ranges the kernel writes by itself: TLS
/// blocks, alternate signal stacks). One entry per region, like `freeze`.
pub fn freeze_bg(maps: &[(MapEntry, bool)], armed: &[bool], excluded: &[(u64, u64)], pagemap: i32, mem: i32) -> Result<Vec<Option<Frozen>>, String> {
    let holes_ok = !has_swap();
    let written = maps::shared_written_inodes(maps);
    let mut out = Vec::with_capacity(maps.len());
    for (i, (m, scratch)) in maps.iter().enumerate() {
        if *scratch || m.name == b"[vsyscall]" || maps::is_special(&m.name) {
            out.push(None);
            continue;
        }
        let runs: Vec<(u64, u64)> = if armed.get(i) == Some(&true) {
            excluded
                .iter()
                .filter(|&&(s, e)| s < m.end && e > m.start)
                .map(|&(s, e)| ((s.max(m.start) - m.start) / PAGE, (e.min(m.end) - s.max(m.start)).div_ceil(PAGE)))
                .collect()
        } else {
            let refs = if m.shared { None } else { maps::file_refs(maps, i, &written) };
            maps::stored_pages(pagemap, m, &maps::backing_of(m), refs.as_deref()).runs
        };
        if runs.is_empty() {
            out.push(if armed.get(i) == Some(&true) { None } else { Some(Frozen::empty()) });
            continue;
        }
        out.push(Some(copy_runs(m, &runs, mem, holes_ok && shmem(m))?));
    }
    Ok(out)
}

/// Copy the runs (first page, pages) of region `m` into fresh memory of ours.
fn copy_runs(m: &MapEntry, runs: &[(u64, u64)], mem: i32, skip_holes: bool) -> Result<Frozen, String> {
    let pages: u64 = runs.iter().map(|r| r.1).sum();
    let len = (pages * PAGE) as usize;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    let base = sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0)
        .map_err(|e| format!("cannot copy the region {:#x}-{:#x} ({} KiB): {}", m.start, m.end, len >> 10, crate::checkpoint::strerror(e)))?;
    if len >= 2 << 20 {
        // Fewer page faults for a large copy; failure only costs time.
        let _ = syscall!(libc::SYS_madvise, base, len, libc::MADV_HUGEPAGE);
    }
    let mut at = base as u64;
    let mut frozen = Vec::with_capacity(runs.len());
    for &(first, n) in runs {
        copy(mem, m.start + first * PAGE, at, n, skip_holes);
        frozen.push((first, n, at));
        at += n * PAGE;
    }
    Ok(Frozen { runs: frozen, map: (base, len) })
}

/// Copy `n` pages at `from` (through /proc/self/mem: a page past the end of a file or a guard
/// page reads as an error, not a SIGBUS or SIGSEGV) to fresh zeroed memory at `to`. What cannot be read stays zero, as the
/// image writer would store it. With `skip_holes`, pages that are not in memory are not read.
fn copy(mem: i32, from: u64, to: u64, n: u64, skip_holes: bool) {
    let mut pieces: Vec<(u64, u64)> = Vec::new();
    if skip_holes {
        let mut vec = vec![0u8; n as usize];
        if syscall!(libc::SYS_mincore, from, n * PAGE, vec.as_mut_ptr()).is_ok() {
            for (p, v) in vec.iter().enumerate() {
                if v & 1 == 0 {
                    continue;
                }
                match pieces.last_mut() {
                    Some((s, l)) if *s + *l == p as u64 => *l += 1,
                    _ => pieces.push((p as u64, 1)),
                }
            }
        } else {
            pieces.push((0, n));
        }
    } else {
        pieces.push((0, n));
    }
    let step = CHUNK_SIZE as u64 / PAGE;
    for (first, count) in pieces {
        let mut p = first;
        while p < first + count {
            let k = step.min(first + count - p);
            // SAFETY: [to + p*PAGE, +k pages) lies inside the copy we mapped read-write.
            let dst = unsafe { std::slice::from_raw_parts_mut((to + p * PAGE) as *mut u8, (k * PAGE) as usize) };
            sys::pread_pages(mem, dst, from + p * PAGE);
            p += k;
        }
    }
}

/// The data of a deleted file (or memfd) copied while the program was stopped: the page runs of
/// the file that hold data, `(offset, end)`, and where in our memory the copy of the file
/// starts (one private anonymous mapping of `len` bytes, unmapped when this is dropped, like
/// `Frozen`'s).
pub struct FrozenFile {
    /// The program's fd the file was read through.
    pub fd: i32,
    pub base: usize,
    len: usize,
    pub runs: Vec<(u64, u64)>,
}

impl Drop for FrozenFile {
    fn drop(&mut self) {
        sys::munmap(self.base, self.len);
    }
}

/// Copy the data of the deleted files behind the program's fds `fds` (fd, size) that the
/// program also maps shared: writes through such a mapping change the file under the snapshot
/// child (and no inotify watch sees them), so their data is copied while the threads are
/// stopped, like shared memory. Files only written through fds are read later, watched.
pub fn freeze_files(fds: &[(i32, u64)]) -> Result<Vec<FrozenFile>, String> {
    let mut out = Vec::new();
    for &(fd, size) in fds {
        let len = (size.div_ceil(PAGE) * PAGE) as usize;
        if len == 0 {
            continue;
        }
        // Our own open file description: reading moves its offset, not the program's.
        let own = sys::open(&sys::cpath(&[b"/proc/thread-self/fd/", &sys::decimal(crate::flightdata::reader(fd))]), libc::O_RDONLY, 0).map_err(|e| format!("cannot read the deleted file behind fd {fd}: errno {e}"))?;
        let runs = deleted::extents(own, size);
        let base = match sys::mmap(0, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0) {
            Ok(b) => b,
            Err(e) => {
                sys::close(own);
                return Err(format!("cannot map {} MiB to copy the deleted file behind fd {fd}: errno {e}", len >> 20));
            }
        };
        for &(s, e) in &runs {
            let mut off = s;
            while off < e.min(size) {
                // SAFETY: [base, base + len) is our fresh mapping and off < e <= len.
                let buf = unsafe { std::slice::from_raw_parts_mut((base as u64 + off) as *mut u8, (e - off) as usize) };
                match sys::pread(own, buf, off) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
        }
        sys::close(own);
        out.push(FrozenFile { fd, base, len, runs });
    }
    Ok(out)
}

/// Which of the deleted files behind `owners` ((fd, inode, size)) a shared mapping in `maps`
/// shows: those must be frozen (see freeze_files).
pub fn mapped_shared(maps: &[(MapEntry, bool)], owners: &[(i32, u64, u64)]) -> Vec<(i32, u64)> {
    owners
        .iter()
        .filter(|&&(_, ino, _)| maps.iter().any(|(m, _)| m.shared && m.inode == ino && m.prot & libc::PROT_WRITE as u32 != 0 && maps::is_deleted_file(m)))
        .map(|&(fd, _, size)| (fd, size))
        .collect()
}
