//! Committing an image set (a directory) as the newest generation `NAME.ckpt`, the older ones
//! moving to `NAME.ckpt.1`, ... (`keep` in all): the new set takes the newest name in one atomic
//! exchange (renameat2 RENAME_EXCHANGE), so that at every moment `NAME.ckpt` is a complete set
//! or the previous complete image; then the previous one moves down. Older generations may be
//! single-process image files (taken before the program had children): they rotate the same way.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn rename(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: two valid C strings.
    let r = unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Remove a generation: a set directory (ours, made by `commit`) or an image file.
fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make the complete set `tmp` (a directory in `dir`) the newest generation of `name`.
pub fn commit(dir: &Path, tmp: &Path, name: &[u8], keep: u32) -> Result<(), String> {
    let gen = |i: u32| dir.join(std::ffi::OsStr::from_bytes(&ckpt_image::generation_file_name(name, i)));
    let newest = gen(0);
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    let had = std::fs::symlink_metadata(&newest).is_ok();
    if had {
        // The new set becomes NAME.ckpt and the previous one takes the temporary name.
        rename(tmp, &newest, libc::RENAME_EXCHANGE).map_err(|e| fail("move the new set onto", &newest, e))?;
    } else {
        rename(tmp, &newest, libc::RENAME_NOREPLACE).map_err(|e| fail("move the new set onto", &newest, e))?;
    }
    if had {
        // The previous newest (now at `tmp`) moves down; the oldest kept generations go.
        let last = keep.max(1);
        let _ = remove(&gen(last));
        for i in (1..last).rev() {
            match rename(&gen(i), &gen(i + 1), 0) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail("rotate", &gen(i), e)),
                _ => {}
            }
        }
        if keep > 1 {
            rename(tmp, &gen(1), 0).map_err(|e| fail("rotate", &gen(0), e))?;
        } else {
            remove(tmp).map_err(|e| fail("remove", tmp, e))?;
        }
        let _ = remove(&gen(keep.max(1)));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Remove the temporary sets of `name` (`NAME.ckpt.tmp.*`) a coordinator of ours left in `dir`
/// when it was killed mid-set: directories we own, made private (0700, as `make_tmp` does), last
/// changed before `before` (when this coordinator started: a set changed since may be another
/// coordinator's, still being written). Anything else under such a name (another user's, a
/// symbolic link, a file) is left alone.
pub fn clean_leftovers(dir: &Path, name: &[u8], before: std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let prefix = [name, b".tmp."].concat();
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for e in rd.flatten() {
        if !e.file_name().as_bytes().starts_with(&prefix) {
            continue;
        }
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        let stale = m.modified().is_ok_and(|t| t < before);
        if m.is_dir() && m.uid() == me && m.mode() & 0o077 == 0 && stale {
            // remove_dir_all does not follow symbolic links inside.
            let r = std::fs::remove_dir_all(&p);
            if crate::verbose() {
                eprintln!("ckpt: the unfinished set {} left by a killed checkpoint: {}", p.display(), r.map_or_else(|e| format!("cannot remove it: {e}"), |_| "removed".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_complete_generations() {
        let d = std::env::temp_dir().join(format!("ckpt-sets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("app.ckpt"), b"file image").unwrap();
        for round in 0..3 {
            let tmp = d.join(format!("app.ckpt.tmp.{round}"));
            std::fs::create_dir(&tmp).unwrap();
            std::fs::write(tmp.join("tree"), format!("{round}")).unwrap();
            commit(&d, &tmp, b"app", 2).unwrap();
            assert_eq!(std::fs::read_to_string(d.join("app.ckpt/tree")).unwrap(), format!("{round}"));
            assert!(!tmp.exists());
        }
        assert_eq!(std::fs::read_to_string(d.join("app.ckpt.1/tree")).unwrap(), "1");
        assert!(!d.join("app.ckpt.2").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
