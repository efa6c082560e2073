//! Per-test scratch directories.
//!
//! Each test gets its own directory under `std::env::temp_dir()` (so tests can run in parallel),
//! mode 1777 (world-writable and sticky, like /tmp) so that tests running commands as another
//! user (nobody, or users a test creates) can write to it, with an `images` subdirectory (also
//! 1777) for checkpoint images. ckpt accepts such a directory (owned by root, sticky) as an
//! image directory; it refuses a world-writable one without the sticky bit. The directory is removed when the [`Workdir`]
//! is dropped, unless the environment variable `CKPT_TESTS_KEEP` is set (for debugging).

use anyhow::{Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory owned by one test.
pub struct Workdir {
    path: PathBuf,
}

impl Workdir {
    /// Create a fresh, empty, world-writable, sticky directory named after the test.
    pub fn new(name: &str) -> Result<Workdir> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ckpt-tests-{name}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).with_context(|| format!("cannot clean {}", path.display()))?;
        }
        create_world_writable(&path)?;
        let dir = Workdir { path };
        create_world_writable(&dir.images())?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the checkpoint images go (`ckpt-run --dir`).
    pub fn images(&self) -> PathBuf {
        self.path.join("images")
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Create a world-writable, sticky subdirectory.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        create_world_writable(&p)?;
        Ok(p)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        end_namespaces_of(&self.path);
        if std::env::var_os("CKPT_TESTS_KEEP").is_some() {
            eprintln!("CKPT_TESTS_KEEP: keeping {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// SIGKILL every ckpt-init whose command line (ckpt-run's or ckpt-restart's) names a path in
/// `dir`: processes a test's program left behind live on in their namespace after ckpt-run
/// returned (docs/namespaces.md); killing its init ends them, so no test leaves a process
/// running once its directory is gone.
fn end_namespaces_of(dir: &Path) {
    // The directory itself or a path in it ("-1" must not match "-10"'s paths).
    let dir = dir.as_os_str().as_encoded_bytes();
    let needles = [[dir, b"/"].concat(), [dir, b"\0"].concat()];
    let Ok(rd) = std::fs::read_dir("/proc") else { return };
    for pid in rd.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm != b"ckpt-init\n" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if needles.iter().any(|n| cmdline.windows(n.len()).any(|w| w == n.as_slice())) {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn create_world_writable(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    // Explicit chmod: create_dir_all is subject to the umask.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o1777))
        .with_context(|| format!("cannot chmod {}", p.display()))
}
