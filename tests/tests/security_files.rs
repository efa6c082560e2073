//! Files in shared directories (issue 11): what another user on the node can plant or change in
//! an image directory or next to the program's files must never be used, followed, overwritten
//! or read by the victim's checkpoints and restarts.
//!
//! The two-user tests (root only: they create a victim and an attacker with useradd) run the
//! victim's ckpt-run in a world-writable sticky directory (like /tmp) and let the attacker plant
//! files there: at the temporary image's name, at a generation's name, at an output file's path.

mod failures_support;
mod security_support;

use anyhow::{ensure, Context, Result};
use ckpt_tests::{Bins, Program, Workdir};
use failures_support::{checkpoint, clean_tool_failure};
use security_support::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[test]
fn planted_files_at_the_temporary_name_are_never_used() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-tmpname")?;
    let shared = work.subdir("shared")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    let expected = expected_result(&prog)?;
    // Something of the victim's that the victim's checkpoint must never write into.
    let private = dir(&work.join("victim"), Some(&u.victim), 0o700)?;
    let thesis = file(&private.join("thesis.txt"), "years of work\n", Some(&u.victim), 0o600)?;
    // The attacker's plants: a symbolic link at the old temporary name, and a world-readable
    // file at a guess of the new one.
    let tmp = shared.join("counter.ckpt.tmp");
    std::os::unix::fs::symlink(&thesis, &tmp)?;
    u.attacker.chown(&tmp)?;
    let guess = file(&shared.join("counter.ckpt.tmp.0123456789abcdef"), "planted\n", Some(&u.attacker), 0o666)?;

    let mut p = spawn(Some(&u.victim), "victim's ckpt-run", &ckpt_run_argv(&bins, &shared, &[], &prog), work.path())?;
    p.wait_for_step(3, T)?;
    let image = shared.join("counter.ckpt");
    checkpoint(&mut p, &image, T)?;
    ensure!(std::fs::read_to_string(&thesis)? == "years of work\n", "the checkpoint wrote through the planted symbolic link into the victim's file");
    let own = |what: &str| -> Result<()> {
        let m = std::fs::symlink_metadata(&image)?;
        ensure!(m.is_file() && m.uid() == u.victim.uid && m.mode() & 0o777 == 0o600, "{what}: the image is not the victim's private file: uid {} mode {:o}", m.uid(), m.mode());
        Ok(())
    };
    own("with a symbolic link planted")?;

    // Now a world-readable file of the attacker's at the old name.
    std::fs::remove_file(&tmp)?;
    file(&tmp, "planted\n", Some(&u.attacker), 0o666)?;
    let c = checkpoint(&mut p, &image, T)?;
    own("with a 0666 file planted")?;
    for f in [&tmp, &guess] {
        ensure!(std::fs::read_to_string(f)? == "planted\n", "{} was written by the victim's checkpoint", f.display());
        ensure!(std::fs::metadata(f)?.uid() == u.attacker.uid, "{} changed hands", f.display());
    }
    p.wait_for_step(c.signalled_after_step + 3, T)?;
    p.kill()?;
    let r = run(Some(&u.victim), "victim's ckpt-restart", &restart_argv(&bins, &[], &image), work.path())?;
    ensure!(r.success(), "restart failed:\n{r}");
    continued(&r.stdout, &expected)
}

#[test]
fn image_directory_of_another_user_is_refused() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-dir-owner")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    // Sticky and world-writable like /tmp, but the attacker's: the attacker can remove or
    // replace anything in it.
    let theirs = dir(&work.join("theirs"), Some(&u.attacker), 0o1777)?;
    let r = run(Some(&u.victim), "victim's ckpt-run", &ckpt_run_argv(&bins, &theirs, &[], &prog), work.path())?;
    let line = clean_tool_failure(&r, "ckpt-run").map_err(anyhow::Error::msg)?;
    ensure!(line.contains(&u.attacker.name) && line.contains("theirs"), "the refusal does not name the directory and its owner: {line}");
    Ok(())
}

#[test]
fn image_directory_writable_without_sticky_bit_is_refused() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-dir-mode")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    for (name, mode) in [("open", 0o777), ("group", 0o2770)] {
        let d = dir(&work.join(name), None, mode)?;
        let r = run(None, "ckpt-run", &ckpt_run_argv(&bins, &d, &[], &prog), work.path())?;
        let line = clean_tool_failure(&r, "ckpt-run").map_err(anyhow::Error::msg)?;
        ensure!(line.contains(name) && line.contains("sticky"), "unclear refusal of a {mode:o} directory: {line}");
    }
    // On request it is used, with a warning, and images stay private.
    let open = work.join("open");
    let mut p = spawn(None, "ckpt-run --allow-shared-dir", &ckpt_run_argv(&bins, &open, &["--allow-shared-dir"], &prog), work.path())?;
    p.wait_for_step(3, T)?;
    let c = checkpoint(&mut p, &open.join("counter.ckpt"), T)?;
    ensure!(c.image.mode == 0o600, "image mode {:o}", c.image.mode);
    ensure!(p.stderr().lines().any(|l| l.starts_with("ckpt-run: warning:") && l.contains("sticky")), "no warning: {}", p.stderr());
    p.kill()?;

    // The runtime checks the directory itself, whatever started the program.
    let fresh = dir(&work.join("fresh"), None, 0o777)?;
    let mut p = ckpt_tests::Proc::spawn("preloaded counter", preloaded(&bins, &prog, &[("dir", &fresh), ("name", Path::new("counter"))]))?;
    p.wait_for_step(3, T)?;
    p.signal(libc::SIGUSR2)?;
    wait_stderr(&mut p, "checkpoint failed")?;
    let err = p.stderr();
    ensure!(err.contains("sticky"), "the runtime's refusal does not say why: {err}");
    p.wait_for_step(p.last_step().unwrap_or(0) + 2, T).context("the program did not continue")?;
    p.kill()?;
    ensure!(std::fs::read_dir(&fresh)?.next().is_none(), "the runtime wrote into a world-writable directory");
    Ok(())
}

#[test]
fn failed_rotation_fails_the_checkpoint_and_keeps_the_chain() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-rotation")?;
    let shared = work.subdir("shared")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    let expected = expected_result(&prog)?;
    let image = shared.join("counter.ckpt");
    let mut p = spawn(Some(&u.victim), "victim's ckpt-run", &ckpt_run_argv(&bins, &shared, &[], &prog), work.path())?;
    p.wait_for_step(3, T)?;
    checkpoint(&mut p, &image, T)?;
    p.wait_for_step(8, T)?;
    let second = checkpoint(&mut p, &image, T)?;
    wait_stderr(&mut p, "ckpt: checkpoint 2:")?;
    ensure!(p.stderr().lines().any(|l| l.starts_with("ckpt: checkpoint 2:") && l.contains("increment")), "the second image is not an increment: {}", p.stderr());
    // counter.ckpt builds on counter.ckpt.1; the attacker takes the name the rotation moves
    // counter.ckpt.1 to.
    let planted = file(&shared.join("counter.ckpt.2"), "planted\n", Some(&u.attacker), 0o644)?;
    p.signal(libc::SIGUSR2)?;
    ensure!(
        ckpt_tests::process::wait_until(T, || p.stderr().contains("ckpt: checkpoint 3:") || p.stderr().contains("checkpoint failed")),
        "no word about the third checkpoint: {}",
        p.stderr()
    );
    let failed = p.stderr().lines().find(|l| l.contains("checkpoint failed")).map(str::to_string);
    let line = failed.with_context(|| format!("the checkpoint was reported as taken although the rotation could not proceed: {}", p.stderr()))?;
    // In the program's user namespace (the default) the attacker is not mapped and can only be
    // named as another user.
    ensure!(
        line.contains("counter.ckpt.2") && (line.contains(&u.attacker.name) || line.contains("another user")),
        "the failure does not name the file and its owner: {line}"
    );
    let after = p.last_step().unwrap_or(0);
    p.wait_for_step(after + 3, T).context("the program did not continue after the failed checkpoint")?;
    p.kill()?;
    ensure!(std::fs::read_to_string(&planted)? == "planted\n", "the attacker's file was changed");
    let r = run(Some(&u.victim), "victim's ckpt-restart", &restart_argv(&bins, &[], &image), work.path())?;
    ensure!(r.success(), "the restart from the last complete image failed:\n{r}");
    continued(&r.stdout, &expected)?;
    let first = r.stdout.lines().find_map(ckpt_tests::step_of).unwrap_or(0);
    ensure!(first > second.signalled_after_step && first <= after + 1, "restarted at step {first}: not from the second image (taken after step {})", second.signalled_after_step);
    Ok(())
}

#[test]
fn image_name_must_be_one_file_name() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-name")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    for bad in ["../x", "a/b", "", ".", ".."] {
        let r = run(None, "ckpt-run --name", &ckpt_run_argv(&bins, &work.images(), &["--name", bad], &prog), work.path())?;
        clean_tool_failure(&r, "ckpt-run").map_err(|e| anyhow::anyhow!("--name {bad:?}: {e}"))?;
    }
    // The runtime checks the image name itself (a checkpoint would write work/escaped.ckpt).
    let mut p = ckpt_tests::Proc::spawn(
        "preloaded counter",
        preloaded(&bins, &prog, &[("dir", &work.images()), ("name", Path::new("../escaped"))]),
    )?;
    p.wait_for_step(3, T)?;
    let err = p.stderr();
    p.kill()?;
    ensure!(err.contains("not a file name") && err.contains("escaped"), "the runtime accepted the image name ../escaped: {err}");
    ensure!(!work.join("escaped.sock").exists() && !work.join("escaped.ckpt").exists(), "files outside the image directory");
    Ok(())
}

/// fd_files (output files written three ways, an input file, a directory) in `cwd`, images in
/// `images`, run by `victim`, checkpointed at step 40 and SIGKILLed after step 80. Returns the
/// image.
fn fd_files_image(bins: &Bins, work: &Workdir, victim: Option<&ckpt_tests::users::TestUser>, cwd: &Path, images: &Path) -> Result<std::path::PathBuf> {
    std::fs::write(cwd.join("input.txt"), (0..400u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>())?;
    std::fs::create_dir_all(cwd.join("dir"))?;
    if let Some(v) = victim {
        for f in ["input.txt", "dir"] {
            v.chown(&cwd.join(f))?;
        }
    }
    let mut prog = Program::c(work, "fd_files.c", &["-pthread"], &[])?;
    prog.cwd = cwd.to_path_buf();
    let mut p = spawn(victim, "ckpt-run fd_files", &ckpt_run_argv(bins, images, &[], &prog), cwd)?;
    p.wait_for_step(40, T)?;
    let image = images.join("fd_files.ckpt");
    checkpoint(&mut p, &image, T)?;
    p.wait_for_step(80, T)?;
    p.kill()?;
    Ok(image)
}

/// What a restart must do when the output file's path now holds a symbolic link to `target`,
/// or another file: refuse, naming the file, and leave both alone.
fn refuses_swapped_output(bins: &Bins, victim: Option<&ckpt_tests::users::TestUser>, attacker: Option<&ckpt_tests::users::TestUser>, cwd: &Path, image: &Path, target: &Path) -> Result<()> {
    let out = cwd.join("out_plain.txt");
    let before = std::fs::read(target)?;
    // 1. A symbolic link at the path.
    std::fs::rename(&out, cwd.join("out_plain.moved"))?;
    std::os::unix::fs::symlink(target, &out)?;
    if let Some(a) = attacker {
        a.chown(&out)?;
    }
    let r = run(victim, "ckpt-restart", &restart_argv(bins, &[], image), cwd)?;
    let line = clean_tool_failure(&r, "ckpt-restart").map_err(anyhow::Error::msg)?;
    ensure!(line.contains("out_plain.txt") && line.contains("symbolic link"), "unclear refusal: {line}");
    ensure!(std::fs::read(target)? == before, "the restart cut or wrote the file the symbolic link points to");
    // 2. Another file at the path (bigger than the output was at checkpoint time).
    std::fs::remove_file(&out)?;
    let other = file(&out, &"not the program's output\n".repeat(4000), attacker, 0o666)?;
    let r = run(victim, "ckpt-restart", &restart_argv(bins, &[], image), cwd)?;
    let line = clean_tool_failure(&r, "ckpt-restart").map_err(anyhow::Error::msg)?;
    ensure!(line.contains("out_plain.txt") && line.contains("not the file"), "unclear refusal: {line}");
    ensure!(std::fs::read_to_string(&other)? == "not the program's output\n".repeat(4000), "the restart cut or wrote another file put at the output's path");
    // 3. With --ignore-missing-files the program goes on without that output (/dev/null).
    let r = run(victim, "ckpt-restart --ignore-missing-files", &restart_argv(bins, &["--ignore-missing-files"], image), cwd)?;
    ensure!(r.success() && r.stdout.lines().last() == Some("done"), "the restart did not go on:\n{r}");
    ensure!(r.stderr.contains("out_plain.txt") && r.stderr.contains("not the file"), "no warning naming the file:\n{r}");
    ensure!(std::fs::read_to_string(&other)? == "not the program's output\n".repeat(4000), "--ignore-missing-files wrote into another file");
    Ok(())
}

#[test]
fn output_file_replaced_by_a_symlink_or_another_file_is_refused() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-outputs")?;
    let cwd = work.subdir("run")?;
    let image = fd_files_image(&bins, &work, None, &cwd, &work.join("img"))?;
    let precious = file(&work.join("precious.txt"), &"precious\n".repeat(10_000), None, 0o600)?;
    refuses_swapped_output(&bins, None, None, &cwd, &image, &precious)
}

#[test]
fn output_file_swapped_by_another_user_is_refused() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-outputs-2u")?;
    // A project directory both may write to, without the sticky bit: the attacker can rename
    // the victim's output away and put something else at its path.
    let project = dir(&work.join("project"), None, 0o777)?;
    let image = fd_files_image(&bins, &work, Some(&u.victim), &project, &work.join("vimg"))?;
    let private = dir(&work.join("victim"), Some(&u.victim), 0o700)?;
    let thesis = file(&private.join("thesis.txt"), &"years of work\n".repeat(10_000), Some(&u.victim), 0o600)?;
    refuses_swapped_output(&bins, Some(&u.victim), Some(&u.attacker), &project, &image, &thesis)
}

#[test]
fn shared_mapped_file_replaced_by_a_symlink_is_refused() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-mapped")?;
    let cwd = work.subdir("run")?;
    let mut prog = Program::c(&work, "mem_shared.c", &["-pthread"], &[])?;
    prog.cwd = cwd.clone();
    let mut p = spawn(None, "ckpt-run mem_shared", &ckpt_run_argv(&bins, &work.images(), &[], &prog), &cwd)?;
    p.wait_for_step(50, T)?;
    let image = work.images().join("mem_shared.ckpt");
    // The program's POSIX shm object outlives it when it is killed (the restart needs it).
    struct Unlink(String);
    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _shm = Unlink(format!("/dev/shm/ckpt-test-{}", p.pid()));
    checkpoint(&mut p, &image, T)?;
    p.kill()?;
    // The file the program maps shared (and whose pages a restart writes back) is now a link.
    let precious = file(&work.join("precious.bin"), &"precious\n".repeat(20_000), None, 0o600)?;
    std::fs::rename(cwd.join("shared.bin"), cwd.join("shared.moved"))?;
    std::os::unix::fs::symlink(&precious, cwd.join("shared.bin"))?;
    let r = run(None, "ckpt-restart", &restart_argv(&bins, &[], &image), &cwd)?;
    let line = clean_tool_failure(&r, "ckpt-restart").map_err(anyhow::Error::msg)?;
    ensure!(line.contains("shared.bin") && line.contains("symbolic link"), "unclear refusal: {line}");
    ensure!(std::fs::read_to_string(&precious)? == "precious\n".repeat(20_000), "the restart wrote the program's memory into the file the link points to");
    Ok(())
}
