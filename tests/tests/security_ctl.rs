//! ckpt-ctl and the control socket (issue 11): a socket another user put at `NAME.sock` (a
//! squatter posing as the program) is reported by the runtime and refused by ckpt-ctl, which
//! also checks the uid of the process it talks to, never prints control characters it received,
//! and honours --timeout for every request. The servers here are `fake_ctl_server`, a stand-in
//! that answers anything with a fixed text.

mod failures_support;
mod security_support;

use anyhow::{ensure, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::{Bins, Proc, Program, Workdir};
use failures_support::clean_tool_failure;
use security_support::*;
use std::ffi::OsString;
use std::path::Path;

/// Start the fake server `exe` (fake_ctl_server.c compiled) as `who` on `sock`, answering with
/// `answer` after `delay_ms`; returns once it listens.
fn fake_server(exe: &Path, who: Option<&ckpt_tests::users::TestUser>, sock: &Path, delay_ms: u32, answer: &str) -> Result<Proc> {
    let argv: Vec<OsString> = vec![exe.into(), sock.into(), delay_ms.to_string().into(), answer.into()];
    let cwd = sock.parent().unwrap_or(Path::new("/"));
    let mut p = spawn(who, "fake_ctl_server", &argv, cwd)?;
    ensure!(ckpt_tests::process::wait_until(T, || p.stdout().contains("listening") || !p.running()), "the fake server did not start");
    ensure!(p.running(), "the fake server failed: {}", p.stderr());
    Ok(p)
}

/// Control characters a terminal acts on: a title change, a bell, clear screen.
const NASTY: &str = "\x1b]0;pwned\x07\x1b[2J\x1b[31m";

#[test]
fn squatted_control_socket_is_reported_and_refused() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-squat")?;
    let shared = work.subdir("shared")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    let server = compile_c(&work, "fake_ctl_server.c", &[])?;
    // The attacker gets there first, with a server that says every request succeeded.
    let _server = fake_server(&server, Some(&u.attacker), &shared.join("counter.sock"), 0, &format!("ok /tmp/evil{NASTY}\n"))?;
    let mut p = spawn(Some(&u.victim), "victim's ckpt-run", &ckpt_run_argv(&bins, &shared, &[], &prog), work.path())?;
    p.wait_for_step(3, T)?;
    // stderr is read by its own thread: the line may trail the steps on stdout.
    let _ = p.wait_for_stderr("counter.sock", T);
    let err = p.stderr();
    let said = err.lines().filter(|l| l.contains("counter.sock")).collect::<Vec<_>>();
    // In the program's user namespace (the default) the attacker is not mapped and can only be
    // named as another user; ckpt-ctl, outside, names them below.
    ensure!(
        said.len() == 1 && (said[0].contains(&u.attacker.name) || said[0].contains("another user")),
        "the runtime did not say loudly, once, whose socket is in the way: {err}"
    );

    for args in [&["stop"][..], &["--name", "counter", "status"], &["checkpoint", "--wait"]] {
        let r = run(Some(&u.victim), "victim's ckpt-ctl", &ctl_argv(&bins, &shared, args), work.path())?;
        let line = clean_tool_failure(&r, "ckpt-ctl").map_err(|e| anyhow::anyhow!("ckpt-ctl {args:?}: {e}"))?;
        ensure!(r.status.and_then(|s| s.code()) == Some(4), "ckpt-ctl {args:?}: exit status {:?}, expected 4", r.status);
        ensure!(line.contains(&u.attacker.name), "ckpt-ctl {args:?} does not name the socket's owner: {line}");
        ensure!(!has_control(&r.stdout) && !has_control(&r.stderr), "ckpt-ctl {args:?} printed control characters");
    }
    ensure!(p.running(), "the victim's program stopped");
    p.kill()?;
    Ok(())
}

#[test]
fn ckpt_ctl_refuses_a_server_of_another_user() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-peer")?;
    let shared = work.subdir("shared")?;
    let server = compile_c(&work, "fake_ctl_server.c", &[])?;
    // A socket file that is the victim's, with someone else (root, here) listening on it.
    let sock = shared.join("app.sock");
    let _server = fake_server(&server, None, &sock, 0, "pid: 1\nprogram: app\n")?;
    u.victim.chown(&sock)?;
    let r = run(Some(&u.victim), "victim's ckpt-ctl", &ctl_argv(&bins, &shared, &["status"]), work.path())?;
    let line = clean_tool_failure(&r, "ckpt-ctl").map_err(anyhow::Error::msg)?;
    ensure!(r.status.and_then(|s| s.code()) == Some(4), "exit status {:?}, expected 4", r.status);
    ensure!(line.contains("uid 0"), "the refusal does not say who listens: {line}");
    Ok(())
}

#[test]
fn ckpt_ctl_never_prints_control_characters() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-ctl-text")?;
    let dir = work.images();
    let server = compile_c(&work, "fake_ctl_server.c", &[])?;
    let _status = fake_server(&server, None, &dir.join("a.sock"), 0, &format!("pid: 1\nprogram: a{NASTY}\nlast image: none\n"))?;
    let _error = fake_server(&server, None, &dir.join("b.sock"), 0, &format!("error boom{NASTY}\n"))?;
    let _ok = fake_server(&server, None, &dir.join("c.sock"), 0, &format!("ok /x{NASTY}\n"))?;
    let r = run(None, "ckpt-ctl status", &ctl_argv(&bins, &dir, &["--name", "a", "status"]), work.path())?;
    ensure!(r.success() && r.stdout.contains("program: a") && r.stdout.contains("last image: none"), "status:\n{r}");
    ensure!(!has_control(&r.stdout), "status printed control characters: {:?}", r.stdout);
    let r = run(None, "ckpt-ctl checkpoint", &ctl_argv(&bins, &dir, &["--name", "b", "checkpoint", "--wait"]), work.path())?;
    ensure!(r.status.and_then(|s| s.code()) == Some(1) && r.stderr.contains("boom"), "error answer:\n{r}");
    ensure!(!has_control(&r.stderr), "an error answer was printed with its control characters: {:?}", r.stderr);
    let r = run(None, "ckpt-ctl stop", &ctl_argv(&bins, &dir, &["--name", "c", "stop"]), work.path())?;
    ensure!(r.success() && r.stdout.starts_with("/x"), "ok answer:\n{r}");
    ensure!(!has_control(&r.stdout), "an image path was printed with its control characters: {:?}", r.stdout);
    Ok(())
}

#[test]
fn ckpt_ctl_timeout_is_honoured_by_every_request() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-ctl-timeout")?;
    let dir = work.images();
    let server = compile_c(&work, "fake_ctl_server.c", &[])?;
    // A program that takes 12 s to answer (a big one, busy): more than ckpt-ctl's default for
    // status and checkpoint (10 s), less than the 30 s asked for.
    let _slow = fake_server(&server, None, &dir.join("slow.sock"), 12_000, "queued\n")?;
    let ctl = |args: &[&str]| -> Result<Proc> {
        let mut a = vec!["--name", "slow"];
        a.extend(args);
        spawn(None, &format!("ckpt-ctl {args:?}"), &ctl_argv(&bins, &dir, &a), work.path())
    };
    let mut waiting = vec![ctl(&["--timeout", "30", "status"])?, ctl(&["--timeout", "30", "checkpoint"])?];
    let mut short = ctl(&["--timeout", "1", "status"])?;
    for p in &mut waiting {
        ensure!(p.wait(T)?.success(), "{} gave up before its --timeout: {}", p.label(), p.stderr());
    }
    short.wait(T)?;
    ensure!(short.status().and_then(|s| s.code()) == Some(4) && short.stderr().contains("after 1 s"), "--timeout 1: {}", short.stderr());
    Ok(())
}

/// An image directory of root's with the sticky bit (like /tmp) is the user's to use from inside
/// the program's user namespace too, where root's files show as the overflow uid: the runtime
/// trusts the directory ckpt-run checked outside, and ckpt-ctl reaches the program.
#[test]
fn control_socket_in_roots_sticky_directory_from_a_namespace() -> Result<()> {
    let u = victim_and_attacker!();
    let bins = Bins::locate()?;
    let work = Workdir::new("sec-sticky")?;
    let shared = work.subdir("shared")?;
    let prog = Program::c(&work, "counter.c", &[], &["400", "20"])?;
    let mut p = spawn(Some(&u.victim), "victim's ckpt-run", &ckpt_run_argv(&bins, &shared, &[], &prog), work.path())?;
    p.wait_for_step(3, T)?;
    ensure!(!p.stderr().contains("no control socket"), "the runtime refused the directory: {}", p.stderr());
    let r = run(Some(&u.victim), "victim's ckpt-ctl", &ctl_argv(&bins, &shared, &["--name", "counter", "status"]), work.path())?;
    ensure!(r.success(), "ckpt-ctl status failed:\n{r}");
    p.kill()?;
    Ok(())
}
