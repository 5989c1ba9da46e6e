//! `binance`: Binance spot klines — REST `/api/v3/klines` for history and gaps, WebSocket
//! combined streams `<symbol>@kline_<interval>` for live updates.
//!
//! What it guarantees, per symbol:
//! - At start (and when a symbol is added to [`Wanted`]) the wanted number of **closed** bars is
//!   backfilled over REST, sent in order as closed [`SourceEvent::Candle`]s, then
//!   [`SourceEvent::Warm`]. Live updates of that symbol received meanwhile are buffered and
//!   follow the backfill.
//! - Closed bars are sent strictly in increasing open time, never twice: a closed bar at or
//!   before the last closed bar sent is dropped, and so is an in-progress update of such a bar
//!   (REST and the stream overlap around every backfill).
//! - After a reconnect the closed bars missed since the last one sent are fetched over REST
//!   and sent before the symbol's live updates resume; a hole seen on a live stream (a bar more
//!   than one interval after the last closed one) is filled the same way.
//! - Bad data (unparseable messages, candles failing [`Candle::check`](alert_core::Candle::check),
//!   the wrong interval or a misaligned open time) is logged with `tracing::warn!` and skipped.
//!
//! Connections carry at most [`BinanceConfig::max_streams_per_connection`] streams (Binance
//! allows 1,024); more symbols are spread over several connections. A connection is renewed
//! before Binance's 24 h cut-off, reconnected when it stays silent too long, and retried with
//! exponential backoff and jitter. Changing the wanted set restarts only the connections whose
//! streams change.
//!
//! REST requests obey Binance's limits: `429`/`418` answers pause every request for the
//! `Retry-After` seconds; `X-MBX-USED-WEIGHT-1M` is tracked and requests wait for the next
//! minute when the used weight nears [`BinanceConfig::weight_limit`].
//!
//! The REST backfills of a connection run once its WebSocket is up (live messages must be
//! buffered meanwhile), so while the stream cannot connect nothing is sent at all.
//!
//! TLS: see [`install_crypto_provider`].
//!
//! ```no_run
//! use alert_core::{Symbol, Timeframe};
//! use alert_marketdata::{Binance, BinanceConfig, Source, SourceEvent, Wanted};
//! use tokio::sync::{mpsc, watch};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! alert_marketdata::binance::install_crypto_provider(); // first thing in main
//! let source = Binance::new(BinanceConfig {
//!     interval: Timeframe::M1,
//!     ..BinanceConfig::default()
//! });
//! let (tx, mut rx) = mpsc::channel(10_000);
//! let wanted: Wanted = [(Symbol::new("BTCUSDT")?, 500)].into_iter().collect();
//! let (wanted_tx, wanted_rx) = watch::channel(wanted);
//! let cancel = CancellationToken::new();
//! let task = tokio::spawn(Box::new(source).run(tx, wanted_rx, cancel.clone()));
//! while let Some(event) = rx.recv().await {
//!     if let SourceEvent::Warm { symbol } = event {
//!         println!("{symbol} is warm");
//!         break;
//!     }
//! }
//! // Later: wanted_tx.send(...) to add or remove symbols; cancel.cancel() to stop.
//! cancel.cancel();
//! task.await??;
//! drop(wanted_tx);
//! # Ok(())
//! # }
//! ```

mod rest;
mod ws;

/// The parsers of Binance's payloads, for the fuzz targets (`fuzz/`): whatever the exchange (or
/// someone in its place) sends, they return a candle that holds the candle invariants or an
/// error — never a panic.
#[doc(hidden)]
pub mod fuzzing {
    use alert_core::{Candle, Timeframe};

    /// A WebSocket text message: the kline it carries, if any.
    pub fn ws_message(text: &str) -> Option<Candle> {
        match super::ws::parse_message(text, Timeframe::M1) {
            Ok(super::ws::Incoming::Kline(k)) => Some(k.candle),
            _ => None,
        }
    }

    /// A REST `klines` response body: the rows that parse.
    pub fn rest_klines(body: &str) -> Vec<Candle> {
        serde_json::from_str::<Vec<Vec<serde_json::Value>>>(body)
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| super::rest::parse_row(r, Timeframe::M1).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use alert_core::{BarTime, Symbol, Timeframe};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::source::{Source, SourceError, SourceEvent, Wanted};

/// The environment variable `alert-runner serve` reads, for tests only, to run the Binance
/// source on [`Clock::from_test_spec`] instead of the system clock (hidden from `--help`; a
/// warning is logged when it is set). The chaos test `chaos_market` uses it so a local
/// exchange can play an hour of 1m bars in a minute; production never sets it.
pub const TEST_CLOCK_ENV: &str = "ALERT_BINANCE_TEST_CLOCK";

/// The wall clock the source reads to tell closed bars from the open one. Tests drive it by
/// hand so a fake exchange can run on its own simulated time.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> BarTime + Send + Sync>);

impl Clock {
    /// The system clock (UTC milliseconds since the epoch).
    pub fn system() -> Self {
        Self(Arc::new(|| {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            BarTime::from_millis(ms)
        }))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> BarTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// A clock that reads `market` when the system clock reads `wall_ms` and runs `speed`
    /// times as fast: `market + (now − wall_ms) × speed`. For tests of the whole program: a
    /// local exchange reading the same clock plays many 1m bars in seconds (see
    /// [`TEST_CLOCK_ENV`]). Two processes given the same values agree to the millisecond,
    /// since both read the system clock.
    pub fn accelerated(market: BarTime, wall_ms: i64, speed: f64) -> Self {
        let system = Self::system();
        Self(Arc::new(move || {
            let now = system.now().millis();
            BarTime::from_millis(market.millis() + ((now - wall_ms) as f64 * speed) as i64)
        }))
    }

    /// Parses `MARKET_MS,WALL_MS,SPEED` (the value of [`TEST_CLOCK_ENV`]) into
    /// [`Clock::accelerated`]; the speed must be above 0 and at most 10,000.
    pub fn from_test_spec(spec: &str) -> Result<Self, SourceError> {
        let bad = || {
            SourceError::Other(format!(
                "binance: test clock {spec:?}: expected MARKET_MS,WALL_MS,SPEED (e.g. 1700000000000,1760000000000,60)"
            ))
        };
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        let [market, wall, speed] = parts.as_slice() else {
            return Err(bad());
        };
        let market: i64 = market.parse().map_err(|_| bad())?;
        let wall: i64 = wall.parse().map_err(|_| bad())?;
        let speed: f64 = speed.parse().map_err(|_| bad())?;
        if !(speed > 0.0 && speed <= 10_000.0) {
            return Err(bad());
        }
        Ok(Self::accelerated(BarTime::from_millis(market), wall, speed))
    }

    pub fn now(&self) -> BarTime {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Binance source settings. [`Default`] gives production values for Binance spot.
#[derive(Clone, Debug)]
pub struct BinanceConfig {
    /// REST base URL, without a trailing `/api/...` (default `https://api.binance.com`).
    pub rest_url: String,
    /// WebSocket base URL; `/stream?streams=...` is appended (default
    /// `wss://stream.binance.com:9443`).
    pub ws_url: String,
    /// Kline interval of the candles sent (default 1m).
    pub interval: Timeframe,
    /// Streams (= symbols) per WebSocket connection; Binance allows 1,024.
    pub max_streams_per_connection: usize,
    /// Streams named in the connection URL; the rest of a connection's streams are added with
    /// `SUBSCRIBE` messages (Binance refuses URLs over about 8,000 characters).
    pub streams_in_url: usize,
    /// First reconnect / retry delay; it doubles up to `backoff_max`. Each wait is drawn at
    /// random between half the delay and the delay (jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// A connection is renewed after this long (Binance cuts connections at 24 h); each
    /// connection renews up to 5% earlier at random so they do not all renew together.
    pub renew_after: Duration,
    /// A connection that receives nothing (data, ping) for this long is considered dead and
    /// reconnected.
    pub idle_timeout: Duration,
    /// Time allowed for the WebSocket handshake.
    pub connect_timeout: Duration,
    /// Time allowed for one REST request.
    pub request_timeout: Duration,
    /// Binance's request weight limit per minute (`REQUEST_WEIGHT`, 6,000 for spot).
    pub weight_limit: u32,
    /// Requests wait for the next minute once the used weight (`X-MBX-USED-WEIGHT-1M`) plus the
    /// request's weight would exceed `weight_limit - weight_headroom`.
    pub weight_headroom: u32,
    /// REST requests in flight at once, across all connections.
    pub max_concurrent_requests: usize,
    /// A bar counts as closed on REST only once `close time + close_grace` has passed on
    /// [`BinanceConfig::clock`]: a kline fetched right at its close may still be incomplete.
    /// Later bars come from the stream.
    pub close_grace: Duration,
    pub clock: Clock,
}

impl Default for BinanceConfig {
    fn default() -> Self {
        Self {
            rest_url: "https://api.binance.com".into(),
            ws_url: "wss://stream.binance.com:9443".into(),
            interval: Timeframe::M1,
            max_streams_per_connection: 1_024,
            streams_in_url: 200,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            renew_after: Duration::from_secs(23 * 3600),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            weight_limit: 6_000,
            weight_headroom: 600,
            max_concurrent_requests: 4,
            close_grace: Duration::from_secs(2),
            clock: Clock::system(),
        }
    }
}

impl BinanceConfig {
    fn validate(&self) -> Result<(), SourceError> {
        let bad = |m: &str| Err(SourceError::Other(format!("binance: {m}")));
        if self.max_streams_per_connection == 0 {
            return bad("max_streams_per_connection must be at least 1");
        }
        if self.streams_in_url == 0 {
            return bad("streams_in_url must be at least 1");
        }
        if self.max_concurrent_requests == 0 {
            return bad("max_concurrent_requests must be at least 1");
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return bad("backoff_initial must be positive and at most backoff_max");
        }
        if self.idle_timeout.is_zero() || self.renew_after.is_zero() {
            return bad("idle_timeout and renew_after must be positive");
        }
        if !(self.rest_url.starts_with("http://") || self.rest_url.starts_with("https://")) {
            return bad(&format!(
                "rest_url {:?} must start with http:// or https://",
                self.rest_url
            ));
        }
        if !(self.ws_url.starts_with("ws://") || self.ws_url.starts_with("wss://")) {
            return bad(&format!(
                "ws_url {:?} must start with ws:// or wss://",
                self.ws_url
            ));
        }
        Ok(())
    }
}

/// Installs rustls' aws-lc-rs provider as the process-wide default, unless a provider is
/// installed already. Returns whether this call installed it.
///
/// reqwest's `rustls` feature links aws-lc-rs, while other crates of the workspace (sqlx with
/// `tls-rustls-ring-webpki`) link ring; with both present rustls cannot pick a provider by
/// itself and `wss://` connections panic with "Could not automatically determine the
/// process-level CryptoProvider". [`Binance`] calls this when it starts, but the binary should
/// call it first thing in `main`, before any TLS connection (database included) is made.
pub fn install_crypto_provider() -> bool {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return false;
    }
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_ok()
}

/// What a symbol's stream state is, kept across connections (and across removal from the
/// wanted set, so a symbol that comes back never goes backwards).
#[derive(Clone, Debug, Default)]
pub(crate) struct SymState {
    /// Open time of the last closed bar sent.
    pub last_closed: Option<BarTime>,
    /// Every bar opening before this is known to REST: bars missing before it are missing at
    /// the exchange (maintenance), not lost by us.
    pub verified_until: Option<BarTime>,
    /// The warm-up backfill is done (`Warm` was sent).
    pub warm: bool,
    /// Closed bars of history wanted at warm-up.
    pub need: usize,
}

/// Shared by the connection tasks of one source run.
pub(crate) struct Ctx {
    pub config: BinanceConfig,
    pub rest: rest::Rest,
    pub out: mpsc::Sender<SourceEvent>,
    /// Cancelled when the whole source must stop (cancellation, or the consumer went away).
    pub stop: CancellationToken,
}

impl Ctx {
    pub fn interval_ms(&self) -> i64 {
        self.config.interval.duration_ms()
    }

    /// Open time of the newest bar that is surely closed at `now` (see `close_grace`).
    pub fn last_closed_bar(&self) -> BarTime {
        let now = self
            .config
            .clock
            .now()
            .plus_millis(-(self.config.close_grace.as_millis() as i64));
        self.config
            .interval
            .bar_open(now)
            .plus_millis(-self.interval_ms())
    }

    /// Sends `event`; `false` when the source must stop (consumer gone or cancelled).
    pub async fn emit(&self, event: SourceEvent, cancel: &CancellationToken) -> bool {
        tokio::select! {
            sent = self.out.send(event) => {
                if sent.is_err() {
                    self.stop.cancel();
                    false
                } else {
                    true
                }
            }
            _ = cancel.cancelled() => false,
        }
    }
}

/// Exponential backoff with jitter.
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next wait: uniformly in `[d/2, d]`, then `d` doubles (up to the maximum).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Sleeps `d`; `false` if cancelled first.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}

/// A running connection task and the symbols it carries.
struct Conn {
    symbols: BTreeSet<Symbol>,
    cancel: CancellationToken,
    handle: JoinHandle<BTreeMap<Symbol, SymState>>,
}

/// The Binance source.
pub struct Binance {
    config: BinanceConfig,
}

impl Binance {
    pub fn new(config: BinanceConfig) -> Self {
        Self { config }
    }

    async fn play(
        self,
        out: mpsc::Sender<SourceEvent>,
        mut wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        self.config.validate()?;
        install_crypto_provider();
        let rest = rest::Rest::new(&self.config)?;
        let stop = cancel.child_token();
        let ctx = Arc::new(Ctx {
            config: self.config,
            rest,
            out,
            stop: stop.clone(),
        });
        let mut coordinator = Coordinator {
            ctx,
            conns: Vec::new(),
            parked: HashMap::new(),
            current: Wanted::new(),
        };
        let mut watching = true;
        loop {
            if watching {
                let next = wanted.borrow_and_update().clone();
                coordinator.apply(&next).await;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = wanted.changed(), if watching => {
                    if changed.is_err() {
                        // The sender is gone: keep serving the last wanted set until cancelled.
                        watching = false;
                    }
                }
            }
        }
        coordinator.shutdown().await;
        Ok(())
    }
}

struct Coordinator {
    ctx: Arc<Ctx>,
    conns: Vec<Conn>,
    /// States of symbols not on any connection (removed from the wanted set, or between a
    /// connection's stop and its restart).
    parked: HashMap<Symbol, SymState>,
    current: Wanted,
}

impl Coordinator {
    /// Moves to the wanted set `next`: connections losing or gaining symbols are restarted,
    /// new symbols fill free places first, then new connections.
    async fn apply(&mut self, next: &Wanted) {
        let removed: BTreeSet<Symbol> = self
            .current
            .keys()
            .filter(|s| !next.contains_key(s))
            .copied()
            .collect();
        let mut added: Vec<Symbol> = next
            .keys()
            .filter(|s| !self.current.contains_key(s))
            .copied()
            .collect();
        for (s, n) in next {
            if let Some(old) = self.current.get(s)
                && old != n
            {
                tracing::debug!(symbol = %s, from = old, to = n,
                    "binance: history wanted for a running symbol changed; only new bars follow");
            }
        }
        self.current = next.clone();
        if removed.is_empty() && added.is_empty() {
            return;
        }
        let newly: BTreeSet<Symbol> = added.iter().copied().collect();
        let max = self.ctx.config.max_streams_per_connection;
        let mut plans: Vec<(BTreeSet<Symbol>, bool)> = Vec::new(); // (symbols, changed)
        for conn in &self.conns {
            let kept: BTreeSet<Symbol> = conn.symbols.difference(&removed).copied().collect();
            let changed = kept.len() != conn.symbols.len();
            plans.push((kept, changed));
        }
        for (symbols, changed) in plans.iter_mut() {
            while symbols.len() < max {
                let Some(s) = added.pop() else { break };
                symbols.insert(s);
                *changed = true;
            }
        }
        let old = std::mem::take(&mut self.conns);
        let mut restart: Vec<BTreeSet<Symbol>> = Vec::new();
        for (conn, (symbols, changed)) in old.into_iter().zip(plans) {
            if changed {
                self.stop_conn(conn).await;
                if !symbols.is_empty() {
                    restart.push(symbols);
                }
            } else {
                self.conns.push(conn);
            }
        }
        added.reverse();
        for chunk in added.chunks(max) {
            restart.push(chunk.iter().copied().collect());
        }
        for symbols in restart {
            self.start_conn(symbols, &newly);
        }
        tracing::info!(
            symbols = self.current.len(),
            connections = self.conns.len(),
            "binance: subscriptions updated"
        );
    }

    async fn stop_conn(&mut self, conn: Conn) {
        conn.cancel.cancel();
        match conn.handle.await {
            Ok(states) => self.parked.extend(states),
            Err(e) => tracing::error!("binance: a connection task failed: {e}"),
        }
    }

    /// Starts a connection for `symbols`; those in `newly` were just added to the wanted set
    /// and warm up (again, if they were wanted before: bars already sent are deduplicated).
    fn start_conn(&mut self, symbols: BTreeSet<Symbol>, newly: &BTreeSet<Symbol>) {
        let states: BTreeMap<Symbol, SymState> = symbols
            .iter()
            .map(|s| {
                let mut st = self.parked.remove(s).unwrap_or_default();
                if newly.contains(s) {
                    st.warm = false;
                    st.need = self.current.get(s).copied().unwrap_or(0);
                }
                (*s, st)
            })
            .collect();
        let cancel = self.ctx.stop.child_token();
        let handle = tokio::spawn(ws::connection(self.ctx.clone(), states, cancel.clone()));
        self.conns.push(Conn {
            symbols,
            cancel,
            handle,
        });
    }

    async fn shutdown(&mut self) {
        for conn in std::mem::take(&mut self.conns) {
            self.stop_conn(conn).await;
        }
    }
}

impl Source for Binance {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn timeframe(&self) -> Timeframe {
        self.config.interval
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<SourceEvent>,
        wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin((*self).play(out, wanted, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_max() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        let bounds = [100, 200, 350, 350, 350];
        for (d, hi) in d.iter().zip(bounds) {
            assert!(
                *d >= Duration::from_millis(hi / 2) && *d <= Duration::from_millis(hi),
                "{d:?} not in [{}, {hi}] ms",
                hi / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn default_config_is_valid_and_bad_ones_are_refused() {
        assert!(BinanceConfig::default().validate().is_ok());
        let bad = BinanceConfig {
            max_streams_per_connection: 0,
            ..BinanceConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = BinanceConfig {
            ws_url: "http://x".into(),
            ..BinanceConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn test_clock_spec_runs_fast_from_its_origin_and_bad_specs_are_refused() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let market = 1_700_000_000_000i64;
        let Ok(clock) = Clock::from_test_spec(&format!("{market}, {}, 60", wall - 1_000)) else {
            panic!("a good spec")
        };
        // One wall second (and a bit, for the time this test takes) is a market minute.
        let ahead = clock.now().millis() - market;
        assert!((60_000..70_000).contains(&ahead), "{ahead} ms ahead");
        for bad in [
            "", "1,2", "1,2,3,4", "a,2,3", "1,2,0", "1,2,-5", "1,2,NaN", "1,2,1e9",
        ] {
            assert!(Clock::from_test_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn crypto_provider_is_installed_once() {
        let first = install_crypto_provider();
        assert!(!install_crypto_provider(), "second call is a no-op");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        let _ = first;
    }
}
