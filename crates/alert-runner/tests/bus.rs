//! The candle bus end to end, with the real binary, this machine's NATS (JetStream, 2.9;
//! `NATS_URL`, default `nats://127.0.0.1:4222`) and PostgreSQL (scratch databases):
//! `alert-runner ingest --source replay` publishes a replayed market (published again: the
//! stream keeps each closed bar once), and `alert-runner run --source bus` on it records
//! exactly the (alert, bar) triggers `alert-runner run --source replay` records on the same
//! files. The test makes its own stream (unique name and subject prefix) and deletes it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alert_marketdata::bus::async_nats::jetstream;
use alert_marketdata::bus::{self, StreamSettings, Subjects};
use alert_store::bench::ScratchDatabase;

#[path = "common/scale.rs"]
mod scale;

use scale::{
    BARS, BIN, SYMBOLS, admin_url, nats_url, ok, outcome, tempdir, unique, wait_exit, write_market,
};

const USER: &str = "b0500000-0000-4000-8000-000000000001";

const ALERTS: &str = r#"[
  {"name": "AAA every bar close", "symbol": "AAAUSDT", "base_timeframe": "1m",
   "conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": 0}],
   "trigger": "once_per_bar_close", "actions": [{"type": "notify"}]},
  {"name": "AAA crosses EMA(9)", "symbol": "AAAUSDT", "base_timeframe": "1m",
   "conditions": [{"id": "x", "type": "price", "operator": "crosses",
     "compareWith": "indicator_component",
     "rhs": {"indicator": "EMA", "component": "EMA", "settings": {"period": 9}},
     "timeframe": "same"}],
   "actions": [{"type": "notify"}]},
  {"name": "BBB RSI below 45", "symbol": "BBBUSDT", "base_timeframe": "1m",
   "conditions": [{"id": "rsi", "type": "indicator", "indicator": "RSI",
     "component": "RSI", "operator": "<", "compareValue": 45, "timeframe": "same",
     "settings": {"length": 14}}],
   "actions": [{"type": "notify"}]},
  {"name": "CCC crosses 100", "symbol": "CCCUSDT", "base_timeframe": "1m",
   "conditions": [{"id": "c", "type": "price", "operator": "crosses", "compareValue": 100}],
   "actions": [{"type": "notify"}]},
  {"name": "CCC 5m MACD histogram above 0", "symbol": "CCCUSDT", "base_timeframe": "5m",
   "conditions": [{"id": "m", "type": "indicator", "indicator": "MACD",
     "component": "Histogram", "operator": ">", "compareValue": 0, "timeframe": "same"}],
   "actions": [{"type": "notify"}]}
]"#;

fn alert_runner(args: &[&str], log: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    let file = ok(
        std::fs::File::options().create(true).append(true).open(log),
        "open log",
    );
    let err = ok(file.try_clone(), "clone log");
    cmd.stdout(file).stderr(err).stdin(Stdio::null());
    cmd.env_remove("ALERT_BUS_URL").env_remove("ALERT_SOURCE");
    cmd
}

fn run_ok(cmd: &mut Command, what: &str, log: &Path) {
    let status = ok(cmd.status(), what);
    assert!(
        status.success(),
        "{what}: {status}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

async fn scratch_with_alerts(dir: &Path, log: &Path) -> ScratchDatabase {
    let db = ok(
        ScratchDatabase::create(&admin_url()).await,
        "scratch database",
    );
    let alerts = dir.join("alerts.json");
    ok(std::fs::write(&alerts, ALERTS), "write alerts");
    let alerts = alerts.to_string_lossy().into_owned();
    run_ok(
        &mut alert_runner(
            &[
                "alerts",
                "import",
                "--user",
                USER,
                &alerts,
                "--database-url",
                db.url(),
            ],
            log,
        ),
        "alerts import",
        log,
    );
    db
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    let mut stream = ok(js.get_stream(name).await, "get stream");
    ok(stream.info().await, "stream info").state.messages
}

#[tokio::test]
async fn run_on_the_bus_records_what_run_on_the_replay_records() {
    let dir = tempdir("market");
    let market = dir.join("market");
    ok(std::fs::create_dir_all(&market), "market dir");
    write_market(&market);
    let market_arg = market.to_string_lossy().into_owned();
    let log = dir.join("log.txt");

    // Baseline: `run --source replay` (ends with the replay).
    let replay_db = scratch_with_alerts(&dir, &log).await;
    run_ok(
        &mut alert_runner(
            &[
                "run",
                "--source",
                "replay",
                "--replay",
                &market_arg,
                "--database-url",
                replay_db.url(),
                "--poll-ms",
                "100",
                "--log-format",
                "json",
            ],
            &log,
        ),
        "run --source replay",
        &log,
    );
    let expected = outcome(replay_db.url()).await.triggers;
    assert!(expected.len() > 100, "the alerts fire: {}", expected.len());

    // The bus: a stream of this test's own, made first (ingest uses it as it is).
    let tag = unique();
    let settings = StreamSettings {
        name: format!("TEST_CLI_{tag}"),
        subjects: ok(Subjects::new(&format!("test-{tag}.candles")), "prefix"),
        max_age: Duration::from_secs(600),
        duplicate_window: bus::DUPLICATE_WINDOW,
    };
    let client = ok(bus::connect(&nats_url(), "bus cli test").await, "NATS");
    let js = jetstream::new(client);
    ok(bus::ensure_stream(&js, &settings).await, "create stream");
    let url = nats_url();
    let bus_flags = [
        "--bus",
        url.as_str(),
        "--bus-stream",
        settings.name.as_str(),
        "--bus-subject-prefix",
        settings.subjects.prefix(),
    ];
    let durable = format!("test-runner-{tag}");

    // The runner first: its durable starts at the empty stream's head, so it sees every bar
    // live.
    let bus_db = scratch_with_alerts(&dir, &log).await;
    let mut args = vec!["run", "--source", "bus"];
    args.extend(bus_flags);
    args.extend([
        "--bus-durable",
        durable.as_str(),
        "--bus-replayed",
        "--database-url",
        bus_db.url(),
        "--poll-ms",
        "100",
        "--log-format",
        "json",
    ]);
    let mut runner = Proc(ok(
        alert_runner(&args, &log).spawn(),
        "spawn run --source bus",
    ));
    let stream = ok(js.get_stream(&settings.name).await, "stream");
    let started = Instant::now();
    while stream.consumer_info(&durable).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the runner's durable consumer never appeared; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            ok(runner.0.try_wait(), "try_wait").is_none(),
            "run --source bus exited; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // (a) ingest publishes the replay; published again, the stream keeps each bar once.
    let mut ingest = vec!["ingest"];
    ingest.extend(bus_flags);
    ingest.extend([
        "--source",
        "replay",
        "--replay",
        &market_arg,
        "--log-format",
        "json",
    ]);
    run_ok(&mut alert_runner(&ingest, &log), "ingest", &log);
    let published = stream_messages(&js, &settings.name).await;
    assert_eq!(published, (BARS as u64) * SYMBOLS.len() as u64);
    run_ok(&mut alert_runner(&ingest, &log), "ingest again", &log);
    assert_eq!(
        stream_messages(&js, &settings.name).await,
        published,
        "re-published closed bars are duplicates"
    );

    // (b) Once the runner has taken every message, it stops (SIGTERM: it records what it
    // took) and its triggers are the replay run's.
    let started = Instant::now();
    loop {
        let info = ok(stream.consumer_info(&durable).await, "consumer info");
        if info.num_pending == 0 && info.ack_floor.stream_sequence >= published {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the runner did not take the stream: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Recorded by now or at the latest while shutting down.
    let settle = Instant::now();
    while outcome(bus_db.url()).await.triggers.len() < expected.len()
        && settle.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &runner.0.id().to_string()])
        .status();
    let status = wait_exit(&mut runner.0, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "run --source bus stops cleanly: {status:?}"
    );
    let got = outcome(bus_db.url()).await.triggers;
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "bus triggers differ from the replay's: {} vs {}; missing {missing:?}, extra {extra:?}",
        got.len(),
        expected.len()
    );
    println!(
        "{} triggers, equal on the bus and on the replay; {published} messages, re-publish deduplicated",
        got.len()
    );

    ok(js.delete_stream(&settings.name).await, "delete stream");
    drop(runner);
    ok(replay_db.remove().await, "remove database");
    ok(bus_db.remove().await, "remove database");
    let _ = std::fs::remove_dir_all(&dir);
}
