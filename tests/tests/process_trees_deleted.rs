//! Deleted files that several processes of a tree hold (issue 13): made once by the tree's
//! restart (one inode with its data) and opened for every holder, so that what one process
//! writes the others read again. The program (tree_deleted_files.c) keeps a parent and its
//! child writing and reading one nameless file across the checkpoint, through one open file
//! both hold (inherited by fork: one offset) and an open of its own each (own offsets); the
//! whole tree is SIGKILLed and restarted:
//! - a regular file removed while open (CRIU's write_read10), also twice restarted as nobody;
//! - a memfd (CRIU's memfd01).

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn file(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_deleted_files.c", &[], &["file", "200", "40"])
}

fn memfd(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_deleted_files.c", &[], &["memfd", "200", "40"])
}

#[test]
fn a_deleted_file_two_processes_write_and_read_continues() -> Result<()> {
    ckpt_tests::trees::verify("tree-deleted-file", file, &[20], false, 2).map(drop)
}

#[test]
fn a_deleted_file_two_processes_write_and_read_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("tree-deleted-file-nobody", file, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_memfd_two_processes_write_and_read_continues() -> Result<()> {
    ckpt_tests::trees::verify("tree-deleted-memfd", memfd, &[20], false, 2).map(drop)
}
