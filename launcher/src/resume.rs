//! `--resume`, `--requeue`, `--interval` and the image name: what ckpt-run decides before it
//! execs the program (or, to resume, ckpt-restart).

use anyhow::{bail, Context, Result};
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// "30s", "10m", "2h", "1d", "500ms", "90" (seconds), "1.5m" -> milliseconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?} (use e.g. 30s, 10m, 2h)"))?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" | "sec" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        "d" => 86400e3,
        u => bail!("bad duration unit {u:?} in {s:?} (use ms, s, m, h or d)"),
    };
    let ms = (n * scale).round();
    if !(1.0..=1e15).contains(&ms) {
        bail!("duration {s:?} is out of range");
    }
    Ok(ms as u64)
}

/// The image name: --name, or the program's file name; in a parallel job each task gets its own
/// name, NAME.RANK, so tasks sharing a directory do not overwrite each other's images.
pub fn image_name(explicit: Option<&OsStr>, program: &OsStr) -> OsString {
    let mut n = match explicit {
        Some(n) => n.to_os_string(),
        None => Path::new(program).file_name().map(|n| n.to_os_string()).unwrap_or_else(|| program.to_os_string()),
    };
    if let Some(rank) = task_rank(|v| std::env::var(v).ok()) {
        n.push(".");
        n.push(rank);
    }
    n
}

/// The variables in which launchers give a task its rank, and the size of its job (None: the
/// launcher gives no size, so the rank is always added), in the order they are looked at:
/// Slurm (srun), Open MPI (mpirun), MPICH's Hydra and other PMI launchers, PMIx.
pub const RANK_VARS: [(&str, Option<&str>); 4] = [
    ("SLURM_PROCID", Some("SLURM_STEP_NUM_TASKS")),
    ("OMPI_COMM_WORLD_RANK", Some("OMPI_COMM_WORLD_SIZE")),
    ("PMI_RANK", Some("PMI_SIZE")),
    ("PMIX_RANK", None),
];

/// This task's rank in a job of several tasks (the first launcher of RANK_VARS that says so),
/// or None for a job of one task. A rank must be a decimal number.
/// A daemon that a rewritten srun started (ckpt_step::join) has its rank in the joined step.
fn task_rank(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(j) = var(ckpt_step::join::JOIN_VAR).and_then(|j| ckpt_step::join::Join::decode(&j)) {
        let num = |v: &str| var(v).and_then(|x| x.trim().parse::<u32>().ok());
        return j.rank(num("SLURM_PROCID")?, num("SLURM_STEP_NUM_TASKS")?).map(|r| r.to_string());
    }
    RANK_VARS.iter().find_map(|(rank, size)| {
        let r = var(rank).filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))?;
        let several = match size {
            Some(s) => var(s).and_then(|v| v.trim().parse::<u32>().ok()).is_some_and(|n| n > 1),
            None => true,
        };
        several.then_some(r)
    })
}

/// The file execvp will run for `program`: a path with a `/` as it is, else the first
/// executable regular file of that name in PATH; absolute, symbolic links resolved.
pub fn resolve_program(program: &OsStr) -> Option<PathBuf> {
    let runnable = |p: &Path| -> Option<PathBuf> {
        let c = CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: c is a valid NUL-terminated path.
        let exec = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
        (exec && p.is_file()).then(|| p.canonicalize().ok()).flatten()
    };
    if program.as_bytes().contains(&b'/') {
        return runnable(Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).find_map(|d| runnable(&d.join(program)))
}

/// Identity of the file at `path` now (ckpt_image::FileId).
fn file_id(path: &Path) -> Option<ckpt_image::FileId> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero stat and statfs are valid out-parameters.
    let (mut st, mut fs): (libc::stat, libc::statfs) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: c is a valid path, st and fs valid out-parameters.
    let ok = unsafe { libc::stat(c.as_ptr(), &mut st) == 0 && libc::statfs(c.as_ptr(), &mut fs) == 0 };
    ok.then(|| ckpt_image::FileId::new(&st, fs.f_type))
}

/// Why an image of `origin` is not an image of `program` as it is now (None: it is).
fn other_program(origin: &ckpt_image::Origin, program: &Path) -> Option<String> {
    let recorded = Path::new(OsStr::from_bytes(&origin.program));
    if recorded != program {
        return Some(format!("it is an image of {}, not of {}", recorded.display(), program.display()));
    }
    let same_boot = !origin.boot_id.is_empty() && origin.boot_id == ckpt_image::boot_id();
    match file_id(program) {
        Some(now) if origin.program_id.same_version(&now, same_boot) => None,
        Some(_) => Some(format!("{} is not the file it was when the image was taken (replaced, rebuilt or modified)", program.display())),
        None => Some(format!("{} cannot be examined", program.display())),
    }
}

/// With --resume: exec `ckpt-restart IMAGE` with the newest generation of NAME in DIR whose
/// header and index verify (the restarter checks every chunk and falls back to older
/// generations from `NAME.ckpt`). Returns, to start fresh, when there is none, or when that
/// image is of another program than `program` (or of another version of it), saying why.
/// Refuses (an error) when a generation it looks at is not the user's own (`trust`):
/// restarting it would run someone else's code as the user. Passes `--no-namespace` on.
/// Some(status): this is a task of a step whose program had exited normally with that status
/// when the step's checkpoint was taken: it is not run again, ckpt-run exits with its status.
pub fn resume_if_possible(dir: &Path, name: &OsStr, program: Option<&Path>, no_namespace: bool) -> Result<Option<i32>> {
    let gens = ckpt_image::generations_of(dir, name.as_bytes());
    let euid = ckpt_image::trust::euid();
    let mut found = None;
    let step = ckpt_step::ident::Ident::from_env(|k| std::env::var(k).ok());
    let gens = match &step {
        Some(id) => match step_image(dir, name, id, &gens, euid)? {
            StepPart::Image(p) => vec![p],
            StepPart::Fresh => return Ok(None),
            StepPart::Ended(status) => return Ok(Some(status.into())),
        },
        None => gens,
    };
    for p in &gens {
        let Some(readable) = readable_image(p) else { continue };
        match ckpt_image::trust::read_owned(&readable, euid) {
            Ok(r) => {
                found = Some((p, r));
                break;
            }
            Err(e @ ckpt_image::ImageError::Untrusted(_)) => bail!("refusing to resume: {e}"),
            Err(_) => continue,
        }
    }
    let Some((image, reader)) = found else {
        if !gens.is_empty() {
            eprintln!("ckpt-run: no image of {} in {} can be read; starting fresh", name.to_string_lossy(), dir.display());
        }
        return Ok(None);
    };
    let why = match program {
        Some(prog) => other_program(&reader.index.meta.origin, prog),
        None => Some("the program cannot be found".to_string()),
    };
    if let Some(why) = why {
        eprintln!("ckpt-run: not resuming from {}: {why}; starting fresh", image.display());
        return Ok(None);
    }
    let exe = std::env::current_exe().context("cannot find our own executable")?;
    let restart = exe.with_file_name("ckpt-restart");
    if !restart.is_file() {
        bail!("cannot resume: {} not found next to ckpt-run", restart.display());
    }
    eprintln!("ckpt-run: resuming from {}", image.display());
    let flag = no_namespace.then(|| OsString::from("--no-namespace"));
    let argv = [Some(restart.into_os_string()), flag, Some(image.clone().into_os_string())]
        .into_iter()
        .flatten()
        .map(|a| CString::new(a.into_vec()).context("path contains a NUL byte"))
        .collect::<Result<Vec<_>>>()?;
    let ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    // SAFETY: a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
    bail!("cannot run ckpt-restart: {}", std::io::Error::last_os_error())
}

/// The image file that says what generation `p` is: `p` itself, or for a process tree's set (a
/// directory) its root process's image (which program it is; for a task of a step, the image
/// whose hash the step's manifest names). None: a set without a readable manifest or root.
fn readable_image(p: &Path) -> Option<PathBuf> {
    match ckpt_image::tree::Manifest::read(p) {
        None => Some(p.to_path_buf()),
        Some(Ok(m)) => m.root_image().map(|image| p.join(image)),
        Some(Err(_)) => None,
    }
}

/// What a task of a step resumes from.
enum StepPart {
    /// No complete checkpoint of the step: start fresh.
    Fresh,
    /// This task's image of it.
    Image(PathBuf),
    /// This task's program had exited with this status when it was taken.
    Ended(u8),
}

/// A task of a Slurm step resumes from the step's last complete checkpoint only (the manifest
/// `BASE.step` names each task's image): the image of this task it names, Fresh (no complete
/// checkpoint; every task sees the same manifest, so all start fresh), or Ended when the
/// manifest records that the task's program had exited normally (`rank R ended STATUS`).
fn step_image(dir: &Path, name: &OsStr, id: &ckpt_step::ident::Ident, gens: &[PathBuf], euid: u32) -> Result<StepPart> {
    let base = ckpt_step::ident::base_name(&name.to_string_lossy(), id.rank);
    let d = ckpt_step::files::Dir::open(dir.as_os_str().as_bytes()).map_err(|e| anyhow::anyhow!(e))?;
    let mname = ckpt_step::files::manifest_name(&base);
    let Some(m) = d.read_own(&mname, 1 << 20).map_err(|e| anyhow::anyhow!("refusing to resume: {e}"))? else {
        if !gens.is_empty() {
            eprintln!("ckpt-run: no complete checkpoint of the step in {} (no {mname}); starting fresh", dir.display());
        }
        return Ok(StepPart::Fresh);
    };
    let m = ckpt_step::files::Manifest::decode(&m).with_context(|| format!("refusing to resume: {} is not a step manifest", d.show(&mname)))?;
    // (A task of a joined step knows the ranks up to its srun's last; a srun started alongside
    // has the ranks after: `Ident::fits`.)
    if !u32::try_from(m.hashes.len()).is_ok_and(|n| id.fits(n)) {
        bail!("refusing to resume: {} is a checkpoint of a step of {} tasks, this step has {} (run it with as many tasks, or remove {} to start afresh)", d.show(&mname), m.hashes.len(), id.ntasks, d.show(&mname));
    }
    // A task whose program had exited normally while the others ran: it is done.
    if let Some(status) = m.exit_status(id.rank).filter(|_| m.ended(id.rank)) {
        eprintln!("ckpt-run: task {} of the step had exited with status {status} when step checkpoint {} was taken ({}): not running it again", id.rank, m.generation, d.show(&mname));
        return Ok(StepPart::Ended(status));
    }
    // A task of a srun that had ended when the checkpoint was taken: a restart of the tree
    // does not run that srun again, so this is a srun of its own, not one to resume.
    let Some(want) = m.hashes[id.rank as usize] else {
        bail!("refusing to resume: task {} of the step had ended when step checkpoint {} was taken ({} says so): there is nothing of it to resume", id.rank, m.generation, d.show(&mname));
    };
    for p in gens {
        let Some(readable) = readable_image(p) else { continue };
        match ckpt_image::trust::read_owned(&readable, euid) {
            Ok(r) if r.header.index_hash == want => return Ok(StepPart::Image(p.clone())),
            Ok(_) => continue,
            Err(e @ ckpt_image::ImageError::Untrusted(_)) => bail!("refusing to resume: {e}"),
            Err(_) => continue,
        }
    }
    bail!("refusing to resume: task {}'s image of step checkpoint {} (named in {}) is not in {}", id.rank, m.generation, d.show(&mname), dir.display())
}

/// With --requeue inside a Slurm job: the scontrol the runtime will run (None outside Slurm).
pub fn requeue_command() -> Result<Option<PathBuf>> {
    if std::env::var_os("SLURM_JOB_ID").is_none() {
        return Ok(None);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let c = d.join("scontrol");
        if c.is_file() {
            return Ok(Some(c));
        }
    }
    bail!("--requeue: scontrol is not in PATH")
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, task_rank};

    fn rank_of(vars: &[(&str, &str)]) -> Option<String> {
        task_rank(|v| vars.iter().find(|(k, _)| *k == v).map(|(_, x)| x.to_string()))
    }

    #[test]
    fn ranks_of_every_launcher() {
        assert_eq!(rank_of(&[]), None);
        assert_eq!(rank_of(&[("SLURM_PROCID", "1"), ("SLURM_STEP_NUM_TASKS", "2")]).as_deref(), Some("1"));
        // One Slurm task running mpirun: the MPI rank names the task.
        let nested = [("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "1"), ("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "4")];
        assert_eq!(rank_of(&nested).as_deref(), Some("3"));
        assert_eq!(rank_of(&[("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "1")]), None);
        assert_eq!(rank_of(&[("PMI_RANK", "5"), ("PMI_SIZE", "8")]).as_deref(), Some("5"));
        assert_eq!(rank_of(&[("PMIX_RANK", "0")]).as_deref(), Some("0"));
        // Not a number: not part of a file name.
        assert_eq!(rank_of(&[("PMI_RANK", "../x"), ("PMI_SIZE", "2")]), None);
        // The one daemon a rewritten srun started: task 1 of the joined step, not srun's task 0.
        assert_eq!(rank_of(&[("CKPT_STEP_JOIN", "1:2:mpirun"), ("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "1")]).as_deref(), Some("1"));
        assert_eq!(rank_of(&[("CKPT_STEP_JOIN", "1:2:mpirun"), ("SLURM_PROCID", "1"), ("SLURM_STEP_NUM_TASKS", "2")]), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000);
        assert_eq!(parse_duration("10m").unwrap(), 600_000);
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration("90").unwrap(), 90_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500);
        assert_eq!(parse_duration("1.5m").unwrap(), 90_000);
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
    }
}
