//! The file descriptor table (/proc/self/fd and fdinfo): what each fd is, its flags and offset,
//! the locks held through it, and which fds share an open file description (kcmp). What each
//! kind of object holds beyond that is read by its module of ckpt-kinds (deleted files, pipes
//! and FIFOs, locks, /proc paths) or by `fdobjs` (sockets, event fds).

use crate::fdobjs;
use crate::sys::{self, syscall};
use ckpt_image::{FdKind, FdState};
use ckpt_kinds::{deleted, locks, pipe, procfs};

const KCMP_FILE: i64 = 0;

pub fn read_fds() -> Vec<FdState> {
    let mut out = Vec::new();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])) else { return out };
    let mut fds: Vec<i32> = names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()).collect();
    fds.sort_unstable();
    // (fd, st_dev, st_ino) of the fds seen so far, to find dups.
    let mut seen: Vec<(i32, u64, u64)> = Vec::new();
    let mut pipes = pipe::Seen::default();
    let pid = sys::getpid();
    for fd in fds {
        if crate::control::is_runtime_fd(fd) {
            continue; // ours, created again after a restart
        }
        // SAFETY: an all-zero struct stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat).is_err() {
            continue; // the directory fd we listed with, now closed
        }
        let n = sys::decimal(fd);
        let link = sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &n])).unwrap_or_default();
        let link = procfs::own_proc_path(&link, pid);
        let info = sys::read_file(&sys::cpath(&[b"/proc/thread-self/fdinfo/", &n])).unwrap_or_default();
        let (pos, flags) = parse_fdinfo(&info);
        let cloexec = syscall!(libc::SYS_fcntl, fd, libc::F_GETFD).map(|f| f & libc::FD_CLOEXEC as i64 != 0).unwrap_or(false);
        let dup_of = seen
            .iter()
            .filter(|s| s.1 == st.st_dev && s.2 == st.st_ino)
            .find(|s| syscall!(libc::SYS_kcmp, pid, pid, KCMP_FILE, s.0, fd) == Ok(0))
            .map(|s| s.0);
        seen.push((fd, st.st_dev, st.st_ino));
        if let Some(of) = dup_of {
            out.push(FdState { fd, flags, pos, cloexec, kind: FdKind::Other { link }, dup_of: Some(of), mtime: 0, id: Default::default(), locks: Vec::new() });
            continue;
        }
        let fmt = st.st_mode & libc::S_IFMT;
        let named = link.starts_with(b"/");
        let gone = link.strip_suffix(b" (deleted)").filter(|_| named).map(<[u8]>::to_vec);
        let o_path = flags & libc::O_PATH != 0;
        let by_path = named && gone.is_none() && (o_path || [libc::S_IFREG, libc::S_IFDIR, libc::S_IFCHR, libc::S_IFLNK].contains(&fmt));
        // What the restart checks the file at the path against (the same file, not another one).
        let mut id = ckpt_image::FileId::default();
        let kind = if by_path {
            // SAFETY: an all-zero statfs is a valid out-parameter.
            let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
            let _ = syscall!(libc::SYS_fstatfs, fd, &mut fs as *mut libc::statfs);
            id = ckpt_image::FileId::new(&st, fs.f_type);
            FdKind::Path { path: link, size: st.st_size as u64, is_dir: fmt == libc::S_IFDIR }
        } else if fmt == libc::S_IFIFO && named {
            let deleted = gone.is_some();
            pipes.fifo(fd, &n, &st, gone.unwrap_or(link), deleted)
        } else if let Some(path) = gone {
            deleted::capture(fd, path, &st).unwrap_or(FdKind::Other { link })
        } else if fmt == libc::S_IFIFO && link.starts_with(b"pipe:") {
            pipes.pipe(fd, &n, st.st_ino)
        } else if fmt == libc::S_IFSOCK {
            fdobjs::socket(fd, st.st_ino).unwrap_or(FdKind::Other { link })
        } else if link.starts_with(b"anon_inode:") {
            fdobjs::anon(fd, &link, &info).unwrap_or(FdKind::Other { link })
        } else {
            FdKind::Other { link }
        };
        out.push(FdState { fd, flags, pos, cloexec, kind, dup_of: None, mtime: st.st_mtime, id, locks: locks::capture(fd, &info, flags) });
    }
    out
}


/// fdinfo: "pos:\t<dec>\nflags:\t<octal>\n..."
pub fn parse_fdinfo(info: &[u8]) -> (i64, i32) {
    let mut pos = 0;
    let mut flags = 0;
    for line in info.split(|&b| b == b'\n') {
        let s = std::str::from_utf8(line).unwrap_or("");
        if let Some(v) = s.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = s.strip_prefix("flags:") {
            flags = i32::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}
