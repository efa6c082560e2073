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
            FdKind::Deleted(d) => {
                let stored: u64 = d.chunks.iter().map(|c| c.raw_len).sum();
                let what = if d.is_dir() { "deleted directory" } else if d.is_file() { "deleted file" } else { "deleted node" };
                ("deleted", format!("{what} {} ({} bytes, {stored} stored)", lossy(&d.path), d.size))
            }
            FdKind::Fifo { path, data, deleted, .. } => {
                ("fifo", format!("{}{} ({} bytes unread)", lossy(path), if *deleted { " (deleted)" } else { "" }, data.len()))
            }
            FdKind::Pipe { ino, data, .. } => ("pipe", format!("pipe:[{ino}] ({} bytes unread)", data.len())),
            FdKind::UnixPair { ino, peer, queue, .. } => {
                ("socketpair", format!("socket:[{ino}] peer {peer} ({} bytes unread)", queue.iter().map(Vec::len).sum::<usize>()))
            }
            FdKind::Bound { family, listening, .. } => {
                (if *listening { "listening" } else { "bound" }, format!("socket family {family}"))
            }
            FdKind::Closed { family, .. } => ("closed-socket", format!("socket family {family}, peer outside")),
            FdKind::EventFd { count, .. } => ("eventfd", format!("count {count}")),
            FdKind::TimerFd { clockid, value_ns, interval_ns, .. } => {
                ("timerfd", format!("clock {clockid}, {value_ns} ns left, interval {interval_ns} ns"))
            }
            FdKind::SignalFd { mask } => ("signalfd", format!("mask {mask:#x}")),
            FdKind::Epoll { entries } => ("epoll", format!("{} entries", entries.len())),
            FdKind::Inotify { watches } => ("inotify", format!("{} watches", watches.len())),
        }
    }
}
