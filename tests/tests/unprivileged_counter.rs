//! counter run entirely as an unprivileged user: as user nobody (via setpriv) when the tests run
//! as root, as the current user otherwise. Checkpoint, SIGKILL and restart must work without
//! privileges, and the image must belong to that user with mode 0600.

use anyhow::Result;
use ckpt_tests::programs::catalog;
use ckpt_tests::{run_and_verify, Bins, Options, Workdir};

#[test]
fn counter_as_unprivileged_user() -> Result<()> {
    let bins = Bins::locate()?;
    let work = Workdir::new("nobody")?; // world-writable and sticky, images/ too
    let program = catalog::counter(&work)?;
    let mut opts = Options::new(&work, &[15]);
    opts.as_nobody = true;
    run_and_verify(&bins, &program, &opts)?; // checks the image's owner and mode too
    Ok(())
}
