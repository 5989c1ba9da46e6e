//! Engine triggers → store records: the snapshot, the notification, the outbox rows (webhooks
//! and bot orders).

use alert_engine::{Action, Trigger, WebhookBody};
use alert_store::{DeliveryKind, NewDelivery, NewNotification, NewTrigger};
use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

fn time(t: alert_core::BarTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t.millis()).single()
}

/// The record of a trigger; `None` if the alert or user id is not a uuid (not a stored alert).
pub fn trigger_to_record(t: &Trigger, now: DateTime<Utc>) -> Option<NewTrigger> {
    let alert_id = Uuid::parse_str(t.alert_id.as_str()).ok()?;
    let user_id = Uuid::parse_str(t.user_id.as_deref()?).ok()?;
    let message = t.render_message(t.fired_at);
    let snapshot = serde_json::json!({
        "symbol": t.symbol,
        "timeframe": t.timeframe,
        "bar_time": t.bar_time.millis(),
        "fired_at": t.fired_at.millis(),
        "conditions": t.conditions,
        "bar": t.bar,
        "message": message,
    });
    let def = &t.definition;
    let mut notification = None;
    let mut deliveries = Vec::new();
    for (i, action) in def.actions.iter().enumerate() {
        match action {
            Action::Notify { title } => {
                let body = message.clone().unwrap_or_else(|| {
                    let close = t.bar.map(|b| b.close.to_string()).unwrap_or_default();
                    format!(
                        "{} on {} {} fired at {}",
                        def.name, t.symbol, t.timeframe, close
                    )
                });
                notification = Some(NewNotification {
                    title: title.clone().unwrap_or_else(|| def.name.clone()),
                    body,
                });
            }
            Action::Webhook { url, secret, body } => {
                let payload = match body {
                    WebhookBody::Message => message.clone().unwrap_or_default(),
                    WebhookBody::Envelope => serde_json::json!({
                        "type": "alert.triggered",
                        "timestamp": now.to_rfc3339(),
                        "data": {
                            "alert": {"id": alert_id, "name": def.name, "symbol": t.symbol, "timeframe": t.timeframe},
                            "trigger": snapshot,
                            "message": message,
                        }
                    })
                    .to_string(),
                };
                deliveries.push(NewDelivery {
                    action_index: i as i32,
                    kind: DeliveryKind::Webhook,
                    url: url.clone(),
                    secret: secret.clone(),
                    payload,
                });
            }
            // Bot orders go through the outbox too (url = the bot id); the bots module places
            // them. The trigger id is not known yet: the delivery row carries it.
            Action::Bot { bot_id } | Action::BotTrigger { bot_id, .. } => {
                let mut payload = serde_json::json!({
                    "bot_id": bot_id,
                    "alert_id": alert_id,
                    "symbol": t.symbol,
                    "timeframe": t.timeframe,
                    "bar_time": t.bar_time.millis(),
                    "fired_at": t.fired_at.millis(),
                    "price": t.bar.map(|b| b.close),
                    "snapshot": snapshot,
                });
                if let (
                    Action::BotTrigger {
                        action_type,
                        dca_index,
                        ..
                    },
                    Some(fields),
                ) = (action, payload.as_object_mut())
                {
                    fields.insert("action_type".into(), serde_json::json!(action_type));
                    if let Some(n) = dca_index {
                        fields.insert("dca_index".into(), serde_json::json!(n));
                    }
                }
                deliveries.push(NewDelivery {
                    action_index: i as i32,
                    kind: DeliveryKind::Bot,
                    url: bot_id.clone(),
                    secret: None,
                    payload: payload.to_string(),
                });
            }
        }
    }
    Some(NewTrigger {
        alert_id,
        user_id,
        symbol: t.symbol.to_string(),
        bar_time: time(t.bar_time)?,
        fired_at: time(t.fired_at)?,
        snapshot,
        notification,
        deliveries,
        spend: def.trigger == alert_engine::TriggerMode::Once,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use alert_core::BarTime;
    use alert_engine::{AlertId, BarSnapshot};

    use super::*;

    const ALERT: &str = "7d1f3a52-0c4e-4c38-9d3f-6c1d2b9e8a01";
    const USER: &str = "0b6a1c1e-2f0e-4a4e-8c55-3f7e1b2d9c11";

    fn fired(actions: serde_json::Value) -> Trigger {
        let def = alert_engine::parse::parse_alert(&serde_json::json!({
            "id": ALERT, "user_id": USER, "name": "dip", "symbol": "BTCUSDT",
            "base_timeframe": "1h",
            "conditions": [{"id": "p", "type": "price", "operator": "<", "compareValue": 100}],
            "actions": actions,
        }))
        .expect("a valid alert");
        Trigger {
            alert_id: AlertId::new(ALERT).unwrap(),
            user_id: Some(USER.into()),
            symbol: def.symbol,
            timeframe: def.base_timeframe,
            bar_time: BarTime::from_millis(1_704_067_200_000),
            fired_at: BarTime::from_millis(1_704_070_800_000),
            conditions: Default::default(),
            bar: Some(BarSnapshot {
                open: 101.0,
                high: 102.0,
                low: 98.0,
                close: 99.5,
                volume: 3.0,
            }),
            definition: Arc::new(def),
        }
    }

    #[test]
    fn webhook_and_bot_actions_become_outbox_rows() {
        let t = fired(serde_json::json!([
            {"type": "notify"},
            {"type": "webhook", "url": "https://example.com/a", "secret": "whsec_MDEyMzQ1Njc4OWFiY2RlZg=="},
            {"type": "webhook", "url": "https://example.com/b", "body": "message"},
            {"type": "bot", "bot_id": "generic-1"},
            {"type": "bot_trigger", "bot_id": "42", "action_type": "execute_dca", "dca_index": 2},
            {"type": "bot_trigger", "bot_id": "43", "action_type": "take_profit"},
        ]));
        let now = Utc.timestamp_millis_opt(1_704_070_801_000).unwrap();
        let r = trigger_to_record(&t, now).expect("a stored alert's trigger");
        assert!(r.notification.is_some());
        let rows: Vec<_> = r
            .deliveries
            .iter()
            .map(|d| (d.action_index, d.kind, d.url.as_str(), d.secret.as_deref()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    1,
                    DeliveryKind::Webhook,
                    "https://example.com/a",
                    Some("whsec_MDEyMzQ1Njc4OWFiY2RlZg==")
                ),
                (2, DeliveryKind::Webhook, "https://example.com/b", None),
                (3, DeliveryKind::Bot, "generic-1", None),
                (4, DeliveryKind::Bot, "42", None),
                (5, DeliveryKind::Bot, "43", None),
            ]
        );
        let payload = |i: usize| -> serde_json::Value {
            serde_json::from_str(&r.deliveries[i].payload).expect("JSON")
        };
        let generic = payload(2);
        assert_eq!(generic["bot_id"], "generic-1");
        assert_eq!(generic["alert_id"], ALERT);
        assert_eq!(generic["symbol"], "BTCUSDT");
        assert_eq!(generic["timeframe"], "1h");
        assert_eq!(generic["bar_time"], 1_704_067_200_000_i64);
        assert_eq!(generic["price"], 99.5);
        assert_eq!(generic["snapshot"], r.snapshot);
        assert!(generic.get("action_type").is_none());
        assert!(generic.get("dca_index").is_none());
        assert!(generic.get("trigger_id").is_none(), "not known yet");
        let dca = payload(3);
        assert_eq!(dca["action_type"], "execute_dca");
        assert_eq!(dca["dca_index"], 2);
        let tp = payload(4);
        assert_eq!(tp["action_type"], "take_profit");
        assert!(tp.get("dca_index").is_none());
    }
}
