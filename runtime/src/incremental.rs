//! When a checkpoint writes an increment instead of a full image, and over which image.
//!
//! An increment holds only the pages that changed since the previous checkpoint (pagehash.rs)
//! and names that image as its parent. Chains are kept short ("compaction" by rewriting): the
//! next checkpoint is full when the chain already holds `--max-chain` images (default 8), when
//! the increments since the last full image add up to half of it, after a failed checkpoint,
//! after a restart without a page hash table, and when the parent is no longer on
//! disk.
//! `ckpt-run --full-only` turns increments (and tracking) off.
//!
//! A process of a tree keeps its own chain the same way: its image in a set builds on its image in
//! the previous set, which the coordinator linked into the new set (ckpt_ns setchain); a process
//! born since starts with a full image (the fork handler resets this state).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);
static MAX_CHAIN: AtomicU32 = AtomicU32::new(8);
/// Header index_hash of the newest image of the current chain; 0: the next image is full.
static PARENT: AtomicU64 = AtomicU64::new(0);
/// Images in the current chain up to and including PARENT.
static DEPTH: AtomicU32 = AtomicU32::new(0);
/// Stored bytes of the chain's full image (u64::MAX: unknown, after a restart) and of the
/// increments written over it since.
static BASE: AtomicU64 = AtomicU64::new(0);
static SINCE: AtomicU64 = AtomicU64::new(0);

pub fn configure(enabled: bool, max_chain: u32) {
    ENABLED.store(enabled, Ordering::Relaxed);
    MAX_CHAIN.store(max_chain.max(1), Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The next checkpoint's parent and the chain length it extends, if it should be an increment.
pub fn next_parent() -> Option<(u64, u32)> {
    let parent = PARENT.load(Ordering::Acquire);
    let depth = DEPTH.load(Ordering::Relaxed);
    let (base, since) = (BASE.load(Ordering::Relaxed), SINCE.load(Ordering::Relaxed));
    (enabled() && parent != 0 && depth < MAX_CHAIN.load(Ordering::Relaxed) && since < base / 2).then_some((parent, depth))
}

/// A checkpoint committed the image with header hash `hash`: an increment when `increment`.
pub fn committed(hash: u64, increment: bool, stored: u64) {
    if increment {
        DEPTH.fetch_add(1, Ordering::Relaxed);
        SINCE.fetch_add(stored, Ordering::Relaxed);
    } else {
        DEPTH.store(1, Ordering::Relaxed);
        BASE.store(stored, Ordering::Relaxed);
        SINCE.store(0, Ordering::Relaxed);
    }
    PARENT.store(if enabled() { hash } else { 0 }, Ordering::Release);
}

/// The next checkpoint must be full (after a failed one, or a restart without tracking).
pub fn reset() {
    PARENT.store(0, Ordering::Release);
}

/// After a restart from the image `hash` (a chain of `chain` images), whose memory the program
/// has exactly and whose page hash table the restarter built: the next checkpoint may build on it.
pub fn continue_from(hash: u64, chain: u32) {
    DEPTH.store(chain.max(1), Ordering::Relaxed);
    // The chain's sizes are not known here: only its length bounds it.
    BASE.store(u64::MAX, Ordering::Relaxed);
    SINCE.store(0, Ordering::Relaxed);
    PARENT.store(if enabled() { hash } else { 0 }, Ordering::Release);
}
