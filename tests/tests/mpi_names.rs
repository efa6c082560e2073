//! Image names per task under real MPI launchers (Debian's openmpi-bin and mpich, which .ci/run
//! installs). `mpirun` starts two ranks under `ckpt-run` sharing one image directory, each rank
//! a counter of its own length (MPMD: `-np 1 A : -np 1 B`): each rank must write its own image
//! (`counter.0.ckpt`, `counter.1.ckpt`, from OMPI_COMM_WORLD_RANK or PMI_RANK), a checkpoint of
//! one must not replace the other's, and after both are SIGKILLed each image restarts its own
//! rank where it was, to the result of an uninterrupted run of that rank's counter. (Whole MPI
//! jobs, with their communication, are not checkpointed yet: only the names are tested.)
//! Skips, saying why, when the launcher is not installed.

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::process::wait_until;
use ckpt_tests::programs::compile_c;
use ckpt_tests::{result_of, run_plain, run_restart, skip_test, step_of, Bins, Proc, Program, Workdir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Steps of rank 0's and rank 1's counter (20 ms each: long enough to checkpoint both).
const STEPS: [u32; 2] = [300, 400];

fn ctl(bins: &Bins, dir: &Path, name: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(bins.dir.join("ckpt-ctl")).arg("--dir").arg(dir).args(["--name", name]).args(args).output()?;
    ensure!(out.status.success(), "ckpt-ctl --name {name} {args:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run both ranks under `mpirun`, checkpoint each through its own name, SIGKILL both, restart
/// each image, and check each continued its own counter.
fn two_ranks(mpirun: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("mpi")?;
    let counter = compile_c(&work, "counter.c", &[])?;
    let plain: Vec<_> = STEPS
        .iter()
        .map(|n| run_plain(&Program::native(&counter, &[&n.to_string(), "0"], &work), false, Duration::from_secs(60)))
        .collect::<Result<_>>()?;
    let dir = work.images();
    let mut cmd = Command::new(mpirun);
    cmd.args(extra).current_dir(work.path()).envs(env.iter().copied());
    for (k, n) in STEPS.iter().enumerate() {
        if k > 0 {
            cmd.arg(":");
        }
        cmd.args(["-np", "1"]).arg(&bins.run).arg("--dir").arg(&dir).arg("--").arg(&counter).args([n.to_string(), "20".into()]);
    }
    let mut job = Proc::spawn("mpirun", cmd)?;
    let names = ["counter.0", "counter.1"];
    let up = wait_until(Duration::from_secs(60), || names.iter().all(|n| dir.join(format!("{n}.sock")).exists()) || !job.running());
    if !up || !job.running() {
        let _ = job.kill();
        bail!("the ranks' control sockets {names:?} did not appear in {}:\n{}", dir.display(), ckpt_tests::process::transcript(&[job.record()]));
    }
    let mut pids = Vec::new();
    for n in names {
        let image = ctl(&bins, &dir, n, &["checkpoint", "--wait"])?;
        ensure!(image.trim() == dir.join(format!("{n}.ckpt")).display().to_string(), "rank {n} wrote {image:?}");
        let status = ctl(&bins, &dir, n, &["status"])?;
        let pid: i32 = status.lines().find_map(|l| l.strip_prefix("pid: ")).context("no pid in status")?.trim().parse()?;
        pids.push(pid);
    }
    ensure!(pids[0] != pids[1], "both names answered from pid {}", pids[0]);
    // Each rank checkpoints once more: the other's image must stay as it is.
    let before = std::fs::read(dir.join("counter.1.ckpt"))?;
    ctl(&bins, &dir, "counter.0", &["checkpoint", "--wait"])?;
    ensure!(std::fs::read(dir.join("counter.1.ckpt"))? == before, "a checkpoint of rank 0 changed rank 1's image");
    for pid in &pids {
        // SAFETY: sending a signal to a process of ours.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    if job.wait(Duration::from_secs(30)).is_err() {
        let _ = job.kill();
    }
    let mut images: Vec<PathBuf> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ckpt")).collect();
    images.sort();
    ensure!(images == [dir.join("counter.0.ckpt"), dir.join("counter.1.ckpt")], "images in {}: {images:?}", dir.display());
    for (k, n) in names.iter().enumerate() {
        let rec = run_restart(&bins, &dir.join(format!("{n}.ckpt")), work.path(), Duration::from_secs(60))?;
        let first = rec.lines().first().and_then(|l| step_of(l));
        let transcript = || ckpt_tests::process::transcript(&[plain[k].clone(), job.record(), rec.clone()]);
        ensure!(first.is_some_and(|s| s > 1), "restart of {n} did not continue its counter (first line {:?}){}", rec.lines().first(), transcript());
        ensure!(rec.success() && result_of(&rec.stdout) == result_of(&plain[k].stdout), "restart of {n} ended with {:?}, rank {k}'s counter ends with {:?}{}", result_of(&rec.stdout), result_of(&plain[k].stdout), transcript());
    }
    Ok(())
}

fn launcher(name: &str) -> Option<PathBuf> {
    let p = Path::new("/usr/bin").join(name);
    p.is_file().then_some(p)
}

#[test]
fn mpi_openmpi_ranks_write_their_own_images() -> Result<()> {
    let Some(mpirun) = launcher("mpirun.openmpi") else {
        skip_test!("Open MPI is not installed (Debian package openmpi-bin; .ci/run installs it)");
        return Ok(());
    };
    // Open MPI refuses to run as root unless told; the tests run as root in CI.
    let env = [("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"), ("OMPI_MCA_plm", "isolated"), ("OMPI_MCA_btl", "self")];
    two_ranks(&mpirun, &["--oversubscribe"], &env)
}

#[test]
fn mpi_mpich_ranks_write_their_own_images() -> Result<()> {
    let Some(mpirun) = launcher("mpirun.mpich") else {
        skip_test!("MPICH is not installed (Debian package mpich; .ci/run installs it)");
        return Ok(());
    };
    two_ranks(&mpirun, &["-launcher", "fork"], &[])
}
