//! The TCP connections that the other processes of a step task's tree hold (the task's program
//! is the tree's root, step.rs), found with every process of the tree stopped: the socket inodes
//! of their fds (/proc/PID/fd) and, for addresses, the kernel's table of TCP sockets
//! (/proc/self/net/tcp and tcp6; the tree shares the host's network namespace). The step's
//! coordinator pairs them like the program's own; the program then names for each holder the
//! connections to other tasks it drains (step.rs `hand_out`).
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use crate::sys;

/// The processes of our tree besides us (in our namespace; not init, not ckpt's snapshot
/// writers, named `WRITER_NAME`; the program's clones without an exit signal too), with their
/// names, zombies too.
pub fn others() -> Vec<(i32, String)> {
    let me = sys::getpid();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return Vec::new() };
    names
        .iter()
        .filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .map(|pid| {
            let mut comm = sys::read_file(&sys::cpath(&[b"/proc/", sys::decimal(pid).as_slice(), b"/comm"])).unwrap_or_default();
            while comm.last() == Some(&b'\n') {
                comm.pop();
            }
            (pid, comm)
        })
        .filter(|(_, comm)| comm.as_slice() != ckpt_ns::WRITER_NAME.to_bytes())
        .map(|(pid, comm)| (pid, String::from_utf8_lossy(&comm).into_owned()))
        .collect()
}

/// A connected TCP socket another process of the tree holds: (holder, inode, local address,
/// peer address), the addresses as getsockname/getpeername give them (sockaddr_in or _in6).
pub type Held = (i32, u64, Vec<u8>, Vec<u8>);

/// The connected TCP sockets the other processes of our tree hold: each once per process that
/// holds it (a socket two processes hold is reported by both).
pub fn held_by_others() -> Vec<Held> {
    let others = others();
    if others.is_empty() {
        return Vec::new();
    }
    let table = tcp_table();
    let mut out: Vec<Held> = Vec::new();
    for (pid, _) in others {
        let p = sys::decimal(pid);
        let Ok(fds) = sys::list_dir(&sys::cpath(&[b"/proc/", &p, b"/fd"])) else { continue };
        for fd in fds {
            let Ok(link) = sys::readlink(&sys::cpath(&[b"/proc/", &p, b"/fd/", &fd])) else { continue };
            let Some(ino) = link.strip_prefix(b"socket:[").and_then(|r| r.strip_suffix(b"]")).and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok()) else { continue };
            if out.iter().any(|h| h.0 == pid && h.1 == ino) {
                continue;
            }
            if let Some((_, local, peer)) = table.iter().find(|t| t.0 == ino) {
                out.push((pid, ino, local.clone(), peer.clone()));
            }
        }
    }
    out
}

/// The kernel's connected TCP sockets of our network namespace: (inode, local, peer).
fn tcp_table() -> Vec<(u64, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for (path, v6) in [(b"/proc/self/net/tcp".as_slice(), false), (b"/proc/self/net/tcp6".as_slice(), true)] {
        let text = sys::read_file(&sys::cpath(&[path])).unwrap_or_default();
        for line in text.split(|&b| b == b'\n').skip(1) {
            let f: Vec<&[u8]> = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(peer), Some(st), Some(ino)) = (f.get(1), f.get(2), f.get(3), f.get(9)) else { continue };
            // 0A: LISTEN; 07: CLOSE (not connected).
            if *st == b"0A" || *st == b"07" {
                continue;
            }
            let Some(ino) = std::str::from_utf8(ino).ok().and_then(|s| s.parse::<u64>().ok()) else { continue };
            let (Some(l), Some(p)) = (sockaddr(local, v6), sockaddr(peer, v6)) else { continue };
            if ino != 0 {
                out.push((ino, l, p));
            }
        }
    }
    out
}

/// "0100007F:1F90" (tcp) or 32 hex digits and a port (tcp6) as the sockaddr the kernel gives
/// getsockname: each 32-bit word of the address is printed as a number in host byte order.
fn sockaddr(text: &[u8], v6: bool) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(text).ok()?;
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8).map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16)).collect::<Result<_, _>>().ok()?;
    let mut out = Vec::with_capacity(28);
    if v6 {
        if words.len() != 4 {
            return None;
        }
        out.extend_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        out.extend_from_slice(&port.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        words.iter().for_each(|w| out.extend_from_slice(&w.to_ne_bytes()));
        out.extend_from_slice(&[0; 4]);
    } else {
        if words.len() != 1 {
            return None;
        }
        out.extend_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        out.extend_from_slice(&port.to_be_bytes());
        out.extend_from_slice(&words[0].to_ne_bytes());
        out.extend_from_slice(&[0; 8]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::sockaddr;

    #[test]
    fn addresses_as_getsockname_gives_them() {
        let a = sockaddr(b"0100007F:1F90", false).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(&a[2..8], &[0x1f, 0x90, 127, 0, 0, 1]);
        let b = sockaddr(b"0000000000000000FFFF00000100007F:0050", true).unwrap();
        assert_eq!(b.len(), 28);
        assert_eq!(&b[2..4], &[0, 0x50]);
        assert_eq!(&b[8..24], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
        assert_eq!(sockaddr(b"zz:1", false), None);
    }
}
