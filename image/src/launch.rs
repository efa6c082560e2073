//! What `ckpt-run` hands the runtime it preloads: the settings of the run, and how to give the
//! program back the environment it was started with.
//!
//! `ckpt-run` passes everything in one private environment variable, `__CKPT_LAUNCH`, plus the
//! LD_PRELOAD that loads the runtime. The runtime reads it in its constructor, before `main`,
//! and then removes both from the program's environment (LD_PRELOAD goes back to the user's
//! own value, if any), so that the program and its children see exactly the environment
//! ckpt-run was started with, and a `ckpt-run` the program starts is a run of its own.
//!
//! Encoding (one line of ASCII): `v1` then `;key=HEX` fields, each value hex-encoded (paths and
//! commands may hold any byte but NUL). Unknown keys are ignored; a missing key takes its
//! default. `preload_user` is absent when the user had no LD_PRELOAD.

/// The private variable `ckpt-run` sets and the runtime removes.
pub const LAUNCH_VAR: &str = "__CKPT_LAUNCH";

const VERSION_TAG: &str = "v1";

/// How many images (or sets of a tree) ckpt-run keeps without `--keep`.
pub const DEFAULT_KEEP: u32 = 2;

/// The settings of one `ckpt-run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// The process ckpt-run execs the program in (its own pid): only it is managed.
    pub pid: i32,
    /// For a program a member of the tree started with posix_spawn (whose pid it could not
    /// know): the member's pid. The process whose parent this is is managed (`pid` is 0).
    pub spawner: i32,
    /// The outer ckpt-run standing for the program in its own namespace (ckpt-ns), which
    /// gave the program its own pid there; 0: no namespace.
    pub outer_pid: i32,
    /// Image directory (absolute) and image name.
    pub dir: Vec<u8>,
    pub name: Vec<u8>,
    /// Checkpoint signal; stop signal (checkpoint then exit), 0 for none.
    pub signal: i32,
    pub stop_signal: i32,
    /// Generations to keep.
    pub keep: u32,
    /// Incremental images (false: --full-only) and the longest chain.
    pub incremental: bool,
    pub max_chain: u32,
    /// Periodic checkpoints every this many ms (0: none).
    pub interval_ms: u64,
    /// `scontrol` to run for `--requeue` (empty: none).
    pub requeue_cmd: Vec<u8>,
    /// The LD_PRELOAD ckpt-run set (the runtime, then the user's), and the user's own
    /// LD_PRELOAD before that (None: it was not set).
    pub preload: Vec<u8>,
    pub preload_user: Option<Vec<u8>>,
    /// The file execvp runs as the program (what images record and `--resume` compares; empty:
    /// unknown, the runtime uses /proc/self/exe).
    pub program: Vec<u8>,
    /// `--allow-shared-dir`: use an image directory other users could write, with a warning.
    pub allow_shared_dir: bool,
    /// Device and inode of the image directory as ckpt-run checked it: in a user namespace its
    /// owner may show as the overflow uid (root's /tmp), which the runtime then trusts for this
    /// directory only (ckpt-ns).
    pub dir_dev: u64,
    pub dir_ino: u64,
    /// A member of the program's process tree other than the process ckpt-run started (a
    /// program a forked child execs): it joins the tree's coordinator, without a timer.
    pub tree_child: bool,
    /// `--checkpoint-open-files`: the data of the named regular files the program holds open is
    /// saved too, and a file gone at restart is recreated at its path (`Deleted::saved`).
    pub open_files: bool,
}

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

impl Launch {
    /// The value of `LAUNCH_VAR`.
    pub fn encode(&self) -> String {
        let mut s = String::from(VERSION_TAG);
        let mut field = |k: &str, v: &[u8]| {
            s.push(';');
            s.push_str(k);
            s.push('=');
            s.push_str(&hex(v));
        };
        field("pid", self.pid.to_string().as_bytes());
        if self.spawner != 0 {
            field("spawner", self.spawner.to_string().as_bytes());
        }
        if self.outer_pid != 0 {
            field("outer_pid", self.outer_pid.to_string().as_bytes());
        }
        field("dir", &self.dir);
        field("name", &self.name);
        field("signal", self.signal.to_string().as_bytes());
        field("stop_signal", self.stop_signal.to_string().as_bytes());
        field("keep", self.keep.to_string().as_bytes());
        field("incremental", if self.incremental { b"1" } else { b"0" });
        field("max_chain", self.max_chain.to_string().as_bytes());
        field("interval_ms", self.interval_ms.to_string().as_bytes());
        field("requeue_cmd", &self.requeue_cmd);
        field("preload", &self.preload);
        if let Some(p) = &self.preload_user {
            field("preload_user", p);
        }
        field("program", &self.program);
        field("allow_shared_dir", if self.allow_shared_dir { b"1" } else { b"0" });
        field("dir_dev", self.dir_dev.to_string().as_bytes());
        field("dir_ino", self.dir_ino.to_string().as_bytes());
        if self.tree_child {
            field("tree_child", b"1");
        }
        if self.open_files {
            field("open_files", b"1");
        }
        s
    }

    /// Parse the value of `LAUNCH_VAR` (None: not one this build writes).
    pub fn decode(v: &[u8]) -> Option<Launch> {
        let mut parts = v.split(|&b| b == b';');
        if parts.next()? != VERSION_TAG.as_bytes() {
            return None;
        }
        let mut l = Launch { keep: DEFAULT_KEEP, incremental: true, max_chain: 8, ..Default::default() };
        for p in parts {
            let eq = p.iter().position(|&b| b == b'=')?;
            let (k, val) = (&p[..eq], unhex(&p[eq + 1..])?);
            let num = || std::str::from_utf8(&val).ok()?.parse::<u64>().ok();
            match k {
                b"pid" => l.pid = i32::try_from(num()?).ok()?,
                b"spawner" => l.spawner = i32::try_from(num()?).ok()?,
                b"outer_pid" => l.outer_pid = i32::try_from(num()?).ok()?,
                b"dir" => l.dir = val,
                b"name" => l.name = val,
                b"signal" => l.signal = i32::try_from(num()?).ok()?,
                b"stop_signal" => l.stop_signal = i32::try_from(num()?).ok()?,
                b"keep" => l.keep = u32::try_from(num()?).ok()?,
                b"incremental" => l.incremental = val != b"0",
                b"max_chain" => l.max_chain = u32::try_from(num()?).ok()?,
                b"interval_ms" => l.interval_ms = num()?,
                b"requeue_cmd" => l.requeue_cmd = val,
                b"preload" => l.preload = val,
                b"preload_user" => l.preload_user = Some(val),
                b"program" => l.program = val,
                b"allow_shared_dir" => l.allow_shared_dir = val == b"1",
                b"dir_dev" => l.dir_dev = num()?,
                b"dir_ino" => l.dir_ino = num()?,
                b"tree_child" => l.tree_child = val == b"1",
                b"open_files" => l.open_files = val == b"1",
                _ => {}
            }
        }
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let l = Launch {
            pid: 4242,
            spawner: 4241,
            outer_pid: 4200,
            dir_dev: 2049,
            dir_ino: 77,
            tree_child: true,
            open_files: true,
            dir: b"/scratch/a;b=c\xff".to_vec(),
            name: b"app.3".to_vec(),
            signal: 12,
            stop_signal: 15,
            keep: 3,
            incremental: false,
            max_chain: 5,
            interval_ms: 600_000,
            requeue_cmd: b"/usr/bin/scontrol".to_vec(),
            preload: b"/opt/ckpt/lib/libckpt_runtime.so:/usr/lib/libfoo.so".to_vec(),
            preload_user: Some(b"/usr/lib/libfoo.so".to_vec()),
            program: b"/home/u/bin/app".to_vec(),
            allow_shared_dir: true,
        };
        let e = l.encode();
        assert!(e.bytes().all(|b| b.is_ascii_graphic()), "{e}");
        assert_eq!(Launch::decode(e.as_bytes()), Some(l.clone()));
        let none = Launch { preload_user: None, ..l };
        assert_eq!(Launch::decode(none.encode().as_bytes()), Some(none));
        assert_eq!(Launch::decode(b"v2;pid=31"), None);
        assert_eq!(Launch::decode(b"v1;pid=3"), None);
        assert_eq!(Launch::decode(b"garbage"), None);
    }
}
