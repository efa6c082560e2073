//! Arming a background snapshot (bgsnap.rs) while the program runs: the tracked memory is
//! write-protected chunk by chunk, in address order, and a system call of the program that needs
//! a range unprotected meanwhile (bgsnap::secure) waits at most for the chunk being protected
//! at that moment, and only if the range overlaps it: a range the arming has passed is
//! unprotected at once, and a range it has not reached yet is noted and left out when the arming
//! gets there (the instant protects again what is in memory and unprotected, as for any page
//! written during the arming).
//!
//! Before, such a call waited for the whole arming (20-60 ms per GiB here): a program that
//! asked for the time (clock_gettime into its stack: a system call here) was stopped for all of
//! it, 24 ms at 1 GiB as its own heartbeat saw it, while the runtime's pause was 2 ms. Ranges
//! that the arming does not protect at all (stacks and the other ranges the kernel writes by
//! itself, memory that is not tracked) never wait.
//!
//! The arming also notes where a page may be in memory and unprotected at the instant
//! (`written`): pages written since their chunk was protected (write faults served), ranges
//! unprotected or left out for calls, and pages that were not in memory when their chunk was
//! protected (the kernel protects only pages in memory: a first write there makes a fresh page,
//! without a fault), each rounded out to the 2 MiB of its page table. The instant protects again
//! only those (plus what the plan did not cover) instead of walking the page tables of the
//! whole program (2.8-5.0 ms at 4 GiB); with more than `WRITTEN` such ranges it protects
//! everything again, as before.
//!
//! Program threads call in from their SIGSYS handler (every signal blocked): no allocation, one
//! spin lock held for a few loads and stores, never across a system call.

use crate::bgranges::Ranges;
use crate::maps::PAGE;
use crate::sys::{self, syscall};
use crate::uffdwp;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Bytes write-protected at a time: what a call overlapping it may wait for (~0.3-1 ms here).
const CHUNK: u64 = 16 << 20;
/// Ranges noted ahead of the arming at most; beyond, a call waits for the arming to end.
const LIFTED: usize = 64;
/// Ranges noted as possibly written at most; beyond, the instant protects every region again.
/// A scan of one range costs ~1-2 us here (a system call and the walk of its page tables).
pub(crate) const WRITTEN: usize = 256;
/// What a range noted as written is rounded out to: the memory of one page table, which the
/// kernel walks whole anyway (and a huge page).
const GRAIN: u64 = 2 << 20;

/// A spin lock between runtime threads and program threads in the SIGSYS handler.
pub(crate) struct Spin(AtomicBool);

impl Spin {
    pub(crate) const fn new() -> Spin {
        Spin(AtomicBool::new(false))
    }
    pub(crate) fn lock(&self) {
        while self.0.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            let _ = syscall!(libc::SYS_sched_yield);
        }
    }
    pub(crate) fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

struct State {
    /// The ranges to protect (sorted, disjoint); None until known (every range counts as ahead).
    plan: Option<Vec<(u64, u64)>>,
    /// Everything below is protected (or left out).
    done_to: u64,
    /// The chunk being protected now, if any.
    busy: Option<(u64, u64)>,
    /// Ranges the arming must leave out (noted by `lift` ahead of it).
    lifted: Ranges,
    /// Where a page may be in memory and unprotected at the instant (see the module comment).
    written: Ranges,
    /// More of those than `written` holds: every region is protected again.
    overflow: bool,
}

impl State {
    fn new() -> State {
        State { plan: None, done_to: 0, busy: None, lifted: Ranges::new(LIFTED), written: Ranges::new(WRITTEN), overflow: false }
    }

    /// Note [a, b) as possibly written (rounded out to GRAIN).
    fn note_written(&mut self, a: u64, b: u64) {
        if !self.overflow && !self.written.insert(a / GRAIN * GRAIN, b.div_ceil(GRAIN).saturating_mul(GRAIN)) {
            self.overflow = true;
            self.written.clear();
        }
    }
}

pub struct Arming {
    lock: Spin,
    st: UnsafeCell<State>,
    /// Bumped whenever a chunk is done (a futex word for calls waiting on it).
    seq: AtomicU32,
    /// 1 once arming is over (done or given up; a futex word).
    over: AtomicU32,
    /// Calls that waited for the arming (for a chunk being protected, or for its end).
    waited: AtomicU64,
}

// SAFETY: `st` is used under `lock` only.
unsafe impl Sync for Arming {}

impl Arming {
    pub fn new() -> Arming {
        Arming { lock: Spin::new(), st: UnsafeCell::new(State::new()), seq: AtomicU32::new(0), over: AtomicU32::new(0), waited: AtomicU64::new(0) }
    }

    /// Calls that waited for the arming so far.
    pub fn waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        self.lock.lock();
        // SAFETY: under the lock.
        let r = f(unsafe { &mut *self.st.get() });
        self.lock.unlock();
        r
    }

    /// The ranges the arming will protect (sorted, disjoint), known before it starts, and the
    /// ranges among them whose pages may come and go without a fault or a call (`whole`:
    /// MADV_FREE pages the kernel may drop, KSM merging), which count as written.
    pub fn set_plan(&self, plan: Vec<(u64, u64)>, whole: &[(u64, u64)]) {
        let old = self.with(|s| {
            whole.iter().for_each(|&(a, b)| s.note_written(a, b));
            s.plan.replace(plan)
        });
        drop(old);
    }

    /// A page written while arming (a write fault served, its protection lifted).
    pub fn fault(&self, page: u64) {
        self.with(|s| s.note_written(page, page + PAGE));
    }

    /// At the instant, once nothing can unprotect memory any more: where pages may be in memory
    /// and unprotected among `regs` (sorted, disjoint): what was noted, and what the plan did
    /// not cover (mapped or grown since, or left out then). None: too much was noted (every
    /// region counts).
    pub fn written(&self, regs: &[(u64, u64)]) -> Option<Vec<(u64, u64)>> {
        self.lock.lock();
        // SAFETY: under the lock.
        let s = unsafe { &mut *self.st.get() };
        // Taken, not copied: nothing is allocated under the lock.
        let (plan, written, overflow) = (s.plan.take(), std::mem::replace(&mut s.written, Ranges::new(0)), s.overflow);
        self.lock.unlock();
        let plan = plan.filter(|_| !overflow)?;
        let uncovered = crate::bgranges::subtract(regs, &plan);
        Some(crate::bgranges::intersect(&crate::bgranges::union(written.as_slice(), &uncovered), regs))
    }

    /// Protect the plan's ranges, chunk by chunk, leaving out what `lift` noted, after noting
    /// the pages not in memory (`absent` adds their runs in [a, b) to its vector). Err: the
    /// address and errno of a protection that failed.
    pub fn protect_all(&self, fd: i32, absent: impl Fn(u64, u64, &mut Vec<(u64, u64)>) -> Result<(), i32>) -> Result<(), (u64, i32)> {
        let plan = self.with(|s| s.plan.clone()).unwrap_or_default();
        // First, all of it (unpopulated page tables cost nothing): a page that comes into
        // memory after this scan was absent in it, and one that was there is protected below
        // (unless a call drops it first: then its range is noted).
        let mut holes: Vec<(u64, u64)> = Vec::new();
        for &(s, e) in &plan {
            let n = holes.len();
            if absent(s, e, &mut holes).is_err() {
                holes.truncate(n);
                holes.push((s, e));
            }
        }
        self.with(|st| holes.iter().for_each(|&(x, y)| st.note_written(x, y)));
        drop(holes);
        let mut skip: Vec<(u64, u64)> = Vec::with_capacity(LIFTED);
        for (s, e) in plan {
            let mut at = s;
            while at < e {
                let end = (at + CHUNK).min(e);
                skip.clear();
                self.with(|st| {
                    st.busy = Some((at, end));
                    skip.extend(st.lifted.as_slice().iter().filter(|l| l.0 < end && l.1 > at).copied());
                });
                let r = crate::bgsnap::minus(at, end, &skip).into_iter().try_for_each(|(x, y)| uffdwp::protect(fd, x, y - x).map_err(|e| (x, e)));
                self.with(|st| {
                    st.busy = None;
                    st.done_to = end;
                    // Noted ranges wholly passed are no longer needed.
                    st.lifted.drop_below(end);
                });
                self.seq.fetch_add(1, Ordering::Release);
                let _ = syscall!(libc::SYS_futex, self.seq.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
                r?;
                at = end;
            }
        }
        Ok(())
    }

    /// Arming is over (done or given up): every range counts as passed; calls waiting go on.
    pub fn end(&self) {
        self.with(|s| {
            s.busy = None;
            s.done_to = u64::MAX;
        });
        self.over.store(1, Ordering::Release);
        self.seq.fetch_add(1, Ordering::Release);
        for w in [&self.over, &self.seq] {
            let _ = syscall!(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
        }
    }

    /// Wait until arming is over.
    pub fn wait_end(&self) {
        while self.over.load(Ordering::Acquire) == 0 {
            let ts = sys::timespec_ms(50);
            let _ = syscall!(libc::SYS_futex, self.over.as_ptr(), libc::FUTEX_WAIT, 0, &ts as *const libc::timespec, 0, 0);
        }
    }

    /// Make [a, b) writable by the kernel during the arming (from the SIGSYS handler): the part
    /// the arming has passed is unprotected now, the part ahead of it noted to be left out.
    pub fn lift(&self, fd: i32, a: u64, b: u64) {
        enum Next {
            Wait(u32),
            Unprotect(u64),
            TooMany,
        }
        let mut counted = false;
        let mut count = || {
            if !std::mem::replace(&mut counted, true) {
                self.waited.fetch_add(1, Ordering::Relaxed);
            }
        };
        loop {
            let seq = self.seq.load(Ordering::Acquire);
            let next = self.with(|s| {
                if let Some(plan) = &s.plan {
                    let i = plan.partition_point(|p| p.1 <= a);
                    if plan.get(i).is_none_or(|p| p.0 >= b) {
                        return Next::Unprotect(a); // nothing the arming protects: nothing to do
                    }
                }
                // Unprotected now or left out: protected again at the instant.
                s.note_written(a, b);
                if s.busy.is_some_and(|(x, y)| a < y && b > x) {
                    return Next::Wait(seq);
                }
                let ahead = a.max(s.done_to);
                if ahead < b && !s.lifted.insert(ahead, b) {
                    return Next::TooMany;
                }
                Next::Unprotect(b.min(s.done_to))
            });
            match next {
                Next::Wait(seq) => {
                    count();
                    let ts = sys::timespec_ms(10);
                    let _ = syscall!(libc::SYS_futex, self.seq.as_ptr(), libc::FUTEX_WAIT, seq, &ts as *const libc::timespec, 0, 0);
                }
                Next::Unprotect(end) => {
                    if end > a {
                        let _ = uffdwp::unprotect(fd, a, end - a, true);
                    }
                    return;
                }
                Next::TooMany => {
                    count();
                    self.wait_end();
                    let _ = uffdwp::unprotect(fd, a, b - a, true);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    #[test]
    fn written_ranges_are_rounded_to_page_tables_and_merged() {
        let mut s = State::new();
        s.note_written(3 * M, 3 * M + PAGE);
        s.note_written(4 * M + PAGE, 4 * M + 2 * PAGE);
        s.note_written(9 * M, 10 * M);
        assert_eq!(s.written.as_slice(), &[(2 * M, 6 * M), (8 * M, 10 * M)]);
        assert!(!s.overflow);
    }

    #[test]
    fn too_many_written_ranges_count_as_every_region() {
        let a = Arming::new();
        a.set_plan(vec![(0, 4 * GRAIN * WRITTEN as u64)], &[]);
        for i in 0..=WRITTEN as u64 {
            a.fault(i * 2 * GRAIN);
        }
        assert_eq!(a.written(&[(0, 4 * GRAIN * WRITTEN as u64)]), None);
    }

    #[test]
    fn written_is_what_was_noted_and_what_the_plan_missed() {
        let a = Arming::new();
        // Planned: two regions, less a stack-like hole in the second.
        a.set_plan(vec![(0, 64 * M), (100 * M, 110 * M), (120 * M, 200 * M)], &[(150 * M, 152 * M)]);
        a.fault(10 * M);
        // At the instant the first region grew and a new one is mapped; [110, 120) M is left out.
        let regs = [(0, 80 * M), (100 * M, 200 * M), (300 * M, 301 * M)];
        let w = a.written(&regs).unwrap();
        assert_eq!(w, vec![(10 * M, 12 * M), (64 * M, 80 * M), (110 * M, 120 * M), (150 * M, 152 * M), (300 * M, 301 * M)]);
    }
}
