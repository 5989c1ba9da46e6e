//! The rows the store reads and writes.

use alert_core::{Symbol, Timeframe};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;

/// An alert's lifecycle state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Active,
    Paused,
    /// A `once` alert that fired.
    Triggered,
    /// Past its `expires_at`.
    Expired,
}

impl AlertStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Triggered => "triggered",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::Triggered, Self::Expired]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    pub(crate) fn read(s: &str) -> Result<Self, StoreError> {
        Self::parse(s).ok_or_else(|| StoreError::Corrupt(format!("alert status {s:?}")))
    }
}

/// What creating or replacing an alert writes.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub name: String,
    pub symbol: Symbol,
    pub base_timeframe: Timeframe,
    /// The alert JSON as the user sent it.
    pub definition: serde_json::Value,
    pub status: AlertStatus,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub symbol: String,
    pub base_timeframe: String,
    /// The alert JSON as it was saved.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: serde_json::Value,
    pub status: AlertStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub fire_count: i64,
}

/// A position in a listing ordered by (created_at, id): the last row of the previous page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// An opaque text form for APIs: `<epoch µs>_<uuid>`. Microseconds, because PostgreSQL
    /// keeps them: a cursor rounded to milliseconds would sort before its own row, and a
    /// client paging with it would get that row again, forever.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.timestamp_micros(), self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (us, id) = s.split_once('_')?;
        Some(Self {
            at: DateTime::from_timestamp_micros(us.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Filters and paging for [`crate::Store::list_alerts`].
#[derive(Clone, Debug, Default)]
pub struct AlertQuery {
    pub symbol: Option<String>,
    pub status: Option<AlertStatus>,
    pub after: Option<Cursor>,
    /// At most this many rows (1..=1000; 0 means 100).
    pub limit: u32,
}

/// Alerts changed and deleted since a watermark.
#[derive(Clone, Debug, Default)]
pub struct AlertChanges {
    pub changed: Vec<AlertRow>,
    pub deleted: Vec<Uuid>,
    /// The latest change time seen (ask from here next time), if any change was seen.
    pub watermark: Option<DateTime<Utc>>,
    /// Changes in the window (alerts and deletions), read whole or not.
    pub seen: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    pub title: String,
    pub body: String,
}

/// What an outbox row delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// A signed HTTP request to the action's URL.
    Webhook,
    /// An order for a bot: the row's `url` is the bot id, its payload a JSON object.
    Bot,
}

impl DeliveryKind {
    pub const ALL: [Self; 2] = [Self::Webhook, Self::Bot];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Bot => "bot",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub(crate) fn read(s: &str) -> Result<Self, StoreError> {
        Self::parse(s).ok_or_else(|| StoreError::Corrupt(format!("delivery kind {s:?}")))
    }
}

/// One outbox row to write with a trigger: a webhook to send or a bot order to place.
#[derive(Clone, PartialEq)]
pub struct NewDelivery {
    /// Index of the action in the alert's actions: with the trigger, the delivery's identity.
    pub action_index: i32,
    pub kind: DeliveryKind,
    /// The webhook's URL; for a bot order, the bot id.
    pub url: String,
    /// The action's own signing secret (a webhook's `secret`), if it has one.
    pub secret: Option<String>,
    pub payload: String,
}

impl std::fmt::Debug for NewDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDelivery")
            .field("action_index", &self.action_index)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("payload", &self.payload)
            .finish()
    }
}

/// A trigger to record, with what it must dispatch.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTrigger {
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub bar_time: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub snapshot: serde_json::Value,
    pub notification: Option<NewNotification>,
    pub deliveries: Vec<NewDelivery>,
    /// A `once` alert: its status becomes `triggered`.
    pub spend: bool,
}

/// What recording one trigger did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    New {
        trigger_id: Uuid,
        /// The notification recorded with it, if the trigger had one.
        notification_id: Option<Uuid>,
    },
    /// This (alert, bar) was already recorded, or is earlier in the same batch: nothing was
    /// written.
    Duplicate,
    /// The alert is gone (deleted), no longer active (paused, spent, expired), not the
    /// trigger's user's, or was spent by an earlier trigger of the batch: nothing was written.
    /// The runner's view of the alert is stale; the change feed will bring it up to date.
    Skipped,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TriggerRow {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub bar_time: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// Every condition's values, the bar and the rendered message when it fired.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub snapshot: serde_json::Value,
}

/// Filters and paging for [`crate::Store::list_triggers`] (newest first).
#[derive(Clone, Debug, Default)]
pub struct TriggerQuery {
    pub alert_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Rows strictly older than this (fired_at, id).
    pub before: Option<Cursor>,
    pub limit: u32,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NotificationRow {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub trigger_id: Uuid,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// A claimed outbox row.
#[derive(Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub trigger_id: Uuid,
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub action_index: i32,
    pub kind: DeliveryKind,
    /// The webhook's URL; for a bot order, the bot id.
    pub url: String,
    /// The action's own signing secret, if it has one (else the user's is used).
    pub secret: Option<String>,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// Its (alert, action) is disabled (a receiver said 410 Gone): cancel it, do not send.
    pub disabled: bool,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("trigger_id", &self.trigger_id)
            .field("alert_id", &self.alert_id)
            .field("user_id", &self.user_id)
            .field("action_index", &self.action_index)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("payload", &self.payload)
            .field("attempts", &self.attempts)
            .field("created_at", &self.created_at)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// How an attempt ended, and what happens next.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    Retry {
        at: DateTime<Utc>,
    },
    /// No more attempts.
    Failed,
    /// The receiver said 410 Gone (or the alert's webhook was disabled): stop.
    Cancelled,
}

/// One attempt to record.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub outcome: AttemptOutcome,
    /// The start of the receiver's response body (the caller truncates it, to 1 KiB).
    pub response: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptRow {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_body: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub trigger_id: Uuid,
    pub alert_id: Uuid,
    /// `webhook` or `bot`.
    pub kind: String,
    pub url: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<AttemptRow>,
}

/// A webhook action disabled because its receiver said 410 Gone (until the alert is replaced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DisabledWebhook {
    pub action_index: i32,
    pub reason: String,
    pub disabled_at: DateTime<Utc>,
}

/// A user's webhook signing secrets: the current one, and the previous one while it is still
/// valid after a rotation (receivers may check either).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecrets {
    pub current: String,
    pub previous: Option<String>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecrets")
            .field("current", &REDACTED)
            .field("previous", &self.previous.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// What `Debug` shows for a secret.
const REDACTED: &str = "<redacted>";

/// Outbox rows by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub cancelled: i64,
}

// ---- NUL characters ------------------------------------------------------------------------
//
// PostgreSQL refuses NUL in text ("invalid byte sequence") and `\u0000` in jsonb, so one NUL
// in an alert's name, a snapshot, a webhook payload or an error text taken from a receiver's
// response would fail the write: a whole batch of triggers, or a delivery's completion again
// and again. The store replaces NUL with U+FFFD on both backends before writing.

const REPLACEMENT: &str = "\u{FFFD}";

fn text_has_nul(s: &str) -> bool {
    s.contains('\0')
}

fn clean_text(s: &mut String) {
    if text_has_nul(s) {
        *s = s.replace('\0', REPLACEMENT);
    }
}

fn json_has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => text_has_nul(s),
        serde_json::Value::Array(a) => a.iter().any(json_has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| text_has_nul(k) || json_has_nul(v)),
        _ => false,
    }
}

fn clean_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => clean_text(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(clean_json),
        serde_json::Value::Object(o) => {
            if o.keys().any(|k| text_has_nul(k)) {
                let entries = std::mem::take(o);
                for (mut k, mut v) in entries {
                    clean_text(&mut k);
                    clean_json(&mut v);
                    o.insert(k, v);
                }
            } else {
                o.values_mut().for_each(clean_json);
            }
        }
        _ => {}
    }
}

impl NewAlert {
    /// `self`, with NUL characters replaced (borrowed when there are none).
    pub(crate) fn without_nul(&self) -> std::borrow::Cow<'_, Self> {
        if text_has_nul(&self.name) || json_has_nul(&self.definition) {
            let mut a = self.clone();
            clean_text(&mut a.name);
            clean_json(&mut a.definition);
            std::borrow::Cow::Owned(a)
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }
}

impl NewTrigger {
    fn has_nul(&self) -> bool {
        text_has_nul(&self.symbol)
            || json_has_nul(&self.snapshot)
            || self
                .notification
                .as_ref()
                .is_some_and(|n| text_has_nul(&n.title) || text_has_nul(&n.body))
            || self.deliveries.iter().any(|w| {
                text_has_nul(&w.url)
                    || text_has_nul(&w.payload)
                    || w.secret.as_deref().is_some_and(text_has_nul)
            })
    }

    fn clean(&mut self) {
        clean_text(&mut self.symbol);
        clean_json(&mut self.snapshot);
        if let Some(n) = &mut self.notification {
            clean_text(&mut n.title);
            clean_text(&mut n.body);
        }
        for w in &mut self.deliveries {
            clean_text(&mut w.url);
            clean_text(&mut w.payload);
            if let Some(secret) = &mut w.secret {
                clean_text(secret);
            }
        }
    }

    /// `batch`, with NUL characters replaced (borrowed when there are none).
    pub(crate) fn batch_without_nul(batch: &[Self]) -> std::borrow::Cow<'_, [Self]> {
        if batch.iter().any(Self::has_nul) {
            let mut owned = batch.to_vec();
            owned.iter_mut().for_each(Self::clean);
            std::borrow::Cow::Owned(owned)
        } else {
            std::borrow::Cow::Borrowed(batch)
        }
    }
}

impl AttemptRecord {
    /// `self`, with NUL characters replaced (borrowed when there are none).
    pub(crate) fn without_nul(&self) -> std::borrow::Cow<'_, Self> {
        if self.error.as_deref().is_some_and(text_has_nul)
            || self.response.as_deref().is_some_and(text_has_nul)
        {
            let mut a = self.clone();
            a.error
                .iter_mut()
                .chain(a.response.iter_mut())
                .for_each(clean_text);
            std::borrow::Cow::Owned(a)
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }
}

/// `s`, with NUL characters replaced (borrowed when there are none).
pub(crate) fn text_without_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if text_has_nul(s) {
        std::borrow::Cow::Owned(s.replace('\0', REPLACEMENT))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// What a backend does with each trigger of a batch, decided before it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Insert with this id if the alert is live (exists, active, the trigger's user's), unless
    /// the (alert, bar) is stored already.
    Insert(Uuid),
    /// An earlier trigger in the batch has the same (alert, bar).
    Duplicate,
    /// An earlier trigger in the batch spent the alert (a `once` alert fires once).
    Blocked,
}

/// Plans a batch: only the first of several triggers with the same (alert, bar) can be new,
/// and a `spend` trigger ends its alert's triggers in the batch.
/// The id of a new trigger, notification or delivery row: time-ordered (UUID v7), so the
/// tables' primary-key indexes grow at their right edge rather than each insert touching a
/// random leaf page (at a thousand triggers a second, random pages of large indexes fall out
/// of the cache).
pub(crate) fn new_row_id() -> Uuid {
    Uuid::now_v7()
}

pub(crate) fn plan_triggers(batch: &[NewTrigger]) -> Vec<Plan> {
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let mut spent = std::collections::HashSet::new();
    batch
        .iter()
        .map(|t| {
            if !seen.insert((t.alert_id, t.bar_time)) {
                Plan::Duplicate
            } else if spent.contains(&t.alert_id) {
                Plan::Blocked
            } else {
                if t.spend {
                    spent.insert(t.alert_id);
                }
                Plan::Insert(new_row_id())
            }
        })
        .collect()
}

impl DeliveryCounts {
    /// From `(status, count)` rows, as both backends' `GROUP BY status` gives them.
    pub(crate) fn from_status_counts(rows: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut c = Self::default();
        for (status, n) in rows {
            match status.as_str() {
                "pending" => c.pending = n,
                "delivered" => c.delivered = n,
                "failed" => c.failed = n,
                _ => c.cancelled += n,
            }
        }
        c
    }
}

pub(crate) fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

pub(crate) fn page(limit: u32) -> i64 {
    i64::from(if limit == 0 { 100 } else { limit.min(1000) })
}

/// A trigger with the time it was recorded (its `created_at`: the `now` given to
/// [`crate::Store::record_triggers`], at the backend's precision), as
/// [`crate::Store::triggers_since`] lists them for live clients catching up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedTrigger {
    pub trigger: TriggerRow,
    pub recorded_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(alert: u128, bar: i64, spend: bool) -> NewTrigger {
        NewTrigger {
            alert_id: Uuid::from_u128(alert),
            user_id: Uuid::from_u128(99),
            symbol: "BTCUSDT".into(),
            bar_time: from_millis(bar).unwrap_or_default(),
            fired_at: from_millis(bar).unwrap_or_default(),
            snapshot: serde_json::Value::Null,
            notification: None,
            deliveries: Vec::new(),
            spend,
        }
    }

    #[test]
    fn plans_duplicates_and_spent_alerts() {
        let batch = [
            t(1, 0, false),
            t(1, 0, true),
            t(2, 0, true),
            t(2, 1, false),
            t(2, 0, false),
            t(1, 1, false),
        ];
        let plan = plan_triggers(&batch);
        assert!(matches!(plan[0], Plan::Insert(_)));
        assert_eq!(plan[1], Plan::Duplicate);
        assert!(matches!(plan[2], Plan::Insert(_)));
        assert_eq!(plan[3], Plan::Blocked);
        assert_eq!(plan[4], Plan::Duplicate);
        assert!(matches!(plan[5], Plan::Insert(_)));
    }

    #[test]
    fn nul_characters_are_replaced() {
        let mut v = serde_json::json!({"a\u{0}": ["x\u{0}", {"b": "\u{0}"}], "n": 1});
        assert!(json_has_nul(&v));
        clean_json(&mut v);
        assert!(!json_has_nul(&v));
        assert_eq!(
            v,
            serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}", {"b": "\u{FFFD}"}], "n": 1})
        );
        let batch = [t(1, 0, false)];
        assert!(matches!(
            NewTrigger::batch_without_nul(&batch),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn cursors_keep_microseconds() {
        let c = Cursor {
            at: from_millis(1_700_000_000_123).unwrap_or_default()
                + chrono::Duration::microseconds(456),
            id: Uuid::from_u128(7),
        };
        assert_eq!(
            c.encode(),
            format!("1700000000123456_{}", Uuid::from_u128(7))
        );
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }
}
