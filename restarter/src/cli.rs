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
    after_help = "The restarted program runs in this process (new pid) with this process's \
                  stdin, stdout and stderr.\nExit status: the program's, or 1 when the image cannot be restarted."
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
}
