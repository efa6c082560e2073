//! Sanity check of the test programs themselves, without ckpt: each one, run natively twice at
//! the same time, follows the output protocol (`start`, `step 1..N`, `result`), exits 0 and
//! prints exactly the same output both times (the other tests rely on the programs being
//! deterministic). These tests do not need the ckpt binaries.

use anyhow::{bail, Result};
use ckpt_tests::programs::catalog;
use ckpt_tests::{check_protocol, run_plain, Program, Workdir};
use std::time::Duration;

fn native_twice(program: &Program) -> Result<()> {
    let timeout = Duration::from_secs(60);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run_plain(program, false, timeout));
        let b = run_plain(program, false, timeout);
        (a.join().expect("run thread panicked"), b)
    });
    let (a, b) = (a?, b?);
    check_protocol(&a)?;
    check_protocol(&b)?;
    let (la, lb) = (a.lines(), b.lines());
    if let Some(i) = (0..la.len().max(lb.len())).find(|&i| la.get(i) != lb.get(i)) {
        bail!(
            "{} is not deterministic: two runs differ first at line {}: {:?} vs {:?}\n{a}\n{b}",
            program.name,
            i + 1,
            la.get(i),
            lb.get(i)
        );
    }
    Ok(())
}

#[test]
fn native_counter() -> Result<()> {
    let work = Workdir::new("native-counter")?;
    native_twice(&catalog::counter(&work)?)
}

#[test]
fn native_bigheap() -> Result<()> {
    let work = Workdir::new("native-bigheap")?;
    native_twice(&catalog::bigheap(&work, 256)?)
}

#[test]
fn native_threads_mutex() -> Result<()> {
    let work = Workdir::new("native-threads")?;
    native_twice(&catalog::threads_mutex(&work)?)
}

#[test]
fn native_openmp_loop() -> Result<()> {
    let work = Workdir::new("native-openmp")?;
    native_twice(&catalog::openmp_loop(&work)?)
}

#[test]
fn native_py_counter() -> Result<()> {
    let work = Workdir::new("native-python")?;
    native_twice(&catalog::py_counter(&work)?)
}

#[test]
fn native_rust_channels() -> Result<()> {
    let work = Workdir::new("native-rust")?;
    native_twice(&Program::native(
        env!("CARGO_BIN_EXE_rust_channels"),
        &["60", "30"],
        &work,
    ))
}
