//! POSIX message queues (mq_open): the queue behind an fd (its name, attributes, mode, owner,
//! the messages queued and the process's mq_notify registration) and its making again.
//!
//! Capture reads the messages without losing them: with every thread of the program stopped,
//! it receives each of them (highest priority first, oldest first within a priority, as any
//! receiver would) and sends them back in the same order, which puts the queue back exactly as
//! it was (a send goes to the end of its priority). A notification the process registered
//! would fire on the first send back into the emptied queue: it is taken off first and
//! registered again after (the runtime's mq_notify hook knows its signal and value, which the
//! kernel does not tell; a SIGEV_THREAD one is the runtime's own, see its `mqnotify`). Closing any fd of a queue drops the registration of the process that
//! closes it, so it is registered again after the runtime's own fds of the queue are closed too.
//!
//! Restore makes each queue once (mq_open with O_CREAT | O_EXCL and the same mq_maxmsg and
//! mq_msgsize), sends its messages back, opens each of the program's fds on it by name with its
//! own access mode and O_NONBLOCK, then gives it its mode and owner and removes it again if it
//! had been removed (made under a name of ckpt's, so that it never takes the place of a queue of
//! that name). Registrations come back last, once the restarter's fds of the queue are closed.

use crate::sys;
use crate::{check, lossy, Error, Result};
use ckpt_image::{FdKind, FdState, MqMessage, MqNotify, Mqueue};
use std::ffi::CString;
use std::os::fd::RawFd;

/// statfs's f_type of the queue file system.
pub const MQUEUE_MAGIC: i64 = 0x1980_0202;

/// The queues described so far (by inode): a queue's messages go with its first fd only.
#[derive(Default)]
pub struct Seen(Vec<u64>);

/// What capture needs from the runtime.
pub struct Context<'a> {
    pub pid: i32,
    /// Whether a process of the program's tree with a lower pid holds the queue of this stat
    /// too: that one reads its messages (every process is stopped), this one leaves them.
    pub lower_holder: &'a dyn Fn(&libc::stat) -> bool,
    /// The registration the runtime's mq_notify hook saw on the queue of this inode, if any:
    /// (sigev_notify, signal, value).
    pub registered: &'a dyn Fn(u64) -> Option<(i32, i32, u64)>,
    /// Told that the registration on the queue of this inode is in force, and the program's fd
    /// of the queue.
    pub in_force: &'a dyn Fn(u64, i32),
    /// Register the process's notification on the queue of this inode again through this fd
    /// (the runtime knows how: a SIGEV_THREAD one is its own); an errno on failure.
    pub register_again: &'a dyn Fn(i32, u64) -> std::result::Result<(), i32>,
}

/// The kernel's struct mq_attr.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Attr {
    flags: i64,
    maxmsg: i64,
    msgsize: i64,
    curmsgs: i64,
    pad: [i64; 4],
}

/// The kernel's struct sigevent, as mq_notify takes it (64 bytes).
#[repr(C)]
struct SigEvent {
    value: u64,
    signo: i32,
    notify: i32,
    pad: [u64; 6],
}

fn getattr(fd: i32) -> sys::SysResult<Attr> {
    let mut a = Attr::default();
    // SAFETY: a is a valid out-parameter; no new attributes.
    let r = unsafe { libc::syscall(libc::SYS_mq_getsetattr, fd, std::ptr::null::<Attr>(), &mut a as *mut Attr) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    Ok(a)
}

/// mq_notify on `fd`: `ev` None takes the process's registration off.
fn notify(fd: i32, ev: Option<MqNotify>) -> std::io::Result<()> {
    let k = ev.map(|e| SigEvent { value: e.value, signo: e.signo, notify: e.notify, pad: [0; 6] });
    let p = k.as_ref().map_or(std::ptr::null(), |k| k as *const SigEvent);
    // SAFETY: p is null or a valid sigevent.
    if unsafe { libc::syscall(libc::SYS_mq_notify, fd, p) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The queue's registration as the kernel shows it (reading the queue's file):
/// (sigev_notify, signal, pid of the process that registered; 0: none).
fn registration(fd: i32) -> Option<(i32, i32, i32)> {
    let mut buf = [0u8; 128];
    // SAFETY: buf is valid for its length; pread leaves the offset alone.
    let n = unsafe { libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), 0) };
    if n <= 0 {
        return None;
    }
    let text = std::str::from_utf8(&buf[..n as usize]).ok()?;
    let field = |name: &str| -> Option<i32> {
        let at = text.find(name)? + name.len();
        text[at..].split_whitespace().next()?.parse().ok()
    };
    Some((field("NOTIFY:")?, field("SIGNO:")?, field("NOTIFY_PID:")?))
}

fn readable(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_WRONLY
}

/// Describe the queue behind the program's fd `fd` (`link`: its /proc link, `st`: its stat,
/// `flags`: its status flags). A queue that cannot be captured faithfully is described as an
/// `Other` naming the queue and why, which the restart refuses in one line.
pub fn capture(fd: i32, link: &[u8], st: &libc::stat, flags: i32, seen: &mut Seen, cx: &Context) -> FdKind {
    let (path, unlinked) = match link.strip_suffix(b" (deleted)") {
        Some(n) => (n, true),
        None => (link, false),
    };
    // "/NAME" for mq_open's own mount of the namespace's queues; a file opened through a mount
    // of the queue file system (/dev/mqueue/NAME) names its path there. A name has no other '/'.
    let name = [b"/".as_slice(), path.rsplit(|&b| b == b'/').next().unwrap_or(path)].concat();
    let refuse = |why: &str| FdKind::Other { link: [b"POSIX message queue ".as_slice(), &name, b": ", why.as_bytes()].concat() };
    let Ok(attr) = getattr(fd) else { return refuse("mq_getattr failed") };
    let mut q = Mqueue { name: name.clone(), unlinked, ino: st.st_ino, maxmsg: attr.maxmsg, msgsize: attr.msgsize, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, messages: Vec::new(), notify: None };
    if seen.0.contains(&st.st_ino) {
        return FdKind::Mqueue(Box::new(q));
    }
    seen.0.push(st.st_ino);
    let proc_path = sys::proc_fd(&sys_decimal(fd));
    // Our own fds of the queue (read-only for its registration, read-write for its messages).
    let mut temps: Vec<i32> = Vec::new();
    let r = capture_contents(fd, flags, &attr, !(cx.lower_holder)(st), &proc_path, &mut temps, cx, &mut q);
    let closed_any = !temps.is_empty();
    for t in temps {
        sys::close(t);
    }
    if closed_any && q.notify.is_some() {
        // Closing our fds took the process's registration off: put it back.
        let _ = (cx.register_again)(fd, q.ino);
    }
    match r {
        Ok(()) => FdKind::Mqueue(Box::new(q)),
        Err(why) => refuse(&why),
    }
}

/// The registration and (`reader`: the process that reads them) the messages of queue `q`.
#[allow(clippy::too_many_arguments)]
fn capture_contents(fd: i32, flags: i32, attr: &Attr, reader: bool, proc_path: &CString, temps: &mut Vec<i32>, cx: &Context, q: &mut Mqueue) -> std::result::Result<(), String> {
    let seen = (cx.registered)(q.ino);
    let info_fd = if readable(flags) {
        fd
    } else {
        let t = sys::open(proc_path, libc::O_RDONLY | libc::O_NONBLOCK, 0).map_err(|e| format!("cannot open it to read its state: {}", std::io::Error::from_raw_os_error(e)))?;
        temps.push(t);
        t
    };
    let Some((kind, signo, owner)) = registration(info_fd) else { return Err("cannot read its state".into()) };
    if owner == cx.pid {
        match seen {
            Some((n, s, value)) if n == kind && (n != libc::SIGEV_SIGNAL || s == signo) => {
                q.notify = Some(MqNotify { notify: kind, signo, value });
                (cx.in_force)(q.ino, fd);
            }
            _ => return Err("an mq_notify registration ckpt did not see made (its value is not known)".into()),
        }
    }
    if !reader {
        return Ok(());
    }
    if owner != 0 && owner != cx.pid && attr.curmsgs > 0 {
        // Sending the messages back would fire it for the other process.
        return Err(format!("messages queued and an mq_notify registration of another process ({owner})"));
    }
    if attr.curmsgs <= 0 {
        return Ok(());
    }
    let rw = match sys::open(proc_path, libc::O_RDWR | libc::O_NONBLOCK, 0) {
        Ok(t) => {
            temps.push(t);
            t
        }
        Err(_) if flags & libc::O_ACCMODE == libc::O_RDWR => fd,
        Err(e) => return Err(format!("its messages cannot be read without taking them: {}", std::io::Error::from_raw_os_error(e))),
    };
    if q.notify.is_some() {
        notify(fd, None).map_err(|e| format!("cannot take its notification off while its messages are read: {e}"))?;
    }
    let got = drain(rw, attr);
    // Back in the order received: the queue is as it was.
    let mut back = Ok(());
    for m in &got {
        if let Err(e) = send(rw, m) {
            back = Err(e);
            break;
        }
    }
    if q.notify.is_some() {
        let _ = (cx.register_again)(fd, q.ino);
    }
    back.map_err(|e| format!("a message could not be put back ({e}): the running program lost it"))?;
    if got.len() as i64 != attr.curmsgs {
        return Err(format!("{} messages were read of {}", got.len(), attr.curmsgs));
    }
    q.messages = got;
    Ok(())
}

/// A time long past: the timed calls return at once instead of waiting.
const PAST: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };

/// Receive every message (there are `attr.curmsgs`; none comes while the program is stopped).
fn drain(fd: i32, attr: &Attr) -> Vec<MqMessage> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; attr.msgsize.max(1) as usize];
    for _ in 0..attr.curmsgs {
        let mut prio: u32 = 0;
        // SAFETY: buf is valid for its length; prio and PAST are valid.
        let n = unsafe { libc::syscall(libc::SYS_mq_timedreceive, fd, buf.as_mut_ptr(), buf.len(), &mut prio as *mut u32, &PAST as *const libc::timespec) };
        if n < 0 {
            break;
        }
        out.push(MqMessage { priority: prio, data: buf[..n as usize].to_vec() });
    }
    out
}

fn send(fd: i32, m: &MqMessage) -> std::io::Result<()> {
    // SAFETY: the message's bytes are valid for their length; PAST is valid.
    if unsafe { libc::syscall(libc::SYS_mq_timedsend, fd, m.data.as_ptr(), m.data.len(), m.priority, &PAST as *const libc::timespec) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn sys_decimal(n: i32) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// One queue made again at restart, held by `master` (ours) until every fd of it is open.
struct Made {
    ino: u64,
    /// The name it was made under (the image's, or one of ckpt's for a removed queue).
    name: CString,
    master: RawFd,
    remove: bool,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The queues made by a restart. Dropped before `finish` (the restart failed): the queues made
/// are removed again.
#[derive(Default)]
pub struct Queues {
    made: Vec<Made>,
}

impl Queues {
    /// A new fd of ours (close-on-exec) on the queue `q`, opened with the access mode and
    /// O_NONBLOCK of `flags`; the queue is made the first time.
    pub fn open(&mut self, q: &Mqueue, flags: i32) -> Result<RawFd> {
        let i = match self.made.iter().position(|m| m.ino == q.ino) {
            Some(i) => i,
            None => {
                self.made.push(make(q)?);
                self.made.len() - 1
            }
        };
        let m = &self.made[i];
        let how = flags & (libc::O_ACCMODE | libc::O_NONBLOCK) | libc::O_CLOEXEC;
        // SAFETY: name is a valid C string; no O_CREAT, so no mode or attributes follow.
        check(unsafe { libc::mq_open(m.name.as_ptr(), how) }, || format!("cannot open POSIX message queue {} again", lossy(&q.name)))
    }

    /// Every fd of every queue is open: give each queue its mode and owner, remove those that
    /// had been removed, close ours.
    pub fn finish(mut self) -> Result<()> {
        let mut r = Ok(());
        for m in std::mem::take(&mut self.made) {
            if r.is_ok() {
                r = settle(&m);
            }
            if m.remove || r.is_err() {
                // SAFETY: name is a valid C string.
                unsafe { libc::mq_unlink(m.name.as_ptr()) };
            }
            sys::close(m.master);
        }
        r
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        for m in &self.made {
            // SAFETY: name is a valid C string; the queue is one this restart made.
            unsafe { libc::mq_unlink(m.name.as_ptr()) };
            sys::close(m.master);
        }
    }
}

/// Make the queue `q` with its attributes and messages.
fn make(q: &Mqueue) -> Result<Made> {
    let shown = lossy(&q.name);
    // (libc's mq_open and mq_unlink take the name with its leading '/'.)
    let name = if q.unlinked {
        // SAFETY: getpid has no preconditions.
        format!("/ckpt-restart-mq-{}-{}", unsafe { libc::getpid() }, q.ino).into_bytes()
    } else if q.name.starts_with(b"/") {
        q.name.clone()
    } else {
        [b"/".as_slice(), &q.name].concat()
    };
    let name = CString::new(name).map_err(|_| Error::Refused(format!("POSIX message queue {shown}: a name with a NUL byte")))?;
    // SAFETY: an all-zero mq_attr is valid.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = q.maxmsg;
    attr.mq_msgsize = q.msgsize;
    // SAFETY: name is a valid C string, attr a valid mq_attr; the mode and attributes follow
    // O_CREAT as mq_open expects.
    let fd = unsafe { libc::mq_open(name.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC, 0o600 as libc::mode_t, &attr as *const libc::mq_attr) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Err(Error::Refused(format!(
                "POSIX message queue {shown} exists already (a program still using it, or left by the one checkpointed); \
                 the restart would not be the image's queue: remove it (mq_unlink, or rm /dev/mqueue{shown}) to restart from the image"
            )));
        }
        return Err(Error::Os { what: format!("cannot make POSIX message queue {shown} again (mq_maxmsg {}, mq_msgsize {})", q.maxmsg, q.msgsize), err: e });
    }
    let made = Made { ino: q.ino, name, master: fd, remove: q.unlinked, mode: q.mode, uid: q.uid, gid: q.gid };
    for m in &q.messages {
        if let Err(e) = send(fd, m) {
            // SAFETY: as above; the queue is ours, just made.
            unsafe { libc::mq_unlink(made.name.as_ptr()) };
            sys::close(fd);
            return Err(Error::Os { what: format!("cannot queue a message of POSIX message queue {shown} again"), err: e });
        }
    }
    Ok(made)
}

/// Give a queue its owner and mode.
fn settle(m: &Made) -> Result<()> {
    let what = || format!("POSIX message queue {}", lossy(m.name.as_bytes()));
    // SAFETY: an all-zero stat is a valid out-parameter; master is ours.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    check(unsafe { libc::fstat(m.master, &mut st) }, what)?;
    if (st.st_uid, st.st_gid) != (m.uid, m.gid) {
        // SAFETY: master is ours.
        check(unsafe { libc::fchown(m.master, m.uid, m.gid) }, || format!("cannot give {} its owner {}:{} again", what(), m.uid, m.gid))?;
    }
    // SAFETY: master is ours.
    check(unsafe { libc::fchmod(m.master, m.mode as libc::mode_t) }, || format!("cannot give {} its mode {:o} again", what(), m.mode))?;
    Ok(())
}

/// Register again the process's notifications (the last thing done with the fds: closing any
/// fd of a queue takes the registration off), each through the program's first fd of its queue.
pub fn register_again(fds: &[FdState]) -> Result<()> {
    for f in fds.iter().filter(|f| f.fd >= 0 && f.dup_of.is_none()) {
        let FdKind::Mqueue(q) = &f.kind else { continue };
        // (SIGEV_THREAD: the runtime's own, made again by the runtime after the switch.)
        if let Some(n) = q.notify.filter(|n| n.notify != libc::SIGEV_THREAD) {
            notify(f.fd, Some(n)).map_err(|err| Error::Os { what: format!("cannot register the notification of POSIX message queue {} again (mq_notify)", lossy(&q.name)), err })?;
        }
    }
    Ok(())
}
