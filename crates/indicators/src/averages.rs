//! Moving averages: SMA, EMA, WMA, and MACD (built from EMAs).

use alert_core::{Candle, PriceSource};

use crate::math::RollingSum;
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

    fn update(&mut self, bar: &Candle) -> Option<f64> {
        self.core.update(bar.price(self.source))
    }

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
            Some((x - self.acc) * self.k + self.acc)
        }
    }

    #[inline]
    pub fn peek(&self, x: f64) -> Option<f64> {
        self.next(x)
    }

    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        let out = self.next(x);
        self.acc = out.unwrap_or(self.acc + x);
        self.seen = self.seen.saturating_add(1);
        out
    }

    /// The last committed EMA value, once there is one.
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

    fn update(&mut self, bar: &Candle) -> Option<f64> {
        self.core.update(bar.price(self.source))
    }

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

// ---- WMA and MACD: to be implemented (see the module docs) ----

/// Weighted moving average (weights 1..n, newest heaviest), as TA-Lib's `WMA`.
#[derive(Clone, Debug)]
pub struct Wma {
    source: PriceSource,
    n: usize,
}

impl Wma {
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        let n = check_period("period", period, 1)?;
        Ok(Self { source, n })
    }
}

impl Indicator for Wma {
    type Output = f64;
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let _ = bar.price(self.source);
        None
    }
    fn peek(&self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn lookback(&self) -> usize {
        self.n - 1
    }
    fn reset(&mut self) {}
}

/// MACD line, signal line and histogram at one bar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MacdValue {
    pub macd: f64,
    pub signal: f64,
    pub histogram: f64,
}

/// MACD as TA-Lib's `MACD`.
#[derive(Clone, Debug)]
pub struct Macd {
    source: PriceSource,
    fast: usize,
    slow: usize,
    signal: usize,
}

impl Macd {
    pub fn new(
        fast: usize,
        slow: usize,
        signal: usize,
        source: PriceSource,
    ) -> Result<Self, SettingError> {
        let fast = check_period("fast", fast, 2)?;
        let slow = check_period("slow", slow, 2)?;
        let signal = check_period("signal", signal, 1)?;
        Ok(Self {
            source,
            fast,
            slow,
            signal,
        })
    }
}

impl Indicator for Macd {
    type Output = MacdValue;
    fn update(&mut self, bar: &Candle) -> Option<MacdValue> {
        let _ = bar.price(self.source);
        None
    }
    fn peek(&self, _bar: &Candle) -> Option<MacdValue> {
        None
    }
    fn lookback(&self) -> usize {
        self.fast.max(self.slow) - 1 + self.signal - 1
    }
    fn reset(&mut self) {}
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
}
