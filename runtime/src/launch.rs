//! The settings `ckpt-run` passed (`ckpt_image::Launch`, in the private variable
//! `__CKPT_LAUNCH`), and giving the program back its own environment.
//!
//! In the constructor, before `main`: the variable is read and removed, and LD_PRELOAD goes back
//! to the user's own value (or away), so that `getenv` in the program, and the environment its
//! children inherit, are what `ckpt-run` was started with: a `ckpt-run` the program starts is
//! a run of its own, and children do not load the runtime unless the user preloads it. The
//! settings stay here, in memory (and so in every image): a program that execs another in its
//! own process passes them on (the exec hooks below).

use crate::hooks::RealFn;
use crate::{gate, sys};
use ckpt_image::{Launch, LAUNCH_VAR};
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

static LAUNCH: AtomicPtr<Launch> = AtomicPtr::new(std::ptr::null_mut());
/// The value of `LAUNCH_VAR` this process was started with (a shell such as bash keeps its own
/// copy of the environment, with the variable still in it, and passes it on).
static RECEIVED: AtomicPtr<Vec<u8>> = AtomicPtr::new(std::ptr::null_mut());

/// The settings of the run that started this process (None: not started by ckpt-run).
pub fn get() -> Option<&'static Launch> {
    // SAFETY: LAUNCH is set once, in the constructor, to a leaked Box, and never freed.
    unsafe { LAUNCH.load(Ordering::Acquire).as_ref() }
}

/// Read and remove `__CKPT_LAUNCH`, restore LD_PRELOAD, and keep the settings. Called from the
/// constructor (one thread; libc's setenv and malloc are safe here). Returns the settings.
pub fn take(env: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Option<&'static Launch> {
    let var = CString::new(LAUNCH_VAR).ok()?;
    let raw = env(var.as_bytes_with_nul())?;
    RECEIVED.store(Box::into_raw(Box::new(raw.clone())), Ordering::Release);
    // SAFETY: a valid NUL-terminated name; one thread.
    unsafe { libc::unsetenv(var.as_ptr()) };
    let launch = Launch::decode(&raw)?;
    // LD_PRELOAD as ckpt-run left it goes back to the user's; anything else someone set since
    // is left alone.
    if env(b"LD_PRELOAD\0").as_deref() == Some(launch.preload.as_slice()) {
        let name = c"LD_PRELOAD".as_ptr();
        match launch.preload_user.as_ref().and_then(|v| CString::new(v.clone()).ok()) {
            // SAFETY: valid NUL-terminated strings; one thread.
            Some(v) => unsafe { libc::setenv(name, v.as_ptr(), 1) },
            // SAFETY: as above.
            None => unsafe { libc::unsetenv(name) },
        };
    }
    let leaked: &'static Launch = Box::leak(Box::new(launch));
    LAUNCH.store(leaked as *const Launch as *mut Launch, Ordering::Release);
    Some(leaked)
}

/// Whether settings received at start are for this process: the one ckpt-run (or a member
/// exec'ing in place) started, or a member's posix_spawn child (its parent is that member).
pub fn is_ours(l: &Launch) -> bool {
    l.pid == sys::getpid() || (l.tree_child && l.spawner > 0 && sys::syscall!(libc::SYS_getppid) == Ok(l.spawner as _))
}

/// The real pid of the managed process (0: none): the pid ckpt-run started it with, or the
/// restarter's after a restart. A vfork child shares our memory but not this pid.
static MANAGED_PID: AtomicI32 = AtomicI32::new(0);

pub fn set_managed(pid: i32) {
    MANAGED_PID.store(pid, Ordering::Release);
}

// ---- exec in place ----
//
// A program that replaces itself (a wrapper script's `exec app`) stays managed: the new
// program gets the preload and the settings back in its environment (with this pid), and its
// runtime removes them again before its main. Outside a process tree, forked children are not
// managed (they exec with the environment they have); in a tree a forked child is a member and
// execs as above, and a program a member spawns (posix_spawn) gets the settings too
// (`spawn_with`). The variadic execl, execlp and execle hand over through spawnhooks.rs.

static REAL_EXECVE: RealFn = RealFn::new(b"execve\0");
static REAL_EXECVPE: RealFn = RealFn::new(b"execvpe\0");
static REAL_FEXECVE: RealFn = RealFn::new(b"fexecve\0");
static REAL_EXECVEAT: RealFn = RealFn::new(b"execveat\0");

pub(crate) type Argv = *const *const c_char;
type ExecveFn = unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, Argv, Argv) -> c_int;
type ExecveatFn = unsafe extern "C" fn(c_int, *const c_char, Argv, Argv, c_int) -> c_int;

extern "C" {
    static environ: Argv;
}

pub fn resolve() {
    for f in [&REAL_EXECVE, &REAL_EXECVPE, &REAL_FEXECVE, &REAL_EXECVEAT] {
        f.get();
    }
}

/// An environment block: the strings and the NULL-terminated array pointing at them.
struct EnvBlock {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

/// The runtime's own path: the first entry of the preload ckpt-run set.
pub(crate) fn runtime_path(l: &Launch) -> &[u8] {
    match &l.preload_user {
        Some(u) if !u.is_empty() && l.preload.ends_with(u) && l.preload.len() > u.len() => &l.preload[..l.preload.len() - u.len() - 1],
        _ => &l.preload,
    }
}

/// Who runs the program the settings are passed to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// This process, exec'ing in place.
    InPlace,
    /// A child this member of the tree spawns (posix_spawn): a member of the tree too.
    Spawned,
}

/// `envp` without ckpt's variables, plus the preload (before the program's own) and the
/// settings, for a program this managed process execs in place or spawns.
fn managed_env(l: &Launch, envp: Argv, next: Next) -> EnvBlock {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut user_preload: Option<Vec<u8>> = None;
    let mut i = 0;
    while !envp.is_null() {
        // SAFETY: envp is a NULL-terminated array of C strings (the caller's contract).
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: as above.
        let e = unsafe { CStr::from_ptr(p) }.to_bytes();
        if let Some(v) = e.strip_prefix(b"LD_PRELOAD=") {
            user_preload = Some(v.to_vec());
        } else if !is_var(e, LAUNCH_VAR.as_bytes()) && !is_var(e, crate::hupgate::var_name()) {
            kept.push(e);
        }
        i += 1;
    }
    let mut preload = runtime_path(l).to_vec();
    if let Some(u) = user_preload.as_ref().filter(|u| !u.is_empty()) {
        preload.push(b':');
        preload.extend_from_slice(u);
    }
    // A child of the tree passes on its membership; it runs no timer (the root's takes the
    // sets) but keeps the interval, for when it is the tree's root (the program ended).
    let child = next == Next::Spawned || crate::tree::is_child();
    let interval_ms = l.interval_ms;
    // A spawned child's pid is not known yet: it is the child of this process.
    let (pid, spawner) = if next == Next::Spawned { (0, sys::getpid()) } else { (sys::getpid(), 0) };
    let mut next = Launch { pid, spawner, preload: preload.clone(), preload_user: user_preload, tree_child: child, interval_ms, ..l.clone() };
    // After a restart the tree's coordinator is the restarter's (named by its outer pid), not
    // the first run's: a program exec'd with the first run's could not join the tree, and every
    // later checkpoint of the tree waited for it and failed.
    if let Some((outer, dev, ino)) = crate::ids::for_launch() {
        (next.outer_pid, next.dir_dev, next.dir_ino) = (outer, dev, ino);
    }
    let mut strings: Vec<CString> = kept.iter().filter_map(|e| CString::new(*e).ok()).collect();
    strings.extend(CString::new([b"LD_PRELOAD=".as_slice(), &preload].concat()).ok());
    strings.extend(CString::new(format!("{LAUNCH_VAR}={}", next.encode())).ok());
    // The fd on the outer process's /proc directory goes along, through the exec or the spawn
    // (`spawn_with`); a copy of the variable the program's environment kept (a shell's) is
    // left out above: it named some other fd.
    strings.extend(crate::hupgate::exec_var());
    let ptrs = strings.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
    EnvBlock { _strings: strings, ptrs }
}

/// Whether environment entry `e` is variable `name`'s.
fn is_var(e: &[u8], name: &[u8]) -> bool {
    e.starts_with(name) && e.get(name.len()) == Some(&b'=')
}

/// Whether `envp` holds `LAUNCH_VAR` with settings other than the ones we were started with: a
/// ckpt-run's for the program it execs.
fn has_launch(envp: Argv) -> bool {
    // SAFETY: RECEIVED is set once, in the constructor, to a leaked Box, and never freed.
    let ours = unsafe { RECEIVED.load(Ordering::Acquire).as_ref() };
    let mut i = 0;
    while !envp.is_null() {
        // SAFETY: envp is a NULL-terminated array of C strings (the caller's contract).
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            return false;
        }
        // SAFETY: as above.
        let e = unsafe { CStr::from_ptr(p) }.to_bytes();
        if is_var(e, LAUNCH_VAR.as_bytes()) {
            return ours.is_none_or(|o| &e[LAUNCH_VAR.len() + 1..] != o.as_slice());
        }
        i += 1;
    }
    false
}

/// Run `exec` with `envp`, or, in the managed process, with `managed_env(envp)`.
/// Either way the new image gets the program's own signal mask (spawnhooks.rs).
fn exec_with(envp: Argv, exec: impl FnOnce(Argv) -> c_int) -> c_int {
    let managed = crate::is_active() && MANAGED_PID.load(Ordering::Acquire) == sys::getpid();
    // An environment with settings of its own is a ckpt-run starting a run of its own.
    let Some(l) = get().filter(|_| managed && !has_launch(envp)) else { return crate::spawnhooks::handed_over(|| exec(envp)) };
    let block = {
        let _g = gate::enter();
        managed_env(l, envp, Next::InPlace)
    };
    crate::hupgate::through_exec(true);
    let r = crate::spawnhooks::exec_handed_over(|| exec(block.ptrs.as_ptr()));
    // The exec failed: the caller gets its errno (our allocator makes raw system calls only).
    crate::hupgate::through_exec(false); // (a raw system call: errno stays the exec's)
    let _g = gate::enter();
    drop(block);
    r
}

/// An exec of `file` (path or name) with `argv` and `envp` through `exec_with`; an exec of
/// srun in a member of a tree inside a Slurm job may be rewritten first (srunjoin.rs).
fn exec_file(file: *const c_char, argv: Argv, envp: Argv, exec: impl FnOnce(Argv, Argv) -> c_int) -> c_int {
    let managed = crate::is_active() && MANAGED_PID.load(Ordering::Acquire) == sys::getpid();
    let rw = get().filter(|_| managed && crate::srunjoin::is_srun(file)).and_then(|l| {
        let _g = gate::enter();
        crate::srunjoin::rewrite(l, argv, envp)
    });
    let Some(rw) = rw else { return exec_with(envp, |e| exec(argv, e)) };
    let r = exec_with(rw.envp(), |e| exec(rw.argv(), e));
    let _g = gate::enter();
    rw.failed();
    drop(rw);
    r
}

/// Run `spawn` (posix_spawn) with `envp`, or, in a member of the process tree, with
/// `managed_env(envp)`: the program it starts is a member too. (glibc's posix_spawn execs in a
/// child that shares our memory, without the exec hooks: its environment is made here, first.)
pub fn spawn_with(envp: Argv, spawn: impl FnOnce(Argv) -> c_int) -> c_int {
    let member = crate::is_active() && crate::tree::is_member() && MANAGED_PID.load(Ordering::Acquire) == sys::getpid();
    let Some(l) = get().filter(|_| member && !has_launch(envp)) else { return spawn(envp) };
    let block = {
        let _g = gate::enter();
        managed_env(l, envp, Next::Spawned)
    };
    // The child gets a copy of our fd table: the fd the variable names must survive its exec.
    crate::hupgate::through_exec(true);
    let r = spawn(block.ptrs.as_ptr());
    crate::hupgate::through_exec(false);
    let _g = gate::enter();
    drop(block);
    r
}

fn real<T>(f: &RealFn) -> Option<T> {
    let p = f.get();
    // SAFETY: T is the function pointer type of the symbol f names.
    (p != 0).then(|| unsafe { std::mem::transmute_copy::<usize, T>(&p) })
}

fn enosys() -> c_int {
    crate::sys::set_errno(libc::ENOSYS);
    -1
}

/// # Safety
/// libc's contract for execve.
#[no_mangle]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = real::<ExecveFn>(&REAL_EXECVE) else { return enosys() };
    // SAFETY: forwarding the caller's arguments.
    exec_file(path, argv, envp, |a, e| unsafe { f(path, a, e) })
}

/// # Safety
/// libc's contract for execv.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    let Some(f) = real::<ExecveFn>(&REAL_EXECVE) else { return enosys() };
    // SAFETY: environ is libc's environment block; forwarding the caller's arguments.
    exec_file(path, argv, unsafe { environ }, |a, e| unsafe { f(path, a, e) })
}

/// # Safety
/// libc's contract for execvpe.
#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = real::<ExecveFn>(&REAL_EXECVPE) else { return enosys() };
    // SAFETY: forwarding the caller's arguments.
    exec_file(file, argv, envp, |a, e| unsafe { f(file, a, e) })
}

/// # Safety
/// libc's contract for execvp.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    let Some(f) = real::<ExecveFn>(&REAL_EXECVPE) else { return enosys() };
    // SAFETY: environ is libc's environment block; forwarding the caller's arguments.
    exec_file(file, argv, unsafe { environ }, |a, e| unsafe { f(file, a, e) })
}

/// # Safety
/// libc's contract for fexecve.
#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = real::<FexecveFn>(&REAL_FEXECVE) else { return enosys() };
    // SAFETY: forwarding the caller's arguments.
    exec_with(envp, |e| unsafe { f(fd, argv, e) })
}

/// # Safety
/// libc's contract for execveat.
#[no_mangle]
pub unsafe extern "C" fn execveat(dirfd: c_int, path: *const c_char, argv: Argv, envp: Argv, flags: c_int) -> c_int {
    let Some(f) = real::<ExecveatFn>(&REAL_EXECVEAT) else { return enosys() };
    // SAFETY: forwarding the caller's arguments.
    exec_with(envp, |e| unsafe { f(dirfd, path, argv, e, flags) })
}
