//! Processes of a tree in a time namespace of their own (issue 12, zdtm timens_nested): the
//! coordinator records each one's namespace and offsets at the cut, and the restart makes the
//! namespace again with the same offsets over the restarted tree's clocks, shared by the
//! processes that shared it.
//! - tree_timens: a parent makes a time namespace (CLOCK_MONOTONIC +1000 s, CLOCK_BOOTTIME
//!   +500 s), forks two children in it and goes back into its own; at every step each child's
//!   clocks lie exactly between two readings of the parent's plus the offsets, no clock goes
//!   back, and both children are in one namespace that is not the parent's: after two restarts
//!   (the second from a restarted tree, whose own clocks have offsets of their own) too;
//! - tree_timens kids: the parent keeps the namespace for its children (no setns back): a child
//!   it forks after the restart is in the same namespace as the two of before;
//! - tree_timens_child: an orphan whose parent made the namespace and exited;
//! - a process in a namespace of its own that made another for its children: refused in one
//!   line at the checkpoint;
//! - as an ordinary user a program has a time namespace only inside a user namespace of its
//!   own, which ckpt does not restore: the checkpoint is refused in one line, the program goes
//!   on.

use anyhow::Result;
use ckpt_tests::scenario::is_root;
use ckpt_tests::{skip_test, Bins, Program, Workdir};

/// The tree `make` gives, checkpointed at `steps` and restarted (`trees::verify`), as root
/// (unshare(CLONE_NEWTIME) needs CAP_SYS_ADMIN; an ordinary user's program needs a user
/// namespace of its own for it: the _as_nobody test).
fn as_root(name: &str, make: fn(&Workdir) -> Result<Program>, steps: &[u64], procs: usize) -> Result<()> {
    if !is_root() {
        skip_test!("unshare(CLONE_NEWTIME) needs root");
        return Ok(());
    }
    ckpt_tests::trees::verify(name, make, steps, false, procs).map(drop)
}

fn two_children(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_timens.c", &[], &["60", "50"])
}

#[test]
fn children_in_a_time_namespace_of_their_own_keep_their_clocks_after_two_restarts() -> Result<()> {
    as_root("trees-timens", two_children, &[20, 40], 3)
}

fn kept_for_children(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_timens.c", &[], &["60", "50", "kids"])
}

#[test]
fn a_namespace_kept_for_children_is_shared_by_those_of_before_and_after_the_restart() -> Result<()> {
    as_root("trees-timens-kids", kept_for_children, &[30], 3)
}

fn orphan(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_timens_child.c", &[], &["100", "20"])
}

#[test]
fn an_orphan_born_in_a_time_namespace_of_its_own_keeps_its_clock() -> Result<()> {
    as_root("trees-timens-orphan", orphan, &[30], 2)
}

/// A process in a time namespace of its own that made yet another for its children would need
/// two made for it: refused in one line at the checkpoint, and the program goes on.
#[test]
fn a_process_with_two_time_namespaces_of_its_own_is_refused_in_one_line() -> Result<()> {
    if !is_root() {
        skip_test!("unshare(CLONE_NEWTIME) needs root");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-timens-again")?;
    let program = Program::c(&work, "tree_timens.c", &[], &["400", "20", "again"])?;
    ckpt_tests::trees::refused_naming(&bins, &work, &program, "tree_timens", "made another for its children", false)
}

#[test]
fn a_time_namespace_inside_a_user_namespace_of_its_own_is_refused_in_one_line_as_nobody() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-timens-user")?;
    let program = Program::c(&work, "tree_timens.c", &[], &["400", "20", "user"])?;
    ckpt_tests::trees::refused_naming(&bins, &work, &program, "tree_timens", "is in a namespace of its own (user ", true)
}
