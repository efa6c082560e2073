//! `ckpt-run`: sets up the environment the runtime reads (preload, image directory, checkpoint
//! signal, the pid it manages) and execs the program in place, so the program keeps our pid.

mod resume;
mod signals;

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Name of the runtime library that `cargo build` produces next to our executable.
const RUNTIME_LIB: &str = "libckpt_runtime.so";

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-run",
    version,
    about = "Run a program so that it can be checkpointed (kill -USR2 PID) and restarted (ckpt-restart)",
    after_help = "The program keeps ckpt-run's pid. A checkpoint writes DIR/<name>.ckpt (mode 0600; the \
                  previous ones become <name>.ckpt.1, .2, ...) and the program continues.\n\
                  After --stop-signal or `ckpt-ctl stop` the program exits with status 75 once its image \
                  is written (74: the checkpoint failed).\n\
                  Every option can also come from the environment variable shown; CKPT_LOG=info|debug \
                  shows more than the one line per checkpoint."
)]
struct Cli {
    /// Directory for images (created 0700 if missing).
    #[arg(long, env = "CKPT_DIR", default_value = ".")]
    dir: PathBuf,

    /// Signal that takes a checkpoint and lets the program continue (name or number).
    #[arg(long, env = "CKPT_SIGNAL", default_value = "USR2")]
    signal: String,

    /// Take a checkpoint periodically (30s, 10m, 2h, ...).
    #[arg(long, env = "CKPT_INTERVAL")]
    interval: Option<String>,

    /// Signal that takes a checkpoint and then ends the program (e.g. TERM, USR1).
    #[arg(long, env = "CKPT_STOP_SIGNAL")]
    stop_signal: Option<String>,

    /// How many images to keep (the newest and N-1 older generations, and the images they build on).
    #[arg(long, env = "CKPT_KEEP", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    keep: u32,

    /// Write every image whole: no increments (by default, a checkpoint after the first writes
    /// only the pages changed since the one before, and names that image as its parent).
    #[arg(long, env = "CKPT_FULL_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    full_only: bool,

    /// Longest chain of images a restart may need (a full image and its increments); the next
    /// checkpoint after that is a full image again.
    #[arg(long, env = "CKPT_MAX_CHAIN", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_chain: u32,

    /// If DIR holds an image of this program, restart from its newest good image instead.
    #[arg(long, env = "CKPT_RESUME", value_parser = clap::builder::FalseyValueParser::new())]
    resume: bool,

    /// Inside a Slurm job: after a checkpoint-and-exit, requeue the job (scontrol requeue).
    #[arg(long, env = "CKPT_REQUEUE", value_parser = clap::builder::FalseyValueParser::new())]
    requeue: bool,

    /// Image name (default: the program's file name); in a Slurm step of several tasks, .RANK is added.
    #[arg(long, env = "CKPT_NAME")]
    name: Option<OsString>,

    /// The program and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("ckpt-run: {e:#}");
        std::process::exit(127);
    }
}

fn run(cli: Cli) -> Result<()> {
    let (signal, warn) = signals::parse(&cli.signal).context("--signal")?;
    let stop = cli.stop_signal.as_deref().map(signals::parse).transpose().context("--stop-signal")?;
    for w in [warn, stop.as_ref().and_then(|s| s.1.clone())].into_iter().flatten() {
        eprintln!("ckpt-run: warning: {w}");
    }
    let stop_signal = stop.map(|s| s.0);
    if stop_signal == Some(signal) {
        bail!("--signal and --stop-signal must differ (both are {})", signals::describe(signal));
    }
    let interval = cli.interval.as_deref().map(resume::parse_duration).transpose()?;
    let requeue = if cli.requeue { resume::requeue_command()? } else { None };
    let runtime = find_runtime()?;
    let dir = prepare_dir(&cli.dir)?;
    let program = &cli.command[0];
    let name = resume::image_name(cli.name.as_deref(), program);
    if cli.resume {
        resume::resume_if_possible(&dir, &name)?;
    }

    let preload = match std::env::var_os("LD_PRELOAD") {
        Some(old) if !old.is_empty() => {
            let mut v = runtime.clone().into_os_string();
            v.push(":");
            v.push(old);
            v
        }
        _ => runtime.clone().into_os_string(),
    };
    std::env::set_var("LD_PRELOAD", preload);
    std::env::set_var("CKPT_DIR", &dir);
    std::env::set_var("CKPT_SIGNAL", signal.to_string());
    std::env::set_var("CKPT_NAME", &name);
    std::env::set_var("CKPT_PID", std::process::id().to_string());
    std::env::set_var("CKPT_KEEP", cli.keep.to_string());
    std::env::set_var("CKPT_INCREMENTAL", if cli.full_only { "0" } else { "1" });
    std::env::set_var("CKPT_MAX_CHAIN", cli.max_chain.to_string());
    match interval {
        Some(ms) => std::env::set_var("CKPT_INTERVAL", format!("{ms}ms")),
        None => std::env::remove_var("CKPT_INTERVAL"),
    }
    match stop_signal {
        Some(s) => std::env::set_var("CKPT_STOP_SIGNAL", s.to_string()),
        None => std::env::remove_var("CKPT_STOP_SIGNAL"),
    }
    match requeue {
        Some(cmd) => std::env::set_var("CKPT_REQUEUE_CMD", cmd),
        None => std::env::remove_var("CKPT_REQUEUE_CMD"),
    }

    let argv: Vec<CString> = cli
        .command
        .iter()
        .map(|a| CString::new(a.clone().into_vec()).context("argument contains a NUL byte"))
        .collect::<Result<_>>()?;
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    bail!("cannot run {}: {err}", program.to_string_lossy())
}

/// The runtime lives next to our own executable (cargo build) or in ../lib (an install).
fn find_runtime() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CKPT_RUNTIME") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("CKPT_RUNTIME={} is not a file", p.display());
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let bindir = exe.parent().context("executable has no directory")?;
    let candidates = [bindir.join(RUNTIME_LIB), bindir.join("../lib").join(RUNTIME_LIB)];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
        }
    }
    bail!(
        "cannot find the runtime library {RUNTIME_LIB}: looked in {} and {} (build it with `cargo build --release`, or set CKPT_RUNTIME)",
        candidates[0].display(),
        candidates[1].display()
    )
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create image directory {}", dir.display()))?;
    }
    let abs = dir
        .canonicalize()
        .with_context(|| format!("image directory {}", dir.display()))?;
    if !abs.is_dir() {
        bail!("{} is not a directory", abs.display());
    }
    // Reject a directory we cannot write to now rather than at the first checkpoint.
    let c = CString::new(abs.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        bail!("image directory {} is not writable: {}", abs.display(), std::io::Error::last_os_error());
    }
    Ok(abs)
}
