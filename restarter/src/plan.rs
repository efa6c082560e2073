//! Prepares the switch: the list of system calls that turns this process into the program, the
//! parameter block they use, and the checks that must pass before any of it runs (vdso layout).

use crate::layout::{self, page_up, Mapping, PAGE};
use crate::stage::Plan;
use crate::switch::{self, Op, Params};
use anyhow::{bail, Result};
use ckpt_image::{Backing, Index, RestartInfo, RestartThread};

const SPECIALS: [&str; 3] = ["[vvar]", "[vvar_vclock]", "[vdso]"];
const SWITCH_STACK: u64 = 64 * 1024;
const MSG: &[u8] = b"ckpt-restart: the address-space switch failed; the program cannot continue\n";

/// The image's vdso/vvar areas must match ours in size (they are moved, not restored), and the
/// vdso code must be the same (glibc caches entry points into it). One the program had unmapped
/// is not in the image: ours goes with the restarter's mappings at the switch.
pub fn check_vdso(index: &Index, own: &[Mapping]) -> Result<()> {
    let theirs = |name: &str| index.regions.iter().filter(|r| r.backing == Backing::Special && r.name == name.as_bytes()).collect::<Vec<_>>();
    for name in SPECIALS {
        let ours: Vec<_> = own.iter().filter(|m| m.name == name).collect();
        match (theirs(name).as_slice(), ours.as_slice()) {
            ([], _) => {}
            ([t], [o]) if t.len() == o.end - o.start => {}
            _ => bail!("the kernel's {name} layout differs from the image's (was it taken under another kernel?)"),
        }
    }
    if let Some(o) = own.iter().find(|m| m.name == "[vdso]").filter(|_| !theirs("[vdso]").is_empty()) {
        // SAFETY: our own [vdso] mapping is readable.
        let bytes = unsafe { std::slice::from_raw_parts(o.start as *const u8, (o.end - o.start) as usize) };
        if ckpt_image::checksum(bytes) != index.meta.vdso_hash {
            bail!("this kernel's vdso differs from the one in the image (taken under kernel {}); restart on the same kernel", index.meta.kernel);
        }
    }
    Ok(())
}

/// Wait until this is the process's only thread (up to 2 s): the switch unmaps the restarter's
/// code and stacks, and a thread of ours still running (even only its exit, after a join that
/// did not wait for it) would fault there and kill the restarted program. Staging joins its
/// threads; this only makes sure. Returns how many polls it took (0: alone at once).
pub fn wait_alone() -> Result<u32> {
    let others = || std::fs::read_dir("/proc/self/task").map(|d| d.count().saturating_sub(1));
    for polls in 0..2000 {
        match others()? {
            0 => return Ok(polls),
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    bail!("internal: {} other threads of ckpt-restart still run; the address-space switch would pull their code from under them", others()?)
}

fn max_ops(index: &Index) -> usize {
    index.regions.len() * 6 + crate::attrs::max_region_ops(&index.regions) + index.process.sigactions.len() + 64
}

/// The longest image path handed to the runtime for its line (longer ones are cut).
const NOTE_PATH_MAX: usize = 1024;

/// Room for a step task's map of the step's listeners (RestartInfo::addr_map): about 16000
/// moved listener addresses.
pub const ADDR_MAP_MAX: usize = 1 << 20;

/// What the runtime says once the restarted program runs (see RestartInfo).
pub struct Note<'a> {
    pub path: &'a [u8],
    pub memory: u64,
    pub started_ns: u64,
    pub log_level: u8,
    /// A task of a step: the restarted step's epoch (see RestartInfo::step_epoch), else 0.
    pub step_epoch: u64,
    /// A task of a step: where the step's listeners are now (RestartInfo::addr_map).
    pub addr_map: &'a [u8],
    /// The outer process's /proc/PID directory (RestartInfo::outer_proc_fd; -1: none).
    pub outer_proc_fd: i32,
}

fn params_len(index: &Index) -> u64 {
    let n = std::mem::size_of::<Params>()
        + max_ops(index) * std::mem::size_of::<Op>()
        + index.process.sigactions.len() * 32
        + 128
        + index.process.auxv.len() * 8
        + std::mem::size_of::<RestartInfo>()
        + index.threads.len() * std::mem::size_of::<RestartThread>()
        + index.fds.len() * std::mem::size_of::<ckpt_image::RestartPidFd>()
        + (crate::tree::handoffs().len() + index.fds.len()) * std::mem::size_of::<ckpt_image::RestartHandoff>()
        + 2 * std::mem::size_of::<PrctlMmMap>()
        + MSG.len()
        + NOTE_PATH_MAX
        + index.process.root.len()
        + if index.step.is_some() || crate::treelisten::in_step() { ADDR_MAP_MAX } else { 0 }
        + 256;
    page_up(n as u64)
}

fn specials_len(index: &Index) -> u64 {
    index.regions.iter().filter(|r| r.backing == Backing::Special).map(|r| r.len()).sum()
}

/// Bytes of the switch area: code, parameters, a stack, and room to park the vdso in transit.
pub fn switch_area_len(index: &Index) -> u64 {
    PAGE + params_len(index) + SWITCH_STACK + specials_len(index)
}

/// A bump writer into the parameter area.
struct Block {
    base: u64,
    off: u64,
    end: u64,
}

impl Block {
    fn put<T: Copy>(&mut self, v: &T) -> u64 {
        self.put_slice(std::slice::from_ref(v))
    }
    fn put_slice<T: Copy>(&mut self, v: &[T]) -> u64 {
        let align = std::mem::align_of::<T>().max(8) as u64;
        self.off = (self.off + align - 1) & !(align - 1);
        let at = self.base + self.off;
        let bytes = std::mem::size_of_val(v) as u64;
        assert!(self.base + self.off + bytes <= self.end, "switch parameter block overflow");
        // SAFETY: [at, at + bytes) lies in the mapped parameter area (checked above).
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr() as *const u8, at as *mut u8, bytes as usize) };
        self.off += bytes;
        at
    }
}

pub struct Prepared {
    code: u64,
    params: u64,
    stack: u64,
}

/// The kernel's struct prctl_mm_map.
#[repr(C)]
#[derive(Clone, Copy)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// Map the switch area at `base` and fill in code, operations and parameters.
/// `image_hash` is the restarted image's header index_hash: the program's next checkpoint may be
/// an increment over it.
/// `table`: the page hash table for the next increment (address, bytes; 0: none).
/// `exe`: an fd on the program's executable when the restart may make it /proc/self/exe.
#[allow(clippy::too_many_arguments)]
pub fn prepare(index: &Index, image_hash: u64, plan: &Plan, own: &[Mapping], table: (u64, u64), base: u64, len: u64, note: &Note, exe: Option<i32>) -> Result<Prepared> {
    // SAFETY: base..base+len is the unused tail of our staging reservation.
    let p = unsafe {
        libc::mmap(
            base as *mut libc::c_void,
            len as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        bail!("cannot map the switch area: {}", std::io::Error::last_os_error());
    }
    let code = switch::code();
    assert!(code.len() as u64 <= PAGE);
    // SAFETY: the first page of the area is ours and writable.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), base as *mut u8, code.len()) };
    let params_base = base + PAGE;
    let params_end = params_base + params_len(index);
    let stack_top = params_end + SWITCH_STACK;
    let mut park = stack_top; // vdso parking space follows the stack
    let mut blk = Block { base: params_base, off: std::mem::size_of::<Params>() as u64, end: params_end };

    let mut ops: Vec<Op> = Vec::new();
    let fixed = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    // 1. vdso and vvar: ours go to where the program had them (via a parking spot, as the
    //    old and new ranges may overlap).
    let mut moves = Vec::new();
    for name in SPECIALS {
        let (Some(o), Some(t)) = (
            own.iter().find(|m| m.name == name),
            index.regions.iter().find(|r| r.backing == Backing::Special && r.name == name.as_bytes()),
        ) else {
            continue;
        };
        let l = o.end - o.start;
        ops.push(Op::new(libc::SYS_mremap, &[o.start, l, l, fixed, park], true));
        moves.push((park, l, t.start));
        park += l;
    }
    for (from, l, to) in moves {
        ops.push(Op::new(libc::SYS_mremap, &[from, l, l, fixed, to], true));
    }
    // 2. staged regions into place.
    for pc in &plan.pieces {
        ops.push(Op::new(libc::SYS_mremap, &[pc.staged, pc.len, pc.len, fixed, pc.target], true));
    }
    // 3. empty regions.
    for &(start, l, prot, flags) in &plan.empty {
        ops.push(Op::new(libc::SYS_mmap, &[start, l, prot as u64, flags as u64, u64::MAX, 0], true));
    }
    // 4. everything else goes: the restarter, its heap and stack, the staging leftovers.
    let mut keep: Vec<(u64, u64)> = index.regions.iter().map(|r| (r.start, r.end)).collect();
    keep.push((base, base + len));
    if table.1 != 0 {
        keep.push((table.0, table.0 + table.1));
    }
    for (s, e) in layout::complement(&keep) {
        ops.push(Op::new(libc::SYS_munmap, &[s, e - s], false));
    }
    // 5. final protections.
    for pc in &plan.pieces {
        ops.push(Op::new(libc::SYS_mprotect, &[pc.target, pc.len, pc.prot as u64], true));
    }
    // 5b. guard pages, advice and locks of the regions.
    ops.extend(crate::attrs::region_ops(&index.regions));
    // 6. mm fields (brk, arg/env, auxv), unprivileged through PR_SET_MM_MAP.
    let mm = &index.process.mm;
    let auxv_at = blk.put_slice(&index.process.auxv);
    let map = PrctlMmMap {
        start_code: mm.start_code,
        end_code: mm.end_code,
        start_data: mm.start_data,
        end_data: mm.end_data,
        start_brk: mm.start_brk,
        brk: mm.brk,
        start_stack: mm.start_stack,
        arg_start: mm.arg_start,
        arg_end: mm.arg_end,
        env_start: mm.env_start,
        env_end: mm.env_end,
        auxv: auxv_at,
        auxv_size: (index.process.auxv.len() * 8) as u32,
        exe_fd: u32::MAX,
    };
    let map_at = blk.put(&map);
    let map_len = std::mem::size_of::<PrctlMmMap>() as u64;
    if mm.start_code != 0 {
        ops.push(Op::new(libc::SYS_prctl, &[libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64, map_at, map_len, 0], true));
    }
    // 6b. memory-related process attributes; the executable, where allowed (the same fields
    // again with exe_fd: a failure there must not undo the first call).
    let exe_map = exe.filter(|_| mm.start_code != 0).map(|fd| (blk.put(&PrctlMmMap { exe_fd: fd as u32, ..map }), map_len, fd));
    ops.extend(crate::attrs::late_ops(&index.process.attrs, exe_map));
    // 7. signal dispositions (their handlers live in the memory now in place).
    for sa in &index.process.sigactions {
        let k = [sa.handler, sa.flags, sa.restorer, sa.mask];
        let at = blk.put(&k);
        ops.push(Op::new(libc::SYS_rt_sigaction, &[sa.signo as u64, at, 0, 8], false));
    }
    // 8. the checkpoint thread's identity and TLS.
    let e = &index.entry;
    ops.push(Op::new(libc::SYS_set_tid_address, &[e.tid_address], false));
    if e.robust_head != 0 {
        ops.push(Op::new(libc::SYS_set_robust_list, &[e.robust_head, e.robust_len], false));
    }
    // 9. sealed regions, after every other change to them.
    ops.extend(crate::attrs::seal_ops(&index.regions));
    ops.push(Op::new(libc::SYS_arch_prctl, &[0x1002 /* ARCH_SET_FS */, e.fs_base], true));
    if ops.len() > max_ops(index) {
        bail!("internal: too many switch operations");
    }

    let threads: Vec<RestartThread> = index
        .threads
        .iter()
        .map(|t| RestartThread {
            tid: t.tid,
            altstack_flags: t.altstack_flags,
            ucontext: t.ucontext,
            fs_base: t.fs_base,
            tid_address: t.tid_address,
            robust_head: t.robust_head,
            robust_len: t.robust_len,
            altstack_sp: t.altstack_sp,
            altstack_size: t.altstack_size,
            rseq: t.rseq as u64,
            attrs: t.attrs,
        })
        .collect();
    let threads_at = blk.put_slice(&threads);
    let pidfds = crate::threadpidfds::records(index);
    let pidfds_at = blk.put_slice(&pidfds);
    let handoffs = crate::handpidfds::records();
    let handoffs_at = blk.put_slice(&handoffs);
    let path = &note.path[..note.path.len().min(NOTE_PATH_MAX)];
    let path_at = blk.put_slice(path);
    let root = crate::root::changed(&index.process).unwrap_or_default();
    let root_at = blk.put_slice(root);
    let addr_map_at = if note.addr_map.is_empty() { 0 } else { blk.put_slice(note.addr_map) };
    let info = RestartInfo {
        magic: RestartInfo::MAGIC,
        switch_base: base,
        switch_len: len,
        threads: threads_at,
        nthreads: threads.len() as u64,
        image_hash,
        chain: u64::from(index.meta.chain),
        page_table: table.0,
        page_table_len: table.1,
        started_ns: note.started_ns,
        memory: note.memory,
        generation: index.meta.generation,
        path: path_at,
        path_len: path.len() as u64,
        log_level: u64::from(note.log_level),
        outer_pid: outer_pid(),
        dir_dev: trusted_dir().0,
        dir_ino: trusted_dir().1,
        step_epoch: note.step_epoch,
        root: root_at,
        root_len: root.len() as u64,
        pidfds: pidfds_at,
        npidfds: pidfds.len() as u64,
        addr_map: addr_map_at,
        addr_map_len: note.addr_map.len() as u64,
        outer_proc_fd: i64::from(note.outer_proc_fd),
        handoffs: handoffs_at,
        nhandoffs: handoffs.len() as u64,
    };
    let info_at = blk.put(&info);
    let msg_at = blk.put_slice(MSG);
    // Our messages' dup of ckpt-restart's stderr (`ckpt_kinds::say`): the failure message goes
    // there, and the last op closes it, so that the program never sees it.
    let msg_fd = ckpt_kinds::say::fd();
    if msg_fd > 2 {
        ops.push(Op::new(libc::SYS_close, &[msg_fd as u64], false));
    }
    let ops_at = blk.put_slice(&ops);
    let params = Params { nops: ops.len() as u64, ops: ops_at, msg: msg_at, msg_len: MSG.len() as u64, sp: e.sp, pc: e.pc, arg: info_at, msg_fd: msg_fd as u64 };
    // SAFETY: the header slot at the start of the parameter area was reserved.
    unsafe { std::ptr::write(params_base as *mut Params, params) };
    // SAFETY: making our own code page executable.
    if unsafe { libc::mprotect(base as *mut libc::c_void, PAGE as usize, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
        bail!("cannot make the switch code executable: {}", std::io::Error::last_os_error());
    }
    Ok(Prepared { code: base, params: params_base, stack: stack_top & !15 })
}

/// The image directory the outer ckpt-restart checked from outside the namespace
/// (CKPT_TRUSTED_DIR=DEV:INO), when it started us.
pub(crate) fn trusted_dir() -> (u64, u64) {
    let v = std::env::var("CKPT_TRUSTED_DIR").ok().filter(|_| crate::namespace::started_by_init());
    v.and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse().ok()?, i.parse().ok()?))
    })
    .unwrap_or((0, 0))
}

/// The pid outside tools know the program by: the namespace's outer process (CKPT_OUTER_PID)
/// for the process init started and for every process of a tree restarted with it (each must
/// join the tree's coordinator again); 0 without a namespace (the runtime then uses its own).
/// The outer process's pid may be the program's own number in its namespace (a tree nested in
/// another's namespace, whose outer process got the pid the program had there): still outer.
pub(crate) fn outer_pid() -> u64 {
    let inside = crate::namespace::started_by_init() || crate::tree::in_tree();
    std::env::var("CKPT_OUTER_PID").ok().and_then(|p| p.parse().ok()).filter(|_| inside).unwrap_or(0)
}

extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// Leave the restarter for good: block signals, drop our rseq and sigaltstack, and switch.
///
/// # Safety
/// Must be called on the only thread, after `prepare`.
pub unsafe fn go(p: Prepared) -> ! {
    // SAFETY: plain system calls on our own thread; after them we only run the switch.
    unsafe {
        let all: u64 = !0;
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, 0, 8);
        // The kernel keeps writing into a registered rseq area: ours is about to vanish.
        if __rseq_size != 0 {
            let mut fs: u64 = 0;
            libc::syscall(libc::SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &mut fs as *mut u64);
            let area = (fs as i64 + __rseq_offset as i64) as u64;
            let ok = [32u32, __rseq_size].iter().any(|&len| libc::syscall(libc::SYS_rseq, area, len, 1, 0x5305_3053u32) == 0);
            if !ok {
                ckpt_kinds::say!("ckpt-restart: warning: cannot unregister rseq: {}", std::io::Error::last_os_error());
            }
        }
        let ss = libc::stack_t { ss_sp: std::ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
        libc::sigaltstack(&ss, std::ptr::null_mut());
        switch::enter(p.code, p.params, p.stack)
    }
}
