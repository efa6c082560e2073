//! A process of a tree that is exiting when a checkpoint of the tree is asked (tree_exit_during.c:
//! its exit waits in a destructor, after the runtime saw it begin). The checkpoint fails, and the
//! line of ckpt-run and ckpt-ctl's answer name the process and why ("process PID (leaver) exited
//! during the checkpoint; the previous image set is kept"); the previous set is left as it was
//! and restarts; once the process has ended, the next checkpoint succeeds, and the tree restarted
//! from it (after a SIGKILL of the whole tree) ends with the result of an uninterrupted run.

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::scenario::{ckpt_run_with, run_plain, user_command};
use ckpt_tests::{result_of, Bins, Proc, Program, Record, Workdir};
use std::path::Path;
use std::time::{Duration, Instant};

const MINUTE: Duration = Duration::from_secs(60);

/// Wait until `p` printed a line starting with `text` on stdout; that line.
fn wait_for_line(p: &mut Proc, text: &str) -> Result<String> {
    let deadline = Instant::now() + MINUTE;
    loop {
        if let Some(l) = p.complete_lines().into_iter().find(|l| l.starts_with(text)) {
            return Ok(l);
        }
        ensure!(p.running() && Instant::now() < deadline, "no line {text:?} on stdout\n{}", p.record());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ckpt-restart `set` (with `end` there, the tree ends at once after the leaver): its record.
fn restart(bins: &Bins, set: &Path, cwd: &Path, as_nobody: bool) -> Result<Record> {
    let argv = [bins.restart.clone().into_os_string(), set.as_os_str().to_os_string()];
    let mut r = Proc::spawn(&format!("ckpt-restart {}", set.display()), user_command(&argv, as_nobody, cwd))?;
    let st = r.wait(MINUTE * 2);
    let rec = r.record();
    st.with_context(|| format!("{rec}"))?;
    Ok(rec)
}

fn exiting_member(as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(&format!("tree-exit-during{}", if as_nobody { "-nobody" } else { "" }))?;
    let program = Program::c(&work, "tree_exit_during.c", &[], &["150", "20"])?;
    let files = ["leave", "go", "end"];

    // The uninterrupted run, every file there from the start.
    for f in files {
        std::fs::write(work.join(f), b"")?;
    }
    let plain = run_plain(&program, as_nobody, MINUTE * 2)?;
    let want = result_of(&plain.stdout).map(str::to_string).with_context(|| format!("no result in the plain run\n{plain}"))?;
    for f in files {
        std::fs::remove_file(work.join(f))?;
    }

    let mut cmd = ckpt_run_with(&bins, &program, &work.images(), &[], as_nobody);
    cmd.env("CKPT_NAMESPACE", "1");
    let mut run = Proc::spawn("ckpt-run", cmd)?;
    let set = work.images().join(program.image_name());
    let leaver: i32 = wait_for_line(&mut run, "leaver ")?.trim_start_matches("leaver ").parse()?;
    run.wait_for_step(5, MINUTE)?;
    run.signal(libc::SIGUSR2)?;
    run.wait_for_stderr("ckpt: checkpoint 1: ", MINUTE)?;
    let manifest = std::fs::read(set.join("tree"))?;

    // The leaver is in its exit when the checkpoint is asked: it fails, naming it.
    std::fs::write(work.join("leave"), b"")?;
    wait_for_line(&mut run, "held")?;
    let ctl = [bins.dir.join("ckpt-ctl").into_os_string(), "--dir".into(), work.images().into_os_string(), "checkpoint".into(), "--wait".into()];
    let out = user_command(&ctl, as_nobody, work.path()).output()?;
    let said = format!("process {leaver} (leaver) exited during the checkpoint; the previous image set is kept");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(1) && err.contains(&said), "ckpt-ctl checkpoint --wait: {}: {err}\n(wanted {said:?})", out.status);
    run.wait_for_stderr(&format!("ckpt: checkpoint 2 of the process tree failed, the program continues: {said}"), MINUTE)?;
    ensure!(std::fs::read(set.join("tree"))? == manifest, "the set changed after the failed checkpoint");

    // Once it has ended, the next checkpoint succeeds.
    std::fs::write(work.join("go"), b"")?;
    wait_for_line(&mut run, "left ")?;
    run.signal(libc::SIGUSR2)?;
    run.wait_for_stderr("ckpt: checkpoint 2: ", MINUTE)?;
    run.kill()?;
    let rec = run.record();
    ensure!(result_of(&rec.stdout).is_none(), "the tree ended before it was killed\n{rec}");

    // Both sets restart and end as the uninterrupted run: the last one, and the one kept (the
    // leaver of which leaves at once).
    std::fs::write(work.join("end"), b"")?;
    for s in [set.clone(), work.images().join(format!("{}.1", program.image_name()))] {
        let again = restart(&bins, &s, work.path(), as_nobody)?;
        ensure!(again.success() && !again.stdout.contains("start "), "the restart of {} failed or started over\n{again}", s.display());
        match result_of(&again.stdout) {
            Some(got) if got == want => {}
            got => bail!("the restart of {} printed {got:?}, the uninterrupted run {want:?}\n{rec}\n{again}", s.display()),
        }
    }
    Ok(())
}

#[test]
fn a_member_exiting_during_the_checkpoint_is_named_and_the_next_checkpoint_succeeds() -> Result<()> {
    exiting_member(false)
}

#[test]
fn a_member_exiting_during_the_checkpoint_is_named_and_the_next_checkpoint_succeeds_as_nobody() -> Result<()> {
    exiting_member(true)
}
