//! `scripts/install --prefix DIR` as a cluster's software tree uses it: installed without root
//! (as user nobody when the tests run as root) into a prefix of the user's own, then ckpt's
//! module file is loaded with Debian's Lmod and with Debian's environment-modules in a clean
//! shell (`env -i`, `bash --noprofile --norc`: no ckpt command before the module is loaded, and
//! then only the installed ones), where the man pages and completions are found and the
//! installed demo checkpoints, SIGKILLs and restarts a counter that goes on counting.
//! The module systems come from scripts/module-systems (.ci/run runs it); where one is missing,
//! its test is skipped, saying why.

use anyhow::{ensure, Context, Result};
use ckpt_tests::process::transcript;
use ckpt_tests::scenario::{is_root, user_command};
use ckpt_tests::{skip_test, Bins, Proc, Record, Workdir};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const COMMANDS: [&str; 4] = ["ckpt-run", "ckpt-restart", "ckpt-ctl", "ckpt-inspect"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run `argv` (as nobody when we are root) to its end, within `secs`.
fn run(label: &str, argv: &[OsString], cwd: &Path, secs: u64) -> Result<Record> {
    let mut p = Proc::spawn(label, user_command(argv, true, cwd))?;
    let waited = p.wait(Duration::from_secs(secs));
    let rec = p.record();
    waited.with_context(|| format!("{label} did not finish{}", transcript(std::slice::from_ref(&rec))))?;
    Ok(rec)
}

/// ckpt installed into `work/prefix` from the build under test.
fn install(work: &Workdir) -> Result<PathBuf> {
    let bins = Bins::locate()?;
    let prefix = work.join("prefix");
    let argv: Vec<OsString> = vec![repo().join("scripts/install").into(), "--prefix".into(), prefix.clone().into(), "--from".into(), bins.dir.into()];
    let rec = run("scripts/install", &argv, work.path(), 300)?;
    ensure!(rec.success(), "scripts/install failed{}", transcript(&[rec]));
    Ok(prefix)
}

#[test]
fn install_lays_out_the_prefix_without_root() -> Result<()> {
    let work = Workdir::new("install")?;
    let prefix = install(&work)?;
    let mode = |p: &str| std::fs::metadata(prefix.join(p)).map(|m| m.permissions().mode() & 0o7777).with_context(|| format!("{p} is not installed"));
    for c in COMMANDS {
        ensure!(mode(&format!("bin/{c}"))? == 0o755, "bin/{c}");
        ensure!(mode(&format!("share/man/man1/{c}.1"))? == 0o644, "share/man/man1/{c}.1");
        let completion = std::fs::read_to_string(prefix.join(format!("share/bash-completion/completions/{c}")))?;
        ensure!(completion.contains("complete -F ") && completion.contains(c), "completion of {c}:\n{completion}");
    }
    mode("lib/libckpt_runtime.so")?;
    for t in ["signal", "walltime-requeue", "periodic-resubmit"] {
        let ours = std::fs::read(repo().join(format!("scripts/slurm/{t}.sbatch")))?;
        ensure!(std::fs::read(prefix.join(format!("share/ckpt/slurm/{t}.sbatch")))? == ours, "Slurm template {t}");
    }
    let lua = std::fs::read_to_string(prefix.join("share/lmod/ckpt/0.1.0.lua"))?;
    let tcl = std::fs::read_to_string(prefix.join("share/modulefiles/ckpt/0.1.0"))?;
    ensure!(tcl.starts_with("#%Module"), "Tcl module file:\n{tcl}");
    for m in [&lua, &tcl] {
        ensure!(m.contains(&prefix.display().to_string()), "module file without the prefix:\n{m}");
    }
    let page = std::fs::read_to_string(prefix.join("share/man/man1/ckpt-run.1"))?;
    ensure!(page.contains(".TH ckpt-run 1") && page.contains("[OPTIONS] \\-\\- PROGRAM [ARGS]"), "man page of ckpt-run:\n{page}");
    // Made from the same definitions as --help: every option --help shows is in both.
    for c in COMMANDS {
        let help = std::process::Command::new(prefix.join("bin").join(c)).arg("--help").output()?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        let page = std::fs::read_to_string(prefix.join(format!("share/man/man1/{c}.1")))?;
        let completion = std::fs::read_to_string(prefix.join(format!("share/bash-completion/completions/{c}")))?;
        let options: Vec<&str> = help.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-')).filter(|w| w.starts_with("--") && w.len() > 2).collect();
        ensure!(options.len() >= 2, "{c} --help shows no options:\n{help}");
        for o in options {
            ensure!(page.contains(&o.replace('-', "\\-")) && completion.contains(o), "{c}: {o} is in --help but not in its man page or completion");
        }
    }
    // No root: every installed file belongs to the user who ran scripts/install.
    if is_root() {
        use std::os::unix::fs::MetadataExt;
        ensure!(std::fs::metadata(prefix.join("bin/ckpt-run"))?.uid() == ckpt_tests::scenario::NOBODY, "installed as nobody");
    }
    Ok(())
}

/// In a clean shell: `setup` makes the `module` command, then the module is loaded and used.
fn clean_shell_demo(work: &Workdir, prefix: &Path, setup: &str) -> Result<()> {
    let p = prefix.display();
    let script = format!(
        r#"set -eu
{setup}
if command -v ckpt-run; then echo "ckpt-run found before the module is loaded"; exit 1; fi
module load ckpt
echo "found $(command -v ckpt-run) $(command -v ckpt-restart)"
echo "root $CKPT_ROOT"
if command -v man >/dev/null; then echo "man $(man -w ckpt-run) $(man -w ckpt-inspect)"; fi
case ":$XDG_DATA_DIRS:" in *":{p}/share:"*) ;; *) echo "XDG_DATA_DIRS=$XDG_DATA_DIRS"; exit 1 ;; esac
. "{p}/share/bash-completion/completions/ckpt-run"
complete -p ckpt-run
"$CKPT_ROOT/share/ckpt/demo"
module unload ckpt
if command -v ckpt-run; then echo "ckpt-run still found after unloading"; exit 1; fi
echo unloaded
"#
    );
    let home = work.join("home");
    std::fs::create_dir_all(&home)?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777))?;
    let argv: Vec<OsString> = ["env", "-i"]
        .iter()
        .map(OsString::from)
        .chain([format!("HOME={}", home.display()).into(), "PATH=/usr/bin:/bin".into(), "bash".into(), "--noprofile".into(), "--norc".into(), "-c".into(), script.into()])
        .collect();
    let rec = run("clean shell", &argv, work.path(), 300)?;
    let out = rec.lines();
    let fail = |what: &str| format!("{what}{}", transcript(std::slice::from_ref(&rec)));
    ensure!(rec.success(), "{}", fail("the clean shell failed"));
    let found = format!("found {p}/bin/ckpt-run {p}/bin/ckpt-restart");
    ensure!(out.contains(&found.as_str()) && out.contains(&format!("root {p}").as_str()), "{}", fail("the module did not give the installed commands"));
    if let Some(man) = out.iter().find(|l| l.starts_with("man ")) {
        ensure!(*man == format!("man {p}/share/man/man1/ckpt-run.1 {p}/share/man/man1/ckpt-inspect.1"), "{}", fail("man did not find the installed pages"));
    }
    ensure!(out.iter().any(|l| l.starts_with("complete ") && l.contains(" -F ") && l.ends_with(" ckpt-run")), "{}", fail("no completion for ckpt-run"));
    // The demo: counting, a checkpoint, SIGKILL, and the restart goes on where the image was taken.
    let at = out.iter().position(|l| l.starts_with("== ckpt-restart")).with_context(|| fail("the demo did not restart"))?;
    let before: Vec<u32> = out[..at].iter().filter_map(|l| l.parse().ok()).collect();
    let after: Vec<u32> = out[at + 1..].iter().filter_map(|l| l.parse().ok()).collect();
    ensure!(before.first() == Some(&1) && after.first().is_some_and(|&n| n > 1), "{}", fail("the restarted counter started over"));
    ensure!(after.windows(2).all(|w| w[1] == w[0] + 1) && after.last() == Some(&30), "{}", fail("the restarted counter did not count on to 30"));
    ensure!(out[at + 1..].contains(&"done") && out.last() == Some(&"unloaded"), "{}", fail("the demo did not finish"));
    Ok(())
}

/// Debian's Lmod: the lmod package's command, or its copy that scripts/module-systems unpacks.
fn lmod() -> Option<PathBuf> {
    let unpacked = std::env::var_os("CKPT_LMOD_DIR").map_or_else(|| PathBuf::from("/opt/ckpt-lmod"), PathBuf::from);
    [PathBuf::from("/usr/share/lmod/lmod/libexec/lmod"), unpacked.join("usr/share/lmod/lmod/libexec/lmod")].into_iter().find(|p| p.is_file())
}

#[test]
fn install_lmod_module_runs_the_demo_in_a_clean_shell() -> Result<()> {
    let Some(lmod) = lmod() else {
        skip_test!("Lmod is not here (scripts/module-systems install unpacks Debian's lmod; .ci/run runs it)");
        return Ok(());
    };
    let work = Workdir::new("install-lmod")?;
    let prefix = install(&work)?;
    // What Lmod's init/bash defines `module` as.
    let setup = format!("module() {{ eval \"$({} bash \"$@\")\"; }}\nexport MODULEPATH={}/share/lmod", lmod.display(), prefix.display());
    clean_shell_demo(&work, &prefix, &setup)
}

#[test]
fn install_environment_modules_module_runs_the_demo_in_a_clean_shell() -> Result<()> {
    let init = Path::new("/usr/share/modules/init/bash");
    if !init.is_file() {
        skip_test!("environment-modules is not installed (Debian package environment-modules; scripts/module-systems install, which .ci/run runs, installs it)");
        return Ok(());
    }
    let work = Workdir::new("install-envmod")?;
    let prefix = install(&work)?;
    let setup = format!(". {}\nmodule use {}/share/modulefiles", init.display(), prefix.display());
    clean_shell_demo(&work, &prefix, &setup)
}
