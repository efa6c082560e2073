//! Whether a live process of the tree that has not joined it yet (no connection to the
//! coordinator) will: a fact read from /proc instead of a fixed wait.
//!
//! The runtime connects from its constructor (a program started or exec'd with it preloaded) and
//! from its fork handler (a child of a member). A process whose memory holds the runtime library
//! is one of those (or is still in the execve of a member, whose old memory it still shows): it
//! will connect, however long a loaded machine takes to run it. One whose exec is over without
//! the runtime mapped never will when its program is static (no dynamic loader to preload it:
//! no PT_INTERP in the file it runs): it is refused at once, by name, instead of after a wait
//! (once that has held for `SURE`). A dynamic program without the runtime (started without it in
//! LD_PRELOAD) is given up as below: the file named in LD_PRELOAD may be any (CKPT_RUNTIME).
//!
//! A process with the runtime mapped that still does not connect (a child made by a raw clone
//! system call, whose fork handler never runs; one that closed the runtime's fds) is given up
//! once it has had `CHANCE` of its own time since it was first seen: running or asleep, but not
//! waiting for a CPU (the scheduler's run-queue wait, /proc/PID/schedstat). A process that waits
//! for a CPU on a loaded machine is waited for (the caller bounds the whole wait); on a quiet
//! one this is the 5 s the coordinator used to wait for every process.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

/// The file name of ckpt's runtime library (the launcher's `RUNTIME_LIB`).
const RUNTIME_LIB: &[u8] = b"libckpt_runtime.so";

/// How much of its own time (not waiting for a CPU) a process with the runtime may take
/// without joining.
const CHANCE: Duration = Duration::from_secs(5);

/// What was seen of the processes not joined yet, over one wait.
#[derive(Default)]
pub struct Watch {
    seen: HashMap<i32, Seen>,
    /// The processes `never` said so of, and when it first did: it must say so again at
    /// least `SURE` later (an exec under way shows states no finished one has).
    never: HashMap<i32, Instant>,
}

/// How long `never`'s verdict must hold before it counts.
const SURE: Duration = Duration::from_millis(300);

struct Seen {
    at: Instant,
    /// Its run-queue wait (ns) then, if the kernel tells.
    queued: Option<u64>,
}

impl Watch {
    /// Whether none of `left` (live processes of the tree not joined) is worth waiting for any
    /// more: each never will join (`never`) or had its chance (see the module comment).
    pub fn settled(&mut self, left: &[i32]) -> bool {
        self.seen.retain(|p, _| left.contains(p));
        self.never.retain(|p, _| left.contains(p));
        let now = Instant::now();
        let mut all = true;
        for &pid in left {
            if never(pid) {
                let since = *self.never.entry(pid).or_insert(now);
                if now.duration_since(since) < SURE {
                    all = false;
                }
                continue;
            }
            self.never.remove(&pid);
            let queued = run_queue_wait(pid);
            let s = self.seen.entry(pid).or_insert(Seen { at: now, queued });
            let waited = match (s.queued, queued) {
                (Some(a), Some(b)) => Duration::from_nanos(b.saturating_sub(a)),
                _ => Duration::ZERO,
            };
            if now.duration_since(s.at).saturating_sub(waited) < CHANCE {
                all = false;
            }
        }
        all
    }

    /// The processes of the last `settled` whose `never` verdict held for `SURE`.
    pub fn never_joining(&self) -> Vec<i32> {
        let now = Instant::now();
        self.never.iter().filter(|(_, t)| now.duration_since(**t) >= SURE).map(|(p, _)| *p).collect()
    }
}

/// How long (ns) process `pid`'s main thread has waited for a CPU in all (the second field of
/// /proc/PID/schedstat); None when the kernel does not tell.
fn run_queue_wait(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Whether process `pid` (live, not a member) never will connect: its exec is over, and it runs
/// without the runtime and cannot load it any more. False whenever /proc does not tell for sure
/// (it ended, or its exec is under way).
pub fn never(pid: i32) -> bool {
    let Ok(maps) = std::fs::read(format!("/proc/{pid}/maps")) else { return false };
    if maps.is_empty() || maps.split(|&b| b == b'\n').any(|l| l.ends_with(RUNTIME_LIB)) {
        return false;
    }
    dynamic(pid) == Some(false)
}

/// Whether the program of `pid` asks for a dynamic loader (PT_INTERP); None: not readable.
fn dynamic(pid: i32) -> Option<bool> {
    let mut f = std::fs::File::open(format!("/proc/{pid}/exe")).ok()?;
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    // Only x86-64 programs (64-bit little-endian ELF) are told; anything else is not known.
    if &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[32..40].try_into().ok()?);
    let (phentsize, phnum) = (u16_at(&head, 54), u16_at(&head, 56));
    if phentsize < 4 || phnum == 0 || phnum > 4096 {
        return None;
    }
    let mut table = vec![0u8; phentsize * phnum];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut table, phoff).ok()?;
    const PT_INTERP: u32 = 3;
    Some(table.chunks(phentsize).any(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) == PT_INTERP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_dynamic_so_it_may_still_join() {
        let me = std::process::id() as i32;
        assert_eq!(dynamic(me), Some(true));
        assert!(!never(me));
    }
}
