//! Process trees (issue 13) with a traced process (ptrace): a child that called PTRACE_TRACEME
//! sits in a signal-delivery-stop (SIGUSR1 from a sibling that exited) across the checkpoints;
//! its parent, the tracer, holds the stop report (WNOWAIT) and checks it every round, then takes
//! it, reads PTRACE_GETSIGINFO and lets the child go on with PTRACE_CONT (tree_ptrace_sig.c: the
//! shape of CRIU's zdtm ptrace_sig). The tracer's runtime brings the stopped child into the stop
//! handler and the child queues the stop's siginfo to itself again; at a restart the tracer
//! attaches again (PTRACE_SEIZE) and the child is in the same stop before the parent runs. A
//! stop lost, a report missing for a round, another siginfo (the sender's pid) or a handler
//! that ran early changes the result.
//! - one checkpoint, the tree SIGKILLed, restarted; two checkpoints and restarts as nobody.
//! - a tracer that set ptrace options (which a restart would not set again): the checkpoint is
//!   refused in one line and the program goes on.
//! - the child stopped inside sigsuspend (libc's, or the system call through syscall()) for
//!   SIGUSR1, which it blocks outside the call: the call is made again after the stop handler
//!   and the stop is there again (one restart; two as nobody); inside a ppoll watching a
//!   descriptor: refused in one line (made again, it could return a ready descriptor), the
//!   program goes on.
//! (A traced child that runs is refused in one line: process_trees.rs.)

use anyhow::{ensure, Result};
use ckpt_tests::{Bins, Program, Workdir};

fn ptrace_sig(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_ptrace_sig.c", &[], &["120", "20", "100"])
}

#[test]
fn a_traced_child_in_a_signal_delivery_stop_is_in_it_again_after_the_restart() -> Result<()> {
    ckpt_tests::trees::verify("trees-ptrace-sig", ptrace_sig, &[20], false, 3).map(drop)
}

fn ptrace_sig_suspend(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_ptrace_sig.c", &[], &["120", "20", "100", "suspend"])
}

fn ptrace_sig_raw_suspend(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_ptrace_sig.c", &[], &["120", "20", "100", "rawsuspend"])
}

#[test]
fn a_traced_child_stopped_inside_sigsuspend_for_a_signal_it_blocks_outside_is_in_it_again_after_the_restart() -> Result<()> {
    ckpt_tests::trees::verify("trees-ptrace-suspend", ptrace_sig_suspend, &[20], false, 3).map(drop)
}

/// The call made through syscall(): a site the runtime's re-issue of blocked calls cannot name
/// (before, the stop never came back and the tracer waited for ever).
#[test]
fn a_traced_child_stopped_inside_a_raw_sigsuspend_is_in_it_again_after_the_restart() -> Result<()> {
    ckpt_tests::trees::verify("trees-ptrace-rawsuspend", ptrace_sig_raw_suspend, &[20], false, 3).map(drop)
}

#[test]
fn a_traced_child_stopped_inside_a_raw_sigsuspend_stays_across_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-ptrace-rawsuspend-nobody", ptrace_sig_raw_suspend, &[20, 60], true, 3).map(drop)
}

#[test]
fn a_traced_child_in_a_signal_delivery_stop_stays_across_two_restarts_as_nobody() -> Result<()> {
    ckpt_tests::trees::verify("trees-ptrace-sig-nobody", ptrace_sig, &[20, 60], true, 3).map(drop)
}

/// tree_ptrace_sig.c with `mode`: the checkpoint is refused in one line saying `what`, no set
/// is written, and the program goes on without a failed check.
fn refused(name: &str, mode: &str, what: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_ptrace_sig.c", &[], &["4000", "20", "3990", mode])?;
    let failed = "of the process tree failed";
    let (mut run, refused) = ckpt_tests::trees::ask_checkpoint(&bins, &work, &program, failed, false)?;
    let minute = std::time::Duration::from_secs(60);
    let going_on = refused.as_ref().ok().map(|_| run.wait_for_step(run.last_step().unwrap_or(0) + 5, minute));
    run.kill()?;
    let rec = run.record();
    refused.map_err(|e| anyhow::anyhow!("{e:#}\n{}", rec.stderr))?;
    let line = rec.stderr.lines().find(|l| l.contains(what)).unwrap_or_default();
    ensure!(!line.is_empty() && !rec.stderr.contains("bad "), "the checkpoint's lines: {}", rec.stderr);
    ensure!(!work.images().join(program.image_name()).join("tree").exists(), "a set was written: {line}");
    going_on.unwrap_or(Ok(0)).map_err(|e| anyhow::anyhow!("the program did not go on: {e:#}\n{}", rec.stderr))?;
    Ok(())
}

#[test]
fn a_tracer_that_set_ptrace_options_is_refused_in_one_line() -> Result<()> {
    refused("trees-ptrace-options", "options", "ptrace options")
}

#[test]
fn a_traced_child_stopped_inside_ppoll_for_a_signal_it_blocks_outside_is_refused_in_one_line() -> Result<()> {
    refused("trees-ptrace-ppoll", "ppoll", "inside ppoll")
}
