//! TCP connections between the tasks of a step (two processes of one job, possibly on two
//! nodes): what is in flight is moved out of the kernel at checkpoint time and put back both
//! then and at restart, as DMTCP does (drain and refill), without privileges:
//!
//! - `drain`, with the threads of both tasks stopped: each side writes a marker after the last
//!   byte its program sent and reads what arrives until its peer's marker (or end of file).
//!   Those bytes (sent, not yet read by the program: in the receive queue, in flight, in the
//!   peer's send queue) are all of it; the image stores them as the socket's unread queue.
//! - `refill`, before the program runs again (after the checkpoint, or in ckpt-restart over the
//!   connection made again): each side sends its peer `[length][the bytes it must find
//!   unread]`, reads the peer's, and sends those back: its peer then finds its own bytes first
//!   in its receive queue, in order and once. The program's own later writes follow them.
//!
//! Both run over every connection of a task at once (a ring of tasks would deadlock one by
//! one), with non-blocking system calls (MSG_DONTWAIT: the program's own file flags are left as
//! they are), and end by a deadline. Raw system calls only: the drain runs in the runtime with
//! the program's threads stopped.

/// One connection to drain: the marker this side writes and the one it waits for.
pub struct Drain {
    pub fd: i32,
    pub send_marker: [u8; 16],
    pub wait_marker: [u8; 16],
}

/// What a drain read: the bytes before the peer's marker, and what came after it (the start of
/// the peer's refill, kept for `refill`).
#[derive(Debug, Default, Clone)]
pub struct Drained {
    pub data: Vec<u8>,
    pub after: Vec<u8>,
}

/// One connection to refill: the bytes this side must find unread (`mine`), and bytes of the
/// peer's refill already read (`read`, from the drain).
pub struct Refill {
    pub fd: i32,
    pub mine: Vec<u8>,
    pub read: Vec<u8>,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn recv(fd: i32, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: buf is a valid buffer of its length.
    let n = unsafe { libc::syscall(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), libc::MSG_DONTWAIT, 0, 0) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

fn send(fd: i32, buf: &[u8]) -> Result<usize, i32> {
    // SAFETY: buf is a valid buffer of its length.
    let n = unsafe { libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL, 0, 0) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec out-parameter.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Wait on `fds` (fd, events) until one is ready or `deadline`; Err("timeout") past it.
fn wait(fds: &[(i32, i16)], deadline: u64) -> Result<(), String> {
    let now = now_ms();
    if now >= deadline {
        return Err("no progress before the deadline".into());
    }
    let mut p: Vec<libc::pollfd> = fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    let ms = (deadline - now).min(1000);
    let ts = libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 };
    // SAFETY: p is an array of pollfd of its length.
    unsafe { libc::syscall(libc::SYS_ppoll, p.as_mut_ptr(), p.len(), &ts as *const libc::timespec, 0, 8) };
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Drain every connection of `conns` (see the module comment) before `deadline` (CLOCK_MONOTONIC
/// ms). Err names the first connection that did not finish.
pub fn drain(conns: &[Drain], deadline: u64) -> Result<Vec<Drained>, String> {
    let n = conns.len();
    let mut sent = vec![0usize; n];
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); n];
    let mut out: Vec<Option<Drained>> = vec![None; n];
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut want = Vec::new();
        for (i, c) in conns.iter().enumerate() {
            while sent[i] < 16 {
                match send(c.fd, &c.send_marker[sent[i]..]) {
                    Ok(k) => sent[i] += k,
                    Err(libc::EAGAIN | libc::EINTR) => break,
                    // The peer has gone or this end cannot send: it gets end of file instead.
                    Err(_) => sent[i] = 16,
                }
            }
            while out[i].is_none() {
                match recv(c.fd, &mut buf) {
                    Ok(0) => out[i] = Some(Drained { data: std::mem::take(&mut got[i]), after: Vec::new() }),
                    Ok(k) => {
                        let from = got[i].len().saturating_sub(15);
                        got[i].extend_from_slice(&buf[..k]);
                        if let Some(p) = find(&got[i][from..], &c.wait_marker).map(|p| p + from) {
                            let after = got[i][p + 16..].to_vec();
                            got[i].truncate(p);
                            out[i] = Some(Drained { data: std::mem::take(&mut got[i]), after });
                        }
                    }
                    Err(libc::EAGAIN | libc::EINTR) => break,
                    Err(e) => return Err(format!("fd {}: {}", c.fd, std::io::Error::from_raw_os_error(e))),
                }
            }
            let ev = if sent[i] < 16 { libc::POLLOUT } else { 0 } | if out[i].is_none() { libc::POLLIN } else { 0 };
            if ev != 0 {
                want.push((c.fd, ev));
            }
        }
        if want.is_empty() {
            return Ok(out.into_iter().map(|d| d.unwrap_or_default()).collect());
        }
        wait(&want, deadline).map_err(|e| format!("fd {}: its peer's marker did not come ({e})", want[0].0))?;
    }
}

/// Refill every connection of `conns` (see the module comment) before `deadline`.
pub fn refill(conns: Vec<Refill>, deadline: u64) -> Result<(), String> {
    struct St {
        fd: i32,
        /// Header and `mine`, then (once the peer's are read) the peer's bytes echoed back.
        out: Vec<u8>,
        off: usize,
        echoed: bool,
        /// The peer's header and bytes, as far as read.
        inb: Vec<u8>,
    }
    let mut st: Vec<St> = conns
        .into_iter()
        .map(|c| {
            let mut out = (c.mine.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&c.mine);
            St { fd: c.fd, out, off: 0, echoed: false, inb: c.read }
        })
        .collect();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut want = Vec::new();
        for s in st.iter_mut() {
            // How many bytes of the peer's refill are still to read (exactly: what follows is
            // our own bytes, echoed, for the program). None once they are all read.
            let need = |s: &St| match (s.echoed, s.inb.len()) {
                (true, _) => 0,
                (false, n) if n < 8 => 8 - n,
                (false, n) => (u64::from_le_bytes(s.inb[..8].try_into().expect("8")) as usize + 8).saturating_sub(n),
            };
            loop {
                let k = need(s);
                if k == 0 {
                    break;
                }
                let k = k.min(buf.len());
                match recv(s.fd, &mut buf[..k]) {
                    Ok(0) => return Err(format!("fd {}: the peer closed the connection during the refill", s.fd)),
                    Ok(r) => s.inb.extend_from_slice(&buf[..r]),
                    Err(libc::EAGAIN | libc::EINTR) => break,
                    Err(e) => return Err(format!("fd {}: {}", s.fd, std::io::Error::from_raw_os_error(e))),
                }
            }
            // Our own bytes are all sent and the peer's all read: send the peer's back.
            if need(s) == 0 && s.off == s.out.len() && !s.echoed {
                s.echoed = true;
                s.out = s.inb.split_off(8);
                s.off = 0;
            }
            while s.off < s.out.len() {
                match send(s.fd, &s.out[s.off..]) {
                    Ok(k) => s.off += k,
                    Err(libc::EAGAIN | libc::EINTR) => break,
                    Err(e) => return Err(format!("fd {}: {}", s.fd, std::io::Error::from_raw_os_error(e))),
                }
            }
            let read_all = need(s) == 0;
            let ev = if s.off < s.out.len() { libc::POLLOUT } else { 0 } | if !read_all { libc::POLLIN } else { 0 };
            if ev != 0 {
                want.push((s.fd, ev));
            }
        }
        if st.iter().all(|s| s.echoed && s.off == s.out.len()) {
            return Ok(());
        }
        if want.is_empty() {
            continue; // an echo to start
        }
        wait(&want, deadline).map_err(|e| format!("fd {}: the refill did not finish ({e})", want[0].0))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_pair() -> (i32, i32) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        use std::os::fd::IntoRawFd;
        (c.into_raw_fd(), s.into_raw_fd())
    }

    /// Two "tasks" (threads) with bytes in flight both ways: after drain and refill each end
    /// reads exactly what its peer had sent, then what the peer sends afterwards.
    #[test]
    fn drain_then_refill_gives_back_the_bytes_in_order() {
        let (a, b) = tcp_pair();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        // a -> b: more than the buffers hold (a writer thread fills what fits).
        let w = { let big = big.clone(); std::thread::spawn(move || { let mut off = 0; while off < big.len() { match send(a, &big[off..]) { Ok(k) => off += k, Err(_) => break } } off }) };
        std::thread::sleep(std::time::Duration::from_millis(100));
        let wrote_a = w.join().unwrap();
        assert_eq!(send(b, b"hello from b").unwrap(), 12);
        let (ma, mb) = ([1u8; 16], [2u8; 16]);
        let d = now_ms() + 10_000;
        let tb = std::thread::spawn(move || drain(&[Drain { fd: b, send_marker: mb, wait_marker: ma }], d).unwrap().remove(0));
        let da = drain(&[Drain { fd: a, send_marker: ma, wait_marker: mb }], d).unwrap().remove(0);
        let db = tb.join().unwrap();
        assert_eq!(da.data, b"hello from b");
        assert_eq!(db.data, big[..wrote_a]);
        let tb = std::thread::spawn(move || refill(vec![Refill { fd: b, mine: db.data, read: db.after }], d).unwrap());
        refill(vec![Refill { fd: a, mine: da.data, read: da.after }], d).unwrap();
        tb.join().unwrap();
        // The programs write on; each reads its unread bytes first, then the new ones.
        send(a, b"NEW-A").unwrap();
        send(b, b"NEW-B").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let read_all = |fd: i32, n: usize| {
            let mut v = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            let end = now_ms() + 5000;
            while v.len() < n && now_ms() < end {
                match recv(fd, &mut buf) {
                    Ok(k) if k > 0 => v.extend_from_slice(&buf[..k]),
                    _ => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
            assert_eq!(v.len(), n, "fd {fd}: bytes read");
            v
        };
        assert_eq!(read_all(a, 17), b"hello from bNEW-B");
        let got_b = read_all(b, wrote_a + 5);
        assert_eq!(&got_b[..wrote_a], &big[..wrote_a]);
        assert_eq!(&got_b[wrote_a..], b"NEW-A");
        // SAFETY: closing our fds.
        unsafe { libc::close(a); libc::close(b) };
    }
}
