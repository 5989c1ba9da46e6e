//! The scale-out proof (issue 11, part 5), with the real binary on this machine's PostgreSQL
//! (a scratch database per run) and NATS JetStream (2.9; `NATS_URL`, default
//! `nats://127.0.0.1:4222`; a stream and subject prefix of each run's own, deleted at the end
//! even on failure):
//! - **reference**: one `serve --source replay` (a `dispatch` sends what its dispatcher had not
//!   when the replay ended) over a replayed market (three
//!   symbols, 240 1m bars, eight alerts in every trigger mode, each sending webhooks to a
//!   receiver inside the test that verifies every Standard Webhooks signature and processes
//!   each `webhook-id` once);
//! - **scale-out, undisturbed**: `ingest --source replay` → the bus → 3 shards
//!   (`run --shard I/3 --source bus --bus-replayed`) plus a hot standby for shard 0 → 2
//!   `dispatch` processes → the same kind of receiver, on a fresh database with the same alerts;
//! - **scale-out, disturbed**: the same, while the owner of shard 0 is SIGKILLed mid-run (its
//!   standby takes over and resumes the shard's durable consumer) and one dispatcher is
//!   SIGKILLed mid-run (its leased deliveries are retaken when the lease, 30 s, expires).
//!
//! For each scale-out run against the reference: the same set of (alert, bar) triggers, no
//! (alert, bar) twice, the same set of webhook deliveries (by alert, bar and action), all
//! delivered, every delivery's `webhook-id` received with a valid signature and processed
//! once after deduplication. Triggers and deliveries are compared by (alert name, bar): each
//! run imports the alerts anew, so ids differ. A table of what was done and what held is
//! printed.
//!
//! Ignored by default (about a minute and a half; the dispatcher lease is most of it);
//! `.ci/run` runs it: `cargo test --workspace --test scale_out -- --ignored --nocapture`
//! (`SCALE_OUT_KEEP=1` keeps the logs).

#[path = "common/scale.rs"]
mod scale;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use alert_marketdata::bus::async_nats::jetstream;
use alert_marketdata::bus::{self, StreamSettings, Subjects};
use alert_store::bench::ScratchDatabase;
use scale::*;
use sqlx::{Connection, Row};

const SHARDS: u32 = 3;
/// The shard whose owner gets a standby (and, disturbed, is killed): AAAUSDT's, the busiest.
const KILLED_SHARD: u32 = 0;
const OWNED: &str = "shard owned: starting the runner";
const STANDBY: &str = "another process owns this shard: hot standby, waiting for its lock";
const CONSUMING: &str = "candle bus: consuming";
/// The receiver's time per request, so the outbox drains over seconds and dispatchers hold
/// leases while the shards run.
const RECEIVER_DELAY: Duration = Duration::from_millis(40);
/// The dispatcher's lease with `--webhook-timeout-ms 2000` (`max(3 × timeout, 30 s)`).
const LEASE: Duration = Duration::from_secs(30);

/// Runs `f` on a runtime of its own on another thread: cleanup from `Drop`, which may run
/// while a test panics inside its runtime.
fn block_on_thread<F, T>(f: F) -> Option<T>
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        Some(rt.block_on(f()))
    })
    .join()
    .ok()
    .flatten()
}

/// A JetStream stream of this test's own, deleted on drop (also when the test fails).
struct StreamGuard {
    url: String,
    settings: StreamSettings,
}

impl StreamGuard {
    async fn create(tag: &str) -> Self {
        let settings = StreamSettings {
            name: format!("TEST_SCALE_OUT_{tag}"),
            subjects: ok(
                Subjects::new(&format!("test-scale-{tag}.candles")),
                "prefix",
            ),
            max_age: Duration::from_secs(900),
            duplicate_window: bus::DUPLICATE_WINDOW,
        };
        let url = nats_url();
        let client = ok(
            bus::connect(&url, "scale-out test").await,
            "NATS (is nats-server -js running at NATS_URL?)",
        );
        ok(
            bus::ensure_stream(&jetstream::new(client), &settings).await,
            "create the stream",
        );
        Self { url, settings }
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--bus".into(),
            self.url.clone(),
            "--bus-stream".into(),
            self.settings.name.clone(),
            "--bus-subject-prefix".into(),
            self.settings.subjects.prefix().to_owned(),
        ]
    }

    async fn stream(&self) -> jetstream::stream::Stream {
        let client = ok(bus::connect(&self.url, "scale-out test").await, "NATS");
        ok(
            jetstream::new(client).get_stream(&self.settings.name).await,
            "get stream",
        )
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.settings.name.clone());
        let deleted = block_on_thread(move || {
            Box::pin(async move {
                let client = bus::connect(&url, "scale-out cleanup").await.ok()?;
                jetstream::new(client).delete_stream(&name).await.ok()
            })
        })
        .flatten();
        if deleted.is_none() {
            eprintln!(
                "could not delete the test stream {} (nats stream rm {0})",
                self.settings.name
            );
        }
    }
}

/// A scratch database, dropped on drop (also when the test fails).
struct DbGuard(Option<ScratchDatabase>);

impl DbGuard {
    async fn create() -> Self {
        Self(Some(scratch().await))
    }

    fn url(&self) -> String {
        self.0
            .as_ref()
            .map(|d| d.url().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            let _ = block_on_thread(move || Box::pin(async move { db.remove().await.is_ok() }));
        }
    }
}

/// The processes of a run, killed on drop.
#[derive(Default)]
struct Procs(Vec<(String, Child, PathBuf)>);

impl Procs {
    fn add(&mut self, name: &str, child: Child, log: &Path) -> usize {
        self.0.push((name.to_owned(), child, log.to_owned()));
        self.0.len() - 1
    }

    fn running(&mut self, i: usize) -> bool {
        matches!(self.0[i].1.try_wait(), Ok(None))
    }

    fn kill(&mut self, i: usize) {
        sigkill(&mut self.0[i].1);
    }

    /// SIGTERMs the ones still running and waits for them: each must exit 0.
    async fn stop(&mut self, which: &[usize]) {
        for &i in which {
            if self.running(i) {
                sigterm(&self.0[i].1);
            }
        }
        for &i in which {
            let (name, child, log) = &mut self.0[i];
            let status = wait_exit(child, Duration::from_secs(30)).await;
            assert!(
                status.is_some_and(|s| s.success()),
                "{name} did not stop cleanly: {status:?} (log {})",
                log.display()
            );
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.0 {
            sigkill(child);
        }
    }
}

/// A webhook delivery, by what it is for: (alert name, bar open time ms, action index).
type DeliveryKey = (String, i64, i32);

/// What a run left, and what its receiver saw.
struct RunResult {
    out: Outcome,
    /// Every webhook delivery by what it is for → (webhook-id, status).
    deliveries: BTreeMap<DeliveryKey, (String, String)>,
    seen: Seen,
}

async fn deliveries(url: &str) -> BTreeMap<DeliveryKey, (String, String)> {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let rows = ok(
        sqlx::query(
            "SELECT a.name, (extract(epoch FROM t.bar_time) * 1000)::bigint AS bar, \
             d.action_index, d.trigger_id, d.status FROM webhook_deliveries d \
             JOIN alert_triggers t ON t.id = d.trigger_id JOIN alerts a ON a.id = d.alert_id \
             WHERE d.kind = 'webhook'",
        )
        .fetch_all(&mut conn)
        .await,
        "read deliveries",
    );
    let _ = conn.close().await;
    rows.iter()
        .map(|r| {
            let trigger: uuid::Uuid = r.get("trigger_id");
            let action: i32 = r.get("action_index");
            (
                (r.get("name"), r.get("bar"), action),
                (
                    format!("msg_{}_{action}", trigger.simple()),
                    r.get("status"),
                ),
            )
        })
        .collect()
}

const UNDELIVERED: &str =
    "SELECT count(*) FROM webhook_deliveries WHERE kind = 'webhook' AND status <> 'delivered'";

/// Waits until every webhook delivery is delivered; false after `limit`.
async fn drained(url: &str, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if count(url, UNDELIVERED).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A database with the alerts, and a receiver holding its user's signing secret.
async fn prepare(dir: &Path) -> (DbGuard, Receiver) {
    let db = DbGuard::create().await;
    let secret = run_cli(
        &["webhook-secret", "show", "--user", &USER.to_string()],
        &db.url(),
    );
    let receiver = Receiver::start(&secret, RECEIVER_DELAY).await;
    seed(&db.url(), dir, Some(&receiver.url()));
    (db, receiver)
}

async fn collect(url: &str, receiver: &Receiver) -> RunResult {
    RunResult {
        out: outcome(url).await,
        deliveries: deliveries(url).await,
        seen: receiver.seen(),
    }
}

/// One `serve --source replay` (as fast as it goes; its own dispatcher sends as it records).
/// serve stops when the replay ends, its dispatcher with it: one `dispatch` sends what was
/// left.
async fn reference(dir: &Path) -> RunResult {
    let (db, receiver) = prepare(dir).await;
    let url = db.url();
    let mut procs = Procs::default();
    let log = dir.join("reference-serve.log");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--source", "replay", "--feed", "1m", "--replay"])
        .arg(dir.join("market"))
        .args(["--database-url", &url, "--poll-ms", "100", "--no-dashboard"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(dispatch_flags());
    log_to(&mut cmd, &log);
    let mut serve = ok(cmd.spawn(), "spawn serve");
    let status = wait_exit(&mut serve, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the reference serve did not finish cleanly: {status:?} (log {})",
        log.display()
    );
    let log = dir.join("reference-dispatch.log");
    let dispatch = procs.add("dispatch", spawn_dispatch(&url, &[], &log), &log);
    assert!(
        drained(&url, Duration::from_secs(60)).await,
        "the reference's outbox did not drain"
    );
    procs.stop(&[dispatch]).await;
    let got = collect(&url, &receiver).await;
    assert!(
        got.out.triggers.len() > 300 && got.deliveries.len() > 300,
        "the market fires plenty: {} triggers, {} deliveries",
        got.out.triggers.len(),
        got.deliveries.len()
    );
    assert_eq!(got.out.duplicates, 0);
    got
}

fn durable(i: u32) -> String {
    format!("alert-runner-1m-shard-{i}-of-{SHARDS}")
}

/// `run --shard I/3 --source bus --bus-replayed` with `/readyz` on `port`.
fn spawn_shard(bus: &StreamGuard, url: &str, i: u32, port: u16, log: &Path) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--shard", &format!("{i}/{SHARDS}")])
        .args(["--source", "bus", "--bus-replayed", "--feed", "1m"])
        .args(bus.flags())
        .args(["--database-url", url, "--poll-ms", "100"])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .args(["--log-format", "json"])
        .env_remove("ALERT_BUS_DURABLE")
        .env_remove("ALERT_SOURCE");
    log_to(&mut cmd, log);
    ok(cmd.spawn(), "spawn a shard")
}

async fn ready(port: u16) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Whether shard `i`'s durable consumer has taken (and acknowledged) every message up to
/// `last`.
async fn consumed(stream: &jetstream::stream::Stream, i: u32, last: u64) -> bool {
    let Ok(info) = stream.consumer_info(&durable(i)).await else {
        return false;
    };
    // A consumer recreated at sequence S+1 that acked nothing yet reports a floor of 0.
    let start = match info.config.deliver_policy {
        jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence } => {
            start_sequence.saturating_sub(1)
        }
        _ => 0,
    };
    info.num_pending == 0
        && info.num_ack_pending == 0
        && info.ack_floor.stream_sequence.max(start) >= last
}

async fn delivered_among(url: &str, ids: &BTreeSet<uuid::Uuid>) -> i64 {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let ids: Vec<uuid::Uuid> = ids.iter().copied().collect();
    let n: i64 = ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE id = ANY($1) AND status = 'delivered'",
        )
        .bind(&ids)
        .fetch_one(&mut conn)
        .await,
        "count delivered",
    );
    let _ = conn.close().await;
    n
}

/// ingest → bus → 3 shards (+ a standby for shard 0) → 2 dispatchers; with `disturb`, shard
/// 0's owner and one dispatcher are SIGKILLed mid-run. What it left, and what was done.
async fn scale_out(dir: &Path, expected: &RunResult, disturb: bool) -> (RunResult, String) {
    let tag = unique();
    let scenario = if disturb { "disturbed" } else { "undisturbed" };
    let bus = StreamGuard::create(&tag).await;
    let (db, receiver) = prepare(dir).await;
    let url = db.url();
    let log = |name: &str| dir.join(format!("{scenario}-{name}.log"));
    let mut procs = Procs::default();
    let started = Instant::now();

    // The shards' owners first: their durables start at the empty stream's head.
    let mut owners = Vec::new();
    let mut ports = Vec::new();
    for i in 0..SHARDS {
        let (port, log) = (free_port(), log(&format!("shard{i}")));
        let child = spawn_shard(&bus, &url, i, port, &log);
        owners.push(procs.add(&format!("shard {i}/{SHARDS}"), child, &log));
        ports.push(port);
    }
    for (i, &owner) in owners.iter().enumerate() {
        let log = procs.0[owner].2.clone();
        assert!(
            wait_log(&log, OWNED, Duration::from_secs(30))
                .await
                .is_some()
                && wait_log(&log, CONSUMING, Duration::from_secs(30))
                    .await
                    .is_some(),
            "shard {i} owns and consumes ({})",
            log.display()
        );
    }
    let standby_port = free_port();
    let standby_log = log(&format!("shard{KILLED_SHARD}-standby"));
    let standby = procs.add(
        &format!("standby of shard {KILLED_SHARD}/{SHARDS}"),
        spawn_shard(&bus, &url, KILLED_SHARD, standby_port, &standby_log),
        &standby_log,
    );
    assert!(
        wait_log(&standby_log, STANDBY, Duration::from_secs(30))
            .await
            .is_some(),
        "the standby waits ({})",
        standby_log.display()
    );

    let per_host = ["--webhook-per-host", "4"];
    let (log_a, log_b) = (log("dispatch-a"), log("dispatch-b"));
    let dispatch_a = procs.add(
        "dispatch A",
        spawn_dispatch(&url, &per_host, &log_a),
        &log_a,
    );
    let dispatch_b = procs.add(
        "dispatch B",
        spawn_dispatch(&url, &per_host, &log_b),
        &log_b,
    );
    let worker_a = worker_of(&log_a).await;
    worker_of(&log_b).await;

    // The feed, once, at the replay's pace (about six seconds).
    let ingest_log = log("ingest");
    let mut cmd = Command::new(BIN);
    cmd.args(["ingest", "--source", "replay", "--replay"])
        .arg(dir.join("market"))
        .args(["--replay-speed", &SPEED.to_string(), "--feed", "1m"])
        .args(bus.flags())
        .args(["--log-format", "json"]);
    log_to(&mut cmd, &ingest_log);
    let ingest = procs.add("ingest", ok(cmd.spawn(), "spawn ingest"), &ingest_log);
    let fed = Instant::now();

    let mut done = vec![format!(
        "ingest → bus → 3 shards + standby of {KILLED_SHARD}/3 → 2 dispatchers"
    )];
    let mut killed_leases = BTreeSet::new();
    let mut killed_dispatcher_at = None;
    if disturb {
        // Kill shard 0's owner once a quarter of its symbol's triggers are recorded, and
        // dispatcher A once a fifth of the deliveries are delivered while it holds leases.
        let symbols: Vec<&str> = SYMBOLS
            .iter()
            .copied()
            .filter(|s| alert_core::shard_of(s, SHARDS) == KILLED_SHARD)
            .collect();
        let in_shard = format!(
            "SELECT count(*) FROM alert_triggers WHERE symbol IN ({})",
            symbols
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let expected_in_shard: usize = symbols
            .iter()
            .map(|s| expected.out.by_symbol.get(*s).copied().unwrap_or(0))
            .sum();
        let total = expected.deliveries.len();
        let delivered_sql = "SELECT count(*) FROM webhook_deliveries \
                             WHERE kind = 'webhook' AND status = 'delivered'";
        let mut shard_killed = None;
        while started.elapsed() < Duration::from_secs(60)
            && (shard_killed.is_none() || killed_dispatcher_at.is_none())
        {
            if shard_killed.is_none() {
                let n = count(&url, &in_shard).await as usize;
                if n >= expected_in_shard / 4 {
                    assert!(
                        procs.running(owners[KILLED_SHARD as usize]),
                        "shard {KILLED_SHARD}'s owner still runs when it is killed"
                    );
                    assert!(
                        n < expected_in_shard,
                        "killed mid-run: {n}/{expected_in_shard}"
                    );
                    procs.kill(owners[KILLED_SHARD as usize]);
                    shard_killed = Some((Instant::now(), n));
                }
            }
            if killed_dispatcher_at.is_none() {
                let delivered = count(&url, delivered_sql).await as usize;
                if delivered >= total / 5 {
                    let leased = leased_by(&url, &worker_a).await;
                    if !leased.is_empty() {
                        procs.kill(dispatch_a);
                        // What it held at its death (some may have completed just before).
                        killed_leases = leased_by(&url, &worker_a).await;
                        killed_dispatcher_at = Some((Instant::now(), delivered));
                        assert!(
                            delivered < total,
                            "killed mid-run: {delivered}/{total} delivered"
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let Some((killed_at, recorded)) = shard_killed else {
            panic!("shard {KILLED_SHARD}'s owner was never killed")
        };
        let Some((_, delivered)) = killed_dispatcher_at else {
            panic!("dispatcher A never held leases after a fifth was delivered")
        };
        let took_over = wait_log(&standby_log, OWNED, Duration::from_secs(20)).await;
        assert!(
            took_over.is_some(),
            "the standby took over ({})",
            standby_log.display()
        );
        let take_over = killed_at.elapsed();
        done.push(format!(
            "shard {KILLED_SHARD}/3 owner SIGKILLed {:.1} s into the feed ({recorded}/{expected_in_shard} of its triggers recorded), standby owned {:.1} s later",
            (killed_at - fed).as_secs_f64(),
            take_over.as_secs_f64()
        ));
        done.push(format!(
            "dispatcher A SIGKILLed at {delivered}/{total} delivered holding {} leases",
            killed_leases.len()
        ));
        println!("[{scenario}] {}", done[1..].join("; "));
        assert!(
            take_over < Duration::from_secs(5),
            "take-over within seconds: {take_over:?}"
        );
    }

    // The feed ends; then every current owner has taken the whole stream and is warm.
    let status = wait_exit(&mut procs.0[ingest].1, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "ingest did not finish cleanly: {status:?} (log {})",
        ingest_log.display()
    );
    let stream = bus.stream().await;
    let mut info_stream = stream.clone();
    let last = ok(info_stream.info().await, "stream info")
        .state
        .last_sequence;
    assert_eq!(
        last,
        BARS as u64 * SYMBOLS.len() as u64,
        "every closed bar published once"
    );
    let current = |i: u32| {
        if disturb && i == KILLED_SHARD {
            standby_port
        } else {
            ports[i as usize]
        }
    };
    let wait_started = Instant::now();
    for i in 0..SHARDS {
        loop {
            if ready(current(i)).await && consumed(&stream, i, last).await {
                break;
            }
            assert!(
                wait_started.elapsed() < Duration::from_secs(60),
                "shard {i} did not take the stream (logs in {})",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // SIGTERM: each evaluates and records what it took, then exits 0 (the standby too).
    let mut shards: Vec<usize> = owners
        .iter()
        .copied()
        .filter(|&i| !disturb || i != owners[KILLED_SHARD as usize])
        .collect();
    shards.push(standby);
    procs.stop(&shards).await;
    let consumed_in = fed.elapsed();

    // The outbox drains (a killed dispatcher's leases only after they expire).
    let limit = match killed_dispatcher_at {
        Some((at, _)) => (LEASE + Duration::from_secs(30)).saturating_sub(at.elapsed()),
        None => Duration::from_secs(30),
    }
    .max(Duration::from_secs(15));
    let all_delivered = drained(&url, limit).await;
    let drained_in = fed.elapsed();
    let dispatchers: Vec<usize> = if disturb {
        vec![dispatch_b]
    } else {
        vec![dispatch_a, dispatch_b]
    };
    procs.stop(&dispatchers).await;
    assert!(
        all_delivered,
        "the outbox did not drain within {limit:?} (logs in {})",
        dir.display()
    );
    if disturb {
        let retaken = delivered_among(&url, &killed_leases).await;
        assert_eq!(
            retaken as usize,
            killed_leases.len(),
            "the killed dispatcher's leases were retaken and delivered"
        );
        done.push(format!(
            "its {retaken} leased deliveries retaken after the lease"
        ));
    }
    done.push(format!(
        "bars consumed in {:.1} s, outbox drained in {:.1} s",
        consumed_in.as_secs_f64(),
        drained_in.as_secs_f64()
    ));
    let got = collect(&url, &receiver).await;
    drop(procs);
    drop(db);
    let name = bus.settings.name.clone();
    drop(bus);
    let client = ok(bus::connect(&nats_url(), "scale-out test").await, "NATS");
    assert!(
        jetstream::new(client).get_stream(&name).await.is_err(),
        "the test stream {name} was deleted"
    );
    (got, done.join("; "))
}

/// One row of the table.
struct TableRow {
    scenario: &'static str,
    done: String,
    triggers: String,
    duplicates: i64,
    deliveries: String,
    held: bool,
}

fn check(scenario: &'static str, done: String, expected: &RunResult, got: &RunResult) -> TableRow {
    let same_triggers = got.out.triggers == expected.out.triggers;
    let expected_keys: BTreeSet<&DeliveryKey> = expected.deliveries.keys().collect();
    let got_keys: BTreeSet<&DeliveryKey> = got.deliveries.keys().collect();
    let delivered = got
        .deliveries
        .values()
        .filter(|(_, s)| s == "delivered")
        .count();
    let ids: BTreeSet<&String> = got.deliveries.values().map(|(id, _)| id).collect();
    let received: BTreeSet<&String> = got.seen.by_id.keys().collect();
    let repeats: u64 = got.seen.by_id.values().map(|n| u64::from(*n) - 1).sum();
    let held = same_triggers
        && got.out.duplicates == 0
        && expected_keys == got_keys
        && delivered == got.deliveries.len()
        && ids == received
        && got.seen.processed == got.deliveries.len() as u64
        && got.seen.bad_signatures == 0;
    if !held {
        eprintln!(
            "[{scenario}] DID NOT HOLD: missing triggers {:?}, unexpected {:?}, duplicates {}, \
             missing deliveries {:?}, unexpected {:?}, undelivered {}, not received {}, \
             received unknown {}, bad signatures {}",
            expected
                .out
                .triggers
                .difference(&got.out.triggers)
                .take(5)
                .collect::<Vec<_>>(),
            got.out
                .triggers
                .difference(&expected.out.triggers)
                .take(5)
                .collect::<Vec<_>>(),
            got.out.duplicates,
            expected_keys
                .difference(&got_keys)
                .take(5)
                .collect::<Vec<_>>(),
            got_keys
                .difference(&expected_keys)
                .take(5)
                .collect::<Vec<_>>(),
            got.deliveries.len() - delivered,
            ids.difference(&received).count(),
            received.difference(&ids).count(),
            got.seen.bad_signatures
        );
    }
    TableRow {
        scenario,
        done,
        triggers: format!(
            "{}/{}{}",
            expected.out.triggers.len(),
            got.out.triggers.len(),
            if same_triggers {
                ", the same set"
            } else {
                ", sets differ"
            }
        ),
        duplicates: got.out.duplicates,
        deliveries: format!(
            "{delivered}/{} delivered ({}); {} webhook-ids received, each processed once ({} requests, {repeats} repeats dropped)",
            got.deliveries.len(),
            if expected_keys == got_keys {
                "the reference's set"
            } else {
                "NOT the reference's set"
            },
            got.seen.by_id.len(),
            got.seen.requests
        ),
        held,
    }
}

fn print_table(rows: &[TableRow]) {
    println!();
    println!(
        "| scenario | what was done | triggers expected/got | duplicates | deliveries | held? |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.done,
            r.triggers,
            r.duplicates,
            r.deliveries,
            if r.held { "yes" } else { "NO" }
        );
    }
    println!();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the scale-out proof: about a minute and a half on PostgreSQL and NATS; run by .ci/run"]
async fn scale_out_records_and_delivers_what_one_process_does() {
    let suite = Instant::now();
    let dir = tempdir("scale-out");
    write_market(&dir.join("market"));
    for s in SYMBOLS {
        println!("{s}: shard {} of {SHARDS}", alert_core::shard_of(s, SHARDS));
    }

    let started = Instant::now();
    let expected = reference(&dir).await;
    let mut rows = vec![TableRow {
        scenario: "reference",
        done: format!(
            "one `serve --source replay`, then a `dispatch` for what was left ({:.1} s)",
            started.elapsed().as_secs_f64()
        ),
        triggers: format!("—/{}", expected.out.triggers.len()),
        duplicates: expected.out.duplicates,
        deliveries: format!(
            "{}/{} delivered; {} webhook-ids received ({} requests)",
            expected
                .deliveries
                .values()
                .filter(|(_, s)| s == "delivered")
                .count(),
            expected.deliveries.len(),
            expected.seen.by_id.len(),
            expected.seen.requests
        ),
        held: expected.seen.processed == expected.deliveries.len() as u64
            && expected.seen.bad_signatures == 0,
    }];

    for disturb in [false, true] {
        let started = Instant::now();
        let (got, done) = scale_out(&dir, &expected, disturb).await;
        let done = format!("{done} ({:.1} s)", started.elapsed().as_secs_f64());
        rows.push(check(
            if disturb { "disturbed" } else { "undisturbed" },
            done,
            &expected,
            &got,
        ));
    }
    print_table(&rows);
    println!(
        "scale-out proof: {:.1} s in all",
        suite.elapsed().as_secs_f64()
    );
    if std::env::var_os("SCALE_OUT_KEEP").is_none() && rows.iter().all(|r| r.held) {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs: {}", dir.display());
    }
    for r in &rows {
        assert!(r.held, "{} did not hold (see above)", r.scenario);
    }
}
