//! Attributes of memory regions, of the process and of each thread that a restart gives back
//! besides memory contents: the mapping flags and madvise advice of each region
//! (`/proc/self/smaps` VmFlags) and its guard pages; prctl settings, oom_score_adj, membarrier
//! registrations, the executable; each thread's scheduling policy and priority, nice value, I/O
//! priority, timer slack, parent-death signal, no_new_privs, personality and rseq registration.

use serde::{Deserialize, Serialize};

/// Bits of `RegionAttrs::flags`: the VmFlags of /proc/self/smaps that a restart restores (their
/// two-letter names in the comments). Stable: they are part of the format.
pub mod vm {
    /// `dc` MADV_DONTFORK
    pub const DONTFORK: u64 = 1 << 0;
    /// `dd` MADV_DONTDUMP
    pub const DONTDUMP: u64 = 1 << 1;
    /// `wf` MADV_WIPEONFORK
    pub const WIPEONFORK: u64 = 1 << 2;
    /// `hg` MADV_HUGEPAGE
    pub const HUGEPAGE: u64 = 1 << 3;
    /// `nh` MADV_NOHUGEPAGE
    pub const NOHUGEPAGE: u64 = 1 << 4;
    /// `mg` MADV_MERGEABLE
    pub const MERGEABLE: u64 = 1 << 5;
    /// `sr` MADV_SEQUENTIAL
    pub const SEQUENTIAL: u64 = 1 << 6;
    /// `rr` MADV_RANDOM
    pub const RANDOM: u64 = 1 << 7;
    /// `lo` mlock, MAP_LOCKED
    pub const LOCKED: u64 = 1 << 8;
    /// `lf` mlock2(MLOCK_ONFAULT)
    pub const LOCKONFAULT: u64 = 1 << 9;
    /// `nr` MAP_NORESERVE: no swap space reserved (huge sparse reservations)
    pub const NORESERVE: u64 = 1 << 10;
    /// `dp` MAP_DROPPABLE
    pub const DROPPABLE: u64 = 1 << 11;
    /// `gd` MAP_GROWSDOWN
    pub const GROWSDOWN: u64 = 1 << 12;
    /// `sl` mseal
    pub const SEALED: u64 = 1 << 13;
    /// `mw` VM_MAYWRITE: a shared file mapping whose file was opened for writing (it may be
    /// mprotect'ed to PROT_WRITE)
    pub const MAYWRITE: u64 = 1 << 14;
    /// `gu` the region has (or had) guard pages (MADV_GUARD_INSTALL)
    pub const GUARDS: u64 = 1 << 15;

    /// The two-letter names, in bit order.
    pub const NAMES: [&[u8; 2]; 16] = [b"dc", b"dd", b"wf", b"hg", b"nh", b"mg", b"sr", b"rr", b"lo", b"lf", b"nr", b"dp", b"gd", b"sl", b"mw", b"gu"];

    /// The bits of a VmFlags line ("rd wr mr mw me dc ...").
    pub fn parse(line: &[u8]) -> u64 {
        line.split(|&b| b == b' ' || b == b'\t' || b == b'\n')
            .filter(|t| t.len() == 2)
            .filter_map(|t| NAMES.iter().position(|n| &n[..] == t))
            .fold(0, |acc, i| acc | 1 << i)
    }

    /// The names of `flags`, for messages and ckpt-inspect ("dc nr").
    pub fn names(flags: u64) -> String {
        NAMES.iter().enumerate().filter(|(i, _)| flags & 1 << i != 0).map(|(_, n)| String::from_utf8_lossy(&n[..]).into_owned()).collect::<Vec<_>>().join(" ")
    }
}

/// What a region has besides its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionAttrs {
    /// `vm::*` bits.
    pub flags: u64,
    /// Guard pages (MADV_GUARD_INSTALL): runs of (first page from the region's start, pages).
    /// They hold nothing and are installed again at restart.
    pub guards: Vec<(u64, u64)>,
}

/// Process-wide attributes, each restored at restart where the kernel lets the restarting user
/// do it (see docs/restored.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcAttrs {
    /// prctl(PR_GET_CHILD_SUBREAPER).
    pub child_subreaper: bool,
    /// prctl(PR_GET_THP_DISABLE): 0, or what it returned (1, with flag bits above it on kernels
    /// that have PR_THP_DISABLE_EXCEPT_ADVISED).
    pub thp_disable: u32,
    /// prctl(PR_GET_MEMORY_MERGE): KSM for the whole process.
    pub memory_merge: bool,
    /// /proc/self/oom_score_adj.
    pub oom_score_adj: i32,
    /// membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS): the REGISTER_* commands done.
    pub membarrier: u32,
    /// /proc/self/exe (empty: unknown) and its identity, to make it the executable again where
    /// that is allowed (CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN in our user namespace).
    pub exe: Vec<u8>,
    pub exe_id: crate::FileId,
    /// /proc/self/loginuid (audit login uid; u32::MAX: unset); None: unknown.
    pub loginuid: Option<u32>,
}

/// Per-thread attributes, read by each thread itself when it stops and set again by the thread
/// that replaces it. (Fixed layout: it also travels in `RestartThread`.)
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadAttrs {
    /// sched_getattr: policy (with SCHED_RESET_ON_FORK in the flags), nice, static priority.
    pub policy: u32,
    pub sched_flags: u64,
    pub nice: i32,
    pub priority: u32,
    /// ioprio_get(IOPRIO_WHO_PROCESS, 0).
    pub ioprio: i32,
    /// prctl(PR_GET_TIMERSLACK), in ns.
    pub timerslack: u64,
    /// prctl(PR_GET_PDEATHSIG).
    pub pdeathsig: i32,
    /// prctl(PR_GET_NO_NEW_PRIVS) (a per-thread flag, like seccomp's).
    pub no_new_privs: u32,
    /// personality(0xffffffff).
    pub personality: u32,
    /// The thread's rseq registration when the program changed it itself (`rseq(2)` through
    /// libc's syscall()): `RSEQ_GLIBC` (not changed: glibc's, see `ThreadState::rseq`),
    /// `RSEQ_NONE` (unregistered) or `RSEQ_OWN` (area, length and signature below).
    pub rseq_state: u32,
    pub rseq_area: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    /// The thread-group leader's time namespace for its children when it made one of its own
    /// (unshare(CLONE_NEWTIME)): 1, and its monotonic and boot-time offsets (ns) over those of
    /// the namespace the thread itself is in; 0: none.
    pub timens_children: u32,
    pub timens_monotonic: i64,
    pub timens_boottime: i64,
    /// The thread's own user and group ids (version 27): raw setresuid/setresgid/setgroups
    /// change only the calling thread's, so threads of one process may differ.
    pub creds: ThreadCreds,
}

/// Supplementary groups a thread's own list may hold in `ThreadCreds` (a longer one that is
/// not the process's refuses the checkpoint).
pub const THREAD_GROUPS_MAX: usize = 32;

/// One thread's user and group ids, from its /proc status at the checkpoint. (Fixed layout.)
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadCreds {
    /// 1: recorded (0: an image of an older version, or not read: the thread keeps the
    /// process's).
    pub known: u32,
    /// Real, effective, saved and filesystem user ids; the same for groups.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    /// `THREAD_GROUPS_NONE`: the thread's supplementary groups are the process's
    /// (`ProcessState::creds`); else how many of `groups` are its own list.
    pub ngroups: u32,
    pub groups: [u32; THREAD_GROUPS_MAX],
}

/// `ThreadCreds::ngroups` of a thread whose groups are the process's.
pub const THREAD_GROUPS_NONE: u32 = u32::MAX;

impl ThreadCreds {
    pub const ZERO: ThreadCreds = ThreadCreds { known: 0, uids: [0; 4], gids: [0; 4], ngroups: 0, groups: [0; THREAD_GROUPS_MAX] };

    /// Its own supplementary groups, if it has a list other than the process's.
    pub fn own_groups(&self) -> Option<&[u32]> {
        (self.ngroups != THREAD_GROUPS_NONE).then(|| &self.groups[..(self.ngroups as usize).min(THREAD_GROUPS_MAX)])
    }
}

impl ThreadAttrs {
    /// All zero (for static initializers).
    pub const ZERO: ThreadAttrs = ThreadAttrs {
        policy: 0,
        sched_flags: 0,
        nice: 0,
        priority: 0,
        ioprio: 0,
        timerslack: 0,
        pdeathsig: 0,
        no_new_privs: 0,
        personality: 0,
        rseq_state: 0,
        rseq_area: 0,
        rseq_len: 0,
        rseq_sig: 0,
        timens_children: 0,
        timens_monotonic: 0,
        timens_boottime: 0,
        creds: ThreadCreds::ZERO,
    };
}

pub const RSEQ_GLIBC: u32 = 0;
pub const RSEQ_NONE: u32 = 1;
pub const RSEQ_OWN: u32 = 2;

#[cfg(test)]
mod tests {
    use super::vm;

    #[test]
    fn vmflags_parse_and_name() {
        let f = vm::parse(b"rd wr mr mw me dc ac nr sd gu \n");
        assert_eq!(f, vm::MAYWRITE | vm::DONTFORK | vm::NORESERVE | vm::GUARDS);
        assert_eq!(vm::names(f), "dc nr mw gu");
        assert_eq!(vm::parse(b""), 0);
    }
}
