//! Skipped tests. libtest has no run-time skip: a test that cannot run here (no Slurm, not root)
//! returns early and libtest counts it as passed. `skip` says why on stderr and, when the suite
//! runs through scripts/test (which sets CKPT_TEST_SKIPS to a file), records the test there so
//! the summary line counts it as skipped, not passed.

use std::io::Write;

/// Report the calling test as skipped, with the reason; the test must then return at once.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("CKPT_TEST_SKIPS") {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path) {
            // One write per line: tests of one binary run in parallel threads.
            let _ = f.write_all(format!("{test}: {reason}\n").as_bytes());
        }
    }
}

/// `skip_test!("reason")` (or with format arguments) in a test function: report that test as
/// skipped, named after the enclosing function. The test must return right after it.
#[macro_export]
macro_rules! skip_test {
    ($($arg:tt)+) => {{
        fn here() {}
        let path = ::std::any::type_name_of_val(&here);
        let name = path.strip_suffix("::here").unwrap_or(path);
        let name = name.rsplit("::").find(|s| *s != "{{closure}}").unwrap_or(name);
        $crate::skip::skip(name, &format!($($arg)+));
    }};
}
