//! Corrupted images: a flipped byte in the index, in a data chunk; truncations at several
//! offsets (inside the header, the data, the index); an empty file; random bytes; an unfinished
//! image; an image of a future format version. `ckpt-restart` and `ckpt-inspect` (with and
//! without --verify) must each print one clear line and exit non-zero: never crash, hang, or
//! start a program. The untouched image is the control: it inspects, verifies and restarts.

mod failures_support;

use anyhow::{bail, ensure, Context, Result};
use ckpt_image::{Header, HEADER_LEN, VERSION};
use ckpt_tests::{checkpoint_and_kill, clean_failure, random_bytes, result_of, run_restart, Bins, Options, Program, Workdir};
use failures_support::{clean_tool_failure, inspect};
use std::path::PathBuf;
use std::time::Duration;

struct Case {
    what: String,
    path: PathBuf,
    /// Only a full read of the chunks finds it (plain ckpt-inspect reads header and index).
    data_only: bool,
    /// Words the error message must contain.
    says: &'static str,
}

fn variants(image: &[u8], dir: &std::path::Path) -> Result<Vec<Case>> {
    let len = image.len();
    let h = Header::decode(&image[..HEADER_LEN], len as u64)?;
    let (data_start, data_end) = (HEADER_LEN, HEADER_LEN + h.data_len as usize);
    let (ix_start, ix_end) = (h.index_offset as usize, (h.index_offset + h.index_len) as usize);
    ensure!(data_end > data_start + 16 && ix_end > ix_start + 16, "the image has too little data or index");
    let mut out = Vec::new();
    let mut add = |what: String, name: &str, bytes: Vec<u8>, data_only: bool, says: &'static str| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes)?;
        out.push(Case { what, path, data_only, says });
        Ok(())
    };
    for (name, at) in [("index-first", ix_start), ("index-middle", (ix_start + ix_end) / 2), ("index-last", ix_end - 1)] {
        let mut v = image.to_vec();
        v[at] ^= 0x01;
        add(format!("a flipped bit in the index (byte {at})"), &format!("{name}.ckpt"), v, false, "index checksum")?;
    }
    for (name, at) in [("data-first", data_start), ("data-middle", (data_start + data_end) / 2), ("data-last", data_end - 1)] {
        let mut v = image.to_vec();
        v[at] ^= 0x80;
        add(format!("a flipped bit in a data chunk (byte {at})"), &format!("{name}.ckpt"), v, true, "checksum")?;
    }
    for cut in [1, 8, 40, HEADER_LEN, HEADER_LEN + 1, (data_start + data_end) / 2, data_end, (ix_start + ix_end) / 2, len - 1] {
        add(format!("the image truncated to {cut} of {len} bytes"), &format!("trunc-{cut}.ckpt"), image[..cut].to_vec(), false, "")?;
    }
    add("an empty file".into(), "empty.ckpt", Vec::new(), false, "empty")?;
    add("64 KiB of random bytes".into(), "random.ckpt", random_bytes(65536, 0xfeed_beef), false, "not a ckpt image")?;
    let mut v = image.to_vec();
    v[..HEADER_LEN].fill(0);
    add("an unfinished image (header still zero)".into(), "unfinished.ckpt", v, false, "never completed")?;
    let mut v = image.to_vec();
    v[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    ckpt_image::reseal(&mut v);
    add(format!("an image of format version {}", VERSION + 1), "future.ckpt", v, false, "not supported")?;
    Ok(out)
}

#[test]
fn corrupted_images_fail_cleanly_in_restart_and_inspect() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-corrupt")?;
    let program = Program::c(&work, "counter.c", &[], &["40", "20"])?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    let pristine = std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
    let dir = work.subdir("corrupt")?;
    let cases = variants(&pristine, &dir)?;

    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                let (bins, work) = (&bins, &work);
                s.spawn(move || -> Result<()> {
                    let mut problems = Vec::new();
                    let rec = run_restart(bins, &c.path, work.path(), Duration::from_secs(30))?;
                    match clean_failure(&rec) {
                        Err(p) => problems.push(format!("ckpt-restart: {p}")),
                        Ok(()) if !rec.stderr.contains(c.says) => problems.push(format!("ckpt-restart does not say {:?}: {}", c.says, rec.stderr.trim())),
                        Ok(()) => {}
                    }
                    let mut modes = vec![vec!["--verify"], vec!["--verify", "--json"]];
                    if !c.data_only {
                        modes.push(vec![]);
                    }
                    for args in modes {
                        let rec = inspect(bins, &args, &c.path, work.path())?;
                        match clean_tool_failure(&rec, "ckpt-inspect") {
                            Err(p) => problems.push(format!("ckpt-inspect {args:?}: {p}")),
                            Ok(line) if !line.contains(c.says) => problems.push(format!("ckpt-inspect {args:?} does not say {:?}: {line}", c.says)),
                            Ok(_) => {}
                        }
                    }
                    if c.data_only {
                        // Without --verify the chunks are not read: the structure is fine.
                        let rec = inspect(bins, &[], &c.path, work.path())?;
                        if !rec.success() {
                            problems.push(format!("plain ckpt-inspect failed on an image whose header and index are intact\n{rec}"));
                        }
                    }
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        bail!("{}:\n  - {}", c.what, problems.join("\n  - "))
                    }
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().expect("case thread panicked").err().map(|e| format!("{e:#}"))).collect()
    });
    if !failures.is_empty() {
        bail!("{} of {} corrupted images were not rejected cleanly:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    }

    // Control: the untouched image inspects, verifies (naming what it checked) and restarts.
    let rec = inspect(&bins, &["--verify"], &image, work.path())?;
    ensure!(rec.success() && rec.stdout.contains("match their checksums") && rec.stdout.contains("program    counter"), "control: ckpt-inspect --verify\n{rec}");
    let rec = inspect(&bins, &["--json"], &image, work.path())?;
    ensure!(rec.success() && rec.stdout.trim_start().starts_with('{') && rec.stdout.contains("\"regions\""), "control: ckpt-inspect --json\n{rec}");
    let rec = run_restart(&bins, &image, work.path(), Duration::from_secs(60))?;
    ensure!(rec.success() && result_of(&rec.stdout).is_some(), "control: the undamaged image did not restart and finish\n{rec}");
    Ok(())
}

/// Images written with O_DIRECT pad each chunk to a 4 KiB boundary. The padding of a shuffled
/// chunk (arrays of numbers) must be checked like every other byte of the data area: a byte
/// flipped there is found by `ckpt-inspect --verify` and refused by `ckpt-restart`.
#[test]
fn a_flipped_byte_in_the_padding_of_a_shuffled_chunk_is_found() -> Result<()> {
    const BLOCK: u64 = 4096;
    let bins = Bins::locate()?;
    let work = Workdir::new("failures-padding")?;
    let program = Program::c(&work, "num_array.c", &["-lm"], &["16", "200", "30"])?;
    let (image, _, _) = checkpoint_and_kill(&bins, &program, &Options::new(&work, &[5]))?;
    let reader = ckpt_image::Reader::open(&image)?;
    // The last byte before the next 4 KiB boundary after a shuffled chunk's compressed data:
    // padding (zero) whether or not the chunk's stored bytes include it.
    let padding = reader
        .index
        .regions
        .iter()
        .flat_map(|r| &r.chunks)
        .filter(|c| c.codec.is_shuffled() && c.file_offset % BLOCK == 0)
        .map(|c| (c.file_offset + c.stored_len).div_ceil(BLOCK) * BLOCK - 1)
        .find(|&at| at + 1 < reader.header.index_offset)
        .context("no shuffled chunk in a block-aligned image (was it written with O_DIRECT?)")?;
    let mut bytes = std::fs::read(&image)?;
    ensure!(bytes[padding as usize] == 0, "byte {padding} is not padding");
    bytes[padding as usize] ^= 0x01;
    let bad = work.subdir("padding")?.join("num_array.ckpt");
    std::fs::write(&bad, bytes)?;

    let rec = inspect(&bins, &["--verify"], &bad, work.path())?;
    let line = clean_tool_failure(&rec, "ckpt-inspect").map_err(|p| anyhow::anyhow!("ckpt-inspect --verify on a flipped padding byte ({padding}): {p}"))?;
    ensure!(line.contains("checksum"), "ckpt-inspect --verify: {line}");
    let rec = run_restart(&bins, &bad, work.path(), Duration::from_secs(60))?;
    clean_failure(&rec).map_err(|p| anyhow::anyhow!("ckpt-restart on a flipped padding byte ({padding}): {p}"))?;
    ensure!(rec.stderr.contains("checksum"), "ckpt-restart: {}", rec.stderr);

    // Control: the image itself verifies and restarts.
    let rec = inspect(&bins, &["--verify"], &image, work.path())?;
    ensure!(rec.success(), "control: ckpt-inspect --verify\n{rec}");
    let rec = run_restart(&bins, &image, work.path(), Duration::from_secs(60))?;
    ensure!(rec.success() && result_of(&rec.stdout).is_some(), "control: the image did not restart and finish\n{rec}");
    Ok(())
}
