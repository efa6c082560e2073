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
//! Program threads call in from their SIGSYS handler (every signal blocked): no allocation, one
//! spin lock held for a few loads and stores, never across a system call.

use crate::sys::{self, syscall};
use crate::uffdwp;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Bytes write-protected at a time: what a call overlapping it may wait for (~0.3-1 ms here).
const CHUNK: u64 = 16 << 20;
/// Ranges noted ahead of the arming at most; beyond, a call waits for the arming to end.
const LIFTED: usize = 64;

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
    lifted: [(u64, u64); LIFTED],
    n: usize,
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
        let st = State { plan: None, done_to: 0, busy: None, lifted: [(0, 0); LIFTED], n: 0 };
        Arming { lock: Spin::new(), st: UnsafeCell::new(st), seq: AtomicU32::new(0), over: AtomicU32::new(0), waited: AtomicU64::new(0) }
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

    /// The ranges the arming will protect (sorted, disjoint): known before it starts.
    pub fn set_plan(&self, plan: Vec<(u64, u64)>) {
        let old = self.with(|s| s.plan.replace(plan));
        drop(old);
    }

    /// Protect the plan's ranges, chunk by chunk, leaving out what `lift` noted. Err: the
    /// address and errno of a protection that failed.
    pub fn protect_all(&self, fd: i32) -> Result<(), (u64, i32)> {
        let plan = self.with(|s| s.plan.clone()).unwrap_or_default();
        let mut skip: Vec<(u64, u64)> = Vec::with_capacity(LIFTED);
        for (s, e) in plan {
            let mut at = s;
            while at < e {
                let end = (at + CHUNK).min(e);
                skip.clear();
                self.with(|st| {
                    st.busy = Some((at, end));
                    skip.extend(st.lifted[..st.n].iter().filter(|l| l.0 < end && l.1 > at).copied());
                });
                skip.sort_unstable();
                let r = crate::bgsnap::minus(at, end, &skip).into_iter().try_for_each(|(x, y)| uffdwp::protect(fd, x, y - x).map_err(|e| (x, e)));
                self.with(|st| {
                    st.busy = None;
                    st.done_to = end;
                    // Noted ranges wholly passed are no longer needed.
                    let mut k = 0;
                    for i in 0..st.n {
                        if st.lifted[i].1 > end {
                            st.lifted[k] = st.lifted[i];
                            k += 1;
                        }
                    }
                    st.n = k;
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
                if s.busy.is_some_and(|(x, y)| a < y && b > x) {
                    return Next::Wait(seq);
                }
                let ahead = a.max(s.done_to);
                if ahead < b && !note(s, ahead, b) {
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

/// Note [a, b) in `s.lifted`, merged with the ranges it touches; false when there is no room.
fn note(s: &mut State, mut a: u64, mut b: u64) -> bool {
    let mut k = 0;
    for i in 0..s.n {
        let (x, y) = s.lifted[i];
        if x <= b && y >= a {
            a = a.min(x);
            b = b.max(y);
        } else {
            s.lifted[k] = (x, y);
            k += 1;
        }
    }
    s.n = k;
    if k == LIFTED {
        return false;
    }
    s.lifted[k] = (a, b);
    s.n += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State { plan: None, done_to: 0, busy: None, lifted: [(0, 0); LIFTED], n: 0 }
    }

    #[test]
    fn noted_ranges_merge() {
        let mut s = state();
        assert!(note(&mut s, 10, 20));
        assert!(note(&mut s, 30, 40));
        assert!(note(&mut s, 20, 30));
        assert_eq!(&s.lifted[..s.n], &[(10, 40)]);
    }

    #[test]
    fn too_many_noted_ranges_are_refused() {
        let mut s = state();
        for i in 0..LIFTED as u64 {
            assert!(note(&mut s, i * 10, i * 10 + 5));
        }
        assert!(!note(&mut s, 10_000, 10_005));
        assert!(note(&mut s, 0, 3), "a range inside a noted one still fits");
    }
}
