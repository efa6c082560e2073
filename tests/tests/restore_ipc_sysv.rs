//! System V IPC across checkpoint, SIGKILL and restart (tests/programs/ipc_sysv.c): shared
//! memory segments (attached, partly attached, detached, marked for removal), a semaphore set
//! and a message queue come back as themselves, with their ids, keys, values, messages and
//! contents, in the program's own IPC namespace; shmdt() works on the restored attachments.

mod restore_util;
use restore_util::*;

fn step_line(n: u32) -> impl Fn(&str) -> bool {
    move |l: &str| l.strip_prefix("step ").and_then(|v| v.parse::<u32>().ok()).is_some_and(|v| v >= n)
}

fn results(s: &str) -> Vec<String> {
    s.lines().filter(|l| !l.starts_with("step ") && !l.starts_with("start ")).map(str::to_owned).collect()
}

/// Checkpoint at step 40, run on to step 100 (changing every object), SIGKILL, restart.
/// The reference directory (it holds the program) is returned too: it must outlive the restart.
fn checkpointed(tag: &str, nobody: bool) -> (Vec<String>, std::path::PathBuf, Dir, Dir) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("ipc_sysv", &base);
    let expected = results(&plain_as(&prog, &[], &base, nobody));
    assert!(expected.iter().any(|l| l == "same segment: 1 1"), "uninterrupted run: {expected:?}");
    let dir = workdir(&format!("{tag}_ckpt"));
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(step_line(40));
    let img = p.checkpoint(&dir, "ipc_sysv");
    p.wait_line(step_line(100));
    p.kill9();
    (expected, img, dir, base)
}

fn check(tag: &str, nobody: bool) {
    let (expected, img, dir, _base) = checkpointed(tag, nobody);
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}\n{}", r.stderr(), r.stdout());
    let out = r.stdout();
    assert!(!out.contains("start ipc_sysv"), "the program started over");
    assert!(!out.contains("step 40\n"), "the program started over");
    assert_eq!(results(&out), expected);
}

#[test]
fn sysv_objects_come_back_with_their_ids() {
    check("sysv", false);
}

#[test]
fn sysv_objects_come_back_with_their_ids_as_nobody() {
    check("sysv_nobody", true);
}

/// Without a namespace of ckpt's the ids cannot be chosen: the restart refuses in one line.
#[test]
fn sysv_objects_refuse_a_restart_without_namespace() {
    let (_, img, dir, _base) = checkpointed("sysv_nons", false);
    let mut r = restart(&img, &["--no-namespace"], &dir);
    let st = r.wait();
    let err = r.stderr();
    assert!(!st.success(), "restart without a namespace went on: {err}");
    assert!(err.contains("System V IPC objects") && err.lines().count() == 1, "{err}");
    assert!(!r.stdout().contains("step "), "the program ran: {}", r.stdout());
}

/// The IPC namespace's settings the program (root) changed read the same after a restart,
/// a next id it chose and did not use yet included.
#[test]
fn ipc_namespace_settings_come_back() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        ckpt_tests::skip_test!("only root may change an IPC namespace's settings");
    }
    let base = workdir("sysv_settings_ref");
    let prog = compile("ipc_settings", &base);
    // The reference in an IPC namespace of its own: the host's settings are left alone.
    let mut p = spawn_argv(&["unshare".into(), "--ipc".into(), prog.clone().into()], &base, "plain");
    assert!(p.wait().success(), "uninterrupted run failed: {}", p.stderr());
    let expected = results(&p.stdout());
    assert!(expected.contains(&"next queue id 4242".to_string()), "{expected:?}");
    let dir = workdir("sysv_settings_ckpt");
    let mut p = run(&prog, &[], &dir);
    p.wait_line(step_line(20));
    let img = p.checkpoint(&dir, "ipc_settings");
    p.wait_line(step_line(60));
    p.kill9();
    let mut r = restart(&img, &[], &dir);
    assert!(r.wait().success(), "restart failed: {}\n{}", r.stderr(), r.stdout());
    let out = r.stdout();
    assert!(!out.contains("step 20\n"), "the program started over");
    assert_eq!(results(&out), expected);
}
