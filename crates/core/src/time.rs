use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in time in milliseconds since the Unix epoch (UTC), as exchanges stamp candles.
///
/// Bar open times, close times and fire times are all `BarTime`s; which one a value is
/// is said by the name of the field that holds it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct BarTime(i64);

impl BarTime {
    pub const MS_PER_SECOND: i64 = 1_000;
    pub const MS_PER_MINUTE: i64 = 60 * Self::MS_PER_SECOND;
    pub const MS_PER_HOUR: i64 = 60 * Self::MS_PER_MINUTE;
    pub const MS_PER_DAY: i64 = 24 * Self::MS_PER_HOUR;

    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// `self + ms`, saturating at the ends of the representable range.
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// The UTC day this instant falls in, as a day count since the epoch.
    pub const fn utc_day(self) -> i64 {
        self.0.div_euclid(Self::MS_PER_DAY)
    }
}

impl fmt::Display for BarTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_day_is_floor_division_also_before_epoch() {
        assert_eq!(BarTime::from_millis(0).utc_day(), 0);
        assert_eq!(BarTime::from_millis(BarTime::MS_PER_DAY - 1).utc_day(), 0);
        assert_eq!(BarTime::from_millis(BarTime::MS_PER_DAY).utc_day(), 1);
        assert_eq!(BarTime::from_millis(-1).utc_day(), -1);
    }

    #[test]
    fn serializes_as_plain_millis() {
        let t = BarTime::from_millis(1_700_000_000_000);
        assert_eq!(
            serde_json::to_string(&t).ok().as_deref(),
            Some("1700000000000")
        );
    }
}
