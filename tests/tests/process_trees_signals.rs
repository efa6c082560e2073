//! A signal sent to ckpt-restart while it restores a process tree (CRIU's zdtm harness sends
//! its SIGTERM ~1.5 s after starting the restore) reaches the program once, after the whole
//! tree runs again: ckpt-restart holds the signals it forwards until then. tree_term: a root
//! and two descendants waiting for SIGTERM, checkpointed while they wait, SIGKILLed, restarted,
//! and signalled as soon as the ckpt-restart process exists, or while it is restoring a large
//! image; the program's handler must see the signal exactly once and the result must be an
//! uninterrupted run's (every process's memory and the reports between them).

use anyhow::{ensure, Result};
use ckpt_tests::process::program_pid;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Program, Workdir};
use std::ffi::OsString;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// The result line of a finished run.
fn result_of(p: &Proc) -> Option<String> {
    p.stdout().lines().find(|l| l.starts_with("result ")).map(str::to_owned)
}

fn spawn(label: &str, argv: Vec<OsString>, program: &Program, as_nobody: bool) -> Result<Proc> {
    let mut cmd = user_command(&argv, as_nobody, &program.cwd);
    cmd.env("CKPT_NAMESPACE", "1");
    Proc::spawn(label, cmd)
}

fn wait_line(p: &mut Proc, what: &str) -> Result<()> {
    let ok = ckpt_tests::process::wait_until(T, || p.stdout().lines().any(|l| l == what) || !p.running());
    ensure!(ok && p.stdout().lines().any(|l| l == what), "{} did not print {what:?}:\n{}\n{}", p.label(), p.stdout(), p.stderr());
    Ok(())
}

/// Whether process `pid` blocks SIGTERM (/proc/PID/status SigBlk).
fn blocks_term(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("SigBlk:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
}

/// When to send SIGTERM to ckpt-restart.
#[derive(Clone, Copy, PartialEq)]
enum When {
    /// As soon as the ckpt-restart process can take a signal: the loader has started it (its
    /// constructor blocked every signal; before, any program dies of a SIGTERM).
    AtOnce,
    /// Once the restarting root exists in the namespace (its tree being restored).
    WhileRestoring,
}

fn term_once_after_the_restart(name: &str, mib: &str, when: When, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_term.c", &[], &[mib])?;
    // Uninterrupted.
    let mut plain = spawn("tree_term", program.argv.clone(), &program, as_nobody)?;
    wait_line(&mut plain, "waiting")?;
    plain.signal(libc::SIGTERM)?;
    let st = plain.wait(T)?;
    let want = result_of(&plain);
    ensure!(st.success() && want.as_deref().is_some_and(|r| r.ends_with(" term=1")), "the uninterrupted run: {st}\n{}\n{}", plain.stdout(), plain.stderr());
    // Checkpointed while it waits, killed, restarted.
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into()];
    argv.extend(program.argv.iter().cloned());
    let mut run = spawn("ckpt-run tree_term", argv, &program, as_nobody)?;
    wait_line(&mut run, "waiting")?;
    run.signal(libc::SIGUSR2)?;
    run.wait_for_stderr("ckpt: checkpoint 1:", T)?;
    run.kill()?;
    let set = work.images().join(program.image_name());
    ensure!(set.join("tree").is_file(), "no image set {}: {}", set.display(), run.stderr());
    let mut r = spawn("ckpt-restart", vec![bins.restart.clone().into(), set.into()], &program, as_nobody)?;
    let outer = r.pid();
    let ready = match when {
        When::AtOnce => ckpt_tests::process::wait_until(T, || blocks_term(outer) || !r.running()),
        When::WhileRestoring => ckpt_tests::process::wait_until(T, || program_pid(outer) != outer || !r.running()),
    };
    ensure!(ready && r.running(), "ckpt-restart did not get so far: {}", r.stderr());
    r.signal(libc::SIGTERM)?;
    let st = r.wait(T)?;
    let got = result_of(&r);
    ensure!(
        st.success() && got.is_some() && got == want && !r.stdout().contains("started"),
        "after the restart (SIGTERM sent {}): {st}, {got:?}, the uninterrupted run's {want:?}\n{}\n{}",
        if when == When::AtOnce { "at once" } else { "while restoring" },
        r.stdout(),
        r.stderr()
    );
    Ok(())
}

#[test]
fn a_sigterm_sent_as_soon_as_ckpt_restart_exists_reaches_the_restarted_tree_once() -> Result<()> {
    term_once_after_the_restart("sig-hold-at-once", "1", When::AtOnce, false)
}

#[test]
fn a_sigterm_sent_while_a_large_tree_is_restored_reaches_it_once() -> Result<()> {
    term_once_after_the_restart("sig-hold-restoring", "96", When::WhileRestoring, false)
}

#[test]
fn a_sigterm_sent_while_a_large_tree_is_restored_reaches_it_once_as_nobody() -> Result<()> {
    term_once_after_the_restart("sig-hold-restoring-nobody", "96", When::WhileRestoring, true)
}
