//! A pseudo-terminal between two processes of a tree (issue 13): the parent holds the master
//! and reads through it what its child writes on the slave (its stdin and stdout), as mpirun
//! reads its ranks' output (tree_pty.c). The child runs ahead, so lines wait in the terminal
//! when the checkpoint is taken. After the whole tree is SIGKILLed and restarted, the pair must
//! be one pair again (the child's stdout the slave of the parent's master, not ckpt-restart's
//! stdout), with the lines that waited in it: the parent reads every line in order and the
//! child gets the acknowledgement through it; also as user nobody.

use anyhow::{anyhow, Result};
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};
use std::any::Any;
use std::cell::Cell;
use std::fs::File;
use std::os::fd::AsRawFd;

fn verify(name: &str, as_nobody: bool) -> Result<()> {
    verify_program(name, "tree_pty.c", &["80", "60"], &[15], as_nobody, None)
}

type BeforeRestart = Option<fn(String) -> Result<Box<dyn Any>>>;

/// `source` run with `args` in a namespace, checkpointed at each of `steps` (SIGKILL,
/// `before_restart`, restart).
fn verify_program(name: &str, source: &str, args: &[&str], steps: &[u64], as_nobody: bool, before_restart: BeforeRestart) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(name)?;
    let program = Program::c(&work, source, &[], args)?;
    let mut opts = Options::new(&work, steps);
    opts.as_nobody = as_nobody;
    opts.env = vec![("CKPT_NAMESPACE".into(), "1".into())];
    opts.before_restart = before_restart;
    run_and_verify(&bins, &program, &opts).map(drop)
}

#[test]
fn a_pseudo_terminal_between_parent_and_child_is_one_pair_again() -> Result<()> {
    verify("tree-pty", false)
}

#[test]
fn a_pseudo_terminal_between_parent_and_child_as_nobody() -> Result<()> {
    verify("tree-pty-nobody", true)
}

/// A session of the tree whose controlling terminal is the tree's pseudo-terminal, held by no
/// fd (a terminal emulator's shell; zdtm tty00, tty03: tree_ctty.c): after the restart /dev/tty
/// is that terminal again, its session is the child's, its foreground group the grandchild's,
/// and the master's close hangs it up with a SIGHUP to the child; also as nobody.
fn verify_ctty(name: &str, as_nobody: bool) -> Result<()> {
    verify_program(name, "tree_ctty.c", &["40", "40"], &[12], as_nobody, None)
}

#[test]
fn a_sessions_controlling_terminal_of_the_tree_comes_back() -> Result<()> {
    verify_ctty("tree-ctty", false)
}

#[test]
fn a_sessions_controlling_terminal_of_the_tree_comes_back_as_nobody() -> Result<()> {
    verify_ctty("tree-ctty-nobody", true)
}

/// DMTCP's pty2 (tree_pty_shared.c): a parent holds a pseudo-terminal's master, its child the
/// master too and the slave as its session's controlling terminal; checkpointed, killed and
/// restarted twice (the second checkpoint is of a restarted tree), the child must keep finding
/// its session, its terminal's session and settings, and its parent as they were. Both
/// processes settle the pair at the checkpoint: one drained it while the other recorded its
/// settings (the drain's raw mode), or restored them as its own after the drain.
fn verify_shared(name: &str, as_nobody: bool) -> Result<()> {
    verify_program(name, "tree_pty_shared.c", &["50", "40"], &[10, 25], as_nobody, None)
}

#[test]
fn a_pseudo_terminal_both_processes_hold_keeps_its_settings_across_two_restarts() -> Result<()> {
    verify_shared("tree-pty-shared", false)
}

#[test]
fn a_pseudo_terminal_both_processes_hold_keeps_its_settings_across_two_restarts_as_nobody() -> Result<()> {
    verify_shared("tree-pty-shared-nobody", true)
}

thread_local! {
    /// The index of the killed program's pair (`slave /dev/pts/N` on its first run's stderr).
    static OLD_INDEX: Cell<Option<u32>> = const { Cell::new(None) };
}

/// A terminal of the host takes the index the program's pair had, as a new terminal of whatever
/// runs ckpt-restart would (DMTCP's harness opens one per run): masters of /dev/ptmx are opened
/// and held (the lower free indices too) until one has that index or a higher one (the index
/// is another terminal's already; the killed program is gone, `Proc::kill`).
fn take_old_index(stderr: String) -> Result<Box<dyn Any>> {
    let named = stderr.lines().find_map(|l| l.strip_prefix("slave /dev/pts/")?.trim().parse::<u32>().ok());
    let want = named.or(OLD_INDEX.get()).ok_or_else(|| anyhow!("the program did not name its pseudo-terminal on stderr"))?;
    OLD_INDEX.set(Some(want));
    let mut held = Vec::new();
    loop {
        let m = File::options().read(true).write(true).open("/dev/ptmx")?;
        let mut idx: u32 = 0;
        // SAFETY: TIOCGPTN writes one unsigned int.
        if unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCGPTN, &mut idx) } != 0 {
            return Err(anyhow!("TIOCGPTN: {}", std::io::Error::last_os_error()));
        }
        held.push(m);
        if idx >= want {
            return Ok(Box::new(held));
        }
    }
}

/// DMTCP's pty2 when a new terminal took the pair's old index between the kill and the restart
/// (tree_pty_shared.c: the child opens the slave by the name its parent got from ptsname each
/// round and asks it for its session). The program's namespace has a devpts instance of its
/// own: the index is its own and free at the restart, and the name opens the same terminal
/// again. Two restarts; also as nobody.
fn verify_taken(name: &str, as_nobody: bool) -> Result<()> {
    verify_program(name, "tree_pty_shared.c", &["50", "40"], &[10, 25], as_nobody, Some(take_old_index))
}

#[test]
fn a_pseudo_terminals_name_opens_it_after_a_restart_when_its_old_index_was_taken() -> Result<()> {
    verify_taken("tree-pty-taken", false)
}

#[test]
fn a_pseudo_terminals_name_opens_it_after_a_restart_when_its_old_index_was_taken_as_nobody() -> Result<()> {
    verify_taken("tree-pty-taken-nobody", true)
}
