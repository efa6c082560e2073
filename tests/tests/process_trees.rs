//! Process trees (issue 13): every process the program starts is in the checkpoint, which is one
//! consistent cut of the whole tree (ckpt-ns's init coordinates it) written as one image set,
//! `NAME.ckpt/`; the test SIGKILLs the whole tree (its namespace) and ckpt-restart brings every
//! process back with its pid, its parent, its pipes and the memory it shares.
//! - tree_workers: forked workers report through pipes (with records waiting in them) and count
//!   in shared anonymous memory; the parent reaps them with waitpid at the end: after a restart
//!   that lost a child, a pipe's bytes or the sharing of the counter, the result differs;
//! - the same as user nobody;
//! - a bash script with a three-process pipeline and a command running at checkpoint time;
//! - without a namespace (no coordinator) a set is refused with one line.

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
