//! When to try a failed delivery again.
//!
//! The first attempt is immediate; after the n-th failed attempt the next waits
//! `schedule[n-1]` ± `jitter` (default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — eight
//! attempts over about 28 hours). A `Retry-After` from the receiver (seconds or an HTTP date)
//! pushes the next attempt later, never earlier, up to `max_retry_after`. After the last
//! scheduled attempt the delivery has failed.

use std::time::{Duration, SystemTime};

use rand::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Waits before attempts 2, 3, …; its length + 1 is the number of attempts.
    pub schedule: Vec<Duration>,
    /// Relative jitter on each wait (0.2: ±20 %), so many failed deliveries do not return at
    /// once.
    pub jitter: f64,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        Self {
            schedule: [
                5,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(10 * HOUR),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "retry schedule: {0:?} is not a duration: expected a number with a unit (ms, s, m, h), e.g. 5s,5m,30m,2h"
    )]
    Duration(String),
    #[error("retry schedule: expected at most 100 entries")]
    TooLong,
}

/// Parses `500ms`, `5s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

impl RetryPolicy {
    /// A policy with `schedule` given as `5s,5m,30m` (`ALERT_WEBHOOK_RETRY_SCHEDULE`); an
    /// empty string means a single attempt.
    pub fn with_schedule(text: &str) -> Result<Self, ScheduleError> {
        let schedule = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse_duration(s).ok_or_else(|| ScheduleError::Duration(s.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        if schedule.len() > 100 {
            return Err(ScheduleError::TooLong);
        }
        Ok(Self {
            schedule,
            ..Self::default()
        })
    }

    /// Attempts in all.
    pub fn max_attempts(&self) -> usize {
        self.schedule.len() + 1
    }

    /// The wait before the next attempt after `attempts_made` attempts failed, or `None` when
    /// that was the last.
    pub fn next_delay(
        &self,
        attempts_made: usize,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        let base = *self.schedule.get(attempts_made.checked_sub(1)?)?;
        let factor = if self.jitter > 0.0 {
            1.0 + rng.random_range(-self.jitter..=self.jitter)
        } else {
            1.0
        };
        let jittered = base.mul_f64(factor.max(0.0));
        Some(match retry_after {
            Some(wait) => jittered.max(wait.min(self.max_retry_after)),
            None => jittered,
        })
    }
}

/// A `Retry-After` header: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn default_schedule_is_the_documented_one() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 8);
        let total: Duration = policy.schedule.iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000
        );
    }

    #[test]
    fn delays_stay_within_the_jitter_and_end() {
        let policy = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let d = policy.next_delay(1, None, &mut rng).unwrap().as_secs_f64();
            assert!((4.0..=6.0).contains(&d), "{d}");
            let d = policy.next_delay(7, None, &mut rng).unwrap().as_secs_f64();
            assert!((28_800.0..=43_200.0).contains(&d), "{d}");
        }
        assert_eq!(policy.next_delay(8, None, &mut rng), None);
        assert_eq!(policy.next_delay(0, None, &mut rng), None);
    }

    #[test]
    fn retry_after_delays_but_never_hastens() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let later = Some(Duration::from_secs(60));
        assert_eq!(
            policy.next_delay(1, later, &mut rng),
            Some(Duration::from_secs(60))
        );
        let sooner = Some(Duration::from_secs(1));
        assert_eq!(
            policy.next_delay(1, sooner, &mut rng),
            Some(Duration::from_secs(5))
        );
        let huge = Some(Duration::from_secs(1_000_000));
        assert_eq!(
            policy.next_delay(1, huge, &mut rng),
            Some(policy.max_retry_after)
        );
    }

    #[test]
    fn schedules_and_retry_after_parse() {
        let p = RetryPolicy::with_schedule("100ms, 2s,1m,1h").unwrap();
        assert_eq!(
            p.schedule,
            [
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(RetryPolicy::with_schedule("").unwrap().max_attempts(), 1);
        assert_eq!(
            RetryPolicy::with_schedule("5s,soon"),
            Err(ScheduleError::Duration("soon".into()))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
