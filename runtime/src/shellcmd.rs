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
//! popen() is not done this way yet: its shell still starts without the runtime.

use std::ffi::{c_char, c_int};
use std::sync::Mutex;

extern "C" {
    static environ: *const *const c_char;
}

/// How many system() calls are waiting, and the dispositions the first one found.
static SAVED: Mutex<(u32, Option<(libc::sigaction, libc::sigaction)>)> = Mutex::new((0, None));

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
