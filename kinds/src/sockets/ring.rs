//! Packet sockets' mapped rings (PACKET_RX_RING, PACKET_TX_RING, mmap of the socket).
//!
//! Capture: sock_diag gives each packet socket's rings back (`capture`, exact also for a
//! socket the program inherited or was passed); `check` then looks at the memory of every
//! mapping of such a socket. A restart makes a new ring, whose frames all belong to the kernel
//! and whose kernel position (the frame the next packet goes to) is the first one: that is the
//! ring the program had only while no packet ever reached it and the program never wrote into
//! it ("untouched": all zero, but for the first block's header a TPACKET_V3 ring opens at set-up
//! time). A ring that has held packets (frames the program owns, or has given back: the kernel's
//! position is somewhere else then and nothing tells where) is recorded as lost: the restart
//! refuses in one line. Frames' contents are never stored for the restart (nothing to keep in an
//! untouched ring; CRIU does not keep them either).
//!
//! Restore: `set` sets the rings again on the new socket (after PACKET_VERSION and
//! PACKET_RESERVE, before bind); ckpt-restart maps the socket where the program had it
//! (`mapping_refusal` says which mappings cannot be).

use crate::sys;
use ckpt_image::{FdKind, FdState, PacketRings};

const SOL_PACKET: i32 = 263;
const PACKET_RX_RING: i32 = 5;
const PACKET_VERSION: i32 = 10;
const PACKET_TX_RING: i32 = 13;
const TPACKET_V3: u32 = 2;
/// sizeof(struct tpacket_block_desc): a TPACKET_V3 block's header.
const BLOCK_HEADER: usize = 48;

/// At checkpoint time: the rings of packet socket `fd` (inode `ino`), from sock_diag. Where
/// sock_diag cannot tell, a socket that has rings (setting PACKET_VERSION to its own value
/// fails with EBUSY then, and changes nothing otherwise) is said in `lost`.
pub fn capture(fd: i32, ino: u64, lost: &mut String) -> Option<PacketRings> {
    if let Some(rings) = super::diag::packet_rings(ino as u32) {
        return rings;
    }
    let version = sys::getsockopt_int(fd, SOL_PACKET, PACKET_VERSION).ok()?;
    if sys::setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version.to_ne_bytes()) == Err(libc::EBUSY) && lost.is_empty() {
        *lost = "it has a ring (PACKET_RX_RING or PACKET_TX_RING) that cannot be read back: this kernel's sock_diag does not answer for packet sockets".into();
    }
    None
}

/// The inode of a mapping named `socket:[N]` in /proc/self/maps.
pub fn mapped_socket(name: &[u8]) -> Option<u64> {
    std::str::from_utf8(name.strip_prefix(b"socket:[")?.strip_suffix(b"]")?).ok()?.parse().ok()
}

/// The packet socket `ino` among `fds` with its rings.
pub fn rings_of(fds: &[FdState], ino: u64) -> Option<PacketRings> {
    fds.iter().find_map(|f| match &f.kind {
        FdKind::Socket(s) if s.ino == ino && s.family == libc::AF_PACKET => s.ring,
        _ => None,
    })
}

/// At checkpoint time: every mapping (start, end, name) of a packet socket with rings is read
/// through `read` (address, buffer; false: unreadable); a ring that is not untouched makes the
/// socket's description say so (`Socket::lost`), for the restart to refuse.
pub fn check<'a>(fds: &mut [FdState], maps: impl Iterator<Item = (u64, u64, &'a [u8])>, read: &dyn Fn(u64, &mut [u8]) -> bool) {
    for (start, end, name) in maps {
        let Some(ino) = mapped_socket(name) else { continue };
        let Some(rings) = rings_of(fds, ino) else { continue };
        // (A mapping of another size than the rings is refused at restart: mapping_refusal.)
        if end - start != rings.mapped_len() || untouched(&rings, start, read) {
            continue;
        }
        for f in fds.iter_mut() {
            if let FdKind::Socket(s) = &mut f.kind {
                if s.ino == ino && s.lost.is_empty() {
                    s.lost = "its mapped ring has held packets: a new ring starts with every frame the kernel's and the kernel's position at the first, which the program's own position in it may not be (only a ring no packet reached is restored)".into();
                }
            }
        }
    }
}

/// Whether the rings mapped at `start` are as the kernel set them up (see the module comment).
fn untouched(rings: &PacketRings, start: u64, read: &dyn Fn(u64, &mut [u8]) -> bool) -> bool {
    let rx_len = rings.rx.map_or(0, |r| r.len());
    if let Some(rx) = rings.rx.filter(|_| rings.version == TPACKET_V3) {
        // The first block's header: status 0 (the kernel's), no packet, sequence number 1.
        let mut h = [0u8; BLOCK_HEADER];
        if rx.block_size as usize <= BLOCK_HEADER || !read(start, &mut h) {
            return false;
        }
        let word = |o: usize| u32::from_ne_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        if word(8) != 0 || word(12) != 0 || u64::from_ne_bytes(h[24..32].try_into().expect("8 bytes")) != 1 {
            return false;
        }
        return zero(start + BLOCK_HEADER as u64, rx_len - BLOCK_HEADER as u64, read) && zero(start + rx_len, rings.mapped_len() - rx_len, read);
    }
    zero(start, rings.mapped_len(), read)
}

fn zero(mut at: u64, len: u64, read: &dyn Fn(u64, &mut [u8]) -> bool) -> bool {
    let end = at + len;
    let mut buf = vec![0u8; 64 * 1024];
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        if !read(at, &mut buf[..n]) || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        at += n as u64;
    }
    true
}

/// At restart: set the rings on the new socket `fd` (PACKET_VERSION set already).
pub fn set(fd: i32, rings: &PacketRings) -> std::io::Result<()> {
    for (opt, r) in [(PACKET_RX_RING, rings.rx), (PACKET_TX_RING, rings.tx)] {
        let Some(r) = r else { continue };
        let req: [u32; 7] = [r.block_size, r.block_nr, r.frame_size, r.frame_nr, r.retire_tmo, r.sizeof_priv, r.features];
        // tpacket_req (4 words) but for TPACKET_V3, whose request is tpacket_req3 (7).
        let len = if rings.version == TPACKET_V3 { 28 } else { 16 };
        // SAFETY: req outlives the call and holds at least `len` bytes.
        if unsafe { libc::setsockopt(fd, SOL_PACKET, opt, req.as_ptr().cast(), len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Why the mapping `start`-`end` of socket `ino` cannot be made again (None: it can).
pub fn mapping_refusal(fds: &[FdState], ino: u64, start: u64, end: u64) -> Option<String> {
    let Some(rings) = rings_of(fds, ino) else {
        return Some(format!(
            "the program maps socket:[{ino}] ({start:#x}-{end:#x}), which is no packet socket with rings among its fds (a ring whose socket the program closed, or a kernel without packet sock_diag): it cannot be restored"
        ));
    };
    let want = rings.mapped_len();
    if end - start != want {
        return Some(format!(
            "the program maps {} bytes of the rings of socket:[{ino}] at {start:#x}, not all {want} of them (part of the mapping was unmapped or changed): it cannot be restored",
            end - start
        ));
    }
    None
}
