//! What a restart cannot bring back, found at checkpoint time (with the threads stopped): the
//! program's child processes, which are not in the image (process trees are not restored), and
//! fds that read a pipe or FIFO whose writer is outside the program (its later input cannot be
//! replayed). The image records them (`Index::left_out`), each checkpoint says so in one line per
//! kind, and ckpt-restart warns again. Raw system calls; allocations go to the scratch arena.

use crate::sys::{self, syscall};
use ckpt_image::{ChildProcess, FdKind, FdState, LeftOut, OutsidePipe};

/// Longest command line kept for a child (the rest is cut, marked with "...").
const COMMAND_MAX: usize = 80;

pub fn find(fds: &[FdState]) -> LeftOut {
    LeftOut { children: children(), outside_pipes: outside_pipes(fds) }
}

/// Children of every thread of the process (/proc/self/task/TID/children), zombies included.
fn children() -> Vec<ChildProcess> {
    let mut out: Vec<ChildProcess> = Vec::new();
    let Ok(tasks) = sys::list_dir(&sys::cpath(&[b"/proc/self/task"])) else { return out };
    for t in tasks {
        let Ok(list) = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &t, b"/children"])) else { continue };
        for pid in list.split(|&b| b == b' ' || b == b'\n').filter_map(|w| std::str::from_utf8(w).ok()?.parse::<i32>().ok()) {
            if !out.iter().any(|c| c.pid == pid) && !crate::snapshot::is_own_child(pid) {
                out.push(describe(pid));
            }
        }
    }
    out.sort_by_key(|c| c.pid);
    out
}

fn describe(pid: i32) -> ChildProcess {
    let dir = [&b"/proc/"[..], &sys::decimal(pid)].concat();
    let stat = sys::read_file(&sys::cpath(&[&dir, b"/stat"])).unwrap_or_default();
    // "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
    let open = stat.iter().position(|&b| b == b'(').unwrap_or(0);
    let close = stat.iter().rposition(|&b| b == b')').unwrap_or(stat.len());
    let comm = stat.get(open + 1..close).unwrap_or_default().to_vec();
    let state = stat.get(close + 2).copied().unwrap_or(b'?');
    let exited = state == b'Z' || state == b'X';
    let mut command: Vec<u8> = sys::read_file(&sys::cpath(&[&dir, b"/cmdline"]))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(&b' ');
    if command.is_empty() {
        command = comm;
    }
    if command.len() > COMMAND_MAX {
        command.truncate(COMMAND_MAX);
        command.extend_from_slice(b"...");
    }
    ChildProcess { pid, command, exited }
}

fn reads(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_WRONLY
}

/// Read ends of pipes and FIFOs that a process outside the program writes (the program holds no
/// write end, and one is still open elsewhere), and those on fds 0-2 with bytes still unread
/// (a restart gives fds 0-2 ckpt-restart's own: the bytes are lost even if no writer is left).
/// Dups of an fd are not listed again.
fn outside_pipes(fds: &[FdState]) -> Vec<OutsidePipe> {
    let mut out = Vec::new();
    for f in fds.iter().filter(|f| f.dup_of.is_none() && f.flags & libc::O_ACCMODE == libc::O_RDONLY) {
        let (writer, fifo) = match &f.kind {
            FdKind::Pipe { ino, .. } => (fds.iter().any(|g| matches!(&g.kind, FdKind::Pipe { ino: i, .. } if i == ino) && !reads(g.flags)), Vec::new()),
            FdKind::Other { link } if link.starts_with(b"/") && is_fifo(f.fd) => {
                (fds.iter().any(|g| matches!(&g.kind, FdKind::Other { link: l } if l == link) && g.flags & libc::O_ACCMODE != libc::O_RDONLY), link.clone())
            }
            _ => continue,
        };
        let mut n: i32 = 0;
        let _ = syscall!(libc::SYS_ioctl, f.fd, libc::FIONREAD, &mut n as *mut i32);
        let unread = n.max(0) as u64;
        if !writer && (!writers_gone(f.fd) || (f.fd <= 2 && unread > 0)) {
            out.push(OutsidePipe { fd: f.fd, unread, fifo });
        }
    }
    out
}

/// Whether every write end of the pipe read through `fd` is closed (POLLHUP): then nothing more
/// can come, and a restart, which gives the unread bytes back, then end of file, loses nothing.
fn writers_gone(fd: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    syscall!(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, 0).is_ok() && p.revents & libc::POLLHUP != 0
}

fn is_fifo(fd: i32) -> bool {
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat).is_ok() && st.st_mode & libc::S_IFMT == libc::S_IFIFO
}
