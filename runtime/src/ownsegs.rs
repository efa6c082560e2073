//! The runtime library's own writable memory: its writable PT_LOAD segments (.data, .got, .bss
//! and the rest), read from its ELF program headers as loaded, whatever the linker made of them.
//!
//! A background snapshot must leave this memory unprotected (bgtake::kernel_written): the
//! runtime writes it while the snapshot is taken (the writer's allocator state, the checkpoint
//! counters, the dispatch state) and the kernel writes some of it for the runtime's own system
//! calls. Finding it through one variable's mapping did not do: the .bss is split between the
//! last page of the file mapping and an anonymous mapping after it, and which variable lies in
//! which depends on the build.
//!
//! No libc and no allocation: the headers are read from memory (they lie in the first loaded
//! segment), so this works while the program's threads are stopped.

extern "C" {
    /// The ELF header of this object, defined by the linker (GNU ld and lld), hidden.
    static __ehdr_start: libc::Elf64_Ehdr;
}

const PAGE: u64 = 4096;
/// At most this many writable segments (a shared object has one or two).
const MAX: usize = 8;

/// The writable segments, page-aligned (start, end), and how many there are.
pub fn writable() -> ([(u64, u64); MAX], usize) {
    let mut out = [(0u64, 0u64); MAX];
    let mut n = 0;
    // SAFETY: the linker's symbol for our own ELF header, which is mapped (part of the first
    // loaded segment); the program headers it points to are in that segment too.
    let ehdr = unsafe { &__ehdr_start };
    let base = ehdr as *const libc::Elf64_Ehdr as u64;
    if ehdr.e_phentsize as usize != std::mem::size_of::<libc::Elf64_Phdr>() {
        return (out, 0);
    }
    // SAFETY: e_phnum program headers at e_phoff from the header, in mapped memory (see above).
    let phdrs = unsafe { std::slice::from_raw_parts((base + ehdr.e_phoff) as *const libc::Elf64_Phdr, ehdr.e_phnum as usize) };
    // The load bias: where the segment holding the ELF header (file offset 0) was put.
    let Some(first) = phdrs.iter().find(|p| p.p_type == libc::PT_LOAD && p.p_offset == 0) else { return (out, 0) };
    let bias = base.wrapping_sub(first.p_vaddr);
    for p in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W != 0) {
        if n == MAX {
            break;
        }
        let start = bias.wrapping_add(p.p_vaddr) & !(PAGE - 1);
        let end = bias.wrapping_add(p.p_vaddr).wrapping_add(p.p_memsz).div_ceil(PAGE) * PAGE;
        out[n] = (start, end);
        n += 1;
    }
    (out, n)
}

/// Whether `addr` lies in the runtime's writable memory.
#[cfg(test)]
fn contains(addr: u64) -> bool {
    let (segs, n) = writable();
    segs[..n].iter().any(|&(s, e)| s <= addr && addr < e)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    static IN_DATA: AtomicU64 = AtomicU64::new(7);
    static IN_BSS: AtomicU64 = AtomicU64::new(0);
    static BIG_BSS: [AtomicU64; 4096] = [const { AtomicU64::new(0) }; 4096];

    #[test]
    fn every_variable_lies_in_a_writable_segment() {
        IN_DATA.fetch_add(1, Ordering::Relaxed);
        for a in [IN_DATA.as_ptr() as u64, IN_BSS.as_ptr() as u64, BIG_BSS[0].as_ptr() as u64, BIG_BSS[4095].as_ptr() as u64] {
            assert!(super::contains(a), "{a:#x} is not in {:x?}", super::writable());
        }
        let here = 0u64;
        assert!(!super::contains(&here as *const u64 as u64), "the stack is not the runtime's");
    }
}
