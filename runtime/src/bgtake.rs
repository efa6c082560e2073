//! A checkpoint taken as a background snapshot (bgsnap.rs), step by step:
//!
//! 1. a short stop: every thread turns syscall user dispatch on for itself (sud.rs);
//! 2. the writer process (a CLONE_VM child, snapshot::spawn_bg) write-protects the tracked
//!    memory while the program runs (what the kernel writes by itself is left out: stacks,
//!    TLS blocks, alternate signal stacks, the runtime's own memory);
//! 3. the instant: the threads stop, the state is captured, the writer protects again what was
//!    written meanwhile and copies what protection cannot hold (shared memory, file mappings,
//!    the left-out ranges), and the threads go on;
//! 4. the writer stores the image while the program runs; every window it stores loses its
//!    protection; it commits the image and prints its line.
//!
//! The pause is the two stops, the capture, one PAGEMAP_SCAN of the tracked memory and the
//! copies of step 3: not the size of the memory. Where this cannot be done (no userfaultfd, no
//! syscall user dispatch, a thread stack too large to copy at the instant, memory that cannot be
//! write-protected) the checkpoint is taken with a forked snapshot instead (Retry::Sync).

use crate::checkpoint::{self, now_ns, Attempt, Capture, Retry, Written};
use crate::imgdir::Dir;
use crate::log::{log, DEBUG, ERROR, INFO};
use crate::maps::{self, MapEntry, PAGE};
use crate::snapshot::{self, Failure};
use crate::{alloc, bgsnap, freeze, memwrite, ownsegs, pagehash, sud, sys, threads, uffdwp, CKPT_THREAD};
use ckpt_kinds::deleted;
use std::cell::Cell;
use std::sync::atomic::Ordering;

/// Whether checkpoints may be background snapshots: the default; CKPT_BACKGROUND=0 (ckpt-run
/// --snapshot fork) turns them off (read once, at the program's start: a restarted program keeps
/// the choice, which is in its image).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn configure(env: Option<&[u8]>) {
    ENABLED.store(env != Some(b"0"), Ordering::Relaxed);
}

/// Whether a background snapshot can be taken here.
pub fn possible() -> bool {
    ENABLED.load(Ordering::Relaxed) && uffdwp::fd().is_some() && sud::available()
}

/// A thread stack larger than this is not copied at the instant: the checkpoint forks instead.
const STACK_LIMIT: u64 = 256 << 20;

/// Scratch memory the stopped parts and the writer process's stack need beyond a fork's.
const EXTRA: usize = 2 << 20;

/// Ranges write-protection must leave alone (they are copied at the instant instead): what the
/// kernel writes by itself, the stacks of `slots`' threads (signal frames), their TLS blocks
/// (rseq, the tid cleared at exit, the robust list head), their alternate signal stacks, the
/// checkpoint thread's stack and TLS; and the runtime's own writable memory, which the runtime
/// writes while the snapshot is taken (and the kernel, for its system calls). Sorted, merged.
/// Err: a stack too large to copy.
fn kernel_written(slots: &[threads::Slot], maps: &[(MapEntry, bool)]) -> Result<Vec<(u64, u64)>, String> {
    let mut v: Vec<(u64, u64)> = Vec::new();
    let vma = |a: u64| maps.iter().find(|(m, _)| m.start <= a && a < m.end).map(|(m, _)| (m.start, m.end));
    let pages = |a: u64, len: u64| (a & !(PAGE - 1), (a + len.max(1)).div_ceil(PAGE) * PAGE);
    let rseq = (threads::RSEQ_OFFSET.load(Ordering::Relaxed), u64::from(threads::RSEQ_SIZE.load(Ordering::Relaxed)));
    let tls = |v: &mut Vec<(u64, u64)>, fs: u64, tid: u64, robust: u64| {
        if fs != 0 {
            v.push(pages(fs, 4096));
            if rseq.1 != 0 {
                v.push(pages((fs as i64 + rseq.0) as u64, rseq.1));
            }
        }
        for a in [tid, robust].into_iter().filter(|&a| a != 0) {
            v.push(pages(a, 64));
        }
    };
    for s in slots {
        // The stack pointer recorded at the stop: after the first stop the threads run again
        // and their frames are gone (reading sp from them found another region, or none, now
        // and then; the stack was then write-protected, and the next signal frame the kernel
        // wrote there killed the thread with SIGSEGV).
        if let Some((a, b)) = vma(s.sp) {
            if b - a > STACK_LIMIT {
                return Err(format!("thread {} has a stack of {} MiB", s.tid, (b - a) >> 20));
            }
            v.push((a, b));
        }
        tls(&mut v, s.fs_base, s.tid_address, s.robust_head);
        if s.ss_flags & libc::SS_DISABLE == 0 && s.ss_sp != 0 {
            v.push(pages(s.ss_sp, s.ss_size));
        }
    }
    let here = &v as *const _ as u64;
    v.extend(vma(here));
    let ct = &CKPT_THREAD;
    tls(&mut v, ct.fs_base.load(Ordering::Relaxed), ct.tid_address.load(Ordering::Relaxed), ct.robust_head.load(Ordering::Relaxed));
    // The runtime's own variables: every writable segment of its library, whole (its .bss is
    // partly in the file mapping's last page and partly anonymous memory after it).
    let (own, n) = ownsegs::writable();
    v.extend_from_slice(&own[..n]);
    Ok(ckpt_image::pagetable::merge(&v))
}

/// The regions the writer write-protects: tracked memory (private anonymous, see
/// pagehash::eligible) except DMA buffers (MADV_DONTFORK: a device writes them behind the page
/// tables' back) and regions the kernel-written ranges cover entirely.
fn armable(maps: &[(MapEntry, bool)], excluded: &[(u64, u64)], dontfork: &[u64]) -> Vec<bool> {
    let here = &maps as *const _ as u64;
    maps.iter()
        .map(|(m, scratch)| {
            pagehash::eligible(m, *scratch, m.start <= here && here < m.end)
                && !dontfork.contains(&m.start)
                && !excluded.iter().any(|&(s, e)| s <= m.start && m.end <= e)
        })
        .collect()
}

/// What smaps says of the regions, read once syscall user dispatch is on: the starts of those
/// marked MADV_DONTFORK ("dc" in VmFlags), and the regions (sorted) whose pages may go and come
/// back without a write fault or a system call of the program, so that the arming cannot
/// tell whether they were written: pages given back with MADV_FREE ("LazyFree" above 0: the
/// kernel drops such a page, write-protection and all, when memory runs short, and a write
/// then makes a fresh one) and memory KSM may merge ("mg"). (A later MADV_FREE is a call.)
/// Unreadable: every region counts as such.
fn smaps_regions() -> (Vec<u64>, Vec<(u64, u64)>) {
    let Ok(text) = sys::read_file(&sys::cpath(&[b"/proc/thread-self/smaps"])) else { return (Vec::new(), vec![(0, u64::MAX)]) };
    let (mut dontfork, mut whole) = (Vec::new(), Vec::new());
    let mut cur = (0u64, 0u64);
    for line in text.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"VmFlags:") {
            let flags = || rest.split(|&b| b == b' ');
            if flags().any(|f| f == b"dc") {
                dontfork.push(cur.0);
            }
            if flags().any(|f| f == b"mg") {
                whole.push(cur);
            }
        } else if let Some(rest) = line.strip_prefix(b"LazyFree:") {
            if rest.iter().any(|b| (b'1'..=b'9').contains(b)) {
                whole.push(cur);
            }
        } else if let Some(m) = maps::parse_maps(line).first() {
            cur = (m.start, m.end);
        }
    }
    whole.dedup();
    (dontfork, whole)
}

/// Extra memory a background snapshot may take, in percent of the program's anonymous memory:
/// its buffer and the writer's own memory together (issue 15: at most 10%, measured as the
/// system's used memory; the writer's memory beyond its fixed buffers, the page hash table
/// and what the kernel adds come on top, about 2% at 1 and 4 GiB).
const EXTRA_PERCENT: u64 = 4;

/// The buffer for pages saved ahead of the writer: EXTRA_PERCENT of the program's anonymous
/// memory less the writer threads' fixed buffers, at least 16 MiB, at most 1 GiB. (It was 5% on
/// top of the writer's buffers: 8-9% of the program at 1 and 4 GiB in its own memory, 10-12%
/// of the system's.) A smaller buffer costs a program that rewrites its memory faster than the
/// image is written more waits for its windows, not the checkpoint's time.
fn budget() -> usize {
    let share = pagehash::anon_pages() * PAGE * EXTRA_PERCENT / 100;
    let fixed = (crate::tree::writer_threads() * memwrite::PER_THREAD) as u64;
    (share.saturating_sub(fixed) as usize).clamp(16 << 20, 1 << 30)
}

/// Address space a background snapshot wants free beyond its buffer under an address-space
/// limit: its writer works in the program's own address space, where a forked snapshot's has
/// one of its own.
const HEADROOM: u64 = 64 << 20;

/// Under an address-space limit (ulimit -v): why there is too little left for a background
/// snapshot (its buffer, its writer's stacks and working memory), if so. (Its writer died of a
/// failed allocation 48 MiB under the limit, where a forked snapshot fits.)
fn short_of_address_space(buffer: u64) -> Option<String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    let status = sys::read_file(&sys::cpath(&[b"/proc/thread-self/status"])).ok()?;
    let line = status.split(|&b| b == b'\n').find(|l| l.starts_with(b"VmSize:"))?;
    let kib: u64 = std::str::from_utf8(&line[7..]).ok()?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let left = lim.rlim_cur.saturating_sub(kib << 10);
    (left < buffer + HEADROOM).then(|| format!("{} MiB of address space left under its limit (ulimit -v)", left >> 20))
}

/// Take checkpoint `gen` as a background snapshot, an increment over `parent` if given.
pub fn take(dir: &Dir, name: &[u8], gen: u64, t0: u64, parent: Option<(u64, u32)>) -> Attempt {
    let fail = |e: String| Err((Retry::Fail(e), None));
    let Some(fd) = uffdwp::fd() else { return Err((Retry::Sync("no userfaultfd".into()), None)) };
    if crate::seccomp::installed() {
        // (A TSYNC filter that forbids prctl hung the background snapshot's first stop.)
        return Err((Retry::Sync("the program installed seccomp filters, which may forbid what syscall user dispatch needs".into()), None));
    }
    if crate::seccomp::any_strict() {
        return Err((Retry::Sync("a thread runs in seccomp strict mode, which cannot turn syscall user dispatch on".into()), None));
    }
    if let Some(why) = short_of_address_space(budget() as u64) {
        return Err((Retry::Sync(why), None));
    }
    let need = alloc::stopped_reserve(checkpoint::STOPPED_FORK) + EXTRA;
    let used0 = alloc::scratch_used();
    if !alloc::scratch_reserve(need) {
        return fail(format!("cannot map {} MiB for the checkpoint (address-space limit, ulimit -v?)", need.div_ceil(1 << 20)));
    }
    let mut stack = vec![0u8; 256 << 10];
    let engine = match bgsnap::Engine::new(fd, budget()) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };

    // 1. Syscall user dispatch on in every thread: a short stop.
    sud::begin();
    let t1 = now_ns();
    let slots = match threads::stop_all(sys::gettid()) {
        Ok(s) => s,
        Err(e) => {
            cleanup(&engine);
            return fail(e);
        }
    };
    // Published only now, every thread stopped: before its first stop, a thread that still
    // dispatched since the last snapshot (no call made since) had its calls made safe for an
    // arming not planned yet, each range noted ahead of it; past `bgarm::LIFTED` of them, a call
    // waited in the SIGSYS handler, every signal blocked, for the arming's end, which waits for
    // this stop: the checkpoint was refused (the thread "blocks every signal"). Before the stop
    // nothing is protected, and a call the stop interrupts is dispatched again after it
    // (sud::reroute, blocked.rs), as for a thread that did not dispatch.
    engine.publish();
    threads::resume_all();
    let pause1 = now_ns() - t1;
    let (dontfork, whole) = smaps_regions();
    let maps0 = match maps::read_maps() {
        Ok(m) => checkpoint::split_scratch(m),
        Err(e) => {
            cleanup(&engine);
            return fail(e);
        }
    };
    let excluded0 = match kernel_written(&slots, &maps0) {
        Ok(x) => x,
        Err(why) => {
            cleanup(&engine);
            return Err((Retry::Sync(why), None));
        }
    };
    let armed0: Vec<(u64, u64)> = maps0.iter().zip(armable(&maps0, &excluded0, &dontfork)).filter(|(_, a)| *a).map(|((m, _), _)| (m.start, m.end)).collect();
    engine.plan(&armed0, &excluded0, &whole);

    // Shared with the writer process: what the parent captures at the instant.
    let cap_cell: Cell<*mut Capture> = Cell::new(std::ptr::null_mut());
    let excluded_cell: Cell<*const Vec<(u64, u64)>> = Cell::new(std::ptr::null());
    let files_cell: Cell<*const Vec<(i32, u64)>> = Cell::new(std::ptr::null());
    let engine_ptr: *const bgsnap::Engine = &*engine;
    let t_stop_cell = Cell::new(0u64);

    // 2-4 in the writer process.
    let body = |ph: &snapshot::Phases| -> Result<(u64, u64, u64), Failure> {
        // SAFETY: the engine outlives the writer process (the parent waits for it).
        let engine = unsafe { &*engine_ptr };
        // The fault handler: a thread of ours (its stack from the scratch arena, never protected).
        let hstack: &'static mut [u8] = Vec::leak(vec![0u8; 128 << 10]);
        if let Err(e) = bgsnap::start_handler(fd, hstack) {
            return Err(Failure::NeedSync(format!("cannot start the fault handler (errno {e})")));
        }
        let t = now_ns();
        if let Err((at, e)) = engine.arm(&armed0) {
            engine.abort(&armed0);
            return Err(Failure::NeedSync(format!("cannot write-protect memory at {at:#x} (errno {e})")));
        }
        engine.set_armed();
        log!(DEBUG, "background snapshot: armed {} regions in {} ms", armed0.len(), (now_ns() - t) / 1_000_000);
        // The instant: the parent has stopped the threads and captured the rest.
        ph.step(snapshot::ARMED);
        if cap_cell.get().is_null() {
            engine.abort(&armed0);
            return Err(Failure::Failed("the program ended before its checkpoint".into()));
        }
        // SAFETY: set by the parent before it let us go on; it waits for us.
        let (cap, excluded, files) = unsafe { (&*cap_cell.get(), &*excluded_cell.get(), &*files_cell.get()) };
        let armed = armable(&cap.maps, excluded, &dontfork);
        let regs: Vec<(u64, u64)> = cap.maps.iter().zip(&armed).filter(|(_, a)| **a).map(|((m, _), _)| (m.start, m.end)).collect();
        let t = now_ns();
        let frozen = engine.instant(&regs, excluded).and_then(|(n, bytes, every)| {
            let what = if every { format!("every region ({n}: more than {} ranges written since the arming)", crate::bgarm::WRITTEN) } else { format!("{n} ranges written since the arming") };
            log!(DEBUG, "background snapshot: protected again {what}, {} KiB, in {} us", bytes >> 10, (now_ns() - t) / 1000);
            let pagemap = sys::open(&sys::cpath(&[b"/proc/thread-self/pagemap"]), libc::O_RDONLY, 0).map_err(|e| format!("cannot open pagemap: errno {e}"))?;
            let mem = sys::open(&sys::cpath(&[b"/proc/thread-self/mem"]), libc::O_RDONLY, 0).map_err(|e| format!("cannot open mem: errno {e}"))?;
            let r = freeze::freeze_bg(&cap.maps, &armed, excluded, pagemap, mem).and_then(|f| freeze::freeze_files(files).map(|ff| (f, ff)));
            sys::close(pagemap);
            sys::close(mem);
            r
        });
        let (frozen, frozen_files) = match frozen {
            Ok(f) => f,
            Err(e) => {
                engine.abort(&armed0);
                engine.abort(&regs);
                return Err(Failure::NeedSync(e));
            }
        };
        log!(DEBUG, "background snapshot: instant done in {} us", (now_ns() - t) / 1000);
        ph.step(snapshot::FROZEN);
        let bg = memwrite::Bg { engine, armed: &armed };
        let r = checkpoint::write_image(dir, cap, &frozen, &frozen_files, crate::tree::writer_threads(), crate::progress::local(), Some(&bg));
        if engine.phase() != bgsnap::OVER {
            engine.abort(&regs);
        }
        let (peak, slots, faults, waits, arm_waits) = engine.stats();
        let (ran, deferred) = sud::counts();
        log!(
            INFO,
            "checkpoint {gen}: background snapshot: {faults} write faults, {} KiB saved ahead of the writer at most (room for {} KiB), {waits} waits for a window; {ran} system calls made safe, {deferred} deferred, {arm_waits} waited for the arming",
            peak * PAGE as usize / 1024,
            slots * PAGE as usize / 1024
        );
        // Said before the image appears: whoever watches for it (and then kills the program)
        // has the line already.
        let r = r.and_then(|w| checkpoint::commit(dir, cap).map(|_| w).map_err(Failure::Failed));
        let gone = ph.program_gone();
        match &r {
            Ok((raw, stored, _)) => {
                let paused = ph.paused_ns().unwrap_or_else(|| cap.taken_at - t_stop_cell.get());
                checkpoint::announce(cap, *raw, *stored, now_ns() - t0, paused);
            }
            Err(Failure::NeedSync(_)) if !gone => {}
            Err(Failure::NeedSync(e) | Failure::Failed(e)) if gone => log!(ERROR, "checkpoint {gen} failed (the program has ended): {e}"),
            Err(Failure::NeedSync(e) | Failure::Failed(e)) => log!(ERROR, "checkpoint failed, the program continues: {e}"),
        }
        if r.is_err() {
            checkpoint::discard(dir, cap);
        }
        r
    };

    // The writer keeps the image directory and the userfaultfd of the program's fds.
    let mut keep: Vec<i32> = vec![dir.fd()];
    keep.extend(engine.fds());
    let mut child = match snapshot::spawn_bg(body, &keep, &mut stack) {
        Ok(c) => c,
        Err(e) => {
            cleanup(&engine);
            return Err((Retry::Sync(e), None));
        }
    };
    // The writer gave up, or we do: nothing may stay protected; its outcome says what to do.
    let abandon = |child: &mut snapshot::Child, why: Option<String>, hashes: Option<pagehash::Work>| -> Attempt {
        child.go();
        let outcome = child.wait();
        // SAFETY: the writer is gone: the engine is ours again.
        cleanup(unsafe { &*engine_ptr });
        match (outcome, why) {
            (_, Some(w)) => Err((Retry::Sync(w), hashes)),
            (snapshot::Outcome::NeedSync(w), None) => Err((Retry::Sync(w), hashes)),
            (snapshot::Outcome::Died(e), None) => Err((Retry::Fail(e), hashes)),
            (_, None) => Err((Retry::Reported, hashes)),
        }
    };
    if child.wait_state(&[0]) != snapshot::ARMED {
        return abandon(&mut child, None, None);
    }

    // 3. The instant.
    let t_stop = now_ns();
    t_stop_cell.set(t_stop);
    let slots = match threads::stop_all(sys::gettid()) {
        Ok(s) => s,
        Err(e) => return abandon(&mut child, Some(e), None),
    };
    let resumed = || {
        threads::resume_all();
        alloc::note_stopped_use(alloc::scratch_used() - used0);
    };
    let t_stopped = now_ns();
    let mut cap = match checkpoint::capture(&slots, gen, dir, name, false) {
        Ok(c) => c,
        Err(e) => {
            resumed();
            return abandon(&mut child, Some(e), None);
        }
    };
    // Deleted files with data are read by a forked snapshot (which watches them for writes).
    if !deleted::data_owners(&cap.index.fds, cap.index.meta.pid).is_empty() {
        resumed();
        return abandon(&mut child, Some("the program holds deleted files whose data the image stores".into()), None);
    }
    checkpoint::track(&mut cap, parent);
    let excluded = match kernel_written(&slots, &cap.maps) {
        Ok(x) => x,
        Err(why) => {
            resumed();
            let h = cap.hashes.take();
            return abandon(&mut child, Some(why), h);
        }
    };
    let files: Vec<(i32, u64)> = Vec::new();
    cap_cell.set(&mut cap);
    excluded_cell.set(&excluded);
    files_cell.set(&files);
    child.go();
    let state = child.wait_state(&[snapshot::ARMED]);
    resumed();
    let paused = now_ns() - t_stop;
    if state != snapshot::FROZEN {
        let h = cap.hashes.take();
        return abandon(&mut child, None, h);
    }
    child.resumed(paused);
    child.go();
    log!(DEBUG, "pause: dispatch {} us; stop {} us, capture {} us, protect and copy {} us", pause1 / 1000, (t_stopped - t_stop) / 1000, (cap.taken_at - t_stopped) / 1000, (paused - (cap.taken_at - t_stop)) / 1000);
    let outcome = child.wait();
    cleanup(&engine);
    let hashes = cap.hashes.take();
    match outcome {
        snapshot::Outcome::Written { raw, stored, hash } => {
            let w = Written { raw, stored, hash, increment: cap.increment, path: cap.final_path.clone(), hashes: None };
            Ok((w, paused, hashes))
        }
        snapshot::Outcome::NeedSync(why) => {
            checkpoint::discard(dir, &cap);
            Err((Retry::Sync(why), hashes))
        }
        snapshot::Outcome::Failed => Err((Retry::Reported, hashes)),
        snapshot::Outcome::Died(e) => {
            checkpoint::discard(dir, &cap);
            Err((Retry::Fail(e), hashes))
        }
    }
}

/// After the writer process: if it did not finish (it died, or gave up), every page it may have
/// left protected is unprotected and whoever waits for it goes on; dispatch ends.
fn cleanup(engine: &bgsnap::Engine) {
    if engine.phase() != bgsnap::OVER {
        let regions: Vec<(u64, u64)> = maps::read_maps().unwrap_or_default().iter().filter(|m| !m.shared && m.inode == 0).map(|m| (m.start, m.end)).collect();
        engine.abort(&regions);
    }
    sud::end();
    bgsnap::stop();
}
