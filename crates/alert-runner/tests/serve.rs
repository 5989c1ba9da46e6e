//! The live runner end to end, as a user runs it: `serve` on the embedded default records
//! triggers within seconds; `run` on a replayed market, killed with SIGKILL again and again
//! and restarted, records exactly the triggers of a run that was never killed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alert_store::{Store, StoreOptions, TriggerQuery};

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const USER: uuid::Uuid = uuid::Uuid::from_u128(0x1111_2222_3333_4444_5555_6666_7777_8888);

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ar-serve-{tag}-{}", uuid::Uuid::new_v4()));
    assert!(std::fs::create_dir_all(&d).is_ok());
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_181)
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// (alert name, bar time ms) of every trigger recorded in `db`.
async fn recorded(db: &Path) -> BTreeSet<(String, i64)> {
    let url = format!("sqlite://{}", db.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open {url}")
    };
    let mut names = std::collections::HashMap::new();
    let Ok(alerts) = store
        .list_alerts(
            USER,
            &alert_store::AlertQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
    else {
        panic!("list alerts")
    };
    for a in alerts {
        names.insert(a.id, a.name);
    }
    let mut out = BTreeSet::new();
    let mut before = None;
    loop {
        let Ok(page) = store
            .list_triggers(
                USER,
                &TriggerQuery {
                    before,
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await
        else {
            panic!("list triggers")
        };
        for t in &page {
            let fresh = out.insert((
                names.get(&t.alert_id).cloned().unwrap_or_default(),
                t.bar_time.timestamp_millis(),
            ));
            assert!(fresh, "a trigger recorded twice");
        }
        match page.last() {
            Some(last) if page.len() == 1000 => {
                before = Some(alert_store::Cursor {
                    at: last.fired_at,
                    id: last.id,
                })
            }
            _ => break,
        }
    }
    store.close().await;
    out
}

fn import(db: &Path, alerts: &Path) {
    let out = Command::new(BIN)
        .args([
            "alerts",
            "import",
            "--user",
            &USER.to_string(),
            "--database-url",
        ])
        .arg(format!("sqlite://{}", db.display()))
        .arg(alerts)
        .output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "import: {out:?}"
    );
}

fn start_run(dir: &Path, db: &Path, speed: Option<&str>) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--source",
        "replay",
        "--feed",
        "1h",
        "--poll-ms",
        "100",
        "--log-format",
        "json",
        "--replay",
    ])
    .arg(dir.join("market"))
    .arg("--database-url")
    .arg(format!("sqlite://{}", db.display()))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(s) = speed {
        cmd.args(["--replay-speed", s]);
    }
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("spawn: {e}"),
    }
}

fn wait(child: &mut Child, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_record_exactly_the_undisturbed_triggers() {
    let dir = tempdir("restart");
    assert!(std::fs::create_dir_all(dir.join("market")).is_ok());
    let candles =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../indicators/tests/golden/btc_1h.candles.csv");
    assert!(std::fs::copy(&candles, dir.join("market/BTCUSDT.csv")).is_ok());
    let alerts =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backtest_btc_1h.alerts.json");

    // The undisturbed run.
    let clean = dir.join("clean.db");
    import(&clean, &alerts);
    let mut child = start_run(&dir, &clean, None);
    assert!(
        wait(&mut child, Duration::from_secs(120)),
        "the undisturbed run finished"
    );
    let want = recorded(&clean).await;
    assert!(want.len() > 1000, "the replay fires plenty: {}", want.len());

    // The same, killed with SIGKILL at several points and restarted each time.
    let killed = dir.join("killed.db");
    import(&killed, &alerts);
    let mut kills = 0;
    for delay_ms in [700u64, 1300, 400, 1900, 900] {
        let mut child = start_run(&dir, &killed, Some("20000000"));
        std::thread::sleep(Duration::from_millis(delay_ms));
        if let Ok(None) = child.try_wait() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            kills += 1;
        }
    }
    let mut child = start_run(&dir, &killed, None);
    assert!(
        wait(&mut child, Duration::from_secs(120)),
        "the final run finished"
    );
    let got = recorded(&killed).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(kills >= 3, "the process was killed mid-run {kills} times");
    let lost: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "lost {lost:?}, extra {extra:?}"
    );
}

#[test]
fn serve_on_the_embedded_default_records_triggers_within_30_seconds() {
    let dir = tempdir("default");
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sim-speed",
            "600",
        ])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        panic!("spawn serve")
    };
    let started = Instant::now();
    let mut fired = false;
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(30) && !(fired && ready) {
        std::thread::sleep(Duration::from_millis(250));
        ready |= http_get(port, "/readyz").is_some_and(|(s, _)| s == 200);
        fired |= http_get(port, "/metrics").is_some_and(|(_, body)| {
            body.lines()
                .any(|l| l.starts_with("alert_runner_triggers_total") && !l.ends_with(" 0"))
        });
    }
    let health = http_get(port, "/healthz");
    // SIGTERM: a graceful stop exits 0.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = wait(&mut child, Duration::from_secs(20));
    let db_exists = dir.join("alert-runner.db").exists();
    let mut logs = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut logs);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(health.is_some_and(|(s, _)| s == 200), "/healthz");
    assert!(ready, "/readyz turned ready");
    assert!(fired, "a trigger was recorded within 30 s");
    assert!(db_exists, "SQLite in the working directory");
    assert!(stopped, "SIGTERM stops serve with exit code 0");
    assert!(
        logs.lines().any(|l| l.contains("\"alert fired\"")),
        "fired alerts are visible in the (JSON) log"
    );
}

/// An HTTP/1.1 POST of a JSON body; (status, body).
fn http_post(port: u16, path: &str, auth: Option<&str>, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The value of a metric line starting with `series` (name and labels), if exported.
fn metric(port: u16, series: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn serve_refuses_ingest_without_a_service_key() {
    let dir = tempdir("ingest-nokey");
    let out = Command::new(BIN)
        .args(["serve", "--source", "ingest", "--listen", "127.0.0.1:0"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("a.db").display()))
        .env_remove("ALERT_SERVICE_KEY")
        .output();
    let Ok(out) = out else { panic!("spawn serve") };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started without a key");
    assert!(
        stderr.contains("--source ingest needs a service key")
            && stderr.contains("ALERT_SERVICE_KEY"),
        "a clear message: {stderr}"
    );
    // `run` has no HTTP server to receive candles.
    let out = Command::new(BIN)
        .args(["run", "--source", "ingest", "--service-key", "k"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.join("b.db").display()))
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.as_ref().is_ok_and(|o| !o.status.success()
        && String::from_utf8_lossy(&o.stderr).contains("use `alert-runner serve`")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_ingest_fires_on_pushed_candles() {
    const KEY: &str = "test-service-key-0123456789abcdef";
    let dir = tempdir("ingest");
    let db = dir.join("ingest.db");
    let alerts = dir.join("alerts.json");
    let written = std::fs::write(
        &alerts,
        r#"[{"name": "BTC above 100", "symbol": "BTCUSDT", "base_timeframe": "1m",
             "conditions": [{"id": "p", "type": "price", "operator": ">", "compareWith": "value", "compareValue": 100}],
             "action": {"type": "notify"}},
            {"name": "ETH above 1", "symbol": "ETHUSDT", "base_timeframe": "1m",
             "conditions": [{"id": "p", "type": "price", "operator": ">", "compareWith": "value", "compareValue": 1}],
             "action": {"type": "notify"}}]"#,
    );
    assert!(written.is_ok());
    import(&db, &alerts);

    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--source",
            "ingest",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-ms",
            "100",
            "--log-format",
            "json",
        ])
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .env("ALERT_SERVICE_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        panic!("spawn serve")
    };
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(30) && !ready {
        std::thread::sleep(Duration::from_millis(100));
        ready = http_get(port, "/readyz").is_some_and(|(s, _)| s == 200);
    }

    let now = chrono::Utc::now().timestamp_millis();
    let m0 = now - now.rem_euclid(60_000); // the current 1m bar: newer than the alert
    let candle = |t: i64, close: f64, closed: bool| {
        format!(
            r#"{{"symbol":"BTCUSDT","open_time":{t},"open":{close},"high":{close},"low":{close},"close":{close},"volume":5,"closed":{closed}}}"#
        )
    };
    let good = format!(
        r#"{{"candles":[{},{}]}}"#,
        candle(m0 - 60_000, 90.0, true),
        candle(m0, 150.0, false)
    );
    let bearer = format!("Bearer {KEY}");

    let no_key = http_post(port, "/v1/candles", None, &good);
    let wrong_key = http_post(port, "/v1/candles", Some("Bearer not-the-key"), &good);
    let prefix_key = http_post(
        port,
        "/v1/candles",
        Some(&bearer[..bearer.len() - 1]),
        &good,
    );
    let bad = format!(
        r#"{{"candles":[{},{}]}}"#,
        candle(m0 - 60_000, 90.0, true),
        r#"{"symbol":"BTCUSDT","open_time":0,"open":1,"high":1,"low":2,"close":1,"volume":1}"#
    );
    let bad = http_post(port, "/v1/candles", Some(&bearer), &bad);
    let accepted = http_post(port, "/v1/candles", Some(&bearer), &good);
    // A retry of the same batch: the closed bar is a duplicate (skipped, counted), the
    // in-progress update is fed again (no second trigger on the bar).
    let again = http_post(port, "/v1/candles", Some(&bearer), &good);

    let mut fired = false;
    while started.elapsed() < Duration::from_secs(60) && !fired {
        fired = metric(port, "alert_runner_triggers_total").is_some_and(|n| n >= 1.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    let btc_gauge = metric(
        port,
        r#"alert_runner_alerts_active_by_symbol{symbol="BTCUSDT"}"#,
    );
    let other_gauge = metric(
        port,
        r#"alert_runner_alerts_active_by_symbol{symbol="other"}"#,
    );
    let rejected_total = metric(port, "alert_runner_candles_rejected_total");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = wait(&mut child, Duration::from_secs(20));
    let got = recorded(&db).await;
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        ready,
        "/readyz turned ready (ingest symbols are warm at once)"
    );
    for (name, r) in [
        ("no key", &no_key),
        ("wrong key", &wrong_key),
        ("a prefix of the key", &prefix_key),
    ] {
        let Some((status, body)) = r else {
            panic!("{name}: no response")
        };
        assert_eq!(*status, 401, "{name}: {body}");
        let body = json(body);
        assert_eq!(body["error"]["code"], "unauthorized", "{name}: {body}");
        assert!(
            !body.to_string().contains(KEY),
            "{name}: the key is never echoed"
        );
    }
    let Some((status, body)) = bad else {
        panic!("no response")
    };
    assert_eq!(status, 400, "{body}");
    let body = json(&body);
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(body["error"]["path"], "candles[1].high", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expected high >= low")),
        "{body}"
    );
    let Some((status, body)) = accepted else {
        panic!("no response")
    };
    assert_eq!(status, 202, "{body}");
    assert_eq!(json(&body)["accepted"], 2, "{body}");
    let Some((status, body)) = again else {
        panic!("no response")
    };
    assert_eq!(status, 202, "{body}");
    let again = json(&body);
    assert_eq!(
        (again["accepted"].as_u64(), again["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(
        again["rejections"][0]["path"], "candles[0].open_time",
        "{body}"
    );
    assert!(fired, "the pushed candle fired the alert");
    assert_eq!(btc_gauge, Some(1.0), "per-symbol gauge on /metrics");
    assert_eq!(other_gauge, Some(0.0), "two symbols, well under the top 50");
    assert!(
        rejected_total.is_some_and(|n| n >= 1.0),
        "{rejected_total:?}"
    );
    assert!(stopped, "SIGTERM stops serve with exit code 0");
    let want: BTreeSet<(String, i64)> = [("BTC above 100".to_owned(), m0)].into();
    assert_eq!(got, want, "exactly one trigger, on the current bar");
}

/// Requests a test receiver got: (path, headers, body).
type Hooks = std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, Vec<u8>)>>>;

async fn start_receiver() -> (u16, Hooks) {
    let hooks: Hooks = Default::default();
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
        panic!("bind receiver")
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let app = axum::Router::new()
        .route(
            "/{path}",
            axum::routing::post(
                |axum::extract::State(hooks): axum::extract::State<Hooks>,
                 axum::extract::Path(path): axum::extract::Path<String>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    if let Ok(mut h) = hooks.lock() {
                        h.push((path, headers, body.to_vec()));
                    }
                    "ok"
                },
            ),
        )
        .with_state(hooks.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hooks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sends_signed_webhooks_for_fired_alerts() {
    const KEY: &str = "test-service-key-0123456789abcdef";
    let (rx_port, hooks) = start_receiver().await;
    let dir = tempdir("webhooks");
    let db = dir.join("hooks.db");
    let alerts = dir.join("alerts.json");
    let written = std::fs::write(
        &alerts,
        format!(
            r#"[{{"name": "BTC above 100", "symbol": "BTCUSDT", "base_timeframe": "1m",
                 "conditions": [{{"id": "p", "type": "price", "operator": ">", "compareValue": 100}}],
                 "message": "{{{{symbol}}}} above {{{{p.value}}}}",
                 "actions": [{{"type": "notify"}},
                             {{"type": "webhook", "url": "http://127.0.0.1:{rx_port}/envelope"}},
                             {{"type": "webhook", "url": "http://127.0.0.1:{rx_port}/message", "body": "message"}}]}}]"#
        ),
    );
    assert!(written.is_ok());

    // Stored alerts are checked as the dispatcher will check them: loopback is refused…
    let refused = Command::new(BIN)
        .args(["alerts", "import", "--user", &USER.to_string()])
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .arg(&alerts)
        .env_remove("ALERT_WEBHOOK_ALLOW_PRIVATE")
        .output();
    let Ok(refused) = refused else {
        panic!("run import")
    };
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("[0].actions[1].url") && stderr.contains("loopback"),
        "{stderr}"
    );
    // …unless the operator allows private addresses.
    let allowed = Command::new(BIN)
        .args(["alerts", "import", "--webhook-allow-private", "--user"])
        .arg(USER.to_string())
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .arg(&alerts)
        .output();
    assert!(
        allowed.as_ref().is_ok_and(|o| o.status.success()),
        "{allowed:?}"
    );

    let port = free_port();
    let child = Command::new(BIN)
        .args(["serve", "--source", "ingest", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--poll-ms", "100", "--log-format", "json"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", db.display()))
        .env("ALERT_SERVICE_KEY", KEY)
        .env("ALERT_WEBHOOK_ALLOW_PRIVATE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        panic!("spawn serve")
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30)
        && http_get(port, "/readyz").is_none_or(|(s, _)| s != 200)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let m0 = now - now.rem_euclid(60_000);
    let body = format!(
        r#"{{"candles":[{{"symbol":"BTCUSDT","open_time":{m0},"open":150,"high":150,"low":150,"close":150,"volume":5,"closed":false}}]}}"#
    );
    let pushed = http_post(port, "/v1/candles", Some(&format!("Bearer {KEY}")), &body);
    while started.elapsed() < Duration::from_secs(60)
        && hooks.lock().map(|h| h.len()).unwrap_or(0) < 2
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered_metric = metric(
        port,
        r#"alert_runner_deliveries_total{kind="webhook",status="delivered"}"#,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = wait(&mut child, Duration::from_secs(30));

    let url = format!("sqlite://{}", db.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open {url}")
    };
    let secret = store
        .webhook_secret(USER, "candidate-not-used-0123456789", chrono::Utc::now())
        .await;
    let deliveries = store.list_deliveries(USER, 10).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);

    assert!(pushed.is_some_and(|(s, _)| s == 202));
    assert!(stopped, "serve exits 0 on SIGTERM");
    let Ok(secret) = secret else { panic!("secret") };
    assert!(
        secret.current.starts_with("whsec_"),
        "generated on first use"
    );
    let Ok(verifier) = standardwebhooks::Webhook::new(&secret.current) else {
        panic!("secret format")
    };
    let Ok(hooks) = hooks.lock() else {
        panic!("hooks")
    };
    assert_eq!(hooks.len(), 2, "one request per webhook action");
    for (path, headers, body) in hooks.iter() {
        assert!(
            verifier.verify(body, headers).is_ok(),
            "{path}: signature verified by the standardwebhooks crate"
        );
    }
    let envelope = hooks.iter().find(|h| h.0 == "envelope");
    let Some((_, headers, body)) = envelope else {
        panic!("no envelope")
    };
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let envelope = json(&String::from_utf8_lossy(body));
    assert_eq!(envelope["type"], "alert.triggered");
    assert_eq!(envelope["data"]["alert"]["name"], "BTC above 100");
    assert_eq!(envelope["data"]["message"], "BTCUSDT above 150");
    assert_eq!(envelope["data"]["trigger"]["bar"]["close"], 150.0);
    let message = hooks.iter().find(|h| h.0 == "message");
    let Some((_, headers, body)) = message else {
        panic!("no message webhook")
    };
    assert_eq!(body.as_slice(), b"BTCUSDT above 150");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    let Ok(deliveries) = deliveries else {
        panic!("deliveries")
    };
    assert_eq!(deliveries.len(), 2);
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == "delivered" && d.attempts == 1)
    );
    assert_eq!(delivered_metric, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_alone_sends_what_the_runner_queued() {
    let (rx_port, hooks) = start_receiver().await;
    let dir = tempdir("dispatch");
    let url = format!("sqlite://{}", dir.join("d.db").display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open {url}")
    };
    // What `run` leaves in the outbox when a webhook alert fires.
    let Ok(symbol) = alert_core::Symbol::new("BTCUSDT") else {
        panic!("symbol")
    };
    let alert = store
        .create_alert(
            USER,
            &alert_store::NewAlert {
                name: "a".into(),
                symbol,
                base_timeframe: alert_core::Timeframe::M1,
                definition: serde_json::json!({"name": "a"}),
                status: alert_store::AlertStatus::Active,
            },
            chrono::Utc::now(),
        )
        .await;
    let Ok(alert) = alert else { panic!("alert") };
    let trigger = alert_store::NewTrigger {
        alert_id: alert.id,
        user_id: USER,
        symbol: "BTCUSDT".into(),
        bar_time: chrono::Utc::now(),
        fired_at: chrono::Utc::now(),
        snapshot: serde_json::json!({}),
        notification: None,
        deliveries: vec![alert_store::NewDelivery {
            action_index: 0,
            kind: alert_store::DeliveryKind::Webhook,
            url: format!("http://127.0.0.1:{rx_port}/queued"),
            secret: None,
            payload: r#"{"type":"alert.triggered"}"#.into(),
        }],
        spend: false,
    };
    assert!(
        store
            .record_triggers(&[trigger], chrono::Utc::now())
            .await
            .is_ok()
    );
    store.close().await;

    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "dispatch",
            "--webhook-allow-private",
            "--log-format",
            "json",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        panic!("spawn dispatch")
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30)
        && hooks.lock().map(|h| h.len()).unwrap_or(0) < 1
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut attempts = None;
    while started.elapsed() < Duration::from_secs(30) && attempts.is_none() {
        attempts = metric(
            port,
            r#"alert_runner_delivery_attempts_total{kind="webhook",result="delivered"}"#,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = http_get(port, "/healthz");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopped = wait(&mut child, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(hooks.lock().map(|h| h.len()).unwrap_or(0), 1);
    assert_eq!(attempts, Some(1.0));
    assert!(health.is_some_and(|(s, _)| s == 200));
    assert!(stopped, "dispatch exits 0 on SIGTERM");
}
