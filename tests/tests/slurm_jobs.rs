//! Issue 4 against a real Slurm: the batch scripts in scripts/slurm run the counter under
//! `srun ckpt-run`, and each test checks that the job ends with the uninterrupted result without
//! starting over. The cluster is private to this test binary (scripts/slurm-cluster: its own
//! slurm.conf, munged, state and ports in a directory of its own, found through SLURM_CONF),
//! started once and stopped when the binary exits: the machine's own Slurm is not touched.
//! Skips, saying why, where Slurm cannot be installed or started (not root, no apt); fails when
//! it should start but does not.

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::process::wait_until;
use ckpt_tests::programs::compile_c;
use ckpt_tests::{result_of, run_plain, step_of, Bins, Program, Workdir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The private cluster's directory (per run of this binary).
fn cluster_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ckpt-slurm-{}", std::process::id()))
}

/// A Slurm command for our private cluster.
fn slurm(cmd: &str) -> Command {
    let mut c = Command::new(cmd);
    c.env("SLURM_CONF", cluster_dir().join("slurm.conf"));
    c
}

extern "C" fn stop_cluster() {
    let _ = Command::new(repo().join("scripts/slurm-cluster")).arg("stop").arg(cluster_dir()).output();
}

/// Why there is no cluster: it cannot run here (skip), or it failed (fail).
#[derive(Clone)]
enum NoCluster {
    Skip(String),
    Fail(String),
}

/// Start the cluster once per test binary (stopped and removed when the binary exits).
fn cluster() -> Result<(), NoCluster> {
    static UP: OnceLock<Result<(), NoCluster>> = OnceLock::new();
    UP.get_or_init(|| {
        let pid = std::process::id().to_string();
        let out = Command::new(repo().join("scripts/slurm-cluster"))
            .args(["start", "--owner", &pid])
            .arg(cluster_dir())
            .output()
            .map_err(|e| NoCluster::Skip(format!("cannot run scripts/slurm-cluster: {e}")))?;
        // SAFETY: registering a plain function to run at exit.
        unsafe { libc::atexit(stop_cluster) };
        let why = format!("scripts/slurm-cluster start: {}", String::from_utf8_lossy(&out.stderr).trim());
        match out.status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(NoCluster::Skip(why)),
            _ => Err(NoCluster::Fail(why)),
        }
    })
    .clone()
}

macro_rules! need_slurm {
    () => {
        match cluster() {
            Ok(()) => {}
            Err(NoCluster::Skip(why)) => {
                ckpt_tests::skip_test!("Slurm is not available here ({why})");
                return Ok(());
            }
            Err(NoCluster::Fail(why)) => bail!("the private Slurm cluster did not start: {why}"),
        }
    };
}

/// A Slurm job of ours, running in `work`, its output appended to work/job.out.
struct Job {
    id: String,
    out: PathBuf,
}

impl Job {
    /// sbatch scripts/slurm/SCRIPT PROGRAM ARGS with extra sbatch options and environment.
    fn submit(bins: &Bins, work: &Workdir, opts: &[&str], script: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Job> {
        let out = work.join("job.out");
        let mut c = slurm("sbatch");
        c.arg("--parsable").arg(format!("--chdir={}", work.path().display())).arg(format!("--output={}", out.display()));
        c.args(opts).arg(repo().join("scripts/slurm").join(script)).arg(prog).args(args);
        c.env("PATH", format!("{}:{}", bins.dir.display(), std::env::var("PATH").unwrap_or_default()));
        c.envs(env.iter().copied());
        let o = c.output().context("sbatch")?;
        ensure!(o.status.success(), "sbatch: {}", String::from_utf8_lossy(&o.stderr));
        let id = String::from_utf8_lossy(&o.stdout).trim().split(';').next().unwrap_or("").to_string();
        Ok(Job { id, out })
    }

    /// SIGKILL every process of the job's steps' tasks (they run on this machine: the cluster's
    /// nodes are processes of it): the processes with the job's id and a step's task count in
    /// their environment (the batch script and srun have no SLURM_STEP_NUM_TASKS). How many.
    fn kill_tasks(&self) -> usize {
        let task = |env: &[u8]| env.split(|&b| b == 0).any(|v| v.starts_with(b"SLURM_STEP_NUM_TASKS="));
        // SAFETY: kill(2) of a process of our own job.
        self.procs().into_iter().filter(|(pid, env)| task(env) && unsafe { libc::kill(*pid, libc::SIGKILL) } == 0).count()
    }

    /// SIGKILL every process with the job's id in its environment (the batch script's too). How
    /// many.
    fn kill_all(&self) -> usize {
        // SAFETY: kill(2) of a process of our own job.
        self.procs().into_iter().filter(|(pid, _)| unsafe { libc::kill(*pid, libc::SIGKILL) } == 0).count()
    }

    /// The processes with the job's id and our cluster's configuration in their environment
    /// (they run on this machine: the cluster's nodes are processes of it), with their
    /// environment.
    fn procs(&self) -> Vec<(i32, Vec<u8>)> {
        let job = format!("SLURM_JOB_ID={}", self.id);
        // Job ids are per cluster: another test binary's cluster (run at the same time) has a
        // job of the same id, whose processes name their cluster's configuration.
        let conf = format!("SLURM_CONF={}", cluster_dir().join("slurm.conf").display());
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let has = |v: &str| env.split(|&b| b == 0).any(|e| e == v.as_bytes());
            if has(&job) && has(&conf) {
                out.push((pid, env));
            }
        }
        out
    }

    /// The TCP addresses the job's processes listen on (from /proc/net/tcp and tcp6 rows in the
    /// listening state whose socket is one of their fds).
    fn listening(&self) -> Vec<std::net::SocketAddr> {
        let mut inodes = std::collections::HashSet::new();
        for (pid, _) in self.procs() {
            for e in std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
                if let Some(i) = std::fs::read_link(e.path()).ok().and_then(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from)) {
                    inodes.insert(i);
                }
            }
        }
        let mut out = Vec::new();
        for (f, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
            for l in std::fs::read_to_string(f).unwrap_or_default().lines().skip(1) {
                let w: Vec<&str> = l.split_whitespace().collect();
                if w.len() < 10 || w[3] != "0A" || !inodes.contains(w[9]) {
                    continue;
                }
                let Some((a, p)) = w[1].split_once(':') else { continue };
                let Ok(port) = u16::from_str_radix(p, 16) else { continue };
                let ip: std::net::IpAddr = if v6 {
                    let mut b = [0u8; 16];
                    for i in 0..4 {
                        let word = u32::from_str_radix(&a[i * 8..i * 8 + 8], 16).unwrap_or(0);
                        b[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
                    }
                    std::net::Ipv6Addr::from(b).into()
                } else {
                    std::net::Ipv4Addr::from(u32::from_str_radix(a, 16).unwrap_or(0).swap_bytes()).into()
                };
                out.push(std::net::SocketAddr::new(ip, port));
            }
        }
        out
    }

    /// Where the job is, for a wait that timed out: Slurm's state and times for it, and each of
    /// its processes with its state, the kernel function it sleeps in and its kernel stack,
    /// and (where gdb is installed) every thread's user stack (what the time went on: waiting
    /// for nodes, a launcher that never got its daemons, a rank blocked in MPI_Init).
    fn whereabouts(&self) -> String {
        let o = slurm("scontrol").args(["show", "job", "-o", &self.id]).output();
        let s = o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let keys = ["JobState=", "Reason=", "SubmitTime=", "StartTime=", "RunTime=", "NodeList="];
        let slurm_says: Vec<&str> = s.split_whitespace().filter(|w| keys.iter().any(|k| w.starts_with(k))).collect();
        let mut out = format!("job {} now: {}; its processes (pid state wchan command):", self.id, slurm_says.join(" "));
        for (pid, _) in self.procs() {
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let stat = String::from_utf8_lossy(&read("stat")).into_owned();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').next()).unwrap_or("?").to_string();
            let cmd: String = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ").chars().take(160).collect();
            out.push_str(&format!("\n  {pid} {state} {} {}", String::from_utf8_lossy(&read("wchan")), cmd.trim_end()));
            let kstack: Vec<String> = String::from_utf8_lossy(&read("stack")).lines().take(6).filter_map(|l| l.split_whitespace().nth(1).map(str::to_string)).collect();
            if !kstack.is_empty() {
                out.push_str(&format!("\n    kernel: {}", kstack.join(" < ")));
            }
            out.push_str(&threads(pid));
            out.push_str(&user_stacks(pid));
        }
        out.push_str(&self.slurm_log_lines(30));
        out
    }

    /// The last `n` lines of the private cluster's Slurm logs (controller and nodes) that name
    /// this job, each with its log's name.
    fn slurm_log_lines(&self, n: usize) -> String {
        let (job, step) = (format!("JobId={}", self.id), format!("StepId={}.", self.id));
        let names = |l: &str| l.contains(&job) || l.contains(&step) || l.contains(&format!("job {}", self.id));
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(cluster_dir().join("log")).into_iter().flatten().flatten().map(|e| e.path()).collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| names(l)).collect();
            let name = log.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            for l in &lines[lines.len().saturating_sub(n)..] {
                out.push_str(&format!("\n  {name}: {l}"));
            }
        }
        out
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn state(&self) -> String {
        let o = slurm("scontrol").args(["show", "job", "-o", &self.id]).output();
        let s = o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        s.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).unwrap_or("GONE").to_string()
    }

    fn run(&self, cmd: &str, args: &[&str]) -> Result<()> {
        let st = slurm(cmd).args(args).arg(&self.id).status().with_context(|| cmd.to_string())?;
        ensure!(st.success(), "{cmd} {args:?} {} failed", self.id);
        Ok(())
    }

    /// The last `n` lines of the job's output (where it stood, for a failure message: the
    /// start of a long output says nothing about where it stopped).
    fn output_tail(&self, n: usize) -> String {
        let all = self.output();
        let lines: Vec<&str> = all.lines().collect();
        let from = lines.len().saturating_sub(n);
        let cut = if from > 0 { format!("[{from} earlier lines left out]\n") } else { String::new() };
        format!("{cut}{}", lines[from..].join("\n"))
    }

    /// Wait for `cond` on the job's output, failing after `secs` with the end of the output and
    /// where the job's processes are.
    fn wait_output(&self, secs: u64, what: &str, cond: impl Fn(&str) -> bool) -> Result<()> {
        if !wait_until(Duration::from_secs(secs), || cond(&self.output())) {
            bail!("job {}: {what} not seen within {secs} s; the output's end:\n{}\n{}", self.id, self.output_tail(60), self.whereabouts());
        }
        Ok(())
    }

    /// Where the `n` tasks of the job's joined step run now (rank, node), ranks 1..=n: the
    /// processes slurmstepd started (ckpt-run, or the ckpt-restart it became) with the joined
    /// step's identity, read from their environment (a restored process's holds its old node's).
    /// Waits up to 60 s for all `n` to be up.
    fn joined_placement(&self, n: usize) -> Result<Vec<(u32, String)>> {
        let var = |env: &[u8], k: &str| -> Option<String> {
            env.split(|&b| b == 0).find_map(|v| v.strip_prefix(k.as_bytes())?.strip_prefix(b"=")).map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let started_by_slurmstepd = |pid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).unwrap_or("0").to_string();
            std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == "slurmstepd")
        };
        let mut now = Vec::new();
        let up = wait_until(Duration::from_secs(60), || {
            now = self
                .procs()
                .into_iter()
                .filter(|(pid, env)| var(env, "CKPT_STEP_JOIN").is_some() && started_by_slurmstepd(*pid))
                .filter_map(|(_, env)| Some((1 + var(&env, "SLURM_PROCID")?.parse::<u32>().ok()?, var(&env, "SLURMD_NODENAME")?)))
                .collect();
            now.sort();
            now.dedup();
            now.len() == n
        });
        ensure!(up, "the joined step's {n} tasks are not all up: {now:?}\n{}", self.whereabouts());
        Ok(now)
    }

    /// Wait until the job is COMPLETED (fail on any other final state or the deadline, with
    /// the end of the output, and on the deadline where the job's processes are).
    fn wait_completed(&self, secs: u64) -> Result<()> {
        let mut last = String::new();
        let ended = wait_until(Duration::from_secs(secs), || {
            last = self.state();
            matches!(last.as_str(), "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY" | "GONE")
        });
        if !ended {
            // Where everything stood, before the job is cancelled.
            let stood = self.whereabouts();
            let _ = slurm("scancel").arg(&self.id).status();
            bail!("job {} not ended within {secs} s (still {last}); the output's end:\n{}\n{stood}", self.id, self.output_tail(60));
        }
        if last != "COMPLETED" {
            bail!("job {} ended as {last}; the output's end:\n{}", self.id, self.output_tail(60));
        }
        Ok(())
    }
}

/// Each thread of `pid` (other than the process's own, shown by its caller when it has more):
/// its state, the kernel function it sleeps in, and the system call it is in (number and
/// arguments, from /proc/PID/task/TID/syscall), indented.
fn threads(pid: i32) -> String {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return String::new() };
    let mut tids: Vec<i32> = rd.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    tids.sort();
    let mut out = String::new();
    for tid in tids {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{f}")).unwrap_or_default();
        let stat = read("stat");
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').next()).unwrap_or("?").to_string();
        let comm = read("comm");
        out.push_str(&format!("\n    thread {tid} ({}) {state} {} syscall {}", comm.trim(), read("wchan"), read("syscall").trim()));
    }
    out
}

/// Every thread's user stack of `pid` (gdb's `bt`, 12 frames each), indented; empty without
/// gdb or when it cannot attach within 20 s.
fn user_stacks(pid: i32) -> String {
    let gdb = Command::new("timeout")
        .args(["20", "gdb", "-p", &pid.to_string(), "-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt 12"])
        .stdin(std::process::Stdio::null())
        .output();
    let Ok(o) = gdb else { return String::new() };
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines().filter(|l| l.starts_with('#') || l.starts_with("Thread ")).map(|l| format!("\n    {}", l.chars().take(200).collect::<String>())).collect()
}

impl Drop for Job {
    fn drop(&mut self) {
        if !matches!(self.state().as_str(), "COMPLETED" | "GONE") {
            let _ = slurm("scancel").arg(&self.id).status();
        }
    }
}

/// The counter, compiled in `work`, and its uninterrupted result for `n` steps.
fn counter(work: &Workdir, n: u32) -> Result<(PathBuf, String)> {
    let exe = compile_c(work, "counter.c", &[])?;
    let plain = run_plain(&Program::native(&exe, &[&n.to_string(), "0"], work), false, Duration::from_secs(60))?;
    Ok((exe, result_of(&plain.stdout).context("no result")?.to_string()))
}

/// The binaries, a work directory and the counter with its uninterrupted result.
fn setup(name: &str, n: u32) -> Result<(Bins, Workdir, PathBuf, String)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let (prog, expected) = counter(&work, n)?;
    Ok((bins, work, prog, expected))
}

/// One task's lines: all lines, or with `srun --label` those of rank R without the "R: ".
fn task_lines(out: &str, rank: Option<u32>) -> Vec<&str> {
    out.lines()
        .filter_map(|l| match rank {
            None => Some(l),
            Some(r) => l.strip_prefix(&format!("{r}: ")),
        })
        .collect()
}

fn steps(lines: &[&str]) -> usize {
    lines.iter().filter(|l| step_of(l).is_some()).count()
}

/// The task ended with the uninterrupted result and started only once.
fn assert_resumed(lines: &[&str], expected: &str, what: &str, all: &str) -> Result<()> {
    let result = lines.iter().rev().find(|l| l.starts_with("result "));
    ensure!(result == Some(&expected), "{what}: result {result:?}, expected {expected}; output:\n{all}");
    // Each test program prints one "start NAME ..." line when it starts (not when it resumes).
    let starts = lines.iter().filter(|l| l.starts_with("start ")).count();
    ensure!(starts == 1, "{what}: started {starts} times; output:\n{all}");
    Ok(())
}

/// Kill and requeue the job (as a node failure would): it runs its script again, which must
/// resume from the newest image and end with the uninterrupted result.
fn requeue_and_check(job: &Job, expected: &str) -> Result<()> {
    job.run("scontrol", &["requeue"])?;
    job.wait_completed(150)?;
    let all = job.output();
    ensure!(all.contains("restart count 1") && all.contains("resuming from"), "not requeued and resumed:\n{all}");
    assert_resumed(&task_lines(&all, None), expected, "task", &all)
}

#[test]
fn slurm_scancel_signal_checkpoint_then_requeue_resumes() -> Result<()> {
    need_slurm!();
    let (bins, work, prog, expected) = setup("slurm-signal", 200)?;
    let job = Job::submit(&bins, &work, &[], "signal.sbatch", &prog, &["200", "50"], &[])?;
    job.wait_output(60, "20 steps", |o| steps(&task_lines(o, None)) >= 20)?;
    job.run("scancel", &["-s", "USR2"])?;
    job.wait_output(30, "the checkpoint line", |o| o.contains("ckpt: checkpoint 1: "))?;
    let at = steps(&task_lines(&job.output(), None));
    job.wait_output(30, "progress after the checkpoint", |o| steps(&task_lines(o, None)) > at + 5)?;
    requeue_and_check(&job, &expected)
}

#[test]
fn slurm_walltime_signal_checkpoint_exit_requeue_resumes() -> Result<()> {
    need_slurm!();
    let (bins, work, prog, expected) = setup("slurm-walltime", 550)?;
    // Time limit 1 min, USR1 45 s before it: Slurm sends it 15 to 45 s after the start, so the
    // 55 s count needs at least one requeue (and any run gets its signal before the limit).
    let job = Job::submit(&bins, &work, &["--time=1", "--signal=USR1@45"], "walltime-requeue.sbatch", &prog, &["550", "100"], &[])?;
    job.wait_completed(300)?;
    let all = job.output();
    ensure!(all.contains("restart count 1"), "never requeued (no SLURM_RESTART_COUNT >= 1):\n{all}");
    ensure!(all.contains("exit code 75"), "no checkpoint-and-exit:\n{all}");
    assert_resumed(&task_lines(&all, None), &expected, "task", &all)
}

#[test]
fn slurm_two_task_step_each_task_checkpointed_and_resumed() -> Result<()> {
    need_slurm!();
    let (bins, work, prog, expected) = setup("slurm-2tasks", 200)?;
    // SLURM_LABELIO: srun prefixes each line with the task's rank.
    let job = Job::submit(&bins, &work, &["--ntasks=2"], "signal.sbatch", &prog, &["200", "50"], &[("SLURM_LABELIO", "1")])?;
    job.wait_output(60, "20 steps of each task", |o| (0..2).all(|r| steps(&task_lines(o, Some(r))) >= 20))?;
    job.run("scancel", &["-s", "USR2"])?;
    let ck = work.join("ckpt");
    ensure!(
        wait_until(Duration::from_secs(30), || ck.join("counter.0.ckpt").is_file() && ck.join("counter.1.ckpt").is_file()),
        "each task writes its own image:\n{}",
        job.output()
    );
    job.wait_output(30, "both checkpoint lines", |o| o.matches("ckpt: checkpoint 1: ").count() >= 2)?;
    job.run("scontrol", &["requeue"])?;
    job.wait_completed(150)?;
    let all = job.output();
    ensure!(all.contains("restart count 1"), "not requeued:\n{all}");
    for r in 0..2 {
        assert_resumed(&task_lines(&all, Some(r)), &expected, &format!("task {r}"), &all)?;
    }
    Ok(())
}

/// Issue 13 under Slurm: a process tree (a parent, two forked workers, pipes with records
/// waiting in them, a shared anonymous counter) checkpointed by `scancel -s USR2` as one set,
/// the job requeued (every process of the tree killed with it), and the whole tree resumed from
/// the set by `--resume`: the parent's result (every record, the shared counter, the workers'
/// exit statuses through waitpid) is the uninterrupted one, and it started once.
#[test]
fn slurm_process_tree_checkpoint_then_requeue_resumes_the_whole_tree() -> Result<()> {
    need_slurm!();
    let bins = Bins::locate()?;
    let work = Workdir::new("slurm-tree")?;
    let prog = compile_c(&work, "tree_workers.c", &[])?;
    let args = ["2", "150", "60"];
    let plain = run_plain(&Program::native(&prog, &args, &work), false, Duration::from_secs(60))?;
    let expected = result_of(&plain.stdout).context("no result")?.to_string();
    let job = Job::submit(&bins, &work, &[], "signal.sbatch", &prog, &args, &[])?;
    job.wait_output(60, "20 steps", |o| steps(&task_lines(o, None)) >= 20)?;
    job.run("scancel", &["-s", "USR2"])?;
    job.wait_output(30, "the checkpoint line", |o| o.contains("ckpt: checkpoint 1"))?;
    let set = work.join("ckpt").join("tree_workers.ckpt");
    ensure!(set.join("tree").is_file(), "the checkpoint wrote no image set of the tree ({}):\n{}", set.display(), job.output());
    let at = steps(&task_lines(&job.output(), None));
    job.wait_output(30, "progress after the checkpoint", |o| steps(&task_lines(o, None)) > at + 5)?;
    requeue_and_check(&job, &expected)
}

#[test]
fn slurm_periodic_checkpoints_resume_after_the_job_is_killed() -> Result<()> {
    need_slurm!();
    let (bins, work, prog, expected) = setup("slurm-periodic", 200)?;
    let job = Job::submit(&bins, &work, &[], "periodic-resubmit.sbatch", &prog, &["200", "50"], &[("CKPT_INTERVAL", "1s")])?;
    job.wait_output(60, "two periodic checkpoints", |o| o.contains("ckpt: checkpoint 2: "))?;
    // No checkpoint on request: the requeued job resumes from the newest periodic image.
    requeue_and_check(&job, &expected)
}

#[test]
fn slurm_scancel_with_stop_signal_term_saves_the_job_and_a_new_job_resumes() -> Result<()> {
    need_slurm!();
    let (bins, work, prog, expected) = setup("slurm-term", 200)?;
    // Options from the environment, as a site's module file would set them.
    let env = [("CKPT_STOP_SIGNAL", "TERM")];
    let first = Job::submit(&bins, &work, &[], "signal.sbatch", &prog, &["200", "50"], &env)?;
    first.wait_output(60, "20 steps", |o| steps(&task_lines(o, None)) >= 20)?;
    // A plain scancel (SIGTERM, then SIGKILL after KillWait) first saves the program.
    first.run("scancel", &[])?;
    first.wait_output(30, "the checkpoint line", |o| o.contains("ckpt: checkpoint 1: "))?;
    ensure!(
        wait_until(Duration::from_secs(60), || matches!(first.state().as_str(), "CANCELLED" | "COMPLETED" | "GONE")),
        "job {} not ended: {}",
        first.id,
        first.state()
    );
    // A new job with the same script and directory resumes.
    let second = Job::submit(&bins, &work, &[], "signal.sbatch", &prog, &["200", "50"], &env)?;
    second.wait_completed(150)?;
    let all = second.output();
    ensure!(all.contains("resuming from"), "not resumed:\n{all}");
    assert_resumed(&task_lines(&all, None), &expected, "task", &all)
}

/// What a system file is (None: absent), to see that nothing changed it.
fn file_state(path: &str) -> Option<(std::time::SystemTime, Vec<u8>)> {
    Some((std::fs::metadata(path).ok()?.modified().ok()?, std::fs::read(path).ok()?))
}

/// Processes that were started for the cluster in `dir` (they carry its marker).
fn cluster_processes(dir: &Path) -> Vec<u32> {
    let marker = format!("CKPT_SLURM_CLUSTER={}", dir.display());
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')));
            !zombie && env.split(|&b| b == 0).any(|v| v == marker.as_bytes())
        })
        .collect()
}

/// scripts/slurm-cluster keeps to its directory: /etc/slurm and /etc/munge are left as they
/// were, the cluster answers through its own SLURM_CONF, a cluster whose daemons were killed
/// starts again in the same directory, a cluster whose owner is gone is stopped by the next
/// start, and stop ends only the cluster's processes and removes its directory.
#[test]
fn slurm_cluster_is_private_and_survives_its_leftovers() -> Result<()> {
    let script = repo().join("scripts/slurm-cluster");
    let parent = std::env::temp_dir().join(format!("ckpt-slurm-test-{}", std::process::id()));
    std::fs::create_dir_all(&parent)?;
    struct Cleanup(PathBuf, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for d in ["ckpt-slurm-a", "ckpt-slurm-b"] {
                let _ = Command::new(&self.1).arg("stop").arg(self.0.join(d)).output();
            }
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(parent.clone(), script.clone());
    let (a, b) = (parent.join("ckpt-slurm-a"), parent.join("ckpt-slurm-b"));
    let system = ["/etc/slurm/slurm.conf", "/etc/munge/munge.key", "/etc/slurm/plugstack.conf"];
    let before: Vec<_> = system.iter().map(|p| file_state(p)).collect();
    let run = |args: &[&str], dir: &Path| -> Result<std::process::Output> { Ok(Command::new(&script).args(args).arg(dir).output()?) };

    // Cluster a belongs to a process that then goes away (a test run that was killed).
    let mut owner = Command::new("sleep").arg("600").spawn()?;
    let o = run(&["start", "--owner", &owner.id().to_string()], &a)?;
    if o.status.code() == Some(2) {
        let _ = owner.kill();
        ckpt_tests::skip_test!("Slurm is not available here ({})", String::from_utf8_lossy(&o.stderr).trim());
        return Ok(());
    }
    ensure!(o.status.success(), "start a: {}", String::from_utf8_lossy(&o.stderr));
    owner.kill()?;
    owner.wait()?;
    ensure!(a.join("slurm.conf").is_file() && !cluster_processes(&a).is_empty(), "cluster a is not in its directory");

    // Cluster b crashes (every process killed) and starts again over what it left.
    let o = run(&["start"], &b)?;
    ensure!(o.status.success(), "start b: {}", String::from_utf8_lossy(&o.stderr));
    for pid in cluster_processes(&b) {
        // SAFETY: a plain kill of a process of cluster b.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    ensure!(wait_until(Duration::from_secs(10), || cluster_processes(&b).is_empty()), "cluster b's processes survived SIGKILL");
    let o = run(&["start"], &b)?;
    ensure!(o.status.success(), "start b over its leftovers: {}", String::from_utf8_lossy(&o.stderr));
    ensure!(!a.exists() && cluster_processes(&a).is_empty(), "cluster a, whose owner is gone, was not stopped: {}", String::from_utf8_lossy(&o.stderr));

    let conf = b.join("slurm.conf");
    let o = Command::new("sinfo").args(["-h", "-N", "-o", "%N %T"]).env("SLURM_CONF", &conf).output()?;
    let nodes = String::from_utf8_lossy(&o.stdout);
    // (A node in two partitions is listed once for each.)
    let idle: std::collections::BTreeSet<&str> = nodes.lines().filter(|l| l.ends_with(" idle")).collect();
    ensure!(idle.len() == 3, "sinfo through {}: {nodes}", conf.display());
    let o = Command::new("scontrol").args(["show", "config"]).env("SLURM_CONF", &conf).output()?;
    let config = String::from_utf8_lossy(&o.stdout);
    ensure!(config.lines().any(|l| l.starts_with("SLURM_CONF") && l.contains(conf.to_str().unwrap_or("?"))), "scontrol show config:\n{config}");

    let o = run(&["stop"], &b)?;
    ensure!(o.status.success(), "stop b: {}", String::from_utf8_lossy(&o.stderr));
    ensure!(!b.exists(), "stop left {}", b.display());
    ensure!(wait_until(Duration::from_secs(10), || cluster_processes(&b).is_empty()), "processes of cluster b after stop: {:?}", cluster_processes(&b));
    let after: Vec<_> = system.iter().map(|p| file_state(p)).collect();
    for ((p, x), y) in system.iter().zip(&before).zip(&after) {
        ensure!(x == y, "{p} was changed");
    }
    Ok(())
}

/// A batch script for the step tests (in `work`): where each task runs, then the ring under
/// `srun ckpt-run --resume` with `opts`. Both sruns take the options in $RING_SRUN (the job's
/// environment: how the tasks are placed); a requeued run of a job submitted with
/// $RING_SWAP_HOSTS places its tasks on the nodes in the order that file says.
fn ring_script(work: &Workdir, opts: &str) -> Result<PathBuf> {
    let path = work.join("ring.sbatch");
    let script = format!(
        "#!/bin/bash\n#SBATCH --open-mode=append\n#SBATCH --requeue\n\
         echo \"ckpt job $SLURM_JOB_ID: restart count ${{SLURM_RESTART_COUNT:-0}}\"\n\
         if [ -n \"${{RING_SWAP_HOSTS:-}}\" ] && [ \"${{SLURM_RESTART_COUNT:-0}}\" -ge 1 ]; then\n\
         export SLURM_HOSTFILE=$RING_SWAP_HOSTS RING_SRUN=--distribution=arbitrary\nfi\n\
         srun ${{RING_SRUN:-}} bash -c 'echo \"task $SLURM_PROCID on $SLURMD_NODENAME\"'\n\
         srun ${{RING_SRUN:-}} ckpt-run --dir ckpt --resume {opts} -- \"$@\"\n\
         echo \"srun exit code $?\"\n"
    );
    std::fs::write(&path, script)?;
    Ok(path)
}

/// rank -> node, from the script's "R: task R on NODE" lines of job run `run` (0: first).
fn placement(out: &str, run: usize) -> Vec<(u32, String)> {
    let part = out.split("ckpt job ").nth(run + 1).unwrap_or("");
    let mut v: Vec<(u32, String)> = part
        .lines()
        .filter_map(|l| {
            let (r, rest) = l.split_once(": task ")?;
            let (_, node) = rest.split_once(" on ")?;
            Some((r.trim().parse().ok()?, node.trim().to_string()))
        })
        .collect();
    v.sort();
    v
}

/// Cancel `job` and wait until it has ended.
fn cancel_and_wait(job: &Job) -> Result<()> {
    job.run("scancel", &[])?;
    ensure!(wait_until(Duration::from_secs(60), || matches!(job.state().as_str(), "CANCELLED" | "COMPLETED" | "GONE")), "job {} not ended: {}", job.id, job.state());
    Ok(())
}

/// Every task of the ring ended with the uninterrupted result and started once.
fn assert_ring_resumed(all: &str, expected: &[String]) -> Result<()> {
    for (r, want) in expected.iter().enumerate() {
        let lines = task_lines(all, Some(r as u32));
        let result = lines.iter().rev().find(|l| l.starts_with("result "));
        ensure!(result == Some(&want.as_str()), "task {r}: {result:?}, uninterrupted {want}; output:\n{all}");
        let starts = lines.iter().filter(|l| l.starts_with("start step_ring")).count();
        ensure!(starts == 1, "task {r} started {starts} times; output:\n{all}");
        ensure!(lines.iter().any(|l| l.contains("restarted from")), "task {r} was not restarted; output:\n{all}");
    }
    Ok(())
}

/// Issue 14: a 4-task step on 2 nodes whose tasks talk over TCP, checkpointed as one by
/// `scancel -s USR2`, every task killed with the job, resumed by a new job with another node
/// assignment (cyclic instead of block): every task ends with the uninterrupted checksum.
#[test]
fn slurm_step_ring_4_tasks_2_nodes_checkpoint_kill_resume_on_other_nodes() -> Result<()> {
    ring_checkpoint_kill_resume_on_other_nodes("slurm-ring", false)
}

/// The same when every task is a process tree: each task's ring process forks a worker that
/// makes the bytes it sends (over pipes); each task's tree checkpoints as its part of the step
/// (its set `step_ring.RANK.ckpt/`, both processes), and every tree comes back whole on the other
/// nodes, its connections to the other tasks made again.
#[test]
fn slurm_step_ring_of_process_trees_4_tasks_2_nodes_checkpoint_kill_resume_on_other_nodes() -> Result<()> {
    ring_checkpoint_kill_resume_on_other_nodes("slurm-ring-trees", true)
}

fn ring_checkpoint_kill_resume_on_other_nodes(name: &str, trees: bool) -> Result<()> {
    need_slurm!();
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let expected = ckpt_tests::ring::reference(&work, &exe, 4, 150)?;
    let script = ring_script(&work, "")?;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    let worker = if trees { "1" } else { "0" };
    let args = [ports.to_str().unwrap_or("ports"), "150", "50", ckpt_tests::ring::SIZE, worker];
    let env = [("SLURM_LABELIO", "1")];
    let first = Job::submit(&bins, &work, &["-N2", "--ntasks=4", "--distribution=block"], script.to_str().unwrap_or(""), &exe, &args, &env)?;
    first.wait_output(60, "10 rounds of every task", |o| (0..4).all(|r| steps(&task_lines(o, Some(r))) >= 10))?;
    first.run("scancel", &["-s", "USR2"])?;
    first.wait_output(60, "the step's commit", |o| o.contains("step checkpoint 1: 4 tasks committed"))?;
    if trees {
        for r in 0..4 {
            let set = work.join(&format!("ckpt/step_ring.{r}.ckpt"));
            let m = std::fs::read_to_string(set.join("tree")).with_context(|| format!("task {r} wrote no set of its tree:\n{}", first.output()))?;
            let live = m.lines().filter(|l| l.starts_with("proc ") && l.contains(" live ")).count();
            ensure!(live == 2, "task {r}'s set does not hold its 2 processes:\n{m}");
        }
    }
    cancel_and_wait(&first)?;
    let at: Vec<usize> = (0..4).map(|r| steps(&task_lines(&first.output(), Some(r)))).collect();
    ensure!(at.iter().all(|&s| s < 150), "a task finished before the kill: {at:?}");
    let second = Job::submit(&bins, &work, &["-N2", "--ntasks=4", "--distribution=cyclic"], script.to_str().unwrap_or(""), &exe, &args, &env)?;
    second.wait_completed(180)?;
    let all = second.output();
    let (p1, p2) = (placement(&all, 0), placement(&all, 1));
    ensure!(p1.len() == 4 && p2.len() == 4 && p1 != p2, "the tasks did not land on other nodes: {p1:?} then {p2:?}");
    assert_ring_resumed(&all, &expected)
}

/// Issue 14: a 4-task step on 2 nodes one of whose tasks (rank 2) runs 5 rounds alone and
/// exits with status 3 while the other three pass data round a ring: it tells rank 0, the
/// checkpoint (`scancel -s USR2`) commits with the three and records it as ended with its
/// status, every task killed with the job, a new job resumes: task 2's `ckpt-run --resume`
/// exits 3 at once without running the ring again, the others end with the uninterrupted
/// checksums, every task started once.
#[test]
fn slurm_step_task_exited_early_recorded_ended_checkpoint_kill_resume_others_same_result() -> Result<()> {
    need_slurm!();
    let bins = Bins::locate()?;
    let work = Workdir::new("slurm-ring-early")?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let (rounds, early) = ("200", "2:5:3");
    let expected = ckpt_tests::ring::reference_of(&work, 4, |ports| vec![exe.clone().into(), ports.into(), rounds.into(), "0".into(), ckpt_tests::ring::SIZE.into(), "0".into(), early.into()])?;
    let script = ring_script(&work, "")?;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    let args = [ports.to_str().unwrap_or("ports"), rounds, "50", ckpt_tests::ring::SIZE, "0", early];
    let env = [("SLURM_LABELIO", "1"), ("CKPT_LOG", "info")];
    let first = Job::submit(&bins, &work, &["-N2", "--ntasks=4", "--distribution=block"], script.to_str().unwrap_or(""), &exe, &args, &env)?;
    first.wait_output(90, "task 2's end, told to rank 0", |o| o.contains("step: task 2 ended (exit status 3)"))?;
    first.wait_output(60, "10 rounds of the ring", |o| [0, 1, 3].iter().all(|&r| steps(&task_lines(o, Some(r))) >= 10))?;
    first.run("scancel", &["-s", "USR2"])?;
    first.wait_output(90, "the step's commit", |o| o.contains("step checkpoint 1: 3 tasks committed"))?;
    ensure!(first.output().contains("task(s) [2 (exit status 3)] recorded as ended"), "task 2 was not recorded as ended:\n{}", first.output());
    let m = std::fs::read_to_string(work.join("ckpt/step_ring.step"))?;
    ensure!(m.contains("rank 2 ended 3\n"), "the step's manifest:\n{m}");
    cancel_and_wait(&first)?;
    let at: Vec<usize> = [0, 1, 3].iter().map(|&r| steps(&task_lines(&first.output(), Some(r)))).collect();
    ensure!(at.iter().all(|&s| s < 200), "a task finished before the kill: {at:?}");
    let second = Job::submit(&bins, &work, &["-N2", "--ntasks=4", "--distribution=cyclic"], script.to_str().unwrap_or(""), &exe, &args, &env)?;
    second.wait_completed(180)?;
    let all = second.output();
    let again = all.split("ckpt job ").nth(2).unwrap_or("");
    let two = task_lines(again, Some(2));
    ensure!(two.iter().any(|l| l.contains("not running it again")) && !two.iter().any(|l| l.starts_with("step ")), "task 2 ran again or did not say why not:\n{all}");
    ensure!(again.contains("srun exit code 3"), "srun did not end with task 2's status:\n{all}");
    for r in [0, 1, 3] {
        let lines = task_lines(&all, Some(r));
        let result = lines.iter().rev().find(|l| l.starts_with("result "));
        ensure!(result == Some(&expected[r as usize].as_str()), "task {r}: {result:?}, uninterrupted {}; output:\n{all}", expected[r as usize]);
        ensure!(lines.iter().any(|l| l.contains("restarted from")), "task {r} was not restarted; output:\n{all}");
    }
    for r in 0..4 {
        let lines = task_lines(&all, Some(r));
        let starts = lines.iter().filter(|l| l.starts_with("start step_ring")).count();
        ensure!(starts == 1, "task {r} started {starts} times; output:\n{all}");
    }
    Ok(())
}

/// Issue 14 (2b), as MPI needs it: the connections between the tasks are held by a process of
/// each task's tree other than the task's program (MPI ranks are children of their daemon):
/// `srun -N2 -n2`, each task a shell whose child, the ring, holds the TCP ring connections.
/// Checkpointed as one by `scancel -s USR2`, every task SIGKILLed (`scancel -s KILL`), the job
/// requeued with its tasks placed the other way round (task 0 on the node task 1 had): each
/// ring process drained its own connections at the checkpoint and gets them back, made again by
/// its tree's restart: every task ends with the uninterrupted checksum and did not start over.
#[test]
fn slurm_step_ring_held_by_tree_children_2_tasks_2_nodes_checkpoint_kill_resume_on_other_nodes() -> Result<()> {
    need_slurm!();
    let bins = Bins::locate()?;
    let work = Workdir::new("slurm-ring-child")?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let expected = ckpt_tests::ring::reference(&work, &exe, 2, 150)?;
    let script = ring_script(&work, "--name step_ring")?;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    // The task's program is the shell; the ring is its child.
    let cmd = "\"$0\" \"$@\"; echo \"the ring ended: $?\" >&2";
    let args = ["-c", cmd, exe.to_str().unwrap_or(""), ports.to_str().unwrap_or("ports"), "150", "50", ckpt_tests::ring::SIZE];
    let hosts = work.join("hosts");
    let hosts_s = hosts.to_str().unwrap_or("hosts").to_string();
    let env = [("SLURM_LABELIO", "1"), ("CKPT_NAMESPACE", "1"), ("RING_SWAP_HOSTS", hosts_s.as_str())];
    let sh = Path::new("/bin/sh");
    let first = Job::submit(&bins, &work, &["-N2", "--ntasks=2"], script.to_str().unwrap_or(""), sh, &args, &env)?;
    first.wait_output(60, "10 rounds of every task", |o| (0..2).all(|r| steps(&task_lines(o, Some(r))) >= 10))?;
    first.run("scancel", &["-s", "USR2"])?;
    first.wait_output(60, "the step's commit", |o| o.contains("step checkpoint 1: 2 tasks committed"))?;
    for r in 0..2 {
        let set = work.join(&format!("ckpt/step_ring.{r}.ckpt"));
        let m = std::fs::read_to_string(set.join("tree")).with_context(|| format!("task {r} wrote no set of its tree:\n{}", first.output()))?;
        let live = m.lines().filter(|l| l.starts_with("proc ") && l.contains(" live ")).count();
        ensure!(live == 2, "task {r}'s set does not hold the shell and the ring:\n{m}");
    }
    let all = kill_and_requeue_swapped(&first, &hosts, |out| {
        let at: Vec<usize> = (0..2).map(|r| steps(&task_lines(out, Some(r)))).collect();
        ensure!(at.iter().all(|&s| s < 150), "a task finished before the kill: {at:?}");
        Ok(())
    })?;
    assert_ring_resumed(&all, &expected)
}

/// Every task of the 2-task step of `first` SIGKILLed (the step ends, and with it the first run
/// of the script; `killed` checks its output then), the job requeued with task 0 where task 1
/// was and the other way round (`hosts`: the script's RING_SWAP_HOSTS), and run to its end:
/// its whole output.
fn kill_and_requeue_swapped(first: &Job, hosts: &Path, killed: impl FnOnce(&str) -> Result<()>) -> Result<String> {
    let p1 = placement(&first.output(), 0);
    ensure!(p1.len() == 2 && p1[0].1 != p1[1].1, "the first run's tasks are not on 2 nodes: {p1:?}");
    std::fs::write(hosts, format!("{}\n{}\n", p1[1].1, p1[0].1))?;
    let n = first.kill_tasks();
    ensure!(n >= 2, "only {n} processes of the step's tasks found to kill");
    first.wait_output(60, "the end of the killed step", |o| o.contains("srun exit code"))?;
    killed(&first.output())?;
    ensure!(
        wait_until(Duration::from_secs(60), || !matches!(first.state().as_str(), "RUNNING" | "COMPLETING")),
        "job {} not ended: {}",
        first.id,
        first.state()
    );
    first.run("scontrol", &["requeue"])?;
    first.wait_output(120, "the requeued run", |o| o.contains("restart count 1"))?;
    first.wait_completed(180)?;
    let all = first.output();
    ensure!(all.contains("restart count 1"), "not requeued:\n{all}");
    let p2 = placement(&all, 1);
    ensure!(p2.len() == 2 && p2 != p1, "the tasks did not land on other nodes: {p1:?} then {p2:?}");
    Ok(all)
}

/// Issue 14, UDP across the checkpoint under Slurm itself (programs/step_udpcut.c): `srun -N2
/// -n2`, task 1's UDP socket connected to task 0's before the checkpoint, a datagram each way
/// queued unread at it; checkpointed as one by `scancel -s USR2`, every task SIGKILLed, the job
/// requeued with its tasks placed the other way round: the queued datagrams are read with the
/// sources the tasks published, the connected socket still reaches task 0 (send, getpeername),
/// sendmmsg and recvmmsg carry the reply; both end with the uninterrupted result, started once.
#[test]
fn slurm_step_udp_connected_and_queued_across_a_requeue_on_swapped_nodes_same_result() -> Result<()> {
    need_slurm!();
    let bins = Bins::locate()?;
    let work = Workdir::new("slurm-udpcut")?;
    let exe = compile_c(&work, "step_udpcut.c", &[])?;
    // Rounds of 50 ms: the exchange after the restart at round 300, well after the kill.
    let (rounds, late) = ("400", "300");
    let expected = ckpt_tests::ring::reference_of(&work, 2, |ports| [exe.as_os_str(), ports.as_os_str()].into_iter().map(Into::into).chain([rounds, late, "0", "127.0.0.1"].map(Into::into)).collect())?;
    let script = ring_script(&work, "")?;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    let args = [ports.to_str().unwrap_or("ports"), rounds, late, "50", "127.0.0.1"];
    let hosts = work.join("hosts");
    let hosts_s = hosts.to_str().unwrap_or("hosts").to_string();
    let env = [("SLURM_LABELIO", "1"), ("RING_SWAP_HOSTS", hosts_s.as_str())];
    let first = Job::submit(&bins, &work, &["-N2", "--ntasks=2"], script.to_str().unwrap_or(""), &exe, &args, &env)?;
    first.wait_output(60, "5 rounds of every task", |o| (0..2).all(|r| steps(&task_lines(o, Some(r))) >= 5))?;
    first.run("scancel", &["-s", "USR2"])?;
    first.wait_output(60, "the step's commit", |o| o.contains("step checkpoint 1: 2 tasks committed"))?;
    let all = kill_and_requeue_swapped(&first, &hosts, |out| {
        ensure!(!out.contains("late:"), "a task reached the exchange after the checkpoint before the kill:\n{out}");
        Ok(())
    })?;
    for (r, want) in expected.iter().enumerate() {
        let lines = task_lines(&all, Some(r as u32));
        assert_resumed(&lines, want, &format!("task {r}"), &all)?;
    }
    let shows = [vec!["late: queued from 127.0.0.1:", "late: task 1 from 127.0.0.1:"], vec!["late: queued from 127.0.0.1:", "late: peer 127.0.0.1:", "late: reply from 127.0.0.1:"]];
    for (r, want) in shows.iter().enumerate() {
        let lines = task_lines(&all, Some(r as u32));
        if let Some(w) = want.iter().find(|w| !lines.iter().any(|l| l.starts_with(*w))) {
            bail!("task {r} does not show {w:?}:\n{all}");
        }
    }
    Ok(())
}

/// The wall-time pattern for a step: `--signal=USR1@45` and `--stop-signal USR1 --requeue`:
/// before the limit the step checkpoints as one, every task exits (75), rank 0 requeues the
/// job once the set is committed, and the requeued job resumes it.
#[test]
fn slurm_step_ring_walltime_stop_signal_requeue_resumes() -> Result<()> {
    ring_walltime_stop_signal_requeue_resumes("slurm-ring-wall", Tasks::Ring)
}

/// The same when every task is a process tree (the ring and its worker): every process of each
/// tree stays stopped after the cut, and each tree exits with its task once the step's set is
/// committed.
#[test]
fn slurm_step_ring_of_process_trees_walltime_stop_signal_requeue_resumes() -> Result<()> {
    ring_walltime_stop_signal_requeue_resumes("slurm-ring-wall-trees", Tasks::Workers)
}

/// The same when the ring is the child of a shell, the task's program (it holds the connections
/// between the tasks): every process of each tree stays stopped after the cut, each ring drained
/// its connections and they are reset, not closed, when the tree exits; the requeued job makes
/// them again for each ring.
#[test]
fn slurm_step_ring_held_by_tree_children_walltime_stop_signal_requeue_resumes() -> Result<()> {
    ring_walltime_stop_signal_requeue_resumes("slurm-ring-wall-child", Tasks::Child)
}

/// What each task of a ring test runs.
#[derive(Clone, Copy, PartialEq)]
enum Tasks {
    /// The ring alone.
    Ring,
    /// A tree: the ring and the worker it forks.
    Workers,
    /// A tree: a shell and the ring, its child, which holds the connections.
    Child,
}

fn ring_walltime_stop_signal_requeue_resumes(name: &str, tasks: Tasks) -> Result<()> {
    need_slurm!();
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    let expected = ckpt_tests::ring::reference(&work, &exe, 4, 700)?;
    let named = if tasks == Tasks::Child { "--stop-signal USR1 --requeue --name step_ring" } else { "--stop-signal USR1 --requeue" };
    let script = ring_script(&work, named)?;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    // 700 rounds of 100 ms: more than the minute the job may run.
    let worker = if tasks == Tasks::Workers { "1" } else { "0" };
    let ring_args = [ports.to_str().unwrap_or("ports"), "700", "100", ckpt_tests::ring::SIZE, worker];
    let exe_s = exe.to_str().unwrap_or("").to_string();
    let (prog, args): (&Path, Vec<&str>) = match tasks {
        Tasks::Child => (Path::new("/bin/sh"), ["-c", "\"$0\" \"$@\"; echo \"the ring ended: $?\" >&2", exe_s.as_str()].into_iter().chain(ring_args).collect()),
        _ => (&exe, ring_args.to_vec()),
    };
    let job = Job::submit(&bins, &work, &["-N2", "--ntasks=4", "--time=1", "--signal=USR1@45"], script.to_str().unwrap_or(""), prog, &args, &[("SLURM_LABELIO", "1")])?;
    job.wait_completed(400)?;
    let all = job.output();
    ensure!(all.contains("restart count 1"), "never requeued:\n{all}");
    ensure!(all.contains("step checkpoint 1: 4 tasks committed"), "no checkpoint of the step:\n{all}");
    ensure!(all.contains("exit code 75"), "no checkpoint-and-exit:\n{all}");
    if tasks != Tasks::Ring {
        let sets = all.lines().filter(|l| l.contains("ckpt: checkpoint 1: ") && l.contains("(2 processes,")).count();
        ensure!(sets == 4, "not every task checkpointed its tree of 2 processes:\n{all}");
    }
    assert_ring_resumed(&all, &expected)
}

/// An MPI launcher and the ring built for its ABI, as in process_trees_tools.rs.
struct Mpi {
    launcher: &'static str,
    flags: &'static [&'static str],
    /// How the launcher runs 4 ranks on this machine alone (the uninterrupted reference).
    local: &'static [&'static str],
    /// Its ranks may never return from MPI_Finalize once the result is out when two nodes'
    /// ranks talk over TCP (MPICH 4.0.2 with UCX 1.13: a rank waits for a peer that has left
    /// for the PMI barrier; reproduced without ckpt, docs/multinode.md).
    finalize_may_hang: bool,
}

const OPEN_MPI: Mpi = Mpi { launcher: "/usr/bin/mpirun.openmpi", flags: &["-l:libmpi.so.40"], local: &["--oversubscribe"], finalize_may_hang: false };
const MPICH: Mpi = Mpi { launcher: "/usr/bin/mpiexec.mpich", flags: &["-DMPICH_ABI", "-l:libmpich.so.12"], local: &["-launcher", "fork"], finalize_may_hang: true };

/// Open MPI's permission to run as root (the cluster's jobs run as the test's user) and its
/// session directory and shared-memory segments in the work directory.
fn mpi_env(work: &Workdir) -> Vec<(String, String)> {
    let w = work.path().display().to_string();
    vec![
        ("OMPI_ALLOW_RUN_AS_ROOT".into(), "1".into()),
        ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM".into(), "1".into()),
        ("TMPDIR".into(), w.clone()),
        ("OMPI_MCA_btl_vader_backing_directory".into(), w),
    ]
}

/// Issue 14, what is not supported yet: `ckpt-run --dir ckpt -- LAUNCHER -np 4 ring` in a
/// 2-node allocation. The launcher starts its daemons (orted, hydra_pmi_proxy) through srun,
/// outside ckpt-run's process tree, with every rank under them: a checkpoint would hold
/// mpirun and srun only, and its restart a launcher whose ranks are gone. It must be refused
/// in one line naming srun, write no set, and leave the job running to the uninterrupted
/// result (before: the set of mpirun and srun was committed).
/// `LAUNCHER -np 4 ring` under `ckpt-run OPTIONS` in a 2-node allocation (`joined`: with
/// CKPT_JOIN_SRUN=1), once the ring ran 10 laps; the ring's uninterrupted result. None: skipped.
fn mpi_job(name: &str, mpi: &Mpi, options: &str, joined: bool) -> Result<Option<(Bins, Workdir, Job, String)>> {
    mpi_job_of(name, mpi, options, joined, 150, Launch::Once)
}

/// How the job's tree runs the launcher.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Launch {
    Once,
    /// A requeued run's srun places its tasks on the nodes in the order the file `hosts` of the
    /// work directory says (the test writes it).
    Swapped,
    /// In the partition `wide` (nodes n1, n2, n3), first on n1 and n2; requeued with n1
    /// excluded: on n2 and n3, the batch script (rank 0's tree) too.
    Moved,
    /// The tree is a shell that runs the launcher twice: a short ring of 5 laps (its own srun,
    /// which ends), then (exec) the ring of the test; the second's output follows `first
    /// launch done`.
    Twice,
    /// Requeued while other programs hold every TCP port the job's processes listened at.
    PortsTaken,
}

/// `mpi_job` with a ring of `laps` laps, launched as `launch` says.
fn mpi_job_of(name: &str, mpi: &Mpi, options: &str, joined: bool, laps: u32, launch: Launch) -> Result<Option<(Bins, Workdir, Job, String)>> {
    if !Path::new(mpi.launcher).is_file() {
        ckpt_tests::skip_test!("{} is not installed (Debian packages openmpi-bin and mpich; .ci/run installs them)", mpi.launcher);
        return Ok(None);
    }
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let ring = compile_c(&work, "mpi_ring.c", mpi.flags)?;
    let env = mpi_env(&work);
    let (laps, delay) = (laps.to_string(), "100");
    let laps = laps.as_str();
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut local: Vec<&str> = vars.iter().map(String::as_str).collect();
    local.push(mpi.launcher);
    local.extend(mpi.local);
    local.extend(["-np", "4", ring.to_str().unwrap_or(""), laps, delay]);
    let plain = run_plain(&Program::native("/usr/bin/env", &local, &work), false, Duration::from_secs(120))?;
    let expected = result_of(&plain.stdout).context("no result from the uninterrupted run")?.to_string();
    let script = work.join("mpi.sbatch");
    // ($0 the launcher, $1 -np, $2 4, $3 the ring.)
    let program = if launch == Launch::Twice { "/bin/sh -c '\"$0\" -np 4 \"$3\" 5 10 && echo first launch done; exec \"$0\" \"$@\"' " } else { "" };
    // SLURM_* variables of the batch script reach srun run again by a restart (its record's are
    // the old allocation's): with these, it places its tasks in the order of the file.
    let placed = if launch == Launch::Swapped { "if [ \"${SLURM_RESTART_COUNT:-0}\" -ge 1 ]; then export SLURM_HOSTFILE=$PWD/hosts SLURM_DISTRIBUTION=arbitrary; fi\n" } else { "" };
    let body = format!("#!/bin/bash\n#SBATCH --open-mode=append\necho \"restart count ${{SLURM_RESTART_COUNT:-0}}\"\necho \"batch script on $SLURMD_NODENAME\"\n{placed}ckpt-run --dir ckpt {options} -- {program}\"$@\"\necho \"ckpt-run exit code $?\"\n");
    std::fs::write(&script, body)?;
    let args = ["-np", "4", ring.to_str().unwrap_or(""), laps, delay];
    let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if joined {
        envs.push(("CKPT_JOIN_SRUN", "1"));
    }
    let nodes: &[&str] = if launch == Launch::Moved { &["-p", "wide", "-N2", "--ntasks=4", "--exclude=n3"] } else { &["-N2", "--ntasks=4"] };
    let job = Job::submit(&bins, &work, nodes, script.to_str().unwrap_or(""), Path::new(mpi.launcher), &args, &envs)?;
    let second = |o: &str| if launch == Launch::Twice { o.split("first launch done\n").nth(1).unwrap_or("").to_string() } else { o.to_string() };
    job.wait_output(90, "10 laps of the ring", |o| steps(&task_lines(&second(o), None)) >= 10)?;
    Ok(Some((bins, work, job, expected)))
}

fn mpi_across_nodes_is_refused(name: &str, mpi: &Mpi) -> Result<()> {
    need_slurm!();
    let Some((bins, work, job, expected)) = mpi_job(name, mpi, "", false)? else { return Ok(()) };
    let ctl = Command::new(bins.dir.join("ckpt-ctl")).args(["checkpoint", "--wait", "--dir"]).arg(work.join("ckpt")).output()?;
    let said = String::from_utf8_lossy(&ctl.stderr).into_owned();
    ensure!(ctl.status.code() == Some(1), "ckpt-ctl checkpoint: {:?}, expected 1 (failed): {said}", ctl.status);
    job.wait_completed(120)?;
    let all = job.output();
    let refusals: Vec<&str> = all.lines().filter(|l| l.contains("is Slurm's srun")).collect();
    ensure!(refusals.len() == 1 && refusals[0].contains("failed, the program continues"), "no one-line refusal naming srun:\n{all}");
    let sets: Vec<String> = std::fs::read_dir(work.join("ckpt"))?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".ckpt")).collect();
    ensure!(sets.is_empty(), "a set was written: {sets:?}\n{all}");
    assert_resumed(&task_lines(&all, None), &expected, "the ring", &all)
}

#[test]
fn slurm_openmpi_mpirun_across_two_nodes_checkpoint_is_refused_in_one_line() -> Result<()> {
    mpi_across_nodes_is_refused("slurm-ompi-refused", &OPEN_MPI)
}

#[test]
fn slurm_mpich_mpiexec_across_two_nodes_checkpoint_is_refused_in_one_line() -> Result<()> {
    mpi_across_nodes_is_refused("slurm-mpich-refused", &MPICH)
}

/// Issue 14's acceptance with the joined step (CKPT_JOIN_SRUN=1): `ckpt-run --resume -- LAUNCHER
/// -np 4 ring` in a 2-node allocation; the launcher's daemons run under ckpt-run on the job's
/// nodes as tasks of the tree's joined step. `scancel -s USR2` makes one checkpoint of the whole
/// step (the tree with srun's command, and every daemon's tree with its ranks), every process
/// of the job is killed, the requeued job resumes it (srun run again with `--resume`) and the
/// ring ends with the uninterrupted result, not started over. `rounds` times: the restarted
/// joined step (srun run again under the runtime) checkpoints again.
/// `Launch::Swapped`: each requeued run's srun places its tasks the other way round (the joined
/// step's task 1, first on n1, is restored on n2 and task 2 on n1), checked where they run.
fn mpi_joined_checkpoint_kill_requeue(name: &str, mpi: &Mpi, rounds: u32, launch: Launch) -> Result<()> {
    need_slurm!();
    let laps = 150 * rounds;
    let swap = launch == Launch::Swapped;
    let moved = launch == Launch::Moved;
    let Some((_bins, work, job, expected)) = mpi_job_of(name, mpi, "--resume", true, laps, launch)? else { return Ok(()) };
    let mut placed = if swap || moved { job.joined_placement(2)? } else { Vec::new() };
    // The output of the job's run `n` (0: the first, then one a requeue).
    let run = |n: u32| {
        let all = job.output();
        if n == 0 {
            return all;
        }
        all.split(&format!("restart count {n}\n")).nth(1).unwrap_or("").to_string()
    };
    // The node the batch script of run `n` ran on (rank 0's tree).
    let batch_node = |n: u32| run(n).lines().find_map(|l| l.strip_prefix("batch script on ").map(String::from)).unwrap_or_default();
    let mut holders = Vec::new();
    for round in 1..=rounds {
        if round > 1 {
            // The restarted ring goes on (its links and the step's are up again).
            job.wait_output(120, "10 laps of the restarted ring", |_| steps(&task_lines(&run(round - 1), None)) >= 10)?;
        }
        job.run("scancel", &["-s", "USR2"])?;
        let committed = format!("step checkpoint {round}: 3 tasks committed");
        job.wait_output(90, &format!("the joined step's checkpoint {round}"), |_| run(round - 1).contains(&committed))?;
        // Every process of the job: the batch script's tree and the daemons' with their ranks.
        let listening = if launch == Launch::PortsTaken { job.listening() } else { Vec::new() };
        let killed = job.kill_all();
        ensure!(killed >= 4, "round {round}: only {killed} processes of the job found to kill");
        ensure!(wait_until(Duration::from_secs(60), || !matches!(job.state().as_str(), "RUNNING" | "COMPLETING")), "job {} not ended: {}", job.id, job.state());
        let tail = if launch == Launch::Twice { job.output().split("first launch done\n").nth(1).unwrap_or("").to_string() } else { job.output() };
        ensure!(!tail.lines().any(|l| l.starts_with("result ")), "round {round}: the ring finished before the kill");
        // Other programs take the ports the job listened at (each family's own: Open MPI's
        // IPv6 listeners are IPv6-only): every listener of the requeued run moves.
        ensure!(launch != Launch::PortsTaken || listening.len() >= 4, "round {round}: the job's processes listened at {listening:?} only");
        // (A port some other program holds already is taken as well.)
        for a in &listening {
            match hold_port(a) {
                Ok(h) => holders.push(h),
                Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.raw_os_error() == Some(libc::EADDRINUSE)) => {}
                Err(e) => return Err(e.context(format!("round {round}: cannot take the job's old port {a}"))),
            }
        }
        if swap {
            // The requeued run's srun: its task 0 where task 1 was, and the other way round.
            std::fs::write(work.join("hosts"), format!("{}\n{}\n", placed[1].1, placed[0].1))?;
        }
        if moved {
            // Held while the excluded node changes, so that it does not start before.
            job.run("scontrol", &["requeuehold"])?;
            let o = slurm("scontrol").args(["update", &format!("JobId={}", job.id), "ExcNodeList=n1"]).output()?;
            ensure!(o.status.success(), "scontrol update of job {}: {}", job.id, String::from_utf8_lossy(&o.stderr));
            job.run("scontrol", &["release"])?;
        } else {
            job.run("scontrol", &["requeue"])?;
        }
        job.wait_output(120, "the requeued run", |o| o.contains(&format!("restart count {round}\n")))?;
        if moved {
            let now = job.joined_placement(2)?;
            let (was, is) = (batch_node(round - 1), batch_node(round));
            ensure!(was == "n1" && is == "n2", "round {round}: rank 0's tree (the batch script) ran on {was:?}, then on {is:?}, not n1 then n2");
            ensure!(placed == [(1, "n1".to_string()), (2, "n2".to_string())] && now == [(1, "n2".to_string()), (2, "n3".to_string())], "round {round}: the joined step's tasks were on {placed:?}, then on {now:?}");
            placed = now;
        }
        if swap {
            let now = job.joined_placement(2)?;
            ensure!(now.iter().zip(&placed).all(|(a, b)| a.0 == b.0 && a.1 != b.1), "round {round}: the joined step's tasks did not land on other nodes: {placed:?} then {now:?}");
            placed = now;
        }
    }
    if mpi.finalize_may_hang {
        // What is checked is the result and that the ring did not start over: once the result
        // is out, the job is cancelled (when this returns) if MPI_Finalize hangs.
        job.wait_output(240, "the ring's result", |_| result_of(&run(rounds)).is_some())?;
    } else {
        job.wait_completed(240)?;
    }
    let all = job.output();
    let after = run(rounds);
    ensure!(result_of(&after) == Some(expected.as_str()), "the last requeued run did not end with the uninterrupted result {expected}:\n{all}");
    let said_moved = all.lines().filter(|l| l.contains("its port is held by another program now")).count();
    ensure!(launch != Launch::PortsTaken || said_moved >= 4, "only {said_moved} listeners said they moved ({} ports taken):\n{all}", holders.len());
    let starts = all.lines().filter(|l| l.starts_with("start ")).count();
    let once = if launch == Launch::Twice { 2 } else { 1 };
    ensure!(starts == once, "the ring started {starts} times ({once} expected: once per launch):\n{all}");
    Ok(())
}

#[test]
fn slurm_openmpi_mpirun_joined_step_checkpoint_kill_requeue_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-joined", &OPEN_MPI, 1, Launch::Once)
}

/// The restarted joined step checkpoints again: checkpoint, kill, requeue, checkpoint, kill,
/// requeue, the uninterrupted result.
#[test]
fn slurm_openmpi_mpirun_joined_step_checkpointed_again_after_requeue_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-joined2", &OPEN_MPI, 2, Launch::Once)
}

/// MPICH: hydra_pmi_proxy's connection to mpiexec is inherited by the ranks it starts (not
/// close-on-exec): the proxy drains it once, its ranks share it (each image records it), and
/// the restarted tree makes it once for all of them.
#[test]
fn slurm_mpich_mpiexec_joined_step_checkpoint_kill_requeue_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-mpich-joined-rq", &MPICH, 1, Launch::Once)
}

/// MPICH's restarted joined step checkpoints again: checkpoint, kill, requeue, checkpoint, kill,
/// requeue, the uninterrupted result.
#[test]
fn slurm_mpich_mpiexec_joined_step_checkpointed_again_after_requeue_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-mpich-joined2", &MPICH, 2, Launch::Once)
}

/// Issue 14's "resumed onto a different node assignment" for the joined step: Open MPI's
/// `mpirun -np 4` across 2 nodes, checkpointed, every process killed, requeued with mpirun's
/// srun placing its tasks the other way round: each orted's tree (with its ranks) is restored
/// on the node the other one ran on, and the ring ends with the uninterrupted result, not
/// started over.
#[test]
fn slurm_openmpi_mpirun_joined_step_requeued_onto_swapped_nodes_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-swap", &OPEN_MPI, 1, Launch::Swapped)
}

/// The same with MPICH's `mpiexec -np 4` (each hydra_pmi_proxy's tree on the other node).
#[test]
fn slurm_mpich_mpiexec_joined_step_requeued_onto_swapped_nodes_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-mpich-swap", &MPICH, 1, Launch::Swapped)
}

/// Open MPI's joined step checkpointed again after it was restored on swapped nodes, and
/// requeued onto the first placement again: both restarts the uninterrupted result.
#[test]
fn slurm_openmpi_mpirun_joined_step_swapped_twice_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-swap2", &OPEN_MPI, 2, Launch::Swapped)
}

/// A second joined step of one tree: the job's tree runs `mpirun -np 4` twice, one after the
/// other (a short ring, then the test's). The first srun's tasks link up and end; rank 0 takes
/// the second srun's once they have all left. `scancel -s USR2` during the second makes one
/// checkpoint of the tree and the second srun's tasks, every process is killed, and the
/// requeued job runs the second srun again (not the first): the ring ends with the
/// uninterrupted result, and neither launch started again.
#[test]
fn slurm_openmpi_mpirun_run_twice_in_one_tree_second_joined_step_checkpoint_kill_requeue_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-twice", &OPEN_MPI, 1, Launch::Twice)
}

/// Every tree of the joined step on another node: Open MPI's `mpirun -np 4` first on n1 and n2
/// (the batch script, rank 0's tree, on n1), requeued with n1 excluded: the batch script runs
/// on n2 and mpirun's tree is restored there, orted's trees on n2 and n3 (each on a node it did
/// not run on): the uninterrupted result, started once.
#[test]
fn slurm_openmpi_mpirun_joined_step_requeued_onto_other_nodes_rank_0_too_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-moved", &OPEN_MPI, 1, Launch::Moved)
}

/// Two sruns of one tree side by side, the first ended while the second runs (issue 14: a gap
/// in the joined step's ranks). The batch script's `ckpt-run` runs a shell that starts `srun
/// -N2 -n2` of a short TCP ring (A: ranks 1 and 2 of the joined step) and, once A's tasks have
/// started, of a long one (B: ranks 3 and 4). A ends; `scancel -s USR2` then makes one
/// checkpoint of the tree and B's tasks, A's ranks recorded as ended (before: abandoned, `task(s)
/// [1, 2] are not linked`); every process of the job killed, requeued: B is run again (not A)
/// and both rings end with the uninterrupted result, each task started once. The moments are
/// files, not times: A's ring holds at round 10 until `goA` exists (created once B runs), B's
/// at round 30 until `goB` (created after the kill).
#[test]
fn slurm_first_of_two_sruns_ended_gap_in_joined_step_checkpoint_kill_requeue_same_result() -> Result<()> {
    sruns_checkpoint_kill_requeue("slurm-srun-gap", true)
}

/// `srun A; srun B` in the tree of one job (a job script's steps one after the other): A's
/// short ring ends, B's long one takes the joined step's ranks 1 and 2 again; `scancel -s
/// USR2` during B is one checkpoint of the tree and B's tasks, every process killed, requeued:
/// B run again (A not), both the uninterrupted result, each task started once.
#[test]
fn slurm_sequential_sruns_in_one_tree_checkpoint_during_second_kill_requeue_same_result() -> Result<()> {
    sruns_checkpoint_kill_requeue("slurm-srun-seq", false)
}

/// The two tests above: `side_by_side` A and B at once (A ends first), else one after the other.
fn sruns_checkpoint_kill_requeue(tag: &str, side_by_side: bool) -> Result<()> {
    need_slurm!();
    let (bins, work, exe) = sruns_setup(tag)?;
    let (short, long) = (20u32, 60u32);
    let expected_a = ckpt_tests::ring::reference(&work, &exe, 2, short)?;
    // (The reference run's port files are per run.)
    std::fs::remove_dir_all(work.join("ports-plain"))?;
    let expected_b = ckpt_tests::ring::reference(&work, &exe, 2, long)?;
    let hold = |who: &str| work.join(&format!("go{who}"));
    let srun = |who: &str, rounds: u32, at: u32| format!("STEP_RING_HOLD={}:{at} {}", hold(who).display(), srun_of_ring(who, rounds));
    let tree = if side_by_side {
        format!("{} & a=$!; while [ ! -e A.0 ] || [ ! -e A.1 ]; do sleep 0.1; done; {} & b=$!; wait $a; echo A ended $?; wait $b; echo B ended $?", srun("A", short, 10), srun("B", long, 30))
    } else {
        std::fs::write(hold("A"), "")?;
        format!("{}; echo A ended $?; {}; echo B ended $?", srun("A", short, 10), srun("B", long, 30))
    };
    let job = submit_sruns(&bins, &work, &exe, &tree)?;
    let rounds = |who: &str, r: u32| sruns_task(&work, who, r).lines().filter(|l| l.starts_with("step ")).count();
    if side_by_side {
        job.wait_output(90, "5 rounds of B's ring", |_| (0..2).all(|r| rounds("B", r) >= 5))?;
        std::fs::write(hold("A"), "")?;
    }
    job.wait_output(120, "the end of srun A", |o| o.contains("A ended 0"))?;
    job.wait_output(90, "5 rounds of B's ring", |_| (0..2).all(|r| rounds("B", r) >= 5))?;
    let out = sruns_checkpoint_kill_requeue_end(&job, &work, 3, 4, "B ended 0", |out| {
        if side_by_side {
            // (A's tasks ended normally: each told rank 0 its status.)
            ensure!(out.contains("task(s) [1 (exit status 0), 2 (exit status 0)] recorded as ended"), "A's ranks were not recorded as ended:\n{out}");
            let m = std::fs::read_to_string(work.join("ckpt/two.step"))?;
            ensure!(m.contains("tasks 5\n") && m.contains("rank 1 ended 0\nrank 2 ended 0\n"), "the step's manifest:\n{m}");
        }
        ensure!((0..2).all(|r| !sruns_task(&work, "B", r).contains("result ")), "B's ring finished before the kill:\n{}", sruns_tasks(&work));
        std::fs::write(hold("B"), "")?;
        Ok(())
    })?;
    ensure!(out.matches("A ended").count() == 1, "srun A ran again:\n{out}");
    sruns_ended_as_uninterrupted(&work, &out, [&expected_a, &expected_b])
}

/// For the tests of two sruns in one job's tree: the ring compiled, a folder of ports for each
/// srun (A and B).
fn sruns_setup(tag: &str) -> Result<(Bins, Workdir, PathBuf)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let exe = compile_c(&work, "step_ring.c", &[])?;
    for who in ["A", "B"] {
        std::fs::create_dir_all(work.join(&format!("ports{who}")))?;
    }
    Ok((bins, work, exe))
}

/// `srun -N2 -n2` of the TCP ring (`$0`) for `rounds` rounds, named `who`: its tasks write to
/// who.RANK (appended: srun run again by the restart goes on writing there), its ports in
/// ports`who`; `--overlap`: the job's steps share its CPUs.
fn srun_of_ring(who: &str, rounds: u32) -> String {
    format!("srun -N2 -n2 --overlap --open-mode=append --output={who}.%t \"$0\" ports{who} {rounds} 50 {} 0", ckpt_tests::ring::SIZE)
}

/// A job of 2 nodes and 4 tasks whose batch script's `ckpt-run` (joined step) runs the shell line
/// `tree`, `$0` the ring.
fn submit_sruns(bins: &Bins, work: &Workdir, exe: &Path, tree: &str) -> Result<Job> {
    let script = work.join("sruns.sbatch");
    let body = format!("#!/bin/bash\n#SBATCH --open-mode=append\necho \"restart count ${{SLURM_RESTART_COUNT:-0}}\"\nckpt-run --dir ckpt --name two --resume -- /bin/sh -c '{tree}' \"$@\"\necho \"ckpt-run exit code $?\"\n");
    std::fs::write(&script, body)?;
    Job::submit(bins, work, &["-N2", "--ntasks=4"], script.to_str().unwrap_or(""), exe, &[], &[("CKPT_JOIN_SRUN", "1")])
}

/// What task `r` of srun `who` wrote.
fn sruns_task(work: &Workdir, who: &str, r: u32) -> String {
    std::fs::read_to_string(work.join(&format!("{who}.{r}"))).unwrap_or_default()
}

fn sruns_tasks(work: &Workdir) -> String {
    ["A", "B"].iter().flat_map(|w| (0..2).map(move |r| format!("{w}.{r}:\n{}", sruns_task(work, w, r)))).collect::<Vec<_>>().join("\n")
}

/// `scancel -s USR2`: one checkpoint of the tree and `tasks` tasks of its step; every process of
/// the job killed (at least `killed`), `killed_then` checks and prepares, the job requeued and
/// run to its end, which says `ended` and that ckpt-run ended well. The job's output.
fn sruns_checkpoint_kill_requeue_end(job: &Job, work: &Workdir, tasks: usize, killed: usize, ended: &str, killed_then: impl FnOnce(&str) -> Result<()>) -> Result<String> {
    job.run("scancel", &["-s", "USR2"])?;
    job.wait_output(90, "the joined step's checkpoint", |o| o.contains(&format!("step checkpoint 1: {tasks} tasks committed")))?;
    let out = job.output();
    let n = job.kill_all();
    ensure!(n >= killed, "only {n} processes of the job found to kill");
    ensure!(wait_until(Duration::from_secs(60), || !matches!(job.state().as_str(), "RUNNING" | "COMPLETING")), "job {} not ended: {}", job.id, job.state());
    killed_then(&out)?;
    job.run("scontrol", &["requeue"])?;
    job.wait_output(120, "the requeued run", |o| o.contains("restart count 1\n"))?;
    job.wait_completed(240)?;
    let out = job.output();
    ensure!(out.contains(ended) && out.contains("ckpt-run exit code 0"), "the requeued tree did not end well:\n{out}\n{}", sruns_tasks(work));
    Ok(out)
}

/// Every task of both sruns ended with its uninterrupted result (`expected`: A's, B's, by
/// rank) and was started once.
fn sruns_ended_as_uninterrupted(work: &Workdir, out: &str, expected: [&[String]; 2]) -> Result<()> {
    for (who, expected) in ["A", "B"].into_iter().zip(expected) {
        for r in 0..2u32 {
            let t = sruns_task(work, who, r);
            let result: Vec<&str> = t.lines().filter(|l| l.starts_with("result ")).collect();
            ensure!(result == [expected[r as usize].as_str()], "srun {who}'s task {r}: {result:?}, uninterrupted {}:\n{t}\njob:\n{out}", expected[r as usize]);
            let starts = t.lines().filter(|l| l.starts_with("start step_ring")).count();
            ensure!(starts == 1, "srun {who}'s task {r} started {starts} times:\n{t}");
        }
    }
    Ok(())
}

/// Open MPI's joined step requeued while other programs hold every port its processes
/// listened at (as other jobs on the nodes may): every listener moves, mpirun's, the orteds'
/// and the ranks' (the TCP BTL's at 0.0.0.0 and at [::] IPv6-only, each family from port 1024
/// on, so that one rank's IPv4 port is often another's IPv6 port). The connections the ranks
/// first make after the restart (MPI_Reduce's) reach each listener at its new port, and the
/// ring ends with the uninterrupted result, started once. (Before, the IPv6 listener took the
/// connects to the IPv4 one's old port: refused, and the job hung in MPI_Reduce.)
#[test]
fn slurm_openmpi_mpirun_joined_step_requeued_with_its_ports_taken_same_result() -> Result<()> {
    mpi_joined_checkpoint_kill_requeue("slurm-ompi-taken", &OPEN_MPI, 1, Launch::PortsTaken)
}

/// A listening socket at `a` (an IPv6 one IPv6-only), held until it is dropped.
fn hold_port(a: &std::net::SocketAddr) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let family = if a.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: fd is a new socket of ours, owned from here on.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let opt = |level, name| {
        // SAFETY: an int option of our socket, `one` lives across the call.
        unsafe { libc::setsockopt(fd, level, name, &one as *const libc::c_int as *const libc::c_void, 4) };
    };
    opt(libc::SOL_SOCKET, libc::SO_REUSEADDR);
    let rc = match a {
        std::net::SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in { sin_family: libc::AF_INET as u16, sin_port: a.port().to_be(), sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() }, sin_zero: [0; 8] };
            // SAFETY: bind(2) of our socket to a sockaddr_in that lives across the call.
            unsafe { libc::bind(fd, &sin as *const libc::sockaddr_in as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as u32) }
        }
        std::net::SocketAddr::V6(a) => {
            opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY);
            let sin6 = libc::sockaddr_in6 { sin6_family: libc::AF_INET6 as u16, sin6_port: a.port().to_be(), sin6_flowinfo: 0, sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() }, sin6_scope_id: 0 };
            // SAFETY: bind(2) of our socket to a sockaddr_in6 that lives across the call.
            unsafe { libc::bind(fd, &sin6 as *const libc::sockaddr_in6 as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in6>() as u32) }
        }
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("bind");
    }
    // SAFETY: listen(2) on our bound socket.
    if unsafe { libc::listen(fd, 1) } != 0 {
        return Err(std::io::Error::last_os_error()).context("listen");
    }
    Ok(owned)
}

/// Two sruns of one tree at once, each its own part of the tree's joined step: the batch
/// script's `ckpt-run` runs a shell that starts `srun -N2 -n2` of the TCP ring twice side by
/// side (`srun A & srun B; wait`), each with its own ports and output files. The first srun's
/// tasks are ranks 1 and 2 of the joined step, the second's 3 and 4 (the step has 5 tasks).
/// `scancel -s USR2` makes one checkpoint of the tree and all four tasks, every process of the
/// job is killed, and the requeued job runs each srun again under its own ranks: every task of
/// both rings ends with the uninterrupted result, started once.
#[test]
fn slurm_two_sruns_at_once_in_one_tree_joined_step_checkpoint_kill_requeue_same_result() -> Result<()> {
    need_slurm!();
    let (bins, work, exe) = sruns_setup("slurm-two-sruns")?;
    let expected = ckpt_tests::ring::reference(&work, &exe, 2, 150)?;
    let tree = format!("{} & {}; wait; echo both sruns ended", srun_of_ring("A", 150), srun_of_ring("B", 150));
    let job = submit_sruns(&bins, &work, &exe, &tree)?;
    let rounds = |who: &str, r: u32| sruns_task(&work, who, r).lines().filter(|l| l.starts_with("step ")).count();
    job.wait_output(90, "10 rounds of both rings", |_| ["A", "B"].iter().all(|w| (0..2).all(|r| rounds(w, r) >= 10)))?;
    let out = sruns_checkpoint_kill_requeue_end(&job, &work, 5, 6, "both sruns ended", |_| {
        ensure!(!sruns_tasks(&work).contains("result "), "a ring finished before the kill:\n{}", sruns_tasks(&work));
        Ok(())
    })?;
    sruns_ended_as_uninterrupted(&work, &out, [&expected, &expected])
}
