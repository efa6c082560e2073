//! What a restart cannot bring back, recorded in the image (`Index::left_out`) so that the
//! checkpoint, `ckpt-restart` and `ckpt-inspect` can all say so, in the same words.

use serde::{Deserialize, Serialize};

/// What the program depended on at checkpoint time that a restart does not bring back, so that
/// the checkpoint, ckpt-restart and ckpt-inspect can say so.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LeftOut {
    /// The program's child processes, running or exited but not yet waited for: they are not in
    /// the image, and a restarted program's wait() does not find them.
    pub children: Vec<ChildProcess>,
    /// fds reading a pipe (or FIFO) whose write end the program does not hold: what the writer
    /// outside sends after the checkpoint cannot be replayed after a restart.
    pub outside_pipes: Vec<OutsidePipe>,
}

/// A child process of the program at checkpoint time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildProcess {
    pub pid: i32,
    /// Its command line (arguments joined by spaces, shortened), or its name once it has exited.
    pub command: Vec<u8>,
    /// Exited and not yet waited for (a zombie).
    pub exited: bool,
}

/// An fd reading from a pipe fed from outside the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsidePipe {
    pub fd: i32,
    /// Bytes that were in the pipe, not yet read, at checkpoint time.
    pub unread: u64,
    /// The FIFO's path, or empty for an anonymous pipe.
    pub fifo: Vec<u8>,
}

impl ChildProcess {
    /// `4242 "sleep 30"`, `4250 "true" (exited)`.
    pub fn describe(&self) -> String {
        let cmd = String::from_utf8_lossy(&self.command);
        format!("{} \"{}\"{}", self.pid, cmd.escape_debug(), if self.exited { " (exited)" } else { "" })
    }
}

impl OutsidePipe {
    /// `fd 0 (12 bytes unread)`, `fd 5 (FIFO /tmp/f, 0 bytes unread)`.
    pub fn describe(&self) -> String {
        let fifo = if self.fifo.is_empty() { String::new() } else { format!("FIFO {}, ", String::from_utf8_lossy(&self.fifo)) };
        format!("fd {} ({fifo}{} bytes unread)", self.fd, self.unread)
    }
}

impl LeftOut {
    pub fn is_empty(&self) -> bool {
        self.children.is_empty() && self.outside_pipes.is_empty()
    }

    /// The children, described and separated by commas (None: none).
    pub fn children_list(&self) -> Option<String> {
        (!self.children.is_empty()).then(|| self.children.iter().map(ChildProcess::describe).collect::<Vec<_>>().join(", "))
    }

    /// The fds reading outside pipes, described and separated by commas (None: none).
    pub fn pipes_list(&self) -> Option<String> {
        (!self.outside_pipes.is_empty()).then(|| self.outside_pipes.iter().map(OutsidePipe::describe).collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions() {
        let l = LeftOut {
            children: vec![
                ChildProcess { pid: 4242, command: b"sleep 30".to_vec(), exited: false },
                ChildProcess { pid: 4250, command: b"tr\"ue".to_vec(), exited: true },
            ],
            outside_pipes: vec![OutsidePipe { fd: 0, unread: 12, fifo: Vec::new() }, OutsidePipe { fd: 5, unread: 0, fifo: b"/tmp/f".to_vec() }],
        };
        assert_eq!(l.children_list().unwrap(), r#"4242 "sleep 30", 4250 "tr\"ue" (exited)"#);
        assert_eq!(l.pipes_list().unwrap(), "fd 0 (12 bytes unread), fd 5 (FIFO /tmp/f, 0 bytes unread)");
        assert!(LeftOut::default().children_list().is_none() && LeftOut::default().is_empty());
    }
}
