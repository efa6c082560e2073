//! Issue 4 triggers without Slurm: periodic checkpoints and generations, checkpoint-and-exit on
//! a stop signal then `ckpt-run --resume`, ckpt-ctl (checkpoint --wait, status, stop, exit
//! codes, owner-only socket), restart falling back to the previous generation, and a preloaded
//! runtime staying inert in children that inherit LD_PRELOAD.

use anyhow::{ensure, Context, Result};
use ckpt_tests::process::wait_until;
use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{result_of, run_plain, step_of, Bins, Proc, Program, Workdir};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `ckpt-run --dir IMAGES OPTS -- PROGRAM` as a command.
fn ckpt_run(bins: &Bins, work: &Workdir, prog: &Program, opts: &[&str]) -> std::process::Command {
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.images().into()];
    argv.extend(opts.iter().map(OsString::from));
    argv.push("--".into());
    argv.extend(prog.argv.iter().cloned());
    user_command(&argv, false, &prog.cwd)
}

fn ctl(bins: &Bins, dir: &Path, args: &[&str], as_nobody: bool) -> Result<Output> {
    let mut argv: Vec<OsString> = vec![bins.dir.join("ckpt-ctl").into(), "--dir".into(), dir.into()];
    argv.extend(args.iter().map(OsString::from));
    let mut p = Proc::spawn("ckpt-ctl", user_command(&argv, as_nobody, dir))?;
    let status = p.wait(T)?;
    Ok(Output { status, stdout: p.stdout().into_bytes(), stderr: p.stderr().into_bytes() })
}

fn counter(work: &Workdir, n: &str, delay_ms: &str) -> Result<(Program, String)> {
    let prog = Program::c(work, "counter.c", &[], &[n, delay_ms])?;
    let plain = run_plain(&prog, false, T)?;
    let expected = result_of(&plain.stdout).context("no result")?.to_string();
    Ok((prog, expected))
}

/// A restarted run's output: the uninterrupted result, and it went on rather than started over.
fn continued(stdout: &str, expected: &str) -> Result<()> {
    ensure!(result_of(stdout) == Some(expected), "wrong result (expected {expected}):\n{stdout}");
    ensure!(!stdout.contains("start counter"), "the restarted program started over:\n{stdout}");
    let first = stdout.lines().find_map(step_of);
    ensure!(first.is_some_and(|n| n > 1), "restart began at step {first:?}:\n{stdout}");
    Ok(())
}

#[test]
fn periodic_checkpoints_keep_two_generations_and_restart() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("periodic")?;
    let (prog, expected) = counter(&work, "150", "40")?;
    let mut p = Proc::spawn("ckpt-run --interval", ckpt_run(&bins, &work, &prog, &["--interval", "300ms", "--keep", "2"]))?;
    ensure!(wait_until(T, || p.stderr().matches("ckpt: checkpoint ").count() >= 3), "no periodic checkpoints: {}", p.stderr());
    p.kill()?;
    // One line per checkpoint, and nothing else.
    let err = p.stderr();
    let line = err.lines().find(|l| l.starts_with("ckpt: checkpoint 1: ")).context("log line")?;
    ensure!(line.contains("of memory") && line.contains("on disk") && line.contains("paused"), "log line: {line}");
    ensure!(err.lines().all(|l| l.starts_with("ckpt: checkpoint ")), "not quiet: {err}");
    let mut images: Vec<String> = std::fs::read_dir(work.images())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ckpt"))
        .collect();
    images.sort();
    // The two newest generations, and older images only as far as they are needed: as the
    // parents of increments (by default a checkpoint after the first is an increment).
    ensure!(images.len() >= 2 && images[..2] == ["counter.ckpt", "counter.ckpt.1"], "generations: {images:?}");
    let head = |n: &str| -> Result<(u64, u64)> {
        let b = std::fs::read(work.images().join(n))?;
        ensure!(b.len() >= 56, "{n} is too short");
        let at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Ok((at(32), at(48)))
    };
    let heads: Vec<(u64, u64)> = images.iter().map(|n| head(n)).collect::<Result<_>>()?;
    for (k, (hash, _)) in heads.iter().enumerate().skip(2) {
        ensure!(heads[..k].iter().any(|h| h.1 == *hash), "{} is kept but no newer image builds on it: {images:?}", images[k]);
    }
    let mut r = Proc::spawn("ckpt-restart DIR", user_command(&[bins.restart.clone().into(), work.images().into()], false, work.path()))?;
    ensure!(r.wait(T)?.success(), "restart failed: {}", r.stderr());
    continued(&r.stdout(), &expected)
}

#[test]
fn stop_signal_exits_75_and_resume_continues() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("stop")?;
    let (prog, expected) = counter(&work, "120", "30")?;
    // The same command line (with --resume) serves the first run and the next one.
    let opts = ["--stop-signal", "TERM", "--resume"];
    let mut first = Proc::spawn("first run", ckpt_run(&bins, &work, &prog, &opts))?;
    first.wait_for_step(20, T)?;
    first.signal(libc::SIGTERM)?;
    let st = first.wait(T)?;
    ensure!(st.code() == Some(75), "exit status after checkpoint-and-exit: {st}; {}", first.stderr());
    ensure!(work.images().join("counter.ckpt").is_file(), "no image");
    ensure!(!work.images().join("counter.sock").exists(), "socket left behind");
    let mut second = Proc::spawn("resumed run", ckpt_run(&bins, &work, &prog, &opts))?;
    ensure!(second.wait(T)?.success(), "resumed run failed: {}", second.stderr());
    ensure!(second.stderr().contains("resuming from"), "{}", second.stderr());
    continued(&second.stdout(), &expected)?;
    let last_first = first.last_step().unwrap_or(0);
    let resumed_at = second.stdout().lines().find_map(step_of).unwrap_or(0);
    ensure!(resumed_at <= last_first + 1, "resumed at step {resumed_at}, after step {last_first}");
    Ok(())
}

#[test]
fn ckpt_ctl_checkpoint_status_stop_and_exit_codes() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("ctl")?;
    let prog = Program::c(&work, "counter.c", &[], &["2000", "20"])?;
    let ck = work.images();
    // Nothing running yet: exit 3.
    ensure!(ctl(&bins, &ck, &["status"], false)?.status.code() == Some(3));
    let mut p = Proc::spawn("ckpt-run", ckpt_run(&bins, &work, &prog, &["--interval", "1h"]))?;
    p.wait_for_step(3, T)?;
    let sock = ck.join("counter.sock");
    ensure!(std::fs::metadata(&sock)?.permissions().mode() & 0o777 == 0o600, "socket mode");

    let s = ctl(&bins, &ck, &["status"], false)?;
    let text = String::from_utf8_lossy(&s.stdout).into_owned();
    ensure!(s.status.code() == Some(0), "status: {s:?}");
    // The program's pid as we see it (under ckpt-run's init when it has a namespace of its own).
    ensure!(text.contains(&format!("pid: {}", p.program_pid())), "{text}");
    ensure!(text.contains("program: counter") && text.contains("last image: none") && text.contains("next periodic checkpoint: in "), "{text}");

    let c = ctl(&bins, &ck, &["checkpoint", "--wait"], false)?;
    ensure!(c.status.code() == Some(0), "{c:?}");
    let path = String::from_utf8_lossy(&c.stdout).trim().to_string();
    ensure!(Path::new(&path) == ck.join("counter.ckpt") && Path::new(&path).is_file(), "printed {path}");

    ensure!(ctl(&bins, &ck, &["checkpoint"], false)?.status.code() == Some(0));
    let text = String::from_utf8_lossy(&ctl(&bins, &ck, &["status"], false)?.stdout).into_owned();
    ensure!(text.contains(&format!("last image: {path}")) && text.contains("last image size: "), "{text}");

    if ckpt_tests::scenario::is_root() {
        // Another user's ckpt-ctl does not talk to the program (the socket is not theirs)...
        let o = ctl(&bins, &ck, &["status"], true)?;
        ensure!(o.status.code() == Some(4), "nobody reached the socket: {o:?}");
        // ...cannot reach the socket (0600; Workdir makes the directory 1777), and with the
        // socket opened up, the runtime checks the peer's uid.
        let ask = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'checkpoint\\n'); print(s.recv(200).decode())";
        let raw = |who: &str| -> Result<Proc> {
            let argv: Vec<OsString> = vec!["/usr/bin/python3".into(), "-c".into(), ask.into(), sock.clone().into()];
            Proc::spawn(who, user_command(&argv, true, &ck))
        };
        let mut o = raw("python3 as nobody")?;
        o.wait(T)?;
        ensure!(o.stderr().contains("Permission denied"), "nobody reached the 0600 socket: {}{}", o.stdout(), o.stderr());
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666))?;
        let mut o = raw("python3 as nobody")?;
        o.wait(T)?;
        ensure!(o.stdout().contains("error permission denied"), "peer check: {}{}", o.stdout(), o.stderr());
    }

    let c = ctl(&bins, &ck, &["stop"], false)?;
    ensure!(c.status.code() == Some(0), "stop: {c:?}");
    ensure!(p.wait(T)?.code() == Some(75), "exit status after stop");
    ensure!(ctl(&bins, &ck, &["status"], false)?.status.code() == Some(3), "a stopped program still answers");
    // The restarted program has its own socket again and can be stopped the same way.
    let mut r = Proc::spawn("ckpt-restart", user_command(&[bins.restart.clone().into(), ck.join("counter.ckpt").into()], false, work.path()))?;
    ensure!(wait_until(T, || sock.exists() && r.running()), "restarted program has no socket: {}", r.stderr());
    let c = ctl(&bins, &ck, &["stop"], false)?;
    ensure!(c.status.code() == Some(0), "stop after restart: {c:?}");
    ensure!(r.wait(T)?.code() == Some(75));
    Ok(())
}

#[test]
fn restart_falls_back_to_the_previous_generation() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("fallback")?;
    let (prog, expected) = counter(&work, "100", "30")?;
    let mut p = Proc::spawn("ckpt-run", ckpt_run(&bins, &work, &prog, &[]))?;
    for step in [5, 10] {
        p.wait_for_step(step, T)?;
        ensure!(ctl(&bins, &work.images(), &["checkpoint", "--wait"], false)?.status.success());
    }
    p.kill()?;
    // Damage the newest image in the middle: the restart must take the one before.
    let newest = work.images().join("counter.ckpt");
    let mut bytes = std::fs::read(&newest)?;
    let mid = bytes.len() / 3;
    bytes[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0xff);
    std::fs::write(&newest, bytes)?;
    let mut r = Proc::spawn("ckpt-restart", user_command(&[bins.restart.clone().into(), newest.into()], false, work.path()))?;
    ensure!(r.wait(T)?.success(), "restart failed: {}", r.stderr());
    let e = r.stderr();
    ensure!(e.contains("using the older image") && e.contains("counter.ckpt.1"), "{e}");
    continued(&r.stdout(), &expected)
}

#[test]
fn runtime_is_inert_in_children_that_inherit_the_preload() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("inert")?;
    let parent = Program::c(&work, "spawn_child.c", &[], &[])?;
    let child = compile_c(&work, "usr2_child.c", &[])?;
    let mut prog = parent.clone();
    prog.argv.push(child.clone().into());
    // Children get the user's environment, not ckpt-run's: a user (or a batch script) that
    // preloads the runtime itself, as srun's environment may.
    let mut cmd = ckpt_run(&bins, &work, &prog, &[]);
    cmd.env("LD_PRELOAD", bins.dir.join("libckpt_runtime.so"));
    let mut p = Proc::spawn("ckpt-run spawn_child", cmd)?;
    ensure!(p.wait(T)?.success(), "parent failed: {} {}", p.stdout(), p.stderr());
    let (so, se) = (p.stdout(), p.stderr());
    // The child saw LD_PRELOAD with our runtime, had its own USR2 handler run (the runtime did
    // not take the signal), forked and exec'd again, and left nothing in the image directory.
    ensure!(so.contains("child: preloaded runtime: yes"), "{so}");
    ensure!(so.contains("child: own USR2 handler ran"), "{so}");
    ensure!(so.contains("grandchild: ok"), "{so}");
    ensure!(!se.contains("ckpt:"), "the runtime spoke in a child: {se}");
    let mut plain = Proc::spawn("spawn_child without ckpt", user_command(&prog.argv, false, &prog.cwd))?;
    plain.wait(T)?;
    let first_fd = |s: &str| s.lines().find(|l| l.starts_with("parent: first fd")).map(str::to_string);
    ensure!(first_fd(&so) == first_fd(&plain.stdout()), "the runtime changed the program's fd numbers: {so}");
    let left: Vec<String> = std::fs::read_dir(work.images())?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    ensure!(left.iter().all(|n| n.starts_with("spawn_child")), "files from children: {left:?}");
    Ok(())
}

#[test]
fn forked_children_get_the_reserved_signals_back() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("fork-signals")?;
    let prog = Program::c(&work, "fork_signals.c", &[], &[])?;
    let mut p = Proc::spawn("ckpt-run --stop-signal TERM", ckpt_run(&bins, &work, &prog, &["--stop-signal", "TERM"]))?;
    ensure!(p.wait(T)?.success(), "{} {}", p.stdout(), p.stderr());
    let out = p.stdout();
    for want in ["child killed by TERM", "child killed by USR2", "child handler ran"] {
        ensure!(out.lines().any(|l| l == want), "missing {want:?}:\n{out}");
    }
    Ok(())
}
