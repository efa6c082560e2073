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
//!   set_tid), which calls setsid(), creates the session's orphans and exits (reaped by its
//!   creator). A process born in that session whose parent never was in it is made by that
//!   helper: with CLONE_PARENT when the helper is its parent's child, else handed up to its
//!   parent (`Step::Deliver`: made through a helper that exits while the parent is a child
//!   subreaper, `handover`), which must then be above the helper while the tree is made. So the
//!   helper's parent is the lowest of those parents, and the others must be above it; when they
//!   are not (two branches of the tree), one of them that leads its own session is born in the
//!   dead leader's session instead (made by the helper and handed up to its own parent), as a
//!   process that called setsid late was (zdtm session02);
//! - likewise a process of a live leader's session whose parent never was in it (a CLONE_PARENT
//!   fork by the leader, a leader's child handed up to a subreaper when its creator exited) is
//!   made by the leader after its setsid and handed up to its parent, which must be above the
//!   leader; when it is not, the leader itself is made below that parent (by the deepest such
//!   parent, in the session the leader is born in) and handed up to its own parent (`under`);
//!   else its parent, when it leads a session of its own, is born in that session (not one that
//!   is above another such parent, when there is a choice).
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
    /// Create this process (k) through a helper that exits once k is made, while process q,
    /// above us, is a child subreaper: k becomes q's child (a session helper's).
    Deliver(i32, i32),
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

    /// Whether the plan hands a process up to its parent (`Step::Deliver`): the tree is then
    /// made one process at a time (`handover`).
    pub fn hands_up(&self) -> bool {
        self.steps.values().flatten().any(|s| matches!(s, Step::Deliver(..)))
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
    let dead = |s: i32| s != 0 && !by.contains_key(&s);
    let zombie = |pid: i32| by.get(&pid).is_some_and(|p| matches!(p.state, ProcState::Zombie { .. }));
    let root = m.root;
    let wrong = |pid: i32, sid: i32| format!("process {pid} is in session {sid}, which neither its parent nor any process it could inherit it from was in: ckpt cannot restore that session");
    // The session each leader must be born in (when a child of its needs that session; the
    // root is born in the outer one), and the parent of each dead leader's session helper.
    let mut born: HashMap<i32, i32> = HashMap::new();
    let mut helper_at: HashMap<i32, i32> = HashMap::new();
    // Live leaders made by another process than their parent (below a process that must be
    // above them) and handed up to their parent: leader -> its maker.
    let mut under: HashMap<i32, i32> = HashMap::new();
    let born_in = |born: &HashMap<i32, i32>, p: &TreeProc| if p.pid == root && leads(p) { Some(0) } else if leads(p) { born.get(&p.pid).copied() } else { Some(p.sid) };
    // Whether process q is in session s at some time (so it can fork a process into it).
    let provides = |born: &HashMap<i32, i32>, q: &TreeProc, s: i32| (leads(q) && q.pid == s) || born_in(born, q) == Some(s) || (q.pid == root && s == 0);
    // The session in which process p is made by another process than its parent and handed up
    // to it: p is born in it and its parent never is in it. Its maker is the session's leader,
    // or the helper that leads it again when it exited.
    let handed = |born: &HashMap<i32, i32>, p: &TreeProc| born_in(born, p).filter(|&s| p.pid != root && !orphan(p) && s != 0 && !provides(born, by[&p.ppid], s));
    // The process above p while the tree is made: its parent, or its maker (a helper: the
    // helper's parent, `helper_at`; a leader made below a process it must be below: `under`).
    let maker = |born: &HashMap<i32, i32>, helper_at: &HashMap<i32, i32>, under: &HashMap<i32, i32>, p: &TreeProc| -> i32 {
        if p.pid == root || orphan(p) {
            return root;
        }
        if let Some(&q) = under.get(&p.pid) {
            return q;
        }
        match handed(born, p) {
            Some(s) if !dead(s) => s,
            Some(s) => helper_at.get(&s).copied().unwrap_or(p.ppid),
            None => p.ppid,
        }
    };
    // The processes above `pid` while the tree is made (itself first); None: a cycle.
    let above = |born: &HashMap<i32, i32>, helper_at: &HashMap<i32, i32>, under: &HashMap<i32, i32>, pid: i32| -> Option<Vec<i32>> {
        let mut v = vec![pid];
        let mut at = pid;
        while at != root {
            at = maker(born, helper_at, under, by[&at]);
            if v.contains(&at) || v.len() > by.len() {
                return None;
            }
            v.push(at);
        }
        Some(v)
    };
    // (0: the outer session, the root's at its birth.)
    let mut sessions: Vec<i32> = m.procs.iter().map(|p| p.sid).collect();
    sessions.sort_unstable();
    sessions.dedup();
    let mut rounds = 0;
    'again: loop {
        rounds += 1;
        if rounds > 4 * by.len() + 8 {
            return Err("the sessions of this tree need an order of creation ckpt did not find: it cannot restore them".into());
        }
        for &s in &sessions {
            // The parents of processes born in s that are never in s themselves.
            let mut needy: Vec<(i32, i32)> = Vec::new(); // (parent, for whom)
            for p in m.procs.iter().filter(|p| p.pid != root && !orphan(p) && born_in(&born, p) == Some(s)) {
                let q = by[&p.ppid];
                if !provides(&born, q, s) && !needy.iter().any(|n| n.0 == q.pid) {
                    needy.push((q.pid, p.pid));
                }
            }
            if needy.is_empty() {
                helper_at.remove(&s);
                continue;
            }
            // A parent that leads its own session and whose own parent is in s at some time was
            // born in s (forked there before its setsid, as zdtm session03's trees do), and so
            // were the session leaders between it and an ancestor in s: tried first, since
            // handing their children up instead can need one above the very helper that makes
            // its parent.
            let born_of_ancestors = needy.iter().find_map(|n| {
                let mut chain = Vec::new();
                let mut q = by[&n.0];
                while q.pid != root && leads(q) && !born.contains_key(&q.pid) && !orphan(q) && !chain.contains(&q.pid) {
                    chain.push(q.pid);
                    let parent = by[&q.ppid];
                    if provides(&born, parent, s) {
                        return Some(chain);
                    }
                    q = parent;
                }
                None
            });
            if let Some(chain) = born_of_ancestors {
                born.extend(chain.into_iter().map(|q| (q, s)));
                continue 'again;
            }
            if !dead(s) {
                // The leader makes them and hands each up to its parent, when that is above it.
                if s != 0 && above(&born, &helper_at, &under, s).is_some_and(|v| needy.iter().all(|n| v.contains(&n.0))) {
                    continue;
                }
                // Else the leader itself may be made below them (by the deepest, above which
                // are the others and the leader's own parent) and handed up to its parent, when
                // nothing else decides where it is made (zdtm session03's deep trees).
                let l = by.get(&s).copied();
                // (A leader born in a session before its setsid is made by one in that session.)
                if let Some(l) = l.filter(|l| l.pid != root && !orphan(l) && handed(&born, l).is_none() && !under.contains_key(&l.pid)) {
                    let fits = |c: &Vec<i32>| born.get(&s).is_none_or(|&b| provides(&born, by[&c[0]], b));
                    let deepest = needy.iter().filter_map(|n| above(&born, &helper_at, &under, n.0)).find(|c| needy.iter().all(|n| c.contains(&n.0)) && c.contains(&l.ppid) && !c.contains(&s) && fits(c));
                    if let Some(c) = deepest {
                        under.insert(s, c[0]);
                        continue 'again;
                    }
                }
            } else {
                // One helper makes them all: its parent is the deepest of them, and each other
                // one is above it (the process is handed up to it when a helper exits).
                let chains: Option<Vec<Vec<i32>>> = needy.iter().map(|n| above(&born, &helper_at, &under, n.0)).collect();
                let Some(chains) = chains else { return Err(wrong(needy[0].1, s)) };
                if let Some(deep) = chains.iter().find(|c| needy.iter().all(|n| c.contains(&n.0))) {
                    if helper_at.insert(s, deep[0]) != Some(deep[0]) {
                        continue 'again;
                    }
                    continue;
                }
            }
            // Else a parent that leads its own session is born in s (its own parent then needs s);
            // not one above s's live leader, which is made before it.
            let over_leader = if by.contains_key(&s) { above(&born, &helper_at, &under, s).unwrap_or_default() } else { Vec::new() };
            let can = |n: &&(i32, i32)| by[&n.0].pid != root && leads(by[&n.0]) && !born.contains_key(&n.0) && !over_leader.contains(&n.0);
            // Not one above another of them, when there is a choice: it would be made by the
            // very helper that must be below that other one.
            let below_all = |n: &&(i32, i32)| !needy.iter().any(|o| o.0 != n.0 && above(&born, &helper_at, &under, o.0).is_some_and(|v| v.contains(&n.0)));
            let pick = needy.iter().rev().find(|n| can(n) && below_all(n)).or_else(|| needy.iter().rev().find(can));
            match pick {
                Some(&(q, _)) => {
                    born.insert(q, s);
                    continue 'again;
                }
                _ => {
                    let (q, whom) = needy[0];
                    return Err(match helper_at.get(&s) {
                        Some(&h) if dead(s) => format!("process {whom} is in session {s}, whose leader exited, which was born of both process {h} and process {q}: ckpt makes such a session again through one helper process with the leader's id, and cannot restore that session"),
                        _ => wrong(whom, s),
                    });
                }
            }
        }
        break;
    }
    // Every process made by a helper is handed to its parent, which is above that helper.
    for p in m.procs.iter().filter(|p| handed(&born, p).is_some() || under.contains_key(&p.pid)) {
        let mk = maker(&born, &helper_at, &under, p);
        if above(&born, &helper_at, &under, mk).is_none_or(|v| !v.contains(&p.ppid)) {
            return Err(wrong(p.pid, p.sid));
        }
    }
    let session_at_birth = |p: &TreeProc| born_in(&born, p).filter(|_| p.pid != root);
    let mut steps: HashMap<i32, Vec<(Step, Rank)>> = HashMap::new();
    let mut helpers = std::collections::HashSet::new();
    let mut add = |creator: i32, s: Step, before: bool, z: bool| steps.entry(creator).or_default().push((s, rank(&s, before, z)));
    // Who makes an orphan (or a group helper) in session `sid`: the root for its own session
    // (it was born in the outer one) or any, the session's leader after its setsid, else the
    // helper that leads the session again.
    let has = |pid: i32| by.contains_key(&pid);
    let mut place = |add: &mut dyn FnMut(i32, Step, bool, bool), sid: Option<i32>, what: Step, z: bool| match sid {
        None | Some(0) => add(root, what, true, z),
        Some(s) if has(s) => add(s, what, false, z),
        Some(s) => {
            add(s, what, false, z);
            if helpers.insert(s) {
                let parent = helper_at.get(&s).copied().unwrap_or(root);
                add(parent, Step::SessionHelper(s), parent == root, false);
            }
        }
    };
    for p in &m.procs {
        if leads(p) {
            add(p.pid, Step::Setsid, false, false);
        }
        if p.pid == root {
            continue;
        }
        let z = zombie(p.pid);
        if orphan(p) {
            place(&mut add, session_at_birth(p), Step::Orphan(p.pid), z);
            continue;
        }
        let q = by[&p.ppid];
        if let Some(&mk) = under.get(&p.pid) {
            // Before its maker's setsid when it is born in the session its maker was born in.
            let before = leads(by[&mk]) && born.get(&p.pid).is_some_and(|&b| b != mk);
            add(mk, Step::Deliver(p.pid, q.pid), before, z);
            continue;
        }
        let Some(s) = handed(&born, p) else {
            // Before the parent's setsid when it needs the session the parent was born in.
            let before = leads(q) && session_at_birth(p).is_some_and(|s| s != q.pid);
            add(q.pid, Step::Child(p.pid), before, z);
            continue;
        };
        let what = if helper_at.get(&s) == Some(&q.pid) { Step::Sibling(p.pid) } else { Step::Deliver(p.pid, q.pid) };
        place(&mut add, Some(s), what, z);
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
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 10, 10), proc(11, 10, 11, 11), proc(12, 11, 10, 10)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(10), &[Step::Setsid, Step::Child(11)]);
        assert_eq!(p.steps(11), &[Step::Child(12), Step::Setsid]);
    }

    #[test]
    fn an_orphan_of_a_dead_leader_gets_a_session_helper() {
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 0, 0), proc(13, 1, 12, 12)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(10), &[Step::SessionHelper(12)]);
        assert_eq!(p.steps(12), &[Step::Orphan(13)]);
    }

    #[test]
    fn a_group_whose_leader_exited_gets_a_group_helper_in_its_session() {
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 10, 10), proc(11, 10, 11, 11), proc(13, 11, 12, 11)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(11), &[Step::Setsid, Step::Child(13), Step::GroupHelper(12)]);
    }

    #[test]
    fn a_dead_leaders_session_under_a_live_parent_is_made_by_its_helper() {
        // 11 (a subreaper) forked 12, which called setsid, forked 13 and exited: 13 is 11's.
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 0, 0), proc(11, 10, 0, 0), proc(13, 11, 12, 12)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(11), &[Step::SessionHelper(12)]);
        assert_eq!(p.steps(12), &[Step::Sibling(13)]);
        // Born of two parents, one above the other: the helper is the lower one's child and
        // hands the other's child up to it.
        let two = Manifest { procs: vec![proc(10, 1, 0, 0), proc(11, 10, 0, 0), proc(13, 11, 12, 12), proc(14, 10, 12, 12)], ..m };
        let p = plan(&two).unwrap();
        assert_eq!(p.steps(11), &[Step::SessionHelper(12)]);
        assert_eq!(p.steps(12), &[Step::Sibling(13), Step::Deliver(14, 10)]);
    }

    #[test]
    fn sessions_whose_leaders_exited_under_two_branches_are_made_through_a_leader_born_in_one() {
        // zdtm session02's tree: 0 (a subreaper) made 1 made 2, which called setsid, made 3 with
        // CLONE_PARENT (1's) and exited; 3 made 4 made 5, and 5 made 6 and 7, which called
        // setsid, made 8 and 9 with CLONE_PARENT (5's) and exited; 9 made 10 and exited while 1
        // was a subreaper; 4 exited (5 is 0's); then 1 and 5 called setsid.
        let procs = vec![proc(100, 1, 0, 0), proc(101, 100, 101, 101), proc(103, 101, 102, 102), proc(110, 101, 107, 107), proc(105, 100, 105, 105), proc(106, 105, 102, 102), proc(108, 105, 107, 107)];
        let m = Manifest { generation: 1, root: 100, procs, same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        let p = plan(&m).unwrap();
        // 5 is born in session 2 (its helper, 1's child, hands it up to 0) and makes 6 before
        // its setsid; 7's helper is 5's child and hands 10 up to 1.
        assert_eq!(p.steps(101), &[Step::Setsid, Step::SessionHelper(102)]);
        assert_eq!(p.steps(102), &[Step::Sibling(103), Step::Deliver(105, 100)]);
        assert_eq!(p.steps(105), &[Step::Child(106), Step::Setsid, Step::SessionHelper(107)]);
        assert_eq!(p.steps(107), &[Step::Deliver(110, 101), Step::Sibling(108)]);
    }

    #[test]
    fn an_impossible_session_is_refused() {
        // 12 is in the root's session (10 called setsid) but its parent 13 never was: 13 does
        // not lead a session (it was forked before the root's setsid and stayed in the outer
        // one), and no process below 13 can be in the root's session. (A live leader that is
        // not the root can be made below such a parent and handed up: see below.)
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 10, 10), proc(13, 10, 0, 0), proc(12, 13, 12, 10)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        assert!(plan(&m).unwrap_err().contains("process 12 is in session 10"));
    }

    #[test]
    fn a_live_leaders_member_under_a_process_above_it_is_handed_up() {
        // 11 called setsid and forked 12 with CLONE_PARENT (the root's child): 11 makes it
        // again and hands it up to the root.
        let m = Manifest { generation: 1, root: 10, procs: vec![proc(10, 1, 0, 0), proc(11, 10, 11, 11), proc(12, 10, 12, 11)], same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        let p = plan(&m).unwrap();
        assert_eq!(p.steps(11), &[Step::Setsid, Step::Deliver(12, 10)]);
    }

    /// What the plan makes when run as the restart runs it (one process at a time): each
    /// process's parent and session; a process handed up must go to a process above its maker.
    fn simulate(m: &Manifest, p: &Plan) -> Result<HashMap<i32, (i32, i32)>, String> {
        struct Sim<'a> {
            p: &'a Plan,
            at: HashMap<i32, (i32, i32)>,
            stack: Vec<i32>,
        }
        impl Sim<'_> {
            fn make(&mut self, k: i32, parent: i32, sid: i32) -> Result<(), String> {
                if self.at.insert(k, (parent, sid)).is_some() && !self.stack.is_empty() {
                    return Err(format!("{k} made twice"));
                }
                self.go(k)
            }
            fn go(&mut self, pid: i32) -> Result<(), String> {
                self.stack.push(pid);
                for step in self.p.steps(pid).to_vec() {
                    let (parent, sid) = self.at[&pid];
                    match step {
                        Step::Setsid => self.at.get_mut(&pid).unwrap().1 = pid,
                        Step::Child(k) => self.make(k, pid, sid)?,
                        Step::Sibling(k) => self.make(k, parent, sid)?,
                        Step::Orphan(k) => self.make(k, 1, sid)?,
                        Step::Deliver(k, q) => {
                            if !self.stack[..self.stack.len() - 1].contains(&q) {
                                return Err(format!("{k} handed to {q}, which is not above {pid}"));
                            }
                            self.make(k, q, sid)?
                        }
                        Step::SessionHelper(s) => {
                            self.make(s, pid, s)?;
                            self.at.remove(&s);
                        }
                        Step::GroupHelper(_) => {}
                    }
                }
                self.stack.pop();
                Ok(())
            }
        }
        let root = m.procs.iter().find(|x| x.pid == m.root).expect("root");
        let mut sim = Sim { p, at: HashMap::from([(m.root, (root.ppid, 0))]), stack: Vec::new() };
        sim.go(m.root)?;
        Ok(sim.at)
    }

    /// The plan of `m` makes every process with its parent (init for an orphan) and session.
    fn faithful(m: &Manifest) -> Result<(), String> {
        let p = plan(m)?;
        let at = simulate(m, &p).map_err(|e| format!("simulation: {e}"))?;
        let tree: std::collections::HashSet<i32> = m.procs.iter().map(|x| x.pid).collect();
        for x in &m.procs {
            let want_parent = if tree.contains(&x.ppid) || x.pid == m.root { x.ppid } else { 1 };
            let got = at.get(&x.pid).copied();
            if got != Some((want_parent, x.sid)) {
                panic!("process {} made as (parent, session) {got:?}, was ({want_parent}, {}); plan {p:?}; tree {:?}", x.pid, x.sid, m.procs);
            }
        }
        Ok(())
    }

    #[test]
    fn the_plans_of_the_examples_make_their_trees() {
        let t = |procs: Vec<TreeProc>| Manifest { generation: 1, root: procs[0].pid, procs, same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        faithful(&t(vec![proc(10, 1, 10, 10), proc(11, 10, 11, 11), proc(12, 11, 10, 10)])).unwrap();
        faithful(&t(vec![proc(10, 1, 0, 0), proc(13, 1, 12, 12)])).unwrap();
        faithful(&t(vec![proc(10, 1, 0, 0), proc(11, 10, 0, 0), proc(13, 11, 12, 12), proc(14, 10, 12, 12)])).unwrap();
        faithful(&t(vec![proc(100, 1, 0, 0), proc(101, 100, 101, 101), proc(103, 101, 102, 102), proc(110, 101, 107, 107), proc(105, 100, 105, 105), proc(106, 105, 102, 102), proc(108, 105, 107, 107)])).unwrap();
        faithful(&t(vec![proc(10, 1, 0, 0), proc(11, 10, 11, 11), proc(12, 10, 12, 11)])).unwrap();
    }

    #[test]
    fn session_leaders_born_in_a_session_before_their_setsid_are_born_there_again() {
        let t = |procs: Vec<TreeProc>| Manifest { generation: 1, root: procs[0].pid, procs, same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        // 11 (exited) led session 11 and forked 12 with CLONE_PARENT (the root's); 12 forked 13,
        // which forked 14 and called setsid: 14 is in session 11, 13 leads its own. (Handing 14
        // up to 13 instead needed 13 above the helper that makes 12: refused before.)
        faithful(&t(vec![proc(10, 1, 10, 10), proc(12, 10, 11, 11), proc(13, 12, 13, 13), proc(14, 13, 11, 11)])).unwrap();
        // The same through two leaders: 13 forked 14, which forked 15; 14 and 13 called setsid.
        faithful(&t(vec![proc(10, 1, 10, 10), proc(12, 10, 11, 11), proc(13, 12, 13, 13), proc(14, 13, 14, 14), proc(15, 14, 11, 11)])).unwrap();
        // A live leader's session: 12 (11's child) called setsid and forked 13 with CLONE_PARENT
        // (11's) and 14 the same way, which forked 15, which forked 16; 15 and 14 called setsid.
        // Not 11 but 14 and 15 were born in session 12 (11 is above its leader).
        faithful(&t(vec![proc(10, 1, 10, 10), proc(11, 10, 11, 11), proc(12, 11, 12, 12), proc(13, 11, 12, 12), proc(14, 11, 14, 14), proc(15, 14, 15, 15), proc(16, 15, 12, 12)])).unwrap();
    }

    #[test]
    fn a_live_leader_is_made_below_a_parent_of_its_members_and_handed_up() {
        // 112 (102's child) is in 108's session, 102 never was (112 was handed up to 102, a
        // subreaper then, and 108 past 102 to the root): 108 is the root's child, 102 is not
        // above it. 102 makes 108 and hands it up to the root; 108 makes 112 and hands it up
        // to 102 (one of 20,000 deep random trees; refused before).
        let z = |p: TreeProc| TreeProc { state: ProcState::Zombie { status: 0 }, ..p };
        let procs = vec![proc(100, 1, 100, 100), proc(101, 100, 101, 101), proc(102, 100, 102, 102), z(proc(103, 102, 0, 0)), z(proc(106, 102, 102, 102)), z(proc(107, 102, 107, 107)), proc(108, 100, 108, 108), z(proc(111, 100, 102, 102)), z(proc(112, 102, 108, 108)), proc(113, 100, 113, 113), z(proc(114, 100, 100, 100)), proc(117, 100, 113, 113), proc(118, 100, 118, 118)];
        let m = Manifest { generation: 1, root: 100, procs, same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        faithful(&m).unwrap();
        assert!(plan(&m).unwrap().steps(102).contains(&Step::Deliver(108, 100)));
    }

    #[test]
    fn a_dead_leaders_helper_is_not_made_above_the_parents_it_must_be_below() {
        // Session 108 (its leader exited) has members under 107, 111 and 104 (107 and 111 are
        // 104's children, 107 in 106's session); 111 and 104 lead their own. 111 is born in
        // session 108, not 104, which is above 107 (the helper that would make 104 must be
        // below 107): refused before (one of 20,000 deep random trees).
        let z = |p: TreeProc| TreeProc { state: ProcState::Zombie { status: 0 }, ..p };
        let procs = vec![proc(100, 1, 0, 0), proc(101, 100, 0, 0), proc(102, 101, 0, 0), z(proc(103, 100, 0, 0)), proc(104, 100, 104, 104), proc(105, 104, 104, 104), proc(106, 104, 106, 106), proc(107, 104, 106, 106), proc(110, 107, 108, 108), proc(111, 104, 111, 111), proc(112, 111, 108, 108), z(proc(113, 111, 108, 108)), proc(114, 104, 108, 108), proc(115, 104, 104, 104), proc(117, 115, 104, 104), proc(118, 117, 104, 104), proc(119, 115, 104, 104), proc(120, 104, 106, 106), proc(121, 115, 121, 121), proc(122, 120, 106, 106), proc(123, 100, 123, 123), proc(124, 120, 124, 124), proc(125, 100, 123, 123), proc(126, 100, 123, 123), proc(128, 101, 0, 0), proc(129, 100, 123, 123), proc(130, 128, 130, 130), proc(131, 100, 123, 123)];
        let m = Manifest { generation: 1, root: 100, procs, same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
        faithful(&m).unwrap();
    }

    /// Trees grown at random as a kernel grows them (fork, fork with CLONE_PARENT, setsid,
    /// exit with reparenting to the nearest child subreaper, leaving a zombie or not,
    /// subreaper on and off, as zdtm session03 does): the plan of each makes it exactly.
    #[test]
    fn random_trees_are_made_exactly_or_refused() {
        random_trees(0x2545f4914f6cdd1d, 3000, false);
    }

    /// The same when half the processes that act are of the newest tenth (as session03's
    /// forks are), which grows deep chains of sessions.
    #[test]
    fn random_deep_trees_are_made_exactly() {
        random_trees(0x9e3779b97f4a7c15, 20_000, true);
    }

    /// `count` random trees from `seed`; `deep`: half the acting processes of the newest tenth.
    fn random_trees(mut seed: u64, count: u32, deep: bool) {
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut made, mut refused) = (0, 0);
        for round in 0..count {
            // pid -> (parent, session, group, subreaper, zombie); the root is a subreaper.
            let root = 100;
            let mut k: HashMap<i32, (i32, i32, i32, bool, bool)> = HashMap::from([(root, (1, 0, 0, true, false))]);
            let mut next = root + 1;
            // (Some as large as session03's: over 300 processes.)
            for _ in 0..if round % 20 == 0 { 600 } else { 60 } {
                let mut alive: Vec<i32> = k.iter().filter(|e| !e.1 .4).map(|e| *e.0).collect();
                alive.sort_unstable();
                let newest = alive.len() - 1 - alive.len() / 10;
                let x = if deep && rnd(2) == 0 { alive[newest + rnd((alive.len() - newest) as u64) as usize] } else { alive[rnd(alive.len() as u64) as usize] };
                let (parent, sid, pgid, _, _) = k[&x];
                match rnd(10) {
                    0..=3 => {
                        let up = rnd(2) == 0 && x != root;
                        k.insert(next, (if up { parent } else { x }, sid, pgid, false, false));
                        next += 1;
                    }
                    4 | 5 if pgid != x && sid != x => {
                        let e = k.get_mut(&x).unwrap();
                        (e.1, e.2) = (x, x);
                    }
                    6 | 7 if x != root => {
                        // Reaped, or a zombie its parent does not reap (zdtm session03's
                        // TEST_DIE): it keeps its parent, session and group.
                        if rnd(2) == 0 {
                            k.remove(&x);
                        } else {
                            k.get_mut(&x).unwrap().4 = true;
                        }
                        // Its children go to the nearest subreaper above it, else init.
                        let mut to = parent;
                        while to != 1 && !k[&to].3 {
                            to = k[&to].0;
                        }
                        for e in k.values_mut().filter(|e| e.0 == x) {
                            e.0 = to;
                        }
                        // (Init reaps the zombies it gets.)
                        k.retain(|_, e| !(e.4 && e.0 == 1));
                    }
                    8 | 9 if x != root => k.get_mut(&x).unwrap().3 = rnd(2) == 0,
                    _ => {}
                }
            }
            let state = |pid: i32, z: bool| if z { ProcState::Zombie { status: 0 } } else { ProcState::Live { image: format!("{pid}.ckpt") } };
            let mut procs: Vec<TreeProc> = k.iter().map(|(&pid, &(ppid, sid, pgid, _, z))| TreeProc { state: state(pid, z), ..proc(pid, ppid, pgid, sid) }).collect();
            procs.sort_by_key(|p| p.pid);
            let m = Manifest { generation: 1, root, procs, same: None, tables: Vec::new(), stopped: Vec::new(), ctty: Vec::new(), exit_signals: Vec::new(), keep: None, reexec: Vec::new(), ids: Vec::new(), timens: Vec::new(), timens_kids: Vec::new(), tree_time: None, own_stdio: Vec::new() };
            match faithful(&m) {
                Ok(()) => made += 1,
                Err(e) if e.starts_with("simulation") => panic!("{e}: {:?}", m.procs),
                Err(e) => {
                    let tree: Vec<String> = m.procs.iter().map(|p| format!("{}<{} s{} g{}{}", p.pid, p.ppid, p.sid, p.pgid, if matches!(p.state, ProcState::Zombie { .. }) { " z" } else { "" })).collect();
                    eprintln!("refused: {e}: {}", tree.join(", "));
                    refused += 1
                }
            }
        }
        eprintln!("random trees: {made} made, {refused} refused");
        assert_eq!(refused, 0, "{made} made, {refused} refused");
    }
}
