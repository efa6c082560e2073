//! The "no checkpoint now" gate. Hooks hold it shared while they update the runtime's
//! bookkeeping; the checkpoint thread holds it exclusively while threads are stopped, so no
//! thread is ever stopped half-way through a hook. Never held across a blocking system call.

use crate::sys;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bit 31: a checkpoint holds or wants the gate. Low bits: hooks inside.
static STATE: AtomicU32 = AtomicU32::new(0);
const WRITER: u32 = 1 << 31;

pub struct Shared;

/// Enter the gate shared (from a hook). Waits while a checkpoint is running.
pub fn enter() -> Shared {
    loop {
        let s = STATE.load(Ordering::Acquire);
        if s & WRITER != 0 {
            sys::futex_wait(&STATE, s, Some(50));
            continue;
        }
        if STATE.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            return Shared;
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let s = STATE.fetch_sub(1, Ordering::Release) - 1;
        if s == WRITER {
            sys::futex_wake(&STATE);
        }
    }
}

impl Shared {
    /// Keep the gate entered beyond this value's scope (a fork's prepare handler: the parent
    /// handler leaves it with `leave`, the child resets it).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

/// Leave the gate entered by a `Shared` that was `keep`-ed.
pub fn leave() {
    drop(Shared);
}

/// Take the gate exclusively (checkpoint thread): keep new hooks out, wait for those inside.
pub fn lock_exclusive() {
    while STATE.fetch_or(WRITER, Ordering::Acquire) & WRITER != 0 {
        sys::futex_wait(&STATE, STATE.load(Ordering::Relaxed), Some(50));
    }
    loop {
        let s = STATE.load(Ordering::Acquire);
        if s == WRITER {
            return;
        }
        sys::futex_wait(&STATE, s, Some(10));
    }
}

pub fn unlock_exclusive() {
    STATE.fetch_and(!WRITER, Ordering::Release);
    sys::futex_wake(&STATE);
}

/// In a forked child: the threads that were inside hooks in the parent do not exist here.
pub fn reset_in_child() {
    STATE.store(0, Ordering::Release);
}

/// At restart: the image was taken with the gate held exclusively; nothing else is inside.
pub fn reset_after_restart() {
    STATE.store(WRITER, Ordering::Release);
}
