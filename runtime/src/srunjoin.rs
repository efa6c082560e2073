//! The exec of Slurm's `srun` by a member of a process tree inside a Slurm job (an MPI
//! launcher starting its daemons on the job's nodes: Open MPI's `orted`, MPICH's
//! `hydra_pmi_proxy`), rewritten so that each of srun's tasks runs under `ckpt-run` as a task
//! of a *joined step* whose rank 0 is this tree (docs/multinode.md, part 1b;
//! `ckpt_step::join`): `srun OPTIONS ckpt-run --dir DIR --name NAME -- PROGRAM ...`, with
//! `CKPT_STEP_JOIN` in srun's environment (which srun passes on to its tasks).
//!
//! Two sruns of the tree at once get ranks apart (srunranks.rs): the first `1..=N`, the next
//! the ranks after while the first runs.
//!
//! Not on by default yet: only with `CKPT_JOIN_SRUN=1` in the environment of the exec. Until
//! rank 0 coordinates the joined step and a restart runs srun again (docs/multinode.md, parts
//! 1b and 3), a checkpoint of a tree holding srun is refused at once (ckpt-ns `launchers`),
//! with or without the rewrite. An srun this cannot read for certain is left as it is.

use crate::launch::Argv;
use ckpt_image::Launch;
use ckpt_step::join::{self, Join, Prefix};
use std::ffi::{c_char, CStr, CString};

/// srun's argv and environment as they are exec'd instead of the caller's.
pub struct Rewritten {
    _strings: Vec<CString>,
    /// The image directory and step the srun's ranks were taken in (`srunranks`).
    dir: Vec<u8>,
    tag: String,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl Rewritten {
    pub fn argv(&self) -> Argv {
        self.argv.as_ptr()
    }
    pub fn envp(&self) -> Argv {
        self.envp.as_ptr()
    }

    /// The exec failed: the ranks taken for srun are free again.
    pub fn failed(&self) {
        crate::srunranks::release(&self.dir, &self.tag);
    }
}

/// The strings of a NULL-terminated array (None for a NULL array or one not UTF-8).
fn strings(v: Argv) -> Option<Vec<String>> {
    if v.is_null() {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: v is a NULL-terminated array of C strings (the exec caller's contract).
        let p = unsafe { *v.add(i) };
        if p.is_null() {
            return Some(out);
        }
        // SAFETY: as above.
        out.push(unsafe { CStr::from_ptr(p) }.to_str().ok()?.to_string());
        i += 1;
    }
}

/// `file` (an exec's path or name) is Slurm's srun.
pub fn is_srun(file: *const c_char) -> bool {
    // SAFETY: the exec caller's NUL-terminated path (checked for NULL).
    !file.is_null() && unsafe { CStr::from_ptr(file) }.to_bytes().rsplit(|&b| b == b'/').next() == Some(b"srun")
}

/// ckpt-run of the same build as this runtime (next to it), if it is there.
fn ckpt_run(l: &Launch) -> Option<String> {
    let rt = std::str::from_utf8(crate::launch::runtime_path(l)).ok()?;
    let p = std::path::Path::new(rt).with_file_name("ckpt-run");
    let c = CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path.
    (unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0).then(|| p.to_string_lossy().into_owned())
}

/// The rewrite of an exec of srun (`is_srun`) with `argv` and `envp` by this member of a tree
/// (None: the exec goes on as it is). Allocates: call it inside the gate.
pub fn rewrite(l: &Launch, argv: Argv, envp: Argv) -> Option<Rewritten> {
    if !crate::tree::is_member() {
        return None;
    }
    let env = strings(envp)?;
    let var = |k: &str| env.iter().find_map(|e| e.strip_prefix(k).and_then(|v| v.strip_prefix('=')).map(String::from));
    // Opt-in; inside a job; not a tree that is itself a task of an srun step (nested steps).
    if var("CKPT_JOIN_SRUN").as_deref() != Some("1") || var("SLURM_JOB_ID").is_none() || var("SLURM_STEP_NUM_TASKS").is_some() || var(join::JOIN_VAR).is_some() {
        return None;
    }
    let args = strings(argv)?;
    let run = ckpt_run(l)?;
    let dir = std::str::from_utf8(&l.dir).ok()?;
    let name = std::str::from_utf8(&l.name).ok()?;
    let p = Prefix { ckpt_run: &run, dir, name, signal: l.signal, stop_signal: l.stop_signal, resume: false };
    let (args, n) = join::rewrite_srun(&args, &p, var)?;
    // Ranks of its own in the joined step: another srun of the tree may run alongside.
    let job = var("SLURM_JOB_ID")?;
    let (offset, size) = match crate::srunranks::take(&l.dir, name, job.as_bytes(), n) {
        Ok(r) => r,
        Err(e) => {
            crate::log::log!(crate::log::ERROR, "srun is not made a part of the joined step {name}: {e}");
            return None;
        }
    };
    let j = Join { tag: name.to_string(), offset, size };
    let env: Vec<String> = env.into_iter().chain([format!("{}={}", join::JOIN_VAR, j.encode())]).collect();
    let strings: Vec<CString> = args.iter().chain(env.iter()).map(|s| CString::new(s.as_str())).collect::<Result<_, _>>().ok()?;
    let ptr = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    let (argv, envp) = (ptr(&strings[..args.len()]), ptr(&strings[args.len()..]));
    crate::log::log!(crate::log::INFO, "srun runs its tasks under ckpt-run as tasks {offset}..{} of the joined step {name}", size - 1);
    Some(Rewritten { _strings: strings, argv, envp, dir: l.dir.clone(), tag: name.to_string() })
}
