//! Memory shared with files across checkpoint, SIGKILL and restart: a MAP_SHARED file mapping
//! (the file holds what it held at checkpoint time, although the program wrote on before it was
//! killed), a MAP_PRIVATE file mapping, a memfd, POSIX shm and System V shm.

mod restore_util;
use restore_util::*;

fn step_line(n: u32) -> impl Fn(&str) -> bool {
    move |l: &str| l.strip_prefix("step ").and_then(|v| v.parse::<u32>().ok()).is_some_and(|v| v >= n)
}

fn results(s: &str) -> Vec<String> {
    s.lines().filter(|l| !l.starts_with("step ")).map(str::to_owned).collect()
}

#[test]
fn shared_and_private_mappings_continue_consistently() {
    check("memory", false);
}

#[test]
fn shared_and_private_mappings_continue_consistently_as_nobody() {
    check("memory_nobody", true);
}

fn check(tag: &str, nobody: bool) {
    let base = workdir(&format!("{tag}_ref"));
    let prog = compile("mem_shared", &base);
    let expected = results(&plain(&prog, &[], &base));
    assert_eq!(expected.last().map(String::as_str), Some("done"));

    let dir = workdir(&format!("{tag}_ckpt"));
    let mut p = run_as(&prog, &[], &dir, nobody);
    p.wait_line(step_line(50));
    let img = p.checkpoint(&dir, "mem_shared");
    p.wait_line(step_line(110));
    p.kill9();
    let mut r = restart_as(&img, &[], &dir, nobody);
    assert!(r.wait().success(), "restart failed: {}", r.stderr());
    let out = r.stdout();
    assert!(!out.contains("step 0\n"), "the program started over");
    assert_eq!(results(&out), expected);
}
