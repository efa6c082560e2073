//! Throw-away users, for tests about what one user on a node can do to another's checkpoints
//! (a victim and an attacker). Creating users needs root: without it [`TestUser::create`]
//! returns None and the test reports itself skipped. Each user gets a unique name and no home
//! directory, and is removed (with its group) when the [`TestUser`] is dropped, also when the
//! test fails.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A user that exists for the duration of one test.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    /// Create a user whose name starts with `tag` (a few letters); None when not root.
    pub fn create(tag: &str) -> Result<Option<TestUser>> {
        if !crate::scenario::is_root() {
            return Ok(None);
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("ck{tag}{}x{n}", std::process::id());
        let out = Command::new("useradd")
            .args(["--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .context("cannot run useradd")?;
        if !out.status.success() {
            bail!("useradd {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        // From here on, Drop removes the user whatever happens.
        let mut user = TestUser { name, uid: u32::MAX, gid: u32::MAX };
        let id = |flag: &str| -> Result<u32> {
            let o = Command::new("id").args([flag, &user.name]).output()?;
            String::from_utf8_lossy(&o.stdout).trim().parse().with_context(|| format!("id {flag} {}", user.name))
        };
        user.uid = id("-u")?;
        user.gid = id("-g")?;
        Ok(Some(user))
    }

    /// A command running `argv` as this user (real and effective ids, its groups), in `cwd`,
    /// with only stdin/stdout/stderr open and no CKPT_* settings inherited (as
    /// `scenario::user_command`).
    pub fn command(&self, argv: &[OsString], cwd: &Path) -> Command {
        let mut full: Vec<OsString> = ["setpriv", "--reuid", &self.name, "--regid", &self.name, "--init-groups", "--"].iter().map(OsString::from).collect();
        full.extend(argv.iter().cloned());
        crate::scenario::user_command(&full, false, cwd)
    }

    /// Give `path` to this user (chown, not following a symbolic link).
    pub fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid)).with_context(|| format!("chown {} {}", self.name, path.display()))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // userdel refuses while a process of the user runs: the test's processes (killed when
        // their handles drop) may take a moment to go.
        for _ in 0..50 {
            if Command::new("userdel").arg(&self.name).output().is_ok_and(|o| o.status.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("warning: could not remove the test user {}", self.name);
    }
}
