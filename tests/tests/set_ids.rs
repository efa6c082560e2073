//! set*id calls in a threaded program under ckpt-run: glibc makes every thread take the new ids
//! with its SIGSETXID signal, the runtime's checkpoint thread too (it used to block it: the
//! program hung for ever in setuid). After the calls the program is checkpointed, SIGKILLed and
//! restarted with the same ids and groups (tests/programs/set_ids.c): a program that took new
//! groups is restarted by root with them; one that dropped root's privileges (no longer
//! dumpable) by its new user, and an unprivileged restart that cannot take on its groups
//! refuses with one line. A child made with clone(2) right at the start can call setuid too
//! (glibc's thread list it copies must not show the runtime's thread as still being created).

mod restore_util;
use restore_util::*;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};

/// Program `name` compiled in a fresh directory (`tag`_ref, kept while the returned Dir lives)
/// and its uninterrupted run in `mode` (as nobody when asked), which `accept` must accept.
fn reference_run(name: &str, tag: &str, mode: &str, nobody: bool, accept: impl Fn(&str) -> bool) -> (Dir, std::path::PathBuf, String) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile(name, &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, &[mode], &base, nobody);
    assert!(accept(&expected), "reference run: {expected}");
    (base, prog, expected)
}

/// Program `name` in `mode` (ckpt-run with `options`), checkpointed at its READY, SIGKILLed,
/// restarted (as `nobody` for both runs when asked), told to go on (a file "go"): the output
/// before and after is the uninterrupted run's, which `reference` must accept.
fn checkpoint_kill_restart(name: &str, tag: &str, mode: &str, nobody: bool, options: &[&str], reference: impl Fn(&str) -> bool) {
    let (_base, prog, expected) = reference_run(name, tag, mode, nobody, reference);

    let dir = workdir(tag);
    let mut p = run_with(&prog, &[mode], &dir, nobody, options);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, name);
    p.kill9();
    let before = p.stdout();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(before + &r.stdout(), expected, "stderr: {} {}", p.stderr(), r.stderr());
}

/// set_ids in `mode`, checkpointed after its calls.
fn set_ids(mode: &str, nobody: bool, options: &[&str]) {
    let tag = format!("setids_{mode}{}", if nobody { "_nobody" } else { "" });
    checkpoint_kill_restart("set_ids", &tag, mode, nobody, options, |out| out.starts_with("set*id calls done\n"));
}

#[test]
fn set_id_calls_then_checkpoint_and_restart() {
    set_ids("same", false, &[]);
}

#[test]
fn set_id_calls_then_checkpoint_and_restart_as_nobody() {
    set_ids("same", true, &[]);
}

/// As root: new supplementary groups, then checkpoint and restart by root: ckpt-restart takes
/// on the program's groups.
#[test]
fn new_groups_survive_checkpoint_and_restart() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("setgroups needs root");
        return;
    }
    set_ids("groups", false, &[]);
}

/// As root: setgroups, setresgid and setresuid to nobody for real, then checkpoint (the process
/// is no longer dumpable: /proc/self/mem is root's; its images are nobody's, in a directory it
/// can write). Restarted by nobody with the program's groups: the program has its ids, groups
/// and dumpable flag. Restarted by nobody without them: refused up front, in one line.
#[test]
fn dropped_privileges_survive_checkpoint_and_restart() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("dropping privileges needs root");
        return;
    }
    let (_base, prog, expected) = reference_run("set_ids", "setids_drop", "drop", false, |out| out.contains("groups 100 65534"));

    let dir = workdir("setids_drop");
    let images = dir.join("img");
    fs::create_dir(&images).unwrap();
    chown(&images, Some(65534), Some(65534)).unwrap();
    fs::set_permissions(&images, fs::Permissions::from_mode(0o700)).unwrap();
    // The directory is not root's: ckpt-run wants --allow-shared-dir for it.
    let mut p = run_with(&prog, &["drop"], &dir, false, &["--allow-shared-dir", "--no-namespace"]);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "set_ids");
    p.kill9();
    let before = p.stdout();

    let restart = |groups: &[&str]| {
        // Without a namespace (as ckpt-run above): in the user namespace nobody's restart would make, group 100 is
        // not mapped and getgroups() shows it as nogroup (README "Known limits"), though the
        // process still holds it.
        let mut argv: Vec<std::ffi::OsString> = ["env", "CKPT_NAMESPACE=0", "setpriv", "--reuid", "65534", "--regid", "65534"].iter().map(Into::into).collect();
        argv.extend(groups.iter().map(Into::into));
        argv.extend(["--".into(), bin("ckpt-restart").into_os_string(), img.clone().into_os_string()]);
        spawn_argv(&argv, &dir, "restart")
    };
    let mut refused = restart(&["--clear-groups"]);
    let st = refused.wait();
    let err = refused.stderr();
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("cannot take them on") && err.lines().count() == 1, "{err}");
    assert!(refused.stdout().is_empty(), "{}", refused.stdout());

    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&["--groups", "65534,100"]);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(before + &r.stdout(), expected, "stderr: {}", r.stderr());
}

/// clone(2) child calling setgid/setuid at once, in a new session (its scheduling group makes
/// the runtime's thread start late, which is when the child used to hang for ever).
#[test]
fn set_id_calls_in_a_child_made_with_clone() {
    use std::os::unix::process::CommandExt;
    let dir = workdir("setids_clone");
    let prog = compile("set_ids", &dir);
    for _ in 0..3 {
        let argv = [bin("ckpt-run").into_os_string(), "--dir".into(), dir.join("img").into_os_string(), "--".into(), prog.clone().into_os_string(), "clone".into()];
        let mut cmd = ckpt_tests::scenario::user_command(&argv, false, &dir);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        let mut p = ckpt_tests::Proc::spawn("ckpt-run set_ids clone", cmd).unwrap();
        let st = p.wait(std::time::Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(st.success() && p.stdout() == "child ok\n", "{}", p.record());
    }
}

/// thread_ids in `mode`, checkpointed after each thread set ids of its own with the raw system
/// calls: every thread has its own ids again after the restart and the program goes on (each
/// thread prints "same").
fn thread_ids(mode: &str, nobody: bool, options: &[&str], tag: &str) {
    let tag = format!("threadids_{tag}");
    checkpoint_kill_restart("thread_ids", &tag, mode, nobody, options, |out| out.starts_with("threads set their ids") && out.matches(" same\n").count() == 3);
}

/// As root: threads with different user ids, group ids, filesystem ids and supplementary
/// groups (zdtm thread_different_uid_gid), in ckpt-run's namespace (the checkpoint goes
/// through its coordinator, which hands a process of another user a directory of its own).
#[test]
fn threads_with_ids_of_their_own_survive_checkpoint_and_restart() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("ids of other users need root");
        return;
    }
    thread_ids("root", false, &[], "root");
}

/// The same without a namespace (the runtime writes its image itself).
#[test]
fn threads_with_ids_of_their_own_survive_checkpoint_and_restart_without_namespace() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("ids of other users need root");
        return;
    }
    thread_ids("root", false, &["--no-namespace"], "root_nons");
}

/// As root, two checkpoints and two restarts: after a restart the runtime's own thread has the
/// ids it had at the checkpoint (root's), not the process's (uid 12): it binds its control
/// socket in root's image directory again (it once said "no control socket (...): Permission
/// denied"), ckpt-ctl's checkpoint of the restarted program is taken, and the second restart
/// gives every thread its own ids again. In ckpt-run's namespace (`options` empty) or without.
fn thread_ids_twice(options: &[&str], tag: &str) {
    let (_base, prog, expected) = reference_run("thread_ids", &format!("threadids_{tag}"), "root", false, |out| out.matches(" same\n").count() == 3);

    let dir = workdir(&format!("threadids_{tag}"));
    let mut p = run_with(&prog, &["root"], &dir, false, options);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "thread_ids");
    p.kill9();
    let before = p.stdout();
    let mut r = restart(&img, &[], &dir);
    r.wait_restarted();
    let ctl = std::process::Command::new(bin("ckpt-ctl")).arg("--dir").arg(dir.join("img")).args(["checkpoint", "--wait"]).output().unwrap();
    // (Killed first: a failed check leaves no restarted program waiting for "go".)
    r.kill9();
    assert!(ctl.status.success(), "ckpt-ctl checkpoint of the restarted program: {} {}\nrestart: {}", String::from_utf8_lossy(&ctl.stdout), String::from_utf8_lossy(&ctl.stderr), r.stderr());
    assert!(!r.stderr().contains("control socket"), "{}", r.stderr());
    let middle = r.stdout();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r2 = restart(&img, &[], &dir);
    assert!(r2.wait().success(), "second restart failed: {}", r2.stderr());
    assert_eq!(before + &middle + &r2.stdout(), expected, "stderr: {} {} {}", p.stderr(), r.stderr(), r2.stderr());
}

#[test]
fn threads_with_ids_of_their_own_survive_two_restarts_and_the_restarted_program_answers_ckpt_ctl() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("ids of other users need root");
        return;
    }
    thread_ids_twice(&[], "twice");
}

/// The same without a namespace (the runtime's thread writes the second image itself, in
/// root's directory).
#[test]
fn threads_with_ids_of_their_own_survive_two_restarts_and_the_restarted_program_answers_ckpt_ctl_without_namespace() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("ids of other users need root");
        return;
    }
    thread_ids_twice(&["--no-namespace"], "twice_nons");
}

/// An ordinary user's program was started with one uid and one gid (real, effective and saved
/// the same: an exec with them apart is a secure exec, which ignores LD_PRELOAD), so its
/// threads' raw calls can only set those again; they do, and every thread keeps them.
#[test]
fn threads_with_ids_of_their_own_survive_checkpoint_and_restart_as_nobody() {
    thread_ids("same", true, &[], "nobody");
}

/// As root: a thread with more supplementary groups of its own than an image holds per thread
/// (raw setgroups with 40 groups): the checkpoint is refused in one line naming the thread, no
/// image is written, and the program goes on to its uninterrupted result.
#[test]
fn a_thread_with_too_many_groups_of_its_own_refuses_the_checkpoint_in_one_line() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("setgroups needs root");
        return;
    }
    let (_base, prog, expected) = reference_run("thread_ids", "threadids_manygroups", "manygroups", false, |out| out.contains("groups 1000 1001") && out.matches(" same\n").count() == 3);

    let dir = workdir("threadids_manygroups");
    let mut p = run_with(&prog, &["manygroups"], &dir, false, &["--no-namespace"]);
    p.wait_line(|l| l == "READY");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(p.pid(), libc::SIGUSR2) };
    let t0 = std::time::Instant::now();
    while !p.stderr().contains("supplementary groups of its own") {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "no refusal: {}", p.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    fs::write(dir.join("go"), b"").unwrap();
    assert!(p.wait().success(), "{}", p.stderr());
    let err = p.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("supplementary groups of its own")).collect();
    assert!(lines.len() == 1 && lines[0].contains("thread ") && lines[0].contains("no checkpoint is taken"), "{err}");
    assert!(!dir.join("img").join("thread_ids.ckpt").exists(), "an image was written: {err}");
    assert_eq!(p.stdout(), expected, "{err}");
}
