//! Helpers for the restore_* tests, on top of the harness (Bins, Workdir, compile_c). Their
//! programs do not follow the step/result protocol: they set up kernel objects, print READY,
//! wait for a file named `go`, then print what each object holds; so these tests wait for
//! lines, checkpoint, SIGKILL and restart themselves.
#![allow(dead_code)]

use ckpt_tests::programs::compile_c;
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Workdir};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(90);

pub fn bin(name: &str) -> PathBuf {
    Bins::locate().expect("ckpt binaries").dir.join(name)
}

/// A fresh working directory for one test (the harness's Workdir, usable as a Path).
pub struct Dir(Workdir);

impl std::ops::Deref for Dir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

pub fn workdir(test: &str) -> Dir {
    Dir(Workdir::new(&format!("restore-{test}")).expect("workdir"))
}

/// Compile tests/programs/<name>.c into `dir`.
pub fn compile(name: &str, dir: &Dir) -> PathBuf {
    compile_c(&dir.0, &format!("{name}.c"), &["-pthread"]).expect("compile")
}

/// Run `argv` in `cwd` (as nobody when asked), its output in `tag`.out and `tag`.err.
pub fn spawn(argv: Vec<OsString>, nobody: bool, cwd: &Path, tag: &str) -> Proc {
    spawn_env(argv, nobody, cwd, tag, &[])
}

fn spawn_env(argv: Vec<OsString>, nobody: bool, cwd: &Path, tag: &str, env: &[(&str, &str)]) -> Proc {
    let out = cwd.join(format!("{tag}.out"));
    let err = cwd.join(format!("{tag}.err"));
    let mut cmd = user_command(&argv, nobody, cwd);
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null()).stdout(fs::File::create(&out).unwrap()).stderr(fs::File::create(&err).unwrap());
    Proc { child: cmd.spawn().expect("spawn"), out, err }
}

pub fn argv(first: &Path, args: &[&str]) -> Vec<OsString> {
    std::iter::once(first.as_os_str().to_owned()).chain(args.iter().map(OsString::from)).collect()
}

/// Run `prog` under ckpt-run with images in cwd/img.
pub fn run(prog: &Path, args: &[&str], cwd: &Path) -> Proc {
    run_as(prog, args, cwd, false)
}

/// The same, as user nobody when `nobody` (and the tests run as root).
pub fn run_as(prog: &Path, args: &[&str], cwd: &Path, nobody: bool) -> Proc {
    run_with(prog, args, cwd, nobody, &[])
}

/// The same, with more options for ckpt-run.
pub fn run_with(prog: &Path, args: &[&str], cwd: &Path, nobody: bool, options: &[&str]) -> Proc {
    let img = cwd.join("img");
    let mut a = argv(&bin("ckpt-run"), &["--dir", img.to_str().unwrap()]);
    a.extend(options.iter().map(OsString::from));
    a.push("--".into());
    a.extend(argv(prog, args));
    spawn(a, nobody, cwd, "run")
}

/// Run `prog` without ckpt, to completion; its stdout.
pub fn plain(prog: &Path, args: &[&str], cwd: &Path) -> String {
    plain_as(prog, args, cwd, false)
}

/// The same, as user nobody when `nobody` (and the tests run as root).
pub fn plain_as(prog: &Path, args: &[&str], cwd: &Path, nobody: bool) -> String {
    let mut p = spawn(argv(prog, args), nobody, cwd, "plain");
    let st = p.wait();
    assert!(st.success(), "uninterrupted run failed: {st:?}: {}", p.stderr());
    p.stdout()
}

pub fn restart(image: &Path, args: &[&str], cwd: &Path) -> Proc {
    restart_as(image, args, cwd, false)
}

pub fn restart_as(image: &Path, args: &[&str], cwd: &Path, nobody: bool) -> Proc {
    restart_env(image, args, cwd, nobody, &[])
}

/// ckpt-restart with more environment variables (CKPT_LOG=info, ...).
pub fn restart_env(image: &Path, args: &[&str], cwd: &Path, nobody: bool, env: &[(&str, &str)]) -> Proc {
    let mut a = argv(&bin("ckpt-restart"), args);
    a.push(image.as_os_str().to_owned());
    spawn_env(a, nobody, cwd, "restart", env)
}

/// Run `argv` as it is (e.g. under a setpriv of the test's own), in `cwd`.
pub fn spawn_argv(argv: &[OsString], cwd: &Path, tag: &str) -> Proc {
    spawn(argv.to_vec(), false, cwd, tag)
}

pub struct Proc {
    pub child: Child,
    pub out: PathBuf,
    pub err: PathBuf,
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
    /// Wait until a ckpt-restart process has become the program (in its namespace: the process
    /// under ckpt-restart's init): the checkpoint signal (SIGUSR2) is caught again (before that,
    /// it would kill the restarter).
    pub fn wait_restarted(&mut self) {
        let t0 = Instant::now();
        let bit = 1u64 << (libc::SIGUSR2 - 1);
        loop {
            let pid = ckpt_tests::process::program_pid(self.pid());
            let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let caught = st.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
            if caught.is_some_and(|c| c & bit != 0) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("restart exited ({st:?}); stderr: {}", self.stderr());
            }
            assert!(t0.elapsed() < TIMEOUT, "restart did not complete; stderr: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
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
    /// SIGKILL, reap, and wait until the program is gone too (see ckpt_tests::Proc::kill).
    pub fn kill9(&mut self) {
        // The program and its namespace's init (whose end is that of every process in it).
        let inner = ckpt_tests::process::stand_ins(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in inner {
            ckpt_tests::process::wait_gone(p, TIMEOUT);
        }
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

/// Checkpoint `name` at READY, SIGKILL it, restart it, checkpoint the restarted program, SIGKILL
/// that, let the second restart go on: its output must be the uninterrupted run's without the
/// READY line (a program that started over would print READY again).
pub fn survives_two_restarts(name: &str) {
    survives_two_restarts_with(name, name, &[], false);
}

/// The same with arguments `args` for the program, as user nobody when `nobody` (and the tests
/// run as root), in work directories named after `tag`. Returns the restarted run's output.
pub fn survives_two_restarts_with(name: &str, tag: &str, args: &[&str], nobody: bool) -> String {
    let base = workdir(&format!("{tag}_chain_ref"));
    let prog = compile(name, &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, args, &base, nobody);

    let dir = workdir(&format!("{tag}_chain"));
    let mut p = run_as(&prog, args, &dir, nobody);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, name);
    p.kill9();
    let mut r1 = restart_as(&img, &[], &dir, nobody);
    r1.wait_restarted();
    let img = r1.checkpoint(&dir, name);
    r1.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r2 = restart_as(&img, &[], &dir, nobody);
    assert!(r2.wait().success(), "second restart failed: {}", r2.stderr());
    let out = r2.stdout();
    assert_eq!(out, expected.replacen("READY\n", "", 1));
    out
}

/// What a restart did, for tests that look further.
pub struct Restarted {
    pub dir: Dir,
    pub stdout: String,
    pub stderr: String,
}

/// The zdtm-style scenario for a program `name` that sets up state, prints READY, waits for
/// `go` and prints its own checks: an uninterrupted run (which must pass), then under ckpt-run:
/// checkpoint at READY, SIGKILL, `after_kill` on the directory, `go`, ckpt-restart (with `env`).
/// The restart must succeed and print exactly what the uninterrupted run printed after READY
/// (a program that started over would print READY again; one whose checks fail prints FAIL
/// lines and `failed`).
pub fn ready_go(name: &str, tag: &str, nobody: bool, after_kill: impl FnOnce(&Path), env: &[(&str, &str)]) -> Restarted {
    ready_go_in(name, workdir(&format!("{tag}_ref")), workdir(tag), nobody, after_kill, env)
}

/// `ready_go` in working directories the caller made ready: `base` for the uninterrupted run,
/// `dir` for the checkpointed one.
pub fn ready_go_in(name: &str, base: Dir, dir: Dir, nobody: bool, after_kill: impl FnOnce(&Path), env: &[(&str, &str)]) -> Restarted {
    let prog = compile(name, &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, &[], &base, nobody);
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");

    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, name);
    p.kill9();
    after_kill(&dir);
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_env(&img, &[], &dir, nobody, env);
    let st = r.wait();
    let (stdout, stderr) = (r.stdout(), r.stderr());
    assert!(st.success(), "restart failed ({st:?}): {stderr}\nstdout: {stdout}");
    assert!(!stdout.contains("READY"), "the program started over: {stdout}");
    assert_eq!(stdout, expected.replacen("READY\n", "", 1), "restarted run differs; stderr: {stderr}");
    Restarted { dir, stdout, stderr }
}
