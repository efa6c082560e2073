//! Images are private: ckpt-run creates a missing image directory 0700 and images are 0600,
//! whatever the umask, even when a stale temporary file with a wider mode is in the way; stale
//! temporary images of ours are cleaned up.

mod failures_support;

use anyhow::{ensure, Result};
use ckpt_tests::{Bins, Program, Workdir};
use failures_support::{checkpoint, start_under_ckpt};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn directory_is_0700_and_images_0600() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-perms")?;
    let program = Program::c(&work, "counter.c", &[], &["200", "20"])?;
    let dir = work.join("new").join("images");
    // A permissive umask for everything we start (inherited by ckpt-run and the program).
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0) };
    let started = start_under_ckpt(&bins, &program, &dir);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let mut p = started?;
    p.wait_for_step(3, Duration::from_secs(60))?;
    let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o7777;
    ensure!(mode == 0o700, "ckpt-run created the image directory with mode {mode:o}, expected 700");

    let image = dir.join(program.image_name());
    let c = checkpoint(&mut p, &image, Duration::from_secs(60))?;
    ensure!(c.image.mode == 0o600, "image mode {:o}, expected 600", c.image.mode);

    // A stale, world-readable temporary file from an earlier crash does not leak its mode.
    let tmp = dir.join(format!("{}.tmp", program.image_name()));
    std::fs::write(&tmp, b"stale")?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666))?;
    let c = checkpoint(&mut p, &image, Duration::from_secs(60))?;
    ensure!(c.image.mode == 0o600, "image written over a 0666 temporary file has mode {:o}, expected 600", c.image.mode);
    ensure!(!tmp.exists(), "the temporary file is still there after a successful checkpoint");

    // Temporary images now have unpredictable names. One of ours from before this run (a
    // checkpoint killed mid-write) is removed; one written since the program started may
    // belong to a checkpoint in progress and stays.
    let stale = dir.join(format!("{}.tmp.00000000deadbeef", program.image_name()));
    let recent = dir.join(format!("{}.tmp.00000000cafef00d", program.image_name()));
    std::fs::write(&stale, b"stale")?;
    std::fs::File::options().write(true).open(&stale)?.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))?;
    std::fs::write(&recent, b"recent")?;
    checkpoint(&mut p, &image, Duration::from_secs(60))?;
    ensure!(!stale.exists(), "a stale temporary image of ours was left behind");
    ensure!(recent.exists(), "a temporary image written since the program started was removed");
    let names: Vec<String> = std::fs::read_dir(&dir)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    ensure!(names.iter().filter(|n| n.contains(".tmp")).count() == 1, "temporary files left: {names:?}");
    p.kill()?;
    Ok(())
}
