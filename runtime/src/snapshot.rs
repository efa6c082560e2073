//! Forked checkpoints: a copy-on-write snapshot of the stopped process writes the image while
//! the program runs on.
//!
//! The child is made with a raw `clone` whose exit signal is 0: glibc's fork handlers do not run
//! (a stopped thread may hold the locks they take), the program never gets a SIGCHLD for it, and
//! its wait()/waitpid() cannot reap it (only __WALL/__WCLONE waits see such children). The child
//! is a copy of the checkpoint thread alone; it uses raw system calls and the runtime's
//! allocator (its own copy of the scratch arena) and leaves with exit_group, never through libc.
//! It reports through a shared page mapped after /proc/self/maps was read, so that page is in
//! no image, and wakes the parent through a futex in it.
//!
//! First, while the program's threads are still stopped, the child copies the shared memory
//! that fork does not freeze (freeze.rs) and reports FROZEN: only then does the parent let the
//! threads go. Then it writes the image, commits it and reports it, by itself: a program that
//! ends while its image is being written (exit, exit_group from any thread, a fatal signal)
//! still gets the image and its line. If the child dies, the page says so and the caller
//! removes the temporary file.

use crate::freeze::{self, Frozen, FrozenFile};
use crate::maps::{self, MapEntry};
use crate::progress::{self, Progress};
use crate::sys;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// state 0: freezing shared memory (the parent waits), or died.
const DONE: u32 = 1;
const FAILED: u32 = 2;
/// The snapshot cannot hold the image (memory not inherited by fork): write it synchronously.
const NOT_FORKABLE: u32 = 3;
/// Shared memory is copied: the program may run on; the image is being written.
pub const FROZEN: u32 = 4;
/// A background snapshot's memory is write-protected (bgsnap.rs): the parent may stop the
/// program for the instant.
pub const ARMED: u32 = 5;

#[repr(C)]
struct Report {
    state: AtomicU32,
    msg_len: u32,
    raw: u64,
    stored: u64,
    hash: u64,
    /// Set by the parent once the program runs again (`resumed` becomes 1): the pause, in ns.
    paused: AtomicU64,
    resumed: AtomicU32,
    /// Bumped by the parent to let a background snapshot's writer go on to its next step.
    go: AtomicU32,
    /// How far the image is written (the child counts, the parent shows it to ckpt-ctl).
    progress: Progress,
    msg: [u8; 3900],
}

const _: () = assert!(std::mem::size_of::<Report>() <= 4096);

pub enum Outcome {
    /// The image is committed and its line printed; `hash`: the image's header index_hash.
    Written { raw: u64, stored: u64, hash: u64 },
    /// Take the checkpoint without a snapshot (a region would be missing from it).
    NeedSync(String),
    /// The writer failed and said so on stderr.
    Failed,
    /// The writer died without a word.
    Died(String),
}

/// What the image writer in the child gets: the frozen copies of shared memory and a way to
/// learn the program's pause.
pub struct Ctx {
    pub frozen: Vec<Option<Frozen>>,
    /// Copies of the deleted files the program maps shared (freeze::freeze_files).
    pub frozen_files: Vec<FrozenFile>,
    report: usize,
    parent: i32,
}

impl Ctx {
    /// Whether the program is gone (this child was reparented).
    pub fn program_gone(&self) -> bool {
        sys::syscall!(libc::SYS_getppid).map_or(true, |p| p as i32 != self.parent)
    }

    /// The program's pause in ns, as its checkpoint thread measured it once the threads ran
    /// again (None if the program ended before saying).
    /// Where the writer counts the bytes it writes.
    pub fn progress(&self) -> &Progress {
        // SAFETY: the report page stays mapped in this process until it exits.
        &unsafe { &*(self.report as *const Report) }.progress
    }

    pub fn paused_ns(&self) -> Option<u64> {
        // SAFETY: the report page stays mapped in this process until it exits.
        let rep = unsafe { &*(self.report as *const Report) };
        loop {
            if rep.resumed.load(Ordering::Acquire) != 0 {
                return Some(rep.paused.load(Ordering::Acquire));
            }
            if self.program_gone() {
                return None;
            }
            let ts = libc::timespec { tv_sec: 0, tv_nsec: WAKE_CHECK_NS };
            let _ = sys::syscall!(libc::SYS_futex, &rep.resumed as *const AtomicU32, libc::FUTEX_WAIT, 0, &ts as *const libc::timespec, 0, 0);
        }
    }
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

/// Create the snapshot child and wait until it has frozen the shared memory (the caller's
/// threads must still be stopped); in the child, then run `body` (which writes, commits and
/// reports the image) and exit; of the program's fds the child keeps 0-2 and those in `keep`
/// (the image directory, the deleted files it reads and their watch). `files` ((fd, size)):
/// deleted files to copy before the program runs on (freeze::freeze_files). Returns in the
/// parent only.
pub fn spawn(body: impl FnOnce(&Ctx) -> Result<(u64, u64, u64), Failure>, regions: &[(MapEntry, bool)], keep: &[i32], files: &[(i32, u64)]) -> Result<Child, String> {
    let page = sys::mmap(0, 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        .map_err(|e| format!("cannot map the report page: errno {e}"))?;
    let parent = sys::getpid();
    // SAFETY: the page is ours, mapped read-write, zeroed (an all-zero Report is valid); its
    // progress counter is only used through atomics.
    let counter = unsafe { &(*(page as *const Report)).progress };
    counter.take_over(progress::local());
    // Memory fork would not copy is copied this once (the threads are stopped).
    let lifted = crate::forkadvice::lift(regions);
    // clone(flags = 0: exit signal 0, no sharing; stack 0: the child continues on a copy of ours).
    let cloned = sys::syscall!(libc::SYS_clone, 0, 0, 0, 0, 0);
    if cloned != Ok(0) {
        lifted.restore();
    }
    match cloned {
        Err(e) => {
            sys::munmap(page, 4096);
            Err(format!("cannot create the snapshot: errno {e}"))
        }
        Ok(0) => child(page, parent, body, regions, keep, files),
        Ok(pid) => {
            progress::watch(counter);
            let mut c = Child { pid: pid as i32, report: page, reaped: false };
            c.wait_while(&[0]);
            Ok(c)
        }
    }
}

fn child(page: usize, parent: i32, body: impl FnOnce(&Ctx) -> Result<(u64, u64, u64), Failure>, regions: &[(MapEntry, bool)], keep: &[i32], files: &[(i32, u64)]) -> ! {
    // No PR_SET_PDEATHSIG: if the program ends while we write, we finish, commit and report.
    // Our name tells the init of the program's namespace (ckpt-ns) to wait for us before it
    // ends the namespace.
    let _ = sys::syscall!(libc::SYS_prctl, libc::PR_SET_NAME, ckpt_ns::WRITER_NAME.as_ptr());
    // A runtime thread of the parent may have held the general allocator's lock at the clone:
    // the lists are whole, the lock is ours now (alloc.rs), as in a forked child.
    crate::alloc::after_fork_child();
    // SAFETY: the page is mapped read-write and shared with the parent, which reads the fields
    // only after `state` says they are set (or after we are gone).
    let rep = unsafe { &mut *(page as *mut Report) };
    progress::watch(&rep.progress);
    let t0 = crate::checkpoint::now_ns();
    let frozen = freeze_now(regions);
    crate::log::log!(crate::log::DEBUG, "snapshot: shared memory copied in {} us", (crate::checkpoint::now_ns() - t0) / 1000);
    let frozen = match frozen {
        Ok(f) => f,
        Err(m) => finish(rep, NOT_FORKABLE, &m),
    };
    let frozen_files = match freeze::freeze_files(files) {
        Ok(f) => f,
        Err(m) => finish(rep, NOT_FORKABLE, &m),
    };
    rep.state.store(FROZEN, Ordering::Release);
    wake(&rep.state);
    // The program's fds are not ours to hold: a socket, a pipe or a lock kept open by a writer
    // that outlives the program would be noticed (EOF that does not come, a port still taken).
    // The image directory's fd stays, and so do the deleted files the image stores and the
    // watch on them.
    close_all_but(keep);
    let t1 = crate::checkpoint::now_ns();
    let check = inherited(regions);
    crate::log::log!(crate::log::DEBUG, "snapshot: fork check {} us", (crate::checkpoint::now_ns() - t1) / 1000);
    if let Err(m) = check {
        finish(rep, NOT_FORKABLE, &m);
    }
    let ctx = Ctx { frozen, frozen_files, report: page, parent };
    report_outcome(rep, body(&ctx))
}

/// Close every fd from 3 up except those in `keep`.
fn close_all_but(keep: &[i32]) {
    let mut keep: Vec<i32> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for fd in keep {
        if fd as u32 > from {
            let _ = sys::syscall!(libc::SYS_close_range, from, fd as u32 - 1, 0);
        }
        from = fd as u32 + 1;
    }
    let _ = sys::syscall!(libc::SYS_close_range, from, u32::MAX, 0);
}

/// Copy the shared memory of `regions` (see freeze.rs).
fn freeze_now(regions: &[(MapEntry, bool)]) -> Result<Vec<Option<Frozen>>, String> {
    let pagemap = sys::open(&sys::cpath(&[b"/proc/self/pagemap"]), libc::O_RDONLY, 0).map_err(|e| format!("cannot open /proc/self/pagemap: errno {e}"))?;
    let r = match sys::open(&sys::cpath(&[b"/proc/self/mem"]), libc::O_RDONLY, 0) {
        Ok(mem) => {
            let r = freeze::freeze(regions, pagemap, mem);
            sys::close(mem);
            r
        }
        Err(e) => Err(format!("cannot open /proc/self/mem: errno {e}")),
    };
    sys::close(pagemap);
    r
}

/// Report what the writer's body came to (its sizes and hash, or why it failed) and exit.
fn report_outcome(rep: &mut Report, r: Result<(u64, u64, u64), Failure>) -> ! {
    match r {
        Ok((raw, stored, hash)) => {
            rep.raw = raw;
            rep.stored = stored;
            rep.hash = hash;
            finish(rep, DONE, "")
        }
        Err(Failure::Failed(m)) => finish(rep, FAILED, &m),
        Err(Failure::NeedSync(m)) => finish(rep, NOT_FORKABLE, &m),
    }
}

/// Report `state` (with `msg`) to the parent and exit.
fn finish(rep: &mut Report, state: u32, msg: &str) -> ! {
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
    // happens after it has the report.
    wake(&rep.state);
    loop {
        let _ = sys::syscall!(libc::SYS_exit_group, 0);
    }
}

/// Wake the other process waiting on `word` (a shared futex: the page is MAP_SHARED).
fn wake(word: &AtomicU32) {
    let _ = sys::syscall!(libc::SYS_futex, word as *const AtomicU32, libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
}

/// Check that every captured region is in the snapshot with its content: MADV_DONTFORK regions
/// are absent from a forked child, MADV_WIPEONFORK ones are empty ("wf" in smaps VmFlags),
/// unless their advice was lifted for the fork (forkadvice.rs). MAP_DROPPABLE memory, wiped
/// too, may be dropped by the kernel at any time: it is stored as the child sees it, empty.
/// (Shared memory is in the child, and frozen by freeze_now.)
fn inherited(regions: &[(MapEntry, bool)]) -> Result<(), String> {
    // Our own regions, sorted, with their VmFlags ("wf": MADV_WIPEONFORK).
    let mine = maps::read_smaps()?;
    for (r, scratch) in regions {
        if *scratch || maps::is_special(&r.name) || r.name == b"[vsyscall]" {
            continue;
        }
        let i = mine.partition_point(|m| m.start <= r.start);
        let covered = i > 0 && mine[i - 1].end >= r.end;
        let first = mine.partition_point(|m| m.end <= r.start);
        let wipe = mine[first..].iter().take_while(|m| m.start < r.end).any(|m| m.flags & ckpt_image::vm::WIPEONFORK != 0 && m.flags & ckpt_image::vm::DROPPABLE == 0);
        if !covered || wipe {
            return Err(format!("region {:#x}-{:#x} is not copied by fork (MADV_DONTFORK or MADV_WIPEONFORK)", r.start, r.end));
        }
    }
    Ok(())
}

impl Child {
    fn report(&self) -> &Report {
        // SAFETY: the page stays mapped until drop; the child writes a field only before it
        // sets the state that says the field is set.
        unsafe { &*(self.report as *const Report) }
    }

    /// Wait while the child's state is one of `states` (it wakes us at each change; if it dies
    /// without a word, the periodic check of its exit notices within WAKE_CHECK). Returns the
    /// last wait status.
    fn wait_while(&mut self, states: &[u32]) -> i32 {
        let mut status = 0i32;
        loop {
            let s = self.report().state.load(Ordering::Acquire);
            if !states.contains(&s) || self.reaped {
                return status;
            }
            let ts = libc::timespec { tv_sec: 0, tv_nsec: WAKE_CHECK_NS };
            let _ = sys::syscall!(libc::SYS_futex, &self.report().state as *const AtomicU32, libc::FUTEX_WAIT, s, &ts as *const libc::timespec, 0, 0);
            if s == FROZEN {
                // The program runs again: ckpt-ctl may ask how far the image is.
                crate::control::serve_busy();
            }
            match sys::syscall!(libc::SYS_wait4, self.pid, &mut status as *mut i32, libc::__WALL | libc::WNOHANG, 0) {
                Ok(0) | Err(libc::EINTR) => {}
                // Exited, or reaped by the program (waitpid(-1, __WALL)): the report tells.
                Ok(_) | Err(_) => self.reaped = true,
            }
        }
    }

    /// Tell the child how long the program was paused (it prints it in the checkpoint's line).
    pub fn resumed(&self, paused_ns: u64) {
        let rep = self.report();
        rep.paused.store(paused_ns, Ordering::Release);
        rep.resumed.store(1, Ordering::Release);
        wake(&rep.resumed);
    }

    /// Wait for the child's report.
    pub fn wait(&mut self) -> Outcome {
        let status = self.wait_while(&[0, FROZEN, ARMED]);
        let rep = self.report();
        let msg = String::from_utf8_lossy(&rep.msg[..rep.msg_len as usize]).into_owned();
        match rep.state.load(Ordering::Acquire) {
            DONE => Outcome::Written { raw: rep.raw, stored: rep.stored, hash: rep.hash },
            NOT_FORKABLE => Outcome::NeedSync(msg),
            FAILED => Outcome::Failed,
            _ => Outcome::Died(format!("the image writer died (wait status {status:#x})")),
        }
    }
}

/// How often a waiting parent checks whether the child died without a report.
const WAKE_CHECK_NS: i64 = 20_000_000;

impl Drop for Child {
    /// Reap the child (after the caller committed the image it reported).
    fn drop(&mut self) {
        let mut status = 0i32;
        let _ = WRITER.compare_exchange(self.pid, 0, Ordering::AcqRel, Ordering::Acquire);
        while !self.reaped {
            match sys::syscall!(libc::SYS_wait4, self.pid, &mut status as *mut i32, libc::__WALL, 0) {
                Err(libc::EINTR) => {}
                _ => self.reaped = true,
            }
        }
        progress::forget(&self.report().progress);
        crate::transient::remove(self.report);
        sys::munmap(self.report, 4096);
    }
}

// ---- background snapshots: the writer shares the program's memory ----

/// A background snapshot's writer process (a CLONE_VM child: no copy of the address space, no
/// page tables copied; it outlives the program if the program is killed, and finishes the
/// image): how it tells its parent where it is.
pub struct Phases {
    report: usize,
    parent: i32,
}

impl Phases {
    fn rep(&self) -> &Report {
        // SAFETY: the report page stays mapped until the parent has reaped us.
        unsafe { &*(self.report as *const Report) }
    }

    /// Tell the parent `state` (ARMED, FROZEN) and wait until it says go on (or is gone).
    pub fn step(&self, state: u32) {
        let rep = self.rep();
        let go = rep.go.load(Ordering::Acquire);
        rep.state.store(state, Ordering::Release);
        wake(&rep.state);
        while rep.go.load(Ordering::Acquire) == go {
            if self.program_gone() {
                return;
            }
            let ts = libc::timespec { tv_sec: 0, tv_nsec: WAKE_CHECK_NS };
            let _ = sys::syscall!(libc::SYS_futex, &rep.go as *const AtomicU32, libc::FUTEX_WAIT, go, &ts as *const libc::timespec, 0, 0);
        }
    }

    /// Whether the program is gone (this child was reparented).
    pub fn program_gone(&self) -> bool {
        sys::syscall!(libc::SYS_getppid).map_or(true, |p| p as i32 != self.parent)
    }

    /// The program's pause in ns (see Ctx::paused_ns).
    pub fn paused_ns(&self) -> Option<u64> {
        Ctx { frozen: Vec::new(), frozen_files: Vec::new(), report: self.report, parent: self.parent }.paused_ns()
    }
}

/// The background writer process while it runs (0: none): not one of the program's children.
static WRITER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Whether `pid` is a process of ours (the background writer), not the program's.
pub fn is_own_child(pid: i32) -> bool {
    pid != 0 && WRITER.load(Ordering::Acquire) == pid
}

struct BgStart<F> {
    f: Option<F>,
    report: usize,
    parent: i32,
    keep: Vec<i32>,
}

/// Start a background snapshot's writer process running `f` (which reports ARMED and FROZEN
/// through `Phases::step`, then writes and commits the image); it keeps 0-2 and the fds in
/// `keep` of the program's. `stack`: memory for its stack (the runtime's, never write-protected).
pub fn spawn_bg<F>(f: F, keep: &[i32], stack: &mut [u8]) -> Result<Child, String>
where
    F: FnOnce(&Phases) -> Result<(u64, u64, u64), Failure>,
{
    let page = sys::mmap(0, 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
        .map_err(|e| format!("cannot map the report page: errno {e}"))?;
    // Mapped before the instant (unlike a forked snapshot's): in the image's memory map.
    crate::transient::add(page, 4096);
    let mut start = BgStart { f: Some(f), report: page, parent: sys::getpid(), keep: keep.to_vec() };
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
    // CLONE_VM without CLONE_THREAD: a process of its own (exit signal 0: no SIGCHLD, unseen by
    // the program's wait()) sharing our memory; its own fd table and signal dispositions.
    // SAFETY: the child runs bg_entry on `stack`, which the caller keeps until it is reaped;
    // `start` lives in this frame until then too (the caller waits for the child).
    let pid = unsafe { crate::threads::ckpt_clone_thread(libc::CLONE_VM as u64, top, 0, 0, 0, bg_entry::<F>, &mut start as *mut BgStart<F> as u64) };
    if pid < 0 {
        crate::transient::remove(page);
        sys::munmap(page, 4096);
        return Err(format!("cannot create the snapshot writer: errno {}", -pid));
    }
    WRITER.store(pid as i32, Ordering::Release);
    let mut c = Child { pid: pid as i32, report: page, reaped: false };
    // Until it has armed (or failed), `start` must stay where it is.
    c.wait_while(&[0]);
    drop(start);
    Ok(c)
}

extern "C" fn bg_entry<F>(arg: u64) -> !
where
    F: FnOnce(&Phases) -> Result<(u64, u64, u64), Failure>,
{
    // SAFETY: the parent's BgStart, alive until we report the first state.
    let start = unsafe { &mut *(arg as *mut BgStart<F>) };
    let all: u64 = !0;
    let _ = sys::syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, 0, 8);
    // The name the namespace's init waits for when the program ends before its image is
    // committed (ckpt_ns::WRITER_NAME): unnamed, this writer died with the namespace, its image
    // left a temporary file (a thread's exit_group during a background snapshot).
    let _ = sys::syscall!(libc::SYS_prctl, libc::PR_SET_NAME, ckpt_ns::WRITER_NAME.as_ptr());
    let f = start.f.take();
    let ph = Phases { report: start.report, parent: start.parent };
    close_all_but(&start.keep);
    // SAFETY: the report page is mapped and shared with the parent.
    let rep = unsafe { &mut *(ph.report as *mut Report) };
    let r = match f {
        Some(f) => f(&ph),
        None => Err(Failure::Failed("internal: no snapshot writer".into())),
    };
    report_outcome(rep, r)
}

impl Child {
    /// Background snapshot: wait while the writer is in `states`; its state then.
    pub fn wait_state(&mut self, states: &[u32]) -> u32 {
        self.wait_while(states);
        self.report().state.load(Ordering::Acquire)
    }

    /// Background snapshot: let the writer go on to its next step.
    pub fn go(&self) {
        let rep = self.report();
        rep.go.fetch_add(1, Ordering::AcqRel);
        wake(&rep.go);
    }

}
