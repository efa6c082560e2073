//! Smaller behaviours found on the way (issue 11): a program under `ulimit -v`, the environment
//! the program and its children see, ckpt-run's exit codes.

use anyhow::{ensure, Context, Result};
use ckpt_tests::scenario::user_command;
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

/// ckpt-run's exit status: 2 for a bad command line (as clap's own errors), 125 when ckpt-run
/// itself fails, 126 when the program cannot be run, 127 when it does not exist, else the
/// program's own. Each failure is one `ckpt-run:` line.
#[test]
fn ckpt_run_exit_status_tells_usage_errors_from_the_program() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("run-exit")?;
    let not_exec = work.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n")?;
    let dir = work.images();
    let dir = dir.to_str().context("path")?;
    let bad_dir = "/proc/self/no-such-dir";
    let ne = not_exec.to_str().context("path")?;
    // (arguments, exit status, whether ckpt-run says one `ckpt-run:` line: clap's own usage
    // errors have their own form, the program speaks for itself)
    let cases: [(&[&str], i32, bool); 9] = [
        (&["--dir", dir, "--signal", "NOPE", "--", "true"], 2, true),
        (&["--dir", dir, "--signal", "0", "--", "true"], 2, true),
        (&["--dir", dir, "--interval", "10x", "--", "true"], 2, true),
        (&["--dir", dir, "--signal", "USR1", "--stop-signal", "SIGUSR1", "--", "true"], 2, true),
        (&["--dir", dir, "--keep", "0", "--", "true"], 2, false),
        (&["--dir", bad_dir, "--", "true"], 125, true),
        (&["--dir", dir, "--", ne], 126, true),
        (&["--dir", dir, "--", "/no/such/program"], 127, true),
        (&["--dir", dir, "--", "sh", "-c", "exit 7"], 7, false),
    ];
    for (args, want, one_line) in cases {
        let mut argv: Vec<std::ffi::OsString> = vec![bins.run.clone().into()];
        argv.extend(args.iter().map(Into::into));
        let out = user_command(&argv, false, work.path()).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(want), "ckpt-run {args:?}: {}, expected {want}: {err}", out.status);
        ensure!(!one_line || (err.lines().count() == 1 && err.starts_with("ckpt-run: ")), "ckpt-run {args:?}: {err}");
    }
    Ok(())
}
