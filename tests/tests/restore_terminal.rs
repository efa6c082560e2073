//! Terminals across checkpoint, SIGKILL and restart. A program started from a terminal is
//! restarted from another terminal (a pseudo-terminal the test opens for each run, with
//! another window size): its stdin/stdout, /dev/tty and raw mode are there again, it gets
//! SIGWINCH and sees the new size, the keys typed after the restart reach it; vim, driven
//! through the terminal, keeps editing; without a terminal to give it, the restart refuses.
//! A pseudo-terminal pair the program made itself comes back with its unread bytes, termios,
//! window size and packet mode (tests/programs/tty_*.c).

mod restore_util;
use restore_util::*;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests of this file run one at a time: each allocates pseudo-terminals, and a restart gets
/// a pty pair its old name back only while no other pty has taken that index meanwhile.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static PTYS: Mutex<()> = Mutex::new(());
    PTYS.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn own_pseudo_terminal_pairs_come_back() {
    let _one = one_at_a_time();
    ready_go("tty_pty_pair", "tty_pty_pair", false, |_| {}, &[]);
}

#[test]
fn own_pseudo_terminal_pairs_come_back_as_nobody() {
    let _one = one_at_a_time();
    ready_go("tty_pty_pair", "tty_pty_pair_nobody", true, |_| {}, &[]);
}

/// The slave of a pseudo-terminal whose master the program closed (hung up, its /dev/pts node
/// gone: zdtm pty04) comes back hung up: reads and writes give what they gave before
/// (tests/programs/pty_hung_up.c); it refused the restart as a file ckpt cannot make again
/// (and before that, was /dev/null, whose writes succeed).
#[test]
fn a_hung_up_pseudo_terminal_slave_comes_back_hung_up() {
    let _one = one_at_a_time();
    ready_go("pty_hung_up", "pty_hung_up", false, |_| {}, &[]);
}

#[test]
fn a_hung_up_pseudo_terminal_slave_comes_back_hung_up_as_nobody() {
    let _one = one_at_a_time();
    ready_go("pty_hung_up", "pty_hung_up_nobody", true, |_| {}, &[]);
}

/// A terminal device opened by a name of the program's own (a node with /dev/console's
/// numbers it made in its directory, as zdtm's console test does): it is opened there again at
/// the restart, not refused for want of a terminal nor replaced by ckpt-restart's.
#[test]
fn a_terminal_device_node_opened_by_name_comes_back_through_it() {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("making a device node (mknod) needs root");
        return;
    }
    let r = ready_go("tty_device_node", "tty_device_node", false, |_| {}, &[]);
    assert!(r.stdout.contains("same device: yes\nthrough the node: yes"), "{}", r.stdout);
}

/// A virtual terminal the program opened by name as a session leader, which made it its
/// controlling terminal (zdtm's vt test): restarted without a terminal of ckpt-restart's, the
/// program gets that device again through its node, as its controlling terminal.
#[test]
fn a_controlling_terminal_opened_by_name_comes_back_through_it() {
    vt_as_controlling_terminal("tty_vt_ctty", false);
}

#[test]
fn a_controlling_terminal_opened_by_name_comes_back_through_it_as_nobody() {
    vt_as_controlling_terminal("tty_vt_ctty_nobody", true);
}

fn vt_as_controlling_terminal(tag: &str, nobody: bool) {
    if !ckpt_tests::scenario::is_root() {
        ckpt_tests::skip_test!("making a device node (mknod) needs root");
        return;
    }
    let _one = one_at_a_time();
    // A VT's numbers (4, 9); owned by the program's user, who may open it then.
    let node = |dir: &Path| {
        let p = std::ffi::CString::new(dir.join("vt-node").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: p is a valid C string; plain calls.
        unsafe {
            assert_eq!(libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(4, 9)), 0, "mknod");
            if nobody {
                assert_eq!(libc::chown(p.as_ptr(), 65534, 65534), 0, "chown");
            }
        }
    };
    let name = "tty_device_node";
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile(name, &base);
    node(&base);
    std::fs::write(base.join("go"), b"").unwrap();
    let expected = plain_as(&prog, &["vt"], &base, nobody);
    assert!(expected.ends_with("done\n"), "the uninterrupted run fails its own checks: {expected}");

    let dir = workdir(tag);
    node(&dir);
    let mut p = run_as(&prog, &["vt"], &dir, nobody);
    p.wait_line(|l| l == "READY");
    let img = p.checkpoint(&dir, name);
    p.kill9();
    std::fs::write(dir.join("go"), b"").unwrap();
    // ckpt-restart leads a session of its own without a terminal (as from a batch system).
    let mut a = argv(Path::new("setsid"), &[]);
    a.extend(argv(&bin("ckpt-restart"), &[img.to_str().unwrap()]));
    let mut r = spawn(a, nobody, &dir, "restart");
    let st = r.wait();
    let (stdout, stderr) = (r.stdout(), r.stderr());
    assert!(st.success(), "restart failed ({st:?}): {stderr}\nstdout: {stdout}");
    assert!(!stdout.contains("READY"), "the program started over: {stdout}");
    assert_eq!(stdout, expected.replacen("READY\n", "", 1), "restarted run differs; stderr: {stderr}");
}

/// A process on a new pseudo-terminal of `rows` x `cols` (its session's controlling terminal),
/// everything it writes collected.
struct OnTty {
    child: Child,
    master: std::fs::File,
    out: Arc<Mutex<Vec<u8>>>,
    /// The terminal's name (/dev/pts/N).
    name: String,
}

/// A new pseudo-terminal of `rows` x `cols`, for a process to run on.
struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
    /// Its name (/dev/pts/N).
    name: String,
}

impl Pty {
    fn open(rows: u16, cols: u16) -> Pty {
        let (mut m, mut s) = (0, 0);
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: openpty fills two fds; no name buffer, default termios.
        assert_eq!(unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) }, 0, "openpty");
        let mut name = [0u8; 64];
        // SAFETY: ptsname_r of our master into a buffer of its length.
        assert_eq!(unsafe { libc::ptsname_r(m, name.as_mut_ptr().cast(), name.len()) }, 0, "ptsname_r");
        let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
        // SAFETY: both fds were just opened and are ours.
        let (master, slave) = unsafe { (std::fs::File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        Pty { master, slave, name }
    }
}

impl OnTty {
    fn spawn(argv: &[OsString], cwd: &Path, rows: u16, cols: u16, nobody: bool) -> OnTty {
        OnTty::spawn_on(Pty::open(rows, cols), argv, cwd, nobody)
    }

    /// A process on pseudo-terminal `pty`.
    fn spawn_on(pty: Pty, argv: &[OsString], cwd: &Path, nobody: bool) -> OnTty {
        let Pty { master, slave, name } = pty;
        let mut cmd = ckpt_tests::scenario::user_command(argv, nobody, cwd);
        cmd.stdin(Stdio::from(slave.try_clone().unwrap())).stdout(Stdio::from(slave.try_clone().unwrap())).stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a terminal");
        let out = Arc::new(Mutex::new(Vec::new()));
        let (mut r, o) = (master.try_clone().unwrap(), out.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                o.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTty { child, master, out, name }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn wait_for(&mut self, what: &str) {
        let t0 = Instant::now();
        while !self.text().contains(what) {
            assert!(self.child.try_wait().unwrap().is_none(), "exited before {what:?}: {}", self.text());
            assert!(t0.elapsed() < TIMEOUT, "no {what:?} on the terminal: {}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ on our master with a valid winsize.
        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // What it wrote last is read off the terminal by now (or soon).
                std::thread::sleep(Duration::from_millis(200));
                return st;
            }
            if t0.elapsed() > TIMEOUT {
                let _ = self.child.kill();
                panic!("did not exit: {}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Until the restarted program runs (the checkpoint signal is caught again).
    fn wait_restarted(&mut self) {
        let t0 = Instant::now();
        let bit = 1u64 << (libc::SIGUSR2 - 1);
        loop {
            // The program: our child, or in a namespace of its own the child of its init.
            let pid = ckpt_tests::process::program_pid(self.child.id() as i32);
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let caught = st.lines().find_map(|l| l.strip_prefix("SigCgt:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
            if caught.is_some_and(|c| c & bit != 0) {
                return;
            }
            assert!(self.child.try_wait().unwrap().is_none(), "restart exited: {}", self.text());
            assert!(t0.elapsed() < TIMEOUT, "restart did not complete: {}", self.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGUSR2, then wait for `image` to appear.
    fn checkpoint(&mut self, image: &Path) {
        let _ = std::fs::remove_file(image);
        // SAFETY: a signal to our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGUSR2) };
        let t0 = Instant::now();
        while !image.exists() {
            assert!(t0.elapsed() < TIMEOUT, "no image: {}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A restart: once it runs, type `keys`; until it exits, successfully and without having
    /// started over. What it wrote.
    fn resumed_with_keys(&mut self, keys: &[u8]) -> String {
        self.wait_restarted();
        self.type_keys(keys);
        let st = self.wait_exit();
        let got = self.text();
        assert!(st.success(), "restart: {st:?}: {got}");
        assert!(!got.contains("READY"), "the program started over: {got}");
        got
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(first: &Path, rest: &[&str]) -> Vec<OsString> {
    std::iter::once(first.as_os_str().to_owned()).chain(rest.iter().map(OsString::from)).collect()
}

fn ckpt_run(dir: &Path, rest: &[OsString]) -> Vec<OsString> {
    let name = Path::new(&rest[0]).file_name().unwrap().to_str().unwrap().to_string();
    let mut a = args(&bin("ckpt-run"), &["--dir", dir.join("img").to_str().unwrap(), "--name", &name, "--"]);
    a.extend_from_slice(rest);
    a
}

/// What the program printed after READY.
fn after_ready(text: &str) -> String {
    text.split_once("READY\r\n").map_or(text, |r| r.1).to_string()
}

/// What the program printed after ckpt-restart's own first line ("ckpt: restarted from ...").
fn after_restart_line(text: &str) -> String {
    let (first, rest) = text.split_once('\n').unwrap_or(("", text));
    assert!(first.starts_with("ckpt: restarted from "), "no restart line first: {text}");
    rest.to_string()
}

fn raw_mode_on_another_terminal(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("tty_raw", &base);
    // The uninterrupted run: its terminal is resized while it waits for keys.
    let mut p = OnTty::spawn(&args(&prog, &[]), &base, 24, 80, nobody);
    p.wait_for("READY");
    p.resize(40, 120);
    std::thread::sleep(Duration::from_millis(100));
    p.type_keys(b"abcd");
    assert!(p.wait_exit().success(), "uninterrupted run: {}", p.text());
    let expected = after_ready(&p.text());
    assert!(expected.contains("raw: yes") && expected.contains("winch: yes, window 40x120") && expected.contains("via /dev/tty"), "{expected}");

    let dir = workdir(tag);
    let mut p = OnTty::spawn(&ckpt_run(&dir, &args(&prog, &[])), &dir, 24, 80, nobody);
    p.wait_for("READY");
    let img = dir.join("img").join("tty_raw.ckpt");
    p.checkpoint(&img);
    p.kill9();
    // Restarted from another terminal, of the size the uninterrupted run was resized to.
    let mut r = OnTty::spawn(&args(&bin("ckpt-restart"), &[img.to_str().unwrap()]), &dir, 40, 120, nobody);
    let got = r.resumed_with_keys(b"abcd");
    assert_eq!(after_restart_line(&got), expected, "restarted run differs");
}

#[test]
fn a_raw_mode_program_gets_the_new_terminal() {
    let _one = one_at_a_time();
    raw_mode_on_another_terminal("tty_raw", false);
}

#[test]
fn a_raw_mode_program_gets_the_new_terminal_as_nobody() {
    let _one = one_at_a_time();
    raw_mode_on_another_terminal("tty_raw_nobody", true);
}

/// What tests/programs/tty_name.c says of terminal `name` at `when`.
fn names_line(when: &str, name: &str) -> String {
    format!("{when}: ttyname(0) {name}, ttyname_r(1) {name}, ptsname(0) none\r")
}

/// The terminal a program is started from has its name there as natively (ttyname,
/// ttyname_r; the namespace's own devpts instance covers the host's /dev/pts, where the name
/// is): under ckpt-run, and after a restart from another terminal that terminal's name.
fn terminal_name(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("tty_name", &base);
    let mut p = OnTty::spawn(&args(&prog, &[]), &base, 24, 80, nobody);
    p.wait_for("READY");
    p.type_keys(b"x\n");
    assert!(p.wait_exit().success(), "uninterrupted run: {}", p.text());
    let native = p.text();
    assert!(native.contains(&names_line("before", &p.name)) && native.contains(&names_line("after", &p.name)), "natively: {native}");

    let dir = workdir(tag);
    let mut p = OnTty::spawn(&ckpt_run(&dir, &args(&prog, &[])), &dir, 24, 80, nobody);
    p.wait_for("READY");
    assert!(p.text().contains(&names_line("before", &p.name)), "under ckpt-run on {}: {}", p.name, p.text());
    let img = dir.join("img").join("tty_name.ckpt");
    p.checkpoint(&img);
    p.kill9();
    // The first terminal stays open: the restart's is another one.
    let mut r = OnTty::spawn(&args(&bin("ckpt-restart"), &[img.to_str().unwrap()]), &dir, 24, 80, nobody);
    assert_ne!(r.name, p.name);
    let got = r.resumed_with_keys(b"x\n");
    assert!(got.contains("ckpt: restarted from ") && got.contains(&names_line("after", &r.name)), "restarted on {}: {got}", r.name);
}

#[test]
fn the_starting_terminal_keeps_its_name() {
    let _one = one_at_a_time();
    terminal_name("tty_name", false);
}

#[test]
fn the_starting_terminal_keeps_its_name_as_nobody() {
    let _one = one_at_a_time();
    terminal_name("tty_name_nobody", true);
}

/// Restarted from a terminal whose index one of the program's own pairs needs: the pair wins
/// (made at its index again, its name opens it) and the terminal has no name inside (said at
/// CKPT_LOG=info), as before the terminal was named there.
fn own_pair_wins(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("tty_name", &base);
    // The restart's terminal first: the program makes its pair at that index.
    let restart_tty = Pty::open(24, 80);
    let k = restart_tty.name.strip_prefix("/dev/pts/").expect("a /dev/pts name").to_string();
    let dir = workdir(tag);
    let mut p = OnTty::spawn(&ckpt_run(&dir, &args(&prog, &[&k])), &dir, 24, 80, nobody);
    p.wait_for("READY");
    assert!(p.text().contains(&format!("pair at {k}: /dev/pts/{k}\r")), "no pair at {k}: {}", p.text());
    let img = dir.join("img").join("tty_name.ckpt");
    p.checkpoint(&img);
    p.kill9();
    let mut a = args(Path::new("env"), &["CKPT_LOG=info"]);
    a.extend(args(&bin("ckpt-restart"), &[img.to_str().unwrap()]));
    let mut r = OnTty::spawn_on(restart_tty, &a, &dir, nobody);
    let got = r.resumed_with_keys(b"x\n");
    assert!(got.contains(&format!("pair: /dev/pts/{k}, by its name: its own pair")), "the pair did not win /dev/pts/{k}: {got}");
    assert!(got.contains(&format!("the program's terminal /dev/pts/{k} has no name inside")), "not said: {got}");
    assert!(got.contains("after: ttyname(0) ") && !got.contains(&names_line("after", &r.name)), "{got}");
}

#[test]
fn the_programs_own_pair_wins_the_restart_terminals_index() {
    let _one = one_at_a_time();
    own_pair_wins("tty_name_pair", false);
}

#[test]
fn the_programs_own_pair_wins_the_restart_terminals_index_as_nobody() {
    let _one = one_at_a_time();
    own_pair_wins("tty_name_pair_nobody", true);
}

/// Checkpointed on a terminal, restarted where there is none (a batch job's ckpt-restart with
/// /dev/null as stdin, in a session of its own): the program's terminal fds cannot be given a
/// terminal, so the restart refuses in one line; --ignore-missing-files gives them /dev/null.
#[test]
fn no_terminal_to_give_refuses_the_restart() {
    let _one = one_at_a_time();
    let dir = workdir("tty_none");
    let prog = compile("tty_raw", &dir);
    let mut p = OnTty::spawn(&ckpt_run(&dir, &args(&prog, &[])), &dir, 24, 80, false);
    p.wait_for("READY");
    let img = dir.join("img").join("tty_raw.ckpt");
    p.checkpoint(&img);
    p.kill9();
    let restart = |extra: &[&str]| {
        let mut a = args(&bin("ckpt-restart"), extra);
        a.push(img.clone().into_os_string());
        let mut cmd = ckpt_tests::scenario::user_command(&a, false, &dir);
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let out = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        out.wait_with_output().unwrap()
    };
    let out = restart(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().count() == 1 && err.contains("/dev/tty") && err.contains("no controlling terminal"), "{err}");
}

/// vim, driven through its terminal: text typed before the checkpoint, more after the restart
/// on another terminal, then :wq. The file holds both (and vim redrew its screen on the new
/// terminal: the first text shows there).
#[test]
fn vim_keeps_editing_on_another_terminal() {
    let _one = one_at_a_time();
    let Some(vim) = ["/usr/bin/vim", "/usr/bin/vim.basic", "/usr/bin/vim.tiny"].iter().map(Path::new).find(|p| p.exists()) else {
        ckpt_tests::skip_test!("vim is not installed");
        return;
    };
    let dir = workdir("tty_vim");
    let file = dir.join("text.txt");
    std::fs::write(&file, "hello\n").unwrap();
    let vim_args = args(vim, &["-u", "NONE", "-i", "NONE", "-N", "-n", file.to_str().unwrap()]);
    let mut p = OnTty::spawn(&ckpt_run(&dir, &vim_args), &dir, 24, 80, false);
    p.wait_for("hello");
    std::thread::sleep(Duration::from_millis(300));
    p.type_keys(b"A first\x1b");
    p.wait_for("first");
    let img = dir.join("img").join(format!("{}.ckpt", vim.file_name().unwrap().to_str().unwrap()));
    p.checkpoint(&img);
    p.kill9();
    let mut r = OnTty::spawn(&args(&bin("ckpt-restart"), &[img.to_str().unwrap()]), &dir, 30, 100, false);
    r.wait_restarted();
    r.wait_for("first");
    r.type_keys(b"A second\x1b:wq\r");
    let st = r.wait_exit();
    assert!(st.success(), "vim after the restart: {st:?}: {}", r.text());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello first second\n");
}
