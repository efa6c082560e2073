//! A restart that must not go on silently: checkpoint a program at READY, SIGKILL it, restart;
//! ckpt-restart must exit 1 with one line naming what cannot be restored; with
//! `--ignore-missing-files` it goes on, with a warning naming it.
#![allow(dead_code)]

use super::*;

/// What the two restarts said: (the refusal's stderr, the stdout and stderr of the restart
/// that went on).
pub struct Refused {
    pub refusal: String,
    pub stdout: String,
    pub stderr: String,
}

pub fn refused_then_ignored(name: &str, tag: &str, nobody: bool, expect: &str) -> Refused {
    refused_then_ignored_with(name, tag, nobody, expect, &[])
}

/// The same, with more options for ckpt-run.
pub fn refused_then_ignored_with(name: &str, tag: &str, nobody: bool, expect: &str, options: &[&str]) -> Refused {
    let dir = workdir(tag);
    let prog = compile(name, &dir);
    let mut p = run_with(&prog, &[], &dir, nobody, options);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, name);
    p.kill9();
    std::fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    let st = r.wait();
    let refusal = r.stderr();
    assert_eq!(st.code(), Some(1), "the restart went on: {refusal}\nstdout: {}", r.stdout());
    assert!(refusal.lines().count() == 1 && refusal.starts_with("ckpt-restart: ") && refusal.contains(expect), "refusal: {refusal}");
    assert!(r.stdout().is_empty(), "the program ran: {}", r.stdout());
    let mut r = restart_as(&img, &["--ignore-missing-files"], &dir, nobody);
    let st = r.wait();
    let (stdout, stderr) = (r.stdout(), r.stderr());
    assert!(st.success() || stdout.contains("FAIL"), "with --ignore-missing-files: {st:?} {stderr}");
    assert!(stderr.contains("warning") && stderr.contains(expect), "no warning naming it: {stderr}");
    Refused { refusal, stdout, stderr }
}
