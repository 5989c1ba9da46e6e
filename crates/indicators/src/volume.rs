//! Volume-based: OBV and VWAP. (Being implemented.)

use alert_core::Candle;

use crate::Indicator;

#[derive(Clone, Debug, Default)]
pub struct Obv {}
impl Obv {
    pub fn new() -> Self {
        Self {}
    }
}
impl Indicator for Obv {
    type Output = f64;
    fn update(&mut self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn peek(&self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn lookback(&self) -> usize {
        0
    }
    fn reset(&mut self) {}
}

#[derive(Clone, Debug, Default)]
pub struct Vwap {}
impl Vwap {
    pub fn new() -> Self {
        Self {}
    }
}
impl Indicator for Vwap {
    type Output = f64;
    fn update(&mut self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn peek(&self, _bar: &Candle) -> Option<f64> {
        None
    }
    fn lookback(&self) -> usize {
        0
    }
    fn reset(&mut self) {}
}
