//! `ckpt-inspect IMAGE`: what an image holds (program, when and where it was taken, the chain of
//! images it builds on, threads, memory regions, fds, signal state, totals), as text or
//! `--json`; `--verify` checks every checksum of the whole chain and names the first bad chunk;
//! `--flatten OUT` writes the chain as one full image. Errors are one line on stderr and exit
//! status 1.

mod cli;
mod report;
mod set;
mod text;
mod verify;

use anyhow::{Context, Result};
use ckpt_image::{Chain, Reader};
use clap::Parser;
use cli::Cli;
use std::io::Write;


fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    eprintln!("ckpt-inspect: cannot write the output: {e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            let line = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ");
            eprintln!("ckpt-inspect: {line}");
            std::process::exit(1);
        }
    }
}

fn run(cli: &Cli) -> Result<String> {
    let path = &cli.image;
    if ckpt_image::tree::is_set(path) {
        return set::render(path, cli.json, cli.verify, cli.flatten.is_some());
    }
    let here = || format!("{}", path.display());
    let reader = Reader::open(path).with_context(here)?;
    // The images it builds on: needed to verify or flatten; otherwise a missing or bad parent
    // is only reported.
    let chain = Chain::open(path);
    let chain = match chain {
        Err(e) if cli.verify || cli.flatten.is_some() => return Err(anyhow::Error::new(e).context(here())),
        c => c,
    };
    let verified = match (&chain, cli.verify) {
        (Ok(c), true) => Some(verify::all(c).with_context(here)?),
        _ => None,
    };
    if let (Some(out), Ok(c)) = (&cli.flatten, &chain) {
        let done = ckpt_image::flatten(c, out).with_context(|| format!("cannot write {}", out.display()))?;
        let what = match done.images {
            1 => format!("a copy of {}, which is a full image", path.display()),
            2 => format!("one full image with the memory of {} and the image it builds on", path.display()),
            n => format!("one full image with the memory of {} and the {} images it builds on", path.display(), n - 1),
        };
        let (mem, disk) = (text::size(done.saved_bytes), text::size(done.file_bytes));
        return Ok(format!("wrote {}: {what} ({mem} of memory, {disk} on disk)\n", out.display()));
    }
    let rep = report::build(&reader, chain.as_ref().map_err(|e| e.to_string()), path, verified);
    if cli.json {
        let mut s = serde_json::to_string_pretty(&rep).context("cannot encode JSON")?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(text::render(&rep))
    }
}
