//! One enum over every indicator, so the engine can keep heterogeneous indicators in one
//! table without boxing.

use alert_core::{Candle, PriceSource};

use crate::averages::{Ema, Macd, MacdValue, Sma, Wma};
use crate::momentum::{Adx, AdxValue, Cci, Mfi, Roc, Rsi, Stoch, StochValue, Willr};
use crate::volatility::{Atr, BandsValue, Bbands};
use crate::volume::{Obv, Vwap};
use crate::{Components, Indicator, IndicatorSpec, Params};

/// Any indicator, built from an [`IndicatorSpec`]; its output is [`Components`] in the order
/// of [`crate::IndicatorKind::components`].
#[derive(Clone, Debug)]
pub enum AnyIndicator {
    Sma(Sma),
    Ema(Ema),
    Wma(Wma),
    Rsi(Rsi),
    Macd(Macd),
    Bbands(Bbands),
    Stoch(Stoch),
    Atr(Atr),
    VolumeSma(Sma),
    Adx(Adx),
    Cci(Cci),
    Mfi(Mfi),
    Roc(Roc),
    Willr(Willr),
    Obv(Obv),
    Vwap(Vwap),
}

impl AnyIndicator {
    /// Builds the indicator a spec names. Specs are validated when parsed, so this cannot
    /// fail for one; the fallbacks below are unreachable for a well-formed spec.
    pub fn new(spec: &IndicatorSpec) -> Self {
        use crate::IndicatorKind as K;
        let params = spec.params();
        let (n, src) = match params {
            Params::Length(n) => (n, PriceSource::Close),
            Params::LengthOf(n, s) => (n, s),
            _ => (0, PriceSource::Close),
        };
        let built = match (spec.kind(), params) {
            (K::Sma, _) => Sma::new(n, src).map(Self::Sma),
            (K::Ema, _) => Ema::new(n, src).map(Self::Ema),
            (K::Wma, _) => Wma::new(n, src).map(Self::Wma),
            (K::Rsi, _) => Rsi::new(n, src).map(Self::Rsi),
            (K::Roc, _) => Roc::new(n, src).map(Self::Roc),
            (K::VolumeSma, _) => Sma::new(n, PriceSource::Volume).map(Self::VolumeSma),
            (K::Atr, _) => Atr::new(n).map(Self::Atr),
            (K::Adx, _) => Adx::new(n).map(Self::Adx),
            (K::Cci, _) => Cci::new(n).map(Self::Cci),
            (K::Mfi, _) => Mfi::new(n).map(Self::Mfi),
            (K::Willr, _) => Willr::new(n).map(Self::Willr),
            (
                K::Macd,
                Params::Macd {
                    fast,
                    slow,
                    signal,
                    source,
                },
            ) => Macd::new(fast, slow, signal, source).map(Self::Macd),
            (
                K::Bbands,
                Params::Bbands {
                    period,
                    stddev,
                    source,
                },
            ) => Bbands::new(period, stddev.get(), source).map(Self::Bbands),
            (K::Stoch, Params::Stoch { k, smooth_k, d }) => {
                Stoch::new(k, smooth_k, d).map(Self::Stoch)
            }
            (K::Obv, _) => Ok(Self::Obv(Obv::new())),
            (K::Vwap, _) => Ok(Self::Vwap(Vwap::new())),
            (K::Macd, _) => Macd::new(12, 26, 9, PriceSource::Close).map(Self::Macd),
            (K::Bbands, _) => Bbands::new(20, 2.0, PriceSource::Close).map(Self::Bbands),
            (K::Stoch, _) => Stoch::new(14, 3, 3).map(Self::Stoch),
        };
        built.unwrap_or_else(|_| Self::Obv(Obv::new()))
    }

    /// How many components this indicator has.
    pub fn width(&self) -> usize {
        match self {
            Self::Macd(_) | Self::Bbands(_) | Self::Adx(_) => 3,
            Self::Stoch(_) => 2,
            _ => 1,
        }
    }
}

fn one(v: Option<f64>, _w: usize) -> Components {
    v.map_or(Components::none(1), Components::one)
}

fn macd(v: Option<MacdValue>) -> Components {
    v.map_or(Components::none(3), |m| {
        Components::three(Some(m.macd), Some(m.signal), Some(m.histogram))
    })
}

fn bands(v: Option<BandsValue>) -> Components {
    v.map_or(Components::none(3), |b| {
        Components::three(Some(b.upper), Some(b.middle), Some(b.lower))
    })
}

fn stoch(v: Option<StochValue>) -> Components {
    v.map_or(Components::none(2), |s| {
        Components::two(Some(s.k), Some(s.d))
    })
}

fn adx(v: Option<AdxValue>) -> Components {
    v.map_or(Components::none(3), |a| {
        Components::three(a.adx, Some(a.plus_di), Some(a.minus_di))
    })
}

macro_rules! dispatch {
    ($self:ident, $ind:ident => $call:expr) => {
        match $self {
            AnyIndicator::Sma($ind) => one($call, 1),
            AnyIndicator::Ema($ind) => one($call, 1),
            AnyIndicator::Wma($ind) => one($call, 1),
            AnyIndicator::Rsi($ind) => one($call, 1),
            AnyIndicator::Atr($ind) => one($call, 1),
            AnyIndicator::VolumeSma($ind) => one($call, 1),
            AnyIndicator::Cci($ind) => one($call, 1),
            AnyIndicator::Mfi($ind) => one($call, 1),
            AnyIndicator::Roc($ind) => one($call, 1),
            AnyIndicator::Willr($ind) => one($call, 1),
            AnyIndicator::Obv($ind) => one($call, 1),
            AnyIndicator::Vwap($ind) => one($call, 1),
            AnyIndicator::Macd($ind) => macd($call),
            AnyIndicator::Bbands($ind) => bands($call),
            AnyIndicator::Stoch($ind) => stoch($call),
            AnyIndicator::Adx($ind) => adx($call),
        }
    };
}

macro_rules! each {
    ($self:ident, $ind:ident => $call:expr) => {
        match $self {
            AnyIndicator::Sma($ind) | AnyIndicator::VolumeSma($ind) => $call,
            AnyIndicator::Ema($ind) => $call,
            AnyIndicator::Wma($ind) => $call,
            AnyIndicator::Rsi($ind) => $call,
            AnyIndicator::Atr($ind) => $call,
            AnyIndicator::Cci($ind) => $call,
            AnyIndicator::Mfi($ind) => $call,
            AnyIndicator::Roc($ind) => $call,
            AnyIndicator::Willr($ind) => $call,
            AnyIndicator::Obv($ind) => $call,
            AnyIndicator::Vwap($ind) => $call,
            AnyIndicator::Macd($ind) => $call,
            AnyIndicator::Bbands($ind) => $call,
            AnyIndicator::Stoch($ind) => $call,
            AnyIndicator::Adx($ind) => $call,
        }
    };
}

impl Indicator for AnyIndicator {
    type Output = Components;

    /// Always returns `Some`: components without a value are `None` inside.
    #[inline]
    fn update(&mut self, bar: &Candle) -> Option<Components> {
        Some(dispatch!(self, i => i.update(bar)))
    }

    #[inline]
    fn peek(&self, bar: &Candle) -> Option<Components> {
        Some(dispatch!(self, i => i.peek(bar)))
    }

    fn lookback(&self) -> usize {
        each!(self, i => i.lookback())
    }

    fn reset(&mut self) {
        each!(self, i => i.reset())
    }
}
