//! Images are code (issue 11): restarting an image runs whatever it holds as the user who
//! restarts it, so ckpt-restart and ckpt-run --resume use only the user's own images (a regular
//! file, not a symbolic link, owned by the user, not writable by others, taken by the user),
//! and --resume resumes only the program it is asked to run, as it was when the image was taken.

mod failures_support;
mod security_support;

use anyhow::{ensure, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::{Bins, Program, Workdir};
use failures_support::clean_tool_failure;
use security_support::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn restart_runs_only_the_users_own_images() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-restart")?;
    let shared = work.subdir("shared")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    let expected = expected_result(&prog)?;
    let theirs = image_of(&bins, Some(&u.attacker), &prog, &work.join("att"))?;
    let refused = |target: &std::path::Path, why: &str| -> Result<()> {
        let r = run(Some(&u.victim), "victim's ckpt-restart", &restart_argv(&bins, &[], target), work.path())?;
        let line = clean_tool_failure(&r, "ckpt-restart").map_err(|e| anyhow::anyhow!("{}: {e}", target.display()))?;
        ensure!(line.contains(why), "{}: the refusal does not say {why:?}: {line}", target.display());
        Ok(())
    };
    // The attacker's image, readable by all, where the victim looks.
    let planted = shared.join("counter.ckpt");
    plant(&theirs, &planted, Some(&u.attacker), 0o644)?;
    refused(&planted, &u.attacker.name)?;
    refused(&shared, &u.attacker.name)?;
    // The attacker's image made the victim's file (a copy handed over): taken by someone else.
    let vdir = dir(&work.join("vic"), Some(&u.victim), 0o700)?;
    plant(&theirs, &vdir.join("counter.ckpt"), Some(&u.victim), 0o600)?;
    refused(&vdir.join("counter.ckpt"), "taken by")?;

    // The victim's own image: refused while others may write it, or through a symbolic link.
    let mine = image_of(&bins, Some(&u.victim), &prog, &work.join("vimg"))?;
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o666))?;
    refused(&mine, "writable by group or others")?;
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o600))?;
    let link = work.join("vimg").join("link.ckpt");
    std::os::unix::fs::symlink(&mine, &link)?;
    u.victim.chown(&link)?;
    refused(&link, "symbolic link")?;
    std::fs::remove_file(&link)?;

    // A directory with the victim's image and a newer one of the attacker's: the victim's
    // runs, with a word about the other.
    let both = work.subdir("both")?;
    plant(&mine, &both.join("counter.ckpt"), Some(&u.victim), 0o600)?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    plant(&theirs, &both.join("zzz.ckpt"), Some(&u.attacker), 0o644)?;
    let r = run(Some(&u.victim), "victim's ckpt-restart DIR", &restart_argv(&bins, &[], &both), work.path())?;
    ensure!(r.success(), "the victim's own image did not restart:\n{r}");
    ensure!(r.stderr.contains("zzz.ckpt") && r.stderr.contains(&u.attacker.name), "no word about the image left out:\n{r}");
    continued(&r.stdout, &expected)
}

#[test]
fn resume_refuses_a_planted_image() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-resume-planted")?;
    let shared = work.subdir("shared")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    let theirs = image_of(&bins, Some(&u.attacker), &prog, &work.join("att"))?;
    plant(&theirs, &shared.join("counter.ckpt"), Some(&u.attacker), 0o644)?;
    let r = run(Some(&u.victim), "victim's ckpt-run --resume", &ckpt_run_argv(&bins, &shared, &["--resume"], &prog), work.path())?;
    let line = clean_tool_failure(&r, "ckpt-run").map_err(anyhow::Error::msg)?;
    ensure!(line.contains("refusing to resume") && line.contains(&u.attacker.name), "unclear refusal: {line}");
    Ok(())
}

#[test]
fn resume_starts_fresh_for_another_program_or_a_changed_one() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-resume-program")?;
    let prog = Program::c(&work, "counter.c", &[], &["60", "20"])?;
    let expected = expected_result(&prog)?;
    image_of(&bins, None, &prog, &work.images())?;
    let fresh = |p: &Program, why: &str| -> Result<()> {
        let r = run(None, "ckpt-run --resume", &ckpt_run_argv(&bins, &work.images(), &["--resume"], p), work.path())?;
        ensure!(r.success() && r.stdout.starts_with("start counter") && ckpt_tests::result_of(&r.stdout) == Some(&expected[..]), "not a fresh run:\n{r}");
        let said: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("ckpt-run:")).collect();
        ensure!(said.len() == 1 && said[0].contains("starting fresh") && said[0].contains(why), "not one line saying why it starts fresh:\n{r}");
        Ok(())
    };
    // Another program with the same name (same image name): a copy elsewhere.
    let other_dir = work.subdir("other")?;
    let other = other_dir.join("counter");
    std::fs::copy(&prog.argv[0], &other)?;
    let mut p2 = prog.clone();
    p2.argv[0] = other.into();
    fresh(&p2, "not of")?;
    // The program itself, rebuilt since the image was taken.
    compile_c(&work, "counter.c", &[])?;
    fresh(&prog, "not the file it was")
}
