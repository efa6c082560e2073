//! POSIX message queues that several processes of a tree hold (DMTCP's posix-mq1): the lowest
//! pid holding a queue reads its messages at the cut, the tree's restart makes it once with
//! them and opens it for every holder (one open file description where the processes shared
//! one by fork, an open of its own where each opened it), after both names were removed. The
//! program (tree_mqueue.c) checks the priority order of every message and every answer; the
//! whole tree is SIGKILLed and restarted.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn program(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_mqueue.c", &[], &["200", "20"])
}

#[test]
fn two_processes_talking_through_removed_queues_continue() -> Result<()> {
    ckpt_tests::trees::verify("tree-mqueue", program, &[20], false, 2).map(drop)
}

#[test]
fn two_processes_talking_through_removed_queues_continue_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("tree-mqueue-nobody", program, &[15, 50], true, 2).map(drop)
}
