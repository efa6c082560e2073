//! Unit tests of deleted files' data in an image: chunks of a file written with `Writer` read
//! back byte for byte, are checked by `verify_all`/`verify_files`, refused when out of bounds,
//! and copied by `flatten`.

use crate::{flatten, Chain, Deleted, Entry, FdKind, FdState, ImageError, Index, Reader, Writer};
use std::path::PathBuf;

const P: u64 = 4096;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ckpt-deleted-{name}-{}", std::process::id()))
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8).collect()
}

/// An image whose fd 3 is a deleted file of `size` bytes with `extents` (offset, pages) stored.
fn write(path: &PathBuf, size: u64, extents: &[(u64, u64)]) -> Vec<(u64, Vec<u8>)> {
    let mut w = Writer::new(std::fs::File::create(path).unwrap(), 1).unwrap();
    let mut chunks = Vec::new();
    let mut stored = Vec::new();
    for (i, &(off, pages)) in extents.iter().enumerate() {
        let d = data((pages * P) as usize, i as u8);
        chunks.push(w.write_chunk(off, &d).unwrap());
        stored.push((off, d));
    }
    let d = Deleted { path: b"/tmp/gone".to_vec(), dev: 1, ino: 2, mode: libc::S_IFREG | 0o640, size, chunks, ..Default::default() };
    let fd = FdState { fd: 3, flags: 2, pos: 0, cloexec: false, kind: FdKind::Deleted(d), dup_of: None, mtime: 0, id: Default::default(), locks: Vec::new(), owner: None, held_with: Vec::new() };
    let index = Index { fds: vec![fd], entry: Entry { pc: 1, sp: 1, ..Default::default() }, ..Default::default() };
    w.finish(&index).unwrap();
    stored
}

fn read_back(r: &Reader) -> Vec<(u64, Vec<u8>)> {
    let d = r.index.deleted_files().next().unwrap();
    let mut dec = crate::Decompressor::new().unwrap();
    let mut scratch = Vec::new();
    d.chunks
        .iter()
        .map(|c| {
            let mut out = vec![0u8; c.raw_len as usize];
            r.read_chunk(c, &mut out, &mut dec, &mut scratch).unwrap();
            (c.offset, out)
        })
        .collect()
}

#[test]
fn file_chunks_round_trip_and_verify() {
    let path = tmp("rt");
    // 3 GiB apparent size, two data runs far apart.
    let stored = write(&path, 3 << 30, &[(0, 3), (2 << 30, 1)]);
    let r = Reader::open(&path).unwrap();
    assert_eq!(read_back(&r), stored);
    r.verify_all().unwrap();
    r.verify_files().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn file_chunks_past_the_size_are_refused() {
    let path = tmp("oob");
    write(&path, 2 * P + 1, &[(2 * P, 2)]); // pages 2 and 3: past page_up(size) = 3 pages
    match Reader::open(&path) {
        Err(ImageError::Corrupt(m)) => assert!(m.contains("deleted file /tmp/gone"), "{m}"),
        other => panic!("accepted: {:?}", other.map(|_| ())),
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn flatten_copies_file_chunks() {
    let (path, out) = (tmp("fl-in.ckpt"), tmp("fl-out.ckpt"));
    let stored = write(&path, 10 * P, &[(P, 2), (8 * P, 2)]);
    flatten(&Chain::open(&path).unwrap(), &out).unwrap();
    assert_eq!(read_back(&Reader::open(&out).unwrap()), stored);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&out);
}
