//! Calls the kernel allows only in a single-threaded process (setns to a time or a user
//! namespace, unshare(CLONE_NEWUSER)) work under ckpt-run as natively: the runtime's checkpoint
//! thread leaves for each and comes back, in the program ckpt-run started and in a restarted one
//! (tests/programs/single_thread_calls.c makes such calls at every step, through checkpoints,
//! SIGKILL and restarts, and checks that each did what it should). A program with threads of
//! its own gets the kernel's refusal, as natively, with one line.

use anyhow::{bail, Result};
use ckpt_tests::scenario::is_root;
use ckpt_tests::{run_and_verify, skip_test, Bins, Options, Program, Workdir};

/// The program itself enters a time namespace it made (setns into its helper's) and goes back
/// into its own, as zdtm timens_nested does: before the checkpoints (one taken without a kill
/// first) and again in each restarted program.
#[test]
fn setns_into_a_time_namespace_and_back_works_before_and_after_restarts() -> Result<()> {
    if !is_root() {
        skip_test!("unshare(CLONE_NEWTIME) needs CAP_SYS_ADMIN (root)");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("solo-self")?;
    let program = Program::c(&work, "single_thread_calls.c", &[], &["self", "50", "3", "40"])?;
    let mut opts = Options::new(&work, &[20, 35]);
    opts.also_at = vec![8];
    let o = run_and_verify(&bins, &program, &opts)?;
    rounds_in_each(&o)
}

/// Each process (ckpt-run's program, each restarted one) made its rounds.
fn rounds_in_each(o: &ckpt_tests::scenario::Outcome) -> Result<()> {
    if let Some(r) = o.records.iter().find(|r| !r.stderr.contains("rounds done at step")) {
        bail!("{} made no round{}", r.label, o.transcript());
    }
    Ok(())
}

/// A restart of a restart: the second image is taken in a restarted program whose checkpoint
/// thread has left and come back at every step (a thread pthread_create made there, not the one
/// the first restart recreated); the program restarted from it makes the call at every step
/// again (one call a step: no checkpoint is asked while the thread is away).
fn twice(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "single_thread_calls.c", &[], &["noop", "30", "1", "40"])?;
    let mut opts = Options::new(&work, &[10, 20]);
    opts.as_nobody = nobody;
    let o = run_and_verify(&bins, &program, &opts)?;
    if let Some(r) = o.records.iter().find(|r| r.stderr.lines().any(|l| l.starts_with("ckpt: ") && !l.starts_with("ckpt: checkpoint") && !l.starts_with("ckpt: restarted"))) {
        bail!("{} said more than its checkpoints and restarts{}", r.label, o.transcript());
    }
    Ok(())
}

#[test]
fn a_restart_of_a_restart_makes_the_call_with_the_thread_away() -> Result<()> {
    twice("solo-twice", false)
}

#[test]
fn a_restart_of_a_restart_makes_the_call_with_the_thread_away_as_nobody() -> Result<()> {
    twice("solo-twice-nobody", true)
}

/// 200 calls a step that need the checkpoint thread away: most of the time it is away or
/// coming back, so the checkpoint requests mostly arrive then; each is served once it is back
/// (forked snapshots, and background ones), and the program goes on with the same result.
fn away(tag: &str, nobody: bool, background: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "single_thread_calls.c", &[], &["noop", "40", "200", "20"])?;
    let mut opts = Options::new(&work, &[15, 30]);
    opts.also_at = vec![5, 10];
    opts.as_nobody = nobody;
    opts.env = vec![("CKPT_BACKGROUND".to_string(), background.to_string())];
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}

#[test]
fn checkpoints_asked_while_the_thread_is_away_are_taken_when_it_is_back() -> Result<()> {
    away("solo-away", false, "1")?;
    away("solo-away-fork", false, "0")
}

#[test]
fn checkpoints_asked_while_the_thread_is_away_are_taken_when_it_is_back_as_nobody() -> Result<()> {
    away("solo-away-nobody", true, "1")
}

/// A child of the program (a process of its tree, with a checkpoint thread of its own) enters a
/// user namespace of its own with unshare(CLONE_NEWUSER), then a time namespace with setns,
/// before the checkpoints and again after each restart.
fn kids(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "single_thread_calls.c", &[], &["kids", "40", "2", "40"])?;
    let mut opts = Options::new(&work, &[15, 30]);
    opts.as_nobody = nobody;
    let o = run_and_verify(&bins, &program, &opts)?;
    rounds_in_each(&o)
}

#[test]
fn children_enter_user_and_time_namespaces_through_checkpoints_and_restarts() -> Result<()> {
    kids("solo-kids", false)
}

#[test]
fn children_enter_user_and_time_namespaces_through_checkpoints_and_restarts_as_nobody() -> Result<()> {
    kids("solo-kids-nobody", true)
}

/// The program has a thread of its own: setns to a time namespace fails as it would natively
/// (EUSERS), with one line saying why; the checkpoint thread stays.
#[test]
fn a_program_with_threads_of_its_own_gets_the_kernels_refusal_with_one_line() -> Result<()> {
    if !is_root() {
        skip_test!("unshare(CLONE_NEWTIME) needs CAP_SYS_ADMIN (root)");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("solo-threaded")?;
    let program = Program::c(&work, "single_thread_calls.c", &["-pthread", "-DWITH_THREAD"], &["self", "3", "1", "10"])?;
    let mut p = ckpt_tests::process::Proc::spawn("ckpt-run", ckpt_tests::scenario::ckpt_run_with(&bins, &program, &work.images(), &[], false))?;
    p.wait(std::time::Duration::from_secs(60))?;
    let rec = p.record();
    let line = rec.stderr.lines().find(|l| l.starts_with("ckpt: ")).unwrap_or_default();
    if rec.success() || !rec.stderr.contains("Too many users") || !line.contains("has threads of its own") || rec.stderr.lines().filter(|l| l.starts_with("ckpt: ")).count() != 1 {
        bail!("expected the program's setns to fail with EUSERS and one line saying why{}", ckpt_tests::process::transcript(&[rec]));
    }
    Ok(())
}
