//! Bots in a running service: created in the store with their alerts, and driven by the
//! dispatcher's `bot` outbox rows through [`StoreBots`], the [`BotHandler`] that loads the bot
//! and its open deal from the store, runs the deal machine with the paper executor, and
//! records the fill with every change it makes in one transaction — once per trigger id.

use std::sync::Arc;

use alert_core::BarTime;
use alert_dispatch::{BotAction, BotError, BotHandler};
use alert_engine::BarSnapshot;
use alert_store::{
    AlertStatus, BotAlertUpdate, BotFill, BotRow, BotStatus, DealRow, DealWrite, FillRecorded,
    NewAlert, NewBot, NewBotAlert, NewBotOrder, Store,
};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::compile;
use crate::deal::{AlertChange, BotState, BotTrigger, Deal, Outcome, Role};
use crate::definition::{BotDefinition, parse_bot};
use crate::executor::{ExecError, PaperExecutor, Side};

/// The store rows of a new bot with id `bot_id` (its alerts' actions name it): the bot and all
/// its alerts, the entry active and the others paused (a deal arms them).
pub fn new_bot(def: &BotDefinition, bot_id: Uuid) -> NewBot {
    let alerts = compile::alerts(&bot_id.to_string(), def)
        .into_iter()
        .map(|(role, json)| NewBotAlert {
            role: role.key(),
            alert: NewAlert {
                name: json["name"].as_str().unwrap_or_default().to_owned(),
                symbol: def.pair,
                base_timeframe: def.timeframe,
                definition: json,
                status: if role == Role::Entry {
                    AlertStatus::Active
                } else {
                    AlertStatus::Paused
                },
            },
        })
        .collect();
    NewBot {
        id: bot_id,
        name: def.name.clone(),
        pair: def.pair,
        timeframe: def.timeframe,
        definition: def.to_json(),
        alerts,
    }
}

/// Creates a bot (its id chosen here, so its alerts' actions can name it) with its alerts.
pub async fn create_bot(
    store: &Store,
    user: Uuid,
    def: &BotDefinition,
    now: DateTime<Utc>,
) -> Result<BotRow, alert_store::StoreError> {
    store
        .create_bot(user, &new_bot(def, Uuid::new_v4()), now)
        .await
}

/// Pausing a bot pauses all its alerts; resuming re-arms what its state arms (the entry when
/// no deal is open, else the open deal's safety orders and exits).
pub async fn set_paused(
    store: &Store,
    user: Uuid,
    bot: &BotRow,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, BotError> {
    let def = parse_bot(&bot.definition)
        .map_err(|e| BotError::Permanent(format!("stored bot does not parse: {e:?}")))?;
    let state = load_state(store, bot).await?;
    let roles = compile::roles(&def);
    let updates: Vec<BotAlertUpdate> = roles
        .into_iter()
        .map(|role| BotAlertUpdate {
            role: role.key(),
            definition: None,
            status: if !paused && state.armed(&def, role) {
                AlertStatus::Active
            } else {
                AlertStatus::Paused
            },
        })
        .collect();
    let status = if paused {
        BotStatus::Paused
    } else {
        BotStatus::Active
    };
    store
        .set_bot_status(user, bot.id, status, &updates, now)
        .await
        .map_err(|e| BotError::Retry(e.to_string()))
}

/// The bot's state as the store has it.
async fn load_state(store: &Store, bot: &BotRow) -> Result<BotState, BotError> {
    let open = store
        .open_deal(bot.id)
        .await
        .map_err(|e| BotError::Retry(e.to_string()))?;
    Ok(BotState {
        deal: open.map(deal_of),
        deals_opened: u32::try_from(bot.deals_opened).unwrap_or(0),
        closed: Vec::new(),
    })
}

/// A stored deal as the deal machine holds it.
pub fn deal_of(row: DealRow) -> Deal {
    Deal {
        number: u32::try_from(row.number).unwrap_or(0),
        opened_at: row.opened_at.timestamp_millis(),
        entry_price: row.entry_price,
        base_qty: row.base_qty,
        cost: row.cost,
        fees: row.fees,
        filled: row.filled,
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

/// The role a `bot_trigger` payload names.
fn role_of(payload: &Value) -> Option<Role> {
    Some(match payload["action_type"].as_str()? {
        "execute_entry" => Role::Entry,
        "execute_dca" => Role::SafetyOrder(u32::try_from(payload["dca_index"].as_u64()?).ok()?),
        "take_profit" => Role::TakeProfit,
        "stop_loss" => Role::StopLoss,
        _ => return None,
    })
}

/// The bar the trigger saw: the snapshot's, else a flat bar at its price.
fn bar_of(payload: &Value) -> Option<BarSnapshot> {
    let bar = &payload["snapshot"]["bar"];
    let num = |v: &Value| v.as_f64();
    if let (Some(open), Some(high), Some(low), Some(close)) = (
        num(&bar["open"]),
        num(&bar["high"]),
        num(&bar["low"]),
        num(&bar["close"]),
    ) {
        return Some(BarSnapshot {
            open,
            high,
            low,
            close,
            volume: num(&bar["volume"]).unwrap_or(0.0),
        });
    }
    let p = payload["price"].as_f64()?;
    Some(BarSnapshot {
        open: p,
        high: p,
        low: p,
        close: p,
        volume: 0.0,
    })
}

/// The dispatcher's bot handler: paper execution against the store.
#[derive(Clone)]
pub struct StoreBots {
    store: Store,
}

impl StoreBots {
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self { store })
    }

    /// Carries out one bot action; `Ok` also when there is nothing to do (a stale or repeated
    /// trigger, a bot deleted or paused meanwhile).
    pub async fn carry_out(&self, action: &BotAction) -> Result<Option<FillRecorded>, BotError> {
        let Ok(bot_id) = Uuid::parse_str(&action.bot_id) else {
            return Err(BotError::Permanent(format!(
                "bot_id {:?} is not a stored bot's id",
                action.bot_id
            )));
        };
        let Some(bot) = self
            .store
            .bot_by_id(bot_id)
            .await
            .map_err(|e| BotError::Retry(e.to_string()))?
        else {
            tracing::info!(bot = %bot_id, "bot action for a deleted bot: dropped");
            return Ok(None);
        };
        if bot.user_id != action.user_id {
            return Err(BotError::Permanent(format!(
                "bot {bot_id} is not the alert owner's"
            )));
        }
        if bot.status == BotStatus::Paused {
            return Ok(None);
        }
        let def = parse_bot(&bot.definition)
            .map_err(|e| BotError::Permanent(format!("stored bot does not parse: {e:?}")))?;
        let p = &action.payload;
        let (Some(role), Some(bar)) = (role_of(p), bar_of(p)) else {
            return Err(BotError::Permanent(format!(
                "bot action without a role or a price: {p}"
            )));
        };
        let trigger = BotTrigger {
            role,
            key: action.trigger_id.to_string(),
            bar_time: BarTime::from_millis(p["bar_time"].as_i64().unwrap_or(0)),
            fired_at: BarTime::from_millis(p["fired_at"].as_i64().unwrap_or(0)),
            bar,
        };
        let mut state = load_state(&self.store, &bot).await?;
        let before = state.deal.clone();
        let mut paper = PaperExecutor::new(def.fee_pct, def.quantity_step);
        let outcome = state
            .on_trigger(&def, &trigger, &mut paper)
            .map_err(|e| match e {
                ExecError::Retry(m) => BotError::Retry(m),
                ExecError::Rejected(m) => BotError::Permanent(m),
            })?;
        let Outcome::Filled { order, changes } = outcome else {
            return Ok(None);
        };
        // The deal as it stands after the fill: the open one, or the one this fill closed.
        let (deal, closed) = match (&state.deal, before, state.closed.last()) {
            (Some(d), _, _) => (d.clone(), None),
            (None, Some(d), Some(c)) => (d, Some(c)),
            _ => return Err(BotError::Permanent("a fill without a deal".into())),
        };
        let deal = DealWrite {
            number: i64::from(deal.number),
            open: closed.is_none(),
            opened_at: time(deal.opened_at),
            closed_at: closed.map(|c| time(c.closed_at)),
            entry_price: deal.entry_price,
            base_qty: deal.base_qty,
            cost: deal.cost,
            fees: closed.map_or(deal.fees, |c| c.fees),
            filled: deal.filled,
            exit: closed.map(|c| match c.exit {
                Role::StopLoss => "stop_loss".into(),
                _ => "take_profit".into(),
            }),
            realized_pnl: closed.map(|c| c.realized_pnl),
        };
        let bot_key = bot_id.to_string();
        let alerts = changes
            .into_iter()
            .map(|change| match change {
                AlertChange::Activate {
                    role,
                    threshold,
                    from,
                } => BotAlertUpdate {
                    role: role.key(),
                    definition: Some(compile::alert(
                        &bot_key,
                        &def,
                        role,
                        threshold.unwrap_or(0.0),
                        Some(from),
                    )),
                    status: AlertStatus::Active,
                },
                AlertChange::Pause { role } => BotAlertUpdate {
                    role: role.key(),
                    definition: None,
                    status: AlertStatus::Paused,
                },
            })
            .collect();
        let fill = BotFill {
            bot_id,
            user_id: bot.user_id,
            order: NewBotOrder {
                client_order_id: order.client_order_id.clone(),
                role: order.role.key(),
                side: match order.side {
                    Side::Buy => "buy".into(),
                    Side::Sell => "sell".into(),
                },
                price: order.price,
                base_qty: order.base_qty,
                notional: order.notional,
                fee: order.fee,
            },
            deal,
            alerts,
            deals_opened: i64::from(state.deals_opened),
        };
        let recorded = self
            .store
            .record_bot_fill(&fill, Utc::now())
            .await
            .map_err(|e| BotError::Retry(e.to_string()))?;
        if let FillRecorded::New { .. } = recorded {
            tracing::info!(
                bot = %bot_id, role = %order.role.key(), side = ?order.side, price = order.price,
                qty = order.base_qty, deal = order.deal, "bot order filled (paper)"
            );
        }
        Ok(Some(recorded))
    }
}

impl BotHandler for StoreBots {
    fn handle(&self, action: BotAction) -> BoxFuture<'_, Result<(), BotError>> {
        Box::pin(async move { self.carry_out(&action).await.map(|_| ()) })
    }
}
