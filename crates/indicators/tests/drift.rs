//! No drift: after 10 million bars whose magnitude jumps between 1e5 and 1e-3, every
//! windowed indicator still equals a fresh computation over its window (relative 1e-9).
//! Plain running sums fail this: the residue of the large regime swamps the small one.

use std::collections::VecDeque;

use alert_core::{BarTime, Candle, SplitMix64};
use alert_indicators::{AnyIndicator, Indicator, IndicatorSpec};

const BARS: u64 = 10_000_000;
const REGIME: u64 = 250_000;
const CHECK_EVERY: u64 = 499_979; // prime, so checks land at different phases of regimes and days

#[test]
fn ten_million_bars_equal_a_fresh_computation() {
    let specs: Vec<IndicatorSpec> = [
        "SMA(20)",
        "SMA(200)",
        "WMA(20)",
        "BBANDS(20,2)",
        "VOLUME_SMA(20)",
        "CCI(20)",
        "MFI(14)",
        "STOCH(14,3,3)",
        "WILLR(14)",
        "ROC(10)",
        "VWAP",
    ]
    .iter()
    .map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    .collect();
    let mut live: Vec<AnyIndicator> = specs.iter().map(AnyIndicator::new).collect();
    // Enough history for any window above, and for a whole UTC day of 1m bars (VWAP).
    let keep = 1_500usize;
    let mut history: VecDeque<Candle> = VecDeque::with_capacity(keep + 1);
    let mut rng = SplitMix64::new(42);
    let mut walk = 0.0f64;
    let mut checks = 0;

    for i in 0..BARS {
        let base = if (i / REGIME).is_multiple_of(2) {
            1e5
        } else {
            1e-3
        };
        walk = (walk + (rng.unit() - 0.5) * 0.01).clamp(-1.0, 1.0);
        let mid = base * walk.exp();
        let spread = mid * 0.002 * rng.unit();
        let (open, close) = (
            mid + spread * (rng.unit() - 0.5),
            mid + spread * (rng.unit() - 0.5),
        );
        let bar = Candle {
            open_time: BarTime::from_millis(i as i64 * 60_000),
            open,
            high: open.max(close) + spread,
            low: open.min(close) - spread,
            close,
            volume: base * 1e3 * rng.unit(),
        };
        let values: Vec<_> = live.iter_mut().map(|ind| ind.update(&bar)).collect();
        history.push_back(bar);
        if history.len() > keep {
            history.pop_front();
        }

        if i > 0 && (i % CHECK_EVERY == 0 || i == BARS - 1) {
            checks += 1;
            for ((spec, value), ind) in specs.iter().zip(&values).zip(&live) {
                // A fresh instance fed only the bars its window needs (VWAP: since UTC midnight).
                let window = if spec.to_string() == "VWAP" {
                    history
                        .iter()
                        .rev()
                        .take_while(|c| c.open_time.utc_day() == bar.open_time.utc_day())
                        .count()
                } else {
                    ind.lookback() + 1
                };
                let mut fresh = AnyIndicator::new(spec);
                let mut expect = None;
                for c in history.iter().skip(history.len() - window) {
                    expect = fresh.update(c);
                }
                let (Some(got), Some(want)) = (value, expect) else {
                    panic!("{spec} at bar {i}: streaming {value:?}, fresh {expect:?}");
                };
                assert!(
                    got.iter().any(|v| v.is_some()),
                    "{spec} has no value at bar {i}"
                );
                for k in 0..got.len() {
                    let (g, w) = (got.get(k), want.get(k));
                    let (Some(g), Some(w)) = (g, w) else {
                        assert_eq!(g, w, "{spec} component {k} at bar {i}");
                        continue;
                    };
                    let scale = w
                        .abs()
                        .max(g.abs())
                        .max(if spec.to_string().starts_with("ROC") {
                            1.0
                        } else {
                            base * 1e-3
                        });
                    assert!(
                        (g - w).abs() <= 1e-9 * scale,
                        "{spec} component {k} at bar {i}: streaming {g}, fresh {w}"
                    );
                }
            }
        }
    }
    assert!(checks >= 20);
}
