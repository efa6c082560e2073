//! Inodes without a name across checkpoint, SIGKILL and restart (programs in
//! tests/programs/files_*.c check themselves; the restarted run must print what an
//! uninterrupted run prints): a deleted file of more than 1 GiB apparent size with its holes,
//! mode and two opens of one inode; a deleted file written while the checkpoint is taken;
//! tmpfile(), O_TMPFILE and an unlinked shm_open object; removed directories (one the working
//! directory) and a deleted device node; a shared-mapped file removed after the kill.

mod restore_util;
use restore_util::*;
use std::fs;

#[test]
fn deleted_sparse_file_over_1gib_keeps_data_holes_mode_and_identity() {
    ready_go("files_deleted", "files_deleted", false, |_| {}, &[]);
}

#[test]
fn deleted_sparse_file_over_1gib_keeps_data_holes_mode_and_identity_as_nobody() {
    ready_go("files_deleted", "files_deleted_nobody", true, |_| {}, &[]);
}

/// The snapshot writes a deleted file's data while the program runs on and writes it: the
/// image must still hold the file as it was together with memory (the checkpoint is then
/// written with the program stopped).
#[test]
fn deleted_file_written_during_the_checkpoint_matches_memory() {
    ready_go("files_deleted_busy", "files_deleted_busy", false, |_| {}, &[]);
}

#[test]
fn deleted_files_survive_two_restarts() {
    survives_two_restarts("files_deleted");
}

#[test]
fn tmpfile_o_tmpfile_and_unlinked_shm_object() {
    ready_go("files_tmpfile", "files_tmpfile", false, |_| {}, &[]);
}

#[test]
fn tmpfile_o_tmpfile_and_unlinked_shm_object_as_nobody() {
    ready_go("files_tmpfile", "files_tmpfile_nobody", true, |_| {}, &[]);
}

/// As root the program also holds a deleted device node (mknod needs privileges).
#[test]
fn removed_directories_working_directory_and_device_node() {
    ready_go("files_deleted_dir", "files_deleted_dir", false, |_| {}, &[]);
}

#[test]
fn removed_directories_and_working_directory_as_nobody() {
    ready_go("files_deleted_dir", "files_deleted_dir_nobody", true, |_| {}, &[]);
}

/// A shared-mapped file removed after the kill is made again from the image, said in one line
/// at CKPT_LOG=info.
#[test]
fn shared_mapped_file_removed_after_the_kill_is_made_again() {
    let r = ready_go("files_mapped_gone", "files_mapped_gone", false, |d| fs::remove_file(d.join("session.dat")).unwrap(), &[("CKPT_LOG", "info")]);
    let said: Vec<&str> = r.stderr.lines().filter(|l| l.contains("session.dat")).collect();
    assert_eq!(said.len(), 1, "expected one line about session.dat: {}", r.stderr);
    assert!(said[0].contains("made again"), "{}", said[0]);
    assert_eq!(fs::read(r.dir.join("session.dat")).unwrap().len(), 3 * 4096 + 100);
}

/// Private mappings of a deleted file still written through an fd: the pages the program did
/// not copy show the fd's writes after the restart, its own copies do not.
#[test]
fn private_mappings_of_a_deleted_file_follow_its_fd() {
    ready_go("files_deleted_mapped", "files_deleted_mapped", false, |_| {}, &[]);
}

/// A file unlinked under one name but linked under another in its directory is that file again;
/// a file deleted for good keeps its old name in /proc/self/fd.
#[test]
fn deleted_files_keep_their_names() {
    ready_go("files_deleted_names", "files_deleted_names", false, |_| {}, &[]);
}

#[test]
fn deleted_files_keep_their_names_as_nobody() {
    ready_go("files_deleted_names", "files_deleted_names_nobody", true, |_| {}, &[]);
}
