//! `alert-runner indicators` end to end: the binary's CSV reproduces TA-Lib's golden values
//! for every indicator, and bad input gets a precise error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../indicators/tests/golden")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_alert-runner"))
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run alert-runner: {e}"),
    }
}

fn read_csv(text: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text);
    let header = r
        .headers()
        .map(|h| h.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let rows = r
        .records()
        .map(|rec| {
            rec.map(|rec| rec.iter().map(str::to_owned).collect())
                .unwrap_or_default()
        })
        .collect();
    (header, rows)
}

/// Every golden column, computed by the CLI from the candle file alone, equals TA-Lib's.
#[test]
fn reproduces_talib_on_the_golden_series() {
    for series in ["btc_1h", "alt_5m"] {
        let expected_text =
            std::fs::read(golden(&format!("{series}.expected.csv"))).unwrap_or_default();
        let (exp_header, exp_rows) = read_csv(&expected_text);
        assert!(exp_header.len() > 40, "golden header of {series}");
        let candles = golden(&format!("{series}.candles.csv"));
        let mut specs: Vec<String> = Vec::new();
        for title in &exp_header[1..] {
            let spec = title
                .rsplit_once('.')
                .map(|(s, _)| s.to_owned())
                .unwrap_or_default();
            if !specs.contains(&spec) {
                specs.push(spec);
            }
        }
        let mut args = vec![
            "indicators",
            "--candles",
            candles.to_str().unwrap_or_default(),
        ];
        for s in &specs {
            args.push("--indicator");
            args.push(s);
        }
        let out = run(&args);
        assert!(
            out.status.success(),
            "{series}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (header, rows) = read_csv(&out.stdout);
        assert_eq!(
            header, exp_header,
            "{series}: the CLI names columns SPEC.Component in order"
        );
        assert_eq!(rows.len(), exp_rows.len());
        let mut compared = 0usize;
        for col in 1..header.len() {
            let scale = {
                let v: Vec<f64> = exp_rows
                    .iter()
                    .filter_map(|r| r[col].parse::<f64>().ok())
                    .map(f64::abs)
                    .collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            for (i, (ours, theirs)) in rows.iter().zip(&exp_rows).enumerate() {
                assert_eq!(ours[0], theirs[0], "{series} row {i}: open time");
                match (ours[col].parse::<f64>(), theirs[col].parse::<f64>()) {
                    (Ok(a), Ok(b)) => {
                        compared += 1;
                        assert!(
                            (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(scale),
                            "{series} {} row {i}: ours {a}, TA-Lib {b}",
                            header[col]
                        );
                    }
                    _ => assert_eq!(
                        ours[col], theirs[col],
                        "{series} {} row {i}: presence",
                        header[col]
                    ),
                }
            }
        }
        assert!(compared > 500_000, "{series}: compared {compared} values");
    }
}

#[test]
fn prints_round_trip_numbers_and_empty_cells() {
    let candles = golden("btc_1h.candles.csv");
    let out = run(&[
        "indicators",
        "--candles",
        candles.to_str().unwrap_or_default(),
        "--indicator",
        "SMA(3)",
        "--indicator",
        "OBV",
    ]);
    assert!(out.status.success());
    let (header, rows) = read_csv(&out.stdout);
    assert_eq!(header, ["open_time_ms", "SMA(3).SMA", "OBV.OBV"]);
    assert_eq!(rows[0][1], "");
    assert_eq!(rows[1][1], "");
    let input = std::fs::read_to_string(&candles).unwrap_or_default();
    let closes: Vec<f64> = input
        .lines()
        .skip(1)
        .take(3)
        .filter_map(|l| l.split(',').nth(4)?.parse().ok())
        .collect();
    let want = (closes[0] + closes[1] + closes[2]) / 3.0;
    assert_eq!(
        rows[2][1].parse::<f64>().ok().map(f64::to_bits),
        Some(want.to_bits()),
        "shortest form reads back exactly"
    );
}

#[test]
fn bad_spec_is_a_clear_error() {
    let candles = golden("flat.candles.csv");
    let out = run(&[
        "indicators",
        "--candles",
        candles.to_str().unwrap_or_default(),
        "--indicator",
        "RSI(1)",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RSI") && err.contains("period is 1") && err.contains("at least 2"),
        "{err}"
    );
    let out = run(&[
        "indicators",
        "--candles",
        candles.to_str().unwrap_or_default(),
        "--indicator",
        "FOO",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown indicator \"FOO\""));
}

#[test]
fn bad_candle_row_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("ar-cli-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("bad.csv");
    let written = std::fs::write(
        &path,
        "open_time_ms,open,high,low,close,volume\n0,1,2,0.5,1,1\n60000,1,2,0.5,1,-3\n",
    );
    assert!(written.is_ok());
    let out = run(&[
        "indicators",
        "--candles",
        path.to_str().unwrap_or_default(),
        "--indicator",
        "SMA(2)",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.csv:3: volume -3 is negative"), "{err}");
}

#[test]
fn help_documents_every_indicator() {
    let out = run(&["indicators", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "SMA(",
        "EMA(",
        "WMA(",
        "RSI(",
        "MACD(",
        "BBANDS(",
        "STOCH(",
        "ATR(",
        "VOLUME_SMA(",
        "ADX(",
        "CCI(",
        "MFI(",
        "ROC(",
        "WILLR(",
        "OBV",
        "VWAP",
    ] {
        assert!(help.contains(name), "--help lacks {name}");
    }
}
