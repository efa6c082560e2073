//! Sorted, disjoint address ranges for the background snapshot's arming (bgarm.rs): a table of
//! bounded size that allocates nothing once made (program threads note ranges from their SIGSYS
//! handler, the fault handler from its loop), and the set operations the instant needs.

/// At most `cap` sorted, disjoint ranges; a range noted is merged with those it overlaps or
/// touches.
pub(crate) struct Ranges {
    v: Box<[(u64, u64)]>,
    n: usize,
}

impl Ranges {
    pub(crate) fn new(cap: usize) -> Ranges {
        Ranges { v: vec![(0, 0); cap].into_boxed_slice(), n: 0 }
    }

    pub(crate) fn as_slice(&self) -> &[(u64, u64)] {
        &self.v[..self.n]
    }

    /// Add [a, b), merged with the ranges it overlaps or touches; false (and nothing changed)
    /// when that needs one more range than the table holds.
    pub(crate) fn insert(&mut self, a: u64, b: u64) -> bool {
        if a >= b {
            return true;
        }
        let i = self.as_slice().partition_point(|r| r.1 < a);
        let j = self.as_slice().partition_point(|r| r.0 <= b);
        if i == j {
            if self.n == self.v.len() {
                return false;
            }
            self.v.copy_within(i..self.n, i + 1);
            self.v[i] = (a, b);
            self.n += 1;
            return true;
        }
        let merged = (a.min(self.v[i].0), b.max(self.v[j - 1].1));
        self.v[i] = merged;
        self.v.copy_within(j..self.n, i + 1);
        self.n -= j - i - 1;
        true
    }

    /// Forget the ranges that end at or below `end`.
    pub(crate) fn drop_below(&mut self, end: u64) {
        let k = self.as_slice().partition_point(|r| r.1 <= end);
        self.v.copy_within(k..self.n, 0);
        self.n -= k;
    }

    /// Forget every range.
    pub(crate) fn clear(&mut self) {
        self.n = 0;
    }
}

/// The ranges of `a` not in `b` (both sorted and disjoint).
pub(crate) fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(s, e) in a {
        let mut at = s;
        while j < b.len() && b[j].1 <= at {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > at {
                out.push((at, b[k].0));
            }
            at = at.max(b[k].1);
            k += 1;
        }
        if at < e {
            out.push((at, e));
        }
    }
    out
}

/// The parts of `a` inside `b` (both sorted and disjoint): pieces that each lie in one range of
/// `b`.
pub(crate) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The union of `a` and `b` (both sorted and disjoint), sorted, with touching ranges merged.
pub(crate) fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    ckpt_image::pagetable::merge(&[a, b].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_ranges_merge_and_stay_sorted() {
        let mut r = Ranges::new(4);
        assert!(r.insert(30, 40));
        assert!(r.insert(10, 20));
        assert!(r.insert(50, 60));
        assert_eq!(r.as_slice(), &[(10, 20), (30, 40), (50, 60)]);
        assert!(r.insert(20, 30), "touching both neighbours");
        assert_eq!(r.as_slice(), &[(10, 40), (50, 60)]);
        assert!(r.insert(5, 70));
        assert_eq!(r.as_slice(), &[(5, 70)]);
    }

    #[test]
    fn a_full_table_refuses_only_a_range_of_its_own() {
        let mut r = Ranges::new(2);
        assert!(r.insert(0, 10));
        assert!(r.insert(20, 30));
        assert!(!r.insert(40, 50));
        assert_eq!(r.as_slice(), &[(0, 10), (20, 30)]);
        assert!(r.insert(5, 25), "merging needs no room");
        assert_eq!(r.as_slice(), &[(0, 30)]);
    }

    #[test]
    fn ranges_below_an_address_are_dropped() {
        let mut r = Ranges::new(4);
        for s in [0, 20, 40] {
            assert!(r.insert(s, s + 10));
        }
        r.drop_below(30);
        assert_eq!(r.as_slice(), &[(40, 50)]);
        r.clear();
        assert!(r.as_slice().is_empty());
    }

    #[test]
    fn set_operations() {
        let a = [(0, 10), (20, 30), (40, 50)];
        let b = [(5, 25), (45, 60)];
        assert_eq!(subtract(&a, &b), vec![(0, 5), (25, 30), (40, 45)]);
        assert_eq!(intersect(&a, &b), vec![(5, 10), (20, 25), (45, 50)]);
        assert_eq!(union(&a, &b), vec![(0, 30), (40, 60)]);
        assert_eq!(subtract(&[(0, 100)], &[(10, 20), (30, 40)]), vec![(0, 10), (20, 30), (40, 100)]);
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
    }
}
