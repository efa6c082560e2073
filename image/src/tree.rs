//! Image sets of process trees: one directory `NAME.ckpt/` holding one image per process
//! (`<pid>.ckpt`) and the manifest `tree`, which lists every process of the tree with its parent,
//! process group, session and state (a zombie with its wait status), and the shared kernel
//! objects found by identity in several processes' images.
//!
//! The coordinator (ckpt-ns's init) writes the manifest last, into the set's temporary directory,
//! and commits the set by one rename; the restarter reads it to rebuild the tree; ckpt-inspect
//! shows it. Text, one record per line, so that a user can read it:
//!
//! ```text
//! ckpt-tree 1
//! generation 3
//! root 4711
//! proc 4711 1 0 0 live 4711.ckpt
//! proc 4712 4711 0 0 live 4712.ckpt
//! proc 4713 4711 0 0 zombie 256
//! ```
//!
//! Version 2 (`ckpt-tree 2`) adds the open files that several processes hold, as the coordinator
//! found them with kcmp(2) while every process was stopped: one line per open file description
//! held by two processes or more, each holder as pid:fd (`same 4711:5 4712:5`). A version 2
//! manifest without `same` lines says no fd is shared; a version 1 manifest (written when kcmp
//! was not available) says nothing of it.
//!
//! A process that was stopped (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: job control) when the set was
//! taken has a line `stopped PID SIG` with the signal that stopped it: the restart stops it
//! again with that signal before any process of the tree runs. A ckpt that does not know these
//! lines refuses such a set at that line (it would restart the process running).
//!
//! A process that shares its parent's fd table (made by clone with CLONE_FILES: an fd opened or
//! closed by either is so for both) has a line `files PID PARENT`: the restart makes it with
//! CLONE_FILES again, and its parent restores the one table (its own image's fds; the child's
//! image holds the same fds, not used). A ckpt that does not know these lines refuses such a
//! set at that line (it would give each process a table of its own).
//!
//! A session of the tree whose controlling terminal is a pseudo-terminal has a line `ctty SID
//! INDEX FG`: its leader SID (a live process of the set), the terminal's /dev/pts index and its
//! foreground process group (0: not known). The restart gives it back to the session when the
//! pair is one of the tree's (its master held by a process of the set). A ckpt that does not
//! know these lines refuses such a set at that line (the session would lose its terminal).
//!
//! A process whose exit signal (the signal its parent gets when it ends) is not SIGCHLD, made by
//! clone with another one or none (`clone(fn, stack, 0, arg)`: its parent gets no signal, and
//! waits for it only with __WCLONE or __WALL), has a line `exitsig PID SIG` (SIG 0: none): the
//! restart makes it with that exit signal again. A ckpt that does not know these lines refuses
//! such a set at that line (it would make the process with SIGCHLD).
//!
//! A process that a restart runs again instead of restoring it (Slurm's srun: `rerun.rs`) has
//! a line `reexec PID` and its command in `PID.exec` of the set; its descendants (srun's helper)
//! are not made again. A ckpt that does not know these lines refuses such a set at that line (it
//! would restore srun and its helper, whose job step is gone).
//!
//! A process of root's tree that runs as another user (it dropped root's ids: setuid, setresuid,
//! setfsuid) has a line `ids PID RUID EUID SUID FSUID RGID EGID SGID FSGID [GROUP...]` with the
//! ids the coordinator (root) read from /proc at the cut, not from the image, which that process
//! wrote: a restart as root takes its image only if the image was taken by that EUID and records
//! exactly these ids, and restores that process as those ids from the start (ckpt-restart's
//! `run`). A ckpt that does not know these lines refuses such a set at that line (it would
//! refuse the image as another user's anyway).
//!
//! A live process that is in a time namespace other than the tree's (born after its parent's
//! unshare(CLONE_NEWTIME), zdtm timens_nested) has a line `timens PID NS MONO BOOT`: NS names the
//! namespace as the coordinator saw it (its inode: processes with the same NS shared one), MONO
//! and BOOT its CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets over the tree's namespace, in
//! nanoseconds. The restart makes each such namespace again with those offsets over the
//! restarted tree's own, once, and puts every process of it in it. A ckpt that does not know
//! these lines refuses such a set at that line (the process would come back in the tree's time
//! namespace, its clocks off by the offsets).
//!
//! A live process of the tree's own time namespace whose namespace for its children is one of
//! the `timens` lines' (it made it with unshare(CLONE_NEWTIME) and forked children into it
//! before the cut, zdtm timens_for_kids) has a line `timenskids PID NS MONO BOOT` as well: the
//! restart makes that namespace as the process's for its children, and its children enter it,
//! so that they and the children it forks later share one again. A ckpt that does not know
//! these lines refuses such a set at that line.
//!
//! One line `treetime NS` names the tree's own time namespace at the cut (the coordinator's for
//! its children), by inode: an fd of a process open on it (/proc/PID/ns/time, kept across a
//! fork: zdtm timens_nested) is opened on the restarted tree's again, and one open on a `timens`
//! line's namespace on that one's. A ckpt that does not know the line refuses the set at it.
//!
//! A live process's fd 0, 1 or 2 that is not the stdio whoever ran the tree gave it (not one
//! open file with any of the coordinator's fds 0 to 2, which are ckpt-run's or ckpt-restart's,
//! as kcmp found it at the cut: a shell's background job reads /dev/null, a process redirected
//! its own output to a file) has a line `ownstdio PID FD`: the restart gives that fd back as
//! its image describes, not ckpt-restart's stdio. Without such lines (a set from before them, or
//! no kcmp) every fd 0 to 2 is taken for the outside's. A ckpt that does not know these lines
//! refuses such a set at that line (it would give that fd ckpt-restart's stdio).
//!
//! pgid and sid are as the namespace sees them: 0 when they lie outside it (the outer ckpt-run's
//! group and session, which the restarted tree joins again the same way).

use std::path::Path;

/// The manifest's file name inside a set directory.
pub const MANIFEST: &str = "tree";
const MAGIC: &str = "ckpt-tree 1";
/// With the fds shared by several processes (`Manifest::same`).
const MAGIC_SAME: &str = "ckpt-tree 2";

/// One process of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeProc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub state: ProcState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcState {
    /// Running: its image is this file of the set.
    Live { image: String },
    /// Exited and not reaped by its parent: its wait status.
    Zombie { status: i32 },
}

/// The controlling terminal of a session of the tree (a `ctty` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctty {
    /// The session (its leader, a live process of the set).
    pub sid: i32,
    /// The pseudo-terminal's /dev/pts index.
    pub index: u32,
    /// The terminal's foreground process group (0: not known).
    pub fg: i32,
}

/// The /dev/pts index of a controlling terminal as /proc/PID/stat's tty_nr gives it (None: no
/// terminal, or not a pseudo-terminal).
pub fn pts_index_of_tty_nr(tty_nr: i64) -> Option<u32> {
    let dev = tty_nr as u64;
    let (major, minor) = ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00));
    (136..144).contains(&major).then(|| ((major - 136) * 256 + minor) as u32)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The set's checkpoint number.
    pub generation: u64,
    /// The process ckpt-run started (the namespace's init reports its end).
    pub root: i32,
    pub procs: Vec<TreeProc>,
    /// The open file descriptions held by two processes or more (each holder's (pid, fd)), as
    /// kcmp found them at the cut; None: not known (a version 1 set, or no kcmp).
    pub same: Option<Vec<Vec<(i32, i32)>>>,
    /// The live processes that share their parent's fd table: (pid, parent).
    pub tables: Vec<(i32, i32)>,
    /// The live processes that were stopped by a stop signal at the cut: (pid, signal).
    pub stopped: Vec<(i32, i32)>,
    /// The sessions whose controlling terminal is a pseudo-terminal.
    pub ctty: Vec<Ctty>,
    /// The processes whose exit signal is not SIGCHLD: (pid, signal; 0: none).
    pub exit_signals: Vec<(i32, i32)>,
    /// How many sets ckpt-run keeps (its `--keep`), so that a restarted tree goes on keeping as
    /// many; None: the default (a `keep` line is written only for another number).
    pub keep: Option<u32>,
    /// The live processes run again from their command (`rerun.rs`) instead of restored.
    pub reexec: Vec<i32>,
    /// The processes of root's tree that ran as other users, with their ids at the cut.
    pub ids: Vec<(i32, ProcIds)>,
    /// The live processes in a time namespace other than the tree's.
    pub timens: Vec<TimeNs>,
    /// The live processes whose namespace for their children is one of `timens`' (not their own).
    pub timens_kids: Vec<TimeNs>,
    /// The tree's own time namespace at the cut (its inode), if known.
    pub tree_time: Option<u64>,
    /// The fds 0 to 2 of live processes that were not the outside's stdio: (pid, fd).
    pub own_stdio: Vec<(i32, i32)>,
}

/// A process in a time namespace other than the tree's (a `timens` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeNs {
    pub pid: i32,
    /// The namespace's inode at the cut: processes with the same one shared it.
    pub ns: u64,
    /// Its CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets over the tree's namespace, in ns.
    pub monotonic: i64,
    pub boottime: i64,
}

/// A process's ids as /proc/PID/status shows them: user and group ids (real, effective, saved,
/// filesystem) and supplementary groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcIds {
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub groups: Vec<u32>,
}

impl ProcIds {
    /// From the text of /proc/PID/status (None: a line is missing).
    pub fn from_status(status: &str) -> Option<ProcIds> {
        let nums = |key: &str| -> Option<Vec<u32>> { status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect()) };
        let (u, g) = (nums("Uid:")?, nums("Gid:")?);
        Some(ProcIds { uids: u.try_into().ok()?, gids: g.try_into().ok()?, groups: nums("Groups:").unwrap_or_default() })
    }
}

/// The file name of process `pid`'s image in a set.
pub fn image_name(pid: i32) -> String {
    format!("{pid}.ckpt")
}

impl Manifest {
    pub fn encode(&self) -> String {
        let magic = if self.same.is_some() { MAGIC_SAME } else { MAGIC };
        let mut s = format!("{magic}\ngeneration {}\nroot {}\n", self.generation, self.root);
        for p in &self.procs {
            let state = match &p.state {
                ProcState::Live { image } => format!("live {image}"),
                ProcState::Zombie { status } => format!("zombie {status}"),
            };
            s.push_str(&format!("proc {} {} {} {} {state}\n", p.pid, p.ppid, p.pgid, p.sid));
        }
        for group in self.same.iter().flatten() {
            let held: Vec<String> = group.iter().map(|(pid, fd)| format!("{pid}:{fd}")).collect();
            s.push_str(&format!("same {}\n", held.join(" ")));
        }
        for (pid, parent) in &self.tables {
            s.push_str(&format!("files {pid} {parent}\n"));
        }
        for (pid, sig) in &self.stopped {
            s.push_str(&format!("stopped {pid} {sig}\n"));
        }
        for c in &self.ctty {
            s.push_str(&format!("ctty {} {} {}\n", c.sid, c.index, c.fg));
        }
        for (pid, sig) in &self.exit_signals {
            s.push_str(&format!("exitsig {pid} {sig}\n"));
        }
        if let Some(k) = self.keep {
            s.push_str(&format!("keep {k}\n"));
        }
        for pid in &self.reexec {
            s.push_str(&format!("reexec {pid}\n"));
        }
        for (pid, i) in &self.ids {
            let all: Vec<String> = i.uids.iter().chain(&i.gids).chain(&i.groups).map(u32::to_string).collect();
            s.push_str(&format!("ids {pid} {}\n", all.join(" ")));
        }
        for t in &self.timens_kids {
            s.push_str(&format!("timenskids {} {} {} {}\n", t.pid, t.ns, t.monotonic, t.boottime));
        }
        if let Some(ns) = self.tree_time {
            s.push_str(&format!("treetime {ns}\n"));
        }
        for t in &self.timens {
            s.push_str(&format!("timens {} {} {} {}\n", t.pid, t.ns, t.monotonic, t.boottime));
        }
        for (pid, fd) in &self.own_stdio {
            s.push_str(&format!("ownstdio {pid} {fd}\n"));
        }
        s
    }

    /// The ids process `pid` ran as, if it ran as another user in root's tree (`ids` lines).
    pub fn ids_of(&self, pid: i32) -> Option<&ProcIds> {
        self.ids.iter().find(|i| i.0 == pid).map(|i| &i.1)
    }

    /// The uid process `pid`'s image must have been taken by for user `euid` to restart it: its
    /// own effective uid when root restarts a process of its tree that ran as another user,
    /// else `euid`.
    pub fn taker(&self, pid: i32, euid: u32) -> u32 {
        match self.ids_of(pid) {
            Some(i) if euid == 0 => i.uids[1],
            _ => euid,
        }
    }

    /// Parse a manifest; None names the first line that is wrong.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let mut lines = text.lines();
        let mut m = Manifest::default();
        match lines.next() {
            Some(MAGIC) => {}
            Some(MAGIC_SAME) => m.same = Some(Vec::new()),
            _ => return Err("not a ckpt process-tree manifest".into()),
        }
        for (i, l) in lines.enumerate() {
            let bad = || format!("line {}: {l:?} is not understood", i + 2);
            let w: Vec<&str> = l.split(' ').collect();
            let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
            match w.as_slice() {
                ["generation", g] => m.generation = num(g)? as u64,
                ["root", r] => m.root = num(r)? as i32,
                ["proc", pid, ppid, pgid, sid, kind, arg] => {
                    let state = match *kind {
                        "live" if is_image_name(arg) => ProcState::Live { image: arg.to_string() },
                        "zombie" => ProcState::Zombie { status: num(arg)? as i32 },
                        _ => return Err(bad()),
                    };
                    let p = TreeProc { pid: num(pid)? as i32, ppid: num(ppid)? as i32, pgid: num(pgid)? as i32, sid: num(sid)? as i32, state };
                    if p.pid <= 1 || m.procs.iter().any(|q| q.pid == p.pid) {
                        return Err(bad());
                    }
                    m.procs.push(p);
                }
                ["same", held @ ..] if m.same.is_some() && held.len() >= 2 => {
                    let at = |h: &str| -> Result<(i32, i32), String> {
                        let (pid, fd) = h.split_once(':').ok_or_else(bad)?;
                        Ok((num(pid)? as i32, num(fd)? as i32))
                    };
                    let group = held.iter().map(|h| at(h)).collect::<Result<Vec<_>, _>>()?;
                    m.same.get_or_insert_with(Vec::new).push(group);
                }
                ["files", pid, parent] => {
                    let (pid, parent) = (num(pid)? as i32, num(parent)? as i32);
                    if m.tables.iter().any(|t| t.0 == pid) {
                        return Err(bad());
                    }
                    m.tables.push((pid, parent));
                }
                ["stopped", pid, sig] => {
                    let (pid, sig) = (num(pid)? as i32, num(sig)? as i32);
                    if !is_stop_signal(sig) || m.stopped.iter().any(|s| s.0 == pid) {
                        return Err(bad());
                    }
                    m.stopped.push((pid, sig));
                }
                ["ctty", sid, index, fg] => {
                    let c = Ctty { sid: num(sid)? as i32, index: u32::try_from(num(index)?).map_err(|_| bad())?, fg: num(fg)? as i32 };
                    if m.ctty.iter().any(|o| o.sid == c.sid) {
                        return Err(bad());
                    }
                    m.ctty.push(c);
                }
                ["exitsig", pid, sig] => {
                    let (pid, sig) = (num(pid)? as i32, num(sig)? as i32);
                    if !(0..=64).contains(&sig) || sig == libc::SIGCHLD || m.exit_signals.iter().any(|s| s.0 == pid) {
                        return Err(bad());
                    }
                    m.exit_signals.push((pid, sig));
                }
                ["keep", k] => {
                    let k = u32::try_from(num(k)?).map_err(|_| bad())?;
                    if k == 0 || m.keep.replace(k).is_some() {
                        return Err(bad());
                    }
                }
                ["reexec", pid] => {
                    let pid = num(pid)? as i32;
                    if m.reexec.contains(&pid) {
                        return Err(bad());
                    }
                    m.reexec.push(pid);
                }
                ["ids", pid, rest @ ..] if rest.len() >= 8 => {
                    let pid = num(pid)? as i32;
                    let n = rest.iter().map(|v| v.parse::<u32>().map_err(|_| bad())).collect::<Result<Vec<u32>, String>>()?;
                    if m.ids.iter().any(|i| i.0 == pid) {
                        return Err(bad());
                    }
                    let (u, g) = (&n[..4], &n[4..8]);
                    m.ids.push((pid, ProcIds { uids: [u[0], u[1], u[2], u[3]], gids: [g[0], g[1], g[2], g[3]], groups: n[8..].to_vec() }));
                }
                ["timens", pid, ns, mono, boot] => {
                    let ns = ns.parse::<u64>().map_err(|_| bad())?;
                    let t = TimeNs { pid: num(pid)? as i32, ns, monotonic: num(mono)?, boottime: num(boot)? };
                    // (Once per process; one namespace has one pair of offsets.)
                    if ns == 0 || m.timens.iter().any(|o| o.pid == t.pid || (o.ns == ns && (o.monotonic, o.boottime) != (t.monotonic, t.boottime))) {
                        return Err(bad());
                    }
                    m.timens.push(t);
                }
                ["timenskids", pid, ns, mono, boot] => {
                    let ns = ns.parse::<u64>().map_err(|_| bad())?;
                    let t = TimeNs { pid: num(pid)? as i32, ns, monotonic: num(mono)?, boottime: num(boot)? };
                    if ns == 0 || m.timens_kids.iter().any(|o| o.pid == t.pid || o.ns == ns) {
                        return Err(bad());
                    }
                    m.timens_kids.push(t);
                }
                ["treetime", ns] => {
                    let ns = ns.parse::<u64>().map_err(|_| bad())?;
                    if ns == 0 || m.tree_time.replace(ns).is_some() {
                        return Err(bad());
                    }
                }
                ["ownstdio", pid, fd] => {
                    let at = (num(pid)? as i32, num(fd)? as i32);
                    if !(0..3).contains(&at.1) || m.own_stdio.contains(&at) {
                        return Err(bad());
                    }
                    m.own_stdio.push(at);
                }
                [""] => {}
                _ => return Err(bad()),
            }
        }
        // (An ownstdio line names a live process of the set.)
        if let Some((pid, _)) = m.own_stdio.iter().find(|(pid, _)| !m.live().any(|(p, _)| p.pid == *pid)) {
            return Err(format!("the process {pid} with an ownstdio line is not a live process of the set"));
        }
        // (A stopped line names a live process of the set.)
        if let Some((pid, _)) = m.stopped.iter().find(|(pid, _)| !m.live().any(|(p, _)| p.pid == *pid)) {
            return Err(format!("the stopped process {pid} is not a live process of the set"));
        }
        // (A files line names a live process of the set and its live parent.)
        if let Some((pid, parent)) = m.tables.iter().find(|(pid, parent)| !m.live().any(|(p, _)| p.pid == *pid && p.ppid == *parent) || !m.live().any(|(p, _)| p.pid == *parent)) {
            return Err(format!("the process {pid} that shares the fd table of {parent} is not a live child of it in the set"));
        }
        // (An exitsig line names a process of the set.)
        if let Some((pid, _)) = m.exit_signals.iter().find(|(pid, _)| !m.procs.iter().any(|p| p.pid == *pid)) {
            return Err(format!("the process {pid} with exit signal line is not a process of the set"));
        }
        // (A ctty line names a live process of the set that leads its session.)
        if let Some(c) = m.ctty.iter().find(|c| !m.live().any(|(p, _)| p.pid == c.sid && p.sid == c.sid)) {
            return Err(format!("the controlling terminal's session {} is not led by a live process of the set", c.sid));
        }
        // (A reexec line names a live process of the set other than the root.)
        if let Some(pid) = m.reexec.iter().find(|&&pid| pid == m.root || !m.live().any(|(p, _)| p.pid == pid)) {
            return Err(format!("the process {pid} to run again is not a live process of the set other than its root"));
        }
        // (A timens line names a live process of the set.)
        if let Some(t) = m.timens.iter().find(|t| !m.live().any(|(p, _)| p.pid == t.pid)) {
            return Err(format!("the process {} in a time namespace of its own is not a live process of the set", t.pid));
        }
        // (A timenskids line names a live process of the set, not in a namespace of its own,
        // and a namespace a timens line names, with the same offsets.)
        if let Some(t) = m.timens_kids.iter().find(|t| !m.live().any(|(p, _)| p.pid == t.pid) || m.time_ns_of(t.pid).is_some() || !m.timens.iter().any(|o| o.ns == t.ns && (o.monotonic, o.boottime) == (t.monotonic, t.boottime))) {
            return Err(format!("the process {} whose time namespace for children is another's is not a live process of the tree's namespace, or that namespace is no process's", t.pid));
        }
        if !m.procs.iter().any(|p| p.pid == m.root && matches!(p.state, ProcState::Live { .. })) {
            return Err(format!("the root process {} is not a live process of the set", m.root));
        }
        Ok(m)
    }

    /// Read `DIR/tree` of a set directory (None: `dir` is no set).
    pub fn read(dir: &Path) -> Option<Result<Manifest, String>> {
        let p = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&p).ok()?;
        Some(Manifest::parse(&text).map_err(|e| format!("{}: {e}", p.display())))
    }

    pub fn live(&self) -> impl Iterator<Item = (&TreeProc, &str)> {
        self.procs.iter().filter_map(|p| match &p.state {
            ProcState::Live { image } => Some((p, image.as_str())),
            ProcState::Zombie { .. } => None,
        })
    }

    /// The image name of the root process (`parse` makes sure it is a live process of the set).
    pub fn root_image(&self) -> Option<&str> {
        self.live().find(|(p, _)| p.pid == self.root).map(|(_, image)| image)
    }

    /// The process whose fd table `pid` shares (its parent), if it shares one.
    pub fn table_parent(&self, pid: i32) -> Option<i32> {
        self.tables.iter().find(|t| t.0 == pid).map(|t| t.1)
    }

    /// The process that restores the fd table `pid` uses: the first of its parents (or itself)
    /// that does not share its own parent's.
    pub fn table_owner(&self, pid: i32) -> i32 {
        let mut at = pid;
        for _ in 0..self.procs.len() {
            match self.table_parent(at) {
                Some(p) => at = p,
                None => break,
            }
        }
        at
    }

    /// The signal that had stopped process `pid` at the cut, if it was stopped.
    pub fn stop_signal(&self, pid: i32) -> Option<i32> {
        self.stopped.iter().find(|s| s.0 == pid).map(|s| s.1)
    }

    /// The signal process `pid`'s parent gets when it ends (0: none).
    pub fn exit_signal(&self, pid: i32) -> i32 {
        self.exit_signals.iter().find(|s| s.0 == pid).map_or(libc::SIGCHLD, |s| s.1)
    }

    /// The processes a restart does not make: the descendants of those it runs again.
    pub fn not_made(&self) -> Vec<i32> {
        let mut out: Vec<i32> = Vec::new();
        let mut at: Vec<i32> = self.reexec.clone();
        while let Some(p) = at.pop() {
            let new: Vec<i32> = self.procs.iter().filter(|c| c.ppid == p && !out.contains(&c.pid)).map(|c| c.pid).collect();
            out.extend(&new);
            at.extend(new);
        }
        out
    }

    /// Leave out of the manifest the processes a restart does not make (`not_made`), and what
    /// it says of them.
    pub fn drop_not_made(&mut self) {
        let gone = self.not_made();
        let kept = |pid: &i32| !gone.contains(pid);
        self.procs.retain(|p| kept(&p.pid));
        if let Some(same) = self.same.as_mut() {
            for g in same.iter_mut() {
                g.retain(|(pid, _)| kept(pid));
            }
            same.retain(|g| g.len() >= 2);
        }
        self.tables.retain(|t| kept(&t.0));
        self.stopped.retain(|s| kept(&s.0));
        self.exit_signals.retain(|s| kept(&s.0));
        self.ctty.retain(|c| kept(&c.sid));
        self.ids.retain(|i| kept(&i.0));
        self.own_stdio.retain(|o| kept(&o.0));
        self.timens.retain(|t| kept(&t.pid));
        let left: Vec<u64> = self.timens.iter().map(|t| t.ns).collect();
        self.timens_kids.retain(|t| kept(&t.pid) && left.contains(&t.ns));
    }

    /// The namespace for its children process `pid` had, if one of `timens`' (not its own).
    pub fn kids_time_ns_of(&self, pid: i32) -> Option<&TimeNs> {
        self.timens_kids.iter().find(|t| t.pid == pid)
    }

    /// Whether fd `fd` (0 to 2) of process `pid` comes back as its image says rather than as the
    /// outside's stdio: it was not the outside's (`ownstdio` lines), and is not the stderr of a
    /// process run again (srun forwards its tasks' stderr there: their ckpt-restart's warnings).
    pub fn own_stdio(&self, pid: i32, fd: i32) -> bool {
        self.own_stdio.contains(&(pid, fd)) && !(fd == 2 && self.reexec.contains(&pid))
    }

    /// The time namespace process `pid` was in, if not the tree's.
    pub fn time_ns_of(&self, pid: i32) -> Option<&TimeNs> {
        self.timens.iter().find(|t| t.pid == pid)
    }

    /// The processes whose parent is `pid` (0: those whose parent is outside the set, init's).
    pub fn children_of(&self, pid: i32) -> impl Iterator<Item = &TreeProc> {
        let inside = |p: i32| self.procs.iter().any(|q| q.pid == p);
        self.procs.iter().filter(move |p| if pid == 0 { !inside(p.ppid) } else { p.ppid == pid })
    }
}

/// The signals whose default action stops a process (job control).
pub fn is_stop_signal(sig: i32) -> bool {
    matches!(sig, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

/// `<digits>.ckpt`: nothing that could leave the set directory.
fn is_image_name(s: &str) -> bool {
    s.strip_suffix(".ckpt").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `path` is a set directory (it holds a manifest).
pub fn is_set(path: &Path) -> bool {
    path.is_dir() && path.join(MANIFEST).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Manifest {
            generation: 3,
            root: 10,
            procs: vec![
                TreeProc { pid: 10, ppid: 1, pgid: 0, sid: 0, state: ProcState::Live { image: image_name(10) } },
                TreeProc { pid: 11, ppid: 10, pgid: 11, sid: 11, state: ProcState::Zombie { status: 256 } },
            ],
            same: None,
            tables: Vec::new(),
            stopped: Vec::new(),
            ctty: Vec::new(),
            exit_signals: Vec::new(),
            keep: None,
            reexec: Vec::new(),
            ids: Vec::new(),
            timens: Vec::new(),
            timens_kids: Vec::new(),
            tree_time: None,
            own_stdio: Vec::new(),
        };
        assert_eq!(Manifest::parse(&m.encode()), Ok(m.clone()));
        // Root's tree whose process 10 ran as other ids.
        let who = Manifest { ids: vec![(10, ProcIds { uids: [1, 2, 3, 2], gids: [5, 6, 7, 8], groups: vec![65534] })], ..m.clone() };
        assert_eq!(Manifest::parse(&who.encode()), Ok(who.clone()));
        assert!(who.encode().contains("ids 10 1 2 3 2 5 6 7 8 65534\n"));
        assert_eq!((who.taker(10, 0), who.taker(10, 1000), who.taker(11, 0)), (2, 1000, 0));
        let status = "Name:\tx\nUid:\t1\t2\t3\t2\nGid:\t5\t6\t7\t8\nFDSize:\t64\nGroups:\t65534 \n";
        assert_eq!(ProcIds::from_status(status), Some(who.ids[0].1.clone()));
        assert!(Manifest::parse(&format!("{}ids 10 1 2 3\n", m.encode())).is_err());
        // A live process's fd 0 that was not the outside's stdin (a shell's background job's
        // /dev/null): once per fd, 0 to 2 only, a live process of the set only.
        let own = Manifest { own_stdio: vec![(10, 0), (10, 2)], ..m.clone() };
        assert!(own.encode().ends_with("ownstdio 10 0\nownstdio 10 2\n"));
        assert_eq!(Manifest::parse(&own.encode()), Ok(own.clone()));
        assert!(own.own_stdio(10, 0) && !own.own_stdio(10, 1));
        // Run again (srun): its own stdin as it was, its stderr ckpt-restart's.
        let srun = Manifest { reexec: vec![10], ..own.clone() };
        assert!(srun.own_stdio(10, 0) && !srun.own_stdio(10, 2) && own.own_stdio(10, 2));
        for bad in ["ownstdio 10 3\n", "ownstdio 10 0\n", "ownstdio 99 0\n", "ownstdio 10 -1\n"] {
            assert!(Manifest::parse(&format!("{}{bad}", own.encode())).is_err(), "{bad}");
        }
        // srun (12) is run again; its helper (13) and the helper's child (14) are not made.
        let mut rerun = m.clone();
        for (pid, ppid) in [(12, 10), (13, 12), (14, 13)] {
            rerun.procs.push(TreeProc { pid, ppid, pgid: 0, sid: 0, state: ProcState::Live { image: image_name(pid) } });
        }
        rerun.reexec = vec![12];
        assert!(rerun.encode().ends_with("reexec 12\n"));
        assert_eq!(Manifest::parse(&rerun.encode()), Ok(rerun.clone()));
        assert_eq!(rerun.not_made(), vec![13, 14]);
        assert_eq!(m.not_made(), Vec::<i32>::new());
        let mut made = rerun.clone();
        made.same = Some(vec![vec![(12, 3), (13, 3)], vec![(10, 1), (12, 1), (14, 1)]]);
        made.drop_not_made();
        assert_eq!(made.procs.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert_eq!(made.same, Some(vec![vec![(10, 1), (12, 1)]]));
        // The root, a zombie, a process not in the set, twice: refused.
        for bad in ["reexec 10\n", "reexec 11\n", "reexec 99\n", "reexec 12\nreexec 12\n"] {
            let text = format!("{}{bad}", m.encode()).replace("reexec 12\n", "");
            let text = if bad.starts_with("reexec 12") { format!("{}{bad}", rerun.encode()) } else { text };
            assert!(Manifest::parse(&text).is_err(), "{bad:?}");
        }
        // ckpt-run --keep 5: a restarted tree keeps as many.
        let five = Manifest { keep: Some(5), ..m.clone() };
        assert!(five.encode().ends_with("keep 5\n"));
        assert_eq!(Manifest::parse(&five.encode()), Ok(five));
        assert!(Manifest::parse(&format!("{}keep 0\n", m.encode())).is_err());
        // A clone child without exit signal (a zombie here) and one with SIGUSR1.
        let mut quiet = m.clone();
        quiet.exit_signals = vec![(11, 0), (10, libc::SIGUSR1)];
        assert!(quiet.encode().contains("exitsig 11 0\nexitsig 10 10\n"));
        assert_eq!(Manifest::parse(&quiet.encode()), Ok(quiet.clone()));
        assert_eq!((quiet.exit_signal(11), quiet.exit_signal(10), m.exit_signal(11)), (0, libc::SIGUSR1, libc::SIGCHLD));
        // Not a process of the set, SIGCHLD itself, or not a signal: refused.
        for bad in [(12, 0), (11, libc::SIGCHLD), (11, 65)] {
            quiet.exit_signals = vec![bad];
            assert!(Manifest::parse(&quiet.encode()).is_err(), "{bad:?}");
        }
        let mut ctty = m.clone();
        ctty.procs[1].state = ProcState::Live { image: image_name(11) };
        ctty.ctty = vec![Ctty { sid: 11, index: 3, fg: 11 }];
        assert!(ctty.encode().contains("ctty 11 3 11\n"));
        assert_eq!(Manifest::parse(&ctty.encode()), Ok(ctty.clone()));
        let mut stopped = m.clone();
        stopped.stopped = vec![(10, libc::SIGTSTP)];
        assert!(stopped.encode().contains("stopped 10 20\n"));
        assert_eq!(Manifest::parse(&stopped.encode()), Ok(stopped.clone()));
        assert_eq!(stopped.stop_signal(10), Some(libc::SIGTSTP));
        assert_eq!(stopped.stop_signal(11), None);
        assert!(m.encode().starts_with("ckpt-tree 1\n"));
        let mut two = m.clone();
        two.same = Some(vec![vec![(10, 4), (11, 4), (11, 7)]]);
        assert!(two.encode().starts_with("ckpt-tree 2\n") && two.encode().contains("same 10:4 11:4 11:7\n"));
        assert_eq!(Manifest::parse(&two.encode()), Ok(two.clone()));
        two.same = Some(Vec::new());
        assert_eq!(Manifest::parse(&two.encode()), Ok(two.clone()));
        let mut tables = m.clone();
        tables.procs.push(TreeProc { pid: 12, ppid: 10, pgid: 0, sid: 0, state: ProcState::Live { image: image_name(12) } });
        tables.procs.push(TreeProc { pid: 13, ppid: 12, pgid: 0, sid: 0, state: ProcState::Live { image: image_name(13) } });
        tables.tables = vec![(12, 10), (13, 12)];
        assert!(tables.encode().contains("files 12 10\nfiles 13 12\n"));
        assert_eq!(Manifest::parse(&tables.encode()), Ok(tables.clone()));
        assert_eq!((tables.table_owner(13), tables.table_owner(12), tables.table_owner(10)), (10, 10, 10));
        // Not the parent, or a zombie: refused.
        tables.tables = vec![(13, 10)];
        assert!(Manifest::parse(&tables.encode()).is_err());
        tables.tables = vec![(11, 10)];
        assert!(Manifest::parse(&tables.encode()).is_err());
        assert_eq!(m.children_of(10).count(), 1);
        assert_eq!(m.children_of(0).map(|p| p.pid).collect::<Vec<_>>(), vec![10]);
    }

    #[test]
    fn refuses_paths_and_garbage() {
        assert!(Manifest::parse("ckpt-tree 1\nroot 5\nproc 5 1 0 0 live ../x.ckpt\n").is_err());
        assert!(Manifest::parse("ckpt-tree 1\nroot 5\nproc 5 1 0 0 zombie 0\n").is_err());
        assert!(Manifest::parse("hello").is_err());
        // `same` only in version 2, with two holders or more, each pid:fd.
        assert!(Manifest::parse("ckpt-tree 1\nroot 5\nproc 5 1 0 0 live 5.ckpt\nsame 5:3 6:3\n").is_err());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nsame 5:3\n").is_err());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nsame 5:3 6:x\n").is_err());
        assert!(Manifest::parse("ckpt-tree 1\nroot 5\nproc 5 1 0 0 live 5.ckpt\n").is_ok());
        // `stopped`: a live process of the set, a stop signal.
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nstopped 5 19\n").is_ok());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nstopped 5 9\n").is_err());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nstopped 6 19\n").is_err());
        // `ctty`: a live process of the set that leads its session, once.
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 5 5 live 5.ckpt\nctty 5 2 5\n").is_ok());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nctty 5 2 5\n").is_err());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 5 5 live 5.ckpt\nctty 5 -2 5\n").is_err());
        assert!(Manifest::parse("ckpt-tree 2\nroot 5\nproc 5 1 5 5 live 5.ckpt\nctty 5 2 5\nctty 5 3 5\n").is_err());
    }

    #[test]
    fn time_namespaces() {
        let two = "ckpt-tree 2\nroot 5\nproc 5 1 0 0 live 5.ckpt\nproc 6 5 0 0 live 6.ckpt\nproc 7 5 0 0 live 7.ckpt\nproc 8 5 0 0 zombie 0\n";
        let m = Manifest::parse(&format!("{two}timens 6 4026532999 1000000000000 -5\ntimens 7 4026532999 1000000000000 -5\n")).unwrap();
        assert_eq!(m.time_ns_of(7), Some(&TimeNs { pid: 7, ns: 4026532999, monotonic: 1_000_000_000_000, boottime: -5 }));
        assert_eq!(m.time_ns_of(5), None);
        assert_eq!(Manifest::parse(&m.encode()), Ok(m.clone()));
        let tree = Manifest::parse(&format!("{two}treetime 4026531834\n")).unwrap();
        assert_eq!(tree.tree_time, Some(4026531834));
        assert_eq!(Manifest::parse(&tree.encode()), Ok(tree.clone()));
        assert!(Manifest::parse(&format!("{two}treetime 1\ntreetime 2\n")).is_err());
        // Process 5 forked 6 and 7 into the namespace it keeps for its children.
        let kids = Manifest::parse(&format!("{two}timens 6 9 1 2\ntimens 7 9 1 2\ntimenskids 5 9 1 2\n")).unwrap();
        assert_eq!(kids.kids_time_ns_of(5).map(|t| t.ns), Some(9));
        assert_eq!(Manifest::parse(&kids.encode()), Ok(kids.clone()));
        // No process in it, other offsets, or a process in it itself: refused.
        for bad in ["timenskids 5 9 1 2\n", "timens 6 9 1 2\ntimenskids 5 9 1 3\n", "timens 6 9 1 2\ntimenskids 6 9 1 2\n"] {
            assert!(Manifest::parse(&format!("{two}{bad}")).is_err(), "{bad:?}");
        }
        // Twice for one process, one namespace with two pairs of offsets, a zombie, no inode.
        for bad in ["timens 6 9 1 1\ntimens 6 9 1 1\n", "timens 6 9 1 1\ntimens 7 9 1 2\n", "timens 8 9 1 1\n", "timens 6 0 1 1\n", "timens 6 9 1\n"] {
            assert!(Manifest::parse(&format!("{two}{bad}")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pts_index_from_tty_nr() {
        assert_eq!(pts_index_of_tty_nr(0), None);
        assert_eq!(pts_index_of_tty_nr(136 << 8 | 3), Some(3));
        assert_eq!(pts_index_of_tty_nr(137 << 8 | 1), Some(257));
        assert_eq!(pts_index_of_tty_nr(4 << 8 | 1), None); // /dev/tty1
    }
}
