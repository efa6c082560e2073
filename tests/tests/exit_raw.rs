//! A program whose last thread leaves with a raw exit(2) (SYS_exit: glibc does not count it, so
//! no exit_group follows; CRIU's seccomp tests end so) ends, under ckpt-run and after a restart:
//! it lived on in the runtime's checkpoint thread alone, which takes no SIGTERM
//! (tests/programs/exit_raw.c).

mod ready_go;
mod restore_util;
use ready_go::same_after_restart;

const DONE: &[&str] = &["worker done", "main done"];

#[test]
fn a_program_ending_with_raw_exits_ends_after_a_restart() {
    same_after_restart("exit_raw", "exit_raw", false, DONE);
}

#[test]
fn a_program_ending_with_raw_exits_ends_after_a_restart_as_nobody() {
    same_after_restart("exit_raw", "exit_raw_nobody", true, DONE);
}

/// A program whose only thread its own seccomp filter kills (SECCOMP_RET_KILL_THREAD) dies of
/// SIGSYS, as alone, after a restart: the checkpoint thread it leaves behind dies by the same
/// signal (it exited with status 0).
fn killed_by_its_filter(tag: &str, nobody: bool) {
    use restore_util::*;
    use std::os::unix::process::ExitStatusExt;
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("exit_seccomp", &base);
    std::fs::write(base.join("go"), b"").unwrap();
    let status = std::process::Command::new(&prog).current_dir(&*base).stdout(std::process::Stdio::null()).status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGSYS), "the uninterrupted run did not die of SIGSYS: {status:?}");

    let dir = workdir(tag);
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "exit_seccomp");
    p.kill9();
    std::fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    let st = r.wait();
    assert_eq!(r.stdout(), "filtering\n", "stderr: {}", r.stderr());
    assert_eq!(st.signal(), Some(libc::SIGSYS), "the restarted program did not die of SIGSYS ({st:?}): {}", r.stderr());
}

#[test]
fn a_program_its_seccomp_filter_kills_dies_of_sigsys_after_a_restart() {
    killed_by_its_filter("exit_seccomp", false);
}

#[test]
fn a_program_its_seccomp_filter_kills_dies_of_sigsys_after_a_restart_as_nobody() {
    killed_by_its_filter("exit_seccomp_nobody", true);
}
