//! `ckpt-inspect IMAGE`: what an image holds (program, when and where it was taken, the chain of
//! images it builds on, threads, memory regions, fds, signal state, totals), as text or
//! `--json`; `--verify` checks every checksum of the whole chain and names the first bad chunk;
//! `--flatten OUT` writes the chain as one full image. Errors are one line on stderr and exit
//! status 1.

mod report;
mod text;
mod verify;

use anyhow::{Context, Result};
use ckpt_image::{Chain, Reader};
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

/// What the words of the output mean (`--help`).
const TERMS: &str = "\
What the output says:
  chain      a full image restarts alone; an increment holds only the pages written since the
             image it builds on (its parent), which must be in the same directory (or use --flatten)
  threads    the program's threads: where each was interrupted (pc) and the signals it blocked;
             ckpt's own checkpoint thread is not listed
  regions    the program's memory, one line per mapping:
    size       bytes of address space; saved: bytes of memory the image holds; stored: what those
               take in the file (compressed). Pages not saved are zero, or the file's own pages
    perm       r/w/x, and p (private) or s (shared)
    backing    anon (private memory: heap, stacks, malloc'ed), shared-anon (shared memory),
               file (a file mapped privately: its pages come from the file, changed ones from the
               image), shared-file (a file mapped shared: written back to the file at restart),
               special (the kernel's vdso and vvar, moved, not restored)
    codec      how chunks are stored: zstd, shuffle (zstd of numbers byte-shuffled), raw, zero
    inherits   an increment's region whose unsaved pages come from the parent image
  R, runtime what belongs to ckpt's runtime, not to the program: its library (libckpt_runtime.so,
             found as the file holding the restart entry point), its scratch memory (the memory a
             checkpoint works in, stored empty), the checkpoint thread's stack, and the signal
             handlers in its library (the checkpoint signal, the stop signal, and signal 63, which
             stops the threads). Its own fds (control socket, wake eventfd, image directory,
             dirty-page tracking) are numbered from 900 up and are never saved
  fds        open file descriptors: file (reopened by path at restart, checked to be the same
             file), dir, pipe, socket, eventfd, timerfd, signalfd, epoll, inotify, deleted (a
             deleted file's contents, saved in the image); offset and open flags
  signals    signal dispositions that are not the default: a handler (its address) or ignore
  left out   what a restart cannot bring back: child processes, input from a pipe fed by
             another process
  totals     mapped: address space; saved and stored as above; ratio: saved / stored

Exit status: 0 when the image reads (and verifies, with --verify); 1 with one
`ckpt-inspect: ...` line on stderr otherwise.";

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-inspect",
    version,
    about = "Show what a ckpt image holds; --verify checks every checksum; --flatten writes one full image",
    after_help = "Exit status: 0 when the image reads (and verifies, with --verify); 1 with one \
                  `ckpt-inspect: ...` line on stderr otherwise. --help explains the terms of the output.",
    after_long_help = TERMS
)]
struct Cli {
    /// Print a JSON document instead of text (for scripts).
    #[arg(long)]
    json: bool,
    /// Read every chunk of the image and of the images it builds on and check its checksum;
    /// fail on the first bad one, naming it.
    #[arg(long)]
    verify: bool,
    /// Write the image, with everything it builds on, as one full image OUT (mode 0600), which
    /// restarts alone: for moving a single file to another node.
    #[arg(long, value_name = "OUT", conflicts_with = "json")]
    flatten: Option<PathBuf>,
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
