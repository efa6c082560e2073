//! What a new program image inherits: the signal mask of the thread that runs it. Program threads
//! block the trigger signals for real (selfsig.rs); a program they exec or spawn must get the
//! mask the program asked for instead. The exec family (execve, execv, execvp, execvpe, fexecve
//! and execveat: their hooks are in launch.rs, which calls `handed_over`; the variadic execl,
//! execle and execlp here, through trampolines), posix_spawn and posix_spawnp (with
//! POSIX_SPAWN_SETSIGMASK set to the program's view when it did not set it), system and popen
//! (glibc spawns their shell with the caller's mask) hand over the program's view of the mask.
//! In a member of the process tree, system() and popen() are the runtime's own (shellcmd.rs),
//! whose shell is a member too.
//! A forked child gets it back in the runtime's fork handler (sighooks.rs).
//!
//! In a member of the process tree, every program it starts must be a member too: posix_spawn
//! and posix_spawnp pass the tree's settings in the child's environment (launch.rs), and vfork
//! is a fork (as DMTCP does): a vfork child runs in its parent's memory, where the runtime can
//! neither be a member of its own nor prepare the exec (the exec hooks allocate); a forked child
//! is a member from its first instruction and its exec passes the settings on. The program sees
//! fork semantics, which POSIX allows for vfork (the parent may run before the child execs).

use crate::hooks::RealFn;
use crate::sys::syscall;
use std::ffi::{c_char, c_int};

static REAL_POSIX_SPAWN: RealFn = RealFn::new(b"posix_spawn\0");
static REAL_POSIX_SPAWNP: RealFn = RealFn::new(b"posix_spawnp\0");
static REAL_SYSTEM: RealFn = RealFn::new(b"system\0");
static REAL_POPEN: RealFn = RealFn::new(b"popen\0");
static REAL_PCLOSE: RealFn = RealFn::new(b"pclose\0");
static REAL_VFORK: RealFn = RealFn::new(b"vfork\0");

pub fn resolve() {
    for f in [
        &REAL_POSIX_SPAWN,
        &REAL_POSIX_SPAWNP,
        &REAL_SYSTEM,
        &REAL_POPEN,
        &REAL_PCLOSE,
        &REAL_VFORK,
    ] {
        f.get();
    }
}

/// The trigger signals the calling thread blocks only because the runtime wants them.
fn forced() -> u64 {
    crate::selfsig::triggers() & !crate::selfsig::vblocked()
}

/// Give the calling thread the mask the program asked for (before it execs or spawns).
fn hand_over() -> u64 {
    let f = forced();
    if f != 0 {
        let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK, &f as *const u64, 0, 8);
    }
    f
}

/// Take the trigger signals back (the exec failed, or the spawn is done).
fn take_back(f: u64) {
    if f != 0 {
        let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &f as *const u64, 0, 8);
    }
}

/// Run `f` (an exec, a spawn) with the program's own view of the mask.
pub fn handed_over<R>(f: impl FnOnce() -> R) -> R {
    let forced = hand_over();
    let r = f();
    take_back(forced);
    r
}

/// Run `f`, an exec of this process, with the program's own view of the mask and the runtime's
/// stop signal blocked: a checkpoint of the tree that asks this thread to stop while it is in
/// execve leaves that signal pending across the exec, where the new image has no handler for it
/// yet: its default action killed the new program before its first instruction (a child of a
/// fork storm died of signal 63 now and then). Blocked, it waits for the new image's runtime,
/// which unblocks it once its handler is in (`stop_signal_back`); a failed exec unblocks it here.
pub fn exec_handed_over<R>(f: impl FnOnce() -> R) -> R {
    let stop = crate::sighooks::stop_bit();
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &stop as *const u64, 0, 8);
    let r = handed_over(f);
    stop_signal_back();
    r
}

/// Unblock the runtime's stop signal in the calling thread (its handler is installed).
pub fn stop_signal_back() {
    let stop = crate::sighooks::stop_bit();
    let _ = syscall!(libc::SYS_rt_sigprocmask, libc::SIG_UNBLOCK, &stop as *const u64, 0, 8);
}

type Argv = *const *const c_char;
// The variadic execl, execle, execlp: glibc's own make its internal execve, which no hook sees,
// so a member of the process tree that called them lost the tree's settings (its program ran
// without the runtime: zdtm dumpable02) and the program's signal mask. Their arguments (the
// first five in registers, the rest on the caller's stack) are gathered into an argv here and
// the call made through the execv, execve and execvp hooks (launch.rs), which do both.
macro_rules! exec_trampoline {
    ($name:ident, $which:literal) => {
        /// # Safety
        /// libc's contract for this variadic exec function.
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name() {
            std::arch::naked_asm!(
                // The variadic arguments 0-4 (after the path) as an array on our stack; the
                // stack then stays 16-byte aligned for the call.
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                "mov rsi, rdi",
                "mov rdx, rsp",
                // The caller's stack arguments: above our five and the return address.
                "lea rcx, [rsp + 48]",
                concat!("mov edi, ", $which),
                "call {variadic}",
                "add rsp, 40",
                "ret",
                variadic = sym exec_variadic,
            )
        }
    };
}

exec_trampoline!(execl, 0);
exec_trampoline!(execle, 1);
exec_trampoline!(execlp, 2);

/// For the trampolines: the arguments up to their NULL as an argv (and, for execle, the
/// environment after it), made through the exec hooks; returns only if the exec failed.
///
/// # Safety
/// `regs` holds the variadic arguments 0-4 and `stack` the next ones, as the caller passed
/// them (a NULL-terminated list of strings, then execle's envp).
unsafe extern "C" fn exec_variadic(which: u32, path: *const c_char, regs: *const usize, stack: *const usize) -> c_int {
    // SAFETY: reading the caller's arguments in order, up to the ones it passed (see above).
    let arg = |i: usize| unsafe { if i < 5 { *regs.add(i) } else { *stack.add(i - 5) } };
    let mut argv: Vec<*const c_char> = Vec::new();
    loop {
        let a = arg(argv.len()) as *const c_char;
        argv.push(a);
        if a.is_null() {
            break;
        }
    }
    // SAFETY: libc's contract for execv, execve and execvp, with the caller's arguments.
    unsafe {
        match which {
            0 => crate::launch::execv(path, argv.as_ptr()),
            1 => crate::launch::execve(path, argv.as_ptr(), arg(argv.len()) as Argv),
            _ => crate::launch::execvp(path, argv.as_ptr()),
        }
    }
}

type SpawnFn = unsafe extern "C" fn(*mut libc::pid_t, *const c_char, *const libc::posix_spawn_file_actions_t, *const libc::posix_spawnattr_t, Argv, Argv) -> c_int;

/// posix_spawn(p): unless the program set the child's mask itself, set it to its view of ours;
/// in a member of the process tree the child gets the tree's settings too (launch.rs).
unsafe fn spawn(
    real: &RealFn,
    pid: *mut libc::pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    // SAFETY: forwarding to libc.
    let f = unsafe { std::mem::transmute::<usize, SpawnFn>(real.get()) };
    crate::launch::spawn_with(envp, |envp| {
        if forced() == 0 {
            // SAFETY: as for libc.
            return unsafe { f(pid, path, fa, attr, argv, envp) };
        }
        // SAFETY: posix_spawnattr_t is plain data (glibc); a copy, or a fresh one, is ours to change.
        unsafe {
            let mut a: libc::posix_spawnattr_t = std::mem::zeroed();
            if attr.is_null() {
                libc::posix_spawnattr_init(&mut a);
            } else {
                a = std::ptr::read(attr);
            }
            let mut flags: libc::c_short = 0;
            libc::posix_spawnattr_getflags(&a, &mut flags);
            if flags as c_int & libc::POSIX_SPAWN_SETSIGMASK == 0 {
                let mut mask: libc::sigset_t = std::mem::zeroed();
                crate::sighooks::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
                libc::posix_spawnattr_setsigmask(&mut a, &mask);
                libc::posix_spawnattr_setflags(&mut a, (flags as c_int | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short);
            }
            f(pid, path, fa, &a, argv, envp)
        }
    })
}

/// # Safety
/// libc's contract for posix_spawn.
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    // SAFETY: as for libc.
    unsafe { spawn(&REAL_POSIX_SPAWN, pid, path, fa, attr, argv, envp) }
}

/// # Safety
/// libc's contract for posix_spawnp.
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const c_char,
    fa: *const libc::posix_spawn_file_actions_t,
    attr: *const libc::posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    // SAFETY: as for libc.
    unsafe { spawn(&REAL_POSIX_SPAWNP, pid, file, fa, attr, argv, envp) }
}

/// # Safety
/// libc's contract for system. (While it waits for the shell, a trigger signal may be taken on
/// this thread: its handler only passes the request on, and the wait restarts.)
#[no_mangle]
pub unsafe extern "C" fn system(cmd: *const c_char) -> c_int {
    if crate::is_active() && crate::tree::is_member() {
        // SAFETY: as for libc; the shell is a member of the tree (shellcmd.rs).
        return unsafe { crate::shellcmd::system(cmd) };
    }
    // SAFETY: forwarding to libc.
    handed_over(|| unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(*const c_char) -> c_int>(REAL_SYSTEM.get())(cmd) })
}

/// # Safety
/// libc's contract for popen.
#[no_mangle]
pub unsafe extern "C" fn popen(cmd: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    if crate::is_active() && crate::tree::is_member() {
        // SAFETY: as for libc; the shell is a member of the tree (shellcmd.rs).
        return unsafe { crate::shellcmd::popen(cmd, mode) };
    }
    type F = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
    // SAFETY: forwarding to libc.
    handed_over(|| unsafe { std::mem::transmute::<usize, F>(REAL_POPEN.get())(cmd, mode) })
}

/// # Safety
/// libc's contract for pclose.
#[no_mangle]
pub unsafe extern "C" fn pclose(f: *mut libc::FILE) -> c_int {
    // SAFETY: as for libc.
    if let Some(status) = unsafe { crate::shellcmd::pclose(f) } {
        return status;
    }
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, unsafe extern "C" fn(*mut libc::FILE) -> c_int>(REAL_PCLOSE.get())(f) }
}

/// # Safety
/// libc's contract for vfork. A tail jump to libc's vfork or fork: the child returns to our
/// caller, never into a frame of ours (which a vfork child would overwrite for its parent).
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn vfork() -> libc::pid_t {
    std::arch::naked_asm!(
        // Keep the stack 16-byte aligned for the call; no argument registers to save.
        "sub rsp, 8",
        "call {pick}",
        "add rsp, 8",
        "jmp rax",
        pick = sym vfork_target,
    )
}

/// libc's function a vfork runs: fork in a member of the process tree, else vfork.
extern "C" fn vfork_target() -> usize {
    let real = REAL_VFORK.get();
    if real == 0 || (crate::is_active() && crate::tree::is_member()) {
        libc::fork as *const () as usize
    } else {
        real
    }
}
