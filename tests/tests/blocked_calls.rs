//! Blocked system calls are not interrupted by checkpoints: neither in the running program
//! (checkpoints while its threads sit in epoll_wait, poll, select, nanosleep, pause, sigsuspend,
//! sigwaitinfo, futex, semop, msgrcv, accept, read, recv...) nor after a restart (the restarted
//! threads go on waiting in their calls). Each of those programs treats any EINTR it did not
//! cause itself, and any early return, as fatal (tests/programs/blocked_calls.c); sleeps go on
//! for the time that was left, not for their whole time again (tests/programs/sleep_left.c).

mod restore_util;

use anyhow::{bail, Context, Result};
use ckpt_tests::{result_of, run_and_verify, run_plain, Bins, Options, Proc, Program, Workdir};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

/// System V semaphores and message queues the program made (ids in <work>/ipc-ids) are removed
/// when the test ends, whatever happened.
struct IpcCleanup(std::path::PathBuf);

impl Drop for IpcCleanup {
    fn drop(&mut self) {
        let text = std::fs::read_to_string(&self.0).unwrap_or_default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(kind), Some(Ok(id))) = (it.next(), it.next().map(str::parse::<i32>)) else { continue };
            // SAFETY: removing an IPC object by id; a wrong or gone id only fails.
            unsafe {
                if kind == "sem" {
                    libc::semctl(id, 0, libc::IPC_RMID);
                } else {
                    libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut());
                }
            }
        }
    }
}

fn blocked_calls(work: &Workdir, rounds: u32, families: &[&str]) -> Result<(Program, IpcCleanup)> {
    let dir = work.path().to_string_lossy().into_owned();
    let rounds = rounds.to_string();
    let mut args = vec![dir.as_str(), rounds.as_str()];
    args.extend_from_slice(families);
    let program = Program::c(work, "blocked_calls.c", &["-pthread"], &args)?;
    Ok((program, IpcCleanup(work.join("ipc-ids"))))
}

/// Checkpoints while every family is blocked (rounds 1 and 2), then checkpoint, SIGKILL and
/// restart in round 3: the restarted threads are still blocked in their calls and finish them.
fn every_family(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let (program, _ipc) = blocked_calls(&work, 4, &[])?;
    let mut opts = Options::new(&work, &[3]);
    opts.also_at = vec![1, 2];
    opts.as_nobody = nobody;
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}

#[test]
fn blocked_calls_survive_checkpoints_and_restart() -> Result<()> {
    every_family("blocked-calls", false)
}

#[test]
fn blocked_calls_survive_checkpoints_and_restart_as_nobody() -> Result<()> {
    every_family("blocked-calls-nobody", true)
}

/// Restarted twice: a call re-issued after one restart is interrupted by the next checkpoint.
#[test]
fn blocked_calls_survive_two_restarts() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("blocked-calls-chain")?;
    let (program, _ipc) = blocked_calls(&work, 4, &[])?;
    run_and_verify(&bins, &program, &Options::new(&work, &[2, 3]))?;
    Ok(())
}

/// `program` under ckpt-run, checkpointed (kill -USR2) once it printed each of `steps`, never
/// killed: its record once it exited.
fn checkpoints_while_running(bins: &Bins, program: &Program, work: &Workdir, steps: &[u64]) -> Result<ckpt_tests::Record> {
    let mut p = ckpt_run(bins, program, work)?;
    for (k, &step) in steps.iter().enumerate() {
        p.wait_for_step(step, TIMEOUT)?;
        p.signal(libc::SIGUSR2)?;
        wait_stderr(&mut p, &format!("ckpt: checkpoint {}:", k + 1))?;
    }
    p.wait(TIMEOUT)?;
    Ok(p.record())
}

/// Receive timeouts (SO_RCVTIMEO; not restored by a restart) and the other families, with a
/// checkpoint in each round of the running program.
#[test]
fn blocked_calls_with_socket_timeouts_survive_checkpoints() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("blocked-calls-running")?;
    let (program, _ipc) = blocked_calls(&work, 3, &["recv_t", "epoll", "sleep", "nanosleep", "futex_t", "pause"])?;
    let plain = run_plain(&program, false, TIMEOUT)?;
    let rec = checkpoints_while_running(&bins, &program, &work, &[1, 2, 3])?;
    let want = result_of(&plain.stdout).context("reference result")?.to_string();
    if !rec.success() || result_of(&rec.stdout) != Some(want.as_str()) {
        bail!("expected result {want}{}", ckpt_tests::process::transcript(&[plain, rec]));
    }
    Ok(())
}

/// The three sleeps of sleep_left with their times, from its output.
fn slept(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("slept ")?.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

const SLEEP_S: u64 = 12;

/// Checkpoints 3 s and 6 s into 12 s sleeps: the sleeps end on time. Had a checkpoint made them
/// start over, they would have lasted at least 18 s. (A bound no correct run can cross: a sleep
/// ends at its deadline plus the kernel's timer slack, milliseconds.)
#[test]
fn sleeps_are_not_extended_by_checkpoints() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sleep-left-running")?;
    let program = Program::c(&work, "sleep_left.c", &["-pthread"], &[&SLEEP_S.to_string()])?;
    let mut p = ckpt_run(&bins, &program, &work)?;
    wait_line(&mut p, "sleeping")?;
    for k in 1..=2 {
        std::thread::sleep(Duration::from_secs(3));
        p.signal(libc::SIGUSR2)?;
        wait_stderr(&mut p, &format!("ckpt: checkpoint {k}:"))?;
    }
    p.wait(TIMEOUT)?;
    let rec = p.record();
    let times = slept(&rec.stdout);
    if !rec.success() || times.len() != 3 || times.iter().any(|(_, ms)| *ms >= (SLEEP_S + 5) * 1000) {
        bail!("the sleeps did not end on time: {times:?}{}", ckpt_tests::process::transcript(&[rec]));
    }
    Ok(())
}

/// Checkpoint 6 s into 12 s sleeps, SIGKILL, restart at once: the restarted program sleeps what
/// was left (about 6 s), not 12 s again, and no sleep came back early (the program checks).
#[test]
fn sleeps_go_on_for_the_time_left_after_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sleep-left-restart")?;
    let program = Program::c(&work, "sleep_left.c", &["-pthread"], &[&SLEEP_S.to_string()])?;
    let mut p = ckpt_run(&bins, &program, &work)?;
    wait_line(&mut p, "sleeping")?;
    std::thread::sleep(Duration::from_secs(SLEEP_S / 2));
    p.signal(libc::SIGUSR2)?;
    wait_stderr(&mut p, "ckpt: checkpoint 1:")?;
    p.kill()?;
    let image = work.images().join(program.image_name());
    let restart_argv: Vec<std::ffi::OsString> = vec![bins.restart.clone().into(), image.into()];
    let t0 = Instant::now();
    let mut r = Proc::spawn("ckpt-restart", ckpt_tests::scenario::user_command(&restart_argv, false, &program.cwd))?;
    r.wait(TIMEOUT)?;
    let after = t0.elapsed();
    let rec = r.record();
    let times = slept(&rec.stdout);
    // Starting over would take SLEEP_S after the restart; what was left is SLEEP_S / 2 (less
    // the time the image took to appear). 3 s of margin for a slow restart.
    if !rec.success() || times.len() != 3 || after >= Duration::from_secs(SLEEP_S - 3) {
        bail!(
            "after the restart the program slept {after:?} ({times:?}); what was left was at most {} s{}",
            SLEEP_S / 2,
            ckpt_tests::process::transcript(&[p.record(), rec])
        );
    }
    Ok(())
}

/// `program` under ckpt-run, images in `work`'s image directory.
fn ckpt_run(bins: &Bins, program: &Program, work: &Workdir) -> Result<Proc> {
    Proc::spawn("ckpt-run", ckpt_tests::scenario::ckpt_run_with(bins, program, &work.images(), &[], false))
}

fn wait_line(p: &mut Proc, line: &str) -> Result<()> {
    let t0 = Instant::now();
    while !p.complete_lines().iter().any(|l| l == line) {
        if t0.elapsed() > TIMEOUT || !p.running() {
            bail!("no line {line:?}{}", ckpt_tests::process::transcript(&[p.record()]));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn wait_stderr(p: &mut Proc, text: &str) -> Result<()> {
    p.wait_for_stderr(text, TIMEOUT).map_err(|e| anyhow::anyhow!("{e:#}{}", ckpt_tests::process::transcript(&[p.record()])))
}

/// Threads that wait in short calls in a tight loop are caught by checkpoints on their way into
/// a call as often as in it; a call /proc could not name for the runtime must still not return
/// EINTR (tests/programs/busy_sleepers.c). Nine checkpoints, the last one killed and restarted.
#[test]
fn busy_sleepers_never_see_eintr() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("busy-sleepers")?;
    let program = Program::c(&work, "busy_sleepers.c", &["-pthread"], &["60"])?;
    let mut opts = Options::new(&work, &[45]);
    opts.also_at = vec![5, 10, 15, 20, 25, 30, 35, 40];
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}

/// A thread whose sleep a checkpoint re-issued (the runtime's code is on its stack) is cancelled
/// after a restart: the unwinder finds the program's frames, its cleanup handler runs.
#[test]
fn a_reissued_wait_can_be_cancelled_after_restart() {
    use restore_util::*;
    let dir = workdir("cancel_blocked");
    let prog = compile("cancel_blocked", &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, "cancel_blocked");
    let img = p.checkpoint(&dir, "cancel_blocked");
    p.kill9();
    std::fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&img, &[], &dir);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(r.stdout(), "canceled 1 cleanup 1\n", "{}", r.stderr());
}

/// A thread that enters its wait after the checkpoint thread found it running, and before the
/// stop signal reaches it, at the program's first checkpoint (tests/programs/late_entry.c):
/// the call, which /proc never named, is still issued again, in the running program and after
/// the restart (busy_sleepers' poll() saw EINTR so once, under load).
fn late_entry(nobody: bool) {
    use restore_util::*;
    let tag = if nobody { "late_entry_nobody" } else { "late_entry" };
    let dir = workdir(tag);
    let prog = compile("late_entry", &dir);
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "late_entry");
    p.kill9();
    assert!(!p.stdout().contains("EINTR"), "the running program saw EINTR: {}", p.stderr());
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(r.stdout(), "ppoll 0\n", "{}", r.stderr());
}

#[test]
fn a_wait_entered_after_the_look_is_issued_again() {
    late_entry(false);
}

#[test]
fn a_wait_entered_after_the_look_is_issued_again_as_nobody() {
    late_entry(true);
}
