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
