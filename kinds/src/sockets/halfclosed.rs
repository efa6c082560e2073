//! TCP connections between two processes of a tree in a closing state (FIN_WAIT1/2, CLOSING,
//! CLOSE_WAIT, LAST_ACK at either end: one side has shut down writing; `treedrain` finds
//! them), settled at the cut without reading anything: a side that shut down cannot send
//! drained bytes back (`jobconn`'s refill), and what waits in a send queue cannot be read
//! without privileges (TCP_REPAIR). Both ends being stopped processes of ours, their receive
//! buffers are grown instead (as an ordinary user may: SO_RCVLOWAT, see `jobconn::grow_rcvbuf`)
//! and told of the room (`jobconn::nudge`) until each end's send queue, with its FIN, has
//! reached its peer's receive queue. The capture that follows then finds every byte in flight
//! in a receive queue (peeked, as for any socket: the program still reads them), nothing
//! unsent, and the FIN received (the peer's end shut for reading); a restart makes the
//! connection again with those queues and the shutdowns. Where a receive buffer cannot hold
//! it all (the program sized it, or more than net.ipv4.tcp_rmem allows), the bytes stay
//! unsent and the set is refused as before (ckpt_image::unshared).
//!
//! The kernel moves the connection on as it would if the program had read: an end whose FIN
//! is acknowledged goes from FIN_WAIT1 to FIN_WAIT2, from CLOSING or LAST_ACK to closed; an end
//! that receives its peer's FIN to CLOSE_WAIT, or closed after its own. Reads are the same.
//!
//! Raw system calls and the checkpoint's allocator only: the program's threads are stopped.

use super::{diag, jobconn};

/// How long nothing may move before the bytes left are taken as not fitting (ms).
const IDLE_MS: u64 = 1000;

/// Settle the connections of `ends` ((our fd, our inode, the peer's inode)) before `deadline`
/// (CLOCK_MONOTONIC ms): Ok once nothing is left in either end's send queue, else Err saying
/// how much is.
pub fn settle(ends: &[(i32, u64, u64)], deadline: u64) -> Result<(), String> {
    let lowats: Vec<i32> = ends.iter().map(|e| jobconn::grow_rcvbuf(e.0)).collect();
    let r = wait(ends, deadline);
    for (e, lowat) in ends.iter().zip(lowats) {
        jobconn::set_rcvlowat(e.0, lowat);
    }
    r
}

/// The bytes (and FINs) not yet acknowledged in the send queues of the TCP sockets `inos` (a
/// socket sock_diag no longer lists is closed: nothing left).
fn unsent(inos: &[u64]) -> u64 {
    let mut total = 0;
    for family in [libc::AF_INET, libc::AF_INET6] {
        for i in diag::inet_all(family, libc::IPPROTO_TCP) {
            if i.inode != 0 && inos.contains(&(i.inode as u64)) {
                total += i.wqueue as u64;
            }
        }
    }
    total
}

fn wait(ends: &[(i32, u64, u64)], deadline: u64) -> Result<(), String> {
    let inos: Vec<u64> = ends.iter().flat_map(|e| [e.1, e.2]).collect();
    let mut least = (u64::MAX, jobconn::now_ms());
    loop {
        let left = unsent(&inos);
        if left == 0 {
            return Ok(());
        }
        let now = jobconn::now_ms();
        if left < least.0 {
            least = (left, now);
        }
        if now >= deadline || now >= least.1 + IDLE_MS {
            return Err(format!("{left} bytes stayed in their send queues (their peers' receive buffers could not hold them)"));
        }
        for e in ends {
            jobconn::nudge(e.0);
        }
        jobconn::pause_ms(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    fn ino(fd: i32) -> u64 {
        // SAFETY: a zeroed stat filled by fstat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a valid out-parameter.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        st.st_ino
    }

    /// A sender that filled the connection and shut it down (FIN_WAIT1 behind the bytes):
    /// settled, its send queue is empty, the receiver holds every byte and then sees the end.
    #[test]
    fn a_shut_sender_s_bytes_and_fin_reach_the_receiver_unread() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (a, b) = (c.into_raw_fd(), s.into_raw_fd());
        let chunk: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0usize;
        loop {
            // SAFETY: chunk is a valid buffer of its length.
            let n = unsafe { libc::send(a, chunk.as_ptr().cast(), chunk.len(), libc::MSG_DONTWAIT) };
            if n <= 0 {
                break;
            }
            sent += n as usize;
        }
        // SAFETY: a socket of ours.
        unsafe { libc::shutdown(a, libc::SHUT_WR) };
        std::thread::sleep(std::time::Duration::from_millis(50));
        let outq = |fd: i32| {
            let mut v = 0i32;
            // SAFETY: an int out-parameter.
            unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut v) };
            v
        };
        assert!(outq(a) > 0, "the test needs bytes left unsent");
        settle(&[(b, ino(b), ino(a))], jobconn::now_ms() + 10_000).unwrap();
        assert_eq!(outq(a), 0);
        let mut inq = 0i32;
        // SAFETY: an int out-parameter.
        unsafe { libc::ioctl(b, libc::FIONREAD, &mut inq) };
        assert_eq!(inq as usize, sent, "every byte is in the receiver's queue, none read");
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: buf is a valid buffer of its length.
            let n = unsafe { libc::recv(b, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            assert!(n >= 0, "the end of the stream has come");
            if n == 0 {
                break;
            }
            got += n as usize;
        }
        assert_eq!(got, sent);
        // SAFETY: closing our fds.
        unsafe { libc::close(a); libc::close(b) };
    }
}
