//! A process tree's checkpoint with the stop signal (`--stop-signal`, the wall-time pattern):
//! after the cut no process of the tree runs program code again; the namespace ends once the set
//! is committed (exit status 75). tree_stop.c's child writes numbered lines to stdout (a pipe to
//! the test, outside any image) all the time: a line it wrote after the cut would be written
//! again by the restart. So the lines of the stopped run and of its restarts together must be
//! 1..LINES, each once, in order, with the uninterrupted run's result. The restarted tree also
//! takes an ordinary checkpoint and goes on (the stop request the image was taken in answer to
//! is not the restarted program's), then stops again and is restarted once more. The first stop
//! signal goes to ckpt-run (forwarded to the program), or straight to the child (a process of
//! the tree other than the program asks: init ends the namespace once it has exited).

use anyhow::{ensure, Context, Result};
use ckpt_tests::{Bins, Proc, Program, Workdir};
use std::ffi::OsString;
use std::time::Duration;

const LINES: u64 = 20000;

fn numbers(records: &[String]) -> Vec<u64> {
    records.iter().flat_map(|out| out.lines().filter_map(ckpt_tests::step_of).collect::<Vec<_>>()).collect()
}

/// Stop signal at step 2000, restart, ordinary checkpoint at 6000 and stop signal at 10000,
/// restart to the end. `alone`: the program writes the lines itself, without a child (one image,
/// not a set). `to_child`: the first stop signal is sent to the child itself.
fn stop_and_restart(name: &str, as_nobody: bool, alone: bool, to_child: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let lines = LINES.to_string();
    let mut args = vec![lines.as_str(), "200"];
    if alone {
        args.push("alone");
    }
    let program = Program::c(&work, "tree_stop.c", &[], &args)?;
    let minute = Duration::from_secs(60);
    let plain = ckpt_tests::run_plain(&program, as_nobody, Duration::from_secs(120))?;
    let want = ckpt_tests::result_of(&plain.stdout).context("the uninterrupted run printed no result")?.to_string();
    let set = work.images().join(program.image_name());
    let mut procs: Vec<Proc> = Vec::new();
    let run = (|| -> Result<()> {
        let mut cmd = ckpt_tests::scenario::ckpt_run_with(&bins, &program, &work.images(), &["--stop-signal", "USR1"], as_nobody);
        cmd.env("CKPT_NAMESPACE", "1");
        procs.push(Proc::spawn("ckpt-run", cmd)?);
        let restart = |label: &str| -> Result<Proc> {
            let argv: Vec<OsString> = vec![bins.restart.clone().into(), set.clone().into()];
            let mut cmd = ckpt_tests::scenario::user_command(&argv, as_nobody, &program.cwd);
            cmd.env("CKPT_NAMESPACE", "1");
            Proc::spawn(label, cmd)
        };
        let stop = |p: &mut Proc, at: u64, to_child: bool| -> Result<()> {
            p.wait_for_step(at, minute)?;
            if to_child {
                let child = *ckpt_tests::process::children(p.program_pid()).first().context("the program has no child")?;
                // SAFETY: signalling a process of the tree we started.
                ensure!(unsafe { libc::kill(child, libc::SIGUSR1) } == 0, "kill {child}: {}", std::io::Error::last_os_error());
            } else {
                p.signal(libc::SIGUSR1)?;
            }
            let st = p.wait(minute)?;
            ensure!(st.code() == Some(75), "{} after its stop signal: {st} (75 expected)", p.label());
            let written = if alone { set.is_file() } else { set.join("tree").is_file() };
            ensure!(written, "no image {} after the stop", set.display());
            Ok(())
        };
        stop(procs.last_mut().unwrap(), 2000, to_child)?;
        procs.push(restart("ckpt-restart #1")?);
        let p = procs.last_mut().unwrap();
        // An ordinary checkpoint of the restarted tree: it goes on.
        p.wait_for_step(6000, minute)?;
        p.signal(libc::SIGUSR2)?;
        p.wait_for_stderr("ckpt: checkpoint", minute)?;
        let after = p.last_step().unwrap_or(0);
        p.wait_for_step(after + 1000, minute).context("the restarted tree did not go on after an ordinary checkpoint")?;
        stop(p, 10000, false)?;
        procs.push(restart("ckpt-restart #2")?);
        let st = procs.last_mut().unwrap().wait(Duration::from_secs(120))?;
        ensure!(st.success(), "the last restart: {st}");
        Ok(())
    })();
    let records: Vec<ckpt_tests::Record> = procs.iter_mut().map(|p| {
        if p.running() {
            let _ = p.kill();
        }
        p.record()
    }).collect();
    let transcript = || records.iter().map(|r| format!("{r}")).collect::<Vec<_>>().join("\n");
    run.map_err(|e| anyhow::anyhow!("{e:#}\n{}", transcript()))?;
    let outs: Vec<String> = records.iter().map(|r| r.stdout.clone()).collect();
    let got = numbers(&outs);
    let dup = got.windows(2).find(|w| w[1] <= w[0]);
    ensure!(dup.is_none(), "line {:?} was written twice or out of order: a process ran on after the cut", dup);
    ensure!(got.len() as u64 == LINES && got.first() == Some(&1) && got.last() == Some(&LINES), "lines {} (first {:?}, last {:?}) instead of 1..{LINES}", got.len(), got.first(), got.last());
    let result = ckpt_tests::result_of(&records.last().unwrap().stdout).map(str::to_string);
    ensure!(result.as_deref() == Some(want.as_str()), "result {result:?}, uninterrupted {want}\n{}", transcript());
    Ok(())
}

#[test]
fn a_tree_stopped_by_the_stop_signal_runs_no_line_after_the_cut() -> Result<()> {
    stop_and_restart("trees-stop", false, false, false)
}

#[test]
fn a_tree_whose_child_gets_the_stop_signal_runs_no_line_after_the_cut() -> Result<()> {
    stop_and_restart("trees-stop-child", false, false, true)
}

#[test]
fn a_tree_stopped_by_the_stop_signal_runs_no_line_after_the_cut_as_nobody() -> Result<()> {
    stop_and_restart("trees-stop-nobody", true, false, false)
}

#[test]
fn a_program_alone_stopped_by_the_stop_signal_runs_no_line_after_the_cut() -> Result<()> {
    stop_and_restart("stop-alone", false, true, false)
}
