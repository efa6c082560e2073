//! The highest watch descriptor each inotify instance of the program has handed out.
//!
//! The kernel numbers an instance's watches 1, 2, 3... and never gives a number again (until it
//! wraps): after watches 4 and 5 were removed, the next is 6. fdinfo lists only the watches that
//! remain, so the checkpoint records the highest number the instance gave, as seen by the
//! inotify_add_watch hook (`added`) and by the runtime's own marker watches (`noted`), and the
//! restart adds and removes throw-away watches up to it: a watch the program adds after the
//! restart gets the number it would have got. Kept by fd number (an instance's dups and a raw
//! inotify_add_watch system call are not seen: their numbers count only as far as fdinfo
//! shows), forgotten when the program closes the fd.

use crate::gate;
use std::sync::atomic::{AtomicBool, Ordering};
use crate::forklock::Mutex;

/// (fd, highest wd handed out through it).
pub(crate) static LAST: Mutex<Vec<(i32, i32)>> = Mutex::new(Vec::new());
/// Something was noted (a close need not look otherwise).
static ANY: AtomicBool = AtomicBool::new(false);

fn note(t: &mut Vec<(i32, i32)>, fd: i32, wd: i32) {
    ANY.store(true, Ordering::Release);
    match t.iter_mut().find(|e| e.0 == fd) {
        Some(e) => e.1 = e.1.max(wd),
        None => t.push((fd, wd)),
    }
}

/// The program's inotify_add_watch on `fd` returned `wd` (a hook: under the gate).
pub fn added(fd: i32, wd: i32) {
    let _g = gate::enter();
    note(&mut LAST.lock().unwrap_or_else(|e| e.into_inner()), fd, wd);
}

/// The runtime's own watch `wd` on `fd` (the checkpoint thread, while no hook runs).
pub fn noted(fd: i32, wd: i32) {
    if wd > 0 {
        note(&mut LAST.lock().unwrap_or_else(|e| e.into_inner()), fd, wd);
    }
}

/// The program closed [first, last] (a hook; the runtime's own closes, on the checkpoint
/// thread, which may hold the gate, are not the program's).
pub fn closed(first: u32, last: u32) {
    if !ANY.load(Ordering::Acquire) || crate::alloc::on_checkpoint_thread() {
        return;
    }
    let _g = gate::enter();
    LAST.lock().unwrap_or_else(|e| e.into_inner()).retain(|e| !(first..=last).contains(&(e.0 as u32)));
}

/// At checkpoint time (threads stopped): the highest wd `fd` handed out that we saw, 0 if none.
pub fn last(fd: i32) -> i32 {
    LAST.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|e| e.0 == fd).map_or(0, |e| e.1)
}
