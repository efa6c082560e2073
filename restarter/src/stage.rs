//! Staging: every region that carries data is built at a temporary address (inside one
//! reservation that overlaps neither the image nor us), filled from the image chain (an
//! increment and the images it builds on) in parallel, and later moved into place by the switch
//! with mremap. Empty anonymous regions are simply mapped at their target by the switch. Large
//! regions of data are filled by copy (`copyfill`), not written into fresh pages.

use crate::copyfill::{Bounce, CopyFill};
use crate::layout::page_up;
use crate::progress::Progress;
use anyhow::{anyhow, bail, Context, Result};
use ckpt_image::{filerefs, pagetable, Backing, Chain, Codec, Layer, LayerBuf, Region};
use std::fs::{File, OpenOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};

/// A staged range: built at `staged`, to be moved to `target` and given `prot`.
#[derive(Debug, Clone, Copy)]
pub struct Piece {
    pub target: u64,
    pub len: u64,
    pub staged: u64,
    pub prot: u32,
}

/// What the switch must do with the image's regions.
#[derive(Debug, Default)]
pub struct Plan {
    pub pieces: Vec<Piece>,
    /// Anonymous regions without data: (start, len, prot, mmap flags), mapped fresh at their
    /// target.
    pub empty: Vec<(u64, u64, u32, i32)>,
    /// The regions (indexes) staged from the parent's staged memory (`cowshare`).
    pub inherited: Vec<usize>,
}

fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> std::io::Result<u64> {
    // SAFETY: mapping at an address inside our own reservation (MAP_FIXED replaces only it).
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len as usize, prot, flags, fd, off as libc::off_t) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p as u64)
}

/// Bytes of staging space the image needs.
pub fn staging_len(chain: &Chain) -> u64 {
    let regions = &chain.index().regions;
    (0..regions.len())
        .filter(|&ri| needs_staging(chain, ri))
        .map(|ri| regions[ri].len() + if huge(chain, ri) { HUGE } else { 0 })
        .sum()
}

const HUGE: u64 = 2 << 20;

/// Whether a region is a large anonymous region mostly made of stored data (over the whole
/// chain): filled by copy (`copyfill`: no zeroing of the fresh pages, no fault per page) when the
/// kernel allows, else staged in transparent huge pages (512 times fewer faults than 4 KiB pages;
/// the region then keeps MADV_HUGEPAGE after the restart). Placed at its target's offset modulo
/// 2 MiB either way, so that the switch's mremap moves its page tables (or huge pages) whole.
fn huge(chain: &Chain, ri: usize) -> bool {
    let r = &chain.index().regions[ri];
    let stored: u64 = chain.layers(ri).iter().filter(|l| l.codec != Codec::Zero).map(|l| l.len).sum();
    r.backing == Backing::Anon && r.name != b"[stack]" && r.len() >= 2 * HUGE && stored >= r.len() / 2
}

/// Where each region is staged (None: not staged), consecutively from `base`. Huge-page regions
/// are placed at the same offset modulo 2 MiB as their target, so that the switch's mremap moves
/// their huge pages whole.
fn placement(chain: &Chain, base: u64) -> Vec<Option<u64>> {
    let mut at = base;
    let regions = &chain.index().regions;
    (0..regions.len())
        .map(|ri| {
            let r = &regions[ri];
            if !needs_staging(chain, ri) {
                return None;
            }
            if huge(chain, ri) {
                at += r.start.wrapping_sub(at) % HUGE;
            }
            let here = at;
            at += r.len();
            Some(here)
        })
        .collect()
}

/// Offer the regions of `chain` staged from `base` (in a reservation of `len` bytes there) and
/// the page hash table `table` to the children this process makes by fork (`cowshare`).
pub fn offer(chain: &Chain, base: u64, len: u64, table: (u64, u64)) {
    crate::cowshare::offer(chain, &placement(chain, base), (base, len), table);
}

/// Whether region `ri` is built in the staging area: anonymous regions only when some image of
/// the chain has data for them.
fn needs_staging(chain: &Chain, ri: usize) -> bool {
    let r = &chain.index().regions[ri];
    match r.backing {
        Backing::Special => false,
        // A packet socket's ring: a place that `map_rings` maps the socket at.
        Backing::Anon => !chain.layers(ri).is_empty() || r.name.starts_with(b"socket:["),
        Backing::SharedAnon | Backing::File { .. } => true,
    }
}

/// Open (and check) every file the image maps, before anything is changed. A file mapped
/// only shared that is gone is made again when the image holds all of it (see `recreate`).
pub fn open_files(chain: &Chain) -> Result<Vec<Option<File>>> {
    let regions = &chain.index().regions;
    let mut out = Vec::with_capacity(regions.len());
    for (i, r) in regions.iter().enumerate() {
        let Backing::File { path, size, mtime, shared, .. } = &r.backing else {
            out.push(None);
            continue;
        };
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
        // A shared mapping is restored writable when it is written through; it may also be made
        // writable later (mprotect) when the program had its file open for writing (VM_MAYWRITE):
        // open the file for writing then too.
        let write = *shared && r.prot & libc::PROT_WRITE as u32 != 0;
        let may_write = *shared && r.attrs.flags & ckpt_image::vm::MAYWRITE != 0;
        // Not through a symbolic link: the image recorded the file itself (/proc/self/maps
        // resolves links), so a link there now was put in its place.
        let open = |w: bool| OpenOptions::new().read(true).write(w).custom_flags(libc::O_NOFOLLOW).open(p);
        let open_as_before = || match open(write || may_write) {
            Err(e) if !write && may_write && e.raw_os_error() == Some(libc::EACCES) => {
                ckpt_kinds::say!("ckpt-restart: warning: {} cannot be opened for writing any more: its shared mapping at {:#x} cannot be made writable (mprotect fails with EACCES)", p.display(), r.start);
                open(false)
            }
            r => r,
        };
        let f = match open_as_before() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && recreate(chain, path, *size)? => open_as_before(),
            r => r,
        }
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow!("file {} needed by the image is now a symbolic link, not the file the program had mapped", p.display()),
            _ => anyhow::Error::new(e).context(format!("file {} needed by the image cannot be opened", p.display())),
        })?;
        let m = f.metadata()?;
        if write && m.size() < *size {
            // Shorter than at checkpoint time: the stored pages are written back through the
            // mapping, which must not end before them.
            f.set_len(*size).with_context(|| format!("cannot extend {} to its size at checkpoint time", p.display()))?;
        }
        // A private mapping whose pages are all stored or restored into the file by the image
        // (its file is also mapped shared and written) does not depend on the file as it is now.
        // (Asked only of a changed file: it looks at every region, and a program may have tens
        // of thousands.)
        let changed = m.size() != *size || m.mtime() != *mtime;
        if !*shared && changed && !filerefs::private_mapping_restored(regions, i) {
            bail!("file {} needed by the image has changed since the checkpoint (size or modification time differs)", p.display());
        }
        out.push(Some(f));
    }
    Ok(out)
}

/// A file mapped shared that is gone (the JVM's hsperfdata after another JVM cleaned up, Open
/// MPI's session files): made again, empty and of its size at checkpoint time (mode 0600, and
/// its missing directories 0700), when every mapping of it is shared and the image holds every
/// byte of it (the pages of writable shared mappings are all stored); staging then writes them
/// through the mappings. Said at CKPT_LOG=info. Returns false (nothing done) otherwise.
fn recreate(chain: &Chain, path: &[u8], size: u64) -> Result<bool> {
    let mut held = Vec::new();
    for (ri, r) in chain.index().regions.iter().enumerate() {
        match &r.backing {
            Backing::File { path: p, shared: false, .. } if p == path => return Ok(false),
            Backing::File { path: p, offset, .. } if p == path => {
                held.extend(chain.layers(ri).iter().map(|l| (offset + l.at, offset + l.at + l.len)));
            }
            _ => {}
        }
    }
    held.sort_unstable();
    let mut covered = 0;
    for (s, e) in held {
        if s > covered {
            break;
        }
        covered = covered.max(e);
    }
    if covered < size {
        return Ok(false);
    }
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    if let Some(dir) = p.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("file {} needed by the image is gone, and its directory cannot be made again", p.display()))?;
    }
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .with_context(|| format!("file {} needed by the image is gone and cannot be made again", p.display()))?;
    f.set_len(size)?;
    ckpt_kinds::info(&format!("file {} mapped by the program was gone: made again from the image ({size} bytes, mode 0600)", p.display()));
    Ok(true)
}

/// Map every region that needs staging at consecutive addresses from `base`.
pub fn map_regions(chain: &Chain, files: &[Option<File>], base: u64) -> Result<Plan> {
    let mut plan = Plan::default();
    let regions = &chain.index().regions;
    let places = placement(chain, base);
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    for (ri, ((r, f), place)) in regions.iter().zip(files).zip(places).enumerate() {
        let len = r.len();
        let at = place.unwrap_or(0);
        let adopted = place.is_some() && crate::cowshare::adopt(chain, ri, at);
        if adopted {
            plan.inherited.push(ri);
        }
        match &r.backing {
            Backing::Special => continue,
            Backing::Anon if adopted => {}
            Backing::Anon if place.is_none() => {
                crate::attrs::check_empty(r)?;
                plan.empty.push((r.start, len, r.prot, crate::attrs::map_flags(r) | libc::MAP_ANONYMOUS | libc::MAP_FIXED));
                continue;
            }
            Backing::Anon => {
                // With the region's own flags: a huge MAP_NORESERVE reservation that holds little
                // must not be charged as if it were all memory (ENOMEM).
                let flags = crate::attrs::map_flags(r) | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
                mmap(at, len, rw, flags, -1, 0).with_context(|| format!("cannot stage region {:#x}-{:#x}", r.start, r.end))?;
            }
            Backing::SharedAnon => match ckpt_kinds::sysv::mapped_segment(chain.index(), r.start, &r.name) {
                // A System V segment, made again with its id: attached, so shmdt() works.
                Some((id, offset)) => ckpt_kinds::sysv::attach(id, offset, len, at)?,
                None => shared_anon(chain, r, at, len)?,
            },
            Backing::File { .. } if adopted => {}
            Backing::File { offset, shared, size, .. } => {
                let fd = f.as_ref().ok_or_else(|| anyhow!("internal: file not open"))?.as_raw_fd();
                if *shared {
                    mmap(at, len, r.prot as i32, libc::MAP_SHARED | libc::MAP_FIXED, fd, *offset)
                        .with_context(|| format!("cannot map {}", r.name_lossy()))?;
                } else {
                    // Pages past the end of the file would fault (SIGBUS): those become anonymous.
                    let in_file = page_up(size.saturating_sub(*offset)).min(len);
                    let noreserve = if r.attrs.flags & ckpt_image::vm::NORESERVE != 0 { libc::MAP_NORESERVE } else { 0 };
                    if in_file > 0 {
                        mmap(at, in_file, rw, libc::MAP_PRIVATE | libc::MAP_FIXED | noreserve, fd, *offset)
                            .with_context(|| format!("cannot map {}", r.name_lossy()))?;
                    }
                    if in_file < len {
                        mmap(at + in_file, len - in_file, rw, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | noreserve, -1, 0)?;
                    }
                    if in_file > 0 && in_file < len {
                        plan.pieces.push(Piece { target: r.start, len: in_file, staged: at, prot: r.prot });
                        plan.pieces.push(Piece { target: r.start + in_file, len: len - in_file, staged: at + in_file, prot: r.prot });
                        continue;
                    }
                }
            }
        }
        plan.pieces.push(Piece { target: r.start, len, staged: at, prot: r.prot });
    }
    Ok(plan)
}

/// The packet socket rings of the image: (where staged, region index), for `map_rings` once
/// the sockets are back.
pub fn ring_places(chain: &Chain, base: u64) -> Vec<(u64, usize)> {
    let regions = &chain.index().regions;
    placement(chain, base).into_iter().enumerate().filter(|&(ri, _)| regions[ri].name.starts_with(b"socket:[")).filter_map(|(ri, at)| Some((at?, ri))).collect()
}

/// Map each packet socket's rings (`places`, from `ring_places`) over its stand-in in the staging
/// area, from the socket made again at its fd (ckpt_kinds::sockets::ring): the switch moves it
/// to the program's address like any staged region. The frames are the new ring's own (the
/// stored pages are not put back: see ring.rs).
pub fn map_rings(index: &ckpt_image::Index, places: &[(u64, usize)]) -> Result<()> {
    for &(at, ri) in places {
        let r = &index.regions[ri];
        let ino = ckpt_kinds::sockets::ring::mapped_socket(&r.name).ok_or_else(|| anyhow!("internal: {} is no socket mapping", r.name_lossy()))?;
        let fd = index
            .fds
            .iter()
            .find(|f| matches!(&f.kind, ckpt_image::FdKind::Socket(s) if s.ino == ino))
            .map(|f| f.fd)
            .ok_or_else(|| anyhow!("internal: socket:[{ino}] has no fd"))?;
        let share = if r.backing == Backing::SharedAnon { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        mmap(at, r.len(), r.prot as i32, share | libc::MAP_FIXED, fd, 0).with_context(|| format!("cannot map the ring of socket:[{ino}] again at {:#x}", r.start))?;
    }
    Ok(())
}

/// Stage shared anonymous memory: the tree's object when several processes share it, or new.
fn shared_anon(chain: &Chain, r: &Region, at: u64, len: u64) -> Result<()> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    match crate::tree::shared_memory(&chain.index().shared, r.start) {
        // Shared with other processes of the tree: their one object.
        Some((fd, offset)) => mmap(at, len, rw, libc::MAP_SHARED | libc::MAP_FIXED, fd, offset)?,
        None => mmap(at, len, rw, libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0)?,
    };
    Ok(())
}

/// Bytes of memory `fill` reads from the image chain (the layers of staged regions).
pub fn stored_len(chain: &Chain) -> u64 {
    let regions = &chain.index().regions;
    (0..regions.len()).filter(|&ri| needs_staging(chain, ri)).flat_map(|ri| chain.layers(ri)).map(|l| l.len).sum()
}

/// Fill the staged regions from the chain's layers: image by image, oldest first (newer layers
/// overwrite older ones), the layers of one image on several threads (they never overlap),
/// counting the bytes in `progress`. The `inherited` regions hold the parent's staged memory
/// (`cowshare`): only the pages that differ from it are written, and those the image does not
/// hold are dropped. Returns the page hashes taken on the way, for `page_table`.
pub fn fill(chain: &Chain, plan_base: u64, inherited: &[usize], progress: &Progress) -> Result<Prehashed> {
    let regions = &chain.index().regions;
    let places = placement(chain, plan_base);
    chain.prefetch_compressed();
    for &ri in inherited {
        if let Some(at) = places[ri] {
            crate::cowshare::drop_unheld(chain, ri, at);
        }
    }
    let oldest = chain.images().len().saturating_sub(1);
    // The large regions, filled by copy while the oldest image (the chain's full image) is
    // applied, or else staged in huge pages.
    let bulk: Vec<usize> = (0..regions.len()).filter(|&ri| places[ri].is_some() && huge(chain, ri) && !inherited.contains(&ri)).collect();
    let mut copier = copy_fill(chain, &places, &bulk, oldest);
    // Pages copied in are hashed for the page hash table while they are in the cache, and so
    // are those of a region adopted from the parent (the pages the parent staged already: its
    // table has their hashes); only without parents (a newer image would overwrite pages after
    // they were hashed).
    let mut pre = Prehashed::default();
    if oldest == 0 {
        let hashed = |ri: usize| (copier.is_some() && bulk.contains(&ri)) || (inherited.contains(&ri) && crate::cowshare::parent_table(&regions[ri]).is_some());
        pre.pages = (0..regions.len()).map(|ri| if hashed(ri) && tracked(chain, ri) { zero_hashes(regions[ri].len()) } else { Vec::new() }).collect();
    }
    for image in (0..chain.images().len()).rev() {
        let mut tasks: Vec<Task> = Vec::new();
        for (ri, place) in places.iter().enumerate() {
            let Some(at) = place else { continue };
            let how = if inherited.contains(&ri) {
                How::Differing
            } else if image == oldest && copier.is_some() && bulk.contains(&ri) {
                How::Copy
            } else {
                How::Write
            };
            for l in chain.layers(ri).iter().filter(|l| l.image == image) {
                if how == How::Differing && crate::cowshare::held(chain, &regions[ri], l) {
                    // The parent's memory holds it already (and its table the hashes).
                    if let (Some(hashes), Some(table)) = (pre.of(ri), crate::cowshare::parent_table(&regions[ri])) {
                        for k in 0..l.len / 4096 {
                            let h = pagetable::lookup(table, regions[ri].start + l.at + k * 4096).unwrap_or_else(pagetable::zero);
                            store(&hashes[(l.at / 4096 + k) as usize], h);
                        }
                    }
                    progress.add(l.len);
                    continue;
                }
                tasks.push((at + l.at, l, &regions[ri], how));
            }
        }
        if !tasks.is_empty() {
            fill_layers(chain, &mut tasks, copier.as_ref(), &pre, progress)?;
        }
        // Unregistered before anything else touches that memory.
        copier = None;
    }
    Ok(pre)
}

/// Hashes of pages taken as they were copied into staged memory (`copy_layer`), by region and
/// page (empty for a region not hashed so): the page hash table reads them instead of the memory.
#[derive(Default)]
pub struct Prehashed {
    pages: Vec<Vec<PageHashCell>>,
}

/// One page's hash, written by the thread that copied the page in.
type PageHashCell = [AtomicU64; 2];

/// The hashes of a region of `len` bytes of zeros (what its pages hold until copied).
fn zero_hashes(len: u64) -> Vec<PageHashCell> {
    let z = pagetable::zero();
    (0..len / 4096).map(|_| [AtomicU64::new(z[0]), AtomicU64::new(z[1])]).collect()
}

impl Prehashed {
    fn of(&self, ri: usize) -> Option<&[PageHashCell]> {
        self.pages.get(ri).map(|v| v.as_slice()).filter(|v| !v.is_empty())
    }

    /// The hashes of the pages of layer `l`, whose decoded bytes are `data` (when its region's
    /// hashes are taken during the fill).
    fn record(&self, l: &Layer, data: &[u8]) {
        let Some(hashes) = self.of(l.region) else { return };
        for (k, page) in data.chunks(4096).enumerate() {
            store(&hashes[(l.at / 4096) as usize + k], pagetable::hash(page));
        }
    }
}

fn store(slot: &PageHashCell, h: [u64; 2]) {
    slot[0].store(h[0], Ordering::Relaxed);
    slot[1].store(h[1], Ordering::Relaxed);
}

/// A layer to apply: staged address, layer, region, and how it goes in.
type Task<'a> = (u64, &'a Layer, &'a Region, How);

/// How a layer goes into staged memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// Decoded straight into it.
    Write,
    /// Copied in (`copyfill`).
    Copy,
    /// Decoded aside, and only the pages that differ from the memory there written (memory
    /// inherited from the parent, `cowshare`).
    Differing,
}

/// Register the `bulk` regions' staged memory for filling by copy; where that is refused, stage
/// them in huge pages instead. Only when every layer the oldest image has for them is whole pages
/// (UFFDIO_COPY fills whole pages).
fn copy_fill(chain: &Chain, places: &[Option<u64>], bulk: &[usize], oldest: usize) -> Option<CopyFill> {
    let regions = &chain.index().regions;
    let ranges: Vec<(u64, u64)> = bulk.iter().filter_map(|&ri| places[ri].map(|at| (at, regions[ri].len()))).collect();
    let aligned = bulk.iter().flat_map(|&ri| chain.layers(ri)).filter(|l| l.image == oldest).all(|l| l.at % 4096 == 0 && l.len % 4096 == 0);
    let copier = if aligned && !ranges.is_empty() && std::env::var_os("CKPT_STAGE_HUGE").is_none() {
        CopyFill::register(&ranges, fill_threads(), ckpt_image::CHUNK_SIZE)
    } else {
        None
    };
    let mib = ranges.iter().map(|r| r.1).sum::<u64>() >> 20;
    match &copier {
        Some(_) => crate::progress::info(format_args!("{} large region(s), {mib} MiB: filled by copy (userfaultfd)", ranges.len())),
        None if !ranges.is_empty() => crate::progress::info(format_args!("{} large region(s), {mib} MiB: staged in huge pages", ranges.len())),
        None => {}
    }
    if copier.is_none() {
        for &(at, len) in &ranges {
            // SAFETY: advice on our staged mapping, not touched yet; failure only costs speed.
            unsafe { libc::madvise(at as *mut libc::c_void, len as usize, libc::MADV_HUGEPAGE) };
        }
    }
    copier
}

/// The most threads that fill staged memory: one per CPU.
fn fill_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Apply layers of one image (never overlapping) at their staged addresses, on several threads.
/// The layers of one stored frame (the chunks of a packed frame) go to one thread, one after
/// the other, so that the frame is decoded once.
fn fill_layers(chain: &Chain, tasks: &mut [Task], copier: Option<&CopyFill>, pre: &Prehashed, progress: &Progress) -> Result<()> {
    tasks.sort_by_key(|t| chain.frame_of(t.1));
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for i in 0..tasks.len() {
        match groups.last_mut() {
            Some(g) if chain.frame_of(tasks[g.start].1) == chain.frame_of(tasks[i].1) && tasks[i].1.codec != Codec::Zero => g.end = i + 1,
            _ => groups.push(i..i + 1),
        }
    }
    let tasks = &*tasks;
    let nthreads = fill_threads().min(groups.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..nthreads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let mut buf = LayerBuf::new()?;
                    let mut bounce = None;
                    let mut aside = Vec::new();
                    loop {
                        let g = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(range) = groups.get(g) else { return Ok(()) };
                        for &(addr, l, r, how) in &tasks[range.clone()] {
                            match (how, copier) {
                                (How::Copy, Some(c)) => copy_layer(chain, addr, l, r, &mut buf, c, &mut bounce, pre)?,
                                (How::Differing, _) => differing_layer(chain, addr, l, r, &mut buf, &mut aside, pre)?,
                                _ => fill_layer(chain, addr, l, r, &mut buf)?,
                            }
                            progress.add(l.len);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("a staging thread failed"))??;
        }
        Ok(())
    })
}

/// Apply one layer at its staged address `addr`.
fn fill_layer(chain: &Chain, addr: u64, l: &Layer, r: &Region, buf: &mut LayerBuf) -> Result<()> {
    // SAFETY: [addr, addr + len) lies inside a staged read-write mapping of ours (layers lie
    // inside their region); the layers of one image never overlap.
    let dst = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, l.len as usize) };
    chain.read_layer(l, dst, buf).map_err(|e| in_region(r, e.into()))
}

/// Apply one layer at `addr` of memory inherited from the parent: decoded into `aside`, then
/// written page by page where it differs (`cowshare`).
fn differing_layer(chain: &Chain, addr: u64, l: &Layer, r: &Region, buf: &mut LayerBuf, aside: &mut Vec<u8>, pre: &Prehashed) -> Result<()> {
    aside.resize(l.len as usize, 0);
    chain.read_layer(l, aside, buf).map_err(|e| in_region(r, e.into()))?;
    pre.record(l, aside);
    // SAFETY: as in fill_layer: inside a staged read-write mapping of ours, layers of one
    // image never overlap.
    let dst = unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, l.len as usize) };
    crate::cowshare::write_differing(dst, aside);
    Ok(())
}

/// Apply one layer at `addr` of memory registered with `copier`: decoded into the thread's
/// buffer, then copied in. A layer of zeros is left out (its pages stay missing: zeros).
#[allow(clippy::too_many_arguments)]
fn copy_layer(chain: &Chain, addr: u64, l: &Layer, r: &Region, buf: &mut LayerBuf, copier: &CopyFill, bounce: &mut Option<Bounce>, pre: &Prehashed) -> Result<()> {
    if l.codec == Codec::Zero {
        return Ok(());
    }
    let b = match bounce {
        Some(b) => b,
        None => bounce.insert(copier.buffer()?),
    };
    let dst = b.get(l.len as usize);
    if dst.len() as u64 != l.len {
        bail!("internal: a layer of {} bytes is larger than a chunk", l.len);
    }
    chain.read_layer(l, dst, buf).map_err(|e| in_region(r, e.into()))?;
    pre.record(l, dst);
    copier.copy(addr, dst).map_err(|e| in_region(r, e))
}

/// An error about region `r`, named.
fn in_region(r: &Region, e: anyhow::Error) -> anyhow::Error {
    let name = r.name_lossy();
    let name = if name.is_empty() { String::new() } else { format!(" ({name})") };
    anyhow!("region {:#x}-{:#x}{name}: {e}", r.start, r.end)
}

/// Whether region `ri` is one the runtime tracks for increments (private anonymous memory,
/// pagehash::eligible): the page hash table covers it.
fn tracked(chain: &Chain, ri: usize) -> bool {
    let r = &chain.index().regions[ri];
    chain.index().meta.increments && r.backing == Backing::Anon && r.prot != 0 && !r.name.starts_with(b"[v")
}

/// Bytes of the page hash table of the image (ckpt_image::pagetable), 0 without one: an upper
/// bound (every page some layer writes may hold data).
pub fn page_table_len(chain: &Chain) -> u64 {
    let regions = &chain.index().regions;
    let tracked: Vec<usize> = (0..regions.len()).filter(|&ri| tracked(chain, ri)).collect();
    if tracked.is_empty() {
        return 0;
    }
    let pages: u64 = tracked.iter().flat_map(|&ri| chain.layers(ri)).filter(|l| l.codec != Codec::Zero).map(|l| l.len.div_ceil(4096)).sum();
    page_up(pagetable::words(tracked.len(), pages as usize) as u64 * 8)
}

/// Build the page hash table of the staged memory at `at` (`len` bytes, from page_table_len):
/// every page with data of the tracked regions, hashed on several threads. Returns the table's
/// address and length.
pub fn page_table(chain: &Chain, plan_base: u64, at: u64, len: u64, pre: &Prehashed) -> Result<(u64, u64)> {
    let regions = &chain.index().regions;
    let places = placement(chain, plan_base);
    // Work items: (staged address, target address, bytes, the pages' hashes when taken
    // already), in address order.
    let mut items: Vec<(u64, u64, u64, Option<&[PageHashCell]>)> = Vec::new();
    let mut ranges = Vec::new();
    for (ri, place) in places.iter().enumerate() {
        if !tracked(chain, ri) {
            continue;
        }
        let r = &regions[ri];
        ranges.push((r.start, r.end));
        let Some(staged) = place else { continue };
        let written = pagetable::merge(&chain.layers(ri).iter().filter(|l| l.codec != Codec::Zero).map(|l| (l.at & !4095, (l.at + l.len).div_ceil(4096) * 4096)).collect::<Vec<_>>());
        for (s, e) in written {
            let mut off = s;
            while off < e {
                let n = (e - off).min(4 << 20);
                let hashes = pre.of(ri).map(|h| &h[(off / 4096) as usize..((off + n) / 4096) as usize]);
                items.push((staged + off, r.start + off, n, hashes));
                off += n;
            }
        }
    }
    mmap(at, len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0).context("cannot map the page hash table")?;
    // Every item's entries go to its own part of one buffer, allocated here: threads that
    // allocated (glibc gives each a 64 MiB arena) could fail under an address-space limit.
    let mut starts = Vec::with_capacity(items.len() + 1);
    let mut total = 0usize;
    for &(_, _, n, _) in &items {
        starts.push(total);
        total += (n / 4096) as usize;
    }
    starts.push(total);
    let mut entries = vec![[0u64; 3]; total];
    let counts: Vec<std::sync::atomic::AtomicUsize> = items.iter().map(|_| std::sync::atomic::AtomicUsize::new(0)).collect();
    let zero = pagetable::zero();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = SendPtr(entries.as_mut_ptr());
    let work = || loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(&(staged, target, n, hashes)) = items.get(i) else { return };
        // SAFETY: [staged, staged + n) lies inside a staged mapping, filled and no longer written.
        let mem = unsafe { std::slice::from_raw_parts(staged as *const u8, n as usize) };
        let mut k = 0;
        for (p, page) in mem.chunks(4096).enumerate() {
            let h = match hashes {
                Some(h) => [h[p][0].load(Ordering::Relaxed), h[p][1].load(Ordering::Relaxed)],
                None => pagetable::hash(page),
            };
            if h != zero {
                // SAFETY: entries starts[i]..starts[i+1] belong to item i alone.
                unsafe { *out.get().add(starts[i] + k) = [target + p as u64 * 4096, h[0], h[1]] };
                k += 1;
            }
        }
        counts[i].store(k, std::sync::atomic::Ordering::Release);
    };
    let nthreads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(items.len().max(1));
    std::thread::scope(|s| {
        // Small stacks: under an address-space limit every MiB counts. A thread that cannot be
        // made leaves its share to the others (this thread works too).
        let helpers: Vec<_> = (1..nthreads).filter_map(|_| std::thread::Builder::new().stack_size(256 << 10).spawn_scoped(s, work).ok()).collect();
        work();
        // Joined, not left to the scope: the scope returns once a thread's closure is done, while
        // the thread still runs its exit in our code, which the switch is about to unmap.
        for h in helpers {
            let _ = h.join();
        }
    });
    let ranges = pagetable::merge(&ranges);
    let n: usize = counts.iter().map(|c| c.load(std::sync::atomic::Ordering::Acquire)).sum();
    let words = pagetable::words(ranges.len(), n);
    if words as u64 * 8 > len {
        bail!("internal: the page hash table does not fit");
    }
    // SAFETY: our fresh mapping of `len` bytes at `at`.
    let w = unsafe { std::slice::from_raw_parts_mut(at as *mut u64, words) };
    let mut k = pagetable::write_head(w, &ranges, n);
    for (i, c) in counts.iter().enumerate() {
        for e in &entries[starts[i]..starts[i] + c.load(std::sync::atomic::Ordering::Acquire)] {
            w[k..k + 3].copy_from_slice(e);
            k += 3;
        }
    }
    Ok((at, len))
}

/// A pointer the hashing threads share (each writes its own part).
#[derive(Clone, Copy)]
struct SendPtr(*mut [u64; 3]);
// SAFETY: the threads write disjoint parts of the buffer behind it.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut [u64; 3] {
        self.0
    }
}
