//! Image chains: an increment and the images it builds on (its parent, the parent's parent, ...
//! down to a full image), read as one.
//!
//! `Chain::open` finds each parent among the image files of the same directory by the
//! `index_hash` its child names in `Header::parent` (files are renamed on rotation, so names say
//! nothing), and computes, for every region of the newest image, the *layers* that rebuild its
//! memory: parts of chunks of the chain's images, applied oldest image first, each newer layer
//! overwriting what older ones wrote. Within one image chunks never overlap, so the layers of one
//! image can be applied in any order (in parallel), the images one after the other.

use crate::{Backing, Chunk, Codec, Decompressor, Header, ImageError, Index, Reader, Result, HEADER_LEN};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many images in a chain (the runtime compacts long before).
pub const MAX_CHAIN: usize = 64;

/// A part of one chunk of one image of the chain, to be copied into a region of the newest image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layer {
    /// Which image of the chain: 0 the newest, 1 its parent, and so on.
    pub image: usize,
    /// The region and the chunk in that image's index.
    pub region: usize,
    pub chunk: usize,
    /// The part of the chunk's memory: `len` bytes from its byte `skip`.
    pub skip: u64,
    pub len: u64,
    /// Where they go: offset within the newest image's region.
    pub at: u64,
    pub codec: Codec,
    /// The whole chunk (`skip` 0, `len` its `raw_len`): read straight into the destination.
    pub whole: bool,
}

/// An image and every image it builds on, opened and validated (headers and indexes).
pub struct Chain {
    /// Newest first; the last one is a full image.
    images: Vec<Reader>,
    paths: Vec<PathBuf>,
    /// Per region of the newest image: its layers, oldest image first, by address within one image.
    layers: Vec<Vec<Layer>>,
    /// Tells chains apart in `LayerBuf`'s cache.
    id: u64,
}

/// Per-thread state for reading layers: a zstd context, buffers, and the last chunk decompressed
/// for a partial layer (the next part of it is often wanted next).
pub struct LayerBuf {
    dec: Decompressor,
    stored: Vec<u8>,
    chunk: Vec<u8>,
    /// The frame in `chunk`: (chain id, image, file offset).
    cached: Option<(u64, usize, u64)>,
}

impl LayerBuf {
    pub fn new() -> Result<Self> {
        Ok(LayerBuf { dec: Decompressor::new()?, stored: Vec::new(), chunk: Vec::new(), cached: None })
    }
}

/// Sorted, disjoint address ranges `[start, end)`.
type Ranges = Vec<(u64, u64)>;

/// Sort and coalesce ranges that overlap or touch.
fn merge(mut v: Ranges) -> Ranges {
    v.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts of `[a, b)` inside `set`.
fn intersect(set: &[(u64, u64)], a: u64, b: u64) -> Ranges {
    let first = set.partition_point(|&(_, e)| e <= a);
    set[first..].iter().take_while(|&&(s, _)| s < b).map(|&(s, e)| (s.max(a), e.min(b))).filter(|(s, e)| s < e).collect()
}

/// Whether `set` covers all of `[a, b)`.
fn covers(set: &[(u64, u64)], a: u64, b: u64) -> bool {
    let i = set.partition_point(|&(_, e)| e <= a);
    set.get(i).is_some_and(|&(s, e)| s <= a && b <= e)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Chain {
    /// Open the image at `path` and every image it builds on, found among the image files of
    /// its directory by their `index_hash`.
    pub fn open(path: &Path) -> Result<Chain> {
        Chain::open_with(path, &|p| Reader::open(p))
    }

    /// `open` for a restart by user `euid`: every image of the chain must be the user's
    /// (`trust::read_owned`: not a symbolic link, a regular file owned by `euid`, not writable
    /// by others, taken by `euid`).
    pub fn open_owned(path: &Path, euid: u32) -> Result<Chain> {
        Chain::open_with(path, &|p| crate::trust::read_owned(p, euid))
    }

    /// `open_owned`, with images taken by `taker` (`trust::read_taken_by`).
    pub fn open_taken_by(path: &Path, euid: u32, taker: u32) -> Result<Chain> {
        Chain::open_with(path, &|p| crate::trust::read_taken_by(p, euid, taker))
    }

    fn open_with(path: &Path, read: &dyn Fn(&Path) -> Result<Reader>) -> Result<Chain> {
        let mut images = vec![read(path)?];
        let mut paths = vec![path.to_path_buf()];
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut candidates: Option<Vec<(PathBuf, u64)>> = None;
        loop {
            let child = images.last().expect("a chain holds at least one image");
            let want = child.header.parent;
            if want == 0 {
                break;
            }
            let child_name = paths.last().and_then(|p| p.file_name()).map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            if images.iter().any(|r| r.header.index_hash == want) {
                return Err(ImageError::Corrupt(format!("{child_name} builds on an image that builds on it (the chain loops)")));
            }
            if images.len() >= MAX_CHAIN {
                return Err(ImageError::Corrupt(format!("the chain of increments is longer than {MAX_CHAIN} images")));
            }
            let cands = candidates.get_or_insert_with(|| headers_in(dir));
            let mut first_err = None;
            let mut found = None;
            for (p, _) in cands.iter().filter(|(_, h)| *h == want) {
                match read(p) {
                    Ok(r) if r.header.index_hash == want => {
                        found = Some((r, p.clone()));
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        first_err.get_or_insert((p.clone(), e));
                    }
                }
            }
            match (found, first_err) {
                (Some((r, p)), _) => {
                    images.push(r);
                    paths.push(p);
                }
                (None, Some((p, e))) => return Err(ImageError::Ancestor { path: p.display().to_string(), source: Box::new(e) }),
                (None, None) => {
                    let m = &child.index.meta;
                    return Err(ImageError::MissingParent {
                        image: child_name,
                        dir: dir.display().to_string(),
                        program: m.program.clone(),
                        before: m.generation.saturating_sub(1),
                    });
                }
            }
        }
        let layers = (0..images[0].index.regions.len()).map(|ri| region_layers(&images, ri)).collect();
        Ok(Chain { images, paths, layers, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) })
    }

    /// The newest image (the one opened), whose index describes the program.
    pub fn newest(&self) -> &Reader {
        &self.images[0]
    }

    pub fn index(&self) -> &Index {
        &self.images[0].index
    }

    /// Every image of the chain, newest first (the last is a full image).
    pub fn images(&self) -> &[Reader] {
        &self.images
    }

    /// Their paths, in the same order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The layers of region `region` of the newest image, oldest image first; within one image
    /// by address, never overlapping.
    pub fn layers(&self, region: usize) -> &[Layer] {
        self.layers.get(region).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The chunk a layer is part of.
    pub fn chunk(&self, l: &Layer) -> &Chunk {
        &self.images[l.image].index.regions[l.region].chunks[l.chunk]
    }

    /// Ask the kernel to start reading the compressed chunks the layers need (best effort).
    pub fn prefetch_compressed(&self) {
        for l in self.layers.iter().flatten().filter(|l| l.codec.is_zstd()) {
            self.images[l.image].prefetch_chunk(self.chunk(l));
        }
    }

    /// Write the bytes of layer `l` into `dst` (exactly `l.len` bytes), verifying the chunk's
    /// checksum. A whole plain chunk goes straight into `dst`; a part of one, or of a packed
    /// frame, is decoded into `buf` first (the whole frame, kept there for the next part: the
    /// other chunks of a packed frame usually come next).
    pub fn read_layer(&self, l: &Layer, dst: &mut [u8], buf: &mut LayerBuf) -> Result<()> {
        if dst.len() as u64 != l.len {
            return Err(ImageError::Io(std::io::Error::other("internal: layer and destination differ in length")));
        }
        let img = &self.images[l.image];
        let c = self.chunk(l);
        let r = if l.whole && !c.is_packed() {
            img.read_chunk(c, dst, &mut buf.dec, &mut buf.stored)
        } else if c.codec == Codec::Zero {
            dst.fill(0);
            Ok(())
        } else {
            let key = (self.id, l.image, c.file_offset);
            let mut r = Ok(());
            if buf.cached != Some(key) {
                buf.cached = None;
                buf.chunk.resize(c.frame_len as usize, 0);
                r = img.read_frame(c, &mut buf.chunk, &mut buf.dec, &mut buf.stored);
                if r.is_ok() {
                    buf.cached = Some(key);
                }
            }
            let from = (c.frame_skip + l.skip) as usize;
            r.map(|()| dst.copy_from_slice(&buf.chunk[from..from + l.len as usize]))
        };
        r.map_err(|e| self.blame(l.image, e))
    }

    /// Which stored frame a layer reads: layers of one frame are best read one after the other
    /// on one thread (the frame is decoded once).
    pub fn frame_of(&self, l: &Layer) -> (usize, u64) {
        (l.image, self.chunk(l).file_offset)
    }

    /// Rebuild bytes `[off, off + dst.len())` of region `region` of the newest image into `dst`
    /// by applying the layers that touch them, oldest first. Bytes no layer covers are left as
    /// they are (the caller puts there what the region's backing holds). Returns the ranges
    /// that were written, as offsets within the region, sorted and merged.
    pub fn read_range(&self, region: usize, off: u64, dst: &mut [u8], buf: &mut LayerBuf) -> Result<Vec<(u64, u64)>> {
        let end = off + dst.len() as u64;
        let mut written = Vec::new();
        for level in self.layers(region).chunk_by(|a, b| a.image == b.image) {
            let first = level.partition_point(|l| l.at + l.len <= off);
            for l in level[first..].iter().take_while(|l| l.at < end) {
                let (s, e) = (l.at.max(off), (l.at + l.len).min(end));
                let part = Layer { skip: l.skip + (s - l.at), len: e - s, at: s, whole: l.whole && s == l.at && e == l.at + l.len, ..*l };
                self.read_layer(&part, &mut dst[(s - off) as usize..(e - off) as usize], buf)?;
                written.push((s, e));
            }
        }
        Ok(merge(written))
    }

    /// Check the stored bytes of every chunk of every image against its checksum.
    pub fn verify_stored(&self) -> Result<()> {
        for (k, img) in self.images.iter().enumerate() {
            img.verify_stored().map_err(|e| self.blame(k, e))?;
        }
        Ok(())
    }

    /// An error about image `k` of the chain: for an older image, say which file it is.
    pub fn blame(&self, k: usize, e: ImageError) -> ImageError {
        if k == 0 {
            return e;
        }
        ImageError::Ancestor { path: self.paths[k].display().to_string(), source: Box::new(e) }
    }
}

/// The image files of `dir` whose header reads, with their `index_hash`.
fn headers_in(dir: &Path) -> Vec<(PathBuf, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<(PathBuf, u64)> = rd
        .flatten()
        .filter(|e| crate::parse_image_name(e.file_name().as_bytes()).is_some())
        .filter_map(|e| {
            let p = e.path();
            let f = crate::reader::open_regular(&p).ok()?;
            let len = f.metadata().ok()?.len();
            let mut b = vec![0u8; HEADER_LEN.min(len as usize)];
            f.read_exact_at(&mut b, 0).ok()?;
            Some((p, Header::decode(&b, len).ok()?.index_hash))
        })
        .collect();
    out.sort();
    out
}

/// The layers of region `ri` of the newest image (`images[0]`), oldest image first.
///
/// Going from the newest image to older ones, `window` is what the region still inherits: all
/// of it at first (if it inherits at all), then the parts of it inside the regions of each
/// image that inherit in turn. Chunks of an older image inside the window become layers, except
/// those entirely hidden by newer layers. Finally zero chunks are cut down to the older data
/// they hide: where nothing older was written, fresh anonymous memory is zero already.
fn region_layers(images: &[Reader], ri: usize) -> Vec<Layer> {
    let top = &images[0].index.regions[ri];
    if top.backing == Backing::Special {
        return Vec::new();
    }
    let mut levels: Vec<Vec<Layer>> = Vec::new();
    let mut window: Ranges = vec![(top.start, top.end)];
    let mut covered: Ranges = Vec::new();
    for (k, img) in images.iter().enumerate() {
        let (Some(&(lo, _)), Some(&(_, hi))) = (window.first(), window.last()) else { break };
        let mut level = Vec::new();
        let mut next: Ranges = Vec::new();
        let regions = &img.index.regions;
        let first = regions.partition_point(|r| r.end <= lo);
        for (pi, p) in regions.iter().enumerate().skip(first).take_while(|(_, p)| p.start < hi) {
            let inside = intersect(&window, p.start, p.end);
            let (Some(&(ilo, _)), Some(&(_, ihi))) = (inside.first(), inside.last()) else { continue };
            let c0 = p.chunks.partition_point(|c| p.start + c.offset + c.raw_len <= ilo);
            for (ci, c) in p.chunks.iter().enumerate().skip(c0).take_while(|(_, c)| p.start + c.offset < ihi) {
                let (cs, ce) = (p.start + c.offset, p.start + c.offset + c.raw_len);
                for (s, e) in intersect(&inside, cs, ce) {
                    if covers(&covered, s, e) {
                        continue;
                    }
                    level.push(Layer { image: k, region: pi, chunk: ci, skip: s - cs, len: e - s, at: s - top.start, codec: c.codec, whole: s == cs && e == ce });
                }
            }
            if p.inherit {
                next.extend(inside);
            }
        }
        covered.extend(level.iter().map(|l| (top.start + l.at, top.start + l.at + l.len)));
        covered = merge(covered);
        window = merge(next);
        levels.push(level);
    }
    let zero_base = matches!(top.backing, Backing::Anon | Backing::SharedAnon);
    let mut out = Vec::new();
    let mut older: Ranges = Vec::new();
    for level in levels.into_iter().rev() {
        let mut data = Vec::new();
        for l in level {
            if l.codec == Codec::Zero && zero_base {
                for (s, e) in intersect(&older, l.at, l.at + l.len) {
                    out.push(Layer { skip: l.skip + (s - l.at), len: e - s, at: s, whole: l.whole && s == l.at && e == l.at + l.len, ..l });
                }
            } else {
                data.push((l.at, l.at + l.len));
                out.push(l);
            }
        }
        older.extend(data);
        older = merge(older);
    }
    out
}
