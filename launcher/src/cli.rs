//! ckpt-run's command line: the definition its parser, its `--help`, its man page and its
//! shell completion all come from (ckpt-gen-docs includes this file: it depends on clap and std
//! only).

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ckpt-run",
    version,
    about = "Run a program so that it can be checkpointed (kill -USR2 PID) and restarted (ckpt-restart)",
    override_usage = "ckpt-run [OPTIONS] -- PROGRAM [ARGS]...",
    after_help = "The program keeps ckpt-run's pid. A checkpoint writes DIR/<name>.ckpt (mode 0600; the \
                  previous ones become <name>.ckpt.1, .2, ...) and the program continues.\n\
                  After --stop-signal or `ckpt-ctl stop` the program exits with status 75 once its image \
                  is written (74: the checkpoint failed).\n\
                  Every option can also come from the environment variable shown; CKPT_LOG=info|debug \
                  shows more than the one line per checkpoint.\n\
                  Exit status: the program's; 2 usage error (a bad option or option value); 125 ckpt-run \
                  itself failed (image directory, runtime library, resume); 126 PROGRAM cannot be run; \
                  127 PROGRAM not found."
)]
pub struct Cli {
    /// Directory for images (created 0700 if missing).
    #[arg(long, env = "CKPT_DIR", default_value = ".")]
    pub dir: PathBuf,

    /// Signal that takes a checkpoint and lets the program continue (name or number).
    #[arg(long, env = "CKPT_SIGNAL", default_value = "USR2")]
    pub signal: String,

    /// Take a checkpoint periodically (30s, 10m, 2h, ...).
    #[arg(long, env = "CKPT_INTERVAL")]
    pub interval: Option<String>,

    /// Signal that takes a checkpoint and then ends the program (e.g. TERM, USR1).
    #[arg(long, env = "CKPT_STOP_SIGNAL")]
    pub stop_signal: Option<String>,

    /// How many images to keep (the newest and N-1 older generations, and the images they build on).
    #[arg(long, env = "CKPT_KEEP", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: u32,

    /// Write every image whole: no increments (by default, a checkpoint after the first writes
    /// only the pages changed since the one before, and names that image as its parent).
    #[arg(long, env = "CKPT_FULL_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    pub full_only: bool,

    /// Longest chain of images a restart may need (a full image and its increments); the next
    /// checkpoint after that is a full image again.
    #[arg(long, env = "CKPT_MAX_CHAIN", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_chain: u32,

    /// Save the data of the regular files the program holds open in each image too (as DMTCP's
    /// option of that name): a file that is gone at restart (the program removed it after the
    /// checkpoint) is recreated at its path from the image. A file still there is reopened as
    /// without the option (never overwritten).
    #[arg(long, alias = "ckpt-open-files", env = "CKPT_CHECKPOINT_OPEN_FILES", value_parser = clap::builder::FalseyValueParser::new())]
    pub checkpoint_open_files: bool,

    /// If DIR holds an image of this program, restart from its newest good image instead.
    #[arg(long, env = "CKPT_RESUME", value_parser = clap::builder::FalseyValueParser::new())]
    pub resume: bool,

    /// Inside a Slurm job: after a checkpoint-and-exit, requeue the job (scontrol requeue).
    #[arg(long, env = "CKPT_REQUEUE", value_parser = clap::builder::FalseyValueParser::new())]
    pub requeue: bool,

    /// Image name (default: the program's file name); in a job of several tasks (Slurm, Open MPI,
    /// MPICH or another PMI launcher, PMIx), .RANK is added.
    /// One file name: no `/`, not empty, `.` or `..`.
    #[arg(long, env = "CKPT_NAME")]
    pub name: Option<OsString>,

    /// Use an image directory that another user owns, or that group or others may write to
    /// without the sticky bit, with a warning (refused by default: they could read or replace
    /// the images).
    #[arg(long, env = "CKPT_ALLOW_SHARED_DIR", value_parser = clap::builder::FalseyValueParser::new())]
    pub allow_shared_dir: bool,

    /// Run a program the runtime cannot be loaded into (statically linked, setuid or setgid,
    /// file capabilities, not x86-64) anyway, without checkpoints, after a warning. Without
    /// it, ckpt-run refuses such a program (exit status 2).
    #[arg(long, env = "CKPT_UNPROTECTED", value_parser = clap::builder::FalseyValueParser::new())]
    pub unprotected: bool,

    /// How a checkpoint freezes the program's memory: `background` (the default) write-protects
    /// it and lets the program run on at once, a page about to be written saved first: the
    /// pause and the extra memory do not grow with the program; `fork` makes a copy-on-write
    /// child: the pause grows with memory (page tables) and a program rewriting its memory may
    /// need up to twice as much during the checkpoint. Background snapshots fall back to the
    /// fork where the kernel lacks userfaultfd write-protection or syscall user dispatch, for
    /// process trees and in the other cases the README lists. (Also CKPT_BACKGROUND=0 for fork,
    /// 1 for background; the choice stays with the program across restarts.)
    #[arg(long, value_parser = ["fork", "background"], value_name = "MODE")]
    pub snapshot: Option<String>,

    /// Run the program in ckpt-run's own process (same pid), without a namespace of its own:
    /// a restarted program then gets new process and thread ids (virtual ids). (Also
    /// CKPT_NAMESPACE=0.)
    #[arg(long)]
    pub no_namespace: bool,

    /// The program (looked up in PATH) and its arguments, after `--`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROGRAM [ARGS]")]
    pub command: Vec<OsString>,
}
