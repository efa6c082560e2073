//! A process tree's image set (`NAME.ckpt/` with its manifest, ckpt_image::tree): the tree as
//! text (each process under its parent, with its state, its image and the chain of older images
//! of the set an increment builds on), or `--json`; `--verify` checks every image of the set
//! and of each chain; the report of one process's image: `ckpt-inspect SET/PID.ckpt`.

use anyhow::{anyhow, bail, Context, Result};
use ckpt_image::tree::{Manifest, ProcState};
use ckpt_image::{Chain, Reader};
use std::fmt::Write;
use std::path::Path;

pub fn render(set: &Path, json: bool, verify: bool, flatten: bool) -> Result<String> {
    if flatten {
        bail!("{}: a process tree's set cannot be flattened into one image", set.display());
    }
    let m = Manifest::read(set).ok_or_else(|| anyhow!("{}: no manifest", set.display()))?.map_err(|e| anyhow!(e))?;
    let mut rows = Vec::new();
    let mut chains = Vec::new();
    for p in &m.procs {
        let (state, image, program, memory) = match &p.state {
            ProcState::Zombie { status } => {
                chains.push(Links::default());
                (format!("zombie, wait status {status:#x}"), String::new(), String::new(), 0)
            }
            ProcState::Live { image } => {
                let path = set.join(image);
                let r = Reader::open(&path).with_context(|| format!("{}", path.display()))?;
                let chain = (r.header.parent != 0).then(|| Chain::open(&path).map_err(|e| e.to_string()));
                if verify {
                    let chain = Chain::open(&path).with_context(|| format!("{}", path.display()))?;
                    crate::verify::all(&chain).with_context(|| format!("{}", path.display()))?;
                }
                chains.push(Links::of(&path, chain));
                let mem: u64 = r.index.regions.iter().flat_map(|g| &g.chunks).map(|c| c.raw_len).sum();
                let cmd = r.index.meta.cmdline.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" ");
                ("live".to_string(), image.clone(), cmd, mem)
            }
        };
        rows.push((p.clone(), state, image, program, memory));
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .zip(&chains)
            .map(|((p, state, image, program, memory), c)| {
                serde_json::json!({ "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid, "state": state, "image": image, "command": program, "memory": memory,
                    "stored": c.stored, "chain": c.images, "chain_problem": c.problem })
            })
            .collect();
        let doc = serde_json::json!({ "set": set.display().to_string(), "generation": m.generation, "root": m.root, "processes": v, "verified": verify });
        return Ok(serde_json::to_string_pretty(&doc)? + "\n");
    }
    let mut s = String::new();
    writeln!(s, "image set:   {} (checkpoint {}, {} processes)", set.display(), m.generation, m.procs.len())?;
    if verify {
        writeln!(s, "verified:    every chunk of every image")?;
    }
    writeln!(s, "tree:")?;
    type Row = (ckpt_image::tree::TreeProc, String, String, String, u64);
    fn walk(s: &mut String, rows: &[Row], chains: &[Links], m: &Manifest, parent: i32, depth: usize) {
        for ((p, state, image, program, memory), c) in rows.iter().zip(chains).filter(|((p, ..), _)| if parent == 0 { m.children_of(0).any(|q| q.pid == p.pid) } else { p.ppid == parent }) {
            let groups = if p.pgid != 0 || p.sid != 0 { format!(" pgid {} sid {}", p.pgid, p.sid) } else { String::new() };
            let what = if image.is_empty() { state.clone() } else { format!("{image}, {} of memory{}, {}: {program}", crate::text::size(*memory), if c.images.len() > 1 { " changed" } else { "" }, c.describe()) };
            let _ = writeln!(s, "  {}{}{groups}  {what}", "  ".repeat(depth), p.pid);
            walk(s, rows, chains, m, p.pid, depth + 1);
        }
    }
    walk(&mut s, &rows, &chains, &m, 0, 0);
    writeln!(s, "(`ckpt-inspect {}/<pid>.ckpt` shows one process's image)", set.display())?;
    Ok(s)
}

/// A live process's image and the older images of the set it builds on.
#[derive(Default)]
struct Links {
    /// The file names of the chain, newest first (the image itself first).
    images: Vec<String>,
    /// Bytes on disk of the image itself.
    stored: u64,
    /// Why the chain does not read (a parent missing or damaged).
    problem: Option<String>,
}

impl Links {
    /// `chain`: None for a full image, else the image's chain as it opened.
    fn of(path: &Path, chain: Option<std::result::Result<Chain, String>>) -> Links {
        let name = |p: &Path| p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let stored = std::fs::metadata(path).map_or(0, |m| m.len());
        match chain {
            None => Links { images: vec![name(path)], stored, problem: None },
            Some(Ok(c)) => Links { images: c.paths().iter().map(|p| name(p)).collect(), stored, problem: None },
            Some(Err(e)) => Links { images: vec![name(path)], stored, problem: Some(e) },
        }
    }

    fn describe(&self) -> String {
        let size = crate::text::size(self.stored);
        match (&self.problem, self.images.len()) {
            (Some(e), _) => format!("{size} on disk, an increment whose chain does not read ({e})"),
            (None, 1) => format!("{size} on disk, full image"),
            (None, n) => format!("{size} on disk, increment over {} (chain of {n})", self.images[1..].join(" < ")),
        }
    }
}
