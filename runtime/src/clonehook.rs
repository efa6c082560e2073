//! glibc's `clone()` called by the program to make a child process. Without CLONE_VM the child
//! gets a copy of the caller's memory, like a forked one, but no fork handler runs in it: in a
//! member of the process tree it would have no runtime (no checkpoint thread, no connection to
//! the coordinator) and make every checkpoint of the tree refuse.
//!
//! In a member, a clone of a plain child process (flags: the exit signal, CLONE_PARENT and
//! CLONE_FILES) is made here with the same system call. The child, on its copy of the caller's stack, first
//! becomes a member as a forked child does (`crate::member_child`), then switches to the
//! program's stack, calls the program's function and exits with its result, as glibc's clone
//! does (exit_group: the child has the runtime's thread besides the program's one). The
//! program's own fork handlers do not run, as natively. Other calls go to glibc's clone as
//! before: other flags (CLONE_VM, CLONE_FS, namespaces, ...), a missing function or stack, and
//! a caller with another program thread (which could hold a lock of glibc's that the child's
//! new checkpoint thread needs: fork resets them, clone does not).
//!
//! The clone system call made through libc's `syscall()` (zdtm's sys_clone_unified) with the
//! same flags and no new stack is the same child (it goes on from the call, as a forked one):
//! `raw_clone` makes it so from the `syscall` hook.
//!
//! With CLONE_FILES the child shares its parent's fd table: it leaves the parent's runtime fds
//! alone and makes its own next to them, marked so that each process knows the other's
//! (`sys::foreign_own`: left out of images, kept from the program's close calls). The
//! checkpoint records the sharing (the manifest's `files` lines) and the restart makes the
//! child with CLONE_FILES again, its parent restoring the one table.

use crate::hooks::RealFn;
use crate::sys::{self, syscall};
use std::ffi::{c_int, c_void};

static REAL_CLONE: RealFn = RealFn::new(b"clone\0");

type ChildFn = extern "C" fn(*mut c_void) -> c_int;

/// The flags this hook makes itself: the exit signal, CLONE_PARENT and CLONE_FILES.
const TAKEN: c_int = libc::CSIGNAL | libc::CLONE_PARENT | libc::CLONE_FILES;

/// # Safety
/// glibc's contract for clone (x86-64: the variadic arguments are passed like these; they are
/// only read by glibc's clone, for the flags that name them).
#[no_mangle]
pub unsafe extern "C" fn clone(f: Option<ChildFn>, stack: *mut c_void, flags: c_int, arg: *mut c_void, ptid: *mut libc::pid_t, tls: *mut c_void, ctid: *mut libc::pid_t) -> c_int {
    if let (Some(f), false, true) = (f, stack.is_null(), ours(flags)) {
        return match clone_process(flags) {
            Ok(0) => child(f, stack, arg, flags & libc::CLONE_FILES != 0),
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

/// syscall(SYS_clone, flags, stack, ...) of a plain child process by a member, without a new
/// stack: made here with the same system call, and the child becomes a member before it returns
/// 0 as the call does. None: not one of ours, to be made as the program asked. (The parent and
/// child tid arguments and the TLS are only read for flags that are not taken here.)
pub fn raw_clone(flags: i64, stack: i64) -> Option<i64> {
    if stack != 0 || flags as c_int as i64 != flags || !ours(flags as c_int) {
        return None;
    }
    Some(match clone_process(flags as c_int) {
        Ok(0) => {
            crate::member_child(flags & libc::CLONE_FILES as i64 != 0);
            0
        }
        Ok(pid) => pid,
        Err(e) => {
            crate::sys::set_errno(e);
            -1
        }
    })
}

/// The clone system call of a plain child process, with the runtime's locks taken around it
/// as glibc's fork handlers do (forklock.rs): none is copied held by another thread.
fn clone_process(flags: c_int) -> sys::SysResult<i64> {
    crate::forklock::prepare();
    let r = syscall!(libc::SYS_clone, (flags & TAKEN) as u64, 0, 0, 0, 0);
    if r == Ok(0) {
        crate::forklock::child();
    } else {
        crate::forklock::parent();
    }
    r
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
fn child(f: ChildFn, stack: *mut c_void, arg: *mut c_void, table_of_parent: bool) -> c_int {
    crate::member_child(table_of_parent);
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
