//! `bus`: candles over a NATS JetStream stream, so one ingest process takes the market feed
//! once and any number of runners (shards) consume it.
//!
//! - **Subjects**: `candles.<SYMBOL>.<TF>` (`candles.BTCUSDT.1m`), one stream (default
//!   [`DEFAULT_STREAM`]) over `candles.>`. The prefix `candles` can be changed ([`Subjects`]):
//!   JetStream refuses two streams whose subjects overlap, so two buses on one server (or
//!   tests beside a real bus) need different prefixes.
//! - **Message ids** (`Nats-Msg-Id`, JetStream's deduplication within the stream's duplicate
//!   window): a closed bar is `<SYMBOL>.<TF>.<open ms>.c` — whatever its values, so a closed bar
//!   sent again (a Binance reconnect's REST catch-up, an ingest restart) is dropped; an
//!   in-progress update is `<SYMBOL>.<TF>.<open ms>.p.<hash>` with a 64-bit hash of its open,
//!   high, low, close and volume, so successive updates of one bar are all kept and only an
//!   identical update sent twice is dropped (nothing is lost by that).
//! - **Payload**: a small JSON object, [`BusCandle`]: `{"symbol","timeframe","open_time" (epoch
//!   ms),"open","high","low","close","volume" (decimal strings),"closed"}`; its symbol and
//!   timeframe must agree with the subject's.
//!
//! [`publish::Publisher`] publishes (awaiting each PubAck, bounded in flight);
//! [`consume::Bus`] is the [`Source`](crate::Source) that reads the stream through a durable
//! pull consumer. Only core JetStream is used (streams, publish with a message id, durable
//! pull consumers with one filter subject, acks): NATS 2.9 has all of it.

pub mod consume;
pub mod publish;

use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, Symbol, Timeframe};
use async_nats::jetstream;
use serde::{Deserialize, Serialize};

/// The NATS client this module is built on (for tools and tests that manage the stream).
pub use async_nats;
pub use consume::{Bus, BusConfig};
pub use publish::{PublishStats, Publisher};

/// The stream's default name.
pub const DEFAULT_STREAM: &str = "CANDLES";
/// The first token of every candle subject.
pub const SUBJECT_PREFIX: &str = "candles";
/// How long the stream keeps a message by default: a day, enough for the warm-up history of
/// a 1m feed (500–1,000 bars) with room for a runner that was down for hours.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// JetStream drops a message whose id it saw within this window (at least the 2 minutes a
/// reconnect's catch-up needs).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS {what}: {message}")]
    Nats { what: &'static str, message: String },
    #[error("{0}")]
    Payload(#[from] PayloadError),
}

impl BusError {
    pub(crate) fn nats(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Nats {
            what,
            message: e.to_string(),
        }
    }
}

/// The stream's settings (the ingest side creates it when missing).
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub name: String,
    pub subjects: Subjects,
    pub max_age: Duration,
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_STREAM.to_owned(),
            subjects: Subjects::default(),
            max_age: DEFAULT_MAX_AGE,
            duplicate_window: DUPLICATE_WINDOW,
        }
    }
}

impl StreamSettings {
    /// The JetStream configuration: subjects `<prefix>.>`, file storage, limits retention by
    /// age, the duplicate window.
    pub fn config(&self) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.name.clone(),
            description: Some(format!(
                "alert-runner candles: {}.<SYMBOL>.<TF>",
                self.subjects.prefix()
            )),
            subjects: vec![self.subjects.all()],
            storage: jetstream::stream::StorageType::File,
            retention: jetstream::stream::RetentionPolicy::Limits,
            max_age: self.max_age,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }
}

/// Connects to a NATS server (`nats://host:port`; `tls://` works too: rustls with the
/// process's crypto provider).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, BusError> {
    crate::binance::install_crypto_provider();
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| BusError::nats("connect", format!("{url}: {e}")))
}

/// The stream, created with `settings` when missing (an existing stream is used as it is:
/// change its limits with the `nats` CLI).
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<jetstream::stream::Stream, BusError> {
    js.get_or_create_stream(settings.config())
        .await
        .map_err(|e| BusError::nats("creating the stream", e))
}

/// The subjects of a bus: `<prefix>.<SYMBOL>.<TF>`, the prefix [`SUBJECT_PREFIX`] unless
/// configured (several buses on one NATS server need distinct prefixes: JetStream refuses
/// streams whose subjects overlap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: SUBJECT_PREFIX.to_owned(),
        }
    }
}

impl Subjects {
    /// A prefix of one or more `.`-separated tokens of ASCII letters, digits, `_` and `-`.
    pub fn new(prefix: &str) -> Result<Self, String> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 128
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(format!(
                "subject prefix {prefix:?}: expected tokens of letters, digits, '_' and '-' separated by '.', like candles"
            ))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.<SYMBOL>.<TF>`.
    pub fn subject(&self, symbol: Symbol, tf: Timeframe) -> String {
        format!("{}.{symbol}.{tf}", self.prefix)
    }

    /// The one filter subject of a runner's consumer: every symbol of one timeframe,
    /// `<prefix>.*.<TF>` (NATS 2.9 takes one filter subject per consumer; unwanted symbols are
    /// dropped by the runner).
    pub fn filter(&self, tf: Timeframe) -> String {
        format!("{}.*.{tf}", self.prefix)
    }

    /// The stream's subjects: `<prefix>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The symbol and timeframe of a candle subject; `None` for anything else.
    pub fn parse(&self, subject: &str) -> Option<(Symbol, Timeframe)> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let (symbol, tf) = rest.split_once('.')?;
        let parsed = Symbol::new(symbol).ok()?;
        // A subject names the symbol as published (upper case): `candles.btcusdt.1m` is not
        // one.
        if parsed.as_str() != symbol {
            return None;
        }
        Some((parsed, tf.parse().ok()?))
    }
}

/// The `Nats-Msg-Id` of an update: `<SYMBOL>.<TF>.<open ms>.c` for a closed bar,
/// `<SYMBOL>.<TF>.<open ms>.p.<16 hex digits>` (a hash of its values) for an in-progress one.
pub fn msg_id(symbol: Symbol, tf: Timeframe, update: &CandleUpdate) -> String {
    let open = update.candle.open_time.millis();
    if update.closed {
        format!("{symbol}.{tf}.{open}.c")
    } else {
        format!(
            "{symbol}.{tf}.{open}.p.{:016x}",
            values_hash(&update.candle)
        )
    }
}

/// Whether a message id is a closed bar's.
pub fn is_closed_id(id: &str) -> bool {
    id.ends_with(".c")
}

/// FNV-1a over the bit patterns of the candle's values (stable across builds and platforms).
fn values_hash(c: &Candle) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in [c.open, c.high, c.low, c.close, c.volume] {
        for b in v.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A candle message's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusCandle {
    pub symbol: String,
    pub timeframe: String,
    /// Epoch milliseconds.
    pub open_time: i64,
    #[serde(with = "decimal")]
    pub open: f64,
    #[serde(with = "decimal")]
    pub high: f64,
    #[serde(with = "decimal")]
    pub low: f64,
    #[serde(with = "decimal")]
    pub close: f64,
    #[serde(with = "decimal")]
    pub volume: f64,
    pub closed: bool,
}

/// Prices and volumes travel as decimal strings (`"42150.5"`, Rust's shortest form that reads
/// back to the same f64, as Binance sends them), so a candle crosses the bus bit for bit:
/// JSON numbers are read by serde_json to within one ulp only. JSON numbers are accepted too.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Decimal {
        Text(String),
        Number(f64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Decimal::deserialize(d)? {
            Decimal::Text(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| D::Error::custom(format!("{s:?} is not a decimal number"))),
            Decimal::Number(v) => Ok(v),
        }
    }
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("candle payload is not the bus JSON: {0}")]
    Json(String),
    #[error("candle payload is for {payload}, its subject for {subject}")]
    Mismatch { subject: String, payload: String },
    #[error("candle at {open_time} is not usable: {reason}")]
    BadCandle { open_time: i64, reason: String },
}

/// Open times from 10000-01-01 on are refused.
const MAX_OPEN_TIME_MS: i64 = 253_402_300_800_000;

/// The payload of an update.
pub fn encode(symbol: Symbol, tf: Timeframe, update: &CandleUpdate) -> Vec<u8> {
    let c = &update.candle;
    let body = BusCandle {
        symbol: symbol.to_string(),
        timeframe: tf.to_string(),
        open_time: c.open_time.millis(),
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
        closed: update.closed,
    };
    // A struct of strings, integers and a bool always serializes; a non-finite value comes
    // out as "NaN" or "inf" and is refused by `decode`.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The update a payload carries, checked against its subject's symbol and timeframe, aligned
/// to the timeframe, and with consistent values ([`Candle::check`]).
pub fn decode(symbol: Symbol, tf: Timeframe, payload: &[u8]) -> Result<CandleUpdate, PayloadError> {
    let body: BusCandle =
        serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
    let same_symbol = Symbol::new(&body.symbol).is_ok_and(|s| s == symbol);
    let same_tf = body.timeframe.parse::<Timeframe>().is_ok_and(|t| t == tf);
    if !same_symbol || !same_tf {
        return Err(PayloadError::Mismatch {
            subject: format!("{symbol} {tf}"),
            payload: format!("{} {}", body.symbol, body.timeframe),
        });
    }
    // 1970 to 9999: bar arithmetic on times far outside would overflow.
    if !(0..MAX_OPEN_TIME_MS).contains(&body.open_time) {
        return Err(PayloadError::BadCandle {
            open_time: body.open_time,
            reason: "outside the years 1970 to 9999".to_owned(),
        });
    }
    let open_time = BarTime::from_millis(body.open_time);
    if !tf.is_aligned(open_time) {
        return Err(PayloadError::BadCandle {
            open_time: body.open_time,
            reason: format!("not aligned to {tf}"),
        });
    }
    let candle = Candle {
        open_time,
        open: body.open,
        high: body.high,
        low: body.low,
        close: body.close,
        volume: body.volume,
    };
    candle.check().map_err(|e| PayloadError::BadCandle {
        open_time: body.open_time,
        reason: e.to_string(),
    })?;
    Ok(CandleUpdate {
        candle,
        closed: body.closed,
    })
}

/// The default durable consumer name of a runner: `alert-runner-<TF>`, or
/// `alert-runner-<TF>-shard-<I>-of-<N>` for shard I of N. Processes meant to be one consumer
/// (a shard's owner and its standby) get the same name; different shards get different ones.
pub fn default_durable(tf: Timeframe, shard: Option<(u32, u32)>) -> String {
    match shard {
        Some((i, n)) => format!("alert-runner-{tf}-shard-{i}-of-{n}"),
        None => format!("alert-runner-{tf}"),
    }
}

/// Whether a name may be a stream's or a durable consumer's: printable ASCII without
/// spaces, `.`, `*`, `>`, `/` or `\`, 1 to 64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn update(t: i64, close: f64, volume: f64, closed: bool) -> CandleUpdate {
        CandleUpdate {
            candle: Candle {
                open_time: BarTime::from_millis(t),
                open: 100.0,
                high: close.max(100.0) + 1.0,
                low: close.min(100.0) - 1.0,
                close,
                volume,
            },
            closed,
        }
    }

    #[test]
    fn subjects_name_symbol_and_timeframe() {
        let subjects = Subjects::default();
        assert_eq!(
            subjects.subject(sym("btcusdt"), Timeframe::M1),
            "candles.BTCUSDT.1m"
        );
        assert_eq!(subjects.filter(Timeframe::H1), "candles.*.1h");
        assert_eq!(subjects.all(), "candles.>");
        assert_eq!(
            subjects.parse("candles.BTCUSDT.1m"),
            Some((sym("BTCUSDT"), Timeframe::M1))
        );
        for bad in [
            "candles.BTCUSDT",
            "candles.BTCUSDT.1m.x",
            "prices.BTCUSDT.1m",
            "candlesX.BTCUSDT.1m",
            "candles.BTC-USDT.1m",
            "candles.BTCUSDT.7m",
            "candles.btcusdt.1m",
            "candles..1m",
            "",
        ] {
            assert_eq!(subjects.parse(bad), None, "{bad}");
        }
        let test = Subjects::new("t-42.candles").unwrap_or_else(|e| panic!("{e}"));
        let subject = test.subject(sym("ETHUSDT"), Timeframe::M5);
        assert_eq!(subject, "t-42.candles.ETHUSDT.5m");
        assert_eq!(test.parse(&subject), Some((sym("ETHUSDT"), Timeframe::M5)));
        assert_eq!(test.parse("candles.ETHUSDT.5m"), None);
        assert_eq!(test.all(), "t-42.candles.>");
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(Subjects::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn closed_ids_ignore_values_in_progress_ids_follow_them() {
        let s = sym("ETHUSDT");
        let t = 1_704_067_200_000;
        let closed = msg_id(s, Timeframe::M1, &update(t, 101.0, 5.0, true));
        assert_eq!(closed, "ETHUSDT.1m.1704067200000.c");
        assert!(is_closed_id(&closed));
        // A closed bar sent again, even with other values, is the same message.
        assert_eq!(
            closed,
            msg_id(s, Timeframe::M1, &update(t, 101.5, 6.0, true))
        );
        let p1 = msg_id(s, Timeframe::M1, &update(t, 101.0, 5.0, false));
        let p2 = msg_id(s, Timeframe::M1, &update(t, 101.0, 5.5, false));
        let p3 = msg_id(s, Timeframe::M1, &update(t, 101.2, 5.0, false));
        assert!(p1.starts_with("ETHUSDT.1m.1704067200000.p."), "{p1}");
        assert!(!is_closed_id(&p1));
        assert_ne!(p1, p2);
        assert_ne!(p1, p3);
        assert_ne!(p1, closed);
        // The identical update is the same message (nothing lost when it is dropped).
        assert_eq!(p1, msg_id(s, Timeframe::M1, &update(t, 101.0, 5.0, false)));
        // Another bar, another timeframe: other ids.
        assert_ne!(
            closed,
            msg_id(s, Timeframe::M1, &update(t + 60_000, 101.0, 5.0, true))
        );
        assert_ne!(
            closed,
            msg_id(s, Timeframe::M5, &update(t, 101.0, 5.0, true))
        );
    }

    #[test]
    fn payload_round_trips_and_is_checked_against_its_subject() {
        let s = sym("SOLUSDT");
        let u = update(1_704_067_260_000, 99.5, 12.25, false);
        let bytes = encode(s, Timeframe::M1, &u);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(text.contains(r#""symbol":"SOLUSDT""#), "{text}");
        assert!(text.contains(r#""open_time":1704067260000"#), "{text}");
        assert!(
            text.contains(r#""close":"99.5","volume":"12.25""#),
            "{text}"
        );
        // Numbers are read too.
        let numbers = br#"{"symbol":"SOLUSDT","timeframe":"1m","open_time":1704067260000,"open":100,"high":101,"low":98.5,"close":99.5,"volume":12.25,"closed":false}"#;
        assert_eq!(decode(s, Timeframe::M1, numbers), Ok(u));
        assert_eq!(decode(s, Timeframe::M1, &bytes), Ok(u));
        assert!(matches!(
            decode(sym("BTCUSDT"), Timeframe::M1, &bytes),
            Err(PayloadError::Mismatch { .. })
        ));
        assert!(matches!(
            decode(s, Timeframe::M5, &bytes),
            Err(PayloadError::Mismatch { .. })
        ));
        let misaligned = encode(
            s,
            Timeframe::M1,
            &update(1_704_067_260_001, 99.5, 1.0, true),
        );
        assert!(matches!(
            decode(s, Timeframe::M1, &misaligned),
            Err(PayloadError::BadCandle { .. })
        ));
        let inverted = br#"{"symbol":"SOLUSDT","timeframe":"1m","open_time":0,"open":1,"high":1,"low":2,"close":1,"volume":1,"closed":true}"#;
        assert!(matches!(
            decode(s, Timeframe::M1, inverted),
            Err(PayloadError::BadCandle { .. })
        ));
        let nan = encode(s, Timeframe::M1, &update(0, f64::NAN, 1.0, true));
        assert!(decode(s, Timeframe::M1, &nan).is_err());
        assert!(matches!(
            decode(s, Timeframe::M1, b"{\"symbol\":\"SOLUSDT\"}"),
            Err(PayloadError::Json(_))
        ));
    }

    #[test]
    fn durable_names() {
        assert_eq!(default_durable(Timeframe::M1, None), "alert-runner-1m");
        assert_eq!(
            default_durable(Timeframe::M5, Some((2, 3))),
            "alert-runner-5m-shard-2-of-3"
        );
        assert!(valid_name(&default_durable(Timeframe::M1, Some((0, 3)))));
        assert!(valid_name(DEFAULT_STREAM));
        for bad in ["", "a.b", "a b", "a*", "a>", "x/y"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    proptest! {
        /// Any bytes: an error or an update, never a panic; what decodes is usable.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(u) = decode(sym("BTCUSDT"), Timeframe::M1, &bytes) {
                prop_assert!(u.candle.check().is_ok());
            }
        }

        /// JSON-shaped input with arbitrary values: an error or an update equal to the input.
        #[test]
        fn decode_takes_what_it_checks(
            t in any::<i64>(), o in any::<f64>(), h in any::<f64>(), l in any::<f64>(),
            c in any::<f64>(), v in any::<f64>(), closed in any::<bool>(),
        ) {
            let body = BusCandle {
                symbol: "BTCUSDT".into(), timeframe: "1m".into(), open_time: t,
                open: o, high: h, low: l, close: c, volume: v, closed,
            };
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            if let Ok(u) = decode(sym("BTCUSDT"), Timeframe::M1, &bytes) {
                prop_assert_eq!(u.candle.open_time.millis(), t);
                prop_assert_eq!(u.candle.close, c);
                prop_assert_eq!(u.closed, closed);
                prop_assert!(u.candle.check().is_ok());
            }
        }

        /// Every valid update survives encode → decode unchanged.
        #[test]
        fn round_trip(bar in 0i64..10_000_000, o in 1e-6f64..1e9, spread in 0f64..1e3,
                      c in 0f64..1.0, v in 0f64..1e12, closed in any::<bool>()) {
            let low = o;
            let high = o + spread;
            let close = low + (high - low) * c;
            let u = CandleUpdate {
                candle: Candle { open_time: BarTime::from_millis(bar * 60_000), open: o, high, low, close, volume: v },
                closed,
            };
            prop_assert_eq!(decode(sym("BTCUSDT"), Timeframe::M1, &encode(sym("BTCUSDT"), Timeframe::M1, &u)), Ok(u));
        }
    }
}
