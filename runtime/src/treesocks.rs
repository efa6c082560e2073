//! Sockets this process shares with another process of its tree, found at checkpoint time (every
//! process of the tree stopped): the socket inodes that a process of the namespace with a lower
//! pid holds. That process captures their unread messages; we leave them to it (see
//! ckpt_kinds::sockets::capture::Context), since two processes peeking one queue at once would
//! move each other's peek offset. The restart takes the description of the lowest pid holding
//! the socket (ckpt_image::unshared::tree_connections).
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use crate::sys;

/// The socket inodes held by processes of our tree with a lower pid than ours (none outside a
/// tree). Init (pid 1, the coordinator) is not one of the program's processes.
pub fn held_by_lower_pids() -> Vec<u64> {
    if !crate::tree::is_member() {
        return Vec::new();
    }
    let me = sys::getpid();
    let Ok(pids) = sys::list_dir(&sys::cpath(&[b"/proc"])) else { return Vec::new() };
    let mut out = Vec::new();
    for name in pids {
        let Some(pid) = std::str::from_utf8(&name).ok().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid <= 1 || pid >= me {
            continue;
        }
        let Ok(fds) = sys::list_dir(&sys::cpath(&[b"/proc/", &name, b"/fd"])) else { continue };
        for fd in fds {
            let Ok(link) = sys::readlink(&sys::cpath(&[b"/proc/", &name, b"/fd/", &fd])) else { continue };
            if let Some(ino) = link.strip_prefix(b"socket:[").and_then(|r| r.strip_suffix(b"]")).and_then(|n| std::str::from_utf8(n).ok()?.parse().ok()) {
                out.push(ino);
            }
        }
    }
    out
}
