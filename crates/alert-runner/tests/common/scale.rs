//! Shared by the scale-out tests (shards, standbys, several dispatchers): a replayed market,
//! alerts in every trigger mode, the real binary as `run`/`dispatch` processes, a
//! signature-checking webhook receiver that deduplicates by `webhook-id`, and what a run left
//! in the database. Include with `#[path = "common/scale.rs"] mod scale;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alert_store::bench::ScratchDatabase;
use sqlx::{Connection, Row};

pub const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
pub const USER: uuid::Uuid = uuid::Uuid::from_u128(0x5ca1_e000_0000_4000_8000_0000_0000_0001);
/// 1m bars per symbol; at [`SPEED`] a replay takes about six seconds.
pub const BARS: i64 = 240;
pub const SPEED: f64 = 2400.0;
pub const START_MS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
/// In a split into 2: AAAUSDT and CCCUSDT are shard 0's, BBBUSDT shard 1's.
pub const SYMBOLS: [&str; 3] = ["AAAUSDT", "BBBUSDT", "CCCUSDT"];

pub fn ok<T, E: Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh PostgreSQL database (drop it with `ScratchDatabase::remove`).
pub async fn scratch() -> ScratchDatabase {
    ok(
        ScratchDatabase::create(&admin_url()).await,
        "create a scratch database (is PostgreSQL running at DATABASE_URL?)",
    )
}

pub fn free_port() -> u16 {
    let listener = ok(std::net::TcpListener::bind("127.0.0.1:0"), "bind");
    ok(listener.local_addr(), "local addr").port()
}

/// Whether `{base}/readyz` answers 200 within `limit`.
pub async fn wait_ready(base: &str, limit: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `got` is `expected`: the same size (else which are missing and unexpected), the same set.
pub fn assert_same_set<T: Ord + std::fmt::Debug>(
    got: &BTreeSet<T>,
    expected: &BTreeSet<T>,
    what: &str,
) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: missing {:?}, unexpected {:?}",
        expected.difference(got).take(5).collect::<Vec<_>>(),
        got.difference(expected).take(5).collect::<Vec<_>>()
    );
    assert!(got == expected, "{what}: the same set");
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ar-{tag}-{}", uuid::Uuid::new_v4().simple()));
    ok(std::fs::create_dir_all(&d), "create temp dir");
    d
}

/// SplitMix64, for the market's wobble.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Three symbols of deterministic 1m candles (waves plus a seeded wobble) in `dir`.
pub fn write_market(dir: &Path) {
    ok(std::fs::create_dir_all(dir), "market dir");
    let mut rng = Rng(0x5eed);
    for (i, symbol) in SYMBOLS.iter().enumerate() {
        let period = [37.0, 53.0, 71.0][i];
        let amplitude = [2.0, 4.0, 3.0][i];
        let mut text = String::from("open_time_ms,open,high,low,close,volume\n");
        let mut prev: f64 = 100.0;
        for bar in 0..BARS {
            let wave = amplitude * (std::f64::consts::TAU * bar as f64 / period).sin();
            let close = 100.0 + wave + (rng.unit() - 0.5) * 0.8;
            let high = prev.max(close) + rng.unit() * 0.3;
            let low = prev.min(close) - rng.unit() * 0.3;
            let volume = 10.0 + rng.unit() * 10.0;
            text.push_str(&format!(
                "{},{prev:.4},{high:.4},{low:.4},{close:.4},{volume:.3}\n",
                START_MS + bar * 60_000
            ));
            prev = close;
        }
        ok(
            std::fs::write(dir.join(format!("{symbol}.csv")), text),
            "write candles",
        );
    }
}

/// Eight alerts over the three symbols in every trigger mode (every bar close, crossings, a
/// 3-bar debounce, RSI thresholds, a price level, a 5m MACD, a `once`); with `hook`, each
/// sends webhooks there, else it notifies only.
pub fn alerts_json(hook: Option<&str>) -> String {
    let act = |path: &str| match hook {
        Some(hook) => format!(r#"{{"type": "webhook", "url": "{hook}/{path}"}}"#),
        None => r#"{"type": "notify"}"#.to_owned(),
    };
    let alerts = [
        format!(
            r#"{{"name": "AAA every bar close", "symbol": "AAAUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "p", "type": "price", "operator": ">", "compareValue": 0}}],
                "trigger": "once_per_bar_close", "actions": [{}]}}"#,
            act("every")
        ),
        format!(
            r#"{{"name": "AAA crosses EMA(9)", "symbol": "AAAUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "x", "type": "price", "operator": "crosses",
                  "compareWith": "indicator_component",
                  "rhs": {{"indicator": "EMA", "component": "EMA", "settings": {{"period": 9}}}},
                  "timeframe": "same"}}],
                "actions": [{}, {{"type": "notify"}}]}}"#,
            act("cross")
        ),
        format!(
            r#"{{"name": "AAA above SMA(20), debounce 3", "symbol": "AAAUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "s", "type": "price", "operator": ">",
                  "compareWith": "indicator_component",
                  "rhs": {{"indicator": "SMA", "settings": {{"period": 20}}}}, "timeframe": "same"}}],
                "debounce_bars": 3, "actions": [{}]}}"#,
            act("debounce")
        ),
        format!(
            r#"{{"name": "BBB RSI below 45", "symbol": "BBBUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "rsi", "type": "indicator", "indicator": "RSI",
                  "component": "RSI", "operator": "<", "compareValue": 45, "timeframe": "same",
                  "settings": {{"length": 14}}}}],
                "actions": [{}]}}"#,
            act("rsi-low")
        ),
        format!(
            r#"{{"name": "BBB RSI above 55", "symbol": "BBBUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "rsi", "type": "indicator", "indicator": "RSI",
                  "operator": ">", "compareValue": 55, "settings": {{"length": 14}}}}],
                "actions": [{}]}}"#,
            act("rsi-high")
        ),
        format!(
            r#"{{"name": "CCC crosses 100", "symbol": "CCCUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "c", "type": "price", "operator": "crosses", "compareValue": 100}}],
                "actions": [{}]}}"#,
            act("level")
        ),
        format!(
            r#"{{"name": "CCC 5m MACD histogram above 0", "symbol": "CCCUSDT", "base_timeframe": "5m",
                "conditions": [{{"id": "m", "type": "indicator", "indicator": "MACD",
                  "component": "Histogram", "operator": ">", "compareValue": 0, "timeframe": "same"}}],
                "actions": [{}]}}"#,
            act("macd")
        ),
        format!(
            r#"{{"name": "CCC once below 97.5", "symbol": "CCCUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "p", "type": "price", "operator": "<", "compareValue": 97.5}}],
                "trigger": "once", "actions": [{}]}}"#,
            act("once")
        ),
    ];
    format!("[{}]", alerts.join(",\n"))
}

/// Runs `alert-runner ARGS --database-url URL` to its end; its stdout.
pub fn run_cli(args: &[&str], url: &str) -> String {
    let out = ok(
        Command::new(BIN)
            .args(args)
            .args(["--database-url", url])
            .output(),
        "run alert-runner",
    );
    assert!(
        out.status.success(),
        "alert-runner {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Migrates `url`, imports [`alerts_json`] for [`USER`], and returns the user's webhook
/// signing secret.
pub fn seed(url: &str, dir: &Path, hook: Option<&str>) -> String {
    let secret = run_cli(
        &["webhook-secret", "show", "--user", &USER.to_string()],
        url,
    );
    let file = dir.join(format!("alerts-{}.json", uuid::Uuid::new_v4().simple()));
    ok(std::fs::write(&file, alerts_json(hook)), "write alerts");
    run_cli(
        &[
            "alerts",
            "import",
            "--webhook-allow-private",
            "--user",
            &USER.to_string(),
            &file.display().to_string(),
        ],
        url,
    );
    secret
}

pub fn log_to(cmd: &mut Command, log: &Path) {
    let file = ok(
        File::options().create(true).append(true).open(log),
        "open log",
    );
    let err = ok(file.try_clone(), "clone log");
    cmd.stdout(file).stderr(err).stdin(Stdio::null());
}

/// `alert-runner run --source replay` over `market` at `speed` (None: as fast as possible),
/// with `extra` arguments (`--shard I/N`), JSON logs appended to `log`.
pub fn spawn_run(
    market: &Path,
    url: &str,
    speed: Option<f64>,
    extra: &[&str],
    log: &Path,
) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--source", "replay", "--feed", "1m", "--replay"])
        .arg(market)
        .args(["--database-url", url, "--poll-ms", "100"])
        .args(["--log-format", "json"])
        .args(extra);
    if let Some(speed) = speed {
        cmd.args(["--replay-speed", &speed.to_string()]);
    }
    log_to(&mut cmd, log);
    ok(cmd.spawn(), "spawn run")
}

/// Dispatcher flags of these tests (`dispatch`, or `serve`'s own dispatcher): loopback
/// receivers allowed, quick retries, quick polls, JSON logs.
pub fn dispatch_flags() -> Vec<String> {
    [
        "--webhook-allow-private",
        "--webhook-timeout-ms",
        "2000",
        "--webhook-retry-schedule",
        &["200ms"; 20].join(","),
        "--dispatch-poll-ms",
        "100",
        "--log-format",
        "json",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `alert-runner dispatch` with [`dispatch_flags`].
pub fn spawn_dispatch(url: &str, extra: &[&str], log: &Path) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["dispatch", "--database-url", url])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(dispatch_flags())
        .args(["--dispatch-shutdown-grace-ms", "3000"])
        .args(extra);
    log_to(&mut cmd, log);
    ok(cmd.spawn(), "spawn dispatch")
}

/// Waits for a child to exit; `None` if it did not within `limit` (then it is killed).
pub async fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// SIGKILL, and reap it.
pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The JSON log lines of `log` whose message is `message`.
pub fn log_lines(log: &Path, message: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"].as_str() == Some(message))
        .collect()
}

/// Whether a JSON log line of `log` has `message`.
pub fn log_has(log: &Path, message: &str) -> bool {
    !log_lines(log, message).is_empty()
}

/// Waits until `log` has a line with `message`; how long it took, or `None` after `limit`.
pub async fn wait_log(log: &Path, message: &str, limit: Duration) -> Option<Duration> {
    wait_log_n(log, message, 1, limit).await
}

/// Waits until `log` has `n` lines with `message`.
pub async fn wait_log_n(log: &Path, message: &str, n: usize, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if log_lines(log, message).len() >= n {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// What a run left in the database.

#[derive(Debug, Default)]
pub struct Outcome {
    /// (alert name, bar open time ms).
    pub triggers: BTreeSet<(String, i64)>,
    /// Triggers per symbol.
    pub by_symbol: BTreeMap<String, usize>,
    /// (alert, bar) recorded more than once (the unique key makes this 0 unless broken).
    pub duplicates: i64,
    /// `webhook-id` → status of every webhook delivery.
    pub deliveries: BTreeMap<String, String>,
}

impl Outcome {
    pub fn delivered(&self) -> usize {
        self.deliveries
            .values()
            .filter(|s| *s == "delivered")
            .count()
    }
}

pub async fn outcome(url: &str) -> Outcome {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let rows = ok(
        sqlx::query(
            "SELECT a.name, t.symbol, (extract(epoch FROM t.bar_time) * 1000)::bigint AS bar \
             FROM alert_triggers t JOIN alerts a ON a.id = t.alert_id",
        )
        .fetch_all(&mut conn)
        .await,
        "read triggers",
    );
    let mut out = Outcome::default();
    for r in &rows {
        out.triggers
            .insert((r.get::<String, _>("name"), r.get::<i64, _>("bar")));
        *out.by_symbol.entry(r.get("symbol")).or_default() += 1;
    }
    out.duplicates = ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT alert_id, bar_time FROM alert_triggers \
             GROUP BY alert_id, bar_time HAVING count(*) > 1) d",
        )
        .fetch_one(&mut conn)
        .await,
        "count duplicates",
    );
    let rows = ok(
        sqlx::query(
            "SELECT trigger_id, action_index, status FROM webhook_deliveries WHERE kind = 'webhook'",
        )
        .fetch_all(&mut conn)
        .await,
        "read deliveries",
    );
    out.deliveries = rows
        .iter()
        .map(|r| {
            let trigger: uuid::Uuid = r.get("trigger_id");
            let action: i32 = r.get("action_index");
            (
                format!("msg_{}_{action}", trigger.simple()),
                r.get::<String, _>("status"),
            )
        })
        .collect();
    let _ = conn.close().await;
    out
}

/// Runs one SQL count.
pub async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let n = ok(
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut conn)
            .await,
        sql,
    );
    let _ = conn.close().await;
    n
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver.

#[derive(Debug, Default)]
pub struct Seen {
    pub requests: u64,
    pub bad_signatures: u64,
    /// Requests per `webhook-id`; the first is processed, repeats are dropped.
    pub by_id: HashMap<String, u32>,
    pub processed: u64,
}

pub struct Receiver {
    pub port: u16,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

struct ReceiverState {
    verifier: standardwebhooks::Webhook,
    delay: Duration,
    seen: Arc<Mutex<Seen>>,
}

async fn hook(
    axum::extract::State(state): axum::extract::State<Arc<ReceiverState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let verified = state.verifier.verify(&body, &headers).is_ok();
    {
        let Ok(mut seen) = state.seen.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        seen.requests += 1;
        if !verified || id.is_empty() {
            seen.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        let n = seen.by_id.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            seen.processed += 1;
        }
    }
    tokio::time::sleep(state.delay).await;
    StatusCode::OK
}

impl Receiver {
    /// Verifies every request's Standard Webhooks signature with `secret`, processes each
    /// `webhook-id` once, answers 200 after `delay`.
    pub async fn start(secret: &str, delay: Duration) -> Self {
        let verifier = ok(standardwebhooks::Webhook::new(secret), "webhook secret");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let state = Arc::new(ReceiverState {
            verifier,
            delay,
            seen: Arc::clone(&seen),
        });
        let listener = ok(
            tokio::net::TcpListener::bind("127.0.0.1:0").await,
            "bind receiver",
        );
        let port = ok(listener.local_addr(), "receiver addr").port();
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(hook))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Seen {
        match self.seen.lock() {
            Ok(s) => Seen {
                requests: s.requests,
                bad_signatures: s.bad_signatures,
                by_id: s.by_id.clone(),
                processed: s.processed,
            },
            Err(_) => panic!("receiver state poisoned"),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `worker` a dispatch process logs at start (its lease owner name).
pub async fn worker_of(log: &std::path::Path) -> String {
    match wait_log(log, "dispatcher started", Duration::from_secs(20)).await {
        Some(_) => log_lines(log, "dispatcher started")[0]["worker"]
            .as_str()
            .unwrap_or_else(|| panic!("no worker in {}", log.display()))
            .to_owned(),
        None => panic!("the dispatcher did not start ({})", log.display()),
    }
}

pub async fn leased_by(url: &str, worker: &str) -> BTreeSet<uuid::Uuid> {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let ids: Vec<uuid::Uuid> = ok(
        sqlx::query_scalar(
            "SELECT id FROM webhook_deliveries WHERE lease_owner = $1 AND status = 'pending'",
        )
        .bind(worker)
        .fetch_all(&mut conn)
        .await,
        "read leased",
    );
    let _ = conn.close().await;
    ids.into_iter().collect()
}

pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

pub fn unique() -> String {
    format!("{}", uuid::Uuid::new_v4().simple())[..12].to_owned()
}
