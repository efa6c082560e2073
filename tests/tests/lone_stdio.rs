//! A program alone (no children: its image is one file, no set, no manifest) whose fds 0 and 1
//! are its own, not the stdio ckpt-run gave it: lone_stdio.c reopens stdin on /dev/null
//! (read-only) and stdout on a file of its own (truncated, not O_APPEND), then counts, writing
//! each line to that file and its progress to stderr (ckpt-run's). ckpt-run's stdin is a
//! regular file of the test's, so that the program's /dev/null is not the outside's.
//!
//! Checkpointed, SIGKILLed and restarted (stdin again that file, stdout and stderr pipes of
//! the test's), twice (the second time the restarted program), it must continue: its fd 1 is its file again at the checkpoint's offset (the
//! file has every line once, in order, and the uninterrupted run's result), its fd 0 is
//! /dev/null read-only again (not ckpt-restart's stdin), and its fd 2 stays ckpt-restart's
//! stderr (its steps after the restart reach the test). In ckpt's namespace (the runtime
//! compares its fds 0 to 2 with init's, kcmp) and without one (`--no-namespace`: by what the
//! stdio it was given was), also as nobody.

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Workdir};
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);
/// 100 ms each: room for a checkpoint after step 10 on a loaded machine.
const STEPS: u64 = 60;

/// `argv` with its stdin from `input` (`sh -c 'exec "$@" <INPUT'`), as nobody if asked, with
/// CKPT_NAMESPACE for the namespace or not.
fn command(argv: &[OsString], input: &Path, namespace: bool, as_nobody: bool, cwd: &Path) -> std::process::Command {
    let mut full: Vec<OsString> = ["/bin/sh", "-c", "exec \"$@\" <\"$0\""].iter().map(OsString::from).collect();
    full.push(input.into());
    full.extend(argv.iter().cloned());
    let mut cmd = user_command(&full, as_nobody, cwd);
    cmd.env("CKPT_NAMESPACE", if namespace { "1" } else { "0" });
    cmd.env_remove("CKPT_LOG");
    cmd
}

/// The "step N" lines of `text`.
fn steps(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.strip_prefix("step ")?.trim().parse().ok()).collect()
}

/// What the log file must hold once the program ended, and the result line's sum.
fn expected_log() -> String {
    let mut sum: u64 = 0;
    let mut s = String::new();
    for i in 1..=STEPS {
        sum = sum.wrapping_mul(31).wrapping_add(i);
        s.push_str(&format!("line {i} {sum}\n"));
    }
    s.push_str(&format!("result {sum} stdin=devnull\n"));
    s
}

fn verify(name: &str, namespace: bool, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let prog = compile_c(&work, "lone_stdio.c", &[])?;
    let input = work.join("input");
    std::fs::write(&input, "the test's stdin, not the program's\n")?;
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644))?;
    let want = expected_log();

    // Uninterrupted, without ckpt.
    let native_log = work.join("native.log");
    let argv = |log: &Path| -> Vec<OsString> { vec![prog.clone().into(), STEPS.to_string().into(), log.into()] };
    let mut native = Proc::spawn("lone_stdio (uninterrupted)", command(&argv(&native_log), &input, namespace, as_nobody, work.path()))?;
    let st = native.wait(T)?;
    ensure!(st.success() && native.stderr().contains("done"), "the uninterrupted run failed ({st}): {}", native.stderr());
    let got = std::fs::read_to_string(&native_log)?;
    ensure!(got == want, "the uninterrupted run's log differs from what is expected:\n{got}");

    // Under ckpt-run: checkpoint after step 10, SIGKILL, restart (stdin the same file of the
    // test's, stdout and stderr the test's pipes); again after step 25 of the restarted one.
    let log = work.join("ckpt.log");
    let mut run_argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into()];
    if !namespace {
        run_argv.push("--no-namespace".into());
    }
    run_argv.push("--".into());
    run_argv.extend(argv(&log));
    let image = work.images().join("lone_stdio.ckpt");
    let restart_argv: Vec<OsString> = vec![bins.restart.clone().into(), image.clone().into()];
    let mut p = Proc::spawn("ckpt-run lone_stdio", command(&run_argv, &input, namespace, as_nobody, work.path()))?;
    for (k, at) in [10, 25].into_iter().enumerate() {
        let before = std::fs::metadata(&image).ok().map(|m| m.ino());
        let cycle = (|| -> Result<u64> {
            let t0 = Instant::now();
            while steps(&p.stderr()).last().is_none_or(|&n| n < at) {
                ensure!(p.running(), "{} exited before step {at}", p.label());
                ensure!(t0.elapsed() < T, "no step {at} within {T:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            let signalled = steps(&p.stderr()).last().copied().unwrap_or(0);
            p.signal(libc::SIGUSR2)?;
            let t0 = Instant::now();
            while std::fs::metadata(&image).ok().map(|m| m.ino()) == before {
                ensure!(p.running(), "{} exited before the image appeared", p.label());
                ensure!(t0.elapsed() < T, "no new image {} after the checkpoint signal", image.display());
                std::thread::sleep(Duration::from_millis(20));
            }
            ensure!(image.is_file(), "{} is not one file (a program alone): a set?", image.display());
            p.kill()?;
            ensure!(!p.stderr().contains("done"), "the program ended before it was killed");
            Ok(signalled)
        })();
        let _ = p.kill();
        let signalled = cycle.with_context(|| format!("{}: stdout:\n{}\nstderr:\n{}", p.label(), p.stdout(), p.stderr()))?;
        let previous = p.stderr();
        p = Proc::spawn(&format!("ckpt-restart #{}", k + 1), command(&restart_argv, &input, namespace, as_nobody, work.path()))?;
        let t0 = Instant::now();
        while steps(&p.stderr()).is_empty() && p.running() && t0.elapsed() < T {
            std::thread::sleep(Duration::from_millis(20));
        }
        let after = steps(&p.stderr());
        ensure!(!after.is_empty(), "no step on {}'s stderr (the program's fd 2 is not ckpt-restart's stderr?): {}", p.label(), p.stderr());
        ensure!(after[0] > signalled, "the program started over (first step after the restart {}, checkpoint after {signalled}): {}\nbefore: {previous}", after[0], p.stderr());
    }
    let st = p.wait(T);
    let (out, err) = (p.stdout(), p.stderr());
    let st = st.with_context(|| format!("ckpt-restart: stdout:\n{out}\nstderr:\n{err}"))?;
    ensure!(steps(&err).last() == Some(&STEPS) && err.contains("done"), "the restarted program did not finish: {err}");
    ensure!(st.success(), "ckpt-restart exited {st}: {err}");
    ensure!(!out.contains("line "), "the program's lines reached ckpt-restart's stdout, not its own file: {out}");
    let got = std::fs::read_to_string(&log)?;
    ensure!(got == want, "after the restart the program's own stdout file differs from the uninterrupted run's:\n{got}\n(ckpt-restart's stdout: {out})");
    Ok(())
}

#[test]
fn a_lone_programs_own_stdin_and_stdout_come_back_after_a_restart() -> Result<()> {
    verify("lone-stdio", true, false)
}

#[test]
fn a_lone_programs_own_stdin_and_stdout_come_back_after_a_restart_as_nobody() -> Result<()> {
    verify("lone-stdio-nobody", true, true)
}

#[test]
fn a_lone_programs_own_stdin_and_stdout_come_back_after_a_restart_without_a_namespace() -> Result<()> {
    verify("lone-stdio-nons", false, false)
}

#[test]
fn a_lone_programs_own_stdin_and_stdout_come_back_after_a_restart_without_a_namespace_as_nobody() -> Result<()> {
    verify("lone-stdio-nons-nobody", false, true)
}

/// A program alone whose thread-group leader exited (zdtm pthread02's shape): its fd table is
/// its live thread's. Its fd 1 is the test's pipe (the outside's stdio), so after a restart its
/// lines reach ckpt-restart's stdout. Before, the leader's pid was compared with init's fds
/// (kcmp said EBADF: the exited leader has no fd table), every fd 0-2 was taken for the
/// program's own, and the restarted program wrote into a pipe of its own that nobody read.
fn verify_dead_leader(name: &str, as_nobody: bool) -> Result<()> {
    const N: u64 = 40;
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let prog = compile_c(&work, "lone_dead_leader.c", &["-pthread"])?;
    let input = work.join("input");
    std::fs::write(&input, "")?;
    std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o644))?;
    let mut sum: u64 = 0;
    for i in 1..=N {
        sum = sum.wrapping_mul(31).wrapping_add(i);
    }
    let steps_of = |text: &str| -> Vec<u64> { text.lines().filter_map(|l| l.strip_prefix("step ")?.trim().parse().ok()).collect() };
    let argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), prog.clone().into(), N.to_string().into()];
    let image = work.images().join("lone_dead_leader.ckpt");
    let mut p = Proc::spawn("ckpt-run lone_dead_leader", command(&argv, &input, true, as_nobody, work.path()))?;
    let cycle = (|| -> Result<u64> {
        let t0 = Instant::now();
        while steps_of(&p.stdout()).last().is_none_or(|&n| n < 10) {
            ensure!(p.running(), "{} exited before step 10", p.label());
            ensure!(t0.elapsed() < T, "no step 10 within {T:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let signalled = steps_of(&p.stdout()).last().copied().unwrap_or(0);
        p.signal(libc::SIGUSR2)?;
        let t0 = Instant::now();
        while !image.is_file() {
            ensure!(p.running(), "{} exited before the image appeared", p.label());
            ensure!(t0.elapsed() < T, "no image {} after the checkpoint signal", image.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        p.kill()?;
        ensure!(!p.stdout().contains("result"), "the program ended before it was killed");
        Ok(signalled)
    })();
    let _ = p.kill();
    let signalled = cycle.with_context(|| format!("{}: stdout:\n{}\nstderr:\n{}", p.label(), p.stdout(), p.stderr()))?;
    let restart: Vec<OsString> = vec![bins.restart.clone().into(), image.into()];
    let mut r = Proc::spawn("ckpt-restart lone_dead_leader", command(&restart, &input, true, as_nobody, work.path()))?;
    let st = r.wait(T);
    let (out, err) = (r.stdout(), r.stderr());
    let st = st.with_context(|| format!("ckpt-restart: stdout:\n{out}\nstderr:\n{err}"))?;
    ensure!(st.success(), "ckpt-restart exited {st}: {err}");
    let after = steps_of(&out);
    ensure!(!after.is_empty() && out.contains(&format!("result {sum}\n")), "the restarted program's lines did not reach ckpt-restart's stdout (its fd 1 restored as its own?): stdout:\n{out}\nstderr:\n{err}");
    ensure!(after[0] > signalled && after.last() == Some(&N), "the program started over or lost steps (first after the restart {}, checkpoint after {signalled}): {out}", after[0]);
    Ok(())
}

#[test]
fn a_lone_program_whose_leader_exited_keeps_writing_to_ckpt_restarts_stdout() -> Result<()> {
    verify_dead_leader("lone-dead-leader", false)
}

#[test]
fn a_lone_program_whose_leader_exited_keeps_writing_to_ckpt_restarts_stdout_as_nobody() -> Result<()> {
    verify_dead_leader("lone-dead-leader-nobody", true)
}
