//! DCA bots' storage: the bot, its alerts (rows of `alerts` with `bot_id` and `bot_role`), its
//! deals and its orders. The store keeps what the bot machine (`alert-bots`) decides; it does
//! not decide anything itself.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use alert_core::{Symbol, Timeframe};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::{AlertRow, AlertStatus, NewAlert, StoreError};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BotStatus {
    Active,
    Paused,
}

impl BotStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
        }
    }

    pub(crate) fn read(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(Self::Active),
            "paused" => Ok(Self::Paused),
            other => Err(StoreError::Corrupt(format!("bot status {other:?}"))),
        }
    }
}

/// A bot to create, with all its alerts (created in the same transaction).
#[derive(Clone, Debug)]
pub struct NewBot {
    /// Chosen by the caller: the bot's alerts name it in their actions.
    pub id: Uuid,
    pub name: String,
    pub pair: Symbol,
    pub timeframe: Timeframe,
    /// The bot JSON (canonical form).
    pub definition: serde_json::Value,
    pub alerts: Vec<NewBotAlert>,
}

/// One of a bot's alerts: its role (`entry`, `so<n>`, `tp`, `sl`) and the alert.
#[derive(Clone, Debug)]
pub struct NewBotAlert {
    pub role: String,
    pub alert: NewAlert,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BotRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub pair: String,
    pub timeframe: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: serde_json::Value,
    pub status: BotStatus,
    /// Deals opened so far (the next deal's number is one more).
    pub deals_opened: i64,
    /// Counts the bot's changes (fills, edits, pause/resume): a change computed from one
    /// version is written only while the bot is still at it.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A bot's alert and its role.
#[derive(Clone, Debug, PartialEq)]
pub struct BotAlertRow {
    pub role: String,
    pub alert: AlertRow,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DealRow {
    pub id: Uuid,
    pub bot_id: Uuid,
    pub user_id: Uuid,
    pub number: i64,
    /// `open` or `closed`.
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub entry_price: f64,
    pub base_qty: f64,
    pub cost: f64,
    pub fees: f64,
    /// Safety orders filled, by index (1-based: `filled[n-1]`).
    pub filled: Vec<bool>,
    /// `take_profit`, `stop_loss` or `closed_by_user`, once closed.
    pub exit: Option<String>,
    pub realized_pnl: Option<f64>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BotOrderRow {
    pub id: Uuid,
    pub bot_id: Uuid,
    pub deal_id: Uuid,
    pub user_id: Uuid,
    pub client_order_id: String,
    pub role: String,
    pub side: String,
    pub price: f64,
    pub base_qty: f64,
    pub notional: f64,
    pub fee: f64,
    /// The deal's number, its average entry price after this order (buys) or at its close
    /// (sells), and, on a closing order, the deal's realised P&L (`null` on orders recorded
    /// before these were kept).
    pub deal_number: Option<i64>,
    pub average_price: Option<f64>,
    pub realized_pnl: Option<f64>,
    pub created_at: DateTime<Utc>,
}

/// A deal as it stands after a fill.
#[derive(Clone, Debug, PartialEq)]
pub struct DealWrite {
    pub number: i64,
    pub open: bool,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub entry_price: f64,
    pub base_qty: f64,
    pub cost: f64,
    pub fees: f64,
    pub filled: Vec<bool>,
    pub exit: Option<String>,
    pub realized_pnl: Option<f64>,
}

/// An order that filled.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBotOrder {
    pub client_order_id: String,
    pub role: String,
    /// `buy` or `sell`.
    pub side: String,
    pub price: f64,
    pub base_qty: f64,
    pub notional: f64,
    pub fee: f64,
    /// The deal's average entry price after the order (buys) or at its close (sells).
    pub average_price: f64,
    /// The deal's realised P&L, on the order that closed it.
    pub realized_pnl: Option<f64>,
}

/// What one of the bot's alerts becomes: its new JSON (a moved threshold) and status.
#[derive(Clone, Debug, PartialEq)]
pub struct BotAlertUpdate {
    pub role: String,
    pub definition: Option<serde_json::Value>,
    pub status: AlertStatus,
}

/// A fill with everything it changes, written in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct BotFill {
    pub bot_id: Uuid,
    pub user_id: Uuid,
    pub order: NewBotOrder,
    pub deal: DealWrite,
    pub alerts: Vec<BotAlertUpdate>,
    /// The bot's deal counter after the fill.
    pub deals_opened: i64,
    /// The bot's version the fill was computed from ([`BotRow::version`]).
    pub expected_version: i64,
}

/// What recording a fill did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillRecorded {
    New {
        order_id: Uuid,
        deal_id: Uuid,
    },
    /// An order with this client order id exists: nothing was written.
    Duplicate,
    /// The bot changed since the version the fill was computed from (another fill, an edit):
    /// nothing was written; compute it again from the bot as it is now.
    Stale,
    /// The bot is gone.
    NoBot,
}

/// A bot's alerts in their natural order: entry, safety orders by number, take profit, stop
/// loss (they are created in one instant, so their times cannot order them).
pub(crate) fn in_role_order(mut alerts: Vec<BotAlertRow>) -> Vec<BotAlertRow> {
    fn rank(role: &str) -> (u8, u64) {
        match role {
            "entry" => (0, 0),
            "tp" => (2, 0),
            "sl" => (3, 0),
            other => match other.strip_prefix("so").and_then(|n| n.parse().ok()) {
                Some(n) => (1, n),
                None => (4, 0),
            },
        }
    }
    alerts.sort_by(|a, b| {
        rank(&a.role)
            .cmp(&rank(&b.role))
            .then(a.alert.id.cmp(&b.alert.id))
    });
    alerts
}

/// A change computed from `expected` may be written: `row` is the bot after the change's
/// `UPDATE` (which added one to its version).
pub(crate) fn check_version(row: &BotRow, expected: i64) -> Result<(), StoreError> {
    if row.version - 1 == expected {
        Ok(())
    } else {
        Err(StoreError::Stale(format!(
            "bot {} changed meanwhile (version {} ≠ {expected}): read it again and retry",
            row.id,
            row.version - 1
        )))
    }
}

/// Whether a replacement may go ahead: without a deal (`in_deal` `None`), or, for the changes
/// allowed during a deal, computed from the bot's current version while its deal is open.
pub(crate) fn check_replace(
    row: &BotRow,
    deal_open: bool,
    in_deal: Option<i64>,
) -> Result<(), StoreError> {
    match in_deal {
        None if deal_open => Err(StoreError::Conflict(
            "the bot has an open deal: close it (or let it close) before changing the bot".into(),
        )),
        None => Ok(()),
        Some(_) if !deal_open => Err(StoreError::Stale(format!(
            "bot {}'s deal closed meanwhile: read it again and retry",
            row.id
        ))),
        Some(expected) => check_version(row, expected),
    }
}
