//! Scripted price paths through a bot's alerts in the engine: exact order prices and sizes
//! for several ladders, the average price after each safety order, take profit after DCAs,
//! stop loss, gaps, cooldown, a duplicated trigger, and indicator sharing across bots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use alert_bots::{
    BotBacktest, BotState, BotTrigger, OrderRecord, Outcome, PaperExecutor, Role, Side, compile,
    parse_bot,
};
use alert_core::{BarTime, Candle, Symbol, Timeframe};
use alert_engine::{AlertId, BarSnapshot, Engine, EngineConfig};
use serde_json::{Value, json};

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MIN: i64 = 60_000;

fn candle(i: i64, o: f64, h: f64, l: f64, c: f64) -> Candle {
    Candle {
        open_time: BarTime::from_millis(T0 + i * MIN),
        open: o,
        high: h,
        low: l,
        close: c,
        volume: 1.0,
    }
}

/// A bar that only touches `c`.
fn flat(i: i64, c: f64) -> Candle {
    candle(i, c, c, c, c)
}

fn bot(extra: Value) -> Value {
    let mut b = json!({
        "pair": "BTCUSDT", "timeframe": "1m",
        "entry_conditions": [{"type": "price", "operator": "<=", "compareValue": 100}],
        "base_order": 100, "safety_order": 50, "max_safety_orders": 3,
        "price_deviation_pct": 2, "step_scale": 1.5, "volume_scale": 2,
        "take_profit_pct": 1.5, "fee_pct": 0.1, "quantity_step": 1e-8
    });
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn run(def: Value, candles: &[Candle]) -> (Vec<OrderRecord>, BotBacktest) {
    let def = parse_bot(&def).unwrap();
    let mut bt = BotBacktest::new("b1", def, Timeframe::M1).unwrap();
    let mut orders = Vec::new();
    for c in candles {
        orders.extend(bt.on_candle(*c).unwrap());
    }
    (orders, bt)
}

fn step_down(q: f64) -> f64 {
    (q / 1e-8 * (1.0 + 1e-12)).floor() * 1e-8
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn take_profit_after_two_safety_orders() {
    let path = [
        flat(0, 100.0),                     // entry at the close, 100
        candle(1, 99.0, 99.0, 97.5, 97.8),  // through SO1 (98): fills at 98
        candle(2, 97.8, 97.9, 94.0, 94.5),  // through SO2 (95): fills at 95
        candle(3, 94.5, 100.0, 94.5, 99.5), // TP (≈99.01) traded through: fills at TP
        flat(4, 101.0),
    ];
    let (orders, bt) = run(bot(json!({})), &path);
    let roles: Vec<Role> = orders.iter().map(|o| o.role).collect();
    assert_eq!(
        roles,
        [
            Role::Entry,
            Role::SafetyOrder(1),
            Role::SafetyOrder(2),
            Role::TakeProfit
        ]
    );
    // Entry: 100 quote at 100.
    assert_eq!((orders[0].price, orders[0].base_qty), (100.0, 1.0));
    // SO1 at 100·(1 − 2 %) = 98, 50 quote; SO2 at 100·(1 − 5 %) = 95, 100 quote.
    let q1 = step_down(50.0 / 98.0);
    let q2 = step_down(100.0 / 95.0);
    assert!(
        close(orders[1].price, 98.0) && close(orders[1].base_qty, q1),
        "{:?}",
        orders[1]
    );
    assert!(
        close(orders[2].price, 95.0) && close(orders[2].base_qty, q2),
        "{:?}",
        orders[2]
    );
    // The average after each order.
    let cost1 = 100.0 + q1 * 98.0;
    let avg1 = cost1 / (1.0 + q1);
    let cost2 = cost1 + q2 * 95.0;
    let qty = 1.0 + q1 + q2;
    let avg2 = cost2 / qty;
    assert!(close(orders[0].average_price, 100.0));
    assert!(
        close(orders[1].average_price, avg1),
        "{} vs {avg1}",
        orders[1].average_price
    );
    assert!(close(orders[2].average_price, avg2));
    // TP 1.5 % above the average after SO2, selling everything.
    let tp = avg2 * 1.015;
    let sell = &orders[3];
    assert_eq!(sell.side, Side::Sell);
    assert!(close(sell.price, tp), "{} vs {tp}", sell.price);
    assert!(close(sell.base_qty, step_down(qty)));
    let fees = (100.0 + q1 * 98.0 + q2 * 95.0 + sell.base_qty * tp) * 0.001;
    let pnl = sell.base_qty * tp - cost2 - fees;
    assert!(
        close(sell.realized_pnl.unwrap(), pnl),
        "{:?} vs {pnl}",
        sell.realized_pnl
    );
    let s = bt.summary();
    assert_eq!((s.deals_closed, s.take_profits, s.win_rate), (1, 1, 1.0));
    assert!(close(s.realized_pnl, pnl) && close(s.fees, fees));
    assert!(close(s.max_capital_committed, cost2));
    assert!(bt.state().deal.is_none());
}

#[test]
fn ladders_for_several_scales() {
    for (d, s, v) in [
        (1.0f64, 1.0f64, 1.0f64),
        (2.0, 1.5, 2.0),
        (1.5, 2.0, 1.2),
        (3.0, 0.8, 0.5),
    ] {
        let def = bot(
            json!({"price_deviation_pct": d, "step_scale": s, "volume_scale": v,
                             "max_safety_orders": 4, "take_profit_pct": 50}),
        );
        // Down by 0.5 % a bar, well past the deepest order.
        let mut path = vec![flat(0, 100.0)];
        let mut price = 100.0;
        for i in 1..80 {
            let next = price * 0.995;
            path.push(candle(i, price, price, next, next));
            price = next;
        }
        let (orders, _) = run(def, &path);
        let mut cumulative = 0.0;
        let mut step = d;
        for n in 1..=4u32 {
            cumulative += step;
            step *= s;
            let want_price = 100.0 * (1.0 - cumulative / 100.0);
            let want_size = 50.0 * v.powi(n as i32 - 1);
            let Some(o) = orders.iter().find(|o| o.role == Role::SafetyOrder(n)) else {
                panic!("({d}, {s}, {v}): SO{n} never filled: {orders:?}")
            };
            assert!(
                close(o.price, want_price),
                "({d}, {s}, {v}) SO{n}: {} vs {want_price}",
                o.price
            );
            assert!(
                close(o.base_qty, step_down(want_size / want_price)),
                "({d}, {s}, {v}) SO{n} size"
            );
        }
        assert_eq!(orders.len(), 5, "entry and four safety orders, each once");
    }
}

#[test]
fn stop_loss_from_the_average_and_a_gap_fills_at_the_close() {
    let def = bot(json!({"max_safety_orders": 1, "price_deviation_pct": 2, "stop_loss_pct": 5}));
    let path = [
        flat(0, 100.0),
        candle(1, 96.0, 96.5, 95.5, 96.0), // gapped below SO1 (98): fills at the close, 96
        candle(2, 96.0, 96.0, 90.0, 91.0), // through SL: avg·0.95
    ];
    let (orders, bt) = run(def, &path);
    assert_eq!(orders[1].role, Role::SafetyOrder(1));
    assert_eq!(orders[1].price, 96.0, "a gap fills at the close");
    let avg = orders[1].average_price;
    let sl = &orders[2];
    assert_eq!(sl.role, Role::StopLoss);
    assert!(
        close(sl.price, avg * 0.95),
        "{} vs {}",
        sl.price,
        avg * 0.95
    );
    assert!(sl.realized_pnl.unwrap() < 0.0);
    let s = bt.summary();
    assert_eq!((s.stop_losses, s.win_rate), (1, 0.0));
    assert!(s.max_drawdown > 0.0);
}

#[test]
fn cooldown_bars_hold_the_next_entry() {
    for cooldown in [0i64, 2, 5] {
        let def =
            bot(json!({"max_safety_orders": 0, "take_profit_pct": 1, "cooldown_bars": cooldown}));
        // Enter at 100, take profit at 101 on bar 1, then the entry condition holds on every bar.
        let mut path = vec![flat(0, 100.0), candle(1, 100.0, 101.5, 100.0, 101.2)];
        for i in 2..12 {
            path.push(flat(i, 99.0));
        }
        let (orders, _) = run(def, &path);
        let entries: Vec<i64> = orders
            .iter()
            .filter(|o| o.role == Role::Entry)
            .map(|o| (o.fired_at - T0) / MIN - 1)
            .collect();
        // The deal closed on bar 1: the next entry comes on bar 2 + cooldown.
        assert_eq!(
            entries,
            [0, 2 + cooldown],
            "cooldown {cooldown}: {orders:?}"
        );
    }
}

#[test]
fn a_trigger_delivered_twice_places_one_order() {
    let def = parse_bot(&bot(json!({}))).unwrap();
    let mut state = BotState::default();
    let mut paper = PaperExecutor::new(def.fee_pct, def.quantity_step);
    let bar = BarSnapshot {
        open: 100.0,
        high: 100.0,
        low: 100.0,
        close: 100.0,
        volume: 1.0,
    };
    let trigger = BotTrigger {
        role: Role::Entry,
        key: "trigger-1".into(),
        bar_time: BarTime::from_millis(T0),
        fired_at: BarTime::from_millis(T0 + MIN),
        bar,
    };
    let first = state.on_trigger(&def, &trigger, &mut paper).unwrap();
    assert!(matches!(first, Outcome::Filled { .. }));
    let again = state.on_trigger(&def, &trigger, &mut paper).unwrap();
    assert!(matches!(again, Outcome::Ignored(_)), "{again:?}");
    assert_eq!(paper.orders_placed, 1);
    assert_eq!(state.deals_opened, 1);
    // A fresh state (a restart that lost its memory) with the same executor: the client order
    // id still dedupes, the fill is the first one.
    let mut fresh = BotState::default();
    let Outcome::Filled { order, .. } = fresh.on_trigger(&def, &trigger, &mut paper).unwrap()
    else {
        panic!("filled")
    };
    assert_eq!((order.price, paper.orders_placed), (100.0, 1));
}

#[test]
fn a_deal_closed_by_hand_sells_everything_and_rearms_after_the_cooldown() {
    let def = parse_bot(&bot(json!({"cooldown_bars": 1}))).unwrap();
    let mut state = BotState::default();
    let mut paper = PaperExecutor::new(def.fee_pct, def.quantity_step);
    let at = |i: i64| BarTime::from_millis(T0 + i * MIN);
    // Nothing to close without a deal.
    let idle = state
        .close_now(&def, "close-0".into(), at(0), at(0), 100.0, &mut paper)
        .unwrap();
    assert!(matches!(idle, Outcome::Ignored(_)), "{idle:?}");
    let flat_bar = |p: f64| BarSnapshot {
        open: p,
        high: p,
        low: p,
        close: p,
        volume: 1.0,
    };
    let trigger = |role, key: &str, i: i64, p: f64| BotTrigger {
        role,
        key: key.into(),
        bar_time: at(i),
        fired_at: at(i + 1),
        bar: flat_bar(p),
    };
    state
        .on_trigger(&def, &trigger(Role::Entry, "e", 0, 100.0), &mut paper)
        .unwrap();
    state
        .on_trigger(
            &def,
            &trigger(Role::SafetyOrder(1), "s1", 1, 98.0),
            &mut paper,
        )
        .unwrap();
    let deal = state.deal.clone().unwrap();
    let Outcome::Filled { order, changes } = state
        .close_now(&def, "close-1".into(), at(5), at(5), 97.0, &mut paper)
        .unwrap()
    else {
        panic!("filled")
    };
    assert_eq!((order.role, order.side), (Role::Close, Side::Sell));
    assert!(close(order.base_qty, deal.base_qty));
    assert!(close(order.price, 97.0));
    let pnl = order.notional - order.fee - deal.cost - deal.fees;
    assert!(close(order.realized_pnl.unwrap(), pnl));
    assert!(pnl < 0.0, "sold below the average: {pnl}");
    assert!(state.deal.is_none());
    let closed = state.closed.last().unwrap();
    assert_eq!(
        (closed.exit, Role::Close.exit()),
        (Role::Close, Some("closed_by_user"))
    );
    // The unfilled safety orders and the exits pause; the entry re-arms after bar 5 + 1.
    assert!(changes.contains(&alert_bots::AlertChange::Pause {
        role: Role::SafetyOrder(2)
    }));
    assert!(changes.contains(&alert_bots::AlertChange::Pause {
        role: Role::TakeProfit
    }));
    assert!(changes.contains(&alert_bots::AlertChange::Activate {
        role: Role::Entry,
        threshold: None,
        from: BarTime::from_millis(T0 + 7 * MIN + 1),
    }));
    // A close has no alert.
    assert_eq!(compile::alert("b1", &def, Role::Close, 0.0, None), None);
}

#[test]
fn a_hundred_bots_on_one_symbol_share_one_rsi() {
    let mut engine = Engine::new(EngineConfig {
        feed: Timeframe::M1,
        history_bars: 0,
    });
    for i in 0..100 {
        let def = parse_bot(&bot(json!({
            "entry_conditions": [{"type": "indicator", "indicator": "RSI", "component": "RSI",
                                  "settings": {"length": 14}, "operator": "<", "compareValue": 20 + (i % 10)}]
        })))
        .unwrap();
        for (role, alert) in compile::alerts(&format!("bot{i}"), &def) {
            if role != Role::Entry {
                continue;
            }
            let mut parsed = alert_engine::parse::parse_alert(&alert).unwrap();
            let id = AlertId::new(&format!("bot{i}.entry")).unwrap();
            parsed.id = Some(id.clone());
            engine.upsert(id, Arc::new(parsed)).unwrap();
        }
    }
    assert_eq!(engine.alert_count(), 100);
    assert_eq!(engine.indicator_count(Symbol::new("BTCUSDT").unwrap()), 1);
}
