//! threads_mutex: 8 pthreads in strict round robin on a mutex + condition variable, each with
//! thread-local (__thread) state. Checkpoint mid-way, SIGKILL, restart: every thread must come
//! back with its thread-local state and the turn order must continue.

use anyhow::Result;
use ckpt_tests::programs::catalog;
use ckpt_tests::{run_and_verify, Bins, Options, Workdir};

#[test]
fn threads_mutex_checkpoint_kill_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("threads")?;
    let program = catalog::threads_mutex(&work)?;
    run_and_verify(&bins, &program, &Options::new(&work, &[60]))?;
    Ok(())
}
