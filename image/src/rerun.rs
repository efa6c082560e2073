//! A process of a tree set that a restart runs again instead of restoring (the manifest's
//! `reexec PID` lines, `tree.rs`): Slurm's `srun`, whose job step runs on the job's nodes
//! under slurmstepd and whose own state (its connections to slurmctld and slurmd, its helper)
//! belongs to the old allocation (docs/multinode.md, part 3). The restart makes it with its pid,
//! its parent, group and session and the fds it shares with the tree's other processes, and
//! then execs this record's command in it.
//!
//! The record is the file `PID.exec` of the set, written with the set (0600, as an image):
//! NUL-terminated items, `ckpt-exec 1`, the program's path, its working directory, the number
//! of arguments, the arguments, then the environment to the end. The variables of the Slurm job
//! (`SLURM_*`) are those of the restart's own environment (the new allocation's), not these.

use std::path::Path;

const MAGIC: &[u8] = b"ckpt-exec 1";
/// A record larger than this is not one.
pub const MAX_LEN: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rerun {
    pub exe: Vec<u8>,
    pub cwd: Vec<u8>,
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
}

/// The file name of process `pid`'s record in a set.
pub fn file_name(pid: i32) -> String {
    format!("{pid}.exec")
}

impl Rerun {
    pub fn encode(&self) -> Vec<u8> {
        let count = self.argv.len().to_string().into_bytes();
        let items = [MAGIC, &self.exe, &self.cwd, &count].into_iter().chain(self.argv.iter().map(|a| &a[..])).chain(self.env.iter().map(|e| &e[..]));
        let mut out = Vec::new();
        for i in items {
            out.extend_from_slice(i);
            out.push(0);
        }
        out
    }

    /// None for anything but a whole record (a program path, at least one argument, no NUL
    /// inside an item).
    pub fn decode(b: &[u8]) -> Option<Rerun> {
        let body = b.strip_suffix(&[0])?;
        let mut it = body.split(|&c| c == 0);
        if it.next()? != MAGIC {
            return None;
        }
        let exe = it.next()?.to_vec();
        let cwd = it.next()?.to_vec();
        let n: usize = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
        let argv: Vec<Vec<u8>> = it.by_ref().take(n).map(|a| a.to_vec()).collect();
        let env: Vec<Vec<u8>> = it.map(|e| e.to_vec()).collect();
        (!exe.is_empty() && n > 0 && argv.len() == n && !cwd.is_empty()).then_some(Rerun { exe, cwd, argv, env })
    }

    /// Read `PID.exec` of the set `dir`, if it is the user's (`trust::open_owned`).
    pub fn read(dir: &Path, pid: i32, euid: u32) -> Result<Rerun, String> {
        use std::io::Read;
        let path = dir.join(file_name(pid));
        let f = crate::trust::open_owned(&path, euid).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut b = Vec::new();
        f.take(MAX_LEN + 1).read_to_end(&mut b).map_err(|e| format!("{}: {e}", path.display()))?;
        if b.len() as u64 > MAX_LEN {
            return Err(format!("{}: larger than a command line", path.display()));
        }
        Rerun::decode(&b).ok_or_else(|| format!("{}: not a command record", path.display()))
    }

    /// The environment to run it with: the record's, with the Slurm job's variables (`SLURM_*`)
    /// taken from `now` (the restart's environment) instead.
    pub fn env_with_job_of(&self, now: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let slurm = |e: &&Vec<u8>| e.starts_with(b"SLURM_");
        self.env.iter().filter(|e| !slurm(e)).chain(now.iter().filter(slurm)).cloned().collect()
    }

    /// The value of variable `name` in the record's environment.
    pub fn var(&self, name: &str) -> Option<&[u8]> {
        self.env.iter().find_map(|e| e.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn round_trip_and_garbage() {
        let r = Rerun { exe: b"/usr/bin/srun".to_vec(), cwd: b"/home/u".to_vec(), argv: v(&["srun", "-n", "2", "a b"]), env: v(&["A=1", "SLURM_JOB_NUM_NODES=2"]) };
        assert_eq!(Rerun::decode(&r.encode()), Some(r.clone()));
        let no_env = Rerun { env: Vec::new(), ..r.clone() };
        assert_eq!(Rerun::decode(&no_env.encode()), Some(no_env));
        let enc = r.encode();
        for bad in [&b""[..], b"ckpt-exec 1\0", &enc[..enc.len() - 1], b"ckpt-exec 2\0/x\0/\x001\0x\0", b"ckpt-exec 1\0/x\0/\x003\0x\0", b"ckpt-exec 1\0/x\0/\x000\0"] {
            assert_eq!(Rerun::decode(bad), None, "{bad:?}");
        }
        assert_eq!(r.var("SLURM_JOB_NUM_NODES"), Some(&b"2"[..]));
        assert_eq!(r.var("SLURM_JOB"), None);
    }

    #[test]
    fn slurm_variables_are_the_new_allocations() {
        let r = Rerun { exe: b"/x".to_vec(), cwd: b"/".to_vec(), argv: v(&["x"]), env: v(&["A=1", "SLURM_NODELIST=n[1-2]", "SLURM_JOB_ID=7"]) };
        let now = v(&["B=2", "SLURM_NODELIST=n[3-4]", "SLURM_JOB_ID=7", "SLURM_JOB_NUM_NODES=2"]);
        assert_eq!(r.env_with_job_of(&now), v(&["A=1", "SLURM_NODELIST=n[3-4]", "SLURM_JOB_ID=7", "SLURM_JOB_NUM_NODES=2"]));
    }
}
