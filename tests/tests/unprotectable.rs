//! Programs the runtime cannot be loaded into (issue 11): a statically linked program, a setuid
//! or setgid one (the dynamic loader ignores LD_PRELOAD for it) would run unprotected, and the
//! first checkpoint signal would kill it. ckpt-run refuses them with one line and exit status 2
//! (also when found through PATH, and for a `#!` script whose interpreter is such a program);
//! with --unprotected (or CKPT_UNPROTECTED=1) it warns in one line and runs them without the
//! runtime.

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::{is_root, user_command};
use ckpt_tests::{run_plain, skip_test, Bins, Proc, Program, Workdir};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const REFUSED: &str = ": the ckpt runtime cannot be loaded into it, so it could not be checkpointed (--unprotected runs it anyway, without checkpoints)";

/// counter.c linked statically, or None when this machine has no static libc.
fn static_counter(work: &Workdir) -> Result<Option<PathBuf>> {
    match compile_c(work, "counter.c", &["-static"]) {
        Ok(p) => Ok(Some(p)),
        Err(e) if Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() => Err(e),
        Err(_) => Ok(None),
    }
}

/// `ckpt-run ARGS...` to completion, with extra environment.
fn ckpt_run(bins: &Bins, work: &Workdir, args: &[&str], env: &[(&str, &str)]) -> Result<ckpt_tests::Record> {
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into()];
    argv.extend(args.iter().map(OsString::from));
    let mut cmd = user_command(&argv, false, work.path());
    cmd.envs(env.iter().copied());
    let mut p = Proc::spawn("ckpt-run", cmd)?;
    p.wait(Duration::from_secs(60))?;
    Ok(p.record())
}

/// Refused: exit status 2, exactly `line` on stderr, nothing run.
fn refused(rec: &ckpt_tests::Record, line: &str) -> Result<()> {
    ensure!(rec.status.and_then(|s| s.code()) == Some(2), "exit status {:?}, expected 2\n{rec}", rec.status);
    ensure!(rec.stderr == format!("{line}\n"), "stderr is not the one line {line:?}\n{rec}");
    ensure!(rec.stdout.is_empty(), "the program ran\n{rec}");
    Ok(())
}

#[test]
fn static_programs_are_refused_or_run_unprotected_by_option() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("unprotectable-static")?;
    let Some(exe) = static_counter(&work)? else {
        skip_test!("no static libc here (libc.a): cannot build a static program");
        return Ok(());
    };
    let path = exe.to_str().context("path")?;
    let why = format!("{path} is statically linked");

    // Refused, by path and through PATH.
    refused(&ckpt_run(&bins, &work, &["--", path, "5", "10"], &[])?, &format!("ckpt-run: {why}{REFUSED}"))?;
    let search = format!("{}:{}", work.path().display(), std::env::var("PATH").unwrap_or_default());
    refused(&ckpt_run(&bins, &work, &["--", "counter", "5", "10"], &[("PATH", &search)])?, &format!("ckpt-run: {why}{REFUSED}"))?;

    // A script run by it.
    let script = work.join("run.sh");
    std::fs::write(&script, format!("#!{path} 5\n"))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let line = format!("ckpt-run: {} is a script for {path}, which is statically linked{REFUSED}", script.display());
    refused(&ckpt_run(&bins, &work, &["--", script.to_str().context("path")?], &[])?, &line)?;

    // --unprotected (or CKPT_UNPROTECTED=1): one warning, and the program runs as without ckpt.
    let plain = run_plain(&Program::native(&exe, &["5", "10"], &work), false, Duration::from_secs(60))?;
    let warning = format!("ckpt-run: warning: {why}: running it without the ckpt runtime (--unprotected): no checkpoint will be taken, and a checkpoint signal would end it\n");
    for (args, env) in [(vec!["--unprotected", "--", path, "5", "10"], vec![]), (vec!["--", path, "5", "10"], vec![("CKPT_UNPROTECTED", "1")])] {
        let rec = ckpt_run(&bins, &work, &args, &env)?;
        ensure!(rec.success() && rec.stdout == plain.stdout, "the program did not run as without ckpt\n{rec}");
        ensure!(rec.stderr == warning, "expected the one warning {warning:?}\n{rec}");
    }
    Ok(())
}

#[test]
fn setuid_and_setgid_programs_are_refused() -> Result<()> {
    if !is_root() {
        skip_test!("needs root to give a program to another user (chown)");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("unprotectable-setid")?;
    let exe = compile_c(&work, "counter.c", &[])?;
    for (name, mode, line) in [("suid", 0o4755, "is setuid (it runs as uid 65534)"), ("sgid", 0o2755, "is setgid (it runs as gid 65534)")] {
        let copy = work.join(name);
        std::fs::copy(&exe, &copy)?;
        std::os::unix::fs::chown(&copy, Some(65534), Some(65534))?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(mode))?;
        let path = copy.to_str().context("path")?;
        refused(&ckpt_run(&bins, &work, &["--", path, "5", "10"], &[])?, &format!("ckpt-run: {path} {line}{REFUSED}")).with_context(|| name.to_string())?;
    }
    // The same program without the bits is run under ckpt as usual.
    let rec = ckpt_run(&bins, &work, &["--", exe.to_str().context("path")?, "5", "10"], &[])?;
    ensure!(rec.success() && rec.stderr.is_empty() && rec.stdout.contains("result "), "{rec}");
    Ok(())
}
