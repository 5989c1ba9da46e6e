//! Shared streaming math: fixed windows, running sums that do not drift, and window extremes.
//!
//! Each structure keeps the *last n − 1 committed values* of an n-bar window, so that the
//! window ending at a new value `x` is "those plus `x`": [`Indicator::peek`](crate::Indicator)
//! reads it without copying, and [`Indicator::update`](crate::Indicator) commits `x`.

/// A fixed-capacity ring of the most recent values, oldest first.
#[derive(Clone, Debug)]
pub struct Ring {
    buf: Vec<f64>,
    cap: usize,
    /// Index of the oldest value once full; of the next slot while filling.
    head: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
            cap,
            head: 0,
        }
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.buf.len() == self.cap
    }

    /// Appends `x`; when full, drops and returns the oldest value. A zero-capacity ring keeps
    /// nothing and returns `x` itself.
    #[inline]
    pub fn push(&mut self, x: f64) -> Option<f64> {
        if self.cap == 0 {
            return Some(x);
        }
        if self.buf.len() < self.cap {
            self.buf.push(x);
            return None;
        }
        let old = std::mem::replace(&mut self.buf[self.head], x);
        // A compare instead of `%`: a division would cost more than the whole update.
        self.head += 1;
        if self.head == self.cap {
            self.head = 0;
        }
        Some(old)
    }

    /// The oldest value kept.
    #[inline]
    pub fn oldest(&self) -> Option<f64> {
        if self.is_full() {
            self.buf.get(self.head).copied()
        } else {
            self.buf.first().copied()
        }
    }

    /// The `i`-th newest value (0 = newest).
    #[inline]
    pub fn newest(&self, i: usize) -> Option<f64> {
        let len = self.buf.len();
        if i >= len {
            return None;
        }
        let start = if self.is_full() { self.head } else { 0 };
        self.buf.get((start + len - 1 - i) % len.max(1)).copied()
    }

    /// Values oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let split = if self.is_full() { self.head } else { 0 };
        self.buf[split..]
            .iter()
            .chain(self.buf[..split].iter())
            .copied()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }
}

/// The sum of an n-value sliding window, updated in TA-Lib's order of operations
/// (`total = partial + x; … ; partial = total − oldest`) so results match TA-Lib's, and
/// re-anchored from the window every n − 1 commits so rounding error cannot accumulate over
/// millions of bars (amortised O(1)).
#[derive(Clone, Debug)]
pub struct RollingSum {
    tail: Ring,
    /// Sum of `tail`: TA-Lib's `periodTotal` between two bars.
    partial: f64,
    commits_since_anchor: usize,
}

impl RollingSum {
    /// A window of `n >= 1` values.
    pub fn new(n: usize) -> Self {
        Self {
            tail: Ring::new(n.saturating_sub(1)),
            partial: 0.0,
            commits_since_anchor: 0,
        }
    }

    /// Whether n − 1 values are committed, so a next value completes a window.
    #[inline]
    pub fn is_ready(&self) -> bool {
        self.tail.is_full()
    }

    /// The sum of the window that ends with `x` (meaningful once [`Self::is_ready`]).
    #[inline]
    pub fn sum_with(&self, x: f64) -> f64 {
        self.partial + x
    }

    /// Commits `x`; returns the sum of the window that ends with it.
    #[inline]
    pub fn push(&mut self, x: f64) -> f64 {
        let total = self.partial + x;
        if self.tail.capacity() == 0 {
            return total;
        }
        match self.tail.push(x) {
            None => self.partial = total,
            Some(oldest) => {
                self.partial = total - oldest;
                self.commits_since_anchor += 1;
                if self.commits_since_anchor >= self.tail.capacity() {
                    self.reanchor();
                }
            }
        }
        total
    }

    /// Recomputes the partial sum from the window, oldest first, as TA-Lib sums its first
    /// window.
    fn reanchor(&mut self) {
        self.partial = self.tail.iter().fold(0.0, |acc, v| acc + v);
        self.commits_since_anchor = 0;
    }

    /// The committed values (the last n − 1), oldest first.
    pub fn tail(&self) -> &Ring {
        &self.tail
    }

    pub fn clear(&mut self) {
        self.tail.clear();
        self.partial = 0.0;
        self.commits_since_anchor = 0;
    }
}

/// Which extreme a [`WindowExtreme`] tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extreme {
    Max,
    Min,
}

/// The maximum or minimum of an n-value sliding window in amortised O(1): a monotonic deque
/// over the last n − 1 committed values, so the extreme of the window ending with `x` is
/// `extreme(deque front, x)`. The deque lives in a fixed power-of-two ring (no allocation,
/// no division per bar).
#[derive(Clone, Debug)]
pub struct WindowExtreme {
    which: Extreme,
    keep: u64,
    seen: u64,
    /// (commit index, value); entries `head..tail` (mod capacity) are live, values monotonic
    /// from the head.
    slots: Vec<(u64, f64)>,
    mask: usize,
    head: usize,
    tail: usize,
}

impl WindowExtreme {
    pub fn new(n: usize, which: Extreme) -> Self {
        let keep = n.saturating_sub(1);
        let cap = (keep + 1).next_power_of_two();
        Self {
            which,
            keep: keep as u64,
            seen: 0,
            slots: vec![(0, 0.0); cap],
            mask: cap - 1,
            head: 0,
            tail: 0,
        }
    }

    #[inline]
    fn better(&self, a: f64, b: f64) -> bool {
        match self.which {
            Extreme::Max => a >= b,
            Extreme::Min => a <= b,
        }
    }

    /// The extreme of the window ending with `x`.
    #[inline]
    pub fn extreme_with(&self, x: f64) -> f64 {
        if self.head != self.tail {
            let v = self.slots[self.head & self.mask].1;
            if self.better(v, x) {
                return v;
            }
        }
        x
    }

    /// Commits `x`; returns the extreme of the window ending with it.
    #[inline]
    pub fn push(&mut self, x: f64) -> f64 {
        let result = self.extreme_with(x);
        while self.tail != self.head && self.better(x, self.slots[(self.tail - 1) & self.mask].1) {
            self.tail -= 1;
        }
        self.slots[self.tail & self.mask] = (self.seen, x);
        self.tail += 1;
        self.seen += 1;
        let first_kept = self.seen.saturating_sub(self.keep);
        while self.head != self.tail && self.slots[self.head & self.mask].0 < first_kept {
            self.head += 1;
        }
        // Keep the indices small; they are only compared modulo the capacity.
        if self.head > self.mask {
            let shift = self.head & !self.mask;
            self.head -= shift;
            self.tail -= shift;
        }
        result
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.tail = 0;
        self.seen = 0;
    }
}

/// `a · b + c`. TA-Lib 0.8.1 fuses these (one rounding); so do we when the build targets a
/// CPU with FMA instructions (`-C target-cpu=native`, x86-64-v3, aarch64), matching it bit
/// for bit. Elsewhere a software fma would cost more than the whole update, so the plain form
/// is used: one extra rounding, a few ulps, far inside the 1e-9 contract.
#[inline(always)]
pub fn mul_add(a: f64, b: f64, c: f64) -> f64 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ring_keeps_the_newest() {
        let mut r = Ring::new(3);
        assert_eq!(r.push(1.0), None);
        assert_eq!(r.push(2.0), None);
        assert_eq!(r.push(3.0), None);
        assert_eq!(r.push(4.0), Some(1.0));
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
        assert_eq!(r.oldest(), Some(2.0));
        assert_eq!(r.newest(0), Some(4.0));
        assert_eq!(r.newest(2), Some(2.0));
        assert_eq!(r.newest(3), None);
        let mut z = Ring::new(0);
        assert_eq!(z.push(5.0), Some(5.0));
        assert!(z.is_empty());
    }

    proptest! {
        #[test]
        fn rolling_sum_matches_direct_sum(xs in prop::collection::vec(-1e6f64..1e6, 1..300), n in 1usize..30) {
            let mut s = RollingSum::new(n);
            for (i, &x) in xs.iter().enumerate() {
                let ready = s.is_ready();
                let peek = s.sum_with(x);
                let got = s.push(x);
                prop_assert_eq!(peek.to_bits(), got.to_bits());
                if i + 1 >= n {
                    prop_assert!(ready);
                    let direct: f64 = xs[i + 1 - n..=i].iter().sum();
                    prop_assert!((got - direct).abs() <= 1e-6, "{} vs {}", got, direct);
                }
            }
        }

        #[test]
        fn window_extremes_match_direct(xs in prop::collection::vec(-1e3f64..1e3, 1..300), n in 1usize..30) {
            let mut hi = WindowExtreme::new(n, Extreme::Max);
            let mut lo = WindowExtreme::new(n, Extreme::Min);
            for (i, &x) in xs.iter().enumerate() {
                let from = (i + 1).saturating_sub(n);
                let w = &xs[from..=i];
                let max = w.iter().copied().fold(f64::MIN, f64::max);
                let min = w.iter().copied().fold(f64::MAX, f64::min);
                prop_assert_eq!(hi.extreme_with(x), max);
                prop_assert_eq!(lo.extreme_with(x), min);
                prop_assert_eq!(hi.push(x), max);
                prop_assert_eq!(lo.push(x), min);
            }
        }
    }
}
