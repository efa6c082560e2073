//! The ckpt binaries and the scenarios the tests run with them.
//!
//! * [`Bins`]: finds `ckpt-run`, `ckpt-restart` and the runtime library in
//!   `<workspace>/target/release` (or `$CKPT_BIN_DIR`).
//! * [`run_plain`]: the uninterrupted reference run, without ckpt.
//! * [`checkpoint_kill_restart`]: run under `ckpt-run`, wait for a progress line, `kill -USR2`,
//!   wait for the image, SIGKILL, `ckpt-restart IMAGE`; optionally repeated (a restart chain: the
//!   restarted program, which runs in ckpt-restart's pid, is checkpointed, killed and restarted
//!   again), and finally let the last restart run to completion.
//! * [`run_and_verify`]: both of the above plus [`Outcome::verify`] (set `CKPT_TESTS_VERBOSE`
//!   to see the transcript of every process even when the test passes).
//! * [`run_restart`]: just `ckpt-restart ARG` until it exits (used with bad input).
//!
//! With `as_nobody`, every command runs as user nobody (65534) through
//! `setpriv --reuid 65534 --regid 65534 --clear-groups --` when the tests run as root; when they
//! do not run as root they already are unprivileged and commands run directly.

use crate::check::result_of;
use crate::process::{fmt_status, transcript, Proc, Record, POLL};
use crate::programs::Program;
use crate::workdir::Workdir;
use anyhow::{anyhow, bail, Result};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime};

/// uid and gid of user nobody.
pub const NOBODY: u32 = 65534;

/// Locations of the ckpt binaries under test.
#[derive(Clone, Debug)]
pub struct Bins {
    pub dir: PathBuf,
    pub run: PathBuf,
    pub restart: PathBuf,
}

impl Bins {
    /// `$CKPT_BIN_DIR`, else `<workspace>/target/release`. Fails with a clear message when the
    /// binaries are missing.
    pub fn locate() -> Result<Bins> {
        let dir = match std::env::var_os("CKPT_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("release"),
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        let bins = Bins {
            run: dir.join("ckpt-run"),
            restart: dir.join("ckpt-restart"),
            dir,
        };
        let missing: Vec<String> = [
            bins.run.clone(),
            bins.restart.clone(),
            bins.dir.join("libckpt_runtime.so"),
        ]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
        if !missing.is_empty() {
            bail!(
                "the ckpt binaries are missing ({}): run `cargo build --release` first \
                 (or point CKPT_BIN_DIR at the directory that holds ckpt-run, ckpt-restart and libckpt_runtime.so)",
                missing.join(", ")
            );
        }
        Ok(bins)
    }
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The uid that commands run under (nobody when wrapped with setpriv).
pub fn effective_uid(as_nobody: bool) -> u32 {
    if as_nobody && is_root() {
        NOBODY
    } else {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }
}

/// A command for `argv`, run in `cwd`, as user nobody if asked (and we are root).
pub fn user_command(argv: &[OsString], as_nobody: bool, cwd: &Path) -> Command {
    let mut cmd = if as_nobody && is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"])
            .args(argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    cmd.current_dir(cwd);
    // Start with only stdin/stdout/stderr open, as from a shell: cargo leaves e.g. its jobserver
    // pipe open in the tests' children, and that is no part of what is tested.
    // SAFETY: the closure only makes a system call (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            // close_range(3, ~0, CLOSE_RANGE_CLOEXEC): close them at exec, which keeps std's own
            // exec-error pipe working. Best effort (old kernels lack close_range).
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    // Settings the test environment might carry over would change what ckpt-run does.
    for var in [
        "CKPT_DIR", "CKPT_SIGNAL", "CKPT_NAME", "CKPT_PID", "CKPT_INTERVAL", "CKPT_STOP_SIGNAL", "CKPT_KEEP", "CKPT_RESUME",
        "CKPT_REQUEUE", "CKPT_ALLOW_SHARED_DIR", "CKPT_PROGRAM", "__CKPT_LAUNCH",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Timeouts of the scenario steps (all generous: they only matter when something is broken).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a progress line to appear.
    pub progress: Duration,
    /// For the image to appear after the checkpoint signal.
    pub image: Duration,
    /// For the last process to run to completion.
    pub finish: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            progress: Duration::from_secs(60),
            image: Duration::from_secs(120),
            finish: Duration::from_secs(120),
        }
    }
}

/// How to run a checkpoint / kill / restart scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// The image directory (`ckpt-run --dir`).
    pub images: PathBuf,
    /// Run every command as user nobody.
    pub as_nobody: bool,
    /// One entry per cycle: checkpoint once the current process printed `step N` with N >= this.
    /// The first entry applies to the ckpt-run process, the next ones to the restarted processes.
    pub checkpoint_steps: Vec<u64>,
    /// Give ckpt-restart the image directory instead of the image file.
    pub restart_from_dir: bool,
    /// Before each restart, rename the image directory (`DIR` to `DIR-moved1`, ...) and
    /// restart from there: the next image must appear in the new one.
    pub move_images: bool,
    pub timeouts: Timeouts,
    /// Checkpoints the ckpt-run process takes first, each once it printed a step >= the entry
    /// (without being killed), before the first cycle's checkpoint.
    pub also_at: Vec<u64>,
    /// Environment for ckpt-run and ckpt-restart (e.g. CKPT_KEEP).
    pub env: Vec<(String, String)>,
    /// Run ckpt-run and ckpt-restart under this address-space limit in bytes (`ulimit -v`).
    pub address_limit: Option<u64>,
    /// Extra options for ckpt-run (before `--`) and for ckpt-restart (before the image).
    pub run_args: Vec<OsString>,
    pub restart_args: Vec<OsString>,
    /// A command that runs ckpt-run and ckpt-restart by exec (the test signals its pid), e.g.
    /// `unshare --user ... sh -c '...; exec "$@"' sh`.
    pub wrapper: Vec<OsString>,
    /// How long the program stays dead between the SIGKILL and the restart.
    pub downtime: Duration,
    /// Called between the SIGKILL and each restart with what the killed process wrote on
    /// stderr; what it returns is kept until the last process exits (e.g. terminals that take
    /// the indices the program's pseudo-terminals had).
    pub before_restart: Option<fn(String) -> Result<Box<dyn std::any::Any>>>,
}

impl Options {
    /// Images in `work`'s image directory; checkpoint at each of `steps` in turn.
    pub fn new(work: &Workdir, steps: &[u64]) -> Options {
        Options {
            images: work.images(),
            as_nobody: false,
            checkpoint_steps: steps.to_vec(),
            restart_from_dir: false,
            move_images: false,
            timeouts: Timeouts::default(),
            also_at: Vec::new(),
            env: Vec::new(),
            address_limit: None,
            run_args: Vec::new(),
            restart_args: Vec::new(),
            wrapper: Vec::new(),
            downtime: Duration::ZERO,
            before_restart: None,
        }
    }
}

/// What a checkpoint image looked like right after it appeared.
#[derive(Clone, Copy, Debug)]
pub struct ImageInfo {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub len: u64,
}

/// One checkpoint / kill / restart cycle.
#[derive(Clone, Copy, Debug)]
pub struct Cycle {
    /// The highest step the process had printed when the checkpoint signal was sent: the image
    /// is taken after it, so the restarted program must continue with a later step.
    pub signalled_after_step: u64,
    pub image: ImageInfo,
}

/// Everything a scenario did: processes in order (ckpt-run, ckpt-restart #1, ...) and cycles.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub records: Vec<Record>,
    pub cycles: Vec<Cycle>,
    /// The checkpoints of `Options::also_at`, in order.
    pub extra: Vec<Cycle>,
    /// Path of the image file.
    pub image: PathBuf,
    /// uid the commands ran as.
    pub uid: u32,
}

impl Outcome {
    /// The transcript of every process involved.
    pub fn transcript(&self) -> String {
        transcript(&self.records)
    }

    /// The last process (the restart that ran to completion).
    pub fn last(&self) -> &Record {
        self.records.last().expect("at least one process")
    }
}

/// Run `program` without ckpt until it exits (the reference output). Fails, with a transcript,
/// unless it exits with status 0 after printing a `result` line.
pub fn run_plain(program: &Program, as_nobody: bool, timeout: Duration) -> Result<Record> {
    let mut p = Proc::spawn(
        &format!("{} (uninterrupted)", program.name),
        user_command(&program.argv, as_nobody, &program.cwd),
    )?;
    let waited = p.wait(timeout);
    let rec = p.record();
    match waited {
        Err(e) => Err(anyhow!("{e:#}{}", transcript(&[rec]))),
        Ok(st) if !st.success() => Err(anyhow!("the uninterrupted run failed: {st}{}", transcript(&[rec]))),
        Ok(_) if result_of(&rec.stdout).is_none() => Err(anyhow!(
            "the uninterrupted run printed no `result` line{}",
            transcript(&[rec])
        )),
        Ok(_) => Ok(rec),
    }
}

/// Identity of a file version: a checkpoint replaces the image by rename (new inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileVersion {
    dev: u64,
    ino: u64,
    mtime: Option<SystemTime>,
    len: u64,
}

fn file_version(path: &Path) -> Option<FileVersion> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileVersion {
        dev: m.dev(),
        ino: m.ino(),
        mtime: m.modified().ok(),
        len: m.len(),
    })
}

/// Wait for `p` to print step >= `at_step`, send it the checkpoint signal and wait until a new
/// version of `image` appears (it appears complete: the runtime renames it into place).
fn checkpoint(p: &mut Proc, image: &Path, at_step: u64, timeouts: &Timeouts) -> Result<Cycle> {
    let seen = p.wait_for_step(at_step, timeouts.progress)?;
    p.note(format!("printed step {seen}"));
    let before = file_version(image);
    let signalled_after_step = p.last_step().unwrap_or(seen).max(seen);
    p.signal(libc::SIGUSR2)?;
    p.note(format!("(checkpoint requested after step {signalled_after_step})"));
    let deadline = Instant::now() + timeouts.image;
    loop {
        // Whether the process had exited before this look at the image: a program that ends
        // while its checkpoint is written waits for the image, so look once more after that.
        let exited = !p.running();
        if let Some(now) = file_version(image) {
            if Some(now) != before {
                let m = std::fs::metadata(image)?;
                // A process tree's set: a directory (0700); its files are the images (0600).
                let m = if m.is_dir() { std::fs::metadata(image.join("tree"))? /* its manifest, ckpt_image::tree */ } else { m };
                let info = ImageInfo {
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    len: m.len(),
                };
                p.note(format!(
                    "image {} appeared: {} bytes, mode {:o}, uid {} (last step printed: {})",
                    image.display(),
                    info.len,
                    info.mode,
                    info.uid,
                    p.last_step().map_or("none".to_string(), |s| s.to_string())
                ));
                return Ok(Cycle {
                    signalled_after_step,
                    image: info,
                });
            }
        }
        if exited {
            bail!(
                "{} (pid {}) exited ({}) after the checkpoint signal, before the image {} appeared",
                p.label(),
                p.pid(),
                fmt_status(p.status()),
                image.display()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "timeout: no new image {} within {:?} after the checkpoint signal",
                image.display(),
                timeouts.image
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The ckpt-run command for `program`.
fn ckpt_run_command(bins: &Bins, program: &Program, opts: &Options) -> Command {
    let mut argv: Vec<OsString> = opts.wrapper.clone();
    argv.extend([bins.run.clone().into(), "--dir".into(), opts.images.clone().into()]);
    argv.extend(opts.run_args.iter().cloned());
    argv.push("--".into());
    argv.extend(program.argv.iter().cloned());
    with_options(user_command(&argv, opts.as_nobody, &program.cwd), opts)
}

/// `ckpt-run --dir IMAGES OPTIONS... -- PROGRAM`, as user nobody if asked.
/// `program` under ckpt-run (as nobody if asked), asked for a checkpoint after its step 3 that
/// must fail: waits for the failure line and for the program's end, and returns the program's
/// record with that line (empty if none came) for the caller's checks.
pub fn refused_checkpoint(bins: &Bins, program: &Program, images: &Path, as_nobody: bool) -> Result<(Record, String)> {
    let mut p = Proc::spawn("ckpt-run", ckpt_run_with(bins, program, images, &[], as_nobody))?;
    p.wait_for_step(3, Duration::from_secs(60))?;
    p.signal(libc::SIGUSR2)?;
    p.wait_for_stderr("checkpoint failed", Duration::from_secs(60))?;
    p.wait(Duration::from_secs(60))?;
    let rec = p.record();
    let line = rec.stderr.lines().find(|l| l.contains("checkpoint failed")).unwrap_or_default().to_string();
    Ok((rec, line))
}

pub fn ckpt_run_with(bins: &Bins, program: &Program, images: &Path, options: &[&str], as_nobody: bool) -> Command {
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), images.into()];
    argv.extend(options.iter().map(OsString::from));
    argv.push("--".into());
    argv.extend(program.argv.iter().cloned());
    user_command(&argv, as_nobody, &program.cwd)
}

/// `cmd` with the environment and limits of `opts`.
fn with_options(mut cmd: Command, opts: &Options) -> Command {
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    if let Some(limit) = opts.address_limit {
        // SAFETY: the closure only makes a system call (async-signal-safe).
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

/// Run `program` under ckpt-run, checkpoint it once it printed step >= `opts.checkpoint_steps[0]`
/// and SIGKILL it once the image exists. Returns the image path, the cycle and the record.
pub fn checkpoint_and_kill(bins: &Bins, program: &Program, opts: &Options) -> Result<(PathBuf, Cycle, Record)> {
    let image = opts.images.join(program.image_name());
    let at = *opts.checkpoint_steps.first().expect("one checkpoint step");
    let mut p = Proc::spawn(
        &format!("ckpt-run {}", program.name),
        ckpt_run_command(bins, program, opts),
    )?;
    let res = checkpoint(&mut p, &image, at, &opts.timeouts).and_then(|c| {
        p.kill()?;
        Ok(c)
    });
    let rec = p.record();
    match res {
        Ok(c) => Ok((image, c, rec)),
        Err(e) => Err(anyhow!("{e:#}{}", transcript(&[rec]))),
    }
}

/// The full scenario: ckpt-run, then for each entry of `opts.checkpoint_steps`: checkpoint,
/// SIGKILL, ckpt-restart (the next cycle checkpoints the restarted program, which has
/// ckpt-restart's pid); finally wait for the last restart to finish. Harness failures (timeouts,
/// a process dying early) are errors carrying the transcript; the final exit status and output
/// are for [`Outcome::verify`] to judge.
pub fn checkpoint_kill_restart(bins: &Bins, program: &Program, opts: &Options) -> Result<Outcome> {
    assert!(!opts.checkpoint_steps.is_empty(), "at least one checkpoint");
    let mut image = opts.images.join(program.image_name());
    let mut procs: Vec<Proc> = Vec::new();
    let mut cycles = Vec::new();
    let mut extra = Vec::new();
    let res = drive(bins, program, opts, &mut image, &mut procs, &mut cycles, &mut extra);
    let records: Vec<Record> = procs.iter().map(Proc::record).collect();
    match res {
        Ok(_) => Ok(Outcome {
            records,
            cycles,
            extra,
            image,
            uid: effective_uid(opts.as_nobody),
        }),
        Err(e) => Err(anyhow!("{e:#}{}", transcript(&records))),
    }
}

fn drive(
    bins: &Bins,
    program: &Program,
    opts: &Options,
    image: &mut PathBuf,
    procs: &mut Vec<Proc>,
    cycles: &mut Vec<Cycle>,
    extra: &mut Vec<Cycle>,
) -> Result<ExitStatus> {
    procs.push(Proc::spawn(
        &format!("ckpt-run {}", program.name),
        ckpt_run_command(bins, program, opts),
    )?);
    for &step in &opts.also_at {
        let p = procs.last_mut().expect("a process");
        extra.push(checkpoint(p, image, step, &opts.timeouts)?);
    }
    let mut held = Vec::new();
    for (k, &step) in opts.checkpoint_steps.iter().enumerate() {
        let p = procs.last_mut().expect("a process");
        cycles.push(checkpoint(p, image, step, &opts.timeouts)?);
        p.kill()?;
        std::thread::sleep(opts.downtime);
        if let Some(f) = opts.before_restart {
            held.push(f(p.stderr())?);
        }
        let mut images = image.parent().expect("an image directory").to_path_buf();
        if opts.move_images {
            let moved = PathBuf::from(format!("{}-moved{}", opts.images.display(), k + 1));
            std::fs::rename(&images, &moved)?;
            procs.last_mut().expect("a process").note(format!("moved {} to {}", images.display(), moved.display()));
            *image = moved.join(image.file_name().expect("an image name"));
            images = moved;
        }
        let target: OsString = if opts.restart_from_dir {
            images.into()
        } else {
            image.clone().into()
        };
        let mut argv = opts.wrapper.clone();
        argv.push(bins.restart.clone().into_os_string());
        argv.extend(opts.restart_args.iter().cloned());
        argv.push(target);
        procs.push(Proc::spawn(
            &format!("ckpt-restart #{}", k + 1),
            with_options(user_command(&argv, opts.as_nobody, &program.cwd), opts),
        )?);
    }
    procs.last_mut().expect("a process").wait(opts.timeouts.finish)
}

/// The usual test: the uninterrupted reference run (concurrently) and the checkpoint / kill /
/// restart scenario, then [`Outcome::verify`]. Returns the outcome for further checks.
pub fn run_and_verify(bins: &Bins, program: &Program, opts: &Options) -> Result<Outcome> {
    let (plain, outcome) = std::thread::scope(|s| {
        let plain = s.spawn(|| run_plain(program, opts.as_nobody, opts.timeouts.finish));
        let outcome = checkpoint_kill_restart(bins, program, opts);
        (plain.join().expect("plain run thread panicked"), outcome)
    });
    let plain = plain?;
    let outcome = outcome?;
    if std::env::var_os("CKPT_TESTS_VERBOSE").is_some() {
        eprintln!("{plain}{}", outcome.transcript());
    }
    outcome.verify(&plain)?;
    Ok(outcome)
}

/// Run `ckpt-restart ARG` until it exits and return its record (for bad input, judge it with
/// [`crate::check::clean_failure`]). Kills it and fails after `timeout`: it must not hang.
pub fn run_restart(bins: &Bins, arg: &Path, cwd: &Path, timeout: Duration) -> Result<Record> {
    let argv = [bins.restart.clone().into_os_string(), arg.as_os_str().to_os_string()];
    let mut p = Proc::spawn("ckpt-restart", user_command(&argv, false, cwd))?;
    let waited = p.wait(timeout);
    let rec = p.record();
    match waited {
        Ok(_) => Ok(rec),
        Err(e) => Err(anyhow!("{e:#} (ckpt-restart hung){}", transcript(&[rec]))),
    }
}
