//! SIGKILL while the program writes an image. The runtime writes DIR/<name>.ckpt.tmp.<random> and renames
//! it into place only when complete, so killing it half-way must leave the previous image
//! exactly as it was (same file, still verifying), no partial file under the final name, and
//! the previous image must restart and produce the uninterrupted run's result.
//! The program and its snapshot writer are killed together, as a batch system kills a job (or
//! a node dies): a program killed alone leaves its writer to finish the image (see
//! exit_during_checkpoint.rs).
//! The program holds 512 MiB of incompressible data so that writing takes a while.

mod failures_support;

use anyhow::{bail, ensure, Result};
use ckpt_tests::scenario::effective_uid;
use ckpt_tests::{run_plain, Bins, Outcome, Proc, Program, Workdir};
use failures_support::{checkpoint, growing_temporary, inspect, snapshot_writers, start_under_ckpt, version, POLL};
use std::time::{Duration, Instant};

const MIB: &str = "512";

#[test]
fn sigkill_during_image_write_keeps_previous_image() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-killwrite")?;
    let program = Program::c(&work, "bigheap.c", &[], &[MIB, "150", "30"])?;
    let image = work.images().join(program.image_name());

    let mut p = start_under_ckpt(&bins, &program, &work.images())?;
    p.wait_for_step(2, Duration::from_secs(120))?;
    let first = checkpoint(&mut p, &image, Duration::from_secs(300))?;
    let good = version(&image).expect("the image exists");
    let good_bytes = std::fs::read(&image)?;

    // Second checkpoint: kill the program once the temporary file has grown past 32 MiB.
    let last = p.last_step().unwrap_or(0);
    p.wait_for_step(last + 2, Duration::from_secs(120))?;
    p.signal(libc::SIGUSR2)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let tmp = loop {
        if let Some(t) = growing_temporary(&work.images(), &program.image_name(), 32 << 20) {
            break t;
        }
        if version(&image) != Some(good) {
            bail!("the second image was completed before the test could kill its writer (too fast?)");
        }
        ensure!(p.running() && Instant::now() < deadline, "no growing temporary image appeared");
        std::thread::sleep(POLL / 5);
    };
    // The whole job at once: freeze the writer, kill the program, kill the writer.
    let writers = snapshot_writers(p.pid());
    ensure!(!writers.is_empty(), "no snapshot writer while {} grows", tmp.display());
    for &w in &writers {
        // SAFETY: signals to process ids we just read; no memory is involved.
        unsafe { libc::kill(w, libc::SIGSTOP) };
    }
    p.kill()?;
    for &w in &writers {
        // SAFETY: as above.
        unsafe { libc::kill(w, libc::SIGKILL) };
    }
    let partial = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    eprintln!("killed the writer with {} MiB of the second image written", partial >> 20);

    ensure!(version(&image) == Some(good), "the previous image was replaced or changed by the killed write");
    ensure!(std::fs::read(&image)? == good_bytes, "the previous image's bytes changed");
    let rec = inspect(&bins, &["--verify"], &image, work.path())?;
    ensure!(rec.success(), "the previous image no longer verifies\n{rec}");
    let rec = inspect(&bins, &[], &tmp, work.path())?;
    ensure!(!rec.success() && rec.stderr.contains("never completed"), "the partial temporary file is not reported as an unfinished image\n{rec}");

    // The previous image restarts and finishes like an uninterrupted run.
    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut r = Proc::spawn("ckpt-restart", ckpt_tests::scenario::user_command(&argv, false, work.path()))?;
    let plain = std::thread::scope(|s| {
        let plain = s.spawn(|| run_plain(&program, false, Duration::from_secs(600)));
        let waited = r.wait(Duration::from_secs(600));
        (plain.join().expect("plain run thread"), waited)
    });
    let (plain, waited) = plain;
    waited?;
    let outcome = Outcome { records: vec![p.record(), r.record()], cycles: vec![first], extra: vec![], image, uid: effective_uid(false) };
    outcome.verify(&plain?)?;
    Ok(())
}
