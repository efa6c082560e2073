//! The uid and gid maps of the program's user namespace, written by the outer process (which
//! stays in the parent namespace) into `/proc/INIT/{setgroups,uid_map,gid_map}`.
//!
//! An ordinary user may map exactly one id, its own effective one, and must first deny
//! setgroups: the program keeps its uid and gid, and ids that are not mapped (other users' files,
//! supplementary groups) show as the overflow ids (nobody/nogroup); setgroups fails with EPERM as
//! it does natively without privileges. Root needs no user namespace (see `spawn`); a process
//! that may set ids (CAP_SETUID and CAP_SETGID) without being root maps every id it sees onto
//! itself (the ranges of its own uid_map and gid_map), so that nothing looks different.

use std::io::Write;

/// What to write, in the order the kernel requires (setgroups before gid_map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid_map: String,
    pub gid_map: String,
    /// Write "deny" to setgroups (required for an unprivileged gid_map).
    pub deny_setgroups: bool,
}

/// The maps for a process with effective ids `euid` and `egid`; with `own` (its own uid_map
/// and gid_map texts) when it may set ids.
pub fn for_ids(euid: u32, egid: u32, own: Option<(&str, &str)>) -> IdMaps {
    match own {
        Some((u, g)) => IdMaps { uid_map: identity(u), gid_map: identity(g), deny_setgroups: false },
        None => IdMaps { uid_map: format!("{euid} {euid} 1\n"), gid_map: format!("{egid} {egid} 1\n"), deny_setgroups: true },
    }
}

/// Every range a map text ("inside outside count" lines) makes visible, mapped onto itself.
fn identity(map: &str) -> String {
    map.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (first, _, count) = (w.next()?, w.next()?, w.next()?);
            Some(format!("{first} {first} {count}\n"))
        })
        .collect()
}

/// Write `maps` for the user namespace of process `pid` (a child that has not used its ids yet).
pub fn write(pid: i32, maps: &IdMaps) -> std::io::Result<()> {
    let put = |file: &str, text: &str| -> std::io::Result<()> {
        let path = format!("/proc/{pid}/{file}");
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(text.as_bytes()).map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))
    };
    if maps.deny_setgroups {
        put("setgroups", "deny")?;
    }
    put("uid_map", &maps.uid_map)?;
    put("gid_map", &maps.gid_map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_map_only_themselves() {
        let m = for_ids(1000, 100, None);
        assert_eq!(m.uid_map, "1000 1000 1\n");
        assert_eq!(m.gid_map, "100 100 1\n");
        assert!(m.deny_setgroups);
    }

    #[test]
    fn privileged_callers_map_what_they_see() {
        let all = "         0          0 4294967295\n";
        let m = for_ids(0, 0, Some((all, all)));
        assert_eq!(m.uid_map, "0 0 4294967295\n");
        assert!(!m.deny_setgroups);
        let m = for_ids(0, 0, Some(("0 65534 1\n1 100000 65536\n", "0 65534 1\n")));
        assert_eq!(m.uid_map, "0 0 1\n1 1 65536\n");
        assert_eq!(m.gid_map, "0 0 1\n");
    }
}
