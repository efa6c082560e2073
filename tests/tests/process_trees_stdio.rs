//! A process of the tree whose fd 0, 1 or 2 is its own, not the stdio ckpt-run was given: a
//! shell's background job reads /dev/null (read-only), whatever terminal the shell runs on
//! (bg_stdin.c under `sh -c 'bg_stdin 80 & wait'`, ckpt-run on a terminal of its own). After the
//! whole tree is checkpointed, SIGKILLed and restarted on another terminal, the job's fd 0 must
//! be /dev/null, read-only, as in an uninterrupted run, not ckpt-restart's terminal (the
//! coordinator's `ownstdio` lines in the set's manifest); its stdout stays the terminal,
//! ckpt-restart's. Also as nobody.
//!
//! The same job with its stderr on /dev/null (`2>/dev/null`), restarted with CKPT_LOG=info:
//! ckpt-restart's own lines for each process (`switching to the program`, printed after that
//! process's fds are back) still reach ckpt-restart's stderr, one per live process of the set,
//! none lost in the job's /dev/null (`ckpt_kinds::say`).

use anyhow::{ensure, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Workdir};
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);
/// 100 ms each: room for a checkpoint taken at step 3 on a loaded machine before the job ends.
const STEPS: u32 = 80;

/// Shell command `cmdline` on a terminal of its own (util-linux `script`), as nobody if asked.
fn in_script(cmdline: &str, work: &Workdir, as_nobody: bool) -> Result<Proc> {
    let argv: Vec<OsString> = ["script", "-q", "-e", "-f", "-c", cmdline, "/dev/null"].iter().map(OsString::from).collect();
    let mut cmd = user_command(&argv, as_nobody, work.path());
    cmd.env("CKPT_NAMESPACE", "1");
    Proc::spawn("script", cmd)
}

fn wait_output(p: &mut Proc, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while !p.stdout().contains(what) {
        if !p.running() {
            // It exited: its last output may still be in the terminal (`wait` drains it).
            let _ = p.wait(T);
            ensure!(p.stdout().contains(what), "{} exited before printing {what:?}: {}", p.label(), p.stdout());
            break;
        }
        ensure!(t0.elapsed() < T, "{} did not print {what:?}: {}", p.label(), p.stdout());
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The processes running `exe` (not zombies).
fn running(exe: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')));
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// The parent of process `pid`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(pid, sig) };
}

/// End what a test left running: the program's processes, then `script`.
fn end(prog: &Path, term: &mut Proc) {
    for pid in running(prog) {
        kill(pid, libc::SIGKILL);
    }
    let _ = term.kill();
}

/// The "step N ..." lines of `text` (terminal output: CR LF), as (N, the rest).
fn steps(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter_map(|l| {
            let (n, rest) = l.strip_prefix("step ")?.split_once(' ')?;
            Some((n.parse().ok()?, rest.to_string()))
        })
        .collect()
}

/// The command that runs bg_stdin as a background job of a shell (its stderr on /dev/null if
/// asked).
fn job(prog: &Path, quiet: bool) -> String {
    format!("/bin/sh -c \"'{}' {STEPS} {}& wait\"", prog.display(), if quiet { "2>/dev/null " } else { "" })
}

/// The live processes of the set in `images` (`proc ... live ...` lines of its manifest).
fn live_in_set(images: &Path) -> Result<usize> {
    for e in std::fs::read_dir(images)?.flatten() {
        if let Ok(tree) = std::fs::read_to_string(e.path().join("tree")) {
            return Ok(tree.lines().filter(|l| l.starts_with("proc ") && l.split_whitespace().nth(5) == Some("live")).count());
        }
    }
    let names: Vec<_> = std::fs::read_dir(images)?.flatten().map(|e| e.file_name()).collect();
    anyhow::bail!("no set with a manifest in {}: {names:?}", images.display())
}

fn verify(name: &str, as_nobody: bool, quiet: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let prog = compile_c(&work, "bg_stdin.c", &[])?;
    // Uninterrupted, without ckpt: what the job's fd 0 is.
    let mut native = in_script(&format!("exec {}", job(&prog, quiet)), &work, as_nobody)?;
    wait_output(&mut native, "done")?;
    let want = steps(&native.stdout());
    ensure!(want.len() == STEPS as usize, "the uninterrupted run printed {} steps: {}", want.len(), native.stdout());
    let fd0 = want[0].1.clone();
    ensure!(fd0 == "fd0=/dev/null flags=0", "the background job's stdin is not /dev/null read-only natively: {fd0}");
    // Under ckpt-run on a terminal: checkpoint after step 3, SIGKILL the whole tree.
    let cmdline = format!("exec '{}' --dir '{}' -- {}", bins.run.display(), work.images().display(), job(&prog, quiet));
    let mut term = in_script(&cmdline, &work, as_nobody)?;
    let first = (|| -> Result<()> {
        wait_output(&mut term, "step 3 ")?;
        let outer: Vec<i32> = running(&bins.run).into_iter().filter(|&p| parent_of(p) == Some(term.pid())).collect();
        ensure!(outer.len() == 1, "expected one ckpt-run started by script, found {outer:?}");
        kill(outer[0], libc::SIGUSR2);
        wait_output(&mut term, "ckpt: checkpoint")?;
        ensure!(term.stdout().contains("ckpt: checkpoint 1: "), "the checkpoint failed: {}", term.stdout());
        kill(outer[0], libc::SIGKILL);
        let t0 = Instant::now();
        while !running(&prog).is_empty() {
            ensure!(t0.elapsed() < Duration::from_secs(10), "the program runs on after SIGKILL of ckpt-run");
            std::thread::sleep(Duration::from_millis(20));
        }
        ensure!(!term.stdout().contains("done"), "the program ended before the checkpoint was killed: {}", term.stdout());
        Ok(())
    })();
    end(&prog, &mut term);
    first?;
    // Restarted on a terminal of its own.
    let live = if quiet { live_in_set(&work.images())? } else { 0 };
    let log = if quiet { "env CKPT_LOG=info " } else { "" };
    let mut term = in_script(&format!("exec {log}'{}' '{}'", bins.restart.display(), work.images().display()), &work, as_nobody)?;
    let r = (|| -> Result<()> {
        wait_output(&mut term, "ckpt: restarted")?;
        wait_output(&mut term, "done")?;
        let out = term.stdout();
        let after = steps(out.split_once("ckpt: restarted").map(|(_, a)| a).unwrap_or_default());
        ensure!(!after.is_empty(), "no step after the restart: {out}");
        ensure!(after[0].0 > 1, "the program started over: {out}");
        ensure!(after.last().map(|s| s.0) == Some(STEPS), "the restarted program did not reach step {STEPS}: {out}");
        for (n, what) in &after {
            ensure!(*what == fd0, "after the restart, step {n}: {what}, uninterrupted: {fd0}");
        }
        let said = out.lines().filter(|l| l.contains("ckpt-restart: switching to the program")).count();
        ensure!(!quiet || said == live, "ckpt-restart said it switched to the program {said} times, for {live} live processes: {out}");
        Ok(())
    })();
    end(&prog, &mut term);
    r
}

#[test]
fn a_background_jobs_dev_null_stdin_stays_dev_null_after_a_restart() -> Result<()> {
    verify("tree-stdio-bg", false, false)
}

#[test]
fn a_background_jobs_dev_null_stdin_stays_dev_null_after_a_restart_as_nobody() -> Result<()> {
    verify("tree-stdio-bg-nobody", true, false)
}

#[test]
fn ckpt_restarts_messages_are_not_lost_in_a_jobs_own_dev_null_stderr() -> Result<()> {
    verify("tree-stdio-bg-quiet", false, true)
}

#[test]
fn ckpt_restarts_messages_are_not_lost_in_a_jobs_own_dev_null_stderr_as_nobody() -> Result<()> {
    verify("tree-stdio-bg-quiet-nobody", true, true)
}
