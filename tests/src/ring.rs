//! programs/step_ring.c, the tasks of a step passing data round a TCP ring: the variables srun
//! gives its tasks, and the result each task reaches in an uninterrupted run (the reference the
//! step tests compare with; the delay between rounds does not change it).

use crate::process::Proc;
use crate::scenario::user_command;
use crate::workdir::Workdir;
use crate::{result_of, step_of};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Bytes each task sends round the ring per round.
pub const SIZE: &str = "65536";

/// The variables srun gives task `rank` of a step of `n` tasks.
pub fn slurm_env(cmd: &mut Command, job: &str, rank: usize, n: usize, restarts: u32) {
    cmd.env("SLURM_PROCID", rank.to_string()).env("SLURM_STEP_NUM_TASKS", n.to_string()).env("SLURM_JOB_ID", job).env("SLURM_STEP_ID", "0");
    cmd.env("SLURM_RESTART_COUNT", restarts.to_string());
    cmd.env_remove("SLURM_NTASKS");
}

/// Each task's result of an uninterrupted run of `n` tasks without ckpt.
pub fn reference(work: &Workdir, exe: &Path, n: usize, rounds: u32) -> Result<Vec<String>> {
    reference_of(work, n, |ports| vec![exe.into(), ports.into(), rounds.to_string().into(), "0".into(), SIZE.into()])
}

/// Each task's result of an uninterrupted run without ckpt of `n` tasks of the program
/// `argv(ports directory)`.
pub fn reference_of(work: &Workdir, n: usize, argv: impl Fn(&Path) -> Vec<OsString>) -> Result<Vec<String>> {
    let ports = work.join("ports-plain");
    std::fs::create_dir_all(&ports)?;
    let procs: Vec<Proc> = (0..n)
        .map(|r| {
            let mut c = user_command(&argv(&ports), false, work.path());
            slurm_env(&mut c, "plain", r, n, 0);
            Proc::spawn(&format!("plain task {r}"), c)
        })
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for mut p in procs {
        p.wait(Duration::from_secs(120))?;
        out.push(result_of(&p.stdout()).with_context(|| format!("no result from {}:\n{}", p.label(), p.stderr()))?.to_string());
    }
    Ok(out)
}

/// The step numbers in `out`.
pub fn steps(out: &str) -> Vec<u64> {
    out.lines().filter_map(step_of).collect()
}
