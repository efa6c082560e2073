//! Unit tests of chains and flattening. Chains are built with `Writer` (a full image and two
//! increments with overlapping, partial, zero and non-inheriting regions); the memory a chain
//! rebuilds is compared byte by byte with a reference that follows the format's definition
//! page by page (chunk of the image, else the parent's page if the region inherits, else empty).

use crate::{flatten, Backing, Chain, Codec, Entry, Header, ImageError, Index, LayerBuf, Meta, Region, Writer, MAX_CHAIN};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const P: u64 = 4096;
const BASE: u64 = 0x1000_0000;
/// What a file mapping holds where no layer wrote (stands for the file's bytes).
const FILE_BYTE: u8 = 0xEE;

#[derive(Clone, Copy)]
enum Fill {
    /// Incompressible bytes from a seed (stored raw).
    Rand(u64),
    /// Compressible text (stored zstd).
    Text,
    Zero,
}

struct Spec {
    /// First page (from BASE) and number of pages.
    page: u64,
    pages: u64,
    backing: Backing,
    inherit: bool,
    /// (first page within the region, pages, content)
    chunks: Vec<(u64, u64, Fill)>,
}

fn anon(page: u64, pages: u64, inherit: bool, chunks: Vec<(u64, u64, Fill)>) -> Spec {
    Spec { page, pages, backing: Backing::Anon, inherit, chunks }
}

fn file(page: u64, pages: u64, inherit: bool, chunks: Vec<(u64, u64, Fill)>) -> Spec {
    let backing = Backing::File { path: b"/nonexistent/lib.so".to_vec(), offset: 0, size: pages * P, mtime: 1, shared: false };
    Spec { page, pages, backing, inherit, chunks }
}

fn bytes(fill: Fill, n: usize) -> Vec<u8> {
    match fill {
        Fill::Rand(seed) => crate::fuzz::xorshift_bytes(&mut (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1), n),
        Fill::Text => b"incremental ".iter().copied().cycle().take(n).collect(),
        Fill::Zero => vec![0; n],
    }
}

/// One written image: its header, and its pages as the reference sees them.
struct Image {
    header: Header,
    regions: Vec<Region>,
    /// Page address -> content, for every page a chunk stores.
    pages: HashMap<u64, Vec<u8>>,
}

fn index(regions: Vec<Region>, generation: u64, chain: u32) -> Index {
    Index {
        meta: Meta { arch: "x86_64".into(), program: "app".into(), generation, chain, ..Default::default() },
        regions,
        entry: Entry { pc: BASE, sp: BASE + P, ..Default::default() },
        ..Default::default()
    }
}

fn write(path: &Path, specs: &[Spec], parent: u64, generation: u64, chain: u32) -> Image {
    let mut w = Writer::new(std::fs::File::create(path).unwrap(), 1).unwrap();
    let mut pages = HashMap::new();
    let mut regions = Vec::new();
    for s in specs {
        let start = BASE + s.page * P;
        let mut chunks = Vec::new();
        // The data chunks of an inheriting region (an increment's) go into one packed frame, as
        // the runtime writes scattered pages; the others are plain chunks.
        let (mut frame, mut parts) = (Vec::new(), Vec::new());
        for &(off, n, fill) in &s.chunks {
            let data = bytes(fill, (n * P) as usize);
            if s.inherit && !matches!(fill, Zero) {
                frame.extend_from_slice(&data);
                parts.push((off * P, n * P));
            } else {
                chunks.push(w.write_chunk(off * P, &data).unwrap());
            }
            for i in 0..n {
                pages.insert(start + (off + i) * P, data[(i * P) as usize..((i + 1) * P) as usize].to_vec());
            }
        }
        if !parts.is_empty() {
            let mut enc = crate::ChunkEncoder::new(1).unwrap();
            let packed = w.write_frame_with(&mut enc, &parts, &frame).unwrap();
            assert!(parts.len() < 2 || packed.iter().all(|c| c.is_packed() || c.codec == Codec::Zero), "{packed:?}");
            chunks.extend(packed);
            chunks.sort_by_key(|c| c.offset);
        }
        regions.push(Region { start, end: start + s.pages * P, prot: 3, name: b"r".to_vec(), backing: s.backing.clone(), chunks, inherit: s.inherit, attrs: Default::default() });
    }
    let (_, header) = w.finish_increment(&index(regions.clone(), generation, chain), parent).unwrap();
    Image { header, regions, pages }
}

/// What the chain `images` (newest first) holds at page `addr`, by the format's definition.
fn reference(images: &[&Image], addr: u64) -> Option<Vec<u8>> {
    let (img, older) = images.split_first()?;
    let r = img.regions.iter().find(|r| r.start <= addr && addr < r.end)?;
    if let Some(p) = img.pages.get(&addr) {
        return Some(p.clone());
    }
    if r.inherit {
        reference(older, addr)
    } else {
        None
    }
}

fn base_byte(r: &Region) -> u8 {
    if matches!(r.backing, Backing::Anon | Backing::SharedAnon) {
        0
    } else {
        FILE_BYTE
    }
}

fn expected(images: &[&Image], r: &Region) -> Vec<u8> {
    let mut out = Vec::new();
    for a in (r.start..r.end).step_by(P as usize) {
        out.extend(reference(images, a).unwrap_or_else(|| vec![base_byte(r); P as usize]));
    }
    out
}

/// Region `ri` rebuilt as the restarter does: layers image by image, oldest first.
fn by_layers(chain: &Chain, ri: usize) -> Vec<u8> {
    let r = &chain.index().regions[ri];
    let mut mem = vec![base_byte(r); r.len() as usize];
    let mut buf = LayerBuf::new().unwrap();
    let layers = chain.layers(ri);
    for w in layers.windows(2) {
        assert!(w[0].image > w[1].image || (w[0].image == w[1].image && w[0].at + w[0].len <= w[1].at), "layers out of order: {w:?}");
    }
    for l in layers {
        chain.read_layer(l, &mut mem[l.at as usize..(l.at + l.len) as usize], &mut buf).unwrap();
    }
    mem
}

/// Region `ri` rebuilt with `read_range`, in windows of 3 pages.
fn by_windows(chain: &Chain, ri: usize) -> Vec<u8> {
    let r = &chain.index().regions[ri];
    let mut mem = vec![base_byte(r); r.len() as usize];
    let mut buf = LayerBuf::new().unwrap();
    for (i, win) in mem.chunks_mut(3 * P as usize).enumerate() {
        chain.read_range(ri, i as u64 * 3 * P, win, &mut buf).unwrap();
    }
    mem
}

fn check_memory(chain: &Chain, images: &[&Image]) {
    for (ri, r) in chain.index().regions.iter().enumerate() {
        let want = expected(images, r);
        for (how, got) in [("layers", by_layers(chain, ri)), ("windows", by_windows(chain, ri))] {
            if let Some(i) = (0..want.len()).find(|&i| want[i] != got[i]) {
                panic!("region {:#x}-{:#x} ({how}): first difference at page {}", r.start, r.end, i as u64 / P);
            }
        }
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("ckpt-chain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn join(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use Fill::*;

/// full (app.ckpt.2) <- inc1 (app.ckpt.1) <- inc2 (app.ckpt).
fn three(dir: &Dir) -> [Image; 3] {
    let full = write(
        &dir.join("app.ckpt.2"),
        &[
            anon(0, 64, false, vec![(0, 16, Rand(1)), (16, 16, Text), (40, 4, Rand(2)), (44, 1, Rand(10)), (56, 4, Zero)]),
            anon(100, 16, false, vec![(0, 16, Rand(3))]),
            file(200, 8, false, vec![(0, 2, Rand(4))]),
            anon(300, 10, false, vec![(0, 10, Text)]),
        ],
        0,
        1,
        1,
    );
    let inc1 = write(
        &dir.join("app.ckpt.1"),
        &[
            // Partly over full's first chunk; zeros over its text; a page over its page 44;
            // zeros over nothing; a page over its zero chunk.
            anon(0, 60, true, vec![(4, 2, Rand(5)), (20, 1, Zero), (44, 1, Rand(11)), (50, 2, Zero), (57, 1, Rand(6))]),
            // Mapped again: nothing inherited.
            anon(100, 16, false, vec![(0, 2, Rand(7))]),
            // Zeros over the file's bytes.
            file(200, 8, true, vec![(4, 1, Zero)]),
            anon(400, 4, false, vec![(0, 4, Text)]),
        ],
        full.header.index_hash,
        2,
        2,
    );
    let inc2 = write(
        &dir.join("app.ckpt"),
        &[
            // The region split in two, across full's first chunk.
            anon(0, 10, true, vec![(5, 1, Zero)]),
            anon(10, 50, true, vec![(30, 2, Rand(8))]),
            anon(100, 16, true, vec![(1, 1, Rand(9))]),
            file(200, 8, true, vec![]),
            // Unmapped in inc1: nothing to inherit from full.
            anon(300, 5, true, vec![]),
            anon(400, 4, true, vec![]),
            // Nothing there in the parent.
            anon(500, 4, true, vec![]),
        ],
        inc1.header.index_hash,
        3,
        3,
    );
    [full, inc1, inc2]
}

#[test]
fn a_chain_rebuilds_memory_byte_by_byte() {
    let dir = Dir::new("rebuild");
    let [full, inc1, inc2] = three(&dir);
    let chain = Chain::open(&dir.join("app.ckpt")).unwrap();
    assert_eq!(chain.images().len(), 3);
    assert_eq!(chain.paths()[1], dir.join("app.ckpt.1"));
    assert_eq!(chain.paths()[2], dir.join("app.ckpt.2"));
    check_memory(&chain, &[&inc2, &inc1, &full]);
    chain.verify_stored().unwrap();

    // The layers themselves: full's first chunk (raw) cut in two by the split region.
    let a1 = chain.layers(0);
    let a2 = chain.layers(1);
    let cut = |ls: &[crate::Layer]| ls.iter().find(|l| l.image == 2 && l.region == 0 && l.chunk == 0).copied().unwrap();
    let (l1, l2) = (cut(a1), cut(a2));
    assert_eq!((l1.skip, l1.len, l1.at, l1.whole), (0, 10 * P, 0, false));
    assert_eq!((l2.skip, l2.len, l2.at, l2.whole), (10 * P, 6 * P, 0, false));
    assert_eq!(l1.codec, Codec::Raw);
    // full's page 44 is hidden by inc1's: no layer.
    assert!(!a2.iter().any(|l| l.image == 2 && l.at <= 34 * P && 34 * P < l.at + l.len && l.codec != Codec::Zero));
    // inc1's zeros over nothing (pages 50..52) are dropped; its zeros over full's text are kept.
    assert!(!a2.iter().any(|l| l.codec == Codec::Zero && l.at < 42 * P && l.at + l.len > 40 * P));
    assert!(a2.iter().any(|l| l.image == 1 && l.codec == Codec::Zero && l.at == 10 * P && l.len == P));
    // On a file mapping zeros always count.
    assert!(chain.layers(3).iter().any(|l| l.image == 1 && l.codec == Codec::Zero && l.at == 4 * P));
    // Nothing for regions that inherit nothing.
    assert!(chain.layers(4).is_empty() && chain.layers(6).is_empty());
}

#[test]
fn a_chain_is_found_by_hash_after_renames() {
    let dir = Dir::new("rename");
    let [full, inc1, inc2] = three(&dir);
    std::fs::rename(dir.join("app.ckpt.2"), dir.join("other.ckpt.7")).unwrap();
    std::fs::rename(dir.join("app.ckpt.1"), dir.join("app.ckpt.5")).unwrap();
    // Not an image name: not looked at.
    std::fs::write(dir.join("app.ckpt.tmp"), b"junk").unwrap();
    let chain = Chain::open(&dir.join("app.ckpt")).unwrap();
    assert_eq!(chain.paths()[2], dir.join("other.ckpt.7"));
    check_memory(&chain, &[&inc2, &inc1, &full]);
    // The middle of the chain opens on its own.
    let mid = Chain::open(&dir.join("app.ckpt.5")).unwrap();
    assert_eq!(mid.images().len(), 2);
    check_memory(&mid, &[&inc1, &full]);
}

#[test]
fn flattening_gives_the_same_memory_in_one_full_image() {
    let dir = Dir::new("flatten");
    let [full, inc1, inc2] = three(&dir);
    let chain = Chain::open(&dir.join("app.ckpt")).unwrap();
    let out = dir.0.join("flat").join("app.ckpt");
    std::fs::create_dir(out.parent().unwrap()).unwrap();
    // A symbolic link planted at the old temporary name is never followed.
    let precious = dir.0.join("precious");
    std::fs::write(&precious, b"precious").unwrap();
    std::os::unix::fs::symlink(&precious, out.with_extension("ckpt.tmp")).unwrap();
    let done = flatten(&chain, &out).unwrap();
    assert_eq!(done.images, 3);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&precious).unwrap(), b"precious");
    let mut left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
    left.sort();
    assert_eq!(left, ["app.ckpt", "app.ckpt.tmp"], "no temporary file left behind");
    let flat = Chain::open(&out).unwrap();
    assert_eq!(flat.images().len(), 1);
    assert_eq!(flat.newest().header.parent, 0);
    assert_eq!(flat.index().meta.chain, 1);
    assert_eq!(flat.index().meta.generation, 3);
    assert!(flat.index().regions.iter().all(|r| !r.inherit));
    flat.verify_stored().unwrap();
    check_memory(&flat, &[&inc2, &inc1, &full]);
    // A parent cannot be overwritten by the flattened image.
    assert!(flatten(&chain, &dir.join("app.ckpt.1")).is_err());
    // The newest can: it is the same memory.
    flatten(&chain, &dir.join("app.ckpt")).unwrap();
    let again = Chain::open(&dir.join("app.ckpt")).unwrap();
    assert_eq!(again.images().len(), 1);
    check_memory(&again, &[&inc2, &inc1, &full]);
}

#[test]
fn a_missing_parent_is_named() {
    let dir = Dir::new("missing");
    three(&dir);
    std::fs::remove_file(dir.join("app.ckpt.2")).unwrap();
    let e = Chain::open(&dir.join("app.ckpt")).err().unwrap();
    assert!(matches!(e, ImageError::MissingParent { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("app.ckpt.1 is an increment over an image that is not in"), "{msg}");
    assert!(msg.contains(&dir.0.display().to_string()) && msg.contains("generation 1 ") && msg.contains("copy the whole directory"), "{msg}");
}

#[test]
fn a_corrupt_parent_is_named() {
    use std::os::unix::fs::FileExt;
    let dir = Dir::new("corrupt");
    let [full, ..] = three(&dir);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(dir.join("app.ckpt.2")).unwrap();
    let flip = |at: u64| {
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    };
    // Chunk data: the chain opens, verification names the parent.
    flip(100);
    let chain = Chain::open(&dir.join("app.ckpt")).unwrap();
    let e = chain.verify_stored().err().unwrap();
    assert!(matches!(&e, ImageError::Ancestor { path, .. } if path.ends_with("app.ckpt.2")), "{e}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    // Reading a layer of the bad chunk fails the same way.
    let l = *chain.layers(0).iter().find(|l| l.image == 2 && l.region == 0 && l.chunk == 0).unwrap();
    let mut dst = vec![0u8; l.len as usize];
    let e = chain.read_layer(&l, &mut dst, &mut LayerBuf::new().unwrap()).err().unwrap();
    assert!(e.to_string().contains("app.ckpt.2 (an image it builds on)"), "{e}");
    flip(100);
    // The index: opening the chain fails, naming the parent.
    flip(full.header.index_offset + 3);
    let e = Chain::open(&dir.join("app.ckpt")).err().unwrap();
    assert!(e.to_string().contains("app.ckpt.2 (an image it builds on): image is corrupt: index checksum mismatch"), "{e}");
}

fn one(path: &Path, page: u64, parent: u64) -> Header {
    write(path, &[anon(page, 1, parent != 0, vec![(0, 1, Rand(page))])], parent, 1, 1).header
}

#[test]
fn a_loop_of_parents_is_refused() {
    let dir = Dir::new("loop");
    // The index hash does not depend on the parent (a header field): b's is known in advance.
    let specs_b = [anon(1, 1, true, vec![(0, 1, Rand(1))])];
    let hb = {
        let img = write(&dir.join("scratch.bin"), &specs_b, 1, 1, 1);
        img.header.index_hash
    };
    let ha = one(&dir.join("a.ckpt.1"), 1, hb).index_hash;
    let b = write(&dir.join("a.ckpt"), &specs_b, ha, 1, 1);
    assert_eq!(b.header.index_hash, hb);
    let e = Chain::open(&dir.join("a.ckpt")).err().unwrap();
    assert!(e.to_string().contains("loops"), "{e}");
    // An image that names itself.
    let d2 = Dir::new("loop-self");
    let specs = [anon(1, 1, true, vec![(0, 1, Rand(2))])];
    let h = write(&d2.join("x.ckpt.1"), &specs, 1, 1, 1).header.index_hash;
    write(&d2.join("x.ckpt"), &specs, h, 1, 1);
    std::fs::remove_file(d2.join("x.ckpt.1")).unwrap();
    let e = Chain::open(&d2.join("x.ckpt")).err().unwrap();
    assert!(e.to_string().contains("loops"), "{e}");
}

#[test]
fn an_absurdly_long_chain_is_refused() {
    let dir = Dir::new("long");
    let mut parent = 0;
    for i in 0..=MAX_CHAIN as u64 {
        parent = one(&dir.join(&format!("p{i}.ckpt")), i, parent).index_hash;
    }
    let newest = dir.join(&format!("p{MAX_CHAIN}.ckpt"));
    let e = Chain::open(&newest).err().unwrap();
    assert!(e.to_string().contains("longer than 64"), "{e}");
    let longest = Chain::open(&dir.join(&format!("p{}.ckpt", MAX_CHAIN - 1))).unwrap();
    assert_eq!(longest.images().len(), MAX_CHAIN);
}

#[test]
fn a_full_image_is_one_layer_per_data_chunk() {
    let dir = Dir::new("full");
    let img = write(&dir.join("app.ckpt"), &[anon(0, 8, false, vec![(0, 2, Text), (2, 1, Zero), (3, 5, Rand(3))])], 0, 1, 1);
    let chain = Chain::open(&dir.join("app.ckpt")).unwrap();
    let ls = chain.layers(0);
    assert_eq!(ls.len(), 2);
    assert!(ls.iter().all(|l| l.whole && l.image == 0 && l.skip == 0));
    assert_eq!((ls[0].chunk, ls[1].chunk), (0, 2));
    check_memory(&chain, &[&img]);
}
