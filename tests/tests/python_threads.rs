//! py_counter.py under the real python3 interpreter (from PATH, run with -u), with a second
//! threading.Thread. Checkpoint mid-way, SIGKILL, restart: both threads must resume. The image
//! is named after the interpreter binary (e.g. python3.11.ckpt).

use anyhow::Result;
use ckpt_tests::programs::catalog;
use ckpt_tests::{run_and_verify, Bins, Options, Workdir};

#[test]
fn python_threads_checkpoint_kill_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("python")?;
    let program = catalog::py_counter(&work)?;
    run_and_verify(&bins, &program, &Options::new(&work, &[15]))?;
    Ok(())
}
