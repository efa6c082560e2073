//! Mutual challenge-response on a freshly connected step link, under the step's secret key
//! (files.rs: a 0600 file only the user can read). Each side sends a random challenge and
//! proves it knows the key with HMAC-SHA-256 over both challenges and its role; a side that
//! cannot prove it is cut off. Nothing secret crosses the wire.

use crate::sha256::{hmac, same};
use crate::sys;
use crate::wire::{recv_exact, send_all, LinkError};

const GREETING: &[u8; 8] = b"CKPTSTP1";

/// Why a peer was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("it does not speak the step protocol")]
    Protocol,
    #[error("it does not know the step's key")]
    Key,
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    if sys::getrandom(&mut n).is_err() {
        // No getrandom: the clock and pid still make a challenge that does not repeat.
        n[..8].copy_from_slice(&sys::realtime_ns().to_le_bytes());
        n[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    n
}

/// The accepting side: challenge the client, check its proof, prove ourselves.
pub fn server(fd: i32, key: &[u8], deadline: u64) -> Result<(), AuthError> {
    let ns = nonce();
    send_all(fd, &[&GREETING[..], &ns].concat(), deadline)?;
    let mut got = [0u8; 8 + 16 + 32];
    recv_exact(fd, &mut got, deadline)?;
    if &got[..8] != GREETING {
        return Err(AuthError::Protocol);
    }
    let nc: [u8; 16] = got[8..24].try_into().expect("16 bytes");
    if !same(&got[24..], &hmac(key, &[b"client", &ns, &nc])) {
        return Err(AuthError::Key);
    }
    send_all(fd, &hmac(key, &[b"server", &nc, &ns]), deadline)?;
    Ok(())
}

/// The connecting side: answer the server's challenge, check the server's proof.
pub fn client(fd: i32, key: &[u8], deadline: u64) -> Result<(), AuthError> {
    let mut hello = [0u8; 8 + 16];
    recv_exact(fd, &mut hello, deadline)?;
    if &hello[..8] != GREETING {
        return Err(AuthError::Protocol);
    }
    let ns: [u8; 16] = hello[8..].try_into().expect("16 bytes");
    let nc = nonce();
    send_all(fd, &[&GREETING[..], &nc, &hmac(key, &[b"client", &ns, &nc])].concat(), deadline)?;
    let mut proof = [0u8; 32];
    recv_exact(fd, &mut proof, deadline)?;
    if !same(&proof, &hmac(key, &[b"server", &nc, &ns])) {
        return Err(AuthError::Key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (i32, i32) {
        let mut sv = [0; 2];
        // SAFETY: sv has room for two fds.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) }, 0);
        (sv[0], sv[1])
    }

    #[test]
    fn same_key_passes_other_key_fails_both_ways() {
        for (ks, kc, ok) in [(b"k1", b"k1", true), (b"k1", b"k2", false)] {
            let (a, b) = pair();
            let d = sys::now_ms() + 2000;
            let t = std::thread::spawn(move || client(b, kc, d).is_ok());
            let s = server(a, ks, d);
            // A rejected client sees the server close the link.
            sys::close(a);
            let c = t.join().unwrap();
            sys::close(b);
            assert_eq!((s.is_ok(), c), (ok, ok), "key {ks:?} vs {kc:?}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        let (a, b) = pair();
        sys::write_all(b, &[b'x'; 56]).unwrap();
        assert!(matches!(server(a, b"k", sys::now_ms() + 1000), Err(AuthError::Protocol)));
        sys::close(a);
        sys::close(b);
    }
}
