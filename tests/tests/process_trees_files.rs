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

/// A program run by root whose process drops to other ids (real, effective and saved user and
/// group ids all different, a filesystem group id apart from them; zdtm pid00, seccomp_filter,
/// mlock_setuid): it can no longer write into root's image directory, so the coordinator gives
/// it a directory of its own for its image and takes the image once written; ckpt-restart, as
/// root, gives it its ids back. tree_setuid.c mixes the ids the changed process sees into its
/// result at every step: after two restarts, the same result as an uninterrupted run. Root only.
fn ids_survive(name: &str, mode: &'static str) -> Result<()> {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("only root may change a process's user ids");
        return Ok(());
    }
    let (make, procs): (fn(&Workdir) -> Result<Program>, usize) = if mode == "child" { (setuid_child, 2) } else { (setuid_self, 1) };
    let o = ckpt_tests::trees::verify(name, make, &[20, 120], false, procs)?;
    let out = o.transcript();
    anyhow::ensure!(out.contains("ids uid 1/2/3 fsuid 2 gid 5/6/7 fsgid 8\n"), "the ids were not changed: {out}");
    Ok(())
}

fn setuid_child(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_setuid.c", &[], &["child", "300", "10"])
}

fn setuid_self(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_setuid.c", &[], &["self", "300", "10"])
}

#[test]
fn a_child_that_changed_its_user_ids_continues_with_them() -> Result<()> {
    ids_survive("trees-setuid-child", "child")
}

/// The program alone (no child): its checkpoint is a set of one, written the same way.
#[test]
fn a_program_that_changed_its_user_ids_continues_with_them() -> Result<()> {
    ids_survive("trees-setuid-self", "self")
}

/// An ordinary user's program maps only its own ids in its user namespace: setresuid to other
/// ids fails with EPERM as it does natively, and the program goes on with its own through the
/// checkpoints and restarts.
#[test]
fn a_child_that_may_not_change_its_user_ids_continues_as_nobody() -> Result<()> {
    let o = ckpt_tests::trees::verify("trees-setuid-nobody", setuid_child, &[20, 120], true, 2)?;
    let out = o.transcript();
    anyhow::ensure!(out.contains("(not changed: EPERM)"), "the ids were changed: {out}");
    Ok(())
}
