//! `ckpt-ctl [--dir DIR] [--name NAME] checkpoint [--wait] | status | stop`: talks to the runtime
//! of a program started with `ckpt-run` over its control socket DIR/NAME.sock.
//!
//! Exit status (for scripts): 0 done; 1 the program answered with an error (the checkpoint
//! failed); 2 usage error; 3 no running program found (no socket, or nobody listening);
//! 4 cannot talk to it (permission denied, timeout, garbled answer, not the user's program).
//!
//! It talks only to the user's own programs: the socket file must belong to the user and the
//! process listening on it must run as the user (SO_PEERCRED), or another user on the node
//! could pose as the program (a socket squatted in a shared directory) and fake answers. What it
//! prints of an answer never holds control characters (a terminal would act on them).

mod cli;

use clap::Parser;
use cli::{Cli, Cmd};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const EXIT_FAILED: i32 = 1;
const EXIT_NOT_RUNNING: i32 = 3;
const EXIT_COMM: i32 = 4;


/// A failure with the exit status a script sees.
struct Fail(i32, String);

fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => {}
        Err(Fail(code, msg)) => {
            // File names in DIR are anyone's choice in a shared directory: no control characters.
            eprintln!("ckpt-ctl: {}", printable(&msg).replace('\n', " "));
            std::process::exit(code);
        }
    }
}

fn run(cli: &Cli) -> Result<(), Fail> {
    let sock = find_socket(&cli.dir, cli.name.as_deref())?;
    let (request, waits) = match cli.cmd {
        Cmd::Checkpoint { wait: false } => ("checkpoint", false),
        Cmd::Checkpoint { wait: true } => ("checkpoint wait", true),
        Cmd::Status => ("status", false),
        Cmd::Stop => ("stop", true),
    };
    let timeout = cli.timeout.unwrap_or(if waits { 3600 } else { 10 });
    let answer = printable(&ask(&sock, request, timeout)?);
    if let Some(msg) = answer.strip_prefix("error ") {
        let code = if msg.starts_with("permission denied") { EXIT_COMM } else { EXIT_FAILED };
        return Err(Fail(code, msg.trim().replace('\n', " ")));
    }
    match cli.cmd {
        Cmd::Checkpoint { wait: false } if answer.trim() == "queued" => Ok(()),
        Cmd::Checkpoint { .. } | Cmd::Stop => match answer.strip_prefix("ok ") {
            Some(path) => {
                println!("{}", path.trim());
                Ok(())
            }
            None => Err(Fail(EXIT_COMM, format!("unexpected answer {:?}", answer.trim()))),
        },
        Cmd::Status => {
            print!("{answer}");
            Ok(())
        }
    }
}

/// `s` without control characters (C0, DEL, C1) except line ends: each becomes `?`.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\n' { '?' } else { c }).collect()
}

/// Refuse a socket file that is not the user's: another user may have put it there to pose as
/// the program. (A missing file is left for `connect` to report.)
fn check_socket_file(sock: &Path) -> Result<(), Fail> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(m) = std::fs::symlink_metadata(sock) else { return Ok(()) };
    if m.uid() != ckpt_image::trust::euid() {
        return Err(Fail(
            EXIT_COMM,
            format!("{} belongs to {}, not to you: refusing to talk to it (another user may be posing as your program)", sock.display(), ckpt_image::trust::user(m.uid())),
        ));
    }
    if !m.file_type().is_socket() {
        return Err(Fail(EXIT_COMM, format!("{} is not a socket", sock.display())));
    }
    Ok(())
}

/// Refuse a server that does not run as the user (SO_PEERCRED of the connection); returns its
/// pid as we see it.
fn check_server(s: &UnixStream, sock: &Path) -> Result<i32, Fail> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out-parameters for SO_PEERCRED on our own socket.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred as *mut libc::c_void, &mut len) };
    if r != 0 {
        return Err(Fail(EXIT_COMM, format!("{}: cannot tell who is listening: {}", sock.display(), std::io::Error::last_os_error())));
    }
    if cred.uid != ckpt_image::trust::euid() {
        return Err(Fail(
            EXIT_COMM,
            format!("{}: the process listening on it (pid {}) runs as {}, not as you: refusing to talk to it", sock.display(), cred.pid, ckpt_image::trust::user(cred.uid)),
        ));
    }
    Ok(cred.pid)
}

/// The program's `pid:` line as we see it: the program may run in a pid namespace of its own
/// (ckpt-ns), even nested in another program's, where the pid it reports means nothing here;
/// the kernel gives us the listening process's pid in our own namespace.
fn our_view_of_pid(answer: &str, pid: i32) -> String {
    let mut done = false;
    answer
        .lines()
        .map(|l| match l.strip_prefix("pid: ") {
            Some(_) if !done && pid > 0 => {
                done = true;
                format!("pid: {pid}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

fn owned(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == ckpt_image::trust::euid())
}

fn find_socket(dir: &Path, name: Option<&str>) -> Result<PathBuf, Fail> {
    let sock = find_socket_file(dir, name)?;
    check_socket_file(&sock)?;
    Ok(sock)
}

fn find_socket_file(dir: &Path, name: Option<&str>) -> Result<PathBuf, Fail> {
    if let Some(n) = name {
        return Ok(dir.join(format!("{n}.sock")));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Fail(EXIT_NOT_RUNNING, format!("{}: {e}", dir.display())))?;
    let mut socks: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "sock")).collect();
    socks.sort();
    // Sockets of other users are not programs of ours; if they are all there is, the first one
    // is refused by name (check_socket_file).
    let mine: Vec<PathBuf> = socks.iter().filter(|p| owned(p)).cloned().collect();
    if !mine.is_empty() {
        socks = mine;
    } else {
        socks.truncate(1);
    }
    if socks.len() > 1 {
        // Sockets of programs that were killed stay behind: keep the ones someone listens on.
        socks.retain(|p| connect(p).is_ok());
    }
    match socks.len() {
        0 => Err(Fail(EXIT_NOT_RUNNING, format!("no program running under ckpt-run with --dir {}", dir.display()))),
        1 => Ok(socks.remove(0)),
        _ => {
            let names: Vec<String> = socks.iter().filter_map(|p| p.file_stem()).map(|s| s.to_string_lossy().into_owned()).collect();
            Err(Fail(2, format!("{} holds several programs ({}): choose one with --name", dir.display(), names.join(", "))))
        }
    }
}

fn connect(sock: &Path) -> std::io::Result<UnixStream> {
    match UnixStream::connect(sock) {
        Err(e) if e.raw_os_error() == Some(36) || e.kind() == std::io::ErrorKind::InvalidInput => {
            // ENAMETOOLONG: go through the directory's fd, as the runtime does when it binds.
            let dir = std::fs::File::open(sock.parent().unwrap_or(Path::new(".")))?;
            use std::os::fd::AsRawFd;
            let short = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), sock.file_name().unwrap_or_default().to_string_lossy());
            UnixStream::connect(short)
        }
        r => r,
    }
}

fn ask(sock: &Path, request: &str, timeout_s: u64) -> Result<String, Fail> {
    let mut s = connect(sock).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            Fail(EXIT_NOT_RUNNING, format!("{}: the program is not running ({e})", sock.display()))
        }
        std::io::ErrorKind::PermissionDenied => Fail(EXIT_COMM, format!("{}: {e} (only the program's owner may control it)", sock.display())),
        _ => Fail(EXIT_COMM, format!("{}: {e}", sock.display())),
    })?;
    let peer = check_server(&s, sock)?;
    let comm = |e: std::io::Error| Fail(EXIT_COMM, format!("{}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(timeout_s.max(1)))).map_err(comm)?;
    s.set_write_timeout(Some(Duration::from_secs(timeout_s.max(1)))).map_err(comm)?;
    s.write_all(format!("{request}\n").as_bytes()).map_err(comm)?;
    let mut answer = String::new();
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => answer.push_str(&line),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Fail(EXIT_COMM, format!("{}: no answer after {timeout_s} s", sock.display())));
            }
            Err(e) => return Err(comm(e)),
        }
    }
    if answer.is_empty() {
        return Err(Fail(EXIT_NOT_RUNNING, format!("{}: the program closed the connection without answering (did it exit?)", sock.display())));
    }
    Ok(our_view_of_pid(&answer, peer))
}
