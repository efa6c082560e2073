//! epoll and inotify across checkpoint, SIGKILL and restart (tests/programs/*.c, zdtm style):
//! epoll entries added through fd numbers closed since (their files still open through dups)
//! and an fd number reused for two entries; inotify watches on a symbolic link itself, through
//! one, on a file renamed since, and on a removed file the program holds open; a watch whose
//! file cannot be found again refuses the restart (or warns with --ignore-missing-files).
//! Events queued unread at checkpoint time are read after the restart and by the program that
//! goes on after the checkpoint, with their wd, mask, cookie and name, and poll and epoll see
//! the fd readable while they remain. fanotify groups come back with their flags and their
//! inode, mount and filesystem marks, and their unread events are read as inotify's are.

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

/// The numbers inotify_add_watch hands out after the restart (tests/programs/inotify_wds.c): the
/// kernel never gives a number twice, so after a gap and after the highest watches were removed
/// (and in an instance with no watch left) the next watch gets the number an uninterrupted run
/// gets, not the one after the last watch that remains.
#[test]
fn inotify_watches_added_after_a_restart_get_the_numbers_they_would_have() {
    ready_go("inotify_wds", "inotify_wds", false, |_| {}, &[]);
}

#[test]
fn inotify_watches_added_after_a_restart_get_the_numbers_they_would_have_as_nobody() {
    ready_go("inotify_wds", "inotify_wds_nobody", true, |_| {}, &[]);
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
    queued_after_two_checkpoints("inotify_queued", "inotify_queued_live", false, false);
}

#[test]
fn inotify_events_queued_at_checkpoint_time_are_read_by_the_program_that_goes_on_as_nobody() {
    queued_after_two_checkpoints("inotify_queued", "inotify_queued_live_nobody", true, false);
}

/// A restart from the second of two checkpoints: the events the first saved are in it.
#[test]
fn inotify_events_saved_by_an_earlier_checkpoint_are_read_after_a_restart_from_a_later_one() {
    queued_after_two_checkpoints("inotify_queued", "inotify_queued_twice", false, true);
}

fn queued_after_two_checkpoints(name: &str, tag: &str, nobody: bool, restart: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile(name, &base);
    std::fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, &[], &base, nobody);
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");
    let dir = workdir(tag);
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    p.checkpoint(&dir, name);
    let img = p.checkpoint(&dir, name);
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

/// A fanotify group an ordinary user can make (FAN_REPORT_FID; inode marks, one added through
/// a directory fd, one with an ignored mask besides): it comes back with its flags and marks
/// (its fdinfo is what it was), and writes to the marked files queue their events after the
/// restart.
#[test]
fn a_fanotify_group_comes_back_with_its_inode_marks() {
    fanotify_ready_go("fanotify_group", "fanotify_group", false);
}

#[test]
fn a_fanotify_group_comes_back_with_its_inode_marks_as_nobody() {
    fanotify_ready_go("fanotify_group", "fanotify_group_nobody", true);
}

/// `ready_go` for fanotify program `name`, unless this kernel refuses it an unprivileged group
/// (skipped).
fn fanotify_ready_go(name: &str, tag: &str, nobody: bool) {
    if kernel_refuses(name, tag, nobody, "no fanotify here") {
        ckpt_tests::skip_test!("this kernel refuses an unprivileged fanotify group");
        return;
    }
    ready_go(name, tag, nobody, |_| {}, &[]);
}

/// An ordinary user's inode mark on a file moved to another directory since: without
/// CAP_DAC_READ_SEARCH nothing finds its inode again, so the restart refuses in one line naming
/// the mark (`--ignore-missing-files`: the group comes back without it, with a warning). (Root's
/// restart finds it by its file handle: the mount test below.)
#[test]
fn a_fanotify_mark_on_a_file_moved_away_refuses_the_restart_as_nobody() {
    if let Some(r) = refused_where_the_kernel_allows("fanotify_gone", "fanotify_gone_nobody", true, "no fanotify here", "fanotify inode mark") {
        assert!(r.stdout.contains("marks: 0"), "{}", r.stdout);
    }
}

/// Root's fanotify group (zdtm fanotify00's kind: FAN_UNLIMITED_QUEUE, events with an fd) with a
/// mount mark carrying an ignored mask and a filesystem mark, on a tmpfs of the test's: it comes
/// back with both, and with an inode mark on a file moved to another directory since (found by
/// its file handle);
/// the event queued at checkpoint time is read first, with a valid fd of its file, then a write
/// and close on that tmpfs after the restart reach it.
#[test]
fn a_fanotify_group_comes_back_with_its_mount_and_filesystem_marks() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("mount and filesystem marks need CAP_SYS_ADMIN");
        return;
    }
    let (base, dir) = (workdir("fanotify_mount_ref"), workdir("fanotify_mount"));
    let mounts: Vec<Tmpfs> = [&base, &dir].iter().filter_map(|d| Tmpfs::mount(&d.join("mnt"))).collect();
    if mounts.len() < 2 {
        ckpt_tests::skip_test!("cannot mount a tmpfs here");
        return;
    }
    ready_go_in("fanotify_mount", base, dir, false, |_| {}, &[]);
}

/// A small tmpfs mounted at a path for a test (lazily unmounted when dropped).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(at).status().ok()?;
        st.success().then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Events queued unread in a fanotify group at checkpoint time: after the restart the fd is
/// readable, FIONREAD counts them and a read gives them, before those queued afterwards, as in
/// an uninterrupted run.
#[test]
fn fanotify_events_queued_at_checkpoint_time_are_read_after_the_restart() {
    fanotify_ready_go("fanotify_queued", "fanotify_queued", false);
}

#[test]
fn fanotify_events_queued_at_checkpoint_time_are_read_after_the_restart_as_nobody() {
    fanotify_ready_go("fanotify_queued", "fanotify_queued_nobody", true);
}

/// The program that goes on after two checkpoints reads them as if none had been taken.
#[test]
fn fanotify_events_queued_at_checkpoint_time_are_read_by_the_program_that_goes_on() {
    if kernel_refuses("fanotify_queued", "fanotify_queued_live", false, "no fanotify here") {
        ckpt_tests::skip_test!("this kernel refuses an unprivileged fanotify group");
        return;
    }
    queued_after_two_checkpoints("fanotify_queued", "fanotify_queued_live", false, false);
}

/// Whether the plain run of program `name` says `absent` (this kernel refuses the object it
/// makes for this user).
fn kernel_refuses(name: &str, tag: &str, nobody: bool, absent: &str) -> bool {
    let probe = workdir(&format!("{tag}_probe"));
    let prog = compile(name, &probe);
    std::fs::write(probe.join("go"), b"").unwrap();
    plain_as(&prog, &[], &probe, nobody).contains(absent)
}

/// `refuse::refused_then_ignored` for program `name`, unless its plain run says `absent` (this
/// kernel refuses the object it makes for this user: the test is skipped).
fn refused_where_the_kernel_allows(name: &str, tag: &str, nobody: bool, absent: &str, expect: &str) -> Option<refuse::Refused> {
    if kernel_refuses(name, tag, nobody, absent) {
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
