//! Unfinished sets a killed checkpoint of a tree left behind (`NAME.ckpt.tmp.<random>/`: the
//! coordinator writes a set there and renames it into place only when complete). The next
//! checkpoint of a tree of that name removes those that are ours (owned by us, private, last
//! changed before its coordinator started) and leaves alone what another user could have put
//! there under such a name: a symbolic link to a directory of ours, a directory that is not
//! private, and (as root) another user's directory.

use anyhow::{ensure, Result};
use ckpt_tests::{Bins, Options, Program, Workdir};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn dir_with_file(p: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir(p)?;
    std::fs::write(p.join("11.ckpt"), b"half an image")?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Last changed an hour ago (before any coordinator of the test started).
fn age(p: &Path) -> Result<()> {
    let st = Command::new("touch").args(["-h", "-d", "1 hour ago"]).arg(p).status()?;
    ensure!(st.success(), "touch {} failed", p.display());
    Ok(())
}

#[test]
fn a_trees_checkpoint_removes_the_unfinished_sets_of_ours_and_nothing_else() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("trees-leftovers")?;
    let program = Program::c(&work, "tree_incremental.c", &[], &["4", "40", "30", "10"])?;
    let images = work.images();
    let tmp = |s: &str| images.join(format!("{}.tmp.{s}", program.image_name()));

    let ours = tmp("00112233445566aa");
    dir_with_file(&ours, 0o700)?;
    age(&ours)?;
    let victim = work.join("victim");
    dir_with_file(&victim, 0o700)?;
    let link = tmp("00112233445566bb");
    std::os::unix::fs::symlink(&victim, &link)?;
    age(&link)?;
    let open = tmp("00112233445566cc");
    dir_with_file(&open, 0o755)?;
    age(&open)?;
    let others = tmp("00112233445566dd");
    if ckpt_tests::scenario::is_root() {
        dir_with_file(&others, 0o700)?;
        ensure!(Command::new("chown").args(["-R", "nobody"]).arg(&others).status()?.success(), "chown failed");
        age(&others)?;
    }

    let opts = Options::new(&work, &[20]);
    let o = ckpt_tests::run_and_verify(&bins, &program, &opts)?;
    ensure!(!ours.exists(), "our unfinished set {} is still there{}", ours.display(), o.transcript());
    ensure!(victim.join("11.ckpt").is_file(), "a file behind a planted symbolic link was removed");
    ensure!(std::fs::symlink_metadata(&link).is_ok(), "the planted symbolic link was removed");
    ensure!(open.join("11.ckpt").is_file(), "a directory that is not private was emptied");
    if ckpt_tests::scenario::is_root() {
        ensure!(others.join("11.ckpt").is_file(), "another user's directory was emptied");
    }
    Ok(())
}
