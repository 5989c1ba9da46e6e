//! Builders shared by the engine's integration tests.
#![allow(dead_code)]

pub mod naive;

use std::sync::Arc;

use alert_core::{BarTime, Candle, CandleUpdate, PriceSource, Symbol, Timeframe};
use alert_engine::{
    Action, AlertDefinition, AlertId, ConditionNode, Engine, Event, Logic, Operand, Series, Test,
    Trigger, TriggerMode,
};
use alert_indicators::IndicatorSpec;

pub const T0: i64 = 1_704_067_200_000; // 2024-01-01 00:00 UTC, a Monday
pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;

pub fn sym() -> Symbol {
    Symbol::new("BTCUSDT").unwrap_or_else(|e| panic!("{e}"))
}

pub fn id(s: &str) -> AlertId {
    AlertId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

pub fn spec(s: &str) -> IndicatorSpec {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn close(tf: Timeframe) -> Operand {
    Operand {
        timeframe: tf,
        series: Series::Price(PriceSource::Close),
    }
}

pub fn ind(tf: Timeframe, s: &str, component: usize) -> Operand {
    Operand {
        timeframe: tf,
        series: Series::Indicator {
            spec: spec(s),
            component,
        },
    }
}

pub fn leaf(cid: &str, tf: Timeframe, lhs: Operand, test: Test) -> ConditionNode {
    ConditionNode::Leaf(alert_engine::Condition {
        id: cid.into(),
        timeframe: tf,
        lhs,
        test,
    })
}

pub fn alert(
    base: Timeframe,
    trigger: TriggerMode,
    debounce: u32,
    conditions: Vec<ConditionNode>,
) -> AlertDefinition {
    AlertDefinition {
        id: None,
        user_id: None,
        name: "t".into(),
        symbol: sym(),
        base_timeframe: base,
        logic: Logic::And,
        conditions,
        trigger,
        debounce_bars: debounce,
        message: None,
        expires_at: None,
        not_before: None,
        actions: vec![Action::Notify { title: None }],
    }
}

pub fn add(engine: &mut Engine, name: &str, def: AlertDefinition) {
    engine
        .upsert(id(name), Arc::new(def))
        .unwrap_or_else(|e| panic!("{e}"));
}

/// A bar at `t` (ms) with the given close; open = previous close is not needed by the tests,
/// so open = close and the range is ±`spread`.
pub fn bar(t: i64, close: f64) -> Candle {
    Candle {
        open_time: BarTime::from_millis(t),
        open: close,
        high: close + 0.5,
        low: close - 0.5,
        close,
        volume: 1.0,
    }
}

pub fn feed(engine: &mut Engine, c: Candle, closed: bool) -> Vec<Trigger> {
    let mut out = Vec::new();
    engine
        .on_candle(sym(), &CandleUpdate { candle: c, closed }, &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    out.into_iter()
        .filter_map(|e| match e {
            Event::Triggered(t) => Some(*t),
            Event::Expired { .. } => None,
        })
        .collect()
}
