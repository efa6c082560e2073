//! Increments of a process tree's sets (issue 13: "generations and increments as today"): each
//! process's image in a set is an increment over its own image in the previous set (a process
//! born since has a full one), the older images each chain needs are in the set itself
//! (`PID.ckpt.N`), and ckpt-restart restores every process through its chain.
//! - tree_incremental (3 forked workers, one of them born between checkpoints, one shared pipe,
//!   16 MiB of private memory each that changes one page per step): 3 checkpoints, SIGKILL of
//!   the whole tree, restart from the last set, one more checkpoint, SIGKILL, a second restart:
//!   the same result as uninterrupted, not started over; the later sets' images are increments
//!   (ckpt-inspect shows their chains) far smaller than the full images they build on, also in
//!   the set taken after the restart;
//! - as nobody; then a parent image removed from the set, or damaged: ckpt-restart refuses the
//!   set in one line.

use anyhow::{ensure, Context, Result};
use ckpt_tests::{Bins, Options, Program, Workdir};
use std::path::Path;

fn program(work: &Workdir) -> Result<Program> {
    Program::c(work, "tree_incremental.c", &[], &["16", "80", "60", "18"])
}

/// The live processes of a set as ckpt-inspect --json shows them: (pid, chain of image names
/// newest first, bytes on disk of the newest).
fn chains(bins: &Bins, set: &Path) -> Result<Vec<(i64, Vec<String>, u64)>> {
    let out = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg("--json").arg(set).output()?;
    ensure!(out.status.success(), "ckpt-inspect --json {}: {}", set.display(), String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).context("ckpt-inspect --json")?;
    let procs = doc["processes"].as_array().context("no processes")?;
    Ok(procs
        .iter()
        .filter(|p| p["state"] == "live")
        .map(|p| {
            let chain = p["chain"].as_array().map(|c| c.iter().filter_map(|i| i.as_str().map(String::from)).collect()).unwrap_or_default();
            (p["pid"].as_i64().unwrap_or(0), chain, p["stored"].as_u64().unwrap_or(0))
        })
        .collect())
}

/// Every live process of `set` has an increment whose chain is `long` images, except one (the
/// worker born after the first set) whose chain is one shorter; each increment is far smaller
/// than the full image at the end of its chain (a file of the set).
fn check_increments(bins: &Bins, set: &Path, long: usize) -> Result<()> {
    let c = chains(bins, set)?;
    let lens: Vec<usize> = c.iter().map(|(_, ch, _)| ch.len()).collect();
    ensure!(c.len() == 4 && lens.iter().filter(|&&l| l == long).count() == 3 && lens.iter().filter(|&&l| l == long - 1).count() == 1, "{}: chains {c:?}, expected 3 of {long} images and one of {}", set.display(), long - 1);
    for (pid, chain, stored) in &c {
        let full = std::fs::metadata(set.join(chain.last().context("empty chain")?))?.len();
        ensure!(full > 16 << 20 && *stored * 8 < full, "{}: process {pid}'s increment is {stored} bytes, its full image {full}: not an increment of one page per step", set.display());
    }
    Ok(())
}

#[test]
fn a_trees_sets_are_increments_through_two_restarts() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-incremental")?;
    let program = program(&work)?;
    let mut opts = Options::new(&work, &[40, 60]);
    opts.also_at = vec![10, 25];
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let o = ckpt_tests::run_and_verify(&bins, &program, &opts)?;
    let set = work.images().join(program.image_name());
    let older = work.images().join(format!("{}.1", program.image_name()));
    // Set 3 (taken at step 40, restarted from): increments over sets 2 and 1; the worker forked
    // after set 1 has a full image in set 2. Set 4, taken by the restarted tree, goes on with
    // the same chains (the restart handed each process the page hashes of what it restored).
    check_increments(&bins, &older, 3).with_context(|| o.transcript())?;
    check_increments(&bins, &set, 4).with_context(|| o.transcript())?;
    // ckpt-inspect verifies every image of the set through its chain.
    let out = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg("--verify").arg(&set).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && text.matches("increment over").count() == 4, "ckpt-inspect --verify: {text}{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn a_missing_or_damaged_parent_image_refuses_the_set_in_one_line_as_nobody() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-incremental-nobody")?;
    let program = program(&work)?;
    let mut opts = Options::new(&work, &[30]);
    opts.also_at = vec![12];
    opts.as_nobody = true;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let o = ckpt_tests::run_and_verify(&bins, &program, &opts)?;
    let set = work.images().join(program.image_name());
    let c = chains(&bins, &set)?;
    // The workers there since the start have an increment over their image of step 12.
    let (pid, chain, _) = c.iter().find(|(_, ch, _)| ch.len() == 2).with_context(|| format!("no increment in {}: {c:?}{}", set.display(), o.transcript()))?;
    let parent = set.join(&chain[1]);
    let restart = |what: &str| -> Result<()> {
        let argv = [bins.restart.clone().into_os_string(), set.clone().into_os_string()];
        let mut p = ckpt_tests::Proc::spawn("ckpt-restart", ckpt_tests::scenario::user_command(&argv, true, &program.cwd))?;
        let waited = p.wait(std::time::Duration::from_secs(60));
        let rec = p.record();
        waited.with_context(|| format!("ckpt-restart hung{rec}"))?;
        ckpt_tests::check::clean_failure(&rec).map_err(|e| anyhow::anyhow!("process {pid}'s parent image {what}: {e}"))?;
        ensure!(rec.stderr.contains(&format!("{pid}.ckpt")), "the refusal does not name the image: {}", rec.stderr);
        Ok(())
    };
    // Damaged: one byte of its index.
    let saved = std::fs::read(&parent)?;
    let mut bad = saved.clone();
    let at = bad.len() - 8;
    bad[at] ^= 0x5a;
    std::fs::write(&parent, &bad)?;
    restart("damaged")?;
    std::fs::remove_file(&parent)?;
    restart("removed")?;
    Ok(())
}

/// `ckpt-run --keep 4`: the tree restarted from its set goes on keeping four sets (the manifest
/// says how many; a restarted tree kept two before).
#[test]
fn a_restarted_tree_keeps_as_many_sets_as_ckpt_run_was_told() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-incremental-keep")?;
    let program = program(&work)?;
    let mut opts = Options::new(&work, &[40, 60]);
    opts.also_at = vec![10, 25];
    opts.run_args = vec!["--keep".into(), "4".into()];
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    let o = ckpt_tests::run_and_verify(&bins, &program, &opts)?;
    let name = program.image_name();
    // Sets of steps 60 (taken by the restarted tree), 40, 25 and 10.
    for (i, step_set) in ["", ".1", ".2", ".3"].iter().enumerate() {
        let set = work.images().join(format!("{name}{step_set}"));
        ensure!(ckpt_image::tree::is_set(&set), "set {i} ({}) is missing: {:?}{}", set.display(), std::fs::read_dir(work.images())?.flatten().map(|e| e.file_name()).collect::<Vec<_>>(), o.transcript());
    }
    Ok(())
}
