//! Smaller behaviours found on the way (issue 11): a program under `ulimit -v`, the environment
//! the program and its children see, ckpt-run's exit codes.

use anyhow::{ensure, Context, Result};
use ckpt_tests::scenario::user_command;
use ckpt_tests::{checkpoint_kill_restart, run_plain, Bins, Options, Proc, Program, Workdir};
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

/// The lines env_probe printed as `who` (its environment entries and getenv), sorted.
fn env_seen(stdout: &str, who: &str) -> Vec<String> {
    let mut v: Vec<String> = stdout.lines().filter_map(|l| l.strip_prefix(who)?.strip_prefix(' ').map(str::to_string)).collect();
    v.sort();
    v
}

/// The program under ckpt-run, a child it forks and execs, and the program it execs in its own
/// process see the environment ckpt-run was started with: no LD_PRELOAD of ours, no settings
/// of ckpt-run, the user's own LD_PRELOAD and CKPT_* (say from a module file) as they were.
#[test]
fn program_and_children_see_the_environment_ckpt_run_was_started_with() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("env-restored")?;
    let probe = Program::c(&work, "env_probe.c", &[], &[])?;
    let runtime = bins.dir.join("libckpt_runtime.so");
    let runtime = runtime.to_str().context("path")?;
    let path = std::env::var("PATH").unwrap_or_default();
    let users: [&[(&str, &str)]; 3] = [
        &[],
        &[("CKPT_SITE_NOTE", "from a module file"), ("CKPT_KEEP", "3")],
        // A user who preloads something (here the runtime itself: it stays inert in children).
        &[("LD_PRELOAD", runtime), ("CKPT_LOG", "error")],
    ];
    for user in users {
        let mut expected: Vec<String> = user.iter().map(|(k, v)| format!("env {k}={v}")).collect();
        let pre = user.iter().find(|(k, _)| *k == "LD_PRELOAD").map_or("(unset)", |(_, v)| v);
        expected.push(format!("getenv LD_PRELOAD={pre}"));
        expected.sort();
        let mut argv: Vec<std::ffi::OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into()];
        argv.extend(probe.argv.iter().cloned());
        let mut cmd = user_command(&argv, false, work.path());
        cmd.env_clear().env("PATH", &path).envs(user.iter().copied());
        let out = cmd.output()?;
        let so = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "ckpt-run env_probe with {user:?}: {}\n{so}{}", out.status, String::from_utf8_lossy(&out.stderr));
        for who in ["program", "child", "exec"] {
            let seen = env_seen(&so, who);
            ensure!(seen == expected, "with the user's environment {user:?}, {who} saw {seen:?}, expected {expected:?}");
        }
    }
    Ok(())
}

/// The last step line in `s`.
fn last_step(s: &str) -> Option<u64> {
    s.lines().rev().find_map(ckpt_tests::step_of)
}

/// The first step a run printed, and its result line.
fn first_step_and_result(stdout: &str) -> (Option<u64>, Option<String>) {
    let first = stdout.lines().find_map(|l| l.strip_prefix("step ")?.split_whitespace().next()?.parse().ok());
    (first, ckpt_tests::result_of(stdout).map(str::to_string))
}

/// A ckpt-run started by a program under ckpt-run is a run of its own: its images go to its own
/// directory (here the default, its working directory) under its own program's name, the outer
/// run's directory holds only the outer program's files, and both images restart and finish
/// where they left off.
#[test]
fn nested_ckpt_run_is_a_run_of_its_own() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("nested-run")?;
    let outer_dir = work.subdir("outer")?;
    let counter = ckpt_tests::programs::compile_c(&work, "counter.c", &[])?;
    let nested = ckpt_tests::programs::compile_c(&work, "nested_run.c", &[])?;
    let run = bins.run.to_str().context("path")?;
    let (counter_s, nested_s) = (counter.to_str().context("path")?, nested.to_str().context("path")?);
    let plain_inner = run_plain(&Program::native(&counter, &["300", "0"], &work), false, T)?;
    let plain_outer = run_plain(&Program::native(&nested, &["300", "0", "true"], &work), false, T)?;

    let argv: Vec<std::ffi::OsString> =
        // The outer run without a namespace: in one, the nested run's processes would be in the
        // outer process tree, whose checkpoint they refuse (they are not its members).
        [run, "--dir", outer_dir.to_str().context("path")?, "--no-namespace", "--", nested_s, "300", "30", run, "--", counter_s, "300", "30"].iter().map(Into::into).collect();
    let mut outer = Proc::spawn("ckpt-run nested_run", user_command(&argv, false, work.path()))?;
    outer.wait_for_step(10, T)?;
    let nested_out = work.join("nested.out");
    let inner_at = |min: u64| std::fs::read_to_string(&nested_out).ok().and_then(|s| last_step(&s)).is_some_and(|s| s >= min);
    ensure!(ckpt_tests::process::wait_until(T, || inner_at(10)), "the nested program did not run: {:?}", std::fs::read_to_string(&nested_out));

    let ctl = |dir: &std::path::Path, args: &[&str]| -> Result<String> {
        let mut argv: Vec<std::ffi::OsString> = vec![bins.dir.join("ckpt-ctl").into(), "--dir".into(), dir.into()];
        argv.extend(args.iter().map(Into::into));
        let o = user_command(&argv, false, work.path()).output()?;
        ensure!(o.status.success(), "ckpt-ctl --dir {} {args:?}: {}: {}", dir.display(), o.status, String::from_utf8_lossy(&o.stderr));
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let inner_image = ctl(work.path(), &["--name", "counter", "checkpoint", "--wait"])?;
    let outer_image = ctl(&outer_dir, &["checkpoint", "--wait"])?;
    let inner_pid: i32 = ctl(work.path(), &["--name", "counter", "status"])?
        .lines()
        .find_map(|l| l.strip_prefix("pid: ")?.trim().parse().ok())
        .context("no pid in ckpt-ctl status")?;
    let inner_step = std::fs::read_to_string(&nested_out).ok().and_then(|s| last_step(&s)).unwrap_or(0);
    let outer_step = outer.last_step().unwrap_or(0);
    // SAFETY: a plain kill of the nested program's pid.
    unsafe { libc::kill(inner_pid, libc::SIGKILL) };
    outer.kill()?;
    ensure!(inner_image.trim() == work.join("counter.ckpt").to_str().context("path")?, "nested image: {inner_image}");
    ensure!(outer_image.trim() == outer_dir.join("nested_run.ckpt").to_str().context("path")?, "outer image: {outer_image}");
    let outer_files: Vec<String> = std::fs::read_dir(&outer_dir)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    ensure!(outer_files.iter().all(|f| f.starts_with("nested_run.")), "the outer run's directory holds {outer_files:?}");

    for (image, plain, at) in [(work.join("counter.ckpt"), &plain_inner, inner_step), (outer_dir.join("nested_run.ckpt"), &plain_outer, outer_step)] {
        let mut r = Proc::spawn("ckpt-restart", user_command(&[bins.restart.clone().into(), image.clone().into()], false, work.path()))?;
        let st = r.wait(T)?;
        let (first, result) = first_step_and_result(&r.stdout());
        ensure!(st.success(), "restart of {}: {st}: {}", image.display(), r.stderr());
        ensure!(first.is_some_and(|f| f > 10 && f <= at + 1), "restart of {} started at step {first:?} (checkpoint after step {at})", image.display());
        ensure!(result == ckpt_tests::result_of(&plain.stdout).map(str::to_string), "restart of {}: result {result:?}, expected {:?}", image.display(), ckpt_tests::result_of(&plain.stdout));
    }
    Ok(())
}

/// A program that replaces itself by another in its own process (a wrapper's `exec app`)
/// stays managed: the new program is checkpointed, killed and restarted like the first.
#[test]
fn a_program_exec_ed_in_place_stays_checkpointable() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("exec-in-place")?;
    let counter = ckpt_tests::programs::compile_c(&work, "counter.c", &[])?;
    let script = format!("exec {} 200 30", counter.to_str().context("path")?);
    let program = Program::native("/bin/sh", &["-c", &script], &work);
    ckpt_tests::run_and_verify(&bins, &program, &Options::new(&work, &[10]))?;
    Ok(())
}
