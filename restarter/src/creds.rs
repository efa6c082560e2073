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
    c
}

fn same_groups(a: &[u32], b: &[u32]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

/// Whether we must change credentials for `want` (an image taken before credentials were
/// recorded has none: nothing to do); an error if we cannot.
pub fn check(want: &Creds) -> Result<bool> {
    let have = own();
    if *want == Creds::default() || (want.uids == have.uids && want.gids == have.gids && same_groups(&want.groups, &have.groups)) {
        return Ok(false);
    }
    let privileged = have.uids[1] == 0;
    let ids_ok = want.uids.iter().all(|u| have.uids.contains(u)) && want.gids.iter().all(|g| have.gids.contains(g));
    let can = privileged || (ids_ok && same_groups(&want.groups, &have.groups));
    if !can {
        bail!(
            "the program ran as uid {} gid {} with groups {:?}; ckpt-restart runs as uid {} gid {} with groups {:?} and cannot take them on (only root can change groups or take on other ids): restart it as root, or as a user with those ids and groups",
            fmt(&want.uids),
            fmt(&want.gids),
            want.groups,
            fmt(&have.uids),
            fmt(&have.gids),
            have.groups
        );
    }
    Ok(true)
}

fn fmt(ids: &[u32; 3]) -> String {
    if ids[0] == ids[1] && ids[1] == ids[2] {
        ids[0].to_string()
    } else {
        format!("{}/{}/{} (real/effective/saved)", ids[0], ids[1], ids[2])
    }
}

/// Take on `want` (raw system calls: this is the restarter's only thread, and the program's
/// threads are cloned from it after the switch). Groups first, then group ids, user ids last.
pub fn apply(want: &Creds) -> Result<()> {
    // SAFETY: plain system calls with valid arguments.
    let r = unsafe {
        if own().groups != want.groups && libc::syscall(libc::SYS_setgroups, want.groups.len(), want.groups.as_ptr()) != 0 {
            -1
        } else if libc::syscall(libc::SYS_setresgid, want.gids[0], want.gids[1], want.gids[2]) != 0 {
            -2
        } else if libc::syscall(libc::SYS_setresuid, want.uids[0], want.uids[1], want.uids[2]) != 0 {
            -3
        } else {
            0
        }
    };
    if r != 0 {
        let what = ["supplementary groups", "group ids", "user ids"][(-r - 1) as usize];
        bail!("cannot take on the program's {what}: {}", std::io::Error::last_os_error());
    }
    // New ids made us undumpable, and /proc/self root's: the runtime needs it until it has
    // restored the threads, then gives the program its own setting back.
    // SAFETY: a plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) };
    Ok(())
}
