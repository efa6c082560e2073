//! The test programs: compiling the C ones with gcc, locating the Python interpreter, and the
//! [`Program`] description (argv, working directory, name of its checkpoint image) that the
//! scenarios run.

use crate::workdir::Workdir;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Directory holding the test programs' sources (`tests/programs`).
pub fn sources_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("programs")
}

/// A program to run: argv[0] is an absolute path.
#[derive(Clone, Debug)]
pub struct Program {
    /// Short name for messages.
    pub name: String,
    pub argv: Vec<OsString>,
    /// Working directory (the test's work directory, accessible to user nobody).
    pub cwd: PathBuf,
}

impl Program {
    /// A program given by path (e.g. a Rust binary) and arguments, run in `work`.
    pub fn native(path: impl AsRef<Path>, args: &[&str], work: &Workdir) -> Program {
        let path = path.as_ref();
        let mut argv = vec![path.as_os_str().to_os_string()];
        argv.extend(args.iter().map(OsString::from));
        Program {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            argv,
            cwd: work.path().to_path_buf(),
        }
    }

    /// Compile `tests/programs/<source>` (e.g. "counter.c") with `gcc -O2 -g` plus `flags`
    /// (e.g. "-pthread", "-fopenmp") into `work`, and describe running it with `args`.
    pub fn c(work: &Workdir, source: &str, flags: &[&str], args: &[&str]) -> Result<Program> {
        let exe = compile_c(work, source, flags)?;
        Ok(Program::native(exe, args, work))
    }

    /// `python3 -u tests/programs/<script> args...`, with python3 resolved from PATH to the real
    /// interpreter binary (not a wrapper script such as a pyenv shim).
    pub fn python(work: &Workdir, script: &str, args: &[&str]) -> Result<Program> {
        let python = python3()?;
        let mut argv = vec![
            python.into_os_string(),
            "-u".into(),
            sources_dir().join(script).into_os_string(),
        ];
        argv.extend(args.iter().map(OsString::from));
        Ok(Program {
            name: script.to_string(),
            argv,
            cwd: work.path().to_path_buf(),
        })
    }

    /// File name of the checkpoint image: `<basename of argv[0]>.ckpt`.
    pub fn image_name(&self) -> String {
        let base = Path::new(&self.argv[0]).file_name().expect("argv[0] has a file name");
        format!("{}.ckpt", base.to_string_lossy())
    }
}

/// Compile a C test program into `work`; returns the executable's path.
pub fn compile_c(work: &Workdir, source: &str, flags: &[&str]) -> Result<PathBuf> {
    let src = sources_dir().join(source);
    let stem = Path::new(source)
        .file_stem()
        .context("source has no name")?
        .to_string_lossy()
        .into_owned();
    let exe = work.join(&stem);
    let out = Command::new("gcc")
        .args(["-O2", "-g", "-Wall", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(flags)
        .output()
        .context("cannot run gcc (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "gcc failed to compile {} ({}):\n{}{}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))?;
    Ok(exe)
}

/// The real python3 interpreter found through PATH.
pub fn python3() -> Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import os, sys; print(os.path.realpath(sys.executable))"])
        .output()
        .context("cannot run python3 (is it installed and on PATH?)")?;
    if !out.status.success() {
        bail!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.is_absolute() || !path.is_file() {
        bail!("python3 reports a strange interpreter path {}", path.display());
    }
    Ok(path)
}

/// The C and Python test programs with the arguments the tests use (each runs about 2 s).
pub mod catalog {
    use super::Program;
    use crate::workdir::Workdir;
    use anyhow::Result;

    /// counter: 60 steps, 30 ms apart.
    pub fn counter(work: &Workdir) -> Result<Program> {
        Program::c(work, "counter.c", &[], &["60", "30"])
    }

    /// bigheap: `mib` MiB of random heap, 40 steps, 30 ms apart.
    pub fn bigheap(work: &Workdir, mib: u32) -> Result<Program> {
        Program::c(work, "bigheap.c", &[], &[&mib.to_string(), "40", "30"])
    }

    /// threads_mutex: 8 threads x 25 rounds = 200 steps, 10 ms apart.
    pub fn threads_mutex(work: &Workdir) -> Result<Program> {
        Program::c(work, "threads_mutex.c", &["-pthread"], &["25", "10"])
    }

    /// openmp_loop: 50 steps over 1 Mi words, 30 ms apart.
    pub fn openmp_loop(work: &Workdir) -> Result<Program> {
        Program::c(work, "openmp_loop.c", &["-fopenmp"], &["50", "1048576", "30"])
    }

    /// py_counter.py: 60 steps, 30 ms apart, with a second thread.
    pub fn py_counter(work: &Workdir) -> Result<Program> {
        Program::python(work, "py_counter.py", &["60", "30"])
    }
}
