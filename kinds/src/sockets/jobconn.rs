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

pub(super) fn now_ms() -> u64 {
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

pub(super) fn pause_ms(ms: u64) {
    let ts = libc::timespec { tv_sec: 0, tv_nsec: (ms * 1_000_000) as i64 };
    // SAFETY: a plain nanosleep.
    unsafe { libc::syscall(libc::SYS_nanosleep, &ts as *const libc::timespec, 0) };
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

/// One connection being refilled.
struct St {
    fd: i32,
    /// Header and `mine`, then (once the peer's are read) the peer's bytes echoed back.
    out: Vec<u8>,
    off: usize,
    echoed: bool,
    /// The peer's header and bytes, as far as read.
    inb: Vec<u8>,
    /// The program's SO_RCVLOWAT while ours is raised (see `make_room`).
    lowat: Option<i32>,
    /// How many bytes the peer echoes to us (our `mine`).
    expect: usize,
    /// The program's SO_SNDBUF and buffer lock bits while ours is raised (see `refill`).
    sndbuf: Option<(i32, i32)>,
    /// Our receive queue's length when it last grew, and when (ms).
    inq: (i32, u64),
}

fn int_ioctl(fd: i32, req: u64) -> i32 {
    let mut v: i32 = 0;
    // SAFETY: an int out-parameter.
    unsafe { libc::syscall(libc::SYS_ioctl, fd, req, &mut v as *mut i32) };
    v
}

/// Tell the peer how much room we have now: reading (here peeking one byte: the program's
/// queue stays as it is) sends a window update once the window has grown. Not where the program
/// set a peek offset (SO_PEEK_OFF), which a peek would move.
pub fn nudge(fd: i32) {
    let mut off: i32 = -1;
    let mut l = 4u32;
    // SAFETY: an int option read into off.
    unsafe { libc::syscall(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, &mut off as *mut i32, &mut l as *mut u32) };
    if off < 0 {
        let mut b = [0u8; 1];
        // SAFETY: b is a valid buffer of its length.
        unsafe { libc::syscall(libc::SYS_recvfrom, fd, b.as_mut_ptr(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT, 0, 0) };
    }
}

/// Whether the peer's echo of our bytes has all come (our receive queue holds them all), or
/// stopped coming for a second (the rest stays in the peer's send queue, as it did at the cut).
fn echo_in(s: &mut St) -> bool {
    let n = int_ioctl(s.fd, libc::FIONREAD);
    let now = now_ms();
    if n > s.inq.0 {
        s.inq = (n, now);
    }
    n as usize >= s.expect || now >= s.inq.1 + 1000
}

fn rcvlowat(fd: i32) -> i32 {
    get_int(fd, libc::SO_RCVLOWAT)
}

pub fn set_rcvlowat(fd: i32, v: i32) {
    set_int(fd, libc::SO_RCVLOWAT, v);
}

fn get_int(fd: i32, name: i32) -> i32 {
    let mut v: i32 = -1;
    let mut l = 4u32;
    // SAFETY: an int option read into v.
    unsafe { libc::syscall(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, name, &mut v as *mut i32, &mut l as *mut u32) };
    v
}

fn set_int(fd: i32, name: i32, v: i32) {
    // SAFETY: an int option on the program's socket.
    unsafe { libc::syscall(libc::SYS_setsockopt, fd, libc::SOL_SOCKET, name, &v as *const i32, 4) };
}

const SO_BUF_LOCK: i32 = 72;

/// Raise the send buffer of `fd` as far as an ordinary user may (net.core.wmem_max), for the
/// refill: the program's (value, lock bits) to set back, None if it was as large already.
pub fn raise_sndbuf(fd: i32) -> Option<(i32, i32)> {
    let (old, locks) = (get_int(fd, libc::SO_SNDBUF), get_int(fd, SO_BUF_LOCK));
    if old <= 0 || locks < 0 {
        return None;
    }
    set_int(fd, libc::SO_SNDBUF, i32::MAX / 2);
    let saved = Some((old, locks));
    if get_int(fd, libc::SO_SNDBUF) <= old {
        restore_sndbuf(fd, saved);
        return None;
    }
    saved
}

/// The program's send buffer size (SO_SNDBUF sets twice what it is given) and lock bits (the
/// autotuned size of a buffer the program did not size stays unlocked).
pub fn restore_sndbuf(fd: i32, saved: Option<(i32, i32)>) {
    if let Some((v, locks)) = saved {
        set_int(fd, libc::SO_SNDBUF, v / 2);
        set_int(fd, SO_BUF_LOCK, locks);
    }
}

/// Once we read nothing more: room in our receive buffer for the peer's echo. Raising
/// SO_RCVLOWAT grows a receive buffer the program did
/// not size (up to tcp_rmem's maximum, unprivileged; no lock bit, as autotuning grows it); the
/// program's SO_RCVLOWAT is set back at the end.
fn make_room(s: &mut St) {
    if s.lowat.is_none() {
        s.lowat = Some(grow_rcvbuf(s.fd));
    }
}

/// Grow the receive buffer of `fd` (see `make_room`): the program's SO_RCVLOWAT, to set back
/// with `set_rcvlowat` once the queue is refilled.
pub fn grow_rcvbuf(fd: i32) -> i32 {
    let old = rcvlowat(fd);
    set_rcvlowat(fd, i32::MAX);
    old
}

/// Refill every connection of `conns` (see the module comment) before `deadline`. The echo
/// puts back what the connection held at the cut, which may have filled it both ways (the
/// program wrote until EAGAIN); the kernel's accounting of the same bytes differs by a few KiB
/// from then, so room is made for the moment: our send buffer raised as far as an ordinary
/// user may (SO_SNDBUF up to net.core.wmem_max; the program's size and lock bits set back at
/// the end), our receive buffer grown (`make_room`), and each side peeks a byte now and then
/// so its peer hears of the room (`nudge`), until its own echo has all come in.
pub fn refill(conns: Vec<Refill>, deadline: u64) -> Result<(), String> {
    let mut st: Vec<St> = conns
        .into_iter()
        .map(|c| {
            let mut out = (c.mine.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&c.mine);
            St { fd: c.fd, expect: c.mine.len(), sndbuf: raise_sndbuf(c.fd), out, off: 0, echoed: false, inb: c.read, lowat: None, inq: (0, now_ms()) }
        })
        .collect();
    let r = refill_all(&mut st, deadline);
    for s in &st {
        if let Some(v) = s.lowat {
            set_rcvlowat(s.fd, v);
        }
        restore_sndbuf(s.fd, s.sndbuf);
    }
    r
}

fn refill_all(st: &mut [St], deadline: u64) -> Result<(), String> {
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
            if need(s) == 0 {
                make_room(s);
                nudge(s.fd);
            }
            if need(s) == 0 && s.off == s.out.len() && !s.echoed {
                s.echoed = true;
                s.out = s.inb.split_off(8);
                s.off = 0;
                s.inq = (int_ioctl(s.fd, libc::FIONREAD), now_ms());
            }
            while s.off < s.out.len() {
                match send(s.fd, &s.out[s.off..]) {
                    Ok(k) => {
                        s.off += k;
                        s.inq.1 = now_ms();
                    }
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
        // Done once every echo is written and every echo of ours has come: a side that left
        // earlier would no longer open its window for its peer's echo (`nudge`).
        if st.iter().all(|s| s.echoed && s.off == s.out.len()) && st.iter_mut().all(echo_in) {
            return Ok(());
        }
        if want.is_empty() {
            // An echo to start, or ours to come in.
            pause_ms(2);
            continue;
        }
        wait(&want, deadline).map_err(|e| {
            let s = st.iter().find(|s| s.fd == want[0].0).expect("one of ours");
            let stage = if s.echoed { "echo" } else { "its own bytes" };
            format!("fd {}: the refill did not finish ({e}; {} of {} bytes of {stage} sent, {} still in the send queue)", s.fd, s.off, s.out.len(), int_ioctl(s.fd, libc::TIOCOUTQ))
        })?;
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

/// Buffers full both ways (each side wrote until EAGAIN, as zdtm socket-tcpbuf does): drain
/// and refill finish, every byte put back.
#[cfg(test)]
mod full_tests {
    use super::*;

    fn fill(fd: i32, side: u8) -> usize {
        let buf: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 ^ side).collect();
        let mut n = 0;
        while let Ok(k) = send(fd, &buf) {
            n += k;
        }
        n
    }

    #[test]
    fn drain_then_refill_of_buffers_full_both_ways_finishes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        use std::os::fd::IntoRawFd;
        let (a, b) = (c.into_raw_fd(), s.into_raw_fd());
        let big: i32 = 1 << 20;
        // SAFETY: an int option on a socket of ours.
        unsafe { libc::setsockopt(b, libc::SOL_SOCKET, libc::SO_RCVBUF, (&big as *const i32).cast(), 4) };
        let mut wa = fill(a, 1);
        let mut wb = fill(b, 2);
        let (mut read_a, mut read_b) = (0, 0);
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let mut buf = [0u8; 1000];
            read_a += recv(a, &mut buf).unwrap_or(0);
            read_b += recv(b, &mut buf).unwrap_or(0);
            wa += fill(a, 1);
            wb += fill(b, 2);
        }
        let (ma, mb) = ([1u8; 16], [2u8; 16]);
        let d = now_ms() + 10_000;
        let tb = std::thread::spawn(move || drain(&[Drain { fd: b, send_marker: mb, wait_marker: ma }], d).unwrap().remove(0));
        let da = drain(&[Drain { fd: a, send_marker: ma, wait_marker: mb }], d).unwrap().remove(0);
        let db = tb.join().unwrap();
        assert_eq!((da.data.len() + read_a, db.data.len() + read_b), (wb, wa), "drained");
        let tb = std::thread::spawn(move || refill(vec![Refill { fd: b, mine: db.data, read: db.after }], d));
        let ra = refill(vec![Refill { fd: a, mine: da.data, read: da.after }], d);
        let rb = tb.join().unwrap();
        assert!(ra.is_ok() && rb.is_ok(), "refill: {ra:?} {rb:?}");
        // Every byte is back: a's queue holds what b wrote and a did not read, and b's likewise.
        let inq = |fd: i32| int_ioctl(fd, libc::FIONREAD) as usize;
        let outq = |fd: i32| int_ioctl(fd, libc::TIOCOUTQ) as usize;
        assert_eq!(inq(a) + outq(b) + read_a, wb, "a's unread bytes");
        assert_eq!(inq(b) + outq(a) + read_b, wa, "b's unread bytes");
        // SAFETY: closing our fds.
        unsafe { libc::close(a); libc::close(b) };
    }
}
