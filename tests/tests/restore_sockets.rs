//! Sockets across checkpoint, SIGKILL and restart: listening TCP and UNIX sockets (with their
//! socket options) accept connections again on the same address, a bound UDP socket receives
//! again, and a connection to a peer outside the program is seen closed (EOF on read, EPIPE on
//! write) after the bytes that had arrived unread, as documented, with a warning naming it.

mod restore_util;
use restore_util::*;
use std::fs;

#[test]
fn listeners_listen_again_and_outside_connections_are_closed() {
    let base = workdir("sockets_ref");
    let prog = compile("fd_sockets", &base);
    fs::write(base.join("go"), b"").unwrap();
    let expected = plain(&prog, &[], &base);
    assert!(expected.contains("listener keepalive: 1\ntcp listener: 0\nunix listener: 0\nudp: 5 dgram\n"), "reference run: {expected}");

    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let dir = workdir("sockets_ckpt");
    let mut p = run(&prog, &[&port], &dir);
    p.wait_line(|l| l == "READY");
    let (mut conn, _) = server.accept().unwrap();
    // Bytes that arrive before the checkpoint and are unread then are still there after it.
    std::io::Write::write_all(&mut conn, b"hello").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let img = p.checkpoint(&dir, "fd_sockets");
    p.kill9();
    fs::write(dir.join("go"), b"").unwrap();
    let mut r = restart(&img, &[], &dir);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("READY"), "the program started over: {out}");
    assert_eq!(out, format!("{}outside unread: hello\noutside read: EOF\noutside write: Broken pipe\n", expected.replacen("READY\n", "", 1)));
    // The lost connection is named, never silent.
    let err = r.stderr();
    assert!(err.lines().any(|l| l.starts_with("ckpt-restart: warning: socket") && l.contains(&port) && l.contains("peer is outside the program")), "no warning naming the lost connection: {err}");
}
