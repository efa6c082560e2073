//! The step's files in the image directory, all mode 0600, created under a temporary name
//! (O_CREAT|O_EXCL|O_NOFOLLOW) and renamed into place, and read only if they are regular
//! files of the user's, not readable or writable by anyone else:
//!
//! - `BASE.step-key`: 32 random bytes, the step's secret (made once by rank 0, kept with the
//!   images: a restart authenticates with it too);
//! - `BASE.step-addr`: where the coordinator of the running step listens (`epoch`, `port`,
//!   `boot`, `addrs`); `BASE.step-restart`: the same for ckpt-restart's rendezvous;
//! - `BASE.step`: the manifest of the last complete checkpoint of the step: its number, the
//!   number of tasks and each task's image (header index hash). Written only once every task
//!   reported its image durable; a restart of the step uses exactly these images.

use crate::sys::{self, Errno};
use std::ffi::CString;

pub const KEY_LEN: usize = 32;

fn err(what: &str, e: Errno) -> String {
    format!("{what}: {}", std::io::Error::from_raw_os_error(e))
}

fn cname(n: &str) -> CString {
    CString::new(n).unwrap_or_default()
}

/// The image directory, open for the step's files.
pub struct Dir {
    fd: i32,
    path: String,
}

impl Drop for Dir {
    fn drop(&mut self) {
        sys::close(self.fd);
    }
}

impl Dir {
    pub fn open(path: &[u8]) -> Result<Dir, String> {
        let shown = String::from_utf8_lossy(path).into_owned();
        let c = CString::new(path).map_err(|_| format!("{shown}: a NUL byte in the path"))?;
        let fd = sys::openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| err(&shown, e))?;
        Ok(Dir { fd, path: shown })
    }

    /// A directory the caller holds open as `fd` (a process tree's set being written): our own
    /// duplicate of it.
    pub fn borrow(fd: i32, path: &str) -> Result<Dir, String> {
        let d = sys::dup(fd).map_err(|e| err(path, e))?;
        Ok(Dir { fd: d, path: path.to_string() })
    }

    pub fn show(&self, name: &str) -> String {
        format!("{}/{name}", self.path)
    }

    /// The contents of `name` if it is a trustworthy file of ours (None: absent).
    pub fn read_own(&self, name: &str, max: usize) -> Result<Option<Vec<u8>>, String> {
        let fd = match sys::openat(self.fd, &cname(name), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK, 0) {
            Ok(fd) => fd,
            Err(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(err(&self.show(name), e)),
        };
        let r = (|| {
            let st = sys::fstat(fd).map_err(|e| err(&self.show(name), e))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(format!("{} is not a regular file", self.show(name)));
            }
            if st.st_uid != sys::geteuid() {
                return Err(format!("{} belongs to uid {}, not to you: refusing it", self.show(name), st.st_uid));
            }
            if st.st_mode & 0o077 != 0 {
                return Err(format!("{} can be read or written by others (mode {:o}): refusing it", self.show(name), st.st_mode & 0o777));
            }
            let mut v = vec![0u8; max + 1];
            let mut got = 0;
            while got < v.len() {
                match sys::read(fd, &mut v[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => return Err(err(&self.show(name), e)),
                }
            }
            if got > max {
                return Err(format!("{} is too large", self.show(name)));
            }
            v.truncate(got);
            Ok(Some(v))
        })();
        sys::close(fd);
        r
    }

    /// Write `name` whole: a new 0600 file under a temporary name, synced, renamed into place.
    pub fn write_new(&self, name: &str, data: &[u8]) -> Result<(), String> {
        let mut r = [0u8; 8];
        let _ = sys::getrandom(&mut r);
        let tmp = format!("{name}.tmp.{}", r.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let fd = sys::openat(self.fd, &cname(&tmp), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0o600).map_err(|e| err(&self.show(&tmp), e))?;
        let w = sys::write_all(fd, data);
        sys::fsync(fd);
        sys::close(fd);
        let r = w.map_err(|e| err(&self.show(&tmp), e)).and_then(|()| sys::renameat(self.fd, &cname(&tmp), &cname(name)).map_err(|e| err(&self.show(name), e)));
        if r.is_err() {
            let _ = sys::unlinkat(self.fd, &cname(&tmp));
        } else {
            sys::fsync(self.fd_dir());
        }
        r
    }

    /// Write `name`, a new 0600 file, at once: no temporary name, no sync (a file read by other
    /// processes within the same checkpoint and removed after it).
    pub fn write_plain(&self, name: &str, data: &[u8]) -> Result<(), String> {
        let fd = sys::openat(self.fd, &cname(name), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0o600).map_err(|e| err(&self.show(name), e))?;
        let w = sys::write_all(fd, data).map_err(|e| err(&self.show(name), e));
        sys::close(fd);
        w
    }

    fn fd_dir(&self) -> i32 {
        self.fd
    }

    /// Make the step's key if there is none (rank 0), else read it.
    pub fn key(&self, base: &str, create: bool) -> Result<Option<[u8; KEY_LEN]>, String> {
        let name = key_name(base);
        if let Some(k) = self.read_own(&name, KEY_LEN)? {
            return k.try_into().map(Some).map_err(|_| format!("{} is not a key of {KEY_LEN} bytes", self.show(&name)));
        }
        if !create {
            return Ok(None);
        }
        let mut k = [0u8; KEY_LEN];
        sys::getrandom(&mut k).map_err(|e| err("getrandom", e))?;
        self.write_new(&name, &k)?;
        Ok(Some(k))
    }
}

pub fn key_name(base: &str) -> String {
    format!("{base}.step-key")
}

pub fn addr_name(base: &str, restart: bool) -> String {
    format!("{base}.{}", if restart { "step-restart" } else { "step-addr" })
}

pub fn manifest_name(base: &str) -> String {
    format!("{base}.step")
}

/// Where a coordinator listens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Addr {
    pub epoch: u64,
    pub port: u16,
    /// The coordinator's boot id: a member on the same machine connects through loopback.
    pub boot: String,
    /// Its IPv4 addresses (loopback first when it is all there is).
    pub addrs: Vec<[u8; 4]>,
    /// The coordinator's program has ended with this exit status (rank 0 ended first): no
    /// checkpoint of the step can be taken under this epoch (a line older builds skip).
    pub ended: Option<u8>,
}

impl Addr {
    pub fn encode(&self) -> Vec<u8> {
        let ips: Vec<String> = self.addrs.iter().map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])).collect();
        let ended = self.ended.map_or(String::new(), |st| format!("ended {st}\n"));
        format!("ckpt-step-addr 1\nepoch {:016x}\nport {}\nboot {}\naddrs {}\n{ended}", self.epoch, self.port, self.boot, ips.join(",")).into_bytes()
    }

    pub fn decode(b: &[u8]) -> Option<Addr> {
        let s = std::str::from_utf8(b).ok()?;
        let mut lines = s.lines();
        if lines.next()? != "ckpt-step-addr 1" {
            return None;
        }
        let mut a = Addr::default();
        for l in lines {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            match k {
                "epoch" => a.epoch = u64::from_str_radix(v, 16).ok()?,
                "port" => a.port = v.parse().ok()?,
                "ended" => a.ended = Some(v.parse().ok()?),
                "boot" => a.boot = v.to_string(),
                "addrs" => {
                    a.addrs = v
                        .split(',')
                        .filter(|x| !x.is_empty())
                        .map(|x| {
                            let p: Vec<u8> = x.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
                            p.try_into().ok()
                        })
                        .collect::<Option<_>>()?
                }
                _ => {}
            }
        }
        Some(a)
    }
}

/// The last complete checkpoint of a step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub generation: u64,
    /// Each rank's image, by its header index hash; None: a rank that had ended when the
    /// checkpoint was taken (`rank R ended`): a task of a joined step whose srun had ended, or a
    /// task whose program had exited normally while the others ran (its status in `exits`). It
    /// has no image in the set; a restart neither waits for it nor runs it again. Rank 0 always
    /// has one.
    pub hashes: Vec<Option<u64>>,
    /// The exit status of each ended rank whose program said it (`rank R ended STATUS`), by rank.
    pub exits: Vec<(u32, u8)>,
}

impl Manifest {
    /// Version 1 when every rank has an image (what older builds read), 2 with ended ranks, 3
    /// when an ended rank has its exit status (older builds refuse a version they do not know
    /// rather than resume such a rank).
    pub fn encode(&self) -> Vec<u8> {
        let v = if !self.exits.is_empty() {
            3
        } else if self.hashes.iter().all(Option::is_some) {
            1
        } else {
            2
        };
        let mut s = format!("ckpt-step-manifest {v}\ngeneration {}\ntasks {}\n", self.generation, self.hashes.len());
        for (r, h) in self.hashes.iter().enumerate() {
            match (h, self.exit_status(r as u32)) {
                (Some(h), _) => s.push_str(&format!("rank {r} {h:016x}\n")),
                (None, Some(st)) => s.push_str(&format!("rank {r} ended {st}\n")),
                (None, None) => s.push_str(&format!("rank {r} ended\n")),
            }
        }
        s.into_bytes()
    }

    pub fn decode(b: &[u8]) -> Option<Manifest> {
        let s = std::str::from_utf8(b).ok()?;
        let mut lines = s.lines();
        let v = match lines.next()? {
            "ckpt-step-manifest 1" => 1,
            "ckpt-step-manifest 2" => 2,
            "ckpt-step-manifest 3" => 3,
            _ => return None,
        };
        let mut m = Manifest::default();
        let mut tasks = 0usize;
        for l in lines {
            let w: Vec<&str> = l.split(' ').collect();
            match w.as_slice() {
                ["generation", g] => m.generation = g.parse().ok()?,
                ["tasks", n] => tasks = n.parse().ok()?,
                ["rank", r, rest @ ..] => {
                    let r = r.parse::<usize>().ok()?;
                    if r != m.hashes.len() {
                        return None;
                    }
                    m.hashes.push(match *rest {
                        ["ended"] if v >= 2 && r > 0 => None,
                        ["ended", st] if v >= 3 && r > 0 => {
                            m.exits.push((r as u32, st.parse().ok()?));
                            None
                        }
                        [h] => Some(u64::from_str_radix(h, 16).ok()?),
                        _ => return None,
                    });
                }
                _ => {}
            }
        }
        (tasks == m.hashes.len() && tasks > 0).then_some(m)
    }

    /// Whether task `rank` had ended when this checkpoint was taken.
    pub fn ended(&self, rank: u32) -> bool {
        self.hashes.get(rank as usize) == Some(&None)
    }

    /// The status task `rank` exited with, if it had ended and said so.
    pub fn exit_status(&self, rank: u32) -> Option<u8> {
        self.exits.iter().find(|&&(r, _)| r == rank).map(|&(_, st)| st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_are_private() {
        let d = std::env::temp_dir().join(format!("ckpt-step-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let dir = Dir::open(d.to_str().unwrap().as_bytes()).unwrap();
        assert_eq!(dir.key("app", false).unwrap(), None);
        let k = dir.key("app", true).unwrap().unwrap();
        assert_eq!(dir.key("app", false).unwrap(), Some(k));
        use std::os::unix::fs::PermissionsExt;
        let p = d.join("app.step-key");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(dir.key("app", false).unwrap_err().contains("read or written by others"));
        std::os::unix::fs::symlink(&p, d.join("b.step-key")).unwrap();
        assert!(dir.key("b", false).is_err(), "a symbolic link is not followed");
        let m = Manifest { generation: 4, hashes: vec![Some(1), Some(0xffff_0000_1234), Some(3)], exits: Vec::new() };
        dir.write_new(&manifest_name("app"), &m.encode()).unwrap();
        assert_eq!(Manifest::decode(&dir.read_own("app.step", 1 << 20).unwrap().unwrap()), Some(m.clone()));
        assert!(m.encode().starts_with(b"ckpt-step-manifest 1\n"), "no ended rank: what older builds read");
        // The first of two sruns ended before the checkpoint: its ranks are recorded as ended.
        let gap = Manifest { generation: 5, hashes: vec![Some(7), None, None, Some(9), Some(10)], exits: Vec::new() };
        assert!(gap.encode().starts_with(b"ckpt-step-manifest 2\n"));
        assert_eq!(Manifest::decode(&gap.encode()), Some(gap.clone()));
        assert!(gap.ended(1) && gap.ended(2) && !gap.ended(3) && !gap.ended(0) && !gap.ended(9));
        assert_eq!(Manifest::decode(b"ckpt-step-manifest 1\ngeneration 1\ntasks 2\nrank 0 01\nrank 1 ended\n"), None, "version 1 has no ended rank");
        assert_eq!(Manifest::decode(b"ckpt-step-manifest 2\ngeneration 1\ntasks 2\nrank 0 ended\nrank 1 01\n"), None, "rank 0 never ends first");
        // A task whose program exited normally while the others ran: its status is kept.
        let exited = Manifest { generation: 6, hashes: vec![Some(7), None, Some(9), None], exits: vec![(1, 3)] };
        assert!(exited.encode().starts_with(b"ckpt-step-manifest 3\n"), "an exit status: a version older builds refuse");
        assert!(String::from_utf8(exited.encode()).unwrap().contains("rank 1 ended 3\nrank 2 0000000000000009\nrank 3 ended\n"));
        assert_eq!(Manifest::decode(&exited.encode()), Some(exited.clone()));
        assert_eq!((exited.exit_status(1), exited.exit_status(3), exited.exit_status(2)), (Some(3), None, None));
        assert_eq!(Manifest::decode(b"ckpt-step-manifest 2\ngeneration 1\ntasks 2\nrank 0 01\nrank 1 ended 0\n"), None, "version 2 has no exit status");
        assert_eq!(Manifest::decode(b"ckpt-step-manifest 3\ngeneration 1\ntasks 2\nrank 0 01\nrank 1 ended 256\n"), None, "an exit status is a byte");
        let a = Addr { epoch: 0xabc, port: 4000, boot: "b-1".into(), addrs: vec![[127, 0, 0, 1], [10, 1, 2, 3]], ended: None };
        assert_eq!(Addr::decode(&a.encode()), Some(a.clone()));
        // Rank 0 ended first: one more line, which older builds skip.
        let gone = Addr { ended: Some(3), ..a.clone() };
        assert!(gone.encode().ends_with(b"\nended 3\n"));
        assert_eq!(Addr::decode(&gone.encode()), Some(gone));
        assert_eq!(Addr::decode(b"ckpt-step-addr 1\nepoch 1\nport 2\nended 256\n"), None, "an exit status is a byte");
        assert_eq!(Manifest::decode(b"ckpt-step-manifest 1\ngeneration 1\ntasks 2\nrank 0 01\n"), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
