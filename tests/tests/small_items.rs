//! Smaller behaviours found on the way (issue 11): a program under `ulimit -v`, the environment
//! the program and its children see, ckpt-run's exit codes.

use anyhow::{ensure, Context, Result};
use ckpt_tests::{checkpoint_kill_restart, run_plain, Bins, Options, Program, Workdir};
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// The address space a run of vm_limit had at most, from the line it prints on stderr.
fn vmpeak_kib(stderr: &str) -> Result<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("vmpeak_kib ")?.trim().parse().ok())
        .with_context(|| format!("no vmpeak_kib line in {stderr:?}"))
}

/// A program that reserves 1.1 GiB of address space (little of it touched) runs, checkpoints
/// and restarts under an address-space limit only a little above what it needs natively: the
/// runtime reserves nothing until a checkpoint needs it, and the restarter fits too.
#[test]
fn runs_checkpoints_and_restarts_under_ulimit_v_it_fits_natively() -> Result<()> {
    const MARGIN_KIB: u64 = 48 << 10;
    let bins = Bins::locate()?;
    let work = Workdir::new("vm-limit")?;
    let program = Program::c(&work, "vm_limit.c", &[], &["1100", "150", "30"])?;
    let plain = run_plain(&program, false, T)?;
    let native = vmpeak_kib(&plain.stderr)?;
    let mut opts = Options::new(&work, &[20]);
    opts.address_limit = Some((native + MARGIN_KIB) << 10);
    let outcome = checkpoint_kill_restart(&bins, &program, &opts)?;
    outcome.verify(&plain)?;
    let restarted = vmpeak_kib(&outcome.last().stderr)?;
    ensure!(
        restarted <= native + MARGIN_KIB,
        "the restarted program had {restarted} KiB of address space, over the limit of {} KiB",
        native + MARGIN_KIB
    );
    Ok(())
}
