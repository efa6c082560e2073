//! The connections between tasks that processes of a task's tree other than the task's program
//! hold (MPI ranks, children of their daemon), as the program hands them out in a step's
//! checkpoint: it pairs them with the other tasks (runtime/src/step.rs), then writes for each
//! such connection which process drains it, with the markers of both ends, into the tree's set
//! being written (`ckpt_ns::treemsg::STEP_PAIRS`, 0600, in the set's 0700 temporary
//! directory); each of those processes reads its lines before it captures, drains them and
//! records them in its image as the program does its own.
//!
//! One connection that several processes of the tree hold at once (an fd inherited and kept
//! open: MPICH's ranks hold their proxy's connection to mpiexec) is drained once, by the
//! program when it holds it, else by the holder with the lowest pid; each other holder gets a
//! line marked `share`: it drains nothing and records the same connection, without bytes.

/// One connection a process of the tree drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The process that holds it (pid in the tree's namespace).
    pub pid: i32,
    pub ino: u64,
    /// The connection's id in this checkpoint of the step, and the task at its other end.
    pub id: u64,
    pub peer_rank: u32,
    pub send_marker: [u8; 16],
    pub wait_marker: [u8; 16],
    /// Another process of the tree drains it: this one only records it (no bytes).
    pub share: bool,
}

/// What the task's program hands out in one checkpoint of the step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holders {
    /// The step checkpoint's number.
    pub gen: u64,
    /// The step stops after this checkpoint (the wall-time pattern).
    pub stop: bool,
    /// When the drains give up (CLOCK_MONOTONIC ms, the machine's: the tree is on one node).
    pub deadline_ms: u64,
    pub conns: Vec<Held>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Holders {
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!("ckpt-step-holders 2\ngen {} stop {} deadline {}\n", self.gen, self.stop as u8, self.deadline_ms);
        for c in &self.conns {
            s.push_str(&format!("conn {} {} {} {} {} {} {}\n", c.pid, c.ino, c.id, c.peer_rank, hex(&c.send_marker), hex(&c.wait_marker), if c.share { "share" } else { "drain" }));
        }
        s.into_bytes()
    }

    pub fn decode(b: &[u8]) -> Option<Holders> {
        let s = std::str::from_utf8(b).ok()?;
        let mut lines = s.lines();
        if lines.next()? != "ckpt-step-holders 2" {
            return None;
        }
        let mut h = Holders::default();
        for l in lines {
            let w: Vec<&str> = l.split(' ').collect();
            match w.as_slice() {
                ["gen", g, "stop", st, "deadline", d] => {
                    h.gen = g.parse().ok()?;
                    h.stop = *st == "1";
                    h.deadline_ms = d.parse().ok()?;
                }
                ["conn", pid, ino, id, peer, send, wait, how] => h.conns.push(Held {
                    pid: pid.parse().ok()?,
                    ino: ino.parse().ok()?,
                    id: id.parse().ok()?,
                    peer_rank: peer.parse().ok()?,
                    send_marker: unhex16(send)?,
                    wait_marker: unhex16(wait)?,
                    share: match *how {
                        "share" => true,
                        "drain" => false,
                        _ => return None,
                    },
                }),
                _ => return None,
            }
        }
        Some(h)
    }

    /// The connections process `pid` drains or shares.
    pub fn of(&self, pid: i32) -> impl Iterator<Item = &Held> {
        self.conns.iter().filter(move |c| c.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Holders {
            gen: 3,
            stop: true,
            deadline_ms: 123_456,
            conns: vec![
                Held { pid: 7, ino: 99, id: 3 << 32 | 1, peer_rank: 1, send_marker: [0xab; 16], wait_marker: [1; 16], share: false },
                Held { pid: 8, ino: 100, id: 3 << 32 | 2, peer_rank: 0, send_marker: [0; 16], wait_marker: [0xff; 16], share: false },
                Held { pid: 9, ino: 100, id: 3 << 32 | 2, peer_rank: 0, send_marker: [0; 16], wait_marker: [0xff; 16], share: true },
            ],
        };
        let back = Holders::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.of(8).count(), 1);
        assert!(back.of(9).all(|c| c.share));
        assert_eq!(Holders::decode(b"ckpt-step-holders 2\nconn 1 2\n"), None);
        // The list of an older runtime (no share field) is not taken for one.
        assert_eq!(Holders::decode(b"ckpt-step-holders 1\ngen 1 stop 0 deadline 5\n"), None);
        assert_eq!(Holders::decode(b"other\n"), None);
    }
}
