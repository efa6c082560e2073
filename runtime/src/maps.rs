//! Memory regions of the process (/proc/thread-self/maps) and which of their pages hold data that
//! must be stored (PAGEMAP_SCAN, else /proc/thread-self/pagemap), and which are guard pages.

use crate::{pagescan, sys};
use ckpt_image::{filerefs, Backing};

pub const PAGE: u64 = 4096;
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
const PM_GUARD: u64 = 1 << 58;

#[derive(Debug, Clone)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub offset: u64,
    pub inode: u64,
    /// The device of the mapped file (the `maj:min` column).
    pub dev: u64,
    pub name: Vec<u8>,
    /// VmFlags bits (ckpt_image::vm), when read from /proc/thread-self/smaps; else 0.
    pub flags: u64,
}

/// Parse /proc/thread-self/maps.
pub fn read_maps() -> Result<Vec<MapEntry>, String> {
    let text = sys::read_file(&sys::cpath(&[b"/proc/thread-self/maps"])).map_err(|e| format!("cannot read /proc/thread-self/maps: errno {e}"))?;
    Ok(parse_maps(&text))
}

/// Parse /proc/self/smaps: the entries with their VmFlags (reading it walks the page tables of
/// every region: ~10 ms per GiB of memory with data).
pub fn read_smaps() -> Result<Vec<MapEntry>, String> {
    let text = sys::read_file(&sys::cpath(&[b"/proc/thread-self/smaps"])).map_err(|e| format!("cannot read /proc/thread-self/smaps: errno {e}"))?;
    Ok(parse_maps(&text))
}

/// The VmFlags of each entry of `maps` (0 where `smaps` has no entry covering it: an entry
/// split at the scratch arena is covered by the one it came from).
pub fn flags_of(maps: &[(MapEntry, bool)], smaps: &[MapEntry]) -> Vec<u64> {
    maps.iter()
        .map(|(m, _)| {
            let i = smaps.partition_point(|s| s.start <= m.start);
            let covering = i.checked_sub(1).map(|i| &smaps[i]).filter(|s| m.end <= s.end);
            m.flags | covering.map_or(0, |s| s.flags)
        })
        .collect()
}

/// Parse /proc/self/maps (or smaps: then with each entry's VmFlags).
pub fn parse_maps(text: &[u8]) -> Vec<MapEntry> {
    let mut out: Vec<MapEntry> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        // /proc/self/smaps: the VmFlags line of the entry above.
        if let Some(flags) = line.strip_prefix(b"VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.flags = ckpt_image::vm::parse(flags);
            }
            continue;
        }
        // start-end perms offset dev inode   name
        let mut fields = Vec::with_capacity(6);
        let mut rest = line;
        for _ in 0..5 {
            let sp = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
            fields.push(&rest[..sp]);
            rest = if sp < rest.len() { &rest[sp + 1..] } else { &[] };
        }
        let name: Vec<u8> = rest.iter().skip_while(|&&b| b == b' ').copied().collect();
        if fields.len() < 5 {
            continue;
        }
        let range = fields[0];
        let Some(dash) = range.iter().position(|&b| b == b'-') else { continue };
        let hex = |s: &[u8]| u64::from_str_radix(std::str::from_utf8(s).unwrap_or("x"), 16).ok();
        let (Some(start), Some(end)) = (hex(&range[..dash]), hex(&range[dash + 1..])) else { continue };
        let perms = fields[1];
        if perms.len() < 4 {
            continue;
        }
        let mut prot = 0;
        if perms[0] == b'r' {
            prot |= libc::PROT_READ as u32;
        }
        if perms[1] == b'w' {
            prot |= libc::PROT_WRITE as u32;
        }
        if perms[2] == b'x' {
            prot |= libc::PROT_EXEC as u32;
        }
        out.push(MapEntry {
            start,
            end,
            prot,
            shared: perms[3] == b's',
            offset: hex(fields[2]).unwrap_or(0),
            inode: std::str::from_utf8(fields[4]).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
            dev: fields[3].iter().position(|&b| b == b':').and_then(|c| Some(libc::makedev(hex(&fields[3][..c])? as u32, hex(&fields[3][c + 1..])? as u32))).unwrap_or(0),
            name,
            flags: 0,
        });
    }
    out
}

pub fn is_special(name: &[u8]) -> bool {
    name == b"[vdso]" || name == b"[vvar]" || name == b"[vvar_vclock]"
}

/// A private mapping of a file that has since been deleted: only the mapping still holds it.
pub fn is_deleted_file(m: &MapEntry) -> bool {
    m.inode != 0 && m.name.ends_with(b" (deleted)")
}

/// Whether the checkpoint may read the region's memory directly (no fault can occur); otherwise it
/// reads through /proc/thread-self/mem, which returns an error instead of raising SIGBUS past a file's end.
pub fn directly_readable(m: &MapEntry, backing: &Backing) -> bool {
    m.prot & libc::PROT_READ as u32 != 0 && matches!(backing, Backing::Anon) && m.inode == 0
}

/// How a mapping is restored, and a stat of its file for file mappings.
pub fn backing_of(m: &MapEntry) -> Backing {
    if is_special(&m.name) {
        return Backing::Special;
    }
    let deleted = m.name.ends_with(b" (deleted)");
    if m.shared {
        if m.inode == 0 || m.name.starts_with(b"/dev/zero") || m.name.starts_with(b"/SYSV") || deleted || !m.name.starts_with(b"/") {
            return Backing::SharedAnon;
        }
    } else if m.inode == 0 || deleted || !m.name.starts_with(b"/") {
        return Backing::Anon;
    }
    let (size, mtime) = stat_path(&m.name).unwrap_or((0, 0));
    Backing::File { path: m.name.clone(), offset: m.offset, size, mtime, shared: m.shared }
}

fn stat_path(path: &[u8]) -> Option<(u64, i64)> {
    let c = sys::cpath(&[path]);
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    sys::syscall!(libc::SYS_newfstatat, libc::AT_FDCWD, c.as_ptr(), &mut st as *mut libc::stat, 0).ok()?;
    Some((st.st_size as u64, st.st_mtime))
}

/// For a private file mapping (`maps[i]`) of a file that the program also maps shared and
/// writable: the runs of its pages that lie in those shared mappings' file ranges (see
/// ckpt_image::filerefs). Unwritten, they stay references to the file, which the image restores;
/// every other page inside the file is stored. None: no such shared mapping (then only the pages
/// the program wrote are stored, and a restart checks that the file is unchanged).
/// `written`: the inodes that `shared_written_inodes` found (so that a program with tens of
/// thousands of mappings is not looked through once for each).
pub fn file_refs(maps: &[(MapEntry, bool)], i: usize, written: &[u64]) -> Option<Vec<(u64, u64)>> {
    let m = &maps[i].0;
    if m.shared || m.inode == 0 || !m.name.starts_with(b"/") || m.name.ends_with(b" (deleted)") || written.binary_search(&m.inode).is_err() {
        return None;
    }
    let same = |o: &MapEntry| o.shared && o.prot & libc::PROT_WRITE as u32 != 0 && o.inode == m.inode && o.name == m.name;
    if !maps.iter().any(|(o, _)| same(o)) {
        return None;
    }
    let (size, _) = stat_path(&m.name)?;
    let ranges: Vec<(u64, u64)> = maps
        .iter()
        .filter(|(o, _)| same(o))
        .map(|(o, _)| (o.offset, o.offset + filerefs::pages_in_file(o.offset, o.end - o.start, size) * PAGE))
        .collect();
    Some(filerefs::covered_runs(m.offset, (m.end - m.start) / PAGE, &ranges))
}

/// What of a region's pages the image holds: runs (first page from the region's start, pages)
/// to store, and the guard pages (which hold nothing and must not be read: a read faults).
pub struct Pages {
    pub runs: Vec<(u64, u64)>,
    pub guards: Vec<(u64, u64)>,
}

/// The inodes of the files the program maps shared and writable, sorted (for `file_refs`).
pub fn shared_written_inodes(maps: &[(MapEntry, bool)]) -> Vec<u64> {
    let mut v: Vec<u64> = maps.iter().filter(|(o, _)| o.shared && o.prot & libc::PROT_WRITE as u32 != 0 && o.inode != 0).map(|(o, _)| o.inode).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Which pages of a region must be stored, and its guard pages. `refs`: for a private file
/// mapping, what `file_refs` found.
pub fn stored_pages(pagemap_fd: i32, m: &MapEntry, backing: &Backing, refs: Option<&[(u64, u64)]>) -> Pages {
    let whole = matches!(backing, Backing::SharedAnon | Backing::File { shared: true, .. }) || is_deleted_file(m);
    if !whole && !matches!(backing, Backing::Special) {
        let private_file = matches!(backing, Backing::File { .. });
        if let Some(mut p) = scan_pages(pagemap_fd, m, private_file) {
            if let (Backing::File { shared: false, offset, size, .. }, Some(refs)) = (backing, refs) {
                // Every page inside the file that is no reference to a shared mapping's (see
                // file_refs), guard pages excepted.
                let in_file = filerefs::pages_in_file(*offset, m.end - m.start, *size);
                let own = pagescan::subtract(&pagescan::subtract(&[(0, in_file)], refs), &p.guards);
                p.runs = pagescan::union(&p.runs, &own);
            }
            return p;
        }
    }
    let runs = stored_runs(pagemap_fd, m, backing, refs);
    // Guard pages of regions stored whole (rare: only where smaps says the region has some).
    let guards = guard_pages(pagemap_fd, m);
    let runs = if guards.is_empty() { runs } else { pagescan::subtract(&runs, &guards) };
    Pages { runs, guards }
}

/// With PAGEMAP_SCAN (None without): the pages of a private mapping that hold data of the
/// program's own (anonymous: present or swapped; `private_file`: copied on write or swapped)
/// and its guard pages, in one scan.
fn scan_pages(pagemap_fd: i32, m: &MapEntry, private_file: bool) -> Option<Pages> {
    let mut buf = [pagescan::PageRegion::default(); 512];
    let q = pagescan::Query {
        anyof: pagescan::PAGE_IS_PRESENT | pagescan::PAGE_IS_SWAPPED | pagescan::PAGE_IS_GUARD,
        ret: pagescan::PAGE_IS_PRESENT | pagescan::PAGE_IS_SWAPPED | pagescan::PAGE_IS_FILE | pagescan::PAGE_IS_GUARD,
        ..Default::default()
    };
    let (mut runs, mut guards) = (Vec::new(), Vec::new());
    pagescan::scan(pagemap_fd, m.start, m.end, q, &mut buf, |first, n, c| {
        if c & pagescan::PAGE_IS_GUARD != 0 {
            pagescan::push_run(&mut guards, first, n);
        } else if !private_file || c & pagescan::PAGE_IS_PRESENT == 0 || c & pagescan::PAGE_IS_FILE == 0 {
            pagescan::push_run(&mut runs, first, n);
        }
    })
    .ok()?;
    Some(Pages { runs, guards })
}

/// The guard pages of a region (only looked for where smaps says it has some).
pub fn guard_pages(pagemap_fd: i32, m: &MapEntry) -> Vec<(u64, u64)> {
    let mut guards = Vec::new();
    if m.flags & ckpt_image::vm::GUARDS == 0 {
        return guards;
    }
    let mut buf = [pagescan::PageRegion::default(); 512];
    let q = pagescan::Query { mask: pagescan::PAGE_IS_GUARD, ret: pagescan::PAGE_IS_GUARD, ..Default::default() };
    match pagescan::scan(pagemap_fd, m.start, m.end, q, &mut buf, |first, n, _| pagescan::push_run(&mut guards, first, n)) {
        Ok(()) => guards,
        // (Kernels without PAGEMAP_SCAN have no guard pages either.)
        Err(_) => pagemap_runs(pagemap_fd, m, true, |e, _| e & PM_GUARD != 0),
    }
}

/// Which pages of a region must be stored, as runs of (page offset from region start, pages),
/// from /proc/self/pagemap read page by page (kernels without PAGEMAP_SCAN, and regions stored
/// whole). `refs`: for a private file mapping, what `file_refs` found.
fn stored_runs(pagemap_fd: i32, m: &MapEntry, backing: &Backing, refs: Option<&[(u64, u64)]>) -> Vec<(u64, u64)> {
    let npages = (m.end - m.start) / PAGE;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    // Pages of a private file mapping stored whatever pagemap says (see file_refs).
    let in_file = match backing {
        Backing::File { shared: false, offset, size, .. } if refs.is_some() => filerefs::pages_in_file(*offset, m.end - m.start, *size),
        _ => 0,
    };
    let is_ref = |pg: u64| refs.unwrap_or(&[]).iter().any(|&(s, n)| s <= pg && pg < s + n);
    let want = |e: u64, pg: u64| -> bool {
        match backing {
            Backing::Anon => e & (PM_PRESENT | PM_SWAPPED) != 0,
            // Private file mapping: pages that were copied on write (anonymous now) or swapped.
            Backing::File { shared: false, .. } => (e & PM_PRESENT != 0 && e & PM_FILE == 0) || e & PM_SWAPPED != 0 || (pg < in_file && !is_ref(pg)),
            Backing::SharedAnon => true,
            _ => false,
        }
    };
    if let Backing::File { shared: true, offset, size, .. } = backing {
        // A shared file mapping the program can write: store every page inside the file, so
        // that the restart puts back what the file held at checkpoint time.
        if m.prot & libc::PROT_WRITE as u32 != 0 {
            let in_file = filerefs::pages_in_file(*offset, m.end - m.start, *size);
            if in_file > 0 {
                runs.push((0, in_file));
            }
        }
        return runs;
    }
    if matches!(backing, Backing::Special) {
        return runs;
    }
    // Shared memory and mappings of deleted files: pages not mapped in our page tables may still
    // hold data (in the page cache of an object that nothing else can reopen): take all of them.
    if matches!(backing, Backing::SharedAnon) || is_deleted_file(m) {
        runs.push((0, npages));
        return runs;
    }
    pagemap_runs(pagemap_fd, m, false, want)
}

/// Pages of a private mapping that are the program's own now (copied on write, or swapped out):
/// runs of (page offset from the region's start, pages). Guard pages are not.
pub fn copied_pages(pagemap_fd: i32, m: &MapEntry) -> Vec<(u64, u64)> {
    match scan_pages(pagemap_fd, m, true) {
        Some(p) => p.runs,
        None => pagemap_runs(pagemap_fd, m, false, |e, _| (e & PM_PRESENT != 0 && e & PM_FILE == 0) || e & PM_SWAPPED != 0),
    }
}

/// Runs of the pages of `m` whose pagemap entry (and page number) `want` accepts; guard pages
/// (which pagemap shows as swapped) only when `guards`.
fn pagemap_runs(pagemap_fd: i32, m: &MapEntry, guards: bool, want: impl Fn(u64, u64) -> bool) -> Vec<(u64, u64)> {
    let npages = (m.end - m.start) / PAGE;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    const BATCH: u64 = 8192;
    let mut buf = vec![0u64; BATCH as usize];
    let mut p = 0;
    while p < npages {
        let n = BATCH.min(npages - p);
        let bytes = (n * 8) as usize;
        // SAFETY: viewing the u64 buffer as bytes for the read.
        let b = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, bytes) };
        let off = (m.start / PAGE + p) * 8;
        let got = sys::pread(pagemap_fd, b, off).unwrap_or(0);
        let entries = got / 8;
        for (i, &e) in buf.iter().enumerate().take(entries) {
            let pg = p + i as u64;
            if (e & PM_GUARD != 0) == guards && want(e, pg) {
                pagescan::push_run(&mut runs, pg, 1);
            }
        }
        if entries < n as usize {
            break;
        }
        p += n;
    }
    runs
}
