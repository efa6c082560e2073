//! Issue 14, the joined step's launch (docs/multinode.md, part 1b) without a cluster: a
//! process tree under `ckpt-run` inside a Slurm job (SLURM_JOB_ID) that runs `srun` (as
//! Open MPI's mpirun and MPICH's mpiexec start their daemons) has srun's program run under
//! `ckpt-run`, as tasks 1..N of a joined step whose rank 0 is the tree (`CKPT_STEP_JOIN`).
//! `srun` here is a stand-in script on PATH that records how it was called and starts its tasks
//! on this machine with the variables srun gives them. The rewrite is opt-in (CKPT_JOIN_SRUN=1)
//! until the joined step's checkpoint and restart exist: a checkpoint of a tree holding srun
//! stays refused (slurm_jobs.rs).

use anyhow::{ensure, Result};
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Workdir};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

/// srun on one machine: `srun -n N PROGRAM...` records its argv and CKPT_STEP_JOIN in $OUT,
/// then runs PROGRAM as its N tasks here, each task's output in $OUT/taskI.
const FAKE_SRUN: &str = r#"#!/bin/sh
printf '%s\n' "$@" > "$OUT/argv"
printf '%s\n' "${CKPT_STEP_JOIN-none}" > "$OUT/join"
n=$2
shift 2
i=0
while [ $i -lt $n ]; do
    SLURM_PROCID=$i SLURM_STEP_NUM_TASKS=$n SLURM_STEP_ID=1 "$@" > "$OUT/task$i" 2>&1 &
    i=$((i + 1))
done
wait
"#;

/// The task program: its rank, as the joined step and ckpt-run see it.
const TASK: &str = r#"echo "task $SLURM_PROCID of $SLURM_STEP_NUM_TASKS join=${CKPT_STEP_JOIN-none}""#;

/// Run `ckpt-run --name launcher -- sh -c 'srun -n 2 sh -c TASK'` in a job; srun's argv and
/// the tasks' outputs.
fn launch(bins: &Bins, work: &Workdir, tag: &str, opt_in: bool) -> Result<(Vec<String>, String, Vec<String>)> {
    let out = work.join(tag);
    std::fs::create_dir_all(&out)?;
    let path_dir = work.join("fakebin");
    std::fs::create_dir_all(&path_dir)?;
    let srun = path_dir.join("srun");
    std::fs::write(&srun, FAKE_SRUN)?;
    std::fs::set_permissions(&srun, std::fs::Permissions::from_mode(0o755))?;
    let script = format!("srun -n 2 /bin/sh -c '{TASK}'; echo srun ended $?");
    let argv: Vec<OsString> = vec![
        bins.run.clone().into(),
        "--dir".into(),
        work.join("ckpt").into(),
        "--name".into(),
        "launcher".into(),
        "--".into(),
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
    ];
    let mut cmd = user_command(&argv, false, work.path());
    let path = format!("{}:{}", path_dir.display(), std::env::var("PATH").unwrap_or_default());
    cmd.env("PATH", path).env("OUT", &out).env("SLURM_JOB_ID", "77").env("SLURM_JOB_NUM_NODES", "2");
    for v in ["SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "SLURM_NTASKS", "CKPT_STEP_JOIN"] {
        cmd.env_remove(v);
    }
    if opt_in {
        cmd.env("CKPT_JOIN_SRUN", "1");
    } else {
        cmd.env_remove("CKPT_JOIN_SRUN");
    }
    let mut p = Proc::spawn(tag, cmd)?;
    let st = p.wait(Duration::from_secs(60))?;
    ensure!(st.success() && p.stdout().contains("srun ended 0"), "the launcher failed: {st:?}\n{}\n{}", p.stdout(), p.stderr());
    let read = |f: &Path| std::fs::read_to_string(f).unwrap_or_default();
    let args = read(&out.join("argv")).lines().map(String::from).collect();
    let tasks = (0..2).map(|i| read(&out.join(format!("task{i}"))).trim().to_string()).collect();
    Ok((args, read(&out.join("join")).trim().to_string(), tasks))
}

/// srun's program runs under ckpt-run (same build, same image directory, the tree's image name,
/// its checkpoint signal), its tasks are ranks 1 and 2 of a joined step of 3 named after the
/// tree, and they run to their end.
#[test]
fn srun_in_a_tree_runs_its_tasks_under_ckpt_run_as_a_joined_step() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("step-join-srun")?;
    let (args, join, tasks) = launch(&bins, &work, "joined", true)?;
    let dir = work.join("ckpt").canonicalize()?;
    let expect: Vec<String> = ["-n", "2", &bins.run.display().to_string(), "--dir", &dir.display().to_string(), "--name", "launcher", "--signal", "12", "--", "/bin/sh", "-c", TASK]
        .iter()
        .map(|s| s.to_string())
        .collect();
    ensure!(args == expect, "srun was run as {args:?}, not {expect:?}");
    ensure!(join == "1:3:launcher", "srun's tasks got CKPT_STEP_JOIN={join:?}");
    for (i, t) in tasks.iter().enumerate() {
        ensure!(t == &format!("task {i} of 2 join=1:3:launcher"), "task {i} printed {t:?}");
    }
    Ok(())
}

/// Without the opt-in (the default until the joined step's checkpoint and restart exist), srun
/// runs as it was called.
#[test]
fn srun_in_a_tree_is_left_alone_without_the_opt_in() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("step-join-off")?;
    let (args, join, tasks) = launch(&bins, &work, "plain", false)?;
    ensure!(args == ["-n", "2", "/bin/sh", "-c", TASK], "srun was run as {args:?}");
    ensure!(join == "none", "srun's tasks got CKPT_STEP_JOIN={join:?}");
    ensure!(tasks[1] == "task 1 of 2 join=none", "task 1 printed {:?}", tasks[1]);
    Ok(())
}
