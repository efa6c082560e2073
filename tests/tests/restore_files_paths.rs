//! fds whose target is found by path, or that share one object, across checkpoint, SIGKILL
//! and restart (self-checking programs in tests/programs/files_*.c): fds and a working
//! directory in the program's own /proc directory, O_PATH fds (on a symlink itself), several
//! open file descriptions of one pipe with their own flags, and FIFOs by name with unread bytes
//! (one of them removed).

mod restore_util;
use restore_util::*;

#[test]
fn own_proc_fds_and_working_directory_are_the_restarted_process() {
    ready_go("files_proc", "files_proc", false, |_| {}, &[]);
}

#[test]
fn own_proc_fds_and_working_directory_are_the_restarted_process_as_nobody() {
    ready_go("files_proc", "files_proc_nobody", true, |_| {}, &[]);
}

/// fds on files of a dead (reaped) child's /proc directory stay such fds.
#[test]
fn files_of_a_dead_process_proc_directory() {
    ready_go("files_proc_dead_file", "files_proc_dead_file", false, |_| {}, &[]);
}

#[test]
fn files_of_a_dead_process_proc_directory_as_nobody() {
    ready_go("files_proc_dead_file", "files_proc_dead_file_nobody", true, |_| {}, &[]);
}

/// fds on the program's own namespaces (/proc/self/ns/*) name its namespaces again.
#[test]
fn own_namespace_fds_are_the_restarted_process() {
    ready_go("proc_ns_self", "proc_ns_self", false, |_| {}, &[]);
}

#[test]
fn own_namespace_fds_are_the_restarted_process_as_nobody() {
    ready_go("proc_ns_self", "proc_ns_self_nobody", true, |_| {}, &[]);
}

#[test]
fn o_path_fds_stay_o_path_and_do_not_follow_symlinks() {
    ready_go("files_opath", "files_opath", false, |_| {}, &[]);
}

#[test]
fn opens_of_one_pipe_keep_their_own_flags() {
    ready_go("files_pipe_opens", "files_pipe_opens", false, |_| {}, &[]);
}

#[test]
fn opens_of_one_pipe_keep_their_own_flags_as_nobody() {
    ready_go("files_pipe_opens", "files_pipe_opens_nobody", true, |_| {}, &[]);
}

#[test]
fn fifos_keep_their_unread_bytes_and_ends() {
    ready_go("files_fifo", "files_fifo", false, |_| {}, &[]);
}

#[test]
fn fifos_keep_their_unread_bytes_and_ends_as_nobody() {
    ready_go("files_fifo", "files_fifo_nobody", true, |_| {}, &[]);
}

#[test]
fn working_directory_of_a_dead_process_proc_directory() {
    ready_go("files_proc_dead_cwd", "files_proc_dead_cwd", false, |_| {}, &[]);
}

/// A FIFO whose name is gone at restart is made again (it holds nothing on disk), said at
/// CKPT_LOG=info; the unread bytes come from the image.
#[test]
fn fifo_removed_after_the_kill_is_made_again() {
    let r = ready_go("files_fifo", "files_fifo_gone", false, |d| std::fs::remove_file(d.join("fifo")).unwrap(), &[("CKPT_LOG", "info")]);
    assert!(r.stderr.lines().any(|l| l.contains("/fifo") && l.contains("made again")), "not said: {}", r.stderr);
}
