//! Momentum oscillators: RSI, STOCH, WILLR, ROC, CCI, MFI, ADX. (Being implemented.)

use alert_core::{Candle, PriceSource};

use crate::{Indicator, SettingError, check_period};

macro_rules! stub_indicator {
    ($name:ident, $out:ty, $lookback:expr) => {
        impl Indicator for $name {
            type Output = $out;
            fn update(&mut self, _bar: &Candle) -> Option<$out> {
                None
            }
            fn peek(&self, _bar: &Candle) -> Option<$out> {
                None
            }
            fn lookback(&self) -> usize {
                let f: fn(&Self) -> usize = $lookback;
                f(self)
            }
            fn reset(&mut self) {}
        }
    };
}

#[derive(Clone, Debug)]
pub struct Rsi {
    n: usize,
    source: PriceSource,
}
impl Rsi {
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
            source,
        })
    }
}
stub_indicator!(Rsi, f64, |s| {
    let _ = s.source;
    s.n
});

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StochValue {
    pub k: f64,
    pub d: f64,
}
#[derive(Clone, Debug)]
pub struct Stoch {
    k: usize,
    smooth_k: usize,
    d: usize,
}
impl Stoch {
    pub fn new(k: usize, smooth_k: usize, d: usize) -> Result<Self, SettingError> {
        Ok(Self {
            k: check_period("k", k, 1)?,
            smooth_k: check_period("smoothK", smooth_k, 1)?,
            d: check_period("d", d, 1)?,
        })
    }
}
stub_indicator!(Stoch, StochValue, |s| s.k + s.smooth_k + s.d - 3);

#[derive(Clone, Debug)]
pub struct Willr {
    n: usize,
}
impl Willr {
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
        })
    }
}
stub_indicator!(Willr, f64, |s| s.n - 1);

#[derive(Clone, Debug)]
pub struct Roc {
    n: usize,
    source: PriceSource,
}
impl Roc {
    pub fn new(period: usize, source: PriceSource) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 1)?,
            source,
        })
    }
}
stub_indicator!(Roc, f64, |s| {
    let _ = s.source;
    s.n
});

#[derive(Clone, Debug)]
pub struct Cci {
    n: usize,
}
impl Cci {
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
        })
    }
}
stub_indicator!(Cci, f64, |s| s.n - 1);

#[derive(Clone, Debug)]
pub struct Mfi {
    n: usize,
}
impl Mfi {
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
        })
    }
}
stub_indicator!(Mfi, f64, |s| s.n);

/// ADX with its directional indicators; +DI/−DI have values before ADX does, as TA-Lib's
/// `PLUS_DI`/`MINUS_DI` have a shorter lookback than `ADX`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdxValue {
    pub adx: Option<f64>,
    pub plus_di: f64,
    pub minus_di: f64,
}
#[derive(Clone, Debug)]
pub struct Adx {
    n: usize,
}
impl Adx {
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
        })
    }
}
stub_indicator!(Adx, AdxValue, |s| s.n);
