//! A joined step (docs/multinode.md, part 1b): the daemons an MPI launcher starts through
//! `srun` inside an allocation (Open MPI's `orted`, MPICH's `hydra_pmi_proxy`) become tasks
//! 1..N of a step whose rank 0 is the launcher's own process tree (`ckpt-run mpirun`).
//!
//! Two pieces, both pure (the runtime's exec hook and `Ident::from_env` use them):
//! - `Join`: the identity a rewritten srun passes to its tasks in `CKPT_STEP_JOIN`: a tag
//!   naming the joined step, the rank of srun's first task in it (`offset`) and its size. A
//!   task's rank is `offset + SLURM_PROCID`.
//! - `free_offset`, `Claim`: two sruns of one tree at once (`srun A & srun B`) are each a part
//!   of the one joined step with ranks of its own: the rewrite takes the lowest ranks no live
//!   srun of the tree holds (`DIR/NAME.srun-ranks` lists the claims, under a lock: the runtime's
//!   `srunjoin`), so srun A's tasks are 1..=2 (`1:3:TAG`) and srun B's 3..=4 (`3:5:TAG`). A
//!   task's `size` is then what its srun knew (its own srun's last rank + 1); rank 0 counts the
//!   step to the highest rank linked (`Ident::fits`).
//! - `rewrite_srun`: srun's argv with `ckpt-run --dir DIR --name NAME [--resume] --` put in
//!   front of the program it runs, and the number of tasks srun starts. Anything this cannot
//!   read for certain (an option it does not know, a task count it cannot tell, `--multi-prog`,
//!   a heterogeneous step, no program) leaves srun as it is: the checkpoint is then refused at
//!   srun, as before, rather than taken of a step whose size was guessed.

/// The variable a rewritten srun passes to the tasks it starts.
pub const JOIN_VAR: &str = "CKPT_STEP_JOIN";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Names the joined step (rank 0's image name): its epoch is made from it.
    pub tag: String,
    /// The joined step's rank of srun's task 0.
    pub offset: u32,
    /// Tasks in the joined step, rank 0 included.
    pub size: u32,
}

impl Join {
    /// `OFFSET:SIZE:TAG`.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.offset, self.size, self.tag)
    }

    /// None for anything but `OFFSET:SIZE:TAG` with 0 < OFFSET < SIZE and a tag.
    pub fn decode(s: &str) -> Option<Join> {
        let mut it = s.splitn(3, ':');
        let offset = it.next()?.parse::<u32>().ok()?;
        let size = it.next()?.parse::<u32>().ok()?;
        let tag = it.next()?.to_string();
        (offset > 0 && offset < size && !tag.is_empty()).then_some(Join { tag, offset, size })
    }

    /// The joined step's rank of srun's task `procid` of `ntasks` (None: outside the step).
    pub fn rank(&self, procid: u32, ntasks: u32) -> Option<u32> {
        let last = self.offset.checked_add(ntasks)?;
        (procid < ntasks && last <= self.size).then(|| self.offset + procid)
    }
}

/// The lowest rank (from 1) at which `n` ranks are free of every `taken` range (offset, size:
/// ranks offset..size).
pub fn free_offset(taken: &[(u32, u32)], n: u32) -> Option<u32> {
    let mut at = 1u32;
    loop {
        let end = at.checked_add(n)?;
        match taken.iter().filter(|&&(o, sz)| o < end && at < sz).map(|&(_, sz)| sz).max() {
            None => return Some(at),
            Some(sz) => at = sz,
        }
    }
}

/// The joined-step identity in a process's environment (`/proc/PID/environ`: NUL-separated).
pub fn in_environ(environ: &[u8]) -> Option<Join> {
    let want = [JOIN_VAR.as_bytes(), b"="].concat();
    let v = environ.split(|&b| b == 0).find_map(|e| e.strip_prefix(want.as_slice()))?;
    Join::decode(std::str::from_utf8(v).ok()?)
}

/// One line of the registry of a tree's sruns (`DIR/NAME.srun-ranks`): the process that execs a
/// rewritten srun (its pid and start time, which its exec keeps) and the ranks it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub pid: i32,
    pub start: u64,
    pub offset: u32,
    pub size: u32,
}

impl Claim {
    pub fn encode(&self) -> String {
        format!("{} {} {} {}\n", self.pid, self.start, self.offset, self.size)
    }

    /// The claims of a registry's text (lines it cannot read are skipped).
    pub fn decode_all(s: &str) -> Vec<Claim> {
        s.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().map(|x| x.parse::<u64>().ok());
                let (pid, start, offset, size) = (w.next()??, w.next()??, w.next()??, w.next()??);
                Some(Claim { pid: i32::try_from(pid).ok()?, start, offset: u32::try_from(offset).ok()?, size: u32::try_from(size).ok()? })
            })
            .collect()
    }
}

/// srun's short options that take a value (in the same word, `-n4`, or the next, `-n 4`).
const SHORT_VALUE: &[u8] = b"ABCDGJLMNSTWcdeimnopqrtwx";
/// srun's short options without a value (`-K` and `-I` take one only in the same word).
const SHORT_FLAG: &[u8] = b"EHIKOQXZhklsuvV";
/// srun's long options that take a value as the next word when not given as `--opt=value`.
const LONG_VALUE: &[&str] = &[
    "account", "acctg-freq", "bb", "bbf", "begin", "bcast-exclude", "chdir", "cluster-constraint", "clusters", "comment",
    "constraint", "container", "container-id", "context", "core-spec", "cores-per-socket", "cpu-bind", "cpu-freq",
    "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution", "epilog", "error", "exclude",
    "export", "extra-node-info", "gid", "gpu-bind", "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task",
    "gres", "gres-flags", "hint", "input", "job-name", "jobid", "licenses", "mail-type", "mail-user", "mcs-label", "mem",
    "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "mpi", "network", "nodefile", "nodelist", "nodes", "ntasks",
    "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket", "ntasks-per-tres", "open-mode", "output",
    "partition", "power", "prefer", "priority", "profile", "prolog", "qos", "relative", "reservation", "signal",
    "slurmd-debug", "sockets-per-node", "switches", "task-epilog", "task-prolog", "tasks-per-node", "thread-spec", "threads",
    "threads-per-core", "time", "time-min", "tmp", "tres-bind", "tres-per-task", "uid", "wait", "wckey",
];
/// srun's long options without a value (or whose value is optional: only `--opt=value`).
const LONG_FLAG: &[&str] = &[
    "bcast", "compress", "contiguous", "cpu-overcommit", "disable-status", "exact", "exclusive", "external-launcher", "hold",
    "immediate", "kill-on-bad-exit", "label", "mem-per-cpu-none", "nice", "no-allocate", "no-kill", "oversubscribe",
    "overcommit", "overlap", "preserve-env", "propagate", "pty", "quiet", "quit-on-interrupt", "reboot", "resv-ports",
    "send-libs", "spread-job", "test-only", "unbuffered", "use-min-nodes", "verbose", "x11",
];
/// Options after which srun runs no single program on every task.
const NOT_A_STEP: &[&str] = &["multi-prog", "het-group", "help", "usage", "version", "test-only", "jobid", "pty"];
const NOT_A_STEP_SHORT: &[u8] = b"hV";

/// srun's argv read as far as the rewrite needs it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Srun {
    /// Index in argv of the program srun runs.
    program: usize,
    ntasks: Option<u32>,
    nodes: Option<u32>,
    per_node: Option<u32>,
}

fn count(v: &str) -> Option<u32> {
    v.trim().parse::<u32>().ok().filter(|&n| n > 0)
}

fn note(s: &mut Srun, long: &str, value: &str) -> Option<()> {
    match long {
        "ntasks" => s.ntasks = Some(count(value)?),
        // `-N 2-4` lets Slurm choose: the count is not known here.
        "nodes" => s.nodes = Some(count(value)?),
        "ntasks-per-node" | "tasks-per-node" => s.per_node = Some(count(value)?),
        _ => {}
    }
    Some(())
}

fn long_of(c: u8) -> &'static str {
    match c {
        b'n' => "ntasks",
        b'N' => "nodes",
        _ => "",
    }
}

/// Read srun's options (argv[0] is srun), up to the program.
fn parse(argv: &[String]) -> Option<Srun> {
    let mut s = Srun::default();
    let mut i = 1;
    while i < argv.len() {
        let a = argv[i].as_str();
        if a == "--" {
            s.program = i + 1;
            break;
        }
        if let Some(l) = a.strip_prefix("--") {
            let (name, value) = match l.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (l, None),
            };
            if NOT_A_STEP.contains(&name) {
                return None;
            }
            if LONG_VALUE.contains(&name) {
                let v = match value {
                    Some(v) => v,
                    None => {
                        i += 1;
                        argv.get(i)?.clone()
                    }
                };
                note(&mut s, name, &v)?;
            } else if !LONG_FLAG.contains(&name) {
                return None;
            }
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            let b = cluster.as_bytes();
            let mut j = 0;
            while j < b.len() {
                let c = b[j];
                if NOT_A_STEP_SHORT.contains(&c) {
                    return None;
                }
                if c == b'K' || c == b'I' {
                    break; // an optional value in the rest of the word
                }
                if SHORT_VALUE.contains(&c) {
                    let v = if j + 1 < b.len() {
                        cluster[j + 1..].to_string()
                    } else {
                        i += 1;
                        argv.get(i)?.clone()
                    };
                    note(&mut s, long_of(c), &v)?;
                    break;
                }
                if !SHORT_FLAG.contains(&c) {
                    return None;
                }
                j += 1;
            }
        } else {
            s.program = i;
            break;
        }
        i += 1;
    }
    (s.program > 0 && s.program < argv.len()).then_some(s)
}

/// What the rewrite puts in front of srun's program.
pub struct Prefix<'a> {
    /// ckpt-run's path (the same build as the runtime).
    pub ckpt_run: &'a str,
    pub dir: &'a str,
    /// The joined step's name: rank 0's image name (each task adds its `.RANK`).
    pub name: &'a str,
    /// Checkpoint and stop signals (0: none), as numbers.
    pub signal: i32,
    pub stop_signal: i32,
    /// Resume each task from the joined step's last complete set.
    pub resume: bool,
}

/// `argv` of srun (argv[0] srun itself) with `ckpt-run ... --` before its program, and the
/// number of tasks srun starts; None when it cannot be read for certain or already runs
/// ckpt-run. `env`: srun's environment (SLURM_NTASKS and SLURM_JOB_NUM_NODES are srun's
/// defaults inside an allocation).
pub fn rewrite_srun(argv: &[String], p: &Prefix, env: impl Fn(&str) -> Option<String>) -> Option<(Vec<String>, u32)> {
    let s = parse(argv)?;
    let prog = &argv[s.program];
    if std::path::Path::new(prog).file_name().is_some_and(|f| f == "ckpt-run") {
        return None;
    }
    let ntasks = match (s.ntasks, s.nodes, s.per_node) {
        (Some(n), _, _) => n,
        (None, Some(nodes), Some(per)) => nodes.checked_mul(per)?,
        // `-N 2` alone: one task per node unless the job says more tasks; Slurm's default
        // then spreads SLURM_NTASKS, a count this cannot be sure of.
        (None, Some(nodes), None) if env("SLURM_NTASKS").is_none() => nodes,
        (None, None, None) => count(&env("SLURM_NTASKS")?)?,
        _ => return None,
    };
    let mut out: Vec<String> = argv[..s.program].to_vec();
    out.extend([p.ckpt_run.to_string(), "--dir".into(), p.dir.to_string(), "--name".into(), p.name.to_string()]);
    if p.signal > 0 {
        out.extend(["--signal".into(), p.signal.to_string()]);
    }
    if p.stop_signal > 0 {
        out.extend(["--stop-signal".into(), p.stop_signal.to_string()]);
    }
    if p.resume {
        out.push("--resume".into());
    }
    out.push("--".into());
    out.extend(argv[s.program..].iter().cloned());
    Some((out, ntasks))
}

/// The rewritten srun's `argv` (`rewrite_srun`) as a restart runs it again: `--resume` after
/// the ckpt-run word, so that each task restarts its tree from the joined step's last complete
/// set. One that resumes already (a srun a restart ran again, checkpointed again) is as it is.
/// None: not a rewritten srun (no ckpt-run word).
pub fn resume_argv(argv: &[String]) -> Option<Vec<String>> {
    let at = argv.iter().position(|a| std::path::Path::new(a).file_name().is_some_and(|f| f == "ckpt-run"))?;
    let end = argv[at..].iter().position(|a| a == "--").map_or(argv.len(), |e| at + e);
    if argv[at..end].iter().any(|a| a == "--resume") {
        return Some(argv.to_vec());
    }
    let mut out = argv.to_vec();
    out.insert(at + 1, "--resume".to_string());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    const P: Prefix = Prefix { ckpt_run: "/b/ckpt-run", dir: "/d", name: "mpirun", signal: 12, stop_signal: 0, resume: false };

    #[test]
    fn join_identity() {
        let j = Join { tag: "mpirun:7".into(), offset: 1, size: 3 };
        assert_eq!(Join::decode(&j.encode()), Some(j.clone()));
        assert_eq!(j.rank(0, 2), Some(1));
        assert_eq!(j.rank(1, 2), Some(2));
        assert_eq!(j.rank(2, 2), None);
        assert_eq!(j.rank(0, 3), None, "more tasks than the joined step has room for");
        for bad in ["", "1:3", "0:3:t", "3:3:t", "x:3:t", "1:3:"] {
            assert_eq!(Join::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn offsets_of_sruns_side_by_side() {
        assert_eq!(free_offset(&[], 2), Some(1));
        assert_eq!(free_offset(&[(1, 3)], 2), Some(3), "after the first srun's ranks 1 and 2");
        assert_eq!(free_offset(&[(3, 5)], 2), Some(1), "the first srun ended: its ranks are free");
        assert_eq!(free_offset(&[(3, 5)], 3), Some(5), "no room before the live one");
        assert_eq!(free_offset(&[(1, 3), (5, 6)], 2), Some(3));
        assert_eq!(free_offset(&[(1, 3), (4, 6)], 2), Some(6));
        let env = b"A=1\0CKPT_STEP_JOIN=3:5:mpirun\0B=2\0";
        assert_eq!(in_environ(env), Some(Join { tag: "mpirun".into(), offset: 3, size: 5 }));
        assert_eq!(in_environ(b"A=1\0"), None);
        let c = Claim { pid: 12, start: 99, offset: 3, size: 5 };
        let text = format!("{}junk\n{}", c.encode(), Claim { pid: 13, ..c.clone() }.encode());
        assert_eq!(Claim::decode_all(&text), vec![c.clone(), Claim { pid: 13, ..c }]);
    }

    #[test]
    fn open_mpi_and_mpich_sruns() {
        // Open MPI 4.1's plm/slurm.
        let a = words("srun --ntasks-per-node=1 --kill-on-bad-exit --mpi=none --ntasks=2 orted -mca ess slurm");
        let (out, n) = rewrite_srun(&a, &P, |_| None).unwrap();
        assert_eq!(n, 2);
        assert_eq!(out.join(" "), "srun --ntasks-per-node=1 --kill-on-bad-exit --mpi=none --ntasks=2 /b/ckpt-run --dir /d --name mpirun --signal 12 -- orted -mca ess slurm");
        // MPICH 4.0's hydra.
        let a = words("srun -N 2 -n 2 --input none /usr/bin/hydra_pmi_proxy --control-port n1:4242");
        let (out, n) = rewrite_srun(&a, &Prefix { resume: true, stop_signal: 10, ..P }, |_| None).unwrap();
        assert_eq!(n, 2);
        assert_eq!(out.join(" "), "srun -N 2 -n 2 --input none /b/ckpt-run --dir /d --name mpirun --signal 12 --stop-signal 10 --resume -- /usr/bin/hydra_pmi_proxy --control-port n1:4242");
    }

    #[test]
    fn resumed_argv() {
        let a = words("srun -n 2 /b/ckpt-run --dir /d --name mpirun -- orted --resume");
        assert_eq!(resume_argv(&a).unwrap().join(" "), "srun -n 2 /b/ckpt-run --resume --dir /d --name mpirun -- orted --resume");
        let again = words("srun -n 2 /b/ckpt-run --resume -- orted");
        assert_eq!(resume_argv(&again), Some(again.clone()), "run again and checkpointed again: as it is");
        assert_eq!(resume_argv(&words("srun -n 2 orted")), None);
    }

    #[test]
    fn task_counts() {
        let n = |s: &str, env: &[(&str, &str)]| {
            let env: Vec<(String, String)> = env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            rewrite_srun(&words(s), &P, |k| env.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone())).map(|r| r.1)
        };
        assert_eq!(n("srun -n4 prog", &[]), Some(4));
        assert_eq!(n("srun -ln 3 prog", &[]), Some(3));
        assert_eq!(n("srun -N2 --ntasks-per-node 2 prog", &[]), Some(4));
        assert_eq!(n("srun -N 2 prog", &[]), Some(2));
        assert_eq!(n("srun -N 2 prog", &[("SLURM_NTASKS", "4")]), None, "spread of the job's tasks: not known");
        assert_eq!(n("srun prog", &[("SLURM_NTASKS", "3")]), Some(3));
        assert_eq!(n("srun prog", &[]), None);
        assert_eq!(n("srun -N 2-4 prog", &[]), None);
        assert_eq!(n("srun -K1 -n 2 -- prog -n 9", &[]), Some(2));
    }

    #[test]
    fn left_alone() {
        for s in [
            "srun",
            "srun -n 2",
            "srun --version",
            "srun -n 2 --multi-prog conf",
            "srun -n 2 --no-such-option prog",
            "srun -n 2 -y prog",
            "srun -n 2 /opt/ckpt/ckpt-run -- prog",
            "srun --jobid 5 -n 2 prog",
            "srun -n",
        ] {
            assert_eq!(rewrite_srun(&words(s), &P, |_| None), None, "{s}");
        }
    }
}
