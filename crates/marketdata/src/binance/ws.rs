//! One WebSocket connection of combined kline streams, with the REST backfills of its symbols.
//!
//! Each (re)connect is a session: the connection is opened first, then the symbols that need
//! history (warm-up, or bars missed while disconnected) are backfilled over REST by a worker
//! task while their live messages are buffered; when a symbol's backfill arrives it is sent,
//! then its buffer is replayed through the same deduplication as live messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, Symbol, Timeframe};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::rest::{RestError, number};
use super::{Backoff, Ctx, SymState, sleep_or_cancel};
use crate::source::SourceEvent;

/// Streams per `SUBSCRIBE` message, and the pause between two such messages (Binance accepts
/// 5 incoming messages per second per connection).
const SUBSCRIBE_BATCH: usize = 100;
const SUBSCRIBE_PAUSE: Duration = Duration::from_millis(250);

/// The stream name of a symbol's klines: `btcusdt@kline_1m`.
pub(crate) fn stream_name(symbol: Symbol, interval: Timeframe) -> String {
    format!(
        "{}@kline_{}",
        symbol.as_str().to_ascii_lowercase(),
        interval.as_str()
    )
}

/// Runs one connection (reconnecting as needed) until cancelled; returns its symbols' states.
pub(crate) async fn connection(
    ctx: Arc<Ctx>,
    mut syms: BTreeMap<Symbol, SymState>,
    cancel: CancellationToken,
) -> BTreeMap<Symbol, SymState> {
    let streams: Vec<String> = syms
        .keys()
        .map(|s| stream_name(*s, ctx.config.interval))
        .collect();
    let in_url = streams.len().min(ctx.config.streams_in_url);
    let url = format!(
        "{}/stream?streams={}",
        ctx.config.ws_url.trim_end_matches('/'),
        streams[..in_url].join("/")
    );
    let extra = &streams[in_url..];
    let mut backoff = Backoff::new(ctx.config.backoff_initial, ctx.config.backoff_max);
    let mut connected_before = false;
    loop {
        if cancel.is_cancelled() {
            return syms;
        }
        let attempt = tokio::time::timeout(
            ctx.config.connect_timeout,
            tokio_tungstenite::connect_async(url.as_str()),
        );
        let result = tokio::select! {
            r = attempt => r,
            _ = cancel.cancelled() => return syms,
        };
        let ws = match result {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    streams = streams.len(),
                    ?wait,
                    "binance: WebSocket connect failed: {e}"
                );
                if !sleep_or_cancel(wait, &cancel).await {
                    return syms;
                }
                continue;
            }
            Err(_) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    streams = streams.len(),
                    ?wait,
                    "binance: WebSocket connect timed out"
                );
                if !sleep_or_cancel(wait, &cancel).await {
                    return syms;
                }
                continue;
            }
        };
        tracing::info!(
            streams = streams.len(),
            reconnect = connected_before,
            "binance: WebSocket connected"
        );
        if connected_before && !ctx.emit(SourceEvent::Reconnected, &cancel).await {
            return syms;
        }
        connected_before = true;
        let end = Session::new(ctx.clone(), &mut syms, cancel.child_token())
            .run(ws, extra)
            .await;
        match end {
            End::Stop => return syms,
            End::Renew => backoff.reset(),
            End::Failed { had_data } => {
                if had_data {
                    backoff.reset();
                }
                let wait = backoff.next_delay();
                tracing::info!(?wait, "binance: reconnecting");
                if !sleep_or_cancel(wait, &cancel).await {
                    return syms;
                }
            }
        }
    }
}

/// How a session ended.
enum End {
    /// Cancelled, or the consumer is gone.
    Stop,
    /// Time to renew the connection (before Binance's 24 h cut-off).
    Renew,
    /// The connection failed or went silent.
    Failed { had_data: bool },
}

/// The consumer is gone or the session was cancelled.
struct Stopped;

/// A symbol's place in the session.
enum Mode {
    /// Live messages go out (after deduplication).
    Live,
    /// A REST backfill is under way; live messages wait here.
    Pending(Vec<Kline>),
    /// Its backfill failed for good (e.g. an unknown symbol): its messages are ignored until
    /// the next connection.
    Failed,
}

/// A REST backfill for the worker.
enum Job {
    /// The `bars` closed bars before now.
    Warmup { symbol: Symbol, bars: usize },
    /// The closed bars opening in `[from, through]` (waiting until `through` has closed).
    Fill {
        symbol: Symbol,
        from: BarTime,
        through: BarTime,
    },
}

struct Filled {
    symbol: Symbol,
    warmup: bool,
    /// The candles, and the open time through which REST was asked.
    result: Result<(Vec<Candle>, BarTime), String>,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Session<'a> {
    ctx: Arc<Ctx>,
    syms: &'a mut BTreeMap<Symbol, SymState>,
    modes: HashMap<Symbol, Mode>,
    cancel: CancellationToken,
    jobs: mpsc::UnboundedSender<Job>,
    results: mpsc::UnboundedReceiver<Filled>,
    _worker: AbortOnDropHandle<()>,
    had_data: bool,
}

impl<'a> Session<'a> {
    fn new(
        ctx: Arc<Ctx>,
        syms: &'a mut BTreeMap<Symbol, SymState>,
        cancel: CancellationToken,
    ) -> Self {
        let (jobs, job_rx) = mpsc::unbounded_channel();
        let (result_tx, results) = mpsc::unbounded_channel();
        let worker = AbortOnDropHandle::new(tokio::spawn(worker(
            ctx.clone(),
            job_rx,
            result_tx,
            cancel.clone(),
        )));
        let d = ctx.interval_ms();
        let mut modes = HashMap::new();
        let through = ctx.last_closed_bar();
        for (symbol, st) in syms.iter() {
            let job = if !st.warm {
                Some(Job::Warmup {
                    symbol: *symbol,
                    bars: st.need,
                })
            } else {
                st.last_closed
                    .filter(|lc| through > *lc)
                    .map(|lc| Job::Fill {
                        symbol: *symbol,
                        from: lc.plus_millis(d),
                        through,
                    })
            };
            match job {
                Some(job) => {
                    modes.insert(*symbol, Mode::Pending(Vec::new()));
                    let _ = jobs.send(job);
                }
                None => {
                    modes.insert(*symbol, Mode::Live);
                }
            }
        }
        Self {
            ctx,
            syms,
            modes,
            cancel,
            jobs,
            results,
            _worker: worker,
            had_data: false,
        }
    }

    async fn run(mut self, mut ws: Ws, extra: &[String]) -> End {
        let end = self.serve(&mut ws, extra).await;
        self.cancel.cancel(); // stops the worker
        if !matches!(end, End::Failed { .. }) {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
        end
    }

    async fn serve(&mut self, ws: &mut Ws, extra: &[String]) -> End {
        for (i, batch) in extra.chunks(SUBSCRIBE_BATCH).enumerate() {
            if i > 0 && !sleep_or_cancel(SUBSCRIBE_PAUSE, &self.cancel).await {
                return End::Stop;
            }
            let msg = serde_json::json!({"method": "SUBSCRIBE", "params": batch, "id": i + 1});
            let sent = tokio::time::timeout(
                self.ctx.config.connect_timeout,
                ws.send(Message::text(msg.to_string())),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!("binance: sending SUBSCRIBE failed");
                return End::Failed { had_data: false };
            }
        }
        let idle = self.ctx.config.idle_timeout;
        let renew = self
            .ctx
            .config
            .renew_after
            .mul_f64(1.0 - rand::random::<f64>() * 0.05);
        let renew_at = Instant::now() + renew;
        let mut idle_deadline = Instant::now() + idle;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return End::Stop,
                _ = tokio::time::sleep_until(renew_at) => {
                    tracing::info!("binance: renewing the WebSocket connection");
                    return End::Renew;
                }
                Some(filled) = self.results.recv() => {
                    if self.on_filled(filled).await.is_err() {
                        return End::Stop;
                    }
                }
                msg = tokio::time::timeout_at(idle_deadline, ws.next()) => {
                    let had_data = self.had_data;
                    let msg = match msg {
                        Err(_) => {
                            tracing::warn!(?idle, "binance: no message from the WebSocket; reconnecting");
                            return End::Failed { had_data };
                        }
                        Ok(None) => {
                            tracing::warn!("binance: WebSocket closed");
                            return End::Failed { had_data };
                        }
                        Ok(Some(Err(e))) => {
                            tracing::warn!("binance: WebSocket error: {e}");
                            return End::Failed { had_data };
                        }
                        Ok(Some(Ok(msg))) => msg,
                    };
                    idle_deadline = Instant::now() + idle;
                    match msg {
                        Message::Text(text) => {
                            if self.on_text(text.as_str()).await.is_err() {
                                return End::Stop;
                            }
                        }
                        Message::Ping(_) => {
                            // tungstenite queued the Pong; send it now.
                            if let Err(e) = ws.flush().await {
                                tracing::warn!("binance: answering a ping failed: {e}");
                                return End::Failed { had_data };
                            }
                        }
                        Message::Close(frame) => {
                            tracing::warn!(?frame, "binance: the server closed the WebSocket");
                            return End::Failed { had_data };
                        }
                        Message::Binary(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Stopped> {
        match parse_message(text, self.ctx.config.interval) {
            Ok(Incoming::Kline(k)) => {
                if !self.syms.contains_key(&k.symbol) {
                    tracing::debug!(symbol = %k.symbol, "binance: kline of a symbol not on this connection");
                    return Ok(());
                }
                self.had_data = true;
                self.on_kline(k).await
            }
            Ok(Incoming::Reply { id, error: None }) => {
                tracing::debug!(%id, "binance: subscription confirmed");
                Ok(())
            }
            Ok(Incoming::Reply {
                id,
                error: Some(error),
            }) => {
                tracing::warn!(%id, %error, "binance: the server refused a request");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    message = %text.chars().take(300).collect::<String>(),
                    "binance: skipping a bad WebSocket message: {e}"
                );
                Ok(())
            }
        }
    }

    /// A live kline: buffered while its symbol is backfilling, else deduplicated and sent; a
    /// hole before it starts a REST fill.
    async fn on_kline(&mut self, k: Kline) -> Result<(), Stopped> {
        match self.modes.get_mut(&k.symbol) {
            Some(Mode::Pending(buffer)) => {
                buffer.push(k);
                return Ok(());
            }
            Some(Mode::Failed) => return Ok(()),
            Some(Mode::Live) | None => {}
        }
        let Some(st) = self.syms.get_mut(&k.symbol) else {
            return Ok(());
        };
        let d = self.ctx.interval_ms();
        let t = k.candle.open_time;
        if let Some(lc) = st.last_closed {
            if t <= lc {
                tracing::trace!(symbol = %k.symbol, open_time = %t, "binance: stale or duplicate kline dropped");
                return Ok(());
            }
            let expected = lc.plus_millis(d);
            let before = t.plus_millis(-d);
            if t > expected && st.verified_until.is_none_or(|v| before >= v) {
                tracing::info!(symbol = %k.symbol, from = %expected, through = %before,
                    "binance: bars missing on the stream; filling them over REST");
                let _ = self.jobs.send(Job::Fill {
                    symbol: k.symbol,
                    from: expected,
                    through: before,
                });
                self.modes.insert(k.symbol, Mode::Pending(vec![k]));
                return Ok(());
            }
        }
        if k.closed {
            st.last_closed = Some(t);
        }
        let event = SourceEvent::Candle {
            symbol: k.symbol,
            update: CandleUpdate {
                candle: k.candle,
                closed: k.closed,
            },
        };
        if self.ctx.emit(event, &self.cancel).await {
            Ok(())
        } else {
            Err(Stopped)
        }
    }

    async fn on_filled(&mut self, filled: Filled) -> Result<(), Stopped> {
        let symbol = filled.symbol;
        let buffered = match self.modes.remove(&symbol) {
            Some(Mode::Pending(b)) => b,
            _ => Vec::new(),
        };
        let Some(st) = self.syms.get_mut(&symbol) else {
            return Ok(());
        };
        let d = self.ctx.interval_ms();
        match filled.result {
            Err(e) => {
                tracing::error!(%symbol, "binance: backfill failed: {e}; the symbol is skipped until the next connection");
                self.modes.insert(symbol, Mode::Failed);
                return Ok(());
            }
            Ok((candles, through)) => {
                let mut sent = 0usize;
                for candle in candles {
                    if st.last_closed.is_some_and(|lc| candle.open_time <= lc) {
                        continue;
                    }
                    st.last_closed = Some(candle.open_time);
                    let event = SourceEvent::Candle {
                        symbol,
                        update: CandleUpdate {
                            candle,
                            closed: true,
                        },
                    };
                    if !self.ctx.emit(event, &self.cancel).await {
                        return Err(Stopped);
                    }
                    sent += 1;
                }
                let verified = through.plus_millis(d);
                st.verified_until = Some(st.verified_until.map_or(verified, |v| v.max(verified)));
                tracing::debug!(%symbol, sent, buffered = buffered.len(), warmup = filled.warmup,
                    "binance: backfill sent");
                if filled.warmup {
                    st.warm = true;
                    if !self
                        .ctx
                        .emit(SourceEvent::Warm { symbol }, &self.cancel)
                        .await
                    {
                        return Err(Stopped);
                    }
                }
            }
        }
        self.modes.insert(symbol, Mode::Live);
        for k in buffered {
            self.on_kline(k).await?;
        }
        Ok(())
    }
}

/// Runs the session's REST backfills one after the other.
async fn worker(
    ctx: Arc<Ctx>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    results: mpsc::UnboundedSender<Filled>,
    cancel: CancellationToken,
) {
    let d = ctx.interval_ms();
    let grace = ctx.config.close_grace.as_millis() as i64;
    loop {
        let job = tokio::select! {
            j = jobs.recv() => j,
            _ = cancel.cancelled() => return,
        };
        let Some(job) = job else { return };
        let (symbol, warmup, from, through) = match job {
            Job::Warmup { symbol, bars } => {
                let through = ctx.last_closed_bar();
                // `bars == 0`: nothing to fetch (from > through).
                let back = i64::try_from(bars)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(1)
                    .saturating_mul(d);
                let from = through.plus_millis(back.saturating_neg());
                (symbol, true, from, through)
            }
            Job::Fill {
                symbol,
                from,
                through,
            } => {
                // Wait until the last bar wanted has closed (plus the grace) on the clock.
                loop {
                    let left = through.millis() + d + grace - ctx.config.clock.now().millis();
                    if left <= 0 {
                        break;
                    }
                    let wait = Duration::from_millis(left.min(1_000) as u64);
                    if !sleep_or_cancel(wait, &cancel).await {
                        return;
                    }
                }
                (symbol, false, from, through)
            }
        };
        let result = if through < from {
            Ok((Vec::new(), through))
        } else {
            match ctx.rest.closed_klines(symbol, from, through, &cancel).await {
                Ok(c) => Ok((c, through)),
                Err(RestError::Cancelled) => return,
                Err(RestError::Permanent(e)) => Err(e),
            }
        };
        if results
            .send(Filled {
                symbol,
                warmup,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// A parsed kline stream message.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Kline {
    pub symbol: Symbol,
    pub candle: Candle,
    pub closed: bool,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    Kline(Kline),
    /// The answer to a `SUBSCRIBE`.
    Reply {
        id: serde_json::Value,
        error: Option<serde_json::Value>,
    },
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct KlineEvent {
    #[serde(rename = "e")]
    event: String,
    #[serde(rename = "k")]
    kline: RawKline,
}

#[derive(Deserialize)]
struct RawKline {
    #[serde(rename = "t")]
    open_time: i64,
    #[serde(rename = "s")]
    symbol: String,
    #[serde(rename = "i")]
    interval: String,
    #[serde(rename = "o")]
    open: serde_json::Value,
    #[serde(rename = "h")]
    high: serde_json::Value,
    #[serde(rename = "l")]
    low: serde_json::Value,
    #[serde(rename = "c")]
    close: serde_json::Value,
    #[serde(rename = "v")]
    volume: serde_json::Value,
    #[serde(rename = "x")]
    closed: bool,
}

/// Parses a combined-stream message (`{"stream": ..., "data": {"e": "kline", ...}}`) or a
/// request's reply (`{"result": null, "id": 1}`), checking the kline.
pub(crate) fn parse_message(text: &str, interval: Timeframe) -> Result<Incoming, String> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(data) = env.data else {
        return match env.id {
            Some(id) => Ok(Incoming::Reply {
                id,
                error: env.error,
            }),
            None => Err("neither stream data nor a reply".into()),
        };
    };
    let event: KlineEvent =
        serde_json::from_value(data).map_err(|e| format!("not a kline event: {e}"))?;
    if event.event != "kline" {
        return Err(format!("event {:?} is not a kline", event.event));
    }
    let k = event.kline;
    if k.interval != interval.as_str() {
        return Err(format!(
            "interval {:?}, expected {:?}",
            k.interval,
            interval.as_str()
        ));
    }
    let symbol = Symbol::new(&k.symbol).map_err(|e| e.to_string())?;
    let open_time = BarTime::from_millis(k.open_time);
    if !interval.is_aligned(open_time) {
        return Err(format!(
            "open time {open_time} is not on a {interval} boundary"
        ));
    }
    let candle = Candle {
        open_time,
        open: number(&k.open, "open")?,
        high: number(&k.high, "high")?,
        low: number(&k.low, "low")?,
        close: number(&k.close, "close")?,
        volume: number(&k.volume, "volume")?,
    };
    candle
        .check()
        .map_err(|e| format!("{symbol} kline {open_time}: {e}"))?;
    Ok(Incoming::Kline(Kline {
        symbol,
        candle,
        closed: k.closed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = r#"{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1700000061234,"s":"BTCUSDT","k":{"t":1700000040000,"T":1700000099999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"0.0010","c":"0.0020","h":"0.0025","l":"0.0005","v":"1000","n":100,"x":false,"q":"1.0000","V":"500","Q":"0.500","B":"123456"}}}"#;

    #[test]
    fn parses_the_real_combined_stream_shape() {
        let Ok(Incoming::Kline(k)) = parse_message(REAL, Timeframe::M1) else {
            panic!("{:?}", parse_message(REAL, Timeframe::M1));
        };
        assert_eq!(k.symbol.as_str(), "BTCUSDT");
        assert!(!k.closed);
        assert_eq!(k.candle.open_time.millis(), 1_700_000_040_000);
        // "l" is the low, not "L" (the last trade id); "v" the volume, not "V".
        assert_eq!(
            (
                k.candle.open,
                k.candle.high,
                k.candle.low,
                k.candle.close,
                k.candle.volume
            ),
            (0.0010, 0.0025, 0.0005, 0.0020, 1000.0)
        );
    }

    #[test]
    fn replies_and_bad_messages() {
        assert_eq!(
            parse_message(r#"{"result":null,"id":3}"#, Timeframe::M1),
            Ok(Incoming::Reply {
                id: serde_json::json!(3),
                error: None
            })
        );
        assert!(matches!(
            parse_message(
                r#"{"error":{"code":2,"msg":"Invalid request"},"id":4}"#,
                Timeframe::M1
            ),
            Ok(Incoming::Reply { error: Some(_), .. })
        ));
        for bad in [
            "not json",
            "{}",
            r#"{"stream":"x","data":{"e":"trade"}}"#,
            &REAL.replace("\"i\":\"1m\"", "\"i\":\"5m\""),
            &REAL.replace("\"o\":\"0.0010\"", "\"o\":\"abc\""),
            &REAL.replace("\"h\":\"0.0025\"", "\"h\":\"0.0001\""),
            &REAL.replace("1700000040000", "1700000040001"),
        ] {
            assert!(parse_message(bad, Timeframe::M1).is_err(), "{bad}");
        }
    }

    #[test]
    fn stream_names_are_lower_case() {
        let Ok(s) = Symbol::new("ETHUSDT") else {
            panic!()
        };
        assert_eq!(stream_name(s, Timeframe::H4), "ethusdt@kline_4h");
    }
}
