//! Processes of a tree that have not joined it yet when a checkpoint begins. The coordinator
//! waited a fixed 5 s for every such process, then refused the checkpoint: a process that never
//! would join (a static program a member exec'd) cost those 5 s, and one that would, but took
//! longer on a loaded machine (a child forked or exec'd a moment before, waiting for a CPU), was
//! refused as not running the runtime. Now /proc tells: a process whose exec is over without the
//! runtime mapped, that cannot load it (static: no dynamic loader), is named at once; one with
//! the runtime mapped (or still in its exec) is waited for while it runs or waits for a CPU.

use anyhow::{anyhow, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::{run_and_verify, skip_test, Bins, Options, Program, Workdir};
use std::path::Path;

/// A child that execs a static program never joins the tree: the checkpoint is refused in one
/// line naming it (as before, but without waiting for it), no set is written, and the program
/// goes on.
fn static_child_refused(name: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let sleeper = match compile_c(&work, "static_sleeper.c", &["-static"]) {
        Ok(p) => p,
        Err(e) if Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() => return Err(e),
        Err(_) => {
            skip_test!("no static libc here (libc.a): cannot build a static program");
            return Ok(());
        }
    };
    let sleeper = sleeper.to_str().ok_or_else(|| anyhow!("path"))?.to_string();
    let program = Program::c(&work, "tree_unfit.c", &[], &["exec", "400", "20", &sleeper])?;
    ckpt_tests::trees::refused_naming(&bins, &work, &program, "static_sleeper", "does not run ckpt's runtime", as_nobody)
}

#[test]
fn a_child_that_execs_a_static_program_is_named_and_the_checkpoint_refused() -> Result<()> {
    static_child_refused("trees-join-static", false)
}

#[test]
fn a_child_that_execs_a_static_program_is_named_and_the_checkpoint_refused_as_nobody() -> Result<()> {
    static_child_refused("trees-join-static-nobody", true)
}

/// Busy loops outside the tree, one per CPU, for as long as it lives: children forked and
/// exec'd by the tree wait for a CPU before they can join it.
struct Stress(Vec<std::process::Child>);

impl Stress {
    fn start() -> Result<Stress> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut busy = Vec::new();
        for _ in 0..cpus {
            busy.push(std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn()?);
        }
        Ok(Stress(busy))
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// tree_fork_storm.c (each child forked joins from its fork handler, execs itself once and
/// joins again from the runtime's constructor) checkpointed again and again while every CPU is
/// busy with other work, killed and restarted twice: every checkpoint waits for the children
/// born or exec'd while it began, and the restarted tree ends as an uninterrupted run does.
fn storm_under_stress(name: &str, as_nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_fork_storm.c", &[], &["40", "20", "1"])?;
    let mut opts = Options::new(&work, &[24, 32]);
    opts.also_at = vec![4, 8, 12, 16, 20];
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let _stress = Stress::start()?;
    run_and_verify(&bins, &program, &opts).map(drop)
}

#[test]
fn a_tree_that_forks_and_execs_all_the_time_is_checkpointed_on_busy_cpus() -> Result<()> {
    storm_under_stress("trees-join-storm-busy", false)
}

#[test]
fn a_tree_that_forks_and_execs_all_the_time_is_checkpointed_on_busy_cpus_as_nobody() -> Result<()> {
    storm_under_stress("trees-join-storm-busy-nobody", true)
}
