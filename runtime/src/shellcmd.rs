//! system() in a member of a process tree: glibc's spawns its shell with its internal
//! posix_spawn and the program's environment, which no longer holds the runtime's settings, so
//! the shell would run without the runtime and the tree could not be checkpointed while it runs.
//! Here system() is what glibc's does (POSIX): SIGINT and SIGQUIT ignored and SIGCHLD blocked
//! in the caller while it waits (the first of concurrent calls saves the dispositions, the last
//! puts them back), `/bin/sh -c -- CMD` spawned with the caller's mask and SIGINT and SIGQUIT at
//! their defaults unless they were ignored, its wait status returned (127 as an exit code when
//! the shell cannot be started), system(NULL) asking whether a shell is there. The spawn goes
//! through the runtime's posix_spawn, which gives the shell the tree's settings.
//!
//! popen() likewise (glibc's semantics: a pipe whose other end is the shell's stdin or stdout,
//! the streams of earlier popen() calls closed in the shell, "e" for close-on-exec), with
//! pclose() for its streams (close, then the shell's wait status); pclose() of a stream glibc's
//! popen made (before the process was a member) is glibc's.

use std::ffi::{c_char, c_int};
use crate::forklock::Mutex;

extern "C" {
    static environ: *const *const c_char;
}

/// The streams our popen made and their shells' pids.
pub(crate) static STREAMS: Mutex<Vec<(usize, libc::pid_t)>> = Mutex::new(Vec::new());

/// How many system() calls are waiting, and the dispositions the first one found.
pub(crate) static SAVED: Mutex<(u32, Option<(libc::sigaction, libc::sigaction)>)> = Mutex::new((0, None));

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// system(cmd) for a tree member.
///
/// # Safety
/// `cmd` is null or a NUL-terminated string (libc's contract for system).
pub unsafe fn system(cmd: *const c_char) -> c_int {
    if cmd.is_null() {
        // SAFETY: a valid command string.
        return (unsafe { run(c"exit 0".as_ptr()) } == 0) as c_int;
    }
    // SAFETY: as for libc.
    unsafe { run(cmd) }
}

unsafe fn run(cmd: *const c_char) -> c_int {
    // SAFETY: plain signal-state calls (through the runtime's hooks: the program's view), a
    // spawn through the runtime's posix_spawn and a wait for the child it made.
    unsafe {
        let mut ign: libc::sigaction = std::mem::zeroed();
        ign.sa_sigaction = libc::SIG_IGN;
        let (intr, quit) = {
            let mut s = SAVED.lock().unwrap_or_else(|e| e.into_inner());
            if s.0 == 0 {
                let mut intr: libc::sigaction = std::mem::zeroed();
                let mut quit: libc::sigaction = std::mem::zeroed();
                crate::sighooks::sigaction(libc::SIGINT, &ign, &mut intr);
                crate::sighooks::sigaction(libc::SIGQUIT, &ign, &mut quit);
                s.1 = Some((intr, quit));
            }
            s.0 += 1;
            s.1.expect("saved by the first call")
        };
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        let mut omask: libc::sigset_t = std::mem::zeroed();
        crate::sighooks::sigprocmask(libc::SIG_BLOCK, &chld, &mut omask);
        let mut reset: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut reset);
        if intr.sa_sigaction != libc::SIG_IGN {
            libc::sigaddset(&mut reset, libc::SIGINT);
        }
        if quit.sa_sigaction != libc::SIG_IGN {
            libc::sigaddset(&mut reset, libc::SIGQUIT);
        }
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawnattr_setsigmask(&mut attr, &omask);
        libc::posix_spawnattr_setsigdefault(&mut attr, &reset);
        libc::posix_spawnattr_setflags(&mut attr, (libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as libc::c_short);
        let argv = [c"sh".as_ptr(), c"-c".as_ptr(), c"--".as_ptr(), cmd, std::ptr::null()];
        let mut pid: libc::pid_t = 0;
        let r = crate::spawnhooks::posix_spawn(&mut pid, c"/bin/sh".as_ptr(), std::ptr::null(), &attr, argv.as_ptr(), environ);
        libc::posix_spawnattr_destroy(&mut attr);
        let mut status: c_int = 0;
        let mut err = 0;
        if r == 0 {
            loop {
                let w = libc::waitpid(pid, &mut status, 0);
                if w == pid {
                    break;
                }
                if w < 0 && errno() == libc::EINTR {
                    continue;
                }
                err = errno();
                status = -1;
                break;
            }
        } else {
            // POSIX: as if the shell had exited with 127.
            status = 127 << 8;
        }
        {
            let mut s = SAVED.lock().unwrap_or_else(|e| e.into_inner());
            s.0 -= 1;
            if s.0 == 0 {
                crate::sighooks::sigaction(libc::SIGINT, &intr, std::ptr::null_mut());
                crate::sighooks::sigaction(libc::SIGQUIT, &quit, std::ptr::null_mut());
                s.1 = None;
            }
        }
        crate::sighooks::sigprocmask(libc::SIG_SETMASK, &omask, std::ptr::null_mut());
        if err != 0 {
            *libc::__errno_location() = err;
        }
        status
    }
}

/// popen(cmd, mode) for a tree member.
///
/// # Safety
/// libc's contract for popen.
pub unsafe fn popen(cmd: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: mode is a NUL-terminated string (libc's contract).
    let m = unsafe { std::ffi::CStr::from_ptr(mode) }.to_bytes();
    let (read, cloexec) = match m.first() {
        Some(b'r') => (true, m.contains(&b'e')),
        Some(b'w') => (false, m.contains(&b'e')),
        _ => {
            crate::sys::set_errno(libc::EINVAL);
            return std::ptr::null_mut();
        }
    };
    let mut p = [0; 2];
    // SAFETY: pipe2 fills p.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return std::ptr::null_mut();
    }
    let (ours, theirs, std_fd) = if read { (p[0], p[1], 1) } else { (p[1], p[0], 0) };
    // SAFETY: file actions are ours; a spawn through the runtime's posix_spawn; fds are ours.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        if theirs != std_fd {
            libc::posix_spawn_file_actions_adddup2(&mut fa, theirs, std_fd);
        } else {
            libc::fcntl(theirs, libc::F_SETFD, 0);
        }
        // POSIX: the streams of earlier popen() calls are closed in the new shell.
        let streams = STREAMS.lock().unwrap_or_else(|e| e.into_inner());
        for (f, _) in streams.iter() {
            let fd = libc::fileno(*f as *mut libc::FILE);
            if fd >= 0 && fd != std_fd {
                libc::posix_spawn_file_actions_addclose(&mut fa, fd);
            }
        }
        let argv = [c"sh".as_ptr(), c"-c".as_ptr(), c"--".as_ptr(), cmd, std::ptr::null()];
        let mut pid: libc::pid_t = 0;
        let r = crate::spawnhooks::posix_spawn(&mut pid, c"/bin/sh".as_ptr(), &fa, std::ptr::null(), argv.as_ptr(), environ);
        drop(streams);
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::close(theirs);
        if r != 0 {
            libc::close(ours);
            *libc::__errno_location() = r;
            return std::ptr::null_mut();
        }
        if !cloexec {
            libc::fcntl(ours, libc::F_SETFD, 0);
        }
        let f = libc::fdopen(ours, if read { c"r".as_ptr() } else { c"w".as_ptr() });
        if f.is_null() {
            libc::close(ours);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            return f;
        }
        STREAMS.lock().unwrap_or_else(|e| e.into_inner()).push((f as usize, pid));
        f
    }
}

/// pclose(f) of a stream our popen made: Some(the shell's wait status, or -1); None for
/// another stream (glibc's).
///
/// # Safety
/// libc's contract for pclose.
pub unsafe fn pclose(f: *mut libc::FILE) -> Option<c_int> {
    let pid = {
        let mut s = STREAMS.lock().unwrap_or_else(|e| e.into_inner());
        let i = s.iter().position(|(g, _)| *g == f as usize)?;
        s.remove(i).1
    };
    // SAFETY: closing the stream we made and waiting for the shell we spawned.
    unsafe {
        libc::fclose(f);
        let mut status = 0;
        loop {
            let w = libc::waitpid(pid, &mut status, 0);
            if w == pid {
                return Some(status);
            }
            if w < 0 && errno() == libc::EINTR {
                continue;
            }
            return Some(-1);
        }
    }
}
