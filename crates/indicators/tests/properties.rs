//! Property tests over every indicator kind with random settings and random bars:
//! peeking equals updating a copy (bit for bit) and never disturbs state; splitting a series
//! anywhere and resuming gives identical values; the first value comes after the lookback.

use alert_core::{BarTime, Candle, PriceSource};
use alert_indicators::{
    AnyIndicator, Components, Indicator, IndicatorKind, IndicatorSpec, Params, StdDevMultiplier,
};
use proptest::prelude::*;

fn bits(c: Option<Components>) -> Vec<Option<u64>> {
    c.map(|c| c.iter().map(|v| v.map(f64::to_bits)).collect())
        .unwrap_or_default()
}

/// A random walk with flat stretches, gaps and spikes, at a random magnitude.
fn candles() -> impl Strategy<Value = Vec<Candle>> {
    (
        -6i32..9,
        prop::collection::vec(
            (
                -0.05f64..0.05,
                0.0f64..0.03,
                0.0f64..0.03,
                0.0f64..1e3,
                0u8..10,
            ),
            1..160,
        ),
    )
        .prop_map(|(exp, steps)| {
            let mut price = 10f64.powi(exp);
            let mut t = 1_700_000_000_000i64;
            steps
                .into_iter()
                .map(|(ret, up, down, vol, kind)| {
                    let open = price;
                    let (close, high, low, volume) = match kind {
                        0 => (open, open, open, 0.0), // flat, no trades
                        1 => (open, open, open, vol), // flat with trades
                        _ => {
                            let close = open * (1.0 + ret);
                            (
                                close,
                                open.max(close) * (1.0 + up),
                                open.min(close) * (1.0 - down),
                                vol,
                            )
                        }
                    };
                    t += if kind == 9 { 7 * 3_600_000 } else { 3_600_000 }; // a gap now and then
                    price = close;
                    Candle {
                        open_time: BarTime::from_millis(t),
                        open,
                        high,
                        low,
                        close,
                        volume,
                    }
                })
                .collect()
        })
}

fn spec() -> impl Strategy<Value = IndicatorSpec> {
    (
        0usize..IndicatorKind::ALL.len(),
        1usize..30,
        1usize..30,
        1usize..12,
        0usize..8,
        0.1f64..4.0,
    )
        .prop_filter_map("valid settings", |(k, a, b, c, src, dev)| {
            let kind = IndicatorKind::ALL[k];
            let source = PriceSource::ALL[src];
            let params = match kind.default_params() {
                Params::Length(_) => Params::Length(a + 1),
                Params::LengthOf(..) => Params::LengthOf(a + 1, source),
                Params::Macd { .. } => Params::Macd {
                    fast: a + 1,
                    slow: b + 1,
                    signal: c,
                    source,
                },
                Params::Bbands { .. } => Params::Bbands {
                    period: a + 1,
                    stddev: StdDevMultiplier::new(dev).ok()?,
                    source,
                },
                Params::Stoch { .. } => Params::Stoch {
                    k: a,
                    smooth_k: b % 5 + 1,
                    d: c % 5 + 1,
                },
                Params::None => Params::None,
            };
            IndicatorSpec::new(kind, params).ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn peek_equals_update_on_a_copy(spec in spec(), bars in candles()) {
        let mut ind = AnyIndicator::new(&spec);
        for bar in &bars {
            let peeked = ind.peek(bar);
            let mut copy = ind.clone();
            prop_assert_eq!(bits(peeked), bits(copy.update(bar)), "{} at {}", spec, bar.open_time);
            prop_assert_eq!(bits(peeked), bits(ind.update(bar)));
        }
    }

    #[test]
    fn split_and_resume_is_identical(spec in spec(), bars in candles(), split in 0usize..160, noise in prop::collection::vec(0.5f64..1.5, 160)) {
        let mut whole = AnyIndicator::new(&spec);
        let expected: Vec<_> = bars.iter().map(|b| bits(whole.update(b))).collect();

        // The same bars in two runs, the first interrupted at `split`, with in-progress
        // updates peeked along the way (they must leave no trace).
        let split = split.min(bars.len());
        let mut first = AnyIndicator::new(&spec);
        let mut got = Vec::with_capacity(bars.len());
        for (bar, scale) in bars[..split].iter().zip(&noise) {
            let mut forming = *bar;
            forming.close = (bar.close * scale).clamp(bar.low, bar.high);
            let _ = first.peek(&forming);
            got.push(bits(first.update(bar)));
        }
        let mut resumed = first.clone();
        drop(first);
        for bar in &bars[split..] {
            got.push(bits(resumed.update(bar)));
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn first_value_comes_after_the_lookback(spec in spec(), bars in candles()) {
        let mut ind = AnyIndicator::new(&spec);
        let lookback = ind.lookback();
        for (i, bar) in bars.iter().enumerate() {
            let has_value = ind.update(bar).is_some_and(|c| c.iter().any(|v| v.is_some()));
            if spec.kind() == IndicatorKind::Vwap {
                continue; // VWAP has no value while the day's volume is 0
            }
            prop_assert_eq!(has_value, i >= lookback, "{} bar {} lookback {}", spec, i, lookback);
        }
    }

    #[test]
    fn reset_forgets_everything(spec in spec(), bars in candles()) {
        let mut ind = AnyIndicator::new(&spec);
        for bar in &bars {
            ind.update(bar);
        }
        ind.reset();
        let mut fresh = AnyIndicator::new(&spec);
        for bar in &bars {
            prop_assert_eq!(bits(ind.update(bar)), bits(fresh.update(bar)));
        }
    }
}
