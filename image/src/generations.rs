//! Names of image generations, shared by the runtime (which writes and rotates them), the
//! restarter (which picks the newest that verifies) and the tools.
//!
//! For a program named NAME: `NAME.ckpt` is always the newest complete image; `NAME.ckpt.1` the
//! one before, `NAME.ckpt.2` the one before that, up to `--keep N` files in all. A new image is
//! written as `NAME.ckpt.tmp.<random>` and only renamed into place once complete, after the
//! older ones moved down one step, so a crash at any moment leaves the last good image in place.

use std::path::{Path, PathBuf};

/// File name of generation `i` (0: the newest) of the program `name`.
pub fn generation_file_name(name: &[u8], i: u32) -> Vec<u8> {
    let mut v = name.to_vec();
    v.extend_from_slice(b".ckpt");
    if i > 0 {
        v.push(b'.');
        v.extend_from_slice(i.to_string().as_bytes());
    }
    v
}

/// Split an image file name into the program name and the generation (None: not an image).
pub fn parse_image_name(file: &[u8]) -> Option<(&[u8], u32)> {
    if let Some(name) = file.strip_suffix(b".ckpt") {
        return (!name.is_empty()).then_some((name, 0));
    }
    let dot = file.iter().rposition(|&b| b == b'.')?;
    let (head, num) = (&file[..dot], &file[dot + 1..]);
    if num.is_empty() || num.len() > 9 || !num.iter().all(u8::is_ascii_digit) || num[0] == b'0' {
        return None;
    }
    let name = head.strip_suffix(b".ckpt")?;
    let i = std::str::from_utf8(num).ok()?.parse().ok()?;
    (!name.is_empty()).then_some((name, i))
}

/// The existing generations of `name` in `dir`, newest first.
pub fn generations_of(dir: &Path, name: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut found: Vec<(u32, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                let f = e.file_name();
                let (n, i) = parse_image_name(f.as_bytes())?;
                (n == name).then(|| (i, e.path()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, p)| p).collect()
}

/// Every image in `dir` (any program, any generation), newest first by modification time.
pub fn images_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let f = e.file_name();
        if let Some((_, i)) = parse_image_name(f.as_bytes()) {
            let t = e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            found.push((std::cmp::Reverse(t), i, e.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, _, p)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in [0, 1, 2, 17] {
            let f = generation_file_name(b"app.0", i);
            assert_eq!(parse_image_name(&f), Some((&b"app.0"[..], i)));
        }
        assert_eq!(parse_image_name(b"app.ckpt.tmp"), None);
        assert_eq!(parse_image_name(b"app.ckpt.01"), None);
        assert_eq!(parse_image_name(b"app.sock"), None);
        assert_eq!(parse_image_name(b".ckpt"), None);
        assert_eq!(parse_image_name(b"a.ckpt.3"), Some((&b"a"[..], 3)));
    }
}
