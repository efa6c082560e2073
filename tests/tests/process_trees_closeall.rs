//! Processes of a tree that close every fd they do not use, as daemons do after they fork
//! (tree_closeall.c: a close() loop up to the fd limit in the child, closefrom and close_range
//! in the parent): the runtime's own fds (its link to the tree's coordinator, the control
//! socket) stay, so the tree is checkpointed, SIGKILLed and restarted to the same result (it
//! used to be refused: the child "does not run ckpt's runtime"); also as nobody.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn closeall(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_closeall.c", &[], &["60", "40"])
}

#[test]
fn processes_that_close_every_fd_are_checkpointed_and_continue() -> Result<()> {
    ckpt_tests::trees::verify("tree-closeall", closeall, &[15], false, 2).map(drop)
}

#[test]
fn processes_that_close_every_fd_continue_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("tree-closeall-nobody", closeall, &[10, 35], true, 2).map(drop)
}

/// Processes that closed stdin (the parent) or stdin, stdout and stderr (its child) find them
/// closed after a restart, and the next file they open is fd 0 again (zdtm fd: the child had
/// ckpt-restart's /dev/null on fd 0); each round's observation is in the output, so a restart
/// that hands them ckpt-restart's fds prints other steps than the uninterrupted run.
#[test]
fn closed_stdio_stays_closed_after_a_restart() -> Result<()> {
    let make = |work: &Workdir| Program::c(work, "tree_stdio_closed.c", &[], &["40", "40"]);
    ckpt_tests::trees::verify("tree-stdio-closed", make, &[12], false, 2).map(drop)
}

#[test]
fn closed_stdio_stays_closed_after_two_restarts_as_nobody() -> Result<()> {
    let make = |work: &Workdir| Program::c(work, "tree_stdio_closed.c", &[], &["40", "40"]);
    ckpt_tests::trees::verify("tree-stdio-closed-nobody", make, &[10, 25], true, 2).map(drop)
}
