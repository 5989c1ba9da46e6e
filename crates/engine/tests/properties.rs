//! Property tests of the engine against independent computations:
//! - resampling equals direct aggregation of the fed candles;
//! - in-progress updates followed by the close leave the same committed state as the close alone;
//! - the engine equals a naive evaluator that recomputes everything from the full history at
//!   every evaluation point, on random alerts and random data (with gaps and intrabar updates);
//! - an alert's triggers do not depend on how many other alerts share its indicators.

mod common;

use std::sync::Arc;

use alert_core::{BarTime, Candle, CandleUpdate, PriceSource, Timeframe};
use alert_engine::{
    AlertDefinition, Bound, ConditionNode, Direction, Engine, EngineConfig, Event, Logic, Operand,
    Series, Test, TriggerMode,
};
use common::naive::{Fire, Naive};
use common::*;
use proptest::prelude::*;

/// One fed 1m candle: how many minutes after the previous one, its close, and the in-progress
/// closes seen before it closed.
#[derive(Clone, Debug)]
struct Step {
    skip: i64,
    close: f64,
    partials: Vec<f64>,
}

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            prop_oneof![8 => Just(1i64), 1 => 2i64..40],
            -3.0f64..3.0,
            prop::collection::vec(-1.0f64..1.0, 0..3),
        ),
        1..max,
    )
    .prop_map(|raw| {
        let mut price = 100.0f64;
        raw.into_iter()
            .map(|(skip, ret, partials)| {
                price = (price + ret).max(1.0);
                Step {
                    skip,
                    close: price,
                    partials: partials.into_iter().map(|p| (price + p).max(0.5)).collect(),
                }
            })
            .collect()
    })
}

fn candle(t: i64, prev_close: f64, close: f64) -> Candle {
    Candle {
        open_time: BarTime::from_millis(t),
        open: prev_close,
        high: prev_close.max(close) + 0.25,
        low: prev_close.min(close) - 0.25,
        close,
        volume: 1.0 + (close * 7.0) % 3.0,
    }
}

/// The updates fed to the engine: (candle, closed).
fn updates(steps: &[Step], with_partials: bool) -> Vec<(Candle, bool)> {
    let mut out = Vec::new();
    let mut t = T0 - MIN;
    let mut prev = 100.0;
    for s in steps {
        t += s.skip * MIN;
        if with_partials {
            for p in &s.partials {
                out.push((candle(t, prev, *p), false));
            }
        }
        out.push((candle(t, prev, s.close), true));
        prev = s.close;
    }
    out
}

fn run_engine(engine: &mut Engine, updates: &[(Candle, bool)]) -> Vec<Fire> {
    let mut events = Vec::new();
    for (c, closed) in updates {
        let r = engine.on_candle(
            sym(),
            &CandleUpdate {
                candle: *c,
                closed: *closed,
            },
            &mut events,
        );
        assert!(r.is_ok(), "{r:?}");
    }
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Triggered(t) => Some(Fire {
                alert: t.alert_id.to_string(),
                bar_time: t.bar_time.millis(),
                fired_at: t.fired_at.millis(),
            }),
            Event::Expired { .. } => None,
        })
        .collect()
}

const TFS: [Timeframe; 4] = [Timeframe::M1, Timeframe::M3, Timeframe::M5, Timeframe::M15];
const SPECS: [&str; 9] = [
    "SMA(3)",
    "EMA(4)",
    "RSI(3)",
    "MACD(3,5,2)",
    "BBANDS(4,2)",
    "STOCH(3,2,2)",
    "ROC(2)",
    "WILLR(3)",
    "ATR(3)",
];

fn operand() -> impl Strategy<Value = Operand> {
    (0usize..TFS.len(), 0usize..12, 0usize..3).prop_map(|(tf, which, comp)| {
        let timeframe = TFS[tf];
        let series = match which {
            0 => Series::Price(PriceSource::Close),
            1 => Series::Price(PriceSource::Hl2),
            2 => Series::Price(PriceSource::Volume),
            k => {
                let spec = spec(SPECS[k - 3]);
                let component = comp % spec.kind().components().len();
                Series::Indicator { spec, component }
            }
        };
        Operand { timeframe, series }
    })
}

/// A constant near the data's range for the operand, so tests sometimes hold.
fn constant(o: &Operand, pick: f64) -> f64 {
    match o.series {
        Series::Price(PriceSource::Volume) => 1.0 + pick * 3.0,
        Series::Price(_) => 96.0 + pick * 8.0,
        Series::Indicator { spec, .. } => match spec.to_string().as_str() {
            "RSI(3)" | "STOCH(3,2,2)" => pick * 100.0,
            "WILLR(3)" => -pick * 100.0,
            "ROC(2)" => (pick - 0.5) * 6.0,
            "MACD(3,5,2)" => (pick - 0.5) * 2.0,
            "ATR(3)" => pick * 3.0,
            _ => 96.0 + pick * 8.0,
        },
    }
}

fn test_for(kind: usize, lhs: &Operand, rhs: Operand, pick: f64, n: usize) -> Test {
    let value = Bound::Value(constant(lhs, pick));
    let series = if pick < 0.5 {
        value
    } else {
        Bound::Series(rhs)
    };
    let lo = constant(lhs, pick * 0.5);
    let hi = constant(lhs, 0.5 + pick * 0.5);
    match kind {
        0 => Test::Greater(series),
        1 => Test::Less(series),
        2 => Test::GreaterOrEqual(series),
        3 => Test::LessOrEqual(series),
        4 => Test::Equals {
            rhs: series,
            tolerance: 0.01,
        },
        5 => Test::CrossesAbove(series),
        6 => Test::CrossesBelow(series),
        7 => Test::Crosses(series),
        8 => Test::Divergence {
            other: rhs,
            lookback: n,
            direction: [Direction::Any, Direction::Bullish, Direction::Bearish][n % 3],
        },
        9 => Test::Convergence {
            other: rhs,
            lookback: n,
        },
        10 => Test::EnteringChannel {
            lower: Bound::Value(lo),
            upper: Bound::Value(hi),
        },
        11 => Test::ExitingChannel {
            lower: Bound::Value(lo),
            upper: Bound::Value(hi),
        },
        12 => Test::InsideChannel {
            lower: Bound::Value(lo),
            upper: Bound::Value(hi),
        },
        13 => Test::OutsideChannel {
            lower: Bound::Value(lo),
            upper: Bound::Value(hi),
        },
        14 => Test::MovingUpPct {
            pct: pick * 2.0,
            bars: n,
        },
        _ => Test::MovingDownPct {
            pct: pick * 2.0,
            bars: n,
        },
    }
}

fn leaf_node() -> impl Strategy<Value = (Operand, usize, Operand, f64, usize, usize)> {
    (
        operand(),
        0usize..16,
        operand(),
        0.0f64..1.0,
        1usize..4,
        0usize..TFS.len(),
    )
}

fn random_alert() -> impl Strategy<Value = AlertDefinition> {
    (
        0usize..3,
        prop::collection::vec(leaf_node(), 1..4),
        prop::bool::ANY,
        0usize..3,
        1u32..3,
        prop::bool::ANY,
    )
        .prop_map(|(base, leaves, or, trigger, debounce, nest)| {
            let base_tf = TFS[base];
            let mut nodes: Vec<ConditionNode> = leaves
                .into_iter()
                .enumerate()
                .map(|(i, (mut lhs, kind, rhs, pick, n, cond_tf))| {
                    let tf = TFS[cond_tf];
                    lhs.timeframe = tf;
                    leaf(
                        &format!("c{i}"),
                        tf,
                        lhs,
                        test_for(kind, &lhs, rhs, pick, n),
                    )
                })
                .collect();
            if nest && nodes.len() > 1 {
                let first = nodes.remove(0);
                nodes = vec![
                    first,
                    ConditionNode::Group {
                        logic: if or { Logic::And } else { Logic::Or },
                        children: nodes,
                    },
                ];
            }
            let mut def = alert(
                base_tf,
                [
                    TriggerMode::OncePerBar,
                    TriggerMode::OncePerBarClose,
                    TriggerMode::Once,
                ][trigger],
                debounce,
                nodes,
            );
            def.logic = if or { Logic::Or } else { Logic::And };
            def
        })
}

fn engine() -> Engine {
    Engine::new(EngineConfig {
        feed: Timeframe::M1,
        history_bars: 10_000,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn resampling_equals_direct_aggregation(steps in steps(300)) {
        let ups = updates(&steps, true);
        let mut e = engine();
        // An alert keeps every timeframe alive (all are kept anyway; this also exercises evaluation).
        add(&mut e, "a", alert(Timeframe::H1, TriggerMode::OncePerBar, 1, vec![leaf("c", Timeframe::H1, close(Timeframe::H1), Test::Greater(Bound::Value(0.0)))]));
        run_engine(&mut e, &ups);
        let closed: Vec<Candle> = ups.iter().filter(|(_, c)| *c).map(|(c, _)| *c).collect();
        for tf in [Timeframe::M1, Timeframe::M3, Timeframe::M5, Timeframe::M15, Timeframe::H1, Timeframe::H4, Timeframe::D1] {
            let mut direct: Vec<Candle> = Vec::new();
            for c in &closed {
                let bucket = tf.bar_open(c.open_time);
                match direct.last_mut() {
                    Some(b) if b.open_time == bucket => {
                        b.high = b.high.max(c.high);
                        b.low = b.low.min(c.low);
                        b.close = c.close;
                        b.volume += c.volume;
                    }
                    _ => direct.push(Candle { open_time: bucket, ..*c }),
                }
            }
            let got: Vec<Candle> = e.candles(sym(), tf).into_iter().map(|(c, _)| c).collect();
            prop_assert_eq!(got, direct, "{}", tf);
        }
    }

    #[test]
    fn in_progress_updates_leave_the_same_committed_state(steps in steps(200), alerts in prop::collection::vec(random_alert(), 1..4)) {
        let mut with = engine();
        let mut without = engine();
        for (i, a) in alerts.iter().enumerate() {
            let mut a = a.clone();
            a.trigger = TriggerMode::OncePerBarClose;
            add(&mut with, &format!("a{i}"), a.clone());
            add(&mut without, &format!("a{i}"), a);
        }
        let fired_with = run_engine(&mut with, &updates(&steps, true));
        let fired_without = run_engine(&mut without, &updates(&steps, false));
        prop_assert_eq!(fired_with, fired_without);
        for tf in TFS {
            prop_assert_eq!(with.candles(sym(), tf), without.candles(sym(), tf));
            for s in SPECS {
                let a = with.indicator_values(sym(), tf, &spec(s)).map(|c| c.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>());
                let b = without.indicator_values(sym(), tf, &spec(s)).map(|c| c.iter().map(|v| v.map(f64::to_bits)).collect::<Vec<_>>());
                prop_assert_eq!(a, b, "{} {}", tf, s);
            }
        }
    }

    #[test]
    fn engine_equals_the_naive_evaluator(steps in steps(90), alerts in prop::collection::vec(random_alert(), 1..4)) {
        let ups = updates(&steps, true);
        let mut e = engine();
        let mut naive = Naive::new(Timeframe::M1);
        for (i, a) in alerts.iter().enumerate() {
            add(&mut e, &format!("a{i}"), a.clone());
            naive.add(id(&format!("a{i}")), a.clone());
        }
        let got = run_engine(&mut e, &ups);
        let mut want = Vec::new();
        for (c, closed) in &ups {
            naive.on_update(*c, *closed, &mut want);
        }
        prop_assert_eq!(got, want);
    }

    #[test]
    fn an_alert_added_mid_stream_evaluates_as_if_it_had_been_there(steps in steps(90), mut late in random_alert()) {
        // Operands on the condition's own timeframe (their past is recomputable from history).
        fn same_tf(nodes: &mut [ConditionNode]) {
            for n in nodes {
                match n {
                    ConditionNode::Group { children, .. } => same_tf(children),
                    ConditionNode::Leaf(c) => {
                        let tf = c.timeframe;
                        let fix = |b: &mut Bound| if let Bound::Series(o) = b { o.timeframe = tf };
                        match &mut c.test {
                            Test::Greater(b) | Test::Less(b) | Test::GreaterOrEqual(b) | Test::LessOrEqual(b)
                            | Test::CrossesAbove(b) | Test::CrossesBelow(b) | Test::Crosses(b)
                            | Test::Equals { rhs: b, .. } => fix(b),
                            Test::Divergence { other, .. } | Test::Convergence { other, .. } => other.timeframe = tf,
                            _ => {}
                        }
                    }
                }
            }
        }
        same_tf(&mut late.conditions);
        late.trigger = TriggerMode::OncePerBar;
        late.debounce_bars = 1;
        let ups = updates(&steps, true);
        // Add it before the first update at or after the middle that starts a 15m bar.
        let starts_bar = |i: usize| i == 0 || ups[i - 1].0.open_time < ups[i].0.open_time;
        let Some(split) = (ups.len() / 2..ups.len()).find(|&i| starts_bar(i) && ups[i].0.open_time.millis() % (15 * MIN) == 0) else {
            return Ok(());
        };
        let added_at = ups[split].0.open_time.millis();
        let mut e = engine();
        let mut fired = run_engine(&mut e, &ups[..split]);
        add(&mut e, "late", late.clone());
        fired.extend(run_engine(&mut e, &ups[split..]));
        let mut naive = Naive::new(Timeframe::M1);
        naive.add(id("late"), late);
        let mut want = Vec::new();
        for (c, closed) in &ups {
            naive.on_update(*c, *closed, &mut want);
        }
        let want: Vec<Fire> = want.into_iter().filter(|f| f.bar_time >= added_at).collect();
        let got: Vec<Fire> = fired.into_iter().filter(|f| f.bar_time >= added_at).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn triggers_do_not_depend_on_sharing(steps in steps(120), target in random_alert(), others in prop::collection::vec(random_alert(), 0..30)) {
        let ups = updates(&steps, true);
        let mut alone = engine();
        add(&mut alone, "target", target.clone());
        let mut crowded = engine();
        for (i, o) in others.iter().enumerate() {
            add(&mut crowded, &format!("o{i}"), o.clone());
        }
        add(&mut crowded, "target", target.clone());
        for (i, o) in others.iter().enumerate().step_by(2) {
            let _ = o;
            crowded.remove(&id(&format!("o{i}")));
        }
        let a = run_engine(&mut alone, &ups);
        let b: Vec<Fire> = run_engine(&mut crowded, &ups).into_iter().filter(|f| f.alert == "target").collect();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn alerts_arc_is_cheap_to_share() {
    // The definition is shared, not copied, between the caller and the engine.
    let def = Arc::new(alert(
        Timeframe::M1,
        TriggerMode::OncePerBar,
        1,
        vec![leaf(
            "c",
            Timeframe::M1,
            close(Timeframe::M1),
            Test::Greater(Bound::Value(0.0)),
        )],
    ));
    let mut e = engine();
    assert!(e.upsert(id("x"), Arc::clone(&def)).is_ok());
    assert_eq!(Arc::strong_count(&def), 2);
}
