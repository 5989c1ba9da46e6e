//! Volatility: ATR and Bollinger Bands.

use alert_core::{Candle, PriceSource};

use crate::math::{Ring, RollingSum};
use crate::{Indicator, SettingError, StdDevMultiplier, check_period};

/// True range of a bar given the previous close: the greatest of `high − low`,
/// `|prev_close − high|` and `|prev_close − low|` (TA-Lib's `TRANGE`).
#[inline]
fn true_range(bar: &Candle, prev_close: f64) -> f64 {
    // TA-Lib's `if (v > greatest) greatest = v` steps: one `maxsd` each, where `f64::max`
    // adds NaN handling (bars are checked finite, so the results are the same).
    let mut range = bar.high - bar.low;
    let up = (prev_close - bar.high).abs();
    if up > range {
        range = up;
    }
    let down = (prev_close - bar.low).abs();
    if down > range {
        range = down;
    }
    range
}

/// Average true range, as TA-Lib's `ATR`: Wilder's smoothing of the true range.
///
/// The first bar has no true range (no previous close), so the lookback is `n`: the first
/// value is the mean of the true ranges of bars `1..=n` (summed from 0.0 in bar order), then
/// `atr = fma(atr, a, tr·b)` with `a = (n − 1)/n`, `b = 1 − a` — exactly TA-Lib 0.8.1's
/// arithmetic, which calls `fma()` on every CPU. `ATR(1)` is the plain true range from the
/// second bar on (TA-Lib's `TRANGE`; the smoothing above then reduces to it exactly).
#[derive(Clone, Debug)]
pub struct Atr {
    n: usize,
    /// `(n − 1)/n`: the weight of the previous ATR.
    a: f64,
    /// `1 − a`: the weight of the new true range.
    b: f64,
    prev_close: Option<f64>,
    /// True ranges committed, counted up to `n`.
    ranges: usize,
    /// Sum of the true ranges while seeding, then the last ATR value.
    acc: f64,
}

impl Atr {
    /// TA-Lib accepts periods from 1.
    pub fn new(period: usize) -> Result<Self, SettingError> {
        let n = check_period("period", period, 1)?;
        let a = (n - 1) as f64 / n as f64;
        Ok(Self {
            n,
            a,
            b: 1.0 - a,
            prev_close: None,
            ranges: 0,
            acc: 0.0,
        })
    }

    /// The true range of `bar` and the ATR after it, if any.
    #[inline]
    fn next(&self, bar: &Candle) -> Option<(f64, Option<f64>)> {
        let tr = true_range(bar, self.prev_close?);
        let atr = if self.ranges + 1 < self.n {
            None
        } else if self.ranges + 1 == self.n {
            Some((self.acc + tr) / self.n as f64)
        } else {
            Some(crate::math::mul_add(self.acc, self.a, tr * self.b))
        };
        Some((tr, atr))
    }
}

impl Indicator for Atr {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let prev_close = self.prev_close.replace(bar.close)?;
        let tr = true_range(bar, prev_close);
        // The steady state first, with nothing but Wilder's step on the `acc` recurrence
        // (`ranges` stops counting once it reaches `n`; only `ranges >= n` matters then).
        if self.ranges >= self.n {
            self.acc = crate::math::mul_add(self.acc, self.a, tr * self.b);
            return Some(self.acc);
        }
        self.ranges += 1;
        self.acc += tr;
        if self.ranges < self.n {
            return None;
        }
        self.acc /= self.n as f64;
        Some(self.acc)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        self.next(bar).and_then(|(_, atr)| atr)
    }

    fn lookback(&self) -> usize {
        self.n
    }

    fn reset(&mut self) {
        self.prev_close = None;
        self.ranges = 0;
        self.acc = 0.0;
    }
}

/// Upper, middle and lower Bollinger band at one bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandsValue {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
}

/// TA-Lib 0.8.1 recomputes its shifted sums from the window at least every 32n values.
const STDDEV_REANCHOR_EVERY: usize = 32;
/// A variance below this fraction of the shifted mean square lost too many digits: re-anchor.
const STDDEV_CANCELLATION: f64 = 1e-6;
/// A leaving squared deviation this many times the remaining sum would leave only noise.
const STDDEV_DOMINANT_LEAVER: f64 = 1e6;
/// After re-anchoring, a variance below this fraction of the mean square is zero.
const STDDEV_ZERO: f64 = 1e-12;

/// Shifted sums of an n-value window, as TA-Lib 0.8.1 computes a population variance:
/// `S1 = Σ(x − K)`, `S2 = Σ(x − K)²` for a shift `K`, `var = S2/n − (S1/n)²`. `K` starts as
/// the first value; the sums are recomputed from the window, with `K` = the window mean, when
/// cancellation is detected or after 32n values — so error never accumulates.
#[derive(Clone, Copy, Debug)]
struct Shifted {
    shift: f64,
    s1: f64,
    s2: f64,
    /// TA-Lib's counter: values left until the next forced re-anchor.
    countdown: usize,
}

/// One step of [`ShiftedStdDev`].
enum DevStep {
    /// The standard deviation and the sums after the value.
    Done(f64, Shifted),
    /// The sums must be recomputed from the window (whose oldest value is given).
    Reanchor { oldest: f64 },
}

/// The population standard deviation of an n-value window (n ≥ 2) in TA-Lib 0.8.1's exact
/// arithmetic (the inline `STDDEV` of `BBANDS` with an SMA middle band). The window's last
/// n − 1 committed values live in a [`RollingSum`]'s tail, shared with the middle band.
#[derive(Clone, Debug)]
struct ShiftedStdDev {
    n: usize,
    /// `1.0 / n`.
    inv: f64,
    sums: Shifted,
}

impl ShiftedStdDev {
    fn new(n: usize) -> Self {
        Self {
            n,
            inv: 1.0 / n as f64,
            sums: Self::fresh(n),
        }
    }

    fn fresh(n: usize) -> Shifted {
        Shifted {
            shift: 0.0,
            s1: 0.0,
            s2: 0.0,
            countdown: STDDEV_REANCHOR_EVERY * n,
        }
    }

    /// Adds a warm-up value (`tail` holds the values before it).
    #[inline]
    fn warm_up(&mut self, tail: &Ring, x: f64) {
        if tail.is_empty() {
            self.sums.shift = x;
        }
        let d = x - self.sums.shift;
        self.sums.s1 += d;
        self.sums.s2 += d * d;
    }

    /// The standard deviation of the window `tail` + `x` (tail holds the last n − 1 values)
    /// and the sums after `x` is committed — or, when the sums must be re-anchored, the
    /// oldest value, for [`reanchored`].
    #[inline]
    fn step(&self, tail: &Ring, x: f64) -> DevStep {
        let Shifted {
            shift,
            s1,
            s2,
            countdown,
        } = self.sums;
        let inv = self.inv;
        let oldest = tail.oldest().unwrap_or(x);
        let d = x - shift;
        let s1 = s1 + d;
        let s2 = s2 + d * d;
        let m = inv * s1;
        let var = inv * s2 - m * m;
        let od = oldest - shift;
        let od2 = od * od;
        let s2 = s2 - od2;
        let countdown = countdown - 1;
        let reanchor = inv * s2 * STDDEV_CANCELLATION > var
            || od2 > s2 * STDDEV_DOMINANT_LEAVER
            || countdown == 0;
        if reanchor {
            return DevStep::Reanchor { oldest };
        }
        let sd = if var == 0.0 { 0.0 } else { var.sqrt() };
        let next = Shifted {
            shift,
            s1: s1 - od,
            s2,
            countdown,
        };
        DevStep::Done(sd, next)
    }

    /// The standard deviation of the window `tail` + `x`.
    #[inline]
    fn peek(&self, tail: &Ring, x: f64) -> f64 {
        match self.step(tail, x) {
            DevStep::Done(sd, _) => sd,
            DevStep::Reanchor { oldest } => {
                reanchored(tail.as_slices(), x, oldest, self.inv, self.n).0
            }
        }
    }

    /// The standard deviation of the window `tail` + `x`, committing `x`. Each path stores
    /// its own sums: merging the two results first would pass them through memory.
    #[inline]
    fn commit(&mut self, tail: &Ring, x: f64) -> f64 {
        match self.step(tail, x) {
            DevStep::Done(sd, next) => {
                self.sums = next;
                sd
            }
            DevStep::Reanchor { oldest } => {
                let (sd, next) = reanchored(tail.as_slices(), x, oldest, self.inv, self.n);
                self.sums = next;
                sd
            }
        }
    }

    fn reset(&mut self) {
        self.sums = Self::fresh(self.n);
    }
}

/// Recomputes the shifted sums from the window (`tail`, oldest first, then `x`) around its
/// mean. Rare (cancellation, or every 32n values). Given the window as slices rather than the
/// indicator, and inlined: an out-of-line call anywhere in a caller's loop would make the
/// compiler keep the running sums in memory (every float register is caller-saved).
#[inline]
fn reanchored(
    (older, newer): (&[f64], &[f64]),
    x: f64,
    oldest: f64,
    inv: f64,
    n: usize,
) -> (f64, Shifted) {
    let window = || older.iter().chain(newer).copied().chain(std::iter::once(x));
    let shift = window().fold(0.0, |acc, v| acc + v) * inv;
    let (mut s1, mut s2) = (0.0, 0.0);
    for v in window() {
        let d = v - shift;
        s1 += d;
        s2 += d * d;
    }
    let m = inv * s1;
    let mean_sq = inv * s2;
    let var = mean_sq - m * m;
    let sd = if mean_sq * STDDEV_ZERO > var || var == 0.0 {
        0.0
    } else {
        var.sqrt()
    };
    let od = oldest - shift;
    let next = Shifted {
        shift,
        s1: s1 - od,
        s2: s2 - od * od,
        countdown: STDDEV_REANCHOR_EVERY * n,
    };
    (sd, next)
}

/// Bollinger Bands of a bar's `source`, as TA-Lib's `BBANDS` with an SMA middle band
/// (`matype` 0) and equal up/down multipliers `k`:
/// `middle = SMA(n)`, `upper = middle + σ·k`, `lower = middle − σ·k`, where σ is the
/// population standard deviation of the same n values. Lookback n − 1.
///
/// σ is computed as TA-Lib 0.8.1 does (it replaced the older "mean of squares minus square
/// of the mean" with a `TA_IS_ZERO_OR_NEG` test): from sums of deviations from a shift `K`,
/// `var = S2/n − (S1/n)²`, re-anchored around the window mean when cancellation is detected
/// and at least every 32n bars, with a flat window giving exactly σ = 0. The middle band is
/// [`crate::averages::SmaCore`]'s arithmetic (a [`RollingSum`] that re-anchors itself), so
/// it equals the SMA indicator bit for bit.
#[derive(Clone, Debug)]
pub struct Bbands {
    n: usize,
    k: f64,
    source: PriceSource,
    /// The window sum; its tail is the window for the standard deviation too.
    sum: RollingSum,
    dev: ShiftedStdDev,
}

impl Bbands {
    /// TA-Lib accepts periods from 2; `stddev` (the band width `k`) must be finite and
    /// positive (at most 1e6), as [`StdDevMultiplier`] checks.
    pub fn new(period: usize, stddev: f64, source: PriceSource) -> Result<Self, SettingError> {
        let n = check_period("period", period, 2)?;
        let k = StdDevMultiplier::new(stddev)?.get();
        Ok(Self {
            n,
            k,
            source,
            sum: RollingSum::new(n),
            dev: ShiftedStdDev::new(n),
        })
    }

    /// The bands around `middle` for a standard deviation `sd`.
    #[inline]
    fn bands(&self, middle: f64, sd: f64) -> BandsValue {
        let width = sd * self.k;
        BandsValue {
            upper: middle + width,
            middle,
            lower: middle - width,
        }
    }
}

impl Indicator for Bbands {
    type Output = BandsValue;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<BandsValue> {
        let x = bar.price(self.source);
        if !self.sum.is_ready() {
            self.dev.warm_up(self.sum.tail(), x);
            self.sum.push(x);
            return None;
        }
        let sd = self.dev.commit(self.sum.tail(), x);
        let middle = self.sum.push(x) / self.n as f64;
        Some(self.bands(middle, sd))
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<BandsValue> {
        let x = bar.price(self.source);
        if !self.sum.is_ready() {
            return None;
        }
        let sd = self.dev.peek(self.sum.tail(), x);
        let middle = self.sum.sum_with(x) / self.n as f64;
        Some(self.bands(middle, sd))
    }

    fn lookback(&self) -> usize {
        self.n - 1
    }

    fn reset(&mut self) {
        self.sum.clear();
        self.dev.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alert_core::BarTime;

    fn bar(i: usize, high: f64, low: f64, close: f64) -> Candle {
        Candle {
            open_time: BarTime::from_millis(i as i64 * 60_000),
            open: close,
            high,
            low,
            close,
            volume: 1.0,
        }
    }

    fn closes(xs: &[f64]) -> Vec<Candle> {
        xs.iter()
            .enumerate()
            .map(|(i, &c)| bar(i, c, c, c))
            .collect()
    }

    fn run<I: Indicator>(ind: &mut I, bars: &[Candle]) -> Vec<Option<I::Output>>
    where
        I::Output: std::fmt::Debug,
    {
        bars.iter()
            .map(|b| {
                let peeked = ind.peek(b);
                let again = ind.peek(b);
                let got = ind.update(b);
                assert_eq!(format!("{peeked:?}"), format!("{got:?}"), "peek != update");
                assert_eq!(
                    format!("{again:?}"),
                    format!("{got:?}"),
                    "peek changed state"
                );
                got
            })
            .collect()
    }

    fn wiggle(len: usize, level: f64) -> Vec<f64> {
        (0..len)
            .map(|i| {
                let t = i as f64;
                level + (t * 0.37).sin() * 3.0 + (t * 0.051).cos() * 7.0 + (i % 5) as f64 * 0.25
            })
            .collect()
    }

    fn ohlc(xs: &[f64]) -> Vec<Candle> {
        xs.iter()
            .enumerate()
            .map(|(i, &c)| bar(i, c + 1.0 + (i % 3) as f64, c - 0.5 - (i % 4) as f64, c))
            .collect()
    }

    #[test]
    fn atr_small_example() {
        let Ok(mut atr) = Atr::new(2) else {
            panic!("valid period")
        };
        assert_eq!(atr.lookback(), 2);
        let bars = [
            bar(0, 10.0, 8.0, 9.0),   // no true range
            bar(1, 11.0, 9.0, 10.0),  // TR max(2, 2, 0) = 2
            bar(2, 12.0, 11.0, 11.5), // TR max(1, 2, 1) = 2
            bar(3, 11.0, 7.5, 8.0),   // TR max(3.5, 0.5, 4) = 4
        ];
        let out = run(&mut atr, &bars);
        // seed (2 + 2)/2 = 2, then 2·0.5 + 4·0.5 = 3
        assert_eq!(out, vec![None, None, Some(2.0), Some(3.0)]);
    }

    #[test]
    fn atr_of_one_is_the_true_range() {
        let Ok(mut atr) = Atr::new(1) else {
            panic!("valid period")
        };
        assert_eq!(atr.lookback(), 1);
        let bars = ohlc(&wiggle(200, 100.0));
        let out = run(&mut atr, &bars);
        assert_eq!(out[0], None);
        for i in 1..bars.len() {
            assert_eq!(out[i], Some(true_range(&bars[i], bars[i - 1].close)), "{i}");
        }
    }

    #[test]
    fn atr_flat_series_is_zero() {
        let Ok(mut atr) = Atr::new(14) else {
            panic!("valid period")
        };
        let out = run(&mut atr, &closes(&[43210.5; 100]));
        assert!(out[..14].iter().all(Option::is_none));
        assert!(out[14..].iter().all(|v| *v == Some(0.0)));
    }

    #[test]
    fn atr_reset_forgets() {
        let Ok(mut atr) = Atr::new(5) else {
            panic!("valid period")
        };
        let bars = ohlc(&wiggle(60, 30.0));
        let first = run(&mut atr, &bars);
        atr.reset();
        assert_eq!(run(&mut atr, &bars), first);
    }

    #[test]
    fn bbands_small_example() {
        let Ok(mut bb) = Bbands::new(2, 2.0, PriceSource::Close) else {
            panic!("valid settings")
        };
        assert_eq!(bb.lookback(), 1);
        let out = run(&mut bb, &closes(&[1.0, 3.0, 3.0, 7.0]));
        // windows [1,3]: mean 2, σ 1; [3,3]: σ 0; [3,7]: mean 5, σ 2
        let want = |m: f64, s: f64| {
            Some(BandsValue {
                upper: m + 2.0 * s,
                middle: m,
                lower: m - 2.0 * s,
            })
        };
        assert_eq!(
            out,
            vec![None, want(2.0, 1.0), want(3.0, 0.0), want(5.0, 2.0)]
        );
    }

    #[test]
    fn bbands_flat_series_has_zero_width_even_at_high_prices() {
        let Ok(mut bb) = Bbands::new(20, 2.0, PriceSource::Close) else {
            panic!("valid settings")
        };
        // a spike, then flat at a price whose squares are inexact: σ is exactly 0 again
        // once the spike has left the window.
        let mut xs = vec![43210.51; 30];
        xs[5] = 43299.99;
        let out = run(&mut bb, &closes(&xs));
        for (i, v) in out.iter().enumerate().skip(25) {
            let Some(v) = v else { panic!("value at {i}") };
            assert_eq!(v.upper, v.middle, "{i}");
            assert_eq!(v.lower, v.middle, "{i}");
        }
    }

    #[test]
    fn bbands_match_direct_population_stddev_without_drift() {
        let n = 20;
        let xs: Vec<f64> = wiggle(300_000, 5.0e4);
        let Ok(mut bb) = Bbands::new(n, 1.5, PriceSource::Close) else {
            panic!("valid settings")
        };
        for (i, b) in closes(&xs).iter().enumerate() {
            let got = bb.update(b);
            if i + 1 < n {
                assert_eq!(got, None);
                continue;
            }
            let w = &xs[i + 1 - n..=i];
            let mean = w.iter().sum::<f64>() / n as f64;
            let sd = (w.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt();
            let Some(got) = got else {
                panic!("value at {i}")
            };
            assert!((got.middle - mean).abs() <= 1e-9, "{i}");
            let got_sd = (got.upper - got.middle) / 1.5;
            assert!(
                (got_sd - sd).abs() <= 1e-9 * sd.max(1.0),
                "{i}: {got_sd} vs {sd}"
            );
            assert!((got.middle - got.lower - (got.upper - got.middle)).abs() <= 1e-9);
        }
    }

    #[test]
    fn bbands_settings_errors() {
        assert!(Bbands::new(1, 2.0, PriceSource::Close).is_err());
        assert!(Bbands::new(2, 2.0, PriceSource::Close).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = Bbands::new(20, bad, PriceSource::Close).err();
            assert!(
                err.is_some_and(|e| e.setting == "stddev"),
                "stddev {bad} accepted"
            );
        }
        assert!(Atr::new(0).is_err());
        assert!(Atr::new(1).is_ok());
    }

    #[test]
    fn bbands_reset_forgets() {
        let Ok(mut bb) = Bbands::new(5, 2.0, PriceSource::Close) else {
            panic!("valid settings")
        };
        let bars = closes(&wiggle(400, 20.0));
        let first = run(&mut bb, &bars);
        bb.reset();
        assert_eq!(run(&mut bb, &bars), first);
    }
}
