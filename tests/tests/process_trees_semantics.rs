//! Process-tree semantics (issue 13) beyond "every process comes back": the relations between
//! the processes of a tree as the kernel keeps them. Each test runs a small C program of its
//! own, checkpoints it in a namespace, SIGKILLs the tree, restarts it and checks that it ends
//! as an uninterrupted run (the program counts every id that came back wrong into its result).
//! - tree_orphans plain: a process whose parent exited (reparented to init) in the root's session;
//! - tree_orphans daemon: the classic daemon (fork, setsid, fork, exit): an orphan whose session
//!   leader exited;
//! - tree_orphans group: an orphan whose process group leader exited (made again by a helper);
//! - tree_orphans zombie: an orphan whose process group leader is a zombie its parent reaps at
//!   the end (the zombie leads its group again before the orphan joins it);
//! - tree_pidfd: a pidfd of a child, used after the restart to signal, poll and reap it;
//! - tree_orphans child: a child whose session differs from its parent's (it was forked before
//!   its parent called setsid).

use anyhow::Result;
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};

fn verify(name: &str, source: &str, args: &[&str], steps: &[u64]) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, source, &[], args)?;
    let mut opts = Options::new(&work, steps);
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    run_and_verify(&bins, &program, &opts).map(drop)
}

#[test]
fn an_orphan_reparented_to_init_continues() -> Result<()> {
    verify("sem-orphan", "tree_orphans.c", &["plain", "60", "30"], &[20])
}

#[test]
fn a_double_forked_daemon_keeps_its_session() -> Result<()> {
    verify("sem-daemon", "tree_orphans.c", &["daemon", "60", "30"], &[20])
}

#[test]
fn a_child_forked_before_its_parent_setsid_keeps_its_session() -> Result<()> {
    verify("sem-born-session", "tree_orphans.c", &["child", "60", "30"], &[20])
}

#[test]
fn an_orphan_whose_group_leader_exited_keeps_its_group() -> Result<()> {
    verify("sem-group", "tree_orphans.c", &["group", "60", "30"], &[20])
}

#[test]
fn a_zombie_keeps_leading_its_process_group() -> Result<()> {
    verify("sem-zombie-group", "tree_orphans.c", &["zombie", "60", "30"], &[20])
}

#[test]
fn a_pidfd_of_a_child_signals_polls_and_reaps_it_after_a_restart() -> Result<()> {
    verify("sem-pidfd", "tree_pidfd.c", &["60", "30"], &[20])
}
