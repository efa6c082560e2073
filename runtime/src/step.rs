//! One checkpoint of a whole Slurm step (issue 14): the tasks of `srun ckpt-run ...` take it
//! together, with rank 0's checkpoint thread as the coordinator (no daemon of its own).
//!
//! Links: rank 0 listens on a TCP port of its own (all interfaces), publishes it in
//! `DIR/BASE.step-addr` (0600, under the run's epoch, ckpt_step::files) and makes the step's key
//! `DIR/BASE.step-key`. Every other rank's checkpoint thread connects to it, both sides prove
//! they know the key (ckpt_step::auth), and the link stays open; anyone else is refused and
//! the refusal logged. After a restart the links are made again under the new epoch.
//!
//! A checkpoint: any request (signal, timer, ckpt-ctl) on any rank becomes a `Req` to rank 0,
//! which sends `Begin` to all (requests made before its last checkpoint was committed are
//! served by it). Each rank then, inside `checkpoint::take`:
//! 1. stops its threads, reports its TCP connections (`Conns`); rank 0 pairs those that join
//!    two tasks and sends each rank its `Pairs`;
//! 2. drains them (ckpt_kinds::sockets::jobconn): the bytes in flight become the sockets'
//!    unread queues in the image, which records each such connection's id (`annotate`);
//! 3. writes its image; before its threads run again, refills the connections (`refill`);
//! 4. reports `Done` with its image's hash once the image is durable. Rank 0 writes the
//!    manifest `DIR/BASE.step` naming every rank's image only when all are, then `Commit`s (or
//!    abandons, everywhere, with one line). Images the manifest names are never rotated away
//!    (generations::protect), so the last complete set stays restartable.
//!
//! A task whose program is the root of a process tree (it forked, in its namespace: ckpt-ns
//! init coordinates the tree) takes the tree's checkpoint as its part (tree.rs): on `Begin` it
//! asks its tree's coordinator for one; once every process of the tree is stopped (the tree's
//! first phase) the program reports its connections and those the tree's other processes hold
//! (treetcp); with the pairs back it names, in the set being written, the connections each
//! other process drains (`ckpt_step::holders`) and tells the coordinator, which only then lets
//! the others capture (`ckpt_ns::treemsg`). Every process drains its own connections to other
//! tasks (the program `stopped`, the others `holder_drain`), records them in its image
//! (`annotate`) and refills them before its threads run again; the hash of the program's image
//! names the set in the manifest, and at restart the tree's root makes every connection of the
//! tree again in the step's rendezvous (restarter/src/step.rs). A connection between two tasks
//! that several processes of a tree hold at once (an inherited fd: MPICH's ranks hold their
//! proxy's connection to mpiexec) is drained once, by the program when it holds it, else by
//! the holder with the lowest pid; the others share it: they drain nothing, and each image
//! records the connection, the unread bytes in the drainer's only. In a tree the drainer gives
//! the bytes back before it says it has captured (`refill`), so no sharer runs (and reads the
//! connection) while the peer's refill is still arriving on it.
//!
//! Everything here runs on the checkpoint thread. Between checkpoints it may use the runtime's
//! allocator freely; inside `take` (threads stopped) only scratch allocations, which end with
//! the checkpoint, and raw system calls (ckpt_step::sys).

use crate::checkpoint::{self, Outcome};
use crate::log::{log, ALWAYS, DEBUG, ERROR, INFO};
use crate::{generations, sys};
use ckpt_image::{FdKind, Index, JobConn, Message, StepInfo};
use ckpt_kinds::sockets::jobconn;
use ckpt_step::files::{self, Addr, Manifest};
use ckpt_step::holders::{Held, Holders};
use ckpt_step::ident::Ident;
use ckpt_step::wire::{self, Conn, LinkError, Msg, Pair};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use crate::forklock::Mutex;

/// The step this task belongs to (set once at startup; None: not a step).
struct Step {
    id: Ident,
    base: String,
    /// Why this task cannot take part in a step checkpoint (PMI2/PMIx under srun), if so.
    unsupported: Option<String>,
    /// Rank 0: a link to each rank (its own slot unused); others: slot 0. -1: none.
    links: Vec<AtomicI32>,
    /// Tasks in the step: `id.ntasks`, or for rank 0 of a joined step (ckpt_step::join) 0 until
    /// the tasks of its srun link up and say how many they are: the most any linked task says
    /// (two sruns of the tree at once have ranks apart, the later one's after: `sized`).
    size: AtomicU32,
    /// Rank 0 of a joined step: the step's size each linked task said (0: none).
    claims: Vec<AtomicU32>,
    /// Rank 0 of a joined step, during one of its checkpoints: the ranks below its size whose
    /// srun had ended when it began (the first of two sruns side by side, ended while the
    /// second runs): no part in it, recorded as ended in the manifest (`gaps`).
    ended: Vec<std::sync::atomic::AtomicBool>,
}

/// The most tasks a joined step's rank 0 makes room for.
const JOIN_MAX: usize = 1025;

fn ntasks(s: &Step) -> u32 {
    s.size.load(Ordering::Acquire)
}

/// The slots of `links` the step's tasks use (a joined step's rank 0 has room for more).
fn live_links(s: &Step) -> impl Iterator<Item = &AtomicI32> {
    s.links.iter().take(ntasks(s).max(1) as usize)
}

static STEP: std::sync::atomic::AtomicPtr<Step> = std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());
static LISTEN: AtomicI32 = AtomicI32::new(-1);
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// The number of the last committed step checkpoint, and when it was committed (realtime ns).
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static COMMITTED_AT: AtomicU64 = AtomicU64::new(0);
/// Rank 0: when its last step checkpoint ended (realtime ns), committed or abandoned.
static ENDED_AT: AtomicU64 = AtomicU64::new(0);
/// When the last checkpoint request reached this task (realtime ns; set by the signal handler).
static TRIGGERED_AT: AtomicU64 = AtomicU64::new(0);
/// The next time a member tries to link up (monotonic ms).
static RETRY_AT: AtomicU64 = AtomicU64::new(0);
/// A member's link being made (`link_up`): `report_end` dials after it is done. With
/// `stepend::ending` (a member whose program is ending links up no more), a member's `Hello`
/// never reaches rank 0 after its `Ended` (rank 0 takes a `Hello` for that rank as a task
/// running again and forgets the status: a link made by the checkpoint thread while the
/// program's `exit` reported, accepted after the report, made the next checkpoint wait for the
/// ended task and be abandoned).
static LINKING: AtomicU32 = AtomicU32::new(0);
/// The step's key, once read (rank 0 makes it at startup).
pub(crate) static KEY: Mutex<Option<[u8; files::KEY_LEN]>> = Mutex::new(None);

/// What one checkpoint of the step knows while it is being taken (scratch memory).
pub(crate) struct Current {
    gen: u64,
    /// The connections this process drained, with what it read (`drained`, in that order).
    pairs: Vec<(i32, Pair)>,
    drained: Vec<jobconn::Drained>,
    /// The connections this process holds and another process of its tree drained.
    shared: Vec<(i32, Pair)>,
    /// The step stops after this checkpoint.
    stop: bool,
}

pub(crate) static CURRENT: Mutex<Option<Current>> = Mutex::new(None);
/// The number of the step checkpoint being taken (0: none), and whether the step stops after it.
static IN_STEP: AtomicU64 = AtomicU64::new(0);
/// Rank 0: the last step checkpoint in which it sent the other tasks their `Pairs`.
static PAIRED: AtomicU64 = AtomicU64::new(0);
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A checkpoint-and-exit of the step: the program's threads stay stopped until it exits.
pub fn keep_stopped() -> bool {
    IN_STEP.load(Ordering::Acquire) != 0 && STOPPING.load(Ordering::Acquire)
}

fn step() -> Option<&'static Step> {
    // SAFETY: STEP is set once at startup to a leaked Box, never freed.
    unsafe { STEP.load(Ordering::Acquire).as_ref() }
}

/// Rank 0 of a joined step that does not know its tasks yet: it accepts them (`serve`), and
/// checkpoints as a tree alone until they have linked up.
pub fn joining() -> bool {
    step().is_some_and(|s| ntasks(s) == 0)
}

/// Whether this task is part of a step of several tasks (a joined step's rank 0: once its
/// tasks linked up, and while any of them is still linked: the ends of links are read first).
pub fn active() -> bool {
    if let Some(s) = step().filter(|s| s.id.rank == 0 && s.id.ntasks == 0) {
        drop_closed(s);
        all_left(s);
    }
    step().is_some_and(|s| ntasks(s) >= 2)
}

/// Rank 0 of a joined step: the links whose task has ended (closed by it) are dropped, so that
/// a checkpoint asked at once does not count on them.
fn drop_closed(s: &Step) {
    if IN_STEP.load(Ordering::Acquire) != 0 {
        return;
    }
    for r in 1..ntasks(s) as usize {
        let fd = s.links[r].load(Ordering::Relaxed);
        let gone = fd >= 0 && ckpt_step::sys::poll1(fd, libc::POLLRDHUP, Some(0)).is_ok_and(|ev| ev & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0);
        if gone {
            drop_link(s, r, &LinkError::Closed);
        }
    }
}

/// Whether rank `r` had ended when the step checkpoint being taken began (`Step::ended`).
fn ended(s: &Step, r: usize) -> bool {
    s.ended.get(r).is_some_and(|e| e.load(Ordering::Acquire))
}

/// Rank 0, as a checkpoint begins (every rank a live srun of the tree holds is linked, but
/// those that said they ended: `wait_linked`): the ranks below the step's size without a link
/// that said they ended (`stepend`), and in a joined step the other ranks without a link
/// (tasks of sruns that have ended); mark them. The marked ranks (empty: none).
fn gaps(s: &Step) -> Vec<usize> {
    let joined = s.id.ntasks == 0;
    let mut out = Vec::new();
    for r in 1..s.ended.len() {
        let gone = r < ntasks(s) as usize && s.links[r].load(Ordering::Acquire) < 0 && (joined || crate::stepend::status(r).is_some());
        s.ended[r].store(gone, Ordering::Release);
        if gone {
            out.push(r);
        }
    }
    out
}

fn is_coordinator() -> bool {
    step().is_some_and(|s| s.id.rank == 0)
}

/// Whether this process is the program of a task of a step (rank 0 too).
pub fn is_task() -> bool {
    step().is_some()
}

/// Whether this process is the program of a task of a step other than rank 0.
pub fn is_member() -> bool {
    step().is_some_and(|s| s.id.rank != 0)
}

/// Only rank 0 requeues the job after a checkpoint-and-exit of the step (once every image is in).
pub fn may_requeue() -> bool {
    step().is_none_or(|s| s.id.rank == 0)
}

/// Periodic checkpoints of a step are rank 0's (the others' timers would make extra ones).
pub fn may_time() -> bool {
    may_requeue()
}

fn timeout_ms() -> u64 {
    STEP_TIMEOUT_MS.load(Ordering::Relaxed)
}

/// How long a member waits for rank 0, which itself waits up to `timeout_ms` for the others.
fn member_wait_ms() -> u64 {
    timeout_ms() + 10_000
}

/// Why this task's part of the step's checkpoint failed (for rank 0's one line), in a fixed
/// buffer: it is set during the checkpoint, whose allocations do not outlive it.
pub(crate) static FAILED: Mutex<([u8; 240], usize)> = Mutex::new(([0; 240], 0));

fn set_failed(why: &str) {
    if let Ok(mut f) = FAILED.lock() {
        let n = why.len().min(240);
        f.0[..n].copy_from_slice(&why.as_bytes()[..n]);
        f.1 = n;
    }
}

fn take_failed() -> String {
    FAILED.lock().map(|mut f| {
        let s = String::from_utf8_lossy(&f.0[..f.1]).into_owned();
        f.1 = 0;
        s
    }).unwrap_or_default()
}

static STEP_TIMEOUT_MS: AtomicU64 = AtomicU64::new(120_000);

/// Set up from the environment (constructor, one thread): the step's identity and, on rank 0,
/// the key and the coordinator's listening socket.
pub fn init(env: &dyn Fn(&[u8]) -> Option<Vec<u8>>, name: &[u8]) {
    let var = |k: &str| env(&[k.as_bytes(), b"\0"].concat()).map(|v| String::from_utf8_lossy(&v).into_owned());
    let Some(id) = Ident::from_env(var).or_else(|| Ident::join_root(var, &String::from_utf8_lossy(name))) else { return };
    if crate::tree::is_child() {
        // A program that a process of the task's tree execs: not the task (see `in_task_tree`).
        IN_TASK_TREE.store(true, Ordering::Relaxed);
        return;
    }
    if let Some(t) = var("CKPT_STEP_TIMEOUT").and_then(|t| t.parse::<u64>().ok()).filter(|&t| t > 0) {
        STEP_TIMEOUT_MS.store(t * 1000, Ordering::Relaxed);
    }
    let base = ckpt_step::ident::base_name(&String::from_utf8_lossy(name), id.rank);
    let room = if id.ntasks == 0 { JOIN_MAX } else { id.ntasks as usize };
    let links = (0..room).map(|_| AtomicI32::new(-1)).collect();
    let size = AtomicU32::new(id.ntasks);
    EPOCH.store(id.epoch(false), Ordering::Relaxed);
    let unsupported = ckpt_step::ident::unsupported_launch(var);
    let claims = (0..room).map(|_| AtomicU32::new(0)).collect();
    let ended = (0..room).map(|_| std::sync::atomic::AtomicBool::new(false)).collect();
    let s = Step { id, base, unsupported, links, size, claims, ended };
    STEP.store(Box::into_raw(Box::new(s)), Ordering::Release);
    if is_coordinator() {
        start_coordinator();
    }
}

/// A process of a task's tree other than the task's program (its child, or a program a child
/// execs, in the task's namespace): checkpoints of the step are the program's to ask (it takes
/// the tree's checkpoint as the task's part: `run_local`), so such a process asks for none.
static IN_TASK_TREE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn in_task_tree() -> bool {
    IN_TASK_TREE.load(Ordering::Relaxed)
}

/// In a child the program forked (a member of its tree): the links and the listener are the
/// program's (closing our copies leaves them open); this process is no task of the step.
pub fn forget_in_child() {
    let p = STEP.swap(std::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: STEP was set once to a leaked Box that is never freed (the parent's copy).
    let Some(s) = (unsafe { p.as_ref() }) else { return };
    for l in &s.links {
        let fd = l.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            sys::close_inherited(fd);
        }
    }
    let l = LISTEN.swap(-1, Ordering::Relaxed);
    if l >= 0 {
        sys::close_inherited(l);
    }
    IN_TASK_TREE.store(true, Ordering::Relaxed);
}

/// After a restart: the old links are gone (their numbers may be the program's now); link up
/// again under `epoch`, the restarted run's. `gen`: the step checkpoint restarted from.
pub fn after_restart(epoch: u64, gen: u64, image_hash: u64) {
    if let Ok(mut c) = CURRENT.lock() {
        // Scratch memory of the checkpoint the image was taken in: gone (in every process that
        // drained connections to other tasks, the task's program or another of its tree).
        std::mem::forget(c.take());
    }
    let Some(s) = step() else { return };
    for l in &s.links {
        l.store(-1, Ordering::Relaxed);
    }
    LISTEN.store(-1, Ordering::Relaxed);
    IN_STEP.store(0, Ordering::Relaxed);
    if epoch != 0 {
        EPOCH.store(epoch, Ordering::Relaxed);
    }
    COMPLETED.store(gen, Ordering::Relaxed);
    COMMITTED_AT.store(ckpt_step::sys::realtime_ns(), Ordering::Relaxed);
    RETRY_AT.store(0, Ordering::Relaxed);
    // (Rank 0's image was taken while it coordinated that checkpoint.)
    COORDINATING.store(0, Ordering::SeqCst);
    crate::stepend::after_restart();
    generations::protect(image_hash);
    crate::stepend::note_pid();
    if is_coordinator() {
        start_coordinator();
    }
}

/// Whether `fd` is one of our links or the coordinator's listener.
pub fn is_own_fd(fd: i32) -> bool {
    fd >= 0 && (LISTEN.load(Ordering::Relaxed) == fd || step().is_some_and(|s| live_links(s).any(|l| l.load(Ordering::Relaxed) == fd)))
}

/// A checkpoint request reached this task now (async-signal-safe).
pub fn note_trigger() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts as *mut libc::timespec);
    TRIGGERED_AT.store(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64, Ordering::Release);
}

/// The step's directory: the image directory (which follows a moved one after a restart:
/// `crate::move_image_dir`).
fn step_dir() -> Vec<u8> {
    crate::config().map(|c| c.dir.clone()).unwrap_or_default()
}

fn step_files() -> Result<files::Dir, String> {
    files::Dir::open(&step_dir())
}

fn key() -> Option<[u8; files::KEY_LEN]> {
    if let Some(k) = *KEY.lock().ok()? {
        return Some(k);
    }
    let s = step()?;
    let k = step_files().and_then(|d| d.key(&s.base, s.id.rank == 0)).map_err(|e| log!(ERROR, "step: {e}")).ok()??;
    *KEY.lock().ok()? = Some(k);
    Some(k)
}

/// Rank 0: the key, a listening socket on every interface, its address published.
fn start_coordinator() {
    let Some(s) = step() else { return };
    if key().is_none() {
        log!(ERROR, "step: no key for the step's links: checkpoints of the step will fail");
        return;
    }
    let r = (|| -> Result<i32, String> {
        let fd = ckpt_step::sys::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK).map_err(|e| format!("socket: {}", checkpoint::strerror(e)))?;
        let fd = sys::own(sys::move_high(fd));
        let r = ckpt_step::sys::bind(fd, &ckpt_step::sys::sockaddr_in([0; 4], 0)).and_then(|()| ckpt_step::sys::listen(fd, 128));
        if let Err(e) = r {
            sys::close(fd);
            return Err(format!("cannot listen for the step's tasks: {}", checkpoint::strerror(e)));
        }
        let port = ckpt_step::sys::port_of(&ckpt_step::sys::sock_name(fd, false));
        let addr = Addr { epoch: EPOCH.load(Ordering::Relaxed), port, boot: ckpt_step::node::boot_id(), addrs: ckpt_step::node::local_addrs(), ended: None };
        if let Err(e) = step_files().and_then(|d| d.write_new(&files::addr_name(&s.base, false), &addr.encode())) {
            sys::close(fd);
            return Err(e);
        }
        Ok(fd)
    })();
    match r {
        Ok(fd) => {
            LISTEN.store(fd, Ordering::Release);
            log!(DEBUG, "step: coordinator of {} tasks listening", ntasks(s));
        }
        Err(e) => log!(ERROR, "step: {e}; checkpoints of the step will fail"),
    }
}

/// The fds the checkpoint thread waits on besides the control socket's: the listener and the
/// links.
pub fn poll_fds() -> Vec<i32> {
    let Some(s) = step() else { return Vec::new() };
    let mut v: Vec<i32> = live_links(s).map(|l| l.load(Ordering::Relaxed)).filter(|&f| f >= 0).collect();
    let l = LISTEN.load(Ordering::Relaxed);
    if l >= 0 {
        v.push(l);
    }
    v
}

/// How long the loop may sleep before a member tries to link up again (None: no limit).
pub fn poll_limit_ms() -> Option<u64> {
    let s = step()?;
    if s.id.rank == 0 || s.links[0].load(Ordering::Relaxed) >= 0 || crate::stepend::task_0_ended().is_some() {
        return None;
    }
    Some(RETRY_AT.load(Ordering::Relaxed).saturating_sub(ckpt_step::sys::now_ms()).max(1))
}

/// Serve the links (from the checkpoint thread's loop): rank 0 accepts new members and
/// answers requests; a member links up, and takes part in a checkpoint rank 0 begins.
pub fn serve() {
    let Some(s) = step() else { return };
    if s.id.rank == 0 {
        accept_members(s);
        for r in 1..ntasks(s) as usize {
            let fd = s.links[r].load(Ordering::Relaxed);
            while fd >= 0 && readable(fd) {
                match wire::recv(fd, deadline(5000)) {
                    Ok(Msg::Req { .. }) if crate::stepend::ending().is_some() => {
                        let why = crate::stepend::refusal(crate::stepend::ending().unwrap_or(0), COMPLETED.load(Ordering::Relaxed));
                        let _ = wire::send(fd, &Msg::Commit { why }, deadline(1000));
                    }
                    Ok(Msg::Req { stop, at_ns }) => {
                        // Served by a checkpoint that ended after it, committed or abandoned (one
                        // `scancel -s` reaches every task, each of which asks).
                        if at_ns > COMMITTED_AT.load(Ordering::Relaxed).max(ENDED_AT.load(Ordering::Relaxed)) {
                            log!(DEBUG, "step: checkpoint requested by task {r}");
                            coordinate(stop);
                        } else {
                            let _ = wire::send(fd, &Msg::Commit { why: "served".into() }, deadline(1000));
                        }
                    }
                    Ok(m) => log!(DEBUG, "step: ignoring {m:?} from task {r}"),
                    Err(e) => {
                        drop_link(s, r, &e);
                        break;
                    }
                }
            }
        }
        all_left(s);
        return;
    }
    let fd = s.links[0].load(Ordering::Relaxed);
    if fd < 0 {
        link_up(s);
        return;
    }
    while readable(fd) {
        match wire::recv(fd, deadline(5000)) {
            Ok(Msg::Begin { gen, stop }) => {
                take_part(s, gen, stop);
            }
            // Our request, refused by a task 0 whose program is exiting.
            Ok(Msg::Commit { why }) if !why.is_empty() && why != "served" => log!(ERROR, "{why}"),
            Ok(_) => {}
            Err(e) => {
                drop_link(s, 0, &e);
                return;
            }
        }
    }
}

fn readable(fd: i32) -> bool {
    ckpt_step::sys::poll1(fd, libc::POLLIN, Some(0)).is_ok_and(|r| r != 0)
}

fn deadline(ms: u64) -> u64 {
    ckpt_step::sys::now_ms() + ms
}

fn drop_link(s: &Step, r: usize, e: &LinkError) {
    let fd = s.links[r].swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        sys::close(fd);
    }
    if r == 0 {
        log!(INFO, "step: the link to the coordinator (task 0) is gone: {e}");
        RETRY_AT.store(ckpt_step::sys::now_ms() + 1000, Ordering::Relaxed);
    } else {
        log!(INFO, "step: task {r} has left ({e})");
    }
}

/// Rank 0: accept every waiting connection that proves it knows the key and names its rank.
fn accept_members(s: &Step) {
    let l = LISTEN.load(Ordering::Relaxed);
    if l < 0 {
        return;
    }
    while let Ok((fd, from)) = ckpt_step::sys::accept(l, 0) {
        let fd = sys::own(sys::move_high(fd));
        let who = ckpt_step::sys::show_addr(&from);
        let Some(k) = key() else {
            sys::close(fd);
            continue;
        };
        let hello = ckpt_step::auth::server(fd, &k, deadline(3000)).map_err(|e| e.to_string()).and_then(|()| wire::recv(fd, deadline(3000)).map_err(|e| e.to_string()));
        match hello {
            Ok(Msg::Hello { rank, ntasks: n }) if rank > 0 && rank < n && sized(s, rank, n) => {
                let old = s.links[rank as usize].swap(fd, Ordering::AcqRel);
                if old >= 0 {
                    sys::close(old);
                }
                crate::stepend::forget(rank);
                log!(DEBUG, "step: task {rank} linked from {who}");
            }
            // (A task of a joined step may end before any task of its srun said the step's size.)
            Ok(Msg::Ended { rank, status }) if rank > 0 && (rank < ntasks(s) || s.id.ntasks == 0 && (rank as usize) < s.links.len()) && status <= 255 => {
                let holders = match joined_tag(s) {
                    Some(tag) => crate::srunranks::running_procs(tag, s.id.job.as_bytes()).iter().filter(|h| h.offset <= rank && rank < h.size).map(|h| h.pid).collect(),
                    None => Vec::new(),
                };
                crate::stepend::record(rank, status as u8, holders);
                log!(INFO, "step: task {rank} ended (exit status {status}): the step's checkpoints go on without it");
                let _ = wire::send(fd, &Msg::Commit { why: String::new() }, deadline(3000));
                sys::close(fd);
            }
            Ok(m) => {
                log!(ERROR, "step: refused a connection from {who}: it is not a task of this step ({m:?})");
                sys::close(fd);
            }
            Err(e) => {
                log!(ERROR, "step: refused a connection from {who}: {e}");
                sys::close(fd);
            }
        }
    }
}

/// Whether task `rank`, which says the step has `n` tasks, belongs to it. A plain step: its
/// count. A joined step's rank 0: each srun's tasks say the ranks up to their srun's last (a
/// srun started alongside another has the ranks after the other's: `srunranks`); the step is
/// as big as the most a linked task says. A task whose rank is still held by a link that says
/// another size (a task of a srun that ended, its end not read yet) is refused, and links up
/// again a second later.
fn sized(s: &Step, rank: u32, n: u32) -> bool {
    if s.id.ntasks != 0 {
        return ntasks(s) == n;
    }
    let r = rank as usize;
    if n as usize > s.links.len() || s.links[r].load(Ordering::Acquire) >= 0 && s.claims[r].load(Ordering::Acquire) != n {
        return false;
    }
    s.claims[r].store(n, Ordering::Release);
    let was = s.size.fetch_max(n, Ordering::AcqRel);
    if was < n {
        log!(INFO, "step: the joined step has {n} tasks (this tree and the {} its srun(s) started)", n - 1);
    }
    true
}

/// A joined step's rank 0 whose tasks have all left (their srun ended) is no step again until
/// the tasks of the tree's next srun link up and say their number (a launcher run again in one
/// job script, with another count of daemons): its checkpoints in between are the tree's alone.
/// The tasks of one of two sruns side by side left: the step is as big as the others say.
/// Not during a step checkpoint (whose tasks are counted then).
fn all_left(s: &Step) {
    let n = ntasks(s);
    if s.id.ntasks != 0 || n == 0 || IN_STEP.load(Ordering::Acquire) != 0 {
        return;
    }
    let said = (1..n as usize).filter(|&r| s.links[r].load(Ordering::Acquire) >= 0).map(|r| s.claims[r].load(Ordering::Acquire)).max().unwrap_or(0);
    if said >= n || s.size.compare_exchange(n, said, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    if said == 0 {
        log!(INFO, "step: every task of the joined step has left: the tree is no step until its next srun's tasks link up");
    } else {
        log!(INFO, "step: the tasks after task {} have left: the joined step has {said} tasks", said - 1);
    }
}

/// Rank 0 of a joined step: the size its step must have to hold the tasks of every live srun
/// of the tree (0: none; not a joined step's rank 0).
fn sruns_size(s: &Step) -> u32 {
    let Some(tag) = joined_tag(s) else { return 0 };
    crate::srunranks::running(tag, s.id.job.as_bytes()).iter().map(|&(_, size)| size).max().unwrap_or(0)
}

/// Rank 0 of a joined step: the step's tag (its sruns' `CKPT_STEP_JOIN` name it).
fn joined_tag(s: &Step) -> Option<&str> {
    s.id.step.strip_prefix("join:").filter(|_| s.id.rank == 0 && s.id.ntasks == 0)
}

/// A member: connect to the coordinator published under our epoch, if it is there yet.
fn link_up(s: &Step) {
    LINKING.fetch_add(1, Ordering::SeqCst);
    if crate::stepend::ending().is_none() {
        link_up_now(s);
    }
    LINKING.fetch_sub(1, Ordering::SeqCst);
}

fn link_up_now(s: &Step) {
    let now = ckpt_step::sys::now_ms();
    if now < RETRY_AT.load(Ordering::Relaxed) || crate::stepend::task_0_ended().is_some() {
        return;
    }
    RETRY_AT.store(now + 200, Ordering::Relaxed);
    match dial(s, deadline(3000)) {
        Ok(fd) => match wire::send(fd, &Msg::Hello { rank: s.id.rank, ntasks: ntasks(s) }, deadline(3000)) {
            Ok(()) => {
                s.links[0].store(fd, Ordering::Release);
                log!(DEBUG, "step: task {} linked to the coordinator", s.id.rank);
            }
            Err(e) => dial_failed(fd, &e.to_string()),
        },
        Err(Dial::Auth(fd, e)) => dial_failed(fd, &e),
        Err(Dial::Read(e)) => {
            log!(ERROR, "step: {e}");
            RETRY_AT.store(now + 5000, Ordering::Relaxed);
        }
        Err(Dial::Connect(e) | Dial::Refused(e)) => log!(DEBUG, "step: cannot reach the coordinator yet: {e}"),
        Err(Dial::Ended(st)) => log!(INFO, "step: task 0 has ended (exit status {st}): checkpoints of the step are refused from now on"),
        Err(Dial::NotYet) => {}
    }
}

fn dial_failed(fd: i32, e: &str) {
    log!(ERROR, "step: the coordinator did not authenticate: {e}");
    sys::close(fd);
    RETRY_AT.store(ckpt_step::sys::now_ms() + 2000, Ordering::Relaxed);
}

/// Why a member could not reach its coordinator.
enum Dial {
    /// No address under our epoch yet, or no key.
    NotYet,
    Read(String),
    Connect(String),
    /// Every address of the coordinator refused the connection: its listener, open for its
    /// whole life, is gone (it died without saying so).
    Refused(String),
    /// The coordinator's program has ended with this status (`coordinator_ends`).
    Ended(u8),
    /// Connected (the fd, to close), but the key was not proved.
    Auth(i32, String),
}

/// A member: a connection to the coordinator published under our epoch, both sides proved to
/// know the key (by `end`).
fn dial(s: &Step, end: u64) -> Result<i32, Dial> {
    let addr = published(s)?;
    let k = key().ok_or(Dial::NotYet)?;
    let fd = connect_to(&addr).map_err(|(e, refused)| if refused { Dial::Refused(e) } else { Dial::Connect(e) })?;
    match ckpt_step::auth::client(fd, &k, end) {
        Ok(()) => Ok(fd),
        Err(e) => Err(Dial::Auth(fd, format!("port {}: {e}", addr.port))),
    }
}

/// A member: the coordinator's address published under our epoch (Ended: its program has ended).
fn published(s: &Step) -> Result<Addr, Dial> {
    let d = step_files().map_err(Dial::Read)?;
    let addr = d.read_own(&files::addr_name(&s.base, false), 4096).map_err(Dial::Read)?.and_then(|b| Addr::decode(&b));
    let addr = addr.filter(|a| a.epoch == EPOCH.load(Ordering::Relaxed)).ok_or(Dial::NotYet)?;
    match addr.ended {
        Some(st) => {
            crate::stepend::note_task_0_ended(st);
            Err(Dial::Ended(st))
        }
        None => Ok(addr),
    }
}

/// A member: the status task 0 has ended with, if it has (its address says so).
fn task_0_ended(s: &Step) -> Option<u8> {
    crate::stepend::task_0_ended().or_else(|| match published(s) {
        Err(Dial::Ended(st)) => Some(st),
        _ => None,
    })
}

/// Rank 0, its program exiting with `status` (`stepend`, on the program's thread): no
/// checkpoint of the step begins from now on, one being coordinated ends first (committed or
/// abandoned everywhere), then the published address says that task 0 has ended, so that the
/// other tasks refuse their checkpoints at once in one line, and tell nobody their own end.
pub(crate) fn coordinator_ends(status: u8) {
    let Some(s) = step().filter(|s| s.id.rank == 0) else { return };
    crate::stepend::note_ending(status);
    loop {
        // (Interrupted when a checkpoint stops this thread: wait again.)
        match COORDINATING.load(Ordering::SeqCst) {
            0 => break,
            v => sys::futex_wait(&COORDINATING, v, Some(1000)),
        }
    }
    if LISTEN.load(Ordering::Relaxed) < 0 {
        return;
    }
    let name = files::addr_name(&s.base, false);
    let told = step_files().and_then(|d| {
        let a = d.read_own(&name, 4096)?.and_then(|b| Addr::decode(&b)).filter(|a| a.epoch == EPOCH.load(Ordering::Relaxed));
        let a = a.ok_or_else(|| format!("{} is not this run's", d.show(&name)))?;
        d.write_new(&name, &Addr { ended: Some(status), ..a }.encode())
    });
    match told {
        Ok(()) => log!(INFO, "step: task 0 ends (exit status {status}): the other tasks' checkpoints of the step are refused from now on"),
        Err(e) => log!(ERROR, "step: the other tasks were not told that task 0 ended: {e}; their checkpoints will fail as not linked"),
    }
}

/// A member whose program exits normally (`stepend`'s exit handler, on the program's thread):
/// tell rank 0 its status on a connection of its own (the link is the checkpoint thread's,
/// which may be taking part in a checkpoint meanwhile), and wait until rank 0 has recorded it.
pub(crate) fn report_end(status: u8) {
    let Some(s) = step().filter(|s| s.id.rank != 0) else { return };
    // (A link being made now is accepted before the report: its dial is bounded, ~3 s.)
    crate::stepend::note_ending(status);
    while LINKING.load(Ordering::SeqCst) != 0 {
        let ts = sys::timespec_ms(1);
        let _ = sys::syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
    }
    // Rank 0 answers between its checkpoints: up to one checkpoint's time; a rank 0 that
    // cannot be reached at all is given the time a new task has to link up.
    let t0 = ckpt_step::sys::now_ms();
    let end = deadline(member_wait_ms());
    let reach = deadline(LINK_WAIT_MS);
    let why = loop {
        let why = match dial(s, end) {
            Ok(fd) => {
                let r = wire::send(fd, &Msg::Ended { rank: s.id.rank, status: status.into() }, end).and_then(|()| wire::recv(fd, end));
                sys::close(fd);
                match r {
                    Ok(Msg::Commit { why }) if why.is_empty() => {
                        log!(INFO, "step: task 0 knows this task ended (exit status {status}; told in {} ms)", ckpt_step::sys::now_ms() - t0);
                        return;
                    }
                    Ok(m) => break format!("unexpected answer {m:?}"),
                    Err(e) => break e.to_string(),
                }
            }
            Err(Dial::Auth(fd, e)) => {
                sys::close(fd);
                break e;
            }
            Err(Dial::Ended(st)) => {
                log!(DEBUG, "step: task 0 has ended (exit status {st}) before this task: no one to tell");
                return;
            }
            Err(Dial::Refused(e)) => {
                log!(ERROR, "step: task 0 is gone ({e}): it was not told that task {} ended (exit status {status})", s.id.rank);
                return;
            }
            Err(Dial::Read(e) | Dial::Connect(e)) => e,
            Err(Dial::NotYet) => "task 0's address is not there".to_string(),
        };
        if ckpt_step::sys::now_ms() >= reach {
            break why;
        }
        let ts = sys::timespec_ms(200);
        let _ = sys::syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
    };
    log!(ERROR, "step: task 0 was not told that task {} ended (exit status {status}): {why}; the step's next checkpoints will be abandoned without it", s.id.rank);
}

/// A member asked for a checkpoint before it linked up (right after the step started): try to
/// link up until `end`; the link (-1: none).
fn link_now(s: &Step, end: u64) -> i32 {
    loop {
        let fd = s.links[0].load(Ordering::Relaxed);
        let now = ckpt_step::sys::now_ms();
        if fd >= 0 || now >= end {
            return fd;
        }
        link_up(s);
        if s.links[0].load(Ordering::Relaxed) < 0 {
            let wait = RETRY_AT.load(Ordering::Relaxed).max(now + 10).min(end).saturating_sub(now);
            let ts = sys::timespec_ms(wait);
            let _ = sys::syscall!(libc::SYS_nanosleep, &ts as *const libc::timespec, 0);
        }
    }
}

/// Connect to the address of a coordinator (loopback on the same machine). Err: why, and
/// whether every address refused the connection.
fn connect_to(a: &Addr) -> Result<i32, (String, bool)> {
    let mut last = String::from("no address");
    let mut refused = false;
    for (i, to) in ckpt_step::node::candidates(a).into_iter().enumerate() {
        let fd = ckpt_step::sys::socket(libc::AF_INET, libc::SOCK_STREAM).map_err(|e| (checkpoint::strerror(e), false))?;
        let fd = sys::own(sys::move_high(fd));
        match ckpt_step::sys::connect(fd, &to, 3000) {
            Ok(()) => return Ok(fd),
            Err(e) => {
                last = format!("{}: {}", ckpt_step::sys::show_addr(&to), checkpoint::strerror(e));
                refused = e == libc::ECONNREFUSED && (i == 0 || refused);
                sys::close(fd);
            }
        }
    }
    Err((last, refused))
}

/// A checkpoint asked of this task (signal, timer, ckpt-ctl): of the whole step. Rank 0
/// begins it; a member asks rank 0 and takes part when it begins (`wait`: until it has ended,
/// for ckpt-ctl's `checkpoint --wait` and `stop`). Returns this task's outcome when it took one.
pub fn request(stop: bool, wait: bool) -> Option<Outcome> {
    let s = step()?;
    let at_ns = match TRIGGERED_AT.swap(0, Ordering::AcqRel) {
        0 => ckpt_step::sys::realtime_ns(),
        t => t,
    };
    if let Some(st) = if s.id.rank == 0 { crate::stepend::ending() } else { task_0_ended(s) } {
        log!(ERROR, "{}", crate::stepend::refusal(st, COMPLETED.load(Ordering::Relaxed)));
        return None;
    }
    if s.id.rank == 0 {
        if at_ns <= COMMITTED_AT.load(Ordering::Relaxed) && !wait {
            log!(DEBUG, "step: request already served by checkpoint {}", COMPLETED.load(Ordering::Relaxed));
            return None;
        }
        return coordinate(stop);
    }
    let fd = link_now(s, deadline(timeout_ms().min(LINK_WAIT_MS)));
    if fd < 0 {
        log!(ERROR, "checkpoint failed, the program continues: this task is not linked to task 0 of its step (not started yet, or ended)");
        return None;
    }
    if let Err(e) = wire::send(fd, &Msg::Req { stop, at_ns }, deadline(5000)) {
        drop_link(s, 0, &e);
        log!(ERROR, "checkpoint failed, the program continues: cannot reach task 0 of the step: {e}");
        return None;
    }
    if !wait {
        return None;
    }
    let end = deadline(timeout_ms());
    loop {
        match wire::recv(fd, end) {
            Ok(Msg::Begin { gen, stop }) => return take_part(s, gen, stop),
            Ok(Msg::Commit { why }) => {
                if !why.is_empty() && why != "served" {
                    log!(ERROR, "{why}");
                }
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                drop_link(s, 0, &e);
                log!(ERROR, "checkpoint failed, the program continues: task 0 of the step did not begin it: {e}");
                return None;
            }
        }
    }
}

/// A stop requested of a task while a checkpoint that does not stop was being taken (rank 0
/// reads requests then): the step stops with another checkpoint once this one has ended.
/// (A plain request made meanwhile is served by the checkpoint being taken: one `scancel -s`
/// reaches the tasks one after the other, and must make one checkpoint.)
static DEFERRED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn defer(stop: bool, _at_ns: u64) {
    if stop {
        DEFERRED.store(2, Ordering::Relaxed);
    }
}

/// Rank 0: 1 while it coordinates checkpoints of the step (a futex word: its program's exit
/// waits for them to end, `coordinator_ends`).
static COORDINATING: AtomicU32 = AtomicU32::new(0);

/// Rank 0: run checkpoint COMPLETED+1 of the step, then one for the requests made meanwhile;
/// none once its program is exiting (`coordinator_ends`).
fn coordinate(stop: bool) -> Option<Outcome> {
    COORDINATING.store(1, Ordering::SeqCst);
    let out = match crate::stepend::ending() {
        Some(st) => {
            log!(ERROR, "{}", crate::stepend::refusal(st, COMPLETED.load(Ordering::Relaxed)));
            None
        }
        None => coordinate_all(stop),
    };
    COORDINATING.store(0, Ordering::SeqCst);
    sys::futex_wake(&COORDINATING);
    out
}

fn coordinate_all(stop: bool) -> Option<Outcome> {
    let out = coordinate_one(stop);
    match DEFERRED.swap(0, Ordering::Relaxed) {
        0 => out,
        bits => {
            log!(DEBUG, "step: serving the requests made during the last checkpoint");
            coordinate_all(bits & 2 != 0).or(out)
        }
    }
}

fn coordinate_one(stop: bool) -> Option<Outcome> {
    let s = step()?;
    let gen = COMPLETED.load(Ordering::Relaxed) + 1;
    let t0 = ckpt_step::sys::now_ms();
    // (A task that ended has closed its link: not one to begin with.)
    drop_closed(s);
    let missing = wait_linked(s, deadline(timeout_ms().min(LINK_WAIT_MS)));
    if !missing.is_empty() {
        log!(ERROR, "checkpoint {gen} of the step abandoned: task(s) {missing:?} are not linked (not started yet, or ended); the program continues");
        if stop {
            crate::triggers::exit_after_checkpoint(false);
        }
        return None;
    }
    let gone = gaps(s);
    if !gone.is_empty() {
        log!(INFO, "step: checkpoint {gen} without task(s) {gone:?}, which have ended: they are recorded as ended");
    }
    for r in (1..ntasks(s) as usize).filter(|&r| !ended(s, r)) {
        let fd = s.links[r].load(Ordering::Relaxed);
        if let Err(e) = wire::send(fd, &Msg::Begin { gen, stop }, deadline(5000)) {
            drop_link(s, r, &e);
        }
    }
    let out = run_local(s, gen, stop);
    if out.is_none() && PAIRED.load(Ordering::Acquire) != gen {
        // Our part failed before we paired the tasks' connections (our tree's coordinator
        // refused the checkpoint): the others wait for their pairs.
        let why = "task 0: its checkpoint failed before the tasks' connections were paired (its stderr says why)";
        for l in live_links(s).skip(1) {
            let _ = wire::send(l.load(Ordering::Relaxed), &Msg::Pairs { why: why.into(), pairs: Vec::new() }, deadline(5000));
        }
    }
    // Every image durable: the manifest, then the commit.
    let mut hashes = vec![Some(0u64); ntasks(s) as usize];
    let mut why = String::new();
    let mut longest = 0u64;
    match &out {
        Some(o) => {
            hashes[0] = Some(o.hash);
            longest = o.paused_ms;
        }
        None => {
            why = take_failed();
            if why.is_empty() {
                why = "task 0's checkpoint failed (its stderr says why)".into();
            }
        }
    }
    let end = deadline(timeout_ms());
    for (r, slot) in hashes.iter_mut().enumerate().skip(1) {
        if ended(s, r) {
            *slot = None;
            continue;
        }
        let fd = s.links[r].load(Ordering::Relaxed);
        if fd < 0 {
            why = format!("task {r} has left (its srun ended during the checkpoint?)");
            continue;
        }
        loop {
            match wire::recv(fd, end) {
                Ok(Msg::Done { why: w, hash, paused_ms }) => {
                    if !w.is_empty() && why.is_empty() {
                        why = format!("task {r}: {w}");
                    }
                    *slot = Some(hash);
                    longest = longest.max(paused_ms);
                    break;
                }
                Ok(Msg::Req { stop, at_ns }) => defer(stop, at_ns),
                Ok(m) => log!(DEBUG, "step: ignoring {m:?} from task {r}"),
                Err(e) => {
                    if why.is_empty() {
                        why = format!("task {r} did not report its image: {e}");
                    }
                    drop_link(s, r, &e);
                    break;
                }
            }
        }
    }
    if why.is_empty() {
        let exits = (1..hashes.len()).filter(|&r| hashes[r].is_none()).filter_map(|r| Some((r as u32, crate::stepend::status(r)?))).collect();
        let m = Manifest { generation: gen, hashes: hashes.clone(), exits };
        if let Err(e) = step_files().and_then(|d| d.write_new(&files::manifest_name(&s.base), &m.encode())) {
            why = format!("cannot write the manifest: {e}");
        }
    }
    for r in 1..ntasks(s) as usize {
        let fd = s.links[r].load(Ordering::Relaxed);
        if fd >= 0 {
            if let Err(e) = wire::send(fd, &Msg::Commit { why: why.clone() }, deadline(5000)) {
                drop_link(s, r, &e);
            }
        }
    }
    let ok = why.is_empty();
    if ok {
        COMPLETED.store(gen, Ordering::Relaxed);
        COMMITTED_AT.store(ckpt_step::sys::realtime_ns(), Ordering::Relaxed);
        generations::protect(hashes[0].unwrap_or(0));
        let shown = String::from_utf8_lossy(&step_dir()).into_owned();
        let took = hashes.iter().filter(|h| h.is_some()).count();
        let ended: Vec<String> = (1..hashes.len()).filter(|&r| hashes[r].is_none()).map(|r| crate::stepend::status(r).map_or(r.to_string(), |st| format!("{r} (exit status {st})"))).collect();
        let gone = if took < hashes.len() { format!(", task(s) [{}] recorded as ended", ended.join(", ")) } else { String::new() };
        log!(ALWAYS, "step checkpoint {gen}: {took} tasks committed in {shown}/{}{gone} ({} ms, longest pause {longest} ms)", files::manifest_name(&s.base), ckpt_step::sys::now_ms() - t0);
    } else {
        log!(ERROR, "step checkpoint {gen} abandoned on every task: {why}; the previous complete checkpoint of the step stays");
    }
    ENDED_AT.store(ckpt_step::sys::realtime_ns(), Ordering::Relaxed);
    for e in &s.ended {
        e.store(false, Ordering::Release);
    }
    if stop {
        let t = deadline(10_000);
        for r in 1..ntasks(s) as usize {
            let fd = s.links[r].load(Ordering::Relaxed);
            if fd >= 0 {
                until_closed(fd, t);
            }
        }
        crate::triggers::exit_after_checkpoint(ok);
    }
    out.filter(|_| ok)
}

/// How long rank 0 waits for tasks that have not linked up yet when a checkpoint is asked (a
/// request that comes right after the step started: the others link up within a retry).
const LINK_WAIT_MS: u64 = 5000;

/// Rank 0: accept members until every task is linked or `end`; the ranks still missing. A
/// rank that said it ended (`stepend`) is not missing. A joined step's rank 0 waits for the
/// ranks of the tree's live sruns only: a rank below the step's size that no live srun holds is
/// a task of a srun that has ended (`gaps`).
fn wait_linked(s: &Step, end: u64) -> Vec<usize> {
    loop {
        accept_members(s);
        let (want, held): (usize, Box<dyn Fn(usize) -> bool>) = match joined_tag(s) {
            Some(tag) => {
                let live = crate::srunranks::running_procs(tag, s.id.job.as_bytes());
                let holders = |r: u32| live.iter().filter(|h| h.offset <= r && r < h.size).map(|h| h.pid).collect();
                crate::stepend::prune(holders);
                let most = live.iter().map(|h| h.size).max().unwrap_or(0);
                (ntasks(s).max(most) as usize, Box::new(move |r: usize| live.iter().any(|h| h.offset as usize <= r && r < h.size as usize)))
            }
            None => (ntasks(s) as usize, Box::new(|_| true)),
        };
        let missing: Vec<usize> = (1..want.min(s.links.len())).filter(|&r| s.links[r].load(Ordering::Relaxed) < 0 && held(r) && crate::stepend::status(r).is_none()).collect();
        let now = ckpt_step::sys::now_ms();
        let l = LISTEN.load(Ordering::Relaxed);
        if missing.is_empty() || now >= end || l < 0 {
            return missing;
        }
        let _ = ckpt_step::sys::poll1(l, libc::POLLIN, Some((end - now).min(100)));
    }
}

/// Before rank 0 exits: read what a member sent (its requests) until it closes its end, so
/// that our close is an orderly one: closing with unread bytes would reset the connection and
/// the member could lose the `Commit` still on its way.
fn until_closed(fd: i32, end: u64) {
    let _ = sys::syscall!(libc::SYS_shutdown, fd, libc::SHUT_WR);
    let mut buf = [0u8; 4096];
    loop {
        match ckpt_step::sys::recv(fd, &mut buf, libc::MSG_DONTWAIT) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(libc::EAGAIN) => {
                let now = ckpt_step::sys::now_ms();
                if now >= end || ckpt_step::sys::poll1(fd, libc::POLLIN, Some(end - now)).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A member: take part in checkpoint `gen` that rank 0 began.
fn take_part(s: &Step, gen: u64, stop: bool) -> Option<Outcome> {
    let out = run_local(s, gen, stop);
    let fd = s.links[0].load(Ordering::Relaxed);
    let done = match &out {
        Some(o) => Msg::Done { why: String::new(), hash: o.hash, paused_ms: o.paused_ms },
        None => Msg::Done { why: "its checkpoint failed (its stderr says why)".into(), hash: 0, paused_ms: 0 },
    };
    let mut ok = false;
    let sent = if fd < 0 { Err(LinkError::Closed) } else { wire::send(fd, &done, deadline(5000)) };
    if let Err(e) = &sent {
        log!(ERROR, "step checkpoint {gen}: cannot report to task 0: {e}");
    }
    if sent.is_ok() {
        let end = deadline(member_wait_ms());
        loop {
            match wire::recv(fd, end) {
                Ok(Msg::Commit { why }) if why == "served" => continue,
                Ok(Msg::Commit { why }) => {
                    ok = why.is_empty();
                    if !ok {
                        log!(ERROR, "step checkpoint {gen} abandoned: {why}; the previous complete checkpoint of the step stays");
                    }
                    break;
                }
                Ok(m) => {
                    log!(DEBUG, "step: waiting for the commit, got {m:?}");
                    continue;
                }
                Err(e) => {
                    log!(ERROR, "step checkpoint {gen} abandoned: task 0 did not confirm it ({e})");
                    drop_link(s, 0, &e);
                    break;
                }
            }
        }
    }
    if ok {
        COMPLETED.store(gen, Ordering::Relaxed);
        COMMITTED_AT.store(ckpt_step::sys::realtime_ns(), Ordering::Relaxed);
        if let Some(o) = &out {
            generations::protect(o.hash);
        }
    }
    if stop {
        crate::triggers::exit_after_checkpoint(ok);
    }
    out.filter(|_| ok)
}

/// This task's part: its image, numbered `gen`, taken with the step's hooks in force.
fn run_local(s: &Step, gen: u64, stop: bool) -> Option<Outcome> {
    // The task's program is the root of a process tree: the tree's checkpoint is the task's
    // (without its coordinator, a tree cannot take part).
    let tree = crate::tree::is_member();
    if let Some(why) = s.unsupported.clone().or_else(infiniband).or_else(|| if tree { None } else { process_tree() }) {
        log!(ERROR, "checkpoint failed, the program continues: {why}");
        if s.id.rank != 0 {
            // Rank 0 waits for this task's Conns.
            let _ = wire::send(s.links[0].load(Ordering::Relaxed), &Msg::Conns { why: format!("task {}: {why}", s.id.rank), conns: Vec::new() }, deadline(5000));
        } else {
            set_failed(&format!("task 0: {why}"));
            // The members wait for their Pairs.
            PAIRED.store(gen, Ordering::Release);
            for l in live_links(s).skip(1) {
                let _ = wire::send(l.load(Ordering::Relaxed), &Msg::Pairs { why: format!("task 0: {why}"), pairs: Vec::new() }, deadline(5000));
            }
        }
        return None;
    }
    checkpoint::GENERATION.store(gen - 1, Ordering::Release);
    STOPPING.store(stop, Ordering::Release);
    IN_STEP.store(gen, Ordering::Release);
    let out = if tree { crate::tree::take_for_step(stop) } else { checkpoint::take() };
    IN_STEP.store(0, Ordering::Release);
    if let Ok(mut c) = CURRENT.lock() {
        // Scratch memory: already released with the checkpoint's arena.
        std::mem::forget(c.take());
    }
    out
}

/// Why the program cannot be checkpointed with its step because it uses InfiniBand (verbs, UCX
/// over IB: an open /dev/infiniband device, whose state is the adapter's), if it does.
fn infiniband() -> Option<String> {
    let names = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])).ok()?;
    names.iter().find_map(|n| {
        let link = sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", n])).ok()?;
        link.starts_with(b"/dev/infiniband/").then(|| {
            format!("the program uses InfiniBand ({} is open): RDMA state lives in the adapter and cannot be checkpointed; run it over TCP (e.g. OMPI_MCA_btl=tcp,self, UCX_TLS=tcp)", String::from_utf8_lossy(&link))
        })
    })
}

/// Why this task cannot take part because its program is a process tree (other processes in
/// its namespace, zombies too, as its init counts them) without a coordinator of the tree to
/// take the tree's checkpoint, if so. Without a namespace children are not managed (their loss
/// is in the image's left-out list, as for any program).
fn process_tree() -> Option<String> {
    if !crate::ids::in_namespace() {
        return None;
    }
    let others: Vec<String> = crate::treetcp::others().into_iter().map(|(pid, comm)| format!("{pid} ({comm})")).collect();
    (!others.is_empty()).then(|| {
        format!("the task's program is a process tree (also {}) whose coordinator is gone: its processes cannot be checkpointed together", others.join(", "))
    })
}

/// Whether a step checkpoint is being taken (a failed snapshot is not retried then: the other
/// tasks have run on).
pub fn in_checkpoint() -> bool {
    IN_STEP.load(Ordering::Acquire) != 0
}

/// With this task's threads stopped: report its TCP connections, learn which join two tasks,
/// drain them. Err: the checkpoint of the step is abandoned (the caller resumes the threads).
pub fn stopped() -> Result<(), String> {
    let gen = IN_STEP.load(Ordering::Acquire);
    let Some(s) = step().filter(|_| gen != 0) else { return holder_drain() };
    let k = key().ok_or("no key for the step's links")?;
    let mine = tcp_conns();
    // The task's program is a tree's root: the connections the tree's other processes hold
    // (each holder of each, so that one held twice is found).
    let mut reported: Vec<Conn> = mine.iter().map(|(_, c)| c.clone()).collect();
    if crate::tree::is_member() {
        reported.extend(crate::treetcp::held_by_others().into_iter().map(|(pid, ino, local, peer)| Conn { ino, local, peer, holder: pid as u32 }));
    }
    // Rank 0 gives up on a task after the bound; the others wait a little longer for its word.
    let end = deadline(if s.id.rank == 0 { timeout_ms() } else { member_wait_ms() });
    let pairs: Vec<Pair> = if s.id.rank == 0 {
        let mut all: Vec<Vec<Conn>> = vec![Vec::new(); ntasks(s) as usize];
        all[0] = reported.clone();
        let mut why = String::new();
        // The tree is stopped: a srun of it whose tasks are not all in the step (exec'd since
        // the checkpoint began) would be run again by a restart with no images of them.
        let need = sruns_size(s);
        if need > ntasks(s) {
            why = format!("task 0: a srun of its tree runs tasks up to task {} of the joined step, which has {} linked: they had not linked up when the checkpoint began", need - 1, ntasks(s));
        }
        for (r, slot) in all.iter_mut().enumerate().skip(1).filter(|&(r, _)| !ended(s, r)) {
            let fd = s.links[r].load(Ordering::Relaxed);
            loop {
                match wire::recv(fd, end) {
                    Ok(Msg::Conns { why: w, conns }) => {
                        if !w.is_empty() && why.is_empty() {
                            why = format!("task {r}: {w}");
                        }
                        *slot = conns;
                        break;
                    }
                    Ok(Msg::Req { stop, at_ns }) => defer(stop, at_ns),
                    Ok(_) => continue,
                    Err(e) => {
                        why = format!("task {r} did not stop in time: {e}");
                        break;
                    }
                }
            }
        }
        let table = pair_up(&all, gen);
        PAIRED.store(gen, Ordering::Release);
        for (link, pairs) in s.links.iter().zip(&table).skip(1) {
            let _ = wire::send(link.load(Ordering::Relaxed), &Msg::Pairs { why: why.clone(), pairs: pairs.clone() }, end);
        }
        if !why.is_empty() {
            set_failed(&why);
            return Err(why);
        }
        table[0].clone()
    } else {
        let fd = s.links[0].load(Ordering::Relaxed);
        wire::send(fd, &Msg::Conns { why: String::new(), conns: reported.clone() }, end).map_err(|e| format!("cannot reach task 0: {e}"))?;
        loop {
            match wire::recv(fd, end) {
                Ok(Msg::Pairs { why, pairs }) => {
                    if !why.is_empty() {
                        return Err(why);
                    }
                    break pairs;
                }
                Ok(_) => continue,
                Err(e) => return Err(format!("task 0 did not answer: {e}")),
            }
        }
    };
    let fd_of = |ino: u64| mine.iter().find(|(_, c)| c.ino == ino).map(|(fd, _)| *fd);
    let me = s.id.rank;
    if crate::tree::part_dir().is_some() {
        // Our tree's other processes capture once they know which of theirs to drain or share.
        hand_out(&k, gen, me, &pairs, &reported, end)?;
    }
    let with_fd: Vec<(i32, Pair)> = pairs.into_iter().filter_map(|p| Some((fd_of(p.ino)?, p))).collect();
    let drains: Vec<jobconn::Drain> = with_fd
        .iter()
        .map(|(fd, p)| {
            let (send_marker, wait_marker) = drain_markers(&k, gen, me, p);
            jobconn::Drain { fd: *fd, send_marker, wait_marker }
        })
        .collect();
    let t = ckpt_step::sys::now_ms();
    let drained = jobconn::drain(&drains, end).map_err(|e| format!("draining the connections between tasks: {e}"))?;
    log!(DEBUG, "step: {} connection(s) between tasks drained ({} bytes) in {} ms", drained.len(), drained.iter().map(|d| d.data.len()).sum::<usize>(), ckpt_step::sys::now_ms() - t);
    if let Ok(mut c) = CURRENT.lock() {
        *c = Some(Current { gen, pairs: with_fd, drained, shared: Vec::new(), stop: STOPPING.load(Ordering::Acquire) });
    }
    Ok(())
}

fn drain_markers(k: &[u8], gen: u64, me: u32, p: &Pair) -> ([u8; 16], [u8; 16]) {
    (ckpt_step::marker(k, gen, p.id, me), ckpt_step::marker(k, gen, p.id, p.peer_rank))
}

/// The task's program in its tree's checkpoint: name in the set being written, for each of our
/// task's connections to other tasks (`pairs`) that other processes of the tree hold (as
/// `reported` says: holder 0 is the program), the one that drains it (the program when it
/// holds it, which drains its own itself; else the lowest pid) and the others that share it,
/// then let the tree's coordinator have them capture.
fn hand_out(k: &[u8], gen: u64, me: u32, pairs: &[Pair], reported: &[Conn], end: u64) -> Result<(), String> {
    let mut h = Holders { gen, stop: STOPPING.load(Ordering::Acquire), deadline_ms: end, conns: Vec::new() };
    for p in pairs {
        let mut holders: Vec<u32> = reported.iter().filter(|c| c.ino == p.ino).map(|c| c.holder).collect();
        holders.sort_unstable();
        holders.dedup();
        let (send_marker, wait_marker) = drain_markers(k, gen, me, p);
        for (i, &pid) in holders.iter().enumerate().filter(|&(_, &pid)| pid != 0) {
            h.conns.push(Held { pid: pid as i32, ino: p.ino, id: p.id, peer_rank: p.peer_rank, send_marker, wait_marker, share: i > 0 });
        }
    }
    let dir = crate::tree::part_dir().ok_or("the tree's set is gone")?;
    if !h.conns.is_empty() {
        files::Dir::borrow(dir, "(the process tree's set)").and_then(|d| d.write_plain(ckpt_ns::treemsg::STEP_PAIRS, &h.encode()))?;
        log!(DEBUG, "step: {} connection(s) between tasks held by other processes of the tree", h.conns.len());
    }
    if !crate::tree::paired() {
        return Err("the coordinator of the process tree is gone".into());
    }
    Ok(())
}

/// A process of a step task's tree other than the program, stopped in the tree's checkpoint:
/// drain the connections to other tasks the program named for us (`hand_out`), if any, and
/// note those another process of the tree drains for us (shared: stopped in every holder, the
/// connection is drained once).
fn holder_drain() -> Result<(), String> {
    let Some(dir) = crate::tree::part_dir() else { return Ok(()) };
    let d = files::Dir::borrow(dir, "(the process tree's set)")?;
    let Some(b) = d.read_own(ckpt_ns::treemsg::STEP_PAIRS, 1 << 20)? else { return Ok(()) };
    let h = Holders::decode(&b).ok_or("the step's list of connections to drain is unreadable")?;
    let me = sys::getpid();
    if h.of(me).next().is_none() {
        return Ok(());
    }
    let mine = tcp_conns();
    let mut pairs = Vec::new();
    let mut shared = Vec::new();
    let mut drains = Vec::new();
    for c in h.of(me) {
        let fd = mine.iter().find(|(_, x)| x.ino == c.ino).map(|(fd, _)| *fd).ok_or_else(|| format!("the connection socket:[{}] to task {} is no longer ours", c.ino, c.peer_rank))?;
        let pair = (fd, Pair { ino: c.ino, id: c.id, peer_rank: c.peer_rank });
        if c.share {
            shared.push(pair);
            continue;
        }
        pairs.push(pair);
        drains.push(jobconn::Drain { fd, send_marker: c.send_marker, wait_marker: c.wait_marker });
    }
    let drained = jobconn::drain(&drains, h.deadline_ms).map_err(|e| format!("draining the connections between tasks: {e}"))?;
    log!(DEBUG, "step: {} connection(s) between tasks drained ({} bytes), {} shared, for checkpoint {}", drained.len(), drained.iter().map(|d| d.data.len()).sum::<usize>(), shared.len(), h.gen);
    if let Ok(mut c) = CURRENT.lock() {
        *c = Some(Current { gen: h.gen, pairs, drained, shared, stop: h.stop });
    }
    Ok(())
}

/// Our part of a tree's checkpoint has ended: what it knew of the step's connections was
/// scratch memory, released with it.
pub fn part_done() {
    if let Ok(mut c) = CURRENT.lock() {
        std::mem::forget(c.take());
    }
}

/// rank -> its connections that join two tasks (local address of one = peer address of the
/// other), each with an id the same on both ends.
fn pair_up(all: &[Vec<Conn>], gen: u64) -> Vec<Vec<Pair>> {
    let mut out: Vec<Vec<Pair>> = vec![Vec::new(); all.len()];
    let mut next = 0u64;
    for (a, ca) in all.iter().enumerate() {
        for (i, x) in ca.iter().enumerate() {
            // (Reported once per process that holds it: paired once.)
            if ca[..i].iter().any(|y| y.ino == x.ino) {
                continue;
            }
            for (b, cb) in all.iter().enumerate().skip(a + 1) {
                if let Some(y) = cb.iter().find(|y| y.local == x.peer && y.peer == x.local && !x.local.is_empty()) {
                    next += 1;
                    let id = gen << 32 | next;
                    out[a].push(Pair { ino: x.ino, id, peer_rank: b as u32 });
                    out[b].push(Pair { ino: y.ino, id, peer_rank: a as u32 });
                }
            }
        }
    }
    out
}

/// The program's connected TCP sockets: (fd, ino, addresses).
fn tcp_conns() -> Vec<(i32, Conn)> {
    let mut out: Vec<(i32, Conn)> = Vec::new();
    let Ok(names) = sys::list_dir(&sys::cpath(&[b"/proc/thread-self/fd"])) else { return out };
    for n in names {
        let Some(fd) = std::str::from_utf8(&n).ok().and_then(|x| x.parse::<i32>().ok()) else { continue };
        if crate::control::is_runtime_fd(fd) {
            continue;
        }
        let link = sys::readlink(&sys::cpath(&[b"/proc/thread-self/fd/", &n])).unwrap_or_default();
        let Some(ino) = link.strip_prefix(b"socket:[").and_then(|r| r.strip_suffix(b"]")).and_then(|r| std::str::from_utf8(r).ok()?.parse::<u64>().ok()) else { continue };
        if out.iter().any(|(_, c)| c.ino == ino) {
            continue; // a dup
        }
        let fam = ckpt_step::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(0);
        let ty = ckpt_step::sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).unwrap_or(0);
        if !(fam == libc::AF_INET || fam == libc::AF_INET6) || ty != libc::SOCK_STREAM {
            continue;
        }
        let peer = ckpt_step::sys::sock_name(fd, true);
        if peer.is_empty() {
            continue;
        }
        out.push((fd, Conn { ino, local: ckpt_step::sys::sock_name(fd, false), peer, holder: 0 }));
    }
    out
}

/// Put into the captured index what the step knows: each drained connection's id and unread
/// bytes, each shared one's id (its bytes are in the drainer's image), and the task's place in
/// the step.
pub fn annotate(index: &mut Index) {
    let Ok(c) = CURRENT.lock() else { return };
    let Some(cur) = c.as_ref() else { return };
    // Only the task's program carries the step: its restart meets the other tasks' for the
    // whole tree (another process of the tree has its connections only).
    if let Some(s) = step() {
        index.step = Some(StepInfo { rank: s.id.rank, ntasks: ntasks(s), generation: cur.gen, base: s.base.clone(), node_ips: ckpt_step::addrmap::node_ips() });
    }
    for f in index.fds.iter_mut() {
        let FdKind::Socket(sock) = &mut f.kind else { continue };
        let (p, data) = match cur.pairs.iter().position(|(_, p)| p.ino == sock.ino) {
            Some(i) => (&cur.pairs[i].1, cur.drained[i].data.as_slice()),
            None => match cur.shared.iter().find(|(_, p)| p.ino == sock.ino) {
                Some((_, p)) => (p, &[][..]),
                None => continue,
            },
        };
        sock.job = Some(JobConn { id: p.id, peer_rank: p.peer_rank });
        sock.queue = if data.is_empty() { Vec::new() } else { vec![Message { data: data.to_vec(), ..Default::default() }] };
        sock.unsent = 0;
    }
    // A connection accepted from the program's listener holds the listener's port; once closed
    // it lingers in TIME_WAIT, which keeps a restart on this node from binding that port again
    // unless the connection allows reuse: it does from now on (set after the capture, so the
    // image keeps the program's own setting).
    for (fd, _) in &cur.pairs {
        let one: i32 = 1;
        let _ = sys::syscall!(libc::SYS_setsockopt, *fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one as *const i32, 4);
    }
    if cur.stop {
        // The step ends after this checkpoint: its connections are reset when it exits rather
        // than closed in order, so that no TIME_WAIT holds the program's ports on this node
        // (a listener without SO_REUSEADDR could not be bound again by a restart here). Set
        // after the capture, which must not record it.
        let l = libc::linger { l_onoff: 1, l_linger: 0 };
        for (fd, _) in &cur.pairs {
            let _ = sys::syscall!(libc::SYS_setsockopt, *fd, libc::SOL_SOCKET, libc::SO_LINGER, &l as *const libc::linger, std::mem::size_of::<libc::linger>());
        }
    }
}

/// A process of a step task's tree, captured, before it tells the tree's coordinator so: give
/// the drained bytes back now (`refill`), unless the step stops after this checkpoint (no task
/// refills then). The other processes of the tree resume only once every one has captured, so
/// none that shares a connection we drained reads it while the peer's refill arrives on it.
pub fn refill_in_tree() {
    if CURRENT.lock().is_ok_and(|c| c.as_ref().is_some_and(|cur| !cur.stop)) {
        refill();
    }
}

/// Before this task's threads run again: give the drained bytes back to the connections (once:
/// a second call finds nothing to give).
pub fn refill() {
    let Ok(mut c) = CURRENT.lock() else { return };
    let Some(cur) = c.as_mut() else { return };
    if cur.pairs.is_empty() {
        return;
    }
    let conns: Vec<jobconn::Refill> = cur.pairs.iter().zip(cur.drained.iter_mut()).map(|((fd, _), d)| jobconn::Refill { fd: *fd, mine: std::mem::take(&mut d.data), read: std::mem::take(&mut d.after) }).collect();
    cur.pairs.clear();
    if let Err(e) = jobconn::refill(conns, deadline(timeout_ms())) {
        log!(ERROR, "step: the bytes in flight between tasks could not all be put back after the checkpoint: {e}; the connection may have lost data");
    }
}
