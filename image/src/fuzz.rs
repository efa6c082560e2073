//! The body of the image reader's fuzz target (fuzz/fuzz_targets/reader.rs), kept here so that a
//! stable-toolchain test can exercise it too: whatever bytes an image file holds, opening and
//! verifying it returns an error or succeeds; it never panics, hangs or allocates without bound.

use crate::{Backing, ChildProcess, Chunk, Entry, FdKind, FdState, Ids, Index, LeftOut, Meta, OutsidePipe, Reader, Region, Result, SharedMem, ThreadState, Writer};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::FromRawFd;

/// Open `data` as an image and verify every chunk. The fuzzer calls this with arbitrary bytes.
pub fn open_and_verify(data: &[u8]) -> Result<()> {
    let mut f = memfd()?;
    f.write_all(data)?;
    let r = Reader::from_file(f)?;
    r.verify_all()?;
    // Walk what tools print, as ckpt-inspect does.
    let _stored: u64 = r.index.regions.iter().flat_map(|r| r.chunks.iter()).map(|c| c.stored_len).sum();
    Ok(())
}

/// The fuzz target: the bytes as given, and the same bytes with their checksums recomputed so
/// that mutations reach the index decoder and validation behind the checksums.
pub fn fuzz_one(data: &[u8]) {
    let _ = open_and_verify(data);
    let mut sealed = data.to_vec();
    crate::reseal(&mut sealed);
    let _ = open_and_verify(&sealed);
}

fn memfd() -> Result<File> {
    // SAFETY: memfd_create with a valid NUL-terminated name; the fd is owned by the File.
    let fd = unsafe { libc::memfd_create(c"ckpt-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// `n` pseudo-random (incompressible) bytes from the xorshift state `x`, for test images.
pub(crate) fn xorshift_bytes(x: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x as u8
        })
        .collect()
}

/// A small but complete image (zstd, raw and zero chunks, a file-backed region, threads, fds),
/// the seed for fuzzing and the subject of the format's unit tests.
pub fn sample_image() -> Result<Vec<u8>> {
    let mut w = Writer::new(memfd()?, 1)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: usize| xorshift_bytes(&mut x, n);
    let text: Vec<u8> = b"checkpoint ".iter().copied().cycle().take(3 * 4096).collect();
    let heap: Vec<Chunk> = vec![w.write_chunk(0, &text)?, w.write_chunk(3 * 4096, &[0u8; 4096])?, w.write_chunk(4 * 4096, &rnd(2 * 4096))?];
    let data = vec![w.write_chunk(0, &rnd(4096))?];
    let index = Index {
        meta: Meta {
            arch: "x86_64".into(),
            kernel: "6.18.0".into(),
            hostname: "node1".into(),
            time: 1_700_000_000,
            program: "sample".into(),
            cmdline: vec![b"./sample".to_vec(), b"--n".to_vec(), b"3".to_vec()],
            pid: 4242,
            generation: 1,
            vdso_hash: 7,
            glibc: "2.36".into(),
            chain: 1,
            origin: Default::default(),
            increments: true,
        },
        regions: vec![
            Region {
                start: 0x40_0000,
                end: 0x40_2000,
                prot: 5,
                name: b"/usr/bin/sample".to_vec(),
                backing: Backing::File { path: b"/usr/bin/sample".to_vec(), offset: 0, size: 8192, mtime: 1, shared: false },
                chunks: data,
                inherit: false,
                attrs: Default::default(),
            },
            Region { start: 0x100_0000, end: 0x100_8000, prot: 3, name: b"[heap]".to_vec(), backing: Backing::Anon, chunks: heap, inherit: false, attrs: Default::default() },
            Region { start: 0x7fff_f000_0000, end: 0x7fff_f000_2000, prot: 5, name: b"[vdso]".to_vec(), backing: Backing::Special, chunks: vec![], inherit: false, attrs: Default::default() },
        ],
        threads: vec![ThreadState { tid: 4243, ucontext: 0x100_1000, fs_base: 0x100_2000, rseq: true, ..Default::default() }],
        entry: Entry { pc: 0x40_1000, sp: 0x100_7000, ..Default::default() },
        fds: vec![
            FdState { fd: 0, flags: 2, pos: 0, cloexec: false, kind: FdKind::Path { path: b"/dev/null".to_vec(), size: 0, is_dir: false }, dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() },
            FdState { fd: 3, flags: 0, pos: 0, cloexec: true, kind: FdKind::Other { link: b"pipe:[1234]".to_vec() }, dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() },
        ],
        process: Default::default(),
        left_out: LeftOut {
            children: vec![ChildProcess { pid: 4250, command: b"sleep 30".to_vec(), exited: false }],
            outside_pipes: vec![OutsidePipe { fd: 0, unread: 12, fifo: Vec::new() }],
        },
        ids: Ids { namespace: true, outer_pid: 4200, ckpt_tid: 4244, monotonic_ns: 12_345_678_901, boottime_ns: 12_345_678_999, signal: 12, ..Default::default() },
        shared: vec![SharedMem { start: 0x7000_0000, dev: 5, ino: 42, offset: 0 }],
        step: None,
        sysv: crate::Sysv {
            shm: vec![crate::ShmSegment { perm: crate::IpcPerm { id: 42, key: 7, uid: 1000, gid: 1000, mode: 0o600 }, size: 40960, removed: false, data: vec![1, 2, 3] }],
            sem: vec![crate::SemSet { perm: crate::IpcPerm { id: 1, key: 0, uid: 1000, gid: 1000, mode: 0o600 }, values: vec![0, 5] }],
            msg: vec![crate::MsgQueue { perm: crate::IpcPerm { id: 2, key: 9, uid: 1000, gid: 1000, mode: 0o644 }, qbytes: 16384, messages: vec![crate::IpcMessage { mtype: 1, data: b"hi".to_vec() }] }],
            settings: vec![("kernel/msgmnb".into(), "16384".into())],
        },
        watched: vec![crate::WatchedPath { ino: 12, sdev: 0x800001, path: b"/tmp/watched".to_vec(), dont_follow: false }],
    };
    let (mut f, total) = w.finish(&index)?;
    let mut out = vec![0u8; total as usize];
    f.seek(SeekFrom::Start(0))?;
    std::io::Read::read_exact(&mut f, &mut out)?;
    Ok(out)
}

/// A chain of two images in `dir`: `sample.ckpt.1`, the sample image (full), and `sample.ckpt`,
/// an increment over it that rewrites one page of the heap (part of a zstd chunk), zeroes
/// another (part of a raw chunk) and inherits everything else. Returns their paths, newest
/// first. For the tools' tests.
pub fn sample_chain(dir: &Path) -> Result<[PathBuf; 2]> {
    let full = dir.join("sample.ckpt.1");
    std::fs::write(&full, sample_image()?)?;
    let base = Reader::open(&full)?;
    let mut index = base.index.clone();
    let newest = dir.join("sample.ckpt");
    let mut w = Writer::new(File::create(&newest)?, 1)?;
    let mut x = 7;
    for r in &mut index.regions {
        r.inherit = r.backing != Backing::Special;
        r.chunks.clear();
        if r.name == b"[heap]" {
            r.chunks = vec![w.write_chunk(4096, &xorshift_bytes(&mut x, 4096))?, w.write_chunk(5 * 4096, &[0u8; 4096])?];
        }
    }
    index.meta.generation = 2;
    index.meta.chain = 2;
    w.finish_increment(&index, base.header.index_hash)?;
    Ok([newest, full])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageError, HEADER_LEN, VERSION};

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn sample_image_reads_and_verifies() {
        let img = sample_image().unwrap();
        open_and_verify(&img).unwrap();
    }

    #[test]
    fn future_version_is_refused_by_name() {
        let mut img = sample_image().unwrap();
        img[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        // Resealed (a well-formed newer image) or not (a newer header layout): both say so.
        for sealed in [false, true] {
            if sealed {
                crate::reseal(&mut img);
            }
            let e = open_and_verify(&img).unwrap_err();
            assert!(matches!(e, ImageError::UnsupportedVersion { .. }), "{e}");
            assert!(e.to_string().contains(&format!("version {}", VERSION + 1)), "{e}");
        }
    }

    #[test]
    fn unfinished_image_says_so() {
        let mut img = sample_image().unwrap();
        img[..HEADER_LEN].fill(0);
        let e = open_and_verify(&img).unwrap_err();
        assert!(e.to_string().contains("never completed"), "{e}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let img = sample_image().unwrap();
        for n in 0..img.len() {
            assert!(open_and_verify(&img[..n]).is_err(), "truncated to {n} bytes but accepted");
        }
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let img = sample_image().unwrap();
        for i in 0..img.len() {
            let mut m = img.clone();
            m[i] ^= 0x20;
            assert!(open_and_verify(&m).is_err(), "flip at byte {i} of {} not detected", img.len());
        }
    }

    /// A stable stand-in for `cargo fuzz run reader`: thousands of deterministic mutations of a
    /// real image, raw and resealed; none may panic.
    #[test]
    fn smoke_fuzz_reader() {
        let seed = sample_image().unwrap();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let start = std::time::Instant::now();
        let mut iters = 0;
        while iters < 20_000 && start.elapsed().as_secs() < 60 {
            let mut m = seed.clone();
            for _ in 0..1 + rng.below(4) {
                let len = m.len();
                match rng.below(6) {
                    0 => m[rng.below(len)] ^= 1 << rng.below(8),
                    1 => m[rng.below(len)] = rng.next() as u8,
                    2 => m.truncate(rng.below(len)),
                    3 => {
                        // Aim at the index (the tail) where structure lives.
                        let tail = len.saturating_sub(HEADER_LEN.max(len / 8));
                        let at = tail + rng.below(len - tail);
                        if at < len {
                            m[at] = rng.next() as u8;
                        }
                    }
                    4 => {
                        // Overwrite a header word with an extreme value.
                        let at = 8 + 8 * rng.below(6);
                        let v = [0u64, u64::MAX, 1 << 40, rng.next()][rng.below(4)];
                        if at + 8 <= len {
                            m[at..at + 8].copy_from_slice(&v.to_le_bytes());
                        }
                    }
                    _ => {
                        let at = rng.below(len);
                        m.insert(at, rng.next() as u8);
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            fuzz_one(&m);
            iters += 1;
        }
        assert!(iters >= 500, "only {iters} iterations ran");
    }
}

#[cfg(test)]
mod seed {
    /// Writes the sample image as a seed for cargo-fuzz (see fuzz/README.md).
    #[test]
    #[ignore]
    fn write_fuzz_seed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/reader");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sample.ckpt"), super::sample_image().unwrap()).unwrap();
    }
}
