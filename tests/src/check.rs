//! Parsing the test programs' output and judging runs.
//!
//! The programs print `start ...`, then `step N ...` lines with N counting up from 1, then
//! `result <value>`. A restarted run is correct when, stitched onto the output of the process it
//! was checkpointed from, it reproduces the uninterrupted run's output line for line:
//! [`Outcome::verify`] checks that plus the exit status, the image mode and that each restart
//! resumed after the step at which the checkpoint was requested (rather than starting over).
//! [`clean_failure`] judges `ckpt-restart` on bad input.

use crate::process::{fmt_status, transcript, Record};
use crate::scenario::Outcome;
use anyhow::{bail, Result};

/// N for a line `step N ...`.
pub fn step_of(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("step"), Some(n)) => n.parse().ok(),
        _ => None,
    }
}

/// The last `result ...` line of an output.
pub fn result_of(stdout: &str) -> Option<&str> {
    stdout.lines().rev().find(|l| l.starts_with("result "))
}

/// Lines that were completely written (for a process killed with SIGKILL).
fn complete_lines(text: &str) -> Vec<&str> {
    match text.rfind('\n') {
        Some(end) => text[..end].lines().collect(),
        None => Vec::new(),
    }
}

/// Check that an uninterrupted run's output follows the protocol: `start`, steps 1..=N, `result`.
pub fn check_protocol(rec: &Record) -> Result<()> {
    let lines = rec.lines();
    let mut problems = Vec::new();
    if !rec.success() {
        problems.push(format!("exit status is {}, expected 0", fmt_status(rec.status)));
    }
    if !lines.first().is_some_and(|l| l.starts_with("start ")) {
        problems.push("the first line is not `start ...`".to_string());
    }
    if !lines.last().is_some_and(|l| l.starts_with("result ")) {
        problems.push("the last line is not `result ...`".to_string());
    }
    let steps: Vec<u64> = lines.iter().filter_map(|l| step_of(l)).collect();
    if steps.is_empty() || steps.iter().enumerate().any(|(i, &n)| n != i as u64 + 1) {
        problems.push(format!(
            "the step lines do not count 1, 2, 3, ... (got {} step lines)",
            steps.len()
        ));
    }
    if lines.len() != steps.len() + 2 {
        problems.push("there are lines other than start, step and result".to_string());
    }
    if !problems.is_empty() {
        bail!(
            "{}: output does not follow the protocol:\n  - {}{}",
            rec.label,
            problems.join("\n  - "),
            transcript(std::slice::from_ref(rec))
        );
    }
    Ok(())
}

impl Outcome {
    /// Judge the scenario against the uninterrupted run `plain`: fails with every problem found
    /// and the transcript of all processes.
    pub fn verify(&self, plain: &Record) -> Result<()> {
        let mut problems = Vec::new();
        let expected: Vec<&str> = plain.lines();
        let expected_result = result_of(&plain.stdout);
        if !plain.success() || expected_result.is_none() {
            problems.push("the uninterrupted run itself failed".to_string());
        }

        for (k, c) in self.cycles.iter().enumerate() {
            if c.image.mode != 0o600 {
                problems.push(format!(
                    "image of checkpoint #{} has mode {:o}, expected 600",
                    k + 1,
                    c.image.mode
                ));
            }
            if c.image.uid != self.uid {
                problems.push(format!(
                    "image of checkpoint #{} is owned by uid {}, expected {}",
                    k + 1,
                    c.image.uid,
                    self.uid
                ));
            }
        }

        // Stitch each restart's output onto what came before, at its first step.
        let mut stitched: Vec<&str> = complete_lines(&self.records[0].stdout);
        let mut stitch_ok = true;
        for (k, cycle) in self.cycles.iter().enumerate() {
            let prev = &self.records[k];
            let rec = &self.records[k + 1];
            let rest: Vec<&str> = if k + 2 == self.records.len() {
                rec.lines()
            } else {
                complete_lines(&rec.stdout)
            };
            let prev_last = complete_lines(&prev.stdout).iter().filter_map(|l| step_of(l)).max();
            let Some(first) = rest.first().and_then(|l| step_of(l)) else {
                problems.push(match rest.first() {
                    None => format!("{} printed nothing", rec.label),
                    Some(l) if l.starts_with("start ") => {
                        format!("{} started the program over: its first line is {l:?}", rec.label)
                    }
                    Some(l) => format!("{}: the first line is {l:?}, expected a `step N` line", rec.label),
                });
                stitch_ok = false;
                break;
            };
            if first <= 1 || rest.iter().any(|l| l.starts_with("start ")) {
                problems.push(format!("{} started the program over (first step {first})", rec.label));
            }
            if first <= cycle.signalled_after_step {
                problems.push(format!(
                    "{} resumed at step {first}, but the checkpoint was requested after step {} had been printed \
                     (the restarted program went back before the checkpoint)",
                    rec.label, cycle.signalled_after_step
                ));
            }
            if let Some(last) = prev_last {
                if first > last + 1 {
                    problems.push(format!(
                        "{} resumed at step {first}, but {} had only printed up to step {last} (steps skipped)",
                        rec.label, prev.label
                    ));
                }
            }
            let cut = stitched
                .iter()
                .position(|l| step_of(l).is_some_and(|n| n >= first))
                .unwrap_or(stitched.len());
            stitched.truncate(cut);
            stitched.extend(rest);
        }

        let last = self.last();
        if !last.success() {
            problems.push(format!(
                "{} exit status is {}, expected 0",
                last.label,
                fmt_status(last.status)
            ));
        }
        let got_result = result_of(&last.stdout);
        if got_result != expected_result {
            problems.push(format!(
                "final result line: {} printed {:?}, the uninterrupted run printed {:?}",
                last.label, got_result, expected_result
            ));
        }
        if stitch_ok && stitched != expected {
            let i = stitched
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(stitched.len().min(expected.len()));
            problems.push(format!(
                "the output before the checkpoint followed by the restarted output ({} lines) differs from the \
                 uninterrupted output ({} lines) first at line {}: got {:?}, expected {:?}",
                stitched.len(),
                expected.len(),
                i + 1,
                stitched.get(i),
                expected.get(i)
            ));
        }

        if !problems.is_empty() {
            let mut records = vec![plain.clone()];
            records.extend(self.records.iter().cloned());
            bail!(
                "checkpoint/restart of {} failed:\n  - {}{}",
                self.image.display(),
                problems.join("\n  - "),
                transcript(&records)
            );
        }
        Ok(())
    }
}

/// `ckpt-restart` on bad input must: exit with a non-zero status (not die from a signal), print
/// exactly one line on stderr, starting with `ckpt-restart:`, not panic, and print nothing on
/// stdout (the program must not have run). Returns the problems found, if any.
pub fn clean_failure(rec: &Record) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    match rec.status.and_then(|s| s.code()) {
        Some(0) => problems.push("exit status 0, expected non-zero".to_string()),
        Some(_) => {}
        None => problems.push(format!("did not exit normally: {}", fmt_status(rec.status))),
    }
    let lines: Vec<&str> = rec.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        problems.push(format!("stderr has {} lines, expected exactly one", lines.len()));
    }
    if !lines.first().is_some_and(|l| l.starts_with("ckpt-restart:")) {
        problems.push("stderr does not start with `ckpt-restart:`".to_string());
    }
    if rec.stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    if !rec.stdout.is_empty() {
        problems.push("it printed on stdout (a program ran?)".to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{rec}", problems.join("; ")))
    }
}
