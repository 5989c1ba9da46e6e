//! `alert-runner bench-dispatch` on SQLite, small: one JSON object of the documented shape,
//! every delivery delivered, and the scratch database gone afterwards.

use std::process::Command;

#[test]
fn bench_dispatch_delivers_everything_and_reports_json() {
    let workdir = std::env::temp_dir().join(format!("bench-dispatch-test-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap_or_else(|e| panic!("temp dir: {e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_alert-runner"))
        .args([
            "bench-dispatch",
            "--deliveries",
            "200",
            "--concurrency",
            "16",
            "--database-url",
            "sqlite://./alert-runner.db",
        ])
        .env_remove("DATABASE_URL")
        .current_dir(&workdir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run alert-runner: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench-dispatch failed: {stderr}");
    assert!(
        stderr.contains("bench-dispatch: 200 deliveries"),
        "{stderr}"
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON object: {stdout}");
    let report: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["deliveries"], 200);
    assert_eq!(report["delivered"], 200);
    assert_eq!(report["concurrency"], 16);
    assert_eq!(report["signatures_verified"], 100);
    assert!(report["payload_bytes"].as_u64().is_some_and(|b| b > 400));
    for phase in ["baseline", "dispatch"] {
        let seconds = report[phase]["seconds"].as_f64();
        let rate = report[phase]["per_second"].as_f64();
        assert!(seconds.is_some_and(|s| s > 0.0), "{phase}: {report}");
        assert!(rate.is_some_and(|r| r > 0.0), "{phase}: {report}");
        // deliveries = seconds × rate: every one of the 200 was delivered in the phase.
        let done = seconds.unwrap_or(0.0) * rate.unwrap_or(0.0);
        assert!((done - 200.0).abs() < 1e-6, "{phase}: {report}");
    }
    assert!(report["ratio"].as_f64().is_some_and(|r| r > 0.0));

    // Nothing left behind in the working directory (the scratch database is in the temp dir
    // and removed).
    let left: Vec<_> = std::fs::read_dir(&workdir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&workdir);
}
