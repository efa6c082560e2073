//! Messages between the coordinator of a process tree (the namespace's init, `coord`) and the
//! runtime in each process of the tree, over a SOCK_SEQPACKET connection that each process makes
//! to init's abstract socket (`socket_name`). One fixed-size record per message; `Stop` carries
//! the fd of the set's temporary directory (SCM_RIGHTS). Encoding only: the runtime sends and
//! receives with raw system calls (it may be stopped, see its tree module), init with libc.
//!
//! A checkpoint of the tree, as the coordinator runs it:
//! ```text
//! member: Request{stop}  ->  coordinator
//!   (one process alone, never in a set before:)  Solo -> requester, which checkpoints as ever
//! coordinator: Stop{generation} + dir fd -> every member;   member: stops its threads, Stopped
//! coordinator: Capture -> every member;  member: captures, forks its snapshot, Captured
//! coordinator: Resume -> every member;   member: resumes, its snapshot writes, Done{...}
//!   (a stop checkpoint: Hold instead; the member's threads stay stopped while it writes)
//! coordinator: writes the manifest, renames the set into place, Result{ok} -> every member
//!   (after Hold: a committed set ends the namespace; a failed one lets every member go on)
//! ```
//! Abort (instead of Capture or Resume) resumes a member without an image. A member that takes
//! no part (instead of Stopped, Captured or Done) says Failed and why when it knows a reason
//! no line of its own gives (it was exiting); the coordinator's line names it and the Result
//! carries it to every member, so that the one who asked (ckpt-ctl) names it too (`Failure`).
//!
//! A program alone, told Solo, asks with its threads stopped which of its fds 0 to 2 are its own
//! (`AskStdio`; kcmp against init's, which it may not do itself as an unprivileged user) and
//! the coordinator answers at once (`OwnStdio`): its image marks them.
//!
//! When the program ends while other processes of the tree live on (ns `leftover`), the
//! coordinator tells the tree's new root (the first child of init) `TakeControl`: it serves the
//! control socket ckpt-ctl talks to and runs the periodic timer in the program's stead (again
//! whenever that root ends while others live on).
//!
//! After a restart each process of the tree says `Running` once its state is back, just
//! before its program's threads run: when all have, init lets the outer process forward the
//! signals it held during the restart (`supervise`).
//!
//! A checkpoint of a tree that is a task of a Slurm step (`Request{step: true}`, asked by the
//! task's program, the tree's root: runtime/src/step.rs) has one more phase between the first
//! two: once every process is stopped, Capture goes to the requester alone; it takes the step's
//! part (its connections and those the others hold, paired across the step's tasks), writes
//! into the set's directory which connection each other process drains (`STEP_PAIRS`), and
//! says `Paired`; only then does Capture go to every other process, which drains its own
//! connections to other tasks before it captures.
//!
//! A process stopped by job control (SIGSTOP, SIGTSTP, ...) cannot answer: its Stop says which
//! signal had stopped it (its parent's pending wait report, asked of the parent with AskStop
//! while it is stopped for the checkpoint, answered with StopSig; init's own for orphans), and
//! the coordinator wakes it with SIGCONT only once every running
//! process has stopped its threads; once it is captured (or the checkpoint is called off) the
//! coordinator sends it that signal again, which its checkpoint thread takes, so that the whole
//! process is stopped again before any other process of the tree resumes. It sends no Done (it
//! may be stopped before its image is written): the coordinator waits for its image file.

/// What goes over the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeMsg {
    /// member: take a checkpoint of the tree (and then exit, `stop`); `step`: as the part of a
    /// Slurm step's checkpoint (the requester says `Paired` before the others capture).
    Request { stop: bool, step: bool },
    /// the requester of a step's checkpoint: the other processes' connections to other tasks
    /// are in `STEP_PAIRS`; they may capture.
    Paired,
    /// member: every thread is stopped.
    Stopped,
    /// member: captured, and the snapshot holds its memory.
    Captured,
    /// member: its image is written; memory bytes, bytes on disk, pause in ns.
    Done { raw: u64, stored: u64, paused_ns: u64 },
    /// member: it takes no part, or its image is not written; `why` (Unsaid: its own line
    /// says) and its command name (it may be gone when the coordinator writes its line).
    /// (Sent as a Done that is not ok: an older coordinator reads it so.)
    Failed { why: Why, comm: [u8; 16] },
    /// coordinator: you are alone, take a checkpoint of your own.
    Solo,
    /// coordinator: stop your threads for checkpoint `generation` of the tree (fd: the set's
    /// temporary directory, where your image goes); `members` processes write at once (0:
    /// not said, from an older coordinator), so each takes its share of the CPUs. `stopped`: the
    /// signal that had stopped this process (job control) and that the coordinator woke it
    /// from for the checkpoint (0: it was running): it takes that signal on its checkpoint
    /// thread, which the coordinator sends it again once it is captured, and sends no Done.
    Stop { generation: u64, members: u32, stopped: u32 },
    Capture,
    Resume,
    /// coordinator: as Resume, but the threads stay stopped until the Result (a stop checkpoint:
    /// no program code runs after the cut unless the set fails).
    Hold,
    /// coordinator: the tree's checkpoint is off; resume, write nothing.
    Abort,
    /// coordinator: the set was committed (ok) or not; `failure`: the process and reason the
    /// coordinator's line named (default: none said).
    Result { ok: bool, failure: Failure },
    /// coordinator, to a stopped member's parent (while stopped for a checkpoint): by which
    /// signal is your child `pid` stopped? (its wait report, if you have not taken it).
    AskStop { pid: i32 },
    /// member: child `pid` was stopped by `sig` (0: no stop report waiting).
    StopSig { pid: i32, sig: i32 },
    /// member, once after a restart: its state is back (its pending signals queued again) and
    /// its program's threads are about to run; signals held for the restarted tree may go.
    Running,
    /// member alone (after Solo), its threads stopped: which of my fds 0 to 2 are my own, one
    /// open file with none of yours (the stdio the tree was given)? It may not ask kcmp itself:
    /// init holds capabilities in the namespace that it does not.
    AskStdio,
    /// coordinator: bit N of `own` set: the member's fd N is its own (kcmp); `known`: false
    /// when kcmp could not tell.
    OwnStdio { own: u32, known: bool },
    /// coordinator, to the tree's new root once the program (or the root before it) ended while
    /// others live on: serve the control socket (ckpt-ctl) and run the periodic timer.
    TakeControl,
}

pub const LEN: usize = 32;

/// Why a member took no part in a checkpoint of its tree, where its own line does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Why {
    /// Its own line says why (an error it logged), or it is an older runtime that does not say.
    #[default]
    Unsaid,
    /// It was exiting (exit() had begun, or a return from main) when it was asked to stop.
    Exiting,
}

impl Why {
    fn code(self) -> u8 {
        match self {
            Why::Unsaid => 0,
            Why::Exiting => 1,
        }
    }

    fn of(code: u8) -> Why {
        match code {
            1 => Why::Exiting,
            _ => Why::Unsaid,
        }
    }
}

/// The process a tree's failed checkpoint names, and why (the coordinator's Result to every
/// member): the one who asked says it in its own answer (ckpt-ctl's line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failure {
    pub why: Why,
    pub pid: i32,
    /// Its command name (/proc/PID/comm), NUL-padded.
    pub comm: [u8; 16],
    /// The previous set stays (there was one).
    pub kept: bool,
}

impl Failure {
    /// "process 1234 (cc1) exited during the checkpoint"; None when no reason is said.
    pub fn what(&self) -> Option<String> {
        let name = comm_text(&self.comm);
        match self.why {
            Why::Unsaid => None,
            Why::Exiting => Some(format!("process {} ({name}) exited during the checkpoint", self.pid)),
        }
    }

    /// `what` and what became of the sets: the line of a failed checkpoint.
    pub fn line(&self) -> Option<String> {
        Some(format!("{}; {}", self.what()?, kept_clause(self.kept)))
    }

    /// As a Result carries it: (reason, kept and pid; comm's two halves).
    pub fn encode(&self) -> (u64, u64, u64) {
        let (lo, hi) = self.comm.split_at(8);
        let word = self.why.code() as u64 | (self.kept as u64) << 8 | (self.pid as u32 as u64) << 32;
        (word, u64::from_ne_bytes(lo.try_into().unwrap()), u64::from_ne_bytes(hi.try_into().unwrap()))
    }

    pub fn decode(word: u64, lo: u64, hi: u64) -> Failure {
        let mut comm = [0u8; 16];
        comm[..8].copy_from_slice(&lo.to_ne_bytes());
        comm[8..].copy_from_slice(&hi.to_ne_bytes());
        Failure { why: Why::of(word as u8), pid: (word >> 32) as u32 as i32, comm, kept: (word >> 8) & 1 != 0 }
    }
}

/// What a failed checkpoint leaves: the previous set (`kept`: there is one), or none.
pub fn kept_clause(kept: bool) -> &'static str {
    if kept {
        "the previous image set is kept"
    } else {
        "no image set is written"
    }
}

/// A command name as /proc/PID/comm gives it (up to 15 bytes), NUL-padded.
pub fn comm_bytes(name: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let name = name.strip_suffix(b"\n").unwrap_or(name);
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name[..n]);
    out
}

/// The text of a NUL-padded command name.
pub fn comm_text(comm: &[u8; 16]) -> String {
    let n = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..n]).into_owned()
}

impl TreeMsg {
    pub fn encode(self) -> [u8; LEN] {
        let (k, a, b, c, d): (u32, u32, u64, u64, u64) = match self {
            TreeMsg::Request { stop, step } => (1, stop as u32, step as u64, 0, 0),
            TreeMsg::Paired => (14, 0, 0, 0, 0),
            TreeMsg::Stopped => (2, 0, 0, 0, 0),
            TreeMsg::Captured => (3, 0, 0, 0, 0),
            TreeMsg::Done { raw, stored, paused_ns } => (4, 1, raw, stored, paused_ns),
            TreeMsg::Failed { why, comm } => {
                let f = Failure { why, comm, ..Failure::default() }.encode();
                (4, 0, f.0, f.1, f.2)
            }
            TreeMsg::Solo => (5, 0, 0, 0, 0),
            TreeMsg::Stop { generation, members, stopped } => (6, members, generation, stopped as u64, 0),
            TreeMsg::Capture => (7, 0, 0, 0, 0),
            TreeMsg::Resume => (8, 0, 0, 0, 0),
            TreeMsg::Abort => (9, 0, 0, 0, 0),
            TreeMsg::Result { ok, failure } => {
                let f = failure.encode();
                (10, ok as u32, f.0, f.1, f.2)
            }
            TreeMsg::Hold => (11, 0, 0, 0, 0),
            TreeMsg::AskStop { pid } => (12, pid as u32, 0, 0, 0),
            TreeMsg::StopSig { pid, sig } => (13, pid as u32, sig as u64, 0, 0),
            TreeMsg::Running => (15, 0, 0, 0, 0),
            TreeMsg::AskStdio => (16, 0, 0, 0, 0),
            TreeMsg::OwnStdio { own, known } => (17, own, known as u64, 0, 0),
            TreeMsg::TakeControl => (18, 0, 0, 0, 0),
        };
        let mut out = [0u8; LEN];
        out[0..4].copy_from_slice(&k.to_ne_bytes());
        out[4..8].copy_from_slice(&a.to_ne_bytes());
        out[8..16].copy_from_slice(&b.to_ne_bytes());
        out[16..24].copy_from_slice(&c.to_ne_bytes());
        out[24..32].copy_from_slice(&d.to_ne_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<TreeMsg> {
        if b.len() != LEN {
            return None;
        }
        let w = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
        let q = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap());
        Some(match w(0) {
            1 => TreeMsg::Request { stop: w(4) != 0, step: q(8) != 0 },
            2 => TreeMsg::Stopped,
            3 => TreeMsg::Captured,
            // (An older runtime's failure: a Done not ok, all zero.)
            4 if w(4) != 0 => TreeMsg::Done { raw: q(8), stored: q(16), paused_ns: q(24) },
            4 => {
                let f = Failure::decode(q(8), q(16), q(24));
                TreeMsg::Failed { why: f.why, comm: f.comm }
            }
            5 => TreeMsg::Solo,
            6 => TreeMsg::Stop { generation: q(8), members: w(4), stopped: q(16) as u32 },
            7 => TreeMsg::Capture,
            8 => TreeMsg::Resume,
            9 => TreeMsg::Abort,
            10 => TreeMsg::Result { ok: w(4) != 0, failure: Failure::decode(q(8), q(16), q(24)) },
            11 => TreeMsg::Hold,
            12 => TreeMsg::AskStop { pid: w(4) as i32 },
            13 => TreeMsg::StopSig { pid: w(4) as i32, sig: q(8) as i32 },
            14 => TreeMsg::Paired,
            15 => TreeMsg::Running,
            16 => TreeMsg::AskStdio,
            17 => TreeMsg::OwnStdio { own: w(4), known: q(8) != 0 },
            18 => TreeMsg::TakeControl,
            _ => return None,
        })
    }
}

/// The file in a set's temporary directory where the root of a step task's tree names the
/// connections to other tasks that each other process drains (`ckpt_step::holders`); removed
/// once every process has captured.
pub const STEP_PAIRS: &str = "step-pairs";

/// The file in a set's temporary directory where the coordinator names, for each socket and
/// anonymous pipe that two processes or more of the cut hold, the lowest pid holding it (one
/// line each: `s INODE PID` for a socket, `p INODE PID` for a pipe), written while every
/// process is stopped, before Capture, and removed once every process has captured: that
/// process describes it, the others name it (the runtime's `treesocks`). Absent (kcmp could
/// not tell, a process with a directory of its own): each process reads the lower pids' fds.
pub const LOWEST_HOLDERS: &str = "lowest-holders";

/// `LOWEST_HOLDERS` of `lowest` (pipe, inode, pid).
pub fn encode_lowest(lowest: impl Iterator<Item = (bool, u64, i32)>) -> String {
    lowest.map(|(pipe, ino, pid)| format!("{} {ino} {pid}\n", if pipe { 'p' } else { 's' })).collect()
}

/// The sockets and pipes of `LOWEST_HOLDERS` text `text` that a process with a lower pid than
/// `me` holds: (socket inodes, pipe inodes), sorted. None: the text is not such a file.
pub fn lower_holders(text: &[u8], me: i32) -> Option<(Vec<u64>, Vec<u64>)> {
    let (mut sockets, mut pipes) = (Vec::new(), Vec::new());
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let mut w = line.split(|&b| b == b' ');
        let kind = w.next()?;
        let num = |w: Option<&[u8]>| std::str::from_utf8(w?).ok()?.parse::<u64>().ok();
        let (ino, pid) = (num(w.next())?, num(w.next())?);
        if pid >= me as u64 {
            continue;
        }
        match kind {
            b"s" => sockets.push(ino),
            b"p" => pipes.push(ino),
            _ => return None,
        }
    }
    sockets.sort_unstable();
    pipes.sort_unstable();
    Some((sockets, pipes))
}

/// The file in the directory a process's image goes to (the set's temporary directory, or its
/// own) where it lists its fds while it is stopped, before it says Stopped: `fds.<pid>`, one
/// `FD_RECORD` each (`encode_fds`). The coordinator reads it instead of stat'ing every fd of
/// every process through /proc (`samefds`: a tree of 128 processes holding 682 fds each spent
/// 140-340 ms of its pause on those lookups; a process's fstat of its own fd is ~8x cheaper and
/// the processes list theirs in parallel), and removes it. Absent (a runtime restored from an
/// older image, a failed write): the coordinator reads that process's fds through /proc.
pub fn fds_name(pid: i32) -> String {
    format!("fds.{pid}")
}

/// One fd of `fds_name`: fd, st_mode (u32), st_dev, st_ino (u64), little-endian.
pub const FD_RECORD: usize = 24;
const FDS_MAGIC: &[u8; 8] = b"ckptfds1";

/// `fds_name`'s content for `fds` (fd, st_mode, st_dev, st_ino), appended to `out`.
pub fn encode_fds(fds: impl Iterator<Item = (i32, u32, u64, u64)>, out: &mut Vec<u8>) {
    out.extend_from_slice(FDS_MAGIC);
    for (fd, mode, dev, ino) in fds {
        out.extend_from_slice(&fd.to_le_bytes());
        out.extend_from_slice(&mode.to_le_bytes());
        out.extend_from_slice(&dev.to_le_bytes());
        out.extend_from_slice(&ino.to_le_bytes());
    }
}

/// The fds of a `fds_name` file (fd, st_mode, st_dev, st_ino); None: not such a file.
pub fn decode_fds(bytes: &[u8]) -> Option<Vec<(i32, u32, u64, u64)>> {
    let body = bytes.strip_prefix(FDS_MAGIC)?;
    if body.len() % FD_RECORD != 0 {
        return None;
    }
    let word = |r: &[u8], at: usize, n: usize| r[at..at + n].iter().rev().fold(0u64, |v, &b| v << 8 | b as u64);
    Some(body.chunks_exact(FD_RECORD).map(|r| (word(r, 0, 4) as u32 as i32, word(r, 4, 4) as u32, word(r, 8, 8), word(r, 16, 8))).collect())
}

/// The coordinator's abstract socket name (with its leading NUL) for the namespace whose outer
/// process (ckpt-run, ckpt-restart) is `outer_pid`. Abstract names are per network namespace,
/// which the tree shares with the host: each side checks the other's credentials (the
/// coordinator is pid 1 of the member's pid namespace; members are processes inside it).
/// The name also holds the caller's pid namespace (the coordinator and its members share it):
/// outer pids alone are not unique when trees are nested (a step's tasks under ckpt-run inside
/// a tree, whose ckpt-run pids are numbers of the outer tree's namespace), and a second tree
/// whose outer process had the same number there could not listen ("Address already in use":
/// its children were not checkpointed) or its members reached the other tree's coordinator.
pub fn socket_name(outer_pid: i32) -> Vec<u8> {
    let ns = std::fs::read_link("/proc/self/ns/pid").ok().and_then(|l| {
        let l = l.to_string_lossy().into_owned();
        l.strip_prefix("pid:[")?.strip_suffix(']').map(str::to_owned)
    });
    format!("\0ckpt-tree-{outer_pid}-{}", ns.unwrap_or_default()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_holders_read_back_for_a_middle_pid() {
        let text = encode_lowest([(false, 900, 2), (true, 77, 2), (false, 901, 40), (false, 5, 3)].into_iter());
        assert_eq!(lower_holders(text.as_bytes(), 10), Some((vec![5, 900], vec![77])));
        assert_eq!(lower_holders(text.as_bytes(), 2), Some((vec![], vec![])));
        assert_eq!(lower_holders(b"x 1 2\n", 10), None);
    }

    #[test]
    fn fd_lists_read_back_and_a_torn_one_is_refused() {
        let fds = [(3, 0o140777, 8, 1 << 40), (700, 0o10600, 13, 42), (-1, 0, u64::MAX, 0)];
        let mut bytes = Vec::new();
        encode_fds(fds.iter().copied(), &mut bytes);
        assert_eq!(decode_fds(&bytes).as_deref(), Some(&fds[..]));
        assert_eq!(decode_fds(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_fds(b"ckptfds0"), None);
        assert_eq!(decode_fds(b"ckptfds1"), Some(Vec::new()));
    }

    #[test]
    fn round_trip() {
        for m in [
            TreeMsg::Request { stop: true, step: false },
            TreeMsg::Request { stop: false, step: true },
            TreeMsg::Paired,
            TreeMsg::Stopped,
            TreeMsg::Captured,
            TreeMsg::Done { raw: 1 << 40, stored: 7, paused_ns: 9 },
            TreeMsg::Failed { why: Why::Exiting, comm: comm_bytes(b"cc1\n") },
            TreeMsg::Failed { why: Why::Unsaid, comm: [0; 16] },
            TreeMsg::Solo,
            TreeMsg::Stop { generation: 5, members: 3, stopped: 0 },
            TreeMsg::Stop { generation: 6, members: 2, stopped: 20 },
            TreeMsg::Capture,
            TreeMsg::Resume,
            TreeMsg::Hold,
            TreeMsg::Abort,
            TreeMsg::Result { ok: false, failure: Failure::default() },
            TreeMsg::Result { ok: false, failure: Failure { why: Why::Exiting, pid: 1234, comm: comm_bytes(b"a-long-command-name"), kept: true } },
            TreeMsg::AskStop { pid: 12 },
            TreeMsg::StopSig { pid: 12, sig: 20 },
            TreeMsg::Running,
            TreeMsg::AskStdio,
            TreeMsg::OwnStdio { own: 0b101, known: true },
            TreeMsg::OwnStdio { own: 0, known: false },
            TreeMsg::TakeControl,
        ] {
            assert_eq!(TreeMsg::decode(&m.encode()), Some(m));
        }
        assert_eq!(TreeMsg::decode(&[0u8; 5]), None);
    }

    #[test]
    fn an_older_runtimes_failed_done_is_a_failure_it_does_not_explain() {
        let mut old = [0u8; LEN];
        old[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(TreeMsg::decode(&old), Some(TreeMsg::Failed { why: Why::Unsaid, comm: [0; 16] }));
    }

    #[test]
    fn a_failure_names_the_process_and_what_stays() {
        let f = Failure { why: Why::Exiting, pid: 1234, comm: comm_bytes(b"cc1\n"), kept: true };
        assert_eq!(f.line().as_deref(), Some("process 1234 (cc1) exited during the checkpoint; the previous image set is kept"));
        assert_eq!(Failure { kept: false, ..f }.line().as_deref(), Some("process 1234 (cc1) exited during the checkpoint; no image set is written"));
        assert_eq!(Failure::default().line(), None);
        assert_eq!(comm_text(&comm_bytes(b"0123456789abcdefgh")), "0123456789abcde");
    }
}
