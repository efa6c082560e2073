//! Small helpers shared by the trigger and Slurm tests (issue 4): where the built binaries are,
//! compiling a test program, scratch directories, waiting with a deadline. Kept apart from the
//! crate's harness so the two can evolve independently.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// target/release (or debug): where ckpt-run, ckpt-restart, ckpt-ctl and the runtime are.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    for b in ["ckpt-run", "ckpt-restart", "ckpt-ctl", "libckpt_runtime.so"] {
        assert!(dir.join(b).exists(), "{} missing: run `cargo build --release --workspace` first", dir.join(b).display());
    }
    dir
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A fresh directory under /tmp, world-traversable (Slurm jobs and other users may need it).
pub fn scratch(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("ckpt-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Compile tests/programs/NAME.c into DIR/NAME.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs").join(format!("{name}.c"));
    let out = dir.join(name);
    let st = Command::new("gcc").args(["-O2", "-o"]).arg(&out).arg(&src).status().expect("run gcc");
    assert!(st.success(), "gcc failed for {}", src.display());
    out
}

/// Poll `f` every 50 ms until it is true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for a child with a deadline; kill it (and fail) when it overruns.
pub fn wait_child(child: &mut Child, secs: u64, what: &str) -> ExitStatus {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Lines of the form "i sum" printed by slurm_count.
pub fn count_lines(s: &str) -> usize {
    s.lines().filter(|l| l.split(' ').next().is_some_and(|w| w.parse::<u64>().is_ok())).count()
}

/// The uninterrupted result of `slurm_count n`: its last line.
pub fn expected_done(prog: &Path, n: u32) -> String {
    let out = Command::new(prog).args([n.to_string(), "0".into()]).output().expect("run program");
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string()
}
