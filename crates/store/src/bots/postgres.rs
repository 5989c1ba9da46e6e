//! Bots on PostgreSQL: user calls run as `authenticated` (RLS scopes them), fills on the
//! service path.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{
    BotAlertRow, BotAlertUpdate, BotFill, BotOrderRow, BotRow, BotStatus, DealRow, FillRecorded,
    NewBot,
};
use crate::postgres::{alert_row, as_user, check_limits};
use crate::{AlertStatus, Limits, StoreError};

fn bot_row(row: &PgRow) -> Result<BotRow, StoreError> {
    let status: String = row.try_get("status")?;
    let deals: i32 = row.try_get("deals_opened")?;
    Ok(BotRow {
        version: row.try_get("version")?,
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        pair: row.try_get("pair")?,
        timeframe: row.try_get("timeframe")?,
        definition: row.try_get("definition")?,
        status: BotStatus::read(&status)?,
        deals_opened: i64::from(deals),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn deal_row(row: &PgRow) -> Result<DealRow, StoreError> {
    let number: i32 = row.try_get("number")?;
    let filled: serde_json::Value = row.try_get("filled")?;
    Ok(DealRow {
        id: row.try_get("id")?,
        bot_id: row.try_get("bot_id")?,
        user_id: row.try_get("user_id")?,
        number: i64::from(number),
        status: row.try_get("status")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
        entry_price: row.try_get("entry_price")?,
        base_qty: row.try_get("base_qty")?,
        cost: row.try_get("cost")?,
        fees: row.try_get("fees")?,
        filled: serde_json::from_value(filled)
            .map_err(|e| StoreError::Corrupt(format!("bot_deals.filled: {e}")))?,
        exit: row.try_get("exit")?,
        realized_pnl: row.try_get("realized_pnl")?,
    })
}

pub(crate) fn order_row(row: &PgRow) -> Result<BotOrderRow, StoreError> {
    Ok(BotOrderRow {
        id: row.try_get("id")?,
        bot_id: row.try_get("bot_id")?,
        deal_id: row.try_get("deal_id")?,
        user_id: row.try_get("user_id")?,
        client_order_id: row.try_get("client_order_id")?,
        role: row.try_get("role")?,
        side: row.try_get("side")?,
        price: row.try_get("price")?,
        base_qty: row.try_get("base_qty")?,
        notional: row.try_get("notional")?,
        fee: row.try_get("fee")?,
        deal_number: row.try_get::<Option<i32>, _>("deal_number")?.map(i64::from),
        average_price: row.try_get("average_price")?,
        realized_pnl: row.try_get("realized_pnl")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn create_bot(
    pool: &PgPool,
    limits: Limits,
    user: Uuid,
    bot: &NewBot,
    now: DateTime<Utc>,
) -> Result<BotRow, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let row = sqlx::query(
        "INSERT INTO bots (id, user_id, name, pair, timeframe, definition, status, created_at, updated_at) \
         VALUES ($7, $1, $2, $3, $4, $5, 'active', $6, $6) RETURNING *",
    )
    .bind(user)
    .bind(&bot.name)
    .bind(bot.pair.as_str())
    .bind(bot.timeframe.as_str())
    .bind(&bot.definition)
    .bind(now)
    .bind(bot.id)
    .fetch_one(&mut *tx)
    .await?;
    let created = bot_row(&row)?;
    insert_alerts(&mut tx, limits, user, bot, now).await?;
    tx.commit().await?;
    Ok(created)
}

async fn insert_alerts(
    tx: &mut sqlx::PgConnection,
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
            "INSERT INTO alerts (user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at, bot_id, bot_role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9)",
        )
        .bind(user)
        .bind(&alert.name)
        .bind(alert.symbol.as_str())
        .bind(alert.base_timeframe.as_str())
        .bind(&alert.definition)
        .bind(alert.status.as_str())
        .bind(now)
        .bind(bot.id)
        .bind(&a.role)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub async fn get_bot(pool: &PgPool, user: Uuid, id: Uuid) -> Result<Option<BotRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let row = sqlx::query("SELECT * FROM bots WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    row.as_ref().map(bot_row).transpose()
}

pub async fn list_bots(pool: &PgPool, user: Uuid) -> Result<Vec<BotRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query("SELECT * FROM bots WHERE user_id = $1 ORDER BY created_at, id")
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    rows.iter().map(bot_row).collect()
}

pub async fn bot_alerts(
    pool: &PgPool,
    user: Uuid,
    bot: Uuid,
) -> Result<Vec<BotAlertRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE bot_id = $1 AND user_id = $2 ORDER BY created_at, id",
    )
    .bind(bot)
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
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
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let mut tx = as_user(pool, user).await?;
    // The alerts first, so their tombstones carry the caller's clock.
    delete_alerts(&mut tx, user, id, now).await?;
    let done = sqlx::query("DELETE FROM bots WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    tx.commit().await?;
    Ok(done)
}

/// Sets the bot's status and its alerts' (`updates`), in one transaction; `None` if it is not
/// the user's.
pub async fn set_bot_status(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
    status: BotStatus,
    updates: &[BotAlertUpdate],
    expected_version: i64,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let row = sqlx::query(
        "UPDATE bots SET status = $1, updated_at = $2, version = version + 1 \
         WHERE id = $3 AND user_id = $4 RETURNING *",
    )
    .bind(status.as_str())
    .bind(now)
    .bind(id)
    .bind(user)
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
    tx: &mut sqlx::PgConnection,
    bot: Uuid,
    updates: &[BotAlertUpdate],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for u in updates {
        sqlx::query(
            "UPDATE alerts SET definition = coalesce($1, definition), status = $2, updated_at = $3 \
             WHERE bot_id = $4 AND bot_role = $5",
        )
        .bind(u.definition.as_ref())
        .bind(u.status.as_str())
        .bind(now)
        .bind(bot)
        .bind(&u.role)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// The service path: the order (unless its client order id exists), the deal, the alerts and
/// the bot's deal counter, in one transaction serialised per bot.
pub async fn record_bot_fill(
    pool: &PgPool,
    fill: &BotFill,
    now: DateTime<Utc>,
) -> Result<FillRecorded, StoreError> {
    let mut tx = pool.begin().await?;
    let version: Option<i64> =
        sqlx::query_scalar("SELECT version FROM bots WHERE id = $1 FOR UPDATE")
            .bind(fill.bot_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(version) = version else {
        return Ok(FillRecorded::NoBot);
    };
    let seen: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM bot_orders WHERE client_order_id = $1")
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
    let deal_id: Uuid = sqlx::query_scalar(
        "INSERT INTO bot_deals (bot_id, user_id, number, status, opened_at, closed_at, entry_price, \
         base_qty, cost, fees, filled, exit, realized_pnl) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (bot_id, number) DO UPDATE SET status = EXCLUDED.status, \
         closed_at = EXCLUDED.closed_at, base_qty = EXCLUDED.base_qty, cost = EXCLUDED.cost, \
         fees = EXCLUDED.fees, filled = EXCLUDED.filled, exit = EXCLUDED.exit, \
         realized_pnl = EXCLUDED.realized_pnl RETURNING id",
    )
    .bind(fill.bot_id)
    .bind(fill.user_id)
    .bind(d.number as i32)
    .bind(if d.open { "open" } else { "closed" })
    .bind(d.opened_at)
    .bind(d.closed_at)
    .bind(d.entry_price)
    .bind(d.base_qty)
    .bind(d.cost)
    .bind(d.fees)
    .bind(serde_json::json!(d.filled))
    .bind(d.exit.as_deref())
    .bind(d.realized_pnl)
    .fetch_one(&mut *tx)
    .await?;
    let o = &fill.order;
    // Orders are listed, and streamed, by created_at: the caller's clock was read before this
    // transaction waited for the bot's lock, so a concurrent fill could carry an earlier time.
    // The bots lane's clock (see live_feed) makes the times increase in commit order, over all
    // bots: each order's average price is the deal's after the fills listed before it.
    let now = crate::live_feed::move_lane(&mut tx, crate::live_feed::Lane::Bots, now).await?;
    let order_id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO bot_orders (bot_id, deal_id, user_id, client_order_id, role, side, price, \
         base_qty, notional, fee, created_at, deal_number, average_price, realized_pnl) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (client_order_id) DO NOTHING RETURNING id",
    )
    .bind(fill.bot_id)
    .bind(deal_id)
    .bind(fill.user_id)
    .bind(&o.client_order_id)
    .bind(&o.role)
    .bind(&o.side)
    .bind(o.price)
    .bind(o.base_qty)
    .bind(o.notional)
    .bind(o.fee)
    .bind(now)
    .bind(d.number as i32)
    .bind(o.average_price)
    .bind(o.realized_pnl)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(order_id) = order_id else {
        // Recorded meanwhile by another transaction: undo the deal write.
        tx.rollback().await?;
        return Ok(FillRecorded::Duplicate);
    };
    update_alerts(&mut tx, fill.bot_id, &fill.alerts, now).await?;
    sqlx::query(
        "UPDATE bots SET deals_opened = $1, updated_at = $2, version = version + 1 WHERE id = $3",
    )
    .bind(fill.deals_opened as i32)
    .bind(now)
    .bind(fill.bot_id)
    .execute(&mut *tx)
    .await?;
    crate::live_feed::announce(
        &mut tx,
        &crate::live_feed::EventNotice::BotOrders(vec![(fill.user_id, order_id)]),
    )
    .await?;
    tx.commit().await?;
    Ok(FillRecorded::New { order_id, deal_id })
}

/// The bot's open deal (service path: what a bot handler resumes from).
pub async fn open_deal(pool: &PgPool, bot: Uuid) -> Result<Option<DealRow>, StoreError> {
    let row = sqlx::query("SELECT * FROM bot_deals WHERE bot_id = $1 AND status = 'open'")
        .bind(bot)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(deal_row).transpose()
}

/// The bot's row on the service path.
pub async fn bot_by_id(pool: &PgPool, bot: Uuid) -> Result<Option<BotRow>, StoreError> {
    let row = sqlx::query("SELECT * FROM bots WHERE id = $1")
        .bind(bot)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(bot_row).transpose()
}

pub async fn list_deals(pool: &PgPool, user: Uuid, bot: Uuid) -> Result<Vec<DealRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows =
        sqlx::query("SELECT * FROM bot_deals WHERE bot_id = $1 AND user_id = $2 ORDER BY number")
            .bind(bot)
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    rows.iter().map(deal_row).collect()
}

pub async fn list_bot_orders(
    pool: &PgPool,
    user: Uuid,
    bot: Uuid,
) -> Result<Vec<BotOrderRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM bot_orders WHERE bot_id = $1 AND user_id = $2 ORDER BY created_at, id",
    )
    .bind(bot)
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(order_row).collect()
}

/// Replaces the bot's definition and all its alerts, unless a deal is open (`Err(Conflict)`);
/// `None` if the bot is not the user's.
pub async fn replace_bot(
    pool: &PgPool,
    limits: Limits,
    user: Uuid,
    bot: &NewBot,
    in_deal: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let row = sqlx::query(
        "UPDATE bots SET name = $1, pair = $2, timeframe = $3, definition = $4, updated_at = $5, \
         version = version + 1 WHERE id = $6 AND user_id = $7 RETURNING *",
    )
    .bind(&bot.name)
    .bind(bot.pair.as_str())
    .bind(bot.timeframe.as_str())
    .bind(&bot.definition)
    .bind(now)
    .bind(bot.id)
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let row = bot_row(&row)?;
    let open: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM bot_deals WHERE bot_id = $1 AND status = 'open'")
            .bind(bot.id)
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
    pool: &PgPool,
    user: Uuid,
    after: crate::Cursor,
    limit: u32,
) -> Result<Vec<BotOrderRow>, StoreError> {
    let mut tx = as_user(pool, user).await?;
    let rows = sqlx::query(
        "SELECT * FROM bot_orders WHERE user_id = $1 AND (created_at, id) > ($2, $3) \
         ORDER BY created_at, id LIMIT $4",
    )
    .bind(user)
    .bind(after.at)
    .bind(after.id)
    .bind(crate::model::page(limit))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(order_row).collect()
}

/// Deletes the bot's alerts; their tombstones carry the caller's clock (as `delete_alert`'s
/// do: the change feed compares them with `updated_at`).
async fn delete_alerts(
    tx: &mut sqlx::PgConnection,
    user: Uuid,
    bot: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let gone: Vec<Uuid> =
        sqlx::query_scalar("DELETE FROM alerts WHERE bot_id = $1 AND user_id = $2 RETURNING id")
            .bind(bot)
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
    sqlx::query("UPDATE alert_tombstones SET deleted_at = $1 WHERE alert_id = ANY($2)")
        .bind(now)
        .bind(&gone)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
