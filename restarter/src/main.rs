//! `ckpt-restart IMAGE|DIR`: rebuild a checkpointed program in this process and continue it.
//!
//! The image may be an increment: it is read as a chain with the images it builds on
//! (`ckpt_image::Chain`), which every step below sees as one image.
//!
//! Order matters: everything that can fail (reading and verifying the image, opening the files it
//! maps, staging memory, reopening fds) happens before the address-space switch; after it there
//! is no way back, so the switch only runs system calls that were prepared and checked.

mod attrs;
mod cli;
mod copyfill;
mod cowshare;
mod creds;
mod fanotify;
mod fdobjs;
mod fds;
mod handover;
mod layout;
mod namespace;
mod outerproc;
mod plan;
mod progress;
mod rerun;
mod root;
mod stage;
mod sessions;
mod step;
mod stepaddrs;
mod treelisten;
mod switch;
mod threadpidfds;
mod handpidfds;
mod tree;
mod treeshare;
mod treetime;

use anyhow::{anyhow, bail, Context, Result};
use ckpt_image::{Chain, FdKind};
use clap::Parser;
use cli::Cli;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};


/// Run by the loader before `main`: as the outer process, a signal sent to us from (almost) our
/// first instruction on is the program's: forwarded once it runs again, never our own end
/// (`ckpt_ns::supervise`). (One that comes while the loader still maps us takes its default
/// action, as for any program.)
extern "C" fn block_signals_first() {
    if !namespace::started_by_init() {
        ckpt_ns::block_signals_early();
    }
}

#[used]
#[link_section = ".init_array"]
static BLOCK_SIGNALS_FIRST: extern "C" fn() = block_signals_first;

fn main() {
    progress::mark_start();
    let cli = Cli::parse();
    let set = tree::find_set(&cli.image);
    if !cli.no_namespace {
        namespace::restart_inside(&cli.image, set.as_deref(), ckpt_ns::disabled(false));
    } else if !namespace::started_by_init() {
        namespace::restart_inside(&cli.image, set.as_deref(), ckpt_ns::disabled(true));
    }
    // A process tree's set: the tree is made here, and each process restores its own image.
    let image = match set.as_deref().map(|s| tree::build(s, cli.ignore_missing_files, cli.no_truncate)).transpose() {
        Ok(built) => built.unwrap_or_else(|| cli.image.clone()),
        Err(e) => {
            // The other processes of the tree stop waiting for this one, and so do the other
            // tasks of its step.
            tree::fail();
            step::abandon(&one_line(&e));
            ckpt_kinds::say!("ckpt-restart: {}", one_line(&e));
            std::process::exit(1);
        }
    };
    let r = match rerun::mine() {
        Some(rec) => rerun::run(&image, rec, cli.no_truncate, cli.ignore_missing_files).map(|_| ()),
        None => run(&cli, &image),
    };
    if let Err(e) = r {
        tree::fail();
        step::abandon(&one_line(&e));
        ckpt_kinds::say!("ckpt-restart: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// anyhow's context chain as one line: "outer: inner: cause".
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}

/// The images to try, best first: IMAGE itself; for DIR, its images newest first; for
/// `NAME.ckpt`, that image and then its older generations. (An image that does not read or
/// whose chunks do not verify while it is staged gives way to the next.)
pub(crate) fn candidates(path: &Path) -> Result<Vec<PathBuf>> {
    let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
    if is_dir {
        let c = ckpt_image::images_in(path).with_context(|| format!("{}", path.display()))?;
        if c.is_empty() {
            bail!("{}: no image (*.ckpt) in this directory", path.display());
        }
        return Ok(c);
    }
    let newest_of = path.file_name().and_then(|f| match ckpt_image::parse_image_name(f.as_bytes()) {
        Some((name, 0)) => Some(name.to_vec()),
        _ => None,
    });
    let mut c = vec![path.to_path_buf()];
    if let Some(name) = newest_of {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        c.extend(ckpt_image::generations_of(dir, &name).into_iter().filter(|p| p.file_name() != path.file_name()));
    }
    Ok(c)
}

/// An image (with the images it builds on) staged in memory, ready for the switch.
struct Staged {
    /// The image restarted from, and the bytes of memory read from it (and its parents).
    path: PathBuf,
    memory: u64,
    /// Kept open until the fds are restored: it holds the data of deleted files.
    chain: Chain,
    index: ckpt_image::Index,
    image_hash: u64,
    plan: stage::Plan,
    own: Vec<layout::Mapping>,
    base: u64,
    /// Staged memory and the page hash table after it.
    stage_len: u64,
    switch_len: u64,
    /// The page hash table handed to the runtime: (address, length), (0, 0) for none.
    table: (u64, u64),
}

/// Why staging one candidate failed: the image itself (try an older one), or something an
/// older image would not fix either (a missing file, another machine).
enum StageError {
    Image(anyhow::Error),
    Other(anyhow::Error),
}

/// Open `path` as a chain and stage its memory. Every chunk read is checked against its
/// checksum here, so a damaged image is found before anything irreversible happens.
fn stage_image(path: &Path) -> std::result::Result<Staged, StageError> {
    let ctx = |e: anyhow::Error| e.context(format!("{}", path.display()));
    // Restarting an image runs its code: only the user's own images (ckpt_image::trust).
    let opened = OPENED.with(|o| o.borrow_mut().take_if(|(p, _)| p == path)).map(|(_, c)| Ok(c));
    let chain = opened.unwrap_or_else(|| Chain::open_taken_by(path, ckpt_image::trust::euid(), tree::taker(path))).map_err(|e| match e {
        ckpt_image::ImageError::Untrusted(_) => StageError::Image(e.into()),
        e => StageError::Image(ctx(e.into())),
    })?;
    let index = chain.index().clone();
    let image_hash = chain.newest().header.index_hash;
    let other = |e: anyhow::Error| StageError::Other(e);
    if index.meta.arch != std::env::consts::ARCH {
        return Err(other(anyhow!("{}: image is for {}, this machine is {}", path.display(), index.meta.arch, std::env::consts::ARCH)));
    }
    let mut own = layout::own_maps().map_err(other)?;
    plan::check_vdso(&index, &own).map_err(|e| other(ctx(e)))?;
    attrs::check_guards(&index.regions).map_err(|e| other(ctx(e)))?;
    for r in index.regions.iter().filter(|r| r.name == ckpt_kinds::aio::RING_NAME) {
        ckpt_kinds::aio::check(r.start, r.len()).map_err(|e| other(e.into()))?;
    }
    let files = stage::open_files(&chain).map_err(other)?;
    // The System V objects of the program's namespace, before any region attaches one (a
    // tree's are made before its processes are).
    if !tree::in_tree() {
        sysv_objects(&index).map_err(other)?;
    }

    // Stage memory in a reservation that overlaps neither the image nor us.
    let switch_len = plan::switch_area_len(&index);
    let stage_len = stage::staging_len(&chain);
    // The page hash table for the program's next increment follows the staged memory.
    let table_len = stage::page_table_len(&chain);
    let total = stage_len + table_len + switch_len;
    let place = |own: &[layout::Mapping]| {
        let mut busy: Vec<(u64, u64)> = index.regions.iter().map(|r| (r.start, r.end)).collect();
        busy.extend(own.iter().map(|m| (m.start, m.end)));
        layout::find_hole(&busy, total).and_then(|base| reserve(base, total).map(|()| base))
    };
    let base = match place(&own) {
        Ok(base) => base,
        // The parent's staged memory, inherited, takes address space too (`cowshare`): under a
        // limit, without it (and without sharing).
        Err(_) if cowshare::release() => {
            own = layout::own_maps().map_err(other)?;
            place(&own).map_err(other)?
        }
        Err(e) => return Err(other(e)),
    };
    let progress = progress::Progress::new(path.display().to_string(), stage::stored_len(&chain));
    let t0 = progress::now_ns();
    let staged = stage::map_regions(&chain, &files, base).map_err(other).and_then(|plan| match stage::fill(&chain, base, &plan.inherited, &progress) {
        // The data of deleted files is read when the fds are restored: check it now.
        Ok(pre) => chain.newest().verify_files().map(|()| (plan, pre)).map_err(|e| StageError::Image(ctx(e.into()))),
        Err(e) => Err(StageError::Image(ctx(e))),
    });
    progress.erase();
    let memory = progress.total();
    progress::info(format_args!("{}: {} of memory from {} image(s) read in {} ms", path.display(), ckpt_image::progress::Size(memory), chain.images().len(), (progress::now_ns() - t0) / 1_000_000));
    if let Ok((plan, _)) = &staged {
        if !plan.inherited.is_empty() {
            progress::info(format_args!("{} region(s) started from the parent's memory (shared copy-on-write where equal)", plan.inherited.len()));
        }
    }
    let staged = staged.and_then(|(plan, pre)| match table_len {
        0 => Ok((plan, (0, 0))),
        _ => stage::page_table(&chain, base, base + stage_len, table_len, &pre).map(|t| (plan, t)).map_err(other),
    });
    match staged {
        Ok((plan, table)) => Ok(Staged {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            memory,
            chain,
            index,
            image_hash,
            plan,
            own,
            base,
            stage_len: stage_len + table_len,
            switch_len,
            table,
        }),
        Err(e) => {
            // SAFETY: the reservation (and what was staged in it) is ours and referenced by nothing.
            unsafe { libc::munmap(base as *mut libc::c_void, total as usize) };
            if !tree::in_tree() {
                ckpt_kinds::sysv::discard(&index.sysv);
            }
            Err(e)
        }
    }
}

/// Make the System V IPC objects of the image's namespace again, in ours (refused without
/// one: their ids could not be chosen, and the host's objects are not the program's).
pub(crate) fn sysv_objects(index: &ckpt_image::Index) -> Result<()> {
    let s = &index.sysv;
    if s.is_empty() && s.settings.is_empty() {
        return Ok(());
    }
    if !namespace::started_by_init() {
        if s.is_empty() {
            // Only the namespace's settings: the host's are not ours to change.
            return Ok(());
        }
        bail!(
            "the program had System V IPC objects ({} shared memory segment(s), {} semaphore set(s), {} message queue(s)); \
             they get their ids back only in a namespace of ckpt's, which is not available here",
            s.shm.len(),
            s.sem.len(),
            s.msg.len()
        );
    }
    ckpt_kinds::sysv::restore(s).map_err(|e| anyhow!("{e}"))
}

/// Stage the first candidate whose image reads and verifies.
fn stage_first(path: &Path) -> Result<Staged> {
    let mut first_err: Option<anyhow::Error> = None;
    let candidates = candidates(path)?;
    let alone = candidates.len() == 1;
    for c in candidates {
        match stage_image(&c) {
            Ok(staged) => {
                if let Some(e) = &first_err {
                    ckpt_kinds::say!("ckpt-restart: {}; using the older image {}", one_line(e), c.display());
                }
                return Ok(staged);
            }
            Err(StageError::Other(e)) => return Err(e),
            Err(StageError::Image(e)) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if alone => Err(e),
        Some(e) => Err(e.context("no image verifies")),
        None => bail!("{}: no image", path.display()),
    }
}

thread_local! {
    /// This process's image, staged before it made its children (`stage_early`), with its pid
    /// (a child made by fork inherits its parent's: not its own).
    static EARLY: std::cell::RefCell<Option<(u32, Staged)>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// A process of root's tree that ran as another user: its image chain, opened while it was
    /// still root (`open_as_root`; its restart then runs as that user, who may not read it).
    static OPENED: std::cell::RefCell<Option<(PathBuf, Chain)>> = const { std::cell::RefCell::new(None) };
}

/// Open the image chain `path` taken by `taker` now (as root), for `stage_image` to use later.
pub(crate) fn open_as_root(path: &Path, taker: u32) -> Result<()> {
    let chain = Chain::open_taken_by(path, ckpt_image::trust::euid(), taker).with_context(|| format!("{}", path.display()))?;
    OPENED.with(|o| *o.borrow_mut() = Some((path.to_path_buf(), chain)));
    Ok(())
}

/// Stage `image` now, before this process of a tree makes its children, and offer its staged
/// memory to them (`cowshare`); `run` restores it later.
pub(crate) fn stage_early(image: &Path) -> Result<()> {
    let staged = stage_first(image)?;
    stage::offer(&staged.chain, staged.base, staged.stage_len + staged.switch_len, staged.table);
    let old = EARLY.with(|e| e.borrow_mut().replace((std::process::id(), staged)));
    // A parent's, inherited: its files are the parent's too (a shared fd table) and are never
    // closed here.
    std::mem::forget(old);
    Ok(())
}

/// The image this process staged early, if it did (not its parent's).
fn take_early() -> Option<Staged> {
    let (pid, staged) = EARLY.with(|e| e.borrow_mut().take())?;
    if pid == std::process::id() {
        return Some(staged);
    }
    std::mem::forget(staged);
    None
}

fn run(cli: &Cli, image: &Path) -> Result<()> {
    let staged = match take_early() {
        Some(s) => s,
        None => stage_first(image)?,
    };
    let Staged { path, memory, chain, mut index, image_hash, plan, own, base, stage_len, switch_len, table } = staged;
    // Files saved by --checkpoint-open-files: reopened by path while their path holds something.
    ckpt_kinds::deleted::resolve_saved(&mut index.fds);
    // Sockets of a tree that another process's image describes.
    tree::resolve_sockets(&mut index.fds)?;
    // In a tree, the children are restarted too, and pipes between its processes are whole.
    let mut left_out = index.left_out.clone();
    if tree::in_tree() {
        left_out.children.clear();
        left_out.outside_pipes.retain(|p| !tree::shares_pipe(&index, p.fd));
    }
    for w in left_out_warnings(&left_out) {
        ckpt_kinds::say!("ckpt-restart: warning: {w}");
    }
    if index.ids.namespace && std::process::id() as i32 != index.meta.pid {
        ckpt_kinds::say!(
            "ckpt-restart: warning: the image was taken with exact process ids (pid {} in its own namespace); here the program gets new ids: \
             a mutex a thread held at checkpoint time that records its owner (error-checking, recursive, robust or PI, glibc's dlopen lock) \
             can no longer be unlocked, and raw getpid()/gettid() and /proc/<pid> show the new ids",
            index.meta.pid
        );
    }

    // Kernel state that lives on across the switch.
    let p = &index.process;
    let views = creds::Views { want_in_userns: index.ids.user_namespace, have_in_userns: creds::in_user_namespace() };
    if let Some(ids) = tree::vouched(index.meta.pid) {
        // Restored as the ids the coordinator saw (`tree::become_vouched`): its image, which it
        // wrote itself, must say the same.
        if creds::from_ids(ids) != p.creds {
            bail!("{}: the image records other ids than its process had at the checkpoint ({:?}, not {ids:?}): it is not restarted", path.display(), p.creds);
        }
    }
    let thread_creds: Vec<_> = index.threads.iter().map(|t| (t.tid, t.attrs.creds)).collect();
    let change_creds = creds::check(&p.creds, &thread_creds, views)?;
    root::check(p)?;
    // SAFETY: umask and setrlimit only change this process's attributes.
    unsafe {
        libc::umask(p.umask as libc::mode_t);
        for r in &p.rlimits {
            let lim = libc::rlimit64 { rlim_cur: r.cur, rlim_max: r.max };
            libc::setrlimit64(r.resource, &lim);
        }
    }
    let same_boot = !index.meta.origin.boot_id.is_empty() && index.meta.origin.boot_id == ckpt_image::boot_id();
    // A packet socket's mapped rings: made again with the socket, mapped once it is back.
    for r in index.regions.iter().filter(|r| r.name.starts_with(b"socket:[")) {
        let why = match ckpt_kinds::sockets::ring::mapped_socket(&r.name) {
            Some(ino) => ckpt_kinds::sockets::ring::mapping_refusal(&index.fds, ino, r.start, r.end),
            None => Some(format!("the program maps {} ({:#x}-{:#x}), which cannot be restored", r.name_lossy(), r.start, r.end)),
        };
        if let Some(why) = why {
            bail!("{why}");
        }
    }
    let rings = stage::ring_places(&chain, base);
    // Segments marked for removal are marked again now that this process attached them.
    ckpt_kinds::sysv::remove(&index);
    // A task of a Slurm step meets the other tasks first: its connections to them are made
    // again through them (step.rs).
    let top = index.fds.iter().map(|f| f.fd).max().unwrap_or(0).max(2) + 1;
    let joined = step::join(&index, &path, image_hash, top)?;
    let (mut job, mut keep) = joined.as_ref().map(|j| (j.conns.clone(), j.links())).unwrap_or_default();
    let outer_proc = outerproc::take(top);
    keep.extend(outer_proc);
    tree::publish_outer_proc(outer_proc);
    if !tree::table_of_another() {
        job.extend(tree::sockets(&index.fds)?);
    }
    // SAFETY: getpid has no preconditions.
    let exact_ids = index.ids.namespace && unsafe { libc::getpid() } == index.meta.pid;
    // A process that shares another's fd table (clone with CLONE_FILES) restores none: the
    // table's owner does, once such processes need no fd of theirs any more.
    tree::before_fds()?;
    // One that shares another's table: a copy of the fd its owner keeps there, now restored.
    let outer_proc = outer_proc.or_else(|| outerproc::of_table(top));
    threadpidfds::expect(&index, exact_ids && !tree::table_of_another());
    if exact_ids && !tree::table_of_another() {
        keep.extend(handpidfds::take(tree::handoffs(), &index.fds, top)?);
    }
    let restored = if tree::table_of_another() {
        Ok(fds::Restored::default())
    } else {
        // A listener of a task of a step (any process of its tree) whose port is taken moves.
        let other_port = joined.is_some() || treelisten::in_step();
        // A task on a node that lacks its old node's addresses: its UDP sockets bound there are
        // bound at the addresses now that stand for them (kinds' stepudp).
        let rebind = index.step.as_ref().filter(|_| other_port).map(|st| ckpt_step::addrmap::pair(&st.node_ips, &ckpt_step::addrmap::node_ips())).unwrap_or_default();
        fds::restore(&index.fds, &fds::Options { no_truncate: cli.no_truncate, ignore_missing: cli.ignore_missing_files, same_boot, exact_ids, other_port, rebind }, chain.newest(), job, &keep)
    };
    if restored.is_ok() {
        tree::after_fds();
    }
    let step_epoch = joined.as_ref().map_or(0, |j| j.epoch);
    let mut addr_map = Vec::new();
    // The listeners this process restored (one that shares another's fd table: none of its own).
    let mine = || if tree::table_of_another() { Vec::new() } else { stepaddrs::listeners(&index.fds) };
    if let Some(j) = joined {
        // No task's program runs before every task's fds are back; each says where its
        // listeners are now (stepaddrs), those of every process of its tree (treelisten).
        let listeners = restored.as_ref().map_err(one_line).and_then(|_| treelisten::gather(mine()).map_err(|e| one_line(&e)));
        let ready = j.ready(listeners.as_ref().err().map(String::as_str), &stepaddrs::report(&index, listeners.clone().unwrap_or_default()));
        let mapped = ready.and_then(|reports| stepaddrs::map(&j, &reports));
        j.close();
        if restored.is_ok() {
            if let Err(why) = listeners {
                bail!("{why}");
            }
            addr_map = mapped.context("the restart of the step failed")?;
            treelisten::hand_out(&addr_map);
        }
    } else if restored.is_ok() {
        // Another process of a step task's tree: its listeners go to the step through the root,
        // which hands it the map.
        addr_map = treelisten::share(mine())?.unwrap_or_default();
    }
    let restored = restored?;
    // Its UDP sockets connected where their peers are now, the datagrams queued on them from
    // other tasks shown from their senders (kinds' stepudp).
    addr_map = stepaddrs::settle_udp(&index.fds, &restored.later, addr_map)?;
    stage::map_rings(&index, &rings)?;
    // Restoring the fds closed every fd of ours, the image's too: they must never be closed again.
    std::mem::forget(chain);
    // The working directory last: a removed one may be a directory the program has an fd on.
    let dirs: Vec<(Vec<u8>, i32)> = index
        .fds
        .iter()
        .filter_map(|f| match &f.kind {
            FdKind::Deleted(d) if d.is_dir() => Some((d.path.clone(), f.fd)),
            _ => None,
        })
        .collect();
    ckpt_kinds::procfs::enter_cwd(&p.cwd, &dirs)?;
    attrs::apply(&p.attrs);
    let above = index.fds.iter().map(|f| f.fd).max().unwrap_or(2) + 1;
    let exe = attrs::exe_fd(&p.attrs, above, same_boot);

    match plan::wait_alone()? {
        0 => {}
        polls => progress::info(format_args!("waited {polls} ms for the staging threads to end")),
    }
    let switch_base = base + stage_len;
    let note = plan::Note { path: path.as_os_str().as_bytes(), memory, started_ns: progress::started_ns(), log_level: progress::log_level(), step_epoch, addr_map: &addr_map, outer_proc_fd: outer_proc.unwrap_or(-1) };
    let prepared = plan::prepare(&index, image_hash, &plan, &own, table, switch_base, switch_len, &note, exe)?;
    if change_creds {
        creds::apply(&p.creds)?;
    }
    if restored.winch {
        // The program's terminal is another one now: once it runs it hears so and redraws.
        // Raised with every signal blocked, it waits for the program's handler (or its default).
        let all: u64 = !0;
        // SAFETY: blocking our signals, then a signal to ourselves that stays pending.
        unsafe {
            libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, 0, 8);
            libc::kill(libc::getpid(), libc::SIGWINCH);
        }
    }
    progress::info(format_args!("switching to the program ({} ms since ckpt-restart started)", (progress::now_ns() - progress::started_ns()) / 1_000_000));
    tree::barrier()?;
    fds::close_stdio_the_program_closed(&index.fds);
    // SAFETY: this is the only thread (staging threads were joined); the switch area is ready.
    unsafe { plan::go(prepared) }
}

/// What the image says the restart cannot bring back, one sentence each: the program's child
/// processes, and fds that read a pipe fed from outside the program.
fn left_out_warnings(lo: &ckpt_image::LeftOut) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(list) = lo.children_list() {
        out.push(format!("the program's child processes were not in the image and are gone (its wait() fails with ECHILD): {list}"));
    }
    for p in &lo.outside_pipes {
        let what = if p.fifo.is_empty() { "a pipe".to_string() } else { format!("the FIFO {}", String::from_utf8_lossy(&p.fifo)) };
        let now = if p.fd <= 2 {
            format!("its {} unread bytes and later input are lost; it reads ckpt-restart's own fd {} instead", p.unread, p.fd)
        } else if p.fifo.is_empty() {
            format!("it gets the {} bytes it had not read at checkpoint time, then end of file", p.unread)
        } else {
            "its input is lost".to_string()
        };
        out.push(format!("fd {} read {what} fed by another process: {now}", p.fd));
    }
    out
}

fn reserve(base: u64, len: u64) -> Result<()> {
    // SAFETY: reserving address space we found free; MAP_FIXED_NOREPLACE fails rather than clobber.
    let p = unsafe {
        libc::mmap(
            base as *mut libc::c_void,
            len as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p as u64 != base {
        bail!("cannot reserve {} MiB of address space for staging: {}", len >> 20, std::io::Error::last_os_error());
    }
    Ok(())
}
