//! The address-space switch: a position-independent routine, copied into a hole that overlaps
//! neither the image nor the restarter, that executes a prepared list of raw system calls (move
//! vdso, move staged regions into place, unmap the restarter, protections, mm fields, signal
//! dispositions, TLS) and then jumps into the runtime's restart entry. It uses no stack and no
//! memory but its parameter block, so it survives the restarter's own memory vanishing.

use std::arch::global_asm;

global_asm!(
    ".globl ckpt_switch_start",
    ".globl ckpt_switch_end",
    ".p2align 4",
    "ckpt_switch_start:",
    // rdi = params: [0] nops, [8] ops, [16] msg, [24] msg_len, [32] sp, [40] pc, [48] arg,
    // [56] msg_fd
    "    mov r12, rdi",
    "    mov r13, [r12 + 8]",
    "    mov r14, [r12]",
    "    xor r15, r15",
    "2:",
    "    cmp r15, r14",
    "    jae 3f",
    "    mov rax, [r13]",
    "    mov rdi, [r13 + 8]",
    "    mov rsi, [r13 + 16]",
    "    mov rdx, [r13 + 24]",
    "    mov r10, [r13 + 32]",
    "    mov r8, [r13 + 40]",
    "    mov r9, [r13 + 48]",
    "    syscall",
    "    test qword ptr [r13 + 56], 1",
    "    jz 4f",
    "    cmp rax, -4095",
    "    jae 5f",
    "4:",
    "    add r13, 64",
    "    inc r15",
    "    jmp 2b",
    "3:",
    "    mov rsp, [r12 + 32]",
    "    mov rdi, [r12 + 48]",
    "    mov rax, [r12 + 40]",
    "    xor ebp, ebp",
    "    jmp rax",
    "5:",
    "    mov eax, 1",
    "    mov rdi, [r12 + 56]",
    "    mov rsi, [r12 + 16]",
    "    mov rdx, [r12 + 24]",
    "    syscall",
    "    mov eax, 231",
    "    mov rdi, 125",
    "    syscall",
    "    ud2",
    "ckpt_switch_end:",
);

extern "C" {
    static ckpt_switch_start: u8;
    static ckpt_switch_end: u8;
}

/// The routine's machine code.
pub fn code() -> &'static [u8] {
    // SAFETY: both symbols delimit the routine above in our text segment.
    unsafe {
        let s = &ckpt_switch_start as *const u8;
        let e = &ckpt_switch_end as *const u8;
        std::slice::from_raw_parts(s, e as usize - s as usize)
    }
}

/// One system call of the switch: number, six arguments, and whether failure is fatal.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub nr: u64,
    pub args: [u64; 6],
    pub fatal: u64,
}

impl Op {
    pub fn new(nr: i64, args: &[u64], fatal: bool) -> Op {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Op { nr: nr as u64, args: a, fatal: fatal as u64 }
    }
}

/// The parameter block header the routine reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Params {
    pub nops: u64,
    pub ops: u64,
    pub msg: u64,
    pub msg_len: u64,
    pub sp: u64,
    pub pc: u64,
    pub arg: u64,
    /// Where the failure message goes: our stderr (`ckpt_kinds::say::fd`), which the last op
    /// closes when it is a dup of ours (fd 2 may be the program's by then).
    pub msg_fd: u64,
}

/// Jump into the switch routine at `code` with `params`, on `stack`. Never returns.
///
/// # Safety
/// code, params and stack must be prepared in a mapping that the switch keeps, with every
/// signal blocked and this the only thread.
pub unsafe fn enter(code: u64, params: u64, stack: u64) -> ! {
    // SAFETY: the caller prepared everything; we leave Rust for good.
    unsafe {
        std::arch::asm!(
            "mov rsp, {stack}",
            "jmp {code}",
            stack = in(reg) stack,
            code = in(reg) code,
            in("rdi") params,
            options(noreturn)
        )
    }
}
