//! Bots against a real store (SQLite and PostgreSQL): created with their alerts in one
//! transaction, driven by bot actions as the dispatcher hands them over — entry, a safety
//! order after a "restart" (a fresh handler resumes the deal from the store), take profit —,
//! a trigger delivered twice placing one order, pause and resume, a deleted bot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alert_bots::live::{
    CloseOutcome, ReplaceError, StoreBots, create_bot, replace_bot, set_paused,
};
use alert_bots::{Role, compile, parse_bot};
use alert_dispatch::{BotAction, LiveEvent, LiveHub};
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
        Role::Close => panic!("no alert closes a deal by hand"),
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
    let paused = set_paused(&store, user, bot.id, true, Utc::now())
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
    set_paused(&store, user, bot.id, false, Utc::now())
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

/// Two safety orders filled by concurrent actions (a bar that gapped through both levels), an
/// edit of the take profit during the deal, an edit the deal forbids, and the deal closed by
/// hand — each fill on the user's live events, in order, nothing lost to a race.
async fn concurrent_fills_edits_and_a_close_by_hand(postgres: bool) {
    let (store, scratch) = store(postgres).await;
    let user = Uuid::new_v4();
    let json = json!({
        "name": "racer", "pair": "ETHUSDT", "timeframe": "1m",
        "entry_conditions": [{"type": "price", "operator": ">", "compareValue": 0}],
        "base_order": 100, "safety_order": 50, "max_safety_orders": 2,
        "price_deviation_pct": 2, "step_scale": 1.5, "take_profit_pct": 1.5,
        "stop_loss_pct": 20, "cooldown_bars": 2, "quantity_step": 1e-8
    });
    let def = parse_bot(&json).unwrap();
    let bot = create_bot(&store, user, &def, Utc::now()).await.unwrap();
    let hub = LiveHub::default();
    let mut events = hub.subscribe(user);
    let handler = StoreBots::with_live(store.clone(), Some(hub.clone()), None);
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    let entry = action(
        bot.id,
        user,
        by_role(&alerts, "entry"),
        Uuid::new_v4(),
        0,
        (100.0, 100.0, 100.0, 100.0),
    );
    handler.carry_out(&entry).await.unwrap();
    // SO1 at 98, SO2 at 95: a bar from 97 down to 94 reaches both; both actions at once.
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    let bar = (97.0, 97.0, 94.0, 94.5);
    let so1 = action(
        bot.id,
        user,
        by_role(&alerts, "so1"),
        Uuid::new_v4(),
        3,
        bar,
    );
    let so2 = action(
        bot.id,
        user,
        by_role(&alerts, "so2"),
        Uuid::new_v4(),
        3,
        bar,
    );
    let (a, b) = tokio::join!(handler.carry_out(&so1), handler.carry_out(&so2));
    assert!(matches!(a.unwrap(), Some(FillRecorded::New { .. })));
    assert!(matches!(b.unwrap(), Some(FillRecorded::New { .. })));
    let orders = store.list_bot_orders(user, bot.id).await.unwrap();
    assert_eq!(orders.len(), 3);
    let deal = store.open_deal(bot.id).await.unwrap().unwrap();
    assert_eq!(
        deal.filled,
        [true, true],
        "neither fill overwrote the other"
    );
    let bought: f64 = orders.iter().map(|o| o.notional).sum();
    let qty: f64 = orders.iter().map(|o| o.base_qty).sum();
    assert!(close(deal.cost, bought), "{} vs {bought}", deal.cost);
    assert!(close(deal.base_qty, qty));
    let average = deal.cost / deal.base_qty;
    assert!(close(orders[2].average_price.unwrap(), average));

    // During the deal: the take profit may move (at once, from the average), the ladder not.
    let mut edited = json.clone();
    edited["take_profit_pct"] = json!(3);
    edited["name"] = json!("racer v2");
    let row = replace_bot(
        &store,
        user,
        bot.id,
        &parse_bot(&edited).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(row.name, "racer v2");
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    let tp = by_role(&alerts, "tp");
    assert_eq!(tp.alert.status, AlertStatus::Active);
    assert!(close(threshold(tp), average * 1.03), "{}", threshold(tp));
    assert!(close(threshold(by_role(&alerts, "sl")), average * 0.8));
    for role in ["entry", "so1", "so2"] {
        assert_eq!(
            by_role(&alerts, role).alert.status,
            AlertStatus::Paused,
            "{role}"
        );
    }
    let mut ladder = edited.clone();
    ladder["base_order"] = json!(200);
    ladder["price_deviation_pct"] = json!(3);
    let refused = replace_bot(
        &store,
        user,
        bot.id,
        &parse_bot(&ladder).unwrap(),
        Utc::now(),
    )
    .await;
    match refused {
        Err(ReplaceError::UnsafeDuringDeal(fields)) => {
            assert_eq!(fields, ["base_order", "price_deviation_pct"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store
            .get_bot(user, bot.id)
            .await
            .unwrap()
            .unwrap()
            .definition["base_order"],
        100.0
    );

    // Closed by hand at 99: a sell of the whole position, the deal closed by the user, the
    // entry re-armed after the cooldown; once.
    let outcome = handler
        .close_deal(
            user,
            bot.id,
            99.0,
            alert_core::BarTime::from_millis(T0 + 10 * MIN),
        )
        .await
        .unwrap();
    let Some(CloseOutcome::Closed(order)) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (order.role.as_str(), order.side.as_str()),
        ("close", "sell")
    );
    assert!(close(order.base_qty, qty));
    let fees: f64 = orders.iter().map(|o| o.fee).sum::<f64>() + order.fee;
    let pnl = order.notional - bought - fees;
    assert!(
        close(order.realized_pnl.unwrap(), pnl),
        "{:?} vs {pnl}",
        order.realized_pnl
    );
    let deals = store.list_deals(user, bot.id).await.unwrap();
    assert_eq!(deals[0].exit.as_deref(), Some("closed_by_user"));
    assert!(close(deals[0].realized_pnl.unwrap(), pnl));
    let alerts = store.bot_alerts(user, bot.id).await.unwrap();
    let entry_alert = by_role(&alerts, "entry");
    assert_eq!(entry_alert.alert.status, AlertStatus::Active);
    assert_eq!(
        entry_alert.alert.definition["not_before"],
        T0 + 13 * MIN + 1,
        "after the closing bar and 2 cooldown bars"
    );
    for role in ["so1", "so2", "tp", "sl"] {
        assert_eq!(
            by_role(&alerts, role).alert.status,
            AlertStatus::Paused,
            "{role}"
        );
    }
    assert_eq!(
        handler
            .close_deal(
                user,
                bot.id,
                99.0,
                alert_core::BarTime::from_millis(T0 + 11 * MIN)
            )
            .await
            .unwrap(),
        Some(CloseOutcome::NoDeal)
    );
    assert_eq!(
        handler
            .close_deal(
                Uuid::new_v4(),
                bot.id,
                99.0,
                alert_core::BarTime::from_millis(T0)
            )
            .await
            .unwrap(),
        None,
        "another user's bot"
    );

    // The live events: each order once, in recording order, as the store has them.
    let stored = store.list_bot_orders(user, bot.id).await.unwrap();
    assert_eq!(stored.len(), 4);
    let mut seen = Vec::new();
    while let Ok(Some(e)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), events.recv()).await
    {
        let LiveEvent::BotOrder(o) = &*e else {
            panic!("{e:?}")
        };
        seen.push(o.clone());
    }
    assert_eq!(
        seen.iter().map(|o| o.id).collect::<Vec<_>>(),
        stored.iter().map(|o| o.id).collect::<Vec<_>>()
    );
    assert!(seen.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    assert_eq!(seen[3].realized_pnl, order.realized_pnl);

    store.close().await;
    scratch.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fills_edits_and_a_close_by_hand_sqlite() {
    concurrent_fills_edits_and_a_close_by_hand(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fills_edits_and_a_close_by_hand_postgres() {
    concurrent_fills_edits_and_a_close_by_hand(true).await;
}
