//! What each system call does to the program's memory, for the background snapshot (sud.rs):
//! where the kernel will write (those pages must be saved and unprotected first: a kernel write
//! to a write-protected page fails with EFAULT in a user-mode-only userfaultfd), where it will
//! drop or move memory (saved first, too), and which calls cannot be made safe here and wait
//! until the snapshot is written (creating threads or processes, exec, AIO, io_uring, ptrace,
//! unknown calls and ioctls).
//!
//! x86-64 numbering. Runs in a signal handler: no allocation; pointers the program passed are
//! read (never written) to follow iovecs and message headers.

#![allow(non_upper_case_globals)]

use libc::*;

// Calls newer than the libc crate's tables.
const NR_CACHESTAT: i64 = 451;
const F_GETOWN_EX_: i32 = 16;
const NR_FUTEX_WAKE: i64 = 454;
const NR_FUTEX_WAIT: i64 = 455;
const NR_STATMOUNT: i64 = 457;
const NR_LISTMOUNT: i64 = 458;

/// What to do with a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Run it once the ranges given to the visitor are safe.
    Run,
    /// Wait until the snapshot is written, then let the program make the call itself.
    Defer,
    /// rt_sigreturn: done by the program's own frame (sud.rs).
    SigReturn,
    /// rt_sigprocmask: emulated (the dispatch signal must stay unblocked).
    SigMask,
    /// rt_sigaction: the dispatch signal's disposition is kept virtual.
    SigAction,
}

/// Read a u64 the program passed a pointer to (0 when null).
fn word(ptr: u64) -> u64 {
    if ptr == 0 {
        return 0;
    }
    // SAFETY: a pointer the program handed to the kernel for this call; reading it is what the
    // kernel does too. A bad pointer faults here as it would have made the call fail: we check
    // it is mapped first.
    if !readable(ptr, 8) {
        return 0;
    }
    // SAFETY: checked readable just above.
    unsafe { std::ptr::read_unaligned(ptr as *const u64) }
}

fn u32_at(ptr: u64) -> u64 {
    word(ptr) & 0xffff_ffff
}

/// Whether [ptr, ptr+len) can be read (mincore succeeds on mapped memory).
fn readable(ptr: u64, len: u64) -> bool {
    let start = ptr & !4095;
    let end = (ptr + len).div_ceil(4096) * 4096;
    let mut v = [0u8; 2];
    let n = ((end - start) / 4096).min(2);
    crate::sys::syscall!(SYS_mincore, start, n * 4096, v.as_mut_ptr()).is_ok()
}

/// The buffers of an iovec array.
fn iovecs(iov: u64, n: u64, f: &mut dyn FnMut(u64, u64)) {
    for i in 0..n.min(1024) {
        let base = word(iov + 16 * i);
        let len = word(iov + 16 * i + 8);
        f(base, len);
    }
}

/// A msghdr the kernel fills in: the header itself, the name, the iovecs, the control data.
fn msghdr(m: u64, f: &mut dyn FnMut(u64, u64)) {
    f(m, 56);
    f(word(m), u32_at(m + 8));
    iovecs(word(m + 16), word(m + 24), f);
    f(word(m + 32), word(m + 40));
}

/// A socket address buffer and its length word.
fn sockaddr(addr: u64, lenp: u64, f: &mut dyn FnMut(u64, u64)) {
    if lenp != 0 {
        f(lenp, 4);
        f(addr, u32_at(lenp));
    }
}

/// An fd_set of `n` bits.
fn fdset(p: u64, n: u64, f: &mut dyn FnMut(u64, u64)) {
    f(p, n.div_ceil(64) * 8);
}

/// Classify call `nr` with arguments `a`: calls `f(addr, len)` for each range the kernel may
/// write or drop (null or empty ranges are fine), returns what to do.
pub fn classify(nr: i64, a: &[u64; 6], f: &mut dyn FnMut(u64, u64)) -> Kind {
    match nr {
        // Reads into buffers.
        SYS_read | SYS_pread64 => f(a[1], a[2]),
        SYS_readv | SYS_preadv | SYS_preadv2 => iovecs(a[1], a[2], f),
        SYS_recvfrom => {
            f(a[1], a[2]);
            sockaddr(a[4], a[5], f);
        }
        SYS_recvmsg => msghdr(a[1], f),
        SYS_recvmmsg => {
            for i in 0..a[2].min(1024) {
                msghdr(a[1] + 64 * i, f);
                f(a[1] + 64 * i + 56, 4);
            }
            f(a[4], 16);
        }
        SYS_sendmmsg => {
            for i in 0..a[2].min(1024) {
                f(a[1] + 64 * i + 56, 4);
            }
        }
        SYS_accept | SYS_accept4 | SYS_getsockname | SYS_getpeername => sockaddr(a[1], a[2], f),
        SYS_getsockopt => {
            f(a[4], 4);
            f(a[3], u32_at(a[4]));
        }
        SYS_socketpair => f(a[3], 8),
        SYS_pipe | SYS_pipe2 => f(a[0], 8),
        SYS_getdents | SYS_getdents64 => f(a[1], a[2]),
        SYS_getcwd => f(a[0], a[1]),
        SYS_readlink => f(a[1], a[2]),
        SYS_readlinkat => f(a[2], a[3]),
        SYS_stat | SYS_fstat | SYS_lstat => f(a[1], 144),
        SYS_newfstatat => f(a[2], 144),
        SYS_statx => f(a[4], 256),
        SYS_statfs | SYS_fstatfs => f(a[1], 120),
        SYS_ustat => f(a[1], 32),
        SYS_uname => f(a[0], 390),
        SYS_sysinfo => f(a[0], 112),
        SYS_times => f(a[0], 32),
        SYS_time => f(a[0], 8),
        SYS_gettimeofday => {
            f(a[0], 16);
            f(a[1], 8);
        }
        SYS_clock_gettime | SYS_clock_getres => f(a[1], 16),
        SYS_clock_nanosleep => f(a[3], 16),
        SYS_nanosleep => f(a[1], 16),
        SYS_getitimer => f(a[1], 32),
        SYS_setitimer => f(a[2], 32),
        SYS_timer_create => f(a[2], 4),
        SYS_timer_settime | SYS_timerfd_settime => f(a[3], 32),
        SYS_timer_gettime | SYS_timerfd_gettime => f(a[1], 32),
        SYS_getrlimit => f(a[1], 16),
        SYS_prlimit64 => f(a[3], 16),
        SYS_getrusage => f(a[1], 144),
        SYS_wait4 => {
            f(a[1], 4);
            f(a[3], 144);
        }
        SYS_waitid => {
            f(a[2], 128);
            f(a[4], 144);
        }
        SYS_getresuid | SYS_getresgid => {
            f(a[0], 4);
            f(a[1], 4);
            f(a[2], 4);
        }
        SYS_getgroups => f(a[1], a[0] * 4),
        SYS_capget => {
            f(a[0], 8);
            f(a[1], 24);
        }
        SYS_sched_getaffinity => f(a[2], a[1]),
        SYS_sched_getparam => f(a[1], 4),
        SYS_sched_getattr => f(a[1], a[2]),
        SYS_sched_rr_get_interval => f(a[1], 16),
        SYS_getcpu => {
            f(a[0], 4);
            f(a[1], 4);
        }
        SYS_get_robust_list => {
            f(a[1], 8);
            f(a[2], 8);
        }
        SYS_getrandom => f(a[0], a[1]),
        SYS_getxattr | SYS_lgetxattr | SYS_fgetxattr => f(a[2], a[3]),
        SYS_listxattr | SYS_llistxattr | SYS_flistxattr => f(a[1], a[2]),
        SYS_adjtimex => f(a[0], 208),
        SYS_clock_adjtime => f(a[1], 208),
        SYS_mincore => f(a[2], a[1].div_ceil(4096)),
        SYS_get_mempolicy => {
            f(a[0], 4);
            f(a[1], a[2].div_ceil(64) * 8);
        }
        SYS_move_pages => f(a[4], a[1] * 4),
        SYS_mq_timedreceive => {
            f(a[1], a[2]);
            f(a[3], 4);
        }
        SYS_mq_getsetattr => f(a[2], 64),
        SYS_msgrcv => f(a[1], 8 + a[2]),
        SYS_msgctl | SYS_shmctl => f(a[2], 120),
        SYS_sendfile => f(a[2], 8),
        SYS_splice | SYS_copy_file_range => {
            f(a[1], 8);
            f(a[3], 8);
        }
        SYS_vmsplice => iovecs(a[1], a[2], f),
        SYS_process_vm_readv => iovecs(a[1], a[2], f),
        SYS_poll => f(a[0], a[1] * 8),
        SYS_ppoll => {
            f(a[0], a[1] * 8);
            f(a[2], 16);
        }
        SYS_select => {
            for p in [a[1], a[2], a[3]] {
                fdset(p, a[0], f);
            }
            f(a[4], 16);
        }
        SYS_pselect6 => {
            for p in [a[1], a[2], a[3]] {
                fdset(p, a[0], f);
            }
            f(a[4], 16);
        }
        SYS_epoll_wait | SYS_epoll_pwait | SYS_epoll_pwait2 => f(a[1], a[2] * 12),
        SYS_rt_sigtimedwait => f(a[1], 128),
        SYS_rt_sigpending => f(a[0], 8),
        SYS_sigaltstack => {
            // The new stack will take signal frames, written by the kernel.
            if a[0] != 0 {
                f(word(a[0]), word(a[0] + 16));
            }
            f(a[1], 24);
        }
        SYS_rseq => f(a[0], a[1]),
        SYS_futex => {
            f(a[0], 4);
            // FUTEX_WAKE_OP, REQUEUE, CMP_REQUEUE and the PI requeues also touch uaddr2.
            if matches!(a[1] & 127, 3 | 4 | 5 | 11 | 12) {
                f(a[4], 4);
            }
        }
        SYS_futex_waitv => {
            for i in 0..a[1].min(128) {
                f(word(a[0] + 24 * i + 8), 4);
            }
        }
        NR_FUTEX_WAIT | NR_FUTEX_WAKE => f(a[0], 8),
        NR_CACHESTAT => f(a[2], 32),
        NR_LISTMOUNT => f(a[1], a[2] * 8),
        NR_STATMOUNT => f(a[1], a[2]),
        SYS_fcntl => match a[1] as i32 {
            F_GETLK | F_OFD_GETLK => f(a[2], 32),
            F_GETOWN_EX_ => f(a[2], 8),
            1035 | 1037 => f(a[2], 8), // F_GET_RW_HINT, F_GET_FILE_RW_HINT
            _ => {}
        },
        SYS_prctl => match a[0] as i32 {
            PR_GET_PDEATHSIG | PR_GET_UNALIGN | PR_GET_FPEMU | PR_GET_FPEXC | PR_GET_TSC | PR_GET_ENDIAN | PR_GET_CHILD_SUBREAPER => f(a[1], 4),
            PR_GET_NAME => f(a[1], 16),
            PR_GET_TID_ADDRESS => f(a[1], 8),
            0x4155_5856 => f(a[1], a[2]), // PR_GET_AUXV
            59 | PR_SET_MM => return Kind::Defer, // syscall user dispatch of its own, mm fields
            _ => {}
        },
        SYS_arch_prctl => match a[0] {
            0x1003 | 0x1004 | 0x1021 | 0x1022 | 0x1024 => f(a[1], 8),
            0x1002 | 0x1001 | 0x1011 | 0x1012 | 0x1023 | 0x1025 => {}
            _ => return Kind::Defer,
        },
        SYS_ioctl => return ioctl(a, f),
        // Memory that goes away or moves: its pages are saved first.
        SYS_munmap | SYS_mprotect | SYS_pkey_mprotect => f(a[0], a[1]),
        SYS_mremap => {
            f(a[0], a[1]);
            if a[3] & MREMAP_FIXED as u64 != 0 {
                f(a[4], a[2]);
            }
        }
        SYS_mmap => {
            if a[3] & MAP_FIXED as u64 != 0 && a[3] & MAP_FIXED_NOREPLACE as u64 == 0 {
                f(a[0], a[1]);
            }
        }
        SYS_madvise => {
            // Advice that keeps the data as it is passes; everything else saves the range first.
            if !matches!(a[2] as i32, MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_WILLNEED | MADV_DONTFORK | MADV_DOFORK | MADV_MERGEABLE | MADV_UNMERGEABLE | MADV_HUGEPAGE | MADV_NOHUGEPAGE | MADV_DONTDUMP | MADV_DODUMP | MADV_WIPEONFORK | MADV_KEEPONFORK | 20 | 21 | 22 | 103) {
                f(a[0], a[1]);
            }
        }
        SYS_brk => return Kind::Run, // sud.rs saves a shrinking heap's end
        SYS_shmat => {
            if a[2] & SHM_REMAP as u64 != 0 {
                return Kind::Defer;
            }
        }
        SYS_rt_sigreturn => return Kind::SigReturn,
        SYS_rt_sigprocmask => return Kind::SigMask,
        SYS_rt_sigaction => {
            f(a[2], 32);
            return Kind::SigAction;
        }
        // Calls that write nothing of the program's memory and change no mapping.
        SYS_write | SYS_pwrite64 | SYS_writev | SYS_pwritev | SYS_pwritev2 | SYS_open | SYS_openat | SYS_openat2 | SYS_close | SYS_close_range | SYS_lseek | SYS_access
        | SYS_faccessat | SYS_faccessat2 | SYS_dup | SYS_dup2 | SYS_dup3 | SYS_sched_yield | SYS_msync | SYS_pause | SYS_alarm | SYS_getpid | SYS_gettid | SYS_getppid
        | SYS_getuid | SYS_geteuid | SYS_getgid | SYS_getegid | SYS_getpgrp | SYS_getpgid | SYS_getsid | SYS_setsid | SYS_setpgid | SYS_socket | SYS_connect
        | SYS_sendto | SYS_sendmsg | SYS_shutdown | SYS_bind | SYS_listen | SYS_setsockopt | SYS_kill | SYS_tkill | SYS_tgkill | SYS_rt_sigqueueinfo
        | SYS_rt_tgsigqueueinfo | SYS_pidfd_send_signal | SYS_semget | SYS_semop | SYS_semtimedop | SYS_shmget | SYS_shmdt | SYS_msgget | SYS_msgsnd | SYS_flock
        | SYS_fsync | SYS_fdatasync | SYS_truncate | SYS_ftruncate | SYS_chdir | SYS_fchdir | SYS_rename | SYS_renameat | SYS_renameat2 | SYS_mkdir | SYS_mkdirat
        | SYS_rmdir | SYS_creat | SYS_link | SYS_linkat | SYS_unlink | SYS_unlinkat | SYS_symlink | SYS_symlinkat | SYS_chmod | SYS_fchmod | SYS_fchmodat
        | SYS_chown | SYS_fchown | SYS_lchown | SYS_fchownat | SYS_umask | SYS_setuid | SYS_setgid | SYS_setreuid | SYS_setregid | SYS_setresuid | SYS_setresgid
        | SYS_setfsuid | SYS_setfsgid | SYS_setgroups | SYS_getpriority | SYS_setpriority | SYS_sched_setparam | SYS_sched_setscheduler | SYS_sched_getscheduler
        | SYS_sched_get_priority_max | SYS_sched_get_priority_min | SYS_sched_setaffinity | SYS_sched_setattr | SYS_mlock | SYS_mlock2 | SYS_munlock | SYS_mlockall
        | SYS_munlockall | SYS_setrlimit | SYS_sync | SYS_syncfs | SYS_sync_file_range | SYS_readahead | SYS_fadvise64 | SYS_fallocate | SYS_setxattr | SYS_lsetxattr
        | SYS_fsetxattr | SYS_removexattr | SYS_lremovexattr | SYS_fremovexattr | SYS_utime | SYS_utimes | SYS_utimensat | SYS_futimesat | SYS_mknod | SYS_mknodat
        | SYS_epoll_create | SYS_epoll_create1 | SYS_epoll_ctl | SYS_eventfd | SYS_eventfd2 | SYS_signalfd | SYS_signalfd4 | SYS_timerfd_create | SYS_inotify_init
        | SYS_inotify_init1 | SYS_inotify_add_watch | SYS_inotify_rm_watch | SYS_fanotify_init | SYS_fanotify_mark | SYS_timer_getoverrun | SYS_timer_delete
        | SYS_clock_settime | SYS_settimeofday | SYS_set_robust_list | SYS_set_tid_address | SYS_exit_group | SYS_rt_sigsuspend | SYS_mq_open | SYS_mq_unlink
        | SYS_mq_timedsend | SYS_mq_notify | SYS_memfd_create | SYS_tee | SYS_membarrier | SYS_mbind | SYS_set_mempolicy | SYS_set_mempolicy_home_node
        | SYS_process_vm_writev | SYS_kcmp | SYS_pidfd_open | SYS_pidfd_getfd | SYS_name_to_handle_at | SYS_open_by_handle_at | SYS_personality | SYS_vhangup
        | SYS_ioprio_set | SYS_ioprio_get | SYS_unshare | SYS_setns | SYS_chroot | SYS_acct | SYS_sethostname | SYS_setdomainname | SYS_pkey_alloc
        | SYS_pkey_free | SYS_mseal | SYS_landlock_create_ruleset | SYS_landlock_add_rule | SYS_landlock_restrict_self | SYS_memfd_secret
        | SYS_process_mrelease | SYS_userfaultfd | SYS_perf_event_open | SYS_fsopen | SYS_fsconfig | SYS_fsmount | SYS_fspick | SYS_open_tree
        | SYS_move_mount | SYS_mount_setattr | SYS_mount | SYS_umount2 | SYS_pivot_root | SYS_swapon | SYS_swapoff | SYS_add_key | SYS_request_key
        | SYS_migrate_pages | SYS_fchmodat2 => {}
        // Everything else (clone, fork, vfork, exec, exit, AIO, io_uring, ptrace, keyctl, bpf,
        // seccomp, restart_syscall, calls this table does not know): after the snapshot.
        _ => return Kind::Defer,
    }
    Kind::Run
}

/// ioctl: the argument's size and direction when the request encodes them (_IOC), a few classic
/// terminal and socket requests that do not; anything else waits for the snapshot.
fn ioctl(a: &[u64; 6], f: &mut dyn FnMut(u64, u64)) -> Kind {
    let req = a[1] as u32;
    let dir = req >> 30;
    let size = u64::from((req >> 16) & 0x3fff);
    if req >> 8 & 0xff != 0x54 || req > 0xffff {
        // An encoded request: direction read (2) or read/write (3) means the kernel writes.
        if dir & 2 != 0 {
            f(a[2], size);
        }
        if dir != 0 || size != 0 {
            return Kind::Run;
        }
    }
    match req {
        0x5401 | 0x5405 => f(a[2], 60), // TCGETS, TCGETA
        0x5413 => f(a[2], 8),           // TIOCGWINSZ
        // TIOCGPGRP, TIOCOUTQ, TIOCMGET, TIOCGSOFTCAR, FIONREAD, TIOCGETD, TIOCGSID, TIOCGPTN
        0x540F | 0x5411 | 0x5415 | 0x5419 | 0x541B | 0x5424 | 0x5429 | 0x5430 => f(a[2], 4),
        // Requests that only read their argument or take none.
        0x5402..=0x5404 | 0x5406..=0x540E | 0x5410 | 0x5412 | 0x5414 | 0x5416..=0x5418 | 0x541A | 0x541D | 0x5420..=0x5423 | 0x5425 | 0x5427 | 0x5428 | 0x5450..=0x5452 => {}
        _ => return Kind::Defer,
    }
    Kind::Run
}
