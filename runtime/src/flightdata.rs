//! The deleted files and memfds whose only reference is a message in flight (SCM_RIGHTS, queued
//! in a socket; the sender closed its fd, no process holds it as an fd): the image stores their
//! data, which is read through an fd of ours, since the program has no fd number to read it
//! through (their entries have negative numbers). The table's reader keeps its temporary fd of
//! each open (`keep`) until the data is copied (`freeze::freeze_files`, at the cut: nothing
//! else watches such a file for writes) or written (`memwrite::plan_files`), then `close_all`.
//! In a tree, also the regular files, deleted files and memfds, event, timer and signal fds in
//! flight, until every process of the tree is captured (`close_all` after the coordinator's
//! resume): another process that holds one only in flight too (no process holds it as an fd)
//! finds ours with kcmp (`flightheld`), whichever of the two peeked first. (A deleted file or
//! memfd in flight whose data another process's image stores is kept for that only.)

//! A fixed table of atomics, not the checkpoint's allocator: the image is taken while the fds
//! are kept, and a restart has none of them (`after_restart` forgets them; the scratch arena
//! behind a Vec is gone after a restart).

use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many files only in flight one checkpoint reads through fds of ours (more: the
/// checkpoint fails, saying it cannot read the file).
const MAX: usize = 64;

/// Each slot: the number of the file in flight (negative, high half) and our fd of it (low
/// half); 0 when free.
static KEPT: [AtomicU64; MAX] = [const { AtomicU64::new(0) }; MAX];

fn pack(no: i32, fd: i32) -> u64 {
    (u64::from(no as u32) << 32) | u64::from(fd as u32)
}

/// Keep our fd `fd` of the file in flight numbered `no` until `close_all` (false: no room, the
/// caller closes it).
pub fn keep(no: i32, fd: i32) -> bool {
    KEPT.iter().any(|k| k.compare_exchange(0, pack(no, fd), Ordering::AcqRel, Ordering::Relaxed).is_ok())
}

/// The fd of ours that the data of entry `no` is read through: the program's own fd for an fd,
/// our kept one for a file in flight (`no` itself when none is kept).
pub fn reader(no: i32) -> i32 {
    if no >= 0 {
        return no;
    }
    KEPT.iter().map(|k| k.load(Ordering::Acquire)).find(|&v| v != 0 && (v >> 32) as u32 as i32 == no).map_or(no, |v| v as u32 as i32)
}

/// Close every kept fd (before the program runs on: not the program's).
pub fn close_all() {
    for k in &KEPT {
        let v = k.swap(0, Ordering::AcqRel);
        if v != 0 {
            sys::close(v as u32 as i32);
        }
    }
}

/// After a restart: the image's kept fds are not ours (their numbers may be the program's).
pub fn after_restart() {
    for k in &KEPT {
        k.store(0, Ordering::Release);
    }
}
