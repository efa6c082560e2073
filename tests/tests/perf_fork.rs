//! Forked checkpoints (issue 5): the image is written by a copy-on-write snapshot child while the
//! program runs on.
//! - forkmem: memory that fork does not copy (MADV_DONTFORK, MADV_WIPEONFORK) is still saved
//!   (the runtime falls back to a checkpoint without snapshot), and the program never sees the
//!   snapshot child (no SIGCHLD, wait() finds no child): same result as an uninterrupted run.
//! - the snapshot writer is SIGKILLed half-way: the program keeps running, the temporary file is
//!   removed, the previous image is untouched, and the next checkpoint restarts correctly.

mod failures_support;

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::scenario::effective_uid;
use ckpt_tests::{run_and_verify, run_plain, Bins, Options, Outcome, Proc, Program, Workdir};
use failures_support::{checkpoint, growing_temporary, snapshot_writers, start_under_ckpt, version, POLL};
use std::time::{Duration, Instant};

#[test]
fn memory_not_copied_by_fork_is_saved_and_the_snapshot_is_invisible() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("perf-forkmem")?;
    let program = Program::c(&work, "forkmem.c", &[], &["40", "30"])?;
    run_and_verify(&bins, &program, &Options::new(&work, &[10, 25]))?;
    Ok(())
}

#[test]
fn killed_snapshot_writer_keeps_previous_image_and_program() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("perf-killwriter")?;
    // Steps enough for three checkpoints of 512 MiB even on a loaded machine (a program that
    // ends during a checkpoint waits for its image, but this test needs it running).
    let program = Program::c(&work, "bigheap.c", &[], &["512", "400", "30"])?;
    let image = work.images().join(program.image_name());

    let mut p = start_under_ckpt(&bins, &program, &work.images())?;
    p.wait_for_step(2, Duration::from_secs(120))?;
    checkpoint(&mut p, &image, Duration::from_secs(300))?;
    let good = version(&image).context("the first image exists")?;
    let good_bytes = std::fs::read(&image)?;

    // Second checkpoint: SIGKILL its writer (the snapshot child) once the temporary file grows.
    let last = p.last_step().unwrap_or(0);
    p.wait_for_step(last + 2, Duration::from_secs(120))?;
    p.signal(libc::SIGUSR2)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let (writer, tmp) = loop {
        let kids = snapshot_writers(p.pid());
        if let Some(t) = growing_temporary(&work.images(), &program.image_name(), 16 << 20).filter(|_| !kids.is_empty()) {
            break (kids[0], t);
        }
        if version(&image) != Some(good) {
            bail!("the second image was completed before the test could kill its writer (too fast?)");
        }
        ensure!(p.running() && Instant::now() < deadline, "no snapshot writer with a growing temporary image appeared");
        std::thread::sleep(POLL / 5);
    };
    // SAFETY: sending a signal to a process id we just read; no memory is involved.
    ensure!(unsafe { libc::kill(writer, libc::SIGKILL) } == 0, "cannot kill the writer {writer}");

    // The runtime notices, removes the temporary file; the program goes on; the image is intact.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tmp.exists() {
        ensure!(Instant::now() < deadline, "{} was not removed after its writer died", tmp.display());
        std::thread::sleep(POLL);
    }
    ensure!(p.running(), "the program died with its snapshot writer");
    ensure!(version(&image) == Some(good) && std::fs::read(&image)? == good_bytes, "the previous image changed");
    let step = p.last_step().unwrap_or(0);
    p.wait_for_step(step + 2, Duration::from_secs(120))?;

    // A later checkpoint works, and restarts to the uninterrupted run's result.
    let cycle = checkpoint(&mut p, &image, Duration::from_secs(300))?;
    p.kill()?;
    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut r = Proc::spawn("ckpt-restart", ckpt_tests::scenario::user_command(&argv, false, work.path()))?;
    let (plain, waited) = std::thread::scope(|s| {
        let plain = s.spawn(|| run_plain(&program, false, Duration::from_secs(600)));
        let waited = r.wait(Duration::from_secs(600));
        (plain.join().expect("plain run thread"), waited)
    });
    waited?;
    let outcome = Outcome { records: vec![p.record(), r.record()], cycles: vec![cycle], extra: vec![], image, uid: effective_uid(false) };
    outcome.verify(&plain?)?;
    Ok(())
}
