//! Restart through an image chain, built here from a real image without the runtime's
//! increments: bigheap (32 MiB of random, mutated heap) is checkpointed and killed; its image F
//! is split into a full image B and an increment I over B such that only the chain is right:
//! - B holds F's pages, but a third of them replaced by garbage; I holds the right data for those
//!   (and for another third, overwriting B's right data), in chunks of a few pages that cut
//!   across B's chunks;
//! - at a page of each anonymous region that F does not store (zero), B holds garbage and I a
//!   zero chunk;
//! - file mappings do not inherit in I (they hold F's chunks), while B holds garbage there.
//!
//! `ckpt-restart I` must finish with the uninterrupted run's output (every step's probe of the
//! buffer, and the final hash of all of it), and so must a restart from the image that
//! `ckpt-inspect --flatten` makes of the chain, alone in another directory.

use anyhow::{ensure, Context, Result};
use ckpt_image::{Backing, Chunk, Decompressor, Index, Reader, Writer};
use ckpt_tests::programs::catalog;
use ckpt_tests::{checkpoint_and_kill, random_bytes, result_of, run_plain, run_restart, step_of, Bins, Options, Record, Workdir};
use std::path::Path;
use std::time::Duration;

const PAGE: usize = 4096;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where a page of F goes: B only, B garbled and I right, or both right.
fn placement(page: u64) -> u64 {
    (page.wrapping_mul(0x9e37_79b9) >> 11) % 3
}

/// Write runs of `pages` (region offset, bytes) as chunks of at most 8 contiguous pages.
fn write_runs(w: &mut Writer, pages: &[(u64, Vec<u8>)]) -> Result<Vec<Chunk>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pages.len() {
        let mut j = i + 1;
        while j < pages.len() && j - i < 8 && pages[j].0 == pages[j - 1].0 + PAGE as u64 {
            j += 1;
        }
        let data: Vec<u8> = pages[i..j].iter().flat_map(|(_, d)| d.iter().copied()).collect();
        out.push(w.write_chunk(pages[i].0, &data)?);
        i = j;
    }
    Ok(out)
}

/// Build B (`NAME.ckpt.1`) and I (`NAME.ckpt`) in `dir` from the full image `f`.
fn split(f: &Path, dir: &Path) -> Result<()> {
    let full = Reader::open(f)?;
    let name = f.file_name().context("image name")?.to_string_lossy().into_owned();
    let mut dec = Decompressor::new()?;
    let mut scratch = Vec::new();
    let mut b = Writer::new(std::fs::File::create(dir.join(format!("{name}.1")))?, 1)?;
    let mut i = Writer::new(std::fs::File::create(dir.join(&name))?, 1)?;
    let (mut bi, mut ii): (Index, Index) = (full.index.clone(), full.index.clone());
    let (mut garbled, mut seed) = (0, 1);
    for (ri, r) in full.index.regions.iter().enumerate() {
        let (mut b_pages, mut i_pages) = (Vec::new(), Vec::new());
        let file = matches!(r.backing, Backing::File { .. });
        let mut stored = vec![false; (r.len() as usize).div_ceil(PAGE)];
        for c in &r.chunks {
            let mut data = vec![0u8; c.raw_len as usize];
            full.read_chunk(c, &mut data, &mut dec, &mut scratch)?;
            for (k, page) in data.chunks(PAGE).enumerate() {
                let off = c.offset + (k * PAGE) as u64;
                stored[off as usize / PAGE] = true;
                seed += 1;
                let garbage = random_bytes(PAGE, seed);
                match if file { 1 } else { placement((r.start + off) / PAGE as u64) } {
                    0 => b_pages.push((off, page.to_vec())),
                    1 => {
                        b_pages.push((off, garbage));
                        i_pages.push((off, page.to_vec()));
                        garbled += 1;
                    }
                    _ => {
                        b_pages.push((off, page.to_vec()));
                        i_pages.push((off, page.to_vec()));
                    }
                }
            }
        }
        if r.backing == Backing::Anon {
            if let Some(p) = stored.iter().position(|s| !s) {
                let off = (p * PAGE) as u64;
                b_pages.push((off, random_bytes(PAGE, 7)));
                i_pages.push((off, vec![0; PAGE]));
                b_pages.sort_by_key(|(o, _)| *o);
                i_pages.sort_by_key(|(o, _)| *o);
            }
        }
        bi.regions[ri].chunks = write_runs(&mut b, &b_pages)?;
        ii.regions[ri].chunks = write_runs(&mut i, &i_pages)?;
        ii.regions[ri].inherit = !file && r.backing != Backing::Special;
    }
    ensure!(garbled > 1000, "only {garbled} pages of B were garbled");
    bi.meta.chain = 1;
    ii.meta.chain = 2;
    let (_, bh) = b.finish_increment(&bi, 0)?;
    i.finish_increment(&ii, bh.index_hash)?;
    Ok(())
}

/// `rec` continued the uninterrupted run: it began after step `after` (the checkpoint was taken
/// after it: no start over), and each of its step lines and its result are the plain run's.
fn continued(rec: &Record, plain: &Record, after: u64, what: &str) -> Result<()> {
    ensure!(rec.success(), "{what}: the restart failed\n{rec}");
    let steps: Vec<&str> = rec.stdout.lines().filter(|l| step_of(l).is_some()).collect();
    ensure!(!steps.is_empty(), "{what}: no step after the restart\n{rec}");
    ensure!(steps.first().and_then(|l| step_of(l)).is_some_and(|s| s > after), "{what}: the restart began at {:?}, not after step {after}\n{rec}", steps.first());
    for l in steps {
        ensure!(plain.stdout.lines().any(|p| p == l), "{what}: {l:?} is not in the uninterrupted run's output\n{rec}");
    }
    ensure!(result_of(&rec.stdout) == result_of(&plain.stdout), "{what}: result differs\n{rec}\n{plain}");
    Ok(())
}

#[test]
fn restart_through_a_chain_and_its_flattened_image() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("image-chain")?;
    let program = catalog::bigheap(&work, 32)?;
    let plain = run_plain(&program, false, TIMEOUT)?;
    let (image, cycle, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[10]))?;
    let dir = work.subdir("chain")?;
    split(&image, &dir)?;
    let newest = dir.join(image.file_name().context("image name")?);
    continued(&run_restart(&bins, &newest, &program.cwd, TIMEOUT)?, &plain, cycle.signalled_after_step, "the chain")?;

    let alone = work.subdir("alone")?;
    let flat = alone.join("moved.ckpt");
    let out = std::process::Command::new(bins.dir.join("ckpt-inspect")).arg("--flatten").arg(&flat).arg(&newest).output()?;
    ensure!(out.status.success(), "ckpt-inspect --flatten: {}", String::from_utf8_lossy(&out.stderr));
    continued(&run_restart(&bins, &flat, &program.cwd, TIMEOUT)?, &plain, cycle.signalled_after_step, "the flattened image")
}
