//! A child that shares its parent's fd table (clone with CLONE_FILES; zdtm fdt_shared, fd01):
//! the runtime makes it a member of the tree (it was refused as a process without the runtime),
//! the checkpoint records the sharing, and the restart makes it with CLONE_FILES again, its
//! parent restoring the one table. tree_files.c: each round the child opens a pipe at fd 200,
//! the parent reads it there and closes it, the child sees it closed; after a SIGKILL of the
//! whole tree and a restart they go on sharing the table (with a table each the parent's read
//! of fd 200 fails), with the same result as an uninterrupted run.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn glibc_clone(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_files.c", &[], &["3000", "2000", "glibc"])
}

fn raw_clone(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_files.c", &[], &["3000", "2000", "raw"])
}

#[test]
fn a_child_sharing_its_parents_fd_table_continues_sharing_it() -> Result<()> {
    ckpt_tests::trees::verify("trees-files", glibc_clone, &[20], false, 2).map(drop)
}

#[test]
fn a_child_sharing_its_parents_fd_table_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-files-nobody", glibc_clone, &[15, 500], true, 2).map(drop)
}

#[test]
fn a_child_made_by_a_raw_clone_with_clone_files_continues_sharing_the_table() -> Result<()> {
    ckpt_tests::trees::verify("trees-files-raw", raw_clone, &[20], false, 2).map(drop)
}

/// A process of the tree that changed its user ids (a program run as root that drops them in a
/// child) cannot write its image into the tree's set directory nor be restarted as the tree's
/// user: the checkpoint is refused in one line naming it (it said "Permission denied" about a
/// temporary file), and the program goes on. Root only (no one else may change its uid).
#[test]
fn a_child_that_changed_its_user_ids_refuses_the_checkpoint_in_one_line() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        ckpt_tests::skip_test!("only root may change a process's user ids");
        return Ok(());
    }
    let bins = ckpt_tests::Bins::locate()?;
    let work = Workdir::new("trees-setuid")?;
    let program = Program::c(&work, "tree_setuid.c", &[], &["400", "20"])?;
    let (mut run, refused) = ckpt_tests::trees::ask_checkpoint(&bins, &work, &program, "changed its user ids", false)?;
    let went_on = refused.as_ref().map_err(|e| anyhow::anyhow!("{e:#}")).and_then(|_| run.wait_for_step(30, std::time::Duration::from_secs(60)));
    run.kill()?;
    let rec = run.record();
    went_on.map_err(|e| anyhow::anyhow!("{e:#}\n{}", rec.stderr))?;
    let line = rec.stderr.lines().find(|l| l.contains("changed its user ids")).unwrap_or_default();
    anyhow::ensure!(line.contains("tree_setuid") && line.contains("65534"), "the refusal: {line}");
    Ok(())
}
