//! ckpt runtime: preloaded into a program by `ckpt-run`. It owns a checkpoint thread that, on
//! the checkpoint signal, stops the program's threads and writes an image of the process; and
//! the restart path that `ckpt-restart` jumps into to bring the program's threads back.
//!
//! It activates only in the process `ckpt-run` started (the pid in its settings, `launch`);
//! anything else that loads it (children the user preloads it in, srun) gets inert hooks that
//! forward to libc.

mod alloc;
mod bgarm;
mod bgranges;
mod bgsnap;
mod bgtake;
mod blocked;
mod checkpoint;
mod clonehook;
mod control;
mod cpuclock;
mod fdguard;
mod fdhide;
mod fdhooks;
mod fdobjs;
mod fdtable;
mod flightdata;
mod flightheld;
mod forklock;
mod forkadvice;
mod freeze;
mod generations;
mod gate;
mod handpidfds;
mod hooks;
mod hupgate;
mod ids;
mod imgdir;
mod incremental;
mod inotifyq;
mod inotifywd;
mod kstate;
mod launch;
mod leave;
mod leftout;
mod log;
mod maps;
mod nshooks;
mod ownstdio;
mod ownsegs;
mod pagescan;
mod memwrite;
mod mqnotify;
mod pagehash;
mod procattrs;
mod procstate;
mod ptraced;
mod progress;
mod restart;
mod seccomp;
mod selfsend;
mod selfsig;
mod shellcmd;
mod shmlink;
mod posixaio;
mod sigevthread;
mod sighooks;
mod sigqueue;
mod snapshot;
mod spawnhooks;
mod srunjoin;
mod srunranks;
mod step;
mod stepend;
mod strictstop;
mod stepaddrs;
mod sud;
mod sudcalls;
mod sys;
mod threadattrs;
mod threadcreds;
mod threads;
mod timens;
mod transient;
mod tree;
mod treedrain;
mod treefds;
mod treesocks;
mod treetcp;
mod triggers;
mod uffdwp;
mod vids;
mod waithooks;

use log::{log, DEBUG, ERROR};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

#[global_allocator]
static ALLOC: alloc::RuntimeAlloc = alloc::RuntimeAlloc;

#[derive(Clone)]
pub struct Config {
    pub dir: Vec<u8>,
    pub name: Vec<u8>,
    pub signal: i32,
    /// --allow-shared-dir: use an image directory other users can write to (see imgdir).
    pub allow_shared: bool,
    /// The program ckpt-run started (Launch::program, else our executable) and its identity at
    /// startup, recorded in every image (`--resume` compares them).
    pub program: Vec<u8>,
    pub program_id: ckpt_image::FileId,
}

static CONFIG: AtomicPtr<Config> = AtomicPtr::new(std::ptr::null_mut());
static ACTIVE: AtomicBool = AtomicBool::new(false);
static TRIGGER_SIGNAL: AtomicI32 = AtomicI32::new(0);

pub fn config() -> Option<&'static Config> {
    // SAFETY: CONFIG is set to leaked Boxes (in the constructor, and by move_image_dir after a
    // restart), never freed.
    unsafe { CONFIG.load(Ordering::Acquire).as_ref() }
}

/// After a restart from an image that is no longer where the program's images were written
/// (the user moved or copied the directory: `ckpt-run --resume --dir NEW`, `ckpt-restart
/// NEW/NAME.ckpt`): the next images, their generations and increments, and the control socket
/// go to `dir`, where the restarted image and its chain are, instead of the recorded directory
/// (which may be gone). The old configuration stays allocated: references to it stay valid.
pub(crate) fn move_image_dir(dir: Vec<u8>) {
    let Some(c) = config() else { return };
    let same = |a: &[u8], b: &[u8]| match (sys::stat_at(libc::AT_FDCWD, &sys::cpath(&[a])), sys::stat_at(libc::AT_FDCWD, &sys::cpath(&[b]))) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    };
    if dir.is_empty() || same(&c.dir, &dir) {
        return;
    }
    log!(DEBUG, "images go to {} now (the restarted image is there; they were written to {})", String::from_utf8_lossy(&dir), String::from_utf8_lossy(&c.dir));
    let moved = Config { dir, ..c.clone() };
    CONFIG.store(Box::into_raw(Box::new(moved)), Ordering::Release);
}

pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

pub fn reserved_signals() -> [i32; 3] {
    [TRIGGER_SIGNAL.load(Ordering::Relaxed), threads::STOP_SIGNAL, triggers::stop_signal()]
}

/// The signals that make the runtime act (checkpoint; checkpoint and exit), 0 when unset: kept
/// blocked in the program's threads, so that only the checkpoint thread receives them.
pub fn trigger_signals() -> [i32; 2] {
    [TRIGGER_SIGNAL.load(Ordering::Relaxed), triggers::stop_signal()]
}

pub fn is_reserved(sig: i32) -> bool {
    is_active() && sig > 0 && reserved_signals().contains(&sig)
}

/// What the restarter needs to bring back the checkpoint thread.
pub struct ThreadInfo {
    pub tid: AtomicI32,
    pub fs_base: AtomicU64,
    pub tid_address: AtomicU64,
    pub robust_head: AtomicU64,
    pub robust_len: AtomicU64,
    pub stack_top: AtomicU64,
}

/// The checkpoint thread's pthread_t (joined after it left: `leave`).
static CKPT_PTHREAD: AtomicU64 = AtomicU64::new(0);

pub static CKPT_THREAD: ThreadInfo = ThreadInfo {
    tid: AtomicI32::new(0),
    fs_base: AtomicU64::new(0),
    tid_address: AtomicU64::new(0),
    robust_head: AtomicU64::new(0),
    robust_len: AtomicU64::new(0),
    stack_top: AtomicU64::new(0),
};

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

fn env(name: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: name is NUL-terminated; getenv is safe in a constructor (one thread).
    let p = unsafe { libc::getenv(name.as_ptr() as *const c_char) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string.
    Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().to_vec())
}

extern "C" fn init() {
    hooks::resolve();
    fdhooks::resolve();
    stepaddrs::resolve();
    fdguard::resolve();
    inotifyq::resolve();
    forkadvice::resolve();
    nshooks::resolve();
    spawnhooks::resolve();
    sigevthread::resolve();
    mqnotify::resolve();
    posixaio::resolve();
    launch::resolve();
    threadattrs::resolve();
    seccomp::resolve();
    threads::measure_tid_field();
    cpuclock::resolve();
    vids::init();
    selfsend::init();
    // Whatever else happens, the program gets its own environment back.
    let launch = launch::take(env).filter(|l| launch::is_ours(l));
    waithooks::init(launch.is_some());
    let Some(launch) = launch else {
        return; // not the process ckpt-run started: stay inert
    };
    launch::set_managed(sys::getpid());
    // (Before any fd of ours: one may take the number of a closed fd 0 to 2.)
    ownstdio::at_start();
    sys::open_proc();
    hupgate::take(env, (launch.outer_pid > 0).then_some(launch.outer_pid));
    // The outer ckpt-run, when it started us as the first process under a namespace's init.
    let outer = (launch.outer_pid > 0).then_some(launch.outer_pid);
    // A program a member of the tree execs is a member too (its parent is not init).
    ids::init(outer.filter(|_| launch.tree_child || sys::syscall!(libc::SYS_getppid) == Ok(1)), (launch.dir_dev, launch.dir_ino));
    if launch.tree_child {
        tree::set_child();
    }
    procattrs::init();
    log::set_level_from_env(env(b"CKPT_LOG\0").as_deref());
    let dir = if launch.dir.is_empty() { sys::readlink(&sys::cpath(&[b"/proc/self/cwd"])).unwrap_or_else(|_| b".".to_vec()) } else { launch.dir.clone() };
    let name = if launch.name.is_empty() {
        let mut c = sys::read_file(&sys::cpath(&[b"/proc/self/comm"])).unwrap_or_default();
        while c.last() == Some(&b'\n') {
            c.pop();
        }
        c
    } else {
        launch.name.clone()
    };
    if !ckpt_image::trust::is_file_name(&name) {
        log!(ERROR, "image name {:?} is not a file name (empty, `.`, `..` or with a `/`): checkpoints are disabled", String::from_utf8_lossy(&name));
        return;
    }
    let signal = if launch.signal > 0 { launch.signal } else { libc::SIGUSR2 };
    let allow_shared = launch.allow_shared_dir;
    let (program, program_id) = program_identity((!launch.program.is_empty()).then(|| launch.program.clone()));
    CONFIG.store(Box::into_raw(Box::new(Config { dir, name, signal, allow_shared, program, program_id })), Ordering::Release);
    checkpoint::mark_start();
    TRIGGER_SIGNAL.store(signal, Ordering::Relaxed);
    triggers::init(launch, env(b"SLURM_JOB_ID\0"));
    snapshot::configure(env(b"CKPT_FORK\0").as_deref());
    bgtake::configure(env(b"CKPT_BACKGROUND\0").as_deref());
    incremental::configure(launch.incremental, launch.max_chain.min(generations::MAX_CHAIN));
    fdtable::configure(launch.open_files);
    find_rseq();
    blocked::learn_libc_sites();
    if !install_handlers(signal) {
        log!(ERROR, "cannot install signal handlers; checkpoints are disabled");
        return;
    }
    // An exec of ours came with the stop signal blocked (spawnhooks::exec_handed_over): one that
    // was pending then is taken by its handler now, as a late one (no checkpoint is stopping us).
    spawnhooks::stop_signal_back();
    // SAFETY: registering plain functions as fork handlers.
    unsafe { libc::pthread_atfork(Some(forklock::prepare_hook), Some(forklock::parent_hook), Some(after_fork_child)) };
    if tree::is_child() {
        control::setup_wake();
    } else {
        control::setup();
    }
    tree::join();
    step::init(&env, &cfg_name());
    selfsig::init();
    ACTIVE.store(true, Ordering::Release);
    // From now on the trigger signals reach only the checkpoint thread (and wait for it).
    selfsig::take_over_thread();
    log!(DEBUG, "runtime active in pid {}, signal {signal}", sys::getpid());
}

fn cfg_name() -> Vec<u8> {
    config().map(|c| c.name.clone()).unwrap_or_default()
}

/// The program's path (`given`, else our executable's) and its identity now.
fn program_identity(given: Option<Vec<u8>>) -> (Vec<u8>, ckpt_image::FileId) {
    let exe = sys::cpath(&[b"/proc/self/exe"]);
    let path = given.unwrap_or_else(|| sys::readlink(&exe).unwrap_or_default());
    let c = if path.is_empty() { exe } else { sys::cpath(&[&path]) };
    // SAFETY: all-zero stat and statfs structs are valid out-parameters.
    let (mut st, mut fs): (libc::stat, libc::statfs) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    let _ = sys::syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, c.as_ptr(), &mut st as *mut libc::stat, 0);
    let _ = sys::syscall!(libc::SYS_statfs, c.as_ptr(), &mut fs as *mut libc::statfs);
    (path, ckpt_image::FileId::new(&st, fs.f_type))
}

extern "C" fn after_fork_child() {
    forklock::child();
    alloc::after_fork_child();
    threads::measure_tid_field();
    if tree::is_member() {
        return member_child(false);
    }
    // A forked child is not the managed program: it has no checkpoint thread.
    ACTIVE.store(false, Ordering::Release);
    sys::close_transient_copies();
    pagehash::forget(false);
    uffdwp::forget(true);
    bgsnap::after_fork();
    control::after_fork();
    strictstop::after_fork();
    sigevthread::after_fork();
    mqnotify::after_fork();
    posixaio::after_fork();
    hupgate::after_fork();
    sighooks::hand_back_signals();
}

/// A child forked by a member of the process tree is a member too: the runtime stays active in
/// it, with a checkpoint thread of its own and its own connection to the coordinator.
/// `table_of_parent`: a child made by clone with CLONE_FILES, whose fd table is its parent's:
/// the runtime fds in it are the parent's (left alone); its own ones are made next to them.
pub(crate) fn member_child(table_of_parent: bool) {
    alloc::after_fork_child();
    let pid = sys::getpid();
    sys::set_table_of_parent(table_of_parent);
    if !table_of_parent {
        sys::close_transient_copies();
        sys::close_foreign_copies();
        hupgate::after_fork();
    }
    launch::set_managed(pid);
    vids::forked_member();
    gate::reset_in_child();
    checkpoint::after_restart();
    pagehash::forget(false);
    uffdwp::forget(true);
    incremental::reset();
    bgsnap::after_fork();
    control::after_fork();
    strictstop::after_fork();
    control::setup_wake();
    sigevthread::after_fork();
    mqnotify::after_fork();
    posixaio::after_fork();
    tree::set_child();
    step::forget_in_child();
    triggers::no_timer();
    tree::join();
    sys::set_table_of_parent(false);
    CKPT_THREAD.tid.store(0, Ordering::Release);
    spawn_checkpoint_thread();
    log!(DEBUG, "runtime active in the forked child {pid}");
    // Stopped before it joined and woken for a checkpoint: no program code before it is taken.
    tree::park_if_woken();
}

fn find_rseq() {
    // SAFETY: looking up glibc's exported rseq variables (glibc >= 2.35); absent means none.
    unsafe {
        let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()) as *const isize;
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()) as *const u32;
        if !off.is_null() && !size.is_null() && *size != 0 {
            threads::RSEQ_OFFSET.store(*off as i64, Ordering::Relaxed);
            threads::RSEQ_SIZE.store((*size).max(32), Ordering::Relaxed);
        }
    }
}

fn install_handlers(trigger: i32) -> bool {
    // SAFETY: building plain sigaction structs.
    let mut stop: libc::sigaction = unsafe { std::mem::zeroed() };
    stop.sa_sigaction = threads::stop_handler as *const () as usize;
    stop.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: stop.sa_mask is a valid sigset_t.
    unsafe { libc::sigfillset(&mut stop.sa_mask) };
    hooks::install(threads::STOP_SIGNAL, &stop) && triggers::install_handler(trigger) && triggers::install_handler(triggers::stop_signal())
}

/// Start the checkpoint thread (called just before the program's main).
pub fn start_checkpoint_thread() {
    // A task of a step tells rank 0 how its program ended (registered first: it runs last).
    stepend::register();
    // exit() (and a return from main) waits for a checkpoint being taken; registered here, after
    // the dynamic loader's own exit handler, so that it runs before it.
    // SAFETY: registering a plain function.
    unsafe { libc::atexit(at_exit) };
    spawn_checkpoint_thread();
}

fn spawn_checkpoint_thread() {
    // The new thread must never run the program's handlers, not even before it blocks every
    // signal itself: let it inherit an all-blocked mask.
    let all: u64 = !0;
    let mut old: u64 = 0;
    let _ = sys::syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, &mut old as *mut u64, 8);
    // SAFETY: plain pthread calls with valid out-parameters.
    let r = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, 1 << 20);
        let mut t: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut t, &attr, checkpoint_thread_main, std::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        if r == 0 {
            CKPT_PTHREAD.store(t as u64, Ordering::Release);
        }
        r
    };
    let _ = sys::syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &old as *const u64, 0, 8);
    if r != 0 {
        log!(ERROR, "cannot start the checkpoint thread (error {r}); checkpoints are disabled");
        return;
    }
    // Let it run before main does: a child the program clones without fork (clone(2), which
    // runs no fork handlers) copies glibc's record of every thread, and a set*id call there
    // waits for ever for a thread still recorded as being created.
    while CKPT_THREAD.tid.load(Ordering::Acquire) == 0 {
        let _ = sys::syscall!(libc::SYS_sched_yield);
    }
}

/// A new checkpoint thread, after the last one left for a call of the program's (`leave`).
pub(crate) fn respawn_checkpoint_thread() {
    CKPT_THREAD.tid.store(0, Ordering::Release);
    spawn_checkpoint_thread();
}

/// Join the checkpoint thread that has left (`leave`), so that glibc takes its stack back:
/// only when the kernel has cleared its tid word (a checkpoint thread that was the restarter's
/// first thread, without exact ids, is a zombie leader whose word nobody clears).
pub(crate) fn join_checkpoint_thread() {
    let t = CKPT_PTHREAD.swap(0, Ordering::AcqRel);
    let word = CKPT_THREAD.tid_address.load(Ordering::Acquire);
    // SAFETY: glibc's tid field of the thread's struct pthread, in our memory.
    if t == 0 || word == 0 || unsafe { (word as *const i32).read_volatile() } != 0 {
        return;
    }
    // SAFETY: t is the checkpoint thread's pthread_t, created joinable, which has exited.
    unsafe { libc::pthread_join(t as libc::pthread_t, std::ptr::null_mut()) };
}

extern "C" fn at_exit() {
    checkpoint::wait_in_flight();
}

extern "C" fn checkpoint_thread_main(_: *mut c_void) -> *mut c_void {
    // The loop runs below this frame, from which `leave` comes back here to end the thread
    // through glibc (its stack goes back when the thread is joined).
    // SAFETY: checkpoint_thread_start never returns but through ckpt_escape into this frame.
    unsafe { leave::ckpt_escapable(&leave::ESCAPE, checkpoint_thread_start, 0) };
    leave::left();
    std::ptr::null_mut()
}

extern "C" fn checkpoint_thread_start(_: u64) -> ! {
    detach_fs();
    leave::note_base(false);
    let ct = &CKPT_THREAD;
    ct.tid.store(sys::gettid(), Ordering::Release);
    ct.fs_base.store(sys::arch_get_fs(), Ordering::Relaxed);
    let mut tidp: u64 = 0;
    let _ = sys::syscall!(libc::SYS_prctl, libc::PR_GET_TID_ADDRESS, &mut tidp as *mut u64);
    ct.tid_address.store(tidp, Ordering::Relaxed);
    let (mut head, mut len) = (0u64, 0u64);
    let _ = sys::syscall!(libc::SYS_get_robust_list, 0, &mut head as *mut u64, &mut len as *mut u64);
    ct.robust_head.store(head, Ordering::Relaxed);
    ct.robust_len.store(len, Ordering::Relaxed);
    // The restart path starts again from here on this stack (below our own frame; glibc keeps
    // the thread's TLS and struct pthread above it, which must stay intact).
    let sp: u64;
    // SAFETY: reading the stack pointer.
    unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
    ct.stack_top.store((sp - 512) & !15, Ordering::Relaxed);
    checkpoint_loop()
}

/// Give the calling thread (the checkpoint thread) a root, working directory and umask of its
/// own (unshare(CLONE_FS)), outside any chroot: a program that chroot()s changes its own
/// threads' root, and the checkpoint thread goes on reading /proc, the image directory and
/// the paths of the program's files as seen from the real root (fd links read from inside a
/// chroot are relative to it). A thread that starts in a chroot already (a child forked after
/// the program's chroot, the restart path) leaves it through /proc's parent, keeping its
/// working directory; that needs CAP_SYS_CHROOT, which the program had to chroot at all.
pub(crate) fn detach_fs() {
    if let Err(e) = sys::syscall!(libc::SYS_unshare, libc::CLONE_FS) {
        log!(ERROR, "the checkpoint thread cannot have a root directory of its own: errno {e}");
        return;
    }
    let Some(proc) = sys::proc_fd() else { return };
    let (Ok(root), Ok(real)) = (sys::stat_at(libc::AT_FDCWD, c"/"), sys::stat_at(proc, c"..")) else { return };
    if (root.st_dev, root.st_ino) == (real.st_dev, real.st_ino) {
        return;
    }
    let Ok(cwd) = sys::syscall!(libc::SYS_openat, libc::AT_FDCWD, c".".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) else { return };
    let left = sys::syscall!(libc::SYS_fchdir, proc).and_then(|_| sys::syscall!(libc::SYS_chroot, c"..".as_ptr()));
    let _ = sys::syscall!(libc::SYS_fchdir, cwd);
    sys::close(cwd as i32);
    if let Err(e) = left {
        log!(ERROR, "the checkpoint thread cannot leave the program's chroot (checkpoints will fail): errno {e}");
    }
}

/// Wait for checkpoint requests (signals, timer, control socket) forever.
pub fn checkpoint_loop() -> ! {
    set_checkpoint_thread_mask();
    triggers::run()
}

/// glibc's signal for set*id calls: every thread of the process must handle it (its handler
/// makes the same system call for the thread) or setuid() waits forever.
const SIGSETXID: i32 = 33;

/// The checkpoint thread takes the trigger signals, which program threads block, and glibc's
/// SIGSETXID; every other signal is the program's business.
fn set_checkpoint_thread_mask() {
    let mask: u64 = !(selfsig::triggers() | 1u64 << (SIGSETXID - 1));
    let _ = sys::syscall!(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &mask as *const u64, 0, 8);
}
