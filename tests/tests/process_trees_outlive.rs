//! Processes that outlive the program (issue 13; DMTCP's shared-fd2): the program's parent makes
//! a socketpair, forks two children that share it and exits at once. As natively, ckpt-run
//! returns at once with the parent's status and the children live on (with the namespace's
//! init); they stay checkpointable (their own checkpoint signal, `ckpt-ctl`), a SIGKILL of the
//! namespace's init ends them all, and ckpt-restart brings both back with their pids and the
//! socket's unread data: the counts go on, no number lost or repeated. ckpt-restart stands for
//! the set's root (the writer) and exits with its status; the reader ends after it.
//!
//! Also: a shell's background job outlives `bash -c '... & exit 3'`; a program that leaves
//! nothing behind ends as before (init gone when ckpt-run returns); a task of a Slurm step keeps
//! the old end (the namespace ends with the program).

use anyhow::{ensure, Context, Result};
use ckpt_tests::scenario::user_command;
use ckpt_tests::{Bins, Proc, Program, Workdir};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

/// The namespace inits (ckpt-init, not zombies) whose command line names `images` (ckpt-run's
/// and ckpt-restart's arguments do).
fn inits_of(images: &Path) -> Vec<i32> {
    let needle = images.as_os_str().as_encoded_bytes().to_vec();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let live = stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'));
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            live && stat.contains("(ckpt-init)") && cmdline.windows(needle.len()).any(|w| w == needle.as_slice())
        })
        .collect();
    out.sort();
    out
}

/// The pid a process (outside pid `pid`) has in its own namespace (last NSpid field).
fn inner_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok()
}

/// A test's directories and binaries; the namespaces left behind are killed when it ends,
/// whatever happened (no stray process).
struct Case {
    bins: Bins,
    work: Workdir,
    images: PathBuf,
    /// The file the program's processes count into.
    out: PathBuf,
}

impl Case {
    fn new(name: &str) -> Result<Case> {
        let work = Workdir::new(name)?;
        Ok(Case { bins: Bins::locate()?, images: work.images(), out: work.join("out"), work })
    }

    /// outlive_pair run with `args` (FILE is `out`).
    fn pair(&self, mode: &str, count: &str) -> Result<Program> {
        Program::c(&self.work, "outlive_pair.c", &[], &[mode, self.out.to_str().unwrap(), count, if mode == "loop" { "10" } else { "50" }])
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        for p in inits_of(&self.images) {
            // SAFETY: SIGKILL of a namespace init the test made; the kernel ends its namespace.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
}

fn lines(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect()
}

/// Whether `got` is 1, 2, ..., n (each once, in order).
fn counts_up(got: &[u64]) -> bool {
    got.iter().enumerate().all(|(i, &v)| v == i as u64 + 1)
}

fn run_cmd(bins: &Bins, images: &Path, program: &Program, env: &[(&str, &str)], as_nobody: bool) -> std::process::Command {
    let mut cmd = ckpt_tests::scenario::ckpt_run_with(bins, program, images, &[], as_nobody);
    cmd.env("CKPT_NAMESPACE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn shared_fd2(as_nobody: bool) -> Result<()> {
    let case = Case::new(if as_nobody { "outlive-pair-nobody" } else { "outlive-pair" })?;
    let (bins, images, out) = (&case.bins, case.images.clone(), case.out.clone());
    const COUNT: u64 = 400;
    let program = case.pair("pair", &COUNT.to_string())?;

    // ckpt-run returns with the parent's status while its children go on.
    let mut run = Proc::spawn("ckpt-run", run_cmd(bins, &images, &program, &[], as_nobody))?;
    let st = run.wait(MINUTE)?;
    let rec = run.record();
    let ctx = || format!("\nckpt-run: {}\nstdout: {}\nstderr: {}", ckpt_tests::process::fmt_status(rec.status), rec.stdout, rec.stderr);
    ensure!(st.code() == Some(3), "ckpt-run's status is not the parent's (3){}", ctx());
    let at_return = lines(&out).len() as u64;
    ensure!(at_return < COUNT, "the children had ended before ckpt-run returned{}", ctx());
    let kids: Vec<i32> = rec.stdout.lines().find_map(|l| l.strip_prefix("children ")).map(|l| l.split_whitespace().filter_map(|p| p.parse().ok()).collect()).unwrap_or_default();
    ensure!(kids.len() == 2, "no `children` line{}", ctx());
    let (writer, reader) = (kids[0], kids[1]);
    let init = match inits_of(&images).as_slice() {
        [i] => *i,
        other => anyhow::bail!("not one namespace init left with the children: {other:?}{}", ctx()),
    };
    let members = ckpt_tests::process::children(init);
    let outside = |inner: i32| members.iter().copied().find(|&p| inner_pid(p) == Some(inner));
    let (Some(w_out), Some(r_out)) = (outside(writer), outside(reader)) else {
        anyhow::bail!("the children {kids:?} are not init's ({members:?}){}", ctx());
    };
    ensure!(ckpt_tests::process::wait_until(MINUTE, || lines(&out).len() as u64 >= at_return + 5), "the children did not go on after ckpt-run returned{}", ctx());

    // A checkpoint asked of a remaining process with its signal, then one through ckpt-ctl.
    let set = images.join(program.image_name());
    // SAFETY: signalling a process the test started.
    unsafe { libc::kill(w_out, libc::SIGUSR2) };
    ensure!(ckpt_tests::process::wait_until(MINUTE, || set.join("tree").is_file()), "no set after kill -USR2 of the writer{}", ctx());
    let ctl = |args: &[&str]| -> Result<std::process::Output> {
        let mut argv: Vec<OsString> = vec![bins.dir.join("ckpt-ctl").into(), "--dir".into(), images.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        user_command(&argv, as_nobody, &program.cwd).output().context("ckpt-ctl")
    };
    let status = ctl(&["status"])?;
    ensure!(status.status.success() && String::from_utf8_lossy(&status.stdout).contains("pid:"), "ckpt-ctl status after the program ended: {status:?}{}", ctx());
    let cp = ctl(&["checkpoint", "--wait"])?;
    ensure!(cp.status.success(), "ckpt-ctl checkpoint --wait after the program ended: {cp:?}{}", ctx());
    let tree = std::fs::read_to_string(set.join("tree"))?;
    ensure!(tree.contains("generation 2") && tree.contains(&format!("root {writer}")), "the second set is not the writer's tree:\n{tree}");
    let at_cut = lines(&out).len() as u64;
    ensure!(ckpt_tests::process::wait_until(MINUTE, || lines(&out).len() as u64 >= at_cut + 10), "the children did not go on after the checkpoints");

    // SIGKILL of init ends the whole namespace.
    // SAFETY: SIGKILL of the namespace init the test made.
    unsafe { libc::kill(init, libc::SIGKILL) };
    for p in [init, w_out, r_out] {
        ensure!(ckpt_tests::process::wait_gone(p, MINUTE), "process {p} outlived the SIGKILL of its namespace's init");
    }
    let before = lines(&out);
    ensure!(counts_up(&before) && (before.len() as u64) < COUNT, "the counts before the kill: {before:?}");

    // ckpt-restart brings both back; it exits with the writer's status (5), the reader ends too.
    let mut argv: Vec<OsString> = vec![bins.restart.clone().into()];
    argv.push(set.clone().into());
    let mut restart = Proc::spawn("ckpt-restart", user_command(&argv, as_nobody, &program.cwd))?;
    let same_pids = ckpt_tests::process::wait_until(MINUTE, || {
        let now: Vec<i32> = inits_of(&images).iter().flat_map(|&i| ckpt_tests::process::children(i)).filter_map(inner_pid).collect();
        now.contains(&writer) && now.contains(&reader) || !restart.running()
    });
    let mut pids_seen: Vec<i32> = inits_of(&images).iter().flat_map(|&i| ckpt_tests::process::children(i)).filter_map(inner_pid).collect();
    pids_seen.sort();
    let st = restart.wait(Duration::from_secs(300))?;
    let rrec = restart.record();
    let rctx = format!("\nckpt-restart: {}\nstdout: {}\nstderr: {}", ckpt_tests::process::fmt_status(rrec.status), rrec.stdout, rrec.stderr);
    ensure!(same_pids && pids_seen == vec![writer, reader], "the restarted processes are {pids_seen:?}, not {kids:?}{rctx}");
    ensure!(st.code() == Some(5), "ckpt-restart's status is not the writer's (5){rctx}");
    ensure!(ckpt_tests::process::wait_until(MINUTE, || inits_of(&images).is_empty()), "the restarted namespace did not end after its processes{rctx}");
    let got = lines(&out);
    ensure!(counts_up(&got) && got.len() as u64 == COUNT, "the counts after the restart are not 1..{COUNT} each once (lost, repeated or started over): {} numbers, killed at {}{rctx}", got.len(), before.len());
    Ok(())
}

#[test]
fn children_left_by_the_program_live_on_are_checkpointed_and_restarted() -> Result<()> {
    shared_fd2(false)
}

#[test]
fn children_left_by_the_program_live_on_are_checkpointed_and_restarted_as_nobody() -> Result<()> {
    shared_fd2(true)
}

/// Start a program, wait for ckpt-run; its status and record.
fn run_to_end(bins: &Bins, images: &Path, program: &Program, env: &[(&str, &str)]) -> Result<(Option<i32>, ckpt_tests::Record)> {
    let mut run = Proc::spawn("ckpt-run", run_cmd(bins, images, program, env, false))?;
    let st = run.wait(MINUTE)?;
    Ok((st.code(), run.record()))
}

#[test]
fn a_shells_background_job_outlives_it() -> Result<()> {
    let case = Case::new("outlive-bash")?;
    let (images, out) = (&case.images, &case.out);
    let exe = &case.pair("loop", "50")?.argv[0];
    let script = format!("{} loop {} 50 100 >/dev/null 2>&1 & exit 3", Path::new(exe).display(), out.display());
    let program = Program::native("/bin/bash", &["-c", &script], &case.work);
    let (code, rec) = run_to_end(&case.bins, images, &program, &[])?;
    ensure!(code == Some(3), "ckpt-run's status is not the script's (3): {}\n{}", ckpt_tests::process::fmt_status(rec.status), rec.stderr);
    let at_return = lines(&out).len();
    ensure!(at_return < 50 && inits_of(&images).len() == 1, "the background job did not outlive the script ({at_return} lines){}", rec.stderr);
    // It counts to the end, then nothing is left: init leaves too.
    ensure!(ckpt_tests::process::wait_until(MINUTE, || lines(&out).len() == 50), "the background job did not go on: {:?}", lines(&out));
    ensure!(counts_up(&lines(&out)), "the background job's counts: {:?}", lines(&out));
    ensure!(ckpt_tests::process::wait_until(MINUTE, || inits_of(&images).is_empty()), "init stayed after the last process ended");
    Ok(())
}

#[test]
fn a_program_that_leaves_nothing_ends_as_before() -> Result<()> {
    let case = Case::new("outlive-none")?;
    let (images, out) = (&case.images, &case.out);
    let program = case.pair("loop", "3")?;
    let (code, rec) = run_to_end(&case.bins, images, &program, &[])?;
    ensure!(code == Some(0) && lines(&out) == vec![1, 2, 3], "ckpt-run: {}\n{}", ckpt_tests::process::fmt_status(rec.status), rec.stderr);
    // ckpt-run reaped init before it exited.
    ensure!(inits_of(&images).is_empty(), "init is still there after ckpt-run returned");
    Ok(())
}

#[test]
fn a_slurm_step_task_ends_with_its_program() -> Result<()> {
    let case = Case::new("outlive-step")?;
    let (images, out) = (&case.images, &case.out);
    let program = case.pair("pair", "400")?;
    // A task srun started (one task: no step of several for the runtime).
    let env = [("SLURM_STEP_NUM_TASKS", "1"), ("SLURM_PROCID", "0"), ("SLURM_JOB_ID", "1"), ("SLURM_STEP_ID", "0")];
    let (code, rec) = run_to_end(&case.bins, images, &program, &env)?;
    ensure!(code == Some(3), "ckpt-run: {}\n{}", ckpt_tests::process::fmt_status(rec.status), rec.stderr);
    ensure!(inits_of(&images).is_empty(), "a step task's namespace outlived its program");
    let n = lines(&out).len();
    std::thread::sleep(Duration::from_millis(500));
    ensure!(lines(&out).len() == n, "the children of a step task's program lived on");
    Ok(())
}

/// ckpt-run leads its terminal's session (`script`) and exits because the program ended while a
/// process it started lives on: the terminal's hangup reaches that process's SIGHUP handler, as
/// natively when a session leader exits (the runtime's hangup gate holds a hangup only while the
/// namespace is being killed with ckpt-run: not after such an end).
#[test]
fn a_process_left_behind_gets_the_terminals_hangup() -> Result<()> {
    let case = Case::new("outlive-hangup")?;
    let (bins, work, images) = (&case.bins, &case.work, &case.images);
    let prog = ckpt_tests::programs::compile_c(work, "hup_marker.c", &[])?;
    let marker = work.join("hangup-handler-ran");
    let inner = format!("'{}' '{}' >/dev/null & sleep 1; exit 4", prog.display(), marker.display());
    let cmdline = format!("exec '{}' --dir '{}' -- /bin/sh -c \"{inner}\"", bins.run.display(), images.display());
    let argv: Vec<OsString> = ["script", "-q", "-e", "-f", "-c", &cmdline, "/dev/null"].iter().map(OsString::from).collect();
    let mut cmd = user_command(&argv, false, work.path());
    cmd.env("CKPT_NAMESPACE", "1");
    // The hangup's default action, whatever the suite runs under.
    // SAFETY: signal() is async-signal-safe, called in the child between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut term = Proc::spawn("script", cmd)?;
    let st = term.wait(MINUTE)?;
    let rec = term.record();
    ensure!(st.code() == Some(4), "script (ckpt-run) did not exit with the program's status 4: {}\n{}{}", ckpt_tests::process::fmt_status(rec.status), rec.stdout, rec.stderr);
    ensure!(ckpt_tests::process::wait_until(MINUTE, || marker.exists()), "the process left behind did not get the terminal's hangup\n{}{}", rec.stdout, rec.stderr);
    ensure!(ckpt_tests::process::wait_until(MINUTE, || inits_of(&images).is_empty()), "init stayed after the process left behind ended");
    Ok(())
}

/// The periodic timer goes on in the tree's new root once the program ended, and `ckpt-ctl
/// stop` ends every process left (the set committed first).
#[test]
fn the_timer_goes_on_and_ckpt_ctl_stop_ends_what_was_left() -> Result<()> {
    let case = Case::new("outlive-timer")?;
    let (bins, images) = (&case.bins, &case.images);
    let program = case.pair("pair", "100000")?;
    let mut cmd = ckpt_tests::scenario::ckpt_run_with(bins, &program, images, &["--interval", "1s"], false);
    cmd.env("CKPT_NAMESPACE", "1");
    let mut run = Proc::spawn("ckpt-run", cmd)?;
    let st = run.wait(MINUTE)?;
    let rec = run.record();
    ensure!(st.code() == Some(3), "ckpt-run: {}\n{}", ckpt_tests::process::fmt_status(rec.status), rec.stderr);
    let inits = inits_of(images);
    ensure!(inits.len() == 1, "no namespace init left with the children: {inits:?}\n{}", rec.stderr);
    let members = ckpt_tests::process::children(inits[0]);
    // Sets taken by the timer alone, after the program ended.
    let tree = images.join(program.image_name()).join("tree");
    let generation = || std::fs::read_to_string(&tree).unwrap_or_default().lines().find_map(|l| l.strip_prefix("generation ")?.parse::<u64>().ok()).unwrap_or(0);
    ensure!(ckpt_tests::process::wait_until(MINUTE, || generation() >= 3), "the periodic checkpoints did not go on after the program ended (generation {})", generation());
    let argv: Vec<OsString> = vec![bins.dir.join("ckpt-ctl").into(), "--dir".into(), images.clone().into(), "stop".into()];
    let stop = user_command(&argv, false, &program.cwd).output()?;
    ensure!(stop.status.success(), "ckpt-ctl stop: {stop:?}");
    for p in inits.iter().chain(&members) {
        ensure!(ckpt_tests::process::wait_gone(*p, MINUTE), "process {p} outlived ckpt-ctl stop");
    }
    Ok(())
}

/// Processes left behind that kept the stdio ckpt-run was given: a set taken after the program
/// ended counts those fds as the given stdio (not the processes' own files), though init no
/// longer holds them, so a restart gives them ckpt-restart's, as it does while the program runs.
#[test]
fn the_stdio_ckpt_run_was_given_stays_the_given_stdio_after_the_program_ended() -> Result<()> {
    let case = Case::new("outlive-stdio")?;
    let (bins, images) = (&case.bins, &case.images);
    let program = Program::c(&case.work, "outlive_pair.c", &[], &["pair", case.out.to_str().unwrap(), "100000", "50", "keep"])?;
    let mut run = Proc::spawn("ckpt-run", run_cmd(bins, images, &program, &[], false))?;
    let st = run.wait(MINUTE)?;
    let rec = run.record();
    ensure!(st.code() == Some(3) && inits_of(images).len() == 1, "ckpt-run: {}\n{}", ckpt_tests::process::fmt_status(rec.status), rec.stderr);
    let argv: Vec<OsString> = vec![bins.dir.join("ckpt-ctl").into(), "--dir".into(), images.clone().into(), "checkpoint".into(), "--wait".into()];
    let cp = user_command(&argv, false, &program.cwd).output()?;
    ensure!(cp.status.success(), "ckpt-ctl checkpoint --wait: {cp:?}");
    let tree = std::fs::read_to_string(images.join(program.image_name()).join("tree"))?;
    // (fd 0 is /dev/null, which is never counted as given.)
    let own: Vec<&str> = tree.lines().filter(|l| l.starts_with("ownstdio ") && !l.ends_with(" 0")).collect();
    ensure!(own.is_empty(), "the given stdout and stderr count as the processes' own files: {own:?}\n{tree}");
    Ok(())
}
