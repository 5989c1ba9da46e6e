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

    /// RFC 3339 in UTC with millisecond precision when needed: `2024-01-03T12:00:00Z`,
    /// `2024-01-03T12:00:00.250Z` (TradingView's `{{time}}` style).
    pub fn to_rfc3339(self) -> String {
        let day = self.utc_day();
        let ms_of_day = self.0.rem_euclid(Self::MS_PER_DAY);
        let (y, m, d) = civil_from_days(day);
        let secs = ms_of_day / 1000;
        let (hh, mm, ss, ms) = (secs / 3600, secs / 60 % 60, secs % 60, ms_of_day % 1000);
        if ms == 0 {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
        }
    }

    /// Parses RFC 3339 with a `Z` or `±hh:mm` offset (`2024-01-03T12:00:00Z`,
    /// `2024-01-03T12:00:00.5+02:00`), or a plain date `2024-01-03` (midnight UTC).
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.trim().as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = b.get(r)?;
            if part.iter().all(u8::is_ascii_digit) {
                std::str::from_utf8(part).ok()?.parse().ok()
            } else {
                None
            }
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b.get(4) != Some(&b'-')
            || b.get(7) != Some(&b'-')
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
        {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        if civil_from_days(days) != (y, mo, d) {
            return None; // e.g. 2023-02-30
        }
        if b.len() == 10 {
            return Some(Self(days * Self::MS_PER_DAY));
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' '))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
        {
            return None;
        }
        let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let mut i = 19;
        let mut ms = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
            let digits = std::str::from_utf8(&b[start..i.min(start + 3)]).ok()?;
            ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        }
        let offset_min = match b.get(i) {
            Some(b'Z' | b'z') if b.len() == i + 1 => 0,
            Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b.get(i + 3) == Some(&b':') => {
                let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
                if *sign == b'+' { m } else { -m }
            }
            _ => return None,
        };
        let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_min * 60;
        Some(Self(secs * 1000 + ms))
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

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rfc3339_round_trips(ms in -62_000_000_000_000i64..253_000_000_000_000) {
            let t = BarTime::from_millis(ms);
            prop_assert_eq!(BarTime::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
    }

    #[test]
    fn rfc3339_examples() {
        assert_eq!(BarTime::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            BarTime::from_millis(1_704_283_200_250).to_rfc3339(),
            "2024-01-03T12:00:00.250Z"
        );
        assert_eq!(
            BarTime::parse_rfc3339("2024-01-03T12:00:00Z"),
            Some(BarTime::from_millis(1_704_283_200_000))
        );
        assert_eq!(
            BarTime::parse_rfc3339("2024-01-03T14:00:00+02:00"),
            Some(BarTime::from_millis(1_704_283_200_000))
        );
        assert_eq!(
            BarTime::parse_rfc3339("2024-01-03"),
            Some(BarTime::from_millis(1_704_240_000_000))
        );
        assert_eq!(
            BarTime::parse_rfc3339("2024-01-03T12:00:00.5Z"),
            Some(BarTime::from_millis(1_704_283_200_500))
        );
        for bad in [
            "",
            "2024-13-01",
            "2023-02-30",
            "2024-01-03T25:00:00Z",
            "2024-01-03T12:00:00",
            "yesterday",
            "2024-01-03T12:00:00.Z",
        ] {
            assert_eq!(BarTime::parse_rfc3339(bad), None, "{bad}");
        }
    }

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
