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
//! - a socketpair between parent and child (tree_shared_objects.c) is made once and shared again
//!   (more in process_trees_shared);
//! - one open file shared by fork (tree_shared_objects.c: parent and child append records
//!   through one offset) is opened once before the tree is forked, at its offset, and shared
//!   again (separate offsets would overwrite records: the final hash differs); also as nobody.

use anyhow::{ensure, Result};
use ckpt_tests::{Bins, Options, Program, Workdir};

fn workers(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_workers.c", &[], &["2", "120", "60"])
}

#[test]
fn forked_workers_with_pipes_and_a_shared_counter_continue() -> Result<()> {
    ckpt_tests::trees::verify("trees-workers", workers, &[20], false, 3).map(drop)
}

#[test]
fn forked_workers_continue_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-workers-nobody", workers, &[15, 50], true, 3).map(drop)
}

fn pipeline(work: &Workdir) -> Result<Program> {
    let script = ckpt_tests::programs::sources_dir().join("tree_pipeline.sh");
    Ok(Program::native("/bin/bash", &[script.to_str().unwrap(), "100", "0.05"], work))
}

#[test]
fn bash_script_with_a_pipeline_and_a_running_command_continues() -> Result<()> {
    ckpt_tests::trees::verify("trees-pipeline", pipeline, &[20], false, 3).map(drop)
}

#[test]
fn bash_script_with_a_pipeline_continues_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-pipeline-nobody", pipeline, &[25], true, 3).map(drop)
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
    ckpt_tests::trees::verify("trees-pool", pool, &[30], false, 3).map(drop)
}

#[test]
fn python_process_pool_executor_continues() -> Result<()> {
    ckpt_tests::trees::verify("trees-executor", executor, &[30], false, 3).map(drop)
}

fn socketpair(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["socketpair", "200", "40"])
}

#[test]
fn a_socketpair_between_processes_of_the_tree_continues() -> Result<()> {
    ckpt_tests::trees::verify("trees-socketpair", socketpair, &[20], false, 2).map(drop)
}

fn shared_file(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_objects.c", &[], &["file", "200", "40"])
}

#[test]
fn a_file_offset_shared_by_fork_continues() -> Result<()> {
    ckpt_tests::trees::verify("trees-shared-file", shared_file, &[20], false, 2).map(drop)
}

#[test]
fn a_file_offset_shared_by_fork_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-shared-file-nobody", shared_file, &[15, 50], true, 2).map(drop)
}

/// A tree with a process that cannot take its part (`mode` of tree_unfit.c): the checkpoint is
/// refused at once in one line naming it and saying `what`, and the program goes on.
fn unfit_refused(name: &str, mode: &str, what: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_unfit.c", &[], &[mode, "400", "20"])?;
    ckpt_tests::trees::refused_naming(&bins, &work, &program, "tree_unfit", what, false)
}

#[test]
fn a_traced_process_of_the_tree_is_refused_in_one_line() -> Result<()> {
    unfit_refused("trees-traced", "traced", "is traced")
}
