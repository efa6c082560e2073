//! Helpers for the process-tree tests: a tree checkpointed, killed and restarted (`verify`), and
//! a tree sharing an object that its restart must refuse (`shared_object_refused`).

use crate::{run_and_verify, Bins, Options, Outcome, Program, Workdir};
use anyhow::{ensure, Result};

/// Run the tree program `make` gives uninterrupted, then under ckpt-run in a namespace of its
/// own with a checkpoint at each of `steps` (SIGKILL of the whole tree, restart): the same result,
/// not started over; the set is a tree of `procs` processes or more that ckpt-inspect verifies.
pub fn verify(name: &str, make: fn(&Workdir) -> Result<Program>, steps: &[u64], as_nobody: bool, procs: usize) -> Result<Outcome> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = make(&work)?;
    let mut opts = Options::new(&work, steps);
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let o = run_and_verify(&bins, &program, &opts)?;
    let set = work.images().join(program.image_name());
    ensure!(set.join("tree").is_file(), "no image set {} was written{}", set.display(), o.transcript());
    // ckpt-inspect shows the set as a tree and verifies every image of it.
    let out = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg("--verify").arg(&set).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && text.contains("image set:") && text.matches(".ckpt, ").count() + text.matches("zombie, wait status").count() >= procs, "ckpt-inspect of the set: {text}{}", String::from_utf8_lossy(&out.stderr));
    Ok(o)
}

/// Start `program` under ckpt-run in its namespace, ask a checkpoint once it printed step 10,
/// and wait until its stderr holds `line` (the result of that wait, with the running process).
pub fn ask_checkpoint(bins: &Bins, work: &Workdir, program: &Program, line: &str, as_nobody: bool) -> Result<(crate::Proc, Result<()>)> {
    let mut cmd = crate::scenario::ckpt_run_with(bins, program, &work.images(), &[], as_nobody);
    cmd.env("CKPT_NAMESPACE", "1");
    let mut run = crate::Proc::spawn("ckpt-run", cmd)?;
    let minute = std::time::Duration::from_secs(60);
    let seen = run.wait_for_step(10, minute).and_then(|_| {
        // SAFETY: signalling the process we started.
        unsafe { libc::kill(run.pid(), libc::SIGUSR2) };
        run.wait_for_stderr(line, minute)
    });
    Ok((run, seen))
}

/// A tree with a process that cannot take its part: the checkpoint is refused in one line that
/// names it (`(named)`, its command name) and says `what`, no set is written, and the program
/// goes on.
pub fn refused_naming(bins: &Bins, work: &Workdir, program: &Program, named: &str, what: &str, as_nobody: bool) -> Result<()> {
    let failed = "of the process tree failed";
    let (mut run, refused) = ask_checkpoint(bins, work, program, failed, as_nobody)?;
    let minute = std::time::Duration::from_secs(60);
    let going_on = refused.as_ref().ok().map(|_| run.wait_for_step(run.last_step().unwrap_or(0) + 5, minute));
    run.kill()?;
    let rec = run.record();
    refused.map_err(|e| anyhow::anyhow!("{e:#}\n{}", rec.stderr))?;
    let line = rec.stderr.lines().find(|l| l.contains(failed)).unwrap_or_default();
    ensure!(line.contains(what) && line.contains(&format!("({named})")), "the checkpoint's line: {line}");
    ensure!(!work.images().join(program.image_name()).join("tree").exists(), "a set was written: {line}");
    going_on.unwrap_or(Ok(0)).map_err(|e| anyhow::anyhow!("the program did not go on: {e:#}\n{}", rec.stderr))?;
    Ok(())
}

/// A tree whose processes share an object the restart cannot share again (`source` run with
/// `mode`): the checkpoint names it in one line, ckpt-restart refuses the set in one line naming
/// `what`, and goes on only with --ignore-missing-files, with a warning naming what was lost.
pub fn shared_object_refused(name: &str, source: &str, mode: &str, what: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, source, &[], &[mode, "400", "20"])?;
    // The checkpoint says in one line what a restart cannot share again.
    let (mut run, warned) = ask_checkpoint(&bins, &work, &program, "warning: checkpoint 1:", as_nobody)?;
    run.kill()?;
    let rec = run.record();
    warned.map_err(|e| anyhow::anyhow!("{e:#}\n{}", rec.stderr))?;
    let line = rec.stderr.lines().find(|l| l.contains("warning: checkpoint 1:")).unwrap_or_default();
    ensure!(line.contains(what) && line.contains("ckpt-restart refuses"), "the checkpoint's warning: {line}");
    let set = work.images().join(program.image_name());
    ensure!(set.join("tree").is_file(), "no image set {} was written", set.display());
    let restart = |extra: &[&str]| -> Result<crate::Record> {
        let mut argv: Vec<std::ffi::OsString> = vec![bins.restart.clone().into()];
        argv.extend(extra.iter().map(|a| a.into()));
        argv.push(set.clone().into());
        let mut p = crate::Proc::spawn("ckpt-restart", crate::scenario::user_command(&argv, as_nobody, &program.cwd))?;
        let waited = p.wait(std::time::Duration::from_secs(60));
        if waited.is_err() {
            let _ = p.kill();
        }
        let rec = p.record();
        waited.map_err(|e| anyhow::anyhow!("ckpt-restart {extra:?} hung: {e:#}\n{}\n{}", rec.stdout, rec.stderr))?;
        Ok(rec)
    };
    let refused = restart(&[])?;
    let err = refused.stderr.trim_end();
    ensure!(
        !refused.status.is_some_and(|s| s.success()) && err.lines().count() == 1 && err.contains("cannot restart this tree faithfully") && err.contains(what) && err.contains("--ignore-missing-files") && !refused.stdout.contains("step"),
        "ckpt-restart of a tree sharing a {mode}: not refused in one line:\nstdout: {}\nstderr: {err}",
        refused.stdout
    );
    let lossy = restart(&["--ignore-missing-files"])?;
    ensure!(
        lossy.stderr.lines().any(|l| l.starts_with("ckpt-restart: warning:") && l.contains(what) && l.contains("separate")) && !lossy.stderr.contains("cannot restart this tree"),
        "ckpt-restart --ignore-missing-files of a tree sharing a {mode}: no warning or no run:\nstdout: {}\nstderr: {}",
        lossy.stdout,
        lossy.stderr
    );
    Ok(())
}
