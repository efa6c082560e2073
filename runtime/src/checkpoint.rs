//! One checkpoint: take the gate, stop the threads, collect regions/fds/process state, make a
//! copy-on-write snapshot (snapshot.rs) that copies the shared memory, resume the threads; the
//! snapshot writes the image under a temporary name, fsyncs it, renames it into place and prints
//! its line (also when the program has ended meanwhile). Without a snapshot, the threads stay
//! stopped while the image is written. A program that exits waits for a checkpoint in flight.

use crate::log::{log, ALWAYS, DEBUG, ERROR, INFO};
use crate::maps::{self, MapEntry};
use crate::{alloc, config, fdtable, freeze, gate, generations, incremental, leftout, memwrite, pagehash, procstate, progress, snapshot, sys, threads, transient, ThreadInfo, CKPT_THREAD};
use crate::imgdir::{self, Dir};
use ckpt_image::{generation_file_name, Entry, Index, Meta, Region, ThreadState, Writer};
use ckpt_kinds::deleted;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Checkpoints taken by this program, across restarts (the counter is part of the image).
pub static GENERATION: AtomicU64 = AtomicU64::new(0);

/// What a checkpoint produced (for callers that report it; the loop only logs).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub raw: u64,
    pub stored: u64,
    pub paused_ms: u64,
    /// The image's header index_hash.
    pub hash: u64,
}

/// 1 while a checkpoint is being taken (a futex word: exit waits for it, see `wait_in_flight`).
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
/// Set once the program has started to exit: no new checkpoint starts.
static EXITING: AtomicBool = AtomicBool::new(false);

/// A checkpoint of one process of a tree (tree.rs): the coordinator's barriers, and where the
/// image goes (the set's temporary directory, under the process's own name).
pub trait Phases {
    /// Every thread is stopped: wait until every process of the tree is (Err: resume, no image).
    fn stopped(&self) -> Result<(), String>;
    /// Captured and snapshot made: wait until every process is, before the threads resume (or,
    /// in a stop checkpoint, stay stopped: `crate::tree::held`).
    fn captured(&self);
}

pub struct Part<'a> {
    pub dir: Dir,
    pub name: Vec<u8>,
    pub phases: &'a dyn Phases,
}

/// Take a checkpoint now. Errors are logged here (their text lives in the scratch arena).
pub fn take() -> Option<Outcome> {
    take_in(None)
}

/// The program exits after the checkpoint being taken (the stop signal, `ckpt-ctl stop`): its
/// threads stay stopped after the cut, or a line it writes then would be written again by the
/// restart. `HELD`: they are held now (a failed attempt lets them go on: `take_with`).
static HOLD: AtomicBool = AtomicBool::new(false);
static HELD: AtomicBool = AtomicBool::new(false);

/// Take a checkpoint after which the program exits: when it is written, the threads stay
/// stopped (the caller exits); when it fails, they go on.
pub fn take_and_hold() -> Option<Outcome> {
    HOLD.store(true, Ordering::Release);
    let out = take_in(None);
    HOLD.store(false, Ordering::Release);
    out
}

/// Take this process's part of a checkpoint of its tree: an increment over its image in the
/// previous set when that is in `part.dir` (as `PID.ckpt.N`), else a full image, written into
/// `part.dir` and committed there; the coordinator reports the set.
pub fn take_part(part: Part) -> Option<Outcome> {
    take_in(Some(part))
}

fn take_in(part: Option<Part>) -> Option<Outcome> {
    let member = part.is_some();
    if EXITING.load(Ordering::Acquire) {
        log!(INFO, "no checkpoint: the program is exiting");
        return None;
    }
    let t0 = now_ns();
    crate::triggers::checkpoint_begins();
    IN_FLIGHT.store(1, Ordering::Release);
    gate::lock_exclusive();
    // /proc/thread-self/mem and pagemap belong to root in a process that is not dumpable (any set*id
    // call that changed its ids made it so): dumpable while we read ourselves.
    let dumpable = procstate::make_dumpable();
    alloc::scratch_begin();
    let gen = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    progress::begin(gen, t0);
    // The directory is opened (and checked) for this checkpoint; it is closed when `dir` goes.
    let result = match part {
        // An increment over this process's image in the newest set, which the coordinator
        // linked into the new one (ckpt_ns setchain) when there is one.
        Some(p) => match take_with(&p.dir, &p.name, gen, t0, snapshot::enabled(), incremental::next_parent().filter(|(h, _)| generations::has_image(&p.dir, &p.name, *h)), Some(p.phases)) {
            // A second stop would not be the tree's cut: the set fails instead.
            Err(Retry::Sync(why)) => Err(Retry::Fail(format!("the image cannot be written from a snapshot ({why})"))),
            r => r,
        },
        None => match config().ok_or_else(|| "runtime not configured".to_string()).and_then(|cfg| Ok((cfg, Dir::open(&cfg.dir, cfg.allow_shared)?))) {
        Err(e) => Err(Retry::Fail(e)),
        Ok((cfg, dir)) => {
            // Temporary images a killed checkpoint of ours left behind (before this one starts,
            // so that they never look like part of it, and free their space first).
            dir.clean_leftovers(&generation_file_name(&cfg.name, 0), START_SEC.load(Ordering::Relaxed));
            // An increment needs its parent on disk (the user may have removed it).
            let parent = incremental::next_parent().filter(|(h, _)| generations::has_image(&dir, &cfg.name, *h));
            // A step's checkpoint drains its connections while the threads are stopped (take_attempt):
            // not from a background snapshot.
            // A background snapshot lets the program run on after the cut: not before an exit.
            let mut result = if crate::bgtake::possible() && !crate::step::in_checkpoint() && !HOLD.load(Ordering::Acquire) {
                settle(crate::bgtake::take(&dir, &cfg.name, gen, t0, parent))
            } else {
                Err(Retry::Sync(String::new()))
            };
            if let Err(Retry::Sync(why)) = &result {
                if !why.is_empty() {
                    log!(INFO, "checkpoint {gen} taken with a forked snapshot: {why}");
                }
                result = take_with(&dir, &cfg.name, gen, t0, snapshot::enabled(), parent, None);
            }
            // The other tasks of a step have run on: a second stop cannot drain again.
            if let (Err(Retry::Sync(why)), true) = (&result, crate::step::in_checkpoint()) {
                result = Err(Retry::Fail(format!("the image could not be written from a snapshot ({why})")));
            }
            if let Err(Retry::Sync(why)) = &result {
                log!(INFO, "checkpoint {gen} written without a snapshot: {why}");
                result = take_with(&dir, &cfg.name, gen, t0, false, parent, None);
            }
            result
        }
        },
    };
    let out = match result {
        Ok((mut w, paused)) => {
            let paused_ms = paused / 1_000_000;
            // The page hashes of this image are the table of the next increment (a process of a
            // tree: over its image in this set, if the set is committed; if not, the next set
            // has no image of that hash and its image is full).
            if let Some(work) = w.hashes.take() {
                work.commit();
            }
            incremental::committed(w.hash, w.increment, w.stored);
            if !member {
                generations::remember(&w.path, w.stored);
            }
            Some(Outcome { raw: w.raw, stored: w.stored, paused_ms, hash: w.hash })
        }
        Err(e) => {
            GENERATION.fetch_sub(1, Ordering::AcqRel);
            incremental::reset();
            if let Retry::Sync(e) | Retry::Fail(e) = e {
                log!(ERROR, "checkpoint failed, the program continues: {e}");
            }
            None
        }
    };
    log!(DEBUG, "scratch memory: {} KiB", alloc::scratch_used() >> 10);
    progress::end();
    alloc::scratch_end();
    procstate::restore_dumpable(dumpable);
    gate::unlock_exclusive();
    IN_FLIGHT.store(0, Ordering::Release);
    sys::futex_wake(&IN_FLIGHT);
    crate::triggers::checkpoint_done();
    out
}

/// The program is exiting (exit(), _exit(), a return from main): let a checkpoint that is being
/// taken finish first, so that its image is complete (and reported) when the process is gone,
/// and start no other. Not in a child the program forked or vforked, nor on the checkpoint
/// thread itself.
pub fn wait_in_flight() {
    if !crate::is_active() || sys::getpid() != crate::vids::real_pid() || sys::gettid() == CKPT_THREAD.tid.load(Ordering::Acquire) {
        return;
    }
    EXITING.store(true, Ordering::Release);
    loop {
        let v = IN_FLIGHT.load(Ordering::Acquire);
        if v == 0 {
            return;
        }
        // Interrupted by the stop signal when a checkpoint stops this thread: wait again.
        sys::futex_wait(&IN_FLIGHT, v, None);
    }
}

/// Whether the program has started to exit (a checkpoint asked now is not taken).
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// After a restart: the image was taken inside `take`, whose state means nothing here.
pub fn after_restart() {
    IN_FLIGHT.store(0, Ordering::Release);
    EXITING.store(false, Ordering::Release);
    // A stop's hold was the old process's: the restarted program goes on after its checkpoints.
    HOLD.store(false, Ordering::Release);
    HELD.store(false, Ordering::Release);
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

pub(crate) enum Retry {
    /// The snapshot could not hold the image: take it again with the threads stopped throughout.
    Sync(String),
    Fail(String),
    /// Failed, and the image writer said so on stderr.
    Reported,
}

/// What a checkpoint wrote.
pub(crate) struct Written {
    pub(crate) raw: u64,
    pub(crate) stored: u64,
    /// The header's index_hash (what an increment over this image names as its parent).
    pub(crate) hash: u64,
    pub(crate) increment: bool,
    pub(crate) path: Vec<u8>,
    /// The page hashes the writer recorded (pagehash.rs), to become the current table.
    pub(crate) hashes: Option<pagehash::Work>,
}

/// What the image writer reports: memory bytes, file bytes, header hash.
pub(crate) type WriteResult = Result<(u64, u64, u64), snapshot::Failure>;

/// Stop the threads, capture, and write the image: from a snapshot child while the program
/// runs on (`fork`), or with the program stopped; an increment over `parent` (hash, chain
/// length) when given. `t0`: when the checkpoint was asked for. Returns what was written and
/// the pause in ns.
fn take_with(dir: &Dir, name: &[u8], gen: u64, t0: u64, fork: bool, parent: Option<(u64, u32)>, phases: Option<&dyn Phases>) -> Result<(Written, u64), Retry> {
    let r = settle(take_attempt(dir, name, gen, t0, fork, parent, phases));
    // Held for an exit that will not come (or for the next attempt, which stops them again).
    if r.is_err() && HELD.swap(false, Ordering::AcqRel) {
        threads::resume_all();
    }
    r
}

/// An attempt's result, its page hashes kept with what was written or dropped with a failure.
fn settle(r: Attempt) -> Result<(Written, u64), Retry> {
    r.map(|(w, paused, hashes)| (Written { hashes, ..w }, paused)).map_err(|(e, hashes)| {
        if let Some(h) = hashes {
            h.discard();
        }
        e
    })
}

/// What take_attempt hands back: the page hashes recorded, whether the image was written or not.
pub(crate) type Attempt = Result<(Written, u64, Option<pagehash::Work>), (Retry, Option<pagehash::Work>)>;

fn take_attempt(dir: &Dir, name: &[u8], gen: u64, t0: u64, fork: bool, parent: Option<(u64, u32)>, phases: Option<&dyn Phases>) -> Attempt {
    // What the stopped part allocates must be there before the stop: running out of address
    // space fails the checkpoint here, not with the program stopped.
    let need = alloc::stopped_reserve(if fork { STOPPED_FORK } else { STOPPED_SYNC });
    let used0 = alloc::scratch_used();
    if !alloc::scratch_reserve(need) {
        return Err((Retry::Fail(format!("cannot map {} MiB for the checkpoint (address-space limit, ulimit -v?)", need.div_ceil(1 << 20))), None));
    }
    // The pause starts here.
    let t_stop = now_ns();
    let slots = threads::stop_all(sys::gettid()).map_err(|e| (Retry::Fail(e), None))?;
    let resumed = || {
        // A step or a tree that stops: the program must not run on while the other tasks or
        // processes finish (it would see them go, or write what a restart writes again); it ends
        // with its checkpoint (a tree's failed one lets it go on: tree.rs).
        if HOLD.load(Ordering::Acquire) {
            HELD.store(true, Ordering::Release);
        } else if !crate::step::keep_stopped() && !crate::tree::held() {
            // Bytes in flight between the tasks of a step go back before the program runs.
            crate::step::refill();
            threads::resume_all();
        }
        alloc::note_stopped_use(alloc::scratch_used() - used0);
    };
    if let Some(Err(e)) = phases.map(|p| p.stopped()) {
        resumed();
        return Err((Retry::Fail(e), None));
    }
    let t_stopped = now_ns();
    if let Err(e) = crate::step::stopped() {
        resumed();
        return Err((Retry::Fail(format!("checkpoint of the step abandoned: {e}")), None));
    }
    let mut cap = match capture(&slots, gen, dir, name, phases.is_some()) {
        Ok(mut c) => {
            crate::step::annotate(&mut c.index);
            c
        }
        Err(e) => {
            resumed();
            return Err((Retry::Fail(e), None));
        }
    };
    track(&mut cap, parent);
    let written = |(raw, stored, hash): (u64, u64, u64), cap: &mut Capture| {
        (Written { raw, stored, hash, increment: cap.increment, path: cap.final_path.clone(), hashes: None }, cap.hashes.take())
    };
    // A snapshot reads deleted files while the program runs on: watch them for writes now.
    let owners: Vec<i32> = deleted::data_owners(&cap.index.fds, cap.index.meta.pid).iter().map(|&i| cap.index.fds[i].fd).collect();
    // Deleted files the program maps shared are copied before it runs on, like shared memory;
    // in a tree all of them: its other processes run on after the cut and may write them too
    // (through fds of their own), and a tree's checkpoint cannot stop again to write them.
    let sizes: Vec<(i32, u64, u64)> = deleted::data_owners(&cap.index.fds, cap.index.meta.pid)
        .iter()
        .filter_map(|&i| match &cap.index.fds[i].kind {
            ckpt_image::FdKind::Deleted(d) => Some((cap.index.fds[i].fd, d.ino, d.size)),
            _ => None,
        })
        .collect();
    // Files only in flight too: our fds of them are closed before the program runs on.
    let mut files = if phases.is_some() { sizes.iter().map(|&(fd, _, size)| (fd, size)).collect() } else { freeze::mapped_shared(&cap.maps, &sizes) };
    let flying: Vec<(i32, u64)> = sizes.iter().filter(|&&(fd, ..)| fd < 0 && !files.iter().any(|f: &(i32, u64)| f.0 == fd)).map(|&(fd, _, size)| (fd, size)).collect();
    files.extend(flying);
    // The others are read later: watched.
    let watched: Vec<i32> = owners.iter().copied().filter(|&fd| !files.iter().any(|f| f.0 == fd)).collect();
    let fork = fork
        && match deleted::Guard::watch(&watched) {
            Ok(g) => {
                cap.guard = g;
                true
            }
            Err(e) => {
                log!(INFO, "checkpoint {gen} written without a snapshot: cannot watch the deleted files it stores (errno {e})");
                false
            }
        };
    if fork {
        // The child writes the image, commits it and prints its line, even if the program ends.
        let body = |ctx: &snapshot::Ctx| {
            let r = write_image(dir, &cap, &ctx.frozen, &ctx.frozen_files, crate::tree::writer_threads(), ctx.progress(), None).and_then(|w| commit(dir, &cap).map(|_| w).map_err(snapshot::Failure::Failed));
            let gone = ctx.program_gone();
            match &r {
                Ok(_) if cap.member => {}
                Ok((raw, stored, _)) => {
                    let paused = ctx.paused_ns().unwrap_or_else(|| cap.taken_at - t_stop);
                    announce(&cap, *raw, *stored, now_ns() - t0, paused);
                }
                // The program's checkpoint thread takes it again with the threads stopped.
                Err(snapshot::Failure::NeedSync(_)) if !gone => {}
                Err(snapshot::Failure::NeedSync(e) | snapshot::Failure::Failed(e)) if gone => log!(ERROR, "checkpoint {gen} failed (the program has ended): {e}"),
                Err(snapshot::Failure::NeedSync(e) | snapshot::Failure::Failed(e)) => log!(ERROR, "checkpoint failed, the program continues: {e}"),
            }
            if r.is_err() {
                discard(dir, &cap);
            }
            r
        };
        // The child reads the deleted files through the program's fds, and their watch.
        // (A file only in flight through our fd of it: `flightdata`.)
        let mut keep: Vec<i32> = owners.iter().map(|&fd| crate::flightdata::reader(fd)).collect();
        keep.push(dir.fd());
        keep.extend(cap.guard.as_ref().map(deleted::Guard::fd));
        match snapshot::spawn(body, &cap.maps, &keep, &files) {
            Ok(mut child) => {
                if let Some(p) = phases {
                    crate::step::refill_in_tree();
                    p.captured();
                }
                // (The snapshot copied the files only in flight; in a tree they stay ours until
                // every process is captured: `flightdata`.)
                crate::flightdata::close_all();
                resumed();
                let paused = now_ns() - t_stop;
                child.resumed(paused);
                let t_cap = cap.taken_at;
                log!(DEBUG, "pause: stop {} us, capture {} us, snapshot {} us", (t_stopped - t_stop) / 1000, (t_cap - t_stopped) / 1000, (paused - (t_cap - t_stop)) / 1000);
                let outcome = child.wait();
                if let Some(g) = cap.guard.take() {
                    g.close();
                }
                let hashes = cap.hashes.take();
                return match outcome {
                    snapshot::Outcome::Written { raw, stored, hash } => {
                        cap.hashes = hashes;
                        let (w, h) = written((raw, stored, hash), &mut cap);
                        Ok((w, paused, h))
                    }
                    snapshot::Outcome::NeedSync(why) => {
                        discard(dir, &cap);
                        Err((Retry::Sync(why), hashes))
                    }
                    snapshot::Outcome::Failed => Err((Retry::Reported, hashes)),
                    snapshot::Outcome::Died(e) => {
                        discard(dir, &cap);
                        Err((Retry::Fail(e), hashes))
                    }
                };
            }
            Err(e) => {
                log!(INFO, "checkpoint {gen} written without a snapshot: {e}");
                // The threads stay stopped: the program cannot change what is written.
                if let Some(g) = cap.guard.take() {
                    g.close();
                }
            }
        }
    }
    let r = write_image(dir, &cap, &[], &[], 1, progress::local(), None).map_err(|e| match e {
        snapshot::Failure::Failed(m) | snapshot::Failure::NeedSync(m) => m,
    });
    if let Some(p) = phases {
        crate::step::refill_in_tree();
        p.captured();
    }
    crate::flightdata::close_all();
    resumed();
    let paused = now_ns() - t_stop;
    match r {
        Ok(w) => {
            if let Err(e) = commit(dir, &cap) {
                return Err((Retry::Fail(e), cap.hashes.take()));
            }
            if !cap.member {
                announce(&cap, w.0, w.1, now_ns() - t0, paused);
            }
            let (w, h) = written(w, &mut cap);
            Ok((w, paused, h))
        }
        Err(e) => {
            discard(dir, &cap);
            Err((Retry::Fail(e), cap.hashes.take()))
        }
    }
}

/// The identity of every region of shared memory restored as such (MAP_SHARED|MAP_ANONYMOUS,
/// memfd, SysV, deleted files such as POSIX semaphores and shm objects): the object's device and
/// inode, and the region's offset in it. (A System V segment's inode is its id, 0 included.)
fn shared_mem(maps: &[(MapEntry, bool)]) -> Vec<ckpt_image::SharedMem> {
    maps.iter()
        .filter(|(m, scratch)| !scratch && m.shared && (m.inode != 0 || ckpt_kinds::sysv::is_segment_name(&m.name)) && maps::backing_of(m) == ckpt_image::Backing::SharedAnon)
        .map(|(m, _)| ckpt_image::SharedMem { start: m.start, dev: m.dev, ino: m.inode, offset: m.offset })
        .collect()
}

/// The System V IPC objects of the program's IPC namespace: in ckpt's namespace only (without
/// it, the objects are the host's, of every program).
fn sysv(maps: &[(MapEntry, bool)]) -> Result<ckpt_image::Sysv, String> {
    if !crate::ids::in_namespace() {
        return Ok(ckpt_image::Sysv::default());
    }
    let covered = |id: i32, size: u64| {
        let ranges = maps
            .iter()
            .filter(|(m, _)| m.shared && ckpt_kinds::sysv::is_segment_name(&m.name) && m.inode == id as u64)
            .map(|(m, _)| (m.offset, m.end - m.start))
            .collect();
        ckpt_kinds::sysv::covers(ranges, size)
    };
    ckpt_kinds::sysv::capture(&covered)
}

/// The checkpoint's line on stderr, after the lines about what it leaves out.
pub(crate) fn announce(cap: &Capture, raw: u64, stored: u64, total_ns: u64, paused_ns: u64) {
    let gen = cap.index.meta.generation;
    let lo = &cap.index.left_out;
    if let Some(list) = lo.children_list() {
        log!(ALWAYS, "checkpoint {gen}: child processes are not in the image and will be gone after a restart (wait() fails with ECHILD): {list}");
    }
    if let Some(list) = lo.pipes_list() {
        let what = if lo.outside_pipes.len() == 1 { "reads a pipe fed by another process" } else { "read pipes fed by other processes" };
        log!(ALWAYS, "checkpoint {gen}: input from outside the program cannot be replayed after a restart: {list} {what}");
    }
    generations::report(gen, &cap.final_path, raw, stored, total_ns / 1_000_000, paused_ns / 1_000_000, cap.increment);
}

/// With increments on: which regions are tracked, the area for this image's page hashes, and,
/// for an increment over `parent` (hash, chain length), the table it compares with.
pub(crate) fn track(cap: &mut Capture, parent: Option<(u64, u32)>) {
    if !incremental::enabled() {
        return;
    }
    let here = &cap as *const _ as u64;
    cap.eligible = cap.maps.iter().map(|(m, scratch)| pagehash::eligible(m, *scratch, m.start <= here && here < m.end)).collect();
    let ranges: Vec<(u64, u64)> = cap.maps.iter().zip(&cap.eligible).filter(|(_, &e)| e).map(|((m, _), _)| (m.start, m.end)).collect();
    match pagehash::Work::new(ranges, pagehash::anon_pages()) {
        Ok(w) => cap.hashes = Some(w),
        Err(e) => {
            log!(DEBUG, "no room for page hashes (errno {e}): the next image is a full one");
            return;
        }
    }
    if let (Some((hash, depth)), Some(old)) = (parent, pagehash::baseline()) {
        cap.old = Some(old);
        cap.increment = true;
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
pub(crate) const STOPPED_FORK: usize = 4 << 20;
const STOPPED_SYNC: usize = STOPPED_FORK + memwrite::PER_THREAD;

/// Split map entries at the scratch arena's segments, the page hash table and the checkpoint's
/// own mappings (transient.rs); those parts are stored as empty memory. Notes which of them the
/// image holds (what a restart from it finds mapped).
pub(crate) fn split_scratch(maps: Vec<MapEntry>) -> Vec<(MapEntry, bool)> {
    let scratch = alloc::scratch_ranges();
    alloc::note_in_image(&scratch);
    transient::note_in_image(&mut maps.iter().map(|m| (m.start, m.end)));
    // The page hash table and the checkpoint's own mappings are the runtime's too.
    let ranges: Vec<(u64, u64)> = scratch.as_slice().iter().copied().chain(pagehash::ranges()).chain(transient::ranges()).collect();
    let mut out = Vec::with_capacity(maps.len() + 2 * ranges.len());
    for m in maps {
        let mut at = m.start;
        let mut inside: Vec<(u64, u64)> = ranges.iter().filter(|&&(s, e)| s < m.end && e > m.start).map(|&(s, e)| (s.max(m.start), e.min(m.end))).collect();
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
pub(crate) struct Capture {
    pub(crate) maps: Vec<(MapEntry, bool)>,
    /// The index without regions (filled in by write_image).
    pub(crate) index: Index,
    pub(crate) final_path: Vec<u8>,
    /// The image's name (NAME: it becomes NAME.ckpt), and whether it is one of a tree's set.
    pub(crate) name: Vec<u8>,
    pub(crate) member: bool,
    /// The temporary image's name in the image directory (unpredictable: see imgdir).
    pub(crate) tmp_name: Vec<u8>,
    /// When the capture was complete (ns, CLOCK_MONOTONIC).
    pub(crate) taken_at: u64,
    /// Regions whose pages are hashed (pagehash.rs), where this image's hashes go, and for an
    /// increment over the image whose header hash is `parent`, the table it compares with.
    pub(crate) eligible: Vec<bool>,
    pub(crate) hashes: Option<pagehash::Work>,
    pub(crate) old: Option<pagehash::Table>,
    pub(crate) increment: bool,
    pub(crate) parent: u64,
    /// Set when a snapshot writes the image and deleted files are stored: whether one changed.
    pub(crate) guard: Option<deleted::Guard>,
}

pub(crate) fn capture(slots: &[threads::Slot], gen: u64, dir: &Dir, name: &[u8], member: bool) -> Result<Capture, String> {
    // The threads are stopped: the state read from here on is the one a request sent by now asked for.
    crate::triggers::cut_made(now_ns());
    let cfg = config().ok_or("runtime not configured")?;
    if let Some(why) = crate::nshooks::refusal(&slots.iter().map(|s| s.tid).collect::<Vec<_>>()) {
        return Err(why);
    }
    // TCP connections to other processes of the tree: what is in flight between them is moved
    // into the image (and put back); then the fds, before we open anything else of our own.
    let listing = fdtable::list();
    let drained = crate::treedrain::drain(gen, &listing.sockets());
    let mut fds = fdtable::read_fds(listing);
    crate::treedrain::apply(&mut fds, drained);
    if !member {
        // A program alone: no manifest says which of its fds 0 to 2 are its own.
        crate::ownstdio::mark(&mut fds);
    }
    let left_out = leftout::find(&fds);
    crate::kstate::save(sys::gettid())?;
    if let Some(why) = crate::sigqueue::refusal() {
        return Err(why);
    }
    let process = procstate::read_process(slots.first().map_or(sys::gettid(), |s| s.tid));
    if let Some(why) = chroot_refusal(&process, &fds) {
        return Err(why);
    }
    // Each thread's own ids (raw setresuid in one thread: threadcreds.rs).
    let creds = slots.iter().map(|s| crate::threadcreds::capture(s.tid, &process.creds)).collect::<Result<Vec<_>, _>>()?;
    crate::threadcreds::note_own(&process.creds);
    // Locked memory (mlock) is not locked in a forked snapshot, which reads the other flags of
    // each region itself: read them here where some is (smaps costs ~10 ms per GiB), and where
    // the program asked for memory that fork does not copy (forkadvice.rs).
    let maps = split_scratch(if procstate::locks_memory() || crate::forkadvice::asked() { maps::read_smaps()? } else { maps::read_maps()? });
    check_rings(&mut fds, &maps);
    let vdso_hash = maps.iter().find(|(m, _)| m.name == b"[vdso]").map_or(0, |(m, _)| hash_mem(m.start, m.end - m.start));
    let final_path = if member { dir.show(&generation_file_name(name, 0)).into_bytes() } else { generations::newest_path(&cfg.dir, name) };
    let tmp_name = imgdir::tmp_name(&generation_file_name(name, 0));
    let sysv = sysv(&maps)?;
    let ct: &ThreadInfo = &CKPT_THREAD;
    let index = Index {
        meta: meta(&cfg.name, gen, vdso_hash, dir.taker()),
        regions: Vec::new(),
        threads: slots
            .iter()
            .zip(creds)
            .map(|(s, creds)| ThreadState {
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
                attrs: ckpt_image::ThreadAttrs { creds, ..s.attrs },
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
        left_out,
        ids: crate::ids::image_ids(ct.tid.load(Ordering::Relaxed)),
        shared: shared_mem(&maps),
        step: None,
        sysv,
        watched: if crate::tree::is_member() { crate::fdhooks::watched_paths() } else { Vec::new() },
    };
    Ok(Capture { maps, index, final_path, name: name.to_vec(), member, tmp_name, taken_at: now_ns(), eligible: Vec::new(), hashes: None, old: None, increment: false, parent: 0, guard: None })
}

/// Packet sockets' mapped rings come back only untouched (ckpt_kinds::sockets::ring): each
/// mapping of one is read here (through /proc/thread-self/mem: it may be unreadable to the
/// program); one that cannot be read counts as touched.
fn check_rings(fds: &mut [ckpt_image::FdState], maps: &[(MapEntry, bool)]) {
    if !maps.iter().any(|(m, _)| m.name.starts_with(b"socket:[")) {
        return;
    }
    let mem = sys::open(&sys::cpath(&[b"/proc/thread-self/mem"]), libc::O_RDONLY, 0).unwrap_or(-1);
    let read = |at: u64, buf: &mut [u8]| mem >= 0 && sys::syscall!(libc::SYS_pread64, mem, buf.as_mut_ptr(), buf.len(), at).is_ok_and(|n| n as usize == buf.len());
    ckpt_kinds::sockets::ring::check(fds, maps.iter().map(|(m, _)| (m.start, m.end, &m.name[..])), &read);
    if mem >= 0 {
        sys::close(mem);
    }
}

/// A chrooted program's UNIX socket bound to a path: the kernel keeps the name as the program
/// gave it (inside its root once it has chrooted), and a restart, which binds names from the
/// real root, cannot tell where it was (not done): refused.
fn chroot_refusal(p: &ckpt_image::ProcessState, fds: &[ckpt_image::FdState]) -> Option<String> {
    if p.root.is_empty() || p.root == b"/" {
        return None;
    }
    fds.iter().find_map(|f| match &f.kind {
        // sockaddr_un: the family, then the path (a NUL first: an abstract name).
        ckpt_image::FdKind::Socket(s) if s.family == libc::AF_UNIX && s.name.get(2).is_some_and(|&b| b != 0) => Some(format!(
            "fd {} is a UNIX socket bound to {} and the program's root directory is {} (chroot): a restart cannot bind that name again where it was, so no checkpoint is taken",
            f.fd,
            String::from_utf8_lossy(s.name[2..].split(|&b| b == 0).next().unwrap_or_default()),
            String::from_utf8_lossy(&p.root)
        )),
        _ => None,
    })
}

/// Write the memory of `cap` and its index to the temporary file, durably, with `threads`
/// compression threads, reading the regions that `frozen` holds from their copies, counting the
/// bytes written in `progress`. Runs in the snapshot child, with the program's threads stopped,
/// or in a background snapshot's writer (`bg`).
pub(crate) fn write_image(dir: &Dir, cap: &Capture, frozen: &[Option<freeze::Frozen>], frozen_files: &[freeze::FrozenFile], threads: usize, progress: &progress::Progress, bg: Option<&memwrite::Bg>) -> WriteResult {
    let pagemap = sys::open(&sys::cpath(&[b"/proc/thread-self/pagemap"]), libc::O_RDONLY, 0).map_err(|e| format!("cannot open /proc/thread-self/pagemap: errno {e}"))?;
    let mem = sys::open(&sys::cpath(&[b"/proc/thread-self/mem"]), libc::O_RDONLY, 0).map_err(|e| {
        sys::close(pagemap);
        format!("cannot open /proc/thread-self/mem: errno {e}")
    })?;
    let tmp_path = dir.show(&cap.tmp_name).into_bytes();
    // The memory map is captured: the writer's large buffers may be mappings of their own.
    alloc::scratch_direct(true);
    let r = (|| -> WriteResult {
        // O_DIRECT where the file system has it (see Writer): steady and fast for large images.
        // Not for increments: their chunks are small, and O_DIRECT pads each to 4 KiB.
        // A new file of ours (O_EXCL|O_NOFOLLOW, 0600): nothing planted at the name is used.
        let direct = if cap.increment { 0 } else { libc::O_DIRECT };
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
        let hashing = cap.hashes.as_ref().map(|work| memwrite::Hashing { old: cap.old, work });
        let (backings, mut plan) = memwrite::plan(pagemap, &cap.maps, &flags, &cap.eligible, hashing.as_ref(), frozen, bg);
        let nmem = plan.jobs.len();
        let files = memwrite::plan_files(&cap.index.fds, cap.index.meta.pid, &mut plan, frozen_files)?;
        let t1 = now_ns();
        progress.set_total(plan.bytes());
        let chunks = memwrite::write_all(&w, mem, &plan, hashing.as_ref(), bg.map(|b| b.engine), threads, progress);
        if let Some(b) = bg {
            // Every window is stored: nothing stays write-protected, the program runs unhindered.
            b.engine.finish();
        }
        files.iter().for_each(|&fd| sys::close(fd));
        let chunks = chunks.map_err(|e| format!("cannot write {}: {e}", String::from_utf8_lossy(&tmp_path)))?;
        if cap.guard.as_ref().is_some_and(deleted::Guard::changed) {
            return Err(snapshot::Failure::NeedSync("the program wrote a deleted file that the image stores".into()));
        }
        let t2 = now_ns();
        let mut regions: Vec<Region> = Vec::with_capacity(cap.maps.len());
        let mut next = 0;
        for (i, ((m, scratch), described)) in cap.maps.iter().zip(backings).enumerate() {
            let Some(memwrite::Described { backing, inherit, attrs }) = described else { continue };
            // The scratch arena is named for ckpt-inspect (it is stored empty either way).
            let name = if *scratch { ckpt_image::SCRATCH_NAME.to_vec() } else { m.name.clone() };
            let first = next;
            while next < nmem && plan.jobs[next].region == i {
                next += 1;
            }
            regions.push(Region { start: m.start, end: m.end, prot: m.prot, name, backing, chunks: chunks[first..next].concat(), inherit, attrs });
        }
        let mut index = cap.index.clone();
        index.regions = regions;
        memwrite::attach_files(&mut index.fds, &plan.jobs[nmem..], &chunks[nmem..]);
        let raw = w.raw_bytes();
        let (_file, header) = w.finish_increment(&index, cap.parent).map_err(|e| write_error(e, &tmp_path))?;
        let total = header.index_offset + header.index_len;
        let ms = |a: u64, b: u64| (b - a) / 1_000_000;
        log!(DEBUG, "image written with {threads} threads: pagemap {} ms, chunks {} ms, index+fsync {} ms, scratch {} KiB", ms(t0, t1), ms(t1, t2), ms(t2, now_ns()), alloc::scratch_used() >> 10);
        Ok((raw, total, header.index_hash))
    })();
    alloc::scratch_direct(false);
    sys::close(pagemap);
    sys::close(mem);
    r
}

/// zstd level for images: level 1 with a 4 MiB window and long-distance matching (see
/// docs/benchmarks.md for the measurements behind it).
const ZSTD_LEVEL: i32 = 1;

/// Move the finished temporary file into place and make the rename durable.
pub(crate) fn commit(dir: &Dir, cap: &Capture) -> Result<(), String> {
    // Rotates older generations, renames into place, fsyncs the directory. A process of a tree
    // names its image in the set's directory, whose older images the coordinator keeps.
    let r = if cap.member { commit_part(dir, cap) } else { generations::commit(dir, &cap.tmp_name, &cap.name) };
    if let Err(e) = r {
        dir.unlink_own(&cap.tmp_name);
        return Err(e);
    }
    log!(DEBUG, "image {} written", String::from_utf8_lossy(&cap.final_path));
    Ok(())
}

/// A tree's part: `PID.ckpt` in the set's temporary directory (nothing is there under that name;
/// the images it builds on are `PID.ckpt.N`, which the coordinator linked and prunes).
fn commit_part(dir: &Dir, cap: &Capture) -> Result<(), String> {
    let newest = generation_file_name(&cap.name, 0);
    dir.rename(&cap.tmp_name, &newest).map_err(|e| format!("cannot rename the new image onto {}: {}", dir.show(&newest), strerror(e)))?;
    dir.fsync().map_err(|e| format!("cannot sync the image directory: {}", strerror(e)))
}

/// Remove the temporary file of a failed checkpoint; the previous image stays.
pub(crate) fn discard(dir: &Dir, cap: &Capture) {
    dir.unlink_own(&cap.tmp_name);
}

fn write_error(e: ckpt_image::ImageError, path: &[u8]) -> String {
    format!("cannot write {}: {e}", String::from_utf8_lossy(path))
}

pub fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn hash_mem(start: u64, len: u64) -> u64 {
    let Ok(mem) = sys::open(&sys::cpath(&[b"/proc/thread-self/mem"]), libc::O_RDONLY, 0) else { return 0 };
    let mut v = vec![0u8; len as usize];
    let got = sys::pread(mem, &mut v, start).unwrap_or(0);
    sys::close(mem);
    ckpt_image::checksum(&v[..got])
}

fn meta(name: &[u8], gen: u64, vdso_hash: u64, taker: u32) -> Meta {
    // SAFETY: an all-zero utsname is a valid out-parameter.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    let _ = sys::syscall!(libc::SYS_uname, &mut u as *mut libc::utsname);
    let field = |f: &[libc::c_char]| -> String {
        let b: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    let cmdline = sys::read_file(&sys::cpath(&[b"/proc/thread-self/cmdline"]))
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
        origin: origin(taker),
        increments: incremental::enabled(),
    }
}

/// Who takes this image (`taker`: imgdir's `Dir::taker`), of what (see ckpt_image::Origin).
fn origin(taker: u32) -> ckpt_image::Origin {
    let mut boot_id = sys::read_file(&sys::cpath(&[b"/proc/sys/kernel/random/boot_id"])).unwrap_or_default();
    while boot_id.last() == Some(&b'\n') {
        boot_id.pop();
    }
    let (program, program_id) = config().map(|c| (c.program.clone(), c.program_id)).unwrap_or_default();
    ckpt_image::Origin { uid: taker, program, program_id, boot_id }
}

/// glibc's version string (a pointer to a constant: safe while other threads are stopped).
fn glibc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy().into_owned()
}
