//! REST klines: `GET /api/v3/klines`, paginated, within Binance's request-weight limits.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use alert_core::{BarTime, Candle, Symbol, Timeframe};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Backoff, BinanceConfig, Clock};
use crate::source::SourceError;

/// Most klines one request returns.
pub(crate) const PAGE: usize = 1_000;
/// Request weight of `/api/v3/klines` (2 for any limit).
const KLINES_WEIGHT: u32 = 2;
/// Pause after a 429/418 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) enum RestError {
    Cancelled,
    /// An answer retrying cannot change (e.g. 400 invalid symbol).
    Permanent(String),
}

/// The REST client of one source run, shared by its connections.
pub(crate) struct Rest {
    client: reqwest::Client,
    klines_url: String,
    interval: Timeframe,
    limiter: Limiter,
    permits: Semaphore,
    backoff: (Duration, Duration),
    clock: Clock,
    close_grace_ms: i64,
}

impl Rest {
    pub fn new(config: &BinanceConfig) -> Result<Self, SourceError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| SourceError::Other(format!("binance: HTTP client: {e}")))?;
        Ok(Self {
            client,
            klines_url: format!("{}/api/v3/klines", config.rest_url.trim_end_matches('/')),
            interval: config.interval,
            limiter: Limiter::new(config.weight_limit, config.weight_headroom),
            permits: Semaphore::new(config.max_concurrent_requests),
            backoff: (config.backoff_initial, config.backoff_max),
            clock: config.clock.clone(),
            close_grace_ms: config.close_grace.as_millis() as i64,
        })
    }

    /// The closed klines of `symbol` opening in `[from, through]`, in order. Klines not yet
    /// closed (plus the grace) on the clock are left out, and so are invalid ones (logged).
    pub async fn closed_klines(
        &self,
        symbol: Symbol,
        from: BarTime,
        through: BarTime,
        cancel: &CancellationToken,
    ) -> Result<Vec<Candle>, RestError> {
        let d = self.interval.duration_ms();
        let mut out: Vec<Candle> = Vec::new();
        let mut start = from;
        while start <= through {
            let rows = self
                .page(symbol, start, through.plus_millis(d - 1), cancel)
                .await?;
            let now = self.clock.now().millis();
            let mut newest: Option<i64> = None;
            for row in &rows {
                if let Some(t) = row.first().and_then(serde_json::Value::as_i64) {
                    newest = Some(newest.map_or(t, |n| n.max(t)));
                }
                let candle = match parse_row(row, self.interval) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%symbol, "binance: skipping a bad REST kline: {e}");
                        continue;
                    }
                };
                let t = candle.open_time;
                if t < start || t > through || t.millis() + d + self.close_grace_ms > now {
                    continue; // outside the range, or not closed yet (the still-open kline)
                }
                if out.last().is_some_and(|last| last.open_time >= t) {
                    tracing::warn!(%symbol, open_time = %t, "binance: REST kline out of order, skipped");
                    continue;
                }
                out.push(candle);
            }
            match newest {
                Some(n) if rows.len() >= PAGE && n >= start.millis() && n < through.millis() => {
                    start = BarTime::from_millis(n + d);
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// One klines request, retried until it succeeds, fails for good, or is cancelled.
    async fn page(
        &self,
        symbol: Symbol,
        start: BarTime,
        end: BarTime,
        cancel: &CancellationToken,
    ) -> Result<Vec<Vec<serde_json::Value>>, RestError> {
        let url = format!(
            "{}?symbol={}&interval={}&startTime={}&endTime={}&limit={PAGE}",
            self.klines_url,
            symbol.as_str(),
            self.interval.as_str(),
            start.millis(),
            end.millis()
        );
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        loop {
            while let Some(wait) = self.limiter.reserve(KLINES_WEIGHT) {
                tracing::debug!(?wait, "binance: waiting for the REST weight limit");
                or_cancel(tokio::time::sleep(wait), cancel).await?;
            }
            let permit = or_cancel(self.permits.acquire(), cancel).await?;
            let sent = or_cancel(self.client.get(&url).send(), cancel).await?;
            let retry = match sent {
                Err(e) => format!("request failed: {e}"),
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers();
                    if let Some(used) = headers
                        .get("x-mbx-used-weight-1m")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u32>().ok())
                    {
                        self.limiter.observe(used);
                    }
                    if status.as_u16() == 429 || status.as_u16() == 418 {
                        let wait = headers
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs)
                            .max(backoff.next_delay()); // never a busy loop on `Retry-After: 0`
                        tracing::warn!(%symbol, status = status.as_u16(), ?wait,
                            "binance: rate limited; pausing REST requests");
                        self.limiter.pause(wait);
                        drop(permit);
                        continue;
                    }
                    let body = or_cancel(resp.text(), cancel).await?;
                    match body {
                        Err(e) => format!("reading the answer failed: {e}"),
                        Ok(body) if status.is_success() => {
                            match serde_json::from_str::<Vec<Vec<serde_json::Value>>>(&body) {
                                Ok(rows) => return Ok(rows),
                                Err(e) => format!("unreadable klines answer: {e}"),
                            }
                        }
                        Ok(body) if status.is_client_error() => {
                            return Err(RestError::Permanent(format!(
                                "GET /api/v3/klines for {symbol}: HTTP {status}: {}",
                                body.chars().take(200).collect::<String>()
                            )));
                        }
                        Ok(body) => format!(
                            "HTTP {status}: {}",
                            body.chars().take(200).collect::<String>()
                        ),
                    }
                }
            };
            drop(permit);
            let wait = backoff.next_delay();
            tracing::warn!(%symbol, ?wait, "binance: klines request: {retry}; retrying");
            or_cancel(tokio::time::sleep(wait), cancel).await?;
        }
    }
}

async fn or_cancel<F: Future>(f: F, cancel: &CancellationToken) -> Result<F::Output, RestError> {
    tokio::select! {
        r = f => Ok(r),
        _ = cancel.cancelled() => Err(RestError::Cancelled),
    }
}

/// A number Binance sends as a string (`"0.01634790"`); plain JSON numbers are accepted too.
pub(crate) fn number(v: &serde_json::Value, field: &str) -> Result<f64, String> {
    let x = match v {
        serde_json::Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| format!("{field} {s:?} is not a number"))?,
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("{field} {n} is not a number"))?,
        other => return Err(format!("{field} is {other}, expected a number")),
    };
    Ok(x)
}

/// One row of `/api/v3/klines`: `[openTime, "open", "high", "low", "close", "volume",
/// closeTime, ...]`, checked.
pub(crate) fn parse_row(row: &[serde_json::Value], interval: Timeframe) -> Result<Candle, String> {
    let field = |i: usize, name: &str| {
        row.get(i)
            .ok_or_else(|| format!("row has {} fields, no {name}", row.len()))
    };
    let open_time = field(0, "open time")?
        .as_i64()
        .map(BarTime::from_millis)
        .ok_or("open time is not an integer")?;
    if !interval.is_aligned(open_time) {
        return Err(format!(
            "open time {open_time} is not on a {interval} boundary"
        ));
    }
    let candle = Candle {
        open_time,
        open: number(field(1, "open")?, "open")?,
        high: number(field(2, "high")?, "high")?,
        low: number(field(3, "low")?, "low")?,
        close: number(field(4, "close")?, "close")?,
        volume: number(field(5, "volume")?, "volume")?,
    };
    candle
        .check()
        .map_err(|e| format!("kline {open_time}: {e}"))?;
    Ok(candle)
}

/// Binance's weight budget, shared by every request of the source.
struct Limiter {
    state: Mutex<LimiterState>,
    budget: u32,
}

#[derive(Default)]
struct LimiterState {
    /// No request before this (after a 429/418).
    paused_until: Option<Instant>,
    /// Weight used in `minute` (the last header seen, plus requests sent since).
    used: u32,
    /// The UTC minute (since the epoch) `used` belongs to: Binance's window.
    minute: i64,
}

impl Limiter {
    fn new(limit: u32, headroom: u32) -> Self {
        Self {
            state: Mutex::new(LimiterState::default()),
            budget: limit.saturating_sub(headroom).max(KLINES_WEIGHT),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `None`: go (the weight is counted); `Some(wait)`: try again after `wait`.
    fn reserve(&self, weight: u32) -> Option<Duration> {
        let mut st = self.lock();
        decide(&mut st, Instant::now(), wall_ms(), weight, self.budget)
    }

    fn observe(&self, used: u32) {
        let mut st = self.lock();
        st.minute = wall_ms().div_euclid(60_000);
        st.used = used;
    }

    fn pause(&self, d: Duration) {
        let mut st = self.lock();
        let until = Instant::now() + d;
        st.paused_until = Some(st.paused_until.map_or(until, |p| p.max(until)));
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn decide(
    st: &mut LimiterState,
    now: Instant,
    wall_ms: i64,
    weight: u32,
    budget: u32,
) -> Option<Duration> {
    if let Some(p) = st.paused_until {
        if p > now {
            return Some(p - now);
        }
        st.paused_until = None;
    }
    let minute = wall_ms.div_euclid(60_000);
    if st.minute != minute {
        st.minute = minute;
        st.used = 0;
    }
    if st.used.saturating_add(weight) > budget {
        // Wait for the next minute (and a little more for clock differences).
        let left = 60_000 - wall_ms.rem_euclid(60_000) + 500;
        return Some(Duration::from_millis(left as u64));
    }
    st.used += weight;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_binance_row_and_rejects_bad_ones() {
        let row = json!([
            1_700_000_040_000i64,
            "100.5",
            "101.0",
            "99.5",
            "100.0",
            "12.25",
            1_700_000_099_999i64,
            "1234.5",
            42,
            "6.0",
            "600.0",
            "0"
        ]);
        let row = row.as_array().cloned().unwrap_or_default();
        let c = parse_row(&row, Timeframe::M1);
        assert_eq!(
            c,
            Ok(Candle {
                open_time: BarTime::from_millis(1_700_000_040_000),
                open: 100.5,
                high: 101.0,
                low: 99.5,
                close: 100.0,
                volume: 12.25
            })
        );
        let mut bad = row.clone();
        bad[2] = json!("99.0"); // high below low
        assert!(parse_row(&bad, Timeframe::M1).is_err());
        let mut bad = row.clone();
        bad[0] = json!(1_700_000_040_001i64); // misaligned
        assert!(parse_row(&bad, Timeframe::M1).is_err());
        let mut bad = row.clone();
        bad[4] = json!("abc");
        assert!(parse_row(&bad, Timeframe::M1).is_err());
        assert!(parse_row(&row[..3], Timeframe::M1).is_err());
        assert!(parse_row(&row, Timeframe::H1).is_err(), "not on an hour");
    }

    #[test]
    fn weight_budget_waits_for_the_next_minute() {
        let now = Instant::now();
        let mut st = LimiterState::default();
        let minute_start = 1_700_000_040_000i64; // a minute boundary
        assert_eq!(decide(&mut st, now, minute_start + 1_000, 2, 10), None);
        assert_eq!(st.used, 2);
        st.used = 9; // as a header would say
        let wait = decide(&mut st, now, minute_start + 20_000, 2, 10);
        assert_eq!(wait, Some(Duration::from_millis(40_500)));
        // The next minute starts afresh.
        assert_eq!(decide(&mut st, now, minute_start + 60_000, 2, 10), None);
        assert_eq!(st.used, 2);
    }

    #[test]
    fn a_pause_blocks_until_it_ends() {
        let now = Instant::now();
        let mut st = LimiterState {
            paused_until: Some(now + Duration::from_secs(3)),
            ..LimiterState::default()
        };
        assert_eq!(
            decide(&mut st, now, 0, 2, 100),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            decide(&mut st, now + Duration::from_secs(3), 0, 2, 100),
            None
        );
        assert_eq!(st.paused_until, None);
    }
}
