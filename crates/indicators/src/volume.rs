//! Volume-based: OBV and VWAP.

use alert_core::{BarTime, Candle, PriceSource};

use crate::Indicator;

/// On-balance volume, as TA-Lib's `OBV`: starts at the first bar's volume, then adds the
/// bar's volume when the close is above the previous close, subtracts it when below, and
/// keeps the total when equal. Lookback 0 (the first bar has a value).
///
/// OBV is a running total by definition (not a window), so there is nothing to re-anchor;
/// its arithmetic is TA-Lib's, value for value.
#[derive(Clone, Debug, Default)]
pub struct Obv {
    /// Previous close and the OBV at it, once a bar is committed.
    last: Option<(f64, f64)>,
}

impl Obv {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn next(&self, bar: &Candle) -> f64 {
        match self.last {
            None => bar.volume,
            Some((prev_close, obv)) => {
                // Both candidates are computed and one is selected, without a branch on the
                // direction of the close (a coin flip a predictor cannot learn).
                let up = obv + bar.volume;
                let down = obv - bar.volume;
                let moved = if bar.close > prev_close { up } else { down };
                if bar.close == prev_close { obv } else { moved }
            }
        }
    }
}

impl Indicator for Obv {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let obv = self.next(bar);
        self.last = Some((bar.close, obv));
        Some(obv)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        Some(self.next(bar))
    }

    fn lookback(&self) -> usize {
        0
    }

    fn reset(&mut self) {
        self.last = None;
    }
}

/// Volume-weighted average price anchored to each UTC day, as TradingView's session VWAP
/// (not in TA-Lib): `VWAP = Σ(hlc3·volume) / Σ volume` over the bars of the bar's UTC day
/// ([`alert_core::BarTime::utc_day`]) up to and including it, with `hlc3 = (high + low +
/// close)/3`. Both sums restart at the first bar of each UTC day; there is no value while the
/// day's volume sum is 0. Lookback 0.
#[derive(Clone, Debug, Default)]
pub struct Vwap {
    /// The UTC day of the last committed bar with the day's `Σ hlc3·volume` and `Σ volume`.
    session: Option<Session>,
}

/// One UTC day's running sums.
#[derive(Clone, Copy, Debug)]
struct Session {
    day: i64,
    /// The day's first and one-past-last instant, so that a bar of the same day is known by
    /// two compares; the day number is computed only when a bar falls outside (a new day).
    /// An empty range when the day's bounds do not fit in an `i64`.
    start: BarTime,
    end: BarTime,
    pv: f64,
    v: f64,
}

impl Session {
    /// A new day's session, with empty sums.
    fn new(day: i64) -> Self {
        let start = day.checked_mul(BarTime::MS_PER_DAY);
        let end = start.and_then(|s| s.checked_add(BarTime::MS_PER_DAY));
        let (start, end) = match (start, end) {
            (Some(start), Some(end)) => (start, end),
            _ => (i64::MAX, i64::MIN),
        };
        Self {
            day,
            start: BarTime::from_millis(start),
            end: BarTime::from_millis(end),
            pv: 0.0,
            v: 0.0,
        }
    }

    #[inline]
    fn contains(&self, t: BarTime) -> bool {
        (self.start <= t && t < self.end) || utc_day(t) == self.day
    }
}

/// [`BarTime::utc_day`], computed here so that it is inlined: a call anywhere in a caller's
/// loop (even on the once-a-day path) makes the compiler keep the running sums in memory,
/// since every float register is caller-saved.
#[inline(always)]
fn utc_day(t: BarTime) -> i64 {
    t.millis().div_euclid(BarTime::MS_PER_DAY)
}

impl Vwap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session sums including `bar`.
    #[inline]
    fn next(&self, bar: &Candle) -> Session {
        let mut session = match self.session {
            Some(s) if s.contains(bar.open_time) => s,
            _ => Session::new(utc_day(bar.open_time)),
        };
        let price = bar.price(PriceSource::Hlc3);
        session.pv += price * bar.volume;
        session.v += bar.volume;
        session
    }

    #[inline]
    fn value(session: &Session) -> Option<f64> {
        (session.v != 0.0).then(|| session.pv / session.v)
    }
}

impl Indicator for Vwap {
    type Output = f64;

    #[inline(always)]
    fn update(&mut self, bar: &Candle) -> Option<f64> {
        let session = self.next(bar);
        self.session = Some(session);
        Self::value(&session)
    }

    #[inline(always)]
    fn peek(&self, bar: &Candle) -> Option<f64> {
        Self::value(&self.next(bar))
    }

    fn lookback(&self) -> usize {
        0
    }

    fn reset(&mut self) {
        self.session = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alert_core::BarTime;

    const HOUR: i64 = 3_600_000;

    fn bar(t: i64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        Candle {
            open_time: BarTime::from_millis(t),
            open: close,
            high,
            low,
            close,
            volume,
        }
    }

    fn run<I: Indicator<Output = f64>>(ind: &mut I, bars: &[Candle]) -> Vec<Option<f64>> {
        bars.iter()
            .map(|b| {
                let peeked = ind.peek(b);
                let got = ind.update(b);
                assert_eq!(peeked.map(f64::to_bits), got.map(f64::to_bits));
                got
            })
            .collect()
    }

    #[test]
    fn obv_starts_at_the_first_volume_and_follows_the_close() {
        let mut obv = Obv::new();
        assert_eq!(obv.lookback(), 0);
        let bars = [
            bar(0, 10.0, 10.0, 10.0, 5.0),
            bar(HOUR, 11.0, 11.0, 11.0, 3.0),     // up: +3
            bar(2 * HOUR, 9.0, 9.0, 9.0, 4.0),    // down: −4
            bar(3 * HOUR, 9.0, 9.0, 9.0, 100.0),  // equal: unchanged
            bar(4 * HOUR, 12.0, 12.0, 12.0, 0.5), // up: +0.5
        ];
        assert_eq!(
            run(&mut obv, &bars),
            vec![Some(5.0), Some(8.0), Some(4.0), Some(4.0), Some(4.5)]
        );
        obv.reset();
        assert_eq!(run(&mut obv, &bars[1..2]), vec![Some(3.0)]);
    }

    #[test]
    fn obv_flat_series_keeps_the_first_volume() {
        let mut obv = Obv::new();
        let bars: Vec<Candle> = (0..50)
            .map(|i| bar(i * HOUR, 100.0, 100.0, 100.0, 7.0 + i as f64))
            .collect();
        assert!(run(&mut obv, &bars).iter().all(|v| *v == Some(7.0)));
    }

    #[test]
    fn vwap_weights_hlc3_by_volume() {
        let mut vwap = Vwap::new();
        assert_eq!(vwap.lookback(), 0);
        let bars = [
            bar(0, 12.0, 6.0, 9.0, 1.0),     // hlc3 9
            bar(HOUR, 15.0, 9.0, 12.0, 2.0), // hlc3 12
        ];
        // (9·1 + 12·2) / 3 = 11
        assert_eq!(run(&mut vwap, &bars), vec![Some(9.0), Some(11.0)]);
    }

    #[test]
    fn vwap_resets_at_utc_midnight() {
        let mut vwap = Vwap::new();
        let day = BarTime::MS_PER_DAY;
        let bars = [
            bar(day - 2 * HOUR, 10.0, 10.0, 10.0, 1.0),
            bar(day - HOUR, 20.0, 20.0, 20.0, 1.0), // 23:00 UTC, same day: (10 + 20)/2
            bar(day, 40.0, 40.0, 40.0, 3.0),        // 00:00 UTC: a new session
            bar(day + HOUR, 50.0, 50.0, 50.0, 1.0), // (40·3 + 50)/4
        ];
        let got = run(&mut vwap, &bars);
        assert_eq!(got, vec![Some(10.0), Some(15.0), Some(40.0), Some(42.5)]);
        // peeking at the next day's first bar does not end the committed session
        let next_day = bar(2 * day, 1.0, 1.0, 1.0, 1.0);
        assert_eq!(vwap.peek(&next_day), Some(1.0));
        assert_eq!(
            vwap.update(&bar(day + 2 * HOUR, 50.0, 50.0, 50.0, 2.0)),
            Some((40.0 * 3.0 + 50.0 + 100.0) / 6.0)
        );
    }

    #[test]
    fn vwap_has_no_value_while_the_day_has_no_volume() {
        let mut vwap = Vwap::new();
        let day = BarTime::MS_PER_DAY;
        let bars = [
            bar(0, 10.0, 10.0, 10.0, 2.0),
            bar(day, 11.0, 11.0, 11.0, 0.0), // new day, no volume yet
            bar(day + HOUR, 12.0, 12.0, 12.0, 0.0),
            bar(day + 2 * HOUR, 13.0, 13.0, 13.0, 4.0),
            bar(day + 3 * HOUR, 14.0, 14.0, 14.0, 0.0), // volume seen today: keeps a value
        ];
        assert_eq!(
            run(&mut vwap, &bars),
            vec![Some(10.0), None, None, Some(13.0), Some(13.0)]
        );
        vwap.reset();
        assert_eq!(run(&mut vwap, &bars[1..2]), vec![None]);
    }

    #[test]
    fn vwap_flat_series_is_the_price() {
        let mut vwap = Vwap::new();
        let bars: Vec<Candle> = (0..100)
            .map(|i| bar(i * HOUR, 43210.5, 43210.5, 43210.5, 0.3 + (i % 7) as f64))
            .collect();
        for v in run(&mut vwap, &bars) {
            let Some(v) = v else { panic!("value expected") };
            assert!((v - 43210.5).abs() <= 1e-9);
        }
    }
}
