//! The rows the store reads and writes.

use alert_core::{Symbol, Timeframe};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::StoreError;

/// An alert's lifecycle state.
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

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub symbol: String,
    pub base_timeframe: String,
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
    /// An opaque text form for APIs: `<epoch ms>_<uuid>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.timestamp_millis(), self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('_')?;
        Some(Self {
            at: from_millis(ms.parse().ok()?)?,
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
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewNotification {
    pub title: String,
    pub body: String,
}

/// One webhook to send for a trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct NewWebhook {
    /// Index of the action in the alert's actions: with the trigger, the delivery's identity.
    pub action_index: i32,
    pub url: String,
    pub payload: String,
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
    pub webhooks: Vec<NewWebhook>,
    /// A `once` alert: its status becomes `triggered`.
    pub spend: bool,
}

/// What recording one trigger did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    New {
        trigger_id: Uuid,
    },
    /// This (alert, bar) was already recorded: nothing was written.
    Duplicate,
    /// The alert is gone (deleted), no longer active (paused, spent, expired) or not the
    /// trigger's user's: nothing was written. The runner's view of it is stale.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TriggerRow {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub bar_time: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
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
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub trigger_id: Uuid,
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub action_index: i32,
    pub url: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
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
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptRow {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub trigger_id: Uuid,
    pub alert_id: Uuid,
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

/// Outbox rows by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub cancelled: i64,
}

pub(crate) fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

pub(crate) fn page(limit: u32) -> i64 {
    i64::from(if limit == 0 { 100 } else { limit.min(1000) })
}
