//! Per-process and per-thread kernel state that the runtime itself brings back after a restart:
//! interval timers (alarm/setitimer) with their remaining time, POSIX timers (timer_create, same
//! ids via PR_TIMER_CREATE_RESTORE_IDS), pending signals (process-wide and per thread; with
//! their siginfo through sigqueue.rs, by number here for those it could not take), thread
//! names (comm) and CPU affinity.
//!
//! `save` runs during a checkpoint, in the checkpointed process itself (not a forked child:
//! timers and pending signals are not inherited), and stores everything in a static of the
//! runtime, which is part of the memory image. `restore` runs on the restart path, after the
//! threads were recreated and before they are released, and reads that static back.

use crate::log::{log, DEBUG, ERROR};
use crate::sys::{self, syscall};
use crate::threads::Slot;
use std::cell::UnsafeCell;

const MAX_THREADS: usize = 512;
const MAX_TIMERS: usize = 64;
const AFFINITY_WORDS: usize = 16; // 1024 CPUs
const PR_TIMER_CREATE_RESTORE_IDS: i32 = 77;

#[derive(Clone, Copy)]
struct ThreadExtra {
    tid: i32,
    pending: u64,
    comm: [u8; 16],
    comm_len: usize,
    affinity: [u64; AFFINITY_WORDS],
    affinity_len: usize,
}

#[derive(Clone, Copy)]
struct PosixTimer {
    id: i32,
    clock: i32,
    notify: i32,
    signo: i32,
    value: u64,
    tid: i32,
    /// interval sec, nsec, value sec, nsec (remaining).
    its: [i64; 4],
}

struct Saved {
    itimers: [[i64; 4]; 3],
    shared_pending: u64,
    threads: [ThreadExtra; MAX_THREADS],
    nthreads: usize,
    timers: [PosixTimer; MAX_TIMERS],
    ntimers: usize,
    /// The real pid at checkpoint time (a CPU-time clock of the process names it).
    pid: i32,
}

struct Cell(UnsafeCell<Saved>);
// SAFETY: written only by the checkpoint thread with every other thread stopped, and read only
// on the restart path before any other thread runs.
unsafe impl Sync for Cell {}

const NO_THREAD: ThreadExtra = ThreadExtra { tid: 0, pending: 0, comm: [0; 16], comm_len: 0, affinity: [0; AFFINITY_WORDS], affinity_len: 0 };
const NO_TIMER: PosixTimer = PosixTimer { id: 0, clock: 0, notify: 0, signo: 0, value: 0, tid: 0, its: [0; 4] };
static SAVED: Cell = Cell(UnsafeCell::new(Saved {
    itimers: [[0; 4]; 3],
    shared_pending: 0,
    threads: [NO_THREAD; MAX_THREADS],
    nthreads: 0,
    timers: [NO_TIMER; MAX_TIMERS],
    ntimers: 0,
    pid: 0,
}));

/// The value after `key` in a /proc status-like text, parsed in `radix`. Read as bytes: a
/// thread's name (the Name: line) may be any bytes, not UTF-8.
pub(crate) fn value(text: &[u8], key: &str, radix: u32) -> Option<u64> {
    let key = key.as_bytes();
    let i = text.windows(key.len()).position(|w| w == key)? + key.len();
    let v = &text[i..];
    let v = &v[v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len())..];
    let end = v.iter().position(|&b| !char::from(b).is_digit(radix)).unwrap_or(v.len());
    u64::from_str_radix(std::str::from_utf8(&v[..end]).ok()?, radix).ok()
}

/// Field `k` of a /proc/PID/stat text, numbered as proc(5) does (1: the pid, 3: the state):
/// counted after the last ')', since the name before it may hold spaces and parentheses. No
/// allocation (signal handlers call it).
pub(crate) fn stat_field(stat: &[u8], k: usize) -> Option<&[u8]> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].split(|b| b.is_ascii_whitespace()).filter(|f| !f.is_empty()).nth(k.checked_sub(3)?)
}

/// Field `k` of a /proc/PID/stat text as a number (`stat_field`).
pub(crate) fn stat_number<T: std::str::FromStr>(stat: &[u8], k: usize) -> Option<T> {
    std::str::from_utf8(stat_field(stat, k)?).ok()?.parse().ok()
}

/// The state letter of a /proc/PID/stat text (field 3: `R`, `S`, `Z`, ...).
pub(crate) fn stat_state(stat: &[u8]) -> Option<u8> {
    stat_field(stat, 3)?.first().copied()
}

fn reserved_mask() -> u64 {
    crate::reserved_signals().iter().filter(|&&s| s > 0).fold(0, |m, &s| m | 1u64 << (s - 1))
}


/// Record the state (checkpoint thread, world stopped). Fails when a program thread did not take
/// its pending signals again in time (`threads::late_capture`): it could still be rewriting its
/// records while they are read, so this checkpoint cannot be faithful to its signals.
pub fn save(self_tid: i32) -> Result<(), String> {
    crate::shmlink::save();
    if let Ok(maps) = crate::maps::read_maps() {
        ckpt_kinds::aio::capture(maps.iter().map(|m| (m.start, m.end, &m.name[..])));
    }
    crate::ids::begin_capture();
    // SAFETY: see Cell.
    let s = unsafe { &mut *SAVED.0.get() };
    s.pid = sys::getpid();
    for (w, t) in s.itimers.iter_mut().enumerate() {
        *t = [0; 4];
        let _ = syscall!(libc::SYS_getitimer, w, t.as_mut_ptr());
    }
    let reserved = reserved_mask();
    // Pending signals with their siginfo (sigqueue.rs); those it could not take by number.
    if !crate::threads::late_capture() {
        return Err("a thread of the program did not take its pending signals again within 10 s (the machine is overloaded?): its signals could not be recorded faithfully; the program goes on, try again".into());
    }
    crate::sigqueue::capture_shared();
    let left = crate::sigqueue::capture_late(crate::threads::leader_parked());
    let status = sys::read_file(&sys::cpath(&[b"/proc/thread-self/status"])).unwrap_or_default();
    // A signal of the process's queue that the late capture could have taken with its siginfo
    // and that is pending now came after it (a POSIX timer firing every millisecond while this
    // thread was not run): after the cut, as for the threads below; sent again by number it
    // would reach the restarted program without its siginfo (SI_USER, no si_value).
    let after_cut = crate::sigqueue::takeable() & !left;
    s.shared_pending = value(&status, "ShdPnd:", 16).unwrap_or(0) & !reserved & !crate::sigqueue::recorded_shared() & !after_cut;
    s.nthreads = 0;
    for name in sys::list_dir(&sys::cpath(&[b"/proc/self/task"])).unwrap_or_default() {
        let Some(tid) = std::str::from_utf8(&name).ok().and_then(|t| t.parse::<i32>().ok()) else { continue };
        let st = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &name, b"/status"])).unwrap_or_default();
        crate::ids::note_thread(tid, &st);
        if tid == self_tid || s.nthreads == MAX_THREADS {
            continue;
        }
        let mut t = NO_THREAD;
        t.tid = tid;
        // A signal the threads' late capture could have taken with its siginfo and that is
        // pending now came after it (a thread's POSIX timer firing every millisecond): after
        // the cut, as the kernel's own queue is; sent again by number it would reach the
        // restarted program without its siginfo.
        let after_cut = crate::sigqueue::takeable();
        t.pending = value(&st, "SigPnd:", 16).unwrap_or(0) & !reserved & !crate::sigqueue::recorded(tid) & !after_cut;
        let comm = sys::read_file(&sys::cpath(&[b"/proc/self/task/", &name, b"/comm"])).unwrap_or_default();
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        t.comm_len = comm.len().min(15);
        t.comm[..t.comm_len].copy_from_slice(&comm[..t.comm_len]);
        if let Ok(n) = syscall!(libc::SYS_sched_getaffinity, tid, AFFINITY_WORDS * 8, t.affinity.as_mut_ptr()) {
            t.affinity_len = n as usize;
        }
        s.threads[s.nthreads] = t;
        s.nthreads += 1;
    }
    s.ntimers = 0;
    let timers = sys::read_file(&sys::cpath(&[b"/proc/self/timers"])).unwrap_or_default();
    for block in timers.split(|&b| b == b'\n').collect::<Vec<_>>().chunks(4) {
        if block.len() < 4 || s.ntimers == MAX_TIMERS {
            continue;
        }
        // (A CPU-time clock of a process or thread is negative: see cpuclock.rs.)
        let clock = std::str::from_utf8(block[3]).ok().and_then(|l| l.trim().strip_prefix("ClockID:")).and_then(|v| v.trim().parse::<i32>().ok());
        let (Some(id), Some(clock)) = (value(block[0], "ID:", 10), clock) else { continue };
        let mut t = NO_TIMER;
        t.id = id as i32;
        t.clock = clock;
        // "signal: 10/000000000000dead", "notify: signal/pid.123" | "signal/tid.123" (a
        // SIGEV_THREAD_ID timer: the kernel prints "tid") | "none/pid.123"
        t.signo = value(block[1], "signal:", 10).unwrap_or(0) as i32;
        t.value = block[1].iter().position(|&b| b == b'/').and_then(|i| value(&block[1][i..], "/", 16)).unwrap_or(0);
        let n = block[2];
        t.notify = if n.starts_with(b"notify: none") {
            libc::SIGEV_NONE
        } else if n.windows(5).any(|w| w == b"/tid.") {
            libc::SIGEV_THREAD_ID
        } else {
            libc::SIGEV_SIGNAL
        };
        t.tid = n.iter().position(|&b| b == b'.').and_then(|i| value(&n[i..], ".", 10)).unwrap_or(0) as i32;
        let _ = syscall!(libc::SYS_timer_gettime, t.id, t.its.as_mut_ptr());
        s.timers[s.ntimers] = t;
        s.ntimers += 1;
    }
    Ok(())
}

/// The new tid of the thread that had `old` at checkpoint time (0 if none).
pub(crate) fn new_tid(slots: &[Slot], old: i32) -> i32 {
    slots
        .iter()
        .find(|s| s.tid == old && s.tid_address != 0)
        // SAFETY: glibc's tid field of the recreated thread, set by clone (CLONE_PARENT_SETTID).
        .map(|s| unsafe { (s.tid_address as *const i32).read_volatile() })
        .unwrap_or(0)
}

/// Bring the state back (restart path: threads recreated and parked, every signal blocked).
pub fn restore(slots: &[Slot]) {
    crate::shmlink::restore();
    for e in ckpt_kinds::aio::restore() {
        log!(ERROR, "restart: {e}");
    }
    // SAFETY: see Cell.
    let s = unsafe { &*SAVED.0.get() };
    let pid = sys::getpid();
    for t in &s.threads[..s.nthreads] {
        let tid = new_tid(slots, t.tid);
        if tid == 0 {
            continue;
        }
        if t.comm_len > 0 {
            if let Ok(fd) = sys::open(&sys::cpath(&[b"/proc/self/task/", &sys::decimal(tid), b"/comm"]), libc::O_WRONLY, 0) {
                let _ = sys::write_all(fd, &t.comm[..t.comm_len]);
                sys::close(fd);
            }
        }
        if t.affinity_len > 0 {
            // Another node may lack some CPUs: then the thread keeps the restarter's affinity.
            let _ = syscall!(libc::SYS_sched_setaffinity, tid, t.affinity_len, t.affinity.as_ptr());
        }
        for sig in 1..=64 {
            if t.pending & (1u64 << (sig - 1)) != 0 {
                let _ = sys::tgkill(pid, tid, sig);
            }
        }
    }
    crate::sigqueue::restore_remaining();
    for sig in 1..=64 {
        if s.shared_pending & (1u64 << (sig - 1)) != 0 {
            let _ = syscall!(libc::SYS_kill, pid, sig);
        }
    }
    if s.ntimers > 0 {
        let _ = syscall!(libc::SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0);
        for t in &s.timers[..s.ntimers] {
            // struct sigevent: value (8), signo (4), notify (4), tid (4), padding to 64 bytes.
            let mut ev = [0u8; 64];
            ev[0..8].copy_from_slice(&t.value.to_ne_bytes());
            ev[8..12].copy_from_slice(&t.signo.to_ne_bytes());
            ev[12..16].copy_from_slice(&t.notify.to_ne_bytes());
            let tid = if t.notify == libc::SIGEV_THREAD_ID { new_tid(slots, t.tid) } else { 0 };
            ev[16..20].copy_from_slice(&tid.to_ne_bytes());
            let mut id: i32 = t.id;
            // A CPU-time clock names the process or a thread by the id it had at checkpoint time.
            let clock = crate::cpuclock::rename(t.clock, |old, thread| if thread { new_tid(slots, old) } else if old == s.pid { pid } else { old });
            match syscall!(libc::SYS_timer_create, clock, ev.as_ptr(), &mut id as *mut i32) {
                Ok(_) if id == t.id => {
                    let _ = syscall!(libc::SYS_timer_settime, id, 0, t.its.as_ptr(), 0);
                }
                r => log!(DEBUG, "POSIX timer {} not restored ({:?}, got id {id})", t.id, r),
            }
        }
        let _ = syscall!(libc::SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
    }
    for (w, t) in s.itimers.iter().enumerate() {
        if t[2] != 0 || t[3] != 0 {
            let _ = syscall!(libc::SYS_setitimer, w, t.as_ptr(), 0);
        }
    }
    crate::vids::restarted(slots, pid);
    crate::procstate::restore_saved_dumpable();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = b"42 (a) b (c)) S 1 42 42 0 -1 4194368 0 0\n";
        assert_eq!(stat_state(stat), Some(b'S'));
        assert_eq!(stat_number::<i32>(stat, 4), Some(1));
        assert_eq!(stat_number::<u64>(stat, 9), Some(4194368));
        assert_eq!(stat_field(stat, 13), None);
        assert_eq!(stat_field(b"", 3), None);
        assert_eq!(stat_field(stat, 2), None);
    }
}
