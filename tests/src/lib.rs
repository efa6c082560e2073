//! Harness for the ckpt end-to-end tests.
//!
//! The integration tests in `tests/tests/` treat ckpt as a user would: they compile small
//! deterministic programs (`tests/programs/`), run them once uninterrupted for the reference
//! output, then run them under `ckpt-run`, take a checkpoint with `kill -USR2`, SIGKILL them,
//! restart the image with `ckpt-restart` and check that the restarted run continued (did not start
//! over) and printed exactly what the uninterrupted run printed.
//!
//! Output protocol of every test program (what [`check`] parses):
//! * first line `start <name> ...`,
//! * then progress lines `step <N> ...` with N increasing from 1, each written in one `write`,
//! * last line `result <value>`, which depends on all the work done.
//!
//! Modules:
//! * [`workdir`]: per-test scratch directories (world-writable and sticky, removed at the end),
//! * [`users`]: throw-away users for tests about what one user can do to another (root only),
//! * [`programs`]: building and describing the test programs,
//! * [`process`]: child processes with captured output, timeouts and transcripts,
//! * [`scenario`]: the ckpt binaries and the checkpoint / SIGKILL / restart scenarios,
//! * [`check`]: parsing the output and verifying a restarted run against the reference,
//! * [`skip`]: reporting a test that cannot run here as skipped (never as passed),
//! * [`trees`]: process-tree scenarios shared by several test files.

pub mod check;
pub mod data;
pub mod process;
pub mod ring;
pub mod programs;
pub mod scenario;
pub mod skip;
pub mod trees;
pub mod users;
pub mod workdir;

pub use check::{check_protocol, clean_failure, result_of, step_of};
pub use data::random_bytes;
pub use process::{Proc, Record};
pub use programs::Program;
pub use scenario::{
    checkpoint_and_kill, checkpoint_kill_restart, run_and_verify, run_plain, run_restart, Bins, Options, Outcome,
    Timeouts,
};
pub use skip::skip;
pub use workdir::Workdir;
