//! Incremental images (dirty-page tracking): a program whose memory changes a little between
//! checkpoints (tests/programs/dirty_pages.c: 1% of its pages per step, pages dropped with
//! MADV_DONTNEED, a realloc'd buffer that grows or moves, a mapping replaced at the same address,
//! mprotect splits) is checkpointed several times without being stopped, then SIGKILLed and
//! restarted from an increment. The restarted run must continue and print the uninterrupted
//! run's result; the increments must be increments (a parent in the header) and small.

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::Program;
use ckpt_tests::scenario::{run_plain, run_restart};
use ckpt_tests::{result_of, run_and_verify, step_of, Bins, Options, Workdir};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dirty_pages(work: &Workdir) -> Result<Program> {
    Program::c(work, "dirty_pages.c", &[], &["32", "150", "10"])
}

/// (index_hash, parent, file length) from an image's header.
fn header(path: &Path) -> Result<(u64, u64, u64)> {
    let b = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    ensure!(b.len() >= 64, "{} is too short", path.display());
    let at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    Ok((at(32), at(48), b.len() as u64))
}

fn images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.contains(".ckpt") && !f.contains(".tmp")))
        .collect();
    v.sort();
    Ok(v)
}

fn incremental_options(work: &Workdir, also_at: &[u64], at: u64, env: &[(&str, &str)]) -> Options {
    let mut opts = Options::new(work, &[at]);
    opts.also_at = also_at.to_vec();
    opts.env = [("CKPT_INCREMENTAL", "1")].iter().chain(env).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    opts
}

fn chain_restarts_exactly(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = dirty_pages(&work)?;
    let mut opts = incremental_options(&work, &[20, 30, 40], 50, &[("CKPT_KEEP", "2")]);
    opts.as_nobody = nobody;
    let outcome = run_and_verify(&bins, &program, &opts)?;

    // Four checkpoints in one run: a full image and three increments, each over the one before.
    // With --keep 2 the two newest stay, and the images they build on.
    let files = images(&work.images())?;
    ensure!(files.len() == 4, "expected the newest, the one before and their two parents, found {files:?}{}", outcome.transcript());
    let heads: Vec<(PathBuf, (u64, u64, u64))> = files.iter().map(|f| Ok((f.clone(), header(f)?))).collect::<Result<_>>()?;
    let full: Vec<_> = heads.iter().filter(|(_, h)| h.1 == 0).collect();
    ensure!(full.len() == 1, "expected one full image, found {}: {heads:?}", full.len());
    let full_len = full[0].1 .2;
    for (path, (_, parent, len)) in heads.iter().filter(|(_, h)| h.1 != 0) {
        ensure!(heads.iter().any(|(_, h)| h.0 == *parent), "the parent of {} is missing", path.display());
        // 32 MiB of random data; ~1% of the pages change per step, 10 steps between checkpoints.
        ensure!(len * 3 < full_len, "increment {} has {len} bytes, the full image {full_len}: not much smaller", path.display());
    }
    Ok(())
}

#[test]
fn increments_restart_exactly() -> Result<()> {
    chain_restarts_exactly("incr-chain", false)
}

#[test]
fn increments_restart_exactly_as_nobody() -> Result<()> {
    chain_restarts_exactly("incr-chain-nobody", true)
}

/// An older generation (itself an increment in the middle of the chain) restarts too.
#[test]
fn older_increment_restarts() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("incr-older")?;
    let program = dirty_pages(&work)?;
    let plain = run_plain(&program, false, Duration::from_secs(120))?;
    let opts = incremental_options(&work, &[20, 30, 40], 50, &[("CKPT_KEEP", "3")]);
    let outcome = ckpt_tests::scenario::checkpoint_kill_restart(&bins, &program, &opts)?;
    outcome.verify(&plain)?;
    let older = work.images().join(format!("{}.1", program.image_name()));
    let (_, parent, _) = header(&older)?;
    ensure!(parent != 0, "{} should be an increment", older.display());
    let rec = run_restart(&bins, &older, work.path(), Duration::from_secs(120))?;
    let first = rec.stdout.lines().next().and_then(step_of);
    ensure!(
        first.is_some_and(|s| s > outcome.extra[2].signalled_after_step && s <= outcome.cycles[0].signalled_after_step + 1),
        "the restart of {} should continue after step {} (the third checkpoint), first line: {:?}",
        older.display(),
        outcome.extra[2].signalled_after_step,
        rec.stdout.lines().next()
    );
    ensure!(result_of(&rec.stdout) == result_of(&plain.stdout), "restart of {}: result {:?}, expected {:?}\nstderr: {}", older.display(), result_of(&rec.stdout), result_of(&plain.stdout), rec.stderr);
    Ok(())
}

/// Chains stay short: with CKPT_MAX_CHAIN=2 every other checkpoint is a full image, and the
/// images nothing needs any more are removed. After a restart the chain goes on: the restarted
/// program's checkpoints are increments over the image it came from, and they restart as well.
#[test]
fn chains_are_compacted_and_continue_after_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("incr-compact")?;
    let program = dirty_pages(&work)?;
    let opts = incremental_options(&work, &[15, 30, 45], 52, &[("CKPT_KEEP", "1"), ("CKPT_MAX_CHAIN", "2")]);
    let plain = run_plain(&program, false, Duration::from_secs(120))?;
    let outcome = ckpt_tests::scenario::checkpoint_kill_restart(&bins, &program, &opts)?;
    outcome.verify(&plain)?;
    // 15: full, 30: increment, 45: full again (the chain had 2 images), which made 15 and 30
    // useless (keep 1); 52: an increment over 45. (Old images go after the new one is in place,
    // so the last checkpoint before a SIGKILL may leave one behind: hence the checkpoint at 52.)
    let files = images(&work.images())?;
    ensure!(files.len() == 2, "expected the newest image and its parent, found {files:?}{}", outcome.transcript());
    let (newest, older) = (header(&files[0])?, header(&files[1])?);
    ensure!(older.1 == 0, "the checkpoint at step 45 should be a full image");
    ensure!(newest.1 == older.0, "the checkpoint at step 52 should be an increment over the one at 45");

    // The full image, restarted, checkpoints again: an increment over the image it came from.
    let image = outcome.image.clone();
    let argv = [bins.restart.clone().into_os_string(), files[1].clone().into_os_string()];
    let mut r = ckpt_tests::Proc::spawn("ckpt-restart #2", ckpt_tests::scenario::user_command(&argv, false, work.path()))?;
    let seen = r.wait_for_step(70, Duration::from_secs(60))?;
    r.signal(libc::SIGUSR2)?;
    ensure!(
        ckpt_tests::process::wait_until(Duration::from_secs(60), || header(&image).is_ok_and(|h| h.0 != newest.0)),
        "no new image after step {seen}"
    );
    r.kill()?;
    let (_, parent, _) = header(&image)?;
    ensure!(parent == older.0, "the checkpoint after the restart should be an increment over the image restarted from");
    let rec = run_restart(&bins, &image, work.path(), Duration::from_secs(120))?;
    ensure!(result_of(&rec.stdout) == result_of(&plain.stdout), "restart of the increment: result {:?}, expected {:?}\nstderr: {}", result_of(&rec.stdout), result_of(&plain.stdout), rec.stderr);
    ensure!(rec.stdout.lines().next().and_then(step_of).is_some_and(|s| s > 70), "the restart went back before the last checkpoint");
    Ok(())
}
