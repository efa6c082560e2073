//! Whether the ckpt runtime can be loaded into the program at all. It comes in through
//! LD_PRELOAD, which only the dynamic loader of a dynamically linked x86-64 program reads, and
//! which the loader ignores when the kernel runs the program with other privileges (setuid or
//! setgid to someone else, file capabilities). Such a program would run unprotected: the first
//! checkpoint signal would kill it and `--interval` would write nothing. So ckpt-run looks at
//! the file it is about to exec (found through PATH as execvp does; for a `#!` script, at its
//! interpreter, and through `/usr/bin/env NAME` at NAME) and refuses it, or with --unprotected
//! runs it without the runtime after a warning. A program that later execs such a binary is
//! not seen here.

use std::ffi::{CString, OsStr};
use crate::resume::resolve_program;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `#!` interpreters followed at most (the kernel allows 4 levels too).
const MAX_DEPTH: usize = 4;

/// Why the runtime cannot protect `program`: a sentence naming the file, e.g. "/bin/x is
/// statically linked". None: it can (or ckpt-run cannot tell; the exec will say what is wrong).
pub fn why_unprotectable(program: &OsStr) -> Option<String> {
    let path = resolve_program(program)?;
    check(&path, 0)
}

fn check(path: &Path, depth: usize) -> Option<String> {
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    head.truncate(n);
    let show = path.display();
    if let Some(line) = head.strip_prefix(b"#!") {
        // The kernel ignores set-id bits on scripts: what matters is the interpreter.
        let (interp, arg) = shebang(line)?;
        if depth >= MAX_DEPTH {
            return None;
        }
        let next = if interp.file_name() == Some(OsStr::new("env")) { arg.as_deref().and_then(|a| resolve_program(OsStr::new(a))) } else { Some(interp) };
        let why = check(&next?, depth + 1)?;
        return Some(format!("{show} is a script for {why}"));
    }
    if !head.starts_with(b"\x7fELF") {
        return None; // not for us to judge (execvp runs such files with /bin/sh)
    }
    let why = elf_problem(&head).or_else(|| privileges(path))?;
    Some(if depth == 0 { format!("{show} {why}") } else { format!("{show}, which {why}") })
}

/// The interpreter and its optional single argument from a `#!` line.
fn shebang(line: &[u8]) -> Option<(PathBuf, Option<String>)> {
    let line = line.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    let mut words = text.split([' ', '\t']).filter(|w| !w.is_empty());
    let interp = PathBuf::from(words.next()?);
    let arg = words.find(|w| !w.starts_with('-')).map(str::to_string);
    Some((interp, arg))
}

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;

/// What keeps the dynamic loader from preloading the runtime into this ELF file, if anything:
/// another architecture, or no program interpreter (statically linked).
fn elf_problem(head: &[u8]) -> Option<String> {
    let u16_at = |o: usize| head.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| head.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| head.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if head.get(4) != Some(&2) || head.get(5) != Some(&1) || u16_at(18) != Some(EM_X86_64) {
        return Some("is not a 64-bit x86-64 program (the ckpt runtime is)".to_string());
    }
    let (phoff, phentsize, phnum) = (u64_at(32)? as usize, u16_at(54)? as usize, u16_at(56)? as usize);
    if phentsize < 4 {
        return None;
    }
    for i in 0..phnum {
        // Program headers past the first 4 KiB of the file: not for us to judge.
        let ty = u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)?;
        if ty == PT_INTERP {
            return None;
        }
    }
    Some("is statically linked".to_string())
}

/// Whether the kernel would run the file with privileges the caller does not have (then the
/// dynamic loader runs in secure mode and ignores LD_PRELOAD).
fn privileges(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let nosuid = CString::new(path.as_os_str().as_bytes()).ok().is_some_and(|c| {
        // SAFETY: an all-zero statvfs is a valid out-parameter; c is a valid path.
        let mut v: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::statvfs(c.as_ptr(), &mut v) == 0 && v.f_flag & libc::ST_NOSUID != 0 }
    });
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mode = m.mode();
    if !nosuid && mode & libc::S_ISUID != 0 && m.uid() != uid {
        return Some(format!("is setuid (it runs as uid {})", m.uid()));
    }
    if !nosuid && mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0 && m.gid() != gid {
        return Some(format!("is setgid (it runs as gid {})", m.gid()));
    }
    if !nosuid && has_file_capabilities(path) {
        return Some("has file capabilities (setcap)".to_string());
    }
    None
}

fn has_file_capabilities(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: a size query (NULL buffer) of an extended attribute of a valid path.
    let n = unsafe { libc::getxattr(c.as_ptr(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines() {
        assert_eq!(shebang(b"/bin/sh\n"), Some((PathBuf::from("/bin/sh"), None)));
        assert_eq!(shebang(b" /usr/bin/env  python3 -u\nprint()"), Some((PathBuf::from("/usr/bin/env"), Some("python3".into()))));
        assert_eq!(shebang(b"/usr/bin/env -S bash -e\n").map(|s| s.1), Some(Some("bash".into())));
        assert_eq!(shebang(b"\n"), None);
    }

    #[test]
    fn elf_headers() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_problem(&own[..4096]), None, "the test binary is dynamically linked");
        let mut stat = own[..4096].to_vec();
        // Turn every PT_INTERP into PT_NULL: what a static binary looks like.
        let (phoff, size, num) = (u64::from_le_bytes(stat[32..40].try_into().unwrap()) as usize, stat[54] as usize, stat[56] as usize);
        for i in 0..num {
            let at = phoff + i * size;
            if stat[at..at + 4] == PT_INTERP.to_le_bytes() {
                stat[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        assert_eq!(elf_problem(&stat).as_deref(), Some("is statically linked"));
        stat[4] = 1; // ELFCLASS32
        assert!(elf_problem(&stat).unwrap().contains("not a 64-bit x86-64"));
    }
}
