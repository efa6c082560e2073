//! Process trees of real tools (issue 13): jobs whose processes are started with posix_spawn and
//! vfork, not fork. The test SIGKILLs the whole tree (its namespace) and restarts the image set.
//! - `make -j2` of a small C project (tree_make.sh): make 4.3 starts `cc` with posix_spawn, gcc
//!   starts `cc1` and `as` with vfork; the checkpoint is asked while the slow file's cc1 runs
//!   (the set must hold it), and the restarted build must finish to the same program output and
//!   the same binary as an uninterrupted build; also as user nobody. The original build runs on
//!   between the checkpoint and the SIGKILL (under load, to its end): it must not change files
//!   the restarted one needs, so gcc runs with -pipe (it used to delete its ccXXXX.s temporary
//!   files, and the restarted `as` then could not open them: a test artefact, not a restart bug).
//! - Open MPI `mpirun -np 2` of a ring (mpi_ring.c): the checkpoint takes mpirun and both ranks,
//!   which talk over loopback TCP connections between them. The restart makes those again with
//!   their addresses (ending the killed connections' TIME_WAIT remains on mpirun's listener
//!   port first: mpirun does not set SO_REUSEADDR) and the ring continues to the uninterrupted
//!   run's result.
//! - MPICH's `mpiexec -launcher fork -np 2` of the same ring (built for MPICH's ABI): mpiexec,
//!   its hydra_pmi_proxy and both ranks share mpiexec's listening socket (inherited), which the
//!   restart makes once and hands to all four; the proxy's stdin is its socketpair with mpiexec,
//!   and each rank's UCX has an epoll instance watching two others made after it: the ring
//!   continues to the uninterrupted run's result.

use anyhow::{ensure, Result};
use ckpt_tests::{run_and_verify, skip_test, Bins, Options, Outcome, Program, Workdir};
use std::path::Path;

fn make_job(work: &Workdir) -> Program {
    let script = ckpt_tests::programs::sources_dir().join("tree_make.sh");
    Program::native("/bin/bash", &[script.to_str().unwrap(), "8", "1000"], work)
}

/// Run `program` in its namespace, checkpoint at `step`, SIGKILL, restart; the set's tree (as
/// ckpt-inspect shows it) must have a line holding each of `in_cut`.
fn verify(name: &str, make: fn(&Workdir) -> Program, step: u64, as_nobody: bool, in_cut: &[&str]) -> Result<Outcome> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = make(&work);
    let mut opts = Options::new(&work, &[step]);
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let o = run_and_verify(&bins, &program, &opts)?;
    let set = work.images().join(program.image_name());
    let out = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg(&set).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && text.contains("image set:"), "ckpt-inspect of the set: {text}{}", String::from_utf8_lossy(&out.stderr));
    for cmd in in_cut {
        ensure!(text.lines().any(|l| l.contains(cmd)), "the set holds no `{cmd}` process (the checkpoint missed it):\n{text}");
    }
    Ok(o)
}

/// make, the driver it spawned, and the compiler proper the driver vforked.
const COMPILERS: [&str; 3] = [": make -s -j2", ": cc -pipe -O2 -c slow.c", "/cc1 -quiet"];

#[test]
fn make_j2_checkpointed_while_compilers_run_builds_the_same_program() -> Result<()> {
    verify("tools-make", make_job, 3, false, &COMPILERS).map(drop)
}

#[test]
fn make_j2_checkpointed_while_compilers_run_as_nobody() -> Result<()> {
    verify("tools-make-nobody", make_job, 3, true, &COMPILERS).map(drop)
}

/// The ring under a launcher (through `env`, with Open MPI's permission to run as root), for
/// run_and_verify: `mpich` builds it for MPICH's ABI.
fn ring_job(work: &Workdir, launcher: &Path, args: &[&str], mpich: bool) -> Result<Program> {
    let flags: &[&str] = if mpich { &["-DMPICH_ABI", "-l:libmpich.so.12"] } else { &["-l:libmpi.so.40"] };
    let ring = ckpt_tests::programs::compile_c(work, "mpi_ring.c", flags)?;
    // Open MPI's session directory and shared-memory segments in the work directory (a killed
    // job leaves them behind); MPICH's are deleted files already.
    let tmp = format!("TMPDIR={}", work.path().display());
    let vader = format!("OMPI_MCA_btl_vader_backing_directory={}", work.path().display());
    let mut argv = vec!["OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", &tmp, &vader, launcher.to_str().unwrap()];
    argv.extend(args);
    argv.extend([ring.to_str().unwrap(), "400", "50"]);
    Ok(Program::native("/usr/bin/env", &argv, work))
}

const MPIEXEC: &str = "/usr/bin/mpiexec.mpich";

/// The ring under `launcher` checkpointed, SIGKILLed and restarted, against an uninterrupted run.
fn full_ring(name: &str, launcher: &Path, args: &[&str], mpich: bool) -> Result<()> {
    if !launcher.is_file() {
        skip_test!("{} is not installed (Debian packages openmpi-bin and mpich; .ci/run installs them)", launcher.display());
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = ring_job(&work, launcher, args, mpich)?;
    let mut opts = Options::new(&work, &[10]);
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    run_and_verify(&bins, &program, &opts).map(drop)
}

#[test]
fn mpirun_of_a_ring_continues_to_the_same_result() -> Result<()> {
    full_ring("tools-mpi-full", Path::new("/usr/bin/mpirun.openmpi"), &["--oversubscribe", "-np", "2"], false)
}

#[test]
fn mpiexec_fork_of_a_ring_continues_to_the_same_result() -> Result<()> {
    full_ring("tools-mpich-full", Path::new(MPIEXEC), &["-launcher", "fork", "-np", "2"], true)
}

/// A tree that forks all the time (tree_fork_storm.c: each child execs itself once and waits
/// until its parent, having forked the next one, kills it), as make and gcc do (the runtime makes
/// gcc's vfork a fork), checkpointed again and again, killed and restarted twice. A child born
/// while the tree was being stopped (its parent was in fork() when its stop signal came) joins
/// the tree from its fork handler while a round of the stop waits for the processes it asked:
/// it was waited for too, though nobody had asked it to stop, and the checkpoint failed after
/// 60 s, `process [P] did not stop` (make_j2_checkpointed_while_compilers_run_builds_the_same_program,
/// once under load; tree_fork_storm: about one checkpoint in five). It is asked in the next round.
/// A race that cannot be forced from outside: many checkpoints of a tree that does little else
/// than fork make it show.
#[test]
fn a_tree_that_forks_all_the_time_is_checkpointed_many_times() -> Result<()> {
    storm("tools-fork-storm", false, &[4, 8, 12, 16, 20, 24, 28, 32], &[36, 48])
}

#[test]
fn a_tree_that_forks_all_the_time_is_checkpointed_many_times_as_nobody() -> Result<()> {
    storm("tools-fork-storm-nobody", true, &[4, 8, 12, 16], &[20, 32])
}

fn storm(name: &str, as_nobody: bool, also_at: &[u64], kills: &[u64]) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, "tree_fork_storm.c", &[], &["60", "20", "1"])?;
    let mut opts = Options::new(&work, kills);
    opts.also_at = also_at.to_vec();
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    run_and_verify(&bins, &program, &opts).map(drop)
}
