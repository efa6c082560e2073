//! ckpt-ctl's command line: the definition its parser, its `--help`, its man page and its
//! shell completion all come from (ckpt-gen-docs includes this file: it depends on clap and std
//! only).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-ctl",
    version,
    about = "Control a program running under ckpt-run",
    after_help = "Exit status: 0 done, 1 the checkpoint failed, 2 usage error, 3 no running program \
                  found in DIR, 4 cannot talk to it (permission, timeout)."
)]
pub struct Cli {
    /// The program's image directory (ckpt-run --dir).
    #[arg(long, env = "CKPT_DIR", default_value = ".", global = true)]
    pub dir: PathBuf,

    /// The program's image name, when DIR holds several running programs.
    #[arg(long, global = true)]
    pub name: Option<String>,

    /// Seconds to wait for an answer [default: 10; 3600 for `checkpoint --wait` and `stop`,
    /// since a checkpoint of a big program takes a while].
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,

    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Take a checkpoint now; the program continues.
    Checkpoint {
        /// Wait until the image is complete and print its path.
        #[arg(long)]
        wait: bool,
    },
    /// Show pid, program, last image (age and size) and the next periodic checkpoint; during a
    /// checkpoint, how far it is.
    Status,
    /// Take a checkpoint and end the program (it exits with status 75); prints the image path.
    Stop,
}
