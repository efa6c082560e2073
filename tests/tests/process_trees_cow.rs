//! Memory a parent and its children share copy-on-write since fork (zdtm cow00, cow01):
//! tree_cow.c's parent fills private memory and forks two children; each of the three changes
//! or drops some pages. After the restart every page holds what that process had (the result's
//! hash), and the pages nobody changed since the fork are still one page shared by the three
//! (pagemap's exclusively-mapped bit, which any user can read; each process reports a mask of
//! failed checks in the result): ckpt-restart stages a parent's memory before it makes its
//! children, and each child writes only the pages of its image that differ from it.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn cow(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_cow.c", &[], &["40", "30"])
}

#[test]
fn pages_shared_copy_on_write_since_fork_are_shared_again() -> Result<()> {
    ckpt_tests::trees::verify("trees-cow", cow, &[10], false, 3).map(drop)
}

#[test]
fn pages_shared_copy_on_write_stay_shared_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-cow-nobody", cow, &[10, 25], true, 3).map(drop)
}
