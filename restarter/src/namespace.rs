//! Restarting in namespaces of the program's own (ckpt-ns): this process stays outside and
//! stands for the program; init, pid 1 of a new user, pid and mount namespace, creates the
//! restarting process with the program's old pid (clone3 set_tid) in a time namespace that
//! continues its clocks, and that process runs this same program again with `--no-namespace`,
//! which restores the image in place (and the runtime gives the threads their old ids).
//! Where namespaces cannot be had, the restart happens in this process with virtual ids.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// What the namespace needs from the images: the pid (of the newest that reads), the clocks
/// to continue (the latest of them all: a restart from an older generation then sees the
/// clocks jump forward, never back), the signals to forward marked and the processes restored.
struct Target {
    pid: i32,
    clocks: ckpt_ns::Clocks,
    marked: Vec<i32>,
    /// The program's image directory, checked from here: inside, its owner may not show.
    trusted_dir: Option<(u64, u64)>,
    /// Where init, the coordinator of the program's process tree, commits its sets.
    tree: Option<ckpt_ns::TreeTarget>,
    /// The processes that say when they run again (`ckpt_ns::Options::restored`).
    restored: Vec<i32>,
    /// The indices of the program's own pseudo-terminal pairs (`ckpt_ns::Options::pairs`).
    pairs: Vec<u32>,
}

/// The indices of the pseudo-terminal pairs whose ends `fds` holds.
fn pair_indices(fds: &[ckpt_image::FdState]) -> impl Iterator<Item = u32> + '_ {
    fds.iter().filter_map(|f| match &f.kind {
        ckpt_image::FdKind::Tty(t) => ckpt_kinds::tty::pair_index(t),
        _ => None,
    })
}

/// The image directory `dir` if it is the user's (or root's, sticky): its device and inode.
fn checked_dir(dir: &[u8]) -> Option<(u64, u64)> {
    let m = std::fs::metadata(std::ffi::OsStr::from_bytes(dir)).ok()?;
    let ok = m.is_dir() && ckpt_image::trust::dir_problem(m.uid(), m.mode(), ckpt_image::trust::euid()).is_none();
    ok.then_some((m.dev(), m.ino()))
}

/// Only images of the user's own are looked at (`trust::read_owned`): with any other, we
/// return None and the restart in place refuses it, naming its owner as seen from here.
fn target(image: &Path, set: Option<&Path>) -> Option<Target> {
    let mut t: Option<Target> = None;
    let euid = ckpt_image::trust::euid();
    // A tree's set: the namespace is made for its root process.
    // (Root restarting its tree whose root process ran as another user: taken by that user.)
    let mut pairs = Vec::new();
    let (candidates, generation, keep, restored, taker) = match set {
        Some(s) => {
            let (root, mut m) = crate::tree::root_image(s).ok()?;
            let taker = m.taker(m.root, euid);
            // Every process the restart makes and restores (not one run again: srun).
            m.drop_not_made();
            let restored = m.live().map(|(p, _)| p.pid).filter(|pid| !m.reexec.contains(pid)).collect();
            // The other processes' pairs (an image that does not read: its restart says why).
            for (p, image) in m.live().filter(|(p, _)| p.pid != m.root) {
                if let Ok(r) = ckpt_image::trust::read_taken_by(&s.join(image), euid, m.taker(p.pid, euid)) {
                    pairs.extend(pair_indices(&r.index.fds));
                }
            }
            (vec![root], m.generation, m.keep.unwrap_or(ckpt_image::DEFAULT_KEEP), Some(restored), taker)
        }
        None => (crate::candidates(image).ok()?, 0, ckpt_image::DEFAULT_KEEP, None, euid),
    };
    for c in candidates {
        let r = match ckpt_image::trust::read_taken_by(&c, euid, taker) {
            Ok(r) => r,
            Err(ckpt_image::ImageError::Untrusted(_)) => return None,
            Err(_) => continue,
        };
        let ids = &r.index.ids;
        let clocks = ckpt_ns::Clocks { monotonic: ids.monotonic_ns, boottime: ids.boottime_ns };
        pairs.extend(pair_indices(&r.index.fds));
        match &mut t {
            None => {
                let marked = [ids.signal, ids.stop_signal].into_iter().filter(|&s| s > 0).collect();
                // The sets go where the program's images go, under its image name.
                let tree = match set {
                    Some(s) => crate::tree::target(s, generation, keep),
                    None => crate::tree::target(&c, r.index.meta.generation, keep),
                };
                // The directory the image is in (where the next images go: the runtime's
                // `move_image_dir`), which need not be the one it was written to.
                let dir = tree.as_ref().map(|t| t.dir.clone()).or_else(|| std::path::absolute(&c).ok()?.parent().map(Path::to_path_buf));
                let trusted_dir = dir.and_then(|d| checked_dir(d.as_os_str().as_bytes()));
                let restored = restored.clone().unwrap_or_else(|| vec![r.index.meta.pid]);
                t = Some(Target { pid: r.index.meta.pid, clocks, marked, trusted_dir, tree, restored, pairs: Vec::new() })
            }
            Some(t) => {
                t.clocks.monotonic = t.clocks.monotonic.max(clocks.monotonic);
                t.clocks.boottime = t.clocks.boottime.max(clocks.boottime);
            }
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    t.map(|t| Target { pairs, ..t }).filter(|t| t.pid > 1)
}

/// Whether we are the restarting process a namespace's init started (with `--no-namespace`).
pub fn started_by_init() -> bool {
    // SAFETY: getppid has no preconditions.
    std::env::var_os("CKPT_OUTER_PID").is_some() && unsafe { libc::getppid() } == 1
}

/// Restart in the program's own namespaces and stand for it until it ends (never returns).
/// Returns when namespaces are turned off (`off`) or unavailable (after saying so), or when no
/// image can be read (the restart in place then reports why).
pub fn restart_inside(image: &Path, set: Option<&Path>, off: Option<&'static str>) {
    let started = match off {
        Some(why) => Err(ckpt_ns::Unavailable::Disabled(why)),
        None => match target(image, set) {
            Some(t) => start(&t),
            None => return ckpt_ns::unblock_early(),
        },
    };
    std::env::remove_var("CKPT_OUTER_PID");
    std::env::remove_var("CKPT_TRUSTED_DIR");
    ckpt_ns::supervise_or_explain(started, "ckpt-restart", "the program continues in this process with virtual ids");
    // In place after all: signals act on this process as they did before it blocked them.
    ckpt_ns::unblock_early();
}

fn start(t: &Target) -> Result<ckpt_ns::Namespace, ckpt_ns::Unavailable> {
    let other = |e: std::io::Error| ckpt_ns::Unavailable::Other(e);
    let exe = std::env::current_exe().map_err(other)?;
    let cstr = |v: Vec<u8>| CString::new(v).map_err(|e| other(std::io::Error::other(e)));
    let mut argv = vec![cstr(b"ckpt-restart".to_vec())?, cstr(b"--no-namespace".to_vec())?];
    for a in std::env::args_os().skip(1) {
        argv.push(cstr(a.into_vec())?);
    }
    std::env::set_var("CKPT_OUTER_PID", std::process::id().to_string());
    match t.trusted_dir {
        Some((dev, ino)) => std::env::set_var("CKPT_TRUSTED_DIR", format!("{dev}:{ino}")),
        None => std::env::remove_var("CKPT_TRUSTED_DIR"),
    }
    let payload = ckpt_ns::Payload::Restore { exe: cstr(exe.into_os_string().into_vec())?, argv, pid: t.pid, clocks: Some(t.clocks) };
    ckpt_ns::start(&payload, &ckpt_ns::Options { tool: "ckpt-restart", marked: t.marked.clone(), tree: t.tree.clone(), restored: t.restored.clone(), pairs: t.pairs.clone() })
}
