//! Children made with glibc's clone() instead of fork (no fork handler runs in them): in a member
//! of the process tree the runtime makes such a plain child process (flags: the exit signal) a
//! member too, so the tree's checkpoint takes it in (it refused, naming the child as a process
//! without the runtime). tree_stop.c "clone": the child, on its own stack, writes numbered lines;
//! the parent waits for it and prints its exit status: the same as uninterrupted after a SIGKILL
//! of the whole tree and a restart. "clone-parent": a middle process makes the child with
//! CLONE_PARENT (the program's child, not the middle one's) and exits. "raw-clone": the child
//! is made by the clone system call through libc's syscall() (no new stack: it goes on as a
//! forked child does).

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn cloned(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stop.c", &[], &["3000", "2000", "clone"])
}

#[test]
fn a_child_made_by_glibc_clone_is_in_the_tree_checkpoint() -> Result<()> {
    ckpt_tests::trees::verify("trees-clone", cloned, &[20], false, 2).map(drop)
}

#[test]
fn a_child_made_by_glibc_clone_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-clone-nobody", cloned, &[15, 500], true, 2).map(drop)
}

fn cloned_parent(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stop.c", &[], &["3000", "2000", "clone-parent"])
}

#[test]
fn a_child_made_by_glibc_clone_with_clone_parent_is_in_the_tree_checkpoint() -> Result<()> {
    ckpt_tests::trees::verify("trees-clone-parent", cloned_parent, &[20], false, 2).map(drop)
}

fn raw_cloned(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stop.c", &[], &["3000", "2000", "raw-clone"])
}

#[test]
fn a_child_made_by_a_raw_clone_system_call_is_in_the_tree_checkpoint() -> Result<()> {
    ckpt_tests::trees::verify("trees-raw-clone", raw_cloned, &[20], false, 2).map(drop)
}

#[test]
fn a_child_made_by_a_raw_clone_system_call_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-raw-clone-nobody", raw_cloned, &[15, 500], true, 2).map(drop)
}

fn execl_child(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_stop.c", &[], &["3000", "2000", "execl"])
}

/// A forked child that execs a program with execl() (variadic: glibc's execl calls its internal
/// execve, which no hook saw) is a member of the tree: it was refused as a process without the
/// runtime (zdtm dumpable02).
#[test]
fn a_program_a_child_starts_with_execl_is_in_the_tree_checkpoint() -> Result<()> {
    ckpt_tests::trees::verify("trees-execl", execl_child, &[20], false, 2).map(drop)
}
