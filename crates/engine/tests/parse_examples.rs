//! Every JSON example of DESIGN.md §3 and of the seeds (copied verbatim under
//! `tests/fixtures/`; the seed's Python dicts written as JSON) parses.
//!
//! Fixture names say what a file holds:
//! - `alert_*.json`: one alert;
//! - `alerts_*.json`: a JSON array of alerts;
//! - `condition_*.json`: one condition (the seeds show them alone), checked inside a minimal alert;
//! - `action_*.json`: one action, checked inside a minimal alert.

use std::path::PathBuf;

use alert_core::{PriceSource, Symbol, Timeframe};
use alert_engine::parse::{parse_alert, parse_alert_str, parse_alerts_array};
use alert_engine::{
    Action, AlertDefinition, BotActionType, Bound, ConditionNode, Logic, Series, Test, TriggerMode,
    WebhookBody,
};
use alert_indicators::{IndicatorKind, IndicatorSpec, Params};
use serde_json::{Value, json};

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("cannot read {}", dir.display());
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(text) = std::fs::read_to_string(&path) else {
                panic!("cannot read {}", path.display());
            };
            out.push((name, text));
        }
    }
    out.sort();
    out
}

fn fixture(name: &str) -> String {
    let Some((_, text)) = fixtures().into_iter().find(|(n, _)| n == name) else {
        panic!("no fixture {name}");
    };
    text
}

fn minimal_with(key: &str, value: Value) -> Value {
    let mut alert = json!({
        "symbol": "BTCUSDT",
        "base_timeframe": "1h",
        "conditions": [{"type": "price", "operator": ">", "compareValue": 1}],
        "action": {"type": "notify"}
    });
    alert[key] = value;
    alert
}

#[test]
fn every_fixture_parses() {
    let all = fixtures();
    assert!(all.len() >= 10, "fixtures missing: {}", all.len());
    for (name, text) in all {
        let result = if name.starts_with("alerts_") {
            parse_alerts_array(&text).map(|v| v.len())
        } else if name.starts_with("alert_") {
            parse_alert_str(&text).map(|_| 1)
        } else {
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                panic!("{name}: not JSON");
            };
            let alert = if name.starts_with("condition_") {
                minimal_with("conditions", json!([value]))
            } else if name.starts_with("action_") {
                minimal_with("action", value)
            } else {
                panic!("{name}: unknown fixture kind (alert_, alerts_, condition_, action_)");
            };
            parse_alert(&alert).map(|_| 1)
        };
        match result {
            Ok(n) => assert!(n >= 1, "{name}"),
            Err(e) => panic!("{name} does not parse: {e}"),
        }
    }
}

#[test]
fn design_example_parses_to_the_expected_structure() {
    let parsed = parse_alert_str(&fixture("alert_design_s3_example.json"));
    let def: AlertDefinition = match parsed {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(def.name, "BTC oversold on 1h, 15m confirms");
    assert_eq!(Symbol::new("BTCUSDT").ok(), Some(def.symbol));
    assert_eq!(def.base_timeframe, Timeframe::H1);
    assert_eq!(def.logic, Logic::And);
    assert_eq!(def.trigger, TriggerMode::OncePerBar);
    assert_eq!(def.debounce_bars, 1);
    assert_eq!(def.expires_at, None);
    assert_eq!(def.id, None);
    assert_eq!(
        def.actions,
        vec![Action::Webhook {
            url: "https://example.com/hook".into(),
            secret: None,
            body: WebhookBody::Envelope,
        }]
    );
    assert_eq!(
        def.message.as_ref().map(|m| m.source()),
        Some("{{symbol}} RSI {{rsi_oversold.value}} at {{close}}")
    );

    assert_eq!(def.conditions.len(), 2);
    let leaves = def.leaves();
    assert_eq!(leaves.len(), 2);
    assert!(
        def.conditions
            .iter()
            .all(|n| matches!(n, ConditionNode::Leaf(_)))
    );

    let rsi = IndicatorSpec::new(IndicatorKind::Rsi, Params::LengthOf(14, PriceSource::Close));
    let Ok(rsi) = rsi else { panic!("RSI(14)") };
    let c0 = leaves[0];
    assert_eq!(c0.id, "rsi_oversold");
    assert_eq!(c0.timeframe, Timeframe::H1);
    assert_eq!(c0.lhs.timeframe, Timeframe::H1);
    assert_eq!(
        c0.lhs.series,
        Series::Indicator {
            spec: rsi,
            component: 0
        }
    );
    assert_eq!(c0.test, Test::Less(Bound::Value(30.0)));

    let ema = IndicatorSpec::new(IndicatorKind::Ema, Params::LengthOf(20, PriceSource::Close));
    let Ok(ema) = ema else { panic!("EMA(20)") };
    let c1 = leaves[1];
    assert_eq!(c1.id, "price_above_ema");
    assert_eq!(c1.timeframe, Timeframe::M15);
    assert_eq!(c1.lhs.timeframe, Timeframe::M15);
    assert_eq!(c1.lhs.series, Series::Price(PriceSource::Close));
    let Test::CrossesAbove(Bound::Series(rhs)) = c1.test else {
        panic!("{:?}", c1.test)
    };
    assert_eq!(rhs.timeframe, Timeframe::M15);
    assert_eq!(
        rhs.series,
        Series::Indicator {
            spec: ema,
            component: 0
        }
    );
    assert_eq!(def.timeframes(), vec![Timeframe::M15, Timeframe::H1]);
}

#[test]
fn seed_002_bot_alerts_parse_as_bot_triggers() {
    let parsed = parse_alerts_array(&fixture("alerts_seed002_bot_create.json"));
    let alerts = match parsed {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(alerts.len(), 3);
    let ids: Vec<&str> = alerts
        .iter()
        .filter_map(|a| a.id.as_ref().map(|i| i.as_str()))
        .collect();
    assert_eq!(ids, ["bot_42_entry", "bot_42_dca_0", "bot_42_dca_1"]);
    assert_eq!(alerts[0].name, "bot_42_entry");
    assert_eq!(
        alerts[2].actions,
        vec![Action::BotTrigger {
            bot_id: "42".into(),
            action_type: BotActionType::ExecuteDca,
            dca_index: Some(1),
        }]
    );
    assert_eq!(
        alerts[1].leaves()[0].test,
        Test::MovingDownPct { pct: 5.0, bars: 1 }
    );
    // The seed's `period` directly on the condition is the RSI's length.
    let Series::Indicator { spec, .. } = alerts[0].leaves()[0].lhs.series else {
        panic!("an RSI")
    };
    assert_eq!(spec.to_string(), "RSI(14)");
}

#[test]
fn stored_seed_aliases_parse() {
    let parsed = parse_alert_str(&fixture("alert_seed_stored_aliases.json"));
    let def = match parsed {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(def.logic, Logic::Or);
    assert_eq!(def.trigger, TriggerMode::OncePerBarClose);
    assert_eq!(def.symbol.as_str(), "SOLUSDT");
    let leaves = def.leaves();
    let Series::Indicator { spec, component } = leaves[0].lhs.series else {
        panic!()
    };
    assert_eq!((spec.to_string().as_str(), component), ("MACD(12,26,9)", 2));
    assert_eq!(
        leaves[1].test,
        Test::InsideChannel {
            lower: Bound::Value(40.0),
            upper: Bound::Value(60.0)
        }
    );
    let Test::ExitingChannel {
        lower: Bound::Series(lo),
        upper: Bound::Series(up),
    } = leaves[2].test
    else {
        panic!("{:?}", leaves[2].test)
    };
    let (
        Series::Indicator {
            spec: a,
            component: 2,
        },
        Series::Indicator {
            spec: b,
            component: 0,
        },
    ) = (lo.series, up.series)
    else {
        panic!("BBANDS Lower and Upper")
    };
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "BBANDS(20,2.5)");
}
