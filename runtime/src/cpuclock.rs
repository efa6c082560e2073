//! CPU-time clock ids that name a process or thread (clock_getcpuclockid, pthread_getcpuclockid:
//! the kernel encodes the pid or tid in the id). After a restart the program's ids are virtual
//! (vids.rs): an id it got before still names the old, gone pid or tid, and clock_gettime fails
//! with EINVAL. The hooks here keep the ids the program holds in terms of its virtual ids and
//! translate them to the real ones where they are used. (With exact ids, virtual and real ids are
//! the same and nothing changes.) Before any restart nothing is translated.

use crate::hooks::RealFn;
use crate::vids;
use std::ffi::c_int;

/// The clock id's kind in its low bits: PROF 0, VIRT 1, SCHED 2, 3 a clock on an fd.
const CPUCLOCK_WHICH: i32 = 3;
const CLOCKFD: i32 = 3;
const CPUCLOCK_PERTHREAD: i32 = 4;
const CPUCLOCK_SCHED: i32 = 2;

/// The pid or tid a CPU-time clock id names (0: the caller), and whether it is a thread's; None
/// for other clocks.
fn decode(clk: libc::clockid_t) -> Option<(i32, bool)> {
    (clk < 0 && clk & CPUCLOCK_WHICH != CLOCKFD).then_some((!(clk >> 3), clk & CPUCLOCK_PERTHREAD != 0))
}

fn encode(id: i32, low: i32) -> libc::clockid_t {
    ((!id) << 3) | low
}

/// The clock id to hand to the kernel for an id the program holds.
pub fn real_clock(clk: libc::clockid_t) -> libc::clockid_t {
    rename(clk, |id, thread| if thread { vids::real_tid(id) } else { vids::real_pid_of(id) })
}

/// `clk` naming `f(id, is_thread)` instead of the pid or tid `id` it names; other clocks (and
/// the caller's own, id 0) unchanged.
pub fn rename(clk: libc::clockid_t, f: impl Fn(i32, bool) -> i32) -> libc::clockid_t {
    match decode(clk) {
        Some((id, thread)) if id != 0 => encode(f(id, thread), clk & 7),
        _ => clk,
    }
}

static REAL_GETTIME: RealFn = RealFn::new(b"clock_gettime\0");
static REAL_GETRES: RealFn = RealFn::new(b"clock_getres\0");
static REAL_SETTIME: RealFn = RealFn::new(b"clock_settime\0");
static REAL_GETCPUCLOCKID: RealFn = RealFn::new(b"clock_getcpuclockid\0");
static REAL_PTHREAD_GETCPUCLOCKID: RealFn = RealFn::new(b"pthread_getcpuclockid\0");

pub fn resolve() {
    for f in [&REAL_GETTIME, &REAL_GETRES, &REAL_SETTIME, &REAL_GETCPUCLOCKID, &REAL_PTHREAD_GETCPUCLOCKID] {
        f.get();
    }
}

type TimeFn = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> c_int;
type SetTimeFn = unsafe extern "C" fn(libc::clockid_t, *const libc::timespec) -> c_int;
type CpuClockFn = unsafe extern "C" fn(libc::pid_t, *mut libc::clockid_t) -> c_int;
type ThreadClockFn = unsafe extern "C" fn(libc::pthread_t, *mut libc::clockid_t) -> c_int;

/// # Safety
/// libc's contract for clock_gettime.
#[no_mangle]
pub unsafe extern "C" fn clock_gettime(clk: libc::clockid_t, ts: *mut libc::timespec) -> c_int {
    let clk = if clk < 0 { real_clock(clk) } else { clk };
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, TimeFn>(REAL_GETTIME.get())(clk, ts) }
}

/// # Safety
/// libc's contract for clock_getres.
#[no_mangle]
pub unsafe extern "C" fn clock_getres(clk: libc::clockid_t, ts: *mut libc::timespec) -> c_int {
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, TimeFn>(REAL_GETRES.get())(real_clock(clk), ts) }
}

/// # Safety
/// libc's contract for clock_settime.
#[no_mangle]
pub unsafe extern "C" fn clock_settime(clk: libc::clockid_t, ts: *const libc::timespec) -> c_int {
    // SAFETY: forwarding to libc.
    unsafe { std::mem::transmute::<usize, SetTimeFn>(REAL_SETTIME.get())(real_clock(clk), ts) }
}

/// The id names `pid` as the program knows it (virtual), checked against the real one.
///
/// # Safety
/// libc's contract for clock_getcpuclockid.
#[no_mangle]
pub unsafe extern "C" fn clock_getcpuclockid(pid: libc::pid_t, clk: *mut libc::clockid_t) -> c_int {
    let mut real: libc::clockid_t = 0;
    // SAFETY: forwarding to libc with our own out-parameter.
    let r = unsafe { std::mem::transmute::<usize, CpuClockFn>(REAL_GETCPUCLOCKID.get())(if pid == 0 { 0 } else { vids::real_pid_of(pid) }, &mut real) };
    if r == 0 {
        // SAFETY: the caller's out-parameter.
        unsafe { *clk = if pid == 0 { real } else { encode(pid, CPUCLOCK_SCHED) } };
    }
    r
}

/// The id names the thread by the tid the program knows (virtual).
///
/// # Safety
/// libc's contract for pthread_getcpuclockid.
#[no_mangle]
pub unsafe extern "C" fn pthread_getcpuclockid(th: libc::pthread_t, clk: *mut libc::clockid_t) -> c_int {
    let mut real: libc::clockid_t = 0;
    // SAFETY: forwarding to libc with our own out-parameter.
    let r = unsafe { std::mem::transmute::<usize, ThreadClockFn>(REAL_PTHREAD_GETCPUCLOCKID.get())(th, &mut real) };
    if r == 0 {
        let v = match decode(real) {
            Some((tid, true)) if tid != 0 => encode(vids::virtual_tid(tid), real & 7),
            _ => real,
        };
        // SAFETY: the caller's out-parameter.
        unsafe { *clk = v };
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_ids_round_trip() {
        // glibc: MAKE_PROCESS_CPUCLOCK(4540, CPUCLOCK_SCHED) is -36326 (DMTCP's clock test).
        assert_eq!(encode(4540, CPUCLOCK_SCHED), -36326);
        assert_eq!(decode(-36326), Some((4540, false)));
        assert_eq!(decode(encode(77, CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD)), Some((77, true)));
        assert_eq!(decode(libc::CLOCK_MONOTONIC), None);
        assert_eq!(decode(encode(5, CLOCKFD)), None);
    }
}
