//! Debian's LAMMPS (`lmp`, linked with Open MPI) run serially (issue 13), in a namespace of its
//! own: a Lennard-Jones melt written by the test runs in laps of 100 time steps, printing the
//! potential and kinetic energies after each lap (`print`, in the output protocol of
//! tests/src/lib.rs) and the final energies and pressure to 15 digits. It is checkpointed
//! mid-run, the whole tree SIGKILLed and restarted: the energies must be those of an
//! uninterrupted run, bit for bit, and the restarted run must go on from its lap.
//!
//! A serial `lmp` is not one process by default: Open MPI's singleton MPI_Init forks an `orted`
//! (its HNP and PMIx server, `--singleton-died-pipe`) and talks to it over a loopback TCP
//! connection (and pipes); orted maps its session directory's files (/tmp/ompi.*). So:
//! - with `OMPI_MCA_ess_singleton_isolated=1` (Open MPI's own switch: no daemon, for a program
//!   that never spawns) `lmp` is one process, and restarts to the same energies;
//! - by default the set holds `lmp` and its `orted` and the TCP connection between them, which
//!   the restart makes again with its addresses (ending the killed connections' TIME_WAIT
//!   remains on the port first: the orted's listener has no SO_REUSEADDR): the same energies too.
//!
//! LAMMPS prints more than the protocol's lines (its banner, thermo tables, timings that differ
//! from run to run): the records are compared on the protocol's lines only.

use anyhow::{ensure, Result};
use ckpt_tests::{checkpoint_kill_restart, run_plain, skip_test, Bins, Options, Program, Record, Workdir};
use std::path::Path;

/// The melt: `laps` laps of 100 steps of 864 atoms (fcc 6x6x6).
fn input(laps: u32) -> String {
    format!(
        "units lj\n\
         atom_style atomic\n\
         lattice fcc 0.8442\n\
         region box block 0 6 0 6 0 6\n\
         create_box 1 box\n\
         create_atoms 1 box\n\
         mass 1 1.0\n\
         velocity all create 3.0 87287 loop geom\n\
         pair_style lj/cut 2.5\n\
         pair_coeff 1 1 1.0 1.0 2.5\n\
         neighbor 0.3 bin\n\
         neigh_modify every 20 delay 0 check no\n\
         fix 1 all nve\n\
         thermo 0\n\
         print \"start lammps-melt laps={laps}\"\n\
         variable i loop {laps}\n\
         label lap\n\
         run 100 pre no post no\n\
         print \"step $i pe=$(pe:%.12f) ke=$(ke:%.12f)\"\n\
         next i\n\
         jump SELF lap\n\
         print \"result pe=$(pe:%.15f) ke=$(ke:%.15f) press=$(press:%.15f)\"\n"
    )
}

/// The record with only the protocol's lines on stdout.
fn protocol_only(r: &Record) -> Record {
    let mut r = r.clone();
    let keep = |l: &&str| l.starts_with("start ") || l.starts_with("step ") || l.starts_with("result ");
    // A line cut by SIGKILL stays cut (without its newline).
    let cut = !r.stdout.is_empty() && !r.stdout.ends_with('\n');
    let lines: Vec<&str> = r.stdout.lines().collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate().filter(|(_, l)| keep(l)) {
        out.push_str(l);
        if !(cut && i + 1 == lines.len()) {
            out.push('\n');
        }
    }
    r.stdout = out;
    r
}

/// Run the melt (through `env`, with Open MPI's settings and `vars`) under ckpt-run in a
/// namespace, checkpoint it at lap 8 and SIGKILL it; `then` judges the set (path and what
/// ckpt-inspect says of it) and restarts it. None: LAMMPS is not installed.
fn melt(name: &str, vars: &[&str], then: impl FnOnce(&Bins, &Program, &Options, &Path) -> Result<()>) -> Result<Option<()>> {
    let lmp = Path::new("/usr/bin/lmp");
    if !lmp.is_file() {
        return Ok(None);
    }
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let script = work.join("in.melt");
    std::fs::write(&script, input(30))?;
    // Open MPI's session directory in the work directory (a killed job leaves it behind).
    let tmp = format!("TMPDIR={}", work.path().display());
    let mut args = vec!["OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMP_NUM_THREADS=1", &tmp];
    args.extend(vars);
    args.extend([lmp.to_str().unwrap(), "-in", script.to_str().unwrap(), "-log", "none", "-nocite"]);
    let program = Program::native("/usr/bin/env", &args, &work);
    let mut opts = Options::new(&work, &[8]);
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let set = work.images().join(program.image_name());
    then(&bins, &program, &opts, &set)?;
    Ok(Some(()))
}

/// What ckpt-inspect says of the set at `set`.
fn inspect(bins: &Bins, set: &Path) -> Result<String> {
    let out = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg(set).output()?;
    ensure!(out.status.success(), "ckpt-inspect {}: {}", set.display(), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The full scenario against an uninterrupted run, compared on the protocol's lines.
fn restart_and_verify(bins: &Bins, program: &Program, opts: &Options) -> Result<()> {
    let (plain, outcome) = std::thread::scope(|s| {
        let plain = s.spawn(|| run_plain(program, false, opts.timeouts.finish));
        let outcome = checkpoint_kill_restart(bins, program, opts);
        (plain.join().expect("the uninterrupted run's thread"), outcome)
    });
    let (plain, mut outcome) = (plain?, outcome?);
    let full = outcome.transcript();
    for r in outcome.records.iter_mut() {
        *r = protocol_only(r);
    }
    outcome.verify(&protocol_only(&plain)).map_err(|e| anyhow::anyhow!("{e:#}\nthe whole output:{full}"))
}

#[test]
fn lammps_melt_isolated_singleton_continues_to_the_same_energies() -> Result<()> {
    let ran = melt("lammps-isolated", &["OMPI_MCA_ess_singleton_isolated=1"], |bins, program, opts, set| {
        restart_and_verify(bins, program, opts)?;
        let text = inspect(bins, set)?;
        ensure!(text.contains("lmp") && !text.contains("orted"), "the set of an isolated singleton holds lmp and no orted:\n{text}");
        Ok(())
    })?;
    if ran.is_none() {
        skip_test!("LAMMPS is not installed (Debian package lammps; .ci/run installs it)");
    }
    Ok(())
}

/// By default the singleton's orted is part of the job: the set must hold both.
fn holds_orted(bins: &Bins, set: &Path) -> Result<()> {
    let text = inspect(bins, set)?;
    ensure!(text.lines().any(|l| l.contains("lmp")) && text.lines().any(|l| l.contains("orted")), "the set should hold lmp and the orted its singleton forked:\n{text}");
    Ok(())
}

#[test]
fn lammps_melt_with_its_orted_continues_to_the_same_energies() -> Result<()> {
    let ran = melt("lammps-orted", &[], |bins, program, opts, set| {
        restart_and_verify(bins, program, opts)?;
        holds_orted(bins, set)
    })?;
    if ran.is_none() {
        skip_test!("LAMMPS is not installed (Debian package lammps; .ci/run installs it)");
    }
    Ok(())
}
