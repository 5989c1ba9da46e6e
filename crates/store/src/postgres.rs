//! The PostgreSQL backend. User-facing calls run in a transaction as role `authenticated` with
//! the user's JWT claims (as PostgREST does), so row-level security scopes them — and each
//! statement filters by the user as well. Service calls (runner, dispatcher) use the pool's
//! own role, which owns the tables or bypasses RLS.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::model::page;
use crate::{
    AlertChanges, AlertQuery, AlertRow, AlertStatus, AttemptOutcome, AttemptRecord, AttemptRow,
    Delivery, DeliveryCounts, DeliveryRow, Limits, NewAlert, NewTrigger, NotificationRow, Recorded,
    StoreError, TriggerQuery, TriggerRow,
};

/// A transaction as `user`: role `authenticated`, `request.jwt.claims` = {"sub": user}.
async fn as_user(pool: &PgPool, user: Uuid) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    let claims = serde_json::json!({ "sub": user, "role": "authenticated" }).to_string();
    sqlx::query("SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)")
        .bind(claims)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

fn alert_row(row: &PgRow) -> Result<AlertRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(AlertRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        symbol: row.try_get("symbol")?,
        base_timeframe: row.try_get("base_timeframe")?,
        definition: row.try_get("definition")?,
        status: AlertStatus::read(&status)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_fired_at: row.try_get("last_fired_at")?,
        fire_count: row.try_get("fire_count")?,
    })
}

async fn check_limits(
    tx: &mut sqlx::PgConnection,
    limits: Limits,
    user: Uuid,
    symbol: &str,
    except: Option<Uuid>,
) -> Result<(), StoreError> {
    // Serialise this user's limit checks, so two concurrent creations cannot both pass.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7331))")
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    let row = sqlx::query(
        "SELECT count(*) AS total, count(*) FILTER (WHERE symbol = $2) AS on_symbol FROM alerts \
         WHERE user_id = $1 AND status = 'active' AND ($3::uuid IS NULL OR id <> $3)",
    )
    .bind(user)
    .bind(symbol)
    .bind(except)
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
    pool: &PgPool,
    limits: Limits,
    user: Uuid,
    alert: &NewAlert,
    now: DateTime<Utc>,
) -> Result<AlertRow, StoreError> {
    let mut tx = as_user(pool, user).await?;
    if alert.status == AlertStatus::Active {
        check_limits(&mut tx, limits, user, alert.symbol.as_str(), None).await?;
    }
    let row = sqlx::query(
        "INSERT INTO alerts (user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
    )
    .bind(user)
    .bind(&alert.name)
    .bind(alert.symbol.as_str())
    .bind(alert.base_timeframe.as_str())
    .bind(&alert.definition)
    .bind(alert.status.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let created = alert_row(&row)?;
    tx.commit().await?;
    Ok(created)
}

pub async fn get_alert(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<AlertRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let row = sqlx::query("SELECT * FROM alerts WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    row.as_ref().map(alert_row).transpose()
}

pub async fn list_alerts(
    pool: &PgPool,
    user: Uuid,
    q: &AlertQuery,
) -> Result<Vec<AlertRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE user_id = $1 \
         AND ($2::text IS NULL OR symbol = $2) AND ($3::text IS NULL OR status = $3) \
         AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5)) \
         ORDER BY created_at, id LIMIT $6",
    )
    .bind(user)
    .bind(q.symbol.as_deref())
    .bind(q.status.map(AlertStatus::as_str))
    .bind(q.after.map(|c| c.at))
    .bind(q.after.map(|c| c.id))
    .bind(page(q.limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(alert_row).collect()
}

pub async fn update_alert(
    pool: &PgPool,
    limits: Limits,
    user: Uuid,
    id: Uuid,
    alert: &NewAlert,
    now: DateTime<Utc>,
) -> Result<Option<AlertRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    if alert.status == AlertStatus::Active {
        check_limits(&mut tx, limits, user, alert.symbol.as_str(), Some(id)).await?;
    }
    let row = sqlx::query(
        "UPDATE alerts SET name = $1, symbol = $2, base_timeframe = $3, definition = $4, status = $5, updated_at = $6 \
         WHERE id = $7 AND user_id = $8 RETURNING *",
    )
    .bind(&alert.name)
    .bind(alert.symbol.as_str())
    .bind(alert.base_timeframe.as_str())
    .bind(&alert.definition)
    .bind(alert.status.as_str())
    .bind(now)
    .bind(id)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let updated = row.as_ref().map(alert_row).transpose()?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn set_status(
    pool: &PgPool,
    limits: Limits,
    user: Uuid,
    id: Uuid,
    status: AlertStatus,
    now: DateTime<Utc>,
) -> Result<Option<AlertRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    if status == AlertStatus::Active {
        let symbol: Option<String> =
            sqlx::query_scalar("SELECT symbol FROM alerts WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(symbol) = symbol else {
            return Ok(None);
        };
        check_limits(&mut tx, limits, user, &symbol, Some(id)).await?;
    }
    let row = sqlx::query(
        "UPDATE alerts SET status = $1, updated_at = $2 WHERE id = $3 AND user_id = $4 RETURNING *",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(id)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let updated = row.as_ref().map(alert_row).transpose()?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete_alert(pool: &PgPool, user: Uuid, id: Uuid) -> Result<bool, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let done = sqlx::query("DELETE FROM alerts WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(done)
}

fn trigger_row(row: &PgRow) -> Result<TriggerRow, StoreError> {
    Ok(TriggerRow {
        id: row.try_get("id")?,
        alert_id: row.try_get("alert_id")?,
        user_id: row.try_get("user_id")?,
        symbol: row.try_get("symbol")?,
        bar_time: row.try_get("bar_time")?,
        fired_at: row.try_get("fired_at")?,
        snapshot: row.try_get("snapshot")?,
    })
}

pub async fn list_triggers(
    pool: &PgPool,
    user: Uuid,
    q: &TriggerQuery,
) -> Result<Vec<TriggerRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM alert_triggers WHERE user_id = $1 \
         AND ($2::uuid IS NULL OR alert_id = $2) \
         AND ($3::timestamptz IS NULL OR fired_at >= $3) AND ($4::timestamptz IS NULL OR fired_at < $4) \
         AND ($5::timestamptz IS NULL OR (fired_at, id) < ($5, $6)) \
         ORDER BY fired_at DESC, id DESC LIMIT $7",
    )
    .bind(user)
    .bind(q.alert_id)
    .bind(q.from)
    .bind(q.to)
    .bind(q.before.map(|c| c.at))
    .bind(q.before.map(|c| c.id))
    .bind(page(q.limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(trigger_row).collect()
}

pub async fn list_notifications(
    pool: &PgPool,
    user: Uuid,
    limit: u32,
) -> Result<Vec<NotificationRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM notifications WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(user)
    .bind(page(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(NotificationRow {
                id: r.try_get("id")?,
                alert_id: r.try_get("alert_id")?,
                trigger_id: r.try_get("trigger_id")?,
                title: r.try_get("title")?,
                body: r.try_get("body")?,
                created_at: r.try_get("created_at")?,
                read_at: r.try_get("read_at")?,
            })
        })
        .collect()
}

pub async fn mark_notification_read(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let done = sqlx::query(
        "UPDATE notifications SET read_at = coalesce(read_at, $1) WHERE id = $2 AND user_id = $3",
    )
    .bind(now)
    .bind(id)
    .bind(user)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(done)
}

pub async fn list_deliveries(
    pool: &PgPool,
    user: Uuid,
    limit: u32,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2")
        .bind(user)
        .bind(page(limit))
        .fetch_all(&mut *tx)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: Uuid = r.try_get("id")?;
        let attempts = sqlx::query("SELECT * FROM webhook_attempts WHERE delivery_id = $1 AND user_id = $2 ORDER BY attempt")
            .bind(id)
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
        out.push(DeliveryRow {
            id,
            trigger_id: r.try_get("trigger_id")?,
            alert_id: r.try_get("alert_id")?,
            url: r.try_get("url")?,
            status: r.try_get("status")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            last_status_code: r.try_get("last_status_code")?,
            last_error: r.try_get("last_error")?,
            created_at: r.try_get("created_at")?,
            delivered_at: r.try_get("delivered_at")?,
            attempt_log: attempts
                .iter()
                .map(|a| {
                    Ok(AttemptRow {
                        attempt: a.try_get("attempt")?,
                        attempted_at: a.try_get("attempted_at")?,
                        status_code: a.try_get("status_code")?,
                        error: a.try_get("error")?,
                        duration_ms: a.try_get("duration_ms")?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        });
    }
    tx.commit().await?;
    Ok(out)
}

pub fn stream_active_alerts(pool: &PgPool) -> BoxStream<'_, Result<AlertRow, StoreError>> {
    sqlx::query("SELECT * FROM alerts WHERE status = 'active'")
        .fetch(pool)
        .map(|r| r.map_err(StoreError::from).and_then(|row| alert_row(&row)))
        .boxed()
}

pub async fn alert_changes(pool: &PgPool, from: DateTime<Utc>) -> Result<AlertChanges, StoreError> {
    let changed: Vec<AlertRow> =
        sqlx::query("SELECT * FROM alerts WHERE updated_at >= $1 ORDER BY updated_at, id")
            .bind(from)
            .fetch_all(pool)
            .await?
            .iter()
            .map(alert_row)
            .collect::<Result<_, _>>()?;
    let deleted_rows =
        sqlx::query("SELECT alert_id, deleted_at FROM alert_tombstones WHERE deleted_at >= $1")
            .bind(from)
            .fetch_all(pool)
            .await?;
    let mut watermark = changed.iter().map(|a| a.updated_at).max();
    let mut deleted = Vec::with_capacity(deleted_rows.len());
    for r in &deleted_rows {
        deleted.push(r.try_get("alert_id")?);
        let at: DateTime<Utc> = r.try_get("deleted_at")?;
        watermark = Some(watermark.map_or(at, |w| w.max(at)));
    }
    Ok(AlertChanges {
        changed,
        deleted,
        watermark,
    })
}

pub async fn record_triggers(
    pool: &PgPool,
    batch: &[NewTrigger],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, StoreError> {
    // The same (alert, bar) twice in one batch: only the first can be new.
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let firsts: Vec<bool> = batch
        .iter()
        .map(|t| seen.insert((t.alert_id, t.bar_time)))
        .collect();
    let rows: Vec<(usize, &NewTrigger)> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| firsts[*i])
        .collect();

    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "WITH input AS ( \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int[]) \
             AS t(alert_id, user_id, symbol, bar_time, fired_at, snapshot, ord)), \
         ins AS ( \
             INSERT INTO alert_triggers (alert_id, user_id, symbol, bar_time, fired_at, snapshot, created_at) \
             SELECT alert_id, user_id, symbol, bar_time, fired_at, snapshot::jsonb, $8 FROM input \
             ON CONFLICT (alert_id, bar_time) DO NOTHING RETURNING id, alert_id, bar_time) \
         SELECT ins.id, input.ord FROM ins JOIN input USING (alert_id, bar_time)",
    )
    .bind(rows.iter().map(|(_, t)| t.alert_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.user_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.symbol.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.bar_time).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.fired_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, t)| t.snapshot.to_string()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(i, _)| *i as i32).collect::<Vec<_>>())
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;

    let mut out = vec![Recorded::Duplicate; batch.len()];
    for r in &inserted {
        let (id, ord): (Uuid, i32) = (r.try_get("id")?, r.try_get("ord")?);
        if let Some(slot) = out.get_mut(ord as usize) {
            *slot = Recorded::New { trigger_id: id };
        }
    }
    let new: Vec<(Uuid, &NewTrigger)> = out
        .iter()
        .zip(batch)
        .filter_map(|(r, t)| match r {
            Recorded::New { trigger_id } => Some((*trigger_id, t)),
            Recorded::Duplicate | Recorded::Skipped => None,
        })
        .collect();
    if !new.is_empty() {
        let notes: Vec<_> = new
            .iter()
            .filter_map(|(id, t)| t.notification.as_ref().map(|n| (id, t, n)))
            .collect();
        if !notes.is_empty() {
            sqlx::query(
                "INSERT INTO notifications (user_id, alert_id, trigger_id, title, body, created_at) \
                 SELECT u, a, t, ti, b, $6 FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[]) AS x(u, a, t, ti, b)",
            )
            .bind(notes.iter().map(|(_, t, _)| t.user_id).collect::<Vec<_>>())
            .bind(notes.iter().map(|(_, t, _)| t.alert_id).collect::<Vec<_>>())
            .bind(notes.iter().map(|(id, _, _)| **id).collect::<Vec<_>>())
            .bind(notes.iter().map(|(_, _, n)| n.title.clone()).collect::<Vec<_>>())
            .bind(notes.iter().map(|(_, _, n)| n.body.clone()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let hooks: Vec<_> = new
            .iter()
            .flat_map(|(id, t)| t.webhooks.iter().map(move |w| (id, t, w)))
            .collect();
        if !hooks.is_empty() {
            sqlx::query(
                "INSERT INTO webhook_deliveries (trigger_id, alert_id, user_id, action_index, url, payload, next_attempt_at, created_at, updated_at) \
                 SELECT tr, a, u, ai, url, p, $7, $7, $7 \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::text[]) AS x(tr, a, u, ai, url, p)",
            )
            .bind(hooks.iter().map(|(id, _, _)| **id).collect::<Vec<_>>())
            .bind(hooks.iter().map(|(_, t, _)| t.alert_id).collect::<Vec<_>>())
            .bind(hooks.iter().map(|(_, t, _)| t.user_id).collect::<Vec<_>>())
            .bind(hooks.iter().map(|(_, _, w)| w.action_index).collect::<Vec<_>>())
            .bind(hooks.iter().map(|(_, _, w)| w.url.clone()).collect::<Vec<_>>())
            .bind(hooks.iter().map(|(_, _, w)| w.payload.clone()).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE alerts SET fire_count = alerts.fire_count + x.n, \
             last_fired_at = greatest(alerts.last_fired_at, x.last), \
             status = CASE WHEN x.spend THEN 'triggered' ELSE alerts.status END, \
             updated_at = CASE WHEN x.spend THEN $5 ELSE alerts.updated_at END \
             FROM (SELECT a, count(*) AS n, max(f) AS last, bool_or(s) AS spend \
                   FROM UNNEST($1::uuid[], $2::timestamptz[], $3::bool[]) AS u(a, f, s) GROUP BY a) AS x \
             WHERE alerts.id = x.a AND $4",
        )
        .bind(new.iter().map(|(_, t)| t.alert_id).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, t)| t.fired_at).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, t)| t.spend).collect::<Vec<_>>())
        .bind(true)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(out)
}

pub async fn expire_alert(pool: &PgPool, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE alerts SET status = 'expired', updated_at = $1 WHERE id = $2 AND status = 'active'",
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

fn delivery(r: &PgRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: r.try_get("id")?,
        trigger_id: r.try_get("trigger_id")?,
        alert_id: r.try_get("alert_id")?,
        user_id: r.try_get("user_id")?,
        action_index: r.try_get("action_index")?,
        url: r.try_get("url")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get("attempts")?,
        created_at: r.try_get("created_at")?,
    })
}

pub async fn claim_deliveries(
    pool: &PgPool,
    worker: &str,
    limit: u32,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(
        "UPDATE webhook_deliveries SET leased_until = $1, lease_owner = $2, updated_at = $3 \
         WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
                      AND (leased_until IS NULL OR leased_until <= $3) ORDER BY next_attempt_at LIMIT $4 \
                      FOR UPDATE SKIP LOCKED) \
         RETURNING *",
    )
    .bind(until)
    .bind(worker)
    .bind(now)
    .bind(page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(delivery).collect()
}

pub async fn complete_delivery(
    pool: &PgPool,
    id: Uuid,
    worker: &str,
    a: &AttemptRecord,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (status, next) = match &a.outcome {
        AttemptOutcome::Delivered => ("delivered", now),
        AttemptOutcome::Retry { at } => ("pending", *at),
        AttemptOutcome::Failed => ("failed", now),
        AttemptOutcome::Cancelled => ("cancelled", now),
    };
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
         last_status_code = $3, last_error = $4, leased_until = NULL, lease_owner = NULL, updated_at = $5, \
         delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END \
         WHERE id = $6 AND lease_owner = $7 AND status = 'pending' RETURNING attempts, user_id",
    )
    .bind(status)
    .bind(next)
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(now)
    .bind(id)
    .bind(worker)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let attempt: i32 = row.try_get("attempts")?;
    let user: Uuid = row.try_get("user_id")?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, user_id, attempt, attempted_at, status_code, error, duration_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(user)
    .bind(attempt)
    .bind(now)
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(a.duration_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn redeliver(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, leased_until = NULL, lease_owner = NULL, \
         updated_at = $1 WHERE id = $2 AND user_id = $3 AND status <> 'pending'",
    )
    .bind(now)
    .bind(id)
    .bind(user)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(done)
}

pub async fn delivery_counts(pool: &PgPool) -> Result<DeliveryCounts, StoreError> {
    let rows = sqlx::query("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status")
        .fetch_all(pool)
        .await?;
    let mut c = DeliveryCounts::default();
    for r in &rows {
        let (status, n): (String, i64) = (r.try_get("status")?, r.try_get("n")?);
        match status.as_str() {
            "pending" => c.pending = n,
            "delivered" => c.delivered = n,
            "failed" => c.failed = n,
            _ => c.cancelled += n,
        }
    }
    Ok(c)
}
