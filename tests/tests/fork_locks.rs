//! The runtime's locks across a fork (runtime/src/forklock.rs): several threads of a program
//! fork all the time while the others are inside hooks that take the runtime's locks, and
//! every child takes them too before it exits (or execs itself to exit); checkpoints are taken
//! again and again meanwhile, then the program is killed and restarted, twice. A lock held by
//! another thread at the fork was copied held into the child, whose first hook then waited for
//! it forever: the parent waited for that child forever and no step came (the scenario's
//! bounded wait for the next step fails the test). With every child ending, the result is the
//! uninterrupted run's. Without a namespace (children not in the image), checkpoints only.

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{run_and_verify, Bins, Options, Proc, Program, Workdir};
use std::ffi::OsString;
use std::time::{Duration, Instant};

/// The bound on every wait: a child that hangs stops the program's steps for good.
const T: Duration = Duration::from_secs(60);

const ARGS: [&str; 3] = ["40", "8", "4"];

fn storm(name: &str, as_nobody: bool, also_at: &[u64], kills: &[u64]) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "thread_fork_storm.c", &["-pthread"], &ARGS)?;
    let mut opts = Options::new(&work, kills);
    opts.also_at = also_at.to_vec();
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    run_and_verify(&bins, &program, &opts).map(drop)
}

/// Children of a process of the tree are members (each has a runtime of its own).
#[test]
fn threads_that_fork_all_the_time_in_a_tree_are_checkpointed_many_times() -> Result<()> {
    storm("forklocks-tree", false, &[2, 4, 6, 8, 10, 12, 14, 16], &[20, 30])
}

#[test]
fn threads_that_fork_all_the_time_in_a_tree_are_checkpointed_many_times_as_nobody() -> Result<()> {
    storm("forklocks-tree-nobody", true, &[2, 4, 6, 8], &[12, 24])
}

/// Without a namespace, children are not managed (their runtime goes inert at the fork) but
/// their hooks still take its locks. Their parent is not restarted with them (they are not in
/// its image: documented), so this one is checkpointed many times without a kill, and must end
/// with the uninterrupted run's result.
#[test]
fn threads_that_fork_all_the_time_without_a_namespace_are_checkpointed_many_times() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("forklocks-plain")?;
    let exe = compile_c(&work, "thread_fork_storm.c", &["-pthread"])?;
    let native = std::process::Command::new(&exe).args(ARGS).current_dir(work.path()).output().context("native run")?;
    let result = |out: &str| out.lines().find(|l| l.starts_with("result ")).map(str::to_string);
    let want = result(&String::from_utf8_lossy(&native.stdout)).context("the native run printed no result")?;
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), exe.into()];
    argv.extend(ARGS.iter().map(OsString::from));
    let mut cmd = user_command(&argv, false, work.path());
    cmd.env("CKPT_NAMESPACE", "0");
    let mut p = Proc::spawn("ckpt-run thread_fork_storm", cmd)?;
    let written = |err: &str| err.lines().filter(|l| l.strip_prefix("ckpt: checkpoint ").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))).count();
    for (n, step) in (2..=30).step_by(2).enumerate() {
        let t0 = Instant::now();
        while !p.stdout().lines().any(|l| l == format!("step {step}")) {
            ensure!(p.running(), "ckpt-run exited before step {step}: {}{}", p.stdout(), p.stderr());
            ensure!(t0.elapsed() < T, "no step {step} (a child hangs?): {}{}", p.stdout(), p.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: signalling the process this test started.
        unsafe { libc::kill(p.pid(), libc::SIGUSR2) };
        let t1 = Instant::now();
        while written(&p.stderr()) <= n {
            ensure!(p.running(), "ckpt-run exited during checkpoint {}: {}", n + 1, p.stderr());
            ensure!(t1.elapsed() < T, "checkpoint {} was not written: {}", n + 1, p.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let st = p.wait(T)?;
    ensure!(st.success(), "ckpt-run: {st}: {}", p.stderr());
    ensure!(result(&p.stdout()).as_deref() == Some(want.as_str()), "result {:?}, the uninterrupted run's {want:?}: {}", result(&p.stdout()), p.stderr());
    Ok(())
}
