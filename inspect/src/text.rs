//! The human-readable rendering of a `Report`.

use crate::report::Report;
use std::fmt::Write;

pub fn size(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b} B") } else { format!("{v:.1} {}", U[i]) }
}

/// The runtime moves its own fds (control socket, wake eventfd, image directory, dirty-page
/// tracking) to this number and up, and leaves them out of images.
const RUNTIME_FDS: i32 = 900;

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = write_all(&mut o, r);
    o
}

fn write_all(o: &mut String, r: &Report) -> std::fmt::Result {
    let i = &r.image;
    writeln!(o, "image      {} (format version {}, {})", i.path, i.format_version, size(i.file_bytes))?;
    write_chain(o, r)?;
    writeln!(o, "program    {} (pid {}, checkpoint {})", r.program, r.pid, r.generation)?;
    writeln!(o, "command    {}", r.cmdline.join(" "))?;
    writeln!(o, "taken      {} on {} by {}, of {}", r.taken.utc, r.taken.hostname, ckpt_image::trust::user(r.taken.uid), r.taken.executable)?;
    let s = &r.system;
    writeln!(o, "system     {}, Linux {}, glibc {}", s.arch, s.kernel, if s.glibc.is_empty() { "unknown" } else { &s.glibc })?;
    let layout: Vec<String> = s.vdso_layout.iter().map(|v| format!("{} {}", v.name, size(v.size))).collect();
    writeln!(o, "vdso       {} (hash {})", layout.join(", "), s.vdso_hash)?;
    let root = r.process.root.as_ref().map(|d| format!(", root {d} (chroot)")).unwrap_or_default();
    writeln!(o, "process    cwd {}{root}, umask {}, brk {:#x}", r.process.cwd, r.process.umask, r.process.brk)?;
    let d = &r.ids;
    let how = match (d.mode, d.virtual_ids) {
        ("namespace", _) => format!("exact: own user+pid namespace (pid {} there, {} outside)", r.pid, d.outer_pid),
        (_, true) => format!("virtual: getpid()/gettid() translated (kernel pid {})", r.pid),
        _ => format!("host pid {}", r.pid),
    };
    writeln!(o, "ids        {how}, checkpoint thread {}; clocks: monotonic {:.1} s, boottime {:.1} s", d.checkpoint_thread, d.monotonic_s, d.boottime_s)?;

    for (i, line) in r.sysv.iter().enumerate() {
        writeln!(o, "{}{line}", if i == 0 { "sysv ipc   " } else { "           " })?;
    }
    writeln!(o, "\nthreads    {} (plus the checkpoint thread)", r.threads.len())?;
    for t in &r.threads {
        let pc = t.pc.map(|p| format!("{p:#x}")).unwrap_or_else(|| "?".into());
        let blocked = match &t.blocked {
            Some(b) if b.is_empty() => "none".into(),
            Some(b) => b.join(","),
            None => "?".into(),
        };
        let alt = t.altstack.map(|(sp, n)| format!(", altstack {sp:#x}+{}", size(n))).unwrap_or_default();
        writeln!(o, "  tid {:<8} pc {pc}, blocked {blocked}{alt}{}", t.tid, if t.rseq { ", rseq" } else { "" })?;
    }

    let t = &r.totals;
    writeln!(o, "\nregions    {} ({} of them ckpt's runtime, marked R: {} saved)", r.regions.len(), t.runtime_regions, size(t.runtime_saved_bytes))?;
    writeln!(o, "  {:<33} {:>10} {:<4} {:<11} {:>10} {:>10}  {:<9} name", "address", "size", "perm", "backing", "saved", "stored", "codec")?;
    for g in &r.regions {
        let name = match (&g.file, g.file_offset) {
            (Some(f), Some(off)) if off != 0 => format!("{f} @{off:#x}"),
            (Some(f), _) => f.clone(),
            _ => g.name.clone(),
        };
        writeln!(
            o,
            "{} {:#014x}-{:#014x}    {:>10} {:<4} {:<11} {:>10} {:>10}  {:<9} {}{}{}",
            if g.runtime.is_some() { 'R' } else { ' ' },
            g.start,
            g.end,
            size(g.size),
            g.perms,
            g.backing,
            size(g.saved_bytes),
            size(g.stored_bytes),
            g.compression,
            name,
            if g.inherit { " (inherits)" } else { "" },
            g.runtime.as_ref().map(|p| format!(" [runtime: {p}]")).unwrap_or_default()
        )?;
    }

    writeln!(o, "\nfds        {} (the runtime's own, from {} up, are not saved)", r.fds.len(), RUNTIME_FDS)?;
    for f in &r.fds {
        writeln!(o, "  {:<4} {:<5} {} ({}, offset {}{})", f.fd, f.kind, f.target, f.flags, f.offset, if f.cloexec { ", cloexec" } else { "" })?;
    }

    writeln!(o, "\nsignals    {} not at their default action", r.signals.len())?;
    for s in &r.signals {
        let h = s.handler.map(|h| format!(" {h:#x}")).unwrap_or_default();
        let fl = if s.flags.is_empty() { String::new() } else { format!(" [{}]", s.flags) };
        writeln!(o, "{} {:<10} {}{h}{fl}{}", if s.runtime { 'R' } else { ' ' }, s.signal, s.action, if s.runtime { " [runtime]" } else { "" })?;
    }

    let l = &r.left_out;
    if !l.children.is_empty() || !l.outside_pipes.is_empty() {
        writeln!(o, "\nleft out   what a restart does not bring back")?;
        for c in &l.children {
            writeln!(o, "  child process {} \"{}\"{}", c.pid, c.command.escape_debug(), if c.exited { " (exited, not waited for)" } else { "" })?;
        }
        for p in &l.outside_pipes {
            let what = p.fifo.as_ref().map_or("a pipe".to_string(), |f| format!("the FIFO {f}"));
            writeln!(o, "  fd {} reads {what} fed by another process ({} bytes unread): its input cannot be replayed", p.fd, p.unread)?;
        }
    }

    let ratio = if t.stored_bytes > 0 { t.saved_bytes as f64 / t.stored_bytes as f64 } else { 0.0 };
    writeln!(
        o,
        "\ntotals     {} regions, {} mapped, {} saved in {} chunks, {} stored (ratio {ratio:.1}), {} threads, {} fds",
        t.regions,
        size(t.mapped_bytes),
        size(t.saved_bytes),
        t.chunks,
        size(t.stored_bytes),
        t.threads,
        t.fds
    )?;
    if let Some(v) = &r.verified {
        let of = if v.images > 1 { format!(" of {} images", v.images) } else { String::new() };
        writeln!(o, "verified   all {} chunks ({}){of} match their checksums", v.chunks, size(v.stored_bytes))?;
    }
    Ok(())
}

/// "chain" line: a full image, or an increment and the images it builds on.
fn write_chain(o: &mut String, r: &Report) -> std::fmt::Result {
    let c = &r.chain;
    if r.image.parent.is_none() {
        return writeln!(o, "chain      full image (no parent)");
    }
    if let Some(p) = &c.problem {
        return writeln!(o, "chain      increment ({} images in all), but: {p}", c.length);
    }
    let older: Vec<String> = c
        .images
        .iter()
        .skip(1)
        .map(|i| format!("{} (checkpoint {}{})", i.path, i.generation, if i.parent.is_none() { ", full" } else { "" }))
        .collect();
    writeln!(o, "chain      increment over {} ({} images in all)", older.join(", "), c.images.len())
}
