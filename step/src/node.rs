//! This node, as the step's address files describe it: its boot id (two tasks with the same one
//! are on the same machine and talk through loopback) and its IPv4 addresses other than
//! loopback (/proc/net/fib_trie: the "/32 host LOCAL" entries). Raw system calls only.

use crate::sys;

pub(crate) fn read_proc(path: &std::ffi::CStr) -> String {
    let Ok(fd) = sys::openat(libc::AT_FDCWD, path, libc::O_RDONLY, 0) else { return String::new() };
    let mut v = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = sys::read(fd, &mut buf) {
        v.extend_from_slice(&buf[..n]);
    }
    sys::close(fd);
    String::from_utf8_lossy(&v).into_owned()
}

pub fn boot_id() -> String {
    read_proc(c"/proc/sys/kernel/random/boot_id").trim().to_string()
}

pub fn local_addrs() -> Vec<[u8; 4]> {
    let t = read_proc(c"/proc/net/fib_trie");
    let mut out: Vec<[u8; 4]> = Vec::new();
    let mut last: Option<[u8; 4]> = None;
    for l in t.lines().map(str::trim) {
        if let Some(a) = l.strip_prefix("|-- ") {
            last = a.split('.').map(|o| o.parse::<u8>().ok()).collect::<Option<Vec<u8>>>().and_then(|v| v.try_into().ok());
        } else if l.contains("/32 host LOCAL") {
            if let Some(a) = last.filter(|a| a[0] != 127 && !out.contains(a)) {
                out.push(a);
            }
        }
    }
    out
}

/// The sockaddrs to try for a coordinator published as `a`: loopback first on its machine.
pub fn candidates(a: &crate::files::Addr) -> Vec<Vec<u8>> {
    let mut ips = Vec::new();
    if a.boot == boot_id() || a.addrs.is_empty() {
        ips.push([127, 0, 0, 1]);
    }
    ips.extend(a.addrs.iter().copied());
    ips.into_iter().map(|ip| sys::sockaddr_in(ip, a.port)).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_node() {
        assert_eq!(super::boot_id().len(), 36);
        let a = crate::files::Addr { port: 7, boot: super::boot_id(), ..Default::default() };
        assert_eq!(super::candidates(&a)[0], crate::sys::sockaddr_in([127, 0, 0, 1], 7));
    }
}
