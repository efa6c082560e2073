//! A thread that entered a namespace of its own through libc (unshare, setns) would come back
//! in ckpt's namespace after a restart (its own host name, mounts, network gone): the checkpoint
//! is refused in one line naming the thread and the namespace, and the program goes on
//! (tests/programs/ns_own.c). Root only: an ordinary user's program runs under its own uid in
//! ckpt's user namespace, without the capability unshare(CLONE_NEWUTS) needs. A process that
//! only inherited a namespace of its own is refused by the tree's coordinator, except a time
//! namespace, which a restart makes again (process_trees_timens).

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

/// A time namespace the program made for its children (unshare(CLONE_NEWTIME) with offsets, zdtm
/// timens_for_kids) comes back with the same offsets over the program's own clocks: a child
/// forked after the restart sees CLOCK_MONOTONIC 1000 s and CLOCK_BOOTTIME 500 s ahead of its
/// parent, in a namespace of its own (tests/programs/timens_kids.c); twice, through a second
/// restart (the restarted program's own clocks have offsets of their own then).
#[test]
fn a_time_namespace_for_the_programs_children_comes_back_with_its_offsets() -> Result<()> {
    if !is_root() {
        skip_test!("unshare(CLONE_NEWTIME) needs root");
        return Ok(());
    }
    let bins = Bins::locate()?;
    let work = Workdir::new("ns-timens-kids")?;
    let program = Program::c(&work, "timens_kids.c", &[], &["60", "50"])?;
    let opts = ckpt_tests::Options::new(&work, &[20, 40]);
    let o = ckpt_tests::run_and_verify(&bins, &program, &opts)?;
    let last = o.records.last().map(|r| r.stdout.clone()).unwrap_or_default();
    if !last.contains("result ahead=1000,500 other=1 ") {
        bail!("the child's clocks after two restarts: {last}{}", o.transcript());
    }
    Ok(())
}
