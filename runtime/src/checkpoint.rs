//! One checkpoint: take the gate, stop the threads, collect regions/fds/process state, make a
//! copy-on-write snapshot (snapshot.rs), resume the threads; the snapshot writes the image under a
//! temporary name and fsyncs it; then rename. Without a snapshot, the threads stay stopped while
//! the image is written.

use crate::log::{log, DEBUG, ERROR, INFO};
use crate::maps::{self, MapEntry};
use crate::dirty::{self, Track};
use crate::{alloc, config, fdtable, gate, generations, incremental, memwrite, procstate, snapshot, sys, threads, ThreadInfo, CKPT_THREAD};
use crate::imgdir::{self, Dir};
use ckpt_image::{generation_file_name, Entry, Index, Meta, Region, ThreadState, Writer};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Checkpoints taken by this program, across restarts (the counter is part of the image).
pub static GENERATION: AtomicU64 = AtomicU64::new(0);

/// What a checkpoint produced (for callers that report it; the loop only logs).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub raw: u64,
    pub stored: u64,
    pub paused_ms: u64,
}

/// Take a checkpoint now. Errors are logged here (their text lives in the scratch arena).
pub fn take() -> Option<Outcome> {
    let t0 = now_ns();
    gate::lock_exclusive();
    alloc::scratch_begin();
    let gen = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    // The directory is opened (and checked) for this checkpoint; it is closed when `dir` goes.
    let result = match config().ok_or_else(|| "runtime not configured".to_string()).and_then(|cfg| Ok((cfg, Dir::open(&cfg.dir, cfg.allow_shared)?))) {
        Err(e) => Err(Retry::Fail(e)),
        Ok((cfg, dir)) => {
            // Temporary images a killed checkpoint of ours left behind (before this one starts,
            // so that they never look like part of it, and free their space first).
            dir.clean_leftovers(&generation_file_name(&cfg.name, 0), START_SEC.load(Ordering::Relaxed));
            // An increment needs its parent on disk (the user may have removed it).
            let parent = incremental::next_parent().filter(|(h, _)| generations::has_image(&dir, &cfg.name, *h));
            let mut result = take_with(&dir, gen, snapshot::enabled(), parent);
            if let Err(Retry::Sync(why)) = &result {
                log!(INFO, "checkpoint {gen} written without a snapshot: {why}");
                // The first attempt's scan consumed the dirty bits: this one must be a full image.
                result = take_with(&dir, gen, false, None);
            }
            result
        }
    };
    let ms = (now_ns() - t0) / 1_000_000;
    let out = match result {
        Ok((w, paused)) => {
            let paused_ms = paused / 1_000_000;
            incremental::committed(w.hash, w.increment, w.stored);
            generations::record(gen, &w.path, w.raw, w.stored, ms, paused_ms, w.increment);
            Some(Outcome { raw: w.raw, stored: w.stored, paused_ms })
        }
        Err(Retry::Sync(e) | Retry::Fail(e)) => {
            GENERATION.fetch_sub(1, Ordering::AcqRel);
            incremental::reset();
            log!(ERROR, "checkpoint failed, the program continues: {e}");
            None
        }
    };
    log!(DEBUG, "scratch memory: {} KiB", alloc::scratch_used() >> 10);
    alloc::scratch_end();
    gate::unlock_exclusive();
    out
}

/// When this process started (or was restarted), in seconds since the epoch: temporary images
/// last written before then are leftovers of a killed checkpoint.
pub static START_SEC: AtomicI64 = AtomicI64::new(0);

/// Remember now as the start of this process (at startup and after a restart).
pub fn mark_start() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts as *mut libc::timespec);
    START_SEC.store(ts.tv_sec, Ordering::Relaxed);
}

enum Retry {
    /// The snapshot could not hold the image: take it again with the threads stopped throughout.
    Sync(String),
    Fail(String),
}

/// What a checkpoint wrote.
struct Written {
    raw: u64,
    stored: u64,
    /// The header's index_hash (what an increment over this image names as its parent).
    hash: u64,
    increment: bool,
    path: Vec<u8>,
}

/// What the image writer reports: memory bytes, file bytes, header hash.
type WriteResult = Result<(u64, u64, u64), String>;

/// Stop the threads, capture, and write the image: from a snapshot child while the program
/// runs on (`fork`), or with the program stopped; an increment over `parent` (hash, chain
/// length) when given. Returns what was written and the pause in ns.
fn take_with(dir: &Dir, gen: u64, fork: bool, parent: Option<(u64, u32)>) -> Result<(Written, u64), Retry> {
    // Write-protecting memory for the next increment mostly needs no stop: done first.
    let armed = if incremental::enabled() { dirty::pre_arm(parent.is_none(), &alloc::scratch_ranges()) } else { Vec::new() };
    // What the stopped part allocates must be there before the stop: running out of address
    // space fails the checkpoint here, not with the program stopped.
    let need = alloc::stopped_reserve(if fork { STOPPED_FORK } else { STOPPED_SYNC });
    let used0 = alloc::scratch_used();
    if !alloc::scratch_reserve(need) {
        return Err(Retry::Fail(format!("cannot map {} MiB for the checkpoint (address-space limit, ulimit -v?)", need.div_ceil(1 << 20))));
    }
    // The pause starts here.
    let t0 = now_ns();
    let slots = threads::stop_all(sys::gettid()).map_err(Retry::Fail)?;
    let resumed = || {
        threads::resume_all();
        alloc::note_stopped_use(alloc::scratch_used() - used0);
    };
    let t_stopped = now_ns();
    let mut cap = match capture(&slots, gen) {
        Ok(c) => c,
        Err(e) => {
            resumed();
            return Err(Retry::Fail(e));
        }
    };
    // Last before the snapshot: what is written after the scan belongs to the next image.
    track(&mut cap, parent, &armed);
    let done = |(raw, stored, hash): (u64, u64, u64), cap: &Capture| commit(dir, cap).map(|path| Written { raw, stored, hash, increment: cap.tracks.is_some(), path });
    if fork {
        match snapshot::spawn(|| write_image(dir, &cap, memwrite::cpus().min(8)), &cap.maps) {
            Ok(mut child) => {
                resumed();
                let paused = now_ns() - t0;
                let t_cap = cap.taken_at;
                log!(DEBUG, "pause: stop {} us, capture {} us, snapshot {} us", (t_stopped - t0) / 1000, (t_cap - t_stopped) / 1000, (paused - (t_cap - t0)) / 1000);
                return match child.wait() {
                    snapshot::Outcome::Written { raw, stored, hash } => done((raw, stored, hash), &cap).map(|w| (w, paused)).map_err(Retry::Fail),
                    snapshot::Outcome::NeedSync(why) => {
                        discard(dir, &cap);
                        Err(Retry::Sync(why))
                    }
                    snapshot::Outcome::Failed(e) => {
                        discard(dir, &cap);
                        Err(Retry::Fail(e))
                    }
                };
            }
            Err(e) => log!(INFO, "checkpoint {gen} written without a snapshot: {e}"),
        }
    }
    let r = write_image(dir, &cap, 1);
    resumed();
    let paused = now_ns() - t0;
    match r {
        Ok(w) => done(w, &cap).map(|w| (w, paused)).map_err(Retry::Fail),
        Err(e) => {
            discard(dir, &cap);
            Err(Retry::Fail(e))
        }
    }
}

/// Scan and re-arm dirty-page tracking (when increments are on; `armed`: what `pre_arm` armed);
/// keep the result when this image is an increment over `parent`.
fn track(cap: &mut Capture, parent: Option<(u64, u32)>, armed: &[(u64, u64)]) {
    if !incremental::enabled() {
        return;
    }
    let here = &cap as *const _ as u64;
    let eligible: Vec<bool> = cap.maps.iter().map(|(m, scratch)| dirty::eligible(m, *scratch, m.start <= here && here < m.end)).collect();
    let t = now_ns();
    let tracks = dirty::scan_and_arm(&cap.maps, &eligible, armed, parent.is_none());
    log!(DEBUG, "dirty-page scan {} us", (now_ns() - t) / 1000);
    if let Some((hash, depth)) = parent {
        cap.tracks = Some(tracks);
        cap.parent = hash;
        cap.index.meta.chain = depth + 1;
    }
}

pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Scratch bytes reserved before the threads are stopped: for the capture (maps, fds, process
/// state: a few hundred KiB), and with the image written during the stop also for the writer
/// (one thread). Raised to what earlier stops used.
const STOPPED_FORK: usize = 4 << 20;
const STOPPED_SYNC: usize = STOPPED_FORK + memwrite::PER_THREAD;

/// Split map entries at the scratch arena's segments; those parts are stored as empty memory.
/// Notes which segments the image holds (what a restart from it finds mapped).
fn split_scratch(maps: Vec<MapEntry>) -> Vec<(MapEntry, bool)> {
    let ranges = alloc::scratch_ranges();
    alloc::note_in_image(&ranges);
    let mut out = Vec::with_capacity(maps.len() + 2 * ranges.as_slice().len());
    for m in maps {
        let mut at = m.start;
        let mut inside: Vec<(u64, u64)> = ranges.as_slice().iter().filter(|&&(s, e)| s < m.end && e > m.start).map(|&(s, e)| (s.max(m.start), e.min(m.end))).collect();
        inside.sort_unstable();
        let part = |s: u64, e: u64, scratch: bool| (MapEntry { start: s, end: e, offset: m.offset + (s - m.start), ..m.clone() }, scratch);
        for (s, e) in inside {
            if at < s {
                out.push(part(at, s, false));
            }
            out.push(part(s, e, true));
            at = e;
        }
        if at < m.end {
            out.push(part(at, m.end, false));
        }
    }
    out
}

/// What is read while the threads are stopped: everything but the memory's contents.
struct Capture {
    maps: Vec<(MapEntry, bool)>,
    /// The index without regions (filled in by write_image).
    index: Index,
    final_path: Vec<u8>,
    /// The temporary image's name in the image directory (unpredictable: see imgdir).
    tmp_name: Vec<u8>,
    /// When the capture was complete (ns, CLOCK_MONOTONIC).
    taken_at: u64,
    /// An increment: what changed in each region since the parent, whose header hash is `parent`.
    tracks: Option<Vec<Track>>,
    parent: u64,
}

fn capture(slots: &[threads::Slot], gen: u64) -> Result<Capture, String> {
    let cfg = config().ok_or("runtime not configured")?;
    // fds first, before we open anything of our own.
    let fds = fdtable::read_fds();
    crate::kstate::save(sys::gettid());
    let process = procstate::read_process();
    // Locked memory (mlock) is not locked in a forked snapshot, which reads the other flags of
    // each region itself: read them here where some is (smaps costs ~10 ms per GiB).
    let maps = split_scratch(if procstate::locks_memory() { maps::read_smaps()? } else { maps::read_maps()? });
    let vdso_hash = maps.iter().find(|(m, _)| m.name == b"[vdso]").map_or(0, |(m, _)| hash_mem(m.start, m.end - m.start));
    let final_path = generations::newest_path(&cfg.dir, &cfg.name);
    let tmp_name = imgdir::tmp_name(&generation_file_name(&cfg.name, 0));
    let ct: &ThreadInfo = &CKPT_THREAD;
    let index = Index {
        meta: meta(&cfg.name, gen, vdso_hash),
        regions: Vec::new(),
        threads: slots
            .iter()
            .map(|s| ThreadState {
                tid: s.tid,
                ucontext: s.ucontext,
                fs_base: s.fs_base,
                tid_address: s.tid_address,
                robust_head: s.robust_head,
                robust_len: s.robust_len,
                altstack_sp: s.ss_sp,
                altstack_size: s.ss_size,
                altstack_flags: s.ss_flags,
                rseq: s.rseq,
                attrs: s.attrs,
            })
            .collect(),
        entry: Entry {
            pc: crate::restart::entry_point(),
            sp: ct.stack_top.load(Ordering::Relaxed) & !15,
            arg: 0,
            fs_base: ct.fs_base.load(Ordering::Relaxed),
            tid_address: ct.tid_address.load(Ordering::Relaxed),
            robust_head: ct.robust_head.load(Ordering::Relaxed),
            robust_len: ct.robust_len.load(Ordering::Relaxed),
        },
        fds,
        process,
    };
    Ok(Capture { maps, index, final_path, tmp_name, taken_at: now_ns(), tracks: None, parent: 0 })
}

/// Write the memory of `cap` and its index to the temporary file, durably, with `threads`
/// compression threads. Runs in the snapshot child, or with the program's threads stopped.
fn write_image(dir: &Dir, cap: &Capture, threads: usize) -> WriteResult {
    let pagemap = sys::open(&sys::cpath(&[b"/proc/self/pagemap"]), libc::O_RDONLY, 0).map_err(|e| format!("cannot open /proc/self/pagemap: errno {e}"))?;
    let mem = sys::open(&sys::cpath(&[b"/proc/self/mem"]), libc::O_RDONLY, 0).map_err(|e| {
        sys::close(pagemap);
        format!("cannot open /proc/self/mem: errno {e}")
    })?;
    let tmp_path = dir.show(&cap.tmp_name).into_bytes();
    let r = (|| -> WriteResult {
        // O_DIRECT where the file system has it (see Writer): steady and fast for large images.
        // Not for increments: their chunks are small, and O_DIRECT pads each to 4 KiB.
        // A new file of ours (O_EXCL|O_NOFOLLOW, 0600): nothing planted at the name is used.
        let direct = if cap.tracks.is_some() { 0 } else { libc::O_DIRECT };
        let fd = match dir.create(&cap.tmp_name, direct) {
            Err(libc::EINVAL) => dir.create(&cap.tmp_name, 0),
            r => r,
        }
        .map_err(|e| format!("cannot create {}: {}", String::from_utf8_lossy(&tmp_path), strerror(e)))?;
        // SAFETY: fd is a freshly opened file that the File now owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let w = Writer::new(file, ZSTD_LEVEL).map_err(|e| e.to_string())?;
        let t0 = now_ns();
        // Each region's flags and advice, as this process sees them (the snapshot's regions are
        // the program's, but not locked: those bits come from the capture).
        let flags = maps::flags_of(&cap.maps, &maps::read_smaps()?);
        let (backings, jobs) = memwrite::plan(pagemap, &cap.maps, &flags, cap.tracks.as_deref());
        let t1 = now_ns();
        let chunks = memwrite::write_all(&w, mem, &jobs, threads).map_err(|e| format!("cannot write {}: {e}", String::from_utf8_lossy(&tmp_path)))?;
        let t2 = now_ns();
        let mut regions: Vec<Region> = Vec::with_capacity(cap.maps.len());
        let mut next = 0;
        for (i, ((m, _), described)) in cap.maps.iter().zip(backings).enumerate() {
            let Some(memwrite::Described { backing, inherit, attrs }) = described else { continue };
            let first = next;
            while next < jobs.len() && jobs[next].region == i {
                next += 1;
            }
            regions.push(Region { start: m.start, end: m.end, prot: m.prot, name: m.name.clone(), backing, chunks: chunks[first..next].to_vec(), inherit, attrs });
        }
        let mut index = cap.index.clone();
        index.regions = regions;
        let raw = w.raw_bytes();
        let (_file, header) = w.finish_increment(&index, cap.parent).map_err(|e| write_error(e, &tmp_path))?;
        let total = header.index_offset + header.index_len;
        let ms = |a: u64, b: u64| (b - a) / 1_000_000;
        log!(DEBUG, "image written with {threads} threads: pagemap {} ms, chunks {} ms, index+fsync {} ms, scratch {} KiB", ms(t0, t1), ms(t1, t2), ms(t2, now_ns()), alloc::scratch_used() >> 10);
        Ok((raw, total, header.index_hash))
    })();
    sys::close(pagemap);
    sys::close(mem);
    r
}

/// zstd level for images: level 1 with a 4 MiB window and long-distance matching (see
/// docs/benchmarks.md for the measurements behind it).
const ZSTD_LEVEL: i32 = 1;

/// Move the finished temporary file into place and make the rename durable.
fn commit(dir: &Dir, cap: &Capture) -> Result<Vec<u8>, String> {
    let cfg = config().ok_or("runtime not configured")?;
    // Rotates older generations, renames into place, fsyncs the directory.
    if let Err(e) = generations::commit(dir, &cap.tmp_name, &cfg.name) {
        dir.unlink_own(&cap.tmp_name);
        return Err(e);
    }
    log!(DEBUG, "image {} written", String::from_utf8_lossy(&cap.final_path));
    Ok(cap.final_path.clone())
}

/// Remove the temporary file of a failed checkpoint; the previous image stays.
fn discard(dir: &Dir, cap: &Capture) {
    dir.unlink_own(&cap.tmp_name);
}

fn write_error(e: ckpt_image::ImageError, path: &[u8]) -> String {
    format!("cannot write {}: {e}", String::from_utf8_lossy(path))
}

pub fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn hash_mem(start: u64, len: u64) -> u64 {
    let Ok(mem) = sys::open(&sys::cpath(&[b"/proc/self/mem"]), libc::O_RDONLY, 0) else { return 0 };
    let mut v = vec![0u8; len as usize];
    let got = sys::pread(mem, &mut v, start).unwrap_or(0);
    sys::close(mem);
    ckpt_image::checksum(&v[..got])
}

fn meta(name: &[u8], gen: u64, vdso_hash: u64) -> Meta {
    // SAFETY: an all-zero utsname is a valid out-parameter.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    let _ = sys::syscall!(libc::SYS_uname, &mut u as *mut libc::utsname);
    let field = |f: &[libc::c_char]| -> String {
        let b: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    let cmdline = sys::read_file(&sys::cpath(&[b"/proc/self/cmdline"]))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect();
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts as *mut libc::timespec);
    Meta {
        arch: field(&u.machine),
        kernel: field(&u.release),
        hostname: field(&u.nodename),
        time: ts.tv_sec as u64,
        program: String::from_utf8_lossy(name).into_owned(),
        cmdline,
        pid: sys::getpid(),
        generation: gen,
        vdso_hash,
        glibc: glibc_version(),
        chain: 1,
        origin: origin(),
    }
}

/// Who takes this image, of what (see ckpt_image::Origin).
fn origin() -> ckpt_image::Origin {
    let mut boot_id = sys::read_file(&sys::cpath(&[b"/proc/sys/kernel/random/boot_id"])).unwrap_or_default();
    while boot_id.last() == Some(&b'\n') {
        boot_id.pop();
    }
    let (program, program_id) = config().map(|c| (c.program.clone(), c.program_id)).unwrap_or_default();
    ckpt_image::Origin { uid: sys::geteuid(), program, program_id, boot_id }
}

/// glibc's version string (a pointer to a constant: safe while other threads are stopped).
fn glibc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy().into_owned()
}
