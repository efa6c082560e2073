//! Sockets of every family: `capture` (the runtime's half: one socket's addresses, state,
//! options, queue, files in flight, a listener's waiting connections; TCP pairs settled once
//! every fd is known) and `restore` (ckpt-restart's half: every socket made at once), with
//! `diag` (sock_diag), `opts` (socket options), `queue` (receive queues), `unix` (UNIX names
//! and their files), `names` and `inet` (the restore of UNIX names and of the other families)
//! between them, `timewait` (the killed program's TIME_WAIT remains that hold its ports),
//! `peercred` (SO_PEERCRED of socketpairs another process made), `ring` (packet sockets'
//! mapped rings); `requeue` (the bytes in a UNIX listener's connections not yet accepted,
//! read at the cut); `stepudp` (the UDP sockets of a step's task restarted on another node);
//! `pair` makes a socketpair that processes of a tree share; `treedrain` finds the TCP
//! connections between two processes of a tree that are drained at the cut, `halfclosed`
//! settles those of them in a closing state.
//!
//! Sockets that talk to each other inside the program (socket pairs, a UNIX or TCP client and
//! the connection its listener accepted, a UDP socket and the sender of a queued datagram) are
//! made again as such; what a socket talks to outside the program is not (see restore.rs).

pub mod capture;
mod diag;
pub mod halfclosed;
mod inet;
pub mod jobconn;
mod moveport;
mod names;
mod opts;
pub mod pair;
mod peercred;
mod queue;
pub mod requeue;
pub mod restore;
pub mod ring;
pub mod stepudp;
mod timewait;
pub mod treedrain;
mod unix;
