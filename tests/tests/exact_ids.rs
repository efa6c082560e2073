//! Exact process and thread ids (issue 12): ckpt-run runs the program in a user+pid namespace of
//! its own and ckpt-restart recreates it with the program's old pid and thread ids.
//! - mutexes that record their owner's tid (error-checking, recursive, robust, PI) held by a
//!   thread across checkpoints are unlocked after the restarts;
//! - glibc's loader lock held by a thread inside dlopen at checkpoint time is released, and a
//!   later dlopen in another thread works;
//! - raw getpid()/gettid(), /proc/self/task, /proc/<getpid()>, kill(getpid()) and tgkill;
//! - CLOCK_MONOTONIC and CLOCK_BOOTTIME continue from their checkpoint values (time namespace);
//! - mode changes: an image taken without a namespace gets exact ids when restarted in one; an
//!   image taken in one restarts without (virtual ids, with a warning);
//! - the fallback: --no-namespace, and a user namespace that may not create namespaces
//!   (user.max_user_namespaces = 0 inside a private user namespace of the test).
//!
//! Each runs the program uninterrupted for the reference, then checkpoint, SIGKILL, restart.

use anyhow::{ensure, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::{run_and_verify, skip_test, Bins, Options, Outcome, Program, Workdir};
use std::ffi::OsString;
use std::time::Duration;

fn tid_mutexes(work: &Workdir) -> Result<Program> {
    Program::c(work, "tid_mutexes.c", &["-pthread"], &["60", "30", "45"])
}

fn ids_self(work: &Workdir) -> Result<Program> {
    Program::c(work, "ids_self.c", &["-pthread"], &["60", "30"])
}

fn dlopen_lock(work: &Workdir) -> Result<Program> {
    let lib = compile_c(work, "dlslow.c", &["-shared", "-fPIC"])?;
    Program::c(work, "dlopen_lock.c", &["-pthread", "-ldl"], &[lib.to_str().unwrap(), "60", "30", "45"])
}

fn counter(work: &Workdir) -> Result<Program> {
    Program::c(work, "counter.c", &[], &["60", "30"])
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

/// Build `make`'s program in a work directory `name`, checkpoint it at each of `steps` in turn
/// (a restart chain), SIGKILL, restart, as user nobody if `as_nobody`, with namespaces on
/// (whatever CKPT_NAMESPACE the suite runs with) and options changed by `tweak`; the outcome
/// must match the uninterrupted run.
fn verify(name: &str, make: fn(&Workdir) -> Result<Program>, steps: &[u64], as_nobody: bool, tweak: impl FnOnce(&mut Options)) -> Result<Outcome> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = make(&work)?;
    let mut opts = Options::new(&work, steps);
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    tweak(&mut opts);
    run_and_verify(&bins, &program, &opts)
}

/// The lines of every process's stderr.
fn stderr_of(o: &Outcome) -> String {
    o.records.iter().map(|r| r.stderr.as_str()).collect::<Vec<_>>().join("")
}

#[test]
fn mutexes_held_by_a_thread_unlock_after_two_restarts() -> Result<()> {
    verify("ids-mutex", tid_mutexes, &[10, 25], false, |_| {}).map(drop)
}

#[test]
fn mutexes_held_by_a_thread_unlock_after_a_restart_as_nobody() -> Result<()> {
    verify("ids-mutex-nobody", tid_mutexes, &[15], true, |_| {}).map(drop)
}

#[test]
fn dlopen_lock_held_at_checkpoint_time_is_released() -> Result<()> {
    verify("ids-dlopen", dlopen_lock, &[15], false, |_| {}).map(drop)
}

#[test]
fn dlopen_lock_held_at_checkpoint_time_is_released_as_nobody() -> Result<()> {
    verify("ids-dlopen-nobody", dlopen_lock, &[15], true, |_| {}).map(drop)
}

#[test]
fn own_ids_stay_the_same_over_two_restarts() -> Result<()> {
    verify("ids-self", ids_self, &[10, 30], false, |_| {}).map(drop)
}

#[test]
fn own_ids_stay_the_same_as_nobody() -> Result<()> {
    verify("ids-self-nobody", ids_self, &[10], true, |_| {}).map(drop)
}

#[test]
fn clocks_continue_from_the_checkpoint_after_downtime() -> Result<()> {
    // Steps 30 ms apart may not jump by more than 1.5 s; the program is down for 3 s.
    let clocks = |w: &Workdir| Program::c(w, "clocks.c", &[], &["60", "30", "1500"]);
    verify("ids-clocks", clocks, &[20], true, |o| o.downtime = Duration::from_secs(3)).map(drop)
}

#[test]
fn image_taken_without_namespace_gets_exact_ids_in_one() -> Result<()> {
    verify("ids-virtual-to-exact", ids_self, &[10], true, |o| o.run_args = args(&["--no-namespace"])).map(drop)
}

#[test]
fn image_taken_in_namespace_restarts_without_one_with_a_warning() -> Result<()> {
    let out = verify("ids-exact-to-virtual", counter, &[10, 30], false, |o| o.restart_args = args(&["--no-namespace"]))?;
    let first = &out.records[1].stderr;
    ensure!(first.contains("warning: the image was taken with exact process ids"), "no warning about virtual ids: {first}");
    Ok(())
}

#[test]
fn no_namespace_option_runs_in_place() -> Result<()> {
    let out = verify("ids-no-namespace", counter, &[10, 30], true, |o| {
        o.run_args = args(&["--no-namespace"]);
        o.restart_args = args(&["--no-namespace"]);
        o.env = vec![("CKPT_LOG".into(), "info".into())];
    })?;
    let err = stderr_of(&out);
    ensure!(err.contains("ckpt-run: exact process ids are not available (turned off by --no-namespace)"), "{err}");
    ensure!(!err.contains("warning"), "unexpected warning: {err}");
    Ok(())
}

#[test]
fn environment_turns_namespaces_off() -> Result<()> {
    let out = verify("ids-env-off", counter, &[10], false, |o| o.env = vec![("CKPT_NAMESPACE".into(), "0".into()), ("CKPT_LOG".into(), "info".into())])?;
    let err = stderr_of(&out);
    ensure!(err.contains("(turned off by CKPT_NAMESPACE=0)"), "{err}");
    Ok(())
}

/// Run ckpt-run and ckpt-restart in a private user namespace (of the test) that may create no
/// user namespaces, without capabilities in it (with CAP_SYS_ADMIN they would need none): they
/// must say so in one line and run the program in place.
#[test]
fn no_user_namespaces_falls_back_to_virtual_ids() -> Result<()> {
    let probe = std::process::Command::new("unshare").args(["--user", "--map-root-user", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        skip_test!("cannot create a user namespace here (unshare --user) to forbid namespaces in");
        return Ok(());
    }
    let forbid = "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --bounding-set=-all --inh-caps=-all \"$@\"";
    let wrapper = args(&["unshare", "--user", "--map-root-user", "sh", "-c", forbid, "sh"]);
    let out = verify("ids-fallback", counter, &[10, 30], true, |o| {
        o.wrapper = wrapper;
        // In the wrapper's user namespace only the user the commands run as is mapped: the
        // harness's image directory (root's, sticky) shows as the overflow uid there, another
        // user's, which ckpt-run rightly refuses. The images go to a directory of that user's.
        let own = o.images.with_file_name("own-images");
        std::fs::create_dir(&own).expect("create own-images");
        std::os::unix::fs::chown(&own, Some(ckpt_tests::scenario::effective_uid(true)), None).expect("chown own-images");
        o.images = own;
    })?;
    let run = &out.records[0].stderr;
    ensure!(
        run.contains("ckpt-run: exact process ids are not available (cannot create a user namespace") && run.contains("user.max_user_namespaces"),
        "ckpt-run did not say why: {run}"
    );
    let restart = &out.records[1].stderr;
    ensure!(restart.contains("ckpt-restart: exact process ids are not available"), "ckpt-restart did not say why: {restart}");
    Ok(())
}
