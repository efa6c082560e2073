//! What a user sees during a long checkpoint or restart:
//! - `ckpt-ctl status` answers while a checkpoint is being written, with its progress, and a
//!   `checkpoint --wait` asked meanwhile gets a checkpoint of its own once that one has ended;
//! - on a terminal, a checkpoint and a restart that take more than a second redraw one line
//!   with the bytes of memory done of the total and the rate, erased before the final line;
//! - in a batch log, a restart says one line when the program runs again (none before), and
//!   CKPT_LOG=info given to ckpt-restart says more.
//!
//! The terminal test needs a checkpoint that takes more than a second (1.5 GiB of random data):
//! on a machine where it is faster, it is skipped, saying so; it never judges by timing alone.

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::process::{transcript, wait_until};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{checkpoint_and_kill, result_of, run_plain, skip_test, step_of, Bins, Options, Proc, Program, Workdir};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ctl(bins: &Bins, dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bins.dir.join("ckpt-ctl")).arg("--dir").arg(dir).args(args).output()?;
    ensure!(out.status.success(), "ckpt-ctl {args:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

#[test]
fn progress_status_answers_during_a_checkpoint() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("progress-status")?;
    let exe = compile_c(&work, "bigheap.c", &[])?;
    let dir = work.images();
    let mut cmd = Command::new(&bins.run);
    cmd.arg("--dir").arg(&dir).arg("--full-only").arg("--").arg(&exe).args(["1024", "1000000", "20"]).current_dir(work.path());
    let mut p = Proc::spawn("ckpt-run bigheap", cmd)?;
    let r = (|| -> Result<()> {
        p.wait_for_step(1, Duration::from_secs(120))?;
        // A checkpoint of 1 GiB of random data takes a while: ask for one, then ask how far it
        // is until an answer says so (or it has ended: then again, a few times).
        let mut seen = None;
        for n in 1..=5u32 {
            ctl(&bins, &dir, &["checkpoint"])?;
            loop {
                let s = ctl(&bins, &dir, &["status"])?;
                if s.contains(" in progress") {
                    seen = Some((n, s));
                    break;
                }
                if field(&s, "checkpoints:") == Some(&n.to_string()) {
                    break;
                }
            }
            if seen.is_some() {
                break;
            }
        }
        let Some((n, status)) = seen else { bail!("ckpt-ctl status never answered during one of 5 checkpoints of 1 GiB") };
        let line = status.lines().find(|l| l.contains(" in progress")).unwrap_or_default();
        ensure!(line.starts_with(&format!("checkpoint {n} in progress")) && (line.contains(", written: ") && line.contains(" of memory (") || line.contains(": preparing")), "status during checkpoint {n}:\n{status}");
        // Asked during checkpoint n: answered with a checkpoint of its own after it.
        let image = ctl(&bins, &dir, &["checkpoint", "--wait"])?;
        ensure!(image.trim() == dir.join("bigheap.ckpt").display().to_string(), "checkpoint --wait printed {image:?}");
        let after = ctl(&bins, &dir, &["status"])?;
        ensure!(field(&after, "checkpoints:") == Some(&(n + 1).to_string()) && !after.contains(" in progress"), "status after checkpoint --wait:\n{after}");
        Ok(())
    })();
    p.kill()?;
    r.map_err(|e| anyhow::anyhow!("{e:#}{}", transcript(&[p.record()])))
}

/// `cmdline` run by a shell on a terminal of its own (util-linux `script`): everything it
/// writes, stdout and stderr, comes back as `script`'s stdout.
fn on_a_terminal(label: &str, cmdline: &str, cwd: &Path) -> Result<Proc> {
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-f", "-c", cmdline, "/dev/null"]).current_dir(cwd);
    Proc::spawn(label, cmd)
}

/// The "N ms" of a final line "... (..., N ms...)" that starts with `prefix`.
fn millis(out: &str, prefix: &str) -> Option<u64> {
    let rest = &out[out.find(prefix)?..];
    let line = rest.lines().next()?;
    line.split(", ").find_map(|w| w.split_whitespace().next().filter(|_| w.split_whitespace().nth(1).is_some_and(|u| u.starts_with("ms"))).and_then(|n| n.parse().ok()))
}

#[test]
fn progress_line_on_a_terminal_for_a_long_checkpoint_and_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("progress-tty")?;
    let exe = compile_c(&work, "bigheap.c", &[])?;
    let dir = work.images();
    let q = |p: &Path| format!("'{}'", p.display());
    let run = format!("{} --dir {} --full-only -- {} 1536 1000000 20", q(&bins.run), q(&dir), q(&exe));
    let mut p = on_a_terminal("ckpt-run on a terminal", &run, work.path())?;
    let r = (|| -> Result<(u64, bool)> {
        p.wait_for_step(1, Duration::from_secs(120))?;
        ctl(&bins, &dir, &["checkpoint", "--wait"])?;
        ensure!(wait_until(Duration::from_secs(30), || p.stdout().contains("ckpt: checkpoint 1: /")), "no checkpoint line");
        let out = p.stdout();
        let ms = millis(&out, "ckpt: checkpoint 1: /").context("no time in the checkpoint line")?;
        let drawn = out.contains("\rckpt: checkpoint 1: ") && out.contains(" of memory (") && out.contains("/s, ");
        if drawn {
            // Erased before the final line.
            ensure!(out.contains("\r\x1b[Kckpt: checkpoint 1: /"), "the progress line was not erased before the checkpoint's line");
        }
        let pid: i32 = field(&ctl(&bins, &dir, &["status"])?, "pid:").context("pid")?.parse()?;
        // SAFETY: a signal to the program we started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        Ok((ms, drawn))
    })();
    let _ = p.wait(Duration::from_secs(30));
    let (ms, drawn) = r.map_err(|e| anyhow::anyhow!("{e:#}{}", transcript(&[p.record()])))?;
    if ms > 1500 {
        ensure!(drawn, "a checkpoint of {ms} ms on a terminal showed no progress line{}", transcript(&[p.record()]));
    } else if !drawn {
        skip_test!("the checkpoint took {ms} ms: too short to show progress here");
        return Ok(());
    }

    let image = dir.join("bigheap.ckpt");
    let mut r = on_a_terminal("ckpt-restart on a terminal", &format!("{} {}", q(&bins.restart), q(&image)), work.path())?;
    let said = format!("ckpt: restarted from {} (checkpoint 1, ", image.display());
    let up = wait_until(Duration::from_secs(120), || r.stdout().contains(&said) || !r.running());
    let out = r.stdout();
    // The restarted program, then `script`: killing `script` alone leaves the restarted program
    // running on (its terminal gone).
    if let Some(pid) = ctl(&bins, &dir, &["status"]).ok().and_then(|s| field(&s, "pid:").and_then(|p| p.parse::<i32>().ok())) {
        // SAFETY: a signal to the program we restarted.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = r.wait(Duration::from_secs(30));
    let _ = r.kill();
    ensure!(up && out.contains(&said), "the restarted program did not say it runs again{}", transcript(&[r.record()]));
    let ms = millis(&out, &said).context("no time in the restart line")?;
    let drawn = out.contains(&format!("\rckpt-restart: reading {}: ", image.display())) && out.contains(" of 1.50 GiB of memory (");
    ensure!(drawn || ms <= 1500, "a restart of {ms} ms on a terminal showed no progress line{}", transcript(&[r.record()]));
    if drawn {
        // Erased before the program runs again.
        let last = &out[out.rfind("\rckpt-restart: reading").unwrap_or(0)..];
        let erased = last.find("\r\x1b[K").is_some_and(|e| last.find(&said).is_some_and(|s| e < s));
        ensure!(erased, "the progress line was not erased{}", transcript(&[r.record()]));
    }
    Ok(())
}

#[test]
fn progress_restart_says_one_line_in_a_batch_log() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("progress-batch")?;
    let program = Program::c(&work, "counter.c", &[], &["200", "20"])?;
    let plain = run_plain(&Program::c(&work, "counter.c", &[], &["200", "0"])?, false, Duration::from_secs(60))?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    for log in [None, Some("info")] {
        let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
        let mut cmd = user_command(&argv, false, work.path());
        cmd.env_remove("CKPT_LOG");
        if let Some(l) = log {
            cmd.env("CKPT_LOG", l);
        }
        let mut p = Proc::spawn("ckpt-restart", cmd)?;
        p.wait(Duration::from_secs(60))?;
        let rec = p.record();
        let lines: Vec<&str> = rec.stderr.lines().collect();
        let said = format!("ckpt: restarted from {} (checkpoint 1, ", image.display());
        let ours: Vec<&&str> = lines.iter().filter(|l| l.starts_with(&said) && l.ends_with(" ms)")).collect();
        ensure!(ours.len() == 1 && !rec.stderr.contains('\r'), "CKPT_LOG={log:?}: not one restart line and nothing else drawn{}", transcript(std::slice::from_ref(&rec)));
        match log {
            None => ensure!(lines.len() == 1, "ckpt-restart said more than its line without CKPT_LOG{}", transcript(std::slice::from_ref(&rec))),
            Some(_) => ensure!(lines.iter().any(|l| l.starts_with("ckpt-restart: ") && l.contains(" of memory from 1 image(s) read in ")), "CKPT_LOG=info: nothing more{}", transcript(std::slice::from_ref(&rec))),
        }
        ensure!(rec.lines().first().and_then(|l| step_of(l)).is_some_and(|s| s > 1) && result_of(&rec.stdout) == result_of(&plain.stdout), "the restarted counter{}", transcript(&[plain.clone(), rec.clone()]));
    }
    Ok(())
}
