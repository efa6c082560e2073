//! Restart chain: counter is checkpointed and killed, restarted, and the restarted program
//! (running in ckpt-restart's pid) is itself checkpointed, killed and restarted, three times in
//! a row. The stitched output of all four processes must equal the uninterrupted run's.

use anyhow::{ensure, Result};
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};

#[test]
fn counter_restart_chain_three_times() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("chain")?;
    let program = Program::c(&work, "counter.c", &[], &["90", "25"])?;
    let outcome = run_and_verify(&bins, &program, &Options::new(&work, &[10, 35, 60]))?;
    ensure!(
        outcome.records.len() == 4,
        "expected ckpt-run + 3 restarts{}",
        outcome.transcript()
    );
    Ok(())
}

/// The image directory is moved before each restart (`DIR` to `DIR-moved1`, then to
/// `DIR-moved2`), as a user does who moves a job's checkpoints elsewhere: the restarted program
/// writes its next images, and listens for ckpt-ctl, where the image it came from is (the
/// directory it was started with is gone). Before, its next checkpoint failed ("cannot open the
/// image directory"), and ckpt-ctl found no socket.
#[test]
fn images_follow_a_moved_directory() -> Result<()> {
    moved_directory("moved-dir", false, false)
}

#[test]
fn images_follow_a_moved_directory_as_nobody() -> Result<()> {
    moved_directory("moved-dir-nobody", true, false)
}

/// The same for a process tree's sets (`NAME.ckpt/` with an image per process).
#[test]
fn a_process_trees_sets_follow_a_moved_directory() -> Result<()> {
    moved_directory("moved-dir-tree", false, true)
}

fn moved_directory(name: &str, as_nobody: bool, tree: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = if tree { Program::c(&work, "tree_workers.c", &[], &["2", "120", "60"])? } else { Program::c(&work, "counter.c", &[], &["90", "25"])? };
    let mut opts = Options::new(&work, &[15, 45]);
    opts.as_nobody = as_nobody;
    opts.move_images = true;
    opts.restart_from_dir = as_nobody;
    if tree {
        opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    }
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let last = std::path::PathBuf::from(format!("{}-moved2", work.images().display()));
    ensure!(outcome.image.starts_with(&last) && !work.images().exists(), "the images are not in {}{}", last.display(), outcome.transcript());
    Ok(())
}
