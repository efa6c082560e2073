//! ckpt-restart's command line: the definition its parser, its `--help`, its man page and its
//! shell completion all come from (ckpt-gen-docs includes this file: it depends on clap and std
//! only).

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-restart",
    version,
    about = "Restart a program from a ckpt image; it continues where the image was taken",
    after_help = "The restarted program continues with its old process and thread ids in a namespace of its own, \
                  for which this process stands (it forwards signals and exits with the program's status); \
                  with --no-namespace it continues in this process with new ids (virtual ids). It has this \
                  process's stdin, stdout and stderr.\nExit status: the program's, or 1 when the image cannot be restarted."
)]
pub struct Cli {
    /// An image file, or a directory (its newest image that verifies is used).
    pub image: PathBuf,
    /// Leave files the program writes at their current size instead of cutting them back to
    /// their size at checkpoint time (for files other processes also write).
    #[arg(long, env = "CKPT_NO_TRUNCATE", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_truncate: bool,
    /// Go on when a file the program had open is gone (it gets /dev/null) or changed.
    #[arg(long, env = "CKPT_IGNORE_MISSING", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub ignore_missing_files: bool,
    /// Restart in this process, without a namespace of the program's own: the program gets new
    /// process and thread ids (virtual ids). (Also CKPT_NAMESPACE=0.)
    #[arg(long)]
    pub no_namespace: bool,
}
