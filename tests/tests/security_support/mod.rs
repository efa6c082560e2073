//! Helpers shared by the security_* tests: a victim and an attacker (throw-away users, root
//! only), commands run as either of them (or as ourselves), ckpt-run / ckpt-restart / ckpt-ctl
//! command lines, a program started with the runtime preloaded but without ckpt-run (to test
//! what the runtime checks itself), and files planted with a given owner and mode.
#![allow(dead_code)]

use anyhow::{bail, Context, Result};
use ckpt_tests::process::{transcript, wait_until};
use ckpt_tests::users::TestUser;
use ckpt_tests::{Bins, Proc, Program, Record};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const T: Duration = Duration::from_secs(60);

/// Two throw-away users (None when the tests do not run as root).
pub struct Users {
    pub victim: TestUser,
    pub attacker: TestUser,
}

/// `let u = victim_and_attacker!();` in a test returning Result: the two users, or the test
/// reports itself skipped (not root) and returns.
macro_rules! victim_and_attacker {
    () => {
        match security_support::two_users()? {
            Some(u) => u,
            None => {
                ckpt_tests::skip_test!("needs root to create a victim and an attacker (useradd)");
                return Ok(());
            }
        }
    };
}
pub(crate) use victim_and_attacker;

pub fn two_users() -> Result<Option<Users>> {
    let Some(victim) = TestUser::create("vic")? else { return Ok(None) };
    let Some(attacker) = TestUser::create("att")? else { return Ok(None) };
    Ok(Some(Users { victim, attacker }))
}

/// A command for `argv` as `who` (None: as ourselves), in `cwd`.
pub fn command(who: Option<&TestUser>, argv: &[OsString], cwd: &Path) -> Command {
    match who {
        Some(u) => u.command(argv, cwd),
        None => ckpt_tests::scenario::user_command(argv, false, cwd),
    }
}

pub fn spawn(who: Option<&TestUser>, label: &str, argv: &[OsString], cwd: &Path) -> Result<Proc> {
    Proc::spawn(label, command(who, argv, cwd))
}

/// Run to completion (a hang is a failure) and record it.
pub fn run(who: Option<&TestUser>, label: &str, argv: &[OsString], cwd: &Path) -> Result<Record> {
    run_cmd(label, command(who, argv, cwd))
}

pub fn run_cmd(label: &str, cmd: Command) -> Result<Record> {
    let mut p = Proc::spawn(label, cmd)?;
    let waited = p.wait(T);
    let rec = p.record();
    match waited {
        Ok(_) => Ok(rec),
        Err(e) => bail!("{e:#} ({label} hung){}", transcript(&[rec])),
    }
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `ckpt-run --dir DIR OPTS -- PROGRAM...`
pub fn ckpt_run_argv(bins: &Bins, dir: &Path, opts: &[&str], prog: &Program) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), dir.into()];
    a.extend(os(opts));
    a.push("--".into());
    a.extend(prog.argv.iter().cloned());
    a
}

/// `ckpt-restart OPTS TARGET`
pub fn restart_argv(bins: &Bins, opts: &[&str], target: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![bins.restart.clone().into()];
    a.extend(os(opts));
    a.push(target.into());
    a
}

/// `ckpt-ctl --dir DIR ARGS`
pub fn ctl_argv(bins: &Bins, dir: &Path, args: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![bins.dir.join("ckpt-ctl").into(), "--dir".into(), dir.into()];
    a.extend(os(args));
    a
}

/// Wait until `p`'s stderr holds `pat`.
pub fn wait_stderr(p: &mut Proc, pat: &str) -> Result<()> {
    if !wait_until(T, || p.stderr().contains(pat) || !p.running()) || !p.stderr().contains(pat) {
        bail!("{} never said {pat:?}{}", p.label(), transcript(&[p.record()]));
    }
    Ok(())
}

/// `prog` run with the runtime preloaded but without ckpt-run, with the launch settings `env`
/// (`dir`, `name`, in ckpt_image::Launch's encoding, given by key): the checks the runtime makes
/// itself, whatever started it.
pub fn preloaded(bins: &Bins, prog: &Program, env: &[(&str, &Path)]) -> Command {
    let hex = |v: &[u8]| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let fields: String = env.iter().map(|(k, v)| format!(";{k}={}", hex(v.as_os_str().as_encoded_bytes()))).collect();
    // The pid is the shell's, which execs the program: hex-encoded by the shell itself.
    let script = format!("{}=\"v1;pid=$(printf %s $$ | od -An -tx1 | tr -d ' \\n'){fields}\"; export {}; exec \"$@\"", ckpt_image::LAUNCH_VAR, ckpt_image::LAUNCH_VAR);
    let mut argv = os(&["sh", "-c", &script, "sh"]);
    argv.extend(prog.argv.iter().cloned());
    let mut cmd = ckpt_tests::scenario::user_command(&argv, false, &prog.cwd);
    cmd.env("LD_PRELOAD", bins.dir.join("libckpt_runtime.so"));
    cmd
}

/// Copy `from` to `to` (replacing it), owned by `owner` (None: ours) with permission `mode`.
pub fn plant(from: &Path, to: &Path, owner: Option<&TestUser>, mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    if let Some(u) = owner {
        u.chown(to)?;
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A file holding `text`, owned by `owner` (None: ours), with permission `mode`.
pub fn file(path: &Path, text: &str, owner: Option<&TestUser>, mode: u32) -> Result<PathBuf> {
    std::fs::write(path, text)?;
    if let Some(u) = owner {
        u.chown(path)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(path.to_path_buf())
}

/// A directory owned by `owner` (None: ours) with permission `mode`.
pub fn dir(path: &Path, owner: Option<&TestUser>, mode: u32) -> Result<PathBuf> {
    std::fs::create_dir_all(path)?;
    if let Some(u) = owner {
        u.chown(path)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(path.to_path_buf())
}

/// Whether `s` holds a control character other than a line end (what a terminal acts on).
pub fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n')
}

/// A complete image of `prog` taken by `who` in `images` (ckpt-run, checkpoint once it printed
/// step 3, SIGKILL). Returns the image path.
pub fn image_of(bins: &Bins, who: Option<&TestUser>, prog: &Program, images: &Path) -> Result<PathBuf> {
    let mut p = spawn(who, "ckpt-run (image maker)", &ckpt_run_argv(bins, images, &[], prog), &prog.cwd)?;
    p.wait_for_step(3, T)?;
    let image = images.join(prog.image_name());
    let r = crate::failures_support::checkpoint(&mut p, &image, T);
    p.kill()?;
    r.map_err(|e| anyhow::anyhow!("{e:#}{}", transcript(&[p.record()])))?;
    Ok(image)
}

/// A restarted (or resumed) counter's output: the uninterrupted result, and it went on rather
/// than started over.
pub fn continued(stdout: &str, expected: &str) -> Result<()> {
    if ckpt_tests::result_of(stdout) != Some(expected) {
        bail!("wrong result (expected {expected}):\n{stdout}");
    }
    if stdout.contains("start counter") || stdout.lines().find_map(ckpt_tests::step_of).is_none_or(|n| n <= 1) {
        bail!("the program started over:\n{stdout}");
    }
    Ok(())
}

/// The uninterrupted result of `prog`.
pub fn expected_result(prog: &Program) -> Result<String> {
    let plain = ckpt_tests::run_plain(prog, false, T)?;
    Ok(ckpt_tests::result_of(&plain.stdout).context("no result line")?.to_string())
}
