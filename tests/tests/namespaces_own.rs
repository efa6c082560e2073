//! A thread that entered a namespace of its own through libc (unshare, setns) would come back
//! in ckpt's namespace after a restart (its own host name, mounts, network gone): the checkpoint
//! is refused in one line naming the thread and the namespace, and the program goes on
//! (tests/programs/ns_own.c). Root only: an ordinary user's program runs under its own uid in
//! ckpt's user namespace, without the capability unshare(CLONE_NEWUTS) needs.

use anyhow::{bail, Result};
use ckpt_tests::scenario::{is_root, refused_checkpoint};
use ckpt_tests::{skip_test, Bins, Program, Workdir};

#[test]
fn a_thread_in_a_namespace_of_its_own_refuses_the_checkpoint_in_one_line() -> Result<()> {
    if !is_root() {
        skip_test!("unshare(CLONE_NEWUTS) needs root");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-own")?;
    let program = Program::c(&work, "ns_own.c", &["-pthread"], &["40"])?;
    let (rec, line) = refused_checkpoint(&bins, &program, &work.images(), false)?;
    if !rec.success() || !rec.stdout.contains("result 40") || !line.contains("entered a namespace of its own (uts") {
        bail!("expected a failed checkpoint naming the thread's UTS namespace and the program going on{}", ckpt_tests::process::transcript(&[rec]));
    }
    Ok(())
}
