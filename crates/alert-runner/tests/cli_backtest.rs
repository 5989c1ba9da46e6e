//! `alert-runner backtest` end to end: golden outputs for every operator and trigger mode on
//! the committed series, the output's invariants, --from/--to, and precise errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alert-runner"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run alert-runner: {e}"))
}

fn backtest(alerts: &str, candles: &str, symbol: &str, tf: &str, extra: &[&str]) -> Output {
    let alerts = path(alerts);
    let candles = path(candles);
    let mut args = vec![
        "backtest",
        "--alerts",
        alerts.to_str().unwrap_or_default(),
        "--candles",
        candles.to_str().unwrap_or_default(),
        "--symbol",
        symbol,
        "--timeframe",
        tf,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Equal JSON, numbers within a relative 1e-12: the same triggers, whose values may differ in
/// the last bits where a build fuses multiply-adds (FMA targets) and another does not.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

const BTC_ALERTS: &str = "tests/fixtures/backtest_btc_1h.alerts.json";
const BTC_CANDLES: &str = "../indicators/tests/golden/btc_1h.candles.csv";

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn golden_backtests_are_reproduced_exactly() {
    for (alerts, candles, symbol, tf, expected) in [
        (
            BTC_ALERTS,
            BTC_CANDLES,
            "BTCUSDT",
            "1h",
            "tests/fixtures/backtest_btc_1h.expected.jsonl",
        ),
        (
            "tests/fixtures/backtest_alt_5m.alerts.json",
            "../indicators/tests/golden/alt_5m.candles.csv",
            "ALTUSDT",
            "5m",
            "tests/fixtures/backtest_alt_5m.expected.jsonl",
        ),
    ] {
        let out = backtest(alerts, candles, symbol, tf, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = std::fs::read_to_string(path(expected)).unwrap_or_default();
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "{expected}: trigger count"
        );
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            let (g, w): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(g).unwrap_or_default(),
                serde_json::from_str(w).unwrap_or_default(),
            );
            assert!(
                same(&g, &w),
                "{expected} line {}:\n got  {g}\n want {w}",
                i + 1
            );
        }
        let summary = String::from_utf8_lossy(&out.stderr);
        assert!(
            summary.contains("candles") && summary.contains("triggers"),
            "{summary}"
        );
    }
}

#[test]
fn every_operator_and_trigger_mode_fires_in_the_golden_run() {
    let out = backtest(BTC_ALERTS, BTC_CANDLES, "BTCUSDT", "1h", &[]);
    let fired: std::collections::BTreeSet<String> = lines(&out)
        .iter()
        .filter_map(|l| l["alert_id"].as_str().map(str::to_owned))
        .collect();
    let defined: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path(BTC_ALERTS)).unwrap_or_default())
            .unwrap_or_default();
    for a in &defined {
        let id = a["id"].as_str().unwrap_or_default();
        assert!(
            fired.contains(id),
            "{id} never fired: the golden run would not pin it"
        );
    }
}

#[test]
fn output_obeys_the_trigger_rules() {
    let out = backtest(BTC_ALERTS, BTC_CANDLES, "BTCUSDT", "1h", &[]);
    let defined: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path(BTC_ALERTS)).unwrap_or_default())
            .unwrap_or_default();
    let def = |id: &str| {
        defined
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
            .unwrap_or_default()
    };
    let tf_ms = |tf: &str| match tf {
        "1h" => 3_600_000,
        "4h" => 14_400_000,
        "1d" => 86_400_000,
        other => panic!("{other}"),
    };
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    let mut once_count = 0;
    for l in lines(&out) {
        let id = l["alert_id"].as_str().unwrap_or_default().to_owned();
        let d = def(&id);
        let dur = tf_ms(d["base_timeframe"].as_str().unwrap_or_default());
        let (bar, fired) = (
            l["bar_time"].as_i64().unwrap_or(-1),
            l["fired_at"].as_i64().unwrap_or(-1),
        );
        assert_eq!(bar % dur, 0, "{id}: bar_time aligned to the base timeframe");
        assert!(
            fired > bar && fired <= bar + dur,
            "{id}: fired within its bar"
        );
        let close_mode = d["trigger"] == "once_per_bar_close" || d["fireMode"] == "per_close";
        if close_mode {
            assert_eq!(
                fired,
                bar + dur,
                "{id}: fires only when the base bar closes"
            );
        }
        let debounce = d["debounce_bars"].as_i64().unwrap_or(1);
        if let Some(prev) = last.insert(id.clone(), bar) {
            assert!(
                bar >= prev + debounce * dur,
                "{id}: debounce {debounce} bars"
            );
        }
        if id == "once_only" {
            once_count += 1;
        }
        if id == "expiring" {
            assert!(fired < 1_583_020_800_000, "expired alerts stop");
        }
        let logic_or = d["conditionLogic"] == "OR";
        if !logic_or
            && d["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c.get("conditions").is_none()))
        {
            let conds = l["conditions"].as_object().cloned().unwrap_or_default();
            assert!(
                conds.values().all(|c| c["held"] == true),
                "{id}: AND alert fired with a false condition"
            );
        }
        if id == "ema_cross_up" {
            let x = &l["conditions"]["x"];
            assert!(
                x["value"].as_f64() > x["rhs"].as_f64(),
                "a crossing above ends above"
            );
        }
    }
    assert_eq!(once_count, 1);
}

#[test]
fn from_and_to_select_a_window() {
    let all = lines(&backtest(BTC_ALERTS, BTC_CANDLES, "BTCUSDT", "1h", &[]));
    let (from, to) = (1_590_000_000_000i64, 1_600_000_000_000i64);
    let out = backtest(
        BTC_ALERTS,
        BTC_CANDLES,
        "BTCUSDT",
        "1h",
        &["--from", "1590000000000", "--to", "2020-09-13T12:26:40Z"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let window = lines(&out);
    // Candles before --from warm up the indicators: the window equals the full run restricted
    // to candles opening in [from, to) — a fire at `fired_at` came from the candle opening an
    // hour earlier.
    let want: Vec<_> = all
        .into_iter()
        .filter(|l| {
            let opened = l["fired_at"].as_i64().unwrap_or(0) - 3_600_000;
            opened >= from && opened < to
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(window, want);
}

fn temp(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ar-bt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let p = dir.join(name);
    assert!(std::fs::write(&p, text).is_ok());
    p
}

fn error_of(alerts_json: &str, tf: &str) -> String {
    let p = temp("alerts.json", alerts_json);
    let candles = path(BTC_CANDLES);
    let out = run(&[
        "backtest",
        "--alerts",
        p.to_str().unwrap_or_default(),
        "--candles",
        candles.to_str().unwrap_or_default(),
        "--symbol",
        "BTCUSDT",
        "--timeframe",
        tf,
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_alerts_are_refused_precisely() {
    let ok_cond = r#"[{"id":"p","type":"price","operator":">","compareValue":1}]"#;
    let e = error_of(
        &format!(
            r#"[{{"symbol":"BTCUSDT","base_timeframe":"1h","conditions":{ok_cond},"action":{{"type":"notify"}}}}]"#
        ),
        "1h",
    );
    assert!(e.contains("[0].id"), "{e}");
    let e = error_of(
        &format!(
            r#"[{{"id":"a","symbol":"ETHUSDT","base_timeframe":"1h","conditions":{ok_cond},"action":{{"type":"notify"}}}}]"#
        ),
        "1h",
    );
    assert!(e.contains("[0].symbol") && e.contains("ETHUSDT"), "{e}");
    let e = error_of(
        r#"[{"id":"a","symbol":"BTCUSDT","base_timeframe":"1h","conditions":[{"id":"r","type":"indicator","indicator":"RSI","operator":"<","compareValue":30,"settings":{"period":0}}],"action":{"type":"notify"}}]"#,
        "1h",
    );
    assert!(e.contains("[0].conditions[0].settings.period"), "{e}");
    let e = error_of(
        &format!(
            r#"[{{"id":"a","symbol":"BTCUSDT","base_timeframe":"15m","conditions":{ok_cond},"action":{{"type":"notify"}}}}]"#
        ),
        "1h",
    );
    assert!(
        e.contains("15m") && e.contains("1h"),
        "a timeframe finer than the candles: {e}"
    );
    let e = error_of("[{", "1h");
    assert!(e.contains("JSON"), "{e}");
}
