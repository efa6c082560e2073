//! Issue 4 triggers without Slurm: periodic checkpoints and generations, checkpoint-and-exit on
//! a stop signal then `ckpt-run --resume`, ckpt-ctl (checkpoint --wait, status, stop, exit
//! codes, owner-only socket), restart falling back to the previous generation, and a preloaded
//! runtime staying inert in children that inherit LD_PRELOAD.

mod support;

use std::process::{Command, Stdio};
use support::*;

fn ctl(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin("ckpt-ctl"));
    c.arg("--dir").arg(dir).args(args).stdin(Stdio::null());
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ckpt-ctl");
    wait_child(&mut child, 60, "ckpt-ctl");
    child.wait_with_output().expect("ckpt-ctl output")
}

#[test]
fn periodic_checkpoints_keep_two_generations_and_restart() {
    let w = scratch("periodic");
    let prog = compile("slurm_count", &w);
    let expected = expected_done(&prog, 150);
    let ck = w.join("ck");
    let out = w.join("out");
    let err = w.join("err");
    let mut child = Command::new(bin("ckpt-run"))
        .arg("--dir").arg(&ck).args(["--interval", "300ms", "--keep", "2", "--"]).arg(&prog).args(["150", "40"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // At least three periodic checkpoints, each announced by one line on stderr.
    assert!(wait_until(60, || read(&err).matches("ckpt: checkpoint ").count() >= 3), "no periodic checkpoints: {}", read(&err));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    let e = read(&err);
    let line = e.lines().find(|l| l.starts_with("ckpt: checkpoint 1: ")).expect("log line");
    assert!(line.contains("of memory") && line.contains("on disk") && line.contains("paused"), "log line: {line}");
    assert_eq!(e.lines().filter(|l| !l.starts_with("ckpt: checkpoint ")).count(), 0, "not quiet: {e}");
    let mut names: Vec<String> = std::fs::read_dir(&ck).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let images: Vec<&String> = names.iter().filter(|n| n.contains(".ckpt")).collect();
    assert_eq!(images, ["slurm_count.ckpt", "slurm_count.ckpt.1"], "generations: {names:?}");
    let before = count_lines(&read(&out));
    let r = Command::new(bin("ckpt-restart")).arg(&ck).stderr(Stdio::piped()).output().unwrap();
    assert!(r.status.success(), "restart: {}", String::from_utf8_lossy(&r.stderr));
    let s = String::from_utf8_lossy(&r.stdout);
    assert_eq!(s.lines().last().unwrap_or(""), expected);
    assert!(!s.lines().any(|l| l == "1 1"), "restarted program started over");
    assert!(count_lines(&s) < 150 && before > 0);
}

#[test]
fn stop_signal_exits_75_and_resume_continues() {
    let w = scratch("stop");
    let prog = compile("slurm_count", &w);
    let expected = expected_done(&prog, 120);
    let ck = w.join("ck");
    let out = w.join("out");
    let run = |resume: bool| {
        let mut c = Command::new(bin("ckpt-run"));
        c.arg("--dir").arg(&ck).args(["--stop-signal", "TERM"]);
        if resume {
            c.arg("--resume");
        }
        c.arg("--").arg(&prog).args(["120", "30"]);
        c.stdout(std::fs::OpenOptions::new().create(true).append(true).open(&out).unwrap()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    // The same command line (with --resume) serves the first run and the next one.
    let mut first = run(true);
    assert!(wait_until(60, || count_lines(&read(&out)) >= 20), "no progress");
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let st = wait_child(&mut first, 60, "stopped program");
    assert_eq!(st.code(), Some(75), "exit status after checkpoint-and-exit");
    assert!(ck.join("slurm_count.ckpt").is_file());
    assert!(!ck.join("slurm_count.sock").exists(), "socket left behind");
    let n1 = count_lines(&read(&out));
    let mut second = run(true);
    let st = wait_child(&mut second, 120, "resumed program");
    assert!(st.success(), "resumed run failed: {st:?}");
    let all = read(&out);
    assert_eq!(all.lines().last().unwrap_or(""), expected);
    assert_eq!(all.lines().filter(|l| *l == "1 1").count(), 1, "started over");
    assert!(n1 >= 20 && n1 < 120, "first run printed {n1} lines");
}

#[test]
fn ckpt_ctl_checkpoint_status_stop_and_exit_codes() {
    let w = scratch("ctl");
    let prog = compile("slurm_count", &w);
    let ck = w.join("ck");
    // Nothing running yet: exit 3.
    std::fs::create_dir_all(&ck).unwrap();
    assert_eq!(ctl(&ck, &["status"]).status.code(), Some(3));
    let out = w.join("out");
    let mut child = Command::new(bin("ckpt-run"))
        .arg("--dir").arg(&ck).args(["--interval", "1h", "--"]).arg(&prog).args(["2000", "20"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(30, || ck.join("slurm_count.sock").exists() && count_lines(&read(&out)) > 2), "no socket");
    let meta = std::fs::metadata(ck.join("slurm_count.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");

    let s = ctl(&ck, &["status"]);
    let text = String::from_utf8_lossy(&s.stdout);
    assert_eq!(s.status.code(), Some(0));
    assert!(text.contains(&format!("pid: {}", child.id())), "{text}");
    assert!(text.contains("program: slurm_count") && text.contains("last image: none") && text.contains("next periodic checkpoint: in "), "{text}");

    let c = ctl(&ck, &["checkpoint", "--wait"]);
    assert_eq!(c.status.code(), Some(0), "{}", String::from_utf8_lossy(&c.stderr));
    let path = String::from_utf8_lossy(&c.stdout).trim().to_string();
    assert_eq!(path, ck.join("slurm_count.ckpt").to_string_lossy());
    assert!(std::path::Path::new(&path).is_file());

    let c = ctl(&ck, &["checkpoint"]);
    assert_eq!(c.status.code(), Some(0));
    let s = ctl(&ck, &["status"]);
    let text = String::from_utf8_lossy(&s.stdout);
    assert!(text.contains(&format!("last image: {path}")) && text.contains("last image size: "), "{text}");

    // Someone else (user nobody) may not even reach the socket.
    let other = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin("ckpt-ctl")).arg("--dir").arg(&ck).arg("status")
        .output();
    if let Ok(o) = other {
        if unsafe { libc::geteuid() } == 0 {
            assert!(matches!(o.status.code(), Some(3) | Some(4)), "nobody reached the socket: {o:?}");
            // Even with the directory and socket opened up, the peer's uid is checked.
            std::fs::set_permissions(&ck, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(ck.join("slurm_count.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
            let o = Command::new("setpriv")
                .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(bin("ckpt-ctl")).arg("--dir").arg(&ck).arg("checkpoint")
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(4), "peer check: {o:?}");
            assert!(String::from_utf8_lossy(&o.stderr).contains("permission denied"), "{o:?}");
        }
    }

    let c = ctl(&ck, &["stop"]);
    assert_eq!(c.status.code(), Some(0), "{}", String::from_utf8_lossy(&c.stderr));
    let st = wait_child(&mut child, 60, "stopped program");
    assert_eq!(st.code(), Some(75));
    assert_eq!(ctl(&ck, &["status"]).status.code(), Some(3));
    // The image of the stop restarts and the program finishes.
    let r = Command::new(bin("ckpt-restart")).arg(ck.join("slurm_count.ckpt")).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut r = r;
    // Let it show it continues, then end it (2000 steps would take long): checkpointed again via ctl.
    assert!(wait_until(30, || ck.join("slurm_count.sock").exists()), "restarted program has no socket");
    let c = ctl(&ck, &["stop"]);
    assert_eq!(c.status.code(), Some(0), "stop after restart: {}", String::from_utf8_lossy(&c.stderr));
    assert_eq!(wait_child(&mut r, 60, "restarted program").code(), Some(75));
}

#[test]
fn restart_falls_back_to_the_previous_generation() {
    let w = scratch("fallback");
    let prog = compile("slurm_count", &w);
    let expected = expected_done(&prog, 100);
    let ck = w.join("ck");
    let out = w.join("out");
    let mut child = Command::new(bin("ckpt-run"))
        .arg("--dir").arg(&ck).arg("--").arg(&prog).args(["100", "30"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(30, || ck.join("slurm_count.sock").exists()));
    for _ in 0..2 {
        assert!(wait_until(30, || count_lines(&read(&out)) >= 5));
        assert_eq!(ctl(&ck, &["checkpoint", "--wait"]).status.code(), Some(0));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    // Damage the newest image in the middle: the restart must take the one before.
    let newest = ck.join("slurm_count.ckpt");
    let mut bytes = std::fs::read(&newest).unwrap();
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&newest, bytes).unwrap();
    let r = Command::new(bin("ckpt-restart")).arg(&newest).output().unwrap();
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "restart failed: {e}");
    assert!(e.contains("using the older image") && e.contains("slurm_count.ckpt.1"), "{e}");
    let s = String::from_utf8_lossy(&r.stdout);
    assert_eq!(s.lines().last().unwrap_or(""), expected);
    assert!(!s.lines().any(|l| l == "1 1"));
}

#[test]
fn runtime_is_inert_in_children_that_inherit_the_preload() {
    let w = scratch("inert");
    let parent = compile("spawn_child", &w);
    let child = compile("usr2_child", &w);
    let ck = w.join("ck");
    let out = Command::new(bin("ckpt-run"))
        .arg("--dir").arg(&ck).arg("--").arg(&parent).arg(&child)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "parent failed: {so} {se}");
    // The child saw LD_PRELOAD with our runtime, had its own USR2 handler run (the runtime did
    // not take the signal), forked and exec'd again, and left nothing in the image directory.
    assert!(so.contains("child: preloaded runtime: yes"), "{so}");
    assert!(so.contains("child: own USR2 handler ran"), "{so}");
    assert!(so.contains("grandchild: ok"), "{so}");
    let plain = Command::new(&parent).arg(&child).output().unwrap();
    let first_fd = |s: &str| s.lines().find(|l| l.starts_with("parent: first fd")).map(str::to_string);
    assert_eq!(first_fd(&so), first_fd(&String::from_utf8_lossy(&plain.stdout)), "the runtime changed the program's fd numbers");
    assert!(!se.contains("ckpt:"), "the runtime spoke in a child: {se}");
    let left: Vec<_> = std::fs::read_dir(&ck).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.iter().all(|n| n.to_string_lossy().starts_with("spawn_child")), "files from children: {left:?}");
}
