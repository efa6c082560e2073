//! After a restart the program's address space holds what it held before its checkpoint and
//! nothing the checkpoint made for itself: the background snapshot's page buffer and the
//! writer's report page, mapped before the checkpoint's instant and so in its memory map, once
//! came back as two extra mappings (zdtm vdso-proxy: "more than two vmas added after C/R").
//! tests/programs/mem_maps.c reads its maps before READY and after "go" and prints every range
//! the second read has that the first did not cover, and every range it lost.

mod restore_util;
use restore_util::*;
use std::fs;
use std::time::{Duration, Instant};

const NOTHING_NEW: &str = "compared the maps: 0 new, 0 lost";

/// The uninterrupted run's output after READY and the restarted run's (of mem_maps `args`),
/// checkpointed at READY under ckpt-run with `options`, as nobody when `nobody`. "go" comes
/// once the restart is over: the restart path's own temporary memory (its scratch arena, the
/// threads' temporary stacks) is unmapped a moment after the program's threads run again.
fn outputs(tag: &str, args: &[&str], options: &[&str], nobody: bool) -> (String, String) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("mem_maps", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, args, &base);
    assert!(expected.contains(NOTHING_NEW), "the uninterrupted run: {expected}");

    let dir = workdir(tag);
    let mut p = run_with(&prog, args, &dir, nobody, options);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "mem_maps");
    p.kill9();
    let mut r = restart_as(&img, &[], &dir, nobody);
    r.wait_restarted();
    settle(ckpt_tests::process::program_pid(r.pid()));
    fs::write(dir.join("go"), b"").unwrap();
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("READY"), "the program started over: {out}");
    (expected.replacen("mem_maps\nREADY\n", "", 1), out)
}

/// Wait until process `pid`'s memory map stays the same for 200 ms (at most 10 s).
fn settle(pid: i32) {
    let maps = || fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let (t0, mut last) = (Instant::now(), maps());
    while t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        let now = maps();
        if now == last {
            return;
        }
        last = now;
    }
}

/// Full images only: the restarted program has exactly the mappings it had before.
#[test]
fn restart_adds_no_mapping() {
    let (expected, out) = outputs("maps_full", &[], &["--full-only"], false);
    assert_eq!(out, expected, "the restart left mappings of its own, or lost some");
}

/// The same with 24 threads more. The restart's records of the threads to make again (a `Slot`
/// each) are the restart's own memory too: they were general memory once, in a size class the
/// program had no slab of (25 slots: 8 KiB), and the restarted program kept a new 256 KiB
/// mapping (also with 6 threads, and with 1 once a slot outgrew 256 bytes).
#[test]
fn restart_of_a_program_with_threads_adds_no_mapping() {
    let (expected, out) = outputs("maps_threads", &["24"], &["--full-only"], false);
    assert_eq!(out, expected, "the restart left mappings of its own, or lost some");
}

/// The same as nobody.
#[test]
fn restart_of_a_program_with_threads_adds_no_mapping_as_nobody() {
    let (expected, out) = outputs("maps_threads_nobody", &["24"], &["--full-only"], true);
    assert_eq!(out, expected, "the restart left mappings of its own, or lost some");
}

/// With increments (the default) the runtime keeps one mapping of its own after a checkpoint,
/// in the checkpointed program too: the page hash table the next increment compares with
/// (read-only, anonymous), which ckpt-restart builds of the memory it restores. Nothing else.
#[test]
fn restart_adds_only_the_page_hash_table() {
    let (_, out) = outputs("maps_inc", &[], &[], false);
    assert!(out.lines().any(|l| l.starts_with("compared the maps:") && l.ends_with(" 0 lost")), "the restart lost mappings, or compared nothing: {out}");
    let new: Vec<&str> = out.lines().filter(|l| l.starts_with("new ")).collect();
    assert!(new.len() <= 1, "the restart left mappings of its own: {out}");
    for l in new {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert!(f.len() == 3 && f[2] == "r--p", "not the page hash table (read-only, anonymous): {l}\n{out}");
    }
}
