//! openmp_loop: an OpenMP (libgomp) parallel reduction over all cores, repeated for many
//! steps. Checkpoint mid-way, SIGKILL, restart: the libgomp thread pool must come back and the
//! result must match the uninterrupted run.

use anyhow::Result;
use ckpt_tests::programs::catalog;
use ckpt_tests::{run_and_verify, Bins, Options, Workdir};

#[test]
fn openmp_checkpoint_kill_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("openmp")?;
    let program = catalog::openmp_loop(&work)?;
    run_and_verify(&bins, &program, &Options::new(&work, &[12]))?;
    Ok(())
}
