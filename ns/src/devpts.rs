//! A devpts instance of the namespace's own on /dev/pts (and /dev/ptmx bound to its ptmx), so
//! that the pseudo-terminals the program makes are numbered among its own: after a restart (a
//! new namespace, a new instance) every old index is free again, whatever terminals were made on
//! the host meanwhile, and a pair is made at its old index (a name the program kept from
//! ptsname opens the same terminal). An ordinary user may mount one in a user namespace of its
//! own. Terminals from outside (the one ckpt-run was started from) stay in the host's instance:
//! their fds, /dev/tty and TIOCGSID work as before; their /dev/pts/N names would be covered,
//! so index N of the instance is made and held by init and the host's node bound over it
//! (`name_host_terminals`): ttyname() finds them again (see docs/namespaces.md).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// The terminals the program starts with (fds 0-2 that are the pseudo-terminal slave named
/// /dev/pts/N here: the host's instance's, or under a ckpt-run the node it bound there), each as
/// (index N, an O_PATH fd of that node), taken before the instance is mounted.
pub(crate) fn host_terminals() -> Vec<(u32, OwnedFd)> {
    let mut found: Vec<(u32, OwnedFd)> = Vec::new();
    for fd in 0..=2 {
        // SAFETY: an all-zero stat is a valid out-parameter; fstat of a fd number (a closed one
        // fails).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFCHR {
            continue;
        }
        let Some(index) = pts_index(st.st_rdev) else { continue };
        // The name ttyname finds in /proc/self/fd must be the one we cover.
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
        if link.as_os_str().as_encoded_bytes() != format!("/dev/pts/{index}").as_bytes() || found.iter().any(|f| f.0 == index) {
            continue;
        }
        // By its name in our mount namespace (a bind mount's source must be there: the fd's
        // own path is in the outer process's), the same node as the fd's.
        let path = CString::new(format!("/dev/pts/{index}")).expect("no NUL");
        // SAFETY: a valid C string; O_PATH opens the terminal's node without opening the device.
        let p = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if p < 0 {
            continue;
        }
        // SAFETY: a new fd that nobody else owns.
        let p = unsafe { OwnedFd::from_raw_fd(p) };
        // SAFETY: as above.
        let mut node: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(p.as_raw_fd(), &mut node) } == 0 && (node.st_dev, node.st_ino) == (st.st_dev, st.st_ino) {
            found.push((index, p));
        }
    }
    found
}

/// The index of a pseudo-terminal slave device (None: not a /dev/pts device).
fn pts_index(rdev: u64) -> Option<u32> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    (136..144).contains(&major).then(|| (major - 136) * 256 + minor)
}

/// Give the host terminals `terms` their names in the instance: pair N of the instance is made
/// and held (its master returned, to keep for the namespace's life: the index stays the
/// terminal's, as it is on the host) and the host's node bound over /dev/pts/N, so that
/// ttyname() finds the terminal by its name again. `pairs`: the indices the program's own pairs
/// need at a restart, which win. Whatever fails leaves that name covered (said at
/// CKPT_LOG=info).
pub(crate) fn name_host_terminals(terms: Vec<(u32, OwnedFd)>, pairs: &[u32], tool: &str) -> Vec<OwnedFd> {
    let mut held = Vec::new();
    for (index, node) in terms {
        let why = if pairs.contains(&index) {
            Err("the program's own pseudo-terminal pair of that index is made there".to_string())
        } else {
            hold_index(index).and_then(|m| bind_over(&node, index).map(|()| m))
        };
        match why {
            Ok(m) => held.push(m),
            Err(e) if crate::verbose() => eprintln!("{tool}: the program's terminal /dev/pts/{index} has no name inside (ttyname fails): {e}"),
            Err(_) => {}
        }
    }
    held
}

/// Make pair `index` of the instance (lower free indices are taken for the moment and freed
/// again); its master.
fn hold_index(index: u32) -> Result<OwnedFd, String> {
    let mut lower = Vec::new();
    loop {
        // SAFETY: a valid C string; a new master of the instance on /dev/pts.
        let m = unsafe { libc::open(c"/dev/pts/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if m < 0 {
            return Err(format!("cannot open /dev/pts/ptmx: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a new fd that nobody else owns.
        let m = unsafe { OwnedFd::from_raw_fd(m) };
        let mut got: libc::c_uint = 0;
        // SAFETY: TIOCGPTN on our master with a valid out-parameter.
        if unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCGPTN, &mut got) } != 0 {
            return Err(format!("TIOCGPTN: {}", std::io::Error::last_os_error()));
        }
        match got.cmp(&index) {
            std::cmp::Ordering::Less => lower.push(m),
            std::cmp::Ordering::Equal => return Ok(m),
            std::cmp::Ordering::Greater => return Err(format!("index {index} is taken")),
        }
    }
}

/// Bind the host's node `node` over /dev/pts/`index`.
fn bind_over(node: &OwnedFd, index: u32) -> Result<(), String> {
    let src = CString::new(format!("/proc/self/fd/{}", node.as_raw_fd())).expect("no NUL");
    let dst = CString::new(format!("/dev/pts/{index}")).expect("no NUL");
    // SAFETY: valid C strings; a bind mount in our own mount namespace.
    if unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) } != 0 {
        return Err(format!("cannot bind the host's node over {}: {}", dst.to_string_lossy(), std::io::Error::last_os_error()));
    }
    Ok(())
}
