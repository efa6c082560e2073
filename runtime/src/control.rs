//! The control socket `DIR/NAME.sock` that `ckpt-ctl` talks to, served by the checkpoint thread.
//!
//! Only the owner may use it: the socket file is mode 0600 in the image directory, and every
//! connection's peer credentials (SO_PEERCRED) must carry our effective uid. A socket file of
//! another user already at the name is left alone and reported (ckpt-ctl, for its part, checks
//! the file's owner and the server's uid). Protocol: one request
//! line per connection (`checkpoint`, `checkpoint wait`, `status`, `stop`), answered with lines:
//! `queued`, `ok IMAGE`, `error MESSAGE`, or `key: value` lines for status.
//!
//! While a snapshot writes an image, the checkpoint thread, which waits for it, keeps serving
//! (`serve_busy`): `status` is answered with the checkpoint's progress, `checkpoint` is queued,
//! and `checkpoint wait` and `stop`, which need a checkpoint of their own, wait until this one
//! has ended (their connections are kept, `DEFERRED`).
//!
//! The runtime's own fds (the wake eventfd, the listening socket, a client being served) are
//! moved to high numbers, left out of images (see `is_runtime_fd`) and created again after a
//! restart, because a restarted process has none of them.

use crate::log::{log, DEBUG, ERROR};
use crate::sys::{self, syscall};
use crate::{checkpoint, config, generations, progress, triggers};
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static LISTEN_FD: AtomicI32 = AtomicI32::new(-1);
static CLIENT_FD: AtomicI32 = AtomicI32::new(-1);
/// Clients whose request waits for the checkpoint in progress: (request << 32) | fd, or -1.
static DEFERRED: [AtomicI64; 4] = [const { AtomicI64::new(-1) }; 4];
const DEFER_WAIT: i64 = 1;
const DEFER_STOP: i64 = 2;

/// The process whose socket file this is (0: none); only it removes the file at exit.
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

/// Whether `fd` is one of the runtime's own fds (and still is: the program may have put one of
/// its files at that number with dup2, which makes it the program's).
pub fn is_runtime_fd(fd: i32) -> bool {
    fd >= 0
        && ([&WAKE_FD, &LISTEN_FD, &CLIENT_FD].iter().any(|a| a.load(Ordering::Relaxed) == fd)
            || crate::tree::fd() == fd
            || DEFERRED.iter().any(|d| d.load(Ordering::Relaxed) & 0xffff_ffff == i64::from(fd))
            || crate::uffdwp::is_own_fd(fd)
            || crate::bgsnap::is_own_fd(fd)
            || crate::imgdir::is_own_fd(fd)
            || crate::step::is_own_fd(fd)
            || crate::strictstop::is_own_fd(fd)
            || crate::mqnotify::is_own_fd(fd)
            || sys::is_proc_fd(fd)
            || crate::hupgate::is_own_fd(fd))
        && sys::still_own(fd)
}

/// Wake the checkpoint thread out of `poll` (async-signal-safe).
pub fn wake() {
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        let one: u64 = 1;
        let _ = syscall!(libc::SYS_write, fd, &one as *const u64, 8);
    }
}

fn socket_name() -> Option<Vec<u8>> {
    let cfg = config()?;
    Some([&cfg.name[..], b".sock"].concat())
}

/// Create the wake eventfd and the listening socket: in the constructor (before the program
/// runs, so its fd numbers stay what they would be without us) and on the restart path before
/// the program's threads come back.
pub fn setup() {
    setup_wake();
    serve_socket("this program");
}

/// Bind and listen on the control socket (`who`: what ckpt-ctl would not reach without it).
fn serve_socket(who: &str) {
    match listen() {
        Ok(fd) => {
            LISTEN_FD.store(fd, Ordering::Release);
            OWNER_PID.store(sys::getpid(), Ordering::Release);
        }
        Err(e) => log!(ERROR, "no control socket (ckpt-ctl will not reach {who}): {e}"),
    }
}

/// A member of the tree that had only its wake eventfd becomes the tree's root (the program
/// ended, tree.rs `take_control`): it serves the control socket from now on.
pub fn take_over() {
    if LISTEN_FD.load(Ordering::Acquire) >= 0 {
        return;
    }
    if WAKE_FD.load(Ordering::Acquire) < 0 {
        setup_wake();
    }
    serve_socket("the program's remaining processes");
}

/// Only the wake eventfd: a member of a process tree other than the program ckpt-run started
/// has no control socket (ckpt-ctl talks to the program; the tree is checkpointed as one).
pub fn setup_wake() {
    if let Ok(fd) = syscall!(libc::SYS_eventfd2, 0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) {
        WAKE_FD.store(sys::own(sys::move_high(fd as i32)), Ordering::Release);
    }
}

fn listen() -> Result<i32, String> {
    let cfg = config().ok_or("runtime not configured")?;
    let name = socket_name().ok_or("no name")?;
    // Bind through /proc/self/fd/N/NAME: sun_path is short, image directories can be long.
    let dir = sys::open(&sys::cpath(&[&cfg.dir]), libc::O_PATH | libc::O_DIRECTORY, 0)
        .map_err(|e| format!("{}: {}", String::from_utf8_lossy(&cfg.dir), checkpoint::strerror(e)))?;
    let name_c = sys::cpath(&[&name]);
    let shown = || format!("{}/{}", String::from_utf8_lossy(&cfg.dir), String::from_utf8_lossy(&name));
    let euid = sys::geteuid();
    let problem = match sys::fstat(dir) {
        Ok(st) => crate::imgdir::problem(&cfg.dir, &st, euid, cfg.allow_shared),
        Err(e) => Some(format!("{}: {}", String::from_utf8_lossy(&cfg.dir), checkpoint::strerror(e))),
    };
    // A socket file already there: a stale one of a dead run of ours is replaced; anything of
    // another user's is not (in a shared directory it may be someone posing as this program).
    let problem = problem.or_else(|| match sys::stat_at(dir, &name_c) {
        Ok(st) if st.st_uid != euid => Some(format!(
            "{} already exists and belongs to {}: someone else may be posing as this program to ckpt-ctl; remove it",
            shown(),
            sys::describe_user(st.st_uid)
        )),
        Ok(_) => syscall!(libc::SYS_unlinkat, dir, name_c.as_ptr(), 0).err().map(|e| format!("cannot remove the stale socket {}: {}", shown(), checkpoint::strerror(e))),
        Err(_) => None,
    });
    if let Some(p) = problem {
        sys::close(dir);
        return Err(p);
    }
    let path = [b"/proc/self/fd/", dir.to_string().as_bytes(), b"/", &name[..]].concat();
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as u16;
    let r = (|| {
        if path.len() >= addr.sun_path.len() {
            return Err("socket name too long".to_string());
        }
        for (d, s) in addr.sun_path.iter_mut().zip(&path) {
            *d = *s as libc::c_char;
        }
        let fd = syscall!(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
            .map_err(|e| format!("socket: {}", checkpoint::strerror(e)))? as i32;
        let fd = sys::own(sys::move_high(fd));
        let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
        let bound = syscall!(libc::SYS_bind, fd, &addr as *const libc::sockaddr_un, len)
            .and_then(|_| syscall!(libc::SYS_fchmodat, dir, name_c.as_ptr(), 0o600, 0))
            .and_then(|_| syscall!(libc::SYS_listen, fd, 8));
        match bound {
            Ok(_) => Ok(fd),
            Err(e) => {
                sys::close(fd);
                Err(format!("{}: {}", shown(), checkpoint::strerror(e)))
            }
        }
    })();
    sys::close(dir);
    r
}

/// After a restart the fd numbers of the old process mean nothing (they were not restored and
/// may now be the program's): forget them without closing.
pub fn forget_fds() {
    for a in [&WAKE_FD, &LISTEN_FD, &CLIENT_FD] {
        a.store(-1, Ordering::Release);
    }
    for d in &DEFERRED {
        d.store(-1, Ordering::Release);
    }
    OWNER_PID.store(0, Ordering::Release);
}

/// In a forked child (not the managed program): close our copies (`sys::close_inherited`).
pub fn after_fork() {
    for a in [&WAKE_FD, &LISTEN_FD, &CLIENT_FD] {
        let fd = a.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            sys::close_inherited(fd);
        }
    }
    for d in &DEFERRED {
        let v = d.swap(-1, Ordering::AcqRel);
        if v >= 0 {
            sys::close_inherited((v & 0xffff_ffff) as i32);
        }
    }
}

/// Before the process exits on a stop request: remove the socket file.
pub fn shutdown() {
    if OWNER_PID.load(Ordering::Acquire) != sys::getpid() {
        return;
    }
    if let (Some(cfg), Some(name)) = (config(), socket_name()) {
        let path = sys::cpath(&[&cfg.dir, b"/", &name]);
        let _ = syscall!(libc::SYS_unlink, path.as_ptr());
    }
    OWNER_PID.store(0, Ordering::Release);
}

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

extern "C" fn fini() {
    shutdown();
}

/// Sleep until woken, a client connects, or `timeout_ms` passes. False when there is nothing
/// to poll (no eventfd): the caller then sleeps on the futex instead.
/// `extra`: other fds of the checkpoint thread to wake up for (a step's links).
pub fn poll(timeout_ms: Option<u64>, extra: &[i32]) -> bool {
    let wake = WAKE_FD.load(Ordering::Acquire);
    if wake < 0 {
        return false;
    }
    let mut fds = vec![
        libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: LISTEN_FD.load(Ordering::Acquire), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: crate::tree::fd(), events: libc::POLLIN, revents: 0 },
    ];
    fds.extend(extra.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }));
    let ts = timeout_ms.map(sys::timespec_ms);
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let _ = syscall!(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len(), tsp, 0, 8);
    // The program closed one of our fds (some close every fd they do not know): give it up
    // rather than spin on it.
    if fds[0].revents & libc::POLLNVAL != 0 {
        WAKE_FD.store(-1, Ordering::Release);
    }
    if fds[1].revents & libc::POLLNVAL != 0 {
        LISTEN_FD.store(-1, Ordering::Release);
        log!(ERROR, "the program closed the control socket; ckpt-ctl will not reach it");
    }
    if fds[0].revents & libc::POLLIN != 0 {
        let mut v: u64 = 0;
        let _ = syscall!(libc::SYS_read, wake, &mut v as *mut u64, 8);
    }
    true
}

/// Serve the clients that waited for the last checkpoint, then every client waiting on the
/// listening socket.
pub fn serve() {
    for d in &DEFERRED {
        let v = d.swap(-1, Ordering::AcqRel);
        if v >= 0 {
            let fd = (v & 0xffff_ffff) as i32;
            CLIENT_FD.store(fd, Ordering::Release);
            handle(fd, if v >> 32 == DEFER_STOP { "stop" } else { "checkpoint wait" });
            CLIENT_FD.store(-1, Ordering::Release);
            sys::close(fd);
        }
    }
    each_client(|fd| {
        if let Some(req) = read_request(fd) {
            handle(fd, &req);
        }
        true
    });
}

/// Accept every waiting client and give it to `serve` (which says whether to close it now).
fn each_client(mut serve: impl FnMut(i32) -> bool) {
    let lfd = LISTEN_FD.load(Ordering::Acquire);
    if lfd < 0 {
        return;
    }
    // A client being served while a checkpoint runs (serve_busy) stays ours too.
    let outer = CLIENT_FD.load(Ordering::Acquire);
    while let Ok(fd) = syscall!(libc::SYS_accept4, lfd, 0, 0, libc::SOCK_CLOEXEC) {
        let fd = sys::own(sys::move_high(fd as i32));
        CLIENT_FD.store(fd, Ordering::Release);
        let close = serve(fd);
        CLIENT_FD.store(outer, Ordering::Release);
        if close {
            sys::close(fd);
        }
    }
}

/// While a snapshot writes the image (the program runs): answer `status` with the progress,
/// queue `checkpoint`, and keep `checkpoint wait` and `stop` for when this checkpoint has ended.
pub fn serve_busy() {
    each_client(|fd| {
        let Some(req) = read_request(fd) else { return true };
        let later = match req.as_str() {
            "checkpoint wait" => DEFER_WAIT,
            "stop" => DEFER_STOP,
            _ => {
                handle(fd, &req);
                return true;
            }
        };
        let kept = DEFERRED.iter().any(|d| d.compare_exchange(-1, (later << 32) | i64::from(fd), Ordering::AcqRel, Ordering::Acquire).is_ok());
        if !kept {
            reply(fd, "error a checkpoint is being written and other requests wait for it; ask again\n");
        }
        !kept
    });
}

/// Send an answer. MSG_NOSIGNAL: a client that went away must not raise SIGPIPE.
fn reply(fd: i32, s: &str) {
    let mut b = s.as_bytes();
    while !b.is_empty() {
        match syscall!(libc::SYS_sendto, fd, b.as_ptr(), b.len(), libc::MSG_NOSIGNAL, 0, 0) {
            Ok(n) => b = &b[n as usize..],
            Err(libc::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// Read a client's request line, once its peer is found to be our own user (None: refused, or
/// nothing to do).
fn read_request(fd: i32) -> Option<String> {
    let tv = libc::timeval { tv_sec: 2, tv_usec: 0 };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        let _ = syscall!(libc::SYS_setsockopt, fd, libc::SOL_SOCKET, opt, &tv as *const libc::timeval, std::mem::size_of::<libc::timeval>());
    }
    // Read the request first: closing with unread data would reset the connection and lose
    // the answer.
    let mut buf = [0u8; 256];
    let mut n = 0;
    while n < buf.len() && !buf[..n].contains(&b'\n') {
        match sys::read(fd, &mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as u32;
    let euid = syscall!(libc::SYS_geteuid).unwrap_or(-1) as u32;
    let ok = syscall!(libc::SYS_getsockopt, fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred, &mut len as *mut u32).is_ok();
    if !ok || cred.uid != euid {
        log!(ERROR, "control socket: refused a connection from uid {} (pid {})", cred.uid, cred.pid);
        reply(fd, "error permission denied: only the program's owner may control it\n");
        return None;
    }
    let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let req = std::str::from_utf8(line).unwrap_or("").trim();
    log!(DEBUG, "control request {req:?} from pid {}", cred.pid);
    Some(req.to_string())
}

/// Answer request `req` on `fd`.
fn handle(fd: i32, req: &str) {
    match req {
        "" => {} // a probe (ckpt-ctl looking for live programs) or a client that gave up
        "checkpoint" => {
            reply(fd, "queued\n");
            triggers::request(triggers::REQ_CHECKPOINT);
        }
        "checkpoint wait" => {
            let out = if crate::step::active() { crate::step::request(false, true) } else { take(false) };
            triggers::arm_timer();
            reply_outcome(fd, out);
        }
        "status" => reply(fd, &status()),
        "stop" => {
            let out = if crate::step::active() { crate::step::request(true, true) } else { take(true) };
            reply_outcome(fd, out);
            if out.is_some() {
                sys::close(fd);
                CLIENT_FD.store(-1, Ordering::Release);
                triggers::exit_after_checkpoint(true);
            }
            triggers::arm_timer();
        }
        _ => reply(fd, "error unknown request (expected checkpoint, checkpoint wait, status or stop)\n"),
    }
}

/// A checkpoint for a client (`stop`: the program exits after it): of the process tree when the
/// program has one.
fn take(stop: bool) -> Option<checkpoint::Outcome> {
    crate::tree::forget_failure();
    if crate::tree::is_member() {
        crate::tree::take_and_wait(stop)
    } else {
        crate::tree::alone(stop)
    }
}

fn reply_outcome(fd: i32, out: Option<checkpoint::Outcome>) {
    if let Some(o) = out {
        log!(DEBUG, "control: checkpoint of {} bytes ({} on disk), program paused {} ms", o.raw, o.stored, o.paused_ms);
        reply(fd, &format!("ok {}\n", String::from_utf8_lossy(&generations::last_path())));
    } else if let Some(line) = crate::tree::failure_line() {
        // The process of the tree that made it fail, and why (the coordinator's line says it too).
        reply(fd, &format!("error {line}; the program continues\n"));
    } else {
        reply(fd, "error the checkpoint failed (the program's stderr says why); the program continues\n");
    }
}

fn status() -> String {
    let mut s = String::new();
    let name = config().map(|c| String::from_utf8_lossy(&c.name).into_owned()).unwrap_or_default();
    s.push_str(&format!("pid: {}\nprogram: {name}\ncheckpoints: {}\n", sys::getpid(), checkpoint::GENERATION.load(Ordering::Relaxed)));
    let last = generations::last_path();
    if last.is_empty() {
        s.push_str("last image: none\n");
    } else {
        s.push_str(&format!("last image: {}\n", String::from_utf8_lossy(&last)));
        // SAFETY: an all-zero struct stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let path = sys::cpath(&[&last]);
        if syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, path.as_ptr(), &mut st as *mut libc::stat, 0).is_ok() {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            let _ = syscall!(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts as *mut libc::timespec);
            s.push_str(&format!("last image age: {}s\nlast image size: {}\n", (ts.tv_sec - st.st_mtime).max(0), st.st_size));
        }
    }
    match triggers::next_in_ms() {
        Some(ms) => s.push_str(&format!("next periodic checkpoint: in {}s\n", ms.div_ceil(1000))),
        None => s.push_str("next periodic checkpoint: none (no --interval)\n"),
    }
    if let Some(p) = progress::status() {
        s.push_str(&p);
        s.push('\n');
    }
    s
}
