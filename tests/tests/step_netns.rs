//! Issue 14 part 6 on nodes with other addresses (docs/multinode.md): two tasks of a step, each
//! in a network namespace of its own joined to the other's by a veth pair (10.X.Y.1 and
//! 10.X.Y.2, made and removed by the test), stand for two nodes. As Open MPI's TCP BTL, each
//! task publishes its own node's address (programs/step_late.c with BIND=1), the connecting task
//! binds its socket to that address before it connects, and the accepting task drops a
//! connection whose source is not the address the connector published. Checkpointed, every task
//! SIGKILLed, resumed with the namespaces swapped (task 0 where task 1 was): the late
//! connection's bind to task 1's old address (which its new node lacks) is made at its new
//! one, its connect to task 0's old address reaches task 0 where it is now, and task 0 sees the
//! connection come from task 1's old address; both end as an uninterrupted run. The same over
//! UDP (programs/step_udp.c): datagrams first sent after the restart to a task's old address
//! and port reach it where it is now (sendmsg, a datagram socket's connect, sendto), and their
//! sources show as the old addresses the tasks published (recvmsg, recvfrom, getpeername),
//! which each task checks. And what the tasks did over UDP before the checkpoint
//! (programs/step_udpcut.c): a socket connected to the other task still reaches it where it is
//! now and shows its old address as its peer, a datagram each way queued unread across the
//! checkpoint shows its sender's old address, sendmmsg and recvmmsg map as sendmsg and
//! recvmsg. And Debian's Open MPI itself (`mpirun -np 4` of programs/mpi_ring.c
//! over the TCP BTL alone, 2 ranks a node): mpirun in a third namespace that holds the bridge
//! between the two nodes, its srun a stand-in (programs/netns_srun.c) that runs each orted in
//! its node's namespace as a joined step's task; checkpointed, killed, resumed with the orteds
//! (and their ranks) swapped between the nodes: the TCP connection between the two ranks of a
//! node, over its node's address, is made again at the new node's address. And restarted where
//! each task ran, right after the kill, task 0's listener port still held by the TIME_WAIT end
//! of a connection task 1 made early (its peer on the other node: it cannot be ended from
//! here): waited out, not moved. Needs root and `ip` (skipped otherwise); leaves no namespace
//! behind.

use anyhow::{bail, ensure, Context, Result};
use ckpt_tests::programs::compile_c;
use ckpt_tests::ring::{self, slurm_env};
use ckpt_tests::scenario::{is_root, user_command};
use ckpt_tests::{result_of, Bins, Proc, Workdir};
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ROUNDS: u32 = 80;
/// The round of the late connection: well after the checkpoint (taken past round 5).
const LATE: u32 = 70;

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip")?;
    ensure!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

fn netns_list() -> String {
    Command::new("ip").args(["netns", "list"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// Two network namespaces joined by a veth pair (or, with a hub, each joined by a veth pair to
/// a bridge in a third, which has an address of the same network too), removed (with the
/// pairs) when dropped.
struct Nodes {
    ns: Vec<String>,
    addr: Vec<String>,
}

impl Nodes {
    fn new(tag: &str, hub: bool) -> Result<Nodes> {
        let pid = std::process::id();
        let names: &[&str] = if hub { &["a", "b", "c"] } else { &["a", "b"] };
        let ns: Vec<String> = names.iter().map(|n| format!("ckpt-{tag}-{pid}-{n}")).collect();
        let net = format!("10.{}.{}", 100 + pid % 100, (pid / 100) % 256);
        // Made before the namespaces: dropped on a failure below, it removes what was made.
        let nodes = Nodes { ns: ns.clone(), addr: (1..=ns.len()).map(|i| format!("{net}.{i}")).collect() };
        // Unique to this Nodes of the process (the tests of this file run side by side).
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!("{}{}", pid % 1_000_000, MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100);
        for n in &ns {
            ip(&["netns", "add", n])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        let veth = [format!("ckv{id}a"), format!("ckv{id}b")];
        let up = |n: &str, dev: &str, addr: &str| -> Result<()> {
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", n, "link", "set", dev, "up"])
        };
        if !hub {
            ip(&["link", "add", &veth[0], "netns", &ns[0], "type", "veth", "peer", "name", &veth[1], "netns", &ns[1]])?;
            for i in 0..2 {
                up(&ns[i], &veth[i], &nodes.addr[i])?;
            }
            return Ok(nodes);
        }
        ip(&["-n", &ns[2], "link", "add", "br0", "type", "bridge"])?;
        up(&ns[2], "br0", &nodes.addr[2])?;
        for i in 0..2 {
            let port = format!("ckp{id}{}", names[i]);
            ip(&["link", "add", &veth[i], "netns", &ns[i], "type", "veth", "peer", "name", &port, "netns", &ns[2]])?;
            ip(&["-n", &ns[2], "link", "set", &port, "master", "br0", "up"])?;
            up(&ns[i], &veth[i], &nodes.addr[i])?;
        }
        Ok(nodes)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        for n in &self.ns {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// step_late with BIND=1 publishing `addr` (the reference run: no address, no bind).
fn late_argv(exe: &Path, ports: &Path, delay: u32, addr: Option<&str>) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![exe.into(), ports.into(), ROUNDS.to_string().into(), LATE.to_string().into(), delay.to_string().into(), "0".into(), "0".into(), "0".into()];
    v.extend([addr.unwrap_or("-"), if addr.is_some() { "1" } else { "0" }].map(OsString::from));
    v
}

/// step_udp publishing `addr` (the reference run: loopback).
fn udp_argv(exe: &Path, ports: &Path, delay: u32, addr: Option<&str>) -> Vec<OsString> {
    let v = [ROUNDS.to_string(), LATE.to_string(), delay.to_string(), addr.unwrap_or("127.0.0.1").to_string()];
    [exe.into(), ports.into()].into_iter().chain(v.map(OsString::from)).collect()
}

/// A test program of the step and what its resumed tasks' output must show.
struct Program {
    source: &'static str,
    argv: fn(&Path, &Path, u32, Option<&str>) -> Vec<OsString>,
    /// The lines the tasks (stdout of task 0, of task 1) print of the late exchange, given the
    /// nodes' addresses (of task 0's first node, of task 1's).
    shows: fn(&str, &str) -> [Vec<String>; 2],
}

/// Task 1 bound at its old address (made at its new one) and connected to task 0's old
/// address; task 0 saw the connection come from task 1's old address.
const TCP: Program = Program {
    source: "step_late.c",
    argv: late_argv,
    shows: |a0, a1| [vec![format!("late: task 1 from {a1}\n")], vec![format!("late: bound at {a1}\n"), format!("late: connected to {a0}:")]],
};

/// Task 1's datagram reached task 0 and came from task 1's old address; task 0's reply came
/// from task 0's old address, which task 1's connected socket shows as its peer.
const UDP: Program = Program {
    source: "step_udp.c",
    argv: udp_argv,
    shows: |a0, a1| [vec![format!("late: task 1 from {a1}:")], vec![format!("late: reply from {a0}:"), format!(", peer {a0}:")]],
};

/// Task 1's socket connected before the checkpoint shows task 0's old address as its peer, and
/// each task's datagram queued unread across the checkpoint, read after it (recvfrom,
/// recvmmsg), comes from the other's old address, as do the datagrams sent after it (send on
/// the connected socket, sendmmsg to the source recvfrom gave).
const UDPCUT: Program = Program {
    source: "step_udpcut.c",
    argv: udp_argv,
    shows: |a0, a1| {
        [
            vec![format!("late: queued from {a1}:"), format!("late: task 1 from {a1}:")],
            vec![format!("late: queued from {a0}:"), format!("late: peer {a0}:"), format!("late: reply from {a0}:")],
        ]
    },
};

/// The step's two tasks, where they run and as whom.
struct Step<'a> {
    bins: &'a Bins,
    work: &'a Workdir,
    exe: &'a Path,
    prog: &'a Program,
    nodes: &'a Nodes,
    job: String,
    as_nobody: bool,
}

impl Step<'_> {
    /// Task r under ckpt-run in namespace `at[r]` (after `restarts` requeues: with --resume).
    fn start(&self, at: [usize; 2], restarts: u32) -> Result<Vec<Proc>> {
        let resume = restarts > 0;
        let (work, nodes) = (self.work, self.nodes);
        let ports = work.join("ports");
        std::fs::create_dir_all(&ports)?;
        std::fs::set_permissions(&ports, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
        (0..2)
            .map(|r| {
                let mut argv: Vec<OsString> = ["ip", "netns", "exec", &nodes.ns[at[r]]].map(OsString::from).to_vec();
                if self.as_nobody {
                    argv.extend(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--"].map(OsString::from));
                }
                argv.extend([self.bins.run.clone().into(), "--dir".into(), work.join("ckpt").into()]);
                if resume {
                    argv.push("--resume".into());
                }
                argv.push("--".into());
                // The address this task publishes: its node's at the start.
                argv.extend((self.prog.argv)(self.exe, &ports, 50, Some(&nodes.addr[r])));
                let mut c = user_command(&argv, false, work.path());
                slurm_env(&mut c, &self.job, r, 2, restarts);
                Proc::spawn(&format!("task {r} in {}{}", nodes.ns[at[r]], if resume { " (resumed)" } else { "" }), c)
            })
            .collect()
    }
}

/// Checkpoint `n` of the step once every task is past round `past` (asked of task 1), then
/// SIGKILL every task before its late connection.
fn checkpoint_and_kill(tasks: &mut [Proc], past: u64, n: u32) -> Result<()> {
    for p in tasks.iter_mut() {
        p.wait_for_step(past, Duration::from_secs(60))?;
    }
    tasks[1].signal(libc::SIGUSR2)?;
    tasks[0].wait_for_stderr(&format!("step checkpoint {n}: 2 tasks committed"), Duration::from_secs(60))?;
    for p in tasks.iter_mut() {
        p.wait_for_stderr(&format!("ckpt: checkpoint {n}: "), Duration::from_secs(30))?;
    }
    for p in tasks.iter_mut() {
        p.kill()?;
        ensure!(!p.stdout().contains("late:") && p.last_step().is_some_and(|s| s < u64::from(LATE)), "{} reached the late connection before the kill:\n{}", p.label(), p.stdout());
    }
    Ok(())
}

/// step_late as TCP, with task 1's early connection at round 2 (before the checkpoint), which
/// task 0 closes first: its end lingers in TIME_WAIT on task 0's listener port for a minute.
const TCP_EARLY: Program = Program {
    argv: |exe, ports, delay, addr| {
        let mut v = late_argv(exe, ports, delay, addr);
        v.push("2".into());
        v
    },
    ..TCP
};

/// TCP_EARLY with SHARE=1: task 0's child holds its listener too, which the tree's root makes
/// once at the restart (`pair::listener`).
const TCP_EARLY_SHARED: Program = Program {
    argv: |exe, ports, delay, addr| {
        let mut v = (TCP_EARLY.argv)(exe, ports, delay, addr);
        v[7] = "1".into();
        v
    },
    ..TCP
};

/// `twice`: restarted swapped, checkpointed again and restarted where each task was at first.
fn late_exchange_on_swapped_nodes(tag: &str, prog: &Program, as_nobody: bool, twice: bool) -> Result<()> {
    late_exchange(tag, prog, as_nobody, twice, [1, 0])
}

/// The step checkpointed, every task killed and restarted with task r in namespace
/// `restart_at[r]` (`twice`: checkpointed again there and restarted where each was at first).
fn late_exchange(tag: &str, prog: &Program, as_nobody: bool, twice: bool, restart_at: [usize; 2]) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let exe = compile_c(&work, prog.source, &[])?;
    let expected = ring::reference_of(&work, 2, |ports| (prog.argv)(&exe, ports, 0, None))?;
    let ours = format!("ckpt-{tag}-{}-", std::process::id());
    let before = netns_list();
    ensure!(!before.contains(&ours), "namespaces named as this test's are there already:\n{before}");
    let nodes = Nodes::new(tag, false)?;
    let r = (|| -> Result<()> {
        let step = Step { bins: &bins, work: &work, exe: &exe, prog, nodes: &nodes, job: format!("netns{}", std::process::id()), as_nobody };
        let mut first = step.start([0, 1], 0)?;
        checkpoint_and_kill(&mut first, 5, 1)?;
        // Swapped: task 0 where task 1 was, and task 1 where task 0 was.
        let mut second = step.start(restart_at, 1)?;
        if twice {
            // Checkpointed there, and back where each was at first: the first run's addresses
            // are the nodes' own again, and nothing shows otherwise.
            let at = second.iter().filter_map(Proc::last_step).min().unwrap_or(0);
            checkpoint_and_kill(&mut second, at + 3, 2)?;
            second = step.start([0, 1], 2)?;
        }
        // Task 1 first: should its late connect fail, task 0 would wait for it forever.
        for (r, p) in second.iter_mut().enumerate().rev() {
            p.wait(Duration::from_secs(120))?;
            let (out, err) = (p.stdout(), p.stderr());
            ensure!(err.contains("restarted from"), "task {r} did not resume:\n{err}");
            ensure!(!out.contains("start step_"), "task {r} started over:\n{out}");
            ensure!(p.record().success(), "task {r} failed:\n{out}\n{err}");
            ensure!(result_of(&out) == Some(expected[r].as_str()), "task {r}: result {:?}, uninterrupted {}; stdout:\n{out}\nstderr:\n{err}", result_of(&out), expected[r]);
            // Nothing but the killed run's closed connections held a port here.
            ensure!(!err.contains("so it listens at"), "task {r}'s listener moved to another port:\n{err}");
        }
        for (r, lines) in (prog.shows)(&nodes.addr[0], &nodes.addr[1]).iter().enumerate() {
            let out = second[r].stdout();
            if let Some(l) = lines.iter().find(|l| !out.contains(l.as_str())) {
                bail!("task {r} does not show the old addresses ({:?} is missing):\n{out}", l.trim_end());
            }
        }
        Ok(())
    })();
    drop(nodes);
    // What `ip netns list` showed before the test, and nothing of the test's.
    let after = netns_list();
    if let Some(l) = after.lines().find(|l| l.contains(&ours)) {
        bail!("a namespace of the test is left behind: {l}");
    }
    r
}

/// The laps of the Open MPI ring (one a few tens of milliseconds here: well after the
/// checkpoint at lap 10 when the tasks are killed).
const LAPS: u32 = 400;

/// Open MPI's `mpirun -np 4` of mpi_ring (2 ranks a node) under ckpt-run in namespace c (the batch script's node,
/// rank 0 of the joined step), its srun the stand-in that runs orted i in the namespace on line i
/// of `work/nodes`; `resume`: with --resume.
fn start_mpirun(bins: &Bins, work: &Workdir, nodes: &Nodes, ring: &Path, delay: u32, ckpt: Option<bool>) -> Result<Proc> {
    let mut argv: Vec<OsString> = ["ip", "netns", "exec", &nodes.ns[2]].map(OsString::from).to_vec();
    if let Some(resume) = ckpt {
        argv.extend([bins.run.clone().into(), "--dir".into(), work.join("ckpt").into()]);
        argv.extend(resume.then(|| "--resume".into()));
        argv.push("--".into());
    }
    // By name, not path: an mpirun run by its path takes its directory as Open MPI's prefix and
    // puts it first on its daemons' PATH, where Slurm's own srun would be found.
    argv.extend(["mpirun.openmpi", "--mca", "btl", "tcp,self", "-np", "4"].map(OsString::from));
    argv.extend([ring.into(), LAPS.to_string().into(), delay.to_string().into()]);
    let mut c = user_command(&argv, false, work.path());
    let out = work.join(if ckpt.is_some() { "tasks" } else { "tasks-plain" });
    std::fs::create_dir_all(&out)?;
    let path = format!("{}:{}", work.join("fakebin").display(), std::env::var("PATH").unwrap_or_default());
    c.env("PATH", path).env("OUT", out).env("NETNS_SRUN_NODES", work.join("nodes")).env("TMPDIR", work.path());
    // The allocation mpirun sees: nodes n1 and n2, not this machine's name, so that it starts
    // an orted on each through srun.
    for (k, v) in [("SLURM_JOB_ID", "77"), ("SLURM_JOBID", "77"), ("SLURM_NODELIST", "n1,n2"), ("SLURM_JOB_NODELIST", "n1,n2"), ("SLURM_TASKS_PER_NODE", "2(x2)"), ("SLURM_NNODES", "2"), ("SLURM_JOB_NUM_NODES", "2"), ("SLURM_NTASKS", "4")] {
        c.env(k, v);
    }
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1").env("OMPI_MCA_btl_vader_backing_directory", work.path());
    for v in ["SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_ID", "CKPT_STEP_JOIN"] {
        c.env_remove(v);
    }
    if ckpt.is_some() {
        c.env("CKPT_JOIN_SRUN", "1");
    }
    Proc::spawn(&format!("mpirun in {}{}", nodes.ns[2], if ckpt == Some(true) { " (resumed)" } else { "" }), c)
}

/// Where the stand-in srun ran each orted (its log: "task I in NAMESPACE: PROGRAM"), newest last.
fn placements(work: &Workdir) -> Vec<String> {
    std::fs::read_to_string(work.join("tasks").join("srun.log")).unwrap_or_default().lines().map(String::from).collect()
}

/// What the orteds' trees printed (stand-in srun's task files in `work/dir`).
fn orteds(work: &Workdir, dir: &str) -> String {
    (0..2).map(|i| format!("orted {i}:\n{}", std::fs::read_to_string(work.join(dir).join(format!("task{i}"))).unwrap_or_default())).collect()
}

fn openmpi_on_swapped_nodes(tag: &str) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let ring = compile_c(&work, "mpi_ring.c", &["-l:libmpi.so.40"])?;
    std::fs::create_dir_all(work.join("fakebin"))?;
    std::fs::rename(compile_c(&work, "netns_srun.c", &[])?, work.join("fakebin").join("srun"))?;
    let ours = format!("ckpt-{tag}-{}-", std::process::id());
    ensure!(!netns_list().contains(&ours), "namespaces named as this test's are there already");
    let nodes = Nodes::new(tag, true)?;
    let r = (|| -> Result<()> {
        let place = |first: usize| std::fs::write(work.join("nodes"), format!("{}\n{}\n", nodes.ns[first], nodes.ns[1 - first]));
        place(0)?;
        let mut plain = start_mpirun(&bins, &work, &nodes, &ring, 0, None)?;
        plain.wait(Duration::from_secs(180))?;
        let expected = result_of(&plain.stdout()).with_context(|| format!("no result from the uninterrupted run:\n{}\n{}\n{}", plain.stdout(), plain.stderr(), orteds(&work, "tasks-plain")))?.to_string();
        let mut p = start_mpirun(&bins, &work, &nodes, &ring, 50, Some(false))?;
        p.wait_for_step(10, Duration::from_secs(120))?;
        let ctl = Command::new(bins.dir.join("ckpt-ctl")).args(["checkpoint", "--wait", "--name", "mpirun.openmpi", "--dir"]).arg(work.join("ckpt")).output()?;
        ensure!(ctl.status.success(), "ckpt-ctl checkpoint: {}\n{}", String::from_utf8_lossy(&ctl.stderr), p.stderr());
        p.wait_for_stderr("step checkpoint 1: 3 tasks committed", Duration::from_secs(60))?;
        // Every process: the orteds' trees are in mpirun's namespace (the stand-in's children).
        p.kill()?;
        ensure!(result_of(&p.stdout()).is_none(), "the ring finished before the kill:\n{}", p.stdout());
        let before = placements(&work);
        place(1)?;
        let mut q = start_mpirun(&bins, &work, &nodes, &ring, 50, Some(true))?;
        let st = q.wait(Duration::from_secs(300)).map_err(|e| anyhow::anyhow!("{e}\n{}\n{}\n{}", q.stdout(), q.stderr(), orteds(&work, "tasks")))?;
        let (out, err) = (q.stdout(), q.stderr());
        ensure!(st.success(), "the resumed mpirun failed: {st}\n{out}\n{err}\n{}", orteds(&work, "tasks"));
        let every = ["", ".1", ".2"].iter().all(|t| err.contains(&format!("restarted from {}/mpirun.openmpi{t}.ckpt/", work.join("ckpt").display())));
        ensure!(every, "not every tree of the joined step resumed:\n{err}");
        ensure!(!out.contains("start mpi_ring"), "the ring started over:\n{out}");
        ensure!(result_of(&out) == Some(expected.as_str()), "result {:?}, uninterrupted {expected}:\n{out}\n{err}", result_of(&out));
        // The orteds (with their ranks) each where the other was.
        let after: Vec<String> = placements(&work).split_off(before.len());
        let want = [format!("task 0 in {}:", nodes.ns[1]), format!("task 1 in {}:", nodes.ns[0])];
        ensure!(before.len() == 2 && after.len() == 2 && after.iter().zip(&want).all(|(l, w)| l.starts_with(w.as_str())), "the orteds were not restarted swapped: {before:?} then {after:?}");
        Ok(())
    })();
    drop(nodes);
    if let Some(l) = netns_list().lines().find(|l| l.contains(&ours)) {
        bail!("a namespace of the test is left behind: {l}");
    }
    r
}

/// Open MPI's mpirun (TCP BTL alone) whose two orteds, each with its 2 ranks, run in two network
/// namespaces as nodes: checkpointed, every process killed, resumed with the orteds swapped
/// between the nodes (mpirun where it was): the uninterrupted result, started once.
#[test]
fn openmpi_ranks_restarted_on_swapped_nodes_same_result() -> Result<()> {
    if let Some(why) = unrunnable() {
        ckpt_tests::skip_test!("{why}");
        return Ok(());
    }
    if !Path::new("/usr/bin/mpirun.openmpi").is_file() {
        ckpt_tests::skip_test!("Open MPI is not installed (Debian package openmpi-bin)");
        return Ok(());
    }
    openmpi_on_swapped_nodes("nsompi")
}

/// Why the test cannot run here.
fn unrunnable() -> Option<&'static str> {
    if !is_root() {
        return Some("network namespaces and a veth pair between them need root");
    }
    if !Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success()) {
        return Some("no `ip` (iproute2) to make network namespaces");
    }
    None
}

/// A test of `late_exchange_on_swapped_nodes(tag, prog, as_nobody, twice)`, skipped where it
/// cannot run.
macro_rules! netns_test {
    ($(#[$doc:meta])* $name:ident, $tag:expr, $prog:expr, $as_nobody:expr, $twice:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() -> Result<()> {
            if let Some(why) = unrunnable() {
                ckpt_tests::skip_test!("{why}");
                return Ok(());
            }
            late_exchange_on_swapped_nodes($tag, &$prog, $as_nobody, $twice)
        }
    };
}

netns_test!(late_connection_binding_its_old_address_after_a_restart_on_swapped_nodes_same_result, "nsswap", TCP, false, false);
netns_test!(late_connection_binding_its_old_address_after_a_restart_on_swapped_nodes_same_result_as_nobody, "nsswap-nobody", TCP, true, false);
netns_test!(
    /// Restarted swapped, checkpointed again and restarted with each task where it was at
    /// first: the second restart's map composed over the first's leaves every address as it is.
    late_connection_binding_its_old_address_after_a_restart_on_swapped_nodes_and_one_back_same_result,
    "nsback",
    TCP,
    false,
    true
);

/// Restarted where each task ran, right after the kill: task 0's listener port is still held
/// by the TIME_WAIT end of task 1's early connection, which task 0 closed first (no
/// SO_REUSEADDR: the listener had none), and whose peer address is on the other node (not
/// ours to bind, so it cannot be ended from here). Nothing else holds the port: the restart
/// waits it out (under a minute) and task 0 listens at its old port again, not moved.
fn late_exchange_in_place_after_time_wait(tag: &str, prog: &Program, as_nobody: bool) -> Result<()> {
    if let Some(why) = unrunnable() {
        ckpt_tests::skip_test!("{why}");
        return Ok(());
    }
    late_exchange(tag, prog, as_nobody, false, [0, 1])
}

#[test]
fn a_listener_port_held_only_by_closed_connections_in_time_wait_is_waited_for_not_moved_same_result() -> Result<()> {
    late_exchange_in_place_after_time_wait("nstw", &TCP_EARLY, false)
}

#[test]
fn a_listener_port_held_only_by_closed_connections_in_time_wait_is_waited_for_not_moved_same_result_as_nobody() -> Result<()> {
    late_exchange_in_place_after_time_wait("nstw-nobody", &TCP_EARLY, true)
}

/// The same where task 0's listener is held by two processes of its tree (made once by the
/// tree's root).
#[test]
fn a_listener_two_processes_hold_whose_port_only_closed_connections_hold_is_waited_for_not_moved_same_result() -> Result<()> {
    late_exchange_in_place_after_time_wait("nstw-tree", &TCP_EARLY_SHARED, false)
}

netns_test!(late_datagrams_to_old_addresses_after_a_restart_on_swapped_nodes_same_result, "nsudp", UDP, false, false);
netns_test!(late_datagrams_to_old_addresses_after_a_restart_on_swapped_nodes_same_result_as_nobody, "nsudp-nobody", UDP, true, false);
netns_test!(
    /// Restarted swapped, checkpointed again and restarted with each task where it was at
    /// first: datagrams to the first run's addresses reach the tasks there.
    late_datagrams_to_old_addresses_after_a_restart_on_swapped_nodes_and_one_back_same_result,
    "nsudpback",
    UDP,
    false,
    true
);
netns_test!(
    /// A UDP socket connected before the checkpoint, a datagram each way queued unread across
    /// it, sendmmsg and recvmmsg after it: restarted swapped, every datagram reaches its task
    /// and shows the old addresses.
    udp_connected_and_queued_before_a_restart_on_swapped_nodes_same_result,
    "nscut",
    UDPCUT,
    false,
    false
);
netns_test!(udp_connected_and_queued_before_a_restart_on_swapped_nodes_same_result_as_nobody, "nscut-nobody", UDPCUT, true, false);
netns_test!(
    /// The same restarted swapped, checkpointed again (the datagrams still queued) and
    /// restarted where each task was at first.
    udp_connected_and_queued_before_a_restart_on_swapped_nodes_and_one_back_same_result,
    "nscutback",
    UDPCUT,
    false,
    true
);
