//! An AIO context across checkpoint, SIGKILL and restart (tests/programs/files_aio.c): a
//! completion not yet reaped is returned by io_getevents after the restart, and new requests
//! are submitted and reaped on the same context.

mod restore_util;
use restore_util::*;

#[test]
fn aio_context_keeps_its_completions_and_takes_new_requests() {
    ready_go("files_aio", "files_aio", false, |_| {}, &[]);
}

#[test]
fn aio_context_keeps_its_completions_and_takes_new_requests_as_nobody() {
    ready_go("files_aio", "files_aio_nobody", true, |_| {}, &[]);
}

#[test]
fn aio_context_survives_two_restarts() {
    survives_two_restarts("files_aio");
}
