//! Whether a process of the tree entered namespaces of its own. ckpt restarts every process of
//! a tree in the namespaces ckpt-restart makes, which are the coordinator's: a process that is
//! in another mount, network, IPC, UTS, cgroup, time, pid or user namespace than the coordinator
//! (itself a member of the tree's namespaces) would come back in ckpt's without a word. Each
//! process's runtime refuses for a thread of its own that entered one (runtime/src/nshooks.rs); a process that only
//! inherited one (a child forked after its parent's unshare(CLONE_NEWTIME), whose parent has
//! exited since) has no such thread: the coordinator compares every process with itself.
//! Except for time namespaces: a process in another time namespace than the tree's is recorded
//! at the cut with that namespace's offsets (`time_namespaces`, the manifest's `timens` lines)
//! and put in one with the same offsets at the restart (restarter/src/treetime.rs).

/// The namespaces compared, as /proc/PID/ns names them: (the process's, the coordinator's). The
/// coordinator makes the processes of the tree (init: the program, or a restarted tree in a
/// time namespace of its own: `timens`), so theirs are its `*_for_children` where it has one.
/// A process's own namespaces for its children are its runtime's to check (a leader's time
/// namespace for children is restored: runtime/src/timens.rs); the children born in them are
/// in them, and compared here.
const KINDS: [(&str, &str); 8] = [
    ("mnt", "mnt"),
    ("net", "net"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("cgroup", "cgroup"),
    ("user", "user"),
    ("time", "time_for_children"),
    ("pid", "pid_for_children"),
];

/// Why process `pid` cannot be restarted faithfully, if it is in a namespace other than ours
/// (its time namespace is `time_namespaces`' to judge, at the cut).
pub fn other_namespace(pid: i32) -> Option<String> {
    for (kind, our_kind) in KINDS.into_iter().filter(|k| k.0 != "time") {
        let Ok(ours) = std::fs::read_link(format!("/proc/self/ns/{our_kind}")) else { continue };
        let Ok(theirs) = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")) else { continue };
        if ours != theirs {
            return Some(format!(
                "process {pid} ({}) is in a namespace of its own ({kind} {}, the tree's is {}: unshare, setns or clone with CLONE_NEW*): it would come back in ckpt's, so no checkpoint is taken",
                std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim(),
                theirs.display(),
                ours.display()
            ));
        }
    }
    None
}

/// The tree's time namespace (ours for children): its inode.
pub fn tree_time() -> Option<u64> {
    ns_inode(&std::fs::read_link("/proc/self/ns/time_for_children").ok()?.to_string_lossy())
}

/// At the cut (every process stopped): the live processes `pids` that are in another time
/// namespace than the tree's (ours for children), each with its namespace's inode and offsets
/// over the tree's; and those of the tree's namespace whose namespace for their children is
/// one of these (the runtime records a leader's otherwise). Refused in one line: a process of
/// another namespace whose namespace for its children is yet another (it would need two
/// namespaces made for it), or whose offsets cannot be read.
pub fn time_namespaces(pids: &[i32]) -> Result<(Vec<TimeNs>, Vec<TimeNs>), String> {
    let link = |p: &str| std::fs::read_link(p).ok().map(|l| l.to_string_lossy().into_owned());
    let offsets = |p: &str| std::fs::read_to_string(p).ok().and_then(|t| crate::timens::parse_offsets(&t));
    let (Some(tree), Some(tree_off)) = (link("/proc/self/ns/time_for_children"), offsets("/proc/self/timens_offsets")) else { return Ok((Vec::new(), Vec::new())) };
    let mut out = Vec::new();
    let mut kids = Vec::new();
    for &pid in pids {
        let Some(own) = link(&format!("/proc/{pid}/ns/time")) else { continue };
        if own == tree {
            let for_kids = link(&format!("/proc/{pid}/ns/time_for_children"));
            let off = offsets(&format!("/proc/{pid}/timens_offsets"));
            if let (Some(ns), Some(off)) = (for_kids.filter(|f| *f != own).and_then(|f| ns_inode(&f)), off) {
                kids.push(TimeNs { pid, ns, monotonic: off.monotonic - tree_off.monotonic, boottime: off.boottime - tree_off.boottime });
            }
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let refuse = |why: &str| Err(format!("process {pid} ({}) is in a time namespace of its own ({own}, the tree's is {tree}) {why}, so no checkpoint is taken", comm.trim()));
        if link(&format!("/proc/{pid}/ns/time_for_children")).as_deref() != Some(own.as_str()) {
            return refuse("and made another for its children: a restart makes only the one it is in");
        }
        // (Its namespace for children is its own: timens_offsets shows that one's.)
        let Some(off) = offsets(&format!("/proc/{pid}/timens_offsets")) else { return refuse("whose offsets cannot be read") };
        let Some(ns) = ns_inode(&own) else { return refuse("whose inode cannot be read") };
        out.push(TimeNs { pid, ns, monotonic: off.monotonic - tree_off.monotonic, boottime: off.boottime - tree_off.boottime });
    }
    kids.retain(|k| out.iter().any(|o| o.ns == k.ns));
    Ok((out, kids))
}

/// The inode in a namespace link's text (`time:[4026532999]`).
fn ns_inode(link: &str) -> Option<u64> {
    link.split_once('[')?.1.strip_suffix(']')?.parse().ok()
}

use ckpt_image::tree::TimeNs;

#[cfg(test)]
mod tests {
    #[test]
    fn inode_of_a_link() {
        assert_eq!(super::ns_inode("time:[4026532999]"), Some(4026532999));
        assert_eq!(super::ns_inode("time:4026532999"), None);
    }
}
