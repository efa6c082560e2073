//! The outer process (ckpt-run, ckpt-restart) stands for a program that runs in its own
//! namespace: signals sent to it reach the program once, also when they were sent to the whole
//! process group (which the program is in: it gets them directly); the program's own kill(0, sig)
//! is not sent back to it; a stop of the program stops the outer process too (job control) and a
//! SIGCONT continues both; the exit status, or death by a signal, is the program's; SIGKILL of the
//! outer process kills the program. The same after a restart.

use anyhow::{bail, ensure, Result};
use ckpt_tests::process::program_pid;
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Workdir};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// `argv` in its own process group (so that the test can signal that group), as nobody, with
/// namespaces on whatever CKPT_NAMESPACE the suite runs with.
fn spawn(label: &str, argv: Vec<OsString>, cwd: &Path) -> Result<Proc> {
    let mut cmd = user_command(&argv, true, cwd);
    cmd.process_group(0).env("CKPT_NAMESPACE", "1");
    Proc::spawn(label, cmd)
}

fn wait_output(p: &mut Proc, what: &str) -> Result<()> {
    let t0 = Instant::now();
    while !p.stdout().contains(what) {
        ensure!(p.running(), "{} exited before printing {what:?}: {}{}", p.label(), p.stdout(), p.stderr());
        ensure!(t0.elapsed() < T, "{} did not print {what:?}: {}", p.label(), p.stdout());
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: signalling a process (group) this test started.
    unsafe { libc::kill(pid, sig) };
}

/// A short pause, after which a duplicate would have arrived.
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

fn state_of(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()).unwrap_or('?')
}

fn wait_state(pid: i32, want: char) -> Result<()> {
    let t0 = Instant::now();
    while state_of(pid) != want {
        ensure!(t0.elapsed() < T, "process {pid} is in state {}, expected {want}", state_of(pid));
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The checks on a running outer process `p` whose program printed "usr1=0 hup=1".
fn signals_once(p: &mut Proc) -> Result<()> {
    let outer = p.pid();
    ensure!(program_pid(outer) != outer, "the program does not run in a namespace of its own");
    kill(outer, libc::SIGUSR1);
    wait_output(p, "usr1=1 hup=1")?;
    kill(-outer, libc::SIGUSR1);
    wait_output(p, "usr1=2 hup=1")?;
    kill(-outer, libc::SIGHUP);
    wait_output(p, "usr1=2 hup=2")?;
    kill(outer, libc::SIGHUP);
    wait_output(p, "usr1=2 hup=3")?;
    settle();
    ensure!(!p.stdout().contains("usr1=3") && !p.stdout().contains("hup=4"), "a signal arrived twice: {}", p.stdout());
    // Job control: a stop signal sent to the outer process stops the program, and then the
    // outer process itself (what a shell waits for); SIGCONT continues both.
    let program = program_pid(outer);
    kill(outer, libc::SIGTSTP);
    wait_state(program, 'T')?;
    wait_state(outer, 'T')?;
    kill(outer, libc::SIGCONT);
    wait_state(program, 'S')?;
    kill(outer, libc::SIGUSR1);
    wait_output(p, "usr1=3 hup=3")?;
    kill(outer, libc::SIGTERM);
    let st = p.wait(T)?;
    ensure!(st.code() == Some(7), "exit status {st}, the program's was 7: {}", p.stderr());
    Ok(())
}

#[test]
fn signals_reach_the_program_once_and_its_status_comes_back() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-signals")?;
    let prog = compile_c(&work, "sig_relay.c", &[])?;
    let argv = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), prog.into()];
    let mut p = spawn("ckpt-run sig_relay", argv, work.path())?;
    // Its own kill(0, SIGHUP) reached it once (not also forwarded back by ckpt-run).
    wait_output(&mut p, "usr1=0 hup=1")?;
    signals_once(&mut p)
}

#[test]
fn after_a_restart_too() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-signals-restart")?;
    let prog = compile_c(&work, "sig_relay.c", &[])?;
    let argv = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), prog.into()];
    let mut p = spawn("ckpt-run sig_relay", argv, work.path())?;
    wait_output(&mut p, "usr1=0 hup=1")?;
    // A checkpoint signal sent to the whole group reaches the program twice (directly and from
    // ckpt-run): one checkpoint.
    let image = work.images().join("sig_relay.ckpt");
    kill(-p.pid(), libc::SIGUSR2);
    let t0 = Instant::now();
    while !image.exists() {
        ensure!(t0.elapsed() < T, "no image: {}", p.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(1500));
    ensure!(p.stderr().matches("ckpt: checkpoint").count() == 1, "not exactly one checkpoint: {}", p.stderr());
    p.kill()?;
    let argv = vec![bins.restart.clone().into(), image.into()];
    let mut r = spawn("ckpt-restart", argv, work.path())?;
    // The restarted program goes on printing only when something changes.
    std::thread::sleep(Duration::from_millis(300));
    kill(r.pid(), libc::SIGHUP);
    wait_output(&mut r, "usr1=0 hup=2")?;
    kill(r.pid(), libc::SIGUSR1);
    wait_output(&mut r, "usr1=1 hup=2")?;
    kill(-r.pid(), libc::SIGUSR1);
    wait_output(&mut r, "usr1=2 hup=2")?;
    settle();
    ensure!(!r.stdout().contains("usr1=3"), "a signal arrived twice: {}", r.stdout());
    kill(r.pid(), libc::SIGTERM);
    let st = r.wait(T)?;
    ensure!(st.code() == Some(7), "exit status {st}, the program's was 7: {}", r.stderr());
    Ok(())
}

#[test]
fn death_by_a_signal_and_sigkill_are_passed_on() -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-signals-death")?;
    let prog = compile_c(&work, "sig_relay.c", &[])?;
    let run = |label: &str| -> Result<Proc> {
        let argv = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), prog.clone().into(), "die".into()];
        let mut p = spawn(label, argv, work.path())?;
        wait_output(&mut p, "ready")?;
        Ok(p)
    };
    let mut p = run("ckpt-run (TERM)")?;
    kill(p.pid(), libc::SIGTERM);
    let st = p.wait(T)?;
    ensure!(st.signal() == Some(libc::SIGTERM), "ckpt-run ended with {st}, the program died by SIGTERM");

    let mut p = run("ckpt-run (KILL)")?;
    let program = program_pid(p.pid());
    ensure!(program != p.pid(), "the program does not run in a namespace of its own");
    p.kill()?;
    let t0 = Instant::now();
    while std::fs::metadata(format!("/proc/{program}")).is_ok() && state_of(program) != 'Z' {
        if t0.elapsed() > T {
            bail!("the program {program} outlived the SIGKILL of ckpt-run");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The processes running `exe`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

fn running(exe: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if std::fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe) && state_of(pid) != 'Z' {
            out.push(pid);
        }
    }
    out
}

/// `ckpt-run -- PROG ARGS` on a terminal of its own (util-linux `script`, whose shell execs
/// ckpt-run: ckpt-run leads the terminal's session), once the program printed "step 3".
fn on_a_terminal(bins: &Bins, work: &Workdir, prog: &Path, args: &str) -> Result<Proc> {
    let cmdline = format!("exec '{}' --dir '{}' -- '{}' {args}", bins.run.display(), work.images().display(), prog.display());
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-q", "-e", "-f", "-c", &cmdline, "/dev/null"]).current_dir(work.path()).env("CKPT_NAMESPACE", "1");
    // The hangup's default action, whatever the suite runs under (nohup ignores SIGHUP, and the
    // program would inherit that: natively too it would then run on after a hangup).
    // SAFETY: signal() is async-signal-safe, called in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut term = Proc::spawn("script", cmd)?;
    if let Err(e) = wait_output(&mut term, "step 3") {
        let _ = term.kill();
        return Err(e);
    }
    ensure!(!running(prog).is_empty(), "the program is not running: {}", term.stdout());
    Ok(term)
}

/// Run on a terminal of its own (util-linux `script`), whose shell execs ckpt-run: ckpt-run leads
/// the terminal's session, as the program would natively. When the terminal goes away (its
/// master closed: `script` killed), the kernel's hangup reaches the session leader alone; the
/// program must get it as it would natively (and, not handling it, end), not run on without
/// a terminal.
#[test]
fn a_hangup_of_the_terminal_reaches_the_program() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-hangup")?;
    let prog = compile_c(&work, "counter.c", &[])?;
    let mut term = on_a_terminal(&bins, &work, &prog, "100000 50")?;
    let r = (|| -> Result<()> {
        kill(term.pid(), libc::SIGKILL);
        let t0 = Instant::now();
        while !running(&prog).is_empty() {
            ensure!(t0.elapsed() < Duration::from_secs(10), "the program runs on after its terminal's hangup: {:?}", running(&prog));
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    })();
    for pid in running(&prog) {
        kill(pid, libc::SIGKILL);
    }
    let _ = term.kill();
    r
}

/// SIGKILL of the outer process, when it leads the terminal's session (as `script`, ssh -t or
/// setsid make it), ends the program at once, as SIGKILL of the program would natively (it would
/// lead the session itself): the program does not first get the hangup the kernel sends the
/// terminal's foreground process group when a session leader dies, so it cannot clean up what
/// its image still needs (vim removes its swap file on SIGHUP, and the image could no longer be
/// restarted).
#[test]
fn a_killed_session_leader_takes_the_program_without_a_hangup() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-killed-leader")?;
    let prog = compile_c(&work, "hup_marker.c", &[])?;
    let marker = work.join("hangup-handler-ran");
    let mut term = on_a_terminal(&bins, &work, &prog, &format!("'{}'", marker.display()))?;
    let r = (|| -> Result<()> {
        // Ours is script's child (ckpt-run's init is a child of ckpt-run).
        let outer: Vec<i32> = running(&bins.run).into_iter().filter(|&p| parent_of(p) == Some(term.pid())).collect();
        ensure!(outer.len() == 1, "expected one ckpt-run started by script, found {outer:?}");
        kill(outer[0], libc::SIGKILL);
        let t0 = Instant::now();
        while !running(&prog).is_empty() {
            ensure!(t0.elapsed() < Duration::from_secs(10), "the program runs on after SIGKILL of ckpt-run: {:?}", running(&prog));
            std::thread::sleep(Duration::from_millis(20));
        }
        ensure!(!marker.exists(), "the program got a hangup and ran its handler before it ended (natively SIGKILL gives it no chance)");
        Ok(())
    })();
    for pid in running(&prog) {
        kill(pid, libc::SIGKILL);
    }
    let _ = term.kill();
    r
}

/// Two checkpoint requests a moment apart, one through ckpt-run (forwarded, marked) and one sent
/// to the program directly (as when the kernel delivers a forwarded signal without its siginfo,
/// the user's queue of pending signals being full): once the first checkpoint is written, the
/// second is a new request, not a copy of the first. (Before: taken as one, the second lost.)
#[test]
fn a_second_request_after_a_written_checkpoint_is_not_taken_for_a_copy() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-signals-second")?;
    let prog = compile_c(&work, "sig_relay.c", &[])?;
    let argv = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), prog.into()];
    let mut p = spawn("ckpt-run sig_relay", argv, work.path())?;
    wait_output(&mut p, "usr1=0 hup=1")?;
    let program = program_pid(p.pid());
    ensure!(program != p.pid(), "the program does not run in a namespace of its own");
    let image = work.images().join("sig_relay.ckpt");
    kill(p.pid(), libc::SIGUSR2);
    let t0 = Instant::now();
    while p.stderr().matches("ckpt: checkpoint").count() < 1 {
        ensure!(t0.elapsed() < T, "no first checkpoint: {}", p.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    ensure!(image.exists(), "the first checkpoint wrote no image: {}", p.stderr());
    // Well within the second in which a forwarded and a direct copy count as one.
    kill(program, libc::SIGUSR2);
    while p.stderr().matches("ckpt: checkpoint").count() < 2 {
        ensure!(t0.elapsed() < Duration::from_secs(10), "the second request was lost: {}", p.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    settle();
    ensure!(p.stderr().matches("ckpt: checkpoint").count() == 2, "not exactly two checkpoints: {}", p.stderr());
    kill(p.pid(), libc::SIGTERM);
    let st = p.wait(T)?;
    ensure!(st.code() == Some(7), "exit status {st}, the program's was 7: {}", p.stderr());
    Ok(())
}
