//! Copy-on-write sharing between a parent and its children again, in a tree's restart.
//!
//! After fork, the private pages that neither parent nor child wrote since are one physical page
//! shared copy-on-write. A restart that stages every process's memory separately would give each
//! its own copy (a tree of 8 processes of 256 MiB, forked from one, would need 8 times the
//! memory). So a parent of the tree stages its memory before it makes its children (`tree`), and
//! each child starts from the staged memory it inherited: for each of its private regions that
//! the parent staged at the same address with the same backing, flags and protection, the child
//! takes the parent's staged pages (mremap keeps them shared), writes only the pages of its image
//! that differ from them (an identical page written would stop being shared), and drops the
//! pages its image does not have (never faulted in the child: zero, or the file's own data in a
//! private file mapping). The child ends with exactly its image's memory either way; the sharing
//! only saves memory (and the writing of unchanged pages).
//!
//! A layer of the child's image that decodes from the same stored bytes as the layer the parent
//! staged at the same place (same chunk hash, length and part: the same data) is not even read:
//! the memory already holds it.
//!
//! `offer` records where this process staged its regions (in its own address space, which a
//! child made by fork inherits); `adopt` takes one of them into the child's staging.

use ckpt_image::{Backing, Chain, Layer, Region};
use std::collections::HashSet;
use std::sync::Mutex;

/// What a layer restores: where in its region, and the stored bytes it decodes from (their
/// hash, length and codec, and its part of their frame).
type LayerId = (u64, u64, u64, u64, u64, u64, u64, u8);

fn layer_id(chain: &Chain, l: &Layer) -> LayerId {
    let c = chain.chunk(l);
    (l.at, l.len, l.skip, c.hash, c.stored_len, c.frame_skip, c.frame_len, c.codec as u8)
}

/// A region the parent staged: its record and where its staged memory is.
struct Offered {
    start: u64,
    end: u64,
    backing: Backing,
    prot: u32,
    flags: i32,
    staged: u64,
    /// The layers its staged memory holds as they are (none for a chain of several images).
    layers: HashSet<LayerId>,
}

/// What the process that staged offers the children it makes by fork: its pid, its regions and
/// its page hash table (address, length; (0, 0): none).
struct Offer {
    by: i32,
    regions: Vec<Offered>,
    table: (u64, u64),
    /// Its staging reservation (address, length).
    reservation: (u64, u64),
}

static OFFER: Mutex<Option<Offer>> = Mutex::new(None);

/// A region this process adopted: its start, the layers its memory holds already, and the
/// parent's page hash table, which has their pages' hashes.
struct Adopted {
    start: u64,
    layers: HashSet<LayerId>,
    table: (u64, u64),
}

static ADOPTED: Mutex<Vec<Adopted>> = Mutex::new(Vec::new());

fn pid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

fn offer_lock() -> std::sync::MutexGuard<'static, Option<Offer>> {
    OFFER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether region `r` (index `ri` of `chain`) can start from a parent's staged pages: private
/// (anonymous or of a file), not droppable, and every layer of its image whole pages (a page
/// the image holds only in part would keep the parent's bytes in the rest).
pub fn eligible(chain: &Chain, ri: usize) -> bool {
    let r = &chain.index().regions[ri];
    let private = match &r.backing {
        Backing::Anon => true,
        Backing::File { shared, .. } => !shared,
        _ => false,
    };
    private && r.attrs.flags & ckpt_image::vm::DROPPABLE == 0 && chain.layers(ri).iter().all(|l| l.at % 4096 == 0 && l.len % 4096 == 0)
}

/// This process staged the regions of `chain` at `places` (None: not staged), with the page hash
/// table `table`: its children made by fork from now on may start from them. Replaces what its
/// own parent offered.
pub fn offer(chain: &Chain, places: &[Option<u64>], reservation: (u64, u64), table: (u64, u64)) {
    let regions = &chain.index().regions;
    let list = places
        .iter()
        .enumerate()
        .filter_map(|(ri, p)| {
            let r = &regions[ri];
            let staged = (*p)?;
            // With one image every layer is in memory as it is (with several, a newer one may
            // overwrite part of an older one).
            let layers = if chain.images().len() == 1 { chain.layers(ri).iter().map(|l| layer_id(chain, l)).collect() } else { HashSet::new() };
            eligible(chain, ri).then(|| Offered { start: r.start, end: r.end, backing: r.backing.clone(), prot: r.prot, flags: crate::attrs::map_flags(r), staged, layers })
        })
        .collect();
    *offer_lock() = Some(Offer { by: pid(), regions: list, table, reservation });
}

/// In a new process of the tree: keep what the process that made it offered only when that
/// process is its parent (`child`, made by fork); else forget it.
pub fn inherited(child: bool) {
    let mut o = offer_lock();
    if !child {
        *o = None;
    }
    // (What the process that made it adopted is not its own.)
    ADOPTED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// In a child that has not staged yet: unmap the staging its parent offered (address space it
/// may need under a limit) and adopt nothing. Whether there was one.
pub fn release() -> bool {
    let mut o = offer_lock();
    match o.take() {
        Some(Offer { by, reservation: (at, len), .. }) if by != pid() && len != 0 => {
            // SAFETY: the parent's staging reservation, inherited by fork; nothing of ours
            // refers to it (nothing is adopted yet).
            unsafe { libc::munmap(at as *mut libc::c_void, len as usize) };
            true
        }
        other => {
            *o = other;
            false
        }
    }
}

/// Move the staged pages of the parent's region like `r` (same address, backing, flags and
/// protection) to `at` in our staging. True when done: the region then holds the parent's
/// memory, which `fill_inherited` turns into ours.
pub fn adopt(chain: &Chain, ri: usize, at: u64) -> bool {
    let r = &chain.index().regions[ri];
    if !eligible(chain, ri) {
        return false;
    }
    let mut o = offer_lock();
    let Some(Offer { by, regions: list, table, .. }) = o.as_mut() else { return false };
    if *by == pid() {
        return false;
    }
    let flags = crate::attrs::map_flags(r);
    let Some(k) = list.iter().position(|p| p.start == r.start && p.end == r.end && p.backing == r.backing && p.prot == r.prot && p.flags == flags) else {
        return false;
    };
    if !worth(chain, ri, &list[k]) {
        return false;
    }
    let p = list.swap_remove(k);
    let len = r.len() as usize;
    // SAFETY: moving the parent's staged mapping (ours since fork, used by nothing else here)
    // onto `at`, a range of our own staging reservation (MREMAP_FIXED replaces only it).
    let moved = unsafe { libc::mremap(p.staged as *mut libc::c_void, len, len, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, at as *mut libc::c_void) };
    // (A range of several mappings, such as a file mapping with an anonymous tail, is not
    // moved: staged as usual.)
    if moved == libc::MAP_FAILED {
        return false;
    }
    ADOPTED.lock().unwrap_or_else(|e| e.into_inner()).push(Adopted { start: r.start, layers: p.layers, table: *table });
    true
}

/// Whether region `ri` is worth starting from the parent's staged region `p`: not when, with
/// both images single, no layer of it is the parent's and no page of its first layer with data
/// equals the parent's there (memory the child allocated on its own at the same address, or
/// rewrote: every page would be copied on write, slower than staging it fresh).
fn worth(chain: &Chain, ri: usize, p: &Offered) -> bool {
    if p.layers.is_empty() || chain.images().len() != 1 {
        return true;
    }
    let layers = chain.layers(ri);
    if layers.iter().any(|l| p.layers.contains(&layer_id(chain, l))) {
        return true;
    }
    let Some(l) = layers.iter().find(|l| l.codec != ckpt_image::Codec::Zero) else { return true };
    let mut data = vec![0u8; l.len as usize];
    let read = ckpt_image::LayerBuf::new().and_then(|mut buf| chain.read_layer(l, &mut data, &mut buf));
    if read.is_err() {
        // (Staging reads it again and says what is wrong.)
        return true;
    }
    // SAFETY: the parent's staged region, inherited by fork and mapped readable here; the
    // layer lies inside the region.
    let theirs = unsafe { std::slice::from_raw_parts((p.staged + l.at) as *const u8, l.len as usize) };
    data.chunks(4096).zip(theirs.chunks(4096)).any(|(a, b)| a == b)
}

/// Whether layer `l` of adopted region `r` is in its memory already: the parent staged the
/// same stored bytes at the same place.
pub fn held(chain: &Chain, r: &Region, l: &Layer) -> bool {
    let a = ADOPTED.lock().unwrap_or_else(|e| e.into_inner());
    a.iter().find(|a| a.start == r.start).is_some_and(|a| a.layers.contains(&layer_id(chain, l)))
}

/// The parent's page hash table, for adopted region `r`: the hashes of the pages of the layers
/// it holds already (`held`). None without one.
pub fn parent_table(r: &Region) -> Option<&'static [u64]> {
    let a = ADOPTED.lock().unwrap_or_else(|e| e.into_inner());
    let (at, len) = a.iter().find(|a| a.start == r.start)?.table;
    // SAFETY: the parent's table, inherited by fork: mapped and unchanged in this process until
    // its switch (which unmaps it), read-only here.
    (len != 0).then(|| unsafe { std::slice::from_raw_parts(at as *const u64, (len / 8) as usize) })
}

/// Of an adopted region at `at` (`r`, index `ri`): drop every page its image holds nothing for
/// (the parent may have data there; ours is zero, or the file's).
pub fn drop_unheld(chain: &Chain, ri: usize, at: u64) {
    let r: &Region = &chain.index().regions[ri];
    let mut held: Vec<(u64, u64)> = chain.layers(ri).iter().map(|l| (l.at, l.at + l.len)).collect();
    held.sort_unstable();
    let mut from = 0;
    let mut gaps = Vec::new();
    for (s, e) in held {
        if s > from {
            gaps.push((from, s));
        }
        from = from.max(e);
    }
    if from < r.len() {
        gaps.push((from, r.len()));
    }
    for (s, e) in gaps {
        // SAFETY: advice on a range of our own staged mapping, which nothing references yet.
        unsafe { libc::madvise((at + s) as *mut libc::c_void, (e - s) as usize, libc::MADV_DONTNEED) };
    }
}

/// Write `data` at `dst` (staged memory adopted from the parent) page by page, only where it
/// differs: an identical page stays shared with the parent.
pub fn write_differing(dst: &mut [u8], data: &[u8]) {
    for (d, s) in dst.chunks_mut(4096).zip(data.chunks(4096)) {
        if d != s {
            d.copy_from_slice(s);
        }
    }
}
