//! Processes of a tree whose work runs outside it: Slurm's `srun` started a job step whose tasks
//! (Open MPI's `orted`, MPICH's `hydra_pmi_proxy`, or any program) run under slurmstepd on the
//! job's nodes, outside the namespace. A checkpoint of the tree would hold srun and the
//! launcher (mpirun, mpiexec) but none of those tasks, and its restart would bring back a
//! launcher whose daemons and ranks are gone (its connections to them closed): the coordinator
//! refuses such a checkpoint at once, in one line naming the process.

use std::path::Path;

/// The daemons MPI launchers start on the job's nodes through srun.
const DAEMONS: [&str; 3] = ["orted", "prted", "hydra_pmi_proxy"];

/// Why process `pid` keeps part of the job outside the tree, if it does.
pub fn outside_work(pid: i32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    if name != "srun" {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline.split(|&b| b == 0).skip(1).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    // The program srun runs, when it is an MPI launcher's daemon (Open MPI: `srun --opt=v ...
    // orted ...`; MPICH: `srun -N 2 -n 2 --input none /usr/bin/hydra_pmi_proxy ...`).
    let base = |a: &str| Path::new(a).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let what = args.iter().map(|a| base(a)).find(|b| DAEMONS.contains(&b.as_str())).map_or("its tasks".to_string(), |b| format!("`{b}` and the ranks it starts"));
    Some(format!(
        "process {pid} ({}) is Slurm's srun: the job step it started ({what}) runs on the job's nodes outside this process tree and would be missing from the checkpoint; an MPI job across nodes under `ckpt-run mpirun` is not supported yet (README: Known limits)",
        exe.display()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_srun_is_named() {
        assert_eq!(super::outside_work(std::process::id() as i32), None);
        assert_eq!(super::outside_work(-1), None);
    }
}
