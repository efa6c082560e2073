//! Load: 100 checkpoints in a row, as fast as they go, of a 16-thread program that allocates
//! and frees under a mutex (tests/programs/malloc_storm.c), then SIGKILL and a restart from the
//! last image; 30 more of the restarted program, SIGKILL, restart again. No checkpoint may deadlock (a thread stopped inside malloc must not block the
//! checkpoint, which never calls malloc), every image must verify, and the restarted run must
//! print exactly what an uninterrupted run of the same number of rounds prints.

mod failures_support;

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::scenario::effective_uid;
use ckpt_tests::{run_plain, Bins, Outcome, Proc, Program, Workdir};
use failures_support::{checkpoint, inspect, start_under_ckpt};
use std::time::{Duration, Instant};

const CHECKPOINTS: usize = 100;
/// Checkpoints of the restarted program before it is killed and restarted once more.
const AFTER_RESTART: usize = 30;

#[test]
fn hundred_checkpoints_of_sixteen_allocating_threads() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-load")?;
    let stop = work.join("stop");
    let stop_s = stop.to_string_lossy().into_owned();
    let program = Program::c(&work, "malloc_storm.c", &["-pthread"], &["1000000000", &stop_s])?;
    let image = work.images().join(program.image_name());

    let mut p = start_under_ckpt(&bins, &program, &work.images())?;
    p.wait_for_step(3, Duration::from_secs(60))?;
    let started = Instant::now();
    let mut cycles = Vec::new();
    for k in 1..=CHECKPOINTS {
        let c = checkpoint(&mut p, &image, Duration::from_secs(60)).with_context(|| format!("checkpoint {k} of {CHECKPOINTS}"))?;
        cycles.push(c);
    }
    let elapsed = started.elapsed();
    // The program is still making progress after the storm of checkpoints.
    let last = p.last_step().unwrap_or(0);
    p.wait_for_step(last + 5, Duration::from_secs(60)).context("the program stopped making progress after the checkpoints")?;
    let rec = inspect(&bins, &["--verify", "--json"], &image, work.path())?;
    ensure!(rec.success() && rec.stdout.contains(&format!("\"generation\": {CHECKPOINTS}")), "the last image does not verify or is not checkpoint {CHECKPOINTS}\n{rec}");
    p.kill()?;
    eprintln!("{CHECKPOINTS} checkpoints of malloc_storm (16 threads) in {elapsed:?} ({:?} each)", elapsed / CHECKPOINTS as u32);

    // Restart from the last image; checkpoint the restarted program (its threads were recreated
    // by the runtime) as fast as it goes too, kill it, restart again, then ask it to stop.
    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut r1 = Proc::spawn("ckpt-restart #1", ckpt_tests::scenario::user_command(&argv, false, work.path()))?;
    r1.wait_for_step(cycles.last().map_or(0, |c| c.signalled_after_step) + 3, Duration::from_secs(60))?;
    let mut again = None;
    for k in 1..=AFTER_RESTART {
        again = Some(checkpoint(&mut r1, &image, Duration::from_secs(60)).with_context(|| format!("checkpoint {k} after the restart"))?);
    }
    let again = again.expect("checkpoints after the restart");
    r1.kill()?;
    let mut r2 = Proc::spawn("ckpt-restart #2", ckpt_tests::scenario::user_command(&argv, false, work.path()))?;
    r2.wait_for_step(again.signalled_after_step + 3, Duration::from_secs(60))?;
    std::fs::write(&stop, b"")?;
    r2.wait(Duration::from_secs(120))?;
    let outcome = Outcome {
        records: vec![p.record(), r1.record(), r2.record()],
        cycles: vec![*cycles.last().expect("checkpoints"), again],
        extra: vec![],
        image: image.clone(),
        uid: effective_uid(false),
    };
    let result = ckpt_tests::result_of(&outcome.last().stdout).map(str::to_string);
    let Some(rounds) = result.as_deref().and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("rounds="))) else {
        bail!("the restarted run printed no result line{}", outcome.transcript());
    };

    // The reference: an uninterrupted run of exactly as many rounds.
    let reference = Program::native(&program.argv[0], &[rounds], &work);
    let plain = run_plain(&reference, false, Duration::from_secs(300))?;
    outcome.verify(&plain)?;
    Ok(())
}

