//! The PostgreSQL backend. User-facing calls run in a transaction as role `authenticated` with
//! the user's JWT claims (as PostgREST does), so row-level security scopes them — and each
//! statement filters by the user as well. Service calls (runner, dispatcher) use the pool's
//! own role, which owns the tables or bypasses RLS.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::model::{Plan, page, plan_triggers};
use crate::{
    AlertChanges, AlertQuery, AlertRow, AlertStatus, AttemptOutcome, AttemptRecord, AttemptRow,
    Delivery, DeliveryCounts, DeliveryKind, DeliveryRow, DisabledWebhook, Limits, NewAlert,
    NewDelivery, NewTrigger, NotificationRow, Recorded, StoreError, TriggerQuery, TriggerRow,
    WebhookSecrets,
};

/// A transaction as `user`: role `authenticated`, `request.jwt.claims` = {"sub": user}.
pub(crate) async fn as_user(
    pool: &PgPool,
    user: Uuid,
) -> Result<Transaction<'static, Postgres>, StoreError> {
    let mut tx = pool.begin().await?;
    let claims = serde_json::json!({ "sub": user, "role": "authenticated" }).to_string();
    sqlx::query("SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)")
        .bind(claims)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub(crate) fn alert_row(row: &PgRow) -> Result<AlertRow, StoreError> {
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

pub(crate) async fn check_limits(
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
    // Another user's (or no) alert is `None`, never a limit error.
    if !lock_own_alert(&mut tx, user, id).await? {
        return Ok(None);
    }
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
    // A replaced alert's webhooks are enabled again: the user has fixed them.
    sqlx::query("DELETE FROM disabled_webhooks WHERE alert_id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
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
        let symbol: Option<String> = sqlx::query_scalar(
            "SELECT symbol FROM alerts WHERE id = $1 AND user_id = $2 FOR NO KEY UPDATE",
        )
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

/// Locks `user`'s alert `id` for the rest of the transaction; `false` if there is none.
async fn lock_own_alert(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    id: Uuid,
) -> Result<bool, StoreError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM alerts WHERE id = $1 AND user_id = $2 FOR NO KEY UPDATE")
            .bind(id)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(found.is_some())
}

pub async fn delete_alert(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let done = sqlx::query("DELETE FROM alerts WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if done {
        // The database trigger wrote the tombstone with the database clock; the change feed
        // compares it with `updated_at`, which is the caller's clock: use the caller's here too.
        sqlx::query("UPDATE alert_tombstones SET deleted_at = $1 WHERE alert_id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(done)
}

pub(crate) fn trigger_row(row: &PgRow) -> Result<TriggerRow, StoreError> {
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

pub(crate) fn notification_row(row: &PgRow) -> Result<NotificationRow, StoreError> {
    Ok(NotificationRow {
        id: row.try_get("id")?,
        alert_id: row.try_get("alert_id")?,
        trigger_id: row.try_get("trigger_id")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
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
    rows.iter().map(notification_row).collect()
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
    let rows = sqlx::query(
        "SELECT * FROM webhook_deliveries WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(user)
    .bind(page(limit))
    .fetch_all(&mut *tx)
    .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get::<Uuid, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let attempts = sqlx::query(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1) AND user_id = $2 \
         ORDER BY delivery_id, attempt, id",
    )
    .bind(&ids)
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut log: std::collections::HashMap<Uuid, Vec<AttemptRow>> =
        std::collections::HashMap::new();
    for a in &attempts {
        log.entry(a.try_get("delivery_id")?)
            .or_default()
            .push(AttemptRow {
                attempt: a.try_get("attempt")?,
                attempted_at: a.try_get("attempted_at")?,
                status_code: a.try_get("status_code")?,
                error: a.try_get("error")?,
                duration_ms: a.try_get("duration_ms")?,
                response_body: a.try_get("response_body")?,
            });
    }
    rows.iter()
        .zip(ids)
        .map(|(r, id)| {
            Ok(DeliveryRow {
                id,
                trigger_id: r.try_get("trigger_id")?,
                alert_id: r.try_get("alert_id")?,
                kind: r.try_get("kind")?,
                url: r.try_get("url")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_status_code: r.try_get("last_status_code")?,
                last_error: r.try_get("last_error")?,
                created_at: r.try_get("created_at")?,
                delivered_at: r.try_get("delivered_at")?,
                attempt_log: log.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

/// The active alerts whose `symbol` column `keep` accepts: the column is read first and
/// the rest of a row (the definition JSON) only for the kept ones.
pub fn stream_active_alerts<'a, K>(
    pool: &'a PgPool,
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

/// Alerts changed at or after `from`: first only their (id, version, status), then the
/// whole rows of those `wanted` chooses (the runner asks again only for what it does not
/// hold at that version: a bulk import is not parsed again at every poll).
pub async fn alert_changes<F>(
    pool: &PgPool,
    from: DateTime<Utc>,
    wanted: F,
) -> Result<AlertChanges, StoreError>
where
    F: Fn(Uuid, DateTime<Utc>, AlertStatus, &str) -> bool,
{
    let versions =
        sqlx::query("SELECT id, updated_at, status, symbol FROM alerts WHERE updated_at >= $1")
            .bind(from)
            .fetch_all(pool)
            .await?;
    let mut watermark: Option<DateTime<Utc>> = None;
    let mut ids = Vec::new();
    for r in &versions {
        let id: Uuid = r.try_get("id")?;
        let at: DateTime<Utc> = r.try_get("updated_at")?;
        let status: String = r.try_get("status")?;
        watermark = Some(watermark.map_or(at, |w| w.max(at)));
        let symbol: &str = r.try_get("symbol")?;
        if wanted(id, at, AlertStatus::read(&status)?, symbol) {
            ids.push(id);
        }
    }
    let changed: Vec<AlertRow> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query("SELECT * FROM alerts WHERE id = ANY($1) ORDER BY updated_at, id")
            .bind(&ids)
            .fetch_all(pool)
            .await?
            .iter()
            .map(alert_row)
            .collect::<Result<_, _>>()?
    };
    let deleted_rows =
        sqlx::query("SELECT alert_id, deleted_at FROM alert_tombstones WHERE deleted_at >= $1")
            .bind(from)
            .fetch_all(pool)
            .await?;
    for a in &changed {
        watermark = Some(watermark.map_or(a.updated_at, |w| w.max(a.updated_at)));
    }
    let mut deleted = Vec::with_capacity(deleted_rows.len());
    for r in &deleted_rows {
        deleted.push(r.try_get("alert_id")?);
        let at: DateTime<Utc> = r.try_get("deleted_at")?;
        watermark = Some(watermark.map_or(at, |w| w.max(at)));
    }
    Ok(AlertChanges {
        seen: versions.len() + deleted_rows.len(),
        changed,
        deleted,
        watermark,
    })
}

/// One statement (so one round trip, and atomic without an explicit transaction) records a
/// batch: it locks the batch's live alerts in id order (concurrent writers of overlapping
/// batches cannot deadlock, and while they are held nobody else records, pauses, spends or
/// deletes them), inserts the triggers of live alerts (`ON CONFLICT DO NOTHING`: a stored
/// (alert, bar) is a duplicate), their notifications (with the ids the caller chose) and
/// outbox rows, and counts the
/// firings on the alerts. It returns one state per planned trigger: 0 new, 1 duplicate,
/// 2 skipped.
const RECORD_TRIGGERS: &str = "\
WITH input AS (
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[],
                         $6::timestamptz[], $7::text[], $8::bool[], $9::bool[], $10::text[], $11::text[],
                         $12::uuid[])
        AS t(id, alert_id, user_id, symbol, bar_time, fired_at, snapshot, spend, blocked, title, body,
             note_id)
),
locked AS MATERIALIZED (
    SELECT id, user_id FROM alerts WHERE id = ANY($2) AND status = 'active'
    ORDER BY id FOR NO KEY UPDATE
),
ins AS (
    INSERT INTO alert_triggers (id, alert_id, user_id, symbol, bar_time, fired_at, snapshot, created_at)
    SELECT i.id, i.alert_id, i.user_id, i.symbol, i.bar_time, i.fired_at, i.snapshot::jsonb, $19
    FROM input i JOIN locked l ON l.id = i.alert_id AND l.user_id = i.user_id
    WHERE NOT i.blocked
    ON CONFLICT (alert_id, bar_time) DO NOTHING
    RETURNING id, alert_id, fired_at
),
notes AS (
    INSERT INTO notifications (id, user_id, alert_id, trigger_id, title, body, created_at)
    SELECT i.note_id, i.user_id, i.alert_id, i.id, i.title, i.body, $19
    FROM input i JOIN ins USING (id) WHERE i.note_id IS NOT NULL
),
hooks AS (
    INSERT INTO webhook_deliveries (id, trigger_id, alert_id, user_id, action_index, kind, url, secret,
                                    payload, next_attempt_at, created_at, updated_at)
    SELECT h.id, h.trigger_id, i.alert_id, i.user_id, h.action_index, h.kind, h.url, h.secret,
           h.payload, $19, $19, $19
    FROM UNNEST($13::uuid[], $14::int[], $15::text[], $16::text[], $17::text[], $18::text[], $20::uuid[])
        AS h(trigger_id, action_index, kind, url, secret, payload, id)
    JOIN input i ON i.id = h.trigger_id JOIN ins ON ins.id = h.trigger_id
),
fired AS (
    UPDATE alerts a SET fire_count = a.fire_count + x.n,
        last_fired_at = greatest(a.last_fired_at, x.last),
        status = CASE WHEN x.spend THEN 'triggered' ELSE a.status END,
        updated_at = CASE WHEN x.spend THEN $19 ELSE a.updated_at END
    FROM (SELECT ins.alert_id, count(*) AS n, max(ins.fired_at) AS last, bool_or(i.spend) AS spend
          FROM ins JOIN input i USING (id) GROUP BY ins.alert_id) AS x
    WHERE a.id = x.alert_id
)
SELECT i.id,
    CASE WHEN ins.id IS NOT NULL THEN 0
         WHEN l.id IS NOT NULL AND NOT i.blocked THEN 1
         WHEN EXISTS (SELECT 1 FROM alert_triggers t WHERE t.alert_id = i.alert_id AND t.bar_time = i.bar_time) THEN 1
         ELSE 2 END AS state
FROM input i LEFT JOIN ins USING (id) LEFT JOIN locked l ON l.id = i.alert_id AND l.user_id = i.user_id";

/// A trigger the statement decides on.
struct Todo {
    /// Index in the batch.
    at: usize,
    /// The trigger's id if it is new.
    id: Uuid,
    /// An earlier trigger of the batch spent its alert: never new.
    blocked: bool,
    /// Its notification's id, if it has one.
    note: Option<Uuid>,
}

pub async fn record_triggers(
    pool: &PgPool,
    batch: &[NewTrigger],
    now: DateTime<Utc>,
) -> Result<Vec<Recorded>, StoreError> {
    let plan = plan_triggers(batch);
    let mut out: Vec<Recorded> = vec![Recorded::Duplicate; batch.len()];
    let mut todo: Vec<Todo> = Vec::with_capacity(batch.len());
    for (at, p) in plan.iter().enumerate() {
        let (id, blocked) = match p {
            Plan::Insert(id) => (*id, false),
            Plan::Blocked => (Uuid::new_v4(), true),
            Plan::Duplicate => continue,
        };
        let note = (!blocked && batch[at].notification.is_some()).then(crate::model::new_row_id);
        todo.push(Todo {
            at,
            id,
            blocked,
            note,
        });
    }
    if todo.is_empty() {
        return Ok(out);
    }
    let hooks: Vec<(Uuid, &NewDelivery)> = todo
        .iter()
        .filter(|x| !x.blocked)
        .flat_map(|x| batch[x.at].deliveries.iter().map(move |w| (x.id, w)))
        .collect();
    let t = |x: &Todo| &batch[x.at];
    let mut tx = pool.begin().await?;
    let states: Vec<(Uuid, i32)> = sqlx::query_as(RECORD_TRIGGERS)
        .bind(todo.iter().map(|x| x.id).collect::<Vec<_>>())
        .bind(todo.iter().map(|x| t(x).alert_id).collect::<Vec<_>>())
        .bind(todo.iter().map(|x| t(x).user_id).collect::<Vec<_>>())
        .bind(
            todo.iter()
                .map(|x| t(x).symbol.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(todo.iter().map(|x| t(x).bar_time).collect::<Vec<_>>())
        .bind(todo.iter().map(|x| t(x).fired_at).collect::<Vec<_>>())
        .bind(
            todo.iter()
                .map(|x| t(x).snapshot.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(todo.iter().map(|x| t(x).spend).collect::<Vec<_>>())
        .bind(todo.iter().map(|x| x.blocked).collect::<Vec<_>>())
        .bind(
            todo.iter()
                .map(|x| t(x).notification.as_ref().map(|n| n.title.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(
            todo.iter()
                .map(|x| t(x).notification.as_ref().map(|n| n.body.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind(todo.iter().map(|x| x.note).collect::<Vec<_>>())
        .bind(hooks.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            hooks
                .iter()
                .map(|(_, w)| w.action_index)
                .collect::<Vec<_>>(),
        )
        .bind(
            hooks
                .iter()
                .map(|(_, w)| w.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            hooks
                .iter()
                .map(|(_, w)| w.url.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            hooks
                .iter()
                .map(|(_, w)| w.secret.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            hooks
                .iter()
                .map(|(_, w)| w.payload.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .bind(
            hooks
                .iter()
                .map(|_| crate::model::new_row_id())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?;
    let states: HashMap<Uuid, i32> = states.into_iter().collect();
    let fresh: Vec<&Todo> = todo
        .iter()
        .filter(|x| states.get(&x.id) == Some(&0))
        .collect();
    if !fresh.is_empty() {
        // Last before the commit (see live_feed): the lane's time for these rows, then the
        // announcement listeners stream them from.
        let at = crate::live_feed::move_lane(&mut tx, crate::live_feed::Lane::Alerts, now).await?;
        if at.timestamp_micros() != now.timestamp_micros() {
            // Another shard recorded at a later time first: these rows come after its.
            let triggers: Vec<Uuid> = fresh.iter().map(|x| x.id).collect();
            let notes: Vec<Uuid> = fresh.iter().filter_map(|x| x.note).collect();
            sqlx::query("UPDATE alert_triggers SET created_at = $1 WHERE id = ANY($2)")
                .bind(at)
                .bind(&triggers)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE notifications SET created_at = $1 WHERE id = ANY($2)")
                .bind(at)
                .bind(&notes)
                .execute(&mut *tx)
                .await?;
        }
        let notice = crate::live_feed::EventNotice::Triggers(
            fresh
                .iter()
                .map(|x| crate::live_feed::TriggerRef {
                    user: t(x).user_id,
                    trigger: x.id,
                    notification: x.note,
                })
                .collect(),
        );
        crate::live_feed::announce(&mut tx, &notice).await?;
    }
    tx.commit().await?;
    for x in &todo {
        out[x.at] = match states.get(&x.id) {
            Some(0) => Recorded::New {
                trigger_id: x.id,
                notification_id: x.note,
            },
            Some(1) => Recorded::Duplicate,
            Some(2) => Recorded::Skipped,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "record_triggers: state {other:?} for trigger {}",
                    x.id
                )));
            }
        };
    }
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
    let kind: String = r.try_get("kind")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        trigger_id: r.try_get("trigger_id")?,
        alert_id: r.try_get("alert_id")?,
        user_id: r.try_get("user_id")?,
        action_index: r.try_get("action_index")?,
        kind: DeliveryKind::read(&kind)?,
        url: r.try_get("url")?,
        secret: r.try_get("secret")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get("attempts")?,
        created_at: r.try_get("created_at")?,
        disabled: r.try_get("disabled")?,
    })
}

/// Per kind, the earliest due rows (an ordered scan of the (kind, next_attempt_at) index that
/// skips rows other claims hold locked); of those, the earliest `limit` are leased.
const CLAIM_DELIVERIES: &str = "\
UPDATE webhook_deliveries d SET leased_until = $1, lease_owner = $2, updated_at = $3
FROM (
    SELECT c.id FROM UNNEST($5::text[]) AS k(kind)
    CROSS JOIN LATERAL (
        SELECT id, next_attempt_at FROM webhook_deliveries
        WHERE status = 'pending' AND kind = k.kind AND next_attempt_at <= $3
          AND (leased_until IS NULL OR leased_until <= $3)
        ORDER BY next_attempt_at LIMIT $4
        FOR UPDATE SKIP LOCKED
    ) c
    ORDER BY c.next_attempt_at LIMIT $4
) picked
WHERE d.id = picked.id
RETURNING d.*, EXISTS (SELECT 1 FROM disabled_webhooks w
                       WHERE w.alert_id = d.alert_id AND w.action_index = d.action_index) AS disabled";

pub async fn claim_deliveries(
    pool: &PgPool,
    worker: &str,
    kinds: &[DeliveryKind],
    limit: u32,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Delivery>, StoreError> {
    let rows = sqlx::query(CLAIM_DELIVERIES)
        .bind(until)
        .bind(worker)
        .bind(now)
        .bind(page(limit))
        .bind(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
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
    // One statement: the outcome and its attempt row, or (lease lost) nothing.
    let recorded: Option<i32> = sqlx::query_scalar(
        "WITH done AS ( \
             UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
                 last_status_code = $3, last_error = $4, leased_until = NULL, lease_owner = NULL, updated_at = $5, \
                 delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END \
             WHERE id = $6 AND lease_owner = $7 AND status = 'pending' \
             RETURNING id, attempts, user_id) \
         INSERT INTO webhook_attempts (delivery_id, user_id, attempt, attempted_at, status_code, error, duration_ms, response_body) \
         SELECT id, user_id, attempts, $5, $3, $4, $8, $9 FROM done RETURNING attempt",
    )
    .bind(status)
    .bind(next)
    .bind(a.status_code)
    .bind(a.error.as_deref())
    .bind(now)
    .bind(id)
    .bind(worker)
    .bind(a.duration_ms)
    .bind(a.response.as_deref())
    .fetch_optional(pool)
    .await?;
    Ok(recorded.is_some())
}

pub async fn defer_delivery(
    pool: &PgPool,
    id: Uuid,
    worker: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $1, leased_until = NULL, lease_owner = NULL, \
         updated_at = $2 WHERE id = $3 AND lease_owner = $4 AND status = 'pending'",
    )
    .bind(until)
    .bind(now)
    .bind(id)
    .bind(worker)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// One statement: the disabled action (for the alert's user, if the alert exists) and, only
/// then, its pending deliveries cancelled, but those under a live lease (their worker
/// completes them).
const DISABLE_WEBHOOK: &str = "\
WITH disabled AS (
    INSERT INTO disabled_webhooks (alert_id, action_index, user_id, reason, disabled_at)
    SELECT id, $2, user_id, $3, $4 FROM alerts WHERE id = $1
    ON CONFLICT (alert_id, action_index)
        DO UPDATE SET reason = excluded.reason, disabled_at = excluded.disabled_at
    RETURNING alert_id
)
UPDATE webhook_deliveries d SET status = 'cancelled', last_error = $3, leased_until = NULL,
    lease_owner = NULL, updated_at = $4
FROM disabled
WHERE d.alert_id = disabled.alert_id AND d.action_index = $2 AND d.status = 'pending'
  AND (d.leased_until IS NULL OR d.leased_until <= $4)";

pub async fn disable_webhook(
    pool: &PgPool,
    alert_id: Uuid,
    action_index: i32,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(DISABLE_WEBHOOK)
        .bind(alert_id)
        .bind(action_index)
        .bind(reason)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn disabled_webhooks(
    pool: &PgPool,
    user: Uuid,
    alert_id: Uuid,
) -> Result<Vec<DisabledWebhook>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT action_index, reason, disabled_at FROM disabled_webhooks \
         WHERE alert_id = $1 AND user_id = $2 ORDER BY action_index",
    )
    .bind(alert_id)
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(DisabledWebhook {
                action_index: r.try_get("action_index")?,
                reason: r.try_get("reason")?,
                disabled_at: r.try_get("disabled_at")?,
            })
        })
        .collect()
}

fn secrets(r: &PgRow, now: DateTime<Utc>) -> Result<WebhookSecrets, StoreError> {
    let expires: Option<DateTime<Utc>> = r.try_get("previous_expires_at")?;
    let previous: Option<String> = r.try_get("previous_secret")?;
    Ok(WebhookSecrets {
        current: r.try_get("secret")?,
        previous: previous.filter(|_| expires.is_some_and(|e| e > now)),
    })
}

pub async fn webhook_secret(
    pool: &PgPool,
    user: Uuid,
    candidate: &str,
    now: DateTime<Utc>,
) -> Result<WebhookSecrets, StoreError> {
    let mut tx = as_user(pool, user).await?;
    // Two statements: after a concurrent creator's insert wins the conflict, the second
    // statement's snapshot sees its row.
    sqlx::query(
        "INSERT INTO webhook_secrets (user_id, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(candidate)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query(
        "SELECT secret, previous_secret, previous_expires_at FROM webhook_secrets WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    secrets(&row, now)
}

pub async fn rotate_webhook_secret(
    pool: &PgPool,
    user: Uuid,
    candidate: &str,
    expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<WebhookSecrets, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let row = sqlx::query(
        "INSERT INTO webhook_secrets (user_id, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET previous_secret = webhook_secrets.secret, \
             previous_expires_at = $4, secret = excluded.secret, rotated_at = $3 \
         RETURNING secret, previous_secret, previous_expires_at",
    )
    .bind(user)
    .bind(candidate)
    .bind(now)
    .bind(expires)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    secrets(&row, now)
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
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status")
            .fetch_all(pool)
            .await?;
    Ok(DeliveryCounts::from_status_counts(rows))
}

pub async fn last_fired_bars(pool: &PgPool) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
    let rows =
        sqlx::query("SELECT alert_id, max(bar_time) AS bar FROM alert_triggers GROUP BY alert_id")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("alert_id")?, r.try_get("bar")?)))
        .collect()
}

pub async fn triggers_since(
    pool: &PgPool,
    user: Uuid,
    after: crate::Cursor,
    limit: u32,
) -> Result<Vec<crate::RecordedTrigger>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM alert_triggers WHERE user_id = $1 AND (created_at, id) > ($2, $3) \
         ORDER BY created_at, id LIMIT $4",
    )
    .bind(user)
    .bind(after.at)
    .bind(after.id)
    .bind(page(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(crate::RecordedTrigger {
                trigger: trigger_row(r)?,
                recorded_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

pub async fn notifications_since(
    pool: &PgPool,
    user: Uuid,
    after: crate::Cursor,
    limit: u32,
) -> Result<Vec<NotificationRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM notifications WHERE user_id = $1 AND (created_at, id) > ($2, $3) \
         ORDER BY created_at, id LIMIT $4",
    )
    .bind(user)
    .bind(after.at)
    .bind(after.id)
    .bind(page(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(notification_row).collect()
}

// ---- shard ownership ---------------------------------------------------------------------

/// The high 32 bits of every shard lock key: ASCII `alrt`.
pub const SHARD_LOCK_NAMESPACE: i64 = 0x616c_7274;

/// The advisory lock key of shard `index` of a split into `count`:
/// `SHARD_LOCK_NAMESPACE << 32 | count << 16 | index` (both below 65,536), so every (N, I)
/// has its own key — a `0/3` and a `0/4` process do not exclude each other (re-sharding
/// means stopping the old split first) — and the key is positive and clear of the per-user
/// keys (`hashtextextended`) only by the odds of a 64-bit hash. In `pg_locks` it shows as
/// `locktype = 'advisory'`, `classid = 0x616c7274`, `objid = count << 16 | index`,
/// `objsubid = 1`.
pub fn shard_lock_key(index: u32, count: u32) -> i64 {
    (SHARD_LOCK_NAMESPACE << 32) | (i64::from(count & 0xffff) << 16) | i64::from(index & 0xffff)
}

/// A session-level advisory lock on a dedicated connection (see [`crate::Store::advisory_lock`]).
/// Dropping it closes the connection, which frees the lock.
#[derive(Debug)]
pub struct AdvisoryLock {
    conn: sqlx::PgConnection,
    key: i64,
    held: bool,
}

impl AdvisoryLock {
    pub(crate) async fn open(pool: &PgPool, key: i64) -> Result<Self, StoreError> {
        use sqlx::Connection;
        let options = pool.connect_options();
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        // Named in pg_stat_activity, so an operator sees who holds a shard.
        sqlx::query("SELECT set_config('application_name', $1, false)")
            .bind(format!("alert-runner shard lock {key:#x}"))
            .execute(&mut conn)
            .await?;
        Ok(Self {
            conn,
            key,
            held: false,
        })
    }

    pub fn key(&self) -> i64 {
        self.key
    }

    /// Whether the last call found the lock ours.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Takes the lock if it is free (`pg_try_advisory_lock`, which does not wait); true when
    /// this connection holds it. An error means the connection failed: open a new guard.
    pub async fn try_acquire(&mut self) -> Result<bool, StoreError> {
        if self.held {
            return self.still_held().await;
        }
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(&mut self.conn)
            .await?;
        self.held = got;
        Ok(got)
    }

    /// Whether this connection still holds the lock, asked of the server (`pg_locks`): false
    /// or an error (the connection dropped: PostgreSQL restarted, or the network) means the
    /// lock is lost — another process may hold it now.
    pub async fn still_held(&mut self) -> Result<bool, StoreError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
             AND classid::bigint = ($1 >> 32) AND objid::bigint = ($1 & 4294967295))",
        )
        .bind(self.key)
        .fetch_one(&mut self.conn)
        .await
        .inspect_err(|_| self.held = false)?;
        self.held = held;
        Ok(held)
    }

    /// Releases the lock and closes the connection.
    pub async fn release(mut self) {
        use sqlx::Connection;
        if self.held {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut self.conn)
                .await;
        }
        let _ = self.conn.close().await;
    }
}
