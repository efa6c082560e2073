//! Packet sockets' mapped rings (PACKET_RX_RING, PACKET_TX_RING, TPACKET_V2 and V3) across
//! checkpoint, SIGKILL and restart (tests/programs/sock_packet_ring*.c, zdtm style): the rings
//! are set again and mapped at the program's address, and packets sent after the restart are
//! read from them where the program looks; a ring that had held packets refuses the restart in
//! one line (or goes on, warned, with --ignore-missing-files). Packet sockets need CAP_NET_RAW:
//! root, or an ordinary user in a user and network namespace of its own, which ckpt-run does
//! not make (a thread that enters one refuses the checkpoint): the user runs ckpt-run and
//! ckpt-restart in one.

mod restore_util;
use restore_util::*;
#[path = "restore_util/refuse.rs"]
mod refuse;
use ckpt_tests::scenario::is_root;
use ckpt_tests::skip_test;
use std::ffi::OsString;
use std::fs;
use std::process::Command;

#[test]
fn mapped_packet_rings_are_read_at_the_same_address_after_a_restart() {
    if !is_root() {
        skip_test!("packet sockets need CAP_NET_RAW (root)");
        return;
    }
    let r = ready_go("sock_packet_ring", "sock_packet_ring", false, |_| {}, &[]);
    assert!(r.stdout.contains("A received: ping0@0 ping1@1 ping2@2\n"), "{}", r.stdout);
    assert!(r.stdout.contains("B received: tx0 tx1, the first in block 0\n"), "{}", r.stdout);
    assert!(r.stdout.contains("mappings: A's B's\n"), "{}", r.stdout);
}

/// As user nobody: ckpt-run gives a program no network namespace, so the user makes one (with
/// `unshare --user --net --map-root-user`, lo brought up) and runs ckpt-run in it; the restart
/// runs in another such namespace (its lo has the same index, 1).
#[test]
fn mapped_packet_rings_are_read_at_the_same_address_after_a_restart_as_nobody() {
    if !is_root() {
        skip_test!("the test runs its programs as user nobody through setpriv, which needs root");
        return;
    }
    let probe = Command::new("setpriv").args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--"]).args(own_netns(&["true".into()])).status();
    if !probe.is_ok_and(|s| s.success()) {
        skip_test!("user nobody cannot make a user and network namespace of its own here (unshare --user --net fails)");
        return;
    }
    let name = "sock_packet_ring";
    let base = workdir("sock_packet_ring_netns_ref");
    let prog = compile(name, &base);
    fs::write(base.join("go"), b"").unwrap();
    let mut p = spawn(own_netns(&argv(&prog, &[])), true, &base, "plain");
    assert!(p.wait().success(), "uninterrupted run failed: {}", p.stderr());
    let expected = p.stdout();
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");

    let dir = workdir("sock_packet_ring_netns");
    let prog = compile(name, &dir);
    let img = dir.join("img");
    let mut run = argv(&bin("ckpt-run"), &["--dir", img.to_str().unwrap(), "--"]);
    run.push(prog.into_os_string());
    let mut p = spawn(own_netns(&run), true, &dir, "run");
    p.wait_line(|l| l == "READY");
    let image = p.checkpoint(&dir, name);
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = spawn(own_netns(&argv(&bin("ckpt-restart"), &[image.to_str().unwrap()])), true, &dir, "restart");
    let st = r.wait();
    let (stdout, stderr) = (r.stdout(), r.stderr());
    assert!(st.success(), "restart failed ({st:?}): {stderr}\nstdout: {stdout}");
    assert_eq!(stdout, expected.replacen("READY\n", "", 1), "restarted run differs; stderr: {stderr}");
    assert!(stdout.contains("A received: ping0@0 ping1@1 ping2@2\n"), "{stdout}");
}

/// `cmd` in a user and network namespace of its own (mapped to root in it), lo up.
fn own_netns(cmd: &[OsString]) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["unshare", "--user", "--net", "--map-root-user", "sh", "-c", "/usr/sbin/ip link set lo up && exec \"$@\"", "sh"].iter().map(OsString::from).collect();
    a.extend(cmd.iter().cloned());
    a
}

#[test]
fn a_mapped_packet_ring_that_held_packets_refuses_the_restart() {
    if !is_root() {
        skip_test!("packet sockets need CAP_NET_RAW (root)");
        return;
    }
    let r = refuse::refused_then_ignored("sock_packet_ring_used", "sock_packet_ring_used", false, "its mapped ring has held packets");
    assert!(r.stdout.contains("mapped: yes"), "{}", r.stdout);
}

/// A ring whose socket the program closed (only the mapping holds it): the restart refuses in
/// one line, with or without --ignore-missing-files.
#[test]
fn a_mapped_packet_ring_without_its_fd_refuses_the_restart() {
    if !is_root() {
        skip_test!("packet sockets need CAP_NET_RAW (root)");
        return;
    }
    let dir = workdir("sock_packet_ring_closed");
    let prog = compile("sock_packet_ring_closed", &dir);
    let mut p = run_as(&prog, &[], &dir, false);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, "sock_packet_ring_closed");
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    for args in [&[][..], &["--ignore-missing-files"][..]] {
        let mut r = restart_as(&img, args, &dir, false);
        let st = r.wait();
        let err = r.stderr();
        assert_eq!(st.code(), Some(1), "the restart went on ({args:?}): {err}\nstdout: {}", r.stdout());
        assert!(err.lines().count() == 1 && err.contains("which is no packet socket with rings among its fds"), "refusal ({args:?}): {err}");
        assert!(r.stdout().is_empty(), "the program ran: {}", r.stdout());
    }
}
