//! Raw system calls used by the runtime. They never pass through our own hooks, take no libc
//! locks and allocate nothing, so they are safe while other threads are stopped.

use std::ffi::CStr;

pub type SysResult<T> = Result<T, i32>;

/// Kernel returns in -4095..-1 become Err(errno).
#[inline]
pub fn check(ret: i64) -> SysResult<i64> {
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret)
    }
}

/// A system call by inline `syscall` instruction: it never touches errno, which matters in the
/// stop handler (the interrupted code's errno must survive).
///
/// # Safety
/// The arguments must be valid for the system call `nr`.
#[inline(always)]
pub unsafe fn raw(nr: i64, a: [i64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller guarantees valid arguments; syscall clobbers only rcx and r11.
    unsafe {
        std::arch::asm!("syscall", inlateout("rax") nr => ret, in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5], lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

macro_rules! syscall {
    ($nr:expr $(, $a:expr)* $(,)?) => {{
        #[allow(unused_mut)]
        let mut args = [0i64; 6];
        #[allow(unused_mut, unused_variables)]
        let mut i = 0;
        $( args[i] = $a as i64; i += 1; )*
        let _ = i;
        // SAFETY: a raw system call with arguments the caller has checked; the kernel validates
        // every pointer it is given.
        $crate::sys::check(unsafe { $crate::sys::raw($nr as i64, args) })
    }};
}
pub(crate) use syscall;

/// The calling thread's id. A seccomp filter of the program's may make gettid fail in every
/// thread, the checkpoint thread too (a TSYNC gives it the program's filters): then /proc says.
pub fn gettid() -> i32 {
    syscall!(libc::SYS_gettid).map_or_else(|_| id_from_proc(c"/proc/thread-self"), |t| t as i32)
}

/// The process's id (as `gettid`, /proc says when a filter makes getpid fail).
pub fn getpid() -> i32 {
    syscall!(libc::SYS_getpid).map_or_else(|_| id_from_proc(c"/proc/self"), |p| p as i32)
}

/// The last number in the target of /proc's `self` or `thread-self` link ("PID" or
/// "PID/task/TID"); 0 if it cannot be read. No allocation (the stop handler calls it).
fn id_from_proc(link: &CStr) -> i32 {
    let mut buf = [0u8; 64];
    let (dir, p) = at(link);
    let Ok(n) = syscall!(libc::SYS_readlinkat, dir, p, buf.as_mut_ptr(), buf.len()) else { return 0 };
    let text = &buf[..n as usize];
    let last = text.rsplit(|&b| b == b'/').next().unwrap_or(b"");
    last.iter().take_while(|b| b.is_ascii_digit()).fold(0i32, |v, d| v.wrapping_mul(10).wrapping_add((d - b'0') as i32))
}

/// kcmp's comparison types (linux/kcmp.h) the runtime uses.
pub const KCMP_FILE: i64 = 0;
pub const KCMP_FILES: i64 = 2;
pub const KCMP_EPOLL_TFD: i64 = 7;

pub fn tgkill(pid: i32, tid: i32, sig: i32) -> SysResult<i64> {
    syscall!(libc::SYS_tgkill, pid, tid, sig)
}

pub fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32, timeout_ms: Option<u64>) {
    let ts = timeout_ms.map(timespec_ms);
    let tsp = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let _ = syscall!(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, expected, tsp, 0, 0);
}

pub fn futex_wake(word: &std::sync::atomic::AtomicU32) {
    let _ = syscall!(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX, 0, 0, 0);
}

pub fn open(path: &CStr, flags: i32, mode: u32) -> SysResult<i32> {
    let (dir, p) = at(path);
    syscall!(libc::SYS_openat, dir, p, flags | libc::O_CLOEXEC, mode).map(|fd| fd as i32)
}

/// /proc, opened when the runtime starts (and again at restart): the program may chroot() into
/// a directory without /proc, and every thread (the stop handler too) still reads its /proc
/// files through this fd. -1: none (paths are used as they are). (Not O_PATH: `own` marks it.)
static PROC_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Open /proc for `at` (before the program runs; at restart, before the root is changed).
pub fn open_proc() {
    PROC_FD.store(-1, std::sync::atomic::Ordering::Release);
    // (O_APPEND: the mark of a runtime fd open for an instant, `Transient`: another process
    // sharing this fd table may list it before it is moved high.)
    if let Ok(fd) = syscall!(libc::SYS_openat, libc::AT_FDCWD, c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_APPEND, 0) {
        PROC_FD.store(own(move_high(fd as i32)), std::sync::atomic::Ordering::Release);
    }
}

/// The fd `open_proc` made, while it is still ours (the program may have closed it or put a
/// file of its own at its number).
pub fn proc_fd() -> Option<i32> {
    let fd = PROC_FD.load(std::sync::atomic::Ordering::Acquire);
    (fd >= 0 && still_own(fd)).then_some(fd)
}

pub fn is_proc_fd(fd: i32) -> bool {
    fd >= 0 && PROC_FD.load(std::sync::atomic::Ordering::Relaxed) == fd
}

/// Where a path of ours is resolved: a /proc path relative to `proc_fd`, anything else as it is.
fn at(path: &CStr) -> (i32, *const libc::c_char) {
    match (path.to_bytes().strip_prefix(b"/proc/"), proc_fd()) {
        // SAFETY: the rest of the same NUL-terminated string, 6 bytes in.
        (Some(_), Some(fd)) => (fd, unsafe { path.as_ptr().add(6) }),
        _ => (libc::AT_FDCWD, path.as_ptr()),
    }
}

pub fn close(fd: i32) {
    let _ = syscall!(libc::SYS_close, fd);
}

pub fn read(fd: i32, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        match syscall!(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) {
            Err(libc::EINTR) => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> SysResult<usize> {
    loop {
        match syscall!(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), off) {
            Err(libc::EINTR) => continue,
            r => return r.map(|n| n as usize),
        }
    }
}

/// Read `buf.len()` bytes of /proc/self/mem at `addr`; a page that cannot be read (a guard
/// page, a page past the end of a mapped file: the kernel returns a short read, then EIO) is
/// left as zeros and skipped, and the pages after it are read.
pub fn pread_pages(mem: i32, buf: &mut [u8], addr: u64) {
    const PAGE: u64 = 4096;
    let mut done = 0usize;
    while done < buf.len() {
        match pread(mem, &mut buf[done..], addr + done as u64) {
            Ok(n) if n > 0 => done += n,
            _ => {
                let next = ((((addr + done as u64) / PAGE + 1) * PAGE - addr) as usize).min(buf.len());
                buf[done..next].fill(0);
                done = next;
            }
        }
    }
}

pub fn write_all(fd: i32, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        match syscall!(libc::SYS_write, fd, buf.as_ptr(), buf.len()) {
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(n) => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

/// Read a whole (proc) file.
/// The fds `read_file` and `list_dir` have open for a moment (+1; 0: a free slot). The program
/// may fork in that moment (another thread of it, while the checkpoint thread or a stop handler
/// reads /proc): the child gets a copy of such an fd that nothing of it would ever close, which
/// a restart then met as the program's (`/proc/N (deleted)`). The child closes them
/// (`close_transient_copies`). A fork between the open and its noting (the thread descheduled
/// as the open returns) leaves one too: they are opened O_APPEND (nothing for a read-only file
/// or a directory), and a member child also closes every read-only O_APPEND fd on another
/// process's /proc (`close_foreign_copies`, `transient_copy`).
static TRANSIENT: [std::sync::atomic::AtomicI32; 32] = [const { std::sync::atomic::AtomicI32::new(0) }; 32];

/// An fd of `read_file` or `list_dir`, noted in `TRANSIENT` while it is open.
struct Transient {
    fd: i32,
    slot: Option<usize>,
}

impl Transient {
    fn open(path: &CStr, flags: i32) -> SysResult<Transient> {
        let fd = open(path, flags | libc::O_APPEND, 0)?;
        Ok(Transient::noted(fd))
    }

    /// `name` of our directory fd `dir`.
    fn open_at(dir: i32, name: &CStr, flags: i32) -> SysResult<Transient> {
        let fd = syscall!(libc::SYS_openat, dir, name.as_ptr(), flags | libc::O_APPEND | libc::O_CLOEXEC, 0)? as i32;
        Ok(Transient::noted(fd))
    }

    fn noted(fd: i32) -> Transient {
        use std::sync::atomic::Ordering;
        let slot = TRANSIENT.iter().position(|s| s.compare_exchange(0, fd + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok());
        Transient { fd, slot }
    }
}

/// A directory of /proc held open for a while, noted as `read_file`'s fds are (`TRANSIENT`),
/// to read many files of it with `read_file_at`; closed when dropped.
pub struct ProcDir(Transient);

impl ProcDir {
    pub fn open(path: &CStr) -> SysResult<ProcDir> {
        Transient::open(path, libc::O_RDONLY | libc::O_DIRECTORY).map(ProcDir)
    }
}

impl Drop for Transient {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TRANSIENT[i].store(0, std::sync::atomic::Ordering::Release);
        }
        close(self.fd);
    }
}

/// In a forked child with a table of its own: close the copies of the fds the parent's runtime
/// had open for a moment when it forked (`TRANSIENT`).
pub fn close_transient_copies() {
    for s in &TRANSIENT {
        let v = s.swap(0, std::sync::atomic::Ordering::AcqRel);
        if v > 0 {
            close(v - 1);
        }
    }
}

/// Read the start of a (proc) file into `buf` (one read), through an fd noted as `read_file`'s
/// are: the bytes read.
pub fn read_start(path: &CStr, buf: &mut [u8]) -> SysResult<usize> {
    let t = Transient::open(path, libc::O_RDONLY)?;
    read(t.fd, buf)
}

pub fn read_file(path: &CStr) -> SysResult<Vec<u8>> {
    read_transient(Transient::open(path, libc::O_RDONLY)?)
}

/// Read a whole (proc) file `name` of directory `dir` (a `ProcDir`), as `read_file` does: one
/// open relative to the directory instead of a walk of its path (a process of a tree holding
/// hundreds of fds reads the fdinfo of each in its pause: zdtm session03).
pub fn read_file_at(dir: &ProcDir, name: &CStr) -> SysResult<Vec<u8>> {
    read_transient(Transient::open_at(dir.0.fd, name, libc::O_RDONLY)?)
}

/// The rest of `read_file`: every byte of the file open at `t`, which is closed after. Only
/// what was read is allocated: during a checkpoint the allocator is an arena that frees nothing
/// (`alloc`), and a page of it per file read (an fdinfo of 100 bytes) was a page fault and a
/// page of memory each, for hundreds of fds in the pause of each process of a tree.
fn read_transient(t: Transient) -> SysResult<Vec<u8>> {
    let fd = t.fd;
    // Outside a checkpoint, the one size class such reads always had (`alloc::in_scratch`).
    let mut out = if crate::alloc::in_scratch() { Vec::new() } else { Vec::with_capacity(4096) };
    let mut buf = [0u8; 4096];
    let r = loop {
        match read(fd, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    drop(t);
    r.map(|_| out)
}

/// (In a checkpoint only the link's bytes are allocated: see `read_transient`.)
pub fn readlink(path: &CStr) -> SysResult<Vec<u8>> {
    let mut buf = [0u8; 4096];
    let (dir, p) = at(path);
    let n = syscall!(libc::SYS_readlinkat, dir, p, buf.as_mut_ptr(), buf.len())? as usize;
    if crate::alloc::in_scratch() {
        return Ok(buf[..n].to_vec());
    }
    let mut out = Vec::with_capacity(buf.len());
    out.extend_from_slice(&buf[..n]);
    Ok(out)
}

/// Names in a directory (via getdents64), without "." and "..".
pub fn list_dir(path: &CStr) -> SysResult<Vec<Vec<u8>>> {
    Ok(list_dir_inodes(path)?.into_iter().map(|(_, name)| name).collect())
}

/// Names in a directory with their inode numbers (getdents64's d_ino), without "." and "..".
pub fn list_dir_inodes(path: &CStr) -> SysResult<Vec<(u64, Vec<u8>)>> {
    let t = Transient::open(path, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let fd = t.fd;
    let mut names = Vec::new();
    // Not zeroed: only the pages the kernel writes are touched (see `read_transient`).
    let mut buf: Vec<u8> = Vec::with_capacity(16384);
    loop {
        let n = match syscall!(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.capacity()) {
            Ok(n) => n as usize,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        // SAFETY: getdents64 wrote n bytes (at most the capacity) at the start of buf.
        unsafe { buf.set_len(n) };
        let mut off = 0;
        while off < n {
            // linux_dirent64: ino u64, off i64, reclen u16, type u8, name[]
            let ino = u64::from_ne_bytes(buf[off..off + 8].try_into().unwrap_or([0; 8]));
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                names.push((ino, name.to_vec()));
            }
            off += reclen;
        }
    }
    drop(t);
    Ok(names)
}

pub fn mmap(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> SysResult<usize> {
    syscall!(libc::SYS_mmap, addr, len, prot, flags, fd, off).map(|a| a as usize)
}

pub fn munmap(addr: usize, len: usize) {
    let _ = syscall!(libc::SYS_munmap, addr, len);
}

/// The calling thread's TLS base without a system call (a thread in seccomp strict mode may
/// make none but read and write): the first word of the thread control block is its own address
/// (glibc, every thread).
pub fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: reads the first word of the calling thread's TCB, which glibc sets for every thread.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp
}

/// `thread_pointer`, if the thread's TLS is glibc's (its TCB's `self` word, 16 bytes in, is its
/// address too), so that the runtime's thread-locals are at their offsets from it; None for a
/// thread that set up a TLS of its own (raw clone with CLONE_SETTLS).
pub fn glibc_thread_pointer() -> Option<u64> {
    let (tp, me): (u64, u64);
    // SAFETY: reads the first and third words of the calling thread's TCB (see thread_pointer).
    unsafe { std::arch::asm!("mov {}, qword ptr fs:[0]", "mov {}, qword ptr fs:[16]", out(reg) tp, out(reg) me, options(nostack, readonly, preserves_flags)) };
    (tp != 0 && tp == me).then_some(tp)
}

pub fn arch_get_fs() -> u64 {
    let mut v: u64 = 0;
    let _ = syscall!(libc::SYS_arch_prctl, 0x1003, &mut v as *mut u64);
    v
}

/// Build a NUL-terminated path from parts without allocating through libc.
pub fn cpath(parts: &[&[u8]]) -> std::ffi::CString {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
    }
    std::ffi::CString::new(v).unwrap_or_default()
}


/// Where the runtime's own fds are moved, out of the program's way: the last 24 numbers below
/// the program's fd limit, or below 1024 when the limit is higher (so the kernel's fd table stays
/// small), as CRIU keeps its service fds at the end of the table. Programs pick fixed numbers
/// in the hundreds (dup2(fd, 999), a pipe at 700 + i): at 900 the runtime's link to the tree was
/// taken by such a dup2 (zdtm epoll). Computed once, at the first use.
static HIGH: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The lowest fd number of the runtime's own fds (see HIGH).
pub fn high_fd() -> i32 {
    let h = HIGH.load(std::sync::atomic::Ordering::Relaxed);
    if h > 0 {
        return h;
    }
    let mut lim = [0u64; 2];
    let cur = match syscall!(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE, 0, lim.as_mut_ptr()) {
        Ok(_) => lim[0],
        Err(_) => 1024,
    };
    let h = high_fd_for(cur);
    HIGH.store(h, std::sync::atomic::Ordering::Relaxed);
    h
}

/// `high_fd` of a process whose soft fd limit is `limit`.
pub fn high_fd_for(limit: u64) -> i32 {
    (limit.min(1024) as i32 - 24).max(3)
}

/// The identity (fd, st_dev, st_ino) of the runtime's own fds, so that an fd number the
/// program took over with dup2 (its file, not ours any more) is not mistaken for ours.
static OWN: [std::sync::atomic::AtomicU64; 24] = [const { std::sync::atomic::AtomicU64::new(0) }; 24];

fn identity(fd: i32) -> u64 {
    fstat(fd).map_or(0, |st| (st.st_ino ^ st.st_dev.rotate_left(48)) << 20 | (fd as u64 & 0xfffff))
}

/// Remember that `fd` is one of the runtime's own fds (see `still_own`), and mark it so in the
/// fd table itself (`mark`); returns it.
pub fn own(fd: i32) -> i32 {
    mark(fd);
    let id = identity(fd);
    let slot = OWN.iter().find(|s| s.load(std::sync::atomic::Ordering::Relaxed) & 0xfffff == fd as u64 & 0xfffff);
    let slot = slot.or_else(|| OWN.iter().find(|s| s.load(std::sync::atomic::Ordering::Relaxed) == 0));
    if let Some(s) = slot {
        s.store(id, std::sync::atomic::Ordering::Relaxed);
    }
    fd
}

/// Whether `fd` still holds the file the runtime put there (`own`).
pub fn still_own(fd: i32) -> bool {
    let id = identity(fd);
    id != 0 && OWN.iter().any(|s| s.load(std::sync::atomic::Ordering::Relaxed) == id)
}

/// The runtime's fds carry O_APPEND, which means nothing for what they are (sockets, event fds,
/// directories, userfaultfd: never a regular file), so that every process whose fd table is
/// this one knows them: a child made by clone with CLONE_FILES shares its parent's table, and
/// each sees the other's runtime fds, which no memory of its own lists (`foreign_own`).
fn mark(fd: i32) {
    if fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFREG) {
        if let Ok(fl) = syscall!(libc::SYS_fcntl, fd, libc::F_GETFL) {
            let _ = syscall!(libc::SYS_fcntl, fd, libc::F_SETFL, fl | libc::O_APPEND as i64);
        }
    }
}

/// Whether `fd` is a runtime fd (`mark`) of this process or of another one that shares this
/// fd table: at the end of the table, not a regular file, O_APPEND.
pub fn foreign_own(fd: i32) -> bool {
    fd >= high_fd()
        && syscall!(libc::SYS_fcntl, fd, libc::F_GETFL).is_ok_and(|fl| fl & libc::O_APPEND as i64 != 0 && fl & libc::O_PATH as i64 == 0)
        && fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFREG)
}

/// Set while a child made by clone with CLONE_FILES becomes a member: the runtime fds it finds
/// are its parent's (one table), not copies to close.
static TABLE_OF_PARENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_table_of_parent(on: bool) {
    TABLE_OF_PARENT.store(on, std::sync::atomic::Ordering::Release);
}

/// Close a runtime fd a new child inherited from its parent (its copy), unless the child shares
/// its parent's fd table (then it is the parent's own fd: only forgotten).
pub fn close_inherited(fd: i32) {
    if !TABLE_OF_PARENT.load(std::sync::atomic::Ordering::Acquire) {
        close(fd);
    }
}

/// In a forked child (a table of its own, copied): close the copies of runtime fds of the
/// processes that shared its parent's table (clone with CLONE_FILES), which no memory of its
/// own lists.
pub fn close_foreign_copies() {
    let Ok(names) = list_dir(&cpath(&[b"/proc/thread-self/fd"])) else { return };
    for fd in names.iter().filter_map(|n| std::str::from_utf8(n).ok()?.parse::<i32>().ok()) {
        if !still_own(fd) && (foreign_own(fd) || transient_copy(fd)) {
            close(fd);
        }
    }
}

/// Whether open-file flags `fl` are read-only with O_APPEND: the mark of a runtime's fd open for
/// a moment (`Transient`, `open_proc`).
pub fn transient_mark(fl: i64) -> bool {
    fl & libc::O_APPEND as i64 != 0 && fl & (libc::O_ACCMODE | libc::O_PATH) as i64 == 0
}

/// Whether `fd` is the copy of an fd the parent's runtime had open for a moment (`Transient`):
/// read-only, O_APPEND, on another process's /proc directory or a file in it.
fn transient_copy(fd: i32) -> bool {
    if !syscall!(libc::SYS_fcntl, fd, libc::F_GETFL).is_ok_and(transient_mark) {
        return false;
    }
    let link = readlink(&cpath(&[b"/proc/thread-self/fd/", &decimal(fd)])).unwrap_or_default();
    let own = [&b"/proc/"[..], &decimal(getpid())].concat();
    link.strip_prefix(b"/proc/").is_some_and(|r| r.first().is_some_and(u8::is_ascii_digit)) && !(link.starts_with(&own) && matches!(link.get(own.len()), None | Some(b'/')))
}

/// Set the calling thread's errno (for hooks that fail as libc would).
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location gives the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// The runtime's own fds that still are (`still_own`), and those of the processes this fd table
/// is shared with, in increasing order: (fds, count).
pub fn own_fds() -> ([i32; 64], usize) {
    let mut out = [0i32; 64];
    let mut n = 0;
    for s in &OWN {
        let id = s.load(std::sync::atomic::Ordering::Relaxed);
        let fd = (id & 0xfffff) as i32;
        if id != 0 && !out[..n].contains(&fd) && still_own(fd) {
            out[n] = fd;
            n += 1;
        }
    }
    // Those of the processes this fd table is shared with (`foreign_own`).
    for fd in high_fd()..high_fd() + 64 {
        if n < out.len() && !out[..n].contains(&fd) && foreign_own(fd) {
            out[n] = fd;
            n += 1;
        }
    }
    out[..n].sort_unstable();
    (out, n)
}

/// Move `fd` to a number >= high_fd() (close-on-exec); the same fd if that fails.
pub fn move_high(fd: i32) -> i32 {
    match syscall!(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, high_fd()) {
        Ok(hi) => {
            close(fd);
            hi as i32
        }
        Err(_) => fd,
    }
}

pub fn geteuid() -> u32 {
    syscall!(libc::SYS_geteuid).unwrap_or(-1i64 as u64 as i64) as u32
}

/// lstat of `name` relative to the directory fd `dir` (symbolic links are not followed).
pub fn stat_at(dir: i32, name: &CStr) -> SysResult<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(libc::SYS_newfstatat, dir, name.as_ptr(), &mut st as *mut libc::stat, libc::AT_SYMLINK_NOFOLLOW)?;
    Ok(st)
}

/// stat of `path`, following symbolic links (/proc/PID/fd/N: the file itself).
pub fn stat(path: &CStr) -> SysResult<libc::stat> {
    let (dir, p) = at(path);
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(libc::SYS_newfstatat, dir, p, &mut st as *mut libc::stat, 0)?;
    Ok(st)
}

pub fn fstat(fd: i32) -> SysResult<libc::stat> {
    // SAFETY: an all-zero struct stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(libc::SYS_fstat, fd, &mut st as *mut libc::stat)?;
    Ok(st)
}

/// statfs's f_type of /proc.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// sockfs's (linux/magic.h SOCKFS_MAGIC): the file of a socket, not an O_PATH fd of its name.
pub const SOCKFS_MAGIC: i64 = 0x534f434b;

/// The type of the file system `fd` is on (statfs's f_type).
pub fn fs_type(fd: i32) -> SysResult<i64> {
    // SAFETY: an all-zero struct statfs is a valid out-parameter.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    syscall!(libc::SYS_fstatfs, fd, &mut fs as *mut libc::statfs)?;
    Ok(fs.f_type as i64)
}

/// 16 hex digits from the kernel's random source (getrandom; the clock if that fails).
pub fn random_hex() -> Vec<u8> {
    let mut x: u64 = 0;
    if syscall!(libc::SYS_getrandom, &mut x as *mut u64, 8, 0) != Ok(8) {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        let _ = syscall!(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts as *mut libc::timespec);
        x = (ts.tv_sec as u64).wrapping_mul(1_000_000_007) ^ ts.tv_nsec as u64 ^ ((getpid() as u64) << 40);
    }
    (0..16).map(|i| b"0123456789abcdef"[((x >> (60 - 4 * i)) & 15) as usize]).collect()
}

/// "uid 1001 (alice)" from /etc/passwd read with raw system calls (no NSS: safe anywhere), or
/// "uid 1001".
pub fn describe_user(uid: u32) -> String {
    if !uid_mapped(uid) {
        // The program's user namespace (ckpt-ns) maps only its user: whoever owns this shows
        // as the overflow uid, and is someone else.
        return format!("another user (uid {uid}: not mapped in the program's user namespace)");
    }
    let want = decimal(uid as i32);
    let passwd = read_file(&cpath(&[b"/etc/passwd"])).unwrap_or_default();
    let name = passwd.split(|&b| b == b'\n').find_map(|line| {
        let mut f = line.split(|&b| b == b':');
        let name = f.next()?;
        (f.nth(1)? == &want[..]).then_some(name)
    });
    match name {
        Some(n) => format!("uid {uid} ({})", String::from_utf8_lossy(n)),
        None => format!("uid {uid}"),
    }
}

/// Whether `uid` is one of this user namespace's (/proc/self/uid_map: inside, outside, count
/// per line), rather than the overflow uid standing for an unmapped owner.
fn uid_mapped(uid: u32) -> bool {
    let map = read_file(&cpath(&[b"/proc/self/uid_map"])).unwrap_or_default();
    let num = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<u64>().ok();
    let mut lines = map.split(|&b| b == b'\n').filter(|l| !l.is_empty()).peekable();
    if lines.peek().is_none() {
        return true; // unreadable: name the uid as it is
    }
    lines.any(|line| {
        let mut f = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
        match (f.next().and_then(num), f.nth(1).and_then(num)) {
            (Some(inside), Some(count)) => (inside..inside + count).contains(&u64::from(uid)),
            _ => false,
        }
    })
}

/// A relative timeout in milliseconds as a timespec.
pub fn timespec_ms(ms: u64) -> libc::timespec {
    libc::timespec { tv_sec: (ms / 1000) as i64, tv_nsec: ((ms % 1000) * 1_000_000) as i64 }
}

/// A non-negative number in decimal, without going through the formatting machinery.
pub fn decimal(x: i32) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    let mut x = x as u32;
    loop {
        v.push(b'0' + (x % 10) as u8);
        x /= 10;
        if x == 0 {
            break;
        }
    }
    v.reverse();
    v
}
