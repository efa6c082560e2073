//! Guard pages (MADV_GUARD_INSTALL) in anonymous memory, in a private file mapping and at the
//! end of a thread's stack: the checkpoint does not fault on them, and after the restart they
//! fault again while the pages around them hold their data.

mod ready_go;
mod restore_util;
use ready_go::same_after_restart;

const GUARDS: &[&str] = &["thread stack guard: faults", "anonymous page 1: faults", "anonymous page 3: writable, data intact", "file page 5: faults", "file page 3: writable, data intact"];

#[test]
fn guard_pages_survive() {
    same_after_restart("mem_guard", "guard", false, GUARDS);
}

#[test]
fn guard_pages_survive_as_nobody() {
    same_after_restart("mem_guard", "guard_nobody", true, GUARDS);
}
