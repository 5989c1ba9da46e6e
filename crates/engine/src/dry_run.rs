//! Dry runs: an alert evaluated on the data as it stands, without registering it, firing it or
//! changing any state — for "would this fire now?" in a UI.
//!
//! Each condition is evaluated with the same tests as a registered alert ([`Leaf::holds`]):
//! operand values are the current ones (the in-progress bar of each timeframe, peeked; or its
//! last closed bar), read from the engine's shared indicator when some alert already reads it
//! and otherwise computed from the stored history; look-back values (crossings, channels,
//! divergence, moving %) are recomputed at the previous closes of the condition's timeframe.
//! When the latest update closed the condition's bar, that close is the bar evaluated and the
//! look-back starts before it — the evaluation the engine made at that close.
//!
//! Trigger policy (debounce, once per bar, `once_per_bar_close`, expiry) is not applied: the
//! result says whether the conditions hold, not whether the alert would fire again.

use alert_core::{BarTime, Candle, PriceSource, Symbol, Timeframe};
use alert_indicators::{AnyIndicator, Indicator};

use crate::book::SymbolBook;
use crate::compile::{CTest, Leaf, Past, Val};
use crate::definition::Test;
use crate::definition::{AlertDefinition, Bound, Condition, ConditionNode, Logic, Operand, Series};
use crate::series::TfSeries;

/// The result of [`crate::Engine::dry_run`].
#[derive(Clone, Debug, PartialEq)]
pub struct DryRun {
    /// Whether the alert's conditions (its AND/OR tree) hold on the current data.
    pub holds: bool,
    /// Some condition lacks data: an operand without a value yet, or an incomplete look-back.
    /// Such a condition does not hold.
    pub warming_up: bool,
    /// Why, when warming up (the first condition that is, by id).
    pub reason: Option<String>,
    /// Close time of the latest data of the symbol (`None`: no data).
    pub as_of: Option<BarTime>,
    /// The alert's base-timeframe bar as it stands, and whether it is closed.
    pub bar: Option<(Candle, bool)>,
    /// Every leaf condition, in document order.
    pub conditions: Vec<DryCondition>,
}

/// One condition of a dry run.
#[derive(Clone, Debug, PartialEq)]
pub struct DryCondition {
    pub id: String,
    /// The condition's timeframe.
    pub timeframe: Timeframe,
    /// The left-hand operand.
    pub value: Option<f64>,
    /// The right-hand operand (the lower bound for channels, the past value for moving %).
    pub rhs: Option<f64>,
    /// The upper bound, for channels.
    pub rhs2: Option<f64>,
    pub held: bool,
    pub warming_up: bool,
    /// Why it is warming up.
    pub reason: Option<String>,
}

/// An alert a dry run cannot evaluate on this symbol's data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DryRunError {
    #[error(
        "timeframe {timeframe} cannot be built from the {feed} candles {symbol} is fed with: expected a multiple of {feed}"
    )]
    Timeframe {
        symbol: Symbol,
        timeframe: Timeframe,
        feed: Timeframe,
    },
}

/// Evaluates `def` on `book` (`None`: the symbol has no data yet), fed with `feed`.
pub(crate) fn evaluate(
    book: Option<&SymbolBook>,
    feed: Timeframe,
    def: &AlertDefinition,
) -> Result<DryRun, DryRunError> {
    for tf in def.timeframes() {
        if !tf.is_multiple_of(feed) {
            return Err(DryRunError::Timeframe {
                symbol: def.symbol,
                timeframe: tf,
                feed,
            });
        }
    }
    let leaves = def.leaves();
    let Some(book) = book.filter(|b| b.has_data()) else {
        let reason = format!("no market data for {} yet", def.symbol);
        return Ok(DryRun {
            holds: false,
            warming_up: true,
            reason: Some(reason.clone()),
            as_of: None,
            bar: None,
            conditions: leaves
                .iter()
                .map(|c| DryCondition {
                    id: c.id.clone(),
                    timeframe: c.timeframe,
                    value: None,
                    rhs: None,
                    rhs2: None,
                    held: false,
                    warming_up: true,
                    reason: Some(reason.clone()),
                })
                .collect(),
        });
    };
    let conditions: Vec<DryCondition> = leaves.iter().map(|c| condition(book, c)).collect();
    let mut held = conditions.iter().map(|c| c.held);
    let holds = group(def.logic, &def.conditions, &mut held);
    let first_warming = conditions.iter().find(|c| c.warming_up);
    let as_of = book
        .series(book.feed)
        .and_then(|s| s.current)
        .map(|c| c.open_time.plus_millis(book.feed.duration_ms()));
    let bar = book
        .series(def.base_timeframe)
        .and_then(|s| s.current.map(|c| (c, !s.in_progress)));
    Ok(DryRun {
        holds,
        warming_up: first_warming.is_some(),
        reason: first_warming
            .map(|c| format!("{}: {}", c.id, c.reason.as_deref().unwrap_or("warming up"))),
        as_of,
        bar,
        conditions,
    })
}

/// Whether a group holds, given its leaves' results in document order (all are consumed).
fn group(logic: Logic, nodes: &[ConditionNode], held: &mut impl Iterator<Item = bool>) -> bool {
    let results: Vec<bool> = nodes
        .iter()
        .map(|n| match n {
            ConditionNode::Leaf(_) => held.next().unwrap_or(false),
            ConditionNode::Group { logic, children } => group(*logic, children, held),
        })
        .collect();
    match logic {
        Logic::And => !results.is_empty() && results.iter().all(|h| *h),
        Logic::Or => results.iter().any(|h| *h),
    }
}

fn describe(o: &Operand) -> String {
    match o.series {
        Series::Price(PriceSource::Volume) => format!("volume on {}", o.timeframe),
        Series::Price(src) => format!("{} on {}", src.as_str(), o.timeframe),
        Series::Indicator { spec, component } => {
            let name = spec
                .kind()
                .components()
                .get(component)
                .copied()
                .unwrap_or("?");
            format!("{spec} {name} on {}", o.timeframe)
        }
    }
}

/// The current value of an operand (NaN: none yet).
fn current(book: &SymbolBook, o: &Operand) -> f64 {
    let Some(series) = book.series(o.timeframe) else {
        return f64::NAN;
    };
    match o.series {
        Series::Price(src) => series.current.map_or(f64::NAN, |b| b.price(src)),
        Series::Indicator { spec, component } => {
            // The shared indicator when some alert reads it, else computed from history.
            let comps = series.shared_values(&spec).or_else(|| {
                let mut ind = AnyIndicator::new(&spec);
                let mut last = None;
                for bar in series.history() {
                    last = ind.update(bar);
                }
                match series.current {
                    Some(bar) if series.in_progress => ind.peek(&bar),
                    _ => last,
                }
            });
            comps.and_then(|c| c.get(component)).unwrap_or(f64::NAN)
        }
    }
}

/// The look-back closes of the condition's timeframe, newest first: the closed bars before
/// the bar being evaluated.
fn lookback_closes(own: &TfSeries, n: usize) -> Vec<BarTime> {
    let skip = usize::from(!own.in_progress && own.current.is_some());
    own.history()
        .iter()
        .rev()
        .skip(skip)
        .take(n)
        .map(|b| own.tf.bar_close(b.open_time))
        .collect()
}

fn condition(book: &SymbolBook, cond: &Condition) -> DryCondition {
    // Value table of this condition alone: lhs, rhs (lower), rhs2 (upper).
    let mut values = [current(book, &cond.lhs), f64::NAN, f64::NAN];
    let mut next = 0;
    let test = CTest::compile(&cond.test, |b| {
        next += 1;
        if let Some(cell) = values.get_mut(next) {
            *cell = match b {
                Bound::Value(v) => *v,
                Bound::Series(o) => current(book, o),
            };
        }
        Val(next as u32)
    });
    // Operands the test reads, to name one without a value.
    let (rhs_operand, rhs2_operand) = operand_descriptions(&cond.test);
    let needed = cond.test.history_needed();
    let mut reason = None;
    let mut past = None;
    if needed > 0 {
        let mut ring = Past::new(needed);
        let filled = book
            .series(cond.timeframe)
            .map(|own| lookback_closes(own, ring.capacity()))
            .filter(|closes| !closes.is_empty())
            .is_some_and(|closes| book.fill_past(cond, &mut ring, &closes));
        let moving = matches!(test, CTest::Moving { .. });
        reason = if !filled {
            Some(format!(
                "the look-back of {needed} closed {} bar(s) is not available yet",
                cond.timeframe
            ))
        } else {
            match ring.oldest_full() {
                None => Some(format!(
                    "needs {needed} closed {} bar(s) before the current one",
                    cond.timeframe
                )),
                Some([pa, pb, _]) if pa.is_nan() || (pb.is_nan() && !moving) => Some(format!(
                    "an operand had no value {needed} closed {} bar(s) ago",
                    cond.timeframe
                )),
                Some(_) => None,
            }
        };
        past = Some(ring);
    }
    let leaf = Leaf {
        tf: cond.timeframe.index() as u8,
        lhs: 0,
        consts: [u32::MAX; 2],
        test,
        past,
    };
    let [a, b, c] = leaf.operands(&values);
    let missing = if a.is_nan() {
        Some(describe(&cond.lhs))
    } else if b.is_nan() && !matches!(leaf.test, CTest::Moving { .. }) {
        rhs_operand
    } else if c.is_nan() && matches!(leaf.test, CTest::Channel(..)) {
        rhs2_operand
    } else {
        None
    };
    if let Some(what) = missing {
        reason = Some(format!("{what} has no value yet"));
    }
    let finite = |v: f64| v.is_finite().then_some(v);
    let held = leaf.holds(&values);
    DryCondition {
        id: cond.id.clone(),
        timeframe: cond.timeframe,
        value: finite(a),
        rhs: leaf.past_rhs().or(finite(b)),
        rhs2: finite(c),
        held,
        warming_up: reason.is_some(),
        reason,
    }
}

/// How a missing right-hand operand is named: (rhs or lower, upper).
fn operand_descriptions(test: &Test) -> (Option<String>, Option<String>) {
    let name = |b: Option<Bound>| {
        b.map(|b| match b {
            Bound::Value(v) => v.to_string(),
            Bound::Series(o) => describe(&o),
        })
    };
    let [rhs, upper] = test.rhs_bounds();
    (name(rhs), name(upper))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use alert_core::{CandleUpdate, Symbol};
    use serde_json::json;

    use crate::{AlertId, Engine, EngineConfig, Event};

    use super::*;

    const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z, a Monday
    const MIN: i64 = 60_000;

    fn sym() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            feed: Timeframe::M1,
            history_bars: 1000,
        })
    }

    fn bar(minute: i64, close: f64) -> Candle {
        Candle {
            open_time: BarTime::from_millis(T0 + minute * MIN),
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 10.0 + (minute % 7) as f64,
        }
    }

    fn feed(e: &mut Engine, c: Candle, closed: bool) -> Vec<Event> {
        let mut out = Vec::new();
        e.on_candle(sym(), &CandleUpdate { candle: c, closed }, &mut out)
            .unwrap();
        out
    }

    fn def(tf: &str, conditions: serde_json::Value) -> AlertDefinition {
        crate::parse::parse_alert(&json!({
            "symbol": "BTCUSDT", "base_timeframe": tf, "conditions": conditions,
            "action": {"type": "notify"}
        }))
        .unwrap()
    }

    /// A deterministic zig-zag walk.
    fn close_at(i: i64) -> f64 {
        100.0 + ((i * 37) % 11) as f64 - 5.0 + (i as f64 / 7.0).sin() * 3.0
    }

    #[test]
    fn without_data_everything_is_null_and_warming_up() {
        let e = engine();
        let d = def(
            "1m",
            json!([{"id": "r", "indicator": "RSI", "operator": "<", "compareValue": 30}]),
        );
        let r = e.dry_run(&d).unwrap();
        assert!(!r.holds && r.warming_up);
        assert!(r.reason.unwrap().contains("no market data for BTCUSDT"));
        assert_eq!(r.conditions.len(), 1);
        assert_eq!(r.conditions[0].value, None);
        assert!(r.conditions[0].warming_up);
    }

    #[test]
    fn an_unbuildable_timeframe_is_an_error() {
        let mut e = Engine::new(EngineConfig {
            feed: Timeframe::M5,
            history_bars: 10,
        });
        let mut out = Vec::new();
        let c = Candle {
            open_time: BarTime::from_millis(T0),
            ..bar(0, 100.0)
        };
        e.on_candle(
            sym(),
            &CandleUpdate {
                candle: c,
                closed: true,
            },
            &mut out,
        )
        .unwrap();
        let d = def(
            "3m",
            json!([{"type": "price", "operator": ">", "compareValue": 1}]),
        );
        assert!(matches!(
            e.dry_run(&d),
            Err(DryRunError::Timeframe {
                timeframe: Timeframe::M3,
                ..
            })
        ));
    }

    #[test]
    fn values_and_warm_up_reasons() {
        let mut e = engine();
        for m in 0..3 {
            feed(&mut e, bar(m, 10.0 + m as f64), true);
        }
        let d = def(
            "1m",
            json!([
                {"id": "sma", "indicator": "SMA", "settings": {"length": 3}, "operator": ">", "compareValue": 10},
                {"id": "rsi", "indicator": "RSI", "settings": {"length": 14}, "operator": "<", "compareValue": 30},
                {"id": "x", "type": "price", "operator": "crosses_above", "compareValue": 11.5}
            ]),
        );
        let r = e.dry_run(&d).unwrap();
        let [sma, rsi, x] = &r.conditions[..] else {
            panic!("three conditions")
        };
        assert_eq!(sma.value, Some(11.0));
        assert_eq!(sma.rhs, Some(10.0));
        assert!(sma.held && !sma.warming_up);
        assert_eq!(rsi.value, None);
        assert!(!rsi.held && rsi.warming_up);
        assert!(rsi.reason.as_deref().unwrap().contains("RSI(14)"));
        // The last close (12) crossed 11.5 from the close before it (11).
        assert_eq!(x.value, Some(12.0));
        assert!(x.held);
        assert!(!r.holds && r.warming_up);
        assert!(r.reason.as_deref().unwrap().starts_with("rsi: "));
        assert_eq!(r.as_of, Some(BarTime::from_millis(T0 + 3 * MIN)));
        assert_eq!(
            r.bar.map(|(c, closed)| (c.close, closed)),
            Some((12.0, true))
        );

        // In progress: the current bar is peeked, the look-back is the last close.
        feed(&mut e, bar(3, 11.0), false);
        let r = e.dry_run(&d).unwrap();
        assert_eq!(r.conditions[0].value, Some((11.0 + 12.0 + 11.0) / 3.0));
        assert_eq!(r.conditions[2].value, Some(11.0));
        assert!(!r.conditions[2].held, "11 is below 11.5");
        assert_eq!(
            r.bar.map(|(c, closed)| (c.close, closed)),
            Some((11.0, false))
        );

        // OR: one condition suffices.
        let or = def(
            "1m",
            json!([{"logic": "OR", "conditions": [
                {"indicator": "RSI", "operator": "<", "compareValue": 30},
                {"type": "price", "operator": "<", "compareValue": 50}
            ]}]),
        );
        assert!(e.dry_run(&or).unwrap().holds);
    }

    #[test]
    fn a_dry_run_agrees_with_the_engine_and_changes_nothing() {
        let alerts = [
            json!([{"type": "price", "operator": "crosses_above",
                    "rhs": {"indicator": "SMA", "settings": {"length": 3}}}]),
            json!([{"indicator": "RSI", "settings": {"length": 3}, "operator": "<", "compareValue": 45}]),
            json!([{"type": "price", "operator": "moving_up_pct", "compareValue": 2, "settings": {"bars": 2}}]),
            json!([{"type": "price", "operator": "exiting_channel",
                    "rhs": {"indicator": "BBANDS", "settings": {"length": 5, "stddev": 1}}}]),
            json!([{"indicator": "RSI", "operator": "divergence",
                    "settings": {"length": 4, "lookback": 3}}]),
            json!([{"type": "price", "operator": ">", "timeframe": "5m",
                    "rhs": {"indicator": "EMA", "settings": {"length": 3}, "timeframe": "5m"}},
                   {"logic": "OR", "conditions": [
                       {"type": "volume", "operator": ">", "compareValue": 13},
                       {"type": "price", "operator": "crosses_below", "compareValue": 100}]}]),
        ];
        for (k, conditions) in alerts.into_iter().enumerate() {
            let d = def("1m", conditions);
            // `live` evaluates the alert as registered; `dry` only holds the data.
            let mut live = engine();
            let mut dry = engine();
            let id = AlertId::new("a").unwrap();
            live.upsert(id.clone(), Arc::new(d.clone())).unwrap();
            let (mut fired, mut held) = (0, 0);
            for m in 0..120 {
                let c = bar(m, close_at(m));
                let events = feed(&mut live, c, true);
                feed(&mut dry, c, true);
                let state = dry.export_state();
                let evaluations = dry.evaluations();
                let r = dry.dry_run(&d).unwrap();
                assert_eq!(dry.export_state(), state);
                assert_eq!(dry.evaluations(), evaluations);
                let triggered = events.iter().any(|e| matches!(e, Event::Triggered(_)));
                assert_eq!(r.holds, triggered, "alert {k} at minute {m}: {r:?}");
                if let Some(Event::Triggered(t)) = events.first() {
                    for c in &r.conditions {
                        let snap = &t.conditions[&c.id];
                        assert_eq!((c.value, c.rhs, c.rhs2), (snap.value, snap.rhs, snap.rhs2));
                    }
                }
                fired += usize::from(triggered);
                held += usize::from(r.holds);
                // Dry-running on the live engine changes nothing either.
                let before = live.alert_state(&id);
                let _ = live.dry_run(&d).unwrap();
                assert_eq!(live.alert_state(&id), before);
            }
            assert_eq!(fired, held);
            assert!(fired > 0, "alert {k} fired at some point");
            assert!(fired < 120, "alert {k} did not always hold");

            // With updates in progress: fires at most once per bar, when the dry run holds.
            let mut live = engine();
            let mut dry = engine();
            live.upsert(id.clone(), Arc::new(d.clone())).unwrap();
            let mut held_intrabar = 0;
            for m in 0..120 {
                let mut fired_on_bar = false;
                for (step, closed) in [(0.7, false), (-0.4, false), (0.0, true)] {
                    let c = bar(m, close_at(m) + step);
                    let events = feed(&mut live, c, closed);
                    feed(&mut dry, c, closed);
                    let r = dry.dry_run(&d).unwrap();
                    let triggered = events.iter().any(|e| matches!(e, Event::Triggered(_)));
                    assert!(!triggered || r.holds, "alert {k} at {m}/{step}: {r:?}");
                    assert!(
                        !r.holds || triggered || fired_on_bar,
                        "alert {k} at {m}/{step} holds but did not fire: {r:?}"
                    );
                    fired_on_bar |= triggered;
                    held_intrabar += usize::from(r.holds && !closed);
                }
            }
            assert!(held_intrabar > 0, "alert {k} held intrabar at some point");
        }
    }
}
