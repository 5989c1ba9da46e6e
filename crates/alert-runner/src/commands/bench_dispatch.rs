//! `alert-runner bench-dispatch`: webhook deliveries per second, from the store's outbox to a
//! local receiver, beside the HTTP ceiling measured in the same run.
//!
//! On a scratch database next to `--database-url` (removed afterwards, also on error):
//!
//! 1. a receiver on 127.0.0.1 answers 200 to every POST, counting requests and distinct
//!    `webhook-id`s and keeping the first requests to check their signatures;
//! 2. set-up (untimed): `deliveries / 100` alerts of one user, fired on 100 bars each, every
//!    trigger with one webhook to the receiver carrying a ~600-byte envelope;
//! 3. **baseline**: a plain reqwest client posts the same bodies (signed the same way) with
//!    `--concurrency` requests in flight, without the store: the HTTP ceiling;
//! 4. **dispatch**: a [`Dispatcher`] (`--concurrency` in flight, all to the one receiver host)
//!    drains the outbox; timed until the store counts every delivery delivered;
//! 5. the receiver must have seen each delivery once (its `webhook-id`), and the sampled
//!    signatures must verify under the user's secret.
//!
//! Prints one JSON object on stdout and a summary on stderr.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alert_core::{Symbol, Timeframe};
use alert_dispatch::webhook::message_id;
use alert_dispatch::{AddressPolicy, DispatchConfig, Dispatcher, Secret, generate_secret};
use alert_store::bench::ScratchDatabase;
use alert_store::{
    AlertStatus, BackendKind, DeliveryKind, Limits, NewAlert, NewDelivery, NewNotification,
    NewTrigger, Recorded, Store, StoreOptions,
};
use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, DurationRound, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::cli::BenchDispatchArgs;

/// Triggers (each one delivery) per alert: each alert fires on this many bars.
const BARS_PER_ALERT: u32 = 100;
/// Triggers per `record_triggers` call.
const RECORD_BATCH: usize = 1_000;
/// Received requests whose signatures are verified.
const SAMPLE: usize = 100;
/// How often the end of the dispatch phase is looked for.
const COUNT_EVERY: Duration = Duration::from_millis(20);
/// How often the store's delivery counts are read before the receiver has every request.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The dispatch phase fails if no delivery completes for this long.
const STALL: Duration = Duration::from_secs(30);
/// The symbols the alerts are spread over.
const SYMBOLS: [&str; 5] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"];

/// One timed phase.
#[derive(Serialize)]
struct Phase {
    seconds: f64,
    /// Deliveries (requests) per second.
    per_second: f64,
    /// Client connections the receiver saw.
    connections: usize,
}

impl Phase {
    fn new(count: u64, elapsed: Duration, connections: usize) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            seconds,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
            connections,
        }
    }
}

#[derive(Serialize)]
struct Report {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    deliveries: u64,
    /// Deliveries the store counts delivered at the end (`deliveries`, or the run fails).
    delivered: u64,
    concurrency: usize,
    /// Mean webhook body size.
    payload_bytes: u64,
    /// Set-up: recording the triggers and their deliveries (not part of either rate).
    record_seconds: f64,
    /// The same requests from a plain HTTP client, no store.
    baseline: Phase,
    /// The dispatcher draining the outbox.
    dispatch: Phase,
    /// `dispatch.per_second / baseline.per_second`.
    ratio: f64,
    /// Received signatures checked against the user's secret.
    signatures_verified: usize,
}

pub fn run(args: &BenchDispatchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.deliveries > 0, "--deliveries must be at least 1");
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let scratch = ScratchDatabase::create(&args.database.database_url)
            .await
            .context("creating the scratch database")?;
        let result = run_on(&scratch, args).await;
        let cleaned = scratch
            .remove()
            .await
            .context("removing the scratch database");
        let report = result?;
        cleaned?;
        println!("{}", serde_json::to_string(&report)?);
        eprintln!(
            "bench-dispatch: {} deliveries to 127.0.0.1 on {}, {} in flight: dispatch {:.0}/s ({:.2} s), plain HTTP {:.0}/s ({:.2} s): {:.0}% of the HTTP ceiling; {} signatures verified",
            report.deliveries,
            report.backend,
            report.concurrency,
            report.dispatch.per_second,
            report.dispatch.seconds,
            report.baseline.per_second,
            report.baseline.seconds,
            report.ratio * 100.0,
            report.signatures_verified,
        );
        Ok(())
    })
}

async fn run_on(scratch: &ScratchDatabase, args: &BenchDispatchArgs) -> anyhow::Result<Report> {
    let store = Store::connect(
        scratch.url(),
        StoreOptions {
            limits: Limits {
                per_symbol: u32::MAX,
                per_user: u32::MAX,
            },
            ..StoreOptions::default()
        },
    )
    .await
    .context("opening the scratch database")?;
    let result = measure(&store, args).await;
    store.close().await;
    result
}

async fn measure(store: &Store, args: &BenchDispatchArgs) -> anyhow::Result<Report> {
    let n = u64::from(args.deliveries);
    let concurrency = args.concurrency;
    let receiver = Receiver::start().await?;
    let url = format!("http://{}/hooks/bench", receiver.addr);
    let user = Uuid::new_v4();
    // The user's signing secret, created now; the dispatcher reads the same one.
    let stored = store
        .webhook_secret(user, &generate_secret(), Utc::now())
        .await?;
    let secret = Secret::parse(&stored.current).context("the user's webhook secret")?;

    // Set-up (untimed): the alerts, then their triggers with one webhook each.
    let started = Instant::now();
    let (expected_ids, bodies) = record(store, user, &url, args.deliveries).await?;
    let record_seconds = started.elapsed().as_secs_f64();
    let payload_bytes = bodies.iter().map(|b| b.len() as u64).sum::<u64>() / n;

    // Baseline: the same bodies, signed the same way, from a plain client; no store.
    let bodies = Arc::new(bodies);
    let elapsed = baseline(&url, Arc::clone(&bodies), &secret, concurrency).await?;
    let seen = receiver.take();
    let baseline_rate = Phase::new(n, elapsed, seen.connections);
    anyhow::ensure!(
        seen.requests == n && seen.ids.len() as u64 == n,
        "baseline: the receiver saw {} requests with {} distinct webhook ids, expected {n}",
        seen.requests,
        seen.ids.len()
    );

    // Measured: the dispatcher drains the outbox.
    let (elapsed, delivered) = dispatch(store, n, concurrency, &receiver).await?;
    let seen = receiver.take();
    let dispatch_rate = Phase::new(n, elapsed, seen.connections);
    anyhow::ensure!(
        seen.requests == n && seen.ids.len() as u64 == n,
        "dispatch: the receiver saw {} requests with {} distinct webhook ids, expected {n}",
        seen.requests,
        seen.ids.len()
    );
    anyhow::ensure!(
        seen.ids == expected_ids,
        "dispatch: the webhook ids received are not the deliveries' message ids"
    );
    let secret = {
        let stored = store
            .webhook_secret(user, &generate_secret(), Utc::now())
            .await?;
        Secret::parse(&stored.current).context("the user's webhook secret")?
    };
    for r in &seen.samples {
        let ts: i64 = r
            .timestamp
            .parse()
            .with_context(|| format!("webhook {}: webhook-timestamp {:?}", r.id, r.timestamp))?;
        anyhow::ensure!(
            secret.verify(&r.id, ts, &r.body, &r.signature),
            "webhook {}: the signature does not verify under the user's secret",
            r.id
        );
    }
    anyhow::ensure!(
        seen.samples.len() == SAMPLE.min(args.deliveries as usize),
        "dispatch: {} requests kept for the signature check",
        seen.samples.len()
    );

    Ok(Report {
        backend: match store.kind() {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        },
        deliveries: n,
        delivered,
        concurrency,
        payload_bytes,
        record_seconds,
        ratio: if baseline_rate.per_second > 0.0 {
            dispatch_rate.per_second / baseline_rate.per_second
        } else {
            0.0
        },
        baseline: baseline_rate,
        dispatch: dispatch_rate,
        signatures_verified: seen.samples.len(),
    })
}

// ---- set-up --------------------------------------------------------------------------------

/// Creates `deliveries / 100` (rounded up) alerts of `user` with a webhook to `url`, and
/// records `deliveries` triggers of them (each alert on up to 100 consecutive bars), each with
/// one webhook delivery. Returns the deliveries' `webhook-id`s and bodies.
async fn record(
    store: &Store,
    user: Uuid,
    url: &str,
    deliveries: u32,
) -> anyhow::Result<(HashSet<String>, Vec<String>)> {
    let now = Utc::now();
    let count = deliveries.div_ceil(BARS_PER_ALERT);
    let mut alerts = Vec::with_capacity(count as usize);
    for i in 0..count {
        let symbol = SYMBOLS[i as usize % SYMBOLS.len()];
        let name = format!("{symbol} oversold on 1h, 15m confirms #{i}");
        let definition = serde_json::json!({
            "name": name, "symbol": symbol, "base_timeframe": "1h", "conditionLogic": "AND",
            "conditions": [
                {"id": "rsi_oversold", "type": "indicator", "indicator": "RSI", "component": "RSI",
                 "operator": "<", "compareWith": "value", "compareValue": 30, "timeframe": "same",
                 "settings": {"length": 14}},
                {"id": "price_above_ema", "type": "price", "operator": "crosses_above",
                 "compareWith": "indicator_component",
                 "rhs": {"indicator": "EMA", "component": "EMA", "settings": {"period": 20}},
                 "timeframe": "15m"}
            ],
            "actions": [{"type": "webhook", "url": url}],
            "trigger": "once_per_bar",
            "message": "{{symbol}} RSI {{rsi_oversold.value}} at {{close}}",
        });
        let alert = NewAlert {
            name: name.clone(),
            symbol: Symbol::new(symbol)?,
            base_timeframe: Timeframe::H1,
            definition,
            status: AlertStatus::Active,
        };
        let row = store.create_alert(user, &alert, now).await?;
        alerts.push((row.id, name, symbol));
    }

    // Bars: the last 100 closed hours.
    let hour = chrono::Duration::hours(1);
    let first_bar = now.duration_trunc(hour)? - hour * (BARS_PER_ALERT as i32 + 1);
    let mut triggers = Vec::with_capacity(deliveries as usize);
    let mut bodies = Vec::with_capacity(deliveries as usize);
    for k in 0..deliveries {
        let (alert_id, name, symbol) = &alerts[(k % count) as usize];
        let bar_time = first_bar + hour * (k / count) as i32;
        let fired_at = bar_time + hour;
        let (snapshot, payload) = envelope(*alert_id, name, symbol, bar_time, fired_at, k);
        bodies.push(payload.clone());
        triggers.push(NewTrigger {
            alert_id: *alert_id,
            user_id: user,
            symbol: (*symbol).to_owned(),
            bar_time,
            fired_at,
            snapshot,
            notification: Some(NewNotification {
                title: name.clone(),
                body: format!("{symbol} RSI 28.7 at {}", price(k)),
            }),
            deliveries: vec![NewDelivery {
                action_index: 0,
                kind: DeliveryKind::Webhook,
                url: url.to_owned(),
                secret: None,
                payload,
            }],
            spend: false,
        });
    }
    let mut ids = HashSet::with_capacity(deliveries as usize);
    for chunk in triggers.chunks(RECORD_BATCH) {
        for recorded in store.record_triggers(chunk, Utc::now()).await? {
            match recorded {
                Recorded::New { trigger_id, .. } => {
                    ids.insert(message_id(trigger_id, 0));
                }
                other => anyhow::bail!("set-up: a trigger was not recorded: {other:?}"),
            }
        }
    }
    Ok((ids, bodies))
}

fn price(k: u32) -> f64 {
    42_000.0 + f64::from(k % 1_000) * 0.25
}

/// A trigger's snapshot and the webhook envelope the runner sends for it (its shape, ~600
/// bytes).
fn envelope(
    alert_id: Uuid,
    name: &str,
    symbol: &str,
    bar_time: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    k: u32,
) -> (serde_json::Value, String) {
    let close = price(k);
    let message = format!("{symbol} RSI 28.7 at {close}");
    let snapshot = serde_json::json!({
        "symbol": symbol,
        "timeframe": "1h",
        "bar_time": bar_time.timestamp_millis(),
        "fired_at": fired_at.timestamp_millis(),
        "conditions": {
            "rsi_oversold": {"value": 28.7, "rhs": 30.0, "held": true},
            "price_above_ema": {"value": close, "rhs": close - 149.45, "held": true},
        },
        "bar": {"open": close - 250.25, "high": close + 59.25, "low": close - 360.5,
                "close": close, "volume": 1234.567},
        "message": message,
    });
    let payload = serde_json::json!({
        "type": "alert.triggered",
        "timestamp": fired_at.to_rfc3339(),
        "data": {
            "alert": {"id": alert_id, "name": name, "symbol": symbol, "timeframe": "1h"},
            "trigger": snapshot,
            "message": message,
        }
    })
    .to_string();
    (snapshot, payload)
}

// ---- the two phases ------------------------------------------------------------------------

/// Posts every body once, `concurrency` requests in flight, signed as the dispatcher signs;
/// returns the time taken.
async fn baseline(
    url: &str,
    bodies: Arc<Vec<String>>,
    secret: &Secret,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(bodies.len()) {
        let (client, bodies, next) = (client.clone(), Arc::clone(&bodies), Arc::clone(&next));
        let (url, secret) = (url.to_owned(), secret.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let id = format!("msg_baseline_{i}");
                let ts = Utc::now().timestamp();
                let signature = secret.sign(&id, ts, body.as_bytes());
                let response = client
                    .post(&url)
                    .header("webhook-id", id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signature)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "baseline: the receiver answered {status}"
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Runs a dispatcher until the store counts `n` deliveries delivered; returns the time taken
/// and the count.
async fn dispatch(
    store: &Store,
    n: u64,
    concurrency: usize,
    receiver: &Receiver,
) -> anyhow::Result<(Duration, u64)> {
    let config = DispatchConfig {
        poll: Duration::from_millis(50),
        batch: 256,
        max_in_flight: concurrency,
        // One receiver host: it may have every request in flight.
        per_host: concurrency,
        per_user: concurrency,
        policy: AddressPolicy {
            allow_private: true,
            allowed_ports: None,
        },
        ..DispatchConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), config, None)?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let handle = tokio::spawn(dispatcher.run(cancel.clone()));
    let waited = wait_delivered(store, n, started, receiver).await;
    cancel.cancel();
    handle.await.context("the dispatcher task")?;
    waited
}

/// Waits until the store counts `n` deliveries delivered; returns the time since `started`
/// and the count.
///
/// Every [`COUNT_EVERY`] once the receiver has seen `n` requests, and every [`CHECK_EVERY`]
/// before (to catch failures and stalls), the store's delivery counts are read. Reading them
/// every 20 ms throughout would compete with the dispatcher for the database: on SQLite the
/// scan cost about a fifth of the rate.
async fn wait_delivered(
    store: &Store,
    n: u64,
    started: Instant,
    receiver: &Receiver,
) -> anyhow::Result<(Duration, u64)> {
    let mut last = 0;
    let mut progressed = Instant::now();
    let mut next_check = Instant::now() + CHECK_EVERY;
    loop {
        tokio::time::sleep(COUNT_EVERY).await;
        if receiver.requests() < n && Instant::now() < next_check {
            continue;
        }
        next_check = Instant::now() + CHECK_EVERY;
        let counts = store.delivery_counts().await?;
        let delivered = u64::try_from(counts.delivered).unwrap_or(0);
        if delivered >= n {
            return Ok((started.elapsed(), delivered));
        }
        anyhow::ensure!(
            counts.failed == 0 && counts.cancelled == 0,
            "dispatch: {} deliveries failed and {} were cancelled",
            counts.failed,
            counts.cancelled
        );
        if delivered != last {
            last = delivered;
            progressed = Instant::now();
        } else if progressed.elapsed() > STALL {
            anyhow::bail!(
                "dispatch: stuck at {delivered} of {n} delivered for {} s",
                STALL.as_secs()
            );
        }
    }
}

// ---- the receiver --------------------------------------------------------------------------

/// A request kept for the signature check.
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
}

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ids: Mutex<HashSet<String>>,
    peers: Mutex<HashSet<SocketAddr>>,
    samples: Mutex<Vec<Received>>,
}

/// What the receiver saw since the last [`Receiver::take`].
struct Seen {
    requests: u64,
    ids: HashSet<String>,
    /// Client connections the requests came over.
    connections: usize,
    samples: Vec<Received>,
}

struct Receiver {
    addr: SocketAddr,
    tally: Arc<Tally>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the receiver")?;
        let addr = listener.local_addr()?;
        let tally = Arc::new(Tally::default());
        let app = axum::Router::new()
            .route("/hooks/{name}", axum::routing::post(receive))
            .with_state(Arc::clone(&tally));
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Ok(Self { addr, tally })
    }

    /// Requests received since the last [`Receiver::take`].
    fn requests(&self) -> u64 {
        self.tally.requests.load(Ordering::SeqCst)
    }

    /// What was received so far; the tally starts again from zero.
    fn take(&self) -> Seen {
        Seen {
            requests: self.tally.requests.swap(0, Ordering::SeqCst),
            ids: std::mem::take(&mut *lock(&self.tally.ids)),
            connections: std::mem::take(&mut *lock(&self.tally.peers)).len(),
            samples: std::mem::take(&mut *lock(&self.tally.samples)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn receive(
    State(tally): State<Arc<Tally>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    lock(&tally.ids).insert(id.clone());
    lock(&tally.peers).insert(peer);
    {
        let mut samples = lock(&tally.samples);
        if samples.len() < SAMPLE {
            samples.push(Received {
                id,
                timestamp: header("webhook-timestamp"),
                signature: header("webhook-signature"),
                body,
            });
        }
    }
    tally.requests.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}
