//! One image restarted many times while every core is busy: each restart must continue the
//! program to the uninterrupted run's result.
//!
//! ckpt-restart hashes the memory it restores on several threads (the page hash table for the
//! next increment) and then unmaps its own code and stacks in the address-space switch. A thread
//! of its own still running then (ending after a scope that did not join it) faulted in unmapped
//! code and killed the restarted program with SIGSEGV, in some restarts, more often under load.
//! The race cannot be forced from outside; busy cores and repeated restarts of an image with
//! tracked memory (bigheap, increments on by default) make it show within a few restarts.

use anyhow::{Context, Result};
use ckpt_tests::scenario::{checkpoint_and_kill, effective_uid, run_restart};
use ckpt_tests::{run_plain, Bins, Options, Outcome, Program, Workdir};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const RESTARTS: usize = 32;

/// Threads of the test process spinning on every core until dropped.
struct Busy {
    stop: &'static AtomicBool,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    fn start() -> Busy {
        let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let threads = (0..n)
            .map(|_| {
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Busy { stop, threads }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn bigheap_image_restarted_many_times_on_busy_cores() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("restart-repeated")?;
    let program = Program::c(&work, "bigheap.c", &[], &["64", "20", "10"])?;
    let opts = Options::new(&work, &[5]);
    let plain = run_plain(&program, false, opts.timeouts.finish)?;
    let (image, cycle, ran) = checkpoint_and_kill(&bins, &program, &opts)?;
    let _busy = Busy::start();
    for k in 1..=RESTARTS {
        let mut restarted = run_restart(&bins, &image, work.path(), Duration::from_secs(120))?;
        restarted.label = format!("ckpt-restart #{k} of {RESTARTS}");
        let outcome = Outcome { records: vec![ran.clone(), restarted], cycles: vec![cycle], extra: Vec::new(), image: image.clone(), uid: effective_uid(false) };
        outcome.verify(&plain).with_context(|| format!("restart {k} of {RESTARTS} of the same image"))?;
    }
    Ok(())
}
