//! `ckpt-inspect` tells ckpt's runtime apart from the program: in an image of a Python program
//! (which has a SIGINT handler of its own), the runtime's library, scratch memory and checkpoint
//! thread stack are marked, and so are the checkpoint signal's and the thread-stop signal's
//! handlers, while the program's memory and Python's SIGINT handler are not; `--help` explains
//! the terms.

mod failures_support;

use anyhow::{ensure, Context, Result};
use ckpt_tests::{checkpoint_and_kill, Bins, Options, Program, Workdir};
use failures_support::inspect;
use serde_json::Value;

#[test]
fn inspect_marks_what_belongs_to_the_runtime() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("inspect-runtime")?;
    let program = Program::python(&work, "py_counter.py", &["400", "20"])?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[3]))?;
    let json = inspect(&bins, &["--json"], &image, work.path())?;
    ensure!(json.success(), "{json}");
    let rep: Value = serde_json::from_str(&json.stdout)?;
    let regions = rep["regions"].as_array().context("regions")?;
    let part = |r: &Value| r["runtime"].as_str().map(str::to_string);
    let of = |p: &str| regions.iter().filter(|r| part(r).as_deref() == Some(p)).collect::<Vec<_>>();
    let lib = of("library");
    ensure!(!lib.is_empty() && lib.iter().all(|r| r["file"].as_str().is_some_and(|f| f.ends_with("/libckpt_runtime.so"))), "library regions: {lib:?}\n{json}");
    ensure!(regions.iter().filter(|r| r["file"].as_str().is_some_and(|f| f.ends_with("/libckpt_runtime.so"))).all(|r| part(r).as_deref() == Some("library")), "an unmarked mapping of the runtime's library\n{json}");
    let scratch = of("scratch");
    ensure!(!scratch.is_empty() && scratch.iter().all(|r| r["saved_bytes"] == 0 && r["backing"] == "anon"), "scratch regions: {scratch:?}");
    ensure!(of("checkpoint thread stack").len() == 1, "checkpoint thread stacks: {:?}", of("checkpoint thread stack"));
    for name in ["[heap]", "[stack]"] {
        let r = regions.iter().find(|r| r["name"] == name).with_context(|| format!("no {name} region"))?;
        ensure!(part(r).is_none(), "the program's {name} is marked as the runtime's: {r}");
    }
    ensure!(regions.iter().any(|r| r["file"].as_str().is_some_and(|f| f.contains("python")) && part(r).is_none()), "python's own mappings\n{json}");
    let handler = |sig: &str| rep["signals"].as_array().and_then(|s| s.iter().find(|s| s["signal"] == sig)).cloned();
    for sig in ["SIGUSR2", "SIG63"] {
        ensure!(handler(sig).is_some_and(|s| s["runtime"] == true), "{sig}: {:?}", handler(sig));
    }
    ensure!(handler("SIGINT").is_some_and(|s| s["runtime"] == false), "Python's SIGINT handler: {:?}", handler("SIGINT"));
    ensure!(rep["totals"]["runtime_regions"].as_u64() == Some((lib.len() + scratch.len() + 1) as u64), "totals: {}", rep["totals"]);

    let text = inspect(&bins, &[], &image, work.path())?;
    let marked = |l: &&str| l.starts_with("R ");
    ensure!(text.stdout.lines().filter(marked).any(|l| l.contains("libckpt_runtime.so") && l.ends_with("[runtime: library]")), "{text}");
    ensure!(text.stdout.lines().filter(marked).any(|l| l.contains("SIGUSR2") && l.ends_with("[runtime]")), "{text}");
    ensure!(!text.stdout.lines().filter(marked).any(|l| l.contains("[heap]") || l.contains("SIGINT")), "{text}");

    let help = inspect(&bins, &["--help"], std::path::Path::new(""), work.path())?;
    for term in ["R, runtime", "backing", "saved", "stored", "inherits", "left out"] {
        ensure!(help.stdout.contains(term), "--help does not explain {term:?}:\n{}", help.stdout);
    }
    Ok(())
}
