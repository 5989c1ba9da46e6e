//! Shared streaming math: fixed windows, running sums that do not drift, and window extremes.
//!
//! Each structure keeps the *last n − 1 committed values* of an n-bar window, so that the
//! window ending at a new value `x` is "those plus `x`": [`Indicator::peek`](crate::Indicator)
//! reads it without copying, and [`Indicator::update`](crate::Indicator) commits `x`.

/// A fixed-capacity ring of the most recent values, oldest first.
///
/// The slots are a boxed slice of exactly `capacity` values with a fill count and the slot
/// of the next value: a push is one load, one store and a compare, with no length checks of
/// a growing `Vec`, so the optimiser can keep the ring's indices (and the sums around it) in
/// registers.
#[derive(Clone, Debug)]
pub struct Ring {
    buf: Box<[f64]>,
    /// Values kept (at most `buf.len()`).
    len: usize,
    /// The slot the next value goes to: while filling, `len`; once full, the oldest value's.
    next: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: vec![0.0; cap].into_boxed_slice(),
            len: 0,
            next: 0,
        }
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// Appends `x`; when full, drops and returns the oldest value. A zero-capacity ring keeps
    /// nothing and returns `x` itself.
    #[inline]
    pub fn push(&mut self, x: f64) -> Option<f64> {
        let slot = self.next;
        // The leaving value is read before the store; `get_mut` is `None` only at capacity 0.
        let Some(cell) = self.buf.get_mut(slot) else {
            return Some(x);
        };
        let old = std::mem::replace(cell, x);
        // A compare instead of `%`: a division would cost more than the whole update.
        self.next = if slot + 1 == self.buf.len() {
            0
        } else {
            slot + 1
        };
        if self.len == self.buf.len() {
            Some(old)
        } else {
            self.len += 1;
            None
        }
    }

    /// The oldest value kept.
    #[inline]
    pub fn oldest(&self) -> Option<f64> {
        if self.is_full() {
            self.buf.get(self.next).copied()
        } else if self.len > 0 {
            self.buf.first().copied()
        } else {
            None
        }
    }

    /// The `i`-th newest value (0 = newest).
    #[inline]
    pub fn newest(&self, i: usize) -> Option<f64> {
        if i >= self.len {
            return None;
        }
        // `next − 1 − i`, wrapped; while filling `next == len`, so it never wraps.
        let back = i + 1;
        let slot = if back <= self.next {
            self.next - back
        } else {
            self.next + self.buf.len() - back
        };
        self.buf.get(slot).copied()
    }

    /// The values as two slices, oldest first (like `VecDeque::as_slices`).
    #[inline]
    pub fn as_slices(&self) -> (&[f64], &[f64]) {
        if self.is_full() {
            let (newer, older) = self.buf.split_at(self.next);
            (older, newer)
        } else {
            (&self.buf[..self.len], &[])
        }
    }

    /// Values oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let (older, newer) = self.as_slices();
        older.iter().chain(newer).copied()
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.next = 0;
    }

    /// Fills the ring to capacity with `x`: the state after `clear` and `capacity` pushes
    /// of `x`.
    #[inline]
    pub fn fill(&mut self, x: f64) {
        self.buf.fill(x);
        self.len = self.buf.len();
        self.next = 0;
    }
}

/// The sum of an n-value sliding window, updated in TA-Lib's order of operations
/// (`total = partial + x; … ; partial = total − oldest`) so results match TA-Lib's, and
/// re-anchored every n − 1 commits so rounding error cannot accumulate over millions of bars.
///
/// Re-anchoring replaces the running partial sum with the sum of the n − 1 values committed
/// since the previous anchor — which are then exactly the kept values — added oldest first
/// from 0.0, as TA-Lib sums its first window. That sum is accumulated one add per commit
/// alongside the running one (an independent dependency chain, so it costs no latency), so
/// every commit is O(1) with no loop over the window; the values are the same, bit for bit,
/// as summing the window at the anchor.
#[derive(Clone, Debug)]
pub struct RollingSum {
    tail: Ring,
    /// Sum of `tail`: TA-Lib's `periodTotal` between two bars.
    partial: f64,
    /// Sum, oldest first from 0.0, of the values committed since the last anchor.
    fresh: f64,
    /// Commits left until the next anchor (from n − 1 down to 1).
    until_anchor: usize,
}

impl RollingSum {
    /// A window of `n >= 1` values.
    pub fn new(n: usize) -> Self {
        let keep = n.saturating_sub(1);
        Self {
            tail: Ring::new(keep),
            partial: 0.0,
            fresh: 0.0,
            until_anchor: keep,
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
        let Some(oldest) = self.tail.push(x) else {
            // Still filling: `partial` and `fresh` are the same sum of the same values.
            self.partial = total;
            self.fresh = total;
            self.until_anchor = self.until_anchor.saturating_sub(1);
            if self.until_anchor == 0 {
                self.anchor();
            }
            return total;
        };
        if self.tail.capacity() == 0 {
            return total;
        }
        self.partial = total - oldest;
        self.fresh += x;
        self.until_anchor -= 1;
        if self.until_anchor == 0 {
            self.anchor();
        }
        total
    }

    /// The n − 1 values since the last anchor are the whole tail: their fresh sum replaces
    /// the running one.
    #[inline]
    fn anchor(&mut self) {
        self.partial = self.fresh;
        self.fresh = 0.0;
        self.until_anchor = self.tail.capacity();
    }

    /// The committed values (the last n − 1), oldest first.
    pub fn tail(&self) -> &Ring {
        &self.tail
    }

    pub fn clear(&mut self) {
        self.tail.clear();
        self.partial = 0.0;
        self.fresh = 0.0;
        self.until_anchor = self.tail.capacity();
    }

    /// Forgets every value and commits n − 1 zeros: ready, with a sum of exactly 0 — the
    /// state after `clear` and n − 1 pushes of 0.0, without the pushes.
    #[inline]
    pub fn zero(&mut self) {
        self.tail.fill(0.0);
        self.partial = 0.0;
        self.fresh = 0.0;
        self.until_anchor = self.tail.capacity();
    }
}

/// Which extreme a [`WindowExtreme`] tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extreme {
    Max,
    Min,
}

/// `a` if it is greater than `b`, else `b`: one `maxsd`/`maxpd` instruction (inputs are
/// never NaN: bars are checked finite).
#[inline(always)]
fn max(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// Lane-wise maxima of `L` parallel n-value sliding windows, in amortised O(1) per value
/// with no data-dependent branches (van Herk / Gil–Werman).
///
/// Of the last n − 1 committed values, kept in blocks of n − 1: the newest `k` (the current,
/// partial block) are summarised by their running maximum, and the older n − 1 − k (the end
/// of the previous block) by that block's suffix maxima, computed once when the block
/// completed — an O(n) pass every n − 1 commits. The maximum of the window ending with `x`
/// is then `max(suffix[k], running, x)`: O(1), and without changing state for a peek.
/// Maxima are exact, so the result is the window's extreme whatever the method.
#[derive(Clone, Debug)]
struct BlockMax<const L: usize> {
    /// The current block's values (slots `..k`); n − 1 slots.
    block: Box<[[f64; L]]>,
    /// Suffix maxima of the previous block: `suffix[i]` = max of its slots `i..`; at least
    /// one slot, −∞ until a block has completed.
    suffix: Box<[[f64; L]]>,
    /// Maximum of the current block's values (−∞ while it is empty).
    running: [f64; L],
    /// Values in the current block.
    k: usize,
}

impl<const L: usize> BlockMax<L> {
    const NONE: [f64; L] = [f64::NEG_INFINITY; L];

    /// Windows of `n >= 1` values.
    fn new(n: usize) -> Self {
        let keep = n.saturating_sub(1);
        Self {
            block: vec![Self::NONE; keep].into_boxed_slice(),
            suffix: vec![Self::NONE; keep.max(1)].into_boxed_slice(),
            running: Self::NONE,
            k: 0,
        }
    }

    #[inline(always)]
    fn lanes_max(a: [f64; L], b: [f64; L]) -> [f64; L] {
        std::array::from_fn(|i| max(a[i], b[i]))
    }

    /// The maxima of the windows ending with `x`.
    #[inline]
    fn max_with(&self, x: [f64; L]) -> [f64; L] {
        let older = self.suffix.get(self.k).copied().unwrap_or(Self::NONE);
        Self::lanes_max(Self::lanes_max(older, self.running), x)
    }

    /// Commits `x`.
    #[inline]
    fn push(&mut self, x: [f64; L]) {
        let Some(slot) = self.block.get_mut(self.k) else {
            // n = 1: nothing is kept.
            return;
        };
        *slot = x;
        self.running = Self::lanes_max(self.running, x);
        self.k += 1;
        if self.k == self.block.len() {
            // The current block is full: its suffix maxima summarise it from now on.
            Self::suffix_maxima(&self.block, &mut self.suffix);
            self.running = Self::NONE;
            self.k = 0;
        }
    }

    /// `suffix[i]` = max of `block[i..]`. Given the slices only (not `self`), so that the
    /// rest of the state can stay in registers around this once-per-block pass.
    fn suffix_maxima(block: &[[f64; L]], suffix: &mut [[f64; L]]) {
        let mut acc = Self::NONE;
        for (s, v) in suffix.iter_mut().zip(block).rev() {
            acc = Self::lanes_max(*v, acc);
            *s = acc;
        }
    }

    fn clear(&mut self) {
        self.suffix.fill(Self::NONE);
        self.running = Self::NONE;
        self.k = 0;
    }
}

/// The maximum or minimum of an n-value sliding window in amortised O(1) with no
/// data-dependent branches: block maxima over the last n − 1 committed values (a minimum is
/// the maximum of the negated values; negation is exact), so the extreme of the window
/// ending with `x` is O(1) to read. An O(n) pass every n − 1 commits summarises a completed
/// block.
#[derive(Clone, Debug)]
pub struct WindowExtreme {
    which: Extreme,
    blocks: BlockMax<1>,
}

impl WindowExtreme {
    pub fn new(n: usize, which: Extreme) -> Self {
        Self {
            which,
            blocks: BlockMax::new(n),
        }
    }

    /// The value as it is kept: negated for a minimum.
    #[inline]
    fn key(&self, x: f64) -> f64 {
        match self.which {
            Extreme::Max => x,
            Extreme::Min => -x,
        }
    }

    /// The extreme of the window ending with `x`.
    #[inline]
    pub fn extreme_with(&self, x: f64) -> f64 {
        let [m] = self.blocks.max_with([self.key(x)]);
        self.key(m)
    }

    /// Commits `x`; returns the extreme of the window ending with it.
    #[inline]
    pub fn push(&mut self, x: f64) -> f64 {
        let result = self.extreme_with(x);
        self.blocks.push([self.key(x)]);
        result
    }

    pub fn clear(&mut self) {
        self.blocks.clear();
    }
}

/// The highest high and the lowest low of an n-bar sliding window together (what STOCH and
/// WILLR need), as one two-lane [`WindowExtreme`]: lanes `(high, −low)`, so both extremes
/// come from the same maximum instructions. Amortised O(1) per bar: O(1) to read (peek), and
/// an O(n) pass every n − 1 commits.
#[derive(Clone, Debug)]
pub struct WindowRange {
    blocks: BlockMax<2>,
}

impl WindowRange {
    /// A window of `n >= 1` bars.
    pub fn new(n: usize) -> Self {
        Self {
            blocks: BlockMax::new(n),
        }
    }

    /// (highest, lowest) of the window ending with a bar of `high` and `low`.
    #[inline]
    pub fn range_with(&self, high: f64, low: f64) -> (f64, f64) {
        let [h, l] = self.blocks.max_with([high, -low]);
        (h, -l)
    }

    /// Commits a bar; returns (highest, lowest) of the window ending with it.
    #[inline]
    pub fn push(&mut self, high: f64, low: f64) -> (f64, f64) {
        let result = self.range_with(high, low);
        self.blocks.push([high, -low]);
        result
    }

    pub fn clear(&mut self) {
        self.blocks.clear();
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
        fn ring_matches_a_deque(xs in prop::collection::vec(-1e6f64..1e6, 0..200), cap in 0usize..20, clear_at in 0usize..200) {
            let mut r = Ring::new(cap);
            let mut model = std::collections::VecDeque::new();
            for (i, &x) in xs.iter().enumerate() {
                if i == clear_at {
                    r.clear();
                    model.clear();
                }
                let left = if cap == 0 {
                    Some(x)
                } else {
                    model.push_back(x);
                    (model.len() > cap).then(|| model.pop_front()).flatten()
                };
                prop_assert_eq!(r.push(x), left);
                prop_assert_eq!(r.len(), model.len());
                prop_assert_eq!(r.is_full(), model.len() == cap);
                prop_assert_eq!(r.oldest(), model.front().copied());
                prop_assert_eq!(r.iter().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                for k in 0..=cap {
                    prop_assert_eq!(r.newest(k), model.iter().rev().nth(k).copied());
                }
            }
        }

        #[test]
        fn rolling_sum_zero_is_n_minus_1_zero_pushes(xs in prop::collection::vec(-1e6f64..1e6, 0..100), ys in prop::collection::vec(-1e6f64..1e6, 0..100), n in 1usize..30) {
            let mut a = RollingSum::new(n);
            let mut b = RollingSum::new(n);
            for &x in &xs {
                a.push(x);
                b.push(x);
            }
            a.zero();
            b.clear();
            for _ in 1..n {
                b.push(0.0);
            }
            prop_assert_eq!(a.is_ready(), b.is_ready());
            for &y in &ys {
                prop_assert_eq!(a.sum_with(y).to_bits(), b.sum_with(y).to_bits());
                prop_assert_eq!(a.push(y).to_bits(), b.push(y).to_bits());
            }
        }

        #[test]
        fn window_range_matches_direct(bars in prop::collection::vec((-1e3f64..1e3, 0.0f64..10.0), 1..300), n in 1usize..40, clear_at in 0usize..300) {
            let mut w = WindowRange::new(n);
            let mut from = 0;
            for (i, &(mid, half)) in bars.iter().enumerate() {
                if i == clear_at {
                    w.clear();
                    from = i;
                }
                let (high, low) = (mid + half, mid - half);
                let start = from.max((i + 1).saturating_sub(n));
                let window = &bars[start..=i];
                let max = window.iter().map(|&(m, h)| m + h).fold(f64::MIN, f64::max);
                let min = window.iter().map(|&(m, h)| m - h).fold(f64::MAX, f64::min);
                prop_assert_eq!(w.range_with(high, low), (max, min));
                prop_assert_eq!(w.push(high, low), (max, min));
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
