//! `ingest`: candles pushed over HTTP by a trusted client (`POST /v1/candles`), for users with
//! a feed of their own.
//!
//! [`Ingest::new`] gives the [`Source`] and a cloneable [`IngestHandle`] the HTTP layer uses:
//! [`IngestHandle::parse`] turns a request body into candle updates or a [`BatchError`] that
//! names every bad field (`candles[3].high`), and [`IngestHandle::push`] feeds a valid batch,
//! in order, into the runner's channel.
//!
//! Rules (DESIGN §7):
//! - A batch with any invalid item (not a finite number, negative volume, high below low,
//!   open/close outside [low, high], a bar not aligned to the feed timeframe, another
//!   timeframe, a bar more than [`MAX_FUTURE_MS`] in the future) is refused whole: nothing is
//!   fed.
//! - A bar older than the last one seen for its symbol, or at or before its last closed bar
//!   (a duplicate close, or an update of a bar that has closed), is skipped with a log line and
//!   reported in [`Pushed::rejected`]; the rest of the batch is fed. Clients may re-send a
//!   batch safely.
//! - Backpressure: a batch is fed only once the runner's bounded channel has room for all of
//!   it; if that takes longer than [`IngestConfig::wait`], [`PushError::Full`] (HTTP 503) and
//!   nothing changed.
//!
//! Every wanted symbol is reported warm at once: the client owns history, and a readiness
//! probe that waited for data would keep the very endpoint that brings it out of rotation.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use alert_core::{BarTime, Candle, CandleError, CandleUpdate, Symbol, Timeframe};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::source::{Source, SourceError, SourceEvent, Wanted};

/// Most candles accepted in one request.
pub const MAX_CANDLES_PER_REQUEST: usize = 10_000;

/// Most field errors listed in one [`BatchError`] (the count of invalid items is complete).
pub const MAX_ERRORS_LISTED: usize = 100;

/// How far in the future (past the wall clock) a bar may open: clock skew allowance. A bar
/// further ahead would make every real bar after it look stale.
pub const MAX_FUTURE_MS: i64 = 5 * BarTime::MS_PER_MINUTE;

/// A channel this large holds the largest request whole (the runner's channel should be at
/// least this big with the ingest source).
pub const MIN_QUEUE: usize = MAX_CANDLES_PER_REQUEST;

const FIELDS: &str = "symbol, timeframe, open_time, open, high, low, close, volume, closed";

/// Ingest settings.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// The feed timeframe: every candle pushed is a bar of it.
    pub timeframe: Timeframe,
    /// How long a push waits for room in the runner's channel before giving up.
    pub wait: Duration,
}

impl IngestConfig {
    pub fn new(timeframe: Timeframe) -> Self {
        Self {
            timeframe,
            wait: Duration::from_secs(2),
        }
    }
}

/// One valid candle update of a request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IngestCandle {
    pub symbol: Symbol,
    pub update: CandleUpdate,
}

/// One problem with a request: the JSON path of the field (`candles[3].high`; `""` is the
/// body itself) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Why a request was refused whole (HTTP 400). Serializes as
/// `{"error": "...", "errors": [{"path", "message"}]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchError {
    pub error: String,
    /// At most [`MAX_ERRORS_LISTED`].
    pub errors: Vec<FieldError>,
    /// Candles found invalid (0 when the body itself is wrong).
    #[serde(skip)]
    pub invalid: usize,
}

impl BatchError {
    fn body(error: FieldError) -> Self {
        Self {
            error: if error.path.is_empty() {
                error.message.clone()
            } else {
                format!("{}: {}", error.path, error.message)
            },
            errors: vec![error],
            invalid: 0,
        }
    }
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)?;
        for e in &self.errors {
            write!(f, "; {}: {}", e.path, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for BatchError {}

/// A candle of a request skipped as stale or duplicate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// `candles[i].open_time`.
    pub path: String,
    pub message: String,
}

/// What [`IngestHandle::push`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Candles fed to the runner.
    pub accepted: usize,
    /// Candles skipped (stale or duplicate), in request order.
    pub rejected: Vec<Rejected>,
}

/// Why a push fed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the candle queue is full: retry later")]
    Full,
    #[error("the ingest source is not running (starting or shutting down): retry later")]
    NotRunning,
}

/// What has been fed for one symbol.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    last_closed: Option<BarTime>,
    /// The latest bar seen (closed or in progress).
    latest: Option<BarTime>,
}

impl Seen {
    /// Admits `u` (and records it) or says why it is stale.
    fn admit(&mut self, u: &CandleUpdate) -> Result<(), String> {
        let t = u.candle.open_time;
        if let Some(last) = self.last_closed
            && t <= last
        {
            return Err(if t == last && u.closed {
                format!(
                    "duplicate: the bar at {} has already closed; skipped",
                    t.to_rfc3339()
                )
            } else if t == last {
                format!(
                    "the bar at {} has already closed: an in-progress update of it is stale; skipped",
                    t.to_rfc3339()
                )
            } else {
                format!(
                    "out of order: the bar at {} is older than the last closed bar at {}; skipped",
                    t.to_rfc3339(),
                    last.to_rfc3339()
                )
            });
        }
        if let Some(latest) = self.latest
            && t < latest
        {
            return Err(format!(
                "out of order: the bar at {} is older than the last bar seen at {}; skipped",
                t.to_rfc3339(),
                latest.to_rfc3339()
            ));
        }
        self.latest = Some(t);
        if u.closed {
            self.last_closed = Some(t);
        }
        Ok(())
    }
}

struct State {
    /// The runner's channel, while the source runs.
    out: Option<mpsc::Sender<SourceEvent>>,
    seen: HashMap<Symbol, Seen>,
}

struct Shared {
    config: IngestConfig,
    /// Held for a whole push, so concurrent requests are fed one after the other, each in
    /// order, and the stale check sees what was fed before.
    state: Mutex<State>,
}

/// The HTTP side of the ingest source. Cheap to clone.
#[derive(Clone)]
pub struct IngestHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for IngestHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandle")
            .field("timeframe", &self.shared.config.timeframe)
            .finish_non_exhaustive()
    }
}

/// The ingest source.
pub struct Ingest {
    shared: Arc<Shared>,
}

impl Ingest {
    pub fn new(config: IngestConfig) -> (Self, IngestHandle) {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                out: None,
                seen: HashMap::new(),
            }),
        });
        (
            Self {
                shared: Arc::clone(&shared),
            },
            IngestHandle { shared },
        )
    }

    async fn serve(
        self,
        out: mpsc::Sender<SourceEvent>,
        mut wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        self.shared.state.lock().await.out = Some(out.clone());
        tracing::info!(timeframe = %self.shared.config.timeframe, "market data: ingest (POST /v1/candles)");
        let mut warm = BTreeSet::new();
        'run: loop {
            let fresh: Vec<Symbol> = wanted
                .borrow_and_update()
                .keys()
                .filter(|s| !warm.contains(*s))
                .copied()
                .collect();
            for symbol in fresh {
                warm.insert(symbol);
                tokio::select! {
                    sent = out.send(SourceEvent::Warm { symbol }) => if sent.is_err() { break 'run },
                    _ = cancel.cancelled() => break 'run,
                }
            }
            tokio::select! {
                changed = wanted.changed() => if changed.is_err() {
                    cancel.cancelled().await;
                    break;
                },
                _ = cancel.cancelled() => break,
            }
        }
        self.shared.state.lock().await.out = None;
        Ok(())
    }
}

impl Source for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn timeframe(&self) -> Timeframe {
        self.shared.config.timeframe
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<SourceEvent>,
        wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin((*self).serve(out, wanted, cancel))
    }
}

fn now_ms() -> BarTime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    BarTime::from_millis(ms)
}

impl IngestHandle {
    /// The feed timeframe.
    pub fn timeframe(&self) -> Timeframe {
        self.shared.config.timeframe
    }

    /// Parses and validates a request body against the wall clock.
    pub fn parse(&self, body: &[u8]) -> Result<Vec<IngestCandle>, BatchError> {
        parse_batch(body, self.shared.config.timeframe, now_ms())
    }

    /// Feeds `candles` in order, skipping stale and duplicate bars (logged, and listed in the
    /// result). All or nothing: on an error nothing was fed and nothing is remembered.
    pub async fn push(&self, candles: Vec<IngestCandle>) -> Result<Pushed, PushError> {
        let deadline = Instant::now() + self.shared.config.wait;
        let mut state = tokio::time::timeout_at(deadline, self.shared.state.lock())
            .await
            .map_err(|_| PushError::Full)?;
        let Some(out) = state.out.clone() else {
            return Err(PushError::NotRunning);
        };
        // The stale check runs on a copy; it is kept only once the batch is fed.
        let mut overlay: HashMap<Symbol, Seen> = HashMap::new();
        let mut accepted = Vec::with_capacity(candles.len());
        let mut rejected = Vec::new();
        for (i, c) in candles.into_iter().enumerate() {
            let seen = overlay
                .entry(c.symbol)
                .or_insert_with(|| state.seen.get(&c.symbol).copied().unwrap_or_default());
            match seen.admit(&c.update) {
                Ok(()) => accepted.push(c),
                Err(message) => {
                    tracing::debug!(symbol = %c.symbol, %message, "ingest: candle skipped");
                    rejected.push(Rejected {
                        path: format!("candles[{i}].open_time"),
                        message: format!("{}: {message}", c.symbol),
                    });
                }
            }
        }
        let n = accepted.len();
        if n > 0 {
            if n > out.max_capacity() {
                return Err(PushError::Full);
            }
            let permits = match tokio::time::timeout_at(deadline, out.reserve_many(n)).await {
                Err(_) => return Err(PushError::Full),
                Ok(Err(_)) => return Err(PushError::NotRunning),
                Ok(Ok(permits)) => permits,
            };
            for (permit, c) in permits.zip(accepted) {
                permit.send(SourceEvent::Candle {
                    symbol: c.symbol,
                    update: c.update,
                });
            }
        }
        state.seen.extend(overlay);
        if let Some(first) = rejected.first() {
            tracing::warn!(
                rejected = rejected.len(),
                accepted = n,
                first = %first.message,
                "ingest: stale or duplicate candles skipped"
            );
        }
        Ok(Pushed {
            accepted: n,
            rejected,
        })
    }
}

/// Parses a request body `{"candles": [...]}` (see the module docs) at wall-clock time `now`.
pub fn parse_batch(
    body: &[u8],
    feed: Timeframe,
    now: BarTime,
) -> Result<Vec<IngestCandle>, BatchError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        BatchError::body(FieldError::new(
            "",
            format!("the body is not valid JSON ({e}): expected {{\"candles\": [...]}}"),
        ))
    })?;
    let Value::Object(root) = root else {
        return Err(BatchError::body(FieldError::new(
            "",
            "expected an object {\"candles\": [...]}",
        )));
    };
    if let Some(key) = root.keys().find(|k| k.as_str() != "candles") {
        return Err(BatchError::body(FieldError::new(
            key.clone(),
            "unknown field: expected only \"candles\"",
        )));
    }
    let items = match root.get("candles") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(BatchError::body(FieldError::new(
                "candles",
                "expected an array of candles",
            )));
        }
        None => {
            return Err(BatchError::body(FieldError::new(
                "candles",
                "missing: expected an array of candles",
            )));
        }
    };
    if items.len() > MAX_CANDLES_PER_REQUEST {
        return Err(BatchError::body(FieldError::new(
            "candles",
            format!(
                "{} candles: expected at most {MAX_CANDLES_PER_REQUEST} per request",
                items.len()
            ),
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut invalid = 0;
    for (i, item) in items.iter().enumerate() {
        let before = errors.len();
        let parsed = parse_item(&format!("candles[{i}]"), item, feed, now, &mut errors);
        match parsed {
            Some(c) if errors.len() == before => out.push(c),
            _ => invalid += 1,
        }
    }
    if invalid > 0 {
        errors.truncate(MAX_ERRORS_LISTED);
        return Err(BatchError {
            error: format!(
                "{invalid} of {} candles are invalid; none was accepted",
                items.len()
            ),
            errors,
            invalid,
        });
    }
    Ok(out)
}

fn parse_item(
    path: &str,
    item: &Value,
    feed: Timeframe,
    now: BarTime,
    errors: &mut Vec<FieldError>,
) -> Option<IngestCandle> {
    let Value::Object(map) = item else {
        errors.push(FieldError::new(
            path,
            format!("expected an object with {FIELDS}"),
        ));
        return None;
    };
    let at = |key: &str| format!("{path}.{key}");
    for key in map.keys() {
        if !FIELDS.split(", ").any(|f| f == key) {
            errors.push(FieldError::new(
                at(key),
                format!("unknown field: expected one of {FIELDS}"),
            ));
        }
    }
    let symbol = match map.get("symbol") {
        Some(Value::String(s)) => match Symbol::new(s) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(FieldError::new(at("symbol"), e.to_string()));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new(
                at("symbol"),
                "expected a string like \"BTCUSDT\"",
            ));
            None
        }
        None => {
            errors.push(FieldError::new(
                at("symbol"),
                "missing: expected a string like \"BTCUSDT\"",
            ));
            None
        }
    };
    match map.get("timeframe") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => match s.parse::<Timeframe>() {
            Ok(tf) if tf == feed => {}
            Ok(tf) => errors.push(FieldError::new(
                at("timeframe"),
                format!("{tf}: expected the feed timeframe {feed} (or no timeframe)"),
            )),
            Err(e) => errors.push(FieldError::new(
                at("timeframe"),
                format!("{e}: expected the feed timeframe {feed}"),
            )),
        },
        Some(_) => errors.push(FieldError::new(
            at("timeframe"),
            format!("expected a string: the feed timeframe {feed}"),
        )),
    }
    let open_time = open_time(map, &at("open_time"), feed, now, errors);
    let mut number = |key: &str| -> Option<f64> {
        let expected = "expected a number (or a decimal string)";
        match map.get(key) {
            Some(Value::Number(n)) => n.as_f64().or_else(|| {
                errors.push(FieldError::new(at(key), expected));
                None
            }),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok().or_else(|| {
                errors.push(FieldError::new(at(key), format!("{s:?}: {expected}")));
                None
            }),
            Some(_) => {
                errors.push(FieldError::new(at(key), expected));
                None
            }
            None => {
                errors.push(FieldError::new(at(key), format!("missing: {expected}")));
                None
            }
        }
    };
    let (open, high, low, close, volume) = (
        number("open"),
        number("high"),
        number("low"),
        number("close"),
        number("volume"),
    );
    let closed = match map.get("closed") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new(
                at("closed"),
                "expected true (the bar has closed) or false (an in-progress update)",
            ));
            true
        }
    };
    let candle = Candle {
        open_time: open_time?,
        open: open?,
        high: high?,
        low: low?,
        close: close?,
        volume: volume?,
    };
    if let Err(e) = candle.check() {
        let field = match &e {
            CandleError::NotFinite { field, .. } | CandleError::OutsideRange { field, .. } => {
                *field
            }
            CandleError::HighBelowLow { .. } => "high",
            CandleError::NegativeVolume(_) => "volume",
        };
        let message = match e {
            CandleError::HighBelowLow { high, low } => {
                format!("high {high} is below low {low}: expected high >= low")
            }
            CandleError::NegativeVolume(v) => {
                format!("volume {v} is negative: expected a number >= 0")
            }
            e => e.to_string(),
        };
        errors.push(FieldError::new(at(field), message));
        return None;
    }
    Some(IngestCandle {
        symbol: symbol?,
        update: CandleUpdate { candle, closed },
    })
}

fn open_time(
    map: &Map<String, Value>,
    path: &str,
    feed: Timeframe,
    now: BarTime,
    errors: &mut Vec<FieldError>,
) -> Option<BarTime> {
    let expected = "expected the bar's open time: epoch milliseconds (an integer) or an RFC 3339 string like \"2024-01-03T12:00:00Z\"";
    let t = match map.get("open_time") {
        Some(Value::Number(n)) => n.as_i64().map(BarTime::from_millis),
        Some(Value::String(s)) => BarTime::parse_rfc3339(s),
        Some(_) => None,
        None => {
            errors.push(FieldError::new(path, format!("missing: {expected}")));
            return None;
        }
    };
    let Some(t) = t else {
        errors.push(FieldError::new(path, expected));
        return None;
    };
    if !feed.is_aligned(t) {
        let hint = if (0..100_000_000_000).contains(&t.millis()) {
            " (is it in seconds? milliseconds are expected)"
        } else {
            ""
        };
        errors.push(FieldError::new(
            path,
            format!(
                "{} is not the open time of a {feed} bar: expected a multiple of {feed} since the epoch, like {}{hint}",
                t.to_rfc3339(),
                feed.bar_open(t).to_rfc3339()
            ),
        ));
        return None;
    }
    if t.millis() > now.millis().saturating_add(MAX_FUTURE_MS) {
        errors.push(FieldError::new(
            path,
            format!(
                "{} is in the future (now {}): expected a bar that has opened",
                t.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
        return None;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: BarTime = BarTime::from_millis(1_704_067_200_000); // 2024-01-01T00:00:00Z

    fn parse(body: &str) -> Result<Vec<IngestCandle>, BatchError> {
        parse_batch(body.as_bytes(), Timeframe::M1, NOW)
    }

    fn err(body: &str) -> BatchError {
        match parse(body) {
            Err(e) => e,
            Ok(c) => panic!("accepted {c:?}"),
        }
    }

    fn item(fields: &str) -> String {
        format!(
            r#"{{"candles":[{{"symbol":"BTCUSDT","open_time":1704067140000,"open":1,"high":2,"low":0.5,"close":1.5,"volume":10{fields}}}]}}"#
        )
    }

    #[test]
    fn parses_numbers_strings_times_and_defaults() {
        let body = r#"{"candles":[
            {"symbol":"btcusdt","timeframe":"1m","open_time":1704067080000,"open":1,"high":2,"low":0.5,"close":1.5,"volume":10},
            {"symbol":"BTCUSDT","open_time":"2024-01-01T00:00:00Z","open":"1.5","high":"3","low":"1","close":"2","volume":"0","closed":false}
        ]}"#;
        let Ok(c) = parse(body) else {
            panic!("{:?}", parse(body))
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].symbol.as_str(), "BTCUSDT");
        assert!(c[0].update.closed, "closed by default");
        assert_eq!(c[1].update.candle.open_time, NOW);
        assert!(!c[1].update.closed);
        assert_eq!(c[1].update.candle.high, 3.0);
        assert_eq!(parse(r#"{"candles":[]}"#), Ok(vec![]));
    }

    #[test]
    fn bad_values_name_the_index_and_field() {
        let e = err(&item(r#","high":0.4"#).replace(r#""high":2,"#, ""));
        assert_eq!(e.errors[0].path, "candles[0].high");
        assert!(e.errors[0].message.contains("expected high >= low"), "{e}");
        assert_eq!(e.invalid, 1);

        let e = err(&item("").replace(r#""volume":10"#, r#""volume":-1"#));
        assert_eq!(e.errors[0].path, "candles[0].volume");
        assert!(e.errors[0].message.contains("negative"), "{e}");

        let e = err(&item("").replace(r#""open":1"#, r#""open":"NaN""#));
        assert_eq!(e.errors[0].path, "candles[0].open");
        assert!(e.errors[0].message.contains("finite"), "{e}");

        let e = err(&item("").replace(r#""close":1.5"#, r#""close":7"#));
        assert_eq!(e.errors[0].path, "candles[0].close");

        let e = err(&item("").replace(r#""low":0.5"#, r#""low":true"#));
        assert_eq!(e.errors[0].path, "candles[0].low");
        assert!(e.errors[0].message.contains("expected a number"));

        let e = err(&item(r#","timeframe":"5m""#));
        assert_eq!(e.errors[0].path, "candles[0].timeframe");
        assert!(
            e.errors[0]
                .message
                .contains("expected the feed timeframe 1m")
        );

        let e = err(&item(r#","closed":"yes""#));
        assert_eq!(e.errors[0].path, "candles[0].closed");

        let e = err(&item(r#","price":3"#));
        assert_eq!(e.errors[0].path, "candles[0].price");
        assert!(e.errors[0].message.contains("unknown field"));

        let e = err(&item("").replace(r#""symbol":"BTCUSDT""#, r#""symbol":"BTC/USDT""#));
        assert_eq!(e.errors[0].path, "candles[0].symbol");
    }

    #[test]
    fn open_times_are_checked() {
        let e = err(&item("").replace("1704067140000", "1704067141000"));
        assert_eq!(e.errors[0].path, "candles[0].open_time");
        assert!(
            e.errors[0]
                .message
                .contains("not the open time of a 1m bar")
        );
        let e = err(&item("").replace("1704067140000", "1704067140"));
        assert!(e.errors[0].message.contains("in seconds?"), "{e}");
        let e = err(&item("").replace("1704067140000", "1704067140000.0"));
        assert!(e.errors[0].message.contains("epoch milliseconds"), "{e}");
        let e = err(&item("").replace("1704067140000", "\"yesterday\""));
        assert_eq!(e.errors[0].path, "candles[0].open_time");
        let e = err(&item("").replace("1704067140000", "1704070800000"));
        assert!(e.errors[0].message.contains("in the future"), "{e}");
        let e = err(&item("").replace(r#""open_time":1704067140000,"#, ""));
        assert!(e.errors[0].message.starts_with("missing"), "{e}");
    }

    #[test]
    fn one_bad_item_refuses_the_batch_and_all_are_listed() {
        let good = r#"{"symbol":"A","open_time":0,"open":1,"high":1,"low":1,"close":1,"volume":1}"#;
        let bad = r#"{"symbol":"A","open_time":0,"open":1,"high":1,"low":1,"close":1,"volume":-1}"#;
        let body = format!(r#"{{"candles":[{good},{bad},{good},{bad}]}}"#);
        let e = err(&body);
        assert_eq!(e.invalid, 2);
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["candles[1].volume", "candles[3].volume"]);
        assert!(
            e.error.contains("2 of 4 candles are invalid"),
            "{}",
            e.error
        );
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(json["errors"][0]["path"], "candles[1].volume");
        assert!(json.get("invalid").is_none());
    }

    #[test]
    fn body_shape_errors() {
        assert_eq!(err("not json").errors[0].path, "");
        assert_eq!(err("[1]").errors[0].path, "");
        assert_eq!(err(r#"{"candles":{}}"#).errors[0].path, "candles");
        assert_eq!(err("{}").errors[0].path, "candles");
        assert_eq!(err(r#"{"candles":[],"x":1}"#).errors[0].path, "x");
        assert_eq!(err(r#"{"candles":[3]}"#).errors[0].path, "candles[0]");
        let many = vec![r#"{"symbol":"A"}"#; MAX_CANDLES_PER_REQUEST + 1].join(",");
        let e = err(&format!(r#"{{"candles":[{many}]}}"#));
        assert_eq!(e.errors[0].path, "candles");
        assert!(e.errors[0].message.contains("at most 10000"));
        let many = vec![r#"{"symbol":"A"}"#; 500].join(",");
        let e = err(&format!(r#"{{"candles":[{many}]}}"#));
        assert_eq!(e.invalid, 500);
        assert_eq!(e.errors.len(), MAX_ERRORS_LISTED);
    }

    fn candle(symbol: &str, minute: i64, close: f64, closed: bool) -> IngestCandle {
        IngestCandle {
            symbol: Symbol::new(symbol).unwrap_or_else(|e| panic!("{e}")),
            update: CandleUpdate {
                candle: Candle {
                    open_time: BarTime::from_millis(minute * 60_000),
                    open: close,
                    high: close,
                    low: close,
                    close,
                    volume: 1.0,
                },
                closed,
            },
        }
    }

    async fn started(
        capacity: usize,
    ) -> (
        IngestHandle,
        mpsc::Receiver<SourceEvent>,
        watch::Sender<Wanted>,
        CancellationToken,
        tokio::task::JoinHandle<Result<(), SourceError>>,
    ) {
        let mut config = IngestConfig::new(Timeframe::M1);
        config.wait = Duration::from_millis(50);
        let (source, handle) = Ingest::new(config);
        let (tx, rx) = mpsc::channel(capacity);
        let (wanted_tx, wanted) = watch::channel(Wanted::new());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Box::new(source).run(tx, wanted, cancel.clone()));
        // Until the source runs, pushes are refused.
        while matches!(handle.push(vec![]).await, Err(PushError::NotRunning)) {
            tokio::task::yield_now().await;
        }
        (handle, rx, wanted_tx, cancel, task)
    }

    fn drain(rx: &mut mpsc::Receiver<SourceEvent>) -> Vec<(String, i64, bool)> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let SourceEvent::Candle { symbol, update } = e {
                out.push((
                    symbol.to_string(),
                    update.candle.open_time.millis() / 60_000,
                    update.closed,
                ));
            }
        }
        out
    }

    #[tokio::test]
    async fn feeds_in_order_and_skips_stale_and_duplicate_bars() {
        let (handle, mut rx, _w, cancel, task) = started(64).await;
        let pushed = handle
            .push(vec![
                candle("AAA", 1, 10.0, true),
                candle("AAA", 2, 10.0, false),
                candle("BBB", 1, 5.0, true),
                candle("AAA", 2, 11.0, true),
            ])
            .await;
        assert_eq!(
            pushed.as_ref().map(|p| (p.accepted, p.rejected.len())),
            Ok((4, 0))
        );
        let pushed = handle
            .push(vec![
                candle("AAA", 2, 11.0, true),  // duplicate close
                candle("AAA", 1, 10.0, true),  // out of order
                candle("AAA", 2, 12.0, false), // update of a closed bar
                candle("AAA", 4, 12.0, false),
                candle("AAA", 3, 12.0, false), // older than the latest seen
                candle("AAA", 4, 13.0, true),
                candle("AAA", 4, 13.0, true), // duplicate within the batch
            ])
            .await;
        let Ok(pushed) = pushed else {
            panic!("{pushed:?}")
        };
        assert_eq!(pushed.accepted, 2);
        let paths: Vec<_> = pushed.rejected.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "candles[0].open_time",
                "candles[1].open_time",
                "candles[2].open_time",
                "candles[4].open_time",
                "candles[6].open_time"
            ]
        );
        assert!(pushed.rejected[0].message.contains("duplicate"));
        assert!(pushed.rejected[1].message.contains("out of order"));
        assert_eq!(
            drain(&mut rx),
            [
                ("AAA".into(), 1, true),
                ("AAA".into(), 2, false),
                ("BBB".into(), 1, true),
                ("AAA".into(), 2, true),
                ("AAA".into(), 4, false),
                ("AAA".into(), 4, true),
            ]
        );
        cancel.cancel();
        assert!(matches!(task.await, Ok(Ok(()))));
        assert_eq!(
            handle.push(vec![candle("AAA", 9, 1.0, true)]).await,
            Err(PushError::NotRunning)
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_the_whole_batch_and_remembers_nothing() {
        let (handle, mut rx, _w, _cancel, _task) = started(3).await;
        assert!(
            handle
                .push(vec![
                    candle("AAA", 1, 1.0, true),
                    candle("AAA", 2, 1.0, true)
                ])
                .await
                .is_ok()
        );
        // Two queued, room for one: a batch of two waits, then gives up.
        let full = handle
            .push(vec![
                candle("AAA", 3, 1.0, true),
                candle("AAA", 4, 1.0, true),
            ])
            .await;
        assert_eq!(full, Err(PushError::Full));
        assert_eq!(drain(&mut rx).len(), 2);
        // Nothing of the refused batch was remembered: resent, it is fed whole.
        let again = handle
            .push(vec![
                candle("AAA", 3, 1.0, true),
                candle("AAA", 4, 1.0, true),
            ])
            .await;
        assert_eq!(again.map(|p| p.accepted), Ok(2));
        assert_eq!(drain(&mut rx).len(), 2);
        // Larger than the channel can ever hold.
        let huge: Vec<_> = (10..20).map(|m| candle("AAA", m, 1.0, true)).collect();
        assert_eq!(handle.push(huge).await, Err(PushError::Full));
    }

    #[tokio::test]
    async fn wanted_symbols_are_reported_warm() {
        let (_handle, mut rx, wanted, cancel, task) = started(8).await;
        let sym = |s: &str| Symbol::new(s).unwrap_or_else(|e| panic!("{e}"));
        let _ = wanted.send(Wanted::from([(sym("AAA"), 100)]));
        let first = rx.recv().await;
        assert_eq!(first, Some(SourceEvent::Warm { symbol: sym("AAA") }));
        let _ = wanted.send(Wanted::from([(sym("AAA"), 100), (sym("BBB"), 5)]));
        let second = rx.recv().await;
        assert_eq!(second, Some(SourceEvent::Warm { symbol: sym("BBB") }));
        cancel.cancel();
        assert!(matches!(task.await, Ok(Ok(()))));
    }
}
