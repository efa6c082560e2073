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
