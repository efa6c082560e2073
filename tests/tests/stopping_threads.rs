//! Threads that block every signal. glibc runs SIGEV_THREAD timers (timer_create with a thread
//! notification: vim, DMTCP's timer2) through a helper thread that blocks every signal, so no
//! checkpoint could stop it and each try froze the program 20 s. The runtime runs those timers
//! itself with a helper the stop signal reaches: checkpoints work and the timers go on firing
//! after a restart, each notification in a new thread with the timer's sigev_value
//! (tests/programs/sigev_thread.c). POSIX AIO likewise: glibc's helper threads block every
//! signal while a request is queued or in flight; the runtime does the requests with workers of
//! its own, so a read in flight across checkpoints completes after a restart, with its signal
//! (tests/programs/posix_aio.c). A thread that blocks every signal for good (with a raw system
//! call, as glibc's mq_notify helper) fails the checkpoint within seconds with a line that names
//! it, and the program goes on (tests/programs/blocked_thread.c). A main thread that exited (a
//! zombie leader) is no thread to stop (tests/programs/dead_leader.c).

use anyhow::{bail, Result};
use ckpt_tests::scenario::refused_checkpoint;
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};

fn sigev_thread(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "sigev_thread.c", &["-pthread"], &["30"])?;
    let mut opts = Options::new(&work, &[10]);
    opts.also_at = vec![4, 6];
    opts.as_nobody = nobody;
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}

#[test]
fn sigev_thread_timers_survive_checkpoints_and_restart() -> Result<()> {
    sigev_thread("sigev-thread", false)
}

#[test]
fn sigev_thread_timers_survive_checkpoints_and_restart_as_nobody() -> Result<()> {
    sigev_thread("sigev-thread-nobody", true)
}

#[test]
fn a_thread_that_blocks_every_signal_fails_the_checkpoint_with_its_name() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("blocked-thread")?;
    let program = Program::c(&work, "blocked_thread.c", &["-pthread"], &["60"])?;
    let (rec, line) = refused_checkpoint(&bins, &program, &work.images(), false)?;
    if !rec.success() || !rec.stdout.contains("result 60") || !line.contains("blocks every signal") || !line.contains("blocker") {
        bail!("expected a failed checkpoint naming the blocking thread and the program going on{}", ckpt_tests::process::transcript(&[rec]));
    }
    Ok(())
}

fn posix_aio(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "posix_aio.c", &["-pthread"], &["40", "40"])?;
    let mut opts = Options::new(&work, &[12]);
    opts.also_at = vec![6];
    opts.as_nobody = nobody;
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}

/// A POSIX AIO read in flight (a pipe nobody writes yet) at every checkpoint completes after the
/// restart with its data and its SIGEV_SIGNAL signal; aio_write with SIGEV_THREAD, lio_listio,
/// aio_fsync and aio_cancel go on working (glibc's helpers blocked the checkpoint).
#[test]
fn posix_aio_requests_in_flight_survive_checkpoints_and_restart() -> Result<()> {
    posix_aio("posix-aio", false)
}

#[test]
fn posix_aio_requests_in_flight_survive_checkpoints_and_restart_as_nobody() -> Result<()> {
    posix_aio("posix-aio-nobody", true)
}

/// The main thread left with pthread_exit(): the thread-group leader is a zombie, which runs no
/// signal handler (the checkpoint used to wait 20 s for it) and whose /proc/<pid> shows no
/// memory or fds (the runtime reads /proc/thread-self).
#[test]
fn a_program_whose_main_thread_exited_is_checkpointed_and_restarted() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("dead-leader")?;
    let program = Program::c(&work, "dead_leader.c", &["-pthread"], &["40"])?;
    let mut opts = Options::new(&work, &[15]);
    opts.also_at = vec![5];
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}
