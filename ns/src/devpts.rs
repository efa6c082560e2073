//! A devpts instance of the namespace's own on /dev/pts (and /dev/ptmx bound to its ptmx), so
//! that the pseudo-terminals the program makes are numbered among its own: after a restart (a
//! new namespace, a new instance) every old index is free again, whatever terminals were made on
//! the host meanwhile, and a pair is made at its old index (a name the program kept from
//! ptsname opens the same terminal). An ordinary user may mount one in a user namespace of its
//! own. Terminals from outside (the one ckpt-run was started from) stay in the host's instance:
//! their fds, /dev/tty and TIOCGSID work as before, but their /dev/pts/N names are covered (see
//! docs/namespaces.md).

use std::ffi::CString;

/// Mount the instance (in init, in the namespace's mount namespace, before the program starts).
/// `root`: not in a user namespace of our own (slaves then belong to group tty, as Debian's
/// host instance does). Err: why not (the program then shares the host's numbering).
pub(crate) fn mount_own(root: bool, tool: &str) -> Result<(), String> {
    let opts = if root { "newinstance,ptmxmode=0666,mode=0620,gid=5" } else { "newinstance,ptmxmode=0666,mode=0620" };
    let opts = CString::new(opts).expect("no NUL");
    let flags = libc::MS_NOSUID | libc::MS_NOEXEC;
    // SAFETY: valid C strings; a mount in our own mount namespace.
    if unsafe { libc::mount(c"devpts".as_ptr(), c"/dev/pts".as_ptr(), c"devpts".as_ptr(), flags, opts.as_ptr().cast()) } != 0 {
        return Err(format!("cannot mount a devpts instance on /dev/pts: {}", std::io::Error::last_os_error()));
    }
    // Opening /dev/ptmx finds the instance on /dev/pts by itself (Linux 4.7 and later); bound to
    // the instance's own ptmx it does on older kernels too.
    // SAFETY: valid C strings; a bind mount in our own mount namespace.
    if unsafe { libc::mount(c"/dev/pts/ptmx".as_ptr(), c"/dev/ptmx".as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) } != 0 && crate::verbose() {
        eprintln!("{tool}: /dev/ptmx is not bound to the namespace's /dev/pts/ptmx: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
