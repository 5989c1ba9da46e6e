//! The chaos suite (issue 9): `serve` on PostgreSQL with a replayed market and a local webhook
//! receiver, disturbed on purpose, must record and deliver exactly what an undisturbed run
//! does.
//!
//! Each scenario runs on a fresh database of a private PostgreSQL 15 cluster the suite starts
//! (and removes) itself, so restarting PostgreSQL never disturbs the machine's shared server:
//! - baseline: undisturbed;
//! - (a) the runner is SIGKILLed at 10 random points while alerts fire, restarted each time;
//! - (b) PostgreSQL is restarted under a running `serve` (`pg_ctl restart -m fast`, then a
//!   crash-like `stop -m immediate` and start) — `serve` must ride it out, not exit;
//! - (c) the webhook receiver fails 50 % of requests (503) and hangs on 5 % (it processes the
//!   message, then answers only after the sender's timeout).
//!
//! After each: the set of (alert, bar) triggers equals the baseline's, no (alert, bar) twice,
//! every webhook delivery delivered (what `serve` leaves queued when its replay ends is drained
//! by `alert-runner dispatch`), every delivery's `webhook-id` reached the receiver with a valid
//! Standard Webhooks signature, and the receiver, deduplicating by `webhook-id`, processed each
//! exactly once. A table of what was tried and what held is printed.
//!
//! Ignored by default (about two minutes); `.ci/run` runs it:
//! `cargo test --workspace --test chaos -- --ignored --nocapture --test-threads=1`
//! (`CHAOS_SEED=n` repeats a run's random choices; `CHAOS_ONLY=b` runs the baseline and the
//! scenarios named, `CHAOS_KEEP=1` keeps the logs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};

#[path = "common/scale.rs"]
mod scale;

use scale::{
    BARS, BIN, SPEED, free_port, log_to, ok, run_cli, sigterm, tempdir, wait_exit, write_market,
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const USER: uuid::Uuid = uuid::Uuid::from_u128(0xc4a0_5000_0000_4000_8000_0000_0000_0001);
const JWT_SECRET: &str = "chaos-suite-jwt-secret-0123456789abcdef";
/// The sender's per-attempt timeout; a hanging receiver answers well after it.
const WEBHOOK_TIMEOUT_MS: u64 = 400;
const HANG: Duration = Duration::from_millis(1200);

/// SplitMix64: the suite's seeded randomness (kill points, receiver failures).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// A private PostgreSQL cluster.

/// A PostgreSQL 15 cluster in a temporary directory, on its own port, trust auth; stopped and
/// removed on drop. Run as user `postgres` when the suite runs as root (initdb refuses root).
struct Cluster {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let dir = tempdir("pg");
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let cluster = Self {
            dir,
            port: free_port(),
            as_postgres,
        };
        if as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .status();
            if !chown.is_ok_and(|s| s.success()) {
                return Err("chown of the cluster directory to postgres failed".into());
            }
        }
        let data = cluster.data();
        cluster.tool(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        cluster.ctl(&["start"])?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a PostgreSQL program (as `postgres` when we are root), in the cluster's directory.
    fn tool(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = format!("{PG_BIN}/{program}");
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &path]);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// `pg_ctl ACTION`, waiting for it to finish; `start` and `restart` with the server options.
    fn ctl(&self, action: &[&str]) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.join("postgres.log").display().to_string();
        // fsync off: a crash of the server process (not of the machine) loses nothing.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60"];
        args.extend_from_slice(action);
        if matches!(action.first(), Some(&"start") | Some(&"restart")) {
            args.extend_from_slice(&["-o", &options]);
        }
        self.tool("pg_ctl", &args)
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    async fn create_database(&self, name: &str) -> String {
        let mut conn = ok(
            sqlx::PgConnection::connect(&self.url("postgres")).await,
            "connect to the private cluster",
        );
        ok(
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await,
            "create database",
        );
        let _ = conn.close().await;
        self.url(name)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop", "-m", "immediate"]);
        if std::env::var_os("CHAOS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The market and the alerts.

/// Alerts that fire often, in every trigger mode, each with webhook actions to `hook`.
fn alerts_json(hook: &str) -> String {
    let wh = |path: &str| format!(r#"{{"type": "webhook", "url": "{hook}/{path}"}}"#);
    let alerts = [
        format!(
            r#"{{"name": "AAA every bar close", "symbol": "AAAUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "p", "type": "price", "operator": ">", "compareValue": 0}}],
                "trigger": "once_per_bar_close", "actions": [{}],
                "message": "{{{{symbol}}}} closed at {{{{close}}}}"}}"#,
            wh("every")
        ),
        format!(
            r#"{{"name": "AAA crosses EMA(9)", "symbol": "AAAUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "x", "type": "price", "operator": "crosses",
                  "compareWith": "indicator_component",
                  "rhs": {{"indicator": "EMA", "component": "EMA", "settings": {{"period": 9}}}},
                  "timeframe": "same"}}],
                "actions": [{}, {{"type": "notify"}}]}}"#,
            wh("cross")
        ),
        format!(
            r#"{{"name": "AAA above SMA(20), debounce 3", "symbol": "AAAUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "s", "type": "price", "operator": ">",
                  "compareWith": "indicator_component",
                  "rhs": {{"indicator": "SMA", "settings": {{"period": 20}}}}, "timeframe": "same"}}],
                "debounce_bars": 3, "actions": [{}]}}"#,
            wh("debounce")
        ),
        format!(
            r#"{{"name": "BBB RSI below 45", "symbol": "BBBUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "rsi", "type": "indicator", "indicator": "RSI",
                  "component": "RSI", "operator": "<", "compareValue": 45, "timeframe": "same",
                  "settings": {{"length": 14}}}}],
                "actions": [{}]}}"#,
            wh("rsi-low")
        ),
        format!(
            r#"{{"name": "BBB RSI above 55", "symbol": "BBBUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "rsi", "type": "indicator", "indicator": "RSI",
                  "operator": ">", "compareValue": 55, "settings": {{"length": 14}}}}],
                "message": "{{{{symbol}}}} RSI {{{{rsi.value}}}}",
                "actions": [{}, {{"type": "webhook", "url": "{hook}/rsi-message", "body": "message"}}]}}"#,
            wh("rsi-high")
        ),
        format!(
            r#"{{"name": "CCC crosses 100", "symbol": "CCCUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "c", "type": "price", "operator": "crosses", "compareValue": 100}}],
                "actions": [{}]}}"#,
            wh("level")
        ),
        format!(
            r#"{{"name": "CCC 5m MACD histogram above 0", "symbol": "CCCUSDT", "base_timeframe": "5m",
                "conditions": [{{"id": "m", "type": "indicator", "indicator": "MACD",
                  "component": "Histogram", "operator": ">", "compareValue": 0, "timeframe": "same"}}],
                "actions": [{}]}}"#,
            wh("macd")
        ),
        format!(
            r#"{{"name": "CCC once below 97.5", "symbol": "CCCUSDT", "base_timeframe": "1m",
                "conditions": [{{"id": "p", "type": "price", "operator": "<", "compareValue": 97.5}}],
                "trigger": "once", "actions": [{}]}}"#,
            wh("once")
        ),
    ];
    format!("[{}]", alerts.join(",\n"))
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver.

#[derive(Clone, Copy, Debug)]
enum Mode {
    Healthy,
    /// Fails `fail` of the requests (503, not processed); processes `hang` of them but
    /// answers only after [`HANG`] (the sender has given up by then and sends again).
    Flaky {
        fail: f64,
        hang: f64,
    },
}

#[derive(Debug, Default)]
struct Seen {
    requests: u64,
    failed: u64,
    hung: u64,
    bad_signatures: u64,
    /// Requests per `webhook-id`; the receiver processes the first, drops the repeats.
    by_id: HashMap<String, u32>,
    processed: u64,
}

struct Receiver {
    port: u16,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

struct ReceiverState {
    mode: Mode,
    verifier: standardwebhooks::Webhook,
    rng: Mutex<Rng>,
    seen: Arc<Mutex<Seen>>,
}

async fn hook(
    axum::extract::State(state): axum::extract::State<Arc<ReceiverState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let roll = state.rng.lock().map(|mut r| r.unit()).unwrap_or(0.0);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let verified = state.verifier.verify(&body, &headers).is_ok();
    let (fail, hang) = match state.mode {
        Mode::Healthy => (0.0, 0.0),
        Mode::Flaky { fail, hang } => (fail, hang),
    };
    {
        let Ok(mut seen) = state.seen.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR;
        };
        seen.requests += 1;
        if !verified || id.is_empty() {
            seen.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
        if roll < fail {
            seen.failed += 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        // Deduplication by webhook-id: a repeat is acknowledged, not processed again.
        let n = seen.by_id.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            seen.processed += 1;
        }
        if roll < fail + hang {
            seen.hung += 1;
        } else {
            return StatusCode::OK;
        }
    }
    tokio::time::sleep(HANG).await;
    StatusCode::OK
}

impl Receiver {
    async fn start(mode: Mode, secret: &str, seed: u64) -> Self {
        let verifier = ok(standardwebhooks::Webhook::new(secret), "webhook secret");
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let state = Arc::new(ReceiverState {
            mode,
            verifier,
            rng: Mutex::new(Rng(seed)),
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
}

// ---------------------------------------------------------------------------------------------
// Processes.

const RETRY_SCHEDULE_STEPS: usize = 40;

/// Settings `serve` and `dispatch` share: loopback receivers, short timeouts, quick retries
/// (40 of them: a 55 % failing receiver fails a delivery for good with odds of 1e-10).
fn dispatch_args(cmd: &mut Command) {
    let schedule = vec!["100ms"; RETRY_SCHEDULE_STEPS].join(",");
    cmd.args([
        "--webhook-allow-private",
        "--webhook-timeout-ms",
        &WEBHOOK_TIMEOUT_MS.to_string(),
        "--webhook-retry-schedule",
        &schedule,
        "--dispatch-poll-ms",
        "100",
        // Longer than an attempt: in-flight attempts finish at shutdown.
        "--dispatch-shutdown-grace-ms",
        "2000",
        "--log-format",
        "json",
    ]);
}

fn spawn_serve(market: &Path, url: &str, log: &Path) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--source", "replay", "--feed", "1m", "--replay"])
        .arg(market)
        .args(["--replay-speed", &SPEED.to_string()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--database-url", url])
        .args(["--poll-ms", "100", "--jwt-secret", JWT_SECRET]);
    dispatch_args(&mut cmd);
    log_to(&mut cmd, log);
    ok(cmd.spawn(), "spawn serve")
}

fn spawn_dispatch(url: &str, log: &Path) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["dispatch", "--database-url", url])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())]);
    dispatch_args(&mut cmd);
    log_to(&mut cmd, log);
    ok(cmd.spawn(), "spawn dispatch")
}

// ---------------------------------------------------------------------------------------------
// What a run left in the database.

#[derive(Debug, Default)]
struct Outcome {
    /// (alert name, bar open time ms).
    triggers: BTreeSet<(String, i64)>,
    duplicates: i64,
    /// Triggers without their webhook deliveries (the outbox row is written with the trigger).
    without_deliveries: i64,
    /// `webhook-id` → status of every webhook delivery.
    deliveries: BTreeMap<String, String>,
}

impl Outcome {
    fn delivered(&self) -> usize {
        self.deliveries
            .values()
            .filter(|s| *s == "delivered")
            .count()
    }
}

async fn outcome(url: &str) -> Outcome {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let rows = ok(
        sqlx::query(
            "SELECT a.name, (extract(epoch FROM t.bar_time) * 1000)::bigint AS bar \
             FROM alert_triggers t JOIN alerts a ON a.id = t.alert_id",
        )
        .fetch_all(&mut conn)
        .await,
        "read triggers",
    );
    let triggers = rows
        .iter()
        .map(|r| (r.get::<String, _>("name"), r.get::<i64, _>("bar")))
        .collect();
    let duplicates: i64 = ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT alert_id, bar_time FROM alert_triggers \
             GROUP BY alert_id, bar_time HAVING count(*) > 1) d",
        )
        .fetch_one(&mut conn)
        .await,
        "count duplicates",
    );
    let without_deliveries: i64 = ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM alert_triggers t WHERE NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.trigger_id = t.id)",
        )
        .fetch_one(&mut conn)
        .await,
        "count triggers without deliveries",
    );
    let rows = ok(
        sqlx::query(
            "SELECT trigger_id, action_index, status FROM webhook_deliveries WHERE kind = 'webhook'",
        )
        .fetch_all(&mut conn)
        .await,
        "read deliveries",
    );
    let deliveries = rows
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
    Outcome {
        triggers,
        duplicates,
        without_deliveries,
        deliveries,
    }
}

async fn pending_deliveries(url: &str) -> Option<i64> {
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let n = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE kind = 'webhook' AND status = 'pending'",
    )
    .fetch_one(&mut conn)
    .await
    .ok();
    let _ = conn.close().await;
    n
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// One scenario's database, receiver and logs.
struct Stage {
    name: &'static str,
    url: String,
    market: PathBuf,
    log: PathBuf,
    receiver: Receiver,
}

impl Stage {
    async fn new(cluster: &Cluster, dir: &Path, name: &'static str, mode: Mode, seed: u64) -> Self {
        let url = cluster.create_database(&format!("chaos_{name}")).await;
        // Migrates the database and creates the user's signing secret, which the receiver
        // verifies with.
        let secret = run_cli(
            &["webhook-secret", "show", "--user", &USER.to_string()],
            &url,
        );
        let receiver = Receiver::start(mode, &secret, seed).await;
        let alerts = dir.join(format!("{name}.alerts.json"));
        ok(
            std::fs::write(
                &alerts,
                alerts_json(&format!("http://127.0.0.1:{}", receiver.port)),
            ),
            "write alerts",
        );
        let file = alerts.display().to_string();
        run_cli(
            &[
                "alerts",
                "import",
                "--webhook-allow-private",
                "--user",
                &USER.to_string(),
                &file,
            ],
            &url,
        );
        Self {
            name,
            url,
            market: dir.join("market"),
            log: dir.join(format!("{name}.log")),
            receiver,
        }
    }

    fn serve(&self) -> Child {
        spawn_serve(&self.market, &self.url, &self.log)
    }

    /// Runs `serve` to the end of the replay; whether it exited successfully.
    async fn serve_to_end(&self) -> bool {
        let mut child = self.serve();
        wait_exit(&mut child, Duration::from_secs(90))
            .await
            .is_some_and(|s| s.success())
    }

    /// `alert-runner dispatch` until no webhook delivery is pending (leases of killed
    /// processes expire first: up to 30 s).
    async fn drain(&self) -> Duration {
        let started = Instant::now();
        let mut child = spawn_dispatch(&self.url, &self.log);
        while started.elapsed() < Duration::from_secs(120) {
            if pending_deliveries(&self.url).await == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sigterm(&child);
        let _ = wait_exit(&mut child, Duration::from_secs(20)).await;
        started.elapsed()
    }

    async fn check(&self, baseline: Option<&Outcome>, done: String, extra: bool) -> Checked {
        let got = outcome(&self.url).await;
        let seen = match self.receiver.seen.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => panic!("receiver state"),
        };
        let expected = baseline.map_or(got.triggers.len(), |b| b.triggers.len());
        let same_triggers = baseline.is_none_or(|b| b.triggers == got.triggers);
        let same_deliveries = baseline.is_none_or(|b| b.deliveries.len() == got.deliveries.len());
        let ids: BTreeSet<&String> = got.deliveries.keys().collect();
        let received: BTreeSet<&String> = seen.by_id.keys().collect();
        let held = extra
            && same_triggers
            && same_deliveries
            && !got.triggers.is_empty()
            && got.duplicates == 0
            && got.without_deliveries == 0
            && got.delivered() == got.deliveries.len()
            && ids == received
            && seen.processed == got.deliveries.len() as u64
            && seen.bad_signatures == 0;
        if !held {
            let missing: Vec<_> = baseline
                .map(|b| b.triggers.difference(&got.triggers).take(5).collect())
                .unwrap_or_default();
            let extra_triggers: Vec<_> = baseline
                .map(|b| got.triggers.difference(&b.triggers).take(5).collect())
                .unwrap_or_default();
            eprintln!(
                "[{}] DID NOT HOLD: missing triggers {missing:?}, unexpected {extra_triggers:?}, \
                 duplicates {}, without deliveries {}, not received {}, received unknown {}, \
                 seen {seen:?} (log: {})",
                self.name,
                got.duplicates,
                got.without_deliveries,
                ids.difference(&received).count(),
                received.difference(&ids).count(),
                self.log.display()
            );
        }
        let row = Checked {
            scenario: self.name,
            done,
            triggers: format!("{expected}/{}", got.triggers.len()),
            duplicates: got.duplicates,
            deliveries: format!("{}/{}", got.delivered(), got.deliveries.len()),
            receiver: format!(
                "{} ({} requests, {} repeats dropped)",
                seen.by_id.len(),
                seen.requests,
                seen.by_id.values().map(|n| u64::from(*n) - 1).sum::<u64>()
            ),
            held,
        };
        self.receiver.task.abort();
        row
    }
}

struct Checked {
    scenario: &'static str,
    done: String,
    triggers: String,
    duplicates: i64,
    deliveries: String,
    receiver: String,
    held: bool,
}

fn print_table(rows: &[Checked]) {
    println!();
    println!(
        "| scenario | what was done | triggers (expected/got) | duplicate (alert, bar) | deliveries delivered/total | receiver: distinct webhook-ids | held? |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.done,
            r.triggers,
            r.duplicates,
            r.deliveries,
            r.receiver,
            if r.held { "yes" } else { "NO" }
        );
    }
    println!();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chaos suite: about two minutes; run by .ci/run"]
async fn chaos_suite() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("chaos suite: seed {seed} (CHAOS_SEED={seed} repeats it)");
    let suite_started = Instant::now();
    let mut rng = Rng(seed);
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(e) => panic!("the private PostgreSQL cluster did not start: {e}"),
    };
    println!("private PostgreSQL 15 cluster on port {}", cluster.port);
    let dir = tempdir("suite");
    ok(std::fs::create_dir_all(dir.join("market")), "market dir");
    write_market(&dir.join("market"));
    let mut rows = Vec::new();
    let only = std::env::var("CHAOS_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|o| name.starts_with(o));

    // Baseline: undisturbed.
    let t = Instant::now();
    let stage = Stage::new(&cluster, &dir, "baseline", Mode::Healthy, rng.next()).await;
    let clean = stage.serve_to_end().await;
    stage.drain().await;
    let baseline = outcome(&stage.url).await;
    rows.push(
        stage
            .check(
                None,
                format!("undisturbed run ({:.0} s)", t.elapsed().as_secs_f64()),
                clean,
            )
            .await,
    );
    assert!(
        baseline.triggers.len() > 300,
        "the market fires plenty: {}",
        baseline.triggers.len()
    );

    // (a) SIGKILL at random points while alerts fire, restart each time.
    if wanted("a") {
        let t = Instant::now();
        let stage = Stage::new(&cluster, &dir, "a_sigkill", Mode::Healthy, rng.next()).await;
        let run_ms = (BARS as f64 * 60_000.0 / SPEED) as u64;
        let mut kills = Vec::new();
        let mut survived = true;
        for _ in 0..10 {
            let mut child = stage.serve();
            let at = rng.between(400, run_ms);
            tokio::time::sleep(Duration::from_millis(at)).await;
            match child.try_wait() {
                Ok(None) => {
                    let _ = child.kill(); // SIGKILL
                    let _ = child.wait();
                    let recorded = outcome(&stage.url).await.triggers.len();
                    println!("(a) SIGKILL at {at} ms: {recorded} triggers recorded so far");
                    kills.push(at);
                }
                other => {
                    println!("(a) serve was not running at {at} ms: {other:?}");
                    survived = false;
                }
            }
        }
        let finished = stage.serve_to_end().await;
        let drained = stage.drain().await;
        rows.push(
        stage
            .check(
                Some(&baseline),
                format!(
                    "{} SIGKILLs at {kills:?} ms after start, restarted each time; drained in {:.0} s ({:.0} s)",
                    kills.len(),
                    drained.as_secs_f64(),
                    t.elapsed().as_secs_f64()
                ),
                survived && finished && kills.len() == 10,
            )
            .await,
    );
    }

    // (b) PostgreSQL restarted under a running serve: a clean restart, then a crash-like stop.
    if wanted("b") {
        let t = Instant::now();
        let stage = Stage::new(&cluster, &dir, "b_pg_restart", Mode::Healthy, rng.next()).await;
        let mut child = stage.serve();
        tokio::time::sleep(Duration::from_millis(rng.between(1500, 2500))).await;
        let before = outcome(&stage.url).await.triggers.len();
        let fast = cluster.ctl(&["restart", "-m", "fast"]);
        println!("(b) pg_ctl restart -m fast after {before} triggers: {fast:?}");
        let alive_after_first = matches!(child.try_wait(), Ok(None));
        tokio::time::sleep(Duration::from_millis(rng.between(800, 1500))).await;
        let before = outcome(&stage.url).await.triggers.len();
        let stop = cluster.ctl(&["stop", "-m", "immediate"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = cluster.ctl(&["start"]);
        println!(
            "(b) pg_ctl stop -m immediate after {before} triggers: {stop:?}, start: {start:?}"
        );
        let status = wait_exit(&mut child, Duration::from_secs(90)).await;
        println!("(b) serve exited: {status:?}");
        let drained = stage.drain().await;
        rows.push(
        stage
            .check(
                Some(&baseline),
                format!(
                    "PostgreSQL `restart -m fast`, then `stop -m immediate` + start, under one serve (exit: {}); drained in {:.0} s ({:.0} s)",
                    status.map_or("none".to_owned(), |s| s.to_string()),
                    drained.as_secs_f64(),
                    t.elapsed().as_secs_f64()
                ),
                fast.is_ok()
                    && stop.is_ok()
                    && start.is_ok()
                    && alive_after_first
                    && status.is_some_and(|s| s.success()),
            )
            .await,
    );
    }

    // (c) A receiver that fails half the requests and hangs on 5 %.
    if wanted("c") {
        let t = Instant::now();
        let stage = Stage::new(
            &cluster,
            &dir,
            "c_flaky_receiver",
            Mode::Flaky {
                fail: 0.5,
                hang: 0.05,
            },
            rng.next(),
        )
        .await;
        let clean = stage.serve_to_end().await;
        let drained = stage.drain().await;
        let (failed, hung) = stage
            .receiver
            .seen
            .lock()
            .map(|s| (s.failed, s.hung))
            .unwrap_or_default();
        rows.push(
        stage
            .check(
                Some(&baseline),
                format!(
                    "receiver answered 503 {failed} times, hung {hung} times ({} ms, timeout {WEBHOOK_TIMEOUT_MS} ms); drained in {:.0} s ({:.0} s)",
                    HANG.as_millis(),
                    drained.as_secs_f64(),
                    t.elapsed().as_secs_f64()
                ),
                clean && failed > 0 && hung > 0,
            )
            .await,
    );
    }

    println!(
        "chaos suite: seed {seed}, {:.0} s in all",
        suite_started.elapsed().as_secs_f64()
    );
    print_table(&rows);
    drop(cluster);
    let failed: Vec<_> = rows
        .iter()
        .filter(|r| !r.held)
        .map(|r| r.scenario)
        .collect();
    if failed.is_empty() && std::env::var_os("CHAOS_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        failed.is_empty(),
        "did not hold: {failed:?} (seed {seed}; logs in {})",
        dir.display()
    );
}
