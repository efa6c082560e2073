//! The program's user and group ids and supplementary groups. A restarted program runs in
//! ckpt-restart's process: when the image's credentials differ from ours (a program that called
//! setuid, setgroups...), we take them on just before the switch, or refuse up front, before
//! anything is changed, when we cannot (an unprivileged user can only choose among the ids it
//! already has, and cannot change its groups).

use anyhow::{bail, Result};
use ckpt_image::Creds;

/// This process's credentials.
fn own() -> Creds {
    let mut c = Creds::default();
    let [r, e, s] = &mut c.uids;
    let [gr, ge, gs] = &mut c.gids;
    let mut groups = vec![0 as libc::gid_t; 65536];
    // SAFETY: out-parameters of the right types and sizes.
    unsafe {
        libc::getresuid(r, e, s);
        libc::getresgid(gr, ge, gs);
        let n = libc::getgroups(groups.len() as i32, groups.as_mut_ptr());
        groups.truncate(n.max(0) as usize);
    }
    c.groups = groups;
    c.fs = fs_ids();
    c
}

/// The credentials of a manifest's `ids` line (real, effective, saved, filesystem ids, groups).
pub fn from_ids(ids: &ckpt_image::tree::ProcIds) -> Creds {
    let (u, g) = (ids.uids, ids.gids);
    Creds { uids: [u[0], u[1], u[2]], gids: [g[0], g[1], g[2]], groups: ids.groups.clone(), fs: [u[3], g[3]] }
}

/// This thread's filesystem user and group ids (setfsuid/setfsgid with -1 change nothing and
/// return the current one).
fn fs_ids() -> [u32; 2] {
    // SAFETY: plain system calls that, with an invalid id, only read.
    unsafe { [libc::syscall(libc::SYS_setfsuid, u32::MAX) as u32, libc::syscall(libc::SYS_setfsgid, u32::MAX) as u32] }
}

/// The group id a user namespace shows for a group it does not map (kernel.overflowgid).
fn overflow_gid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowgid").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(65534)
}

/// Whether each side's groups were seen from a user namespace of an ordinary user (ckpt-ns):
/// there the groups it does not map all show as the overflow gid.
#[derive(Debug, Clone, Copy, Default)]
pub struct Views {
    pub want_in_userns: bool,
    pub have_in_userns: bool,
}

/// Whether this process runs in a user namespace that does not map every id onto itself.
pub fn in_user_namespace() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
}

/// Whether two supplementary group lists are the same. A list seen from a user namespace shows
/// each group it does not map as the overflow gid, which then stands for any group: the lists
/// must have as many groups, and every group either side knows must be on the other side or
/// hidden there.
fn same_groups(a: &[u32], b: &[u32], views: Views) -> bool {
    let set = |v: &[u32]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    if set(a) == set(b) {
        return true;
    }
    if !views.want_in_userns && !views.have_in_userns {
        return false;
    }
    let over = overflow_gid();
    let hidden = |v: &[u32], ns: bool| ns && v.contains(&over);
    let known = |v: &[u32], ns: bool| v.iter().copied().filter(move |&g| !(ns && g == over)).collect::<Vec<u32>>();
    let (wa, wb) = (views.want_in_userns, views.have_in_userns);
    a.len() == b.len()
        && known(a, wa).iter().all(|g| b.contains(g) || hidden(b, wb))
        && known(b, wb).iter().all(|g| a.contains(g) || hidden(a, wa))
}

/// Whether we must change credentials for `want` (an image taken before credentials were
/// recorded has none: nothing to do); an error if we cannot, or cannot let each of `threads`
/// (the threads' own ids, which the runtime gives each thread back from `want`:
/// ckpt_image::ThreadCreds) take on its own.
pub fn check(want: &Creds, threads: &[(i32, ckpt_image::ThreadCreds)], views: Views) -> Result<bool> {
    let have = own();
    let change = !(*want == Creds::default() || (want.uids == have.uids && want.gids == have.gids && want.fs == have.fs && same_groups(&want.groups, &have.groups, views)));
    if change && !can_take(want, &have, views) {
        bail!("{}", refusal("the program", want, &have, "take them on"));
    }
    // Threads with ids of their own (the others have the process's, checked above).
    for (tid, c) in threads.iter().filter(|(_, t)| t.known == 1).map(|(tid, t)| (tid, of_thread(t, want))).filter(|(_, c)| c != want) {
        if !can_take(&c, &have, views) {
            bail!("{}", refusal(&format!("thread {tid} of the program"), &c, &have, "give it them back"));
        }
    }
    Ok(change)
}

/// Why `who`, which ran as `want`, cannot be restarted by us (`have`), in one line.
fn refusal(who: &str, want: &Creds, have: &Creds, what: &str) -> String {
    format!(
        "{who} ran as uid {} gid {} with groups {:?}; ckpt-restart runs as uid {} gid {} with groups {:?} and cannot {what} (only root can change groups or take on other ids): restart it as root, or as a user with those ids and groups",
        fmt(&want.uids),
        fmt(&want.gids),
        want.groups,
        fmt(&have.uids),
        fmt(&have.gids),
        have.groups
    )
}

/// A thread's own ids as credentials (its groups: its own list, else the process's).
fn of_thread(t: &ckpt_image::ThreadCreds, process: &Creds) -> Creds {
    let groups = t.own_groups().map_or_else(|| process.groups.clone(), <[u32]>::to_vec);
    Creds { uids: [t.uids[0], t.uids[1], t.uids[2]], gids: [t.gids[0], t.gids[1], t.gids[2]], groups, fs: [t.uids[3], t.gids[3]] }
}

/// Whether a process with credentials `have` may take on `want`: root may; anyone else only
/// ids it has, with the same groups.
fn can_take(want: &Creds, have: &Creds, views: Views) -> bool {
    let fs = want.fs;
    let ids_ok = want.uids.iter().chain(&fs[..1]).all(|u| have.uids.contains(u)) && want.gids.iter().chain(&fs[1..]).all(|g| have.gids.contains(g));
    have.uids[1] == 0 || may_set_ids() || (ids_ok && same_groups(&want.groups, &have.groups, views))
}

/// Whether this process holds CAP_SETUID and CAP_SETGID permitted (root that took on a
/// process's ids before the check, a tree's process that ran as another user: `apply` kept
/// them through the switch of ids).
fn may_set_ids() -> bool {
    const SETID: u64 = 1 << 6 | 1 << 7;
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("CapPrm:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).is_some_and(|prm| prm & SETID == SETID)
}

fn fmt(ids: &[u32; 3]) -> String {
    if ids[0] == ids[1] && ids[1] == ids[2] {
        ids[0].to_string()
    } else {
        format!("{}/{}/{} (real/effective/saved)", ids[0], ids[1], ids[2])
    }
}

/// Take on `want` (raw system calls: this is the restarter's only thread, and the program's
/// threads are cloned from it after the switch). Groups first, then the group ids and the
/// filesystem group id (while we may still set any: setresuid may drop root's privileges), the
/// user ids, and the filesystem user id last (setresuid sets it to the effective one).
///
/// Root that takes on other ids keeps its permitted capabilities through the switch
/// (PR_SET_KEEPCAPS: none stays effective, so what is opened from here on is opened as that
/// user): the restarted runtime needs CAP_SYS_ADMIN to install the program's seccomp filters
/// again in a thread without no_new_privs, and CAP_SETPCAP to give each thread its bounding set
/// and securebits; it then leaves each thread exactly the capabilities it had (ids.rs in the
/// runtime).
pub fn apply(want: &Creds) -> Result<()> {
    let fail = |what: &str| Err(anyhow::anyhow!("cannot take on the program's {what}: {}", std::io::Error::last_os_error()));
    let have = own();
    let keep_caps = have.uids.contains(&0) && !want.uids.contains(&0);
    // SAFETY: plain system calls with valid arguments (setfsgid and setfsuid never fail loudly:
    // they return the previous id, and `fs_ids` reads what they did).
    unsafe {
        if have.groups != want.groups && libc::syscall(libc::SYS_setgroups, want.groups.len(), want.groups.as_ptr()) != 0 {
            return fail("supplementary groups");
        }
        if libc::syscall(libc::SYS_setresgid, want.gids[0], want.gids[1], want.gids[2]) != 0 {
            return fail("group ids");
        }
        libc::syscall(libc::SYS_setfsgid, want.fs[1]);
        if keep_caps {
            libc::syscall(libc::SYS_prctl, libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        }
        let r = libc::syscall(libc::SYS_setresuid, want.uids[0], want.uids[1], want.uids[2]);
        if keep_caps {
            libc::syscall(libc::SYS_prctl, libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        }
        if r != 0 {
            return fail("user ids");
        }
        libc::syscall(libc::SYS_setfsuid, want.fs[0]);
    }
    let now = fs_ids();
    if now != want.fs {
        bail!("cannot take on the program's filesystem user and group ids {}/{} (they stay {}/{})", want.fs[0], want.fs[1], now[0], now[1]);
    }
    // New ids made us undumpable, and /proc/self root's: the runtime needs it until it has
    // restored the threads, then gives the program its own setting back.
    // SAFETY: a plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{overflow_gid, same_groups, Views};

    #[test]
    fn groups_a_user_namespace_does_not_map_match() {
        let o = overflow_gid();
        let host = Views::default();
        let taken_inside = Views { want_in_userns: true, have_in_userns: false };
        let restarted_inside = Views { want_in_userns: false, have_in_userns: true };
        assert!(same_groups(&[1000, 27], &[27, 1000, 27], host));
        assert!(!same_groups(&[o, 1000], &[27, 1000], host));
        assert!(same_groups(&[o, 1000, o], &[27, 44, 1000], taken_inside));
        assert!(same_groups(&[100, o], &[o, o], restarted_inside));
        assert!(!same_groups(&[o, 1000], &[1000], taken_inside));
        assert!(!same_groups(&[o, 1000], &[27, 100], taken_inside));
        assert!(!same_groups(&[1000, 5], &[o, 1000], taken_inside));
    }
}
