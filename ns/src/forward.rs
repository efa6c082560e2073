//! Which signals the outer process passes on to the program.
//!
//! The outer process (ckpt-run, ckpt-restart) is what the user's shell, mpirun or slurmstepd
//! knows as the program's pid, so signals sent to it are meant for the program. But the program
//! is in the outer process's process group and cgroup, so many signals reach it directly too;
//! forwarding those would deliver them twice. The rule:
//!
//! - not forwarded: signals the terminal generates (si_code SI_KERNEL: ^C, ^\, ^Z, SIGWINCH,
//!   hangup), which the kernel sends to the whole foreground process group, program included;
//!   except the hangup when we lead the session: the kernel sends that to the session leader
//!   alone, which is what the program would be natively;
//! - not forwarded: signals from our parent when it is slurmstepd: Slurm signals every process
//!   of a step (scancel -s, time limits, srun's forwarding of ^C);
//! - not forwarded: signals that init got too (it is the witness, see `init`): they were sent to
//!   our whole process group (kill -TERM -PGID, GNU timeout, a shell's job control) or to every
//!   process of our cgroup, and reached the program directly, as long as the program is still in
//!   our process group. This also covers the program's own kill(0, sig), which reaches its whole
//!   process group, us included (a signal from inside the namespace carries the sender's pid
//!   there, which means nothing here, so the sender cannot be told from the pid);
//! - not forwarded: the SIGCONT our init sends us when the program continues (see `supervise`;
//!   it comes marked like a forwarded signal);
//! - not forwarded: SIGCHLD (it is about our own child, init);
//! - everything else is forwarded. The program's checkpoint and stop signals go with si_code
//!   SI_QUEUE and the value `FORWARD_MARK`, so that its runtime can tell a forwarded request from
//!   one that reached it directly and take one checkpoint, not two (see the runtime's triggers).
//!   The high half of that value says how long we held the signal (from reading it to sending
//!   it on): the runtime takes a request sent before its newest checkpoint's cut for one that
//!   checkpoint served, and this is how it knows the latest the request can have been sent.
//!   Other signals are forwarded plainly: the program sees SI_USER from pid 0, exactly what a
//!   signal sent from outside its namespace looks like.

/// si_value of a forwarded checkpoint or stop signal ("ckpt" in ASCII).
pub const FORWARD_MARK: i32 = 0x636b_7074;

/// The si_value of a forwarded checkpoint or stop signal that we held `held_ms` ms: the mark in
/// the low 32 bits (what every reader compares), the time in the high 32.
pub fn marked_value(held_ms: u64) -> u64 {
    held_ms.min(u64::from(u32::MAX)) << 32 | u64::from(FORWARD_MARK as u32)
}

/// How long the outer process held a forwarded signal whose si_value is `value`, in ms (None:
/// the value is not the mark, the signal was not forwarded by us).
pub fn held_ms(value: u64) -> Option<u64> {
    (value as u32 as i32 == FORWARD_MARK).then_some(value >> 32)
}

/// What the outer process knows about a signal it received.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub signo: i32,
    pub code: i32,
    /// The sender's pid (0: none, e.g. from the kernel or from an ancestor namespace).
    pub sender: i32,
    /// si_value of a queued signal.
    pub value: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward; `marked`: as SI_QUEUE with FORWARD_MARK.
    Forward { marked: bool },
    Skip(&'static str),
}

/// Facts about the surroundings that the rule needs (looked up only when needed).
pub trait Surroundings {
    fn parent_pid(&self) -> i32;
    /// Whether we lead our session (the terminal's hangup then reaches us alone: the kernel sends
    /// it to the session leader, which natively would be the program).
    fn session_leader(&self) -> bool;
    fn is_slurmstepd(&self, pid: i32) -> bool;
    /// The signals forwarded with the mark (the program's checkpoint and stop signals).
    fn marked(&self, signo: i32) -> bool;
    /// Whether init got `signo` too, just now, and the program is in our process group. Asked
    /// for every signal (but SIGCHLD): the question also clears init's record of it.
    fn group_got_it(&self, signo: i32) -> bool;
}

pub fn decide(s: &Received, env: &impl Surroundings) -> Verdict {
    if s.signo == libc::SIGCHLD {
        return Verdict::Skip("about our own child");
    }
    let group = env.group_got_it(s.signo);
    if s.code == libc::SI_QUEUE && s.value == FORWARD_MARK {
        return Verdict::Skip("from our init");
    }
    if s.code == libc::SI_KERNEL && !(s.signo == libc::SIGHUP && env.session_leader()) {
        return Verdict::Skip("from the terminal: the program's process group got it too");
    }
    if s.sender > 0 && s.sender == env.parent_pid() && env.is_slurmstepd(s.sender) {
        return Verdict::Skip("from slurmstepd, which signals every process of the step");
    }
    if group {
        return Verdict::Skip("sent to the whole process group or cgroup, which the program is in");
    }
    Verdict::Forward { marked: env.marked(s.signo) }
}

/// Send `sig` through `pidfd`: as SI_QUEUE with FORWARD_MARK (and `held_ms`, how long ago we
/// read it: `marked_value`) when `marked`, else plainly (the receiver sees SI_USER, and pid 0 if
/// it is in a namespace below ours).
pub fn send(pidfd: std::os::fd::RawFd, sig: i32, marked: bool, held_ms: u64) {
    let info = marked.then(|| {
        // SAFETY: an all-zero siginfo is valid; the union is filled in the layout of a queued
        // signal (si_pid, si_uid, si_value at offset 16), as sigqueue does.
        let mut i: libc::siginfo_t = unsafe { std::mem::zeroed() };
        i.si_signo = sig;
        i.si_code = libc::SI_QUEUE;
        // SAFETY: writing the _rt member's fields inside the siginfo.
        unsafe {
            let p = (&mut i as *mut libc::siginfo_t as *mut u8).add(16) as *mut i32;
            *p = libc::getpid();
            *p.add(1) = libc::getuid() as i32;
            *(p.add(2) as *mut u64) = marked_value(held_ms);
        }
        i
    });
    let ip = info.as_ref().map_or(std::ptr::null(), |i| i as *const libc::siginfo_t);
    // SAFETY: pidfd_send_signal with a valid (or null) siginfo.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, ip, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Env;
    impl Surroundings for Env {
        fn parent_pid(&self) -> i32 {
            100
        }
        fn session_leader(&self) -> bool {
            true
        }
        fn is_slurmstepd(&self, pid: i32) -> bool {
            pid == 100
        }
        fn marked(&self, signo: i32) -> bool {
            signo == libc::SIGUSR2
        }
        fn group_got_it(&self, signo: i32) -> bool {
            signo == libc::SIGQUIT
        }
    }

    fn sig(signo: i32, code: i32, sender: i32) -> Verdict {
        decide(&Received { signo, code, sender, value: 0 }, &Env)
    }

    #[test]
    fn the_rule() {
        assert_eq!(sig(libc::SIGUSR2, libc::SI_USER, 555), Verdict::Forward { marked: true });
        assert_eq!(sig(libc::SIGTERM, libc::SI_USER, 555), Verdict::Forward { marked: false });
        assert!(matches!(sig(libc::SIGINT, libc::SI_KERNEL, 0), Verdict::Skip(_)));
        assert!(matches!(sig(libc::SIGUSR2, libc::SI_USER, 100), Verdict::Skip(_)));
        let from_init = Received { signo: libc::SIGCONT, code: libc::SI_QUEUE, sender: 1, value: FORWARD_MARK };
        assert!(matches!(decide(&from_init, &Env), Verdict::Skip(_)));
        assert!(matches!(sig(libc::SIGCHLD, libc::CLD_EXITED, 200), Verdict::Skip(_)));
        assert_eq!(sig(libc::SIGCONT, libc::SI_USER, 0), Verdict::Forward { marked: false });
        assert!(matches!(sig(libc::SIGQUIT, libc::SI_USER, 555), Verdict::Skip(_)));
        // The hangup of the terminal whose session we lead reached us alone.
        assert_eq!(sig(libc::SIGHUP, libc::SI_KERNEL, 0), Verdict::Forward { marked: false });
    }

    #[test]
    fn the_marked_value_says_how_long_the_signal_was_held() {
        assert_eq!(held_ms(marked_value(0)), Some(0));
        assert_eq!(held_ms(marked_value(1234)), Some(1234));
        assert_eq!(held_ms(marked_value(u64::MAX)), Some(u64::from(u32::MAX)));
        // Whoever reads only the low 32 bits (si_int, an older runtime) still sees the mark.
        assert_eq!(marked_value(77) as u32 as i32, FORWARD_MARK);
        assert_eq!(held_ms(0), None);
        assert_eq!(held_ms(5 << 32), None);
    }
}
