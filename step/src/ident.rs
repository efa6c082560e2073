//! Who this task is in its step, from the environment Slurm gives every task of `srun`:
//! SLURM_PROCID (rank), SLURM_STEP_NUM_TASKS, SLURM_JOB_ID, SLURM_STEP_ID and
//! SLURM_RESTART_COUNT. A step of one task, or `CKPT_STEP=0`, is no step: each task
//! checkpoints on its own, as before. Nor is a batch script: it has SLURM_PROCID=0 and the
//! job's SLURM_NTASKS, but no SLURM_STEP_NUM_TASKS (srun sets that for the tasks it starts), and
//! a `ckpt-run` there is one program, not rank 0 of tasks that will never link up.
//!
//! A task that a rewritten srun started (`join`: an MPI launcher's daemon under `ckpt-run
//! mpirun`) has `CKPT_STEP_JOIN` too: it is task `offset + SLURM_PROCID` of the joined step, whose
//! size that names, and whose rank 0 is the launcher's tree.
//!
//! The epoch names one run of the step (job, step, restart count, and whether it is the
//! program or ckpt-restart's rendezvous): the address files of earlier runs are recognised as
//! stale by it.

use crate::join::{Join, JOIN_VAR};
use crate::sha256::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ident {
    pub rank: u32,
    pub ntasks: u32,
    pub job: String,
    pub step: String,
    pub restarts: u32,
}

impl Ident {
    /// The step this task belongs to (None: not a step of several tasks, or turned off).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Option<Ident> {
        if var("CKPT_STEP").as_deref() == Some("0") {
            return None;
        }
        let num = |v: &str| var(v).and_then(|x| x.trim().parse::<u32>().ok());
        let procid = num("SLURM_PROCID")?;
        let srun_tasks = num("SLURM_STEP_NUM_TASKS")?;
        let (rank, ntasks, step) = match var(JOIN_VAR) {
            Some(j) => {
                let j = Join::decode(&j)?;
                (j.rank(procid, srun_tasks)?, j.size, format!("join:{}", j.tag))
            }
            None => (procid, srun_tasks, var("SLURM_STEP_ID").unwrap_or_default()),
        };
        if ntasks < 2 || rank >= ntasks {
            return None;
        }
        Some(Ident { rank, ntasks, job: var("SLURM_JOB_ID").unwrap_or_default(), step, restarts: num("SLURM_RESTART_COUNT").unwrap_or(0) })
    }

    /// Rank 0 of a joined step (`join`): the process tree `ckpt-run` started inside a Slurm
    /// job (not as a task of srun) under image name `name`, whose srun will be rewritten
    /// (`CKPT_JOIN_SRUN=1`). Its size is 0 until the tasks of that srun link up and say it.
    pub fn join_root(var: impl Fn(&str) -> Option<String>, name: &str) -> Option<Ident> {
        let off = var("CKPT_STEP").as_deref() == Some("0") || var("CKPT_JOIN_SRUN").as_deref() != Some("1");
        if off || var("SLURM_STEP_NUM_TASKS").is_some() || var(JOIN_VAR).is_some() || name.is_empty() {
            return None;
        }
        let restarts = var("SLURM_RESTART_COUNT").and_then(|x| x.trim().parse::<u32>().ok()).unwrap_or(0);
        Some(Ident { rank: 0, ntasks: 0, job: var("SLURM_JOB_ID")?, step: format!("join:{name}"), restarts })
    }

    /// A task of a joined step (`join`: its step's name starts so).
    pub fn joined(&self) -> bool {
        self.step.starts_with("join:")
    }

    /// Whether this task belongs to a step of `total` tasks as rank 0 counts them: the same
    /// count, or for a task of a joined step one no greater (its `ntasks` is what its srun
    /// knew: the ranks up to its own srun's last, while a srun of the tree started later,
    /// alongside, has the ranks after: `join::Join`).
    pub fn fits(&self, total: u32) -> bool {
        total == self.ntasks || self.joined() && total > self.ntasks
    }

    /// This run's epoch, for the program's coordinator (`restart` false) or ckpt-restart's. A
    /// joined step's leaves its size out: rank 0 does not know it when it publishes its address.
    pub fn epoch(&self, restart: bool) -> u64 {
        let n = if self.joined() { 0 } else { self.ntasks };
        let s = format!("{}|{}|{}|{}|{}", self.job, self.step, self.restarts, n, if restart { "restart" } else { "run" });
        let h = Sha256::default().update(s.as_bytes()).finish();
        u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
    }
}

/// The name the step's files share: the task's image name without its `.RANK`.
pub fn base_name(name: &str, rank: u32) -> String {
    let suffix = format!(".{rank}");
    name.strip_suffix(&suffix).unwrap_or(name).to_string()
}

/// Why a task launched this way cannot be checkpointed with its step (None: it can): ranks
/// started directly by srun through PMI2 or PMIx talk to a server inside slurmstepd, which is
/// not checkpointed.
pub fn unsupported_launch(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if var("PMI_FD").is_some() || var("PMI_JOBID").is_some() && var("SLURM_STEP_ID").is_some() {
        return Some("this task was started by srun through PMI2 (MPI ranks launched directly by srun): its PMI server lives in slurmstepd and cannot be checkpointed; launch the ranks with mpirun inside the allocation".into());
    }
    if var("PMIX_NAMESPACE").is_some() && var("SLURM_STEP_ID").is_some() && var("PMIX_SERVER_URI2").is_some() {
        return Some("this task was started by srun through PMIx (MPI ranks launched directly by srun): its PMIx server lives in slurmstepd and cannot be checkpointed; launch the ranks with mpirun inside the allocation".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(v: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| v.iter().find(|(a, _)| *a == k).map(|(_, b)| b.to_string())
    }

    #[test]
    fn identity_from_slurm() {
        let v = [("SLURM_PROCID", "2"), ("SLURM_STEP_NUM_TASKS", "4"), ("SLURM_JOB_ID", "17"), ("SLURM_STEP_ID", "0")];
        let id = Ident::from_env(env(&v)).unwrap();
        assert_eq!((id.rank, id.ntasks, id.restarts), (2, 4, 0));
        assert_ne!(id.epoch(false), id.epoch(true));
        let again = [("SLURM_RESTART_COUNT", "1")].iter().chain(v.iter()).copied().collect::<Vec<_>>();
        assert_ne!(Ident::from_env(env(&again)).unwrap().epoch(false), id.epoch(false));
        assert_eq!(Ident::from_env(env(&[("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "1")])), None);
        // A batch script of `sbatch -n4`: the job's task count, no step's.
        assert_eq!(Ident::from_env(env(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4"), ("SLURM_JOB_ID", "17")])), None);
        let off = [("CKPT_STEP", "0")].iter().chain(v.iter()).copied().collect::<Vec<_>>();
        assert_eq!(Ident::from_env(env(&off)), None);
        // A daemon a rewritten srun started: task 1 of 2 of srun's step, 2 of the joined step of 3.
        let joined = [("CKPT_STEP_JOIN", "1:3:mpirun"), ("SLURM_PROCID", "1"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_JOB_ID", "17"), ("SLURM_STEP_ID", "4")];
        let j = Ident::from_env(env(&joined)).unwrap();
        assert_eq!((j.rank, j.ntasks, j.step.as_str()), (2, 3, "join:mpirun"));
        assert!(j.fits(3) && j.fits(5) && !j.fits(2), "a joined task fits a step with a later srun's ranks after its own");
        assert!(id.fits(4) && !id.fits(5), "a plain step's count is exact");
        // Rank 0 (the launcher's tree, in the batch script) makes the same epoch without the size.
        let batch = [("CKPT_JOIN_SRUN", "1"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4"), ("SLURM_JOB_ID", "17")];
        let root = Ident::join_root(env(&batch), "mpirun").unwrap();
        assert_eq!((root.rank, root.ntasks), (0, 0));
        assert_eq!(root.epoch(false), j.epoch(false));
        assert_eq!(Ident::join_root(env(&batch[1..]), "mpirun"), None, "not asked for");
        assert_eq!(Ident::join_root(env(&joined), "mpirun"), None, "a task of srun");
        let bad = [("CKPT_STEP_JOIN", "0:3:mpirun")].iter().chain(joined[1..].iter()).copied().collect::<Vec<_>>();
        assert_eq!(Ident::from_env(env(&bad)), None);
        assert_eq!(base_name("ring.2", 2), "ring");
        assert_eq!(base_name("ring", 2), "ring");
        assert!(unsupported_launch(env(&[("PMI_FD", "5")])).is_some());
        assert!(unsupported_launch(env(&v)).is_none());
    }
}
