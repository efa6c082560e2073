//! The runtime's side of a restart. The restarter has rebuilt memory and kernel state and jumps
//! to `ckpt_restart_trampoline` on the checkpoint thread's stack and TLS, with every signal
//! blocked and no other thread. Here we fix the checkpoint thread's identity, recreate the
//! program's threads, release them, and go back to waiting for checkpoint requests.

use crate::log::{log, ALWAYS, DEBUG, ERROR};
use crate::sys::{self, syscall};
use crate::{alloc, gate, threads, CKPT_THREAD};
use ckpt_image::RestartInfo;
use std::sync::atomic::Ordering;

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

extern "C" fn restart_main(info_addr: u64) -> ! {
    // SAFETY: the restarter passes the address of a RestartInfo inside its switch area, which
    // stays mapped until we unmap it below.
    let info: RestartInfo = unsafe { std::ptr::read(info_addr as *const RestartInfo) };
    // The image was taken during a checkpoint, whose progress counter is not here.
    crate::progress::after_restart();
    // From now on, the log level of the ckpt-restart that brought us back.
    crate::log::set_level(info.log_level as u8);
    // Dirty-page tracking belonged to the checkpointed process: its fd number means nothing here.
    // Track the restored memory before anything writes it (arm_restored does not allocate), so
    // that the next checkpoint can be an increment over the image we came from.
    crate::dirty::forget(false);
    alloc::after_restart();
    let tracked = crate::incremental::enabled() && info.image_hash != 0 && crate::dirty::arm_restored(&alloc::scratch_ranges());
    if tracked {
        crate::incremental::continue_from(info.image_hash, info.chain as u32);
    } else {
        crate::incremental::reset();
    }
    crate::triggers::after_restart();
    crate::blocked::after_restart();
    crate::checkpoint::after_restart();
    crate::checkpoint::mark_start();
    crate::launch::set_managed(sys::getpid());
    crate::step::after_restart(info.step_epoch, info.generation, info.image_hash);
    let ct = &CKPT_THREAD;
    let tid = sys::gettid();
    ct.tid.store(tid, Ordering::Release);
    let tid_address = ct.tid_address.load(Ordering::Relaxed);
    if tid_address != 0 {
        // SAFETY: glibc's tid field of this thread's struct pthread, in restored memory.
        unsafe { (tid_address as *mut i32).write_volatile(tid) };
    }
    threads::register_rseq(ct.fs_base.load(Ordering::Relaxed), true);
    // The image was taken inside a checkpoint: the gate held, the scratch arena in use (and
    // released above). Start both afresh.
    gate::reset_after_restart();
    alloc::scratch_begin();
    crate::control::setup(); // our fds were not in the image: create them before the threads run
    let slots = take_slots(&info);
    // SAFETY: the restarter wrote path_len bytes at info.path, in the switch area (still mapped).
    let path = unsafe { std::slice::from_raw_parts(info.path as *const u8, info.path_len as usize) }.to_vec();
    if info.magic == RestartInfo::MAGIC && info.switch_len != 0 {
        sys::munmap(info.switch_base as usize, info.switch_len as usize);
    }
    match threads::recreate(&slots) {
        Ok(()) => {}
        Err(e) => {
            log!(ERROR, "restart failed: {e}");
            let _ = syscall!(libc::SYS_exit_group, 125);
        }
    }
    crate::kstate::restore(&slots);
    threads::resume_all();
    // The program runs again: the restart's one line, as a checkpoint's.
    let ms = crate::checkpoint::now_ns().saturating_sub(info.started_ns) / 1_000_000;
    log!(ALWAYS, "restarted from {} (checkpoint {}, {} of memory, {ms} ms)", String::from_utf8_lossy(&path), info.generation, ckpt_image::progress::Size(info.memory));
    drop(path);
    threads::wait_left_and_free(slots.len());
    drop(slots);
    alloc::scratch_end();
    gate::unlock_exclusive();
    log!(DEBUG, "restarted: {} threads, pid {}", info.nthreads, sys::getpid());
    crate::checkpoint_loop()
}

/// The thread records, which the restarter placed after the RestartInfo in the switch area.
fn take_slots(info: &RestartInfo) -> Vec<threads::Slot> {
    let mut v = Vec::with_capacity(info.nthreads as usize);
    for i in 0..info.nthreads as usize {
        // SAFETY: the restarter wrote nthreads RestartThread records at info.threads.
        let t = unsafe { std::ptr::read((info.threads as *const ckpt_image::RestartThread).add(i)) };
        v.push(threads::Slot {
            tid: t.tid,
            ucontext: t.ucontext,
            fs_base: t.fs_base,
            tid_address: t.tid_address,
            robust_head: t.robust_head,
            robust_len: t.robust_len,
            ss_sp: t.altstack_sp,
            ss_size: t.altstack_size,
            ss_flags: t.altstack_flags,
            rseq: t.rseq != 0,
            attrs: t.attrs,
        });
    }
    v
}
