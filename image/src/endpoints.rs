//! Sockets and terminals in the index: what the runtime reads about them at checkpoint time
//! and what ckpt-restart needs to make them again (see the sockets and tty modules of ckpt-kinds for both halves).

use serde::{Deserialize, Serialize};

/// A socket of any family. Sockets of one program that talk to each other are found again at
/// restart by `ino` and `peer` (UNIX) or by their addresses (TCP, UDP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    /// The socket's inode (socket:[ino]).
    pub ino: u64,
    pub family: i32,
    pub sock_type: i32,
    pub protocol: i32,
    /// getsockname's raw sockaddr; empty when the socket has no name (never bound).
    pub name: Vec<u8>,
    /// getpeername's raw sockaddr; empty when not connected (or connected to an unnamed peer).
    pub peer_name: Vec<u8>,
    pub state: SockState,
    /// UNIX: the inode of the peer socket (0: none). For a connection not yet accepted, the
    /// inode of the waiting socket in the listener's queue.
    pub peer: u64,
    /// This end's shutdown bits (1: receiving shut down, 2: sending shut down).
    pub shutdown: u8,
    /// A listening socket's backlog (the `listen` argument, as the kernel keeps it).
    pub backlog: u32,
    /// Socket options that can be read back, in the order they are set again.
    pub opts: Vec<SockOpt>,
    /// A classic BPF filter attached with SO_ATTACH_FILTER: (code, jt, jf, k) per instruction.
    pub filter: Vec<(u16, u8, u8, u32)>,
    /// Unread messages of the receive queue, oldest first (a stream's bytes as one message).
    pub queue: Vec<Message>,
    /// A listening socket's connections not yet accepted, oldest first.
    pub pending: Vec<Pending>,
    /// UNIX sockets bound to a path: the file at the path.
    pub file: SockFile,
    /// UNIX sockets bound to a relative path: the working directory at bind time (absolute).
    pub bind_dir: Vec<u8>,
    /// Bytes the program sent that its peer had not received and that cannot be read: TCP, in
    /// this socket's send queue (TCP_REPAIR needs privileges); a UNIX stream client whose
    /// connection waits in a listener's queue, in that connection (about as many: the kernel
    /// counts the buffers that hold them).
    pub unsent: u32,
    /// Netlink: the multicast groups joined (NETLINK_LIST_MEMBERSHIPS, 32 groups per word).
    pub groups: Vec<u32>,
    /// What could not be saved, for the restart to refuse or warn about (empty: nothing).
    pub lost: String,
    /// A TCP connection to another task of the program's Slurm step (format version 11):
    /// drained at checkpoint time (its unread bytes are `queue`) and made again at restart
    /// through the step's coordinator, whatever the nodes and addresses are then.
    pub job: Option<JobConn>,
    /// UNIX: what SO_PEERCRED gave, when it was not the process itself (the peer was made or
    /// connected by another process, or under other ids: a socketpair a child made) (version 15).
    pub peer_cred: Option<PeerCred>,
    /// Packet sockets: the rings set up with PACKET_RX_RING / PACKET_TX_RING, as sock_diag
    /// gives them back (version 23). None: no ring, or not known.
    pub ring: Option<PacketRings>,
}

/// A packet socket's rings (sock_diag's PACKET_DIAG_RX_RING and PACKET_DIAG_TX_RING).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketRings {
    /// PACKET_VERSION when the rings were set (TPACKET_V1 0, V2 1, V3 2).
    pub version: u32,
    pub rx: Option<RingReq>,
    pub tx: Option<RingReq>,
}

/// One ring's request (`struct tpacket_req3`; the first four fields are `tpacket_req`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingReq {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    /// TPACKET_V3 only: block retire timeout (ms), private area size, feature word.
    pub retire_tmo: u32,
    pub sizeof_priv: u32,
    pub features: u32,
}

impl RingReq {
    /// Bytes of the ring in the socket's mapping.
    pub fn len(&self) -> u64 {
        self.block_size as u64 * self.block_nr as u64
    }
}

impl PacketRings {
    /// Bytes a mapping of the socket must have (the RX ring, then the TX ring).
    pub fn mapped_len(&self) -> u64 {
        self.rx.map_or(0, |r| r.len()) + self.tx.map_or(0, |r| r.len())
    }
}

/// SO_PEERCRED: the process and ids that made the peer (socketpair, connect, listen), pid as
/// the program's pid namespace numbers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// A connection between two tasks of a step, as the coordinator paired it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobConn {
    /// The connection's id in the step's checkpoint (the same on both ends).
    pub id: u64,
    /// The rank of the task at the other end.
    pub peer_rank: u32,
}

/// The task's place in its Slurm step, for a checkpoint of the whole step (version 11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInfo {
    pub rank: u32,
    pub ntasks: u32,
    /// The step checkpoint's number (the same in every task's image of the set).
    pub generation: u64,
    /// The name the step's files share in the image directory (the image name without `.RANK`).
    pub base: String,
    /// The addresses of the task's node at the checkpoint, other than loopback (4 or 16 bytes
    /// each): where its listeners bound to every address were reachable, for the restart to
    /// send the other tasks' connects to them where they are now (version 20).
    pub node_ips: Vec<Vec<u8>>,
}

/// Where a socket stands in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SockState {
    /// Never connected (bound or not).
    #[default]
    Unconnected,
    Listening,
    /// Connected to a peer (a stream socket whose peer is gone is `PeerGone`).
    Connected,
    /// A stream connection whose peer has closed or is outside the program and cannot be
    /// restored: reads give the unread bytes, then end of file.
    PeerGone,
}

/// A socket option as getsockopt returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

/// One unread message: its bytes, the sender's address (datagrams; empty if none) and the
/// files passed with it (SCM_RIGHTS), as numbers of in-flight fd entries of the index (negative
/// fd numbers, see `FdState::fd`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub data: Vec<u8>,
    pub from: Vec<u8>,
    pub fds: Vec<i32>,
}

/// A connection waiting in a listener's accept queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// UNIX: the inode of its client (0: gone or not known), which may be one of the program's
    /// sockets. (The waiting socket itself has no inode until it is accepted.)
    pub ino: u64,
    /// TCP: the client's address (the program's socket with this name and the listener's
    /// address as peer is the client, if any).
    pub from: Vec<u8>,
    /// Bytes the client had sent into it (they cannot be read without accepting it).
    pub unread: u32,
    /// UNIX (version 18): the bytes in it, message by message, when they were read at the cut
    /// (the connection accepted and queued again at once, see kinds' sockets/requeue.rs);
    /// None: not known.
    pub data: Option<Vec<Vec<u8>>>,
}

/// The file a UNIX socket's path name created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SockFile {
    /// No file: unnamed, abstract, or not a UNIX socket.
    #[default]
    None,
    /// Still at its path, with these permission bits and owner.
    Present { mode: u32, uid: u32, gid: u32 },
    /// Removed since (or its directory was): the socket keeps its name, the path has no file.
    Deleted,
    /// Something else is at the path now (another file, another socket).
    Replaced,
}

/// A terminal the program has open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tty {
    pub kind: TtyKind,
    /// The path it was opened by (/dev/ptmx, /dev/pts/N, /dev/tty, /dev/ttyS0 ...).
    pub path: Vec<u8>,
    /// Pseudo-terminals: the pair's index (N of /dev/pts/N).
    pub index: u32,
    /// The device number.
    pub rdev: u64,
    /// The kernel's struct termios (TCGETS).
    pub termios: Vec<u8>,
    /// struct winsize: rows, columns, x pixels, y pixels.
    pub winsize: [u16; 4],
    /// Pseudo-terminal master: packet mode (TIOCPKT) and whether the slave is locked.
    pub packet: bool,
    pub locked: bool,
    /// It is the program's controlling terminal (for a master: its slave is).
    pub ctty: bool,
    /// The program's own pseudo-terminals: bytes written to the master that the slave has
    /// not read (`input`) and written to the slave that the master has not read (`output`).
    /// Kept on the master's entry.
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    /// A slave's device file: permission bits and owner.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// A pseudo-terminal slave of another devpts instance than the one on the program's
    /// /dev/pts (the terminal ckpt-run was started from, when the program has an instance of its
    /// own): never an end of the program's pairs, even at the same index.
    pub foreign: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TtyKind {
    /// The master of a pseudo-terminal pair (/dev/ptmx).
    PtyMaster,
    /// The slave of a pseudo-terminal whose master the program holds.
    PtySlave,
    /// /dev/tty: the controlling terminal, whatever it is.
    Ctty,
    /// A terminal from outside the program (the terminal it was started from, a console):
    /// after a restart it is the terminal ckpt-restart runs in.
    #[default]
    Outside,
}
