//! Engine triggers → store records: the snapshot, the notification, the webhook outbox rows.

use alert_engine::{Action, Trigger, WebhookBody};
use alert_store::{NewNotification, NewTrigger, NewWebhook};
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
    let mut webhooks = Vec::new();
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
            Action::Webhook { url, body, .. } => {
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
                webhooks.push(NewWebhook {
                    action_index: i as i32,
                    url: url.clone(),
                    payload,
                });
            }
            // Bot actions are dispatched by the bots module (a later issue); the trigger and
            // its snapshot are recorded all the same.
            Action::Bot { .. } | Action::BotTrigger { .. } => {}
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
        webhooks,
        spend: def.trigger == alert_engine::TriggerMode::Once,
    })
}
