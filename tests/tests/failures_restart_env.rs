//! Restarting where the machine differs from the one the image was taken on: another kernel's
//! vdso (its code, or the layout of the vvar/vdso areas), or a binary or library that the image
//! maps by reference and that has changed since. ckpt-restart must notice before it tears
//! anything down: one clear line, non-zero exit, and the program never runs. The vdso cases are
//! simulated by rewriting the image's index (as if taken elsewhere); the file cases change real
//! files.

mod failures_support;

use anyhow::{bail, ensure, Context, Result};
use ckpt_image::Backing;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{checkpoint_and_kill, clean_failure, result_of, run_restart, Bins, Options, Proc, Program, Workdir};
use failures_support::checkpoint;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, SystemTime};

const TIMEOUT: Duration = Duration::from_secs(60);

fn expect_refusal(bins: &Bins, work: &Workdir, image: &Path, what: &str, says: &str) -> Result<()> {
    let rec = run_restart(bins, image, work.path(), TIMEOUT)?;
    if let Err(p) = clean_failure(&rec) {
        bail!("ckpt-restart with {what}: {p}");
    }
    ensure!(rec.stderr.contains(says), "ckpt-restart with {what} does not say {says:?}:\n{rec}");
    Ok(())
}

fn expect_restarts(bins: &Bins, work: &Workdir, image: &Path) -> Result<()> {
    let rec = run_restart(bins, image, work.path(), TIMEOUT)?;
    ensure!(rec.success() && result_of(&rec.stdout).is_some(), "control: the unchanged image did not restart and finish\n{rec}");
    Ok(())
}

#[test]
fn other_kernels_vdso_is_refused() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-vdso")?;
    let program = Program::c(&work, "counter.c", &[], &["40", "20"])?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;

    let code = work.join("other-vdso-code.ckpt");
    std::fs::copy(&image, &code)?;
    ckpt_image::rewrite_index(&code, |ix| ix.meta.vdso_hash ^= 0x5a5a)?;
    expect_refusal(&bins, &work, &code, "another kernel's vdso code", "vdso differs")?;

    let layout = work.join("other-vdso-layout.ckpt");
    std::fs::copy(&image, &layout)?;
    let mut found = false;
    ckpt_image::rewrite_index(&layout, |ix| {
        if let Some(r) = ix.regions.iter_mut().find(|r| r.backing == Backing::Special && r.name == b"[vvar]") {
            r.start += 4096; // one page smaller: another kernel's vvar
            found = true;
        }
    })?;
    ensure!(found, "the image has no [vvar] region");
    expect_refusal(&bins, &work, &layout, "another kernel's vvar layout", "layout differs")?;

    expect_restarts(&bins, &work, &image)
}

#[test]
fn changed_binary_is_refused() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-binary")?;
    let built = Program::c(&work, "counter.c", &[], &["40", "20"])?;
    let copy_dir = work.subdir("copy")?;
    let exe = copy_dir.join("counter");
    std::fs::copy(&built.argv[0], &exe)?;
    let program = Program::native(&exe, &["40", "20"], &work);
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    expect_restarts(&bins, &work, &image)?;

    // Same size, new modification time (e.g. rebuilt or copied over).
    let f = std::fs::OpenOptions::new().write(true).open(&exe)?;
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))?;
    drop(f);
    expect_refusal(&bins, &work, &image, "the program's binary touched", "has changed since the checkpoint")?;

    // Different contents and size.
    let mut bytes = std::fs::read(&exe)?;
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&exe, bytes)?;
    expect_refusal(&bins, &work, &image, "the program's binary rewritten", "has changed since the checkpoint")?;

    std::fs::remove_file(&exe)?;
    expect_refusal(&bins, &work, &image, "the program's binary removed", "cannot be opened")
}

#[test]
fn changed_library_is_refused() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-library")?;
    let program = Program::c(&work, "counter.c", &[], &["60", "20"])?;
    // Run with a private copy of libc (LD_LIBRARY_PATH), then change the copy.
    let lib_dir = work.subdir("lib")?;
    let libc_path = find_libc()?;
    let copy = lib_dir.join("libc.so.6");
    std::fs::copy(&libc_path, &copy)?;
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into()];
    argv.extend(program.argv.iter().cloned());
    let mut cmd = user_command(&argv, false, work.path());
    cmd.env("LD_LIBRARY_PATH", &lib_dir);
    let mut p = Proc::spawn("ckpt-run counter (private libc)", cmd)?;
    p.wait_for_step(5, TIMEOUT)?;
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", p.program_pid()))?;
    ensure!(maps.contains(&*copy.to_string_lossy()), "the program does not map the copy of libc:\n{maps}");
    let image = work.images().join(program.image_name());
    checkpoint(&mut p, &image, TIMEOUT)?;
    p.kill()?;
    let info = ckpt_image::Reader::open(&image)?;
    ensure!(
        info.index.regions.iter().any(|r| matches!(&r.backing, Backing::File { path, .. } if path.as_slice() == copy.as_os_str().as_encoded_bytes())),
        "the image does not map the copy of libc by reference"
    );

    let f = std::fs::OpenOptions::new().write(true).open(&copy)?;
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))?;
    drop(f);
    expect_refusal(&bins, &work, &image, "a changed library", "has changed since the checkpoint")
        .context("libc copy touched after the checkpoint")
}

fn find_libc() -> Result<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| Path::new(p).file_name().is_some_and(|n| n == "libc.so.6"))
        .map(Into::into)
        .context("this test process maps no libc.so.6")
}

#[test]
fn removed_working_directory_is_refused_in_one_line() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-cwd")?;
    let mut program = Program::c(&work, "counter.c", &[], &["40", "20"])?;
    program.cwd = work.subdir("cwd")?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    std::fs::remove_dir(&program.cwd)?;
    expect_refusal(&bins, &work, &image, "its working directory removed", "working directory")?;
    let rec = run_restart(&bins, &image, work.path(), TIMEOUT)?;
    ensure!(rec.stderr.matches("No such file or directory").count() == 1, "the reason is said once:\n{rec}");
    Ok(())
}

/// A POSIX message queue with an mq_notify registration made by the raw system call: the
/// kernel does not show its value, so it cannot be registered again as it was; the restart
/// refuses in one line naming the queue (before queues were made again, any queue was refused
/// so; before that, the fd came back as a regular file: EBADF, DMTCP's posix-mq1).
#[test]
fn a_message_queue_notification_not_seen_made_is_refused_in_one_line() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-mqueue")?;
    let program = Program::c(&work, "posix_mq.c", &[], &["40"])?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    expect_refusal(&bins, &work, &image, "an mq_notify registration ckpt did not see", "POSIX message queue /ckpt-test-mq-")?;
    let rec = run_restart(&bins, &image, work.path(), TIMEOUT)?;
    ensure!(rec.stderr.contains("did not see made"), "the reason is not said:\n{rec}");
    Ok(())
}
