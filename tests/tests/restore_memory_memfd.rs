//! memfds across checkpoint, SIGKILL and restart: their seals (F_GET_SEALS the same, also the
//! F_SEAL_SEAL of a memfd made without MFD_ALLOW_SEALING), exec permission (a script in a memfd
//! still runs with fexecve, a MFD_NOEXEC_SEAL one still does not), and their file system
//! (tmpfs). (Their data, and shared and private mappings of them: restore_memory, shared_fork,
//! restore_files_deleted.)

mod ready_go;
mod restore_util;
use ready_go::same_after_restart;

const MEMFD: &[&str] = &[
    "sealed: seals 0xa, write: Operation not permitted",
    "plain: seals 0x1, adding a seal: Operation not permitted",
    "plain: on tmpfs: yes",
    "script: runs",
    "plain holds: world",
];

#[test]
fn memfd_seals_exec_and_file_system_survive() {
    same_after_restart("mem_memfd", "memfd", false, MEMFD);
}

#[test]
fn memfd_seals_exec_and_file_system_survive_as_nobody() {
    same_after_restart("mem_memfd", "memfd_nobody", true, MEMFD);
}
