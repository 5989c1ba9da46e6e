//! A local server speaking Binance's market data protocol, for tests: `GET /api/v3/klines`
//! (the real array-of-arrays shape, `startTime`/`endTime`/`limit`, weight headers, `429` +
//! `Retry-After` on demand) and combined WebSocket streams `/stream?streams=...` (the real
//! `{"stream": ..., "data": {"e": "kline", ...}}` messages, `SUBSCRIBE`, pings, drops).
//!
//! The market runs on a clock the test sets ([`FakeBinance::set_now`]), or one it follows
//! ([`FakeBinance::follow_clock`], e.g. the accelerated clock a `serve` process under test
//! reads too); hand [`FakeBinance::clock`] to the source so both agree on which bar is open.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alert_core::{BarTime, Candle, Symbol, Timeframe};
use alert_marketdata::binance::Clock;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;

/// One `/api/v3/klines` request as the server saw it.
#[derive(Clone, Debug)]
pub struct KlinesRequest {
    pub symbol: String,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub limit: usize,
    pub at: Instant,
    pub status: u16,
}

enum Cmd {
    Text(String),
    Ping,
    Drop,
}

struct ConnInfo {
    streams: BTreeSet<String>,
    tx: mpsc::UnboundedSender<Cmd>,
    silent: bool,
}

#[derive(Default)]
struct Market {
    /// SYMBOL -> open time -> (candle, closed).
    bars: HashMap<String, BTreeMap<i64, (Candle, bool)>>,
    requests: Vec<KlinesRequest>,
    failures: VecDeque<(u16, u64)>,
    rest_delay: Duration,
    conns: HashMap<u64, ConnInfo>,
    next_conn: u64,
    silent_next: usize,
    pongs: u64,
    weight: u32,
}

struct Shared {
    interval: Timeframe,
    now: AtomicI64,
    /// When set, the market's time is this clock's and `now` is unused.
    follow: Mutex<Option<Clock>>,
    market: Mutex<Market>,
}

impl Shared {
    fn now_ms(&self) -> i64 {
        match &*self.follow.lock().unwrap() {
            Some(clock) => clock.now().millis(),
            None => self.now.load(Ordering::SeqCst),
        }
    }
}

pub struct FakeBinance {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBinance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fake's deterministic bar at `t` (exactly representable numbers, so they survive the
/// decimal strings unchanged).
pub fn candle_at(symbol: &str, t: BarTime, interval: Timeframe) -> Candle {
    let k = t.millis() / interval.duration_ms();
    let base = 100.0 + f64::from(symbol.bytes().map(u32::from).sum::<u32>() % 50) * 10.0;
    let open = base + (k % 17) as f64;
    let close = open + if k % 2 == 0 { 1.5 } else { -1.25 };
    Candle {
        open_time: t,
        open,
        high: open.max(close) + 0.5,
        low: open.min(close) - 0.75,
        close,
        volume: 10.0 + (k % 5) as f64,
    }
}

/// The combined-stream message of a kline, as Binance sends it.
pub fn kline_message(symbol: &str, c: &Candle, closed: bool, interval: Timeframe) -> String {
    let d = interval.duration_ms();
    let t = c.open_time.millis();
    serde_json::json!({
        "stream": format!("{}@kline_{}", symbol.to_ascii_lowercase(), interval.as_str()),
        "data": {
            "e": "kline", "E": t + d / 2, "s": symbol,
            "k": {
                "t": t, "T": t + d - 1, "s": symbol, "i": interval.as_str(),
                "f": 100, "L": 200,
                "o": format!("{:.8}", c.open), "c": format!("{:.8}", c.close),
                "h": format!("{:.8}", c.high), "l": format!("{:.8}", c.low),
                "v": format!("{:.8}", c.volume), "n": 101, "x": closed,
                "q": "1.00000000", "V": "5.00000000", "Q": "0.50000000", "B": "0"
            }
        }
    })
    .to_string()
}

impl FakeBinance {
    pub async fn start(interval: Timeframe, now: BarTime) -> Self {
        let shared = Arc::new(Shared {
            interval,
            now: AtomicI64::new(now.millis()),
            follow: Mutex::new(None),
            market: Mutex::new(Market::default()),
        });
        let app = axum::Router::new()
            .route("/api/v3/klines", get(klines))
            .route("/stream", get(stream))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn interval(&self) -> Timeframe {
        self.shared.interval
    }

    /// The market's clock, for the source.
    pub fn clock(&self) -> Clock {
        let shared = self.shared.clone();
        Clock::from_fn(move || BarTime::from_millis(shared.now_ms()))
    }

    pub fn set_now(&self, t: BarTime) {
        self.shared.now.store(t.millis(), Ordering::SeqCst);
    }

    /// From now on the market's time is `clock`'s ([`FakeBinance::set_now`] no longer
    /// matters): REST shows the bars opened by then, with no lag behind the client's clock.
    pub fn follow_clock(&self, clock: Clock) {
        *self.shared.follow.lock().unwrap() = Some(clock);
    }

    fn market(&self) -> std::sync::MutexGuard<'_, Market> {
        self.shared.market.lock().unwrap()
    }

    pub fn candle(&self, symbol: &str, t: BarTime) -> Candle {
        candle_at(symbol, t, self.shared.interval)
    }

    /// Adds `count` closed bars of `symbol` from `from`, without telling any stream (the
    /// exchange's history, or bars traded while a client was away).
    pub fn add_closed(&self, symbol: &str, from: BarTime, count: usize) {
        let d = self.shared.interval.duration_ms();
        let mut m = self.market();
        let bars = m.bars.entry(symbol.to_owned()).or_default();
        for i in 0..count {
            let t = from.plus_millis(i as i64 * d);
            bars.insert(
                t.millis(),
                (candle_at(symbol, t, self.shared.interval), true),
            );
        }
    }

    /// Records a kline update (REST sees it too) and sends it to every connection carrying
    /// the symbol's stream; returns how many connections it went to.
    pub fn push(&self, symbol: &str, candle: Candle, closed: bool) -> usize {
        let text = kline_message(symbol, &candle, closed, self.shared.interval);
        self.market()
            .bars
            .entry(symbol.to_owned())
            .or_default()
            .insert(candle.open_time.millis(), (candle, closed));
        self.push_raw(symbol, &text)
    }

    /// Sends `text` as is to every connection carrying `symbol`'s stream.
    pub fn push_raw(&self, symbol: &str, text: &str) -> usize {
        let stream = format!(
            "{}@kline_{}",
            symbol.to_ascii_lowercase(),
            self.shared.interval.as_str()
        );
        let m = self.market();
        let mut n = 0;
        for c in m.conns.values() {
            if !c.silent
                && c.streams.contains(&stream)
                && c.tx.send(Cmd::Text(text.to_owned())).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// Drops every WebSocket connection (no close frame: the TCP connection just ends).
    pub fn drop_connections(&self) {
        for c in self.market().conns.values() {
            let _ = c.tx.send(Cmd::Drop);
        }
    }

    pub fn ping_all(&self) {
        for c in self.market().conns.values() {
            let _ = c.tx.send(Cmd::Ping);
        }
    }

    pub fn pongs(&self) -> u64 {
        self.market().pongs
    }

    /// The next `n` connections accepted send nothing at all (a dead link).
    pub fn silence_next_connections(&self, n: usize) {
        self.market().silent_next = n;
    }

    /// The stream sets of the open connections.
    pub fn connections(&self) -> Vec<BTreeSet<String>> {
        let m = self.market();
        let mut ids: Vec<&u64> = m.conns.keys().collect();
        ids.sort();
        ids.iter().map(|id| m.conns[*id].streams.clone()).collect()
    }

    /// How many connections were ever accepted.
    pub fn total_connections(&self) -> u64 {
        self.market().next_conn
    }

    /// The next klines requests are answered `status` (429 or 418) with `Retry-After:
    /// retry_after_secs`.
    pub fn fail_next_klines(&self, status: u16, retry_after_secs: u64) {
        self.market().failures.push_back((status, retry_after_secs));
    }

    pub fn set_rest_delay(&self, d: Duration) {
        self.market().rest_delay = d;
    }

    pub fn requests(&self) -> Vec<KlinesRequest> {
        self.market().requests.clone()
    }

    /// Polls `cond` until it holds (panics after 10 s).
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn error(status: StatusCode, code: i64, msg: &str) -> Response {
    (
        status,
        serde_json::json!({"code": code, "msg": msg}).to_string(),
    )
        .into_response()
}

async fn klines(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let symbol = q.get("symbol").cloned().unwrap_or_default();
    let start = q.get("startTime").and_then(|v| v.parse::<i64>().ok());
    let end = q.get("endTime").and_then(|v| v.parse::<i64>().ok());
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(500);
    let (delay, failure) = {
        let mut m = shared.market.lock().unwrap();
        let failure = m.failures.pop_front();
        m.requests.push(KlinesRequest {
            symbol: symbol.clone(),
            start,
            end,
            limit,
            at: Instant::now(),
            status: failure.map_or(200, |f| f.0),
        });
        (m.rest_delay, failure)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, retry_after)) = failure {
        let mut resp = error(
            StatusCode::from_u16(status).unwrap(),
            -1003,
            "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
        );
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after));
        return resp;
    }
    if q.get("interval").map(String::as_str) != Some(shared.interval.as_str()) {
        return error(StatusCode::BAD_REQUEST, -1120, "Invalid interval.");
    }
    if limit == 0 || limit > 1000 {
        return error(
            StatusCode::BAD_REQUEST,
            -1130,
            "Data sent for parameter 'limit' is not valid.",
        );
    }
    let now = shared.now_ms();
    let open_now = shared.interval.bar_open(BarTime::from_millis(now)).millis();
    let d = shared.interval.duration_ms();
    let (rows, weight) = {
        let mut m = shared.market.lock().unwrap();
        m.weight += 2;
        let Some(bars) = m.bars.get(&symbol) else {
            return error(StatusCode::BAD_REQUEST, -1121, "Invalid symbol.");
        };
        // Bars after the market's now do not exist yet.
        let visible = bars.range(..=open_now);
        let picked: Vec<(Candle, bool)> = match (start, end) {
            (Some(s), e) => visible
                .filter(|(t, _)| **t >= s && e.is_none_or(|e| **t <= e))
                .take(limit)
                .map(|(_, b)| *b)
                .collect(),
            (None, Some(e)) => {
                let v: Vec<_> = visible.filter(|(t, _)| **t <= e).map(|(_, b)| *b).collect();
                v[v.len().saturating_sub(limit)..].to_vec()
            }
            (None, None) => {
                let v: Vec<_> = visible.map(|(_, b)| *b).collect();
                v[v.len().saturating_sub(limit)..].to_vec()
            }
        };
        let rows: Vec<serde_json::Value> = picked
            .iter()
            .map(|(c, _)| {
                let t = c.open_time.millis();
                serde_json::json!([
                    t,
                    format!("{:.8}", c.open),
                    format!("{:.8}", c.high),
                    format!("{:.8}", c.low),
                    format!("{:.8}", c.close),
                    format!("{:.8}", c.volume),
                    t + d - 1,
                    "1000.00000000",
                    100,
                    "5.00000000",
                    "500.00000000",
                    "0"
                ])
            })
            .collect();
        (rows, m.weight)
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-mbx-used-weight-1m", HeaderValue::from(weight));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (headers, serde_json::Value::Array(rows).to_string()).into_response()
}

async fn stream(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let streams: BTreeSet<String> = q
        .get("streams")
        .map(|s| {
            s.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    ws.on_upgrade(move |socket| serve_socket(shared, socket, streams))
}

async fn serve_socket(shared: Arc<Shared>, mut socket: WebSocket, streams: BTreeSet<String>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut m = shared.market.lock().unwrap();
        let id = m.next_conn;
        m.next_conn += 1;
        let silent = m.silent_next > 0;
        m.silent_next = m.silent_next.saturating_sub(1);
        m.conns.insert(
            id,
            ConnInfo {
                streams,
                tx,
                silent,
            },
        );
        id
    };
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Text(t)) => {
                    if socket.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Ping) => {
                    if socket.send(Message::Ping(b"hb".to_vec().into())).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Drop) | None => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let reply = handle_request(&shared, id, t.as_str());
                    if socket.send(Message::Text(reply.into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_))) => shared.market.lock().unwrap().pongs += 1,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.market.lock().unwrap().conns.remove(&id);
}

/// `{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [...], "id": n}`.
fn handle_request(shared: &Shared, conn: u64, text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return r#"{"error":{"code":3,"msg":"Invalid JSON"}}"#.to_owned();
    };
    let id = v.get("id").cloned().unwrap_or(serde_json::Value::Null);
    let params: Vec<String> = v
        .get("params")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut m = shared.market.lock().unwrap();
    let Some(c) = m.conns.get_mut(&conn) else {
        return String::new();
    };
    match v.get("method").and_then(|m| m.as_str()) {
        Some("SUBSCRIBE") => c.streams.extend(params),
        Some("UNSUBSCRIBE") => {
            for p in params {
                c.streams.remove(&p);
            }
        }
        _ => {
            return serde_json::json!({"error": {"code": 2, "msg": "Invalid request"}, "id": id})
                .to_string();
        }
    }
    serde_json::json!({"result": null, "id": id}).to_string()
}

/// A symbol that exists (tests only use valid names).
pub fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}
