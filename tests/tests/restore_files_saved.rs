//! `ckpt-run --checkpoint-open-files` (DMTCP's option of that name): the data of the named
//! files the program holds open is saved in the image, and a file that is gone at restart (the
//! program removed it after the checkpoint, before it was killed) comes back at its path with
//! its data at checkpoint time (tests/programs/files_saved.c). Without the option the restart
//! refuses in one line naming the file.

use anyhow::{bail, Result};
use ckpt_tests::process::Proc;
use ckpt_tests::scenario::{checkpoint_and_kill, effective_uid, user_command};
use ckpt_tests::{run_plain, Bins, Options, Outcome, Program, Workdir};
use std::time::Duration;

/// Checkpoint at step 3 (with `run_args`), SIGKILL, remove the file, restart.
fn removed_after_checkpoint(tag: &str, nobody: bool, run_args: &[&str]) -> Result<(Result<Outcome>, ckpt_tests::Record)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    // 40 steps of 100 ms: under load the checkpoint at step 3 took longer than 12 steps left
    // the program, which ended (and removed its file) before it was killed.
    let program = Program::c(&work, "files_saved.c", &[], &["40"])?;
    let mut opts = Options::new(&work, &[3]);
    opts.as_nobody = nobody;
    opts.run_args = run_args.iter().map(Into::into).collect();
    // One after the other: both use saved.dat in the working directory.
    let plain = run_plain(&program, nobody, opts.timeouts.finish)?;
    let (image, cycle, ran) = checkpoint_and_kill(&bins, &program, &opts)?;
    std::fs::remove_file(work.path().join("saved.dat"))?;
    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut p = Proc::spawn("ckpt-restart", user_command(&argv, nobody, work.path()))?;
    p.wait(Duration::from_secs(60))?;
    let restarted = p.record();
    let outcome = Outcome { records: vec![ran, restarted.clone()], cycles: vec![cycle], extra: Vec::new(), image, uid: effective_uid(nobody) };
    let verified = outcome.verify(&plain).map(|_| outcome);
    Ok((verified, restarted))
}

fn comes_back(tag: &str, nobody: bool) -> Result<()> {
    let (verified, restarted) = removed_after_checkpoint(tag, nobody, &["--checkpoint-open-files"])?;
    verified?;
    if !restarted.stdout.contains("unlink ok") {
        bail!("the restarted program could not remove the file by its name{}", ckpt_tests::process::transcript(&[restarted]));
    }
    Ok(())
}

#[test]
fn a_file_removed_after_the_checkpoint_comes_back_at_its_path() -> Result<()> {
    comes_back("files-saved", false)
}

#[test]
fn a_file_removed_after_the_checkpoint_comes_back_at_its_path_as_nobody() -> Result<()> {
    comes_back("files-saved-nobody", true)
}

#[test]
fn without_the_option_the_restart_refuses_in_one_line() -> Result<()> {
    let (verified, restarted) = removed_after_checkpoint("files-saved-off", false, &[])?;
    let lines: Vec<&str> = restarted.stderr.lines().filter(|l| l.starts_with("ckpt-restart:")).collect();
    if verified.is_ok() || restarted.success() || lines.len() != 1 || !lines[0].contains("saved.dat") {
        bail!("expected one line naming saved.dat and a failed restart{}", ckpt_tests::process::transcript(&[restarted]));
    }
    Ok(())
}
