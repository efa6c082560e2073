//! Turns an image's header and index into a `Report`: what a user wants to know, in plain
//! fields that both the text and the JSON output use.

use crate::verify::Verified;
use ckpt_image::{Backing, Chain, Codec, Decompressor, FdKind, LayerBuf, Reader, Region};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
pub struct Report {
    pub image: ImageInfo,
    pub chain: ChainInfo,
    pub program: String,
    pub cmdline: Vec<String>,
    pub pid: i32,
    pub generation: u64,
    pub taken: Taken,
    pub system: System,
    pub process: Process,
    pub ids: Ids,
    pub threads: Vec<Thread>,
    pub regions: Vec<RegionInfo>,
    pub fds: Vec<Fd>,
    pub signals: Vec<Signal>,
    pub totals: Totals,
    /// What a restart cannot bring back: the program's child processes, fds reading pipes fed
    /// from outside the program.
    pub left_out: LeftOut,
    /// The System V IPC objects of the program's namespace, one line each.
    pub sysv: Vec<String>,
    /// Present with --verify: every chunk was read and its checksum matched.
    pub verified: Option<Verified>,
}

#[derive(Serialize)]
pub struct ImageInfo {
    pub path: String,
    pub format_version: u32,
    pub file_bytes: u64,
    pub data_bytes: u64,
    pub index_bytes: u64,
    /// xxh3 of the index (hex): what an increment over this image names as its parent.
    pub index_hash: String,
    /// For an increment, the `index_hash` of the image it builds on (hex); null for a full image.
    pub parent: Option<String>,
}

/// The images a restart from this one reads.
#[derive(Serialize)]
pub struct ChainInfo {
    /// As the image says (`meta.chain`): 1 for a full image, 1 + its parent's for an increment.
    pub length: u32,
    /// The images found, this one first, then its parent, and so on down to a full image;
    /// empty when the chain cannot be read.
    pub images: Vec<ChainImage>,
    /// Why the chain cannot be read (a parent missing or damaged), or null.
    pub problem: Option<String>,
}

#[derive(Serialize)]
pub struct ChainImage {
    pub path: String,
    pub generation: u64,
    pub index_hash: String,
    pub parent: Option<String>,
    pub file_bytes: u64,
    /// Bytes of memory its chunks store.
    pub saved_bytes: u64,
}

#[derive(Serialize)]
pub struct Taken {
    pub unix_time: u64,
    pub utc: String,
    pub hostname: String,
    /// Who took it (only that user restarts it) and the program ckpt-run resolved.
    pub uid: u32,
    pub executable: String,
}

#[derive(Serialize)]
pub struct System {
    pub arch: String,
    pub kernel: String,
    pub glibc: String,
    pub vdso_hash: String,
    /// The kernel's special mappings ([vvar], [vvar_vclock], [vdso]): address and size.
    pub vdso_layout: Vec<Special>,
}

#[derive(Serialize)]
pub struct Special {
    pub name: String,
    pub start: u64,
    pub size: u64,
}

#[derive(Serialize)]
pub struct Process {
    pub cwd: String,
    /// The root directory of a program that called chroot() (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    pub umask: String,
    pub brk: u64,
}

/// How the program's ids were provided (docs/namespaces.md).
#[derive(Serialize)]
pub struct Ids {
    /// "namespace": its own user+pid namespace, ids restored exactly; "host": the caller's
    /// namespaces (a restart gives new ids unless it is made in a namespace).
    pub mode: &'static str,
    /// The pid tools outside knew the program by.
    pub outer_pid: i32,
    /// getpid()/gettid() were being translated (after a restart without exact ids).
    pub virtual_ids: bool,
    pub checkpoint_thread: i32,
    /// CLOCK_MONOTONIC and CLOCK_BOOTTIME at checkpoint time, in seconds.
    pub monotonic_s: f64,
    pub boottime_s: f64,
}

#[derive(Serialize)]
pub struct Thread {
    pub tid: i32,
    /// Where the thread was interrupted, from its saved signal frame (if its page is stored).
    pub pc: Option<u64>,
    /// Its blocked-signal mask at that point, as signal names.
    pub blocked: Option<Vec<String>>,
    pub fs_base: u64,
    pub altstack: Option<(u64, u64)>,
    pub rseq: bool,
}

#[derive(Serialize)]
pub struct RegionInfo {
    pub start: u64,
    pub end: u64,
    pub size: u64,
    pub perms: String,
    /// anon, shared-anon, file, special.
    pub backing: String,
    pub file: Option<String>,
    pub file_offset: Option<u64>,
    pub name: String,
    /// Bytes of memory saved in the image (the rest is zero or comes from the file).
    pub saved_bytes: u64,
    /// Bytes those take in the image file.
    pub stored_bytes: u64,
    pub chunks: usize,
    /// none, zstd, raw, zero, or a mix such as "zstd+raw".
    pub compression: String,
    /// An increment's region whose pages without chunks are the parent image's.
    pub inherit: bool,
    /// What of ckpt's runtime (not of the program) this region is: "library" (libckpt_runtime.so),
    /// "scratch" (the memory a checkpoint works in, stored empty), "checkpoint thread stack";
    /// null for the program's own memory.
    pub runtime: Option<String>,
}

#[derive(Serialize)]
pub struct Fd {
    pub fd: i32,
    /// file, dir, or other (pipes, sockets, anonymous inodes: not restored yet).
    pub kind: String,
    pub target: String,
    pub flags: String,
    pub offset: i64,
    pub cloexec: bool,
}

#[derive(Serialize)]
pub struct Signal {
    pub signal: String,
    pub number: i32,
    /// handler (with its address), ignore.
    pub action: String,
    pub handler: Option<u64>,
    pub flags: String,
    /// The handler is in the runtime's library (the checkpoint, stop and thread-stop signals).
    pub runtime: bool,
}

#[derive(Serialize)]
pub struct LeftOut {
    pub children: Vec<LeftChild>,
    pub outside_pipes: Vec<LeftPipe>,
}

#[derive(Serialize)]
pub struct LeftChild {
    pub pid: i32,
    pub command: String,
    /// Exited, not yet waited for (a zombie).
    pub exited: bool,
}

#[derive(Serialize)]
pub struct LeftPipe {
    pub fd: i32,
    /// Bytes unread at checkpoint time.
    pub unread: u64,
    /// The FIFO's path, or null for an anonymous pipe.
    pub fifo: Option<String>,
}

fn left_out(l: &ckpt_image::LeftOut) -> LeftOut {
    LeftOut {
        children: l.children.iter().map(|c| LeftChild { pid: c.pid, command: String::from_utf8_lossy(&c.command).into_owned(), exited: c.exited }).collect(),
        outside_pipes: l
            .outside_pipes
            .iter()
            .map(|p| LeftPipe { fd: p.fd, unread: p.unread, fifo: (!p.fifo.is_empty()).then(|| String::from_utf8_lossy(&p.fifo).into_owned()) })
            .collect(),
    }
}

#[derive(Serialize)]
pub struct Totals {
    pub regions: usize,
    pub threads: usize,
    pub fds: usize,
    pub mapped_bytes: u64,
    pub saved_bytes: u64,
    pub stored_bytes: u64,
    pub chunks: usize,
    /// Of those, the runtime's regions and the bytes saved for them.
    pub runtime_regions: usize,
    pub runtime_saved_bytes: u64,
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

fn parent_hex(r: &Reader) -> Option<String> {
    (r.header.parent != 0).then(|| hex(r.header.parent))
}

/// The report on the image `reader` read from `path`; `chain` is it with the images it builds
/// on, or why they cannot be read.
pub fn build(reader: &Reader, chain: std::result::Result<&Chain, String>, path: &Path, verified: Option<Verified>) -> Report {
    let ix = &reader.index;
    let m = &ix.meta;
    let runtime = Runtime::of(ix);
    let regions: Vec<RegionInfo> = ix.regions.iter().map(|r| region(r, runtime.part(r))).collect();
    let ours: Vec<&RegionInfo> = regions.iter().filter(|r| r.runtime.is_some()).collect();
    let totals = Totals {
        runtime_regions: ours.len(),
        runtime_saved_bytes: ours.iter().map(|r| r.saved_bytes).sum(),
        regions: regions.len(),
        threads: ix.threads.len(),
        fds: ix.fds.len(),
        mapped_bytes: regions.iter().map(|r| r.size).sum(),
        saved_bytes: regions.iter().map(|r| r.saved_bytes).sum(),
        stored_bytes: regions.iter().map(|r| r.stored_bytes).sum(),
        chunks: regions.iter().map(|r| r.chunks).sum(),
    };
    let chain_info = ChainInfo {
        length: m.chain,
        images: chain
            .as_ref()
            .map(|c| {
                c.images()
                    .iter()
                    .zip(c.paths())
                    .map(|(r, p)| ChainImage {
                        path: p.display().to_string(),
                        generation: r.index.meta.generation,
                        index_hash: hex(r.header.index_hash),
                        parent: parent_hex(r),
                        file_bytes: r.file_len,
                        saved_bytes: r.index.regions.iter().flat_map(|g| &g.chunks).map(|c| c.raw_len).sum(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        problem: chain.as_ref().err().cloned(),
    };
    let mut mem = Memory { reader, chain: chain.ok(), dec: Decompressor::new().ok(), buf: LayerBuf::new().ok(), scratch: Vec::new() };
    Report {
        image: ImageInfo {
            path: path.display().to_string(),
            format_version: reader.header.version,
            file_bytes: reader.file_len,
            data_bytes: reader.header.data_len,
            index_bytes: reader.header.index_len,
            index_hash: hex(reader.header.index_hash),
            parent: parent_hex(reader),
        },
        chain: chain_info,
        program: m.program.clone(),
        cmdline: m.cmdline.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect(),
        pid: m.pid,
        generation: m.generation,
        taken: Taken {
            unix_time: m.time,
            utc: utc(m.time),
            hostname: m.hostname.clone(),
            uid: m.origin.uid,
            executable: String::from_utf8_lossy(&m.origin.program).into_owned(),
        },
        system: System {
            arch: m.arch.clone(),
            kernel: m.kernel.clone(),
            glibc: m.glibc.clone(),
            vdso_hash: format!("{:016x}", m.vdso_hash),
            vdso_layout: ix
                .regions
                .iter()
                .filter(|r| r.backing == Backing::Special)
                .map(|r| Special { name: r.name_lossy(), start: r.start, size: r.len() })
                .collect(),
        },
        process: Process {
            cwd: String::from_utf8_lossy(&ix.process.cwd).into_owned(),
            root: Some(&ix.process.root).filter(|r| !r.is_empty() && r.as_slice() != b"/").map(|r| String::from_utf8_lossy(r).into_owned()),
            umask: format!("{:04o}", ix.process.umask),
            brk: ix.process.mm.brk,
        },
        ids: Ids {
            mode: if ix.ids.namespace { "namespace" } else { "host" },
            outer_pid: ix.ids.outer_pid,
            virtual_ids: ix.ids.virtual_ids,
            checkpoint_thread: ix.ids.ckpt_tid,
            monotonic_s: ix.ids.monotonic_ns as f64 / 1e9,
            boottime_s: ix.ids.boottime_ns as f64 / 1e9,
        },
        threads: ix
            .threads
            .iter()
            .map(|t| {
                // x86-64 ucontext_t: gregs at 40 (RIP is gregs[16]), uc_sigmask at 296.
                let pc = mem.read_u64(t.ucontext + 40 + 16 * 8);
                let mask = mem.read_u64(t.ucontext + 296);
                Thread {
                    tid: t.tid,
                    pc,
                    blocked: mask.map(signal_set),
                    fs_base: t.fs_base,
                    altstack: (t.altstack_flags & libc::SS_DISABLE == 0 && t.altstack_sp != 0).then_some((t.altstack_sp, t.altstack_size)),
                    rseq: t.rseq,
                }
            })
            .collect(),
        regions,
        fds: ix
            .fds
            .iter()
            .map(|f| {
                let (kind, mut target) = f.kind.describe();
                if let FdKind::Socket(s) = &f.kind {
                    if let Some(c) = s.peer_cred {
                        target += &format!(", SO_PEERCRED pid {} uid {} gid {}", c.pid, c.uid, c.gid);
                    }
                }
                if let Some(o) = f.owner {
                    let whom = ["thread", "process", "process group"].get(o.kind as usize).copied().unwrap_or("owner");
                    target += &format!(", I/O signal {} to {whom} {}{}", if o.signal == 0 { libc::SIGIO } else { o.signal }, o.pid, if o.own { " (itself)" } else { "" });
                }
                Fd { fd: f.fd, kind: kind.into(), target, flags: open_flags(f.flags), offset: f.pos, cloexec: f.cloexec }
            })
            .collect(),
        signals: ix
            .process
            .sigactions
            .iter()
            .filter(|s| s.handler != 0) // SIG_DFL
            .map(|s| Signal {
                signal: signal_name(s.signo),
                number: s.signo,
                action: if s.handler == 1 { "ignore".into() } else { "handler".into() },
                handler: (s.handler > 1).then_some(s.handler),
                flags: sa_flags(s.flags),
                runtime: runtime.has_code_at(s.handler),
            })
            .collect(),
        totals,
        left_out: left_out(&ix.left_out),
        sysv: sysv(&ix.sysv),
        verified,
    }
}

fn sysv(s: &ckpt_image::Sysv) -> Vec<String> {
    let head = |what: &str, p: &ckpt_image::IpcPerm| format!("{what} id {} key {:#x} mode {:o} uid {} gid {}", p.id, p.key, p.mode, p.uid, p.gid);
    let shm = s.shm.iter().map(|g| {
        let data = if g.data.is_empty() { "contents in its regions".to_string() } else { format!("{} stored", g.data.len()) };
        format!("{}, {} bytes ({data}){}", head("shm", &g.perm), g.size, if g.removed { ", removed" } else { "" })
    });
    let sem = s.sem.iter().map(|g| format!("{}, values {:?}", head("sem", &g.perm), g.values));
    let msg = s.msg.iter().map(|q| format!("{}, {} messages, {} bytes", head("msg", &q.perm), q.messages.len(), q.messages.iter().map(|m| m.data.len()).sum::<usize>()));
    shm.chain(sem).chain(msg).collect()
}

/// What in an image belongs to ckpt's runtime rather than to the program. The restart entry
/// point (`entry.pc`) is the runtime's code, so the file it lies in is the runtime's library
/// (whatever its name or path); `entry.sp` is the top of the checkpoint thread's stack.
struct Runtime<'a> {
    library: Option<&'a [u8]>,
    stack_top: u64,
    code: Vec<(u64, u64)>,
}

impl<'a> Runtime<'a> {
    fn of(ix: &'a ckpt_image::Index) -> Runtime<'a> {
        let path_of = |r: &'a Region| match &r.backing {
            Backing::File { path, .. } => Some(&path[..]),
            _ => None,
        };
        let library = ix.regions.iter().find(|r| r.start <= ix.entry.pc && ix.entry.pc < r.end).and_then(path_of);
        let code = ix.regions.iter().filter(|r| library.is_some() && path_of(r) == library).map(|r| (r.start, r.end)).collect();
        Runtime { library, stack_top: ix.entry.sp, code }
    }

    fn part(&self, r: &Region) -> Option<String> {
        let lib = matches!(&r.backing, Backing::File { path, .. } if Some(&path[..]) == self.library);
        let part = if lib {
            "library"
        } else if r.name == ckpt_image::SCRATCH_NAME {
            "scratch"
        } else if self.stack_top > r.start && self.stack_top <= r.end {
            "checkpoint thread stack"
        } else {
            return None;
        };
        Some(part.into())
    }

    fn has_code_at(&self, addr: u64) -> bool {
        self.code.iter().any(|&(s, e)| s <= addr && addr < e)
    }
}

fn region(r: &Region, runtime: Option<String>) -> RegionInfo {
    let (backing, file, file_offset) = match &r.backing {
        Backing::Anon => ("anon", None, None),
        Backing::SharedAnon => ("shared-anon", None, None),
        Backing::File { path, offset, shared, .. } => {
            (if *shared { "shared-file" } else { "file" }, Some(String::from_utf8_lossy(path).into_owned()), Some(*offset))
        }
        Backing::Special => ("special", None, None),
    };
    let mut kinds: Vec<&str> = Vec::new();
    for c in &r.chunks {
        let k = match c.codec {
            Codec::Zstd => "zstd",
            Codec::Raw => "raw",
            Codec::Zero => "zero",
            Codec::Shuffle8 => "shuffle",
            Codec::Shuffle8Delta => "shuffle-delta",
        };
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    RegionInfo {
        start: r.start,
        end: r.end,
        size: r.len(),
        perms: perms(r.prot, &r.backing),
        backing: backing.into(),
        file,
        file_offset,
        name: r.name_lossy(),
        saved_bytes: r.chunks.iter().map(|c| c.raw_len).sum(),
        stored_bytes: stored_bytes(&r.chunks),
        chunks: r.chunks.len(),
        compression: if kinds.is_empty() { "none".into() } else { kinds.join("+") },
        inherit: r.inherit,
        runtime,
    }
}

/// Bytes the chunks store in the file: a packed frame once (its first chunk starts it).
fn stored_bytes(chunks: &[ckpt_image::Chunk]) -> u64 {
    chunks.iter().filter(|c| c.frame_skip == 0).map(|c| c.stored_len).sum()
}

/// Reads bytes of the program's memory out of the image, through the images it builds on when
/// they could be read (best effort: None if not stored).
struct Memory<'a> {
    reader: &'a Reader,
    chain: Option<&'a Chain>,
    dec: Option<Decompressor>,
    buf: Option<LayerBuf>,
    scratch: Vec<u8>,
}

impl Memory<'_> {
    fn read_u64(&mut self, addr: u64) -> Option<u64> {
        let end = addr.checked_add(8)?;
        if let Some(chain) = self.chain {
            let ri = chain.index().regions.iter().position(|r| r.start <= addr && end <= r.end)?;
            let off = addr - chain.index().regions[ri].start;
            let mut b = [0u8; 8];
            let written = chain.read_range(ri, off, &mut b, self.buf.as_mut()?).ok()?;
            return (written == [(off, off + 8)]).then(|| u64::from_le_bytes(b));
        }
        let r = self.reader.index.regions.iter().find(|r| r.start <= addr && end <= r.end)?;
        let off = addr - r.start;
        let c = r.chunks.iter().find(|c| c.offset <= off && off + 8 <= c.offset + c.raw_len)?;
        let mut buf = vec![0u8; c.raw_len as usize];
        self.reader.read_chunk(c, &mut buf, self.dec.as_mut()?, &mut self.scratch).ok()?;
        let at = (off - c.offset) as usize;
        Some(u64::from_le_bytes(buf[at..at + 8].try_into().ok()?))
    }
}

fn perms(prot: u32, b: &Backing) -> String {
    let f = |bit: i32, c: char| if prot & bit as u32 != 0 { c } else { '-' };
    let shared = matches!(b, Backing::SharedAnon | Backing::File { shared: true, .. });
    format!("{}{}{}{}", f(libc::PROT_READ, 'r'), f(libc::PROT_WRITE, 'w'), f(libc::PROT_EXEC, 'x'), if shared { 's' } else { 'p' })
}

const SIGNAMES: [&str; 32] = [
    "0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE",
    "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
];

pub fn signal_name(n: i32) -> String {
    match n {
        1..=31 => SIGNAMES[n as usize].into(),
        _ => format!("SIG{n}"),
    }
}

fn signal_set(mask: u64) -> Vec<String> {
    (1..=64).filter(|s| mask & (1u64 << (s - 1)) != 0).map(signal_name).collect()
}

fn names(v: u64, table: &[(u64, &str)]) -> String {
    let mut out: Vec<String> = table.iter().filter(|(b, _)| v & b != 0).map(|(_, n)| n.to_string()).collect();
    let rest = table.iter().fold(v, |acc, (b, _)| acc & !b);
    if rest != 0 {
        out.push(format!("{rest:#x}"));
    }
    out.join("|")
}

fn sa_flags(f: u64) -> String {
    names(
        f,
        &[
            (libc::SA_SIGINFO as u64, "SIGINFO"),
            (libc::SA_RESTART as u64, "RESTART"),
            (libc::SA_ONSTACK as u64, "ONSTACK"),
            (libc::SA_NODEFER as u64, "NODEFER"),
            (libc::SA_RESETHAND as u64, "RESETHAND"),
            (libc::SA_NOCLDSTOP as u64, "NOCLDSTOP"),
            (libc::SA_NOCLDWAIT as u64, "NOCLDWAIT"),
            (0x0400_0000, "RESTORER"),
        ],
    )
}

fn open_flags(f: i32) -> String {
    let acc = match f & libc::O_ACCMODE {
        libc::O_RDONLY => "RDONLY",
        libc::O_WRONLY => "WRONLY",
        _ => "RDWR",
    };
    let more = names(
        (f & !libc::O_ACCMODE & !0o100000 /* O_LARGEFILE */) as u32 as u64,
        &[
            (libc::O_APPEND as u64, "APPEND"),
            (libc::O_NONBLOCK as u64, "NONBLOCK"),
            (libc::O_DIRECTORY as u64, "DIRECTORY"),
            (libc::O_SYNC as u64, "SYNC"),
            (libc::O_DIRECT as u64, "DIRECT"),
            (libc::O_NOATIME as u64, "NOATIME"),
            (libc::O_PATH as u64, "PATH"),
        ],
    );
    if more.is_empty() { acc.into() } else { format!("{acc}|{more}") }
}

/// Seconds since the epoch as "YYYY-MM-DD HH:MM:SS UTC" (civil-from-days, no time crate).
pub fn utc(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let s = t % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
