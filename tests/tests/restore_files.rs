//! Files across checkpoint, SIGKILL and restart: output files written with write(2), O_APPEND
//! and stdio end byte-identical to an uninterrupted run's; an input file and a directory read
//! in steps continue; a deleted-but-open file comes back; a file that is gone at restart is a
//! clear error naming it, or /dev/null with --ignore-missing-files.

mod restore_util;
use restore_util::*;
use std::fs;
use std::path::Path;

const OUTPUTS: [&str; 3] = ["out_plain.txt", "out_append.txt", "out_stdio.txt"];

fn setup(dir: &Path) {
    fs::write(dir.join("input.txt"), (0..400u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).unwrap();
    fs::create_dir_all(dir.join("dir")).unwrap();
    for i in 0..40 {
        fs::write(dir.join("dir").join(format!("e{i}")), b"").unwrap();
    }
}

fn step_line(n: u32) -> impl Fn(&str) -> bool {
    move |l: &str| l.strip_prefix("step ").and_then(|v| v.parse::<u32>().ok()).is_some_and(|v| v >= n)
}

#[test]
fn output_files_are_cut_back_and_end_identical() {
    check_identical("files", false);
}

#[test]
fn output_files_are_cut_back_and_end_identical_as_nobody() {
    check_identical("files_nobody", true);
}

fn check_identical(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    setup(&base);
    let prog = compile("fd_files", &base);
    let expected = plain(&prog, &[], &base);
    let reference: Vec<Vec<u8>> = OUTPUTS.iter().map(|f| fs::read(base.join(f)).unwrap()).collect();

    let dir = workdir(&format!("{tag}_ckpt"));
    setup(&dir);
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(step_line(60));
    let img = p.checkpoint(&dir, "fd_files");
    // Let it write well past the checkpoint before it crashes: that output must not survive.
    p.wait_line(step_line(120));
    p.kill9();
    let grown = fs::metadata(dir.join("out_plain.txt")).unwrap().len();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("step 0\n"), "the program started over: {out}");

    assert_eq!(out.lines().last(), Some("done"));
    let summary = |s: &str| s.lines().find(|l| l.starts_with("input sum")).map(str::to_owned);
    assert_eq!(summary(&out), summary(&expected), "input/dir results differ");
    for (f, want) in OUTPUTS.iter().zip(&reference) {
        let got = fs::read(dir.join(f)).unwrap();
        assert!(got == *want, "{f} differs from an uninterrupted run's ({} vs {} bytes; {grown} before restart)", got.len(), want.len());
    }
}

#[test]
fn no_truncate_leaves_output_files_alone() {
    let dir = workdir("files_notrunc");
    setup(&dir);
    let prog = compile("fd_files", &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(step_line(30));
    let img = p.checkpoint(&dir, "fd_files");
    p.wait_line(step_line(80));
    p.kill9();
    let mut r = restart(&img, &["--no-truncate"], &dir);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    // Steps after the checkpoint were written twice to the O_APPEND file.
    let text = fs::read_to_string(dir.join("out_append.txt")).unwrap();
    assert!(text.matches("step 50 append\n").count() == 2, "expected duplicated output without truncation");
}

#[test]
fn gone_file_is_a_clear_error_or_dev_null_on_request() {
    let dir = workdir("files_gone");
    setup(&dir);
    let prog = compile("fd_files", &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(step_line(20));
    let img = p.checkpoint(&dir, "fd_files");
    p.kill9();
    fs::rename(dir.join("input.txt"), dir.join("input.moved")).unwrap();
    let mut r = restart(&img, &[], &dir);
    assert_eq!(r.wait().code(), Some(1));
    let err = r.stderr();
    assert!(err.contains("input.txt") && err.starts_with("ckpt-restart: "), "unclear error: {err}");
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");

    let mut r = restart(&img, &["--ignore-missing-files"], &dir);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert!(r.stderr().contains("input.txt"), "no warning naming the file: {}", r.stderr());
    assert_eq!(r.stdout().lines().last(), Some("done"));
}

#[test]
fn changed_input_file_is_refused() {
    let dir = workdir("files_changed");
    setup(&dir);
    let prog = compile("fd_files", &dir);
    let mut p = run(&prog, &[], &dir);
    p.wait_line(step_line(20));
    let img = p.checkpoint(&dir, "fd_files");
    p.kill9();
    fs::write(dir.join("input.txt"), b"something else").unwrap();
    let mut r = restart(&img, &[], &dir);
    assert_eq!(r.wait().code(), Some(1));
    assert!(r.stderr().contains("input.txt") && r.stderr().contains("changed"), "unclear error: {}", r.stderr());
}
