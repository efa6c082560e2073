//! The runtime's side of a restart. The restarter has rebuilt memory and kernel state and jumps
//! to `ckpt_restart_trampoline` on the checkpoint thread's stack and TLS, with every signal
//! blocked and no other thread. Here we recreate the program's threads, release them, and go back
//! to waiting for checkpoint requests.
//!
//! Two ways, decided by `ids::exact_restart`:
//! - Exact ids (the restarter has the program's old pid in a namespace of its own): the calling
//!   thread is the thread-group leader, whose tid is the pid, so it must become the program's
//!   main thread again. It creates the checkpoint thread and the other threads with their old
//!   tids, then leaves the checkpoint thread's stack for a temporary one, takes the main thread's
//!   TLS, and parks like the others; the new checkpoint thread, once the leader is off its stack,
//!   continues there and finishes the restart. If the main thread had exited before the
//!   checkpoint, the leader exits instead (as it had).
//! - Otherwise (virtual ids): the calling thread becomes the checkpoint thread and recreates the
//!   program's threads with new tids (vids.rs translates).

use crate::log::{log, ALWAYS, DEBUG, ERROR};
use crate::sys::{self, syscall};
use crate::threads::{self, Slot};
use crate::{alloc, gate, ids, CKPT_THREAD};
use ckpt_image::RestartInfo;
use std::sync::atomic::{AtomicU32, Ordering};

std::arch::global_asm!(
    ".globl ckpt_restart_trampoline",
    ".type ckpt_restart_trampoline,@function",
    "ckpt_restart_trampoline:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {main}",
    "    ud2",
    main = sym restart_main,
);

extern "C" {
    fn ckpt_restart_trampoline();
}

/// Where the restarter jumps into this runtime.
pub fn entry_point() -> u64 {
    ckpt_restart_trampoline as *const () as usize as u64
}

/// Exact ids: set once the leader has left the checkpoint thread's stack and TLS.
static LEADER_OFF: AtomicU32 = AtomicU32::new(0);
/// Exact ids, main thread gone: the leader's tid word, cleared by the kernel when it has exited.
static LEADER_TID: AtomicU32 = AtomicU32::new(0);

fn fatal(e: &str) -> ! {
    log!(ERROR, "restart failed: {e}");
    loop {
        let _ = syscall!(libc::SYS_exit_group, 125);
    }
}

/// What the restart's one line says once the program runs again.
struct Done {
    path: Vec<u8>,
    generation: u64,
    memory: u64,
    started_ns: u64,
    /// Pidfds of the program's threads, opened once they exist (`reopen_thread_pidfds`).
    pidfds: Vec<ckpt_image::RestartPidFd>,
    /// Pidfds of threads handed between processes of the tree (`handpidfds`).
    handoffs: Vec<ckpt_image::RestartHandoff>,
}

extern "C" fn restart_main(info_addr: u64) -> ! {
    // SAFETY: the restarter passes the address of a RestartInfo inside its switch area, which
    // stays mapped until we unmap it below.
    let info: RestartInfo = unsafe { std::ptr::read(info_addr as *const RestartInfo) };
    // (Before any fd of ours: one may take the number of a closed fd 0 to 2.)
    crate::ownstdio::after_restart();
    // Our fd on /proc was not in the image: open it again, before the root changes.
    sys::open_proc();
    // The image was taken during a checkpoint, whose progress counter is not here.
    crate::progress::after_restart();
    // From now on, the log level of the ckpt-restart that brought us back.
    crate::log::set_level(info.log_level as u8);
    // The page hash table was not in the image (its mapping came back empty); the restarter
    // built one of the memory it restored: the next image can be an increment over this one.
    crate::pagehash::forget(true);
    crate::uffdwp::forget(false);
    crate::seccomp::after_restart();
    crate::strictstop::after_restart();
    alloc::after_restart();
    // The background snapshot's buffer and report page, if the image was taken by one, and its
    // engine (in the scratch arena, just unmapped).
    crate::transient::after_restart();
    crate::bgsnap::forget();
    crate::flightdata::after_restart();
    // This thread's own ids before it opens anything (ckpt-restart gave it the process's).
    crate::threadcreds::restore_own(CKPT_THREAD.tid.load(Ordering::Relaxed));
    if crate::incremental::enabled() && info.image_hash != 0 && crate::pagehash::adopt(info.page_table, info.page_table_len) {
        crate::incremental::continue_from(info.image_hash, info.chain as u32);
    } else {
        crate::incremental::reset();
    }
    crate::triggers::after_restart();
    crate::blocked::after_restart();
    crate::checkpoint::after_restart();
    // Inotify instances with saved events: their markers, before the root may change.
    crate::inotifyq::after_restart();
    crate::checkpoint::mark_start();
    crate::launch::set_managed(sys::getpid());
    let ours = info.magic == RestartInfo::MAGIC;
    ids::restarted(if ours { info.outer_pid } else { 0 }, if ours { (info.dir_dev, info.dir_ino) } else { (0, 0) });
    crate::hupgate::after_restart(if ours { info.outer_proc_fd } else { -1 }, if ours { info.outer_pid as i32 } else { 0 });
    let exact = ids::exact_restart();
    // SAFETY: the restarter wrote path_len bytes at info.path, in the switch area (mapped until
    // below; `Done` takes a copy in the scratch arena).
    let path = unsafe { std::slice::from_raw_parts(info.path as *const u8, info.path_len as usize) };
    // (Before the scratch arena: the new configuration outlives the restart. Before the step's
    // restart: its files are in that directory.)
    if !crate::tree::is_child() {
        crate::move_image_dir(image_dir_of(path));
    }
    crate::step::after_restart(info.step_epoch, info.generation, info.image_hash);
    crate::stepaddrs::after_restart(&info);
    let ct = &CKPT_THREAD;
    let old_ckpt_tid = ct.tid.load(Ordering::Relaxed);
    if !exact {
        let tid = sys::gettid();
        ct.tid.store(tid, Ordering::Release);
        let tid_address = ct.tid_address.load(Ordering::Relaxed);
        if tid_address != 0 {
            // SAFETY: glibc's tid field of this thread's struct pthread, in restored memory.
            unsafe { (tid_address as *mut i32).write_volatile(tid) };
        }
        threads::register_rseq(ct.fs_base.load(Ordering::Relaxed), true);
    }
    // The image was taken inside a checkpoint: the gate held, the scratch arena in use (and
    // released above). Start both afresh.
    gate::reset_after_restart();
    alloc::scratch_begin();
    // What lives only for the restart is allocated from here on, in the scratch arena (freed
    // whole by `finish`): general memory would stay, and a size class the program had no slab
    // of (the slots' Vec is 344 bytes a thread) would leave it a 256 KiB mapping it did not
    // have (restore_memory_maps). The slots, then, and the copy of the image's path.
    let slots = take_slots(&info);
    crate::sud::after_restart(&slots);
    let path = path.to_vec();
    crate::tree::forget();
    if crate::tree::is_child() {
        crate::control::setup_wake();
    } else {
        crate::control::setup(); // our fds were not in the image: create them before the threads run
    }
    crate::tree::join();
    let pidfds = if ours { take_pidfds(&info) } else { Vec::new() };
    let handoffs = if ours { crate::handpidfds::take(&info) } else { Vec::new() };
    let done = Done { path, generation: info.generation, memory: info.memory, started_ns: info.started_ns, pidfds, handoffs };
    // The program's root (chroot) before its threads are made: they share it, and the
    // checkpoint thread leaves it again in `finish` (crate::detach_fs).
    if ours && info.root_len != 0 {
        // SAFETY: the restarter wrote root_len bytes at info.root, in the switch area.
        let root = sys::cpath(&[unsafe { std::slice::from_raw_parts(info.root as *const u8, info.root_len as usize) }]);
        if let Err(e) = syscall!(libc::SYS_chroot, root.as_ptr()) {
            fatal(&format!("cannot enter the program's root directory {}: {}", root.to_string_lossy(), crate::checkpoint::strerror(e)))
        }
    }
    if ours && info.switch_len != 0 {
        sys::munmap(info.switch_base as usize, info.switch_len as usize);
    }
    if exact {
        restart_exact(slots, done)
    }
    if let Err(e) = threads::recreate(&slots, false, 0) {
        fatal(&e)
    }
    threads::wait_parked(slots.len());
    finish(slots, old_ckpt_tid, done)
}

/// The last steps, on the checkpoint thread (tid `old_tid` at checkpoint time) with every
/// program thread parked: its capabilities, per-thread kernel state, release, the restart's
/// one line, back to the checkpoint loop.
fn finish(slots: Vec<Slot>, old_tid: i32, done: Done) -> ! {
    // A root, working directory and umask of the checkpoint thread's own, as before.
    crate::detach_fs();
    crate::leave::note_base(true);
    ids::restore_caps(old_tid, false);
    crate::kstate::restore(&slots);
    crate::mqnotify::after_restart(|old| crate::kstate::new_tid(&slots, old));
    reopen_thread_pidfds(&done.pidfds);
    crate::handpidfds::run(&done.handoffs);
    // The restart's one line, as a checkpoint's: said before the program's threads run again,
    // so that it comes before anything they print.
    let ms = crate::checkpoint::now_ns().saturating_sub(done.started_ns) / 1_000_000;
    log!(ALWAYS, "restarted from {} (checkpoint {}, {} of memory, {ms} ms)", String::from_utf8_lossy(&done.path), done.generation, ckpt_image::progress::Size(done.memory));
    drop(done);
    // Our state is back (the pending signals queued again): signals held for the restarted
    // tree may come (a stopped process takes them when continued, as it would have).
    crate::tree::say_running();
    // Stopped by job control at the checkpoint: stopped again until the program continues it.
    let tids: Vec<i32> = slots.iter().map(|s| s.tid).collect();
    crate::tree::stop_again(&tids);
    threads::resume_all();
    let n = slots.len();
    threads::wait_left_and_free(n);
    drop(slots);
    alloc::scratch_end();
    gate::unlock_exclusive();
    log!(DEBUG, "restarted: {n} threads, pid {}, checkpoint thread {}", sys::getpid(), sys::gettid());
    crate::checkpoint_loop()
}

/// Exact ids, on the leader (still on the checkpoint thread's stack and TLS).
fn restart_exact(slots: Vec<Slot>, done: Done) -> ! {
    let ct = &CKPT_THREAD;
    let pid = sys::getpid();
    LEADER_OFF.store(0, Ordering::Release);
    let main = slots.iter().position(|s| s.tid == pid);
    let slots = Box::into_raw(Box::new((slots, done)));
    // SAFETY: the Box stays alive until the new checkpoint thread takes it back in
    // `ckpt_thread_continues`; nothing else frees it.
    let all = unsafe { &(*slots).0 };
    let created = threads::spawn_thread(ct.tid.load(Ordering::Relaxed), ct.fs_base.load(Ordering::Relaxed), ct.tid_address.load(Ordering::Relaxed), ckpt_thread_restarted, slots as u64)
        .and_then(|_| threads::recreate(all, true, pid));
    if let Err(e) = created {
        fatal(&e)
    }
    let top = threads::temp_stack().unwrap_or_else(|e| fatal(&e));
    // The leader uses the main thread's slot until it has left its temporary stack, and the
    // checkpoint thread drops the slots only after that (wait_left_and_free).
    let arg = main.map_or(0, |i| &all[i] as *const Slot as u64);
    // SAFETY: leaving the checkpoint thread's stack for a fresh one; leader_leaves never returns.
    unsafe { threads::ckpt_run_on_stack(arg, top, leader_leaves) }
}

/// The leader, on its temporary stack: take the main thread's TLS and hand the checkpoint
/// thread's stack and TLS over; then become the main thread, or exit if it had exited.
extern "C" fn leader_leaves(main: u64) -> ! {
    if main != 0 {
        // SAFETY: the main thread's slot, alive until we have left (see restart_exact).
        let s: &Slot = unsafe { &*(main as *const Slot) };
        let _ = syscall!(libc::SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, s.fs_base);
        LEADER_OFF.store(1, Ordering::Release);
        sys::futex_wake(&LEADER_OFF);
        threads::become_restored(s, true)
    }
    // The main thread had exited: so does the leader (a zombie thread-group leader, as before).
    LEADER_TID.store(sys::gettid() as u32, Ordering::Release);
    let _ = syscall!(libc::SYS_set_tid_address, LEADER_TID.as_ptr());
    let _ = syscall!(libc::SYS_set_robust_list, 0, 24);
    let _ = syscall!(libc::SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, 0);
    LEADER_OFF.store(1, Ordering::Release);
    sys::futex_wake(&LEADER_OFF);
    loop {
        let _ = syscall!(libc::SYS_exit, 0);
    }
}

/// The new checkpoint thread (its old tid and TLS, a temporary stack): wait until the leader is
/// off the checkpoint thread's stack, then finish the restart there.
extern "C" fn ckpt_thread_restarted(slots: u64) -> ! {
    while LEADER_OFF.load(Ordering::Acquire) == 0 {
        sys::futex_wait(&LEADER_OFF, 0, None);
    }
    let top = CKPT_THREAD.stack_top.load(Ordering::Relaxed);
    // SAFETY: nothing runs on the checkpoint thread's stack any more.
    unsafe { threads::ckpt_run_on_stack(slots, top, ckpt_thread_continues) }
}

extern "C" fn ckpt_thread_continues(slots: u64) -> ! {
    // SAFETY: restart_exact leaked this Box for us, and we are its only user.
    let (slots, done): (Vec<Slot>, Done) = *unsafe { Box::from_raw(slots as *mut (Vec<Slot>, Done)) };
    let ct = &CKPT_THREAD;
    let old_tid = ct.tid.swap(sys::gettid(), Ordering::AcqRel);
    let (head, len) = (ct.robust_head.load(Ordering::Relaxed), ct.robust_len.load(Ordering::Relaxed));
    if head != 0 {
        let _ = syscall!(libc::SYS_set_robust_list, head, len);
    }
    threads::register_rseq(ct.fs_base.load(Ordering::Relaxed), true);
    let pid = sys::getpid();
    threads::wait_parked(slots.len());
    if !slots.iter().any(|s| s.tid == pid) {
        // The leader's temporary stack is freed with the others: wait until it has exited.
        loop {
            let v = LEADER_TID.load(Ordering::Acquire);
            if v == 0 {
                break;
            }
            let _ = syscall!(libc::SYS_futex, LEADER_TID.as_ptr(), libc::FUTEX_WAIT, v, 0, 0, 0);
        }
    }
    finish(slots, old_tid, done)
}

/// The directory the restarted image is in (absolute, from the restarter): the image's own
/// (`DIR/NAME.ckpt`), or for a process tree's the set's (`DIR/NAME.ckpt/PID.ckpt`).
fn image_dir_of(path: &[u8]) -> Vec<u8> {
    let parent = |p: &[u8]| p.iter().rposition(|&b| b == b'/').map(|i| p[..i.max(1)].to_vec());
    let Some(dir) = parent(path).filter(|_| path.starts_with(b"/")) else { return Vec::new() };
    let name = crate::config().map(|c| c.name.clone()).unwrap_or_default();
    let base = dir.rsplit(|&b| b == b'/').next().unwrap_or_default();
    // A tree's set is NAME.ckpt, a step task's NAME.RANK.ckpt.
    let ours = |n: &[u8]| n == name.as_slice() || n.strip_prefix(name.as_slice()).and_then(|r| r.strip_prefix(b".")).is_some_and(|r| !r.is_empty() && r.iter().all(u8::is_ascii_digit));
    match ckpt_image::parse_image_name(base) {
        Some((n, _)) if ours(n) => parent(&dir).unwrap_or_default(),
        _ => dir,
    }
}

/// The pidfds of the program's threads the restarter held /dev/null for (RestartPidFd records).
fn take_pidfds(info: &RestartInfo) -> Vec<ckpt_image::RestartPidFd> {
    // SAFETY: the restarter wrote npidfds records at info.pidfds, in the switch area (mapped).
    (0..info.npidfds as usize).map(|i| unsafe { std::ptr::read((info.pidfds as *const ckpt_image::RestartPidFd).add(i)) }).collect()
}

/// The threads exist again: open the pidfds of them at their fds (in place of /dev/null), then
/// their dups; a pidfd that cannot be opened stays /dev/null, with a line saying so.
fn reopen_thread_pidfds(pidfds: &[ckpt_image::RestartPidFd]) {
    for p in pidfds {
        let cloexec = if p.cloexec != 0 { libc::O_CLOEXEC } else { 0 };
        let r = if p.dup_of >= 0 {
            syscall!(libc::SYS_dup3, p.dup_of, p.fd, cloexec).map(|_| ())
        } else {
            syscall!(libc::SYS_pidfd_open, p.tid, p.flags & (libc::O_NONBLOCK | libc::O_EXCL)).and_then(|fd| {
                let r = syscall!(libc::SYS_dup3, fd, p.fd, cloexec).map(|_| ());
                sys::close(fd as i32);
                r
            })
        };
        if let Err(e) = r {
            log!(ERROR, "fd {}: cannot open the pidfd of thread {} again: {}; it stays /dev/null", p.fd, p.tid, crate::checkpoint::strerror(e));
        }
    }
}

/// The thread records, which the restarter placed after the RestartInfo in the switch area.
fn take_slots(info: &RestartInfo) -> Vec<Slot> {
    let mut v = Vec::with_capacity(info.nthreads as usize);
    for i in 0..info.nthreads as usize {
        // SAFETY: the restarter wrote nthreads RestartThread records at info.threads.
        let t = unsafe { std::ptr::read((info.threads as *const ckpt_image::RestartThread).add(i)) };
        v.push(Slot {
            tid: t.tid,
            ucontext: t.ucontext,
            sp: 0, // only checkpoints use it
            fs_base: t.fs_base,
            tid_address: t.tid_address,
            robust_head: t.robust_head,
            robust_len: t.robust_len,
            ss_sp: t.altstack_sp,
            ss_size: t.altstack_size,
            ss_flags: t.altstack_flags,
            rseq: t.rseq != 0,
            attrs: t.attrs,
            quiet: false,
        });
    }
    v
}
