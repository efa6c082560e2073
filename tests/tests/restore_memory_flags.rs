//! Memory regions keep their mapping flags and advice across checkpoint, SIGKILL and restart
//! (MADV_DONTFORK, DONTDUMP, WIPEONFORK, HUGEPAGE, NOHUGEPAGE, SEQUENTIAL, RANDOM, MERGEABLE,
//! MAP_LOCKED, MLOCK_ONFAULT, MAP_NORESERVE, MAP_DROPPABLE, MAP_GROWSDOWN, mseal: VmFlags as
//! smaps shows them, nothing added, also on a large region the restart fills in bulk), and
//! shared file mappings keep what mprotect may do with them (a file opened read-write may be
//! made writable, one opened read-only may not).

mod ready_go;
mod restore_util;
use ready_go::same_after_restart;

/// "plain large": 8 MiB of data, which the restart fills in bulk (copied in, or staged in huge
/// pages where userfaultfd is refused): no MADV_HUGEPAGE of its own is left on it.
const ADVICE: &[&str] = &[
    "plain: flags [] data intact",
    "dontfork: flags [dc ] data intact",
    "noreserve: flags [nr ] data intact",
    "locked: flags [lo ] data intact",
    "plain large: flags [] data intact",
];

#[test]
fn mapping_flags_and_advice_survive() {
    same_after_restart("mem_advice", "advice", false, ADVICE);
}

#[test]
fn mapping_flags_and_advice_survive_as_nobody() {
    same_after_restart("mem_advice", "advice_nobody", true, ADVICE);
}

const FILEPROT: &[&str] = &["read-write file, mapped read-only: mprotect(PROT_WRITE) ok", "write through it reaches the file: yes", "read-only file: mprotect(PROT_WRITE) Permission denied"];

#[test]
fn shared_file_mappings_keep_their_mprotect_rights() {
    same_after_restart("mem_fileprot", "fileprot", false, FILEPROT);
}

#[test]
fn shared_file_mappings_keep_their_mprotect_rights_as_nobody() {
    same_after_restart("mem_fileprot", "fileprot_nobody", true, FILEPROT);
}
