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

/// set_ids in `mode` (ckpt-run with `options`), checkpointed after its calls, SIGKILLed,
/// restarted (as `nobody` for both runs when asked): the output before and after is the
/// uninterrupted run's.
fn set_ids(mode: &str, nobody: bool, options: &[&str]) {
    let base = workdir(&format!("setids_{mode}_ref{}", if nobody { "_nobody" } else { "" }));
    let prog = compile("set_ids", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, &[mode], &base, nobody);
    assert!(expected.starts_with("set*id calls done\n"), "reference run: {expected}");

    let dir = workdir(&format!("setids_{mode}{}", if nobody { "_nobody" } else { "" }));
    let mut p = run_with(&prog, &[mode], &dir, nobody, options);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "set_ids");
    p.kill9();
    let before = p.stdout();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    assert_eq!(before + &r.stdout(), expected, "stderr: {} {}", p.stderr(), r.stderr());
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
    let base = workdir("setids_drop_ref");
    let prog = compile("set_ids", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &["drop"], &base);
    assert!(expected.contains("groups 100 65534"), "reference run: {expected}");

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
