//! Forked checkpoints: a copy-on-write snapshot of the stopped process writes the image while
//! the program runs on.
//!
//! The child is made with a raw `clone` whose exit signal is 0: glibc's fork handlers do not run
//! (a stopped thread may hold the locks they take), the program never gets a SIGCHLD for it, and
//! its wait()/waitpid() cannot reap it (only __WALL/__WCLONE waits see such children). The child
//! is a copy of the checkpoint thread alone; it uses raw system calls and the runtime's
//! allocator (its own copy of the scratch arena) and leaves with exit_group, never through libc.
//! It reports through a shared page mapped after /proc/self/maps was read, so that page is in
//! no image, and wakes the parent through a futex in it before exiting. If the child dies, the
//! page says so and the caller removes the temporary file.

use crate::maps::{self, MapEntry};
use ckpt_image::Backing;
use crate::sys;
use std::sync::atomic::{AtomicU32, Ordering};

/// state 0: still writing, or died.
const DONE: u32 = 1;
const FAILED: u32 = 2;
/// The snapshot cannot hold the image (memory not inherited by fork): write it synchronously.
const NOT_FORKABLE: u32 = 3;

#[repr(C)]
struct Report {
    state: AtomicU32,
    msg_len: u32,
    raw: u64,
    stored: u64,
    hash: u64,
    msg: [u8; 4000],
}

pub enum Outcome {
    /// `hash`: the image's header index_hash.
    Written { raw: u64, stored: u64, hash: u64 },
    /// Take the checkpoint without a snapshot (a region would be missing from it).
    NeedSync(String),
    Failed(String),
}

/// Why the image writer gave up.
pub enum Failure {
    Failed(String),
    /// The snapshot cannot hold this image (something it reads changed under it): take the
    /// checkpoint again without a snapshot.
    NeedSync(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Failed(s)
    }
}

pub struct Child {
    pid: i32,
    report: usize,
    reaped: bool,
}

/// Whether checkpoints fork (CKPT_FORK=0 turns it off; read once at startup).
static ENABLED: AtomicU32 = AtomicU32::new(1);

pub fn configure(fork_env: Option<&[u8]>) {
    ENABLED.store(u32::from(fork_env != Some(b"0")), Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed) != 0
}

/// Create the snapshot child; in the child, run `body` and exit. Returns in the parent only.
pub fn spawn(body: impl FnOnce() -> Result<(u64, u64, u64), Failure>, regions: &[(MapEntry, bool)]) -> Result<Child, String> {
    let page = sys::mmap(0, 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        .map_err(|e| format!("cannot map the report page: errno {e}"))?;
    // clone(flags = 0: exit signal 0, no sharing; stack 0: the child continues on a copy of ours).
    match sys::syscall!(libc::SYS_clone, 0, 0, 0, 0, 0) {
        Err(e) => {
            sys::munmap(page, 4096);
            Err(format!("cannot create the snapshot: errno {e}"))
        }
        Ok(0) => child(page, body, regions),
        Ok(pid) => Ok(Child { pid: pid as i32, report: page, reaped: false }),
    }
}

fn child(page: usize, body: impl FnOnce() -> Result<(u64, u64, u64), Failure>, regions: &[(MapEntry, bool)]) -> ! {
    // If the program dies, there is no one to commit the image: stop.
    let _ = sys::syscall!(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    // SAFETY: the page is mapped read-write and shared with the parent, which reads it only
    // after state leaves PENDING (or after we are gone).
    let rep = unsafe { &mut *(page as *mut Report) };
    let t0 = crate::checkpoint::now_ns();
    let check = inherited(regions);
    crate::log::log!(crate::log::DEBUG, "snapshot: fork check {} us", (crate::checkpoint::now_ns() - t0) / 1000);
    let (state, msg) = match check {
        Err(m) => (NOT_FORKABLE, m),
        Ok(()) => match body() {
            Ok((raw, stored, hash)) => {
                rep.raw = raw;
                rep.stored = stored;
                rep.hash = hash;
                (DONE, String::new())
            }
            Err(Failure::Failed(m)) => (FAILED, m),
            Err(Failure::NeedSync(m)) => (NOT_FORKABLE, m),
        },
    };
    let n = msg.len().min(rep.msg.len());
    rep.msg[..n].copy_from_slice(&msg.as_bytes()[..n]);
    rep.msg_len = n as u32;
    // Our copies of the program's fds share its open file descriptions: while we hold them, a
    // flock or OFD lock stays held and a pipe or FIFO keeps its buffer even after the program
    // is killed. Let go of them before the parent hears from us (exiting releases fds only
    // after the address space, which takes long).
    let _ = sys::syscall!(libc::SYS_close_range, 0, u32::MAX, 0);
    rep.state.store(state, Ordering::Release);
    // Wake the parent now: tearing down our copy of the address space (tens of ms per GiB)
    // happens after it has the report. A shared futex: the page is MAP_SHARED.
    let _ = sys::syscall!(libc::SYS_futex, &rep.state as *const AtomicU32, libc::FUTEX_WAKE, 1, 0, 0, 0);
    loop {
        let _ = sys::syscall!(libc::SYS_exit_group, 0);
    }
}

/// Check that every captured region is in the snapshot with its content: MADV_DONTFORK regions
/// are absent from a forked child, MADV_WIPEONFORK ones are empty ("wf" in smaps VmFlags), and
/// shared anonymous memory is not frozen by a snapshot at all.
fn inherited(regions: &[(MapEntry, bool)]) -> Result<(), String> {
    let text = sys::read_file(&sys::cpath(&[b"/proc/self/smaps"])).map_err(|e| format!("cannot read /proc/self/smaps: errno {e}"))?;
    let mine = maps::parse_maps(&text);
    let mut wiped: Vec<u64> = Vec::new();
    let mut cur = 0u64;
    for line in text.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"VmFlags:") {
            if rest.split(|&b| b == b' ').any(|f| f == b"wf") {
                wiped.push(cur);
            }
        } else if let Some(m) = maps::parse_maps(line).first() {
            cur = m.start;
        }
    }
    for (r, scratch) in regions {
        if *scratch || maps::is_special(&r.name) || r.name == b"[vsyscall]" {
            continue;
        }
        if r.shared && maps::backing_of(r) == Backing::SharedAnon {
            // The program keeps writing it (it is not copied on write): it would be torn.
            return Err(format!("region {:#x}-{:#x} is shared anonymous memory, which a snapshot cannot freeze", r.start, r.end));
        }
        let covered = mine.iter().any(|m| m.start <= r.start && m.end >= r.end);
        let wipe = mine.iter().any(|m| m.start < r.end && m.end > r.start && wiped.contains(&m.start));
        if !covered || wipe {
            return Err(format!("region {:#x}-{:#x} is not copied by fork (MADV_DONTFORK or MADV_WIPEONFORK)", r.start, r.end));
        }
    }
    Ok(())
}

impl Child {
    /// Wait for the child's report (it wakes us before it exits; if it dies without one, the
    /// periodic check of its exit notices within WAKE_CHECK).
    pub fn wait(&mut self) -> Outcome {
        // SAFETY: the page stays mapped until drop; the child writes it only before setting state.
        let rep = unsafe { &*(self.report as *const Report) };
        let mut status = 0i32;
        while rep.state.load(Ordering::Acquire) == 0 && !self.reaped {
            let ts = libc::timespec { tv_sec: 0, tv_nsec: WAKE_CHECK_NS };
            let _ = sys::syscall!(libc::SYS_futex, &rep.state as *const AtomicU32, libc::FUTEX_WAIT, 0, &ts as *const libc::timespec, 0, 0);
            match sys::syscall!(libc::SYS_wait4, self.pid, &mut status as *mut i32, libc::__WALL | libc::WNOHANG, 0) {
                Ok(0) | Err(libc::EINTR) => {}
                // Exited, or reaped by the program (waitpid(-1, __WALL)): the report tells.
                Ok(_) | Err(_) => self.reaped = true,
            }
        }
        let msg = String::from_utf8_lossy(&rep.msg[..rep.msg_len as usize]).into_owned();
        match rep.state.load(Ordering::Acquire) {
            DONE => Outcome::Written { raw: rep.raw, stored: rep.stored, hash: rep.hash },
            NOT_FORKABLE => Outcome::NeedSync(msg),
            FAILED => Outcome::Failed(msg),
            _ => Outcome::Failed(format!("the image writer died (wait status {status:#x})")),
        }
    }
}

/// How often a waiting parent checks whether the child died without a report.
const WAKE_CHECK_NS: i64 = 20_000_000;

impl Drop for Child {
    /// Reap the child (after the caller committed the image it reported).
    fn drop(&mut self) {
        let mut status = 0i32;
        while !self.reaped {
            match sys::syscall!(libc::SYS_wait4, self.pid, &mut status as *mut i32, libc::__WALL, 0) {
                Err(libc::EINTR) => {}
                _ => self.reaped = true,
            }
        }
        sys::munmap(self.report, 4096);
    }
}
