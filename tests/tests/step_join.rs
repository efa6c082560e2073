//! Issue 14, the joined step's launch (docs/multinode.md, part 1b) without a cluster: a
//! process tree under `ckpt-run` inside a Slurm job (SLURM_JOB_ID) that runs `srun` (as
//! Open MPI's mpirun and MPICH's mpiexec start their daemons) has srun's program run under
//! `ckpt-run`, as tasks 1..N of a joined step whose rank 0 is the tree (`CKPT_STEP_JOIN`).
//! `srun` here is a stand-in on PATH (programs/fake_srun.c) that records how it was called and
//! starts its tasks on this machine with the variables srun gives them. The rewrite is opt-in (CKPT_JOIN_SRUN=1)
//! until the joined step's checkpoint and restart exist: a checkpoint of a tree holding srun
//! stays refused (slurm_jobs.rs).

use anyhow::{ensure, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Workdir};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The task program: its rank, as the joined step and ckpt-run see it.
const TASK: &str = r#"echo "task $SLURM_PROCID of $SLURM_STEP_NUM_TASKS join=${CKPT_STEP_JOIN-none}""#;

/// The launcher: `ckpt-run --name launcher -- sh -c 'srun -n 2 sh -c TASK'` in a Slurm job
/// (`opt_in`: with CKPT_JOIN_SRUN=1), the stand-in srun first on PATH, its records in
/// work/`tag`.
fn start(bins: &Bins, work: &Workdir, tag: &str, task: &str, opt_in: bool, env: &[(&str, &str)]) -> Result<(Proc, PathBuf)> {
    start_with(bins, work, tag, task, opt_in, env, false)
}

/// `start`, with `--resume` when `resume`.
fn start_with(bins: &Bins, work: &Workdir, tag: &str, task: &str, opt_in: bool, env: &[(&str, &str)], resume: bool) -> Result<(Proc, PathBuf)> {
    start_in(bins, work, tag, task, opt_in, env, resume, &work.join("ckpt"))
}

/// `start_with`, the images in `dir`.
#[allow(clippy::too_many_arguments)]
fn start_in(bins: &Bins, work: &Workdir, tag: &str, task: &str, opt_in: bool, env: &[(&str, &str)], resume: bool, dir: &Path) -> Result<(Proc, PathBuf)> {
    let script = format!("srun -n 2 /bin/sh -c '{task}'; echo srun ended $?");
    start_script(bins, work, tag, &script, opt_in, env, resume, dir)
}

/// The launcher running the shell script `script` (the stand-in srun on its PATH).
#[allow(clippy::too_many_arguments)]
fn start_script(bins: &Bins, work: &Workdir, tag: &str, script: &str, opt_in: bool, env: &[(&str, &str)], resume: bool, dir: &Path) -> Result<(Proc, PathBuf)> {
    start_script_as(bins, work, tag, script, opt_in, env, resume, dir, false)
}

/// `start_script`, as user nobody when `as_nobody` (the tasks' output folder open to it).
#[allow(clippy::too_many_arguments)]
fn start_script_as(bins: &Bins, work: &Workdir, tag: &str, script: &str, opt_in: bool, env: &[(&str, &str)], resume: bool, dir: &Path, as_nobody: bool) -> Result<(Proc, PathBuf)> {
    let out = work.join(tag);
    std::fs::create_dir_all(&out)?;
    if as_nobody {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777))?;
    }
    let path_dir = work.join("fakebin");
    if !path_dir.exists() {
        std::fs::create_dir_all(&path_dir)?;
        std::fs::rename(compile_c(work, "fake_srun.c", &[])?, path_dir.join("srun"))?;
    }
    let mut argv: Vec<OsString> = vec![
        bins.run.clone().into(),
        "--dir".into(),
        dir.into(),
        "--name".into(),
        "launcher".into(),
    ];
    argv.extend(resume.then(|| "--resume".into()));
    argv.extend(["--".into(), "/bin/sh".into(), "-c".into(), script.into()]);
    let mut cmd = user_command(&argv, as_nobody, work.path());
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
    for (k, v) in env {
        cmd.env(k, v);
    }
    Ok((Proc::spawn(tag, cmd)?, out))
}

/// Run the launcher to its end; srun's argv, its tasks' CKPT_STEP_JOIN and their outputs.
fn launch(bins: &Bins, work: &Workdir, tag: &str, opt_in: bool) -> Result<(Vec<String>, String, Vec<String>)> {
    let (mut p, out) = start(bins, work, tag, TASK, opt_in, &[])?;
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

/// The outer process of srun's task `procid` (its parent is srun) of the launcher writing to
/// `out`: the ckpt-run srun started, or, once a restart ran srun again, the ckpt-restart that
/// ckpt-run --resume became.
fn task_run(bins: &Bins, out: &Path, procid: u32) -> Option<i32> {
    let want = format!("SLURM_PROCID={procid}");
    let ours = [b"OUT=".as_slice(), out.as_os_str().as_encoded_bytes()].concat();
    std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).find(|pid| {
        let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let ppid = String::from_utf8_lossy(&read("stat")).rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)?.parse::<i32>().ok());
        let parent_is_srun = ppid.and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok()).is_some_and(|e| e.file_name().is_some_and(|n| n == "srun"));
        let is = |b: &PathBuf| b.canonicalize().is_ok_and(|b| b == exe);
        let env = read("environ");
        let has = |v: &[u8]| env.split(|&b| b == 0).any(|e| e == v);
        (is(&bins.run) || is(&bins.restart)) && parent_is_srun && has(want.as_bytes()) && has(&ours)
    })
}

/// The joined step of the stand-in srun, checkpointed, killed and resumed `rounds` times: each
/// time a checkpoint asked of task 1 (as `scancel -s USR2` does) is one of the whole joined
/// step, every process is killed, and `ckpt-run --resume` of the tree runs srun again with
/// `--resume`; then the step runs to its end. Each task counts to `steps`, once.
fn checkpoint_kill_resume(tag: &str, rounds: u32, steps: u32) -> Result<()> {
    checkpoint_kill_resume_moving(tag, rounds, steps, false)
}

/// `checkpoint_kill_resume`; `moved`: the image directory is renamed after each kill and the
/// tree resumed from its new name.
fn checkpoint_kill_resume_moving(tag: &str, rounds: u32, steps: u32, moved: bool) -> Result<()> {
    let mut dir = PathBuf::new();
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let task = format!(r#"i=0; while [ $i -lt {steps} ]; do sleep 0.1; i=$((i + 1)); echo "n $i"; done; echo "task $SLURM_PROCID done $i""#);
    dir.push(work.join("ckpt"));
    let (mut p, out) = start(&bins, &work, "resume", &task, true, &[("CKPT_LOG", "debug")])?;
    let lines = |r: u32| std::fs::read_to_string(out.join(format!("task{r}"))).unwrap_or_default();
    for round in 1..=rounds {
        for r in [1, 2] {
            if let Err(e) = p.wait_for_stderr(&format!("step: task {r} linked"), Duration::from_secs(120)) {
                anyhow::bail!("round {round}: {e}\n{}\ntask 0:\n{}\ntask 1:\n{}", p.stderr(), lines(0), lines(1));
            }
        }
        if round == 1 {
            ensure!(p.stderr().contains("the joined step has 3 tasks"), "rank 0 did not learn the step's size:\n{}", p.stderr());
        }
        let at = lines(1).lines().count();
        ckpt_tests::process::wait_until(Duration::from_secs(30), || lines(1).lines().count() >= at + 10);
        let pid = task_run(&bins, &out, 1).ok_or_else(|| anyhow::anyhow!("round {round}: no outer process of srun's task 1; it printed\n{}", lines(1)))?;
        // SAFETY: a signal to the task's outer process, which this test's launcher started.
        ensure!(unsafe { libc::kill(pid, libc::SIGUSR2) } == 0, "cannot signal task 1");
        // (Longer than the step's own bound, 120 s: a checkpoint that stalls is abandoned with
        // its reason before this gives up.)
        if let Err(e) = p.wait_for_stderr("3 tasks committed", Duration::from_secs(150)) {
            anyhow::bail!("round {round}: {e}\n{}\n{}\ntask 0:\n{}\ntask 1:\n{}", p.stdout(), p.stderr(), lines(0), lines(1));
        }
        p.kill()?;
        ensure!(!p.stdout().contains("srun ended"), "round {round}: the launcher ended before it was killed:\n{}", p.stdout());
        // (The tasks were in the launcher's namespace: gone with it.)
        ensure!(task_run(&bins, &out, 1).is_none() && task_run(&bins, &out, 2).is_none(), "round {round}: a task outlived the launcher's namespace");
        if moved {
            let to = work.join(&format!("ckpt-moved-{round}"));
            std::fs::rename(&dir, &to)?;
            dir = to;
        }
        p = start_in(&bins, &work, "resume", &task, true, &[("CKPT_LOG", "debug")], true, &dir)?.0;
        if round < rounds {
            continue;
        }
        let last = |r: u32| lines(r).lines().rev().find(|l| l.starts_with("n ")).unwrap_or("none").to_string();
        let st = p.wait(Duration::from_secs(300)).map_err(|e| anyhow::anyhow!("{e}; the tasks' last counts: {} and {}\n{}", last(0), last(1), p.stderr()))?;
        let (so, se) = (p.stdout(), p.stderr());
        ensure!(st.success() && so.contains("srun ended 0"), "the resumed launcher failed: {st}\n{so}\n{se}");
    }
    let args = std::fs::read_to_string(out.join("argv"))?;
    ensure!(args.lines().nth(3) == Some("--resume"), "srun was not run again with --resume:\n{args}");
    if moved {
        let now = dir.canonicalize()?.display().to_string();
        ensure!(args.lines().skip_while(|l| *l != "--dir").nth(1) == Some(now.as_str()), "srun was run again with another image directory than {now}:\n{args}");
    }
    for r in 0..2u32 {
        let t = lines(r);
        ensure!(t.contains(&format!("task {r} done {steps}")), "task {r} did not run to its end:\n{t}\n{}", p.stderr());
        // Resumed, not started over: its count begins once.
        ensure!(t.lines().filter(|l| *l == "n 1").count() == 1, "task {r} started over:\n{t}");
    }
    Ok(())
}

/// With the opt-in, the tree is rank 0 of the joined step: srun's tasks (each a tree under its
/// own ckpt-run) link up to it and it learns the step's size from them. A checkpoint asked of
/// one of them (as `scancel -s USR2` does) is one of the whole joined step: srun's command goes
/// into the tree's set instead of srun (`reexec`). Every process killed, `ckpt-run --resume` of
/// the tree runs srun again with `--resume` in its rewritten argv, its tasks restart from the
/// joined step's set and meet the tree, and each goes on from where it was (its count does not
/// start over) to its end; the launcher sees srun end as it would have.
#[test]
fn joined_step_checkpoint_kill_resume_runs_srun_again() -> Result<()> {
    checkpoint_kill_resume("step-join-resume", 1, 100)
}

/// The restarted joined step checkpoints again: srun run again by the restart runs under the
/// runtime, a member of the restarted tree, its record of the first restart (`--resume`
/// already in it) taken as it is; the tasks restarted by it link up to the restarted tree
/// again. Checkpoint, kill, resume, checkpoint, kill, resume: the tasks count to their end
/// once.
#[test]
fn restarted_joined_step_checkpoints_again() -> Result<()> {
    checkpoint_kill_resume("step-join-twice", 2, 150)
}

/// The user moves the image directory between the kill and the resume (twice): srun run again
/// gives its tasks the directory the tree was resumed from (its record names the first one),
/// where their images are and where the restarted tree waits for them: each task counts to its
/// end once (before: the tasks looked in the old directory).
#[test]
fn a_joined_step_resumed_from_a_moved_directory_runs_its_tasks_there() -> Result<()> {
    checkpoint_kill_resume_moving("step-join-moved", 2, 150, true)
}

/// The restart of a joined step runs Slurm's srun again instead of restoring it
/// (docs/multinode.md, part 3; `ckpt_image::rerun`): a process of the set marked `reexec` is
/// made with its pid and parent and the fds it shares with the tree (here a pipe its parent's
/// other child reads), its descendants (srun's helper) are not made, and it execs its recorded
/// command with the Slurm job's variables of the new allocation; a restart in an allocation
/// with another node count is refused in one line before anything is made. (The coordinator
/// does not mark srun yet: its checkpoint is still refused, above; the test marks a shell.)
#[test]
fn restart_runs_a_marked_process_again_in_its_place() -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bins = Bins::locate()?;
    let work = Workdir::new("step-join-rerun")?;
    let script = r#"echo started; /bin/sh -c 'sleep 1000 & echo helper; wait' | while read l; do echo "read: $l"; done; echo ended"#;
    let argv: Vec<OsString> =
        vec![bins.run.clone().into(), "--dir".into(), work.join("ckpt").into(), "--name".into(), "launcher".into(), "--stop-signal".into(), "USR1".into(), "--".into(), "/bin/sh".into(), "-c".into(), script.into()];
    let mut cmd = user_command(&argv, false, work.path());
    cmd.env("CKPT_NAMESPACE", "1");
    let mut p = Proc::spawn("ckpt-run", cmd)?;
    ckpt_tests::process::wait_until(Duration::from_secs(30), || p.stdout().contains("read: helper"));
    ensure!(p.stdout().contains("read: helper"), "the tree did not start:\n{}\n{}", p.stdout(), p.stderr());
    p.signal(libc::SIGUSR1)?;
    let st = p.wait(Duration::from_secs(60))?;
    ensure!(st.code() == Some(75), "ckpt-run after its stop signal: {st} (75 expected)\n{}", p.stderr());
    let set = work.join("ckpt/launcher.ckpt");
    let manifest = std::fs::read_to_string(set.join("tree"))?;
    // proc PID PPID PGID SID ...: the root's child that has a child of its own (the shell
    // standing in for srun, whose `sleep` stands in for srun's helper).
    let procs: Vec<(i32, i32)> = manifest.lines().filter_map(|l| {
        let w: Vec<&str> = l.split(' ').collect();
        (w.first() == Some(&"proc")).then(|| Some((w.get(1)?.parse().ok()?, w.get(2)?.parse().ok()?))).flatten()
    }).collect();
    let root: i32 = manifest.lines().find_map(|l| l.strip_prefix("root ")?.parse().ok()).ok_or_else(|| anyhow::anyhow!("no root in\n{manifest}"))?;
    let srun = procs.iter().map(|p| p.0).find(|&pid| procs.iter().any(|q| q == &(pid, root)) && procs.iter().any(|q| q.1 == pid)).ok_or_else(|| anyhow::anyhow!("no child with a child in\n{manifest}"))?;
    std::fs::write(set.join("tree"), format!("{manifest}reexec {srun}\n"))?;
    let record = ckpt_image::rerun::Rerun {
        exe: b"/bin/sh".to_vec(),
        cwd: work.path().as_os_str().as_encoded_bytes().to_vec(),
        argv: ["sh", "-c", r#"echo "rerun $$ $PPID $SLURM_NODELIST $1""#, "sh", "--resume"].iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: ["PATH=/usr/bin:/bin", "SLURM_NODELIST=old[1-2]", "SLURM_JOB_NUM_NODES=2"].iter().map(|a| a.as_bytes().to_vec()).collect(),
    };
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(set.join(ckpt_image::rerun::file_name(srun)))?.write_all(&record.encode())?;
    let restart = |nodes: &str| -> Result<Proc> {
        let argv: Vec<OsString> = vec![bins.restart.clone().into(), set.clone().into()];
        let mut cmd = user_command(&argv, false, work.path());
        cmd.env("CKPT_NAMESPACE", "1").env("SLURM_NODELIST", "new[3-4]").env("SLURM_JOB_NUM_NODES", nodes);
        Proc::spawn("ckpt-restart", cmd)
    };
    // Another node count: one line, nothing run.
    let mut r = restart("3")?;
    let st = r.wait(Duration::from_secs(60))?;
    let err = r.stderr();
    ensure!(!st.success() && err.trim().lines().count() == 1 && err.contains("has 3") && err.contains("sbatch -N 2"), "not one line refusing 3 nodes: {st}\n{err}");
    ensure!(r.stdout().is_empty(), "the tree ran:\n{}", r.stdout());
    let mut r = restart("2")?;
    let st = r.wait(Duration::from_secs(60))?;
    let out = r.stdout();
    ensure!(st.success(), "the restart failed: {st}\n{out}\n{}", r.stderr());
    let want = format!("read: rerun {srun} {root} new[3-4] --resume");
    ensure!(out.lines().collect::<Vec<_>>() == [want.as_str(), "ended"], "the restarted tree printed\n{out}\nnot\n{want}\nended\n(stderr: {})", r.stderr());
    Ok(())
}

/// Two sruns of one tree at once (`srun ... & srun ...`) are each a part of the tree's one
/// joined step with ranks of their own: the first's tasks are 1 and 2, the second's 3 and 4
/// (whichever execs first takes the lower ones), and the step has 5 tasks. A checkpoint asked of
/// a task is one of the tree and all four tasks; every process killed, `ckpt-run --resume` runs
/// each srun again under its own ranks, and each of the four tasks goes on from where it was
/// (its count does not start over) to its end; the launcher sees both sruns end.
#[test]
fn two_sruns_of_one_tree_at_once_are_checkpointed_killed_and_resumed() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("step-join-two")?;
    let task = r#"i=0; while [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); echo "$0 n $i"; done; echo "$0 task $SLURM_PROCID done $i""#;
    let script = format!("srun -n 2 /bin/sh -c '{task}' A & srun -n 2 /bin/sh -c '{task}' B; wait; echo sruns ended");
    let dir = work.join("ckpt");
    let env = [("CKPT_LOG", "debug")];
    let (mut p, out) = start_script(&bins, &work, "two", &script, true, &env, false, &dir)?;
    let lines = |r: u32| std::fs::read_to_string(out.join(format!("task{r}"))).unwrap_or_default();
    for r in 1..=4 {
        p.wait_for_stderr(&format!("step: task {r} linked"), Duration::from_secs(120)).map_err(|e| anyhow::anyhow!("{e}\n{}\n{}\n{}", p.stderr(), lines(0), lines(1)))?;
    }
    ensure!(p.stderr().contains("the joined step has 5 tasks"), "rank 0 did not count both sruns' tasks:\n{}", p.stderr());
    let at = lines(1).lines().count();
    ckpt_tests::process::wait_until(Duration::from_secs(30), || lines(1).lines().count() >= at + 10);
    let pid = task_run(&bins, &out, 1).ok_or_else(|| anyhow::anyhow!("no outer process of a task 1; it printed\n{}", lines(1)))?;
    // SAFETY: a signal to the task's outer process, which this test's launcher started.
    ensure!(unsafe { libc::kill(pid, libc::SIGUSR2) } == 0, "cannot signal task 1");
    p.wait_for_stderr("5 tasks committed", Duration::from_secs(150)).map_err(|e| anyhow::anyhow!("{e}\n{}\n{}\n{}", p.stderr(), lines(0), lines(1)))?;
    p.kill()?;
    ensure!(!p.stdout().contains("sruns ended"), "the launcher ended before it was killed:\n{}", p.stdout());
    ensure!(task_run(&bins, &out, 0).is_none() && task_run(&bins, &out, 1).is_none(), "a task outlived the launcher's namespace");
    let mut p = start_script(&bins, &work, "two", &script, true, &env, true, &dir)?.0;
    let st = p.wait(Duration::from_secs(300))?;
    ensure!(st.success() && p.stdout().contains("sruns ended"), "the resumed launcher failed: {st}\n{}\n{}", p.stdout(), p.stderr());
    for who in ["A", "B"] {
        for r in 0..2u32 {
            let t = lines(r);
            ensure!(t.contains(&format!("{who} task {r} done 150")), "srun {who}'s task {r} did not run to its end:\n{t}\n{}", p.stderr());
            ensure!(t.lines().filter(|l| *l == format!("{who} n 1")).count() == 1, "srun {who}'s task {r} started over:\n{t}");
        }
    }
    Ok(())
}

/// Two sruns of one tree side by side, the first (A, ranks 1 and 2) ended while the second
/// (B, ranks 3 and 4) runs: its ranks are a gap in the joined step of 5. A checkpoint then
/// commits with the tree and B's tasks, A's ranks recorded as ended (before: abandoned, `task(s)
/// [1, 2] are not linked`); every process killed, `ckpt-run --resume` runs B again (not A) and
/// B's tasks go on. A srun C started after that restart takes the lowest rank no live srun holds
/// (1, an ended one) and joins: a second checkpoint holds C and B (rank 2 ended), every process
/// killed, resumed again: B and C go on to their ends, each task of A, B and C started once.
/// Every moment the test waits for is a file or a line: A ends when `go` appears, B when
/// `endB`, C starts when `gc` appears.
#[test]
fn first_of_two_sruns_ended_its_ranks_are_a_gap_checkpoint_commits_and_resumes() -> Result<()> {
    gap_checkpoint_commits_and_resumes("step-join-gap", false)
}

/// The same as user nobody.
#[test]
fn first_of_two_sruns_ended_its_ranks_are_a_gap_checkpoint_commits_and_resumes_as_nobody() -> Result<()> {
    gap_checkpoint_commits_and_resumes("step-join-gap-nobody", true)
}

fn gap_checkpoint_commits_and_resumes(tag: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let short = r#"echo "$0 n 1"; touch "$OUT/A$SLURM_PROCID"; while [ ! -e "$OUT/go" ]; do sleep 0.1; done; echo "$0 task $SLURM_PROCID done""#;
    let long = |end: &str| format!(r#"i=0; while [ $i -lt 40 ] || [ ! -e "$OUT/{end}" ]; do sleep 0.1; i=$((i + 1)); echo "$0 n $i"; done; echo "$0 task $SLURM_PROCID done""#);
    let (long_b, long_c) = (long("endB"), long("endC"));
    let script = format!(
        "( while [ ! -e \"$OUT/gc\" ]; do sleep 0.1; done; srun -n 1 /bin/sh -c '{long_c}' C; echo C ended $? ) & c=$!; \
         srun -n 2 /bin/sh -c '{short}' A & a=$!; \
         while [ ! -e \"$OUT/A1\" ] || [ ! -e \"$OUT/A0\" ]; do sleep 0.1; done; \
         srun -n 2 /bin/sh -c '{long_b}' B & b=$!; \
         wait $a; echo A ended $?; wait $b; echo B ended $?; wait $c; echo sruns ended"
    );
    let dir = work.join("ckpt");
    let env = [("CKPT_LOG", "debug")];
    let (mut p, out) = start_script_as(&bins, &work, "gap", &script, true, &env, false, &dir, as_nobody)?;
    let lines = |r: u32| std::fs::read_to_string(out.join(format!("task{r}"))).unwrap_or_default();
    let show = |p: &Proc| format!("{}\n{}\ntask 0:\n{}\ntask 1:\n{}", p.stdout(), p.stderr(), lines(0), lines(1));
    let wait = |p: &mut Proc, what: &str, secs: u64| p.wait_for_stderr(what, Duration::from_secs(secs)).map_err(|e| anyhow::anyhow!("{e}\n{}", show(p)));
    for r in 1..=4 {
        wait(&mut p, &format!("step: task {r} linked"), 120)?;
    }
    ensure!(p.stderr().contains("the joined step has 5 tasks"), "rank 0 did not count both sruns' tasks:\n{}", p.stderr());
    // A ends; the checkpoint is asked once rank 0 has seen both its tasks leave and the tree's
    // shell has reaped its srun.
    std::fs::write(out.join("go"), "")?;
    wait(&mut p, "step: task 1 has left", 60)?;
    wait(&mut p, "step: task 2 has left", 60)?;
    ckpt_tests::process::wait_until(Duration::from_secs(60), || p.stdout().contains("A ended 0"));
    ensure!(p.stdout().contains("A ended 0"), "srun A did not end:\n{}", show(&p));
    // (B's first line out before the checkpoint: a line printed after it is printed again by
    // the restarted task, which is no new start.)
    ckpt_tests::process::wait_until(Duration::from_secs(60), || (0..2).all(|r| lines(r).contains("B n 3")));
    let signal = |procid: u32| -> Result<()> {
        let pid = task_run(&bins, &out, procid).ok_or_else(|| anyhow::anyhow!("no outer process of a task {procid}"))?;
        // SAFETY: a signal to the task's outer process, which this test's launcher started.
        ensure!(unsafe { libc::kill(pid, libc::SIGUSR2) } == 0, "cannot signal task {procid}");
        Ok(())
    };
    signal(1)?;
    wait(&mut p, "3 tasks committed", 150)?;
    // (A's tasks ended normally: each told rank 0 its status.)
    ensure!(p.stderr().contains("task(s) [1 (exit status 0), 2 (exit status 0)] recorded as ended"), "A's ranks were not recorded as ended:\n{}", p.stderr());
    let manifest = std::fs::read_to_string(dir.join("launcher.step"))?;
    ensure!(manifest.contains("rank 1 ended 0\nrank 2 ended 0\n") && manifest.contains("tasks 5\n"), "the manifest:\n{manifest}");
    p.kill()?;
    ensure!(!p.stdout().contains("B ended"), "the launcher ended before it was killed:\n{}", p.stdout());
    ensure!(task_run(&bins, &out, 0).is_none() && task_run(&bins, &out, 1).is_none(), "a task outlived the launcher's namespace");

    // Resumed: B run again with ranks 3 and 4; then C, started now, takes rank 1.
    let (mut p, _) = start_script_as(&bins, &work, "gap", &script, true, &env, true, &dir, as_nobody)?;
    wait(&mut p, "step: task 3 linked", 120)?;
    wait(&mut p, "step: task 4 linked", 120)?;
    std::fs::write(out.join("gc"), "")?;
    wait(&mut p, "step: task 1 linked", 120)?;
    ensure!(std::fs::read_to_string(out.join("join"))?.trim().ends_with("1:2:launcher"), "srun C did not take rank 1:\n{}", std::fs::read_to_string(out.join("join"))?);
    ckpt_tests::process::wait_until(Duration::from_secs(60), || lines(0).contains("C n 3"));
    signal(1)?;
    wait(&mut p, "4 tasks committed", 150)?;
    ensure!(p.stderr().contains("task(s) [2 (exit status 0)] recorded as ended"), "rank 2 was not recorded as ended:\n{}", p.stderr());
    p.kill()?;
    ensure!(!p.stdout().contains("sruns ended"), "the launcher ended before it was killed:\n{}", p.stdout());

    // Resumed again: B and C run again and go on to their ends.
    let (mut p, _) = start_script_as(&bins, &work, "gap", &script, true, &env, true, &dir, as_nobody)?;
    for r in [1, 3, 4] {
        wait(&mut p, &format!("step: task {r} linked"), 120)?;
    }
    std::fs::write(out.join("endB"), "")?;
    std::fs::write(out.join("endC"), "")?;
    let st = p.wait(Duration::from_secs(300))?;
    ensure!(st.success() && p.stdout().contains("B ended 0") && p.stdout().contains("C ended 0") && p.stdout().contains("sruns ended"), "the resumed launcher failed: {st}\n{}", show(&p));
    for (who, ranks) in [("A", 0..2u32), ("B", 0..2), ("C", 0..1)] {
        for r in ranks {
            let t = lines(r);
            // (Whole writes, counted as such: ckpt-run's own lines to the same file may come in
            // pieces around them.)
            ensure!(t.matches(&format!("{who} task {r} done\n")).count() == 1, "srun {who}'s task {r} did not end once:\n{t}\n{}", p.stderr());
            ensure!(t.matches(&format!("{who} n 1\n")).count() == 1, "srun {who}'s task {r} did not start once:\n{t}");
        }
    }
    Ok(())
}

/// A launcher run twice in one job script with another number of daemons: `srun -n 2` then,
/// once it ended, `srun -n 1` of the same tree. Rank 0 takes the second srun's task once every
/// task of the first has left (the joined step of 3 becomes one of 2): a checkpoint during the
/// second srun is one of the tree and its task, every process killed, `ckpt-run --resume` runs
/// the second srun again (not the first) and its task goes on from where it was to its end.
#[test]
fn a_second_srun_of_the_tree_with_another_count_is_checkpointed_and_resumed() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("step-join-second")?;
    let dir = work.join("ckpt");
    let first = r#"sleep 2; echo "first $SLURM_PROCID done""#;
    let second = r#"i=0; while [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); echo "n $i"; done; echo "second done $i""#;
    let script = format!("srun -n 2 /bin/sh -c '{first}'; echo first srun ended $?; srun -n 1 /bin/sh -c '{second}'; echo second srun ended $?");
    let env = [("CKPT_LOG", "debug")];
    let (mut p, out) = start_script(&bins, &work, "second", &script, true, &env, false, &dir)?;
    let lines = || std::fs::read_to_string(out.join("task0")).unwrap_or_default();
    p.wait_for_stderr("the joined step has 2 tasks", Duration::from_secs(120)).map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", p.stdout(), lines()))?;
    ensure!(p.stderr().contains("the joined step has 3 tasks") && p.stdout().contains("first srun ended 0"), "the first srun's step was not seen:\n{}\n{}", p.stdout(), p.stderr());
    let at = lines().lines().count();
    ckpt_tests::process::wait_until(Duration::from_secs(30), || lines().lines().count() >= at + 10);
    let pid = task_run(&bins, &out, 0).ok_or_else(|| anyhow::anyhow!("no outer process of the second srun's task; it printed\n{}", lines()))?;
    // SAFETY: a signal to the task's outer process, which this test's launcher started.
    ensure!(unsafe { libc::kill(pid, libc::SIGUSR2) } == 0, "cannot signal the task");
    p.wait_for_stderr("2 tasks committed", Duration::from_secs(150)).map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", p.stderr(), lines()))?;
    p.kill()?;
    ensure!(!p.stdout().contains("second srun ended"), "the launcher ended before it was killed:\n{}", p.stdout());
    let mut p = start_script(&bins, &work, "second", &script, true, &env, true, &dir)?.0;
    let st = p.wait(Duration::from_secs(300))?;
    let (so, se) = (p.stdout(), p.stderr());
    ensure!(st.success() && so.contains("second srun ended 0") && !so.contains("first srun ended"), "the resumed launcher did not go on in the second srun: {st}\n{so}\n{se}");
    let t = lines();
    ensure!(t.contains("second done 150"), "the second srun's task did not run to its end:\n{t}\n{se}");
    ensure!(t.lines().filter(|l| *l == "n 1").count() == 1, "the second srun's task started over:\n{t}");
    ensure!(t.lines().filter(|l| l.starts_with("first ")).count() == 1, "the first srun ran again:\n{t}");
    Ok(())
}

/// One task of a live srun ends (exit 3) while the srun's other task runs on: it tells rank 0
/// its status, a checkpoint of the joined step commits with the tree and the other task (before:
/// abandoned, `task(s) [2] are not linked`, the rank held by the live srun), the manifest
/// records `rank 2 ended 3`; every process killed, the tree resumed: srun is run again, the
/// ended task's `ckpt-run --resume` exits 3 at once, the other goes on to its end; each task
/// started once.
#[test]
fn one_task_of_a_live_srun_ended_checkpoint_commits_and_resume_exits_it_with_its_status() -> Result<()> {
    one_task_ended("step-join-one-ended", false)
}

/// The same as user nobody.
#[test]
fn one_task_of_a_live_srun_ended_checkpoint_commits_and_resume_exits_it_with_its_status_as_nobody() -> Result<()> {
    one_task_ended("step-join-one-ended-nobody", true)
}

fn one_task_ended(tag: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let task = r#"echo "start $SLURM_PROCID" >> "$OUT/starts$SLURM_PROCID"; if [ "$SLURM_PROCID" = 1 ]; then echo "task 1 done"; exit 3; fi; i=0; while [ $i -lt 40 ] || [ ! -e "$OUT/end" ]; do sleep 0.1; i=$((i + 1)); echo "n $i"; done; echo "task 0 done""#;
    let script = format!("srun -n 2 /bin/sh -c '{task}'; echo srun ended $?");
    let dir = work.join("ckpt");
    let env = [("CKPT_LOG", "info")];
    let (mut p, out) = start_script_as(&bins, &work, "one", &script, true, &env, false, &dir, as_nobody)?;
    let lines = |r: u32| std::fs::read_to_string(out.join(format!("task{r}"))).unwrap_or_default();
    let show = |p: &Proc| format!("{}\n{}\ntask 0:\n{}\ntask 1:\n{}", p.stdout(), p.stderr(), lines(0), lines(1));
    let wait = |p: &mut Proc, what: &str, secs: u64| p.wait_for_stderr(what, Duration::from_secs(secs)).map_err(|e| anyhow::anyhow!("{e}\n{}", show(p)));
    wait(&mut p, "step: task 2 ended (exit status 3)", 120)?;
    ckpt_tests::process::wait_until(Duration::from_secs(60), || lines(0).contains("n 3\n"));
    let pid = task_run(&bins, &out, 0).ok_or_else(|| anyhow::anyhow!("no outer process of task 0:\n{}", show(&p)))?;
    // SAFETY: a signal to the task's outer process, which this test's launcher started.
    ensure!(unsafe { libc::kill(pid, libc::SIGUSR2) } == 0, "cannot signal task 0");
    wait(&mut p, "2 tasks committed", 150)?;
    ensure!(p.stderr().contains("task(s) [2 (exit status 3)] recorded as ended"), "rank 2 was not recorded as ended:\n{}", p.stderr());
    let manifest = std::fs::read_to_string(dir.join("launcher.step"))?;
    ensure!(manifest.contains("tasks 3\n") && manifest.contains("rank 2 ended 3\n"), "the manifest:\n{manifest}");
    p.kill()?;
    ensure!(!p.stdout().contains("srun ended"), "the launcher ended before it was killed:\n{}", p.stdout());

    let (mut p, _) = start_script_as(&bins, &work, "one", &script, true, &env, true, &dir, as_nobody)?;
    // (Task 1 linked again: rank 0 knows the step's size.)
    wait(&mut p, "the joined step has 3 tasks", 120)?;
    std::fs::write(out.join("end"), "")?;
    let st = p.wait(Duration::from_secs(300))?;
    ensure!(st.success() && p.stdout().contains("srun ended") && !p.stdout().contains("srun ended 0"), "the resumed launcher: {st}\n{}", show(&p));
    let (t0, t1) = (lines(0), lines(1));
    ensure!(t1.contains("not running it again") && t1.matches("task 1 done\n").count() == 1, "the ended task ran again or did not say so:\n{t1}");
    ensure!(t0.matches("task 0 done\n").count() == 1 && t0.matches("n 1\n").count() == 1, "task 0 did not go on to its end once:\n{t0}");
    for r in 0..2 {
        let s = std::fs::read_to_string(out.join(format!("starts{r}"))).unwrap_or_default();
        ensure!(s.lines().count() == 1, "task {r} started {} times", s.lines().count());
    }
    Ok(())
}
