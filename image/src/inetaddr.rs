//! IPv4 and IPv6 socket addresses (raw sockaddr_in / sockaddr_in6 bytes, as the images keep
//! them) compared and converted across the two families. An IPv6 socket talks to IPv4 peers
//! through v4-mapped addresses (::ffff:a.b.c.d): an IPv6 listener's accepted connection from an
//! IPv4 client is named [::ffff:127.0.0.1]:P on one end and 127.0.0.1:P on the other, and the
//! two ends are one connection.

/// The address as (IPv6 address, port), an IPv4 one v4-mapped (None: neither family).
pub fn canonical(a: &[u8]) -> Option<([u8; 16], u16)> {
    if a.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([a[2], a[3]]);
    match u16::from_ne_bytes([a[0], a[1]]) as i32 {
        libc::AF_INET if a.len() >= 8 => {
            let mut ip = [0u8; 16];
            ip[10..12].copy_from_slice(&[0xff, 0xff]);
            ip[12..16].copy_from_slice(&a[4..8]);
            Some((ip, port))
        }
        libc::AF_INET6 if a.len() >= 24 => Some((a[8..24].try_into().ok()?, port)),
        _ => None,
    }
}

/// Whether `a` and `b` name the same IPv4 or IPv6 address and port, across the families.
pub fn same_inet(a: &[u8], b: &[u8]) -> bool {
    canonical(a).is_some_and(|x| Some(x) == canonical(b))
}

/// `a` as an address of `family` (what a socket of that family connects or binds to): an IPv4
/// address v4-mapped for an IPv6 socket, a v4-mapped one as IPv4 for an IPv4 socket; else as it is.
pub fn in_family(a: &[u8], family: i32) -> Vec<u8> {
    let Some((ip, port)) = canonical(a) else { return a.to_vec() };
    let own = u16::from_ne_bytes([a[0], a[1]]) as i32;
    let mapped = ip[..10].iter().all(|&b| b == 0) && ip[10..12] == [0xff, 0xff];
    match family {
        libc::AF_INET6 if own == libc::AF_INET => {
            let mut s = vec![0u8; 28];
            s[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            s[2..4].copy_from_slice(&port.to_be_bytes());
            s[8..24].copy_from_slice(&ip);
            s
        }
        libc::AF_INET if own == libc::AF_INET6 && mapped => {
            let mut s = vec![0u8; 16];
            s[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            s[2..4].copy_from_slice(&port.to_be_bytes());
            s[4..8].copy_from_slice(&ip[12..16]);
            s
        }
        _ => a.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        in_family(&[&(libc::AF_INET as u16).to_ne_bytes()[..], &port.to_be_bytes(), &ip, &[0; 8]].concat(), libc::AF_INET)
    }

    #[test]
    fn an_ipv4_address_and_its_v4_mapped_form_are_one() {
        let a = v4([127, 0, 0, 1], 8880);
        let m = in_family(&a, libc::AF_INET6);
        assert_eq!(m.len(), 28);
        assert!(same_inet(&a, &m));
        assert_eq!(in_family(&m, libc::AF_INET), a);
        assert!(!same_inet(&a, &v4([127, 0, 0, 1], 8881)));
        assert!(!same_inet(&a, &v4([127, 0, 0, 2], 8880)));
    }

    #[test]
    fn a_native_ipv6_address_stays_ipv6() {
        let mut s = vec![0u8; 28];
        s[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        s[23] = 1; // ::1
        assert_eq!(in_family(&s, libc::AF_INET), s);
        assert!(!same_inet(&s, &v4([127, 0, 0, 1], 0)));
    }
}
