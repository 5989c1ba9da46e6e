//! Streaming technical indicators whose values equal TA-Lib's.
//!
//! Every indicator is a concrete type implementing [`Indicator`]: [`Indicator::update`]
//! commits a closed bar in O(1) amortised time, and [`Indicator::peek`] gives the values as if
//! an in-progress bar closed now, without changing state and without copying history.
//!
//! Values follow TA-Lib's defaults (not Metastock mode): the same lookback (first bar with a
//! value), the same seeding and smoothing, and — where the order of floating-point
//! operations matters — the same order. Running sums are re-anchored from their window
//! periodically, so millions of bars accumulate no error (TA-Lib's own running sums do).
//!
//! Families: [`averages`] (SMA, EMA, WMA, MACD), [`momentum`] (RSI, STOCH, WILLR, ROC, CCI,
//! MFI, ADX), [`volatility`] (ATR, BBANDS), [`volume`] (OBV, VWAP). [`IndicatorSpec`] names
//! an indicator with its settings (`MACD(12,26,9)`), and [`AnyIndicator`] runs any spec
//! behind one enum, for the engine's shared tables — no boxing.

mod any;
pub mod averages;
pub mod math;
pub mod momentum;
mod spec;
pub mod volatility;
pub mod volume;

pub use alert_core::{Candle, PriceSource};
pub use any::AnyIndicator;
pub use spec::{IndicatorKind, IndicatorSpec, Params, SpecError, StdDevMultiplier};

/// The most components any indicator has (MACD, BBANDS and ADX have three).
pub const MAX_COMPONENTS: usize = 3;

/// A streaming indicator.
pub trait Indicator {
    /// The values at one bar.
    type Output: Copy;

    /// Commits a closed bar and returns the values at it, or `None` while fewer bars than
    /// [`Indicator::lookback`] + 1 have been seen.
    fn update(&mut self, bar: &Candle) -> Option<Self::Output>;

    /// The values that [`Indicator::update`] would return if `bar` closed now. State is
    /// unchanged, so an in-progress bar can be peeked at any number of times.
    fn peek(&self, bar: &Candle) -> Option<Self::Output>;

    /// How many bars are consumed before the first value: TA-Lib's lookback.
    fn lookback(&self) -> usize;

    /// Forgets every bar seen, as if newly built.
    fn reset(&mut self);
}

/// One bar's values of an indicator's components, in the order of
/// [`IndicatorKind::components`]. A component without a value yet is `None`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Components {
    len: u8,
    values: [Option<f64>; MAX_COMPONENTS],
}

impl Components {
    pub const fn one(v: f64) -> Self {
        Self {
            len: 1,
            values: [Some(v), None, None],
        }
    }

    pub const fn three(a: Option<f64>, b: Option<f64>, c: Option<f64>) -> Self {
        Self {
            len: 3,
            values: [a, b, c],
        }
    }

    pub const fn two(a: Option<f64>, b: Option<f64>) -> Self {
        Self {
            len: 2,
            values: [a, b, None],
        }
    }

    /// No value for any of `len` components.
    pub const fn none(len: usize) -> Self {
        Self {
            len: len as u8,
            values: [None; MAX_COMPONENTS],
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of component `i`, if it has one.
    #[inline]
    pub fn get(&self, i: usize) -> Option<f64> {
        self.values.get(i).copied().flatten()
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<f64>> + '_ {
        self.values[..self.len()].iter().copied()
    }
}

/// The largest period any indicator accepts (TA-Lib's limit); bounds the memory of a window.
pub const MAX_PERIOD: usize = 100_000;

/// An indicator setting outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting} is {value}: expected {expected}")]
pub struct SettingError {
    pub setting: &'static str,
    pub value: String,
    pub expected: String,
}

/// Checks `min <= value <= MAX_PERIOD` for a period-like setting.
pub(crate) fn check_period(
    setting: &'static str,
    value: usize,
    min: usize,
) -> Result<usize, SettingError> {
    if (min..=MAX_PERIOD).contains(&value) {
        Ok(value)
    } else {
        Err(SettingError {
            setting,
            value: value.to_string(),
            expected: format!("an integer from at least {min} to {MAX_PERIOD}"),
        })
    }
}
