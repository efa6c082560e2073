//! Process and thread attributes across checkpoint, SIGKILL and restart: child subreaper, THP
//! disable, oom_score_adj, and per thread no_new_privs, personality, parent-death signal and
//! timer slack; scheduling policy, nice value and I/O priority of each thread; membarrier
//! registrations; rseq areas the program registered itself; CPU-time clock ids taken before the
//! checkpoint; /proc/self/exe and loginuid where the restart may set them.

mod ready_go;
mod restore_util;
use ckpt_tests::scenario::is_root;
use ready_go::{outputs_with, same_after_restart};

const PRCTL: &[&str] = &[
    "worker: no_new_privs 0, personality 0, pdeathsig 0, timerslack 77000 ns",
    "child subreaper 1",
    "THP disabled 1",
    "oom_score_adj 500",
    "main: no_new_privs 1, personality 0x40000, pdeathsig 10, timerslack 250000 ns",
];

#[test]
fn prctl_attributes_survive() {
    same_after_restart("attr_prctl", "prctl", false, PRCTL);
}

#[test]
fn prctl_attributes_survive_as_nobody() {
    same_after_restart("attr_prctl", "prctl_nobody", true, PRCTL);
}

const SCHED: &[&str] = &[
    "batch worker: policy 3, nice 5, io class 3 level 0",
    "idle worker: policy 5 (reset on fork), nice 0, io class 2 level 6",
    "main: policy 0, nice 3, io class 0 level 0",
];

#[test]
fn scheduling_of_each_thread_survives() {
    same_after_restart("attr_sched", "sched", false, SCHED);
}

#[test]
fn scheduling_of_each_thread_survives_as_nobody() {
    same_after_restart("attr_sched", "sched_nobody", true, SCHED);
}

#[test]
fn membarrier_registrations_survive() {
    same_after_restart("attr_membarrier", "membarrier", true, &["command 0x8: ok", "command 0x2: ok"]);
}

const RSEQ: &[&str] = &[
    "worker: own area registered, updated by the kernel: yes",
    "glibc worker: glibc's area registered, updated by the kernel: yes",
    "main: own area registered, updated by the kernel: yes",
];

#[test]
fn rseq_areas_of_the_program_survive() {
    same_after_restart("attr_rseq", "rseq", false, RSEQ);
}

#[test]
fn rseq_areas_of_the_program_survive_as_nobody() {
    same_after_restart("attr_rseq", "rseq_nobody", true, RSEQ);
}

const CLOCKS: &[&str] = &[
    "process: clock_gettime ok, clock_getres ok",
    "worker: clock_gettime ok, clock_getres ok",
    "clock_getcpuclockid(getpid()) again: the same id",
    "pthread_getcpuclockid(worker) again: the same id",
    "timer on the process's CPU clock: armed",
    "new timer on the old id: made",
];

#[test]
fn cpu_time_clock_ids_still_work() {
    same_after_restart("attr_cpuclock", "cpuclock", false, CLOCKS);
}

#[test]
fn cpu_time_clock_ids_still_work_as_nobody() {
    same_after_restart("attr_cpuclock", "cpuclock_nobody", true, CLOCKS);
}

/// After a second restart the ids (the program's, and the timer's) still name the right process.
#[test]
fn cpu_time_clock_ids_survive_two_restarts() {
    restore_util::survives_two_restarts("attr_cpuclock");
}

/// With CAP_SYS_ADMIN (root; also CAP_CHECKPOINT_RESTORE inside a user namespace of ckpt's
/// own) the restart makes /proc/self/exe the program's executable again.
#[test]
fn proc_self_exe_is_the_program_where_allowed() {
    if !is_root() {
        ckpt_tests::skip_test!("needs CAP_SYS_ADMIN (root) to set the executable of the restarted process");
        return;
    }
    same_after_restart("attr_exe", "exe", false, &["exe: same"]);
}

/// Without the capability (as user nobody, or any user outside a user namespace of ckpt's own)
/// /proc/self/exe stays ckpt-restart (documented in docs/restored.md).
#[test]
fn proc_self_exe_is_ckpt_restart_without_the_capability() {
    let (expected, out) = outputs_with("attr_exe", "exe_nobody", true, false);
    assert_eq!(expected, "exe: same\n");
    assert_eq!(out, "exe: ckpt-restart\n");
}

/// As user nobody too, in the user namespace that exact ids use (the default where the kernel
/// allows one) the restart holds CAP_CHECKPOINT_RESTORE there and sets /proc/self/exe again.
#[test]
fn proc_self_exe_is_the_program_in_a_namespace_as_nobody() {
    if !std::process::Command::new("unshare").args(["--user", "true"]).status().is_ok_and(|s| s.success()) {
        ckpt_tests::skip_test!("cannot create a user namespace here (unshare --user)");
        return;
    }
    let (expected, out) = outputs_with("attr_exe", "exe_nobody_ns", true, true);
    assert_eq!(expected, "exe: same\n");
    assert_eq!(out, "exe: same\n");
}

/// The audit login uid, which only root (CAP_AUDIT_CONTROL) may set: set again by a restart
/// that may (zdtm loginuid).
#[test]
fn loginuid_survives_where_allowed() {
    if !is_root() {
        ckpt_tests::skip_test!("needs CAP_AUDIT_CONTROL (root) to set a loginuid");
        return;
    }
    same_after_restart("attr_loginuid", "loginuid", false, &["loginuid 4242"]);
}
