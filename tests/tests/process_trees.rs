//! Process trees (issue 13): every process the program starts is in the checkpoint, which is one
//! consistent cut of the whole tree (ckpt-ns's init coordinates it) written as one image set,
//! `NAME.ckpt/`; the test SIGKILLs the whole tree (its namespace) and ckpt-restart brings every
//! process back with its pid, its parent, its pipes and the memory it shares.
//! - tree_workers: forked workers report through pipes (with records waiting in them) and count
//!   in shared anonymous memory; the parent reaps them with waitpid at the end: after a restart
//!   that lost a child, a pipe's bytes or the sharing of the counter, the result differs;
//! - the same as user nobody;
//! - a bash script with a three-process pipeline and a command running at checkpoint time;
//! - Python: multiprocessing.Pool(2) and concurrent.futures.ProcessPoolExecutor(2);
//! - ckpt-inspect shows each set as a tree and verifies its images;
//! - without a namespace a set is refused with one line;
//! - a socketpair between parent and child, or a file offset shared by fork (tree_shared_objects.c),
//!   is named by the checkpoint, refused by ckpt-restart in one line, and goes on with
//!   --ignore-missing-files with a warning.

use anyhow::{ensure, Result};
use ckpt_tests::{run_and_verify, Bins, Options, Outcome, Program, Workdir};

fn workers(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_workers.c", &[], &["2", "120", "60"])
}

fn verify(name: &str, make: fn(&Workdir) -> Result<Program>, steps: &[u64], as_nobody: bool) -> Result<Outcome> {
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
    ensure!(out.status.success() && text.contains("image set:") && text.matches(".ckpt, ").count() + text.matches("zombie, wait status").count() >= 3, "ckpt-inspect of the set: {text}{}", String::from_utf8_lossy(&out.stderr));
    Ok(o)
}

#[test]
fn forked_workers_with_pipes_and_a_shared_counter_continue() -> Result<()> {
    verify("trees-workers", workers, &[20], false).map(drop)
}

#[test]
fn forked_workers_continue_after_two_restarts_as_nobody() -> Result<()> {
    verify("trees-workers-nobody", workers, &[15, 50], true).map(drop)
}

fn pipeline(work: &Workdir) -> Result<Program> {
    let script = ckpt_tests::programs::sources_dir().join("tree_pipeline.sh");
    Ok(Program::native("/bin/bash", &[script.to_str().unwrap(), "100", "0.05"], work))
}

#[test]
fn bash_script_with_a_pipeline_and_a_running_command_continues() -> Result<()> {
    verify("trees-pipeline", pipeline, &[20], false).map(drop)
}

#[test]
fn bash_script_with_a_pipeline_continues_as_nobody() -> Result<()> {
    verify("trees-pipeline-nobody", pipeline, &[25], true).map(drop)
}

#[test]
fn a_set_without_exact_ids_is_refused_in_one_line() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-refused")?;
    let program = workers(&work)?;
    let mut opts = Options::new(&work, &[10]);
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let (set, _, _) = ckpt_tests::checkpoint_and_kill(&bins, &program, &opts)?;
    let out = std::process::Command::new(&bins.restart).arg("--no-namespace").arg(&set).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.lines().count() == 1 && err.contains("exact ids"), "ckpt-restart --no-namespace of a set: {err}");
    Ok(())
}

fn pool(work: &Workdir) -> Result<Program> {
    Program::python(work, "tree_pool.py", &["pool", "120", "0.05"])
}

fn executor(work: &Workdir) -> Result<Program> {
    Program::python(work, "tree_pool.py", &["executor", "120", "0.05"])
}

#[test]
fn python_multiprocessing_pool_continues() -> Result<()> {
    verify("trees-pool", pool, &[30], false).map(drop)
}

#[test]
fn python_process_pool_executor_continues() -> Result<()> {
    verify("trees-executor", executor, &[30], false).map(drop)
}

/// Start `program` under ckpt-run in its namespace, ask a checkpoint once it printed step 10,
/// and wait until its stderr holds `line` (the result of that wait, with the running process).
fn ask_checkpoint(bins: &Bins, work: &Workdir, program: &Program, line: &str) -> Result<(ckpt_tests::Proc, Result<()>)> {
    let mut cmd = ckpt_tests::scenario::ckpt_run_with(bins, program, &work.images(), &[], false);
    cmd.env("CKPT_NAMESPACE", "1");
    let mut run = ckpt_tests::Proc::spawn("ckpt-run", cmd)?;
    let minute = std::time::Duration::from_secs(60);
    let seen = run.wait_for_step(10, minute).and_then(|_| {
        // SAFETY: signalling the process we started.
        unsafe { libc::kill(run.pid(), libc::SIGUSR2) };
        run.wait_for_stderr(line, minute)
    });
    Ok((run, seen))
}

/// A tree whose processes share an object the restart cannot share again (`mode` of
/// tree_shared_objects.c): ckpt-restart refuses the set in one line naming both processes and
/// fds, and goes on only with --ignore-missing-files, with a warning naming what was lost.
fn shared_object_refused(name: &str, mode: &str, what: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_shared_objects.c", &[], &[mode, "400", "20"])?;
    // The checkpoint says in one line what a restart cannot share again.
    let (mut run, warned) = ask_checkpoint(&bins, &work, &program, "warning: checkpoint 1:")?;
    run.kill()?;
    let rec = run.record();
    warned.map_err(|e| anyhow::anyhow!("{e:#}\n{}", rec.stderr))?;
    let line = rec.stderr.lines().find(|l| l.contains("warning: checkpoint 1:")).unwrap_or_default();
    ensure!(line.contains(what) && line.contains("ckpt-restart refuses"), "the checkpoint's warning: {line}");
    let set = work.images().join(program.image_name());
    ensure!(set.join("tree").is_file(), "no image set {} was written", set.display());
    let restart = |extra: &[&str]| -> Result<ckpt_tests::Record> {
        let mut argv: Vec<std::ffi::OsString> = vec![bins.restart.clone().into()];
        argv.extend(extra.iter().map(|a| a.into()));
        argv.push(set.clone().into());
        let mut p = ckpt_tests::Proc::spawn("ckpt-restart", ckpt_tests::scenario::user_command(&argv, false, &program.cwd))?;
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

#[test]
fn a_socketpair_between_processes_of_the_tree_is_refused_or_warned() -> Result<()> {
    shared_object_refused("trees-socketpair", "socketpair", "socketpair")
}

#[test]
fn a_file_offset_shared_by_fork_is_refused_or_warned() -> Result<()> {
    shared_object_refused("trees-shared-file", "file", "one open file")
}

/// A tree with a process that cannot take its part (`mode` of tree_unfit.c): the checkpoint is
/// refused at once in one line naming it and saying `what`, and the program goes on.
fn unfit_refused(name: &str, mode: &str, what: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_unfit.c", &[], &[mode, "400", "20"])?;
    let failed = "of the process tree failed";
    let (mut run, refused) = ask_checkpoint(&bins, &work, &program, failed)?;
    let minute = std::time::Duration::from_secs(60);
    let going_on = refused.as_ref().ok().map(|_| run.wait_for_step(run.last_step().unwrap_or(0) + 5, minute));
    run.kill()?;
    let rec = run.record();
    refused.map_err(|e| anyhow::anyhow!("{e:#}\n{}", rec.stderr))?;
    let line = rec.stderr.lines().find(|l| l.contains(failed)).unwrap_or_default();
    ensure!(line.contains(what) && line.contains("(tree_unfit)"), "the checkpoint's line: {line}");
    ensure!(!work.images().join(program.image_name()).join("tree").exists(), "a set was written: {line}");
    going_on.unwrap_or(Ok(0)).map_err(|e| anyhow::anyhow!("the program did not go on: {e:#}\n{}", rec.stderr))?;
    Ok(())
}

#[test]
fn a_stopped_process_of_the_tree_is_refused_in_one_line() -> Result<()> {
    unfit_refused("trees-stopped", "stopped", "is stopped")
}

#[test]
fn a_traced_process_of_the_tree_is_refused_in_one_line() -> Result<()> {
    unfit_refused("trees-traced", "traced", "is traced")
}
