//! A process tree's image set (`NAME.ckpt/` with its manifest, ckpt_image::tree): the tree as
//! text (each process under its parent, with its state and image), or `--json`; `--verify`
//! checks every image of the set; the report of one process's image: `ckpt-inspect SET/PID.ckpt`.

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
    for p in &m.procs {
        let (state, image, program, memory) = match &p.state {
            ProcState::Zombie { status } => (format!("zombie, wait status {status:#x}"), String::new(), String::new(), 0),
            ProcState::Live { image } => {
                let path = set.join(image);
                let r = Reader::open(&path).with_context(|| format!("{}", path.display()))?;
                if verify {
                    let chain = Chain::open(&path).with_context(|| format!("{}", path.display()))?;
                    crate::verify::all(&chain).with_context(|| format!("{}", path.display()))?;
                }
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
            .map(|(p, state, image, program, memory)| {
                serde_json::json!({ "pid": p.pid, "ppid": p.ppid, "pgid": p.pgid, "sid": p.sid, "state": state, "image": image, "command": program, "memory": memory })
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
    fn walk(s: &mut String, rows: &[(ckpt_image::tree::TreeProc, String, String, String, u64)], m: &Manifest, parent: i32, depth: usize) {
        for (p, state, image, program, memory) in rows.iter().filter(|(p, ..)| if parent == 0 { m.children_of(0).any(|q| q.pid == p.pid) } else { p.ppid == parent }) {
            let groups = if p.pgid != 0 || p.sid != 0 { format!(" pgid {} sid {}", p.pgid, p.sid) } else { String::new() };
            let what = if image.is_empty() { state.clone() } else { format!("{image}, {} of memory: {program}", crate::text::size(*memory)) };
            let _ = writeln!(s, "  {}{}{groups}  {what}", "  ".repeat(depth), p.pid);
            walk(s, rows, m, p.pid, depth + 1);
        }
    }
    walk(&mut s, &rows, &m, 0, 0);
    writeln!(s, "(`ckpt-inspect {}/<pid>.ckpt` shows one process's image)", set.display())?;
    Ok(s)
}
