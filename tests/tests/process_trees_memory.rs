//! Memory of a process of a tree that fork does not copy (MADV_DONTFORK) or gives a child empty
//! (MADV_WIPEONFORK): a tree's checkpoint writes each process's image from a forked snapshot,
//! which did not see that memory, and the checkpoint failed (zdtm maps11). The program writes
//! both regions at every step and mixes them into its result; a child it forks at the end tells
//! whether the advice still holds after the restart.

use anyhow::Result;
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};

fn verify(name: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_forkadvice.c", &[], &["60", "30"])?;
    let mut opts = Options::new(&work, &[20]);
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    opts.as_nobody = as_nobody;
    run_and_verify(&bins, &program, &opts).map(drop)
}

#[test]
fn memory_fork_does_not_copy_is_in_a_trees_images_with_its_advice() -> Result<()> {
    verify("tree-forkadvice", false)
}

#[test]
fn memory_fork_does_not_copy_is_in_a_trees_images_with_its_advice_as_nobody() -> Result<()> {
    verify("tree-forkadvice-nobody", true)
}
