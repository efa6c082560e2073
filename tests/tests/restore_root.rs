//! A program that chroot()s: checkpointed inside its new root (where no /proc is), SIGKILLed and
//! restarted, it comes back in the same root with the same working directory, both its threads
//! share it, and its fds on files inside and outside the root read what they read; also after
//! two restarts. A restart whose root directory is gone refuses in one line. (Root only: chroot
//! needs CAP_SYS_CHROOT, which an ordinary user's program does not have, in ckpt's namespace
//! either, where it runs under its own uid.)

mod restore_util;
use ckpt_tests::scenario::is_root;
use ckpt_tests::skip_test;
use restore_util::*;
use std::fs;

const NAME: &str = "files_chroot";

/// The uninterrupted run's output without READY (run as root: chroot needs the privilege
/// outside ckpt's namespace), checking that it says what the test is about.
fn reference(tag: &str) -> Option<String> {
    if !is_root() {
        return None;
    }
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile(NAME, &base);
    fs::write(base.join("go"), b"").unwrap();
    let out = plain(&prog, &[], &base).replacen("READY\n", "", 1);
    for line in ["worker: cwd /sub", "main: root is the jail: yes", "main: /outside: No such file or directory", "fd outside: outside the root", "fd inside: inside the root", "umask 027", "/made is jail/made: yes, mode 640", "done"] {
        assert!(out.lines().any(|l| l == line), "the uninterrupted run lacks {line:?}: {out}");
    }
    Some(out)
}

/// Checkpoint at READY, SIGKILL, restart; `again`: checkpoint the restarted program, SIGKILL it
/// and restart once more. Returns the last restart's output.
fn restarted(tag: &str, again: bool) -> String {
    let dir = workdir(tag);
    let prog = compile(NAME, &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    let mut img = p.checkpoint(&dir, NAME);
    p.kill9();
    let shown = std::process::Command::new(bin("ckpt-inspect")).arg(&img).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    let jail = dir.join("jail").canonicalize().unwrap();
    assert!(text.contains(&format!("root {} (chroot)", jail.display())), "ckpt-inspect does not show the root: {text}");
    if again {
        let mut r = restart(&img, &[], &dir);
        r.wait_restarted();
        img = r.checkpoint(&dir, NAME);
        r.kill9();
    }
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&img, &[], &dir);
    let st = r.wait();
    let (out, err) = (r.stdout(), r.stderr());
    assert!(st.success(), "restart failed ({st:?}): {err}\nstdout: {out}");
    assert!(!out.contains("READY"), "the program started over: {out}");
    out
}

#[test]
fn a_chrooted_program_comes_back_in_its_root() {
    let Some(expected) = reference("chroot") else {
        skip_test!("the uninterrupted run needs root to chroot");
        return;
    };
    assert_eq!(restarted("chroot_ckpt", false), expected);
}

#[test]
fn a_chrooted_program_comes_back_in_its_root_after_two_restarts() {
    let Some(expected) = reference("chroot_two") else {
        skip_test!("the uninterrupted run needs root to chroot");
        return;
    };
    assert_eq!(restarted("chroot_two_ckpt", true), expected);
}

#[test]
fn a_restart_whose_root_directory_is_gone_refuses_in_one_line() {
    if !is_root() {
        skip_test!("chroot needs root");
        return;
    }
    let dir = workdir("chroot_refused");
    let prog = compile(NAME, &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, NAME);
    p.kill9();
    fs::rename(dir.join("jail"), dir.join("moved")).unwrap();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&img, &[], &dir);
    let st = r.wait();
    let err = r.stderr();
    assert!(!st.success(), "a restart without the right to chroot went on: {err}\nstdout: {}", r.stdout());
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("root directory")).collect();
    assert_eq!(lines.len(), 1, "not one line about the root directory: {err}");
    assert!(lines[0].contains("/jail"), "the line does not name the root: {err}");
    assert!(r.stdout().is_empty(), "the program ran: {}", r.stdout());
}
