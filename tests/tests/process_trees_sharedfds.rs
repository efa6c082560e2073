//! A tree of many processes that all hold the same many fds (issue 13; zdtm session03's shape):
//! tree_shared_fds.c makes 200 socketpairs and 50 pipes, then a tree of 32 processes that all
//! inherit them (a size the harness's minute per restart allows on a loaded machine), and
//! every round the root talks to each worker through a different socketpair and pipe, with
//! requests and answers waiting unread. The whole tree is checkpointed,
//! SIGKILLed and restarted (also twice as nobody): every fd of every process is the one it
//! shared before (a request reaches its worker, an answer the root, no byte lost, duplicated or
//! left over), with the same result as an uninterrupted run.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn many(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_shared_fds.c", &[], &["32", "200", "50", "150", "40"])
}

#[test]
fn a_tree_of_32_processes_sharing_450_fds_continues() -> Result<()> {
    ckpt_tests::trees::verify("trees-sharedfds", many, &[15], false, 32).map(drop)
}

#[test]
fn a_tree_of_32_processes_sharing_450_fds_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-sharedfds-nobody", many, &[10, 30], true, 32).map(drop)
}
