//! The hangup of a killed ckpt-run held back from the program's SIGHUP handler.
//!
//! When ckpt-run leads its terminal's session, its death makes the kernel hang the terminal up:
//! a SIGHUP (si_code SI_KERNEL) to the foreground process group, the program's. ckpt-run's
//! lifeline (ns spawn.rs, `kill_with_us`) makes the kernel SIGKILL that group first, but not when
//! another process holds ckpt-run's end of the lifeline pipe (one that opened /proc/PID/fd/N):
//! the hangup then comes first, and a handler that cleans up (vim removes its swap file, which
//! its image needs) runs before the namespace's SIGKILL, where natively (the program leading the
//! session itself) SIGKILL gives it no chance.
//!
//! So ckpt-run passes the program a directory fd on its own /proc/PID (opened outside the
//! namespace, where the program cannot see ckpt-run; `OUTER_PROC_VAR` names it), kept here as a
//! runtime fd (high, marked, close-on-exec: hidden from the program's fd listings and out of the
//! images). While it is there, a handler the program installs for SIGHUP is installed wrapped
//! (`gate`): a kernel SIGHUP that comes while ckpt-run is exiting (PF_EXITING, which the kernel
//! sets before it closes ckpt-run's files and hangs the terminal up) or gone waits there for the
//! SIGKILL that follows (init dies with ckpt-run, and the namespace with init), at most `HOLD_MS`,
//! then reaches the handler. Not when ckpt-run exits because the program ended and left processes
//! that live on (ns leftover.rs): it takes the name `ckpt_ns::ENDED_NAME` before it exits, and
//! once it is reaped the namespace's init tells (it is dying too, or lives on); a hangup then
//! reaches the handler at once, as natively when a session leader exits. Any other SIGHUP (a real hangup, which ckpt-run forwards while it
//! lives, a kill) reaches it at once. The program reads back its own handler.
//!
//! ckpt-restart does the same for the restarted program (its restarter hands the fd on in
//! `RestartInfo::outer_proc_fd`); the restarters of the other processes of a restarted tree
//! are made by the first one's (clone3) with the fd and the variable, and hand it on alike
//! (restarter outerproc.rs). Forked children keep the fd and the gate; a program a managed
//! process execs in place, or one a member of a tree starts with posix_spawn (system and popen
//! too), gets them again through the variable (launch.rs): the fd is let through that exec or
//! spawn (`through_exec`; a child another thread forks meanwhile closes it on exec again,
//! `after_fork`; a program another thread starts outside the tree at that moment, a ckpt-run of
//! its own, may inherit it). A process that shares another's fd table (clone with CLONE_FILES)
//! keeps its parent's fd and gate in a run; restarted, its restarter restores no fds, and takes
//! a copy of the fd the table's owner keeps there once the owner restored the table (restarter
//! outerproc.rs `of_table`): its runtime moves and marks that copy as its own (the owner's
//! runtime does the same with the owner's, so neither takes the other's from under it), hidden
//! from the program's fd listings and out of images like the table's other runtime fds.
//!
//! A handler installed with a raw rt_sigaction system call passes no hook: the runtime finds it
//! in the kernel and puts it behind the gate at each checkpoint (`at_checkpoint`, while the
//! program's threads are stopped, before the image reads the dispositions) and after a restart
//! (`catch_up`); sigaction reads the program's handler back. Not covered: such a handler
//! installed since the latest checkpoint or restart (it runs on the hangup as before; it was not
//! there when the newest image was taken), and a raw rt_sigaction read of the disposition, which
//! shows the gate once it is in front (only a system call the runtime sees could hide it, and
//! syscall user dispatch on every call costs each one a signal: sud.rs is on only during a
//! background snapshot).

use crate::kstate;
use crate::sys::{self, syscall};
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use ckpt_ns::OUTER_PROC_VAR;

/// The fd on ckpt-run's /proc/PID directory (-1: none, the gate is not armed).
static OUTER: AtomicI32 = AtomicI32::new(-1);
/// The program's SIGHUP handler behind the gate, and whether it takes a siginfo.
static HANDLER: AtomicUsize = AtomicUsize::new(0);
static SIGINFO: AtomicBool = AtomicBool::new(false);

/// The longest a kernel hangup waits for the SIGKILL once ckpt-run is exiting.
const HOLD_MS: u32 = 5000;
const SI_KERNEL: i32 = 0x80;
/// PF_EXITING (include/linux/sched.h), in the flags field of /proc/PID/stat.
const PF_EXITING: u64 = 0x4;

/// Constructor: take the fd ckpt-run passed, if any (the variable is removed either way), when
/// this is the process ckpt-run `outer` started in its namespace.
pub fn take(env: impl Fn(&[u8]) -> Option<Vec<u8>>, outer: Option<i32>) {
    let Some(v) = env(OUTER_PROC_VAR) else { return };
    // SAFETY: a NUL-terminated name; the constructor runs on one thread.
    unsafe { libc::unsetenv(OUTER_PROC_VAR.as_ptr() as *const libc::c_char) };
    if let (Some(fd), Some(outer)) = (std::str::from_utf8(&v).ok().and_then(|s| s.parse::<i32>().ok()), outer) {
        adopt(fd, outer);
    }
}

/// Keep `fd` as the gate's if it is a directory of /proc whose stat names `outer` (a shell
/// keeps its own copy of the environment and passes the variable on to its children, where that
/// number is some other fd, or none).
fn adopt(fd: i32, outer: i32) {
    if fd <= 2 || !sys::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) {
        return;
    }
    let Ok(stat) = syscall!(libc::SYS_openat, fd, c"stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) else { return };
    let mut buf = [0u8; 32];
    let n = syscall!(libc::SYS_read, stat, buf.as_mut_ptr(), buf.len()).unwrap_or(0) as usize;
    sys::close(stat as i32);
    if buf[..n.min(buf.len())].starts_with(format!("{outer} (").as_bytes()) {
        OUTER.store(sys::own(sys::move_high(fd)), Ordering::Release);
    }
}

/// After a restart: the fd of the image's time is not there; the outer ckpt-restart's (`fd`,
/// -1: none), handed on by the restarter, is. A SIGHUP handler the program had goes behind the
/// gate (it may have been installed while there was none).
pub fn after_restart(fd: i64, outer: i32) {
    OUTER.store(-1, Ordering::Release);
    if let (Ok(fd), true) = (i32::try_from(fd), outer > 0) {
        adopt(fd, outer);
    }
    catch_up();
}

/// At each checkpoint, on the checkpoint thread while the program's threads are stopped (before
/// the dispositions are read for the image): a handler the program installed with a raw
/// rt_sigaction system call, which no hook saw, goes behind the gate from now on.
pub fn at_checkpoint() {
    catch_up();
}

/// While the gate is armed: a SIGHUP handler in the kernel that is not the gate (installed by a
/// raw system call, or of the image's time) goes behind it; the program reads it back through
/// sigaction. Not when SIGHUP is one of the runtime's signals (its handler is the runtime's).
fn catch_up() {
    if armed() && !crate::is_reserved(libc::SIGHUP) {
        rewrap(libc::SIGHUP, 0);
    }
}

/// Whether the gate wraps SIGHUP handlers.
pub fn armed() -> bool {
    OUTER.load(Ordering::Acquire) >= 0
}

/// Whether SIGHUP's dispositions go through here: the gate wraps handlers, or has wrapped one
/// (a program restarted without the fd keeps its handler behind the gate, and reads it back).
pub fn involved() -> bool {
    armed() || HANDLER.load(Ordering::Acquire) != 0
}

/// The name of the variable that hands the fd on (without its NUL).
pub fn var_name() -> &'static [u8] {
    &OUTER_PROC_VAR[..OUTER_PROC_VAR.len() - 1]
}

/// For a program a managed process execs in place or spawns (launch.rs): the variable that
/// hands the fd on to its runtime (None: not armed).
pub fn exec_var() -> Option<std::ffi::CString> {
    let fd = OUTER.load(Ordering::Acquire);
    (fd >= 0 && sys::still_own(fd)).then(|| std::ffi::CString::new([var_name(), b"=", fd.to_string().as_bytes()].concat()).ok()).flatten()
}

/// Let the fd through an exec in place or a spawn (`on`), or close it on exec again (the exec
/// failed, the spawn is done).
pub fn through_exec(on: bool) {
    let fd = OUTER.load(Ordering::Acquire);
    if fd >= 0 && sys::still_own(fd) {
        let _ = syscall!(libc::SYS_fcntl, fd, libc::F_SETFD, if on { 0 } else { libc::FD_CLOEXEC });
    }
}

/// In a forked child (of its own fd table): the fd closes on exec, also when the fork came while
/// another thread let it through a spawn.
pub fn after_fork() {
    through_exec(false);
}

pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && OUTER.load(Ordering::Relaxed) == fd
}

/// Whether ckpt-run is exiting or gone and the namespace is being killed with it
/// (async-signal-safe: system calls and stack buffers). Not when it exits because the program
/// ended and left processes that live on (ns `leftover`): it takes the name `ENDED_NAME` first;
/// once it is reaped, the namespace's init (pid 1 here) tells: it is dying with ckpt-run (its
/// parent-death signal came before ckpt-run could be reaped) or it lives on.
fn outer_ending() -> bool {
    let dir = OUTER.load(Ordering::Acquire);
    if dir < 0 || !sys::still_own(dir) {
        return false;
    }
    let mut buf = [0u8; 512];
    let Some(text) = read_stat(dir, &mut buf) else {
        return init_dying(); // reaped: its /proc directory is empty
    };
    let close = text.iter().rposition(|&b| b == b')').unwrap_or(0);
    let name = text.iter().position(|&b| b == b'(').map_or(&[][..], |open| &text[(open + 1).min(close)..close]);
    if name == ckpt_ns::ENDED_NAME.to_bytes() {
        return false;
    }
    exiting(text)
}

/// The text of the stat file in /proc directory `dir` (None: it cannot be read: reaped).
fn read_stat(dir: i32, buf: &mut [u8; 512]) -> Option<&[u8]> {
    let fd = syscall!(libc::SYS_openat, dir, c"stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0).ok()?;
    let n = syscall!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()).unwrap_or(0) as usize;
    sys::close(fd as i32);
    let text = &buf[..n.min(buf.len())];
    text.contains(&b')').then_some(text)
}

/// Whether the process whose stat `text` is exits (zombie, dead, or PF_EXITING).
fn exiting(text: &[u8]) -> bool {
    let state = kstate::stat_state(text).unwrap_or(b'X');
    // Field 9: the task's flags.
    let flags: u64 = kstate::stat_number(text, 9).unwrap_or(0);
    matches!(state, b'Z' | b'X' | b'x') || flags & PF_EXITING != 0
}

/// Whether the namespace's init (pid 1) is gone, exiting, or has a SIGKILL pending.
fn init_dying() -> bool {
    let mut buf = [0u8; 512];
    let Ok(fd) = syscall!(libc::SYS_openat, libc::AT_FDCWD, c"/proc/1/stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) else { return true };
    let n = syscall!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()).unwrap_or(0) as usize;
    sys::close(fd as i32);
    let text = &buf[..n.min(buf.len())];
    if !text.contains(&b')') || exiting(text) {
        return true;
    }
    let mut status = [0u8; 4096];
    let Ok(fd) = syscall!(libc::SYS_openat, libc::AT_FDCWD, c"/proc/1/status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) else { return true };
    let n = syscall!(libc::SYS_read, fd, status.as_mut_ptr(), status.len()).unwrap_or(0) as usize;
    sys::close(fd as i32);
    let kill = 1u64 << (libc::SIGKILL - 1);
    ["SigPnd:", "ShdPnd:"].iter().any(|key| kstate::value(&status[..n.min(status.len())], key, 16).is_some_and(|m| m & kill != 0))
}

/// The real handler of SIGHUP while the program has one of its own.
extern "C" fn gate(sig: c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo for this handler (SA_SIGINFO).
    let code = if info.is_null() { 0 } else { unsafe { (*info).si_code } };
    if code == SI_KERNEL && outer_ending() {
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
        for _ in 0..HOLD_MS / 10 {
            let _ = syscall!(libc::SYS_nanosleep, &pause as *const libc::timespec, 0);
        }
    }
    let h = HANDLER.load(Ordering::Acquire);
    if h <= 1 {
        return;
    }
    if SIGINFO.load(Ordering::Acquire) {
        // SAFETY: the program's SA_SIGINFO handler, with the kernel's siginfo and ucontext.
        let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
        f(sig, info, uc);
    } else {
        // SAFETY: the program's plain handler.
        let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}

fn gate_addr() -> usize {
    gate as *const () as usize
}

/// `act` as the program sees it: the gate shows as the program's handler.
fn shown(mut act: libc::sigaction, handler: usize, siginfo: bool) -> libc::sigaction {
    if act.sa_sigaction == gate_addr() {
        act.sa_sigaction = handler;
        if !siginfo {
            act.sa_flags &= !libc::SA_SIGINFO;
        }
    }
    act
}

type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;

/// sigaction(SIGHUP, act, old) while `involved`: a handler goes in behind the gate while it is
/// armed; the program reads back its own.
pub fn sigaction(real: SigactionFn, act: Option<&libc::sigaction>, old: *mut libc::sigaction) -> c_int {
    let (h, si) = (HANDLER.load(Ordering::Acquire), SIGINFO.load(Ordering::Acquire));
    // SAFETY: all-zero is a valid sigaction.
    let mut prev: libc::sigaction = unsafe { std::mem::zeroed() };
    let r = match act {
        Some(a) if armed() && a.sa_sigaction > 1 && a.sa_sigaction != gate_addr() => {
            HANDLER.store(a.sa_sigaction, Ordering::Release);
            SIGINFO.store(a.sa_flags & libc::SA_SIGINFO != 0, Ordering::Release);
            let mut w = *a;
            w.sa_sigaction = gate_addr();
            w.sa_flags |= libc::SA_SIGINFO;
            // SAFETY: libc's sigaction with valid pointers.
            unsafe { real(libc::SIGHUP, &w, &mut prev) }
        }
        // SAFETY: as above.
        Some(a) => unsafe { real(libc::SIGHUP, a, &mut prev) },
        // SAFETY: as above.
        None => unsafe { real(libc::SIGHUP, std::ptr::null(), &mut prev) },
    };
    if r == 0 && !old.is_null() {
        // SAFETY: the caller's out-parameter.
        unsafe { *old = shown(prev, h, si) };
    }
    r
}

/// After libc's signal, bsd_signal, sysv_signal or sigset installed a SIGHUP disposition
/// directly (they do not go through our sigaction): put a handler behind the gate, and show the
/// previous one (`prev`, what libc returned) as the program's.
pub fn rewrap(sig: c_int, prev: libc::sighandler_t) -> libc::sighandler_t {
    if sig != libc::SIGHUP || !involved() {
        return prev;
    }
    let before = HANDLER.load(Ordering::Acquire);
    let real = crate::hooks::real_sigaction();
    // SAFETY: all-zero is a valid sigaction.
    let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: reading the disposition with libc's sigaction.
    if armed() && unsafe { real(sig, std::ptr::null(), &mut now) } == 0 && now.sa_sigaction > 1 && now.sa_sigaction != gate_addr() {
        sigaction(real, Some(&now), std::ptr::null_mut());
    }
    if prev == gate_addr() {
        before
    } else {
        prev
    }
}
