use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::BarTime;

/// A bar length from Binance's set. Bars are aligned to the UTC epoch, except weeks, which
/// start on Monday 00:00 UTC (as Binance's `1w` klines do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timeframe {
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
}

/// The text was not one of Binance's interval names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown timeframe {given:?}: expected one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w"
)]
pub struct TimeframeError {
    pub given: String,
}

/// 1970-01-01 was a Thursday; the first Monday 00:00 UTC after the epoch is 4 days later.
const WEEK_ANCHOR_MS: i64 = 4 * BarTime::MS_PER_DAY;

impl Timeframe {
    /// Every timeframe, shortest first.
    pub const ALL: [Timeframe; 14] = [
        Self::M1,
        Self::M3,
        Self::M5,
        Self::M15,
        Self::M30,
        Self::H1,
        Self::H2,
        Self::H4,
        Self::H6,
        Self::H8,
        Self::H12,
        Self::D1,
        Self::D3,
        Self::W1,
    ];

    /// Position in [`Timeframe::ALL`] (shortest first): a dense index for per-timeframe tables.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name Binance uses (`1m`, `4h`, `1w`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::M1 => "1m",
            Self::M3 => "3m",
            Self::M5 => "5m",
            Self::M15 => "15m",
            Self::M30 => "30m",
            Self::H1 => "1h",
            Self::H2 => "2h",
            Self::H4 => "4h",
            Self::H6 => "6h",
            Self::H8 => "8h",
            Self::H12 => "12h",
            Self::D1 => "1d",
            Self::D3 => "3d",
            Self::W1 => "1w",
        }
    }

    /// Length of one bar in milliseconds.
    pub const fn duration_ms(self) -> i64 {
        const M: i64 = BarTime::MS_PER_MINUTE;
        const H: i64 = BarTime::MS_PER_HOUR;
        const D: i64 = BarTime::MS_PER_DAY;
        match self {
            Self::M1 => M,
            Self::M3 => 3 * M,
            Self::M5 => 5 * M,
            Self::M15 => 15 * M,
            Self::M30 => 30 * M,
            Self::H1 => H,
            Self::H2 => 2 * H,
            Self::H4 => 4 * H,
            Self::H6 => 6 * H,
            Self::H8 => 8 * H,
            Self::H12 => 12 * H,
            Self::D1 => D,
            Self::D3 => 3 * D,
            Self::W1 => 7 * D,
        }
    }

    const fn anchor_ms(self) -> i64 {
        match self {
            Self::W1 => WEEK_ANCHOR_MS,
            _ => 0,
        }
    }

    /// Open time of the bar that contains `t`.
    pub const fn bar_open(self, t: BarTime) -> BarTime {
        let d = self.duration_ms();
        let a = self.anchor_ms();
        BarTime::from_millis((t.millis() - a).div_euclid(d) * d + a)
    }

    /// Close time of the bar that contains `t`: the open time of the next bar.
    pub const fn bar_close(self, t: BarTime) -> BarTime {
        self.bar_open(t).plus_millis(self.duration_ms())
    }

    /// Whether `t` is the open time of a bar of this timeframe.
    pub const fn is_aligned(self, t: BarTime) -> bool {
        self.bar_open(t).millis() == t.millis()
    }

    /// Whether bars of `self` are built from whole bars of `finer`: every `self` boundary is a
    /// `finer` boundary. (1w is built from 1d but not from 3d.)
    pub const fn is_multiple_of(self, finer: Timeframe) -> bool {
        let (d, f) = (self.duration_ms(), finer.duration_ms());
        d % f == 0 && (self.anchor_ms() - finer.anchor_ms()) % f == 0
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Timeframe {
    type Err = TimeframeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|tf| tf.as_str() == s)
            .ok_or_else(|| TimeframeError {
                given: s.to_owned(),
            })
    }
}

impl Serialize for Timeframe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Timeframe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_binance_names() {
        for tf in Timeframe::ALL {
            assert_eq!(tf.as_str().parse::<Timeframe>(), Ok(tf));
        }
        let err = "1M".parse::<Timeframe>().err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("\"1M\"") && e.contains("expected one of")));
        assert!("".parse::<Timeframe>().is_err());
        assert!("60m".parse::<Timeframe>().is_err());
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2024-01-03 (a Wednesday) 12:00 UTC -> Monday 2024-01-01 00:00 UTC.
        let wed = BarTime::from_millis(1_704_283_200_000);
        assert_eq!(Timeframe::W1.bar_open(wed).millis(), 1_704_067_200_000);
        // 1970-01-01 (Thursday) belongs to the week starting Monday 1969-12-29.
        assert_eq!(
            Timeframe::W1.bar_open(BarTime::from_millis(0)).millis(),
            -3 * BarTime::MS_PER_DAY
        );
    }

    #[test]
    fn hours_and_days_align_to_epoch() {
        let t = BarTime::from_millis(1_704_283_200_000 + 5 * BarTime::MS_PER_MINUTE + 7);
        assert_eq!(Timeframe::H4.bar_open(t).millis(), 1_704_283_200_000);
        assert_eq!(
            Timeframe::H8.bar_open(t).millis(),
            1_704_283_200_000 - 4 * BarTime::MS_PER_HOUR
        );
        assert_eq!(
            Timeframe::M5.bar_open(t).millis(),
            1_704_283_200_000 + 5 * BarTime::MS_PER_MINUTE
        );
        assert_eq!(Timeframe::D1.bar_close(t).millis(), 1_704_326_400_000);
    }

    #[test]
    fn index_is_the_position_in_all() {
        for (i, tf) in Timeframe::ALL.into_iter().enumerate() {
            assert_eq!(tf.index(), i);
        }
    }

    #[test]
    fn multiples() {
        assert!(Timeframe::H1.is_multiple_of(Timeframe::M1));
        assert!(Timeframe::H1.is_multiple_of(Timeframe::M15));
        assert!(!Timeframe::H1.is_multiple_of(Timeframe::H2));
        assert!(Timeframe::W1.is_multiple_of(Timeframe::D1));
        assert!(!Timeframe::W1.is_multiple_of(Timeframe::D3));
        assert!(!Timeframe::H8.is_multiple_of(Timeframe::H6));
    }

    #[test]
    fn serde_uses_names() {
        assert_eq!(
            serde_json::to_string(&Timeframe::H4).ok().as_deref(),
            Some("\"4h\"")
        );
        assert_eq!(
            serde_json::from_str::<Timeframe>("\"15m\"").ok(),
            Some(Timeframe::M15)
        );
        assert!(serde_json::from_str::<Timeframe>("\"2w\"").is_err());
    }

    proptest! {
        #[test]
        fn bar_open_contains_t(ms in -10_000_000_000_000i64..10_000_000_000_000, i in 0usize..14) {
            let tf = Timeframe::ALL[i];
            let t = BarTime::from_millis(ms);
            let open = tf.bar_open(t);
            prop_assert!(open <= t);
            prop_assert!(t < tf.bar_close(t));
            prop_assert!(tf.is_aligned(open));
            prop_assert_eq!(tf.bar_open(open), open);
        }

        #[test]
        fn finer_boundaries_nest(ms in -10_000_000_000_000i64..10_000_000_000_000, i in 0usize..14, j in 0usize..14) {
            let (coarse, fine) = (Timeframe::ALL[i], Timeframe::ALL[j]);
            prop_assume!(coarse.is_multiple_of(fine));
            let open = coarse.bar_open(BarTime::from_millis(ms));
            prop_assert!(fine.is_aligned(open));
        }
    }
}
