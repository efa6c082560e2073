//! counter (single-threaded C): checkpoint mid-way with `kill -USR2`, SIGKILL, `ckpt-restart`;
//! the restarted run must continue where the image was taken and print the uninterrupted run's
//! result. Also: the image is `DIR/counter.ckpt` with mode 0600, and `ckpt-restart DIR` restarts
//! the newest image in DIR.

use anyhow::{ensure, Result};
use ckpt_tests::programs::catalog;
use ckpt_tests::{run_and_verify, Bins, Options, Workdir};
use std::os::unix::fs::PermissionsExt;

#[test]
fn counter_checkpoint_kill_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("counter")?;
    let program = catalog::counter(&work)?;
    let outcome = run_and_verify(&bins, &program, &Options::new(&work, &[15]))?;

    // The image stays in place after the restart, named after the program, mode 0600.
    ensure!(
        outcome.image == work.images().join("counter.ckpt"),
        "unexpected image path {}",
        outcome.image.display()
    );
    let mode = std::fs::metadata(&outcome.image)?.permissions().mode() & 0o7777;
    ensure!(
        mode == 0o600,
        "image {} has mode {mode:o}, expected 600{}",
        outcome.image.display(),
        outcome.transcript()
    );
    Ok(())
}

#[test]
fn counter_restart_from_directory() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("counter-dir")?;
    let program = catalog::counter(&work)?;
    let mut opts = Options::new(&work, &[20]);
    opts.restart_from_dir = true;
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}
