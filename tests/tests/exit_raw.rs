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
