//! Processes of a tree whose work runs outside it: Slurm's `srun` started a job step whose tasks
//! (Open MPI's `orted`, MPICH's `hydra_pmi_proxy`, or any program) run under slurmstepd on the
//! job's nodes, outside the namespace. A checkpoint of the tree would hold srun and the
//! launcher (mpirun, mpiexec) but none of those tasks, and its restart would bring back a
//! launcher whose daemons and ranks are gone (its connections to them closed): the coordinator
//! refuses such a checkpoint at once, in one line naming the process.
//!
//! Except, when the tree is rank 0 of a joined step (`CKPT_JOIN_SRUN=1`: its srun runs each of
//! its tasks under ckpt-run, which take their part in the step's checkpoint), a srun rewritten
//! so: its command is recorded in the set and a restart runs it again (`reruns`, `write_rerun`).
//! Several at once (`srun A & srun B`) are each recorded and run again: each runs its tasks as
//! ranks of its own in the joined step (the runtime's `srunranks`), which are in its record's
//! environment (`CKPT_STEP_JOIN`), and the step's rank 0 refuses a checkpoint in which a srun's
//! tasks are not all linked.

use std::path::Path;

/// The daemons MPI launchers start on the job's nodes through srun.
const DAEMONS: [&str; 3] = ["orted", "prted", "hydra_pmi_proxy"];

/// Why process `pid` keeps part of the job outside the tree, if it does.
pub fn outside_work(pid: i32, joined: bool) -> Option<String> {
    // (srun's helper, its child, is run again with it.)
    if joined && (rewritten_srun(pid).is_some() || parent(pid).is_some_and(|p| rewritten_srun(p).is_some())) {
        return None;
    }
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

fn parent(pid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?.rsplit_once(") ")?.1.split(' ').nth(1)?.parse::<i32>().ok()
}

/// A srun rewritten to run its tasks under ckpt-run as a joined step (`ckpt_step::join`; the
/// helper it forks, a srun child of srun, is not one: it is srun's own).
fn rewritten_srun(pid: i32) -> Option<Vec<String>> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    if exe.file_name()? != "srun" {
        return None;
    }
    let ppid = parent(pid)?;
    if std::fs::read_link(format!("/proc/{ppid}/exe")).is_ok_and(|e| e.file_name().is_some_and(|n| n == "srun")) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline.strip_suffix(&[0]).unwrap_or(&cmdline).split(|&b| b == 0).map(|a| String::from_utf8(a.to_vec())).collect::<Result<_, _>>().ok()?;
    ckpt_step::join::resume_argv(&args)
}

/// In a checkpoint of a joined step's rank 0 (`joined`), the rewritten sruns of the tree are not
/// refused: each is run again at restart (`ckpt_image::rerun`). Those of `pids`.
pub fn reruns(pids: &[i32], joined: bool) -> Vec<i32> {
    if !joined {
        return Vec::new();
    }
    pids.iter().copied().filter(|&p| rewritten_srun(p).is_some()).collect()
}

/// Write the record of process `pid` (a rewritten srun, stopped) into the set's temporary
/// directory `tmp`: its program, working directory, argv with `--resume`, and its environment
/// as it was exec'd, ckpt's launch settings and preload included: the restart runs it again
/// under the runtime, a member of the restarted tree (`ckpt-restart`'s `rerun`), so that the
/// restarted joined step can be checkpointed again.
pub fn write_rerun(tmp: &Path, pid: i32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let argv = rewritten_srun(pid).ok_or_else(|| format!("process {pid} is no longer the rewritten srun"))?;
    let link = |what: &str| std::fs::read_link(format!("/proc/{pid}/{what}")).map(|p| p.into_os_string().into_encoded_bytes()).map_err(|e| format!("process {pid}'s {what}: {e}"));
    let environ = std::fs::read(format!("/proc/{pid}/environ")).map_err(|e| format!("process {pid}'s environment: {e}"))?;
    let env: Vec<Vec<u8>> = environ.split(|&b| b == 0).filter(|e| !e.is_empty()).map(|e| e.to_vec()).collect();
    let r = ckpt_image::rerun::Rerun { exe: link("exe")?, cwd: link("cwd")?, argv: argv.into_iter().map(String::into_bytes).collect(), env };
    let path = tmp.join(ckpt_image::rerun::file_name(pid));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .and_then(|mut f| f.write_all(&r.encode()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The processes (of `tree`: pid, parent) below a rewritten srun that run no runtime (not
/// `members`): its tasks, when a srun starts them on this node inside the tree (a stand-in srun
/// does; Slurm's run under slurmstepd). They are the joined step's tasks, not the tree's.
pub fn beyond(tree: &[(i32, i32)], members: &[i32]) -> Vec<i32> {
    let sruns: Vec<i32> = tree.iter().map(|p| p.0).filter(|&p| rewritten_srun(p).is_some()).collect();
    let mut below = sruns.clone();
    let mut i = 0;
    while i < below.len() {
        let at = below[i];
        below.extend(tree.iter().filter(|p| p.1 == at && !below.contains(&p.0)).map(|p| p.0).collect::<Vec<_>>());
        i += 1;
    }
    // (srun itself is the tree's: one that runs no runtime, as srun run again at a restart,
    // makes the checkpoint fail as any such process does.)
    below.retain(|p| !members.contains(p) && !sruns.contains(p));
    below
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_srun_is_named() {
        assert_eq!(super::outside_work(std::process::id() as i32, false), None);
        assert_eq!(super::outside_work(-1, true), None);
    }
}
