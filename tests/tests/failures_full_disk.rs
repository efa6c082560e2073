//! A full disk during a checkpoint. The image directory is a small tmpfs (mounted by the test,
//! so it needs root; otherwise it is skipped with a message). After a first good image, the
//! disk is filled so the next image cannot fit: the checkpoint fails, the error is logged once,
//! the program keeps running, the previous image is untouched and no temporary file is left.
//! When space returns the next checkpoint works, and that image restarts to the uninterrupted
//! run's result.

mod failures_support;

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::scenario::{effective_uid, is_root};
use ckpt_tests::{run_plain, Bins, Outcome, Proc, Program, Workdir};
use failures_support::{checkpoint, inspect, start_under_ckpt, version, POLL};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(at)?;
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(at).status()?;
        ensure!(st.success(), "mount -t tmpfs failed: {st}");
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the filesystem at `dir` with `filler` until ENOSPC; returns the bytes written.
fn fill(filler: &Path) -> Result<u64> {
    let mut f = std::fs::File::create(filler)?;
    let block = vec![0x55u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => return Err(e).context("filling the tmpfs"),
        }
    }
    Ok(n)
}

fn failure_lines(p: &Proc) -> usize {
    p.stderr().lines().filter(|l| l.contains("checkpoint failed")).count()
}

#[test]
fn full_disk_during_checkpoint() -> Result<()> {
    if !is_root() {
        ckpt_tests::skip_test!("mounting a small tmpfs needs root");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-fulldisk")?;
    let images = work.join("tmpfs-images");
    let _fs = match Tmpfs::mount(&images, "48m") {
        Ok(m) => m,
        Err(e) => {
            ckpt_tests::skip_test!("cannot mount a tmpfs here: {e:#}");
            return Ok(());
        }
    };
    // 16 MiB of incompressible heap: each image is a little over 16 MiB.
    let program = Program::c(&work, "bigheap.c", &[], &["16", "400", "30"])?;
    let image = images.join(program.image_name());

    let mut p = start_under_ckpt(&bins, &program, &images)?;
    p.wait_for_step(2, Duration::from_secs(60))?;
    checkpoint(&mut p, &image, Duration::from_secs(120))?;
    let good = version(&image).expect("image");
    let good_bytes = std::fs::read(&image)?;

    // Fill the disk, then free 1 MiB: far less than an image needs.
    let filler = images.join("filler");
    fill(&filler)?;
    let len = std::fs::metadata(&filler)?.len();
    std::fs::OpenOptions::new().write(true).open(&filler)?.set_len(len.saturating_sub(1 << 20))?;

    p.signal(libc::SIGUSR2)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while failure_lines(&p) == 0 {
        ensure!(p.running(), "the program died during the failing checkpoint\n{}", p.record());
        ensure!(Instant::now() < deadline, "no 'checkpoint failed' message within 120 s\n{}", p.record());
        std::thread::sleep(POLL);
    }
    // It keeps running, logs nothing more, and the previous image is intact.
    let last = p.last_step().unwrap_or(0);
    p.wait_for_step(last + 5, Duration::from_secs(60)).context("the program stopped after the failed checkpoint")?;
    let err = p.stderr();
    ensure!(failure_lines(&p) == 1, "the failure was logged {} times, expected once:\n{err}", failure_lines(&p));
    ensure!(err.contains("No space left on device"), "the message does not say the disk is full:\n{err}");
    ensure!(version(&image) == Some(good) && std::fs::read(&image)? == good_bytes, "the previous image changed");
    let left = failures_support::temporaries(&images, &program.image_name());
    ensure!(left.is_empty(), "the failed checkpoint left {left:?} behind");
    let rec = inspect(&bins, &["--verify"], &image, work.path())?;
    ensure!(rec.success(), "the previous image does not verify\n{rec}");

    // Space returns: the next checkpoint works.
    std::fs::remove_file(&filler)?;
    let last = p.last_step().unwrap_or(0);
    p.wait_for_step(last + 1, Duration::from_secs(60))?;
    let cycle = checkpoint(&mut p, &image, Duration::from_secs(120))?;
    let rec = inspect(&bins, &["--verify"], &image, work.path())?;
    ensure!(rec.success(), "the image taken after space returned does not verify\n{rec}");
    p.kill()?;

    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut r = Proc::spawn("ckpt-restart", ckpt_tests::scenario::user_command(&argv, false, work.path()))?;
    let (plain, waited) = std::thread::scope(|s| {
        let plain = s.spawn(|| run_plain(&program, false, Duration::from_secs(300)));
        let waited = r.wait(Duration::from_secs(300));
        (plain.join().expect("plain run thread"), waited)
    });
    waited?;
    let outcome = Outcome { records: vec![p.record(), r.record()], cycles: vec![cycle], extra: vec![], image, uid: effective_uid(false) };
    if let Err(e) = outcome.verify(&plain?) {
        bail!("{e:#}");
    }
    Ok(())
}
