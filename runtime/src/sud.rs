//! Syscall user dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH, unprivileged, Linux 5.11) during a
//! background snapshot: every system call a program thread makes raises SIGSYS instead, and our
//! handler makes it safe before making it itself.
//!
//! Why: the snapshot write-protects the program's memory with a user-mode-only userfaultfd
//! (uffdwp.rs), whose faults the kernel does not deliver for its own accesses: a read() into a
//! protected buffer would fail with EFAULT. The handler looks at the call (sudcalls.rs) and has
//! the snapshot save and unprotect every page the kernel may write or drop (bgsnap::secure)
//! before running it; calls it cannot make safe (clone, fork, exec, exit, AIO, io_uring,
//! unknown ones) wait until the snapshot is written, and then run as the program made them.
//!
//! Each thread turns dispatch on for itself (the prctl acts on the caller only) in the stop
//! handler of the checkpoint that starts the snapshot, and off for itself at its first system
//! call after the snapshot (dispatch left on costs every call the kernel's slow path). Threads
//! are not created during a snapshot (clone waits), so none escapes.
//!
//! Each thread has its own selector byte: our handler lets its own calls through (ALLOW), and
//! runs the program's call through `ckpt_sud_call`, in the one range of code exempt from
//! dispatch, with the program's signal mask, so that the program's signals interrupt a blocking
//! call as before (their handlers' calls are dispatched again). A call made safe before a
//! snapshot's stop and made (or restarted by the kernel) after it would meet the memory the
//! instant protects again: the stop handler moves such a thread to a twin of that code outside
//! the exempt range (`reroute`), where the call is dispatched again. The SIGSYS frame returns
//! through our own restorer (exempt too), and so does the stop handler's frame in a thread
//! that dispatches (`return_exempt`); the program's rt_sigreturn is done by its own frame from
//! the exempt range. SIGSYS must never be blocked while dispatch is on (the kernel would
//! then kill the process): rt_sigprocmask and rt_sigreturn are emulated to keep it unblocked,
//! and the program's wish is kept as a virtual bit. The program's SIGSYS handler (seccomp users)
//! gets the signals that are not ours.

use crate::sys::{self, syscall};
use crate::sudcalls::{self, Kind};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

const PR_SET_SYSCALL_USER_DISPATCH: i64 = 59;
const DISPATCH_OFF: i64 = 0;
const DISPATCH_ON: i64 = 1;
const ALLOW: u8 = 0;
const BLOCK: u8 = 1;
/// si_code of a dispatched call.
const SYS_USER_DISPATCH: i32 = 2;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
pub const SIGSYS_BIT: u64 = 1 << (libc::SIGSYS - 1);
const SA_RESTORER: u64 = 0x0400_0000;

std::arch::global_asm!(
    // The program's call from `call` (rbx: nr, a1..a6) into its registers: the same bytes in
    // ckpt_sud_call and in its twin.
    ".macro ckpt_sud_load",
    "    mov rax, [rbx]",
    "    mov rdi, [rbx + 8]",
    "    mov rsi, [rbx + 16]",
    "    mov rdx, [rbx + 24]",
    "    mov r10, [rbx + 32]",
    "    mov r8, [rbx + 40]",
    "    mov r9, [rbx + 48]",
    ".endm",
    ".globl ckpt_sud_begin",
    ".hidden ckpt_sud_begin",
    ".type ckpt_sud_begin,@function",
    "ckpt_sud_begin:",
    // long ckpt_sud_syscall(nr, a1, a2, a3, a4, a5, a6)
    ".globl ckpt_sud_syscall",
    ".hidden ckpt_sud_syscall",
    ".type ckpt_sud_syscall,@function",
    "ckpt_sud_syscall:",
    "    mov rax, rdi",
    "    mov rdi, rsi",
    "    mov rsi, rdx",
    "    mov rdx, rcx",
    "    mov r10, r8",
    "    mov r8, r9",
    "    mov r9, [rsp + 8]",
    "    syscall",
    "    ret",
    // long ckpt_sud_call(const u64 call[7] /* nr, a1..a6 */, const u64 masks[2])
    // The program's call with the program's signal mask (masks[0]), then every signal
    // blocked again (masks[1]); its result. From `open` to `sys` included, the call has not
    // been made, or the kernel will make it again (a restart after a signal handler): see
    // `reroute`.
    ".globl ckpt_sud_call",
    ".hidden ckpt_sud_call",
    ".type ckpt_sud_call,@function",
    "ckpt_sud_call:",
    "    push rbx",
    "    push r12",
    "    mov rbx, rdi",
    "    mov r12, rsi",
    "    mov eax, 14", // rt_sigprocmask(SIG_SETMASK, &masks[0], NULL, 8)
    "    mov edi, 2",
    "    mov rsi, r12",
    "    xor edx, edx",
    "    mov r10d, 8",
    "    syscall",
    ".globl ckpt_sud_call_open",
    ".hidden ckpt_sud_call_open",
    "ckpt_sud_call_open:",
    "    ckpt_sud_load",
    ".globl ckpt_sud_call_sys",
    ".hidden ckpt_sud_call_sys",
    "ckpt_sud_call_sys:",
    "    syscall",
    ".globl ckpt_sud_call_done",
    ".hidden ckpt_sud_call_done",
    "ckpt_sud_call_done:",
    "    mov rbx, rax",
    "    mov eax, 14", // rt_sigprocmask(SIG_SETMASK, &masks[1], NULL, 8)
    "    mov edi, 2",
    "    lea rsi, [r12 + 8]",
    "    xor edx, edx",
    "    mov r10d, 8",
    "    syscall",
    "    mov rax, rbx",
    "    pop r12",
    "    pop rbx",
    "    ret",
    // The restorer of our SIGSYS frames, and of the program's frames (rsp at the frame).
    ".globl ckpt_sud_restorer",
    ".hidden ckpt_sud_restorer",
    ".type ckpt_sud_restorer,@function",
    "ckpt_sud_restorer:",
    "    mov eax, 15",
    "    syscall",
    "    ud2",
    ".globl ckpt_sud_end",
    ".hidden ckpt_sud_end",
    ".type ckpt_sud_end,@function",
    "ckpt_sud_end:",
    "    ud2",
    // Outside the exempt range: the part of ckpt_sud_call from `open` to `sys`, the same
    // instructions, then back into it. A call continued here is dispatched again.
    ".globl ckpt_sud_twin_open",
    ".hidden ckpt_sud_twin_open",
    "ckpt_sud_twin_open:",
    "    ckpt_sud_load",
    "    syscall",
    "    jmp ckpt_sud_call_done",
);

extern "C" {
    fn ckpt_sud_begin();
    fn ckpt_sud_syscall(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64;
    fn ckpt_sud_call(call: *const u64, masks: *const u64) -> i64;
    fn ckpt_sud_call_open();
    fn ckpt_sud_call_sys();
    fn ckpt_sud_restorer();
    fn ckpt_sud_end();
    fn ckpt_sud_twin_open();
}

/// A thread's dispatch state, found by its thread pointer.
struct Th {
    fs: AtomicU64,
    sel: AtomicU8,
    on: AtomicBool,
    /// The program wants SIGSYS blocked in this thread (virtually).
    sys_blocked: AtomicBool,
}

const SLOTS: usize = 2 * crate::threads::MAX_THREADS;
static TH: [Th; SLOTS] = [const { Th { fs: AtomicU64::new(0), sel: AtomicU8::new(ALLOW), on: AtomicBool::new(false), sys_blocked: AtomicBool::new(false) } }; SLOTS];

/// Threads with dispatch on.
static ON: AtomicU32 = AtomicU32::new(0);
/// The snapshot is being taken (a futex word: 0 when not).
static ACTIVE: AtomicU32 = AtomicU32::new(0);
/// The program's SIGSYS disposition (kernel struct sigaction: handler, flags, restorer, mask),
/// while ours is installed.
static PROGRAM: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Calls dispatched during the current snapshot, and those deferred until its end.
static RAN: AtomicU64 = AtomicU64::new(0);
static DEFERRED: AtomicU64 = AtomicU64::new(0);

/// (calls made safe and run, calls deferred) during the current snapshot.
pub fn counts() -> (u64, u64) {
    (RAN.load(Ordering::Relaxed), DEFERRED.load(Ordering::Relaxed))
}


fn slot(fs: u64, claim: bool) -> Option<&'static Th> {
    if fs == 0 {
        return None;
    }
    let start = (fs >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize % SLOTS;
    for k in 0..SLOTS {
        let t = &TH[(start + k) % SLOTS];
        let v = t.fs.load(Ordering::Acquire);
        if v == fs {
            return Some(t);
        }
        if v == 0 {
            if !claim {
                return None;
            }
            if t.fs.compare_exchange(0, fs, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Some(t);
            }
        }
    }
    None
}

/// Whether the program may be running with dispatch on (a snapshot is being taken, or threads
/// have not turned it off yet): SIGSYS must stay unblocked.
pub fn engaged() -> bool {
    ACTIVE.load(Ordering::Acquire) != 0 || ON.load(Ordering::Acquire) != 0
}

/// Let the calling thread's own system calls through while a runtime handler runs on it (the
/// stop handler); dropping it restores what was there.
pub struct Allow {
    t: Option<&'static Th>,
    prev: u8,
    /// Dispatch was on for the thread already.
    was_on: bool,
}

impl Allow {
    pub fn new() -> Allow {
        match slot(sys::thread_pointer(), false) {
            Some(t) => Allow { t: Some(t), prev: t.sel.swap(ALLOW, Ordering::AcqRel), was_on: t.on.load(Ordering::Acquire) },
            None => Allow { t: None, prev: ALLOW, was_on: false },
        }
    }
}

impl Drop for Allow {
    fn drop(&mut self) {
        // A thread's first snapshot: its slot was claimed by enable_self after `new`, which
        // then found none; without this look-up its selector stayed ALLOW and none of its
        // calls were dispatched until the next stop (the instant), a read() or shared futex
        // on a page armed meanwhile failing with EFAULT.
        if let Some(t) = self.t.or_else(|| slot(sys::thread_pointer(), false)) {
            // Dispatch turned on meanwhile (enable_self): calls are dispatched from now on.
            // Else the selector the interrupted code had (ALLOW inside our SIGSYS handler).
            let v = if t.on.load(Ordering::Acquire) && !self.was_on { BLOCK } else { self.prev };
            t.sel.store(v, Ordering::Release);
        }
    }
}

/// Whether this kernel has syscall user dispatch (checked on the caller, turned off again).
pub fn available() -> bool {
    static AVAIL: AtomicI64 = AtomicI64::new(-1);
    match AVAIL.load(Ordering::Relaxed) {
        -1 => {}
        v => return v == 1,
    }
    let sel = AtomicU8::new(ALLOW);
    let ok = twin_matches() && syscall!(libc::SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_ON, range().0, range().1, sel.as_ptr()).is_ok();
    if ok {
        let _ = syscall!(libc::SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_OFF, 0, 0, 0);
    }
    AVAIL.store(i64::from(ok), Ordering::Relaxed);
    ok
}

/// The open part of ckpt_sud_call: [open, sys], the `syscall` instruction included.
fn open_part() -> (u64, u64) {
    (ckpt_sud_call_open as *const () as usize as u64, ckpt_sud_call_sys as *const () as usize as u64)
}

/// The program's call (nr, a1..a6) that ckpt_sud_call or its twin made, when `rip` is right after
/// that system call instruction (where a signal that interrupted the call finds the thread):
/// `rbx` then holds the call's record. (blocked.rs: such a call cannot be known by its site.)
pub fn call_at(rip: u64, rbx: u64) -> Option<[u64; 7]> {
    let (open, sys) = open_part();
    let twin_sys = ckpt_sud_twin_open as *const () as usize as u64 + (sys - open);
    if (rip != sys + 2 && rip != twin_sys + 2) || rbx == 0 {
        return None;
    }
    // SAFETY: ckpt_sud_call keeps the pointer to its caller's record in rbx (callee-saved)
    // across the call; the record lives in the SIGSYS handler's frame, below the signal frame.
    Some(unsafe { std::ptr::read_unaligned(rbx as *const [u64; 7]) })
}

/// Whether the twin holds the same instructions as the open part (`reroute` moves a thread
/// from one to the other at the same offset).
fn twin_matches() -> bool {
    let (open, sys) = open_part();
    let twin = ckpt_sud_twin_open as *const () as usize;
    let len = (sys - open + 2) as usize;
    // SAFETY: both are our own code, mapped and readable, `len` bytes each.
    let (a, b) = unsafe { (std::slice::from_raw_parts(open as usize as *const u8, len), std::slice::from_raw_parts(twin as *const u8, len)) };
    a == b && a[len - 2..] == [0x0f, 0x05]
}

/// In the stop handler, on the frame `uc` of the interrupted thread: a program call that the
/// SIGSYS handler made safe but that the thread has not made yet, or that the kernel will make
/// again when the thread returns (a blocked read() that the stop signal interrupted, restarted
/// under SA_RESTART), would run in the exempt code, unchecked, on memory that a background
/// snapshot's instant protects again meanwhile (EFAULT). It continues in the twin of that code
/// instead: the call is dispatched again and made safe for the snapshot of the moment (or made
/// as it is, if none is being taken; the call's result then returns through the exempt code).
pub fn reroute(uc: *mut libc::ucontext_t) {
    let (open, sys) = open_part();
    let rip = *greg(uc, libc::REG_RIP) as u64;
    if (open..=sys).contains(&rip) {
        *greg(uc, libc::REG_RIP) = (ckpt_sud_twin_open as *const () as usize as u64 + (rip - open)) as i64;
    }
}

/// The exempt code: (start, length).
fn range() -> (u64, u64) {
    let b = ckpt_sud_begin as *const () as usize as u64;
    let e = ckpt_sud_end as *const () as usize as u64;
    (b, e - b)
}

/// A snapshot begins (on the checkpoint thread, before the threads are stopped): our SIGSYS
/// handler goes in (the program's is kept), and no handler of the program may block SIGSYS.
pub fn begin() {
    RAN.store(0, Ordering::Relaxed);
    DEFERRED.store(0, Ordering::Relaxed);
    ACTIVE.store(1, Ordering::Release);
    let mut old = [0u64; 4];
    let _ = syscall!(libc::SYS_rt_sigaction, libc::SIGSYS, 0, old.as_mut_ptr(), 8);
    if old[0] != on_sigsys as *const () as usize as u64 {
        for (p, v) in PROGRAM.iter().zip(old) {
            p.store(v, Ordering::Relaxed);
        }
    }
    let ours = [on_sigsys as *const () as usize as u64, (libc::SA_SIGINFO as u64) | SA_RESTORER, ckpt_sud_restorer as *const () as usize as u64, !0u64];
    let _ = syscall!(libc::SYS_rt_sigaction, libc::SIGSYS, ours.as_ptr(), 0, 8);
    INSTALLED.store(true, Ordering::Release);
    for sig in 1..=64 {
        if sig == libc::SIGSYS || sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut a = [0u64; 4];
        if syscall!(libc::SYS_rt_sigaction, sig, 0, a.as_mut_ptr(), 8).is_ok() && a[0] > 1 && a[3] & SIGSYS_BIT != 0 {
            a[3] &= !SIGSYS_BIT;
            let _ = syscall!(libc::SYS_rt_sigaction, sig, a.as_ptr(), 0, 8);
        }
    }
}

/// The snapshot is written: calls are made as the program makes them again (each thread turns
/// dispatch off at its next call), and calls that waited go ahead.
pub fn end() {
    ACTIVE.store(0, Ordering::Release);
    let _ = syscall!(libc::SYS_futex, ACTIVE.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
    if ON.load(Ordering::Acquire) == 0 {
        restore_program_handler();
    }
}

/// After a restart: the runtime's variables come from an image taken during a background
/// snapshot (each thread's `on`, the counts, our SIGSYS handler installed), but the kernel's
/// threads are new and none dispatches. Left as they were, the next snapshot did not turn
/// dispatch on for the threads it believed on: their calls were not made safe (a free() that
/// dropped protected heap pages unsaved left a damaged heap in the image). And the frames of
/// the restarted threads (`slots`) get back the SIGSYS bit their programs blocked (virtually,
/// while they dispatched).
pub fn after_restart(slots: &[crate::threads::Slot]) {
    for s in slots {
        if s.ucontext != 0 && slot(s.fs_base, false).is_some_and(|t| t.on.load(Ordering::Relaxed) && t.sys_blocked.load(Ordering::Relaxed)) {
            *frame_mask(s.ucontext as *mut libc::ucontext_t) |= SIGSYS_BIT;
        }
    }
    // Each slot keeps its thread (the same TLS) and the program's SIGSYS bit: a thread stopped
    // inside our handler, in the program's blocking call, returns through it (on_sigsys).
    for t in TH.iter() {
        t.sel.store(ALLOW, Ordering::Relaxed);
        t.on.store(false, Ordering::Relaxed);
    }
    ON.store(0, Ordering::Release);
    ACTIVE.store(0, Ordering::Release);
    restore_program_handler();
}

/// In the stop handler of a program thread (`uc`: its frame): turn dispatch on for it.
pub fn enable_self(uc: *mut libc::ucontext_t) {
    let Some(t) = slot(sys::thread_pointer(), true) else { return };
    t.sel.store(ALLOW, Ordering::Release);
    if !t.on.load(Ordering::Acquire) {
        let (b, len) = range();
        if syscall!(libc::SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_ON, b, len, t.sel.as_ptr()).is_err() {
            return;
        }
        t.on.store(true, Ordering::Release);
        ON.fetch_add(1, Ordering::AcqRel);
        keep_unblocked(t, frame_mask(uc));
    }
    // Dispatching already (the instant, or a thread that made no call since the last
    // snapshot): the frame's SIGSYS bit is ours, unblocked; the program's wish is the virtual
    // bit, which this frame must not overwrite (it did: a thread that blocked SIGSYS had it
    // unblocked after every background snapshot).
    return_exempt(uc);
}

/// The program's signal mask `m` in a frame of the calling thread, with its virtual SIGSYS bit
/// while the thread dispatches.
pub fn program_mask(m: u64) -> u64 {
    match slot(sys::thread_pointer(), false) {
        Some(t) if t.on.load(Ordering::Acquire) && t.sys_blocked.load(Ordering::Relaxed) => m | SIGSYS_BIT,
        _ => m,
    }
}

/// A frame of thread `t`, which dispatches, returns to mask `m`: SIGSYS unblocked, the
/// program's wish kept as the virtual bit.
fn keep_unblocked(t: &Th, m: &mut u64) {
    t.sys_blocked.store(*m & SIGSYS_BIT != 0, Ordering::Relaxed);
    *m &= !SIGSYS_BIT;
}

/// The calling thread is about to return to a frame whose mask the runtime sets itself (a call
/// re-issued after a stop, blocked.rs, puts back the mask the program had): if the thread
/// dispatches, SIGSYS stays unblocked there too.
pub fn returning_to(m: &mut u64) {
    if let Some(t) = slot(sys::thread_pointer(), false).filter(|t| t.on.load(Ordering::Acquire)) {
        keep_unblocked(t, m);
    }
}

/// The stop handler (frame `uc`) returns through our restorer, in the exempt range. A thread
/// that blocked SIGSYS when the first stop came (a worker that blocks every signal, the
/// runtime's own timer helper, a handler whose mask blocks it) runs the stop handler with
/// SIGSYS still blocked: the handler's own calls are let through, but its rt_sigreturn, made
/// from glibc's restorer once dispatch is on, was dispatched with SIGSYS blocked, and the kernel
/// killed the process with it. The frame's mask, which rt_sigreturn installs, has SIGSYS
/// unblocked (above).
fn return_exempt(uc: *mut libc::ucontext_t) {
    // SAFETY: `uc` is the ucontext of the kernel's rt_sigframe on this thread's stack; the word
    // just below it is the frame's return address (pretcode), where the handler returns to.
    unsafe { *(uc as *mut u64).sub(1) = ckpt_sud_restorer as *const () as usize as u64 };
}

/// Whether a snapshot is being taken (stopped threads turn dispatch on).
pub fn starting() -> bool {
    ACTIVE.load(Ordering::Acquire) != 0
}

fn frame_mask(uc: *mut libc::ucontext_t) -> &'static mut u64 {
    // SAFETY: the first 8 bytes of uc_sigmask are the kernel's sigset.
    unsafe { &mut *(std::ptr::addr_of_mut!((*uc).uc_sigmask) as *mut u64) }
}

fn greg(uc: *mut libc::ucontext_t, r: i32) -> &'static mut i64 {
    // SAFETY: gregs of a signal frame on this thread's stack.
    unsafe { &mut (*uc).uc_mcontext.gregs[r as usize] }
}

fn wait_end() {
    while ACTIVE.load(Ordering::Acquire) != 0 {
        let _ = syscall!(libc::SYS_futex, ACTIVE.as_ptr(), libc::FUTEX_WAIT, 1, 0, 0, 0);
    }
}

/// Wait for the snapshot's end, for a deferred call, with the stop signal deliverable: such a
/// call may wait through the snapshot's instant, whose stop must reach this thread too (it
/// waited with every signal blocked: the instant gave up after a second and the checkpoint was
/// a forked snapshot; a thread creating threads all the time defeated every background
/// snapshot). In the image the thread has not made the call yet; restarted, it makes it.
fn wait_end_stoppable() {
    let open: u64 = !(crate::sighooks::stop_bit() | SIGSYS_BIT);
    let all: u64 = !0;
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &open as *const u64, 0, 8);
    wait_end();
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, 0, 8);
}

/// Turn dispatch off for this thread; its frame's mask gets back the SIGSYS bit the program wanted.
fn off(t: &Th, uc: *mut libc::ucontext_t) {
    let _ = syscall!(libc::SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, DISPATCH_OFF, 0, 0, 0);
    // Also when a restart turned it off already (a deferred call waited through the instant).
    if t.sys_blocked.load(Ordering::Relaxed) {
        *frame_mask(uc) |= SIGSYS_BIT;
    }
    if t.on.swap(false, Ordering::AcqRel) && ON.fetch_sub(1, Ordering::AcqRel) == 1 && ACTIVE.load(Ordering::Acquire) == 0 {
        restore_program_handler();
    }
}

/// The program's own SIGSYS disposition goes back in once no thread dispatches.
fn restore_program_handler() {
    if INSTALLED.swap(false, Ordering::AcqRel) {
        let a: [u64; 4] = [0, 1, 2, 3].map(|i| PROGRAM[i].load(Ordering::Relaxed));
        let _ = syscall!(libc::SYS_rt_sigaction, libc::SIGSYS, a.as_ptr(), 0, 8);
    }
}

/// Make the call again from the program's own code once we return (dispatch is off by then).
fn rewind(uc: *mut libc::ucontext_t, nr: i64) {
    *greg(uc, libc::REG_RIP) -= 2;
    *greg(uc, libc::REG_RAX) = nr;
}

extern "C" fn on_sigsys(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let uc = uc as *mut libc::ucontext_t;
    let t = slot(sys::thread_pointer(), false);
    let prev = t.map(|t| t.sel.swap(ALLOW, Ordering::AcqRel));
    // SAFETY: the kernel's siginfo for this signal.
    let (code, arch) = unsafe { ((*info).si_code, sigsys_arch(info)) };
    let (Some(t), SYS_USER_DISPATCH) = (t, code) else {
        forward(sig, info, uc);
        if let (Some(t), Some(p)) = (t, prev) {
            t.sel.store(p, Ordering::Release);
        }
        return;
    };
    let nr = *greg(uc, libc::REG_RAX);
    let a: [u64; 6] = [libc::REG_RDI, libc::REG_RSI, libc::REG_RDX, libc::REG_R10, libc::REG_R8, libc::REG_R9].map(|r| *greg(uc, r) as u64);
    if arch != AUDIT_ARCH_X86_64 || ACTIVE.load(Ordering::Acquire) == 0 {
        wait_end();
        off(t, uc);
        rewind(uc, nr);
        return;
    }
    let kind = sudcalls::classify(nr, &a, &mut |p, l| crate::bgsnap::secure(p, l));
    if nr == libc::SYS_brk && a[0] != 0 {
        // SAFETY: brk(0) only reports the current break.
        let cur = unsafe { ckpt_sud_syscall(libc::SYS_brk, 0, 0, 0, 0, 0, 0) } as u64;
        if a[0] < cur {
            crate::bgsnap::secure(a[0], cur - a[0]);
        }
    }
    match kind {
        Kind::Defer => {
            DEFERRED.fetch_add(1, Ordering::Relaxed);
            wait_end_stoppable();
            off(t, uc);
            rewind(uc, nr);
            return;
        }
        Kind::SigReturn => {
            // The program's frame is at its rsp: it must not block SIGSYS either.
            let frame = *greg(uc, libc::REG_RSP) as *mut libc::ucontext_t;
            keep_unblocked(t, frame_mask(frame));
            *greg(uc, libc::REG_RIP) = ckpt_sud_restorer as *const () as usize as i64;
            *greg(uc, libc::REG_RAX) = libc::SYS_rt_sigreturn;
        }
        Kind::SigMask => *greg(uc, libc::REG_RAX) = sigmask(t, uc, &a),
        Kind::SigAction if a[0] == libc::SIGSYS as u64 => *greg(uc, libc::REG_RAX) = sigaction_sigsys(&a),
        Kind::SigAction => {
            // A handler of the program must not block SIGSYS: the mask it asks for, without it.
            let mut act: [u64; 4];
            let mut args = a;
            if a[1] != 0 {
                // SAFETY: the program's struct sigaction for this call (32 bytes for size 8).
                act = unsafe { std::ptr::read_unaligned(a[1] as *const [u64; 4]) };
                act[3] &= !SIGSYS_BIT;
                args[1] = act.as_ptr() as u64;
            }
            *greg(uc, libc::REG_RAX) = run(uc, nr, &args);
        }
        Kind::Run => *greg(uc, libc::REG_RAX) = run(uc, nr, &a),
    }
    RAN.fetch_add(1, Ordering::Relaxed);
    if !t.on.load(Ordering::Acquire) {
        // Dispatch ended for this thread during the call (a restart from an image taken while
        // the call blocked; or a signal handler's call after the snapshot, `off`): the frame
        // gets back the SIGSYS bit the program blocked, nothing will put it back later.
        if t.sys_blocked.load(Ordering::Relaxed) {
            *frame_mask(uc) |= SIGSYS_BIT;
        }
        return;
    }
    t.sel.store(BLOCK, Ordering::Release);
}

/// si_arch of a SIGSYS siginfo (after si_call_addr and si_syscall).
fn sigsys_arch(info: *const libc::siginfo_t) -> u32 {
    // SAFETY: the SIGSYS fields of the siginfo union: call address at 16, syscall at 24, arch at 28.
    unsafe { std::ptr::read_unaligned((info as *const u8).add(28) as *const u32) }
}

/// Make call `nr` for the program with its signal mask, dispatching what its signal handlers do.
fn run(uc: *mut libc::ucontext_t, nr: i64, a: &[u64; 6]) -> i64 {
    let t = slot(sys::thread_pointer(), false);
    let masks: [u64; 2] = [*frame_mask(uc) & !SIGSYS_BIT, !0];
    let call: [u64; 7] = [nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]];
    if let Some(t) = t {
        t.sel.store(BLOCK, Ordering::Release);
    }
    // SAFETY: the program's own call with its own arguments, from the exempt range; `call` and
    // `masks` are plain values on our stack, alive until it returns.
    let r = unsafe { ckpt_sud_call(call.as_ptr(), masks.as_ptr()) };
    if let Some(t) = t {
        t.sel.store(ALLOW, Ordering::Release);
    }
    r
}

/// rt_sigprocmask(how, set, oset, size) for the program: the frame's mask is what it returns to.
fn sigmask(t: &Th, uc: *mut libc::ucontext_t, a: &[u64; 6]) -> i64 {
    if a[3] != 8 {
        return -(libc::EINVAL as i64);
    }
    let m = frame_mask(uc);
    let cur = *m | if t.sys_blocked.load(Ordering::Relaxed) { SIGSYS_BIT } else { 0 };
    let new = if a[1] != 0 {
        // SAFETY: the program's sigset for this call.
        let set = unsafe { std::ptr::read_unaligned(a[1] as *const u64) };
        match a[0] as i32 {
            libc::SIG_BLOCK => Some(cur | set),
            libc::SIG_UNBLOCK => Some(cur & !set),
            libc::SIG_SETMASK => Some(set),
            _ => return -(libc::EINVAL as i64),
        }
    } else {
        None
    };
    if a[2] != 0 {
        crate::bgsnap::secure(a[2], 8);
        // SAFETY: the program's out-parameter, made writable just above.
        unsafe { std::ptr::write_unaligned(a[2] as *mut u64, cur) };
    }
    if let Some(n) = new {
        let n = crate::sighooks::sanitize_mask(n & !((1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1))));
        t.sys_blocked.store(n & SIGSYS_BIT != 0, Ordering::Relaxed);
        *m = n & !SIGSYS_BIT;
    }
    0
}

/// rt_sigaction(SIGSYS, act, oact, size): the program's disposition, kept aside while ours serves.
fn sigaction_sigsys(a: &[u64; 6]) -> i64 {
    if a[3] != 8 {
        return -(libc::EINVAL as i64);
    }
    let old: [u64; 4] = [0, 1, 2, 3].map(|i| PROGRAM[i].load(Ordering::Relaxed));
    if a[1] != 0 {
        // SAFETY: the program's struct sigaction.
        let new = unsafe { std::ptr::read_unaligned(a[1] as *const [u64; 4]) };
        for (p, v) in PROGRAM.iter().zip(new) {
            p.store(v, Ordering::Relaxed);
        }
    }
    if a[2] != 0 {
        // SAFETY: the program's out-parameter (made writable by classify).
        unsafe { std::ptr::write_unaligned(a[2] as *mut [u64; 4], old) };
    }
    0
}

/// A SIGSYS that is not ours (seccomp, kill): what the program's disposition says.
fn forward(sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::ucontext_t) {
    let handler = PROGRAM[0].load(Ordering::Relaxed);
    let flags = PROGRAM[1].load(Ordering::Relaxed);
    match handler {
        1 => {} // ignored
        0 => {
            // Default: the program dies of it, as it would have.
            restore_program_handler();
            let dfl = [0u64; 4];
            let _ = syscall!(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), 0, 8);
            let _ = sys::tgkill(sys::getpid(), sys::gettid(), sig);
            *frame_mask(uc) &= !SIGSYS_BIT;
        }
        h if flags & libc::SA_SIGINFO as u64 != 0 => {
            // SAFETY: the program's handler, called as the kernel would have.
            let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h as usize) };
            f(sig, info, uc as *mut libc::c_void);
        }
        h => {
            // SAFETY: as above, a plain handler.
            let f: extern "C" fn(i32) = unsafe { std::mem::transmute(h as usize) };
            f(sig);
        }
    }
}
