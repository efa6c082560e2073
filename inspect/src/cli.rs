//! ckpt-inspect's command line: the definition its parser, its `--help`, its man page and its
//! shell completion all come from (ckpt-gen-docs includes this file: it depends on clap and std
//! only).

use clap::Parser;
use std::path::PathBuf;

/// What the words of the output mean (`--help`).
const TERMS: &str = "\
What the output says:
  chain     a full image restarts alone; an increment holds only the
            pages written since the image it builds on (its parent),
            which must be in the same directory (or use --flatten)
  threads   the program's threads: where each was interrupted (pc)
            and the signals it blocked; ckpt's checkpoint thread is
            not listed
  regions   the program's memory, one line per mapping:
    size      bytes of address space
    saved     bytes of memory the image holds (pages not saved are
              zero, or the file's own pages)
    stored    what the saved bytes take in the file (compressed)
    perm      r/w/x, and p (private) or s (shared)
    backing   anon (private memory: heap, stacks), shared-anon
              (shared memory), file (a file mapped privately: its
              pages come from the file, changed ones from the
              image), shared-file (a file mapped shared: written
              back to the file at restart), special (the kernel's
              vdso and vvar: moved, not restored)
    codec     how chunks are stored: zstd, shuffle (zstd of numbers
              byte-shuffled), shuffle-delta (the same of each
              number's bytewise difference from the one before),
              raw, zero
    inherits  an increment's region whose unsaved pages come from
              the parent image
  R, runtime  what belongs to ckpt's runtime, not to the program:
              its library (libckpt_runtime.so, the file that holds
              the restart entry point), its scratch memory (the
              memory a checkpoint works in, stored empty), the
              checkpoint thread's stack, and the signal handlers in
              its library (the checkpoint signal, the stop signal,
              and signal 63, which stops the threads). Its own fds
              (control socket, wake eventfd, image directory,
              dirty-page tracking) are numbered from 900 up and
              never saved
  fds       open file descriptors: file (reopened by path at restart
            and checked to be the same file), dir, pipe, socket,
            eventfd, timerfd, signalfd, epoll, inotify, deleted
            files (their data saved in the image); offset and open
            flags
  signals   signal dispositions that are not the default: a handler
            (its address) or ignore
  left out  what a restart cannot bring back: child processes, input
            from a pipe fed by another process
  totals    mapped: address space; saved and stored as above; ratio:
            saved / stored

Exit status: 0 when the image reads (and verifies, with --verify);
1 with one `ckpt-inspect: ...` line on stderr otherwise.";

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-inspect",
    version,
    about = "Show what a ckpt image holds; --verify checks every checksum; --flatten writes one full image",
    after_help = "Exit status: 0 when the image reads (and verifies, with --verify); 1 with one \
                  `ckpt-inspect: ...` line on stderr otherwise. --help explains the terms of the output.",
    after_long_help = TERMS
)]
pub struct Cli {
    /// Print a JSON document instead of text (for scripts).
    #[arg(long)]
    pub json: bool,
    /// Read every chunk of the image and of the images it builds on and check its checksum;
    /// fail on the first bad one, naming it.
    #[arg(long)]
    pub verify: bool,
    /// Write the image, with everything it builds on, as one full image OUT (mode 0600), which
    /// restarts alone: for moving a single file to another node.
    #[arg(long, value_name = "OUT", conflicts_with = "json")]
    pub flatten: Option<PathBuf>,
    /// The image file.
    pub image: PathBuf,
}
