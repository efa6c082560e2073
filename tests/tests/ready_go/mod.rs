//! The scenario of the programs that print READY, wait for a file named `go`, then print what
//! they check (tests/programs/mem_*.c, attr_*.c): the reference is an uninterrupted run (with
//! `go` there from the start); the tested run is checkpointed at READY under ckpt-run, SIGKILLed,
//! and restarted once `go` exists. The restarted run must print the reference's lines without
//! READY (a program that started over would print READY again).
#![allow(dead_code)]

use crate::restore_util::*;
use std::fs;

/// The reference output (without READY) and the restarted run's output of program `name`, as
/// user nobody when `nobody` (and the tests run as root).
pub fn outputs(name: &str, tag: &str, nobody: bool) -> (String, String) {
    outputs_with(name, tag, nobody, true)
}

/// The same, without a namespace of the program's own when not `namespace` (ckpt-run
/// --no-namespace, and CKPT_NAMESPACE=0 for ckpt-restart, which would otherwise make one).
pub fn outputs_with(name: &str, tag: &str, nobody: bool, namespace: bool) -> (String, String) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile(name, &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base).replacen("READY\n", "", 1);

    let dir = workdir(&format!("{tag}_ckpt"));
    let (options, env): (&[&str], &[(&str, &str)]) = if namespace { (&[], &[]) } else { (&["--no-namespace"], &[("CKPT_NAMESPACE", "0")]) };
    let mut p = run_with(&prog, &[], &dir, nobody, options);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, name);
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_env(&img, &[], &dir, nobody, env);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("READY"), "the program started over: {out}");
    (expected, out)
}

/// The restarted run prints exactly what the uninterrupted run printed; `must` are lines the
/// reference must hold (so that a program that checks nothing cannot pass). Returns the output.
pub fn same_after_restart(name: &str, tag: &str, nobody: bool, must: &[&str]) -> String {
    let (expected, out) = outputs(name, tag, nobody);
    for m in must {
        assert!(expected.lines().any(|l| l == *m), "reference run of {name} lacks {m:?}: {expected}");
    }
    assert_eq!(out, expected, "{name} after a restart differs from an uninterrupted run");
    out
}
