//! bigheap: 256 MiB of incompressible, constantly mutated heap. Checkpoint mid-way, SIGKILL,
//! restart: the final hash of the whole buffer must match the uninterrupted run.

use anyhow::Result;
use ckpt_tests::programs::catalog;
use ckpt_tests::{run_and_verify, Bins, Options, Workdir};

#[test]
fn bigheap_256mib_checkpoint_kill_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bigheap")?;
    let program = catalog::bigheap(&work, 256)?;
    run_and_verify(&bins, &program, &Options::new(&work, &[10]))?;
    Ok(())
}
