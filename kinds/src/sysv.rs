//! System V IPC: the shared memory segments, semaphore sets and message queues of the program's
//! own IPC namespace (ckpt-run makes one with its user and pid namespaces, so every object in it
//! is the program's).
//!
//! - Capture (runtime, threads stopped): each object by index (SHM_STAT_ANY, SEM_STAT_ANY,
//!   MSG_STAT_ANY need no permission), its key, owner and mode; semaphore values (GETALL);
//!   messages read without taking them (msgrcv with MSG_COPY, oldest first); a segment's
//!   contents only when the process's attachments do not cover all of it (attached read-only
//!   for the copy and detached again), since its mapped regions hold the rest.
//! - Restore (ckpt-restart, inside the new namespace, before any process is staged): each object
//!   made again with its old id (the namespace's `kernel/{shm,sem,msg}_next_id`, writable with
//!   CAP_CHECKPOINT_RESTORE over the namespace), its key and mode, values, messages and
//!   contents. `attach` maps a segment where the restarter stages a region; a segment that was
//!   marked for removal is marked again once attached (`remove`).
//!
//! Not restored: times (shm_atime, sem_otime, msg_stime...), the last pids, semaphore undo
//! values (SEM_UNDO adjustments of the process), SHM_LOCK, and the namespace's limits (shmmax,
//! msgmnb...) if the program changed them.

use crate::{Error, Result};
use ckpt_image::{IpcMessage, IpcPerm, MsgQueue, SemSet, ShmSegment, Sysv};

const SHM_STAT_ANY: i64 = 15;
const SHM_INFO: i64 = 14;
const SEM_INFO: i64 = 19;
const SEM_STAT_ANY: i64 = 20;
const MSG_INFO: i64 = 12;
const MSG_STAT_ANY: i64 = 13;
const MSG_COPY: i64 = 0o40000;
const SHM_DEST: u32 = 0o1000;
const PAGE: u64 = 4096;

/// The IPC namespace's settings under /proc/sys (the next ids last: they are set once the
/// objects are made).
const SETTINGS: [&str; 17] = [
    "kernel/msgmax",
    "kernel/msgmnb",
    "kernel/msgmni",
    "kernel/sem",
    "kernel/shmmax",
    "kernel/shmall",
    "kernel/shmmni",
    "kernel/shm_rmid_forced",
    "fs/mqueue/queues_max",
    "fs/mqueue/msg_max",
    "fs/mqueue/msgsize_max",
    "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
    "kernel/auto_msgmni",
    "kernel/shm_next_id",
    "kernel/sem_next_id",
    "kernel/msg_next_id",
];

/// Read a setting's text (capture side: system calls only).
fn read_setting(name: &str) -> Option<String> {
    let path = std::ffi::CString::new(format!("/proc/sys/{name}")).ok()?;
    let fd = crate::sys::open(&path, libc::O_RDONLY, 0).ok()?;
    let mut buf = [0u8; 128];
    let n = crate::sys::read(fd, &mut buf);
    crate::sys::close(fd);
    Some(String::from_utf8_lossy(&buf[..n.ok()?]).trim().to_string())
}

/// The same words (the kernel prints `sem` with tabs; we may write spaces).
fn same_setting(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// The name /proc/PID/maps gives an attached segment ("/SYSV" and its key in hex); its inode
/// column is the segment's id.
pub fn is_segment_name(name: &[u8]) -> bool {
    name.starts_with(b"/SYSV")
}

fn perm(p: &libc::ipc_perm, id: i64) -> IpcPerm {
    IpcPerm { id: id as i32, key: p.__key, uid: p.uid, gid: p.gid, mode: p.mode as u32 & 0o777 }
}

/// The highest index in use of one kind (`info`: SHM_INFO...), or None when there is none.
fn highest(nr: i64, info: i64) -> Option<i64> {
    let mut buf = [0u64; 32];
    // SAFETY: the *_INFO commands write a small struct (at most 48 bytes) into buf.
    let r = unsafe {
        if nr == libc::SYS_semctl {
            libc::syscall(nr, 0, 0, info, buf.as_mut_ptr())
        } else {
            libc::syscall(nr, 0, info, buf.as_mut_ptr())
        }
    };
    (r >= 0).then_some(r)
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Capture every object of the namespace. `covered(id, size)`: whether the process's own
/// attachments of segment `id` cover its `size` bytes. Runs with the program's threads stopped:
/// system calls only (allocations go to the runtime's allocator).
pub fn capture(covered: &dyn Fn(i32, u64) -> bool) -> std::result::Result<Sysv, String> {
    let mut out = Sysv { settings: SETTINGS.iter().filter_map(|&n| Some((n.to_string(), read_setting(n)?))).collect(), ..Default::default() };
    for idx in 0..=highest(libc::SYS_shmctl, SHM_INFO).unwrap_or(-1) {
        // SAFETY: an all-zero shmid_ds is a valid out-parameter.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: SHM_STAT_ANY writes a shmid_ds.
        let id = unsafe { libc::syscall(libc::SYS_shmctl, idx, SHM_STAT_ANY, &mut ds as *mut libc::shmid_ds) };
        if id < 0 {
            continue;
        }
        let size = ds.shm_segsz as u64;
        let mut seg = ShmSegment { perm: perm(&ds.shm_perm, id), size, removed: ds.shm_perm.mode as u32 & SHM_DEST != 0, data: Vec::new() };
        if !covered(id as i32, size) {
            seg.data = segment_data(id, size)?;
        }
        out.shm.push(seg);
    }
    for idx in 0..=highest(libc::SYS_semctl, SEM_INFO).unwrap_or(-1) {
        // SAFETY: an all-zero semid_ds is a valid out-parameter.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: SEM_STAT_ANY writes a semid_ds (passed as the union's pointer).
        let id = unsafe { libc::syscall(libc::SYS_semctl, idx, 0, SEM_STAT_ANY, &mut ds as *mut libc::semid_ds) };
        if id < 0 {
            continue;
        }
        let mut values = vec![0u16; ds.sem_nsems as usize];
        // SAFETY: GETALL writes sem_nsems values into the array.
        if unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::GETALL, values.as_mut_ptr()) } < 0 {
            return Err(format!("cannot read the values of System V semaphore set {id}: errno {}", errno()));
        }
        out.sem.push(SemSet { perm: perm(&ds.sem_perm, id), values });
    }
    for idx in 0..=highest(libc::SYS_msgctl, MSG_INFO).unwrap_or(-1) {
        // SAFETY: an all-zero msqid_ds is a valid out-parameter.
        let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: MSG_STAT_ANY writes a msqid_ds.
        let id = unsafe { libc::syscall(libc::SYS_msgctl, idx, MSG_STAT_ANY, &mut ds as *mut libc::msqid_ds) };
        if id < 0 {
            continue;
        }
        // No message is larger than all of them together.
        let mut buf = vec![0u8; 8 + ds.__msg_cbytes as usize];
        let mut messages = Vec::with_capacity(ds.msg_qnum as usize);
        for n in 0..ds.msg_qnum as i64 {
            // SAFETY: buf holds a long and __msg_cbytes bytes; MSG_COPY reads message n without taking it.
            let len = unsafe { libc::syscall(libc::SYS_msgrcv, id, buf.as_mut_ptr(), buf.len() - 8, n, libc::IPC_NOWAIT as i64 | MSG_COPY) };
            if len < 0 {
                return Err(format!("cannot read message {n} of System V message queue {id}: errno {}", errno()));
            }
            let mtype = i64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
            messages.push(IpcMessage { mtype, data: buf[8..8 + len as usize].to_vec() });
        }
        out.msg.push(MsgQueue { perm: perm(&ds.msg_perm, id), qbytes: ds.msg_qbytes as u64, messages });
    }
    Ok(out)
}

/// A segment's contents, read through a read-only attachment of ours.
fn segment_data(id: i64, size: u64) -> std::result::Result<Vec<u8>, String> {
    // SAFETY: attaching the segment read-only where the kernel chooses.
    let at = unsafe { libc::syscall(libc::SYS_shmat, id, 0, libc::SHM_RDONLY) };
    if at < 0 {
        return Err(format!("cannot read System V shared memory segment {id} that the program does not map in full: errno {}", errno()));
    }
    // SAFETY: the attachment is `size` bytes long and readable until the shmdt below.
    let data = unsafe { std::slice::from_raw_parts(at as *const u8, size as usize) }.to_vec();
    // SAFETY: detaching our own attachment.
    unsafe { libc::syscall(libc::SYS_shmdt, at) };
    Ok(data)
}

/// Whether the mapped ranges `(offset, len)` of one segment cover its `size` bytes (in pages).
pub fn covers(mut ranges: Vec<(u64, u64)>, size: u64) -> bool {
    ranges.sort_unstable();
    let mut end = 0;
    for (off, len) in ranges {
        if off > end {
            return false;
        }
        end = end.max(off + len);
    }
    end >= size.div_ceil(PAGE) * PAGE
}

/// Write `id` into the namespace's next-id file of one kind, so that the next object of that
/// kind gets it.
fn next_id(kind: &str, id: i32) -> Result<()> {
    let path = format!("/proc/sys/kernel/{kind}_next_id");
    std::fs::write(&path, format!("{id}\n")).map_err(|err| Error::Os { what: format!("cannot choose the id of a System V object ({path})"), err })
}

fn check_id(what: &str, p: &IpcPerm, got: i32) -> Result<()> {
    if got < 0 {
        return Err(Error::last(format!("cannot make System V {what} {} (key {:#x}) again", p.id, p.key)));
    }
    if got != p.id {
        return Err(Error::Refused(format!("System V {what} {} (key {:#x}) came back as {got}", p.id, p.key)));
    }
    Ok(())
}

/// Give this namespace the settings of `s` (`next_ids`: only the next ids, otherwise only
/// the others) where they differ. Only the namespace's root can change most of them: a program
/// that could not (an ordinary user's) left them as they are in every new namespace.
fn apply_settings(s: &Sysv, next_ids: bool) -> Result<()> {
    for (name, value) in s.settings.iter().filter(|(n, _)| n.ends_with("_next_id") == next_ids) {
        if read_setting(name).is_some_and(|now| same_setting(&now, value)) {
            continue;
        }
        std::fs::write(format!("/proc/sys/{name}"), format!("{value}\n"))
            .map_err(|e| Error::Refused(format!("the program's IPC namespace had {name} = {value}, which cannot be set here: {e}")))?;
    }
    Ok(())
}

/// Make every object of `s` again in this (new, empty) IPC namespace, with its settings.
pub fn restore(s: &Sysv) -> Result<()> {
    apply_settings(s, false)?;
    restore_objects(s)?;
    apply_settings(s, true)
}

fn restore_objects(s: &Sysv) -> Result<()> {
    let flags = |p: &IpcPerm| libc::IPC_CREAT | libc::IPC_EXCL | p.mode as i32;
    for seg in &s.shm {
        next_id("shm", seg.perm.id)?;
        // SAFETY: shmget has no memory arguments.
        let id = unsafe { libc::shmget(seg.perm.key, seg.size as usize, flags(&seg.perm)) };
        check_id("shared memory segment", &seg.perm, id)?;
        if !seg.data.is_empty() {
            // SAFETY: attaching the new segment where the kernel chooses, writing its contents
            // (data is no longer than the segment), detaching it.
            unsafe {
                let at = libc::shmat(id, std::ptr::null(), 0);
                if at as isize == -1 {
                    return Err(Error::last(format!("cannot fill System V shared memory segment {id}")));
                }
                std::ptr::copy_nonoverlapping(seg.data.as_ptr(), at as *mut u8, seg.data.len().min(seg.size as usize));
                libc::shmdt(at);
            }
        }
    }
    for set in &s.sem {
        next_id("sem", set.perm.id)?;
        // SAFETY: semget has no memory arguments.
        let id = unsafe { libc::semget(set.perm.key, set.values.len() as i32, flags(&set.perm)) };
        check_id("semaphore set", &set.perm, id)?;
        // SAFETY: SETALL reads one value per semaphore of the set from the array.
        if unsafe { libc::semctl(id, 0, libc::SETALL, set.values.as_ptr()) } < 0 {
            return Err(Error::last(format!("cannot set the values of System V semaphore set {id}")));
        }
    }
    for q in &s.msg {
        next_id("msg", q.perm.id)?;
        // SAFETY: msgget has no memory arguments.
        let id = unsafe { libc::msgget(q.perm.key, flags(&q.perm)) };
        check_id("message queue", &q.perm, id)?;
        set_qbytes(id, q.qbytes)?;
        let mut buf = Vec::new();
        for m in &q.messages {
            buf.clear();
            buf.extend_from_slice(&m.mtype.to_ne_bytes());
            buf.extend_from_slice(&m.data);
            // SAFETY: buf holds the type and m.data.len() bytes.
            if unsafe { libc::msgsnd(id, buf.as_ptr() as *const libc::c_void, m.data.len(), libc::IPC_NOWAIT) } < 0 {
                return Err(Error::last(format!("cannot queue a message into System V message queue {id} again")));
            }
        }
    }
    Ok(())
}

/// Give queue `id` the byte limit `qbytes` it had (above the namespace's default only where
/// the kernel lets us: the messages then may not all fit, which msgsnd says).
fn set_qbytes(id: i32, qbytes: u64) -> Result<()> {
    // SAFETY: an all-zero msqid_ds is a valid out-parameter; IPC_STAT and IPC_SET use it.
    unsafe {
        let mut ds: libc::msqid_ds = std::mem::zeroed();
        if libc::msgctl(id, libc::IPC_STAT, &mut ds) < 0 {
            return Err(Error::last(format!("cannot read System V message queue {id}")));
        }
        if ds.msg_qbytes as u64 != qbytes {
            ds.msg_qbytes = qbytes as _;
            libc::msgctl(id, libc::IPC_SET, &mut ds);
        }
    }
    Ok(())
}

/// Attach segment `id` where the restarter stages a region: `len` bytes of it from `offset`, at
/// `at` (replacing what is there).
pub fn attach(id: i32, offset: u64, len: u64, at: u64) -> Result<()> {
    // SAFETY: the whole segment is attached where the kernel chooses; the part the region maps
    // is moved to `at` (a staging address of ours), and the rest unmapped.
    unsafe {
        let p = libc::shmat(id, std::ptr::null(), 0);
        if p as isize == -1 {
            return Err(Error::last(format!("cannot attach System V shared memory segment {id}")));
        }
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        libc::shmctl(id, libc::IPC_STAT, &mut ds);
        let whole = (ds.shm_segsz as u64).div_ceil(PAGE) * PAGE;
        let moved = libc::mremap((p as *mut u8).add(offset as usize) as *mut libc::c_void, len as usize, len as usize, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, at as *mut libc::c_void);
        if moved == libc::MAP_FAILED {
            let e = Error::last(format!("cannot place System V shared memory segment {id}"));
            libc::shmdt(p);
            return Err(e);
        }
        libc::munmap(p, whole as usize);
    }
    Ok(())
}

/// Mark the segments of `index` that were marked for removal again, once this process has
/// attached them (a removed segment lives while attached; other processes of a tree may
/// still attach it by id).
pub fn remove(index: &ckpt_image::Index) {
    let attached: Vec<i32> = index.regions.iter().filter_map(|r| mapped_segment(index, r.start, &r.name)).map(|(id, _)| id).collect();
    for seg in index.sysv.shm.iter().filter(|g| g.removed && attached.contains(&g.perm.id)) {
        // SAFETY: IPC_RMID takes no buffer.
        unsafe { libc::shmctl(seg.perm.id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// Remove every object of `s` again (a restart that made them failed later, and another image
/// may be tried in the same namespace).
pub fn discard(s: &Sysv) {
    // SAFETY: the *_RMID commands take no buffer.
    unsafe {
        for g in &s.shm {
            libc::shmctl(g.perm.id, libc::IPC_RMID, std::ptr::null_mut());
        }
        for g in &s.sem {
            libc::semctl(g.perm.id, 0, libc::IPC_RMID);
        }
        for g in &s.msg {
            libc::msgctl(g.perm.id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// The segment that region `start` (named `name`) of an image maps, and the region's offset in
/// it; None for any other region, and for images whose segments were not recorded (taken
/// without ckpt's namespace: their regions come back as plain shared memory).
pub fn mapped_segment(index: &ckpt_image::Index, start: u64, name: &[u8]) -> Option<(i32, u64)> {
    if !is_segment_name(name) {
        return None;
    }
    let m = index.shared.iter().find(|m| m.start == start)?;
    index.sysv.shm.iter().any(|g| g.perm.id as u64 == m.ino).then_some((m.ino as i32, m.offset))
}
