//! Moving averages: SMA, EMA, WMA, and MACD (built from EMAs).

use alert_core::{Candle, PriceSource};

use crate::math::{Ring, RollingSum};
use crate::{Indicator, SettingError, check_period};

/// Simple moving average of a number stream, as TA-Lib's `SMA`: the first value after
/// `n` inputs (lookback n − 1).
#[derive(Clone, Debug)]
pub struct SmaCore {
    n: usize,
    sum: RollingSum,
}

impl SmaCore {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            sum: RollingSum::new(n),
        }
    }

    #[inline]
    pub fn peek(&self, x: f64) -> Option<f64> {
        self.sum
            .is_ready()
            .then(|| self.sum.sum_with(x) / self.n as f64)
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let ready = self.sum.is_ready();
        let total = self.sum.push(x);
        ready.then(|| total / self.n as f64)
    }

    pub fn period(&self) -> usize {
        self.n
    }

    pub fn reset(&mut self) {
        self.sum.clear();
    }
}

/// Simple moving average of a bar's `source` (close by default; `Volume` gives VOLUME_SMA).
#[derive(Clone, Debug)]
pub struct Sma {
    source: PriceSource,
    core: SmaCore,
}

impl Sma {
    /// TA-Lib accepts periods from 1.
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        let n = check_period("period", period, 1)?;
        Ok(Self {
            source,
            core: SmaCore::new(n),
        })
    }
}

impl Indicator for Sma {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        self.core.update(bar.price(self.source))
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        self.core.peek(bar.price(self.source))
    }

    fn lookback(&self) -> usize {
        self.core.period() - 1
    }

    fn reset(&mut self) {
        self.core.reset();
    }
}

/// Exponential moving average of a number stream, as TA-Lib's `EMA` (default, not Metastock):
/// seeded with the SMA of the first `n` inputs, then `ema += (x − ema)·k` with
/// `k = 2 / (n + 1)`.
#[derive(Clone, Debug)]
pub struct EmaCore {
    n: usize,
    k: f64,
    /// Inputs committed, counted up to `n`.
    seen: usize,
    /// Sum of the inputs while seeding, then the last EMA value.
    acc: f64,
}

impl EmaCore {
    pub fn new(n: usize) -> Self {
        Self::with_k(n, 2.0 / (n as f64 + 1.0))
    }

    /// An EMA with an explicit smoothing factor (Wilder's is `1/n`).
    pub fn with_k(n: usize, k: f64) -> Self {
        Self {
            n,
            k,
            seen: 0,
            acc: 0.0,
        }
    }

    #[inline]
    fn next(&self, x: f64) -> Option<f64> {
        if self.seen + 1 < self.n {
            None
        } else if self.seen + 1 == self.n {
            Some((self.acc + x) / self.n as f64)
        } else {
            Some(crate::math::mul_add(x - self.acc, self.k, self.acc))
        }
    }

    #[inline]
    pub fn peek(&self, x: f64) -> Option<f64> {
        self.next(x)
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        // The steady state first, with nothing but the EMA step on the `acc` recurrence
        // (`seen` stops counting once it reaches `n`; only `seen >= n` is ever asked).
        if self.seen >= self.n {
            self.acc = crate::math::mul_add(x - self.acc, self.k, self.acc);
            return Some(self.acc);
        }
        self.seen += 1;
        self.acc += x;
        if self.seen < self.n {
            return None;
        }
        self.acc /= self.n as f64;
        Some(self.acc)
    }

    /// The last committed EMA value, once there is one.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        (self.seen >= self.n).then_some(self.acc)
    }

    pub fn period(&self) -> usize {
        self.n
    }

    pub fn reset(&mut self) {
        self.seen = 0;
        self.acc = 0.0;
    }
}

/// Exponential moving average of a bar's `source`.
#[derive(Clone, Debug)]
pub struct Ema {
    source: PriceSource,
    core: EmaCore,
}

impl Ema {
    /// TA-Lib accepts periods from 1.
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        let n = check_period("period", period, 1)?;
        Ok(Self {
            source,
            core: EmaCore::new(n),
        })
    }
}

impl Indicator for Ema {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        self.core.update(bar.price(self.source))
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        self.core.peek(bar.price(self.source))
    }

    fn lookback(&self) -> usize {
        self.core.period() - 1
    }

    fn reset(&mut self) {
        self.core.reset();
    }
}

/// Weighted moving average of a bar's `source`, as TA-Lib's `WMA`: weights 1..n, newest
/// heaviest, `WMA = Σ wᵢ·xᵢ / (n(n+1)/2)`. Lookback n − 1; `WMA(1)` is the input itself.
///
/// Follows TA-Lib 0.8.1 operation for operation, so values are bit-identical: the running
/// `periodSub` (plain window sum) and `periodSum` (weighted sum) are updated as
/// `sub = (sub + x) − trailing`, `sum' = x·n + sum`, value `sum' / divider`, then
/// `sum = sum' − sub`; and, exactly like TA-Lib, both sums are recomputed from the window on
/// every 8n-th value, so rounding error cannot accumulate. The tail's part of that
/// recomputation is done at the commit before, so `update` is amortised O(1) and `peek` O(1).
#[derive(Clone, Debug)]
pub struct Wma {
    source: PriceSource,
    n: usize,
    /// `n` as a float: the weight of the newest value.
    weight: f64,
    /// `(n + 1)·n·0.5`, TA-Lib's divider.
    divider: f64,
    /// The last n − 1 committed values.
    tail: Ring,
    /// The value that left the window at the last commit (TA-Lib's `trailingValue`).
    trailing: f64,
    /// Sum of the values of the last window (while warming up: of the values so far).
    sub: f64,
    /// Weighted sum of the last n − 1 values with weights 1..n−1 (after a value: `sum' − sub`).
    sum: f64,
    /// Values left until the sums are recomputed from the window (TA-Lib's counter).
    countdown: usize,
    /// When the next value re-anchors: the tail's part of the recomputed sums, computed at
    /// the previous commit so that peeking stays O(1).
    anchor: Option<(f64, f64)>,
}

/// One WMA step: the value and the sums after it.
#[derive(Clone, Copy, Debug)]
struct WmaStep {
    value: f64,
    sub: f64,
    sum: f64,
    countdown: usize,
}

impl Wma {
    /// TA-Lib accepts periods from 1.
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        let n = check_period("period", period, 1)?;
        Ok(Self {
            source,
            n,
            weight: n as f64,
            divider: (n as f64 + 1.0) * n as f64 * 0.5,
            tail: Ring::new(n - 1),
            trailing: 0.0,
            sub: 0.0,
            sum: 0.0,
            countdown: Self::reanchor_every(n),
            anchor: None,
        })
    }

    /// TA-Lib 0.8.1 recomputes both sums from the window every 8n values.
    fn reanchor_every(n: usize) -> usize {
        8 * n
    }

    /// The step for the window made of the committed tail and `x` (tail full, n ≥ 2).
    #[inline]
    fn step(&self, x: f64) -> WmaStep {
        let countdown = self.countdown - 1;
        if countdown != 0 {
            let sub = (self.sub + x) - self.trailing;
            let total = x * self.weight + self.sum;
            WmaStep {
                value: total / self.divider,
                sub,
                sum: total - sub,
                countdown,
            }
        } else {
            // Both sums recomputed from the window, oldest first, weights 1..n; the tail's
            // part is ready from the previous commit.
            let (tail_sub, tail_total) = self.anchor.unwrap_or_else(|| tail_sums(&self.tail));
            let sub = tail_sub + x;
            let total = tail_total + self.weight * x;
            WmaStep {
                value: total / self.divider,
                sub,
                sum: total - sub,
                countdown: Self::reanchor_every(self.n),
            }
        }
    }
}

/// The plain and the weighted (1..n−1) sums of a WMA's committed tail, oldest first. Once
/// per 8n values. Given the ring rather than the indicator, and inlined: an out-of-line call
/// in a caller's loop would make the compiler keep the running sums in memory (every float
/// register is caller-saved).
#[inline]
fn tail_sums(tail: &Ring) -> (f64, f64) {
    let (older, newer) = tail.as_slices();
    older
        .iter()
        .chain(newer)
        .enumerate()
        .fold((0.0, 0.0), |(sub, total), (i, &v)| {
            (sub + v, total + (i + 1) as f64 * v)
        })
}

impl Indicator for Wma {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let x = bar.price(self.source);
        if self.n == 1 {
            return Some(x);
        }
        if !self.tail.is_full() {
            // Warm-up: TA-Lib's initial sums, weights 1, 2, … in input order.
            self.sub += x;
            self.sum += (self.tail.len() + 1) as f64 * x;
            self.tail.push(x);
            return None;
        }
        let step = self.step(x);
        self.sub = step.sub;
        self.sum = step.sum;
        self.countdown = step.countdown;
        self.trailing = self.tail.push(x).unwrap_or(0.0);
        self.anchor = (self.countdown == 1).then(|| tail_sums(&self.tail));
        Some(step.value)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        let x = bar.price(self.source);
        if self.n == 1 {
            Some(x)
        } else if self.tail.is_full() {
            Some(self.step(x).value)
        } else {
            None
        }
    }

    fn lookback(&self) -> usize {
        self.n - 1
    }

    fn reset(&mut self) {
        self.tail.clear();
        self.trailing = 0.0;
        self.sub = 0.0;
        self.sum = 0.0;
        self.countdown = Self::reanchor_every(self.n);
        self.anchor = None;
    }
}

/// An EMA as TA-Lib 0.8.1's MACD computes its three: seeded with the mean of the first `n`
/// inputs (summed from 0.0 in input order), then `ema = fma(x − ema, k, ema)` — a fused
/// multiply-add, as the TA-Lib binary does on every CPU (it calls `fma()`).
#[derive(Clone, Debug)]
struct FusedEma {
    n: usize,
    k: f64,
    /// Inputs committed, counted up to `n`.
    seen: usize,
    /// Sum of the inputs while seeding, then the last EMA value.
    acc: f64,
}

impl FusedEma {
    fn new(n: usize) -> Self {
        Self {
            n,
            k: 2.0 / (n as f64 + 1.0),
            seen: 0,
            acc: 0.0,
        }
    }

    #[inline]
    fn peek(&self, x: f64) -> Option<f64> {
        if self.seen + 1 < self.n {
            None
        } else if self.seen + 1 == self.n {
            Some((self.acc + x) / self.n as f64)
        } else {
            Some(crate::math::mul_add(x - self.acc, self.k, self.acc))
        }
    }

    #[inline]
    fn update(&mut self, x: f64) -> Option<f64> {
        // As `EmaCore::update`: the steady state first, `seen` stopping at `n`.
        if self.seen >= self.n {
            self.acc = crate::math::mul_add(x - self.acc, self.k, self.acc);
            return Some(self.acc);
        }
        self.seen += 1;
        self.acc += x;
        if self.seen < self.n {
            return None;
        }
        self.acc /= self.n as f64;
        Some(self.acc)
    }

    fn reset(&mut self) {
        self.seen = 0;
        self.acc = 0.0;
    }
}

/// MACD line, signal line and histogram at one bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MacdValue {
    pub macd: f64,
    pub signal: f64,
    pub histogram: f64,
}

/// MACD of a bar's `source`, as TA-Lib's `MACD` (default compatibility):
/// `macd = EMA(fast) − EMA(slow)`, `signal = EMA(signal)` of the MACD line,
/// `histogram = macd − signal`, every EMA with `k = 2/(n + 1)`.
///
/// Lookback `(slow − 1) + (signal − 1)`; all three components start on that bar. As in
/// TA-Lib: `fast > slow` are swapped; the slow EMA is seeded with the mean of bars
/// `0..slow` and the fast EMA with the mean of the `fast` bars *ending on the same bar*
/// (`slow − fast ..slow`), not of the first `fast` bars; the signal EMA is seeded with the
/// mean of the first `signal` MACD values; and each EMA step is a fused multiply-add, so
/// values are bit-identical to TA-Lib 0.8.1's.
#[derive(Clone, Debug)]
pub struct Macd {
    source: PriceSource,
    fast_n: usize,
    slow_n: usize,
    signal_n: usize,
    fast: FusedEma,
    slow: FusedEma,
    signal: FusedEma,
    /// Bars committed (saturating).
    seen: usize,
}

impl Macd {
    /// TA-Lib accepts fast and slow periods from 2 and a signal period from 1; a fast period
    /// longer than the slow one is swapped with it, as TA-Lib does.
    pub fn new(
        fast: usize,
        slow: usize,
        signal: usize,
        source: PriceSource,
    ) -> Result<Self, SettingError> {
        let fast = check_period("fast", fast, 2)?;
        let slow = check_period("slow", slow, 2)?;
        let signal = check_period("signal", signal, 1)?;
        let (fast, slow) = (fast.min(slow), fast.max(slow));
        Ok(Self {
            source,
            fast_n: fast,
            slow_n: slow,
            signal_n: signal,
            fast: FusedEma::new(fast),
            slow: FusedEma::new(slow),
            signal: FusedEma::new(signal),
            seen: 0,
        })
    }

    /// Whether the bar after `seen` committed bars feeds the fast EMA: its seed window ends
    /// with the slow one's.
    #[inline]
    fn feeds_fast(&self) -> bool {
        self.seen >= self.slow_n - self.fast_n
    }
}

impl Indicator for Macd {
    type Output = MacdValue;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<MacdValue> {
        let x = bar.price(self.source);
        let fast = if self.feeds_fast() {
            self.fast.update(x)
        } else {
            None
        };
        let slow = self.slow.update(x);
        self.seen = self.seen.saturating_add(1);
        let (Some(fast), Some(slow)) = (fast, slow) else {
            return None;
        };
        let macd = fast - slow;
        let signal = self.signal.update(macd)?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<MacdValue> {
        let x = bar.price(self.source);
        if !self.feeds_fast() {
            return None;
        }
        let macd = self.fast.peek(x)? - self.slow.peek(x)?;
        let signal = self.signal.peek(macd)?;
        Some(MacdValue {
            macd,
            signal,
            histogram: macd - signal,
        })
    }

    fn lookback(&self) -> usize {
        self.slow_n - 1 + self.signal_n - 1
    }

    fn reset(&mut self) {
        self.fast.reset();
        self.slow.reset();
        self.signal.reset();
        self.seen = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alert_core::BarTime;

    fn closes(xs: &[f64]) -> Vec<Candle> {
        xs.iter()
            .enumerate()
            .map(|(i, &c)| Candle {
                open_time: BarTime::from_millis(i as i64 * 60_000),
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 1.0,
            })
            .collect()
    }

    #[test]
    fn sma_small_example() {
        let mut sma = Sma::new(3, PriceSource::Close).ok();
        let out: Vec<_> = closes(&[1.0, 2.0, 3.0, 4.0, 8.0])
            .iter()
            .filter_map(|c| sma.as_mut().map(|s| s.update(c)))
            .collect();
        assert_eq!(out, vec![None, None, Some(2.0), Some(3.0), Some(5.0)]);
    }

    #[test]
    fn ema_seeds_with_sma() {
        let Ok(mut ema) = Ema::new(3, PriceSource::Close) else {
            panic!("valid period")
        };
        let bars = closes(&[1.0, 2.0, 3.0, 6.0]);
        assert_eq!(ema.update(&bars[0]), None);
        assert_eq!(ema.update(&bars[1]), None);
        assert_eq!(ema.peek(&bars[2]), Some(2.0));
        assert_eq!(ema.update(&bars[2]), Some(2.0));
        // k = 0.5: 2 + (6 - 2) * 0.5
        assert_eq!(ema.update(&bars[3]), Some(4.0));
    }

    #[test]
    fn periods_below_talib_minimum_are_refused() {
        let err = Sma::new(0, PriceSource::Close).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("period") && e.contains("at least 1")));
    }

    fn run<I: Indicator>(ind: &mut I, bars: &[Candle]) -> Vec<Option<I::Output>>
    where
        I::Output: PartialEq + std::fmt::Debug,
    {
        bars.iter()
            .map(|b| {
                let peeked = ind.peek(b);
                let got = ind.update(b);
                assert_eq!(format!("{peeked:?}"), format!("{got:?}"), "peek != update");
                got
            })
            .collect()
    }

    /// A deterministic wiggly series (no randomness crate needed).
    fn wiggle(len: usize, level: f64) -> Vec<f64> {
        (0..len)
            .map(|i| {
                let t = i as f64;
                level + (t * 0.37).sin() * 3.0 + (t * 0.051).cos() * 7.0 + (i % 5) as f64 * 0.25
            })
            .collect()
    }

    fn close(x: f64, rel: f64, a: f64, b: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(x)
    }

    #[test]
    fn wma_small_example() {
        let Ok(mut wma) = Wma::new(3, PriceSource::Close) else {
            panic!("valid period")
        };
        let out = run(&mut wma, &closes(&[1.0, 2.0, 3.0, 4.0, 10.0]));
        // (1·1 + 2·2 + 3·3) / 6, (2 + 6 + 12) / 6, (3 + 8 + 30) / 6
        assert_eq!(
            out,
            vec![
                None,
                None,
                Some(14.0 / 6.0),
                Some(20.0 / 6.0),
                Some(41.0 / 6.0)
            ]
        );
        assert_eq!(wma.lookback(), 2);
    }

    #[test]
    fn wma_of_one_is_the_input() {
        let Ok(mut wma) = Wma::new(1, PriceSource::Close) else {
            panic!("valid period")
        };
        assert_eq!(wma.lookback(), 0);
        let out = run(&mut wma, &closes(&[5.0, 7.5]));
        assert_eq!(out, vec![Some(5.0), Some(7.5)]);
    }

    #[test]
    fn wma_flat_series_is_flat() {
        let Ok(mut wma) = Wma::new(20, PriceSource::Close) else {
            panic!("valid period")
        };
        let out = run(&mut wma, &closes(&[43210.5; 500]));
        assert!(out[..19].iter().all(Option::is_none));
        assert!(out[19..].iter().all(|v| *v == Some(43210.5)));
    }

    #[test]
    fn wma_matches_direct_formula_over_many_reanchors_without_drift() {
        let n = 7;
        let xs = wiggle(200_000, 1.0e6);
        let Ok(mut wma) = Wma::new(n, PriceSource::Close) else {
            panic!("valid period")
        };
        let bars = closes(&xs);
        let divider = (n * (n + 1) / 2) as f64;
        for (i, b) in bars.iter().enumerate() {
            let got = wma.update(b);
            if i + 1 < n {
                assert_eq!(got, None);
                continue;
            }
            let direct: f64 = xs[i + 1 - n..=i]
                .iter()
                .enumerate()
                .map(|(w, x)| (w + 1) as f64 * x)
                .sum::<f64>()
                / divider;
            let Some(got) = got else {
                panic!("value at {i}")
            };
            assert!(close(0.0, 1e-12, got, direct), "{i}: {got} vs {direct}");
        }
    }

    #[test]
    fn wma_reset_forgets() {
        let Ok(mut wma) = Wma::new(3, PriceSource::Close) else {
            panic!("valid period")
        };
        let bars = closes(&wiggle(50, 10.0));
        let first = run(&mut wma, &bars);
        wma.reset();
        assert_eq!(run(&mut wma, &bars), first);
    }

    #[test]
    fn macd_small_example() {
        let Ok(mut macd) = Macd::new(2, 3, 2, PriceSource::Close) else {
            panic!("valid periods")
        };
        assert_eq!(macd.lookback(), 3);
        let out = run(&mut macd, &closes(&[1.0, 2.0, 3.0, 4.0, 5.0]));
        assert_eq!(&out[..3], &[None, None, None]);
        // bar 2: slow seed (1+2+3)/3 = 2, fast seed (2+3)/2 = 2.5 (not (1+2)/2): macd 0.5.
        // bar 3: fast 2.5 + 1.5·2/3 = 3.5, slow 2 + 2·0.5 = 3: macd 0.5; signal seed 0.5.
        let Some(v) = out[3] else {
            panic!("value at bar 3")
        };
        assert!(close(1.0, 1e-15, v.macd, 0.5));
        assert!(close(1.0, 1e-15, v.signal, 0.5));
        assert!(v.histogram.abs() < 1e-15);
        // bar 4: fast 4.5, slow 4: macd 0.5, signal 0.5 + (0.5 − 0.5)·2/3.
        let Some(v) = out[4] else {
            panic!("value at bar 4")
        };
        assert!(close(1.0, 1e-15, v.macd, 0.5));
        assert!(close(1.0, 1e-15, v.signal, 0.5));
    }

    #[test]
    fn macd_signal_one_is_the_macd_line() {
        let Ok(mut macd) = Macd::new(3, 5, 1, PriceSource::Close) else {
            panic!("valid periods")
        };
        assert_eq!(macd.lookback(), 4);
        for v in run(&mut macd, &closes(&wiggle(100, 50.0)))
            .into_iter()
            .flatten()
        {
            assert_eq!(v.signal, v.macd);
            assert_eq!(v.histogram, 0.0);
        }
    }

    #[test]
    fn macd_swaps_fast_and_slow_like_talib() {
        let bars = closes(&wiggle(300, 100.0));
        let (Ok(mut a), Ok(mut b)) = (
            Macd::new(12, 26, 9, PriceSource::Close),
            Macd::new(26, 12, 9, PriceSource::Close),
        ) else {
            panic!("valid periods")
        };
        assert_eq!(a.lookback(), 33);
        assert_eq!(b.lookback(), 33);
        assert_eq!(run(&mut a, &bars), run(&mut b, &bars));
    }

    #[test]
    fn macd_flat_series_is_zero() {
        let Ok(mut macd) = Macd::new(12, 26, 9, PriceSource::Close) else {
            panic!("valid periods")
        };
        let out = run(&mut macd, &closes(&[43210.5; 100]));
        assert!(out[..33].iter().all(Option::is_none));
        for v in out[33..].iter() {
            assert_eq!(
                *v,
                Some(MacdValue {
                    macd: 0.0,
                    signal: 0.0,
                    histogram: 0.0
                })
            );
        }
    }

    #[test]
    fn macd_reset_forgets() {
        let Ok(mut macd) = Macd::new(5, 35, 5, PriceSource::Close) else {
            panic!("valid periods")
        };
        let bars = closes(&wiggle(120, 10.0));
        let first = run(&mut macd, &bars);
        macd.reset();
        assert_eq!(run(&mut macd, &bars), first);
    }

    #[test]
    fn wma_and_macd_settings_errors() {
        assert!(Wma::new(0, PriceSource::Close).is_err());
        assert!(Wma::new(crate::MAX_PERIOD + 1, PriceSource::Close).is_err());
        assert!(Macd::new(1, 26, 9, PriceSource::Close).is_err());
        assert!(Macd::new(12, 1, 9, PriceSource::Close).is_err());
        assert!(Macd::new(12, 26, 0, PriceSource::Close).is_err());
        assert!(Macd::new(2, 2, 1, PriceSource::Close).is_ok());
    }
}
