//! Background snapshots (issue 15): at a checkpoint the program runs on at once while its
//! memory is write-protected; the writer stores it window by window, a page the program is
//! about to write is saved first into a bounded buffer, and every system call of the program is
//! made safe for protected memory first (syscall user dispatch).
//! - bg_rewrite: a program rewriting all of its memory all the time, in an order the writer can
//!   never keep up with, and reading into it (read, readv, recv, clock_gettime by syscall, futex
//!   words in protected pages, private and shared): checkpointed several times (increments
//!   too), SIGKILLed, restarted: the uninterrupted run's result, no system call failed; each
//!   checkpoint was a background snapshot whose buffer stayed within its room. Also as nobody.
//! - bg_blocked_read: a thread blocked in read() into protected memory across the stops (the
//!   kernel restarts the call), checkpointed several times: no EFAULT, and no fd of the
//!   runtime's left in the image (the next open() gets the same number).
//! - bg_syscalls: threads and processes created, memory unmapped and mapped again, dropped,
//!   made read-only, moved, signals taken on the stack and on an alternate stack set up during
//!   the snapshot: the same result after a restart.
//! - Background snapshots are the default; with CKPT_BACKGROUND=0 or `ckpt-run --snapshot fork`
//!   checkpoints are forked snapshots (also the fallback where userfaultfd or syscall user
//!   dispatch are missing): the same result too.
//! - malloc_storm (16 threads allocating and freeing) checkpointed back to back: every thread
//!   stack stays unprotected (a signal frame on a protected stack was a SIGSEGV).
//! - dead_leader (the main thread has exited): background snapshots all the same.
//! - Threads that block SIGSYS when the snapshot begins (workers that block every signal, the
//!   runtime's SIGEV_THREAD timer helper) used to die of it at their first background snapshot:
//!   masked_workers and sigev_thread restart exactly, and their masks still block SIGSYS.
//! - thread_churn (a thread creating threads all the time): its clone waits for the image, but
//!   the instant still stops it: background snapshots, not forked ones.
//! - bg_stack_calls: threads making system calls into their stacks all the time while the
//!   snapshot write-protects a large array: none waits for that (the program's pause).
//! - bg_rewrite again: the pages saved ahead of the writer are stored in runs with the rest of
//!   their window (a few chunks a window), not a chunk each.
//! - bg_arming: pages written while the snapshot arms (written over, written first, dropped and
//!   written again), in several disjoint ranges: the instant protects again only those ranges,
//!   and every page is in the image (the restarted program checks each one); with more such
//!   ranges than the arming keeps, it protects every region again, and every page is there too.
//! - counter checkpointed 25 times with full images (background snapshots, also as nobody, and
//!   forked ones): the last image holds no more memory than the first but a little (the
//!   writer's copies of the unprotected memory used to stay in the program, ~270 KiB a
//!   checkpoint, stored in every later image).

mod failures_support;

use anyhow::{ensure, Context, Result};
use ckpt_tests::{run_and_verify, Bins, Options, Outcome, Program, Workdir};
use failures_support::inspect;

/// The background snapshot lines of the ckpt-run process's stderr: (saved ahead KiB, room KiB).
fn background_lines(outcome: &Outcome) -> Vec<(u64, u64)> {
    let num = |s: &str, after: &str| -> Option<u64> { s.split(after).nth(1)?.split_whitespace().next()?.parse().ok() };
    outcome.records[0]
        .stderr
        .lines()
        .filter(|l| l.contains("background snapshot:"))
        .filter_map(|l| Some((num(l, "faults, ")?, num(l, "(room for ")?)))
        .collect()
}

fn options(work: &Workdir, also_at: &[u64], at: u64, env: &[(&str, &str)]) -> Options {
    let mut opts = Options::new(work, &[at]);
    opts.also_at = also_at.to_vec();
    opts.env = [("CKPT_LOG", "info"), ("CKPT_BACKGROUND", "1")].iter().chain(env).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    opts
}

fn rewriting(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "bg_rewrite.c", &["-pthread"], &["128", "150", "10", "rand"])?;
    let mut opts = options(&work, &[15, 40], 70, &[]);
    opts.as_nobody = nobody;
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() >= 3, "every checkpoint should be a background snapshot, found {lines:?}{}", outcome.transcript());
    for (saved, room) in lines {
        ensure!(saved <= room, "{saved} KiB saved ahead of the writer, more than its room of {room} KiB{}", outcome.transcript());
    }
    Ok(())
}

#[test]
fn rewriting_program_restarts_exactly() -> Result<()> {
    rewriting("bg-rewrite", false)
}

#[test]
fn rewriting_program_restarts_exactly_as_nobody() -> Result<()> {
    rewriting("bg-rewrite-nobody", true)
}

/// The pages saved ahead of the writer are stored with the rest of their window: its chunks
/// are the runs of adjacent pages, not one per page saved (which made the index of a 4 GiB
/// program that rewrites its memory tens of MiB, in the writer's memory during the checkpoint).
#[test]
fn pages_saved_ahead_are_stored_in_runs() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-runs")?;
    let program = Program::c(&work, "bg_rewrite.c", &["-pthread"], &["64", "60", "10", "rand"])?;
    let opts = options(&work, &[], 20, &[]);
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() == 1 && lines[0].0 > 0, "one background snapshot that saved pages ahead of the writer, found {lines:?}{}", outcome.transcript());
    let json = inspect(&bins, &["--json"], &opts.images.join(program.image_name()), work.path())?;
    ensure!(json.success(), "{json}");
    let rep: serde_json::Value = serde_json::from_str(&json.stdout)?;
    let regions = rep["regions"].as_array().context("regions")?;
    let big = regions.iter().max_by_key(|r| r["saved_bytes"].as_u64().unwrap_or(0)).context("no region")?;
    let windows = big["saved_bytes"].as_u64().unwrap_or(0).div_ceil(4 << 20);
    let chunks = big["chunks"].as_u64().unwrap_or(u64::MAX);
    ensure!(windows >= 16 && chunks <= 4 * windows, "the 64 MiB array is stored in {chunks} chunks for {windows} windows ({} KiB saved ahead){}", lines[0].0, outcome.transcript());
    Ok(())
}

#[test]
fn threads_processes_mappings_and_signals_during_a_snapshot() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-syscalls")?;
    let program = Program::c(&work, "bg_syscalls.c", &["-pthread"], &["250", "5"])?;
    // Without a namespace: there the processes it forks would make it a process tree, whose
    // checkpoints are forked snapshots of every process (README, process trees).
    let outcome = run_and_verify(&bins, &program, &options(&work, &[20, 50, 80, 110], 140, &[("CKPT_NAMESPACE", "0")]))?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() >= 5, "every checkpoint should be a background snapshot, found {lines:?}{}", outcome.transcript());
    Ok(())
}

/// bg_rewrite checkpointed twice and restarted with `env` for ckpt-run and `args` before its
/// `--`: the uninterrupted run's result; whether the checkpoints were background snapshots.
fn snapshots_in_background(tag: &str, env: &[(&str, &str)], args: &[&str]) -> Result<(bool, Outcome)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "bg_rewrite.c", &["-pthread"], &["64", "400", "10", "seq"])?;
    let mut opts = Options::new(&work, &[40]);
    opts.also_at = vec![15];
    opts.env = [("CKPT_LOG", "info")].iter().chain(env).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    opts.run_args = args.iter().map(|a| a.into()).collect();
    let outcome = run_and_verify(&bins, &program, &opts)?;
    Ok((!background_lines(&outcome).is_empty(), outcome))
}

#[test]
fn forked_snapshots_when_background_ones_are_off() -> Result<()> {
    let (bg, outcome) = snapshots_in_background("bg-off", &[("CKPT_BACKGROUND", "0")], &[])?;
    ensure!(!bg, "CKPT_BACKGROUND=0 still took background snapshots{}", outcome.transcript());
    let (bg, outcome) = snapshots_in_background("bg-fork-option", &[], &["--snapshot", "fork"])?;
    ensure!(!bg, "--snapshot fork still took background snapshots{}", outcome.transcript());
    Ok(())
}

#[test]
fn background_snapshots_by_default() -> Result<()> {
    let (bg, outcome) = snapshots_in_background("bg-default", &[], &[])?;
    ensure!(bg, "no background snapshot was taken by default{}", outcome.transcript());
    Ok(())
}

#[test]
fn allocating_threads_survive_many_snapshots() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-malloc-storm")?;
    let stop = work.join("stop");
    // 50 checkpoints back to back, then the kill: a checkpoint of 16 busy threads on a small
    // machine can take seconds, while the rounds go on; 5000 rounds leave room for that.
    let program = Program::c(&work, "malloc_storm.c", &["-pthread"], &["5000", &stop.to_string_lossy()])?;
    let at: Vec<u64> = (1..=50).map(|k| 20 + 20 * k).collect();
    let outcome = run_and_verify(&bins, &program, &options(&work, &at, 1100, &[]))?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() >= 40, "most checkpoints should be background snapshots, found {}{}", lines.len(), outcome.transcript());
    Ok(())
}

/// A restarted program's background snapshots make its calls safe too: the runtime's variables
/// come back from an image taken during a snapshot (every thread "dispatching"), but the
/// restarted threads do not dispatch until the next snapshot turns it on. And they come back at
/// all: a page of them written while the instant protected memory again was once left out of
/// the image (the restarted runtime had its counters fresh: checkpoint 1 again, forked).
#[test]
fn restarted_program_snapshots_in_the_background_again() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-restarted")?;
    let program = Program::c(&work, "bg_rewrite.c", &["-pthread"], &["64", "150", "10", "rand"])?;
    let mut opts = options(&work, &[], 30, &[]);
    opts.checkpoint_steps = vec![30, 80];
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let restarted = outcome.records.get(1).map(|r| r.stderr.clone()).unwrap_or_default();
    let safe: Vec<u64> = restarted.lines().filter_map(|l| l.split("; ").nth(1)?.split(" system calls made safe").next()?.parse().ok()).collect();
    ensure!(!safe.is_empty() && safe.iter().all(|&n| n > 0), "the restarted program's background snapshots made {safe:?} system calls safe{}", outcome.transcript());
    Ok(())
}

/// A read() blocked across a snapshot's stops, restarted by the kernel after the stop handler,
/// is dispatched and made safe again (it ran in the exempt code, unchecked, and failed with
/// EFAULT on the memory the instant protected again); one made safe while the snapshot arms
/// has its buffer left out of the arming (the writer protected it again under the call).
#[test]
fn call_blocked_across_the_instant_succeeds() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-blocked-read")?;
    // 256 MiB to protect: the call is made safe while the snapshot arms (its buffer was then
    // protected again under the call).
    // 400 steps of 20 ms: under load a snapshot of 256 MiB took 2.3 s, and with 150 steps the
    // program ended before the third request.
    let program = Program::c(&work, "bg_blocked_read.c", &["-pthread"], &["400", "256"])?;
    let outcome = run_and_verify(&bins, &program, &options(&work, &[15, 40], 70, &[]))?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() >= 3, "every checkpoint should be a background snapshot, found {lines:?}{}", outcome.transcript());
    Ok(())
}

/// Threads calling into their own stacks all the time (the time by syscall, uname, getrusage,
/// nanosleep) while a snapshot write-protects a 256 MiB array: no call waits for the arming
/// (each waited for all of it: the program's heartbeat stopped for 24 ms at 1 GiB while the
/// runtime's pause was 2 ms), and the program restarts exactly.
#[test]
fn calls_into_stacks_do_not_wait_for_the_arming() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-stack-calls")?;
    let program = Program::c(&work, "bg_stack_calls.c", &["-pthread"], &["120", "256"])?;
    let outcome = run_and_verify(&bins, &program, &options(&work, &[15, 40], 70, &[]))?;
    let lines: Vec<&str> = outcome.records[0].stderr.lines().filter(|l| l.contains("background snapshot:")).collect();
    ensure!(lines.len() >= 3, "every checkpoint should be a background snapshot, found {lines:?}{}", outcome.transcript());
    for l in lines {
        ensure!(l.contains(" 0 waited for the arming"), "a call into a stack waited for the arming: {l}{}", outcome.transcript());
    }
    Ok(())
}

/// A program whose main thread has exited (pthread_exit) is snapshotted in the background too:
/// /proc/self, the thread-group leader, is gone (ESRCH); the engine reads /proc/thread-self.
#[test]
fn program_whose_main_thread_exited_snapshots_in_the_background() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("bg-dead-leader")?;
    let program = Program::c(&work, "dead_leader.c", &["-pthread"], &["40"])?;
    let outcome = run_and_verify(&bins, &program, &options(&work, &[5], 15, &[]))?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() >= 2, "every checkpoint should be a background snapshot, found {lines:?}{}", outcome.transcript());
    Ok(())
}

/// `source` run with `args`, checkpointed at steps `also_at` and `at` (then SIGKILLed and
/// restarted), as nobody if `nobody`: the uninterrupted run's result, and every checkpoint a
/// background snapshot.
fn all_in_background(tag: &str, source: &str, args: &[&str], also_at: &[u64], at: u64, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, source, &["-pthread"], args)?;
    let mut opts = options(&work, also_at, at, &[]);
    opts.as_nobody = nobody;
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let lines = background_lines(&outcome);
    ensure!(lines.len() > also_at.len(), "every checkpoint should be a background snapshot, found {lines:?}{}", outcome.transcript());
    Ok(())
}

/// Workers that block every signal, SIGSYS too (one sleeping, one in sigtimedwait): they run on
/// through background snapshots, and their masks, as they see them and in the kernel, still
/// block SIGSYS afterwards and after the restart.
#[test]
fn threads_that_block_every_signal_survive_snapshots() -> Result<()> {
    all_in_background("bg-masked-workers", "masked_workers.c", &["40"], &[5, 10], 18, false)
}

/// SIGEV_THREAD timers (their helper thread blocks every signal but the stop signal): checkpoints
/// as background snapshots, SIGKILL, restart: every notification counted once.
#[test]
fn sigev_thread_timers_survive_background_snapshots() -> Result<()> {
    all_in_background("bg-sigev-thread", "sigev_thread.c", &["30"], &[4, 6], 10, true)
}

/// A thread that creates and joins threads all the time: its clone, deferred until the image
/// is written, must not keep the snapshot's instant from stopping it (the checkpoint then fell
/// back to a fork): every checkpoint a background snapshot, the same result after the restart.
#[test]
fn a_thread_creating_threads_all_the_time_is_snapshotted_in_the_background() -> Result<()> {
    all_in_background("bg-thread-churn", "thread_churn.c", &["60"], &[10, 20], 30, false)
}

/// bg_arming with `small` small regions (args as in its header), checkpointed at steps 6 and 12
/// and at 18 (SIGKILL, restart), with the runtime's debug lines: the uninterrupted run's result
/// (the program checks every page it wrote), and for each checkpoint the instant's line saying
/// what it protected again. 400 steps: the program runs on while each image is written (with
/// 150, an unloaded machine reached the end before the last image, whose restart then printed
/// only the result line, not a step: "expected a `step N` line").
fn arming_writes(tag: &str, small: &str, nobody: bool) -> Result<(Outcome, Vec<String>)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "bg_arming.c", &[], &[small, "128", "400", "40"])?;
    let mut opts = options(&work, &[6, 12], 18, &[("CKPT_LOG", "debug")]);
    opts.as_nobody = nobody;
    let outcome = run_and_verify(&bins, &program, &opts)?;
    ensure!(background_lines(&outcome).len() >= 3, "every checkpoint should be a background snapshot{}", outcome.transcript());
    let lines: Vec<String> = outcome.records[0].stderr.lines().filter(|l| l.contains("protected again")).map(String::from).collect();
    ensure!(lines.len() >= 3, "no line of the instant's protection for each checkpoint: {lines:?}{}", outcome.transcript());
    Ok((outcome, lines))
}

/// Pages written while the snapshot arms, which the instant must protect again (else their
/// contents at the instant are missing from the image, or mixed with later writes): written
/// over (write faults), written first (not in memory when protected: no fault), dropped and
/// written again (a call). The instant protects again only the ranges noted during the arming
/// (several disjoint ones here), not every region, and every page comes back after the restart
/// (the program checks each one).
#[test]
fn pages_written_during_the_arming_are_in_the_image() -> Result<()> {
    let (outcome, lines) = arming_writes("bg-arming", "16", false)?;
    for l in &lines {
        ensure!(l.contains("ranges written since the arming") && !l.contains("every region"), "the instant should protect again only what was written: {l}{}", outcome.transcript());
    }
    Ok(())
}

#[test]
fn pages_written_during_the_arming_are_in_the_image_as_nobody() -> Result<()> {
    arming_writes("bg-arming-nobody", "16", true).map(|_| ())
}

/// More disjoint ranges that may have been written during the arming than it keeps (300 small
/// regions each with a page not in memory, beyond bgarm::WRITTEN): the instant protects every
/// region again, and every page comes back after the restart.
#[test]
fn more_written_ranges_than_noted_protect_every_region_again() -> Result<()> {
    let (outcome, lines) = arming_writes("bg-arming-many", "300", false)?;
    for l in &lines {
        ensure!(l.contains("every region"), "the instant should protect every region again: {l}{}", outcome.transcript());
    }
    Ok(())
}

/// The memory of each image, in KiB, in the order of the checkpoints: ckpt-run's line for each
/// ("checkpoint N: PATH (M MiB of memory, ...").
fn image_memory_kib(outcome: &Outcome) -> Vec<f64> {
    outcome.records[0]
        .stderr
        .lines()
        .filter(|l| l.contains("checkpoint ") && l.contains(" of memory"))
        .filter_map(|l| {
            let mut w = l.split(" of memory").next()?.split_whitespace().rev();
            let unit = w.next()?;
            let n: f64 = w.next()?.trim_start_matches('(').parse().ok()?;
            let scale = match unit {
                "B" => 1.0 / 1024.0,
                "KiB" => 1.0,
                "MiB" => 1024.0,
                "GiB" => 1024.0 * 1024.0,
                _ => return None,
            };
            Some(n * scale)
        })
        .collect()
}

/// Images hold the program's memory, not what earlier checkpoints left in it: counter
/// checkpointed 25 times with full images only (in `mode`), SIGKILLed and restarted: the
/// uninterrupted run's result, and the last image holds no more memory than the first but a
/// little (the runtime's allocator may grow once). A background snapshot's writer shares the
/// program's address space, and kept its copies of the unprotected memory (~270 KiB a
/// checkpoint, all in every later image: 2 MiB at the first, 7.8 MiB at the 23rd).
fn images_stay_the_programs_size(tag: &str, background: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "counter.c", &[], &["60", "60"])?;
    let also_at: Vec<u64> = (1..=24).collect();
    let mut opts = options(&work, &also_at, 30, &[("CKPT_BACKGROUND", background), ("CKPT_FULL_ONLY", "1")]);
    opts.as_nobody = nobody;
    let outcome = run_and_verify(&bins, &program, &opts)?;
    let kib = image_memory_kib(&outcome);
    // The last checkpoint's line may not be out yet when its image appears and the test kills.
    ensure!(kib.len() >= also_at.len(), "a memory size for each of the first {} checkpoints, found {kib:?}{}", also_at.len(), outcome.transcript());
    let (first, last) = (kib[0], kib[kib.len() - 1]);
    ensure!(last <= first + 512.0, "the image of the last checkpoint holds {last} KiB of memory, the first {first} KiB: checkpoints left memory in the program{}", outcome.transcript());
    Ok(())
}

#[test]
fn images_stay_the_programs_size_with_background_snapshots() -> Result<()> {
    images_stay_the_programs_size("bg-no-growth", "1", false)
}

#[test]
fn images_stay_the_programs_size_with_background_snapshots_as_nobody() -> Result<()> {
    images_stay_the_programs_size("bg-no-growth-nobody", "1", true)
}

#[test]
fn images_stay_the_programs_size_with_forked_snapshots() -> Result<()> {
    images_stay_the_programs_size("fork-no-growth", "0", false)
}
