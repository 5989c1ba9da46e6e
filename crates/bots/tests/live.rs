//! Bots against a real store (SQLite and PostgreSQL): created with their alerts in one
//! transaction, driven by bot actions as the dispatcher hands them over — entry, a safety
//! order after a "restart" (a fresh handler resumes the deal from the store), take profit —,
//! a trigger delivered twice placing one order, pause and resume, a deleted bot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alert_bots::live::{StoreBots, create_bot, set_paused};
use alert_bots::{Role, compile, parse_bot};
use alert_dispatch::BotAction;
use alert_store::bench::ScratchDatabase;
use alert_store::{AlertStatus, BotAlertRow, FillRecorded, Store, StoreOptions};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

const T0: i64 = 1_704_067_200_000;
const MIN: i64 = 60_000;

async fn store(postgres: bool) -> (Store, ScratchDatabase) {
    let next_to = if postgres {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
    } else {
        "sqlite://bots.db".into()
    };
    let scratch = ScratchDatabase::create(&next_to).await.unwrap();
    let store = Store::connect(scratch.url(), StoreOptions::default())
        .await
        .unwrap();
    (store, scratch)
}

fn action(
    bot: Uuid,
    user: Uuid,
    alert: &BotAlertRow,
    trigger: Uuid,
    minute: i64,
    (o, h, l, c): (f64, f64, f64, f64),
) -> BotAction {
    let parsed = alert_engine::parse::parse_alert(&alert.alert.definition).unwrap();
    let role = compile::role_of(&parsed.actions[0]).unwrap();
    let (action_type, dca_index) = match role {
        Role::Entry => ("execute_entry", None),
        Role::SafetyOrder(n) => ("execute_dca", Some(n)),
        Role::TakeProfit => ("take_profit", None),
        Role::StopLoss => ("stop_loss", None),
    };
    let mut payload = json!({
        "bot_id": bot.to_string(), "action_type": action_type,
        "bar_time": T0 + minute * MIN, "fired_at": T0 + (minute + 1) * MIN, "price": c,
        "snapshot": {"bar": {"open": o, "high": h, "low": l, "close": c, "volume": 1.0}},
    });
    if let Some(n) = dca_index {
        payload["dca_index"] = json!(n);
    }
    BotAction {
        trigger_id: trigger,
        alert_id: alert.alert.id,
        user_id: user,
        bot_id: bot.to_string(),
        payload,
    }
}

fn by_role<'a>(alerts: &'a [BotAlertRow], role: &str) -> &'a BotAlertRow {
    alerts
        .iter()
        .find(|a| a.role == role)
        .unwrap_or_else(|| panic!("no {role} alert"))
}

fn threshold(a: &BotAlertRow) -> f64 {
    a.alert.definition["conditions"][0]["compareValue"]
        .as_f64()
        .unwrap_or(f64::NAN)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

async fn a_deal_through_the_store(postgres: bool) {
    let (store, scratch) = store(postgres).await;
    let user = Uuid::new_v4();
    let def = parse_bot(&json!({
        "pair": "BTCUSDT", "timeframe": "1m",
        "entry_conditions": [{"type": "indicator", "indicator": "RSI", "component": "RSI",
                              "operator": "<", "compareValue": 30}],
        "base_order": 100, "safety_order": 50, "max_safety_orders": 2,
        "price_deviation_pct": 2, "step_scale": 1.5, "take_profit_pct": 1.5,
        "cooldown_bars": 3, "quantity_step": 1e-8
    }))
    .unwrap();
    let bot = create_bot(&store, user, &def, Utc::now()).await.unwrap();
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    let statuses: Vec<(&str, AlertStatus)> = alerts
        .iter()
        .map(|a| (a.role.as_str(), a.alert.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("entry", AlertStatus::Active),
            ("so1", AlertStatus::Paused),
            ("so2", AlertStatus::Paused),
            ("tp", AlertStatus::Paused)
        ]
    );
    for a in &alerts {
        assert_eq!(
            a.alert.definition["action"]["bot_id"],
            bot.id.to_string(),
            "{}",
            a.role
        );
    }

    // The entry: one order, however often the trigger comes.
    let handler = StoreBots::new(store.clone());
    let entry = action(
        bot.id,
        user,
        by_role(&alerts, "entry"),
        Uuid::new_v4(),
        0,
        (100.0, 100.0, 100.0, 100.0),
    );
    let first = handler.carry_out(&entry).await.unwrap();
    assert!(matches!(first, Some(FillRecorded::New { .. })), "{first:?}");
    assert!(
        handler.carry_out(&entry).await.unwrap().is_none(),
        "the entry is no longer armed"
    );
    assert_eq!(store.list_bot_orders(user, bot.id).await.unwrap().len(), 1);
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    assert_eq!(by_role(&alerts, "entry").alert.status, AlertStatus::Paused);
    for (role, price) in [("so1", 98.0), ("so2", 95.0), ("tp", 101.5)] {
        let a = by_role(&alerts, role);
        assert_eq!(a.alert.status, AlertStatus::Active, "{role}");
        assert!(close(threshold(a), price), "{role}: {}", threshold(a));
    }

    // A "restart": a fresh handler resumes the deal from the store.
    let handler = StoreBots::new(store.clone());
    let so1 = action(
        bot.id,
        user,
        by_role(&alerts, "so1"),
        Uuid::new_v4(),
        1,
        (99.0, 99.0, 97.0, 97.5),
    );
    assert!(matches!(
        handler.carry_out(&so1).await.unwrap(),
        Some(FillRecorded::New { .. })
    ));
    let deal = store.open_deal(bot.id).await.unwrap().unwrap();
    assert_eq!(deal.filled, [true, false]);
    let q1 = (50.0f64 / 98.0 / 1e-8 * (1.0 + 1e-12)).floor() * 1e-8;
    let avg = (100.0 + q1 * 98.0) / (1.0 + q1);
    assert!(close(deal.cost / deal.base_qty, avg));
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    assert_eq!(
        by_role(&alerts, "so1").alert.status,
        AlertStatus::Paused,
        "spent"
    );
    assert!(
        close(threshold(by_role(&alerts, "tp")), avg * 1.015),
        "TP moved to the new average"
    );

    // Take profit: the deal closes, its alerts pause, the entry re-arms after the cooldown.
    let tp = action(
        bot.id,
        user,
        by_role(&alerts, "tp"),
        Uuid::new_v4(),
        5,
        (99.0, 101.5, 99.0, 101.0),
    );
    assert!(matches!(
        handler.carry_out(&tp).await.unwrap(),
        Some(FillRecorded::New { .. })
    ));
    assert_eq!(store.open_deal(bot.id).await.unwrap(), None);
    let deals = store.list_deals(user, bot.id).await.unwrap();
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].exit.as_deref(), Some("take_profit"));
    assert!(deals[0].realized_pnl.unwrap() > 0.0);
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    for role in ["so1", "so2", "tp"] {
        assert_eq!(
            by_role(&alerts, role).alert.status,
            AlertStatus::Paused,
            "{role}"
        );
    }
    let entry_alert = by_role(&alerts, "entry");
    assert_eq!(entry_alert.alert.status, AlertStatus::Active);
    // Closed on the bar opening at minute 5: from after the close of minute 5 + 3.
    assert_eq!(
        entry_alert.alert.definition["not_before"],
        json!(T0 + 9 * MIN + 1)
    );
    // A late trigger of a paused safety order places nothing.
    let late = action(
        bot.id,
        user,
        by_role(&alerts, "so2"),
        Uuid::new_v4(),
        6,
        (95.0, 95.0, 94.0, 94.0),
    );
    assert!(handler.carry_out(&late).await.unwrap().is_none());
    let orders = store.list_bot_orders(user, bot.id).await.unwrap();
    let roles: Vec<&str> = orders.iter().map(|o| o.role.as_str()).collect();
    assert_eq!(roles, ["entry", "so1", "tp"]);

    // Pause: every alert paused; resume: only what the state arms (the entry).
    let paused = set_paused(&store, user, &bot, true, Utc::now())
        .await
        .unwrap();
    assert!(paused.is_some());
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    assert!(alerts.iter().all(|a| a.alert.status == AlertStatus::Paused));
    let entry_again = action(
        bot.id,
        user,
        by_role(&alerts, "entry"),
        Uuid::new_v4(),
        20,
        (90.0, 90.0, 90.0, 90.0),
    );
    assert!(
        handler.carry_out(&entry_again).await.unwrap().is_none(),
        "a paused bot trades nothing"
    );
    set_paused(&store, user, &bot, false, Utc::now())
        .await
        .unwrap();
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    let active: Vec<&str> = alerts
        .iter()
        .filter(|a| a.alert.status == AlertStatus::Active)
        .map(|a| a.role.as_str())
        .collect();
    assert_eq!(active, ["entry"]);

    // Someone else's action for the bot is refused; a deleted bot's is dropped.
    let mut foreign = entry_again.clone();
    foreign.user_id = Uuid::new_v4();
    assert!(handler.carry_out(&foreign).await.is_err());
    assert!(store.delete_bot(user, bot.id, Utc::now()).await.unwrap());
    assert!(handler.carry_out(&entry_again).await.unwrap().is_none());

    store.close().await;
    scratch.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_through_the_store_sqlite() {
    a_deal_through_the_store(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_through_the_store_postgres() {
    a_deal_through_the_store(true).await;
}
