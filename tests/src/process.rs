//! Child processes with captured output.
//!
//! A [`Proc`] is a spawned child whose stdout and stderr are read by background threads into
//! buffers that can be inspected while it runs (e.g. to wait for a progress line). Every wait has
//! a timeout and polls every 10 ms. A `Proc` that is dropped while still running is SIGKILLed and
//! reaped, so a failing test leaves no process behind. [`Record`] is the finished picture of a
//! process (command, pid, status, stdout, stderr, timeline notes) used for failure transcripts.

use crate::check::step_of;
use anyhow::{bail, Result};
use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Polling interval of every wait.
pub const POLL: Duration = Duration::from_millis(10);

/// A running (or finished) child process with captured stdout/stderr.
pub struct Proc {
    label: String,
    cmdline: String,
    child: Child,
    pid: i32,
    started: Instant,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    notes: Vec<String>,
}

impl Proc {
    /// Spawn `cmd` with stdin from /dev/null and stdout/stderr captured.
    /// `label` names the process in transcripts (e.g. "ckpt-restart #2").
    pub fn spawn(label: &str, mut cmd: Command) -> Result<Proc> {
        let cmdline = describe(&cmd);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => bail!("{label}: cannot start `{cmdline}`: {e}"),
        };
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            reader(child.stdout.take().expect("stdout is piped"), out.clone()),
            reader(child.stderr.take().expect("stderr is piped"), err.clone()),
        ];
        Ok(Proc {
            label: label.to_string(),
            cmdline,
            pid: child.id() as i32,
            child,
            started: Instant::now(),
            out,
            err,
            readers,
            status: None,
            notes: Vec::new(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pid of the program this process runs (for ckpt-run and ckpt-restart): in a namespace
    /// of its own, the program is the child of its init (`ckpt-init`), which is our child;
    /// without a namespace it is this process itself.
    pub fn program_pid(&self) -> i32 {
        program_pid(self.pid)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Add a timestamped line to this process's timeline (shown in transcripts).
    pub fn note(&mut self, what: impl fmt::Display) {
        let t = self.started.elapsed().as_secs_f64();
        self.notes.push(format!("t={t:.3}s {what}"));
    }

    /// Everything read from stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Everything read from stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// The stdout lines completed so far (a trailing partial line is left out).
    pub fn complete_lines(&self) -> Vec<String> {
        let text = self.stdout();
        match text.rfind('\n') {
            Some(end) => text[..end].lines().map(str::to_string).collect(),
            None => Vec::new(),
        }
    }

    /// The highest `step N` number printed so far, if any.
    pub fn last_step(&self) -> Option<u64> {
        self.complete_lines().iter().filter_map(|l| step_of(l)).max()
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                self.note(format!("exited: {st}"));
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Wait until the process has printed a line `step N ...` with N >= `min`; returns that N.
    /// Fails if the process exits first or on timeout.
    pub fn wait_for_step(&mut self, min: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = !self.running();
            if exited {
                self.drain();
            }
            if let Some(n) = self
                .complete_lines()
                .iter()
                .filter_map(|l| step_of(l))
                .find(|&n| n >= min)
            {
                return Ok(n);
            }
            if exited {
                bail!(
                    "{} (pid {}) exited ({}) before printing a line `step N` with N >= {min}",
                    self.label,
                    self.pid,
                    fmt_status(self.status)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "timeout: {} (pid {}) did not print a line `step N` with N >= {min} within {timeout:?}",
                    self.label,
                    self.pid
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait until stderr contains `text` (a checkpoint's line, an error). Fails if the process
    /// exits first or on timeout.
    pub fn wait_for_stderr(&mut self, text: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(text) {
            if !self.running() {
                self.drain();
                if self.stderr().contains(text) {
                    return Ok(());
                }
                bail!("{} (pid {}) exited ({}) before writing {text:?} to stderr", self.label, self.pid, fmt_status(self.status));
            }
            if Instant::now() >= deadline {
                bail!("timeout: {} (pid {}) did not write {text:?} to stderr within {timeout:?}", self.label, self.pid);
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Send a signal (only while the process has not been reaped, so the pid is still ours).
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        if !self.running() {
            bail!(
                "{} (pid {}) is not running ({}); cannot send signal {sig}",
                self.label,
                self.pid,
                fmt_status(self.status)
            );
        }
        // SAFETY: kill(2) on our own unreaped child.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            bail!("kill({}, {sig}) failed: {}", self.pid, std::io::Error::last_os_error());
        }
        self.note(format!("sent signal {sig} ({})", signal_name(sig)));
        Ok(())
    }

    /// SIGKILL the process (if still running), reap it and collect the rest of its output. For
    /// ckpt-run and ckpt-restart, also wait until the program they stand for is gone: the kernel
    /// ends a namespace whose init died asynchronously, a few milliseconds later.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        let inner = stand_ins(self.pid);
        if self.running() {
            self.signal(libc::SIGKILL)?;
        }
        let st = self.wait(Duration::from_secs(20));
        if let Some(p) = inner.iter().find(|&&p| !wait_gone(p, Duration::from_secs(20))) {
            anyhow::bail!("{p} (the program or its namespace's init) outlived the SIGKILL of {} (pid {})", self.label, self.pid);
        }
        st
    }

    /// Wait for the process to exit; on timeout SIGKILL it and fail. Collects all its output.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.running() {
            if Instant::now() >= deadline {
                self.note(format!("timeout after {timeout:?}: killing it"));
                // SAFETY: kill(2) on our own unreaped child.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let _ = self.child.wait().map(|st| self.status = Some(st));
                self.drain();
                bail!(
                    "timeout: {} (pid {}) did not exit within {timeout:?} (killed)",
                    self.label,
                    self.pid
                );
            }
            std::thread::sleep(POLL);
        }
        self.drain();
        Ok(self.status.expect("reaped"))
    }

    /// After exit: let the reader threads finish (bounded: something else might hold the pipes).
    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }

    /// A snapshot for transcripts and checks.
    pub fn record(&self) -> Record {
        Record {
            label: self.label.clone(),
            cmdline: self.cmdline.clone(),
            pid: self.pid,
            status: self.status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            notes: self.notes.clone(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

fn reader(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    })
}

/// `prog arg arg` for messages.
fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// The children of process `pid` (all its threads'), from /proc.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|w| w.parse::<i32>().ok()));
        }
    }
    out
}

/// Wait until process `pid` is gone (no longer in /proc, or a zombie); false after `timeout`.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let gone = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
    };
    wait_until(timeout, gone)
}

/// The processes ckpt-run or ckpt-restart `pid` stands for: its namespace's init and the
/// program (none without a namespace). Once init is gone, so is every process of its namespace
/// (the kernel ends them before init's exit completes): snapshot writers too, which hold the
/// program's files (and so its locks) until they are gone.
pub fn stand_ins(pid: i32) -> Vec<i32> {
    let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    match children(pid).as_slice() {
        [init] if comm(*init).trim_end() == "ckpt-init" => std::iter::once(*init).chain(children(*init).first().copied()).collect(),
        _ => Vec::new(),
    }
}

/// See [`Proc::program_pid`].
pub fn program_pid(pid: i32) -> i32 {
    let comm = |p: i32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    match children(pid).as_slice() {
        [init] if comm(*init).trim_end() == "ckpt-init" => children(*init).first().copied().unwrap_or(pid),
        _ => pid,
    }
}

pub fn fmt_status(st: Option<ExitStatus>) -> String {
    match st {
        Some(st) => st.to_string(),
        None => "still running".to_string(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGTERM => "SIGTERM",
        _ => "?",
    }
}

/// What a process did: for checks and for failure transcripts.
#[derive(Clone, Debug)]
pub struct Record {
    pub label: String,
    pub cmdline: String,
    pub pid: i32,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub notes: Vec<String>,
}

impl Record {
    /// stdout split into lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Whether the process exited normally with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Show at most `max` lines: the first and last ones, with a marker for what was left out.
fn clip(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max {
        return text.to_string();
    }
    let head = max / 4;
    let tail = max - head;
    format!(
        "{}\n    [... {} lines left out ...]\n{}\n",
        lines[..head].join("\n"),
        lines.len() - max,
        lines[lines.len() - tail..].join("\n")
    )
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "===== {} (pid {}): {}", self.label, self.pid, self.cmdline)?;
        writeln!(f, "status: {}", fmt_status(self.status))?;
        for n in &self.notes {
            writeln!(f, "  {n}")?;
        }
        // Stderr first: the runtime's own lines say why; a long stdout of steps says less, and
        // a log that cuts the middle of a long transcript (CI's) keeps its beginning.
        writeln!(f, "----- stderr -----")?;
        write!(f, "{}", clip(&self.stderr, 200))?;
        if !self.stderr.is_empty() && !self.stderr.ends_with('\n') {
            writeln!(f)?;
        }
        let steps: Vec<u64> = self.stdout.lines().filter_map(step_of).collect();
        match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => writeln!(
                f,
                "----- stdout ({} lines; steps {a}..{b}) -----",
                self.stdout.lines().count()
            )?,
            _ => writeln!(
                f,
                "----- stdout ({} lines; no steps) -----",
                self.stdout.lines().count()
            )?,
        }
        write!(f, "{}", clip(&self.stdout, 400))?;
        if !self.stdout.is_empty() && !self.stdout.ends_with('\n') {
            writeln!(f, "[no newline at the end]")?;
        }
        Ok(())
    }
}

/// All records, one after the other.
pub fn transcript(records: &[Record]) -> String {
    let mut s = String::from("\n########## transcript of the processes involved ##########\n");
    for r in records {
        s.push_str(&r.to_string());
    }
    s
}

/// Poll `cond` (every [`POLL`]) until it holds or `timeout` passes; whether it held. For waits
/// on things other than a [`Proc`]'s output (files, a Slurm job's output file).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}
