//! glibc's `clone()` called by the program to make a child process. Without CLONE_VM the child
//! gets a copy of the caller's memory, like a forked one, but no fork handler runs in it: in a
//! member of the process tree it would have no runtime (no checkpoint thread, no connection to
//! the coordinator) and make every checkpoint of the tree refuse.
//!
//! In a member, a clone of a plain child process (flags: the exit signal, and CLONE_PARENT) is
//! made here with the same system call. The child, on its copy of the caller's stack, first
//! becomes a member as a forked child does (`crate::member_child`), then switches to the
//! program's stack, calls the program's function and exits with its result, as glibc's clone
//! does (exit_group: the child has the runtime's thread besides the program's one). The
//! program's own fork handlers do not run, as natively. Other calls go to glibc's clone as
//! before: other flags (CLONE_VM, CLONE_FILES, namespaces, ...), a missing function or stack, and
//! a caller with another program thread (which could hold a lock of glibc's that the child's
//! new checkpoint thread needs: fork resets them, clone does not).

use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void};

static REAL_CLONE: RealFn = RealFn::new(b"clone\0");

type ChildFn = extern "C" fn(*mut c_void) -> c_int;

/// The flags this hook makes itself: the exit signal and CLONE_PARENT.
const TAKEN: c_int = libc::CSIGNAL | libc::CLONE_PARENT;

/// # Safety
/// glibc's contract for clone (x86-64: the variadic arguments are passed like these; they are
/// only read by glibc's clone, for the flags that name them).
#[no_mangle]
pub unsafe extern "C" fn clone(f: Option<ChildFn>, stack: *mut c_void, flags: c_int, arg: *mut c_void, ptid: *mut libc::pid_t, tls: *mut c_void, ctid: *mut libc::pid_t) -> c_int {
    if let (Some(f), false, true) = (f, stack.is_null(), ours(flags)) {
        return match syscall!(libc::SYS_clone, (flags & TAKEN) as u64, 0, 0, 0, 0) {
            Ok(0) => child(f, stack, arg),
            Ok(pid) => pid as c_int,
            Err(e) => {
                crate::sys::set_errno(e);
                -1
            }
        };
    }
    type Real = unsafe extern "C" fn(Option<ChildFn>, *mut c_void, c_int, *mut c_void, *mut libc::pid_t, *mut c_void, *mut libc::pid_t) -> c_int;
    // SAFETY: glibc's clone, with the caller's arguments.
    unsafe { std::mem::transmute::<usize, Real>(REAL_CLONE.get())(f, stack, flags, arg, ptid, tls, ctid) }
}

/// Whether this clone makes a plain child process of a member that this hook can make a member.
fn ours(flags: c_int) -> bool {
    crate::is_active() && crate::tree::is_member() && flags & !TAKEN == 0 && program_threads() == 1
}

/// The program's threads in this process (the runtime's checkpoint thread left out).
fn program_threads() -> usize {
    let ckpt = crate::CKPT_THREAD.tid.load(std::sync::atomic::Ordering::Acquire);
    let tasks = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])).unwrap_or_default();
    tasks.iter().filter(|t| t.as_slice() != sys::decimal(ckpt).as_slice()).count()
}

/// In the new child: become a member, then run the program's function on its stack and exit.
fn child(f: ChildFn, stack: *mut c_void, arg: *mut c_void) -> c_int {
    crate::member_child();
    // SAFETY: the program's stack top and function, as glibc's clone would use them; the child
    // never returns into our frames (exited calls exit_group).
    unsafe {
        std::arch::asm!(
            "mov rsp, {stack}",
            "and rsp, -16",
            "call {f}",
            "mov edi, eax",
            "call {exited}",
            "ud2",
            stack = in(reg) stack,
            f = in(reg) f,
            exited = sym exited,
            in("rdi") arg,
            options(noreturn),
        )
    }
}

/// The program's function returned in the child: its result is the process's exit status.
extern "C" fn exited(status: c_int) -> ! {
    crate::checkpoint::wait_in_flight();
    loop {
        let _ = syscall!(libc::SYS_exit_group, status);
    }
}
