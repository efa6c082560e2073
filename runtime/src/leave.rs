//! The checkpoint thread leaves for a call the kernel allows only in a single-threaded process
//! (unshare(CLONE_NEWUSER), setns to a user or a time namespace), and comes back after it.
//!
//! Under ckpt-run every program has a second thread, the runtime's checkpoint thread, so such a
//! call fails (EINVAL, EUSERS) where it works natively. When the program has no other thread,
//! the hook (`nshooks`) asks the checkpoint thread to leave: the thread takes the request in its
//! loop (`triggers::run`), so never during a checkpoint (a checkpoint being taken, background
//! writer included, is over by then); requests that came with it or arrive while it is away wait
//! (a trigger signal stays pending, every thread of the program blocks it; the control socket
//! keeps its clients) and are served once it is back. The thread really exits, through glibc's
//! own end of a thread: `checkpoint_thread_main` runs its loop under `ckpt_escapable`, and
//! `ckpt_escape` returns from there, also in a restarted program, whose checkpoint thread goes
//! on in the frames the image kept (the restart path runs below them, from `stack_top`). The
//! caller waits until the kernel has let the thread go, joins it (its stack goes back to glibc),
//! makes the call and starts a new checkpoint thread, whatever the call returned.
//!
//! The runtime's other threads are threads the program asked for (SIGEV_THREAD timers and
//! mq_notify's helper, AIO workers): glibc would have them too, and the kernel would refuse the
//! call natively as well. The namespaces the checkpoint thread started in are the runtime's
//! (`base`): a new checkpoint thread made after the program entered a namespace of its own is in
//! it too, and checkpoints compare the program's threads with these (`nshooks::refusal`).

use crate::log::{log, DEBUG};
use crate::sys;
use crate::CKPT_THREAD;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// The checkpoint thread is here (or not started).
const HERE: u32 = 0;
/// A program thread asked it to leave.
const ASKED: u32 = 1;
/// It is on its way out (its loop is over).
const LEAVING: u32 = 2;
/// A new checkpoint thread is starting after a leave: the namespaces it starts in are not ours.
const BACK: u32 = 3;
static STATE: AtomicU32 = AtomicU32::new(HERE);

/// The callee-saved registers and stack pointer `ckpt_escapable` saved (its frame in
/// `checkpoint_thread_main`, on the checkpoint thread's own stack).
pub static ESCAPE: AtomicU64 = AtomicU64::new(0);

std::arch::global_asm!(
    // u64 ckpt_escapable(slot, f, arg): save the callee-saved registers on the stack, their
    // address in *slot, and call f(arg) (which never returns); ckpt_escape(slot) later returns
    // 1 from here, on this thread, with those registers.
    ".globl ckpt_escapable",
    ".type ckpt_escapable,@function",
    "ckpt_escapable:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    sub rsp, 8",
    "    mov [rdi], rsp",
    "    mov rax, rsi",
    "    mov rdi, rdx",
    "    xor ebp, ebp",
    "    call rax",
    "    ud2",
    // void ckpt_escape(slot): back into ckpt_escapable's frame; it returns 1.
    ".globl ckpt_escape",
    ".type ckpt_escape,@function",
    "ckpt_escape:",
    "    mov rsp, [rdi]",
    "    add rsp, 8",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    mov eax, 1",
    "    ret",
);

extern "C" {
    pub(crate) fn ckpt_escapable(slot: *const AtomicU64, f: extern "C" fn(u64) -> !, arg: u64) -> u64;
    fn ckpt_escape(slot: *const AtomicU64) -> !;
}

/// Namespace kinds, as /proc/PID/task/TID/ns names them, and the runtime's inode of each.
pub const KINDS: [&[u8]; 9] = [b"mnt", b"net", b"ipc", b"uts", b"user", b"cgroup", b"time", b"time_for_children", b"pid_for_children"];
static BASE: [AtomicU64; 9] = [const { AtomicU64::new(0) }; 9];

/// The inode in a namespace link's text (`user:[4026531837]`); 0 when none.
pub fn ns_inode(link: &[u8]) -> u64 {
    let digits = link.iter().skip_while(|&&b| b != b'[').skip(1).take_while(|b| b.is_ascii_digit());
    digits.fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'))
}

/// On the checkpoint thread, as it starts (not when it comes back after a leave) or after a
/// restart (`restarted`): its namespaces are the runtime's.
pub fn note_base(restarted: bool) {
    if !restarted && STATE.load(Ordering::Acquire) == BACK {
        return;
    }
    for (i, kind) in KINDS.iter().enumerate() {
        let link = sys::readlink(&sys::cpath(&[b"/proc/thread-self/ns/", kind])).unwrap_or_default();
        BASE[i].store(ns_inode(&link), Ordering::Relaxed);
    }
}

/// The runtime's namespace of kind `i` (an index in KINDS), 0 when unknown.
pub fn base(i: usize) -> u64 {
    BASE[i].load(Ordering::Relaxed)
}

/// Whether the program's threads are the calling one alone (the checkpoint thread left out).
pub fn alone_but_us() -> bool {
    let ckpt = CKPT_THREAD.tid.load(Ordering::Acquire);
    let me = sys::gettid();
    if ckpt <= 0 || ckpt == me {
        return false;
    }
    let tasks = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])).unwrap_or_default();
    let ckpt = sys::decimal(ckpt);
    tasks.iter().all(|t| t.as_slice() == ckpt.as_slice() || t.as_slice() == sys::decimal(me).as_slice())
}

/// Whether thread `tid` of ours is gone: released (no longer in /proc/self/task, and its
/// release over: `release_over`), or a zombie leader (which stays). Another thread that shows
/// as a zombie or dead is not released yet: it is still in the thread group, and a call made
/// then fails as in a multi-threaded process (unshare(CLONE_THREAD) gave EINVAL).
fn gone(tid: i32) -> bool {
    let stat = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/stat"])).unwrap_or_default();
    match crate::kstate::stat_state(&stat) {
        None => {
            release_over();
            true
        }
        Some(b'Z') | Some(b'X') => tid == sys::getpid(),
        Some(_) => false,
    }
}

/// Wait until the kernel's release of a thread no longer in /proc is over. The kernel releases
/// a thread under its task-list lock: it takes the thread's id away first (/proc no longer
/// finds it), then takes it off the thread group's list and drops its hold on the signal
/// handlers, which unshare(CLONE_THREAD, CLONE_SIGHAND, CLONE_NEWUSER) and setns to a user
/// namespace check without that lock: a call made in that moment failed with EINVAL (the
/// away test, about once in 100 000 leaves under load: /proc showed this thread alone, and the
/// same call made again succeeded). kill(0, 0) takes that lock to read (it sends nothing, it
/// only checks the process group's members), so it returns once the release holding it is over.
fn release_over() {
    let _ = sys::syscall!(libc::SYS_kill, 0, 0);
}

/// Make `call` (a system call of the program's: its result and errno) with the checkpoint
/// thread away; it is back when this returns. None when it cannot leave (no checkpoint thread,
/// other threads).
pub fn without_checkpoint_thread(call: impl Fn() -> (i64, i32)) -> Option<(i64, i32)> {
    if !crate::is_active() || !alone_but_us() || !crate::tree::own_checkpoint_thread() {
        return None;
    }
    STATE.store(ASKED, Ordering::Release);
    crate::triggers::request(crate::triggers::REQ_LEAVE);
    // (A checkpoint may stop this thread meanwhile: the wait goes on after it, and after a
    // restart, where the request is made again: `asked_again`.)
    loop {
        let s = STATE.load(Ordering::Acquire);
        if s != ASKED {
            break;
        }
        sys::futex_wait(&STATE, s, None);
    }
    let old = CKPT_THREAD.tid.load(Ordering::Acquire);
    while !gone(old) {
        let _ = sys::syscall!(libc::SYS_sched_yield);
    }
    crate::join_checkpoint_thread();
    let r = call_alone(&call);
    log!(DEBUG, "the checkpoint thread left for a call that needs a single-threaded process (result {}); back now", if r.0 == 0 { "0".to_string() } else { crate::checkpoint::strerror(r.1) });
    STATE.store(BACK, Ordering::Release);
    RETURNING.store(true, Ordering::Release);
    crate::respawn_checkpoint_thread();
    STATE.store(HERE, Ordering::Release);
    Some(r)
}

/// How many times a call that failed with the process single-threaded in /proc is made again.
const AGAIN: u32 = 100;

/// Make `call` with the checkpoint thread gone. A failure for threads (EINVAL, EUSERS) while
/// /proc shows this thread alone is the kernel still ending the release `release_over` waited
/// for (a kernel that would end it outside that lock): the call, which changed nothing, is made
/// again, a bounded number of times. A call that fails for a reason of its own fails as before.
fn call_alone(call: &impl Fn() -> (i64, i32)) -> (i64, i32) {
    let mut r = call();
    let mut n = 0;
    while r.0 != 0 && (r.1 == libc::EINVAL || r.1 == libc::EUSERS) && n < AGAIN && only_me() {
        if n == 0 {
            log!(DEBUG, "a call that needs a single-threaded process failed ({}) with this thread alone: made again", crate::checkpoint::strerror(r.1));
        }
        release_over();
        let _ = sys::syscall!(libc::SYS_sched_yield);
        r = call();
        n += 1;
    }
    r
}

/// Whether /proc/self/task lists the calling thread alone.
fn only_me() -> bool {
    let tasks = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])).unwrap_or_default();
    tasks.len() == 1 && tasks[0] == sys::decimal(sys::gettid())
}

/// On the checkpoint thread, in its loop: leave if asked (never returns then).
pub fn leave_if_asked() {
    if STATE.load(Ordering::Acquire) != ASKED {
        return;
    }
    if ESCAPE.load(Ordering::Acquire) == 0 {
        return;
    }
    // SAFETY: ESCAPE is this thread's frame in checkpoint_thread_main (kept in a restarted
    // program's image), below which everything may go.
    unsafe { ckpt_escape(&ESCAPE) }
}

/// On the checkpoint thread, back in `checkpoint_thread_main` after `leave_if_asked`: say it is
/// on its way out (glibc's end of a thread follows).
pub fn left() {
    STATE.store(LEAVING, Ordering::Release);
    sys::futex_wake(&STATE);
}

/// Set when a checkpoint thread starts after a leave, until its loop begins (`back`).
static RETURNING: AtomicBool = AtomicBool::new(false);

/// On the checkpoint thread, as its loop begins (trigger signals unblocked: one that came while
/// it was away has been taken): say whether requests wait from then.
pub fn back() {
    if RETURNING.swap(false, Ordering::AcqRel) && crate::triggers::pending(crate::triggers::REQ_LEAVE) {
        log!(DEBUG, "requests came while the checkpoint thread was away: it serves them now");
    }
}

/// After a restart: whether a program thread was waiting for the checkpoint thread to leave
/// (its request is asked again; the image's pending requests were dropped).
pub fn asked_again() -> bool {
    STATE.load(Ordering::Acquire) == ASKED
}
