//! Helpers shared by the failures_* tests: ckpt-inspect runs and their judgement, repeated
//! checkpoints of one process, and image file identities. Built on the ckpt_tests harness.
#![allow(dead_code)]

use anyhow::{bail, Result};
use ckpt_tests::process::transcript;
use ckpt_tests::scenario::{user_command, Cycle, ImageInfo};
use ckpt_tests::{Bins, Proc, Program, Record};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const POLL: Duration = Duration::from_millis(10);

/// The ckpt-inspect binary next to ckpt-run.
pub fn inspect_bin(bins: &Bins) -> PathBuf {
    bins.dir.join("ckpt-inspect")
}

/// Run a command to completion (killed after `timeout`: a hang is a failure) and record it.
pub fn run_tool(label: &str, argv: &[OsString], cwd: &Path, timeout: Duration) -> Result<Record> {
    let mut p = Proc::spawn(label, user_command(argv, false, cwd))?;
    let waited = p.wait(timeout);
    let rec = p.record();
    match waited {
        Ok(_) => Ok(rec),
        Err(e) => bail!("{e:#} ({label} hung){}", transcript(&[rec])),
    }
}

/// `ckpt-inspect ARGS... IMAGE`.
pub fn inspect(bins: &Bins, args: &[&str], image: &Path, cwd: &Path) -> Result<Record> {
    let mut argv: Vec<OsString> = vec![inspect_bin(bins).into()];
    argv.extend(args.iter().map(OsString::from));
    argv.push(image.into());
    run_tool("ckpt-inspect", &argv, cwd, Duration::from_secs(60))
}

/// A tool on bad input: non-zero exit (not a signal), exactly one stderr line starting with
/// `<tool>:`, no panic, nothing on stdout.
pub fn clean_tool_failure(rec: &Record, tool: &str) -> std::result::Result<String, String> {
    let mut problems = Vec::new();
    match rec.status.and_then(|s| s.code()) {
        Some(0) => problems.push("exit status 0, expected non-zero".to_string()),
        Some(_) => {}
        None => problems.push(format!("did not exit normally: {:?}", rec.status)),
    }
    let lines: Vec<&str> = rec.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        problems.push(format!("stderr has {} lines, expected exactly one", lines.len()));
    }
    if !lines.first().is_some_and(|l| l.starts_with(&format!("{tool}:"))) {
        problems.push(format!("stderr does not start with `{tool}:`"));
    }
    if rec.stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    if !rec.stdout.is_empty() {
        problems.push("it printed on stdout".to_string());
    }
    if problems.is_empty() {
        Ok(lines[0].to_string())
    } else {
        Err(format!("{}\n{rec}", problems.join("; ")))
    }
}

/// `ckpt-run --dir images -- program...`, running.
pub fn start_under_ckpt(bins: &Bins, program: &Program, images: &Path) -> Result<Proc> {
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), images.into(), "--".into()];
    argv.extend(program.argv.iter().cloned());
    Proc::spawn(&format!("ckpt-run {}", program.name), user_command(&argv, false, &program.cwd))
}

/// The temporary images of `image_name` in `dir` (`<image_name>.tmp.<random>`: what a
/// checkpoint in progress writes, or a failed one left behind).
pub fn temporaries(dir: &Path, image_name: &str) -> Vec<PathBuf> {
    let prefix = format!("{image_name}.tmp.");
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
}

/// The temporary image of `image_name` in `dir` once it holds more than `min` bytes.
pub fn growing_temporary(dir: &Path, image_name: &str, min: u64) -> Option<PathBuf> {
    temporaries(dir, image_name).into_iter().find(|t| std::fs::metadata(t).is_ok_and(|m| m.len() > min))
}

/// Identity of one version of a file (a checkpoint replaces the image by rename: new inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i64,
}

pub fn version(path: &Path) -> Option<Version> {
    let m = std::fs::metadata(path).ok()?;
    Some(Version { ino: m.ino(), len: m.len(), mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec() })
}

/// Send the checkpoint signal and wait (up to `timeout`) for a new version of `image`.
pub fn checkpoint(p: &mut Proc, image: &Path, timeout: Duration) -> Result<Cycle> {
    let before = version(image);
    let signalled_after_step = p.last_step().unwrap_or(0);
    p.signal(libc::SIGUSR2)?;
    let deadline = Instant::now() + timeout;
    loop {
        // A program that ends while its checkpoint is written waits for the image: look at the
        // image once more after noticing the exit.
        let exited = !p.running();
        if let Some(now) = version(image) {
            if Some(now) != before {
                let m = std::fs::metadata(image)?;
                return Ok(Cycle { signalled_after_step, image: ImageInfo { mode: m.mode() & 0o7777, uid: m.uid(), len: m.len() } });
            }
        }
        if exited {
            bail!("{} exited after the checkpoint signal, before a new image appeared", p.label());
        }
        if Instant::now() >= deadline {
            bail!("timeout: no new image {} within {timeout:?} after the checkpoint signal", image.display());
        }
        std::thread::sleep(POLL);
    }
}

/// The snapshot writers of `pid` (the children of its threads: the program's own children too,
/// for programs that have some).
pub fn snapshot_writers(pid: i32) -> Vec<i32> {
    // The program: `pid` itself, or under its init when it runs in a namespace of its own.
    ckpt_tests::process::children(ckpt_tests::process::program_pid(pid))
}
