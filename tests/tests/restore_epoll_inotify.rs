//! epoll and inotify across checkpoint, SIGKILL and restart (tests/programs/*.c, zdtm style):
//! epoll entries added through fd numbers closed since (their files still open through dups)
//! and an fd number reused for two entries; inotify watches on a symbolic link itself, through
//! one, on a file renamed since, and on a removed file the program holds open; a watch whose
//! file cannot be found again refuses the restart (or warns with --ignore-missing-files).
//! Events queued unread at checkpoint time are read after the restart and by the program that
//! goes on after the checkpoint, with their wd, mask, cookie and name, and poll and epoll see
//! the fd readable while they remain.

mod restore_util;
use restore_util::*;
#[path = "restore_util/refuse.rs"]
mod refuse;

#[test]
fn epoll_entries_of_closed_fds_come_back() {
    ready_go("epoll_closed_fd", "epoll_closed_fd", false, |_| {}, &[]);
}

#[test]
fn epoll_entries_of_closed_fds_come_back_as_nobody() {
    ready_go("epoll_closed_fd", "epoll_closed_fd_nobody", true, |_| {}, &[]);
}

#[test]
fn inotify_watches_on_links_and_renamed_files_come_back() {
    ready_go("inotify_moved", "inotify_moved", false, |_| {}, &[]);
}

#[test]
fn inotify_watches_on_links_and_renamed_files_come_back_as_nobody() {
    ready_go("inotify_moved", "inotify_moved_nobody", true, |_| {}, &[]);
}

/// A watch on a file removed since but still open (zdtm inotify00): it comes back on the file as
/// restored at that fd, with its number, and the restart queues no event of its own.
#[test]
fn an_inotify_watch_on_a_removed_file_held_open_comes_back() {
    ready_go("inotify_removed", "inotify_removed", false, |_| {}, &[]);
}

#[test]
fn an_inotify_watch_on_a_removed_file_held_open_comes_back_as_nobody() {
    ready_go("inotify_removed", "inotify_removed_nobody", true, |_| {}, &[]);
}

/// Events queued unread when the checkpoint is taken (zdtm inotify_system): the restarted
/// program reads them, as an uninterrupted run does.
#[test]
fn inotify_events_queued_at_checkpoint_time_are_read_after_the_restart() {
    ready_go("inotify_queued", "inotify_queued", false, |_| {}, &[]);
}

#[test]
fn inotify_events_queued_at_checkpoint_time_are_read_after_the_restart_as_nobody() {
    ready_go("inotify_queued", "inotify_queued_nobody", true, |_| {}, &[]);
}

/// The program that goes on after two checkpoints (the second finds the events the first saved
/// still unread) reads them as if none had been taken.
#[test]
fn inotify_events_queued_at_checkpoint_time_are_read_by_the_program_that_goes_on() {
    queued_after_two_checkpoints("inotify_queued_live", false, false);
}

#[test]
fn inotify_events_queued_at_checkpoint_time_are_read_by_the_program_that_goes_on_as_nobody() {
    queued_after_two_checkpoints("inotify_queued_live_nobody", true, false);
}

/// A restart from the second of two checkpoints: the events the first saved are in it.
#[test]
fn inotify_events_saved_by_an_earlier_checkpoint_are_read_after_a_restart_from_a_later_one() {
    queued_after_two_checkpoints("inotify_queued_twice", false, true);
}

fn queued_after_two_checkpoints(tag: &str, nobody: bool, restart: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("inotify_queued", &base);
    std::fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, &[], &base, nobody);
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");
    let dir = workdir(tag);
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, "inotify_queued");
    let img = p.checkpoint(&dir, "inotify_queued");
    let mut p = if restart {
        p.kill9();
        restart_as(&img, &[], &dir, nobody)
    } else {
        p
    };
    std::fs::write(dir.join("go"), b"").unwrap();
    let st = p.wait();
    let (stdout, stderr) = (p.stdout(), p.stderr());
    assert!(st.success(), "the program failed ({st:?}): {stderr}\nstdout: {stdout}");
    let expected = if restart { expected.replacen("READY\n", "", 1) } else { expected };
    assert_eq!(stdout, expected, "the run differs; stderr: {stderr}");
}

#[test]
fn an_inotify_watch_that_cannot_be_found_refuses_the_restart() {
    let r = refuse::refused_then_ignored("inotify_gone", "inotify_gone", true, "renamed or removed");
    assert!(r.stdout.contains("event: no"), "{}", r.stdout);
}

/// A fanotify group (an unprivileged one: an inode mark, FAN_REPORT_FID): its marks are not made
/// again, so the restart refuses in one line rather than give the program a dead fd
/// (`--ignore-missing-files`: /dev/null, with a warning).
#[test]
fn a_fanotify_group_refuses_the_restart() {
    fanotify_refused("fanotify_group", false);
}

#[test]
fn a_fanotify_group_refuses_the_restart_as_nobody() {
    fanotify_refused("fanotify_group_nobody", true);
}

fn fanotify_refused(tag: &str, nobody: bool) {
    refused_where_the_kernel_allows("fanotify_group", tag, nobody, "no fanotify here", "fanotify");
}

/// `refuse::refused_then_ignored` for program `name`, unless its plain run says `absent` (this
/// kernel refuses the object it makes for this user: the test is skipped).
fn refused_where_the_kernel_allows(name: &str, tag: &str, nobody: bool, absent: &str, expect: &str) -> Option<refuse::Refused> {
    let probe = workdir(&format!("{tag}_probe"));
    let prog = compile(name, &probe);
    std::fs::write(probe.join("go"), b"").unwrap();
    if plain_as(&prog, &[], &probe, nobody).contains(absent) {
        ckpt_tests::skip_test!("this kernel refuses what {name} makes ({absent})");
        return None;
    }
    Some(refuse::refused_then_ignored(name, tag, nobody, expect))
}

/// An fd of a kind ckpt cannot restore (an io_uring instance) is never silently replaced: the
/// restart refuses in one line naming it; `--ignore-missing-files` gives the program /dev/null
/// with a warning naming it (before, /dev/null with a warning, without being asked).
#[test]
fn an_fd_of_a_kind_ckpt_cannot_restore_refuses_the_restart() {
    unknown_fd_refused("unknown_fd", false);
}

#[test]
fn an_fd_of_a_kind_ckpt_cannot_restore_refuses_the_restart_as_nobody() {
    unknown_fd_refused("unknown_fd_nobody", true);
}

fn unknown_fd_refused(tag: &str, nobody: bool) {
    if let Some(r) = refused_where_the_kernel_allows("unknown_fd", tag, nobody, "no io_uring here", "io_uring") {
        assert!(r.refusal.contains("cannot restore"), "refusal: {}", r.refusal);
    }
}
