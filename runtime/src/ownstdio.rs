//! Which of fds 0, 1 and 2 of a program alone (no tree: its image has no manifest to say it)
//! are its own rather than the stdio ckpt-run (or ckpt-restart) gave it: a
//! `freopen("/dev/null", "r", stdin)`, a `dup2(open("log"), 1)`. The image marks them
//! (`FdState::OWN_STDIO`) and a restart gives them back as the image describes them; the
//! others stay ckpt-restart's, so that `ckpt-restart app.ckpt > log` works.
//!
//! - In ckpt's namespace, init (pid 1) holds the outside's stdio as its own fds 0 to 2: an fd
//!   that is one open file with none of them is the program's own, exactly (kcmp KCMP_FILE, as
//!   the coordinator does for the processes of a tree). The runtime asks kcmp itself where it
//!   may (root); an unprivileged program may not (init holds capabilities in the namespace that
//!   it does not), and asks the coordinator, which answers at once (`TreeMsg::AskStdio`).
//! - Without a namespace, or where kcmp is refused: what fds 0 to 2 were when the runtime
//!   started (and again after each restart: ckpt-restart's) is recorded by identity (type,
//!   device, inode, device number); an fd 0-2 that is none of them is the program's own. One
//!   that is the same file as one of them (the program opened the same file, or /dev/null when
//!   the outside gave /dev/null) cannot be told apart and is taken for the outside's, as before.
//!   A program started by an exec of the program records what it was given by then.
//!
//! Raw system calls only: `mark` runs while the program's threads are stopped.

use crate::log::{log, DEBUG};
use crate::sys::{self, syscall};
use ckpt_image::FdState;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What the outside's fd N was, by identity (`KNOWN`: bit N set when recorded).
static KNOWN: AtomicU32 = AtomicU32::new(0);
static MODE: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];
static DEV: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static INO: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static RDEV: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// The fds 0 to 2 the last image marked own (bit N), in memory when it was taken: after a
/// restart from it, those are the image's, the others ckpt-restart's.
static OWN: AtomicU32 = AtomicU32::new(0);

/// At start: record what fds 0 to 2 are (the stdio we were given).
pub fn at_start() {
    record(0);
}

/// After a restart, before the program runs: fds 0 to 2 that the image did not mark own are
/// ckpt-restart's, the outside's from now on; those it marked are the program's.
pub fn after_restart() {
    record(OWN.load(Ordering::Relaxed));
}

fn record(own: u32) {
    let mut known = 0;
    for n in 0..3 {
        if own & 1 << n != 0 {
            continue;
        }
        if let Ok(st) = sys::fstat(n as i32) {
            MODE[n].store(st.st_mode & libc::S_IFMT, Ordering::Relaxed);
            DEV[n].store(st.st_dev, Ordering::Relaxed);
            INO[n].store(st.st_ino, Ordering::Relaxed);
            RDEV[n].store(st.st_rdev, Ordering::Relaxed);
            known |= 1 << n;
        }
    }
    KNOWN.store(known, Ordering::Release);
}

/// Whether our fd `fd` is the same file as one of the outside's fds 0 to 2 recorded.
fn same_as_recorded(fd: i32) -> bool {
    let Ok(st) = sys::fstat(fd) else { return true };
    let known = KNOWN.load(Ordering::Acquire);
    (0..3).any(|n| {
        known & 1 << n != 0
            && MODE[n].load(Ordering::Relaxed) == st.st_mode & libc::S_IFMT
            && DEV[n].load(Ordering::Relaxed) == st.st_dev
            && INO[n].load(Ordering::Relaxed) == st.st_ino
            && RDEV[n].load(Ordering::Relaxed) == st.st_rdev
    })
}

/// Our fds 0 to 2 that are open and one open file with none of init's fds 0 to 2 (bit N: fd
/// N), by kcmp of our own (as root), else as the coordinator finds (`tree::ask_own_stdio`: an
/// unprivileged process may not kcmp init, which holds capabilities in the namespace); None:
/// not in ckpt's namespace, or neither could tell.
fn own_by_init() -> Option<u32> {
    if !crate::ids::in_namespace() {
        return None;
    }
    // Our own thread, not the process: a thread-group leader that exited (zdtm pthread02) has
    // no fd table any more, and kcmp of it says EBADF, which would make every fd our own.
    let me = sys::gettid();
    let mut own = 0;
    let mut told = true;
    'fds: for fd in (0..3i64).filter(|&fd| sys::fstat(fd as i32).is_ok()) {
        for n in 0..3i64 {
            match syscall!(libc::SYS_kcmp, me, 1, sys::KCMP_FILE, fd, n) {
                Ok(0) => continue 'fds,
                Ok(_) => {}
                // (init's fd n closed.)
                Err(e) if e == libc::EBADF => {}
                Err(_) => {
                    told = false;
                    break 'fds;
                }
            }
        }
        own |= 1 << fd;
    }
    if told {
        Some(own)
    } else {
        crate::tree::ask_own_stdio()
    }
}

/// Mark the fds 0 to 2 of a lone program's image (`fds`, read while its threads are stopped)
/// that are its own (`FdState::mark_own_stdio`), and remember which.
pub fn mark(fds: &mut [FdState]) {
    let by_init = own_by_init();
    let mut own = 0;
    for n in (0..3).filter(|&n| fds.iter().any(|f| f.fd == n)) {
        let mine = match by_init {
            Some(mask) => mask & 1 << n != 0,
            None => !same_as_recorded(n),
        };
        if mine {
            own |= 1 << n;
        }
    }
    for f in fds.iter_mut().filter(|f| (0..3).contains(&f.fd) && own & 1 << f.fd != 0) {
        f.mark_own_stdio();
    }
    OWN.store(own, Ordering::Relaxed);
    let how = if by_init.is_some() { "one open file with none of init's (kcmp)" } else { "not the stdio recorded at start" };
    log!(DEBUG, "own fds 0 to 2 (restored from the image): {:?}, {how}", (0..3).filter(|n| own & 1 << n != 0).collect::<Vec<i32>>());
}
