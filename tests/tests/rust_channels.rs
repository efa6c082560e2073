//! rust_channels (a Rust program: std threads + mpsc channels, built as a binary of this crate).
//! Checkpoint mid-way, SIGKILL, restart: the threads, blocked on channels, must resume and the
//! final result must match the uninterrupted run.

use anyhow::Result;
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};

#[test]
fn rust_channels_checkpoint_kill_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("rust")?;
    let program = Program::native(env!("CARGO_BIN_EXE_rust_channels"), &["60", "30"], &work);
    run_and_verify(&bins, &program, &Options::new(&work, &[15]))?;
    Ok(())
}
