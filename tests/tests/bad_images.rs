//! `ckpt-restart` on bad input: a missing file, an empty file, random bytes, a text file, a
//! directory without images, a directory whose only "image" is garbage, and a real image that
//! was truncated at several offsets, had one byte flipped (near its start, in its middle, near
//! its end) or had everything after its header replaced by random bytes. Each must give: a
//! non-zero exit status (not a crash), exactly one line on stderr starting with `ckpt-restart:`,
//! no panic, no hang (20 s timeout) and nothing on stdout. As a control, the untouched real
//! image must still restart and finish.

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::scenario::user_command;
use ckpt_tests::{checkpoint_and_kill, clean_failure, random_bytes, result_of, run_restart, Bins, Options, Proc, Program, Workdir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Run ckpt-restart on `arg` and require a clean failure.
fn expect_clean_failure(bins: &Bins, work: &Workdir, what: &str, arg: &Path) -> Result<()> {
    let rec = run_restart(bins, arg, work.path(), TIMEOUT).with_context(|| what.to_string())?;
    if let Err(problems) = clean_failure(&rec) {
        bail!("ckpt-restart on {what} ({}): {problems}", arg.display());
    }
    Ok(())
}

#[test]
fn missing_file() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-missing")?;
    expect_clean_failure(&bins, &work, "a missing file", &work.join("no-such-image.ckpt"))
}

#[test]
fn empty_file() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-empty")?;
    let path = work.join("empty.ckpt");
    std::fs::write(&path, b"")?;
    expect_clean_failure(&bins, &work, "an empty file", &path)
}

#[test]
fn random_bytes_file() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-random")?;
    let path = work.join("random.ckpt");
    std::fs::write(&path, random_bytes(1 << 20, 0x1234_5678_9abc_def1))?;
    expect_clean_failure(&bins, &work, "1 MiB of random bytes", &path)
}

#[test]
fn text_file() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-text")?;
    let path = work.join("text.ckpt");
    std::fs::copy(ckpt_tests::programs::sources_dir().join("counter.c"), &path)?;
    expect_clean_failure(&bins, &work, "a C source file", &path)
}

#[test]
fn directory_without_images() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-emptydir")?;
    let dir = work.subdir("no-images")?;
    std::fs::write(dir.join("notes.txt"), b"not an image\n")?;
    expect_clean_failure(&bins, &work, "a directory without images", &dir)
}

#[test]
fn directory_with_garbage_image() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-garbagedir")?;
    let dir = work.subdir("garbage")?;
    std::fs::write(dir.join("garbage.ckpt"), random_bytes(4096, 77))?;
    expect_clean_failure(&bins, &work, "a directory whose only image is random bytes", &dir)
}

/// A FIFO, a socket and a character device given as the image, also under an image's name
/// in a directory: ckpt-restart and ckpt-inspect say "not a regular file" at once (opening a
/// FIFO would wait for a writer forever) and exit non-zero.
#[test]
fn special_files_are_refused_without_hanging() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-special")?;
    let fifo = work.join("fifo.ckpt");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    ensure!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0, "mkfifo: {}", std::io::Error::last_os_error());
    let socket = work.join("socket.ckpt");
    let _listener = std::os::unix::net::UnixListener::bind(&socket)?;
    let in_dir = work.subdir("fifo-dir")?;
    let c = std::ffi::CString::new(in_dir.join("app.ckpt").as_os_str().as_encoded_bytes())?;
    // SAFETY: as above.
    ensure!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0, "mkfifo: {}", std::io::Error::last_os_error());
    let cases = [("a FIFO", fifo.clone()), ("a socket", socket.clone()), ("a character device", PathBuf::from("/dev/null"))];
    for (what, path) in &cases {
        expect_clean_failure(&bins, &work, what, path)?;
        let rec = run_restart(&bins, path, work.path(), TIMEOUT)?;
        ensure!(rec.stderr.contains(&format!("not a regular file ({what})")), "ckpt-restart on {what}: {}", rec.stderr);
        let inspect = bins.dir.join("ckpt-inspect");
        let mut p = Proc::spawn("ckpt-inspect", user_command(&[inspect.into(), path.into()], false, work.path()))?;
        p.wait(TIMEOUT).with_context(|| format!("ckpt-inspect on {what} hung"))?;
        let rec = p.record();
        let lines: Vec<&str> = rec.stderr.lines().collect();
        ensure!(
            rec.status.and_then(|s| s.code()) == Some(1) && lines.len() == 1 && lines[0].starts_with("ckpt-inspect: ") && lines[0].contains("not a regular file"),
            "ckpt-inspect on {what}:\n{rec}"
        );
    }
    expect_clean_failure(&bins, &work, "a directory whose only image is a FIFO", &in_dir)?;
    expect_clean_failure(&bins, &work, "a FIFO named like the newest generation", &in_dir.join("app.ckpt"))
}

/// Damaged copies of a real image, as (description, file name, contents).
fn damaged_variants(image: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let len = image.len();
    let mut out = Vec::new();

    let mut cuts = vec![
        1,
        8,
        32,
        63,
        64,
        65,
        4096,
        len / 4,
        len / 2,
        len.saturating_sub(64),
        len - 1,
    ];
    cuts.retain(|&c| c > 0 && c < len);
    cuts.sort_unstable();
    cuts.dedup();
    for c in cuts {
        out.push((
            format!("the real image truncated to {c} of {len} bytes"),
            format!("trunc-{c}.ckpt"),
            image[..c].to_vec(),
        ));
    }

    let mut flips = vec![3, 20, 60, len / 2, len.saturating_sub(5)];
    flips.retain(|&f| f < len);
    flips.dedup();
    for f in flips {
        let mut v = image.to_vec();
        v[f] ^= 0x5a;
        out.push((
            format!("the real image with byte {f} of {len} flipped"),
            format!("flip-{f}.ckpt"),
            v,
        ));
    }

    let mut v = image[..64.min(len)].to_vec();
    v.extend(random_bytes(len - v.len(), 99));
    out.push((
        format!(
            "the real image's first 64 bytes followed by {} random bytes",
            len - 64.min(len)
        ),
        "header-then-garbage.ckpt".into(),
        v,
    ));
    out
}

#[test]
fn damaged_real_images() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bad-damaged")?;
    let program = Program::c(&work, "counter.c", &[], &["40", "20"])?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    let pristine = std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
    ensure!(pristine.len() > 128, "the real image is only {} bytes", pristine.len());

    let damaged = work.subdir("damaged")?;
    let mut cases: Vec<(String, PathBuf)> = Vec::new();
    for (what, name, bytes) in damaged_variants(&pristine) {
        let p = damaged.join(name);
        std::fs::write(&p, bytes)?;
        cases.push((what, p));
    }

    // All cases at once (each should fail within milliseconds; a hang costs one timeout, not many).
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(what, path)| s.spawn(|| expect_clean_failure(&bins, &work, what, path)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("case thread panicked").err().map(|e| format!("{e:#}")))
            .collect()
    });
    if !failures.is_empty() {
        bail!(
            "{} of {} damaged images were not rejected cleanly:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
    }

    // Control: the untouched image (still in the image directory) restarts and finishes.
    let rec = run_restart(&bins, &image, work.path(), Duration::from_secs(60))?;
    ensure!(
        rec.success() && result_of(&rec.stdout).is_some(),
        "control: the undamaged image did not restart and finish\n{rec}"
    );
    Ok(())
}
