//! Issue 14 without a cluster: the tasks of a step started by hand with the variables srun gives
//! every task (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_JOB_ID, SLURM_STEP_ID,
//! SLURM_RESTART_COUNT), each under its own `ckpt-run`, talking over TCP in a ring
//! (programs/step_ring.c). One checkpoint of the whole step, every task SIGKILLed, the step
//! resumed: every task ends with the checksum of an uninterrupted run and did not start over.
//! The step's coordination channel refuses a connection from another user; a step whose tasks
//! are PMI2 ranks refuses its checkpoint in one line; tasks that are process trees checkpoint
//! as one step too, also when two processes of a tree hold one connection to another task. The tasks run in their
//! own namespaces (the default). (The same against a real Slurm: slurm_jobs.rs.)

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::users::TestUser;
use ckpt_tests::ring::{self, slurm_env};
use ckpt_tests::{result_of, Bins, Proc, Workdir};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROUNDS: u32 = 80;

/// The ring's arguments after its port directory: rounds, delay (ms), bytes per round.
fn ring_args(rounds: u32) -> [String; 3] {
    [rounds.to_string(), "50".into(), ring::SIZE.into()]
}

/// One run of a step: its job id, how many times it was requeued, whether with --resume, extra
/// environment.
struct Run<'a> {
    job: &'a str,
    restarts: u32,
    resume: bool,
    env: &'a [(&'a str, &'a str)],
    tree: Tree,
}

/// What each task's program is.
#[derive(Clone, Copy, PartialEq)]
enum Tree {
    /// The ring alone.
    No,
    /// A process tree: a shell that leaves a child running and execs the ring, which forks a
    /// worker that makes the bytes it sends (step_ring.c's WORKER).
    Workers,
    /// A process tree whose connections to the other tasks are not the program's: a shell that
    /// runs the ring as its child and waits for it.
    Child,
    /// A process tree in which two processes hold and use each connection to the other tasks:
    /// the ring and a child it forks once connected, taking turns (step_ring.c's WORKER=2).
    Twice,
    /// The same below a shell (the task's program), which holds none of them.
    ChildTwice,
}

/// Start the `n` tasks under ckpt-run (`resume`: with --resume, as after a requeue).
fn start_step(bins: &Bins, work: &Workdir, exe: &Path, n: usize, run: &Run, rounds: u32) -> Result<Vec<Proc>> {
    let Run { job, restarts, resume, env, tree } = *run;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    (0..n)
        .map(|r| {
            let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.join("ckpt").into()];
            if resume {
                argv.push("--resume".into());
            }
            let shell = match tree {
                Tree::No | Tree::Twice => None,
                Tree::Workers => Some("sleep 600 & exec \"$0\" \"$@\""),
                Tree::Child | Tree::ChildTwice => Some("\"$0\" \"$@\"; echo \"the ring ended: $?\" >&2"),
            };
            match shell {
                Some(cmd) => argv.extend(["--name".into(), "step_ring".into(), "--".into(), "/bin/sh".into(), "-c".into(), OsString::from(cmd)]),
                None => argv.push("--".into()),
            }
            argv.extend([exe.into(), ports.clone().into()]);
            argv.extend(ring_args(rounds).iter().map(OsString::from));
            match tree {
                Tree::Workers => argv.push("1".into()),
                Tree::Twice | Tree::ChildTwice => argv.push("2".into()),
                _ => {}
            }
            let mut c = user_command(&argv, false, work.path());
            slurm_env(&mut c, job, r, n, restarts);
            c.envs(env.iter().copied());
            Proc::spawn(&format!("task {r}{}", if resume { " (resumed)" } else { "" }), c)
        })
        .collect()
}

fn steps(p: &Proc) -> Vec<u64> {
    ring::steps(&p.stdout())
}

fn setup(tag: &str) -> Result<(Bins, Workdir, PathBuf)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    Ok((bins, work, exe))
}

/// A checkpoint asked of one task (rank 1) is taken by the whole step; after every task is
/// killed, the step resumed from it ends as an uninterrupted run would.
#[test]
fn step_ring_checkpoint_of_all_tasks_kill_resume_same_checksums() -> Result<()> {
    let (bins, work, exe) = setup("step-ring")?;
    let n = 3;
    let expected = ring::reference(&work, &exe, n, ROUNDS)?;
    let job = format!("local{}", std::process::id());
    let mut first = start_step(&bins, &work, &exe, n, &Run { job: &job, restarts: 0, resume: false, env: &[], tree: Tree::No }, ROUNDS)?;
    for p in first.iter_mut() {
        p.wait_for_step(10, Duration::from_secs(60))?;
    }
    first[1].signal(libc::SIGUSR2)?;
    first[0].wait_for_stderr("step checkpoint 1: 3 tasks committed", Duration::from_secs(60))?;
    for p in first.iter_mut() {
        p.wait_for_stderr("ckpt: checkpoint 1: ", Duration::from_secs(30))?;
    }
    let manifest = std::fs::read_to_string(work.join("ckpt/step_ring.step"))?;
    ensure!(manifest.contains("generation 1") && manifest.contains("tasks 3"), "manifest:\n{manifest}");
    let mut before = Vec::new();
    for p in first.iter_mut() {
        p.kill()?;
        let s = steps(p);
        ensure!(s.last().is_some_and(|&l| l < 80), "{} finished before the kill", p.label());
        before.push(s.len());
    }
    let mut second = start_step(&bins, &work, &exe, n, &Run { job: &job, restarts: 1, resume: true, env: &[], tree: Tree::No }, ROUNDS)?;
    for (r, p) in second.iter_mut().enumerate() {
        p.wait(Duration::from_secs(120))?;
        let out = p.stdout();
        let err = p.stderr();
        ensure!(err.contains("restarted from"), "task {r} did not resume:\n{err}");
        ensure!(!out.contains("start step_ring"), "task {r} started over:\n{out}");
        let s = steps(p);
        ensure!(s.first().is_some_and(|&f| f > 1), "task {r} did not continue: steps {s:?}");
        ensure!(result_of(&out) == Some(expected[r].as_str()), "task {r}: result {:?}, uninterrupted {}; stderr:\n{err}", result_of(&out), expected[r]);
    }
    Ok(())
}

/// The coordinator accepts only tasks that know the step's key: another user's connection is
/// refused and logged (and that user cannot read the key); the step still checkpoints.
#[test]
fn step_coordinator_refuses_another_users_connection() -> Result<()> {
    let Some(other) = TestUser::create("stp")? else {
        ckpt_tests::skip_test!("needs root to create a second user");
        return Ok(());
    };
    let (bins, work, exe) = setup("step-auth")?;
    let job = format!("auth{}", std::process::id());
    let mut tasks = start_step(&bins, &work, &exe, 2, &Run { job: &job, restarts: 0, resume: false, env: &[], tree: Tree::No }, 400)?;
    for p in tasks.iter_mut() {
        p.wait_for_step(3, Duration::from_secs(60))?;
    }
    let addr = std::fs::read_to_string(work.join("ckpt/step_ring.step-addr"))?;
    let port = addr.lines().find_map(|l| l.strip_prefix("port ")).context("no port in the address file")?.to_string();
    // The other user tries the channel with a made-up answer to the challenge.
    let client = "import socket,sys\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])),timeout=10)\ns.recv(24)\ns.sendall(b'CKPTSTP1'+bytes(48))\nprint('answer', len(s.recv(100)))\n";
    let py = ckpt_tests::programs::python3()?;
    let o = other.command(&[py.into(), "-c".into(), client.into(), port.into()], Path::new("/")).output()?;
    let said = String::from_utf8_lossy(&o.stdout);
    ensure!(said.trim() == "answer 0", "the other user's connection was not cut off: {said} {}", String::from_utf8_lossy(&o.stderr));
    tasks[0].wait_for_stderr("step: refused a connection from 127.0.0.1", Duration::from_secs(10))?;
    ensure!(tasks[0].stderr().contains("does not know the step's key"), "{}", tasks[0].stderr());
    let key = work.join("ckpt/step_ring.step-key");
    let o = other.command(&["cat".into(), key.into()], Path::new("/")).output()?;
    ensure!(!o.status.success(), "the other user could read the step's key");
    // The step's own links are untouched.
    tasks[0].signal(libc::SIGUSR2)?;
    tasks[0].wait_for_stderr("step checkpoint 1: 2 tasks committed", Duration::from_secs(60))?;
    for p in tasks.iter_mut() {
        p.kill()?;
    }
    Ok(())
}

/// Ranks started by srun through PMI2 talk to a server in slurmstepd that is not checkpointed:
/// a checkpoint of such a step fails with one clear line on every task (the program goes on),
/// and no manifest is written.
#[test]
fn step_of_pmi2_ranks_refuses_checkpoint_clearly() -> Result<()> {
    let (bins, work, exe) = setup("step-pmi")?;
    let job = format!("pmi{}", std::process::id());
    let env = [("PMI_FD", "7"), ("PMI_RANK", "0"), ("PMI_SIZE", "2")];
    let mut tasks = start_step(&bins, &work, &exe, 2, &Run { job: &job, restarts: 0, resume: false, env: &env, tree: Tree::No }, 400)?;
    for p in tasks.iter_mut() {
        p.wait_for_step(3, Duration::from_secs(60))?;
    }
    tasks[0].signal(libc::SIGUSR2)?;
    refused_everywhere(&work, &mut tasks, "started by srun through PMI2")
}

/// A step checkpoint asked of one task was refused: every task says `why`, rank 0 abandons it
/// everywhere, no manifest is written, and every task goes on; then they are killed.
fn refused_everywhere(work: &Workdir, tasks: &mut [Proc], why: &str) -> Result<()> {
    for r in 0..tasks.len() {
        if let Err(e) = tasks[r].wait_for_stderr(why, Duration::from_secs(60)) {
            let all: Vec<String> = tasks.iter().map(|p| format!("{}:\n{}", p.label(), p.stderr())).collect();
            anyhow::bail!("{e}\n{}", all.join("\n"));
        }
    }
    tasks[0].wait_for_stderr("step checkpoint 1 abandoned on every task", Duration::from_secs(60))?;
    ensure!(!work.join("ckpt/step_ring.step").exists(), "a manifest was written");
    for p in tasks.iter_mut() {
        let before = steps(p).len();
        if let Err(e) = p.wait_for_step(before as u64 + 2, Duration::from_secs(30)) {
            anyhow::bail!("{} did not go on: {e}\n{}", p.label(), p.stderr());
        }
    }
    for p in tasks.iter_mut() {
        p.kill()?;
    }
    Ok(())
}

/// A task that does not answer (SIGSTOPped) makes the step's next checkpoint abandoned on every
/// task within CKPT_STEP_TIMEOUT, with one line; the manifest still names the previous complete
/// checkpoint, from which the step (killed) resumes to the uninterrupted result.
#[test]
fn step_checkpoint_abandoned_when_a_task_hangs_previous_set_stays() -> Result<()> {
    let (bins, work, exe) = setup("step-hang")?;
    let n = 3;
    let expected = ring::reference(&work, &exe, n, ROUNDS)?;
    let job = format!("hang{}", std::process::id());
    let env = [("CKPT_STEP_TIMEOUT", "3")];
    let mut first = start_step(&bins, &work, &exe, n, &Run { job: &job, restarts: 0, resume: false, env: &env, tree: Tree::No }, ROUNDS)?;
    for p in first.iter_mut() {
        p.wait_for_step(5, Duration::from_secs(60))?;
    }
    first[0].signal(libc::SIGUSR2)?;
    first[0].wait_for_stderr("step checkpoint 1: 3 tasks committed", Duration::from_secs(60))?;
    let manifest = work.join("ckpt/step_ring.step");
    let committed = std::fs::read(&manifest)?;
    // The program itself (in a namespace, the child of ckpt-run's init; ckpt-run only waits).
    let hung = first[2].program_pid();
    // SAFETY: kill(2) of a process of this test.
    ensure!(unsafe { libc::kill(hung, libc::SIGSTOP) } == 0, "cannot stop task 2's program {hung}");
    first[0].signal(libc::SIGUSR2)?;
    first[0].wait_for_stderr("step checkpoint 2 abandoned on every task: task 2 did not stop in time", Duration::from_secs(30))?;
    first[1].wait_for_stderr("step checkpoint 2 abandoned", Duration::from_secs(30))?;
    ensure!(std::fs::read(&manifest)? == committed, "the manifest changed:\n{}", std::fs::read_to_string(&manifest)?);
    // SAFETY: as above.
    unsafe { libc::kill(hung, libc::SIGCONT) };
    for p in first.iter_mut() {
        p.kill()?;
    }
    let mut second = start_step(&bins, &work, &exe, n, &Run { job: &job, restarts: 1, resume: true, env: &[], tree: Tree::No }, ROUNDS)?;
    for (r, p) in second.iter_mut().enumerate() {
        p.wait(Duration::from_secs(120))?;
        let (out, err) = (p.stdout(), p.stderr());
        ensure!(err.contains("(checkpoint 1,"), "task {r} did not resume from checkpoint 1:\n{err}");
        ensure!(result_of(&out) == Some(expected[r].as_str()), "task {r}: {:?}, uninterrupted {}; stderr:\n{err}", result_of(&out), expected[r]);
    }
    Ok(())
}

/// Tasks whose programs are process trees (in each task's namespace: a shell's child left
/// running, the ring, and the worker the ring forks and feeds over pipes) checkpoint as one
/// step: each task's tree takes its two-phase checkpoint as the task's part, the connections
/// between tasks are drained by the ring processes, rank 0's manifest names each tree's set; every
/// task killed, the step resumed: each tree comes back whole and every task ends with the
/// uninterrupted checksum, without starting over.
#[test]
fn step_of_process_trees_checkpoint_kill_resume_same_checksums() -> Result<()> {
    trees_checkpoint_kill_resume("step-tree", Tree::Workers, 3)
}

/// The same when the connections between tasks are held by a process of each tree other than
/// the task's program (as MPI ranks, children of their daemon, hold theirs): here the ring is
/// the child of a shell, the task's program. The ring drains its own connections to the other
/// tasks with the step's markers (the shell names them for it), its image records them, and at
/// restart the shell's restart makes them again on the new addresses and hands them to it:
/// same checksums, not started over.
#[test]
fn step_of_trees_whose_child_holds_the_connections_checkpoint_kill_resume_same_checksums() -> Result<()> {
    trees_checkpoint_kill_resume("step-tree-child", Tree::Child, 2)
}

/// A connection between two tasks that two processes of a task's tree hold at once, as MPICH's
/// ranks hold their proxy's connection to mpiexec (an inherited fd), here both using it: the
/// ring and a child that inherited its sockets, taking turns round by round. The task's program
/// (the ring) drains it once; the child shares it (its image records the connection without
/// bytes); at restart the connection is made once and handed to both, the bytes in flight given
/// back once: same checksums, not started over, and the restarted step checkpoints again.
#[test]
fn step_of_trees_sharing_a_connection_checkpoint_kill_resume_same_checksums() -> Result<()> {
    trees_checkpoint_kill_resume("step-tree-twice", Tree::Twice, 2)
}

/// The same when neither holder is the task's program (a shell runs the ring, which forks the
/// child it takes turns with): the holder with the lower pid drains it, the other shares it.
#[test]
fn step_of_trees_whose_children_share_a_connection_checkpoint_kill_resume_same_checksums() -> Result<()> {
    trees_checkpoint_kill_resume("step-tree-child-twice", Tree::ChildTwice, 3)
}

/// A step of 3 tasks, each a process tree of `procs` processes (`tree`), checkpointed as one,
/// every task killed, resumed: each tree comes back whole and every task ends with the
/// uninterrupted checksum, without starting over.
fn trees_checkpoint_kill_resume(tag: &str, tree: Tree, procs: usize) -> Result<()> {
    let (bins, work, exe) = setup(tag)?;
    let n = 3;
    let expected = ring::reference(&work, &exe, n, ROUNDS)?;
    let job = format!("tree{}", std::process::id());
    // The namespace is required: without one, children are not managed.
    let env = [("CKPT_NAMESPACE", "1")];
    let mut first = start_step(&bins, &work, &exe, n, &Run { job: &job, restarts: 0, resume: false, env: &env, tree }, ROUNDS)?;
    for i in 0..first.len() {
        if let Err(e) = first[i].wait_for_step(10, Duration::from_secs(60)) {
            // (Once in a full run under load, task 0 ended with status 0 before step 10.)
            let all: Vec<String> = first.iter().map(|p| format!("{}:\n{}\n{}", p.label(), p.stdout(), p.stderr())).collect();
            anyhow::bail!("{e}\n{}", all.join("\n"));
        }
    }
    first[1].signal(libc::SIGUSR2)?;
    if let Err(e) = first[0].wait_for_stderr("step checkpoint 1: 3 tasks committed", Duration::from_secs(60)) {
        let all: Vec<String> = first.iter().map(|p| format!("{}:\n{}", p.label(), p.stderr())).collect();
        anyhow::bail!("{e}\n{}", all.join("\n"));
    }
    for (r, p) in first.iter_mut().enumerate() {
        // Each task's checkpoint is its tree's set (Workers: the shell's child, the ring, its
        // worker; Child: the shell and the ring).
        p.wait_for_stderr("ckpt: checkpoint 1: ", Duration::from_secs(30))?;
        ensure!(p.stderr().contains(&format!("({procs} processes,")), "task {r} did not checkpoint its tree:\n{}", p.stderr());
        ensure!(ckpt_image::tree::is_set(&work.join(&format!("ckpt/step_ring.{r}.ckpt"))), "task {r}: no set");
    }
    let mut before = Vec::new();
    for p in first.iter_mut() {
        p.kill()?;
        let s = steps(p);
        ensure!(s.last().is_some_and(|&l| l < ROUNDS as u64), "{} finished before the kill", p.label());
        before.push(s.len());
    }
    let mut second = start_step(&bins, &work, &exe, n, &Run { job: &job, restarts: 1, resume: true, env: &env, tree }, ROUNDS)?;
    // The restarted step checkpoints again (each tree's processes drain their connections once
    // more), and runs on to the end.
    let resumed_at = before.iter().min().copied().unwrap_or(0) as u64;
    for p in second.iter_mut() {
        p.wait_for_step(resumed_at + 3, Duration::from_secs(60))?;
    }
    second[0].signal(libc::SIGUSR2)?;
    if let Err(e) = second[0].wait_for_stderr("step checkpoint 2: 3 tasks committed", Duration::from_secs(60)) {
        let all: Vec<String> = second.iter().map(|p| format!("{}:\n{}", p.label(), p.stderr())).collect();
        anyhow::bail!("{e}\n{}", all.join("\n"));
    }
    for (r, p) in second.iter_mut().enumerate() {
        p.wait(Duration::from_secs(120))?;
        let (out, err) = (p.stdout(), p.stderr());
        ensure!(err.contains("restarted from"), "task {r} did not resume:\n{err}");
        ensure!(!out.contains("start step_ring"), "task {r} started over:\n{out}");
        let s = steps(p);
        ensure!(s.first().is_some_and(|&f| f > 1), "task {r} did not continue: steps {s:?}");
        ensure!(result_of(&out) == Some(expected[r].as_str()), "task {r}: result {:?}, uninterrupted {}; stderr:\n{err}", result_of(&out), expected[r]);
    }
    Ok(())
}

/// The task of step_ring that ends early (rank 2 of 4: its EARLY argument) and the round it
/// ends after.
const EARLY_RANK: usize = 2;
const EARLY_ROUND: u32 = 5;
const EARLY_ROUNDS: u32 = 300;

/// The 4 tasks of step_ring under ckpt-run (`resume`: with --resume), `early` its EARLY argument
/// (`RANK:ROUND:STATUS`: that task alone, ending with STATUS), as user nobody when `as_nobody`.
fn start_early(bins: &Bins, work: &Workdir, exe: &Path, run: &Run, early: &str, as_nobody: bool) -> Result<Vec<Proc>> {
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ports, std::fs::Permissions::from_mode(0o1777))?;
    (0..4)
        .map(|r| {
            let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.join("ckpt").into()];
            argv.extend(run.resume.then(|| "--resume".into()));
            argv.extend(["--".into(), exe.into(), ports.clone().into()]);
            argv.extend(ring_args(EARLY_ROUNDS).iter().map(OsString::from));
            argv.extend(["0".into(), early.into()]);
            let mut c = user_command(&argv, as_nobody, work.path());
            slurm_env(&mut c, run.job, r, 4, run.restarts);
            c.envs(run.env.iter().copied());
            Proc::spawn(&format!("task {r}{}", if run.resume { " (resumed)" } else { "" }), c)
        })
        .collect()
}

/// How many times task `r` of step_ring with EARLY started (its lines in its starts file).
fn starts(work: &Workdir, r: usize) -> usize {
    std::fs::read_to_string(work.join(&format!("ports/starts.{r}"))).unwrap_or_default().lines().count()
}

/// A task whose program exits normally (status 0) while the others run on: rank 0 records it,
/// the next checkpoint commits with the other three and records it as ended with its status;
/// every task SIGKILLed, the step resumed: the ended task's `ckpt-run --resume` exits at once
/// with its status without running the program again (it started once), the others go on from
/// the checkpoint to the uninterrupted result.
#[test]
fn a_task_that_exited_0_is_recorded_ended_checkpoint_commits_resume_does_not_rerun_it() -> Result<()> {
    task_exited_early("step-early-0", 0, false)
}

/// The same with exit status 3.
#[test]
fn a_task_that_exited_3_is_recorded_ended_checkpoint_commits_resume_exits_3() -> Result<()> {
    task_exited_early("step-early-3", 3, false)
}

/// The same as user nobody.
#[test]
fn a_task_that_exited_3_is_recorded_ended_checkpoint_commits_resume_exits_3_as_nobody() -> Result<()> {
    task_exited_early("step-early-3-nobody", 3, true)
}

fn task_exited_early(tag: &str, status: i32, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let early = format!("{EARLY_RANK}:{EARLY_ROUND}:{status}");
    let expected = ring::reference_of(&work, 4, |ports| vec![exe.clone().into(), ports.into(), EARLY_ROUNDS.to_string().into(), "0".into(), ring::SIZE.into(), "0".into(), early.clone().into()])?;
    let job = format!("early{}", std::process::id());
    let env = [("CKPT_LOG", "info")];
    let run = Run { job: &job, restarts: 0, resume: false, env: &env, tree: Tree::No };
    let mut first = start_early(&bins, &work, &exe, &run, &early, as_nobody)?;
    let st = first[EARLY_RANK].wait(Duration::from_secs(60))?;
    ensure!(st.code() == Some(status), "the early task ended with {st:?}, not status {status}:\n{}", first[EARLY_RANK].stderr());
    first[0].wait_for_stderr(&format!("step: task {EARLY_RANK} ended (exit status {status})"), Duration::from_secs(30))?;
    for r in [0, 1, 3] {
        first[r].wait_for_step(10, Duration::from_secs(60))?;
    }
    first[1].signal(libc::SIGUSR2)?;
    let line = format!("step checkpoint 1: 3 tasks committed in {}/step_ring.step, task(s) [{EARLY_RANK} (exit status {status})] recorded as ended", work.join("ckpt").canonicalize()?.display());
    first[0].wait_for_stderr(&line, Duration::from_secs(90)).map_err(|e| anyhow::anyhow!("{e}\ntask 1:\n{}", first[1].stderr()))?;
    let manifest = std::fs::read_to_string(work.join("ckpt/step_ring.step"))?;
    ensure!(manifest.starts_with("ckpt-step-manifest 3\n") && manifest.contains(&format!("rank {EARLY_RANK} ended {status}\n")), "manifest:\n{manifest}");
    for r in [0, 1, 3] {
        first[r].kill()?;
        ensure!(steps(&first[r]).last().is_some_and(|&l| l < EARLY_ROUNDS as u64), "task {r} finished before the kill");
    }
    let mut second = start_early(&bins, &work, &exe, &Run { restarts: 1, resume: true, ..run }, &early, as_nobody)?;
    let st = second[EARLY_RANK].wait(Duration::from_secs(30))?;
    let err = second[EARLY_RANK].stderr();
    ensure!(st.code() == Some(status) && err.contains("not running it again"), "the ended task's resume did not exit with status {status}: {st:?}\n{err}");
    ensure!(second[EARLY_RANK].stdout().is_empty(), "the ended task ran again:\n{}", second[EARLY_RANK].stdout());
    for r in [0, 1, 3] {
        resumed_to_the_end(&mut second[r], r, &expected[r])?;
    }
    for r in 0..4 {
        ensure!(starts(&work, r) == 1, "task {r} started {} times", starts(&work, r));
    }
    Ok(())
}

/// Task `r` of a resumed step went on from the checkpoint (did not start over) to the result
/// of an uninterrupted run, `expected`, and exited 0.
fn resumed_to_the_end(p: &mut Proc, r: usize, expected: &str) -> Result<()> {
    let st = p.wait(Duration::from_secs(180))?;
    let (out, err) = (p.stdout(), p.stderr());
    ensure!(st.success() && err.contains("restarted from"), "task {r} did not resume: {st:?}\n{err}");
    ensure!(!out.contains("start step_ring"), "task {r} started over:\n{out}");
    ensure!(steps(p).first().is_some_and(|&f| f > 1), "task {r} did not continue: steps {:?}", steps(p));
    ensure!(result_of(&out) == Some(expected), "task {r}: result {:?}, uninterrupted {expected}; stderr:\n{err}", result_of(&out));
    Ok(())
}

/// Task 0 (the step's coordinator) exits normally while the others run on: a checkpoint asked
/// after that is refused on the task asked, in one line each time, and nothing is written; the
/// last complete checkpoint (taken before task 0 ended) stays. Every task SIGKILLed, the step
/// resumed from it: task 0 goes on from where it was to its end, the others to the result of
/// an uninterrupted run, none starting over.
#[test]
fn task_0_that_exited_refuses_later_checkpoints_in_one_line_previous_set_resumes() -> Result<()> {
    task_0_exited("step-rank0-end", false)
}

/// The same as user nobody.
#[test]
fn task_0_that_exited_refuses_later_checkpoints_in_one_line_previous_set_resumes_as_nobody() -> Result<()> {
    task_0_exited("step-rank0-end-nobody", true)
}

fn task_0_exited(tag: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    // Task 0 makes 10 rounds alone and returns 0 from main, holding before round 8 until the
    // test lets it end.
    let early = "0:10:0";
    let expected = ring::reference_of(&work, 4, |ports| vec![exe.clone().into(), ports.into(), EARLY_ROUNDS.to_string().into(), "0".into(), ring::SIZE.into(), "0".into(), early.into()])?;
    let job = format!("rank0end{}", std::process::id());
    let go = work.join("ports/go");
    let hold = format!("{}:8", go.display());
    let env = [("CKPT_LOG", "info"), ("STEP_RING_HOLD", hold.as_str())];
    let run = Run { job: &job, restarts: 0, resume: false, env: &env, tree: Tree::No };
    let mut first = start_early(&bins, &work, &exe, &run, early, as_nobody)?;
    first[0].wait_for_step(7, Duration::from_secs(60))?;
    for r in 1..4 {
        first[r].wait_for_step(3, Duration::from_secs(60))?;
    }
    first[1].signal(libc::SIGUSR2)?;
    let line = format!("step checkpoint 1: 4 tasks committed in {}/step_ring.step", work.join("ckpt").canonicalize()?.display());
    first[0].wait_for_stderr(&line, Duration::from_secs(90))?;
    std::fs::write(&go, "")?;
    let st = first[0].wait(Duration::from_secs(60))?;
    ensure!(st.code() == Some(0) && result_of(&first[0].stdout()).is_some(), "task 0 did not end with status 0: {st:?}\n{}", first[0].stderr());
    let refused = "task 0 has ended (exit status 0): the step cannot be checkpointed as one";
    for (r, times) in [(1, 1), (3, 1), (1, 2)] {
        let at = first[r].last_step().unwrap_or(0);
        first[r].wait_for_step(at + 2, Duration::from_secs(60))?;
        first[r].signal(libc::SIGUSR2)?;
        let p = &first[r];
        ensure!(ckpt_tests::process::wait_until(Duration::from_secs(60), || p.stderr().matches(refused).count() >= times), "task {r} did not refuse request {times} in one line ({refused}):\n{}", p.stderr());
    }
    let manifest = std::fs::read_to_string(work.join("ckpt/step_ring.step"))?;
    ensure!(manifest.contains("generation 1\n"), "the set of checkpoint 1 was replaced:\n{manifest}");
    for r in 1..4 {
        first[r].kill()?;
        ensure!(steps(&first[r]).last().is_some_and(|&l| l < EARLY_ROUNDS as u64), "task {r} finished before the kill");
    }
    let mut second = start_early(&bins, &work, &exe, &Run { restarts: 1, resume: true, ..run }, early, as_nobody)?;
    for (r, p) in second.iter_mut().enumerate() {
        resumed_to_the_end(p, r, &expected[r])?;
    }
    for r in 0..4 {
        ensure!(starts(&work, r) == 1, "task {r} started {} times", starts(&work, r));
    }
    Ok(())
}

/// A task killed (not a normal exit) says nothing: the step's checkpoint is abandoned in one
/// line naming it, as for any task that is not linked.
#[test]
fn a_task_killed_while_the_others_run_still_abandons_the_checkpoint_in_one_line() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("step-early-killed")?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let job = format!("killed{}", std::process::id());
    let run = Run { job: &job, restarts: 0, resume: false, env: &[], tree: Tree::No };
    let early = format!("{EARLY_RANK}:100000:0");
    let mut tasks = start_early(&bins, &work, &exe, &run, &early, false)?;
    for p in tasks.iter_mut() {
        p.wait_for_step(3, Duration::from_secs(60))?;
    }
    tasks[EARLY_RANK].kill()?;
    tasks[1].signal(libc::SIGUSR2)?;
    let line = format!("checkpoint 1 of the step abandoned: task(s) [{EARLY_RANK}] are not linked (not started yet, or ended); the program continues");
    tasks[0].wait_for_stderr(&line, Duration::from_secs(60))?;
    ensure!(!work.join("ckpt/step_ring.step").exists(), "a manifest was written");
    for r in [0, 1, 3] {
        tasks[r].kill()?;
    }
    Ok(())
}

/// Task 0 killed (it says nothing) while the others run: a checkpoint asked of another task
/// fails as before (`not linked`); each other task's own exit does not wait to tell it, and
/// says in one line that task 0 is gone.
#[test]
fn task_0_killed_the_others_exit_without_waiting_for_it() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("step-rank0-killed")?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let job = format!("rank0killed{}", std::process::id());
    let run = Run { job: &job, restarts: 0, resume: false, env: &[], tree: Tree::No };
    let mut tasks = start_early(&bins, &work, &exe, &run, "0:100000:0", false)?;
    for p in tasks.iter_mut() {
        p.wait_for_step(3, Duration::from_secs(60))?;
    }
    tasks[0].kill()?;
    tasks[1].signal(libc::SIGUSR2)?;
    tasks[1].wait_for_stderr("this task is not linked to task 0 of its step", Duration::from_secs(60))?;
    for r in 1..4 {
        let p = &mut tasks[r];
        let st = p.wait(Duration::from_secs(180))?;
        let err = p.stderr();
        ensure!(st.success() && result_of(&p.stdout()).is_some(), "task {r} did not end: {st:?}\n{err}");
        ensure!(err.contains("step: task 0 is gone (") && !err.contains("next checkpoints will be abandoned"), "task {r} did not say in one line that task 0 is gone:\n{err}");
    }
    Ok(())
}
