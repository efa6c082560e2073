//! A tree of 8 processes that share one pipe and one socketpair (made once at a tree's restart,
//! by its root), each with its own state of them where the kernel keeps it per fd or per open
//! file description (tree_fd_flags.c): O_NONBLOCK of each process's own open of the pipe (set in
//! half of them), FD_CLOEXEC of its pipe write end (set in a third), beside the socket's one
//! O_NONBLOCK that all share; unread bytes in both that all hold. Checkpointed, SIGKILLed and
//! restarted (also twice as nobody): every process checks each step that its flags are its own,
//! and the root reads back exactly the bytes it wrote, none lost or duplicated.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn tree(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_fd_flags.c", &[], &["8", "40", "50"])
}

#[test]
fn each_process_keeps_its_own_fd_flags_and_open_file_flags_on_shared_objects() -> Result<()> {
    ckpt_tests::trees::verify("trees-fdflags", tree, &[10], false, 8).map(drop)
}

#[test]
fn each_process_keeps_its_own_fd_flags_and_open_file_flags_on_shared_objects_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-fdflags-nobody", tree, &[8, 20], true, 8).map(drop)
}
