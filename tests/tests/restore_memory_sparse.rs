//! A 2 TiB MAP_NORESERVE reservation holding a few pages (the JVM, Go, the sanitizers): the
//! image holds those pages, the restart maps the reservation MAP_NORESERVE again (not ENOMEM)
//! and the program goes on with its data and a few resident pages; also through a second
//! checkpoint of the restarted program. (How long it takes is measured by scripts/bench.)

mod ready_go;
mod restore_util;
use ready_go::same_after_restart;

const SPARSE: &[&str] = &["page at 0 GiB: intact", "page at 1024 GiB: intact", "page at 2047 GiB: intact", "MAP_NORESERVE: yes", "resident: a few pages"];

#[test]
fn huge_sparse_reservation_survives() {
    same_after_restart("mem_sparse", "sparse", false, SPARSE);
}

#[test]
fn huge_sparse_reservation_survives_as_nobody() {
    same_after_restart("mem_sparse", "sparse_nobody", true, SPARSE);
}

#[test]
fn huge_sparse_reservation_survives_two_restarts() {
    restore_util::survives_two_restarts("mem_sparse");
}
