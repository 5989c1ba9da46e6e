//! Bots on SQLite: every user call filters by user.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::{
    BotAlertRow, BotAlertUpdate, BotFill, BotOrderRow, BotRow, BotStatus, DealRow, FillRecorded,
    NewBot,
};
use crate::sqlite::{alert_row, check_limits, json, ms, opt_time, time, uuid};
use crate::{AlertStatus, Limits, StoreError};

fn bot_row(row: &SqliteRow) -> Result<BotRow, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(BotRow {
        id: uuid(row, "id")?,
        user_id: uuid(row, "user_id")?,
        name: row.try_get("name")?,
        pair: row.try_get("pair")?,
        timeframe: row.try_get("timeframe")?,
        definition: json(row, "definition")?,
        status: BotStatus::read(&status)?,
        deals_opened: row.try_get("deals_opened")?,
        version: row.try_get("version")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

fn deal_row(row: &SqliteRow) -> Result<DealRow, StoreError> {
    Ok(DealRow {
        id: uuid(row, "id")?,
        bot_id: uuid(row, "bot_id")?,
        user_id: uuid(row, "user_id")?,
        number: row.try_get("number")?,
        status: row.try_get("status")?,
        opened_at: time(row, "opened_at")?,
        closed_at: opt_time(row, "closed_at")?,
        entry_price: row.try_get("entry_price")?,
        base_qty: row.try_get("base_qty")?,
        cost: row.try_get("cost")?,
        fees: row.try_get("fees")?,
        filled: serde_json::from_value(json(row, "filled")?)
            .map_err(|e| StoreError::Corrupt(format!("bot_deals.filled: {e}")))?,
        exit: row.try_get("exit")?,
        realized_pnl: row.try_get("realized_pnl")?,
    })
}

fn order_row(row: &SqliteRow) -> Result<BotOrderRow, StoreError> {
    Ok(BotOrderRow {
        id: uuid(row, "id")?,
        bot_id: uuid(row, "bot_id")?,
        deal_id: uuid(row, "deal_id")?,
        user_id: uuid(row, "user_id")?,
        client_order_id: row.try_get("client_order_id")?,
        role: row.try_get("role")?,
        side: row.try_get("side")?,
        price: row.try_get("price")?,
        base_qty: row.try_get("base_qty")?,
        notional: row.try_get("notional")?,
        fee: row.try_get("fee")?,
        deal_number: row.try_get("deal_number")?,
        average_price: row.try_get("average_price")?,
        realized_pnl: row.try_get("realized_pnl")?,
        created_at: time(row, "created_at")?,
    })
}

pub async fn create_bot(
    pool: &SqlitePool,
    limits: Limits,
    user: Uuid,
    bot: &NewBot,
    now: DateTime<Utc>,
) -> Result<BotRow, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let id = bot.id;
    let row = sqlx::query(
        "INSERT INTO bots (id, user_id, name, pair, timeframe, definition, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?) RETURNING *",
    )
    .bind(id.to_string())
    .bind(user.to_string())
    .bind(&bot.name)
    .bind(bot.pair.as_str())
    .bind(bot.timeframe.as_str())
    .bind(bot.definition.to_string())
    .bind(ms(now))
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await?;
    let created = bot_row(&row)?;
    insert_alerts(&mut tx, limits, user, bot, now).await?;
    tx.commit().await?;
    Ok(created)
}

async fn insert_alerts(
    tx: &mut sqlx::SqliteConnection,
    limits: Limits,
    user: Uuid,
    bot: &NewBot,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for a in &bot.alerts {
        let alert = &*a.alert.without_nul();
        if alert.status == AlertStatus::Active {
            check_limits(&mut *tx, limits, user, alert.symbol.as_str(), None).await?;
        }
        sqlx::query(
            "INSERT INTO alerts (id, user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at, bot_id, bot_role) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(user.to_string())
        .bind(&alert.name)
        .bind(alert.symbol.as_str())
        .bind(alert.base_timeframe.as_str())
        .bind(alert.definition.to_string())
        .bind(alert.status.as_str())
        .bind(ms(now))
        .bind(ms(now))
        .bind(bot.id.to_string())
        .bind(&a.role)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub async fn get_bot(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<BotRow>, StoreError> {
    let row = sqlx::query("SELECT * FROM bots WHERE id = ? AND user_id = ?")
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(bot_row).transpose()
}

pub async fn list_bots(pool: &SqlitePool, user: Uuid) -> Result<Vec<BotRow>, StoreError> {
    let rows = sqlx::query("SELECT * FROM bots WHERE user_id = ? ORDER BY created_at, id")
        .bind(user.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter().map(bot_row).collect()
}

pub async fn bot_alerts(
    pool: &SqlitePool,
    user: Uuid,
    bot: Uuid,
) -> Result<Vec<BotAlertRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE bot_id = ? AND user_id = ? ORDER BY created_at, id",
    )
    .bind(bot.to_string())
    .bind(user.to_string())
    .fetch_all(pool)
    .await?;
    let alerts = rows
        .iter()
        .map(|r| {
            Ok(BotAlertRow {
                role: r
                    .try_get::<Option<String>, _>("bot_role")?
                    .unwrap_or_default(),
                alert: alert_row(r)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(super::in_role_order(alerts))
}

pub async fn delete_bot(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    delete_alerts(&mut tx, user, id, now).await?;
    let done = sqlx::query("DELETE FROM bots WHERE id = ? AND user_id = ?")
        .bind(id.to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(done)
}

pub async fn set_bot_status(
    pool: &SqlitePool,
    user: Uuid,
    id: Uuid,
    status: BotStatus,
    updates: &[BotAlertUpdate],
    expected_version: i64,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "UPDATE bots SET status = ?, updated_at = ?, version = version + 1 \
         WHERE id = ? AND user_id = ? RETURNING *",
    )
    .bind(status.as_str())
    .bind(ms(now))
    .bind(id.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let row = bot_row(&row)?;
    super::check_version(&row, expected_version)?;
    update_alerts(&mut tx, id, updates, now).await?;
    tx.commit().await?;
    Ok(Some(row))
}

async fn update_alerts(
    tx: &mut sqlx::SqliteConnection,
    bot: Uuid,
    updates: &[BotAlertUpdate],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for u in updates {
        sqlx::query(
            "UPDATE alerts SET definition = coalesce(?, definition), status = ?, updated_at = ? \
             WHERE bot_id = ? AND bot_role = ?",
        )
        .bind(u.definition.as_ref().map(ToString::to_string))
        .bind(u.status.as_str())
        .bind(ms(now))
        .bind(bot.to_string())
        .bind(&u.role)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub async fn record_bot_fill(
    pool: &SqlitePool,
    fill: &BotFill,
    now: DateTime<Utc>,
) -> Result<FillRecorded, StoreError> {
    // BEGIN IMMEDIATE: one writer at a time, so the check and the insert cannot interleave.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM bots WHERE id = ?")
        .bind(fill.bot_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(version) = version else {
        return Ok(FillRecorded::NoBot);
    };
    let seen: Option<String> =
        sqlx::query_scalar("SELECT id FROM bot_orders WHERE client_order_id = ?")
            .bind(&fill.order.client_order_id)
            .fetch_optional(&mut *tx)
            .await?;
    if seen.is_some() {
        return Ok(FillRecorded::Duplicate);
    }
    if version != fill.expected_version {
        return Ok(FillRecorded::Stale);
    }
    let d = &fill.deal;
    let deal_id: String = sqlx::query_scalar(
        "INSERT INTO bot_deals (id, bot_id, user_id, number, status, opened_at, closed_at, entry_price, \
         base_qty, cost, fees, filled, exit, realized_pnl) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (bot_id, number) DO UPDATE SET status = excluded.status, \
         closed_at = excluded.closed_at, base_qty = excluded.base_qty, cost = excluded.cost, \
         fees = excluded.fees, filled = excluded.filled, exit = excluded.exit, \
         realized_pnl = excluded.realized_pnl RETURNING id",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(fill.bot_id.to_string())
    .bind(fill.user_id.to_string())
    .bind(d.number)
    .bind(if d.open { "open" } else { "closed" })
    .bind(ms(d.opened_at))
    .bind(d.closed_at.map(ms))
    .bind(d.entry_price)
    .bind(d.base_qty)
    .bind(d.cost)
    .bind(d.fees)
    .bind(serde_json::json!(d.filled).to_string())
    .bind(d.exit.as_deref())
    .bind(d.realized_pnl)
    .fetch_one(&mut *tx)
    .await?;
    let deal_id = Uuid::parse_str(&deal_id)
        .map_err(|_| StoreError::Corrupt(format!("bot_deals.id {deal_id:?}")))?;
    let o = &fill.order;
    // Orders are listed by created_at: the time is the caller's clock, read before this
    // transaction waited for the bot's lock, so a concurrent fill could carry an earlier or an
    // equal time. Never earlier than the bot's last order (one tick after it) keeps the list
    // in fill order, where each order's average price is the deal's after that fill.
    let order_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO bot_orders (id, bot_id, deal_id, user_id, client_order_id, role, side, price, \
         base_qty, notional, fee, created_at, deal_number, average_price, realized_pnl) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
         MAX(?, COALESCE((SELECT MAX(created_at) + 1 FROM bot_orders WHERE bot_id = ?), 0)), \
         ?, ?, ?)",
    )
    .bind(order_id.to_string())
    .bind(fill.bot_id.to_string())
    .bind(deal_id.to_string())
    .bind(fill.user_id.to_string())
    .bind(&o.client_order_id)
    .bind(&o.role)
    .bind(&o.side)
    .bind(o.price)
    .bind(o.base_qty)
    .bind(o.notional)
    .bind(o.fee)
    .bind(ms(now))
    .bind(fill.bot_id.to_string())
    .bind(d.number)
    .bind(o.average_price)
    .bind(o.realized_pnl)
    .execute(&mut *tx)
    .await?;
    update_alerts(&mut tx, fill.bot_id, &fill.alerts, now).await?;
    sqlx::query(
        "UPDATE bots SET deals_opened = ?, updated_at = ?, version = version + 1 WHERE id = ?",
    )
    .bind(fill.deals_opened)
    .bind(ms(now))
    .bind(fill.bot_id.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(FillRecorded::New { order_id, deal_id })
}

pub async fn open_deal(pool: &SqlitePool, bot: Uuid) -> Result<Option<DealRow>, StoreError> {
    let row = sqlx::query("SELECT * FROM bot_deals WHERE bot_id = ? AND status = 'open'")
        .bind(bot.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(deal_row).transpose()
}

pub async fn bot_by_id(pool: &SqlitePool, bot: Uuid) -> Result<Option<BotRow>, StoreError> {
    let row = sqlx::query("SELECT * FROM bots WHERE id = ?")
        .bind(bot.to_string())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(bot_row).transpose()
}

pub async fn list_deals(
    pool: &SqlitePool,
    user: Uuid,
    bot: Uuid,
) -> Result<Vec<DealRow>, StoreError> {
    let rows =
        sqlx::query("SELECT * FROM bot_deals WHERE bot_id = ? AND user_id = ? ORDER BY number")
            .bind(bot.to_string())
            .bind(user.to_string())
            .fetch_all(pool)
            .await?;
    rows.iter().map(deal_row).collect()
}

pub async fn list_bot_orders(
    pool: &SqlitePool,
    user: Uuid,
    bot: Uuid,
) -> Result<Vec<BotOrderRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM bot_orders WHERE bot_id = ? AND user_id = ? ORDER BY created_at, id",
    )
    .bind(bot.to_string())
    .bind(user.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter().map(order_row).collect()
}

/// Replaces the bot's definition and all its alerts, unless a deal is open (`Err(Conflict)`);
/// `None` if the bot is not the user's.
pub async fn replace_bot(
    pool: &SqlitePool,
    limits: Limits,
    user: Uuid,
    bot: &NewBot,
    in_deal: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "UPDATE bots SET name = ?, pair = ?, timeframe = ?, definition = ?, updated_at = ?, \
         version = version + 1 WHERE id = ? AND user_id = ? RETURNING *",
    )
    .bind(&bot.name)
    .bind(bot.pair.as_str())
    .bind(bot.timeframe.as_str())
    .bind(bot.definition.to_string())
    .bind(ms(now))
    .bind(bot.id.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let row = bot_row(&row)?;
    let open: Option<String> =
        sqlx::query_scalar("SELECT id FROM bot_deals WHERE bot_id = ? AND status = 'open'")
            .bind(bot.id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
    super::check_replace(&row, open.is_some(), in_deal)?;
    delete_alerts(&mut tx, user, bot.id, now).await?;
    insert_alerts(&mut tx, limits, user, bot, now).await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// `user`'s bot orders recorded after `after`, oldest first (the live events' replay).
pub async fn bot_orders_since(
    pool: &SqlitePool,
    user: Uuid,
    after: crate::Cursor,
    limit: u32,
) -> Result<Vec<BotOrderRow>, StoreError> {
    let (after_at, after_id) = crate::sqlite::after_millis(after);
    let rows = sqlx::query(
        "SELECT * FROM bot_orders WHERE user_id = ? \
         AND (created_at > ? OR (created_at = ? AND id > ?)) \
         ORDER BY created_at, id LIMIT ?",
    )
    .bind(user.to_string())
    .bind(after_at)
    .bind(after_at)
    .bind(after_id)
    .bind(crate::model::page(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(order_row).collect()
}

/// Deletes the bot's alerts; their tombstones carry the caller's clock (as `delete_alert`'s
/// do: the change feed compares them with `updated_at`).
async fn delete_alerts(
    tx: &mut sqlx::SqliteConnection,
    user: Uuid,
    bot: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let gone: Vec<String> =
        sqlx::query_scalar("DELETE FROM alerts WHERE bot_id = ? AND user_id = ? RETURNING id")
            .bind(bot.to_string())
            .bind(user.to_string())
            .fetch_all(&mut *tx)
            .await?;
    for alert in &gone {
        sqlx::query("UPDATE alert_tombstones SET deleted_at = ? WHERE alert_id = ?")
            .bind(ms(now))
            .bind(alert)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
