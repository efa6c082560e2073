//! Small helpers for the restore_* tests (compile a C program, run it under ckpt-run, wait for
//! progress lines, checkpoint, SIGKILL, restart). Kept apart from the shared harness so that the
//! two merge cleanly; to be folded into it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = root().join("target/release").join(name);
    assert!(p.exists(), "{} is missing: run cargo build --release --workspace first", p.display());
    p
}

/// A fresh working directory for one test.
pub fn workdir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("restore").join(test);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Compile tests/programs/<name>.c into `dir`.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    let out = dir.join(name);
    let src = root().join("tests/programs").join(format!("{name}.c"));
    let st = Command::new("gcc").args(["-O1", "-pthread", "-o"]).arg(&out).arg(&src).status().expect("gcc");
    assert!(st.success(), "gcc failed for {}", src.display());
    out
}

pub struct Proc {
    pub child: Child,
    pub out: PathBuf,
    pub err: PathBuf,
}

fn spawn(mut cmd: Command, cwd: &Path, tag: &str) -> Proc {
    let out = cwd.join(format!("{tag}.out"));
    let err = cwd.join(format!("{tag}.err"));
    cmd.current_dir(cwd).stdin(Stdio::null()).stdout(fs::File::create(&out).unwrap()).stderr(fs::File::create(&err).unwrap());
    Proc { child: cmd.spawn().expect("spawn"), out, err }
}

/// Run `prog` under ckpt-run with images in cwd/img.
pub fn run(prog: &Path, args: &[&str], cwd: &Path) -> Proc {
    let mut c = Command::new(bin("ckpt-run"));
    c.arg("--dir").arg(cwd.join("img")).arg("--").arg(prog).args(args);
    spawn(c, cwd, "run")
}

/// Run `prog` without ckpt, to completion; its stdout.
pub fn plain(prog: &Path, args: &[&str], cwd: &Path) -> String {
    let mut p = spawn(
        {
            let mut c = Command::new(prog);
            c.args(args);
            c
        },
        cwd,
        "plain",
    );
    let st = p.wait();
    assert!(st.success(), "uninterrupted run failed: {st:?}: {}", p.stderr());
    p.stdout()
}

pub fn restart(image: &Path, args: &[&str], cwd: &Path) -> Proc {
    let mut c = Command::new(bin("ckpt-restart"));
    c.args(args).arg(image);
    spawn(c, cwd, "restart")
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }
    /// Wait until stdout has a line for which `pred` holds.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) {
        let t0 = Instant::now();
        loop {
            if self.stdout().lines().any(&pred) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("program exited ({st:?}) before the expected line; stdout: {} stderr: {}", self.stdout(), self.stderr());
            }
            assert!(t0.elapsed() < TIMEOUT, "timed out waiting for a line; stdout: {}", self.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Checkpoint with SIGUSR2 and wait for the image `cwd/img/<name>.ckpt` to appear.
    pub fn checkpoint(&mut self, cwd: &Path, name: &str) -> PathBuf {
        let img = cwd.join("img").join(format!("{name}.ckpt"));
        let _ = fs::remove_file(&img);
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGUSR2) };
        let t0 = Instant::now();
        while !img.exists() {
            assert!(t0.elapsed() < TIMEOUT, "no image appeared; stderr: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        img
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn wait(&mut self) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > TIMEOUT {
                self.kill9();
                panic!("timed out; stdout: {} stderr: {}", self.stdout(), self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
