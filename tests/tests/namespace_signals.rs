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

/// sig_relay under ckpt-run (in a work directory named after `name`), once it has printed its
/// first counts (its own kill(0, SIGHUP) reached it once, not also forwarded back by ckpt-run).
fn relay(name: &str) -> Result<(Bins, Workdir, Proc)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let prog = compile_c(&work, "sig_relay.c", &[])?;
    let argv = vec![bins.run.clone().into(), "--dir".into(), work.images().into(), "--".into(), prog.into()];
    let mut p = spawn("ckpt-run sig_relay", argv, work.path())?;
    wait_output(&mut p, "usr1=0 hup=1")?;
    Ok((bins, work, p))
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
    let (_bins, _work, mut p) = relay("ns-signals")?;
    signals_once(&mut p)
}

#[test]
fn after_a_restart_too() -> Result<()> {
    let (bins, work, mut p) = relay("ns-signals-restart")?;
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
    on_a_terminal_as(bins, work, prog, args, false)
}

/// `on_a_terminal`, as user nobody if asked (and we are root).
fn on_a_terminal_as(bins: &Bins, work: &Workdir, prog: &Path, args: &str, as_nobody: bool) -> Result<Proc> {
    on_a_terminal_under(bins, work, &format!("'{}' {args}", prog.display()), prog, as_nobody)
}

/// `ckpt-run -- COMMAND` (shell words) on a terminal of its own, once `prog`, which it runs,
/// printed "step 3".
fn on_a_terminal_under(bins: &Bins, work: &Workdir, command: &str, prog: &Path, as_nobody: bool) -> Result<Proc> {
    let cmdline = format!("exec '{}' --dir '{}' -- {command}", bins.run.display(), work.images().display());
    let mut term = in_script(&cmdline, work, as_nobody)?;
    if let Err(e) = wait_output(&mut term, "step 3") {
        let _ = term.kill();
        return Err(e);
    }
    ensure!(!running(prog).is_empty(), "the program is not running: {}", term.stdout());
    Ok(term)
}

/// Shell command `cmdline` on a terminal of its own (util-linux `script`), as nobody if asked.
fn in_script(cmdline: &str, work: &Workdir, as_nobody: bool) -> Result<Proc> {
    let argv: Vec<OsString> = ["script", "-q", "-e", "-f", "-c", cmdline, "/dev/null"].iter().map(OsString::from).collect();
    let mut cmd = user_command(&argv, as_nobody, work.path());
    cmd.env("CKPT_NAMESPACE", "1");
    // The hangup's default action, whatever the suite runs under (nohup ignores SIGHUP, and the
    // program would inherit that: natively too it would then run on after a hangup).
    // SAFETY: signal() is async-signal-safe, called in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    Proc::spawn("script", cmd)
}

/// The one process running `exe` that `script` (`term`) started.
fn child_running(exe: &Path, term: &Proc) -> Result<i32> {
    let found: Vec<i32> = running(exe).into_iter().filter(|&p| parent_of(p) == Some(term.pid())).collect();
    ensure!(found.len() == 1, "expected one {} started by script, found {found:?}", exe.display());
    Ok(found[0])
}

/// Until no process runs `prog` any more (`after`: what happened, for the error).
fn until_gone(prog: &Path, after: &str) -> Result<()> {
    let t0 = Instant::now();
    while !running(prog).is_empty() {
        ensure!(t0.elapsed() < Duration::from_secs(10), "the program runs on after {after}: {:?}", running(prog));
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// End what a test left running: the program's processes, then `script`.
fn end(prog: &Path, term: &mut Proc) {
    for pid in running(prog) {
        kill(pid, libc::SIGKILL);
    }
    let _ = term.kill();
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
    kill(term.pid(), libc::SIGKILL);
    let r = until_gone(&prog, "its terminal's hangup");
    end(&prog, &mut term);
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
        kill(child_running(&bins.run, &term)?, libc::SIGKILL);
        until_gone(&prog, "SIGKILL of ckpt-run")?;
        ensure!(!marker.exists(), "the program got a hangup and ran its handler before it ended (natively SIGKILL gives it no chance)");
        Ok(())
    })();
    end(&prog, &mut term);
    r
}

/// The write end of the pipe ckpt-run `outer` keeps as its lifeline (init holds the read end):
/// opened again through /proc, as any process of the user (or root) may, and held.
fn hold_lifeline(outer: i32) -> Result<std::fs::File> {
    let dir = format!("/proc/{outer}/fd");
    let mut held = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        let link = std::fs::read_link(format!("{dir}/{name}")).unwrap_or_default();
        let info = std::fs::read_to_string(format!("/proc/{outer}/fdinfo/{name}")).unwrap_or_default();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok()).unwrap_or(0);
        if link.to_string_lossy().starts_with("pipe:") && flags & 3 == 1 {
            held.push(std::fs::OpenOptions::new().write(true).open(format!("{dir}/{name}"))?);
        }
    }
    ensure!(held.len() == 1, "expected one pipe ckpt-run {outer} writes to (its lifeline), found {}", held.len());
    Ok(held.remove(0))
}

/// SIGKILL of the outer process that leads its session while another process holds the outer
/// process's end of the lifeline (it opened /proc/PID/fd/N): the last close of that pipe is then
/// the other process's, after the kernel's hangup of the terminal, so the hangup (a kernel
/// SIGHUP to the foreground process group) reaches the program before the namespace's SIGKILL.
/// The runtime holds such a hangup while ckpt-run is exiting or gone, and the SIGKILL takes the
/// program without its handler running, as natively.
fn killed_leader_with_a_held_lifeline(as_nobody: bool, how: Start) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(&format!("ns-killed-held{}{}", how.suffix(), if as_nobody { "-nobody" } else { "" }))?;
    let prog = compile_c(&work, "hup_marker.c", &[])?;
    let marker = work.join("hangup-handler-ran");
    let command = how.command(&work, &prog, &marker)?;
    let mut term = on_a_terminal_under(&bins, &work, &command, &prog, as_nobody)?;
    let r = (|| -> Result<()> {
        let outer = child_running(&bins.run, &term)?;
        // A handler installed by the system call goes behind the gate at the first checkpoint.
        if matches!(how, Start::Raw) {
            checkpoint(outer, &term)?;
            steps_after(&mut term, "ckpt: checkpoint")?;
        }
        killed_while_held(Ok(outer), &prog, &marker)
    })();
    end(&prog, &mut term);
    r
}

/// A checkpoint of the program ckpt-run `outer` runs on `term`, by SIGUSR2.
fn checkpoint(outer: i32, term: &Proc) -> Result<()> {
    kill(outer, libc::SIGUSR2);
    let t0 = Instant::now();
    while !term.stdout().contains("ckpt: checkpoint") {
        ensure!(t0.elapsed() < T, "no checkpoint: {}", term.stdout());
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Until the program on `term` printed two steps after `mark` (its output after it: returned);
/// it read its own SIGHUP handler back at each step (hup_marker says so otherwise).
fn steps_after(term: &mut Proc, mark: &str) -> Result<String> {
    let t0 = Instant::now();
    let after = |t: &Proc| t.stdout().split_once(mark).map(|(_, a)| a.to_string()).unwrap_or_default();
    while after(term).matches("step ").count() < 2 {
        ensure!(term.running() && t0.elapsed() < T, "the program does not run after {mark:?}: {}", term.stdout());
        std::thread::sleep(Duration::from_millis(10));
    }
    ensure!(!term.stdout().contains("reads back"), "the program did not read its own SIGHUP handler back: {}", term.stdout());
    Ok(after(term))
}

/// How ckpt-run (or the tree ckpt-restart restarts) runs the program that handles SIGHUP.
#[derive(Clone, Copy)]
enum Start {
    /// As the process ckpt-run starts.
    Alone,
    /// As a child of a shell that ckpt-run runs (a process of its tree, which the shell forked
    /// and which exec'd the program).
    Shell,
    /// As a child that a program ckpt-run runs starts with posix_spawn (glibc's: a clone that
    /// execs without fork).
    Spawned,
    /// As the process ckpt-run starts, with a child that shares its fd table (clone with
    /// CLONE_FILES) and has its handler too.
    Files,
    /// As the process ckpt-run starts, its handler installed by the rt_sigaction system call
    /// (no hook sees it: the runtime puts it behind the gate at the next checkpoint or restart).
    Raw,
}

impl Start {
    fn suffix(self) -> &'static str {
        match self {
            Start::Alone => "",
            Start::Shell => "-tree",
            Start::Spawned => "-spawned",
            Start::Files => "-files",
            Start::Raw => "-raw",
        }
    }

    /// The command (shell words) that runs `prog` with `marker`.
    fn command(self, work: &Workdir, prog: &Path, marker: &Path) -> Result<String> {
        let run = format!("'{}' '{}'", prog.display(), marker.display());
        Ok(match self {
            Start::Alone => run,
            Start::Shell => format!("/bin/sh -c \"{run} & wait\""),
            Start::Spawned => format!("'{}' {run}", compile_c(work, "posix_spawner.c", &[])?.display()),
            Start::Files => format!("{run} files"),
            Start::Raw => format!("{run} raw"),
        })
    }
}

/// SIGKILL of `outer` while this process holds its lifeline; the program's handler must not run.
fn killed_while_held(outer: Result<i32>, prog: &Path, marker: &Path) -> Result<()> {
    let outer = outer?;
    let held = hold_lifeline(outer)?;
    kill(outer, libc::SIGKILL);
    until_gone(prog, "SIGKILL of the outer process")?;
    drop(held);
    ensure!(!marker.exists(), "the program got the hangup and ran its handler before it ended (natively SIGKILL gives it no chance)");
    Ok(())
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_the_program_without_a_hangup() -> Result<()> {
    killed_leader_with_a_held_lifeline(false, Start::Alone)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_the_program_without_a_hangup_as_nobody() -> Result<()> {
    killed_leader_with_a_held_lifeline(true, Start::Alone)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_program_in_its_tree_without_a_hangup() -> Result<()> {
    killed_leader_with_a_held_lifeline(false, Start::Shell)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_program_in_its_tree_without_a_hangup_as_nobody() -> Result<()> {
    killed_leader_with_a_held_lifeline(true, Start::Shell)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_child_sharing_the_fd_table_without_a_hangup() -> Result<()> {
    killed_leader_with_a_held_lifeline(false, Start::Files)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_child_sharing_the_fd_table_without_a_hangup_as_nobody() -> Result<()> {
    killed_leader_with_a_held_lifeline(true, Start::Files)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_spawned_program_of_its_tree_without_a_hangup() -> Result<()> {
    killed_leader_with_a_held_lifeline(false, Start::Spawned)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_spawned_program_of_its_tree_without_a_hangup_as_nobody() -> Result<()> {
    killed_leader_with_a_held_lifeline(true, Start::Spawned)
}

/// A handler installed by the rt_sigaction system call, which no hook sees: from the first
/// checkpoint on it is behind the gate too (the checkpoint finds it in the kernel).
#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_raw_handler_without_a_hangup_after_a_checkpoint() -> Result<()> {
    killed_leader_with_a_held_lifeline(false, Start::Raw)
}

#[test]
fn a_killed_session_leader_whose_lifeline_another_holds_takes_a_raw_handler_without_a_hangup_after_a_checkpoint_as_nobody() -> Result<()> {
    killed_leader_with_a_held_lifeline(true, Start::Raw)
}

/// The same for ckpt-restart: the program, checkpointed and killed, restarted by a ckpt-restart
/// that leads its terminal's session, continues there; SIGKILL of that ckpt-restart while another
/// process holds its lifeline takes the program without its SIGHUP handler running.
/// `how`: as for `killed_leader_with_a_held_lifeline` (Shell, Spawned: the whole tree restarted,
/// the program its second process; Files: the program and the child sharing its fd table).
fn killed_restarter_with_a_held_lifeline(as_nobody: bool, how: Start) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(&format!("ns-killed-held-restart{}{}", how.suffix(), if as_nobody { "-nobody" } else { "" }))?;
    let prog = compile_c(&work, "hup_marker.c", &[])?;
    let marker = work.join("hangup-handler-ran");
    let command = how.command(&work, &prog, &marker)?;
    let mut term = on_a_terminal_under(&bins, &work, &command, &prog, as_nobody)?;
    let first = (|| -> Result<()> {
        let outer = child_running(&bins.run, &term)?;
        checkpoint(outer, &term)?;
        kill(outer, libc::SIGKILL);
        until_gone(&prog, "SIGKILL of ckpt-run")
    })();
    end(&prog, &mut term);
    first?;
    ensure!(!marker.exists(), "the program ran its SIGHUP handler when ckpt-run was killed");
    let mut term = in_script(&format!("exec '{}' '{}'", bins.restart.display(), work.images().display()), &work, as_nobody)?;
    let r = (|| -> Result<()> {
        wait_output(&mut term, "ckpt: restarted")?;
        let after = steps_after(&mut term, "ckpt: restarted")?;
        ensure!(!after.contains("step 1\r\n"), "the program started over: {after}");
        killed_while_held(child_running(&bins.restart, &term), &prog, &marker)
    })();
    end(&prog, &mut term);
    r
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_the_program_without_a_hangup() -> Result<()> {
    killed_restarter_with_a_held_lifeline(false, Start::Alone)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_the_program_without_a_hangup_as_nobody() -> Result<()> {
    killed_restarter_with_a_held_lifeline(true, Start::Alone)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_program_in_its_tree_without_a_hangup() -> Result<()> {
    killed_restarter_with_a_held_lifeline(false, Start::Shell)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_program_in_its_tree_without_a_hangup_as_nobody() -> Result<()> {
    killed_restarter_with_a_held_lifeline(true, Start::Shell)
}

/// The restarted child that shares its parent's fd table gets a copy of the fd its parent's
/// restarter keeps there (it restores no fds of its own).
#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_child_sharing_the_fd_table_without_a_hangup() -> Result<()> {
    killed_restarter_with_a_held_lifeline(false, Start::Files)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_child_sharing_the_fd_table_without_a_hangup_as_nobody() -> Result<()> {
    killed_restarter_with_a_held_lifeline(true, Start::Files)
}

/// A handler installed by the rt_sigaction system call: behind the gate from the restart on.
#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_raw_handler_without_a_hangup() -> Result<()> {
    killed_restarter_with_a_held_lifeline(false, Start::Raw)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_raw_handler_without_a_hangup_as_nobody() -> Result<()> {
    killed_restarter_with_a_held_lifeline(true, Start::Raw)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_spawned_program_of_its_tree_without_a_hangup() -> Result<()> {
    killed_restarter_with_a_held_lifeline(false, Start::Spawned)
}

#[test]
fn a_killed_restarter_whose_lifeline_another_holds_takes_a_spawned_program_of_its_tree_without_a_hangup_as_nobody() -> Result<()> {
    killed_restarter_with_a_held_lifeline(true, Start::Spawned)
}

/// A real hangup (the terminal's master closed: `script` killed, ckpt-run alive) reaches the
/// handler of a program that handles SIGHUP: the runtime holds only a hangup that comes while
/// ckpt-run is exiting or gone.
fn real_hangup_runs_the_handler(as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(if as_nobody { "ns-hangup-handled-nobody" } else { "ns-hangup-handled" })?;
    let prog = compile_c(&work, "hup_marker.c", &[])?;
    let marker = work.join("hangup-handler-ran");
    let mut term = on_a_terminal_as(&bins, &work, &prog, &format!("'{}'", marker.display()), as_nobody)?;
    kill(term.pid(), libc::SIGKILL);
    let r = until_gone(&prog, "its terminal's hangup");
    end(&prog, &mut term);
    r?;
    ensure!(marker.exists(), "the program ended without running its SIGHUP handler after a real hangup");
    Ok(())
}

#[test]
fn a_hangup_of_the_terminal_runs_the_programs_handler() -> Result<()> {
    real_hangup_runs_the_handler(false)
}

#[test]
fn a_hangup_of_the_terminal_runs_the_programs_handler_as_nobody() -> Result<()> {
    real_hangup_runs_the_handler(true)
}

/// Two checkpoint requests a moment apart, one through ckpt-run (forwarded, marked) and one sent
/// to the program directly (as when the kernel delivers a forwarded signal without its siginfo,
/// the user's queue of pending signals being full): once the first checkpoint is written, the
/// second is a new request, not a copy of the first. (Before: taken as one, the second lost.)
#[test]
fn a_second_request_after_a_written_checkpoint_is_not_taken_for_a_copy() -> Result<()> {
    let (_bins, work, mut p) = relay("ns-signals-second")?;
    let program = program_pid(p.pid());
    ensure!(program != p.pid(), "the program does not run in a namespace of its own");
    let image = work.images().join("sig_relay.ckpt");
    kill(p.pid(), libc::SIGUSR2);
    wait_checkpoints(&mut p, 1)?;
    ensure!(image.exists(), "the first checkpoint wrote no image: {}", p.stderr());
    // Right after the line: the checkpoint thread may not have finished the first checkpoint.
    kill(program, libc::SIGUSR2);
    wait_checkpoints(&mut p, 2)?;
    settle();
    ensure!(p.stderr().matches("ckpt: checkpoint").count() == 2, "not exactly two checkpoints: {}", p.stderr());
    kill(p.pid(), libc::SIGTERM);
    let st = p.wait(T)?;
    ensure!(st.code() == Some(7), "exit status {st}, the program's was 7: {}", p.stderr());
    Ok(())
}

/// Wait until `p` has printed `n` checkpoint lines.
fn wait_checkpoints(p: &mut Proc, n: usize) -> Result<()> {
    let t0 = Instant::now();
    while p.stderr().matches("ckpt: checkpoint").count() < n {
        ensure!(p.running(), "{} exited before checkpoint {n}: {}", p.label(), p.stderr());
        ensure!(t0.elapsed() < T, "request {n} was lost: {}", p.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Requests one after the other, each sent as soon as the previous checkpoint's line is out, by
/// turns to ckpt-run (which forwards it) and to the program directly: each one is a new request
/// (one taken for a copy of the one before is lost), and the last image restarts the program
/// where it was.
#[test]
fn requests_by_turns_to_ckpt_run_and_to_the_program_each_make_a_checkpoint() -> Result<()> {
    let (bins, work, mut p) = relay("ns-signals-turns")?;
    let program = program_pid(p.pid());
    ensure!(program != p.pid(), "the program does not run in a namespace of its own");
    const REQUESTS: usize = 8;
    for n in 1..=REQUESTS {
        kill(if n % 2 == 1 { p.pid() } else { program }, libc::SIGUSR2);
        wait_checkpoints(&mut p, n)?;
    }
    settle();
    ensure!(p.stderr().matches("ckpt: checkpoint").count() == REQUESTS, "not exactly {REQUESTS} checkpoints: {}", p.stderr());
    kill(program, libc::SIGUSR1);
    wait_output(&mut p, "usr1=1 hup=1")?;
    p.kill()?;
    let image = work.images().join("sig_relay.ckpt");
    let mut r = spawn("ckpt-restart", vec![bins.restart.clone().into(), image.into()], work.path())?;
    // Once its namespace is there, ckpt-restart reads every signal (and holds it until the
    // program runs again).
    let t0 = Instant::now();
    while program_pid(r.pid()) == r.pid() {
        ensure!(r.running() && t0.elapsed() < T, "ckpt-restart made no namespace: {}", r.stderr());
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(r.pid(), libc::SIGHUP);
    wait_output(&mut r, "hup=2")?;
    ensure!(r.stdout().contains("usr1=0 hup=2") && !r.stdout().contains("ready"), "the restarted program did not go on from the last checkpoint: {}", r.stdout());
    kill(r.pid(), libc::SIGTERM);
    let st = r.wait(T)?;
    ensure!(st.code() == Some(7), "exit status {st}, the program's was 7: {}", r.stderr());
    Ok(())
}
