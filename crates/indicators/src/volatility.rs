//! Volatility: ATR and Bollinger Bands. (Being implemented.)

use alert_core::{Candle, PriceSource};

use crate::{Indicator, SettingError, check_period};

#[derive(Clone, Debug)]
pub struct Atr {
    n: usize,
}
impl Atr {
    pub fn new(period: usize) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 1)?,
        })
    }
}
impl Indicator for Atr {
    type Output = f64;
    fn update(&mut self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn peek(&self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn lookback(&self) -> usize {
        self.n
    }
    fn reset(&mut self) {}
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandsValue {
    pub upper: f64,
    pub middle: f64,
    pub lower: f64,
}
#[derive(Clone, Debug)]
pub struct Bbands {
    n: usize,
    stddev: f64,
    source: PriceSource,
}
impl Bbands {
    pub fn new(period: usize, stddev: f64, source: PriceSource) -> Result<Self, SettingError> {
        Ok(Self {
            n: check_period("period", period, 2)?,
            stddev,
            source,
        })
    }
}
impl Indicator for Bbands {
    type Output = BandsValue;
    fn update(&mut self, _bar: &Candle) -> Option<BandsValue> {
        let _ = (self.stddev, self.source);
        None
    }
    fn peek(&self, _bar: &Candle) -> Option<BandsValue> {
        None
    }
    fn lookback(&self) -> usize {
        self.n - 1
    }
    fn reset(&mut self) {}
}
