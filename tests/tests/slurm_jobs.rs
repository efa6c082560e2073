//! Issue 4 against a real Slurm (a one-machine cluster started by scripts/slurm-cluster): the
//! batch scripts in scripts/slurm run slurm_count under `srun ckpt-run`, and each test checks the
//! job ends with the uninterrupted result without starting over. Skips, saying why, where Slurm
//! cannot be installed or started (not root, no apt).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Start the cluster once per test binary; Err(reason) means skip.
fn cluster() -> Result<(), String> {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    UP.get_or_init(|| {
        let out = Command::new(repo().join("scripts/slurm-cluster")).arg("start").output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("scripts/slurm-cluster start: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    })
    .clone()
}

macro_rules! need_slurm {
    () => {
        if let Err(why) = cluster() {
            eprintln!("SKIPPED: Slurm is not available here ({why})");
            return;
        }
    };
}

fn path_env() -> String {
    format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default())
}

/// sbatch SCRIPT PROG ARGS in `work`, output appended to work/job.out; returns the job id.
fn sbatch(work: &Path, opts: &[&str], script: &str, prog: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new("sbatch");
    c.arg("--parsable").arg(format!("--chdir={}", work.display())).arg(format!("--output={}", work.join("job.out").display()));
    c.args(opts).arg(repo().join("scripts/slurm").join(script)).arg(prog).args(args);
    c.env("PATH", path_env());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("sbatch");
    assert!(out.status.success(), "sbatch: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap().to_string()
}

fn job_state(job: &str) -> String {
    let out = Command::new("scontrol").args(["show", "job", "-o", job]).output().expect("scontrol");
    let s = String::from_utf8_lossy(&out.stdout);
    s.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).unwrap_or("GONE").to_string()
}

fn scancel(args: &[&str]) {
    let st = Command::new("scancel").args(args).status().expect("scancel");
    assert!(st.success(), "scancel {args:?}");
}

/// Wait until the job is COMPLETED (fail on any other final state or the deadline).
fn wait_completed(job: &str, work: &Path, secs: u64) {
    let mut last = String::new();
    let ok = wait_until(secs, || {
        last = job_state(job);
        matches!(last.as_str(), "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT" | "NODE_FAIL" | "OUT_OF_MEMORY" | "GONE")
    });
    if !ok || last != "COMPLETED" {
        let _ = Command::new("scancel").arg(job).status();
        panic!("job {job} ended as {last} (or not in {secs} s); output:\n{}", read(&work.join("job.out")));
    }
}

/// Lines of one task's output ("R: text" with srun --label, or all lines for R = None).
fn task_lines(out: &str, rank: Option<u32>) -> Vec<String> {
    out.lines()
        .filter_map(|l| match rank {
            None => Some(l.to_string()),
            Some(r) => l.strip_prefix(&format!("{r}: ")).map(|s| s.to_string()),
        })
        .collect()
}

/// The task finished with the uninterrupted result and counted from 1 only once.
fn assert_resumed(lines: &[String], expected: &str, what: &str, all: &str) {
    let done: Vec<&String> = lines.iter().filter(|l| l.starts_with("done ")).collect();
    assert_eq!(done.last().map(|s| s.as_str()), Some(expected), "{what}: wrong or no result; output:\n{all}");
    assert_eq!(lines.iter().filter(|l| *l == "1 1").count(), 1, "{what}: started over; output:\n{all}");
}

#[test]
fn slurm_scancel_signal_checkpoint_then_requeue_resumes() {
    need_slurm!();
    let w = scratch("slurm-signal");
    let prog = compile("slurm_count", &w);
    let expected = expected_done(&prog, 200);
    let job = sbatch(&w, &[], "signal.sbatch", &prog, &["200", "50"], &[]);
    let out = w.join("job.out");
    assert!(wait_until(60, || count_lines(&read(&out)) >= 20), "job {job} shows no progress:\n{}", read(&out));
    scancel(&["-s", "USR2", &job]);
    assert!(wait_until(30, || read(&out).contains("ckpt: checkpoint 1: ")), "no checkpoint:\n{}", read(&out));
    let at_ckpt = count_lines(&read(&out));
    assert!(wait_until(30, || count_lines(&read(&out)) > at_ckpt + 5));
    // Kill and requeue: the job runs the same script again, which resumes from the image.
    let st = Command::new("scontrol").args(["requeue", &job]).status().unwrap();
    assert!(st.success(), "scontrol requeue");
    wait_completed(&job, &w, 150);
    let all = read(&out);
    assert!(all.contains("restart count 1") && all.contains("resuming from"), "not requeued/resumed:\n{all}");
    assert_resumed(&task_lines(&all, None), &expected, "task", &all);
}

#[test]
fn slurm_walltime_signal_checkpoint_exit_requeue_resumes() {
    need_slurm!();
    let w = scratch("slurm-walltime");
    let prog = compile("slurm_count", &w);
    let expected = expected_done(&prog, 450);
    // Time limit 1 min, USR1 45 s before it: Slurm sends it 15 to 45 s after the start, so the
    // 45 s count needs at least one requeue.
    let job = sbatch(&w, &["--time=1", "--signal=USR1@45"], "walltime-requeue.sbatch", &prog, &["450", "100"], &[]);
    wait_completed(&job, &w, 300);
    let all = read(&w.join("job.out"));
    assert!(all.contains("restart count 1"), "never requeued (SLURM_RESTART_COUNT >= 1 missing):\n{all}");
    assert!(all.contains("exit code 75"), "no checkpoint-and-exit:\n{all}");
    assert_resumed(&task_lines(&all, None), &expected, "task", &all);
}

#[test]
fn slurm_two_task_step_each_task_checkpointed_and_resumed() {
    need_slurm!();
    let w = scratch("slurm-2tasks");
    let prog = compile("slurm_count", &w);
    let expected = expected_done(&prog, 200);
    let job = sbatch(&w, &["--ntasks=2"], "signal.sbatch", &prog, &["200", "50"], &[("SLURM_LABELIO", "1")]);
    let out = w.join("job.out");
    let progress = |r| count_lines(&task_lines(&read(&out), Some(r)).join("\n"));
    assert!(wait_until(60, || progress(0) >= 20 && progress(1) >= 20), "no progress:\n{}", read(&out));
    scancel(&["-s", "USR2", &job]);
    let ck = w.join("ckpt");
    assert!(
        wait_until(30, || ck.join("slurm_count.0.ckpt").is_file() && ck.join("slurm_count.1.ckpt").is_file()),
        "each task writes its own image:\n{}",
        read(&out)
    );
    assert!(wait_until(30, || read(&out).matches("ckpt: checkpoint 1: ").count() >= 2));
    let st = Command::new("scontrol").args(["requeue", &job]).status().unwrap();
    assert!(st.success(), "scontrol requeue");
    wait_completed(&job, &w, 150);
    let all = read(&out);
    assert!(all.contains("restart count 1"), "not requeued:\n{all}");
    for r in 0..2 {
        assert_resumed(&task_lines(&all, Some(r)), &expected, &format!("task {r}"), &all);
    }
}
