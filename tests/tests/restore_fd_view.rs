//! What a restarted program sees of its own fd table (issue 12, zdtm fd): listing /proc/self/fd,
//! /proc/self/fdinfo and /proc/<pid>/fd (readdir, getdents64, readdir_r) shows the fds it opened
//! and none of the runtime's own, and after it closed every fd it found, nothing above 2; a
//! program that lists its fds all the time is checkpointed in the middle of a listing and
//! continues.

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

/// Checkpoints taken while the program lists /proc/self/fd (fd_listing_busy.c, 12 checkpoint,
/// kill and restart cycles, every image kept). The runtime's readdir hook opens each entry's
/// fdinfo for a moment and allocates; it did so outside the gate, so a checkpoint could stop the
/// program's thread half-way: the open fdinfo file was taken for the program's
/// (`/proc/self/fdinfo/1006`, about one checkpoint in six), which the restart refused (DMTCP's
/// syscall-tester), or the runtime's allocator lock was held in the image and the restarted
/// runtime spun on it for ever. The program also checks that no listing shows an fd it did not
/// have: a checkpoint in the middle of a listing left entries of the old process's runtime fds
/// (1004-1006) in glibc's readdir buffer, which the restarted program then read. A race that
/// cannot be forced from outside: repeated checkpoints of a program that does little else make
/// it show.
#[test]
fn a_program_listing_its_fds_all_the_time_continues_after_many_restarts() -> anyhow::Result<()> {
    use anyhow::ensure;
    use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};
    let bins = Bins::locate()?;
    let work = Workdir::new("fd-listing-busy")?;
    let program = Program::c(&work, "fd_listing_busy.c", &[], &["40", "20"])?;
    let steps: Vec<u64> = (1..=12).map(|k| k * 3).collect();
    let mut opts = Options::new(&work, &steps);
    opts.env.push(("CKPT_KEEP".into(), "20".into()));
    let outcome = run_and_verify(&bins, &program, &opts)?;
    for e in std::fs::read_dir(work.images())? {
        let path = e?.path();
        if !path.file_name().is_some_and(|n| n.to_string_lossy().contains(".ckpt")) {
            continue;
        }
        let shown = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg(&path).output()?;
        let text = String::from_utf8_lossy(&shown.stdout);
        ensure!(
            !text.lines().any(|l| l.contains("/proc/self/fdinfo/")),
            "{} holds a runtime fd as the program's:\n{text}{}",
            path.display(),
            outcome.transcript()
        );
    }
    Ok(())
}
