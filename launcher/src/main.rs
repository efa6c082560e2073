//! `ckpt-run`: sets up the environment the runtime reads (preload, image directory, checkpoint
//! signal, the pid it manages) and starts the program with our pid: in a user, pid and mount
//! namespace of its own (ckpt-ns), so that a restart can give it its process and thread ids
//! back, while this process stays outside and stands for it (forwards signals, exits with its
//! status); or, where namespaces are turned off or unavailable, by exec in place (virtual ids
//! after a restart).

mod cli;
mod protect;
mod resume;
mod signals;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::Cli;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Name of the runtime library that `cargo build` produces next to our executable.
const RUNTIME_LIB: &str = "libckpt_runtime.so";


/// Exit status for a bad command line (as clap's own errors).
const EXIT_USAGE: i32 = 2;
/// Exit status when ckpt-run itself fails (as env(1), nice(1), timeout(1)).
const EXIT_FAILED: i32 = 125;
/// Exit status when the program was found but cannot be run, and when it was not found (as env(1)).
const EXIT_CANNOT_RUN: i32 = 126;
const EXIT_NOT_FOUND: i32 = 127;

/// An error in the command line (exit status 2).
#[derive(Debug)]
struct Usage(anyhow::Error);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

/// The program could not be executed (exit status 126, or 127 when it does not exist).
#[derive(Debug)]
struct CannotRun {
    program: String,
    err: std::io::Error,
}

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot run {}: {}", self.program, self.err)
    }
}

impl std::error::Error for CannotRun {}

/// Mark an option's error as a usage error.
fn usage<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| Usage(e).into())
}

fn exit_status(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<Usage>().is_some() {
        EXIT_USAGE
    } else if let Some(c) = e.downcast_ref::<CannotRun>() {
        if c.err.kind() == std::io::ErrorKind::NotFound {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_RUN
        }
    } else {
        EXIT_FAILED
    }
}

fn main() {
    let cli = Cli::parse();
    if let Some(why) = protect::why_unprotectable(&cli.command[0]) {
        if !cli.unprotected {
            eprintln!("ckpt-run: {why}: the ckpt runtime cannot be loaded into it, so it could not be checkpointed (--unprotected runs it anyway, without checkpoints)");
            std::process::exit(EXIT_USAGE);
        }
        eprintln!("ckpt-run: warning: {why}: running it without the ckpt runtime (--unprotected): no checkpoint will be taken, and a checkpoint signal would end it");
        let e = exec(&cli.command);
        eprintln!("ckpt-run: {e:#}");
        std::process::exit(exit_status(&e));
    }
    if let Err(e) = run(cli) {
        eprintln!("ckpt-run: {e:#}");
        std::process::exit(exit_status(&e));
    }
}

fn run(cli: Cli) -> Result<()> {
    let (signal, warn) = usage(signals::parse(&cli.signal).context("--signal"))?;
    let stop = usage(cli.stop_signal.as_deref().map(signals::parse).transpose().context("--stop-signal"))?;
    for w in [warn, stop.as_ref().and_then(|s| s.1.clone())].into_iter().flatten() {
        eprintln!("ckpt-run: warning: {w}");
    }
    let stop_signal = stop.map(|s| s.0);
    if stop_signal == Some(signal) {
        return usage(Err(anyhow::anyhow!("--signal and --stop-signal must differ (both are {})", signals::describe(signal))));
    }
    let interval = usage(cli.interval.as_deref().map(resume::parse_duration).transpose())?;
    let requeue = if cli.requeue { resume::requeue_command()? } else { None };
    let runtime = find_runtime()?;
    if let Some(n) = cli.name.as_deref().filter(|n| !ckpt_image::trust::is_file_name(n.as_bytes())) {
        bail!("--name {:?} is not a file name (it must not be empty, `.` or `..`, or contain `/`)", n.to_string_lossy());
    }
    let dir = prepare_dir(&cli.dir, cli.allow_shared_dir)?;
    let dir_id = std::fs::metadata(&dir).map(|m| (m.dev(), m.ino())).unwrap_or((0, 0));
    let program = &cli.command[0];
    let name = resume::image_name(cli.name.as_deref(), program);
    if !ckpt_image::trust::is_file_name(name.as_bytes()) {
        bail!("cannot name images after {:?}: give a file name with --name", name.to_string_lossy());
    }
    // What the image records as the program (and --resume compares): the file execvp will run.
    let resolved = resume::resolve_program(program);
    if cli.resume {
        if let Some(status) = resume::resume_if_possible(&dir, &name, resolved.as_deref(), cli.no_namespace)? {
            std::process::exit(status);
        }
    }

    // The runtime's settings go in one private variable, with the LD_PRELOAD that loads it;
    // the runtime removes both before main (LD_PRELOAD back to the user's own), so the program
    // and its children see the environment we were started with (see ckpt_image::Launch).
    let user_preload = std::env::var_os("LD_PRELOAD");
    let mut preload = runtime.clone().into_os_string();
    if let Some(old) = user_preload.as_ref().filter(|o| !o.is_empty()) {
        preload.push(":");
        preload.push(old);
    }
    let mut launch = ckpt_image::Launch {
        pid: std::process::id() as i32,
        spawner: 0,
        outer_pid: 0,
        dir: dir.clone().into_os_string().into_vec(),
        name: name.clone().into_vec(),
        signal,
        stop_signal: stop_signal.unwrap_or(0),
        keep: cli.keep,
        incremental: !cli.full_only,
        max_chain: cli.max_chain,
        interval_ms: interval.unwrap_or(0),
        requeue_cmd: requeue.map(|c| c.into_os_string().into_vec()).unwrap_or_default(),
        preload: preload.clone().into_vec(),
        preload_user: user_preload.map(|p| p.into_vec()),
        program: resolved.clone().map(|p| p.into_os_string().into_vec()).unwrap_or_default(),
        allow_shared_dir: cli.allow_shared_dir,
        dir_dev: dir_id.0,
        dir_ino: dir_id.1,
        tree_child: false,
        open_files: cli.checkpoint_open_files,
    };
    std::env::set_var("LD_PRELOAD", preload);
    // The runtime reads the snapshot mode from its environment (CKPT_BACKGROUND).
    if let Some(mode) = cli.snapshot.as_deref() {
        std::env::set_var("CKPT_BACKGROUND", if mode == "fork" { "0" } else { "1" });
    }
    let marked = [Some(signal), stop_signal].into_iter().flatten().collect();
    in_namespace(&cli.command, &mut launch, marked, cli.no_namespace);
    std::env::set_var(ckpt_image::LAUNCH_VAR, launch.encode());

    Err(exec(&cli.command))
}

/// Start the program in namespaces of its own, with our pid, and stand for it until it ends
/// (never returns); return to run it in place when namespaces are turned off or cannot be had
/// here (saying why).
fn in_namespace(command: &[OsString], launch: &mut ckpt_image::Launch, marked: Vec<i32>, no_namespace: bool) {
    let Ok(argv) = command.iter().map(|a| CString::new(a.clone().into_vec())).collect::<Result<Vec<_>, _>>() else { return };
    let started = match ckpt_ns::disabled(no_namespace) {
        Some(why) => Err(ckpt_ns::Unavailable::Disabled(why)),
        None => {
            launch.outer_pid = launch.pid;
            std::env::set_var(ckpt_image::LAUNCH_VAR, launch.encode());
            let tree = Some(ckpt_ns::TreeTarget { dir: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&launch.dir)), name: launch.name.clone(), keep: launch.keep, generation: 0 });
            let opts = ckpt_ns::Options { tool: "ckpt-run", marked, tree, restored: Vec::new(), pairs: Vec::new() };
            ckpt_ns::start(&ckpt_ns::Payload::Exec { argv, pid: launch.pid }, &opts)
        }
    };
    launch.outer_pid = 0;
    ckpt_ns::supervise_or_explain(started, "ckpt-run", "the program runs in this process and gets virtual ids after a restart");
}

/// Exec `command` (looked up in PATH) in this process; returns only on failure.
fn exec(command: &[OsString]) -> anyhow::Error {
    let argv: Vec<CString> = match command.iter().map(|a| CString::new(a.clone().into_vec()).context("argument contains a NUL byte")).collect::<Result<_>>() {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    CannotRun { program: command[0].to_string_lossy().into_owned(), err }.into()
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

/// The image directory, created 0700 if missing; an existing one must be the user's alone
/// (ckpt_image::trust::dir_problem), unless `allow_shared` (then a warning).
fn prepare_dir(dir: &Path, allow_shared: bool) -> Result<PathBuf> {
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
    let meta = std::fs::metadata(&abs).with_context(|| format!("image directory {}", abs.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", abs.display());
    }
    if let Some(p) = ckpt_image::trust::dir_problem(meta.uid(), meta.mode(), ckpt_image::trust::euid()) {
        if !allow_shared {
            bail!("image directory {} {p}: another user could read or replace the images (use a directory of your own, or --allow-shared-dir)", abs.display());
        }
        eprintln!("ckpt-run: warning: image directory {} {p}; using it anyway (--allow-shared-dir)", abs.display());
    }
    // Reject a directory we cannot write to now rather than at the first checkpoint.
    let c = CString::new(abs.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        bail!("image directory {} is not writable: {}", abs.display(), std::io::Error::last_os_error());
    }
    Ok(abs)
}
