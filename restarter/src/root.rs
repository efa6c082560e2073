//! The root directory of a program that called chroot(): recorded by the checkpoint as the
//! real root sees it (`ProcessState::root`), checked here before anything is changed, and
//! entered by the runtime after the switch, before the program's threads come back
//! (`RestartInfo::root`), so that they share it again while the checkpoint thread keeps a root
//! of its own.

use anyhow::{bail, Result};
use ckpt_image::ProcessState;
use std::ffi::CString;

/// The root the program had chroot()ed into, if it had.
pub fn changed(p: &ProcessState) -> Option<&[u8]> {
    Some(&p.root[..]).filter(|r| !r.is_empty() && *r != b"/")
}

/// Refuse, in one line, a restart that cannot give the program its root back: the directory
/// is gone or not a directory, or this process may not chroot (CAP_SYS_CHROOT: root, or
/// ckpt's own user namespace). Tried in a child, which leaves us as we are.
pub fn check(p: &ProcessState) -> Result<()> {
    let Some(root) = changed(p) else { return Ok(()) };
    let shown = String::from_utf8_lossy(root).into_owned();
    let path = CString::new(root)?;
    // SAFETY: a path check; the fd, if any, is closed at once.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        bail!("the program's root directory {shown} (it had called chroot) cannot be used: {}", std::io::Error::last_os_error());
    }
    // SAFETY: closing the fd just opened.
    unsafe { libc::close(fd) };
    // SAFETY: the child makes two raw system calls (chroot, exit) and nothing else.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let r = libc::syscall(libc::SYS_chroot, path.as_ptr());
            let code = if r == 0 { 0 } else { *libc::__errno_location() & 0xff };
            libc::syscall(libc::SYS_exit_group, code);
        }
        unreachable!();
    }
    if pid < 0 {
        bail!("cannot try the program's root directory {shown}: {}", std::io::Error::last_os_error());
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {}
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 255 };
    if code != 0 {
        bail!(
            "the program had changed its root directory to {shown} (chroot), which this restart cannot do: {} \
             (chroot needs CAP_SYS_CHROOT: restart as root or in ckpt's namespace, not with --no-namespace)",
            std::io::Error::from_raw_os_error(code)
        );
    }
    Ok(())
}
