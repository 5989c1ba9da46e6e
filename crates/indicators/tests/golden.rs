//! Golden tests: every indicator against TA-Lib's output on committed series.
//!
//! `tests/golden/<series>.candles.csv` holds the input bars and `<series>.expected.csv` the
//! values TA-Lib 0.8.2 (C library 0.8.1) computed for them, one column per `SPEC.Component`;
//! `scripts/golden/generate.py` regenerates both. Each column's spec is parsed, the indicator
//! is fed every bar (peeking at it first, which must agree with the update bit for bit), and
//! every value is compared: the same bars have values, and each value is within a relative
//! 1e-9 of TA-Lib's, relative to the larger of the two values and of the column's mean
//! magnitude (so values that cross zero, like a MACD histogram, are judged at their scale).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use alert_indicators::{AnyIndicator, Candle, Indicator, IndicatorKind, IndicatorSpec};

const REL_TOLERANCE: f64 = 1e-9;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Headers like `"MACD(12,26,9).MACD"` are quoted, so read it as real CSV.
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_slice());
    let header = reader
        .headers()
        .map(|h| h.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let rows = reader
        .records()
        .map(|r| {
            r.map(|r| r.iter().map(str::to_owned).collect())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect();
    (header, rows)
}

fn num(s: &str, what: &str) -> f64 {
    s.parse()
        .unwrap_or_else(|_| panic!("{what}: {s:?} is not a number"))
}

fn read_candles(path: &Path) -> Vec<Candle> {
    let (header, rows) = read_rows(path);
    assert_eq!(
        header,
        ["open_time_ms", "open", "high", "low", "close", "volume"],
        "{}",
        path.display()
    );
    rows.iter()
        .map(|r| Candle {
            open_time: alert_core::BarTime::from_millis(
                r[0].parse().unwrap_or_else(|_| panic!("time {:?}", r[0])),
            ),
            open: num(&r[1], "open"),
            high: num(&r[2], "high"),
            low: num(&r[3], "low"),
            close: num(&r[4], "close"),
            volume: num(&r[5], "volume"),
        })
        .collect()
}

/// The golden series, by name.
fn series() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(golden_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".expected.csv")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct Column {
    name: String,
    component: usize,
    expected: Vec<Option<f64>>,
}

/// Checks every column of every series whose indicator is `kind`; returns how many values
/// were compared.
fn check_kind(kind: IndicatorKind) -> usize {
    let mut compared = 0;
    let mut failures = Vec::new();
    let all = series();
    assert!(
        all.len() >= 2,
        "golden series missing in {}",
        golden_dir().display()
    );
    for name in all {
        let candles = read_candles(&golden_dir().join(format!("{name}.candles.csv")));
        let (header, rows) = read_rows(&golden_dir().join(format!("{name}.expected.csv")));
        assert_eq!(
            rows.len(),
            candles.len(),
            "{name}: expected rows vs candles"
        );
        let mut by_spec: BTreeMap<String, (IndicatorSpec, Vec<Column>)> = BTreeMap::new();
        for (col, title) in header.iter().enumerate().skip(1) {
            let (spec_text, component) = title
                .rsplit_once('.')
                .unwrap_or_else(|| panic!("column {title:?}"));
            let spec: IndicatorSpec = spec_text
                .parse()
                .unwrap_or_else(|e| panic!("{name}: column {title:?}: {e}"));
            if spec.kind() != kind {
                continue;
            }
            assert_eq!(
                spec.to_string(),
                spec_text,
                "canonical spec of column {title:?}"
            );
            let component = kind
                .component_index(component)
                .unwrap_or_else(|| panic!("component of {title:?}"));
            let expected = rows
                .iter()
                .map(|r| r.get(col).filter(|c| !c.is_empty()).map(|c| num(c, title)))
                .collect();
            by_spec
                .entry(spec_text.to_owned())
                .or_insert_with(|| (spec, Vec::new()))
                .1
                .push(Column {
                    name: title.clone(),
                    component,
                    expected,
                });
        }
        for (_, (spec, columns)) in by_spec {
            let mut ind = AnyIndicator::new(&spec);
            let mut got = Vec::with_capacity(candles.len());
            for (i, c) in candles.iter().enumerate() {
                let peeked = ind.peek(c);
                let updated = ind.update(c);
                let bits = |v: Option<alert_indicators::Components>| {
                    v.map(|v| v.iter().map(|x| x.map(f64::to_bits)).collect::<Vec<_>>())
                };
                if bits(peeked) != bits(updated) {
                    failures.push(format!(
                        "{name} {spec} row {i}: peek {peeked:?} != update {updated:?}"
                    ));
                }
                got.push(updated);
            }
            for col in columns {
                let present: Vec<f64> = col.expected.iter().flatten().map(|v| v.abs()).collect();
                let scale = present.iter().sum::<f64>() / present.len().max(1) as f64;
                let mut bad = 0;
                for (i, exp) in col.expected.iter().enumerate() {
                    let ours = got[i].and_then(|c| c.get(col.component));
                    let ok = match (exp, ours) {
                        (None, None) => true,
                        (Some(e), Some(o)) => {
                            compared += 1;
                            (e - o).abs() <= REL_TOLERANCE * e.abs().max(o.abs()).max(scale)
                        }
                        _ => false,
                    };
                    if !ok {
                        bad += 1;
                        if bad <= 5 {
                            failures.push(format!(
                                "{name} {} row {i}: TA-Lib {exp:?}, ours {ours:?}",
                                col.name
                            ));
                        }
                    }
                }
                if bad > 5 {
                    failures.push(format!("{name} {}: {bad} mismatches in all", col.name));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    compared
}

macro_rules! golden {
    ($($test:ident => $kind:ident),* $(,)?) => {$(
        #[test]
        fn $test() {
            let compared = check_kind(IndicatorKind::$kind);
            assert!(compared > 1000, "only {compared} values compared for {}", IndicatorKind::$kind);
        }
    )*};
}

golden! {
    sma => Sma, ema => Ema, wma => Wma, rsi => Rsi, macd => Macd, bbands => Bbands,
    stoch => Stoch, atr => Atr, volume_sma => VolumeSma, adx => Adx, cci => Cci, mfi => Mfi,
    roc => Roc, willr => Willr, obv => Obv, vwap => Vwap,
}

/// Every indicator kind has golden columns (a new indicator cannot ship untested).
#[test]
fn every_kind_has_golden_columns() {
    let (header, _) = read_rows(&golden_dir().join("btc_1h.expected.csv"));
    for kind in IndicatorKind::ALL {
        assert!(
            header
                .iter()
                .skip(1)
                .filter_map(|t| t.rsplit_once('.'))
                .any(|(s, _)| {
                    s.parse::<IndicatorSpec>()
                        .is_ok_and(|spec| spec.kind() == kind)
                }),
            "no golden column for {kind}"
        );
    }
}
