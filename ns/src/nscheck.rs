//! Whether a process of the tree entered namespaces of its own. ckpt restarts every process of
//! a tree in the namespaces ckpt-restart makes, which are the coordinator's: a process that is
//! in another mount, network, IPC, UTS, cgroup, time, pid or user namespace than the coordinator
//! (itself a member of the tree's namespaces) would come back in ckpt's without a word. Each
//! process's runtime refuses for a thread of its own that entered one (runtime/src/nshooks.rs); a process that only
//! inherited one (a child forked after its parent's unshare(CLONE_NEWTIME), whose parent has
//! exited since) has no such thread: the coordinator compares every process with itself.

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

/// Why process `pid` cannot be restarted faithfully, if it is in a namespace other than ours.
pub fn other_namespace(pid: i32) -> Option<String> {
    for (kind, our_kind) in KINDS {
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
