//! Momentum oscillators: RSI, STOCH, WILLR, ROC, CCI, MFI, ADX.
//!
//! Each one reproduces the TA-Lib 0.8.1 C function it is named after, value for value: the
//! same lookback, the same seeding, the same floating-point operations in the same order,
//! and the same zero tests. Several of those differ from older TA-Lib releases and from the
//! textbook formulas; the ones that matter are noted on each type (they were measured
//! against the library, not only read from its sources).
//!
//! Every indicator keeps only what the next bar needs — a few numbers, or the last n − 1
//! values of a window — so [`Indicator::peek`] computes the value of a window ending with
//! the in-progress bar without touching state, and [`Indicator::update`] commits it.

use alert_core::{Candle, PriceSource};

use crate::averages::SmaCore;
use crate::math::{Ring, RollingSum, WindowRange};
use crate::{Indicator, SettingError, check_period};

// ---- Shared helpers (candidates for math.rs) ----

/// TA-Lib's `TA_EPSILON`.
const TA_EPSILON: f64 = 1e-14;

/// TA-Lib's `TA_IS_ZERO(v)`: `v` inside the fixed band (−1e−14, 1e−14). Only right for
/// dimensionless numbers (ADX uses it on the sum of two DI percentages).
#[inline]
fn is_zero(v: f64) -> bool {
    -TA_EPSILON < v && v < TA_EPSILON
}

/// TA-Lib's `TA_IS_ZERO_SCALED(v, scale)`: `|v| <= 1e−14 · scale`, a relative dead zone of
/// ~90 ulp for a difference `v` of numbers whose magnitudes add up to `scale`.
#[inline]
fn is_zero_scaled(v: f64, scale: f64) -> bool {
    v.abs() <= TA_EPSILON * scale
}

/// True range as TA-Lib computes it: `high − low`, replaced by `|high − prev_close|` and
/// then `|low − prev_close|` when larger.
#[inline]
fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut range = high - low;
    let up = (high - prev_close).abs();
    if up > range {
        range = up;
    }
    let down = (low - prev_close).abs();
    if down > range {
        range = down;
    }
    range
}

/// TA-Lib's typical price `(high + low + close) / 3`.
#[inline]
fn typical_price(bar: &Candle) -> f64 {
    bar.price(PriceSource::Hlc3)
}

// ---- RSI ----

/// Wilder's running averages of gains and losses, as TA-Lib's `TA_RSI` keeps them.
#[derive(Clone, Copy, Debug, Default)]
struct RsiState {
    /// Inputs seen, counted up to n + 1; the first only sets `prev`.
    seen: usize,
    prev: f64,
    /// Sum of gains while seeding, then the average gain.
    gain: f64,
    /// Sum of losses while seeding, then the average loss.
    loss: f64,
}

impl RsiState {
    /// Advances by one input; the RSI once `n` changes have been seen. `n_less_1` is
    /// `(n − 1) as f64` and `inv_n` is `1/n`.
    #[inline]
    fn advance(&mut self, x: f64, n: usize, n_less_1: f64, inv_n: f64) -> Option<f64> {
        let change = x - self.prev;
        // TA-Lib: `if change < 0 { loss -= change } else { gain += change }`. Done without a
        // branch (the sign of a price change is a coin flip a predictor cannot learn): each
        // sum adds `max(±change, 0)`, computed off its dependency chain, the other sum's step
        // being +0.0. Bit for bit the same: `loss − change` is exactly `loss + (−change)`,
        // and adding ±0.0 leaves both sums unchanged because neither is ever −0.0 (they
        // start at +0.0 and only grow by non-negative steps and scalings).
        let loss_step = if -change > 0.0 { -change } else { 0.0 };
        let gain_step = if change > 0.0 { change } else { 0.0 };
        if self.seen > n {
            // The steady state (change number `seen` > n; `seen` stops counting here), with
            // nothing but Wilder's step on the two recurrences. TA-Lib 0.8.1 scales by a
            // hoisted 1/n (not `/= n`): measured bit for bit.
            self.prev = x;
            self.loss = (self.loss * n_less_1 + loss_step) * inv_n;
            self.gain = (self.gain * n_less_1 + gain_step) * inv_n;
            return Some(Self::index(self.gain, self.loss));
        }
        self.prev = x;
        if self.seen == 0 {
            self.seen = 1;
            return None;
        }
        // This input brings change number `seen` (1-based), at most n: seeding sums.
        let change_no = self.seen;
        self.seen += 1;
        self.loss += loss_step;
        self.gain += gain_step;
        if change_no < n {
            return None;
        }
        self.loss *= inv_n;
        self.gain *= inv_n;
        Some(Self::index(self.gain, self.loss))
    }

    /// `100 · gain / (gain + loss)`, 0 for a flat series.
    #[inline(always)]
    fn index(gain: f64, loss: f64) -> f64 {
        let total = gain + loss;
        if total > 0.0 {
            100.0 * (gain / total)
        } else {
            0.0
        }
    }
}

/// Relative strength index of a bar's `source`, as TA-Lib's `RSI` (default, not Metastock).
///
/// With `change = x − previous x`: the average gain and loss are seeded with the simple
/// average of the first `n` changes, then smoothed the Wilder way
/// (`avg = (avg·(n − 1) + today) · (1/n)`); `RSI = 100 · gain / (gain + loss)`, and 0 when
/// `gain + loss` is exactly 0 (a flat series). Lookback `n` (the first value is at the
/// `n + 1`-th bar). Periods 2 to 100 000.
#[derive(Clone, Debug)]
pub struct Rsi {
    n: usize,
    /// `(n − 1) as f64`, Wilder's weight of the previous average.
    n_less_1: f64,
    inv_n: f64,
    source: PriceSource,
    state: RsiState,
}

impl Rsi {
    /// TA-Lib accepts periods from 2.
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        let n = check_period("period", period, 2)?;
        Ok(Self {
            n,
            n_less_1: (n - 1) as f64,
            inv_n: 1.0 / n as f64,
            source,
            state: RsiState::default(),
        })
    }
}

impl Indicator for Rsi {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        self.state
            .advance(bar.price(self.source), self.n, self.n_less_1, self.inv_n)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        let mut state = self.state;
        state.advance(bar.price(self.source), self.n, self.n_less_1, self.inv_n)
    }

    fn lookback(&self) -> usize {
        self.n
    }

    fn reset(&mut self) {
        self.state = RsiState::default();
    }
}

// ---- STOCH and WILLR: where the close sits in the recent high-low range ----

/// The highest high and lowest low of the last `n` bars.
#[derive(Clone, Debug)]
struct HighLowWindow {
    n: usize,
    seen: usize,
    range: WindowRange,
}

impl HighLowWindow {
    fn new(n: usize) -> Self {
        Self {
            n,
            seen: 0,
            range: WindowRange::new(n),
        }
    }

    /// (highest, lowest) of the window ending with `bar`, once it holds `n` bars.
    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<(f64, f64)> {
        (self.seen + 1 >= self.n).then(|| self.range.range_with(bar.high, bar.low))
    }

    #[inline]
    fn push(&mut self, bar: &Candle) -> Option<(f64, f64)> {
        let range = self.range.push(bar.high, bar.low);
        self.seen = self.seen.saturating_add(1);
        (self.seen >= self.n).then_some(range)
    }

    fn clear(&mut self) {
        self.seen = 0;
        self.range.clear();
    }
}

/// TA-Lib's fast %K: `((close − lowest) / (highest − lowest)) · 100`, 0 for a range that is
/// zero relative to its extremes (`TA_IS_ZERO_SCALED`).
#[inline]
fn fast_k(close: f64, highest: f64, lowest: f64) -> f64 {
    let range = highest - lowest;
    if is_zero_scaled(range, highest.abs() + lowest.abs()) {
        0.0
    } else {
        ((close - lowest) / range) * 100.0
    }
}

/// Williams' %R as TA-Lib: `((highest − close) / (highest − lowest)) · −100`, 0 for a range
/// that is zero relative to its extremes.
#[inline]
fn williams_r(close: f64, highest: f64, lowest: f64) -> f64 {
    let range = highest - lowest;
    if is_zero_scaled(range, highest.abs() + lowest.abs()) {
        0.0
    } else {
        ((highest - close) / range) * -100.0
    }
}

/// Slow %K and %D of a stochastic at one bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StochValue {
    /// Slow %K: fast %K smoothed by an SMA of `smooth_k` bars.
    pub k: f64,
    /// %D: slow %K smoothed by an SMA of `d` bars.
    pub d: f64,
}

/// Slow stochastic, as TA-Lib's `STOCH` with SMA smoothing (`slowk_matype = slowd_matype = 0`).
///
/// `fastK = ((close − LL) / (HH − LL)) · 100` over the highest high `HH` and lowest low `LL`
/// of the last `k` bars, and 0 when `HH − LL` is zero relative to `|HH| + |LL|`
/// (`TA_IS_ZERO_SCALED`); `slowK = SMA(fastK, smooth_k)`, `slowD = SMA(slowK, d)`. Both
/// components start together, after a lookback of `(k − 1) + (smooth_k − 1) + (d − 1)`.
/// Each period 1 to 100 000.
#[derive(Clone, Debug)]
pub struct Stoch {
    window: HighLowWindow,
    slow_k: SmaCore,
    slow_d: SmaCore,
}

impl Stoch {
    /// TA-Lib accepts each period from 1.
    pub fn new(k: usize, smooth_k: usize, d: usize) -> Result<Self, SettingError> {
        let k = check_period("k", k, 1)?;
        let smooth_k = check_period("smoothK", smooth_k, 1)?;
        let d = check_period("d", d, 1)?;
        Ok(Self {
            window: HighLowWindow::new(k),
            slow_k: SmaCore::new(smooth_k),
            slow_d: SmaCore::new(d),
        })
    }
}

impl Indicator for Stoch {
    type Output = StochValue;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<StochValue> {
        let (highest, lowest) = self.window.push(bar)?;
        let k = self.slow_k.update(fast_k(bar.close, highest, lowest))?;
        let d = self.slow_d.update(k)?;
        Some(StochValue { k, d })
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<StochValue> {
        let (highest, lowest) = self.window.peek(bar)?;
        let k = self.slow_k.peek(fast_k(bar.close, highest, lowest))?;
        let d = self.slow_d.peek(k)?;
        Some(StochValue { k, d })
    }

    fn lookback(&self) -> usize {
        (self.window.n - 1) + (self.slow_k.period() - 1) + (self.slow_d.period() - 1)
    }

    fn reset(&mut self) {
        self.window.clear();
        self.slow_k.reset();
        self.slow_d.reset();
    }
}

/// Williams' %R, as TA-Lib's `WILLR`.
///
/// `%R = ((HH − close) / (HH − LL)) · −100` over the highest high and lowest low of the last
/// `n` bars (from −100 at the low to 0 at the high), and 0 when `HH − LL` is zero relative to
/// `|HH| + |LL|` (`TA_IS_ZERO_SCALED`). Lookback `n − 1`. Periods 2 to 100 000.
#[derive(Clone, Debug)]
pub struct Willr {
    window: HighLowWindow,
}

impl Willr {
    /// TA-Lib accepts periods from 2.
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            window: HighLowWindow::new(check_period("period", period, 2)?),
        })
    }
}

impl Indicator for Willr {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let (highest, lowest) = self.window.push(bar)?;
        Some(williams_r(bar.close, highest, lowest))
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        let (highest, lowest) = self.window.peek(bar)?;
        Some(williams_r(bar.close, highest, lowest))
    }

    fn lookback(&self) -> usize {
        self.window.n - 1
    }

    fn reset(&mut self) {
        self.window.clear();
    }
}

// ---- ROC ----

/// Rate of change of a bar's `source` in percent, as TA-Lib's `ROC`.
///
/// `ROC = ((x / x[n bars ago]) − 1) · 100`, and 0 when `x[n bars ago]` is 0. Lookback `n`.
/// Periods 1 to 100 000.
#[derive(Clone, Debug)]
pub struct Roc {
    source: PriceSource,
    /// The last `n` inputs: once full, the oldest is the one `n` bars before the next.
    past: Ring,
}

impl Roc {
    /// TA-Lib accepts periods from 1.
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        Ok(Self {
            source,
            past: Ring::new(check_period("period", period, 1)?),
        })
    }

    /// TA-Lib's ROC of `x` against the value `n` bars before it.
    #[inline(always)]
    fn roc(x: f64, then: f64) -> f64 {
        if then != 0.0 {
            ((x / then) - 1.0) * 100.0
        } else {
            0.0
        }
    }
}

impl Indicator for Roc {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let x = bar.price(self.source);
        // Once full, the value leaving the ring is the one `n` bars before `x`.
        let then = self.past.push(x)?;
        Some(Self::roc(x, then))
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        if !self.past.is_full() {
            return None;
        }
        let then = self.past.oldest()?;
        Some(Self::roc(bar.price(self.source), then))
    }

    fn lookback(&self) -> usize {
        self.past.capacity()
    }

    fn reset(&mut self) {
        self.past.clear();
    }
}

// ---- CCI ----

/// Commodity channel index, as TA-Lib's `CCI`.
///
/// Over the typical prices `tp = (high + low + close) / 3` of the last `n` bars:
/// `CCI = (tp − mean) / (0.015 · meanDeviation)` with `meanDeviation = Σ|tpᵢ − mean| / n`,
/// and 0 when either `tp − mean` or the mean deviation is zero relative to `|mean|`
/// (`TA_IS_ZERO_SCALED`). Lookback `n − 1`. Periods 2 to 100 000.
///
/// The mean deviation needs every value of the window against the current mean, so each bar
/// costs O(n) — inherent to the indicator (there is no running form of Σ|x − mean| when the
/// mean moves). The window is kept in TA-Lib's circular buffer layout (the bar with index
/// `i` since the start in slot `i mod n`) and summed slot by slot as TA-Lib does, because
/// the order of that sum decides the last bits of the mean, and `tp − mean` can cancel
/// enough to make those bits visible. The part of that sum before the new bar's slot is the
/// same from bar to bar (as the slot index advances, it only gains the slot just written),
/// so it is kept as a running prefix — the same additions in the same order — and each bar
/// adds only the slots after its own: about n/2 additions for the mean instead of n, plus
/// the n of the deviation, which depends on the new mean.
#[derive(Clone, Debug)]
pub struct Cci {
    slots: Box<[f64]>,
    /// The slot of the next bar (TA-Lib's circular index).
    next: usize,
    /// Whether a next bar completes a window (n − 1 bars committed).
    ready: bool,
    /// `slots[..next]` summed left to right from 0.0: the first part of the next window's
    /// sum, in TA-Lib's order. Kept as the slots fill (one add per bar) and reset to 0.0
    /// when the index wraps, so each bar adds only the slots after its own.
    prefix: f64,
}

impl Cci {
    /// TA-Lib accepts periods from 2.
    pub fn new(period: usize) -> Result<Self, SettingError> {
        let n = check_period("period", period, 2)?;
        Ok(Self {
            slots: vec![0.0; n].into_boxed_slice(),
            next: 0,
            ready: false,
            prefix: 0.0,
        })
    }

    fn n(&self) -> usize {
        self.slots.len()
    }

    /// The CCI of the window whose newest typical price is `tp` (in the next slot).
    #[inline]
    fn value_with(&self, tp: f64) -> Option<f64> {
        if !self.ready {
            return None;
        }
        let before = self.slots.get(..self.next).unwrap_or_default();
        let after = self.slots.get(self.next + 1..).unwrap_or_default();
        let n = self.n() as f64;
        // Σ slots in slot order, the next slot holding `tp`: the prefix is that sum so far.
        let mean = after.iter().fold(self.prefix + tp, |acc, v| acc + v) / n;
        // Σ |slot − mean| in slot order.
        let deviation = after.iter().fold(
            before.iter().fold(0.0, |acc, v| acc + (v - mean).abs()) + (tp - mean).abs(),
            |acc, v| acc + (v - mean).abs(),
        ) / n;
        Some(cci(tp, mean, deviation))
    }
}

/// TA-Lib's CCI from the newest typical price, the window mean and the mean deviation.
#[inline(always)]
fn cci(tp: f64, mean: f64, deviation: f64) -> f64 {
    let distance = tp - mean;
    let scale = mean.abs();
    // Both tests without a short-circuit branch, and the quotient computed either way: a
    // select, not a jump, on the bar's result.
    let value = distance / (0.015 * deviation);
    if !is_zero_scaled(distance, scale) & !is_zero_scaled(deviation, scale) {
        value
    } else {
        0.0
    }
}

impl Indicator for Cci {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let tp = typical_price(bar);
        let out = self.value_with(tp);
        if let Some(s) = self.slots.get_mut(self.next) {
            *s = tp;
        }
        self.prefix += tp;
        self.next += 1;
        if self.next == self.slots.len() {
            self.next = 0;
            self.prefix = 0.0;
        }
        // n − 1 bars committed once the index reaches the last slot (or wraps, for n = 2).
        self.ready = self.ready || self.next + 1 == self.slots.len();
        out
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        self.value_with(typical_price(bar))
    }

    fn lookback(&self) -> usize {
        self.n() - 1
    }

    fn reset(&mut self) {
        self.slots.fill(0.0);
        self.next = 0;
        self.ready = false;
        self.prefix = 0.0;
    }
}

// ---- MFI ----

/// One bar's money flow split by direction, and the run of flowless bars it ends or extends.
#[derive(Clone, Copy, Debug)]
struct Flow {
    positive: f64,
    negative: f64,
    null_run: usize,
}

/// Money flow index, as TA-Lib's `MFI`.
///
/// With the typical price `tp = (high + low + close) / 3`, each bar after the first has a
/// money flow `tp · volume`: positive when `tp` rose, negative when it fell, and none when
/// the change is zero relative to `|tp| + |previous tp|` (`TA_IS_ZERO_SCALED`). Over the last
/// `n` flows, `MFI = 100 · P / (P + N)` (P clamped into `[0, P + N]`), and 0 when `P + N <= 0`
/// or when none of the `n` bars carried a flow. Lookback `n`. Periods 2 to 100 000.
///
/// `P` and `N` are sliding sums ([`RollingSum`]: TA-Lib's subtract-oldest/add-newest order,
/// re-anchored so they do not drift); when a whole window is flowless they are reset to an
/// exact 0, as TA-Lib does.
#[derive(Clone, Debug)]
pub struct Mfi {
    n: usize,
    /// Bars seen (saturating); the first only sets `prev_tp`.
    seen: usize,
    prev_tp: f64,
    /// Consecutive bars without a flow, capped at `n`.
    null_run: usize,
    positive: RollingSum,
    negative: RollingSum,
}

impl Mfi {
    /// TA-Lib accepts periods from 2.
    pub fn new(period: usize) -> Result<Self, SettingError> {
        let n = check_period("period", period, 2)?;
        Ok(Self {
            n,
            seen: 0,
            prev_tp: 0.0,
            null_run: 0,
            positive: RollingSum::new(n),
            negative: RollingSum::new(n),
        })
    }

    /// The flow of a bar whose typical price is `tp` (needs a previous bar).
    #[inline]
    fn flow(&self, tp: f64, volume: f64) -> Flow {
        let change = tp - self.prev_tp;
        let money = if is_zero_scaled(change, tp.abs() + self.prev_tp.abs()) {
            0.0
        } else {
            tp * volume
        };
        // `(0.0, money)` when falling, else `(money, 0.0)`: each written as "value if compare
        // else 0.0", the form compiled to a compare mask and an `and` rather than a branch on
        // a coin flip (`change` is finite, so `>= 0.0` is exactly `!(< 0.0)`).
        let positive = if change >= 0.0 { money } else { 0.0 };
        let negative = if change < 0.0 { money } else { 0.0 };
        let null_run = if money == 0.0 {
            (self.null_run + 1).min(self.n)
        } else {
            0
        };
        Flow {
            positive,
            negative,
            null_run,
        }
    }

    /// `100 · P / (P + N)` as TA-Lib clamps and guards it.
    #[inline]
    fn index(positive: f64, negative: f64) -> f64 {
        let total = positive + negative;
        let clamped = if positive < 0.0 {
            0.0
        } else if positive > total {
            total
        } else {
            positive
        };
        if total <= 0.0 {
            0.0
        } else {
            100.0 * (clamped / total)
        }
    }

    /// Empties both sums and refills them with n − 1 zero flows: an exact 0 with a full tail.
    #[inline]
    fn zero_sums(&mut self) {
        self.positive.zero();
        self.negative.zero();
    }
}

impl Indicator for Mfi {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let tp = typical_price(bar);
        if self.seen == 0 {
            self.prev_tp = tp;
            self.seen = 1;
            return None;
        }
        let flow = self.flow(tp, bar.volume);
        self.prev_tp = tp;
        self.seen = self.seen.saturating_add(1);
        let ready = self.positive.is_ready();
        let out = if flow.null_run >= self.n {
            // The last n bars carried no flow: the sums are exactly 0. Once they are, pushing
            // zeros keeps them so, so the O(n) refill happens once per flowless run.
            if self.null_run < self.n {
                self.zero_sums();
            } else {
                self.positive.push(0.0);
                self.negative.push(0.0);
            }
            0.0
        } else {
            let positive = self.positive.push(flow.positive);
            let negative = self.negative.push(flow.negative);
            Self::index(positive, negative)
        };
        self.null_run = flow.null_run;
        ready.then_some(out)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        if self.seen == 0 || !self.positive.is_ready() {
            return None;
        }
        let flow = self.flow(typical_price(bar), bar.volume);
        Some(if flow.null_run >= self.n {
            0.0
        } else {
            Self::index(
                self.positive.sum_with(flow.positive),
                self.negative.sum_with(flow.negative),
            )
        })
    }

    fn lookback(&self) -> usize {
        self.n
    }

    fn reset(&mut self) {
        self.seen = 0;
        self.prev_tp = 0.0;
        self.null_run = 0;
        self.positive.clear();
        self.negative.clear();
    }
}

// ---- ADX ----

/// ADX with its directional indicators at one bar; +DI/−DI have values before ADX does, as
/// TA-Lib's `PLUS_DI`/`MINUS_DI` (lookback n) start before `ADX` (lookback 2n − 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdxValue {
    /// `ADX(n)`, from the `2n`-th bar on.
    pub adx: Option<f64>,
    /// `PLUS_DI(n)`.
    pub plus_di: f64,
    /// `MINUS_DI(n)`.
    pub minus_di: f64,
}

/// Wilder's running sums behind +DI, −DI and ADX.
#[derive(Clone, Copy, Debug, Default)]
struct DmState {
    /// Bars seen (saturating).
    seen: usize,
    prev_high: f64,
    prev_low: f64,
    prev_close: f64,
    plus_dm: f64,
    minus_dm: f64,
    tr: f64,
    /// Sum of the first n DX values.
    sum_dx: f64,
    adx: f64,
}

impl DmState {
    #[inline]
    fn advance(&mut self, bar: &Candle, n: usize) -> Option<AdxValue> {
        let i = self.seen;
        self.seen = self.seen.saturating_add(1);
        if i == 0 {
            self.prev_high = bar.high;
            self.prev_low = bar.low;
            self.prev_close = bar.close;
            return None;
        }
        let diff_plus = bar.high - self.prev_high;
        let diff_minus = self.prev_low - bar.low;
        let tr = true_range(bar.high, bar.low, self.prev_close);
        self.prev_high = bar.high;
        self.prev_low = bar.low;
        self.prev_close = bar.close;
        // Only the larger move counts, and only if it is a move outward. (`&`, not `&&`: both
        // tests are cheap, and a short-circuit would be a branch on the bar's direction.)
        let minus_dm1 = if (diff_minus > 0.0) & (diff_plus < diff_minus) {
            diff_minus
        } else {
            0.0
        };
        let plus_dm1 = if (diff_plus > 0.0) & (diff_plus > diff_minus) {
            diff_plus
        } else {
            0.0
        };
        let nf = n as f64;
        if i < n {
            // Seeding: plain sums of the first n − 1 values.
            self.minus_dm += minus_dm1;
            self.plus_dm += plus_dm1;
            self.tr += tr;
            return None;
        }
        // Wilder's step `s − s/n + today` (TA-Lib 0.8.1 divides here, measured bit for bit).
        self.minus_dm = self.minus_dm - self.minus_dm / nf + minus_dm1;
        self.plus_dm = self.plus_dm - self.plus_dm / nf + plus_dm1;
        self.tr = self.tr - self.tr / nf + tr;

        // The true-range sum is tested exactly (`> 0`), the DI sum against TA_IS_ZERO.
        let (plus_di, minus_di, dx) = if self.tr > 0.0 {
            let minus_di = 100.0 * (self.minus_dm / self.tr);
            let plus_di = 100.0 * (self.plus_dm / self.tr);
            let sum = minus_di + plus_di;
            let dx = (!is_zero(sum)).then(|| 100.0 * ((minus_di - plus_di).abs() / sum));
            (plus_di, minus_di, dx)
        } else {
            (0.0, 0.0, None)
        };
        let adx = if i < 2 * n {
            if let Some(dx) = dx {
                self.sum_dx += dx;
            }
            (i == 2 * n - 1).then(|| {
                self.adx = self.sum_dx / nf;
                self.adx
            })
        } else {
            if let Some(dx) = dx {
                self.adx = ((self.adx * (nf - 1.0)) + dx) / nf;
            }
            Some(self.adx)
        };
        Some(AdxValue {
            adx,
            plus_di,
            minus_di,
        })
    }
}

/// Average directional index with +DI and −DI, as TA-Lib's `ADX`, `PLUS_DI` and `MINUS_DI`.
///
/// Per bar: `+DM1 = high − prev high` when that is positive and larger than
/// `prev low − low` (else 0), `−DM1` symmetrically, and the true range `TR1`. Their Wilder
/// sums are seeded with the plain sum of the first `n − 1` values and then stepped
/// `s = s − s/n + today`; `±DI = 100 · ±DM / TR` (0 while the TR sum is 0),
/// `DX = 100 · |−DI − +DI| / (−DI + +DI)` (skipped while that sum is `TA_IS_ZERO`). The first
/// ADX is the mean of the first `n` DX values, then `ADX = (ADX · (n − 1) + DX) / n`.
/// ±DI have lookback `n`, ADX `2n − 1`; [`Indicator::lookback`] is that of the earliest
/// component, `n`, and [`AdxValue::adx`] is `None` until the ADX starts. Periods 2 to
/// 100 000.
#[derive(Clone, Debug)]
pub struct Adx {
    n: usize,
    state: DmState,
}

impl Adx {
    /// TA-Lib accepts periods from 2 for ADX.
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
            state: DmState::default(),
        })
    }
}

impl Indicator for Adx {
    type Output = AdxValue;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<AdxValue> {
        self.state.advance(bar, self.n)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<AdxValue> {
        let mut state = self.state;
        state.advance(bar, self.n)
    }

    fn lookback(&self) -> usize {
        self.n
    }

    fn reset(&mut self) {
        self.state = DmState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alert_core::BarTime;

    fn bar(i: usize, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        Candle {
            open_time: BarTime::from_millis(i as i64 * 60_000),
            open: close,
            high,
            low,
            close,
            volume,
        }
    }

    fn closes(xs: &[f64]) -> Vec<Candle> {
        xs.iter()
            .enumerate()
            .map(|(i, &c)| bar(i, c, c, c, 1.0))
            .collect()
    }

    fn hlc(rows: &[(f64, f64, f64)]) -> Vec<Candle> {
        rows.iter()
            .enumerate()
            .map(|(i, &(h, l, c))| bar(i, h, l, c, 1.0))
            .collect()
    }

    /// Feeds every bar, checking that peek gives exactly what update then returns.
    fn run<I: Indicator>(ind: &mut I, bars: &[Candle]) -> Vec<Option<I::Output>>
    where
        I::Output: PartialEq + std::fmt::Debug,
    {
        bars.iter()
            .map(|b| {
                let peeked = ind.peek(b);
                assert_eq!(ind.peek(b), peeked, "peek changed state");
                let updated = ind.update(b);
                assert_eq!(peeked, updated, "peek != update");
                updated
            })
            .collect()
    }

    fn close_to(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
    }

    /// A deterministic wiggly series with flat stretches, for peek/update/reset checks.
    fn wiggly(len: usize) -> Vec<Candle> {
        (0..len)
            .map(|i| {
                let x = i as f64;
                let mid = if (40..55).contains(&i) {
                    100.0
                } else {
                    100.0 + 10.0 * (x * 0.37).sin() + 3.0 * (x * 1.9).cos()
                };
                let half = if (40..55).contains(&i) {
                    0.0
                } else {
                    1.0 + (x * 0.7).sin().abs()
                };
                let close = mid + half * (x * 2.3).sin();
                let volume = if i % 11 == 0 { 0.0 } else { 10.0 + x % 7.0 };
                bar(i, mid + half, mid - half, close, volume)
            })
            .collect()
    }

    fn check_peek_and_reset<I>(mut ind: I)
    where
        I: Indicator,
        I::Output: PartialEq + std::fmt::Debug,
    {
        let bars = wiggly(200);
        let first = run(&mut ind, &bars);
        let lookback = ind.lookback();
        assert!(first[..lookback].iter().all(Option::is_none));
        assert!(first[lookback..].iter().all(Option::is_some));
        ind.reset();
        let second = run(&mut ind, &bars);
        assert_eq!(first, second, "reset did not forget everything");
    }

    #[test]
    fn peek_equals_update_and_reset_forgets() {
        for n in [2, 3, 14] {
            let Ok(rsi) = Rsi::new(n, PriceSource::Close) else {
                panic!("valid")
            };
            check_peek_and_reset(rsi);
            let Ok(willr) = Willr::new(n) else {
                panic!("valid")
            };
            check_peek_and_reset(willr);
            let Ok(roc) = Roc::new(n, PriceSource::Close) else {
                panic!("valid")
            };
            check_peek_and_reset(roc);
            let Ok(cci) = Cci::new(n) else {
                panic!("valid")
            };
            check_peek_and_reset(cci);
            let Ok(mfi) = Mfi::new(n) else {
                panic!("valid")
            };
            check_peek_and_reset(mfi);
            let Ok(adx) = Adx::new(n) else {
                panic!("valid")
            };
            check_peek_and_reset(adx);
        }
        for (k, s, d) in [(1, 1, 1), (5, 3, 3), (14, 3, 3), (3, 1, 4)] {
            let Ok(stoch) = Stoch::new(k, s, d) else {
                panic!("valid")
            };
            check_peek_and_reset(stoch);
        }
    }

    #[test]
    fn rsi_small_example() {
        let Ok(mut rsi) = Rsi::new(2, PriceSource::Close) else {
            panic!("valid")
        };
        // Changes +1, +1, −1, +2. Seed: gain 1, loss 0 → 100. Then gain (1·1 + 0)/2 = 0.5,
        // loss (0 + 1)/2 = 0.5 → 50. Then gain (0.5 + 2)/2 = 1.25, loss 0.25 → 83.33…
        let out = run(&mut rsi, &closes(&[1.0, 2.0, 3.0, 2.0, 4.0]));
        assert_eq!(out[..2], [None, None]);
        assert_eq!(out[2], Some(100.0));
        assert_eq!(out[3], Some(50.0));
        assert!(out[4].is_some_and(|v| close_to(v, 100.0 * 1.25 / 1.5)));
    }

    #[test]
    fn rsi_flat_is_zero() {
        let Ok(mut rsi) = Rsi::new(3, PriceSource::Close) else {
            panic!("valid")
        };
        let out = run(&mut rsi, &closes(&[5.0; 6]));
        assert_eq!(out, [None, None, None, Some(0.0), Some(0.0), Some(0.0)]);
    }

    #[test]
    fn stoch_small_example() {
        let Ok(mut stoch) = Stoch::new(3, 2, 2) else {
            panic!("valid")
        };
        let bars = hlc(&[
            (10.0, 8.0, 9.0),
            (12.0, 9.0, 11.0),
            (11.0, 9.0, 10.0),  // HH 12, LL 8: fastK 50
            (13.0, 10.0, 13.0), // HH 13, LL 9: fastK 100
            (12.0, 10.0, 11.0), // HH 13, LL 9: fastK 50
        ]);
        let out = run(&mut stoch, &bars);
        assert_eq!(stoch.lookback(), 4);
        assert_eq!(out[..4], [None, None, None, None]);
        // slowK: (50 + 100)/2 = 75 then (100 + 50)/2 = 75; slowD (75 + 75)/2.
        assert_eq!(out[4], Some(StochValue { k: 75.0, d: 75.0 }));
    }

    #[test]
    fn stoch_and_willr_flat_are_zero() {
        let bars = closes(&[7.0; 8]);
        let Ok(mut stoch) = Stoch::new(3, 1, 1) else {
            panic!("valid")
        };
        let out = run(&mut stoch, &bars);
        assert!(
            out[2..]
                .iter()
                .all(|v| *v == Some(StochValue { k: 0.0, d: 0.0 }))
        );
        let Ok(mut willr) = Willr::new(3) else {
            panic!("valid")
        };
        let out = run(&mut willr, &bars);
        assert!(out[2..].iter().all(|v| *v == Some(0.0)));
    }

    #[test]
    fn willr_small_example() {
        let Ok(mut willr) = Willr::new(2) else {
            panic!("valid")
        };
        let bars = hlc(&[(10.0, 6.0, 8.0), (12.0, 7.0, 9.0), (11.0, 9.0, 11.0)]);
        let out = run(&mut willr, &bars);
        // HH 12, LL 6, close 9: (12 − 9)/6 · −100 = −50; then HH 12, LL 7, close 11: −20.
        assert_eq!(out, [None, Some(-50.0), Some(-20.0)]);
    }

    #[test]
    fn roc_small_example_and_zero_base() {
        let Ok(mut roc) = Roc::new(2, PriceSource::Close) else {
            panic!("valid")
        };
        let out = run(&mut roc, &closes(&[0.0, 4.0, 5.0, 6.0, 2.0]));
        assert_eq!(roc.lookback(), 2);
        // 5 vs 0 → 0; 6 vs 4 → 50; 2 vs 5 → −60.
        assert_eq!(out[..3], [None, None, Some(0.0)]);
        assert!(out[3].is_some_and(|v| close_to(v, 50.0)));
        assert!(out[4].is_some_and(|v| close_to(v, -60.0)));
    }

    #[test]
    fn cci_small_example() {
        let Ok(mut cci) = Cci::new(3) else {
            panic!("valid")
        };
        // Typical prices 1, 2, 6: mean 3, mean deviation (2 + 1 + 3)/3 = 2,
        // CCI = (6 − 3)/(0.015 · 2) = 100. Then 2, 6, 4: mean 4, dev 4/3, CCI 0 (tp = mean).
        let out = run(&mut cci, &closes(&[1.0, 2.0, 6.0, 4.0]));
        assert_eq!(out[..2], [None, None]);
        assert!(out[2].is_some_and(|v| close_to(v, 100.0)));
        assert_eq!(out[3], Some(0.0));
        let Ok(mut flat) = Cci::new(4) else {
            panic!("valid")
        };
        assert!(
            run(&mut flat, &closes(&[3.3; 9]))[3..]
                .iter()
                .all(|v| *v == Some(0.0))
        );
    }

    #[test]
    fn mfi_small_example() {
        let Ok(mut mfi) = Mfi::new(2) else {
            panic!("valid")
        };
        let bars: Vec<Candle> = [(2.0, 1.0), (3.0, 2.0), (2.0, 1.0), (2.0, 4.0)]
            .iter()
            .enumerate()
            .map(|(i, &(c, v))| bar(i, c, c, c, v))
            .collect();
        // Flows: +3·2 = 6, −2·1 = 2, none (tp unchanged) → 100·6/8 = 75, then 100·0/2 = 0.
        let out = run(&mut mfi, &bars);
        assert_eq!(out, [None, None, Some(75.0), Some(0.0)]);
    }

    #[test]
    fn mfi_flat_and_zero_volume_are_zero() {
        let Ok(mut mfi) = Mfi::new(3) else {
            panic!("valid")
        };
        let mut bars = closes(&[9.0; 10]);
        bars.extend((10..20).map(|i| bar(i, 9.0 + i as f64, 9.0 + i as f64, 9.0 + i as f64, 0.0)));
        let out = run(&mut mfi, &bars);
        assert!(out[3..].iter().all(|v| *v == Some(0.0)));
        // After a flowless window, the sums restart from an exact zero.
        bars.push(bar(20, 100.0, 100.0, 100.0, 1.0));
        let Some(last) = mfi.update(&bars[20]) else {
            panic!("warm")
        };
        assert_eq!(last, 100.0);
    }

    #[test]
    fn adx_small_example() {
        let Ok(mut adx) = Adx::new(2) else {
            panic!("valid")
        };
        // Rising bars: +DM1 = 1 each bar, −DM1 = 0, TR1 = 2 (high − prev close).
        let bars = hlc(&[
            (10.0, 8.0, 9.0),
            (11.0, 9.0, 10.0),
            (12.0, 10.0, 11.0),
            (13.0, 11.0, 12.0),
        ]);
        let out = run(&mut adx, &bars);
        assert_eq!(adx.lookback(), 2);
        assert_eq!(out[..2], [None, None]);
        // Seed +DM 1, TR 2; step: 1 − 0.5 + 1 = 1.5, 2 − 1 + 2 = 3 → +DI 50, −DI 0, DX 100.
        assert_eq!(
            out[2],
            Some(AdxValue {
                adx: None,
                plus_di: 50.0,
                minus_di: 0.0
            })
        );
        // +DM 1.75, TR 3.5 → +DI 50, DX 100; first ADX = (100 + 100)/2.
        assert_eq!(
            out[3],
            Some(AdxValue {
                adx: Some(100.0),
                plus_di: 50.0,
                minus_di: 0.0
            })
        );
    }

    #[test]
    fn adx_flat_is_zero() {
        let Ok(mut adx) = Adx::new(3) else {
            panic!("valid")
        };
        let out = run(&mut adx, &closes(&[4.0; 10]));
        assert!(out[3..].iter().all(|v| v.is_some_and(|a| a.plus_di == 0.0
            && a.minus_di == 0.0
            && (a.adx.is_none() || a.adx == Some(0.0)))));
        assert_eq!(out[5].and_then(|a| a.adx), Some(0.0));
        assert_eq!(out[4].and_then(|a| a.adx), None);
    }

    #[test]
    fn lookbacks_match_talib() {
        let ok = |r: Result<usize, SettingError>| r.unwrap_or(usize::MAX);
        assert_eq!(
            ok(Rsi::new(14, PriceSource::Close).map(|i| i.lookback())),
            14
        );
        assert_eq!(ok(Stoch::new(14, 3, 3).map(|i| i.lookback())), 17);
        assert_eq!(ok(Stoch::new(1, 1, 1).map(|i| i.lookback())), 0);
        assert_eq!(ok(Willr::new(14).map(|i| i.lookback())), 13);
        assert_eq!(
            ok(Roc::new(10, PriceSource::Close).map(|i| i.lookback())),
            10
        );
        assert_eq!(ok(Cci::new(20).map(|i| i.lookback())), 19);
        assert_eq!(ok(Mfi::new(14).map(|i| i.lookback())), 14);
        assert_eq!(ok(Adx::new(14).map(|i| i.lookback())), 14);
    }

    #[test]
    fn settings_below_talib_minimum_are_refused() {
        let refused = |e: Option<SettingError>, setting: &str, min: &str| {
            e.is_some_and(|e| e.setting == setting && e.expected.contains(min))
        };
        assert!(refused(
            Rsi::new(1, PriceSource::Close).err(),
            "period",
            "at least 2"
        ));
        assert!(refused(Willr::new(1).err(), "period", "at least 2"));
        assert!(refused(Cci::new(1).err(), "period", "at least 2"));
        assert!(refused(Mfi::new(1).err(), "period", "at least 2"));
        assert!(refused(Adx::new(1).err(), "period", "at least 2"));
        assert!(refused(
            Roc::new(0, PriceSource::Close).err(),
            "period",
            "at least 1"
        ));
        assert!(refused(Stoch::new(0, 3, 3).err(), "k", "at least 1"));
        assert!(refused(Stoch::new(5, 0, 3).err(), "smoothK", "at least 1"));
        assert!(refused(Stoch::new(5, 3, 0).err(), "d", "at least 1"));
        assert!(Rsi::new(crate::MAX_PERIOD + 1, PriceSource::Close).is_err());
        assert!(Rsi::new(2, PriceSource::Close).is_ok());
        assert!(Roc::new(1, PriceSource::Close).is_ok());
        assert!(Stoch::new(1, 1, 1).is_ok());
    }
}
