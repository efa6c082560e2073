//! `ckpt-inspect` on an image chain (the sample full image and an increment over it): the chain
//! is shown (text and JSON), `--verify` covers both images, `--flatten` writes one full image
//! whose memory equals the chain's byte by byte; a missing or damaged parent is reported.

use ckpt_image::{Chain, LayerBuf};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("ckpt-inspect-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn inspect(args: &[&str], image: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt-inspect")).args(args).arg(image).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one line a failure prints.
fn failure(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("ckpt-inspect: ") && err.lines().count() == 1, "{err}");
    err
}

/// Every region's memory as the chain rebuilds it (bytes no layer covers stay zero).
fn memory(chain: &Chain) -> Vec<Vec<u8>> {
    let mut buf = LayerBuf::new().unwrap();
    (0..chain.index().regions.len())
        .map(|ri| {
            let mut m = vec![0u8; chain.index().regions[ri].len() as usize];
            chain.read_range(ri, 0, &mut m, &mut buf).unwrap();
            m
        })
        .collect()
}

#[test]
fn a_chain_is_shown_verified_and_flattened() {
    let d = dir("show");
    let [newest, full] = ckpt_image::fuzz::sample_chain(&d.0).unwrap();

    let o = inspect(&[], &newest);
    let text = stdout(&o);
    assert!(o.status.success(), "{o:?}");
    assert!(text.contains(&format!("chain      increment over {} (checkpoint 1, full) (2 images in all)", full.display())), "{text}");
    assert!(text.contains("(inherits)"), "{text}");
    assert!(stdout(&inspect(&[], &full)).contains("chain      full image (no parent)"));

    let o = inspect(&["--json"], &newest);
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let base = ckpt_image::Reader::open(&full).unwrap();
    assert_eq!(j["image"]["parent"], format!("{:016x}", base.header.index_hash));
    assert_eq!(j["chain"]["length"], 2);
    assert_eq!(j["chain"]["problem"], serde_json::Value::Null);
    assert_eq!(j["chain"]["images"][1]["path"], full.display().to_string());
    assert_eq!(j["chain"]["images"][1]["index_hash"], j["image"]["parent"]);
    assert_eq!(j["chain"]["images"][1]["parent"], serde_json::Value::Null);
    assert_eq!(j["regions"][1]["inherit"], true);
    // The thread's pc is read through the chain (its page is the increment's).
    assert!(j["threads"][0]["pc"].is_u64(), "{}", j["threads"]);

    let o = inspect(&["--verify"], &newest);
    assert!(stdout(&o).contains("of 2 images match their checksums"), "{o:?}");

    let out = d.0.join("moved").join("sample.ckpt");
    std::fs::create_dir(out.parent().unwrap()).unwrap();
    let o = inspect(&["--flatten", out.to_str().unwrap()], &newest);
    assert!(o.status.success() && stdout(&o).starts_with(&format!("wrote {}: one full image with the memory of {} and the image it builds on (", out.display(), newest.display())), "{o:?}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let flat = Chain::open(&out).unwrap();
    let chain = Chain::open(&newest).unwrap();
    assert_eq!((flat.images().len(), flat.newest().header.parent, flat.index().meta.chain), (1, 0, 1));
    let (a, b) = (memory(&chain), memory(&flat));
    assert!(a == b, "the flattened image's memory differs from the chain's");
    // And it is the increment over the full image, not the full image alone.
    assert_ne!(a, memory(&Chain::open(&full).unwrap()));
    let o = inspect(&["--verify"], &out);
    assert!(stdout(&o).contains("chain      full image") && stdout(&o).contains("match their checksums"), "{o:?}");
}

#[test]
fn a_missing_or_damaged_parent_is_reported() {
    let d = dir("parent");
    let [newest, full] = ckpt_image::fuzz::sample_chain(&d.0).unwrap();
    // Damaged chunk data in the parent: --verify names it.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&full).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, 70).unwrap();
    f.write_all_at(&[b[0] ^ 1], 70).unwrap();
    let err = failure(&inspect(&["--verify"], &newest));
    assert!(err.contains(&format!("{} (an image it builds on): bad chunk", full.display())), "{err}");
    f.write_all_at(&b, 70).unwrap();

    // Gone: plain inspect still shows the image and says what is missing; --verify and --flatten fail.
    std::fs::rename(&full, d.0.join("elsewhere")).unwrap();
    let o = inspect(&[], &newest);
    assert!(o.status.success() && stdout(&o).contains("but: sample.ckpt is an increment over an image that is not in"), "{o:?}");
    let j: serde_json::Value = serde_json::from_slice(&inspect(&["--json"], &newest).stdout).unwrap();
    assert!(j["chain"]["problem"].as_str().unwrap().contains("copy the whole directory"), "{j}");
    assert_eq!(j["chain"]["images"], serde_json::json!([]));
    for args in [&["--verify"][..], &["--flatten", "/nonexistent/x.ckpt"]] {
        let err = failure(&inspect(args, &newest));
        assert!(err.contains("copy the whole directory"), "{args:?}: {err}");
    }
}
