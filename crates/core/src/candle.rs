use serde::{Deserialize, Serialize};

use crate::BarTime;

/// One OHLCV bar, identified by its open time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub open_time: BarTime,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// Why a candle is not usable. Indicator state is never fed a candle that fails
/// [`Candle::check`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CandleError {
    #[error("{field} is {value}: expected a finite number")]
    NotFinite { field: &'static str, value: f64 },
    #[error("high {high} is below low {low}")]
    HighBelowLow { high: f64, low: f64 },
    #[error("{field} {value} is outside the bar's range [low {low}, high {high}]")]
    OutsideRange {
        field: &'static str,
        value: f64,
        low: f64,
        high: f64,
    },
    #[error("volume {0} is negative")]
    NegativeVolume(f64),
}

impl Candle {
    /// Checks that every number is finite, `low <= open, close <= high` and volume is not
    /// negative.
    pub fn check(&self) -> Result<(), CandleError> {
        for (field, value) in [
            ("open", self.open),
            ("high", self.high),
            ("low", self.low),
            ("close", self.close),
            ("volume", self.volume),
        ] {
            if !value.is_finite() {
                return Err(CandleError::NotFinite { field, value });
            }
        }
        if self.high < self.low {
            return Err(CandleError::HighBelowLow {
                high: self.high,
                low: self.low,
            });
        }
        for (field, value) in [("open", self.open), ("close", self.close)] {
            if value < self.low || value > self.high {
                return Err(CandleError::OutsideRange {
                    field,
                    value,
                    low: self.low,
                    high: self.high,
                });
            }
        }
        if self.volume < 0.0 {
            return Err(CandleError::NegativeVolume(self.volume));
        }
        Ok(())
    }

    /// The value of `source` for this bar.
    #[inline]
    pub fn price(&self, source: PriceSource) -> f64 {
        match source {
            PriceSource::Open => self.open,
            PriceSource::High => self.high,
            PriceSource::Low => self.low,
            PriceSource::Close => self.close,
            PriceSource::Hl2 => (self.high + self.low) / 2.0,
            PriceSource::Hlc3 => (self.high + self.low + self.close) / 3.0,
            PriceSource::Ohlc4 => (self.open + self.high + self.low + self.close) / 4.0,
            PriceSource::Volume => self.volume,
        }
    }
}

/// Which number of a bar an indicator or condition reads.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    Open,
    High,
    Low,
    #[default]
    Close,
    Hl2,
    Hlc3,
    Ohlc4,
    Volume,
}

impl PriceSource {
    pub const ALL: [PriceSource; 8] = [
        Self::Open,
        Self::High,
        Self::Low,
        Self::Close,
        Self::Hl2,
        Self::Hlc3,
        Self::Ohlc4,
        Self::Volume,
    ];

    /// Position in [`PriceSource::ALL`]: a dense index for per-source tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::High => "high",
            Self::Low => "low",
            Self::Close => "close",
            Self::Hl2 => "hl2",
            Self::Hlc3 => "hlc3",
            Self::Ohlc4 => "ohlc4",
            Self::Volume => "volume",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

/// A candle as the market reports it: still forming (`closed == false`, values may change)
/// or final.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandleUpdate {
    pub candle: Candle,
    pub closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(o: f64, h: f64, l: f64, c: f64, v: f64) -> Candle {
        Candle {
            open_time: BarTime::from_millis(0),
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
        }
    }

    #[test]
    fn accepts_a_normal_bar() {
        assert_eq!(bar(10.0, 12.0, 9.0, 11.0, 5.0).check(), Ok(()));
        assert_eq!(bar(10.0, 10.0, 10.0, 10.0, 0.0).check(), Ok(()));
    }

    #[test]
    fn rejects_bad_bars_naming_the_reason() {
        assert!(matches!(
            bar(f64::NAN, 12.0, 9.0, 11.0, 5.0).check(),
            Err(CandleError::NotFinite { field: "open", .. })
        ));
        assert!(matches!(
            bar(10.0, 12.0, 9.0, 11.0, f64::INFINITY).check(),
            Err(CandleError::NotFinite {
                field: "volume",
                ..
            })
        ));
        assert!(matches!(
            bar(10.0, 8.0, 9.0, 8.5, 5.0).check(),
            Err(CandleError::HighBelowLow { .. })
        ));
        assert!(matches!(
            bar(13.0, 12.0, 9.0, 11.0, 5.0).check(),
            Err(CandleError::OutsideRange { field: "open", .. })
        ));
        assert!(matches!(
            bar(10.0, 12.0, 9.0, 11.0, -1.0).check(),
            Err(CandleError::NegativeVolume(_))
        ));
    }

    #[test]
    fn price_sources() {
        let c = bar(1.0, 4.0, 0.5, 2.0, 7.0);
        assert_eq!(c.price(PriceSource::Hl2), 2.25);
        assert_eq!(c.price(PriceSource::Hlc3), (4.0 + 0.5 + 2.0) / 3.0);
        assert_eq!(c.price(PriceSource::Ohlc4), 7.5 / 4.0);
        assert_eq!(c.price(PriceSource::Volume), 7.0);
        assert_eq!(PriceSource::parse("HLC3"), Some(PriceSource::Hlc3));
        assert_eq!(PriceSource::parse("median"), None);
        for (i, p) in PriceSource::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
        }
    }
}
