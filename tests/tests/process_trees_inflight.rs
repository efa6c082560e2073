//! Files in flight (SCM_RIGHTS, queued in a socket, not yet received) whose object another
//! process of the tree holds (issue 13): a parent that passes an object it keeps to its child
//! over a socketpair between them ("send my fd to a worker and keep it"), one message always
//! queued, so every checkpoint finds the object in flight in the child's end and held by the
//! parent as an fd (tree_inflight.c). The whole tree is SIGKILLed and restarted; the child
//! receives the object and the two use one object again (same result as an uninterrupted run,
//! which a child with an object of its own cannot reach: it waits 5 s and exits 92):
//! - a pipe's read end: one pipe (the parent's bytes are read by the child through its copy)
//!   and one open file (the child's O_NONBLOCK is the parent's); also as nobody, and twice;
//! - one end of a socketpair whose both ends the parent keeps: the child's copy answers the
//!   parent's other end (also as nobody, and twice);
//! - a TCP listener: connections accepted from the one listener through either fd; also as
//!   nobody and twice;
//! - a regular file and a memfd: one open file (one offset: the child's and the parent's
//!   records follow each other), found with kcmp at the cut (the child's runtime peeked the
//!   file, so it has an fd of it for the moment) and made once with the parent's fd; also as
//!   nobody (the file twice);
//! - an event fd, a timer fd and a signal fd: one object (the parent reads the sum of both
//!   counts, finds the child's interval, the child's mask), found with kcmp at the cut as a
//!   file is; the event fd also as nobody, and twice;
//! - a memfd and a deleted file only in flight (nobody holds an fd of it between turns: the
//!   parent and child pass it back and forth, each closing its copy): its data and offset in
//!   the child's image, read through the runtime's fd of it (the checkpoint failed before); the
//!   memfd also as nobody, twice;
//! - a memfd, a file and an event fd that the parent keeps and sends to two children at once:
//!   in flight in two processes' sockets, one object with the parent's fd (the file as nobody);
//! - a file, an event fd, a timer fd and a signal fd held by no fd, in flight in two processes
//!   (the parent's copy in a socketpair of its own between its turns): one object (each runtime
//!   keeps its fd of it until every process is captured, so the later one finds the other's
//!   with kcmp); the file and the event fd also as nobody, twice;
//! - a memfd and a deleted file held by no fd, in flight in two processes likewise: one open
//!   file (one offset, one content: the records of both follow each other), its data stored
//!   once, by the lowest pid holding it; the memfd also as nobody, twice, the deleted file as
//!   nobody;
//! - an epoll instance watching a pipe's read end that only the parent holds, which the parent
//!   keeps: the child's copy reports the pipe written after the restart, with the entry's data
//!   the parent set (EPOLL_CTL_MOD), and the two are one open file (O_NONBLOCK); also as nobody;
//! - an epoll instance only in flight (passed back and forth, each closing its copy) watching a
//!   pipe both hold (made before the fork): as above; also as nobody;
//! - an inotify instance watching a directory, which the parent keeps: the child's copy gets the
//!   creation of a file made after the restart, and the parent's fd finds the event read (one
//!   queue) and the child's O_NONBLOCK; also as nobody; and one only in flight whose watch was
//!   added before the fork (the child's runtime saw its path); also as nobody;
//! - an epoll instance only in flight whose watched pipe only the sender holds (made after the
//!   fork; the child has no fd of it): the child's runtime finds the parent's fd of the entry's
//!   file with kcmp(KCMP_EPOLL_TFD) at the cut, and at the restart the parent adds the entry to
//!   the instance the tree made, which the child receives: it reports the pipe written, with
//!   the data the parent set (refused in one line before); also as nobody, twice;
//! - an inotify instance only in flight whose watch the sender added after the fork (the
//!   child's runtime did not see its path): the parent's image names the path its runtime saw
//!   the inode being watched through (`Index::watched`), and the child's restore adds the watch
//!   there: the child gets the creation of a file made after the restart (refused in one line
//!   before); also as nobody, twice.
//!
//! The socketpair carrying the message is made once by the tree's root, empty on that side, and
//! its queue sent again by the child (whose image holds the files in flight) from the other end.

use anyhow::Result;
use ckpt_tests::{Program, Workdir};

fn pipe(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &["pipe", "200", "30"])
}

fn socketpair(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &["socketpair", "200", "30"])
}

#[test]
fn a_socketpair_end_in_flight_to_the_child_that_the_parent_keeps_is_one_socket() -> Result<()> {
    ckpt_tests::trees::verify("inflight-socketpair", socketpair, &[20], false, 2).map(drop)
}

#[test]
fn a_socketpair_end_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-socketpair-nobody", socketpair, &[15, 50], true, 2).map(drop)
}

fn listener(work: &Workdir) -> Result<Program> {
    // (A longer pause after each step: the checkpoint, asked after one, is taken while no
    // connection waits in the listener's queue, as in process_trees_shared's listener tests.)
    Program::c(work, "tree_inflight.c", &[], &["listener", "80", "100"])
}

#[test]
fn a_pipe_end_in_flight_to_the_child_that_the_parent_keeps_is_one_pipe() -> Result<()> {
    ckpt_tests::trees::verify("inflight-pipe", pipe, &[20], false, 2).map(drop)
}

#[test]
fn a_pipe_end_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-pipe-nobody", pipe, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_listener_in_flight_to_the_child_that_the_parent_keeps_is_one_listener() -> Result<()> {
    ckpt_tests::trees::verify("inflight-listener", listener, &[20], false, 2).map(drop)
}

#[test]
fn a_listener_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-listener-nobody", listener, &[15, 50], true, 2).map(drop)
}

fn file(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &["file", "200", "30"])
}

fn memfd(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &["memfd", "200", "30"])
}

#[test]
fn a_file_in_flight_to_the_child_that_the_parent_keeps_is_one_open_file() -> Result<()> {
    ckpt_tests::trees::verify("inflight-file", file, &[20], false, 2).map(drop)
}

#[test]
fn a_file_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-file-nobody", file, &[15, 50], true, 2).map(drop)
}

#[test]
fn a_memfd_in_flight_to_the_child_that_the_parent_keeps_is_one_open_file() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd", memfd, &[20], false, 2).map(drop)
}

#[test]
fn a_memfd_in_flight_that_the_parent_keeps_continues_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd-nobody", memfd, &[20], true, 2).map(drop)
}

#[test]
fn a_file_only_in_flight_in_two_processes_is_one_open_file() -> Result<()> {
    ckpt_tests::trees::verify("inflight-flying", |w| mode(w, "file-flying"), &[20], false, 2).map(drop)
}

#[test]
fn a_file_only_in_flight_in_two_processes_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-flying-nobody", |w| mode(w, "file-flying"), &[15, 50], true, 2).map(drop)
}

#[test]
fn an_eventfd_only_in_flight_in_two_processes_is_one_counter() -> Result<()> {
    ckpt_tests::trees::verify("inflight-eventfd-flying", |w| mode(w, "eventfd-flying"), &[20], false, 2).map(drop)
}

#[test]
fn an_eventfd_only_in_flight_in_two_processes_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-eventfd-flying-nobody", |w| mode(w, "eventfd-flying"), &[15, 50], true, 2).map(drop)
}

#[test]
fn a_timerfd_only_in_flight_in_two_processes_is_one_timer() -> Result<()> {
    ckpt_tests::trees::verify("inflight-timerfd-flying", |w| mode(w, "timerfd-flying"), &[20], false, 2).map(drop)
}

#[test]
fn a_signalfd_only_in_flight_in_two_processes_is_one_signal_fd() -> Result<()> {
    ckpt_tests::trees::verify("inflight-signalfd-flying", |w| mode(w, "signalfd-flying"), &[20], false, 2).map(drop)
}

#[test]
fn a_memfd_only_in_flight_in_two_processes_is_one_open_file() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd-flying", |w| mode(w, "memfd-flying"), &[20], false, 2).map(drop)
}

#[test]
fn a_memfd_only_in_flight_in_two_processes_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd-flying-nobody", |w| mode(w, "memfd-flying"), &[15, 50], true, 2).map(drop)
}

#[test]
fn a_deleted_file_only_in_flight_in_two_processes_is_one_open_file() -> Result<()> {
    ckpt_tests::trees::verify("inflight-deleted-flying", |w| mode(w, "deleted-flying"), &[20], false, 2).map(drop)
}

#[test]
fn a_deleted_file_only_in_flight_in_two_processes_continues_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-deleted-flying-nobody", |w| mode(w, "deleted-flying"), &[20], true, 2).map(drop)
}

fn mode(work: &Workdir, m: &str) -> Result<Program> {
    Program::c(work, "tree_inflight.c", &[], &[m, "200", "30"])
}

#[test]
fn a_memfd_only_in_flight_keeps_its_data_and_offset() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd-baton", |w| mode(w, "memfd-baton"), &[20], false, 2).map(drop)
}

#[test]
fn a_memfd_only_in_flight_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd-baton-nobody", |w| mode(w, "memfd-baton"), &[15, 50], true, 2).map(drop)
}

#[test]
fn a_deleted_file_only_in_flight_keeps_its_data_and_offset() -> Result<()> {
    ckpt_tests::trees::verify("inflight-deleted-baton", |w| mode(w, "deleted-baton"), &[20], false, 2).map(drop)
}

#[test]
fn an_eventfd_in_flight_that_the_parent_keeps_is_one_counter() -> Result<()> {
    ckpt_tests::trees::verify("inflight-eventfd", |w| mode(w, "eventfd"), &[20], false, 2).map(drop)
}

#[test]
fn an_eventfd_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-eventfd-nobody", |w| mode(w, "eventfd"), &[15, 50], true, 2).map(drop)
}

#[test]
fn a_timerfd_in_flight_that_the_parent_keeps_is_one_timer() -> Result<()> {
    ckpt_tests::trees::verify("inflight-timerfd", |w| mode(w, "timerfd"), &[20], false, 2).map(drop)
}

#[test]
fn a_signalfd_in_flight_that_the_parent_keeps_is_one_signal_fd() -> Result<()> {
    ckpt_tests::trees::verify("inflight-signalfd", |w| mode(w, "signalfd"), &[20], false, 2).map(drop)
}

#[test]
fn a_memfd_in_flight_to_two_children_that_the_parent_keeps_is_one_open_file() -> Result<()> {
    ckpt_tests::trees::verify("inflight-memfd-twice", |w| mode(w, "memfd-twice"), &[20], false, 3).map(drop)
}

#[test]
fn a_file_in_flight_to_two_children_that_the_parent_keeps_continues_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-file-twice-nobody", |w| mode(w, "file-twice"), &[20], true, 3).map(drop)
}

#[test]
fn an_eventfd_in_flight_to_two_children_that_the_parent_keeps_is_one_counter() -> Result<()> {
    ckpt_tests::trees::verify("inflight-eventfd-twice", |w| mode(w, "eventfd-twice"), &[20], false, 3).map(drop)
}

#[test]
fn an_epoll_instance_in_flight_that_the_parent_keeps_is_one_instance() -> Result<()> {
    ckpt_tests::trees::verify("inflight-epoll", |w| mode(w, "epoll"), &[20], false, 2).map(drop)
}

#[test]
fn an_epoll_instance_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-epoll-nobody", |w| mode(w, "epoll"), &[15, 50], true, 2).map(drop)
}

#[test]
fn an_epoll_instance_only_in_flight_watching_a_pipe_both_hold_reports_it() -> Result<()> {
    ckpt_tests::trees::verify("inflight-epoll-baton", |w| mode(w, "epoll-early-baton"), &[20], false, 2).map(drop)
}

#[test]
fn an_epoll_instance_only_in_flight_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-epoll-baton-nobody", |w| mode(w, "epoll-early-baton"), &[15, 50], true, 2).map(drop)
}

#[test]
fn an_epoll_instance_only_in_flight_watching_a_pipe_only_the_sender_holds_reports_it() -> Result<()> {
    ckpt_tests::trees::verify("inflight-epoll-lone", |w| mode(w, "epoll-baton"), &[20], false, 2).map(drop)
}

#[test]
fn an_epoll_instance_only_in_flight_watching_a_pipe_only_the_sender_holds_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-epoll-lone-nobody", |w| mode(w, "epoll-baton"), &[15, 50], true, 2).map(drop)
}

#[test]
fn an_inotify_instance_in_flight_that_the_parent_keeps_is_one_instance() -> Result<()> {
    ckpt_tests::trees::verify("inflight-inotify", |w| mode(w, "inotify"), &[20], false, 2).map(drop)
}

#[test]
fn an_inotify_instance_in_flight_that_the_parent_keeps_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-inotify-nobody", |w| mode(w, "inotify"), &[15, 50], true, 2).map(drop)
}

#[test]
fn an_inotify_instance_only_in_flight_whose_watch_the_child_saw_gets_new_events() -> Result<()> {
    ckpt_tests::trees::verify("inflight-inotify-baton", |w| mode(w, "inotify-early-baton"), &[20], false, 2).map(drop)
}

#[test]
fn an_inotify_instance_only_in_flight_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-inotify-baton-nobody", |w| mode(w, "inotify-early-baton"), &[15, 50], true, 2).map(drop)
}

#[test]
fn an_inotify_instance_only_in_flight_whose_watch_the_sender_added_gets_new_events() -> Result<()> {
    ckpt_tests::trees::verify("inflight-inotify-lone", |w| mode(w, "inotify-baton"), &[20], false, 2).map(drop)
}

#[test]
fn an_inotify_instance_only_in_flight_whose_watch_the_sender_added_continues_after_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("inflight-inotify-lone-nobody", |w| mode(w, "inotify-baton"), &[15, 50], true, 2).map(drop)
}
