//! `alert-runner bench-serve`, small, on PostgreSQL: serve runs on the seeded alerts and the
//! replayed market, alerts fire, webhooks arrive, and the table and the JSON report it. (The
//! scale run itself — 1,000,000 alerts for 10 minutes — is documented in the README.)

use std::process::Command;

#[test]
fn bench_serve_runs_serve_end_to_end_and_reports() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let out = Command::new(env!("CARGO_BIN_EXE_alert-runner"))
        .args([
            "bench-serve",
            "--database-url",
            &url,
            "--alerts",
            "3000",
            "--symbols",
            "30",
            "--minutes",
            "0.25",
            "--speed",
            "240",
            "--webhook-share",
            "0.2",
            "--api-rate",
            "0",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run alert-runner: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench-serve failed: {stderr}\n{stdout}"
    );
    for row in [
        "| peak RSS (VmHWM) |",
        "| round p50 / p99 |",
        "| triggers recorded |",
    ] {
        assert!(stdout.contains(row), "{row} missing: {stdout}");
    }
    let last = stderr.lines().last().unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(report["alerts"], 3000);
    assert_eq!(report["symbols"], 30);
    let number = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
    // 15 s at 240x: about 60 bars of 30 symbols went through the engine in rounds.
    assert!(number("candles") >= 30.0 * 30.0, "{report}");
    assert!(number("rounds") >= 1.0, "{report}");
    assert!(number("round_p99_ms") > 0.0, "{report}");
    assert!(number("triggers") > 0.0, "{report}");
    assert!(number("peak_rss_mib") > 0.0, "{report}");
    assert!(number("webhook_alerts") > 300.0, "{report}");
    assert!(
        report["deliveries_received"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "webhooks reached the receiver: {report}"
    );
}
