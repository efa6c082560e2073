//! Issue 14 part 6 without a cluster (docs/multinode.md): tasks of a step that first connect to
//! each other after the restart, to the address and port a task published before the
//! checkpoint (programs/step_late.c: a ports file, as MPI's modex). Started by hand with the
//! variables srun gives every task, each under its own `ckpt-run`, as step_local does. Task
//! 0's old port is held by another program while the step restarts: its listener gets another
//! port, the rendezvous tells every task, and their runtimes' `connect` sends the late
//! connections there; every task ends as an uninterrupted run. The same when each task's
//! program is a process tree whose listener and connect are a child's (a shell that runs the
//! rank, as an orted or hydra_pmi_proxy runs MPI's ranks): every process of a tree reports its
//! listeners through the tree's root, and the connect of every process is mapped. A program
//! that is no step is unchanged: its restart still refuses in one line when its listener's
//! port is taken. UDP is not mapped: a task's datagram socket whose port is taken refuses the
//! step's restart in one line.

use anyhow::{ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::ring::{self, slurm_env};
use ckpt_tests::scenario::user_command;
use ckpt_tests::{result_of, run_restart, Bins, Proc, Workdir};
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROUNDS: u32 = 80;
/// The round at which the tasks first connect: well after the checkpoint (taken once every
/// task is past round 5; each round sleeps 50 ms).
const LATE: u32 = 70;

fn argv_of(exe: &Path, ports: &Path, delay: u32, case: Case) -> Vec<OsString> {
    let flag = |b: bool| OsString::from(if b { "1" } else { "0" });
    let node = if case.node { node_addr().unwrap_or_default() } else { "-".to_string() };
    vec![exe.into(), ports.into(), ROUNDS.to_string().into(), LATE.to_string().into(), delay.to_string().into(), flag(case.own), flag(case.udp), flag(case.share), node.into()]
}

/// This machine's IPv4 address other than loopback (the source of its route to the outside: a
/// UDP socket's connect sends nothing), as a node's address in MPI's modex; None without one.
fn node_addr() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.200:9").or_else(|_| s.connect("10.255.255.1:9")).ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then(|| ip.to_string())
}

/// How the tasks run: each on an address of its own (127.0.0.2 + rank) or every address; as
/// user nobody or as the test's user; each task's program step_late itself or a process tree
/// (a shell that runs step_late as its child and waits for it, as an MPI daemon runs its
/// ranks); with a UDP socket bound too; with the listener held by a child of step_late too
/// (made once by the tree's root at the restart); publishing the machine's own address, with
/// task 0 dropping a connection from any other source address (as Open MPI's TCP BTL does).
#[derive(Clone, Copy, Default)]
struct Case {
    own: bool,
    as_nobody: bool,
    tree: bool,
    udp: bool,
    share: bool,
    node: bool,
}

impl Case {
    /// The processes of a task's tree.
    fn procs(&self) -> usize {
        1 + usize::from(self.tree) + usize::from(self.share)
    }
}

/// The `n` tasks under ckpt-run (`resume`: with --resume, as after a requeue).
fn start_step(bins: &Bins, work: &Workdir, exe: &Path, n: usize, job: &str, resume: bool, case: Case) -> Result<Vec<Proc>> {
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    std::fs::set_permissions(&ports, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
    (0..n)
        .map(|r| {
            let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.join("ckpt").into()];
            if resume {
                argv.push("--resume".into());
            }
            if case.tree {
                argv.extend(["--name", "step_late", "--", "/bin/sh", "-c", "\"$0\" \"$@\"; echo \"the rank ended: $?\" >&2"].map(OsString::from));
            } else {
                argv.push("--".into());
            }
            argv.extend(argv_of(exe, &ports, 50, case));
            let mut c = user_command(&argv, case.as_nobody, work.path());
            slurm_env(&mut c, job, r, n, u32::from(resume));
            if case.procs() > 1 {
                // The namespace is required: without one, children are not managed.
                c.env("CKPT_NAMESPACE", "1");
            }
            Proc::spawn(&format!("task {r}{}", if resume { " (resumed)" } else { "" }), c)
        })
        .collect()
}

/// Start the step, checkpoint it once every task is past round 5 (asked of task 1), SIGKILL
/// every task before its late connection. Each tree's checkpoint holds its processes.
fn run_and_kill(bins: &Bins, work: &Workdir, exe: &Path, n: usize, job: &str, case: Case) -> Result<()> {
    let mut first = start_step(bins, work, exe, n, job, false, case)?;
    for p in first.iter_mut() {
        p.wait_for_step(5, Duration::from_secs(60))?;
    }
    first[1].signal(libc::SIGUSR2)?;
    first[0].wait_for_stderr(&format!("step checkpoint 1: {n} tasks committed"), Duration::from_secs(60))?;
    for (r, p) in first.iter_mut().enumerate() {
        p.wait_for_stderr("ckpt: checkpoint 1: ", Duration::from_secs(30))?;
        ensure!(case.procs() == 1 || p.stderr().contains(&format!("({} processes,", case.procs())), "task {r} did not checkpoint its tree:\n{}", p.stderr());
    }
    for p in first.iter_mut() {
        p.kill()?;
        let out = p.stdout();
        ensure!(!out.contains("late:") && p.last_step().is_some_and(|s| s < u64::from(LATE)), "{} reached the late connection before the kill:\n{out}", p.label());
    }
    Ok(())
}

/// Where task 0 published its listener: (address, port).
fn published(work: &Workdir) -> Result<(String, u16)> {
    let s = std::fs::read_to_string(work.join("ports/port.0"))?;
    let mut w = s.split_whitespace();
    let addr = w.next().context("ports/port.0: no address")?.to_string();
    let port = w.next().context("ports/port.0: no port")?.parse()?;
    Ok((addr, port))
}

fn setup(tag: &str) -> Result<(Bins, Workdir, PathBuf)> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let exe = compile_c(&work, "step_late.c", &[])?;
    Ok((bins, work, exe))
}

/// Checkpoint the step (3 tasks; 2 whose programs are trees), SIGKILL every task, hold task
/// 0's old port with a listener of ours, resume: the late connections reach task 0 at its new
/// port, not ours, and every task ends with the uninterrupted result without starting over.
/// `own`: each task listens on an address of its own (127.0.0.2 + rank) instead of every
/// address (as on nodes of their own); `tree`: the listener and the connects are those of a
/// child of the task's program.
fn late_connections_after_restart(tag: &str, case: Case) -> Result<()> {
    let own = case.own;
    let (bins, work, exe) = setup(tag)?;
    let n = if case.procs() > 1 { 2 } else { 3 };
    let expected = ring::reference_of(&work, n, |ports| argv_of(&exe, ports, 0, Case { own, node: case.node, ..Case::default() }))?;
    let job = format!("late{}{}", std::process::id(), tag.len());
    run_and_kill(&bins, &work, &exe, n, &job, case)?;
    let (addr, port) = published(&work)?;
    // Another program takes task 0's port (where the task listened: every address, or its own).
    let held_at = if own { addr.clone() } else { "0.0.0.0".to_string() };
    let holder = TcpListener::bind((held_at.as_str(), port)).with_context(|| format!("cannot take task 0's old port {held_at}:{port}"))?;
    holder.set_nonblocking(true)?;
    let mut second = start_step(&bins, &work, &exe, n, &job, true, case)?;
    for (r, p) in second.iter_mut().enumerate() {
        p.wait(Duration::from_secs(120))?;
        let out = p.stdout();
        let err = p.stderr();
        ensure!(err.contains("restarted from"), "task {r} did not resume:\n{err}");
        ensure!(!out.contains("start step_late"), "task {r} started over:\n{out}");
        ensure!(p.record().success(), "task {r} failed:\n{out}\n{err}");
        ensure!(result_of(&out) == Some(expected[r].as_str()), "task {r}: result {:?}, uninterrupted {}; stdout:\n{out}\nstderr:\n{err}", result_of(&out), expected[r]);
        if r > 0 {
            // It connected to the published address; getpeername says where it is now.
            let line = out.lines().find(|l| l.starts_with("late: connected to ")).with_context(|| format!("task {r}: no late connection:\n{out}"))?;
            ensure!(line.starts_with(&format!("late: connected to {addr}:{port}, peer ")), "task {r}: {line}");
            ensure!(!line.ends_with(&format!(":{port}")), "task {r}: connected to the old port: {line}");
        }
    }
    let err0 = second[0].stderr();
    ensure!(err0.contains("its port is held by another program now"), "task 0 did not say its listener moved:\n{err0}");
    ensure!(holder.accept().is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "a task connected to the program that holds the old port");
    Ok(())
}

#[test]
fn late_connection_to_a_moved_listener_after_restart_same_result() -> Result<()> {
    late_connections_after_restart("late-any", Case::default())
}

#[test]
fn late_connection_to_a_moved_listener_after_restart_same_result_as_nobody() -> Result<()> {
    late_connections_after_restart("late-any-nobody", Case { as_nobody: true, ..Case::default() })
}

#[test]
fn late_connection_to_a_listener_on_its_own_address_after_restart_same_result() -> Result<()> {
    late_connections_after_restart("late-own", Case { own: true, ..Case::default() })
}

/// A rank's listener below the task's program (a shell that runs step_late, as an orted runs
/// its ranks), moved because another program holds its port: its process reports it through
/// the tree's root, and the other task's rank, also a child, connects to it there.
#[test]
fn late_connection_to_a_moved_listener_of_a_rank_in_a_tree_after_restart_same_result() -> Result<()> {
    late_connections_after_restart("late-tree", Case { tree: true, ..Case::default() })
}

#[test]
fn late_connection_to_a_moved_listener_of_a_rank_in_a_tree_after_restart_same_result_as_nobody() -> Result<()> {
    late_connections_after_restart("late-tree-nobody", Case { tree: true, as_nobody: true, ..Case::default() })
}

/// The same with each task's rank on an address of its own (127.0.0.2 + rank, nodes of their
/// own).
#[test]
fn late_connection_to_a_rank_in_a_tree_on_its_own_address_after_restart_same_result() -> Result<()> {
    late_connections_after_restart("late-tree-own", Case { tree: true, own: true, ..Case::default() })
}

/// A listener two processes of the tree hold (step_late and a child it forked once it
/// listened, below the shell), made once by the tree's root at the restart: moved off the
/// taken port as well, and the late connections reach it there.
#[test]
fn late_connection_to_a_moved_listener_two_processes_of_a_tree_hold_after_restart_same_result() -> Result<()> {
    late_connections_after_restart("late-tree-share", Case { tree: true, share: true, ..Case::default() })
}

/// The tasks publish the machine's own address (not loopback), as Open MPI's modex does, and
/// task 0 drops a late connection from any other source address, as Open MPI's TCP BTL does:
/// task 0's listener moved to another port on the same node, so the connect keeps the address
/// and only the port changes (sent to the rendezvous's address, 127.0.0.1 here, it came from
/// 127.0.0.1 and was dropped: both Open MPI joined Slurm tests failed so).
#[test]
fn late_connection_of_a_rank_in_a_tree_keeps_the_source_address_its_peer_knows_same_result() -> Result<()> {
    if node_addr().is_none() {
        ckpt_tests::skip_test!("this machine has no IPv4 address other than loopback");
        return Ok(());
    }
    late_connections_after_restart("late-tree-node", Case { tree: true, node: true, ..Case::default() })
}

/// UDP is not mapped (docs/restored.md): a datagram socket of a task whose port another program
/// holds at the restart gets no other port (nothing would send a datagram to the old port
/// there); the step's restart refuses in one line, on every task, and nothing runs.
#[test]
fn a_task_whose_udp_port_is_taken_refuses_the_step_restart_in_one_line() -> Result<()> {
    let (bins, work, exe) = setup("late-udp")?;
    let (n, case) = (2, Case { udp: true, ..Case::default() });
    let job = format!("lateudp{}", std::process::id());
    run_and_kill(&bins, &work, &exe, n, &job, case)?;
    let port: u16 = std::fs::read_to_string(work.join("ports/udp.0"))?.trim().parse()?;
    let _holder = std::net::UdpSocket::bind(("0.0.0.0", port)).with_context(|| format!("cannot take task 0's old UDP port {port}"))?;
    let mut second = start_step(&bins, &work, &exe, n, &job, true, case)?;
    for (r, p) in second.iter_mut().enumerate() {
        p.wait(Duration::from_secs(120))?;
        let (out, err) = (p.stdout(), p.stderr());
        ensure!(!p.record().success(), "task {r} went on:\n{out}\n{err}");
        ensure!(!out.contains("step ") && !out.contains("start step_late"), "task {r} ran:\n{out}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("ckpt-restart: ") && !l.contains("warning")).collect();
        let why = if r == 0 { format!("cannot bind 0.0.0.0:{port} again: Address already in use") } else { "task 0 could not be restarted".to_string() };
        ensure!(lines.len() == 1 && lines[0].contains(&why), "task {r}: not one line saying {why:?}:\n{err}");
    }
    Ok(())
}

/// A program that is no step: its restart refuses in one line when its listener's port is
/// taken (no other port: nothing would tell its clients).
#[test]
fn a_program_that_is_no_step_still_refuses_a_taken_port() -> Result<()> {
    let (bins, work, exe) = setup("late-alone")?;
    let ports = work.join("ports");
    std::fs::create_dir_all(&ports)?;
    let mut argv: Vec<OsString> = vec![bins.run.clone().into(), "--dir".into(), work.join("ckpt").into(), "--".into()];
    argv.extend(argv_of(&exe, &ports, 50, Case::default()));
    let mut c = user_command(&argv, false, work.path());
    c.env("STEP_LATE_ALONE", "1").env_remove("SLURM_PROCID").env_remove("SLURM_STEP_NUM_TASKS").env_remove("SLURM_NTASKS").env_remove("SLURM_JOB_ID");
    let mut p = Proc::spawn("alone", c)?;
    p.wait_for_step(5, Duration::from_secs(60))?;
    p.signal(libc::SIGUSR2)?;
    p.wait_for_stderr("ckpt: checkpoint 1: ", Duration::from_secs(30))?;
    p.kill()?;
    let (_, port) = published(&work)?;
    let _holder = TcpListener::bind(("0.0.0.0", port))?;
    let rec = run_restart(&bins, &work.join("ckpt/step_late.ckpt"), work.path(), Duration::from_secs(60))?;
    ensure!(!rec.success(), "the restart went on:\n{}", rec.stderr);
    let lines: Vec<&str> = rec.stderr.lines().filter(|l| !l.contains("warning")).collect();
    ensure!(rec.stderr.contains(&format!("cannot bind 0.0.0.0:{port} again: Address already in use")), "stderr:\n{}", rec.stderr);
    ensure!(lines.len() == 1, "more than one line:\n{}", rec.stderr);
    Ok(())
}
