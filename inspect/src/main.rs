//! `ckpt-inspect IMAGE`: what an image holds (program, when and where it was taken, threads,
//! memory regions, fds, signal state, totals), as text or `--json`; `--verify` checks every
//! checksum and names the first bad chunk. Errors are one line on stderr and exit status 1.

mod report;
mod text;
mod verify;

use anyhow::{Context, Result};
use ckpt_image::Reader;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-inspect",
    version,
    about = "Show what a ckpt image holds; --verify checks every checksum",
    after_help = "Exit status: 0 when the image reads (and verifies, with --verify); 1 with one \
                  `ckpt-inspect: ...` line on stderr otherwise."
)]
struct Cli {
    /// Print a JSON document instead of text (for scripts).
    #[arg(long)]
    json: bool,
    /// Read every chunk and check its checksum; fail on the first bad one, naming it.
    #[arg(long)]
    verify: bool,
    /// The image file.
    image: PathBuf,
}

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
    let reader = Reader::open(path).with_context(|| format!("{}", path.display()))?;
    let verified = if cli.verify { Some(verify::all(&reader).with_context(|| format!("{}", path.display()))?) } else { None };
    let rep = report::build(&reader, path, verified);
    if cli.json {
        let mut s = serde_json::to_string_pretty(&rep).context("cannot encode JSON")?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(text::render(&rep))
    }
}
