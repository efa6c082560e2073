//! Shared memory in the default (forked) checkpoint: fork freezes private memory only, so the
//! snapshot child copies the shared memory while the program's threads are still stopped
//! (runtime/src/freeze.rs). shared_rewrite rewrites every word of its shared regions at every
//! step and checks, first, that they hold what the previous step wrote: an image that mixes two
//! steps makes the restarted run count bad words, and its result differs from an uninterrupted
//! run's. The result also covers the file and the memfd read back with read(2).
//! - a MAP_SHARED file mapping and a read-only MAP_PRIVATE view of the same file (whose pages
//!   are the file's): the image must equal the memory at the checkpoint, and the restart must
//!   not refuse the view because the file changed after the checkpoint (the image restores it);
//! - shared anonymous memory, a memfd (with a read-only MAP_PRIVATE view, which after a restart
//!   must still see later writes through the shared mapping) and POSIX shm: the checkpoint is
//!   written by the snapshot, not with the program stopped throughout (the old fallback);
//! - the same as user nobody.

use anyhow::{ensure, Context, Result};
use ckpt_tests::scenario::{effective_uid, user_command};
use ckpt_tests::{run_and_verify, run_plain, Bins, Options, Outcome, Proc, Program, Workdir};
use std::ffi::OsString;
use std::time::Duration;

mod failures_support;
use failures_support::checkpoint;

const FALLBACK: &str = "written without a snapshot";

fn program(work: &Workdir, kinds: &str) -> Result<Program> {
    Program::c(work, "shared_rewrite.c", &[], &[kinds, "8", "150", "4"])
}

/// Set the file's modification time one minute ahead (as writeback does, later, to a file
/// written through a shared mapping).
fn touch_ahead(path: &std::path::Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let t = [libc::timespec { tv_sec: now + 60, tv_nsec: 0 }; 2];
    // SAFETY: a valid path and two timespecs.
    ensure!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), 0) } == 0, "cannot set the mtime of {}", path.display());
    Ok(())
}

#[test]
fn shared_file_mapping_and_its_private_view_are_frozen() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("shared-fork-file")?;
    let program = program(&work, "file")?;
    let image = work.images().join(program.image_name());
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into()];
    argv.extend(program.argv.iter().cloned());
    let mut cmd = user_command(&argv, false, &program.cwd);
    cmd.env("CKPT_LOG", "info");
    let mut p = Proc::spawn("ckpt-run shared_rewrite", cmd)?;
    p.wait_for_step(30, Duration::from_secs(60))?;
    let cycle = checkpoint(&mut p, &image, Duration::from_secs(120))?;
    // The program rewrites the file after the checkpoint; its modification time moves on.
    touch_ahead(&work.join(&format!("shared-{}.bin", p.pid())))?;
    p.kill()?;
    let rec = p.record();
    ensure!(!rec.stderr.contains(FALLBACK), "the checkpoint was written with the program stopped\n{rec}");

    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut r = Proc::spawn("ckpt-restart", user_command(&argv, false, work.path()))?;
    let (plain, waited) = std::thread::scope(|s| {
        let plain = s.spawn(|| run_plain(&program, false, Duration::from_secs(120)));
        (plain.join().expect("plain run thread"), r.wait(Duration::from_secs(120)))
    });
    waited?;
    let outcome = Outcome { records: vec![rec, r.record()], cycles: vec![cycle], extra: vec![], image, uid: effective_uid(false) };
    outcome.verify(&plain?)
}

/// Shared anonymous memory, a memfd and a POSIX shm object, checkpointed by the snapshot
/// (or, with `env`, however it says).
fn shared_memory_with(tag: &str, kinds: &str, as_nobody: bool, env: &[(&str, &str)]) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = program(&work, kinds)?;
    let mut opts = Options::new(&work, &[30]);
    opts.as_nobody = as_nobody;
    opts.env.push(("CKPT_LOG".into(), "info".into()));
    opts.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let first = &outcome.records[0];
    // (Said before the image appears: the program is SIGKILLed as soon as it does.)
    ensure!(!first.stderr.contains(FALLBACK), "the checkpoint was written with the program stopped throughout\n{first}");
    Ok(())
}

fn shared_memory(tag: &str, kinds: &str, as_nobody: bool) -> Result<()> {
    shared_memory_with(tag, kinds, as_nobody, &[])
}

/// The private view of a memfd still sees later writes through the shared mapping after a
/// restart (its unwritten pages are the memfd's again), whether the checkpoint forks or not.
#[test]
fn private_view_of_a_memfd_stays_connected_without_fork() -> Result<()> {
    shared_memory_with("shared-fork-view", "memfd", false, &[("CKPT_FORK", "0")])
}

#[test]
fn shared_anonymous_memory_memfd_and_shm_are_frozen() -> Result<()> {
    shared_memory("shared-fork-anon", "anon,memfd,shm", false)
}

#[test]
fn shared_memory_of_every_kind_is_frozen_as_nobody() -> Result<()> {
    shared_memory("shared-fork-nobody", "file,anon,memfd,shm", true).context("as user nobody")
}

#[test]
fn shared_file_mapping_is_not_torn() -> Result<()> {
    shared_memory("shared-fork-torn", "file", false)
}
