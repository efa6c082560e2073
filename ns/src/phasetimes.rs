//! The time each phase of a tree's checkpoint took, said at CKPT_LOG=info or more (one line per
//! checkpoint, once it is over): where the pause of a large tree goes (scripts/bench-tree-fds).

use std::time::Instant;

pub(crate) struct PhaseTimes {
    gen: u64,
    last: Instant,
    marks: Vec<(&'static str, u128)>,
}

impl PhaseTimes {
    pub fn new(gen: u64) -> PhaseTimes {
        PhaseTimes { gen, last: Instant::now(), marks: Vec::new() }
    }

    /// Phase `what` is over: the time since the previous mark.
    pub fn mark(&mut self, what: &'static str) {
        let now = Instant::now();
        self.marks.push((what, now.duration_since(self.last).as_millis()));
        self.last = now;
    }
}

impl Drop for PhaseTimes {
    fn drop(&mut self) {
        if crate::verbose() && !self.marks.is_empty() {
            let list: Vec<String> = self.marks.iter().map(|(w, ms)| format!("{w} +{ms} ms")).collect();
            eprintln!("ckpt: checkpoint {} phases: {}", self.gen, list.join(", "));
        }
    }
}
