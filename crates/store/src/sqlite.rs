//! The SQLite backend. Times are epoch milliseconds, ids uuid text. SQLite has no row-level
//! security: every user-facing statement filters by `user_id`. Writes that check before they
//! write run in `BEGIN IMMEDIATE` transactions (SQLite's single writer serialises them).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use crate::model::{Plan, from_millis, page, plan_triggers};
use crate::{
    AlertChanges, AlertQuery, AlertRow, AlertStatus, AttemptOutcome, AttemptRecord, AttemptRow,
    Delivery, DeliveryCounts, DeliveryKind, DeliveryRow, DisabledWebhook, Limits, NewAlert,
    NewTrigger, NotificationRow, Recorded, StoreError, TriggerQuery, TriggerRow, WebhookSecrets,
};

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
    let v: i64 = row.try_get(col)?;
    from_millis(v).ok_or_else(|| StoreError::Corrupt(format!("{col} {v}")))
}

pub(crate) fn opt_time(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let v: Option<i64> = row.try_get(col)?;
    v.map(|v| from_millis(v).ok_or_else(|| StoreError::Corrupt(format!("{col} {v}"))))
        .transpose()
}

pub(crate) fn uuid(row: &SqliteRow, col: &str) -> Result<Uuid, StoreError> {
    let v: String = row.try_get(col)?;
    Uuid::parse_str(&v).map_err(|_| StoreError::Corrupt(format!("{col} {v:?}")))
}

pub(crate) fn json(row: &SqliteRow, col: &str) -> Result<serde_json::Value, StoreError> {
    let v: String = row.try_get(col)?;
    serde_json::from_str(&v).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

pub(crate) fn alert_row(row: &SqliteRow) -> Result<AlertRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(AlertRow {
        id: uuid(row, "id")?,
        user_id: uuid(row, "user_id")?,
        name: row.try_get("name")?,
        symbol: row.try_get("symbol")?,
        base_timeframe: row.try_get("base_timeframe")?,
        definition: json(row, "definition")?,
        status: AlertStatus::read(&status)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        last_fired_at: opt_time(row, "last_fired_at")?,
        fire_count: row.try_get("fire_count")?,
    })
}

/// Refuses (as `StoreError::Limit`) when `user` would have too many active alerts with one
/// more on `symbol`; `except` is an alert being replaced or resumed.
pub(crate) async fn check_limits(
    tx: &mut sqlx::SqliteConnection,
    limits: Limits,
    user: Uuid,
    symbol: &str,
    except: Option<Uuid>,
) -> Result<(), StoreError> {
    let except = except.map(|u| u.to_string()).unwrap_or_default();
    let row = sqlx::query(
        "SELECT count(*) AS total, coalesce(sum(symbol = ?), 0) AS on_symbol FROM alerts \
         WHERE user_id = ? AND status = 'active' AND id <> ?",
    )
    .bind(symbol)
    .bind(user.to_string())
    .bind(&except)
    .fetch_one(&mut *tx)
    .await?;
    let (total, on_symbol): (i64, i64) = (row.try_get("total")?, row.try_get("on_symbol")?);
    if on_symbol >= i64::from(limits.per_symbol) {
        return Err(StoreError::Limit(format!(
            "{on_symbol} active alerts on {symbol} already: at most {} per user and symbol (ALERT_MAX_ALERTS_PER_SYMBOL)",
            limits.per_symbol
        )));
    }
    if total >= i64::from(limits.per_user) {
        return Err(StoreError::Limit(format!(
            "{total} active alerts already: at most {} per user",
            limits.per_user
        )));
    }
    Ok(())
}

pub async fn create_alert(
    pool: &SqlitePool,
    limits: Limits,
    user: Uuid,
    alert: &NewAlert,
    now: DateTime<Utc>,
) -> Result<AlertRow, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if alert.status == AlertStatus::Active {
        check_limits(&mut tx, limits, user, alert.symbol.as_str(), None).await?;
    }
    let id = Uuid::new_v4();
    let row = sqlx::query(
        "INSERT INTO alerts (id, user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .bind(&alert.name)
    .bind(alert.symbol.as_str())
    .bind(alert.base_timeframe.as_str())
    .bind(alert.definition.to_string())
    .bind(alert.status.as_str())
    .bind(ms(now))
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await?;
    let created = alert_row(&row)?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get_alert(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<AlertRow>, StoreError> {
    let row = sqlx::query("SELECT * FROM alerts WHERE id = ? AND user_id = ?")
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(alert_row).transpose()
}

pub async fn list_alerts(
    pool: &SqlitePool,
    user: Uuid,
    q: &AlertQuery,
) -> Result<Vec<AlertRow>, StoreError> {
    let (after_at, after_id) = q
        .after
        .map_or((i64::MIN, String::new()), |c| (ms(c.at), c.id.to_string()));
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE user_id = ? \
         AND (? IS NULL OR symbol = ?) AND (? IS NULL OR status = ?) \
         AND (created_at > ? OR (created_at = ? AND id > ?)) \
         ORDER BY created_at, id LIMIT ?",
    )
    .bind(user.to_string())
    .bind(q.symbol.as_deref())
    .bind(q.symbol.as_deref())
    .bind(q.status.map(AlertStatus::as_str))
    .bind(q.status.map(AlertStatus::as_str))
    .bind(after_at)
    .bind(after_at)
    .bind(after_id)
    .bind(page(q.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(alert_row).collect()
}

pub async fn update_alert(
    pool: &SqlitePool,
    limits: Limits,
    user: Uuid,
    id: Uuid,
    alert: &NewAlert,
    now: DateTime<Utc>,
) -> Result<Option<AlertRow>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Another user's (or no) alert is `None`, never a limit error.
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM alerts WHERE id = ? AND user_id = ?")
            .bind(id.to_string())
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    if found.is_none() {
        return Ok(None);
    }
    if alert.status == AlertStatus::Active {
        check_limits(&mut tx, limits, user, alert.symbol.as_str(), Some(id)).await?;
    }
    let row = sqlx::query(
        "UPDATE alerts SET name = ?, symbol = ?, base_timeframe = ?, definition = ?, status = ?, updated_at = ? \
         WHERE id = ? AND user_id = ? RETURNING *",
    )
    .bind(&alert.name)
    .bind(alert.symbol.as_str())
    .bind(alert.base_timeframe.as_str())
    .bind(alert.definition.to_string())
    .bind(alert.status.as_str())
    .bind(ms(now))
    .bind(id.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let updated = row.as_ref().map(alert_row).transpose()?;
    // A replaced alert's webhooks are enabled again: the user has fixed them.
    sqlx::query("DELETE FROM disabled_webhooks WHERE alert_id = ? AND user_id = ?")
        .bind(id.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn set_status(
    pool: &SqlitePool,
    limits: Limits,
    user: Uuid,
    id: Uuid,
    status: AlertStatus,
    now: DateTime<Utc>,
) -> Result<Option<AlertRow>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if status == AlertStatus::Active {
        let symbol: Option<String> =
            sqlx::query_scalar("SELECT symbol FROM alerts WHERE id = ? AND user_id = ?")
                .bind(id.to_string())
                .bind(user.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(symbol) = symbol else {
            return Ok(None);
        };
        check_limits(&mut tx, limits, user, &symbol, Some(id)).await?;
    }
    let row = sqlx::query(
        "UPDATE alerts SET status = ?, updated_at = ? WHERE id = ? AND user_id = ? RETURNING *",
    )
    .bind(status.as_str())
    .bind(ms(now))
    .bind(id.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let updated = row.as_ref().map(alert_row).transpose()?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete_alert(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let done = sqlx::query("DELETE FROM alerts WHERE id = ? AND user_id = ?")
        .bind(id.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if done {
        // The trigger wrote a tombstone with the database clock; use the caller's clock, like
        // every other timestamp here.
        sqlx::query("UPDATE alert_tombstones SET deleted_at = ? WHERE alert_id = ?")
            .bind(ms(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(done)
}

fn trigger_row(row: &SqliteRow) -> Result<TriggerRow, StoreError> {
    Ok(TriggerRow {
        id: uuid(row, "id")?,
        alert_id: uuid(row, "alert_id")?,
        user_id: uuid(row, "user_id")?,
        symbol: row.try_get("symbol")?,
        bar_time: time(row, "bar_time")?,
        fired_at: time(row, "fired_at")?,
        snapshot: json(row, "snapshot")?,
    })
}

fn notification_row(row: &SqliteRow) -> Result<NotificationRow, StoreError> {
    Ok(NotificationRow {
        id: uuid(row, "id")?,
        alert_id: uuid(row, "alert_id")?,
        trigger_id: uuid(row, "trigger_id")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        created_at: time(row, "created_at")?,
        read_at: opt_time(row, "read_at")?,
    })
}

pub async fn list_triggers(
    pool: &SqlitePool,
    user: Uuid,
    q: &TriggerQuery,
) -> Result<Vec<TriggerRow>, StoreError> {
    let (before_at, before_id) = q.before.map_or(
        (i64::MAX, "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned()),
        |c| (ms(c.at), c.id.to_string()),
    );
    let rows = sqlx::query(
        "SELECT * FROM alert_triggers WHERE user_id = ? \
         AND (? IS NULL OR alert_id = ?) AND fired_at >= ? AND fired_at < ? \
         AND (fired_at < ? OR (fired_at = ? AND id < ?)) \
         ORDER BY fired_at DESC, id DESC LIMIT ?",
    )
    .bind(user.to_string())
    .bind(q.alert_id.map(|u| u.to_string()))
    .bind(q.alert_id.map(|u| u.to_string()))
    .bind(q.from.map_or(i64::MIN, ms))
    .bind(q.to.map_or(i64::MAX, ms))
    .bind(before_at)
    .bind(before_at)
    .bind(before_id)
    .bind(page(q.limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(trigger_row).collect()
}

pub async fn list_notifications(
    pool: &SqlitePool,
    user: Uuid,
    limit: u32,
) -> Result<Vec<NotificationRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM notifications WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
    )
    .bind(user.to_string())
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(notification_row).collect()
}

pub async fn mark_notification_read(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE notifications SET read_at = coalesce(read_at, ?) WHERE id = ? AND user_id = ?",
    )
    .bind(ms(now))
    .bind(id.to_string())
    .bind(user.to_string())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn list_deliveries(
    pool: &SqlitePool,
    user: Uuid,
    limit: u32,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?")
        .bind(user.to_string())
        .bind(page(limit))
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = uuid(r, "id")?;
        let attempts = sqlx::query(
            "SELECT * FROM webhook_attempts WHERE delivery_id = ? AND user_id = ? ORDER BY attempt",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_all(pool)
        .await?;
        out.push(DeliveryRow {
            id,
            trigger_id: uuid(r, "trigger_id")?,
            alert_id: uuid(r, "alert_id")?,
            kind: r.try_get("kind")?,
            url: r.try_get("url")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: time(r, "next_attempt_at")?,
            last_status_code: r.try_get("last_status_code")?,
            last_error: r.try_get("last_error")?,
            created_at: time(r, "created_at")?,
            delivered_at: opt_time(r, "delivered_at")?,
            attempt_log: attempts
                .iter()
                .map(|a| {
                    Ok(AttemptRow {
                        attempt: a.try_get("attempt")?,
                        attempted_at: time(a, "attempted_at")?,
                        status_code: a.try_get("status_code")?,
                        error: a.try_get("error")?,
                        duration_ms: a.try_get("duration_ms")?,
                        response_body: a.try_get("response_body")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        });
    }
    Ok(out)
}

/// The active alerts whose `symbol` column `keep` accepts: the column is read first and
/// the rest of a row (the definition JSON) only for the kept ones.
pub fn stream_active_alerts<'a, K>(
    pool: &'a SqlitePool,
    keep: K,
) -> BoxStream<'a, Result<AlertRow, StoreError>>
where
    K: Fn(&str) -> bool + Send + 'a,
{
    sqlx::query("SELECT * FROM alerts WHERE status = 'active'")
        .fetch(pool)
        .filter_map(move |r| {
            let row = match r {
                Ok(row) => match row.try_get::<&str, _>("symbol") {
                    Ok(symbol) if !keep(symbol) => None,
                    Ok(_) => Some(alert_row(&row)),
                    Err(e) => Some(Err(StoreError::from(e))),
                },
                Err(e) => Some(Err(StoreError::from(e))),
            };
            std::future::ready(row)
        })
        .boxed()
}

/// As the PostgreSQL version: versions first, then the rows `wanted` chooses.
pub async fn alert_changes<F>(
    pool: &SqlitePool,
    from: DateTime<Utc>,
    wanted: F,
) -> Result<AlertChanges, StoreError>
where
    F: Fn(Uuid, DateTime<Utc>, AlertStatus, &str) -> bool,
{
    let versions =
        sqlx::query("SELECT id, updated_at, status, symbol FROM alerts WHERE updated_at >= ?")
            .bind(ms(from))
            .fetch_all(pool)
            .await?;
    let mut watermark: Option<DateTime<Utc>> = None;
    let mut ids = Vec::new();
    for r in &versions {
        let id = uuid(r, "id")?;
        let at = time(r, "updated_at")?;
        let status: String = r.try_get("status")?;
        watermark = Some(watermark.map_or(at, |w| w.max(at)));
        let symbol: &str = r.try_get("symbol")?;
        if wanted(id, at, AlertStatus::read(&status)?, symbol) {
            ids.push(id.to_string());
        }
    }
    let changed: Vec<AlertRow> = if ids.is_empty() {
        Vec::new()
    } else {
        let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "SELECT * FROM alerts WHERE id IN (SELECT value FROM json_each(?)) ORDER BY updated_at, id",
        )
        .bind(ids)
        .fetch_all(pool)
        .await?
        .iter()
        .map(alert_row)
        .collect::<Result<_, _>>()?
    };
    let deleted_rows =
        sqlx::query("SELECT alert_id, deleted_at FROM alert_tombstones WHERE deleted_at >= ?")
            .bind(ms(from))
            .fetch_all(pool)
            .await?;
    for a in &changed {
        watermark = Some(watermark.map_or(a.updated_at, |w| w.max(a.updated_at)));
    }
    let mut deleted = Vec::with_capacity(deleted_rows.len());
    for r in &deleted_rows {
        deleted.push(uuid(r, "alert_id")?);
        let at = time(r, "deleted_at")?;
        watermark = Some(watermark.map_or(at, |w| w.max(at)));
    }
    Ok(AlertChanges {
        seen: versions.len() + deleted_rows.len(),
        changed,
        deleted,
        watermark,
    })
}

pub async fn record_triggers(
    pool: &SqlitePool,
    batch: &[NewTrigger],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // The batch's alerts that are still active, with their users (SQLite's single writer
    // holds them still until commit).
    let ids: Vec<String> = batch.iter().map(|t| t.alert_id.to_string()).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let live: HashMap<Uuid, Uuid> = sqlx::query(
        "SELECT id, user_id FROM alerts WHERE status = 'active' AND id IN (SELECT value FROM json_each(?))",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| Ok((uuid(r, "id")?, uuid(r, "user_id")?)))
    .collect::<Result<_, StoreError>>()?;
    let plan = plan_triggers(batch);

    let mut out = Vec::with_capacity(batch.len());
    for (t, p) in batch.iter().zip(plan) {
        let id = match p {
            Plan::Duplicate => {
                out.push(Recorded::Duplicate);
                continue;
            }
            Plan::Insert(id) if live.get(&t.alert_id) == Some(&t.user_id) => id,
            Plan::Insert(_) | Plan::Blocked => {
                // Not recorded: the alert is gone, inactive or spent. If its (alert, bar) is
                // stored already (a replay of a spent alert's last bar), that is a duplicate.
                let stored = sqlx::query_scalar::<_, i64>(
                    "SELECT 1 FROM alert_triggers WHERE alert_id = ? AND bar_time = ?",
                )
                .bind(t.alert_id.to_string())
                .bind(ms(t.bar_time))
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
                out.push(if stored {
                    Recorded::Duplicate
                } else {
                    Recorded::Skipped
                });
                continue;
            }
        };
        let inserted = sqlx::query(
            "INSERT INTO alert_triggers (id, alert_id, user_id, symbol, bar_time, fired_at, snapshot, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, bar_time) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(t.alert_id.to_string())
        .bind(t.user_id.to_string())
        .bind(&t.symbol)
        .bind(ms(t.bar_time))
        .bind(ms(t.fired_at))
        .bind(t.snapshot.to_string())
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !inserted {
            out.push(Recorded::Duplicate);
            continue;
        }
        let mut notification_id = None;
        if let Some(n) = &t.notification {
            let note = crate::model::new_row_id();
            notification_id = Some(note);
            sqlx::query(
                "INSERT INTO notifications (id, user_id, alert_id, trigger_id, title, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(note.to_string())
            .bind(t.user_id.to_string())
            .bind(t.alert_id.to_string())
            .bind(id.to_string())
            .bind(&n.title)
            .bind(&n.body)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        for w in &t.deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, trigger_id, alert_id, user_id, action_index, kind, url, secret, payload, \
                 next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(crate::model::new_row_id().to_string())
            .bind(id.to_string())
            .bind(t.alert_id.to_string())
            .bind(t.user_id.to_string())
            .bind(w.action_index)
            .bind(w.kind.as_str())
            .bind(&w.url)
            .bind(w.secret.as_deref())
            .bind(&w.payload)
            .bind(ms(now))
            .bind(ms(now))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE alerts SET fire_count = fire_count + 1, last_fired_at = max(coalesce(last_fired_at, 0), ?), \
             status = CASE WHEN ? THEN 'triggered' ELSE status END, \
             updated_at = CASE WHEN ? THEN ? ELSE updated_at END WHERE id = ?",
        )
        .bind(ms(t.fired_at))
        .bind(t.spend)
        .bind(t.spend)
        .bind(ms(now))
        .bind(t.alert_id.to_string())
        .execute(&mut *tx)
        .await?;
        out.push(Recorded::New {
            trigger_id: id,
            notification_id,
        });
    }
    tx.commit().await?;
    Ok(out)
}

pub async fn expire_alert(
    pool: &SqlitePool,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alerts SET status = 'expired', updated_at = ? WHERE id = ? AND status = 'active'",
    )
    .bind(ms(now))
    .bind(id.to_string())
    .execute(pool)
    .await?;
    Ok(())
}

fn delivery(r: &SqliteRow) -> Result<Delivery, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(Delivery {
        id: uuid(r, "id")?,
        trigger_id: uuid(r, "trigger_id")?,
        alert_id: uuid(r, "alert_id")?,
        user_id: uuid(r, "user_id")?,
        action_index: r.try_get("action_index")?,
        kind: DeliveryKind::read(&kind)?,
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get("attempts")?,
        created_at: time(r, "created_at")?,
        disabled: r.try_get("disabled")?,
    })
}

pub async fn claim_deliveries(
    pool: &SqlitePool,
    worker: &str,
    kinds: &[DeliveryKind],
    limit: u32,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Delivery>, StoreError> {
    let limit = page(limit);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // Per kind, the earliest due rows (an ordered scan of the (kind, next_attempt_at) index);
    // of those, the earliest `limit`.
    let mut due: Vec<(i64, String)> = Vec::new();
    for kind in kinds {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT next_attempt_at, id FROM webhook_deliveries WHERE status = 'pending' AND kind = ? \
             AND next_attempt_at <= ? AND (leased_until IS NULL OR leased_until <= ?) \
             ORDER BY next_attempt_at LIMIT ?",
        )
        .bind(kind.as_str())
        .bind(ms(now))
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        due.extend(rows);
    }
    due.sort();
    due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = due.iter().map(|(_, id)| id.as_str()).collect();
    let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rows = sqlx::query(
        "UPDATE webhook_deliveries SET leased_until = ?, lease_owner = ?, updated_at = ? \
         WHERE id IN (SELECT value FROM json_each(?)) \
         RETURNING *, EXISTS (SELECT 1 FROM disabled_webhooks w \
                              WHERE w.alert_id = webhook_deliveries.alert_id \
                                AND w.action_index = webhook_deliveries.action_index) AS disabled",
    )
    .bind(ms(until))
    .bind(worker)
    .bind(ms(now))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(delivery).collect()
}

pub async fn complete_delivery(
    pool: &SqlitePool,
    id: Uuid,
    worker: &str,
    a: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let (status, next) = match &a.outcome {
        AttemptOutcome::Delivered => ("delivered", now),
        AttemptOutcome::Retry { at } => ("pending", *at),
        AttemptOutcome::Failed => ("failed", now),
        AttemptOutcome::Cancelled => ("cancelled", now),
    };
    let row = sqlx::query(
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
         last_status_code = ?, last_error = ?, leased_until = NULL, lease_owner = NULL, updated_at = ?, \
         delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END \
         WHERE id = ? AND lease_owner = ? AND status = 'pending' RETURNING attempts, user_id",
    )
    .bind(status)
    .bind(ms(next))
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(ms(now))
    .bind(status)
    .bind(ms(now))
    .bind(id.to_string())
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let attempt: i32 = row.try_get("attempts")?;
    let user: String = row.try_get("user_id")?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, user_id, attempt, attempted_at, status_code, error, duration_ms, response_body) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(user)
    .bind(attempt)
    .bind(ms(now))
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(a.duration_ms)
    .bind(a.response.as_deref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn defer_delivery(
    pool: &SqlitePool,
    id: Uuid,
    worker: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = ?, leased_until = NULL, lease_owner = NULL, \
         updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'pending'",
    )
    .bind(ms(until))
    .bind(ms(now))
    .bind(id.to_string())
    .bind(worker)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn disable_webhook(
    pool: &SqlitePool,
    alert_id: Uuid,
    action_index: i32,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let disabled = sqlx::query(
        "INSERT INTO disabled_webhooks (alert_id, action_index, user_id, reason, disabled_at) \
         SELECT id, ?, user_id, ?, ? FROM alerts WHERE id = ? \
         ON CONFLICT (alert_id, action_index) DO UPDATE SET reason = excluded.reason, disabled_at = excluded.disabled_at",
    )
    .bind(action_index)
    .bind(reason)
    .bind(ms(now))
    .bind(alert_id.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if disabled {
        // Pending deliveries of the action, but those under a live lease: their worker
        // completes them.
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'cancelled', last_error = ?, leased_until = NULL, \
             lease_owner = NULL, updated_at = ? WHERE alert_id = ? AND action_index = ? AND status = 'pending' \
             AND (leased_until IS NULL OR leased_until <= ?)",
        )
        .bind(reason)
        .bind(ms(now))
        .bind(alert_id.to_string())
        .bind(action_index)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn disabled_webhooks(
    pool: &SqlitePool,
    user: Uuid,
    alert_id: Uuid,
) -> Result<Vec<DisabledWebhook>, StoreError> {
    let rows = sqlx::query(
        "SELECT action_index, reason, disabled_at FROM disabled_webhooks \
         WHERE alert_id = ? AND user_id = ? ORDER BY action_index",
    )
    .bind(alert_id.to_string())
    .bind(user.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DisabledWebhook {
                action_index: r.try_get("action_index")?,
                reason: r.try_get("reason")?,
                disabled_at: time(r, "disabled_at")?,
            })
        })
        .collect()
}

fn secrets(r: &SqliteRow, now: DateTime<Utc>) -> Result<WebhookSecrets, StoreError> {
    let expires = opt_time(r, "previous_expires_at")?;
    let previous: Option<String> = r.try_get("previous_secret")?;
    Ok(WebhookSecrets {
        current: r.try_get("secret")?,
        previous: previous.filter(|_| expires.is_some_and(|e| e > now)),
    })
}

pub async fn webhook_secret(
    pool: &SqlitePool,
    user: Uuid,
    candidate: &str,
    now: DateTime<Utc>,
) -> Result<WebhookSecrets, StoreError> {
    sqlx::query(
        "INSERT INTO webhook_secrets (user_id, secret, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user.to_string())
    .bind(candidate)
    .bind(ms(now))
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT secret, previous_secret, previous_expires_at FROM webhook_secrets WHERE user_id = ?",
    )
    .bind(user.to_string())
    .fetch_one(pool)
    .await?;
    secrets(&row, now)
}

pub async fn rotate_webhook_secret(
    pool: &SqlitePool,
    user: Uuid,
    candidate: &str,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<WebhookSecrets, StoreError> {
    let row = sqlx::query(
        "INSERT INTO webhook_secrets (user_id, secret, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (user_id) DO UPDATE SET previous_secret = webhook_secrets.secret, \
             previous_expires_at = ?, secret = excluded.secret, rotated_at = ? \
         RETURNING secret, previous_secret, previous_expires_at",
    )
    .bind(user.to_string())
    .bind(candidate)
    .bind(ms(now))
    .bind(ms(expires))
    .bind(ms(now))
    .fetch_one(pool)
    .await?;
    secrets(&row, now)
}

pub async fn redeliver(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, leased_until = NULL, lease_owner = NULL, \
         updated_at = ? WHERE id = ? AND user_id = ? AND status <> 'pending'",
    )
    .bind(ms(now))
    .bind(ms(now))
    .bind(id.to_string())
    .bind(user.to_string())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn delivery_counts(pool: &SqlitePool) -> Result<DeliveryCounts, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status")
            .fetch_all(pool)
            .await?;
    Ok(DeliveryCounts::from_status_counts(rows))
}

pub async fn last_fired_bars(pool: &SqlitePool) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
    let rows =
        sqlx::query("SELECT alert_id, max(bar_time) AS bar FROM alert_triggers GROUP BY alert_id")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| Ok((uuid(r, "alert_id")?, time(r, "bar")?)))
        .collect()
}

/// The bounds that select, in milliseconds, exactly the rows whose `(time, id)` is after
/// `c` in microseconds: `(ms, id)` when the cursor falls on a whole millisecond, else every
/// row of later milliseconds (no uuid sorts after the maximum).
pub(crate) fn after_millis(c: crate::Cursor) -> (i64, String) {
    if c.at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        (ms(c.at), c.id.to_string())
    } else {
        (ms(c.at), Uuid::max().to_string())
    }
}

pub async fn triggers_since(
    pool: &SqlitePool,
    user: Uuid,
    after: crate::Cursor,
    limit: u32,
) -> Result<Vec<crate::RecordedTrigger>, StoreError> {
    let (after_at, after_id) = after_millis(after);
    let rows = sqlx::query(
        "SELECT * FROM alert_triggers WHERE user_id = ? \
         AND (created_at > ? OR (created_at = ? AND id > ?)) \
         ORDER BY created_at, id LIMIT ?",
    )
    .bind(user.to_string())
    .bind(after_at)
    .bind(after_at)
    .bind(after_id)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(crate::RecordedTrigger {
                trigger: trigger_row(r)?,
                recorded_at: time(r, "created_at")?,
            })
        })
        .collect()
}

pub async fn notifications_since(
    pool: &SqlitePool,
    user: Uuid,
    after: crate::Cursor,
    limit: u32,
) -> Result<Vec<NotificationRow>, StoreError> {
    let (after_at, after_id) = after_millis(after);
    let rows = sqlx::query(
        "SELECT * FROM notifications WHERE user_id = ? \
         AND (created_at > ? OR (created_at = ? AND id > ?)) \
         ORDER BY created_at, id LIMIT ?",
    )
    .bind(user.to_string())
    .bind(after_at)
    .bind(after_at)
    .bind(after_id)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(notification_row).collect()
}
