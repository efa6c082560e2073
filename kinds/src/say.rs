//! Where ckpt-restart's own messages go: the stderr it was given, also once a process's fds 0
//! to 2 are the program's again. A process of a tree may have had an fd 2 of its own (Open MPI's
//! orted: /dev/null; a rank's: a pipe to mpirun) that the restart puts back before it is done
//! with that process: its warnings would land there (lost, or in the program's own data). So
//! before the program's fds are placed, `keep_above` takes a dup of our stderr above every fd
//! number of the program (close-on-exec), and every message of the restarter goes to it (`say!`,
//! `info`, `warn`) until the switch closes it as its last step (`fd`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};

/// Our stderr: fd 2 until `keep_above` took a dup of it.
static OURS: AtomicI32 = AtomicI32::new(2);

/// Take a dup of our stderr at `top` or above (no program fd is there), close-on-exec, and
/// write every message there from now on. Returns the fd, to be kept open while fds are placed
/// (None: no stderr to keep, or the dup failed; messages then go to fd 2, as before).
pub fn keep_above(top: i32) -> Option<i32> {
    let old = OURS.load(Ordering::Relaxed);
    // SAFETY: F_DUPFD_CLOEXEC makes a new fd of ours; old is our stderr or our dup of it.
    let new = unsafe { libc::fcntl(old, libc::F_DUPFD_CLOEXEC, top) };
    if new < 0 {
        return (old > 2).then_some(old);
    }
    OURS.store(new, Ordering::Relaxed);
    if old > 2 {
        crate::close(old);
    }
    Some(new)
}

/// The fd our messages go to (2, or our dup of it).
pub fn fd() -> i32 {
    OURS.load(Ordering::Relaxed)
}

/// Write one line to our stderr (errors ignored: nowhere else to say them).
pub fn line(args: std::fmt::Arguments) {
    let mut s = String::new();
    let _ = s.write_fmt(args);
    s.push('\n');
    let mut b = s.as_bytes();
    let fd = fd();
    while !b.is_empty() {
        // SAFETY: b is a valid buffer of b.len() bytes.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// Write raw bytes (a progress line redrawn in place) to our stderr, errors ignored.
pub fn raw(b: &[u8]) {
    // SAFETY: b is a valid buffer of b.len() bytes; a short write only loses part of a redraw.
    unsafe { libc::write(fd(), b.as_ptr().cast(), b.len()) };
}

/// `eprintln!` to our stderr (`line`).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say::line(format_args!($($arg)*))
    };
}
