//! A program that ends while its checkpoint is being written (issue 11): the image is finished
//! anyway, renamed into place and reported with its line, and nothing else is left in the image
//! directory (no empty or partial temporary file). exit(), _exit() and a return from main wait
//! for the image; an exit_group from another thread (no libc exit path) ends the process at
//! once and the snapshot writer finishes on its own. The image verifies and restarts: the
//! restarted program continues after the checkpoint (no `start` line) and prints the same result.

mod failures_support;

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::scenario::user_command;
use ckpt_tests::{result_of, Bins, Proc, Program, Workdir};
use failures_support::{inspect, snapshot_writers, start_under_ckpt, POLL};
use std::time::{Duration, Instant};

/// Files in `dir` other than the image and the control socket.
fn strays(dir: &std::path::Path, image: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n != image && !n.ends_with(".sock")).collect())
        .unwrap_or_default()
}

fn ends_while_writing(how: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(&format!("exit-during-{}", how.trim_start_matches('_')))?;
    let program = Program::c(&work, "exit_during.c", &["-pthread"], &[how, "512", "30"])?;
    let name = program.image_name();
    let image = work.images().join(&name);

    let mut p = start_under_ckpt(&bins, &program, &work.images())?;
    p.wait_for_step(3, Duration::from_secs(120))?;
    p.signal(libc::SIGUSR2)?;
    // The checkpoint is in flight once its snapshot writer exists; then tell the program to end.
    let deadline = Instant::now() + Duration::from_secs(120);
    while snapshot_writers(p.pid()).is_empty() {
        ensure!(p.running() && Instant::now() < deadline, "no snapshot writer appeared\n{}", p.record());
        std::thread::sleep(POLL / 5);
    }
    std::fs::write(work.join("go"), b"")?;
    ensure!(!image.exists(), "the image was complete before the program was told to end (too fast?)");
    let status = p.wait(Duration::from_secs(120))?;
    let waited = image.exists();
    ensure!(status.success(), "the program failed: {status}\n{}", p.record());
    if how != "thread" {
        ensure!(waited, "{how}: the program ended before its image was complete\n{}", p.record());
    }

    // The image appears (the writer may still be at work after an exit_group), with its line.
    let line = format!("ckpt: checkpoint 1: {} (", image.display());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(image.exists() && p.stderr().contains(&line)) {
        ensure!(Instant::now() < deadline, "no image with its line after the program ended\n{}\nfiles: {:?}", p.record(), strays(&work.images(), &name));
        std::thread::sleep(POLL);
    }
    std::thread::sleep(Duration::from_millis(200));
    let rec = p.record();
    ensure!(rec.stderr.lines().filter(|l| l.starts_with("ckpt: ")).count() == 1, "one line, and only one, about the checkpoint\n{rec}");
    let left = strays(&work.images(), &name);
    ensure!(left.is_empty(), "files left next to the image: {left:?}");
    let v = inspect(&bins, &["--verify"], &image, work.path())?;
    ensure!(v.success(), "the image does not verify\n{v}");

    // It restarts and continues (the `go` file is there: it ends at once, the same way).
    let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
    let mut r = Proc::spawn("ckpt-restart", user_command(&argv, false, work.path()))?;
    let st = r.wait(Duration::from_secs(120))?;
    let again = r.record();
    ensure!(st.success(), "the restart failed: {st}\n{again}");
    ensure!(!again.stdout.contains("start "), "the restarted program started over\n{again}");
    let (Some(before), Some(after)) = (result_of(&rec.stdout), result_of(&again.stdout)) else {
        bail!("a result line is missing\n{rec}\n{again}");
    };
    ensure!(before == after, "the restarted program printed {after:?}, the original {before:?}");
    Ok(())
}

#[test]
fn exit_during_checkpoint_finishes_the_image() -> Result<()> {
    ends_while_writing("exit").context("exit()")
}

#[test]
fn underscore_exit_during_checkpoint_finishes_the_image() -> Result<()> {
    ends_while_writing("_exit").context("_exit()")
}

#[test]
fn return_from_main_during_checkpoint_finishes_the_image() -> Result<()> {
    ends_while_writing("return").context("return from main")
}

#[test]
fn exit_group_from_a_thread_during_checkpoint_finishes_the_image() -> Result<()> {
    ends_while_writing("thread").context("exit_group from a thread")
}
