//! What a restarted program sees of its own fd table (issue 12, zdtm fd): listing /proc/self/fd,
//! /proc/self/fdinfo and /proc/<pid>/fd (readdir, getdents64, readdir_r) shows the fds it opened
//! and none of the runtime's own, and after it closed every fd it found, nothing above 2.

mod ready_go;
mod restore_util;
use ready_go::same_after_restart;

const LISTS: &[&str] = &["readdir: 0 1 2 3 4 5", "getdents64: 0 1 2 3 4 5", "readdir_r: 0 1 2 3 4 5", "after closing all: 0 1 2"];

#[test]
fn the_runtime_fds_are_not_listed() {
    same_after_restart("fd_listing", "fd_listing", false, LISTS);
}

#[test]
fn the_runtime_fds_are_not_listed_as_nobody() {
    same_after_restart("fd_listing", "fd_listing_nobody", true, LISTS);
}
