//! Short human descriptions of fd kinds, for tools (ckpt-inspect) and messages.

use crate::FdKind;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl FdKind {
    /// (kind name, what it refers to).
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            FdKind::Path { path, is_dir, .. } => (if *is_dir { "dir" } else { "file" }, lossy(path)),
            FdKind::Other { link } => ("other", lossy(link)),
            FdKind::Deleted(d) if d.saved => {
                let stored: u64 = d.chunks.iter().map(|c| c.raw_len).sum();
                ("file", format!("{} (saved: {} bytes, {stored} stored)", lossy(&d.path), d.size))
            }
            FdKind::Deleted(d) => {
                let stored: u64 = d.chunks.iter().map(|c| c.raw_len).sum();
                let what = if d.is_dir() { "deleted directory" } else if d.is_file() { "deleted file" } else { "deleted node" };
                ("deleted", format!("{what} {} ({} bytes, {stored} stored)", lossy(&d.path), d.size))
            }
            FdKind::Fifo { path, data, deleted, .. } => {
                ("fifo", format!("{}{} ({} bytes unread)", lossy(path), if *deleted { " (deleted)" } else { "" }, data.len()))
            }
            FdKind::Pipe { ino, data, .. } => ("pipe", format!("pipe:[{ino}] ({} bytes unread)", data.len())),
            FdKind::Socket(s) => ("socket", s.describe()),
            FdKind::Tty(t) => ("tty", format!("{} ({:?}{})", lossy(&t.path), t.kind, if t.ctty { ", controlling terminal" } else { "" })),
            FdKind::EventFd { count, .. } => ("eventfd", format!("count {count}")),
            FdKind::TimerFd { clockid, value_ns, interval_ns, .. } => {
                ("timerfd", format!("clock {clockid}, {value_ns} ns left, interval {interval_ns} ns"))
            }
            FdKind::SignalFd { mask } => ("signalfd", format!("mask {mask:#x}")),
            FdKind::Epoll { entries } => ("epoll", format!("{} entries", entries.len())),
            FdKind::Inotify { watches, .. } => ("inotify", format!("{} watches", watches.len())),
            FdKind::PidFd { pid, own } => ("pidfd", format!("process {pid}{}", if *own { " (itself)" } else { "" })),
            FdKind::ExitedPidFd { ino } => ("pidfd", format!("an exited process (inode {ino})")),
            FdKind::Fanotify { marks, queued, .. } => ("fanotify", format!("{} marks, {queued} bytes of events queued", marks.len())),
            FdKind::TreeSocket { ino } => ("socket", format!("socket:[{ino}] (described in the image of a process with a lower pid)")),
            FdKind::Mqueue(q) => (
                "mqueue",
                format!("POSIX message queue {}{} ({} of {} messages of up to {} bytes{})", lossy(&q.name), if q.unlinked { " (removed)" } else { "" }, q.messages.len(), q.maxmsg, q.msgsize, if q.notify.is_some() { ", notification registered" } else { "" }),
            ),
        }
    }
}

impl crate::Socket {
    /// "unix stream /path (listening, 2 pending)", "inet udp 127.0.0.1:53 connected", ...
    pub fn describe(&self) -> String {
        let ty = match self.sock_type {
            libc::SOCK_STREAM => "stream",
            libc::SOCK_DGRAM => "dgram",
            libc::SOCK_SEQPACKET => "seqpacket",
            libc::SOCK_RAW => "raw",
            _ => "socket",
        };
        let fam = match self.family {
            libc::AF_UNIX => "unix",
            libc::AF_INET => "inet",
            libc::AF_INET6 => "inet6",
            libc::AF_NETLINK => "netlink",
            libc::AF_PACKET => "packet",
            _ => "other",
        };
        let mut s = format!("{fam} {ty} socket:[{}]", self.ino);
        if !self.name.is_empty() {
            s += &format!(" {}", describe_addr(self.family, &self.name));
        }
        s += match self.state {
            crate::SockState::Unconnected => "",
            crate::SockState::Listening => " listening",
            crate::SockState::Connected => " connected",
            crate::SockState::PeerGone => " peer gone",
        };
        if !self.peer_name.is_empty() {
            s += &format!(" to {}", describe_addr(self.family, &self.peer_name));
        }
        let unread: usize = self.queue.iter().map(|m| m.data.len()).sum();
        if unread > 0 {
            s += &format!(" ({unread} bytes unread)");
        }
        if !self.pending.is_empty() {
            s += &format!(" ({} pending)", self.pending.len());
        }
        s
    }
}

/// A raw sockaddr as text: "127.0.0.1:80", "[::1]:80", "/path", "@abstract", "netlink 123".
pub fn describe_addr(family: i32, a: &[u8]) -> String {
    match family {
        libc::AF_INET if a.len() >= 8 => format!("{}.{}.{}.{}:{}", a[4], a[5], a[6], a[7], u16::from_be_bytes([a[2], a[3]])),
        libc::AF_INET6 if a.len() >= 24 => {
            let ip: [u8; 16] = a[8..24].try_into().unwrap_or([0; 16]);
            format!("[{}]:{}", std::net::Ipv6Addr::from(ip), u16::from_be_bytes([a[2], a[3]]))
        }
        libc::AF_UNIX if a.len() > 2 && a[2] == 0 => format!("@{}", lossy(&a[3..])),
        libc::AF_UNIX if a.len() > 2 => lossy(a[2..].split(|&b| b == 0).next().unwrap_or(&[])),
        libc::AF_UNIX => "(unnamed)".to_string(),
        libc::AF_NETLINK if a.len() >= 12 => format!("netlink port {} groups {:#x}", u32::from_ne_bytes([a[4], a[5], a[6], a[7]]), u32::from_ne_bytes([a[8], a[9], a[10], a[11]])),
        _ => format!("family {family} address"),
    }
}
