//! The order in which a tree's processes are created so that each one gets its session back.
//!
//! A process gets a session in one of two ways only: it inherits its creator's session at fork,
//! or it calls setsid() and leads a session of its own id. So the plan says, for every creator,
//! what it creates and when it calls setsid():
//! - a child forked before its parent called setsid (its session is the one its parent was born
//!   in) is created before the parent's setsid, which needs the parent to be born in that session
//!   (and so on up the tree);
//! - an orphan (its parent exited: init's child) is created by a process of its session and
//!   reparented to init: with CLONE_PARENT by the root (init's child), else through a helper
//!   process that creates it and exits (as a double-forking daemon did);
//! - a session whose leader has exited is led again by a helper with the leader's id (clone3
//!   set_tid), which calls setsid(), creates the session's orphans and exits (reaped by the root);
//!   where a process born in that session has a parent outside it (a subreaper whose child
//!   double-forked, a CLONE_PARENT fork), the helper is that parent's child and creates it with
//!   CLONE_PARENT (one such parent per session: the helper has one parent).
//!
//! What cannot be made this way (a process in a session that neither its parent nor any ancestor
//! it could inherit from was in) is refused with one line. Process groups are joined afterwards,
//! once every process exists (`tree::enter_group`).

use ckpt_image::tree::{Manifest, ProcState, TreeProc};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create this process as our child.
    Child(i32),
    /// Create this process so that its parent is init.
    Orphan(i32),
    /// Create this process as our parent's child (CLONE_PARENT): a session helper's.
    Sibling(i32),
    /// Call setsid(): lead our own session from here on.
    Setsid,
    /// Create the helper that leads the session of this id (its leader exited) and creates
    /// that session's orphans; reap it once it has.
    SessionHelper(i32),
    /// Create (as an orphan) the helper that leads the process group of this id (its leader
    /// exited) until every member has joined it.
    GroupHelper(i32),
}

#[derive(Debug, Default)]
pub struct Plan {
    steps: HashMap<i32, Vec<Step>>,
}

impl Plan {
    /// What process (or session helper) `pid` does, in order.
    pub fn steps(&self, pid: i32) -> &[Step] {
        self.steps.get(&pid).map_or(&[], |v| v.as_slice())
    }

    /// How many group helpers the plan makes.
    pub fn group_helpers(&self) -> u32 {
        self.steps.values().flatten().filter(|s| matches!(s, Step::GroupHelper(_))).count() as u32
    }
}

/// When a creator does a step: before its setsid (0), the setsid (1), after it (2); zombies last.
type Rank = (u8, bool);

fn rank(s: &Step, before: bool, zombie: bool) -> Rank {
    match s {
        Step::Setsid => (1, false),
        _ => (if before { 0 } else { 2 }, zombie),
    }
}

/// The creation plan of manifest `m`.
pub fn plan(m: &Manifest) -> Result<Plan, String> {
    let by: HashMap<i32, &TreeProc> = m.procs.iter().map(|p| (p.pid, p)).collect();
    let leads = |p: &TreeProc| p.sid == p.pid;
    let orphan = |p: &TreeProc| !by.contains_key(&p.ppid);
    let zombie = |pid: i32| by.get(&pid).is_some_and(|p| matches!(p.state, ProcState::Zombie { .. }));
    // The session each leader must be born in (when a child of its needs that session).
    let mut born: HashMap<i32, i32> = HashMap::new();
    let mut need: Vec<(i32, i32, i32)> = Vec::new(); // (process, session it must be born in, for whom)
    for p in m.procs.iter().filter(|p| !leads(p) && !orphan(p)) {
        need.push((p.pid, p.sid, p.pid));
    }
    let wrong = |pid: i32, sid: i32| format!("process {pid} is in session {sid}, which neither its parent nor any process it could inherit it from was in: ckpt cannot restore that session");
    // A session whose leader exited is made again by a helper with the leader's id, which
    // creates (CLONE_PARENT) the processes born in it whose parent is not in it (a subreaper's
    // child that double-forked into a session of its own): the helper is that parent's child,
    // so there can be one such parent per session. Session -> that parent; process -> session.
    let mut helper_parent: HashMap<i32, i32> = HashMap::new();
    let mut sibling: HashMap<i32, i32> = HashMap::new();
    while let Some((pid, sid, whom)) = need.pop() {
        let p = by[&pid];
        if orphan(p) {
            continue; // made in its session by a member of it or a helper
        }
        let q = by[&p.ppid];
        if q.sid == sid {
            continue;
        }
        if sid != 0 && !by.contains_key(&sid) {
            match helper_parent.insert(sid, q.pid) {
                Some(other) if other != q.pid => {
                    return Err(format!(
                        "process {whom} is in session {sid}, whose leader exited, which was born of both process {other} and process {}: ckpt makes such a session again through one helper process with the leader's id, the child of one parent, and cannot restore that session",
                        q.pid
                    ))
                }
                _ => {}
            }
            sibling.insert(pid, sid);
            continue;
        }
        if !leads(q) {
            return Err(wrong(whom, sid));
        }
        match born.insert(q.pid, sid) {
            Some(old) if old != sid => return Err(wrong(whom, sid)),
            Some(_) => {}
            None => need.push((q.pid, sid, whom)),
        }
    }
    // The session a process must be created in (None: any, it calls setsid itself).
    let session_at_birth = |p: &TreeProc| if leads(p) { born.get(&p.pid).copied() } else { Some(p.sid) };
    let mut steps: HashMap<i32, Vec<(Step, Rank)>> = HashMap::new();
    let mut helpers = std::collections::HashSet::new();
    let mut add = |creator: i32, s: Step, before: bool, z: bool| steps.entry(creator).or_default().push((s, rank(&s, before, z)));
    // Who makes an orphan (or a group helper) in session `sid`: the root for its own session
    // (it was born in the outer one) or any, the session's leader after its setsid, else the
    // helper that leads the session again.
    let root = m.root;
    let has = |pid: i32| by.contains_key(&pid);
    let mut place = |add: &mut dyn FnMut(i32, Step, bool, bool), sid: Option<i32>, what: Step, z: bool| match sid {
        None | Some(0) => add(root, what, true, z),
        Some(s) if has(s) => add(s, what, false, z),
        Some(s) => {
            add(s, what, false, z);
            if helpers.insert(s) {
                let parent = helper_parent.get(&s).copied().unwrap_or(root);
                add(parent, Step::SessionHelper(s), parent == root, false);
            }
        }
    };
    for p in &m.procs {
        if leads(p) {
            add(p.pid, Step::Setsid, false, false);
        }
        let z = zombie(p.pid);
        if let Some(&s) = sibling.get(&p.pid) {
            place(&mut add, Some(s), Step::Sibling(p.pid), z);
            continue;
        }
        if !orphan(p) {
            let q = by[&p.ppid];
            // Before the parent's setsid when it needs the session the parent was born in.
            let before = leads(q) && session_at_birth(p).is_some_and(|s| s != q.pid);
            add(q.pid, Step::Child(p.pid), before, z);
            continue;
        }
        if p.pid == m.root {
            continue;
        }
        place(&mut add, session_at_birth(p), Step::Orphan(p.pid), z);
    }
    // A process group whose leader exited is led again by a helper with the leader's id in the
    // members' session (made as an orphan), until every member has joined it.
    let mut groups: Vec<(i32, i32)> = m.procs.iter().filter(|p| p.pgid != 0 && !by.contains_key(&p.pgid)).map(|p| (p.pgid, p.sid)).collect();
    groups.sort_unstable();
    groups.dedup_by_key(|g| g.0);
    for (g, sid) in groups {
        // (The group of a session whose leader exited is led by the session helper's orphans.)
        if sid != g || by.contains_key(&sid) {
            place(&mut add, Some(sid), Step::GroupHelper(g), false);
        }
    }
    let mut plan = Plan::default();
    for (creator, mut v) in steps {
        v.sort_by_key(|(s, r)| (*r, matches!(s, Step::SessionHelper(_))));
        plan.steps.insert(creator, v.into_iter().map(|(s, _)| s).collect());
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, ppid: i32, pgid: i32, sid: i32) -> TreeProc {
        TreeProc { pid, ppid, pgid, sid, state: ProcState::Live { image: format!("{pid}.ckpt") } }
    }

    #[test]
    fn a_child_forked_before_setsid_is_created_before_it() {
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 10, 10), proc(11, 10, 11, 11), proc(12, 11, 10, 10)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(10), &[Step::Setsid, Step::Child(11)]);
        assert_eq!(p.steps(11), &[Step::Child(12), Step::Setsid]);
    }

    #[test]
    fn an_orphan_of_a_dead_leader_gets_a_session_helper() {
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 0, 0), proc(13, 1, 12, 12)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(10), &[Step::SessionHelper(12)]);
        assert_eq!(p.steps(12), &[Step::Orphan(13)]);
    }

    #[test]
    fn a_group_whose_leader_exited_gets_a_group_helper_in_its_session() {
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 10, 10), proc(11, 10, 11, 11), proc(13, 11, 12, 11)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(11), &[Step::Setsid, Step::Child(13), Step::GroupHelper(12)]);
    }

    #[test]
    fn a_dead_leaders_session_under_a_live_parent_is_made_by_its_helper() {
        // 11 (a subreaper) forked 12, which called setsid, forked 13 and exited: 13 is 11's.
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 0, 0), proc(11, 10, 0, 0), proc(13, 11, 12, 12)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(11), &[Step::SessionHelper(12)]);
        assert_eq!(p.steps(12), &[Step::Sibling(13)]);
        // Born of two parents: one helper cannot be the child of both.
        let two = Manifest { procs: vec![proc(10, 1, 0, 0), proc(11, 10, 0, 0), proc(13, 11, 12, 12), proc(14, 10, 12, 12)], ..m };
        assert!(plan(&two).unwrap_err().contains("born of both process"));
    }

    #[test]
    fn an_impossible_session_is_refused() {
        // 12 is in 11's session (11 lives) but its parent, the root, never was (a CLONE_PARENT
        // fork by 11: not made again).
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 0, 0), proc(11, 10, 11, 11), proc(12, 10, 12, 11)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new() };
        assert!(plan(&m).unwrap_err().contains("process 12 is in session 11"));
    }
}
