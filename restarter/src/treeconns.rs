//! Connections between two processes of a tree (a TCP connection over loopback, a UNIX
//! stream or socketpair whose ends are in different processes: what an MPI job's ranks and
//! its launcher talk over) are not made again yet: each process's restore would make its end
//! alone (binding its peer's address again, or a peer that is gone), and the job would not be
//! connected as it was. `check` refuses such a set in one line naming the first connection.

use anyhow::{bail, Result};
use ckpt_image::{describe_addr, FdKind, Index, SockState, Socket};

fn kind(s: &Socket) -> &'static str {
    match (s.family, s.sock_type) {
        (libc::AF_UNIX, _) => "UNIX",
        (_, libc::SOCK_STREAM) => "TCP",
        _ => "UDP",
    }
}

/// Whether `b` (in another process) is the other end of `a`'s connection.
fn ends(a: &Socket, b: &Socket) -> bool {
    if a.family != b.family {
        return false;
    }
    if a.family == libc::AF_UNIX {
        a.peer != 0 && b.ino == a.peer
    } else {
        !a.peer_name.is_empty() && b.name == a.peer_name && b.peer_name == a.name
    }
}

/// Refuse a set in which two processes are connected to each other.
pub fn check(indexes: &[(i32, Index)]) -> Result<()> {
    let socks: Vec<(i32, i32, &Socket)> = indexes
        .iter()
        .flat_map(|(pid, ix)| ix.fds.iter().filter_map(move |f| if let FdKind::Socket(s) = &f.kind { Some((*pid, f.fd, &**s)) } else { None }))
        .collect();
    for &(pa, fa, a) in &socks {
        if a.state != SockState::Connected {
            continue;
        }
        if let Some(&(pb, fb, _)) = socks.iter().find(|(pb, _, b)| *pb != pa && ends(a, b)) {
            bail!(
                "process {pa} (fd {fa}) and process {pb} (fd {fb}) of the tree are connected by a {} connection ({} to {}): connections between processes of a tree are not restored yet (an MPI job's ranks and mpirun talk over such connections), so this set cannot be restarted",
                kind(a),
                describe_addr(a.family, &a.name),
                describe_addr(a.family, &a.peer_name)
            );
        }
    }
    Ok(())
}
