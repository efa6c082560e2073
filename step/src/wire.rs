//! The messages of a step's links and their framing: `[u32 length][u8 kind][payload]`, little
//! endian, read and written with deadlines (a peer that stops answering is a timeout, never a
//! hang). Used by the runtime's coordinator and members (checkpoint) and by ckpt-restart's
//! rendezvous (restart).

use crate::sys::{self, Errno};

/// Longest frame accepted (a rank's list of connections fits easily).
const MAX_FRAME: usize = 16 << 20;

/// One TCP connection of a task, as it reports it after its threads stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Conn {
    pub ino: u64,
    pub local: Vec<u8>,
    pub peer: Vec<u8>,
    /// 0: the task's program holds it; else the pid of another process of the task's tree
    /// (only the program's connections between tasks are drained and made again).
    pub holder: u32,
}

/// A connection found to join two tasks: its id in this checkpoint, and the other task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pair {
    pub ino: u64,
    pub id: u64,
    pub peer_rank: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// A member's first words on its link (after authentication).
    Hello { rank: u32, ntasks: u32 },
    /// A member was asked for a checkpoint (`at_ns`: CLOCK_REALTIME of the request).
    Req { stop: bool, at_ns: u64 },
    /// The coordinator starts checkpoint `gen` of the step (`stop`: then every task exits).
    Begin { gen: u64, stop: bool },
    /// A member's threads are stopped: its TCP connections (or why it cannot take part).
    Conns { why: String, conns: Vec<Conn> },
    /// Which of them join two tasks (`why` not empty: the checkpoint is abandoned).
    Pairs { why: String, pairs: Vec<Pair> },
    /// A member's image is durable (`why` empty) or failed.
    Done { why: String, hash: u64, paused_ms: u64 },
    /// The set is committed (`why` empty) or abandoned.
    Commit { why: String },
    /// ckpt-restart of a rank joins the restart: the step checkpoint it restarts from and the
    /// port it accepts the step's connections on.
    Join { rank: u32, ntasks: u32, gen: u64, port: u16 },
    /// Every rank's address for the step's connections (`why`: the restart is refused).
    Table { why: String, addrs: Vec<Vec<u8>> },
    /// A rank's restart is ready to switch (`why`: it failed) / every rank is: go.
    Ready { why: String },
    Go { why: String },
    /// After a `Ready` without a why: the task's listeners (`addrmap::encode` of its report).
    Listeners { report: Vec<u8> },
    /// After a `Go` without a why: every task's report (`addrmap::encode`).
    Moved { reports: Vec<u8> },
    /// A member's program is exiting normally with `status` (exit(3), a return from main): its
    /// first words on a connection of its own (after authentication) instead of `Hello`;
    /// answered with `Commit` once rank 0 has recorded it.
    Ended { rank: u32, status: u32 },
}

/// What can go wrong on a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the other side closed the connection")]
    Closed,
    #[error("no answer in time")]
    Timeout,
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Os(Errno),
    #[error("unexpected message: {0}")]
    Bad(String),
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], LinkError> {
        if self.0.len() < n {
            return Err(LinkError::Bad("a truncated message".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, LinkError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, LinkError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, LinkError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, LinkError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, LinkError> {
        Ok(String::from_utf8_lossy(&self.bytes()?).into_owned())
    }
    fn count(&mut self) -> Result<usize, LinkError> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(LinkError::Bad("a bad count".into()));
        }
        Ok(n)
    }
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(vec![0; 4]);
        match self {
            Msg::Hello { rank, ntasks } => e.u8(1).u32(*rank).u32(*ntasks),
            Msg::Req { stop, at_ns } => e.u8(2).u8(*stop as u8).u64(*at_ns),
            Msg::Begin { gen, stop } => e.u8(3).u64(*gen).u8(*stop as u8),
            Msg::Conns { why, conns } => {
                e.u8(4).bytes(why.as_bytes()).u32(conns.len() as u32);
                for c in conns {
                    e.u64(c.ino).bytes(&c.local).bytes(&c.peer).u32(c.holder);
                }
                &mut e
            }
            Msg::Pairs { why, pairs } => {
                e.u8(5).bytes(why.as_bytes()).u32(pairs.len() as u32);
                for p in pairs {
                    e.u64(p.ino).u64(p.id).u32(p.peer_rank);
                }
                &mut e
            }
            Msg::Done { why, hash, paused_ms } => e.u8(6).bytes(why.as_bytes()).u64(*hash).u64(*paused_ms),
            Msg::Commit { why } => e.u8(7).bytes(why.as_bytes()),
            Msg::Join { rank, ntasks, gen, port } => e.u8(8).u32(*rank).u32(*ntasks).u64(*gen).u32(u32::from(*port)),
            Msg::Table { why, addrs } => {
                e.u8(9).bytes(why.as_bytes()).u32(addrs.len() as u32);
                for a in addrs {
                    e.bytes(a);
                }
                &mut e
            }
            Msg::Ready { why } => e.u8(10).bytes(why.as_bytes()),
            Msg::Go { why } => e.u8(11).bytes(why.as_bytes()),
            Msg::Listeners { report } => e.u8(12).bytes(report),
            Msg::Moved { reports } => e.u8(13).bytes(reports),
            Msg::Ended { rank, status } => e.u8(14).u32(*rank).u32(*status),
        };
        let len = (e.0.len() - 4) as u32;
        e.0[..4].copy_from_slice(&len.to_le_bytes());
        e.0
    }

    pub fn decode(b: &[u8]) -> Result<Msg, LinkError> {
        let mut d = Dec(b);
        let m = match d.u8()? {
            1 => Msg::Hello { rank: d.u32()?, ntasks: d.u32()? },
            2 => Msg::Req { stop: d.u8()? != 0, at_ns: d.u64()? },
            3 => Msg::Begin { gen: d.u64()?, stop: d.u8()? != 0 },
            4 => {
                let why = d.string()?;
                let n = d.count()?;
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    conns.push(Conn { ino: d.u64()?, local: d.bytes()?, peer: d.bytes()?, holder: d.u32()? });
                }
                Msg::Conns { why, conns }
            }
            5 => {
                let why = d.string()?;
                let n = d.count()?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push(Pair { ino: d.u64()?, id: d.u64()?, peer_rank: d.u32()? });
                }
                Msg::Pairs { why, pairs }
            }
            6 => Msg::Done { why: d.string()?, hash: d.u64()?, paused_ms: d.u64()? },
            7 => Msg::Commit { why: d.string()? },
            8 => Msg::Join { rank: d.u32()?, ntasks: d.u32()?, gen: d.u64()?, port: d.u32()? as u16 },
            9 => {
                let why = d.string()?;
                let n = d.count()?;
                let mut addrs = Vec::with_capacity(n);
                for _ in 0..n {
                    addrs.push(d.bytes()?);
                }
                Msg::Table { why, addrs }
            }
            10 => Msg::Ready { why: d.string()? },
            11 => Msg::Go { why: d.string()? },
            12 => Msg::Listeners { report: d.bytes()? },
            13 => Msg::Moved { reports: d.bytes()? },
            14 => Msg::Ended { rank: d.u32()?, status: d.u32()? },
            k => return Err(LinkError::Bad(format!("unknown message kind {k}"))),
        };
        Ok(m)
    }
}

/// Write all of `buf` to the socket `fd` before `deadline` (CLOCK_MONOTONIC ms).
pub fn send_all(fd: i32, mut buf: &[u8], deadline: u64) -> Result<(), LinkError> {
    while !buf.is_empty() {
        match sys::send(fd, buf, libc::MSG_DONTWAIT) {
            Ok(n) => buf = &buf[n..],
            Err(libc::EAGAIN | libc::EINTR) => wait(fd, libc::POLLOUT, deadline)?,
            Err(libc::EPIPE | libc::ECONNRESET) => return Err(LinkError::Closed),
            Err(e) => return Err(LinkError::Os(e)),
        }
    }
    Ok(())
}

/// Read exactly `buf.len()` bytes from the socket `fd` before `deadline`.
pub fn recv_exact(fd: i32, buf: &mut [u8], deadline: u64) -> Result<(), LinkError> {
    let mut got = 0;
    while got < buf.len() {
        match sys::recv(fd, &mut buf[got..], libc::MSG_DONTWAIT) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => got += n,
            Err(libc::EAGAIN | libc::EINTR) => wait(fd, libc::POLLIN, deadline)?,
            Err(libc::ECONNRESET) => return Err(LinkError::Closed),
            Err(e) => return Err(LinkError::Os(e)),
        }
    }
    Ok(())
}

fn wait(fd: i32, ev: i16, deadline: u64) -> Result<(), LinkError> {
    let now = sys::now_ms();
    if now >= deadline {
        return Err(LinkError::Timeout);
    }
    match sys::poll1(fd, ev, Some(deadline - now)) {
        Ok(_) => Ok(()),
        Err(e) => Err(LinkError::Os(e)),
    }
}

pub fn send(fd: i32, m: &Msg, deadline: u64) -> Result<(), LinkError> {
    send_all(fd, &m.encode(), deadline)
}

pub fn recv(fd: i32, deadline: u64) -> Result<Msg, LinkError> {
    let mut h = [0u8; 4];
    recv_exact(fd, &mut h, deadline)?;
    let n = u32::from_le_bytes(h) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(LinkError::Bad(format!("a frame of {n} bytes")));
    }
    let mut b = vec![0u8; n];
    recv_exact(fd, &mut b, deadline)?;
    Msg::decode(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let all = [
            Msg::Hello { rank: 3, ntasks: 8 },
            Msg::Req { stop: true, at_ns: 42 },
            Msg::Begin { gen: 7, stop: false },
            Msg::Conns { why: String::new(), conns: vec![Conn { ino: 5, local: vec![1, 2], peer: vec![3], holder: 7 }] },
            Msg::Pairs { why: "x".into(), pairs: vec![Pair { ino: 5, id: 9, peer_rank: 1 }] },
            Msg::Done { why: String::new(), hash: 77, paused_ms: 12 },
            Msg::Commit { why: "late".into() },
            Msg::Join { rank: 1, ntasks: 4, gen: 3, port: 4444 },
            Msg::Table { why: String::new(), addrs: vec![vec![1, 2, 3], vec![]] },
            Msg::Ready { why: String::new() },
            Msg::Go { why: String::new() },
            Msg::Listeners { report: vec![1, 2] },
            Msg::Moved { reports: vec![] },
            Msg::Ended { rank: 2, status: 3 },
        ];
        for m in all {
            let e = m.encode();
            assert_eq!(u32::from_le_bytes(e[..4].try_into().unwrap()) as usize, e.len() - 4);
            assert_eq!(Msg::decode(&e[4..]).unwrap(), m);
        }
        assert!(Msg::decode(&[4, 0, 0, 0, 0, 255, 255, 255, 255]).is_err());
        assert!(Msg::decode(&[99]).is_err());
    }
}
