//! Binding a UNIX socket to its old name again (restore side), whatever became of the name's
//! file: a name bound relative to another working directory is bound from that directory; a
//! file that is still there is bound again with its permission bits (umask) and owner; a name
//! whose file was removed (or whose directory was) is bound in directories made for the
//! moment, and the file and directories are removed again; a name whose path now holds
//! another file (a FIFO, ...) is bound with that file moved aside for the moment and put back
//! over ours. Each step that changes the file system is undone by `Bound::finish`.

use crate::{check, lossy, Error, Result};
use ckpt_image::{SockFile, Socket};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

/// What to undo once the socket has served its connections.
#[derive(Default)]
pub struct Bound {
    unlink: Option<CString>,
    rename_back: Option<(CString, CString)>,
    rmdirs: Vec<CString>,
}

impl Bound {
    /// Put the file system back as it was at checkpoint time.
    pub fn finish(self) {
        // SAFETY: plain path operations on C strings.
        unsafe {
            if let Some((aside, path)) = &self.rename_back {
                libc::rename(aside.as_ptr(), path.as_ptr());
            } else if let Some(p) = &self.unlink {
                libc::unlink(p.as_ptr());
            }
            for d in self.rmdirs.iter().rev() {
                libc::rmdir(d.as_ptr());
            }
        }
    }
}

/// The path of a UNIX sockaddr's name (None: unnamed or abstract).
pub fn path_of(name: &[u8]) -> Option<Vec<u8>> {
    (name.len() > 2 && name[2] != 0).then(|| name[2..].iter().take_while(|&&b| b != 0).copied().collect())
}

fn cstr(b: &[u8]) -> Result<CString> {
    CString::new(b.to_vec()).map_err(|_| Error::Refused(format!("socket path {} contains a NUL byte", lossy(b))))
}

fn exists(p: &CString) -> Option<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-parameter; p is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::lstat(p.as_ptr(), &mut st) } == 0).then_some(st)
}

/// Make the missing directories above `path` (mode 0700); the ones made, outermost first.
fn make_parents(path: &[u8]) -> Vec<CString> {
    let mut made = Vec::new();
    let mut prefix_end: Vec<usize> = path.iter().enumerate().filter(|(i, &b)| b == b'/' && *i > 0).map(|(i, _)| i).collect();
    prefix_end.retain(|&i| i < path.len());
    for i in prefix_end {
        let Ok(d) = CString::new(&path[..i]) else { break };
        if exists(&d).is_some() {
            continue;
        }
        // SAFETY: d is a valid C string.
        if unsafe { libc::mkdir(d.as_ptr(), 0o700) } == 0 {
            made.push(d);
        }
    }
    made
}

/// Bind `fd` to the name of `s` again (see the module comment).
pub fn bind(fd: i32, s: &Socket, ignore: bool) -> Result<Bound> {
    let Some(path) = path_of(&s.name) else {
        // Abstract (or autobound) names: bound as they are. The killed program's socket may
        // still hold the name for a moment: sockets caught in a cycle of files in flight are
        // freed by the kernel's garbage collector, which closing a socket sets going.
        for i in 0..100 {
            // SAFETY: s.name is a sockaddr_un of s.name.len() bytes.
            let r = unsafe { libc::bind(fd, s.name.as_ptr().cast(), s.name.len() as u32) };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EADDRINUSE) || i == 99 {
                check(r, || format!("cannot bind unix {} again", describe(s)))?;
                break;
            }
            // SAFETY: a socket made and closed at once; then a short wait.
            unsafe { libc::close(libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)) };
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        return Ok(Bound::default());
    };
    let relative = !path.starts_with(b"/");
    let full = if relative && !s.bind_dir.is_empty() { [&s.bind_dir[..], b"/", &path[..]].concat() } else { path.clone() };
    let fullc = cstr(&full)?;
    let mut undo = Bound::default();
    let now = exists(&fullc);
    match s.file {
        SockFile::Present { .. } => match now {
            // The file the killed program's socket left behind.
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => {
                // SAFETY: fullc is a valid C string.
                unsafe { libc::unlink(fullc.as_ptr()) };
            }
            Some(_) if !ignore => {
                return Err(Error::Refused(format!(
                    "the path {} of a unix socket is now another file, not a socket (--ignore-missing-files binds the socket with that file left in place)",
                    lossy(&full)
                )))
            }
            _ => {}
        },
        SockFile::Deleted | SockFile::Replaced | SockFile::None => {}
    }
    let keep_file = matches!(s.file, SockFile::Present { .. });
    if exists(&fullc).is_some() {
        // Something is at the path that must stay: move it aside and put it back afterwards.
        let aside = cstr(&[&full[..], format!(".ckpt-aside-{}", std::process::id()).as_bytes()].concat())?;
        // SAFETY: plain renameat2 on valid C strings; never replaces an existing file.
        let r = unsafe { libc::renameat2(libc::AT_FDCWD, fullc.as_ptr(), libc::AT_FDCWD, aside.as_ptr(), libc::RENAME_NOREPLACE) };
        check(r, || format!("cannot move {} aside to bind a socket there", lossy(&full)))?;
        undo.rename_back = Some((aside, fullc.clone()));
    } else if !keep_file {
        undo.unlink = Some(fullc.clone());
    }
    if !keep_file {
        undo.rmdirs = make_parents(&full);
    }
    let mode = match s.file {
        SockFile::Present { mode, .. } => Some(mode),
        _ => None,
    };
    let r = with_dir(relative.then_some(&s.bind_dir[..]).filter(|d| !d.is_empty()), mode, || {
        // SAFETY: s.name is a sockaddr_un of s.name.len() bytes.
        unsafe { libc::bind(fd, s.name.as_ptr().cast(), s.name.len() as u32) }
    });
    if let Err(e) = check(r, || format!("cannot bind unix {} again", describe(s))) {
        undo.finish();
        return Err(e);
    }
    if let SockFile::Present { uid, gid, .. } = s.file {
        // SAFETY: plain calls on valid C strings.
        let (me_u, me_g) = unsafe { (libc::geteuid(), libc::getegid()) };
        if (uid, gid) != (me_u, me_g) && unsafe { libc::lchown(fullc.as_ptr(), uid, gid) } < 0 {
            crate::warn(&format!("the socket file {} cannot be given back to its owner {uid}:{gid}: {}", lossy(&full), std::io::Error::last_os_error()));
        }
    }
    Ok(undo)
}

/// Run `f` in directory `dir` (if given) with the umask that gives `mode` (if given); back to
/// our working directory and umask afterwards, with `f`'s errno.
fn with_dir(dir: Option<&[u8]>, mode: Option<u32>, f: impl FnOnce() -> i32) -> i32 {
    let (r, e) = in_dir(dir.unwrap_or_default(), || {
        // SAFETY: umask only changes this process's file mode mask.
        let old = mode.map(|m| unsafe { libc::umask(!m & 0o777) });
        let r = f();
        let e = std::io::Error::last_os_error();
        if let Some(o) = old {
            // SAFETY: as above.
            unsafe { libc::umask(o) };
        }
        (r, e)
    });
    if r < 0 {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = e.raw_os_error().unwrap_or(0) };
    }
    r
}

/// Run `f` in directory `dir` (if not empty: where relative names were bound), then back.
pub fn in_dir<T>(dir: &[u8], f: impl FnOnce() -> T) -> T {
    if dir.is_empty() {
        return f();
    }
    let cwd = std::env::current_dir().ok();
    let moved = std::env::set_current_dir(std::ffi::OsStr::from_bytes(dir)).is_ok();
    if !moved {
        // The directory is gone: from where we are (the name stays the same).
        crate::info(&format!("the directory {} a socket was bound in is gone", lossy(dir)));
    }
    let r = f();
    if moved {
        if let Some(c) = cwd {
            let _ = std::env::set_current_dir(c);
        }
    }
    r
}

/// Connect `fd` to the UNIX name `name` (relative names from `dir`).
pub fn connect(fd: i32, name: &[u8], dir: &[u8]) -> i32 {
    let relative = path_of(name).is_some_and(|p| !p.starts_with(b"/"));
    with_dir(relative.then_some(dir).filter(|d| !d.is_empty()), None, || {
        // SAFETY: name is a sockaddr_un of name.len() bytes.
        unsafe { libc::connect(fd, name.as_ptr().cast(), name.len() as u32) }
    })
}

fn describe(s: &Socket) -> String {
    ckpt_image::describe_addr(s.family, &s.name)
}
