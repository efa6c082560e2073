//! One checkpoint: take the gate, stop the threads, collect regions/fds/process state, write the
//! image under a temporary name, fsync, rename, resume the threads.

use crate::log::{log, DEBUG, ERROR};
use crate::maps::{self, MapEntry, PAGE};
use crate::{alloc, config, fdtable, gate, generations, procstate, sys, threads, ThreadInfo, CKPT_THREAD};
use ckpt_image::{Backing, Entry, Index, Meta, Region, ThreadState, Writer, CHUNK_SIZE};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

/// Checkpoints taken by this program, across restarts (the counter is part of the image).
pub static GENERATION: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub raw: u64,
    pub stored: u64,
    pub paused_ms: u64,
}

/// Take a checkpoint now. Errors are logged here (their text lives in the scratch arena).
pub fn take() -> Option<Outcome> {
    let t0 = now_ns();
    gate::lock_exclusive();
    alloc::scratch_begin();
    let self_tid = sys::gettid();
    let gen = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    let t_stop = now_ns();
    let mut paused_ms = 0;
    let result = match threads::stop_all(self_tid) {
        Ok(slots) => {
            let r = write_image(&slots, gen);
            threads::resume_all();
            paused_ms = (now_ns() - t_stop) / 1_000_000;
            r
        }
        Err(e) => Err(e),
    };
    let ms = (now_ns() - t0) / 1_000_000;
    let out = match result {
        Ok((raw, stored, path)) => {
            generations::record(gen, &path, raw, stored, ms, paused_ms);
            Some(Outcome { raw, stored, paused_ms })
        }
        Err(e) => {
            GENERATION.fetch_sub(1, Ordering::AcqRel);
            log!(ERROR, "checkpoint failed, the program continues: {e}");
            None
        }
    };
    alloc::scratch_end();
    gate::unlock_exclusive();
    out
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Split map entries at the scratch arena's bounds; the arena part is stored as empty memory.
fn split_scratch(maps: Vec<MapEntry>) -> Vec<(MapEntry, bool)> {
    let (lo, hi) = alloc::scratch_range();
    let mut out = Vec::with_capacity(maps.len() + 2);
    for m in maps {
        if hi == 0 || m.end <= lo || m.start >= hi {
            out.push((m, false));
            continue;
        }
        if m.start < lo {
            out.push((MapEntry { end: lo, ..m.clone() }, false));
        }
        out.push((MapEntry { start: m.start.max(lo), end: m.end.min(hi), ..m.clone() }, true));
        if m.end > hi {
            let off = m.offset + (hi - m.start);
            out.push((MapEntry { start: hi, offset: off, ..m }, false));
        }
    }
    out
}

fn write_image(slots: &[threads::Slot], gen: u64) -> Result<(u64, u64, Vec<u8>), String> {
    let cfg = config().ok_or("runtime not configured")?;
    // fds first, before we open anything of our own.
    let fds = fdtable::read_fds();
    crate::kstate::save(sys::gettid());
    let process = procstate::read_process();
    let maps = split_scratch(maps::read_maps()?);
    let pagemap = sys::open(&sys::cpath(&[b"/proc/self/pagemap"]), libc::O_RDONLY, 0).map_err(|e| format!("cannot open /proc/self/pagemap: errno {e}"))?;
    let mem = sys::open(&sys::cpath(&[b"/proc/self/mem"]), libc::O_RDONLY, 0).map_err(|e| {
        sys::close(pagemap);
        format!("cannot open /proc/self/mem: errno {e}")
    })?;

    let final_path = generations::newest_path(&cfg.dir, &cfg.name);
    let tmp_path = [&final_path[..], b".tmp"].concat();
    let tmp_c = sys::cpath(&[&tmp_path]);
    let r = (|| -> Result<(u64, u64), String> {
        let fd = sys::open(&tmp_c, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o600)
            .map_err(|e| format!("cannot create {}: {}", String::from_utf8_lossy(&tmp_path), strerror(e)))?;
        let _ = sys::syscall!(libc::SYS_fchmod, fd, 0o600);
        // SAFETY: fd is a freshly opened file that the File now owns.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut w = Writer::new(file, 1).map_err(|e| e.to_string())?;
        let mut regions = Vec::with_capacity(maps.len());
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut vdso_hash = 0;
        for (m, scratch) in &maps {
            if m.name == b"[vsyscall]" {
                continue;
            }
            let backing = if *scratch { Backing::Anon } else { maps::backing_of(m) };
            if m.name == b"[vdso]" {
                vdso_hash = hash_mem(mem, m.start, m.end - m.start);
            }
            let runs = if *scratch { Vec::new() } else { maps::stored_runs(pagemap, m, &backing) };
            let direct = maps::directly_readable(m, &backing);
            let mut chunks = Vec::new();
            for (first, n) in runs {
                let mut off = first * PAGE;
                let end = (first + n) * PAGE;
                while off < end {
                    let len = (end - off).min(CHUNK_SIZE as u64) as usize;
                    let dst = &mut buf[..len];
                    if direct {
                        // SAFETY: [start+off, +len) lies in a readable private anonymous mapping
                        // of this process; the threads that could write it are stopped.
                        unsafe { std::ptr::copy_nonoverlapping((m.start + off) as *const u8, dst.as_mut_ptr(), len) };
                    } else {
                        let got = sys::pread(mem, dst, m.start + off).unwrap_or(0);
                        dst[got..].fill(0);
                    }
                    chunks.push(w.write_chunk(off, dst).map_err(|e| write_error(e, &tmp_path))?);
                    off += len as u64;
                }
            }
            regions.push(Region { start: m.start, end: m.end, prot: m.prot, name: m.name.clone(), backing, chunks });
        }
        let ct: &ThreadInfo = &CKPT_THREAD;
        let index = Index {
            meta: meta(&cfg.name, gen, vdso_hash),
            regions,
            threads: slots
                .iter()
                .map(|s| ThreadState {
                    tid: s.tid,
                    ucontext: s.ucontext,
                    fs_base: s.fs_base,
                    tid_address: s.tid_address,
                    robust_head: s.robust_head,
                    robust_len: s.robust_len,
                    altstack_sp: s.ss_sp,
                    altstack_size: s.ss_size,
                    altstack_flags: s.ss_flags,
                    rseq: s.rseq,
                })
                .collect(),
            entry: Entry {
                pc: crate::restart::entry_point(),
                sp: ct.stack_top.load(Ordering::Relaxed) & !15,
                arg: 0,
                fs_base: ct.fs_base.load(Ordering::Relaxed),
                tid_address: ct.tid_address.load(Ordering::Relaxed),
                robust_head: ct.robust_head.load(Ordering::Relaxed),
                robust_len: ct.robust_len.load(Ordering::Relaxed),
            },
            fds,
            process,
        };
        let raw = w.raw_bytes();
        let (_file, total) = w.finish(&index).map_err(|e| write_error(e, &tmp_path))?;
        Ok((raw, total))
    })();
    sys::close(pagemap);
    sys::close(mem);
    match r {
        Ok((raw, total)) => {
            if let Err(e) = generations::commit(&tmp_c, &cfg.dir, &cfg.name) {
                let _ = sys::syscall!(libc::SYS_unlink, tmp_c.as_ptr());
                return Err(format!("cannot rename the image into place: {}", strerror(e)));
            }
            log!(DEBUG, "image {} written", String::from_utf8_lossy(&final_path));
            Ok((raw, total, final_path))
        }
        Err(e) => {
            let _ = sys::syscall!(libc::SYS_unlink, tmp_c.as_ptr());
            Err(e)
        }
    }
}

fn write_error(e: ckpt_image::ImageError, path: &[u8]) -> String {
    format!("cannot write {}: {e}", String::from_utf8_lossy(path))
}

pub fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn hash_mem(mem: i32, start: u64, len: u64) -> u64 {
    let mut v = vec![0u8; len as usize];
    let got = sys::pread(mem, &mut v, start).unwrap_or(0);
    ckpt_image::checksum(&v[..got])
}

fn meta(name: &[u8], gen: u64, vdso_hash: u64) -> Meta {
    // SAFETY: an all-zero utsname is a valid out-parameter.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    let _ = sys::syscall!(libc::SYS_uname, &mut u as *mut libc::utsname);
    let field = |f: &[libc::c_char]| -> String {
        let b: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    let cmdline = sys::read_file(&sys::cpath(&[b"/proc/self/cmdline"]))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect();
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let _ = sys::syscall!(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts as *mut libc::timespec);
    Meta {
        arch: field(&u.machine),
        kernel: field(&u.release),
        hostname: field(&u.nodename),
        time: ts.tv_sec as u64,
        program: String::from_utf8_lossy(name).into_owned(),
        cmdline,
        pid: sys::getpid(),
        generation: gen,
        vdso_hash,
        glibc: glibc_version(),
    }
}

/// glibc's version string (a pointer to a constant: safe while other threads are stopped).
fn glibc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy().into_owned()
}
