//! What a restart cannot bring back is said, not silently lost (issue 11): the program's child
//! processes (running, and exited but not waited for) are not in the image, and input from a
//! pipe whose writer is outside the program cannot be replayed. Each checkpoint says so in one
//! line per kind, the image records both, ckpt-restart warns again, and ckpt-inspect shows them.
//! left_children starts `sleep 300` and a child that exits at once (a zombie), reads 6 of the 12
//! bytes the test writes to its stdin pipe (which the test keeps open), then runs until told to
//! end. The exact lines are checked.

mod failures_support;

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Workdir};
use failures_support::inspect;
use std::ffi::OsString;
use std::io::Write;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        ensure!(Instant::now() < deadline, "timeout waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Kills the `sleep 300` child (reparented once the program is killed) when the test ends.
struct Sleeper(i32);

impl Drop for Sleeper {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: a signal to the pid the program printed as its sleep child.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn children_and_outside_pipes_are_named_at_checkpoint_and_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("left-out")?;
    let exe = compile_c(&work, "left_children.c", &[])?;
    let (out, err) = (work.join("run.out"), work.join("run.err"));
    // Without a namespace (the fallback): with one, the children are in a process tree's set.
    let argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--no-namespace".into(), "--".into(), exe.clone().into()];
    let mut cmd = user_command(&argv, false, work.path());
    cmd.stdin(Stdio::piped()).stdout(std::fs::File::create(&out)?).stderr(std::fs::File::create(&err)?);
    let mut run = cmd.spawn()?;
    // 12 bytes: the program reads 6; the pipe stays open (its writer is this test).
    let mut stdin = run.stdin.take().context("stdin")?;
    stdin.write_all(b"hello\nworld\n")?;
    let r = (|| -> Result<()> {
        wait_for("the ready line", || read(&out).contains("step 2\n"))?;
        let ready = read(&out);
        let ids: Vec<i32> = ready.lines().find_map(|l| l.strip_prefix("ready ")).context("ready line")?.split(' ').filter_map(|w| w.parse().ok()).collect();
        let (sleeper, zombie) = (ids[0], ids[1]);
        let _guard = Sleeper(sleeper);
        let image = work.images().join("left_children.ckpt");
        // SAFETY: a signal to our own child.
        ensure!(unsafe { libc::kill(run.id() as i32, libc::SIGUSR2) } == 0);
        wait_for("the checkpoint line", || read(&err).contains("ckpt: checkpoint 1: /"))?;
        kill_and_reap(&mut run);

        let children = format!(r#"{sleeper} "sleep 300", {zombie} "left_children" (exited)"#);
        let expect = [
            format!("ckpt: checkpoint 1: child processes are not in the image and will be gone after a restart (wait() fails with ECHILD): {children}"),
            "ckpt: checkpoint 1: input from outside the program cannot be replayed after a restart: fd 0 (6 bytes unread) reads a pipe fed by another process".to_string(),
        ];
        let lines: Vec<String> = read(&err).lines().map(str::to_string).collect();
        ensure!(lines.len() == 3 && lines[..2] == expect && lines[2].starts_with(&format!("ckpt: checkpoint 1: {} (", image.display())), "checkpoint lines:\n{}", lines.join("\n"));

        let text = inspect(&bins, &[], &image, work.path())?;
        ensure!(text.success(), "{text}");
        for want in [
            format!(r#"  child process {sleeper} "sleep 300""#),
            format!(r#"  child process {zombie} "left_children" (exited, not waited for)"#),
            "  fd 0 reads a pipe fed by another process (6 bytes unread): its input cannot be replayed".to_string(),
        ] {
            ensure!(text.stdout.lines().any(|l| l == want), "ckpt-inspect does not show {want:?}\n{text}");
        }
        let json = inspect(&bins, &["--json"], &image, work.path())?;
        // Pretty-printed: compare on one line, without the indentation.
        let flat = json.stdout.lines().map(str::trim).collect::<String>().replace("\": ", "\":");
        ensure!(flat.contains(&format!(r#"{{"pid":{sleeper},"command":"sleep 300","exited":false}}"#)), "{json}");
        ensure!(flat.contains(r#""outside_pipes":[{"fd":0,"unread":6,"fifo":null}]"#), "{json}");

        // The restart warns again. (The program then finds no child to wait for.)
        // SAFETY: as for Sleeper.
        unsafe { libc::kill(sleeper, libc::SIGKILL) };
        let (rout, rerr) = (work.join("restart.out"), work.join("restart.err"));
        let argv = [bins.restart.clone().into_os_string(), image.clone().into_os_string()];
        let mut rc = user_command(&argv, false, work.path());
        rc.stdin(Stdio::null()).stdout(std::fs::File::create(&rout)?).stderr(std::fs::File::create(&rerr)?);
        let mut restarted = rc.spawn()?;
        wait_for("the restarted program's steps", || read(&rout).contains("step "))?;
        std::fs::write(work.join("go"), b"")?;
        let st = restarted.wait()?;
        ensure!(st.success(), "restart failed: {st}\n{}", read(&rerr));
        let warnings: Vec<String> = read(&rerr).lines().map(str::to_string).collect();
        let expect = [
            format!("ckpt-restart: warning: the program's child processes were not in the image and are gone (its wait() fails with ECHILD): {children}"),
            "ckpt-restart: warning: fd 0 read a pipe fed by another process: its 6 unread bytes and later input are lost; it reads ckpt-restart's own fd 0 instead".to_string(),
        ];
        // Then the restart's own line, once the program runs again.
        let said = format!("ckpt: restarted from {} (checkpoint 1, ", image.display());
        ensure!(warnings.len() == 3 && warnings[..2] == expect && warnings[2].starts_with(&said), "restart warnings:\n{}", warnings.join("\n"));
        ensure!(read(&rout).contains("result children=0"), "{}", read(&rout));
        Ok(())
    })();
    kill_and_reap(&mut run);
    r
}
