//! The runtime's mappings that live for one checkpoint and are not the scratch arena: the
//! background snapshot's page buffer (bgsnap.rs) and its writer's report page (snapshot.rs).
//! They are mapped before the checkpoint's instant, so the memory map an image records holds
//! them. Images store them as empty memory, as the scratch arena (checkpoint::split_scratch),
//! and a restart from such an image unmaps them: the checkpoint that made them is over for the
//! restarted program, which must find its address space as it was (zdtm vdso-proxy counted
//! them as mappings the restore added).
//!
//! Only the checkpoint thread (and the writer process that shares its memory) registers and
//! reads them; no allocation (the stopped part of a checkpoint reads them).

use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering};

const SLOTS: usize = 4;

/// (start, length) of each mapping; length 0: a free slot.
struct Ranges([(AtomicU64, AtomicU64); SLOTS]);

impl Ranges {
    const fn new() -> Ranges {
        Ranges([const { (AtomicU64::new(0), AtomicU64::new(0)) }; SLOTS])
    }

    fn get(&self, i: usize) -> Option<(u64, u64)> {
        let (s, l) = (self.0[i].0.load(Ordering::Acquire), self.0[i].1.load(Ordering::Acquire));
        (l != 0).then_some((s, s + l))
    }

    fn set(&self, i: usize, start: u64, len: u64) {
        self.0[i].1.store(0, Ordering::Release);
        self.0[i].0.store(start, Ordering::Release);
        self.0[i].1.store(len, Ordering::Release);
    }
}

/// The mappings that exist now.
static LIVE: Ranges = Ranges::new();
/// Those the image being taken holds (in the memory map it records).
static IN_IMAGE: Ranges = Ranges::new();

/// `len` bytes mapped at `start` for the checkpoint in progress. With every slot taken the
/// mapping is not recorded: it then goes into an image as the program's memory would (and
/// comes back after a restart), as before this module.
pub fn add(start: usize, len: usize) {
    if let Some(i) = (0..SLOTS).find(|&i| LIVE.get(i).is_none()) {
        LIVE.set(i, start as u64, len as u64);
    }
}

/// The mapping at `start` is about to be unmapped.
pub fn remove(start: usize) {
    for i in 0..SLOTS {
        if LIVE.get(i).is_some_and(|(s, _)| s == start as u64) {
            LIVE.set(i, 0, 0);
        }
    }
}

/// The mappings that exist now: (start, end), at most SLOTS of them (no allocation).
pub fn ranges() -> impl Iterator<Item = (u64, u64)> {
    (0..SLOTS).filter_map(|i| LIVE.get(i))
}

/// The memory map an image records was read with entries `within` (start, end): note which of
/// the mappings it holds.
pub fn note_in_image(within: &mut dyn Iterator<Item = (u64, u64)>) {
    let live: [Option<(u64, u64)>; SLOTS] = std::array::from_fn(|i| LIVE.get(i));
    let mut held = [false; SLOTS];
    for (s, e) in within {
        for (i, r) in live.iter().enumerate() {
            held[i] |= r.is_some_and(|(a, b)| a < e && s < b);
        }
    }
    for i in 0..SLOTS {
        match live[i].filter(|_| held[i]) {
            Some((a, b)) => IN_IMAGE.set(i, a, b - a),
            None => IN_IMAGE.set(i, 0, 0),
        }
    }
}

/// At restart: the mappings the image held exist again (the restarter mapped them, empty):
/// unmap them. None of the others exists in this process.
pub fn after_restart() {
    for i in 0..SLOTS {
        if let Some((s, e)) = IN_IMAGE.get(i) {
            sys::munmap(s as usize, (e - s) as usize);
        }
        IN_IMAGE.set(i, 0, 0);
        LIVE.set(i, 0, 0);
    }
}
