//! A program that unmapped its vdso and vvar areas (tests/programs/vdso_unmapped.c): its image
//! has none, and the restart gives it none (the restarter's own go with its other mappings),
//! instead of refusing as if the image came from another kernel.

use anyhow::Result;
use ckpt_tests::{run_and_verify, Bins, Options, Program, Workdir};

fn unmapped(tag: &str, nobody: bool) -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new(tag)?;
    let program = Program::c(&work, "vdso_unmapped.c", &[], &["12"])?;
    let mut opts = Options::new(&work, &[4]);
    opts.as_nobody = nobody;
    run_and_verify(&bins, &program, &opts)?;
    Ok(())
}

#[test]
fn a_program_without_vdso_comes_back_without_one() -> Result<()> {
    unmapped("vdso-unmapped", false)
}

#[test]
fn a_program_without_vdso_comes_back_without_one_as_nobody() -> Result<()> {
    unmapped("vdso-unmapped-nobody", true)
}
