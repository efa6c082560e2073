//! `ckpt-gen-docs [--man DIR] [--completions DIR]`: writes the man pages (DIR/ckpt-*.1) and
//! the bash completions (DIR/ckpt-*) of ckpt's four commands. They are made from the very clap
//! definitions the commands parse their command line with, and print as `--help`: each
//! command's `src/cli.rs` is included here as it is, so a man page or a completion cannot
//! drift from the command. scripts/install runs it.

use clap::CommandFactory;
use std::path::{Path, PathBuf};

// The commands' own definitions (clap and std only); their fields are read by the commands.
#[allow(dead_code)]
#[path = "../../launcher/src/cli.rs"]
mod run;
#[allow(dead_code)]
#[path = "../../restarter/src/cli.rs"]
mod restart;
#[allow(dead_code)]
#[path = "../../ctl/src/cli.rs"]
mod ctl;
#[allow(dead_code)]
#[path = "../../inspect/src/cli.rs"]
mod inspect;

/// Each command, as its parser sees it.
fn commands() -> Vec<clap::Command> {
    vec![run::Cli::command(), restart::Cli::command(), ctl::Cli::command(), inspect::Cli::command()]
}

fn usage() -> ! {
    eprintln!("usage: ckpt-gen-docs [--man DIR] [--completions DIR]");
    std::process::exit(2);
}

fn write(path: &Path, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    let mut out = Vec::new();
    if let Err(e) = render(&mut out).and_then(|_| std::fs::write(path, &out)) {
        eprintln!("ckpt-gen-docs: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}

fn main() {
    let (mut man, mut completions): (Option<PathBuf>, Option<PathBuf>) = (None, None);
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let slot = match a.to_str() {
            Some("--man") => &mut man,
            Some("--completions") => &mut completions,
            _ => usage(),
        };
        *slot = Some(args.next().unwrap_or_else(|| usage()).into());
    }
    if man.is_none() && completions.is_none() {
        usage();
    }
    for mut cmd in commands() {
        let name = cmd.get_name().to_string();
        if let Some(dir) = &man {
            write(&dir.join(format!("{name}.1")), |out| clap_mangen::Man::new(cmd.clone()).render(out));
        }
        if let Some(dir) = &completions {
            write(&dir.join(&name), |out| {
                clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name.clone(), out);
                Ok(())
            });
        }
    }
}
