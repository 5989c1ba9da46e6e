//! Bots in a running service: created in the store with their alerts, and driven by the
//! dispatcher's `bot` outbox rows through [`StoreBots`], the [`BotHandler`] that loads the bot
//! and its open deal from the store, runs the deal machine with the paper executor, and
//! records the fill with every change it makes in one transaction — once per trigger id.

use std::sync::Arc;

use alert_core::BarTime;
use alert_dispatch::{BotAction, BotError, BotHandler, LiveEvent, LiveHub, Waker};
use alert_engine::BarSnapshot;
use alert_store::{
    AlertStatus, BotAlertUpdate, BotFill, BotOrderRow, BotRow, BotStatus, DealRow, DealWrite,
    FillRecorded, NewAlert, NewBot, NewBotAlert, NewBotOrder, Store, StoreError,
};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use crate::compile;
use crate::deal::{AlertChange, BotState, BotTrigger, Deal, OrderRecord, Outcome, Role};
use crate::definition::{BotDefinition, parse_bot};
use crate::executor::{ExecError, PaperExecutor, Side};

/// The store rows of a new bot with id `bot_id` (its alerts' actions name it): the bot and all
/// its alerts, the entry active and the others paused (a deal arms them).
pub fn new_bot(def: &BotDefinition, bot_id: Uuid) -> NewBot {
    bot_in_state(def, bot_id, &BotState::default(), None)
}

/// The store rows of bot `bot_id` whose state is `state`: each alert armed (with its
/// threshold) as the state arms it, the others paused; `paused` pauses them all. Armed alerts
/// evaluate no data before `armed_from` (the open deal's opening bar).
fn bot_in_state(
    def: &BotDefinition,
    bot_id: Uuid,
    state: &BotState,
    armed_from: Option<BarTime>,
) -> NewBot {
    let key = bot_id.to_string();
    let alerts = compile::roles(def)
        .into_iter()
        .filter_map(|role| {
            let threshold = match role {
                Role::SafetyOrder(n) => state.safety_order_price(def, n),
                Role::TakeProfit => state.take_profit_price(def),
                Role::StopLoss => state.stop_loss_price(def),
                Role::Entry | Role::Close => None,
            };
            let json = compile::alert(&key, def, role, threshold.unwrap_or(0.0), armed_from)?;
            Some(NewBotAlert {
                role: role.key(),
                alert: NewAlert {
                    name: json["name"].as_str().unwrap_or_default().to_owned(),
                    symbol: def.pair,
                    base_timeframe: def.timeframe,
                    definition: json,
                    status: if state.armed(def, role) {
                        AlertStatus::Active
                    } else {
                        AlertStatus::Paused
                    },
                },
            })
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

/// How often a change computed from a bot that changed meanwhile is computed again before
/// giving up (each retry reads the bot again; only a bot changing this often loses).
const STALE_RETRIES: usize = 8;

/// Pausing a bot pauses all its alerts; resuming re-arms what its state arms (the entry when
/// no deal is open, else the open deal's safety orders and exits). `None` if the bot is not
/// `user`'s.
pub async fn set_paused(
    store: &Store,
    user: Uuid,
    bot_id: Uuid,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, StoreError> {
    let mut attempts = 0;
    loop {
        let Some(bot) = store.get_bot(user, bot_id).await? else {
            return Ok(None);
        };
        let def = stored_definition(&bot)?;
        let state = load_state(store, &bot).await?;
        let updates: Vec<BotAlertUpdate> = compile::roles(&def)
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
        match store
            .set_bot_status(user, bot.id, status, &updates, bot.version, now)
            .await
        {
            Err(StoreError::Stale(_)) if attempts < STALE_RETRIES => attempts += 1,
            other => return other,
        }
    }
}

/// The fields of a bot that may change while a deal is open: they do not touch the deal's
/// position or ladder (the pair, timeframe, order sizes, safety-order ladder and fees may not).
pub const SAFE_DURING_DEAL: [&str; 6] = [
    "name",
    "entry_conditions",
    "trigger",
    "take_profit_pct",
    "stop_loss_pct",
    "cooldown_bars",
];

/// Why a bot could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// A deal is open and these fields (JSON names) differ from the bot's.
    #[error(
        "a deal is open: only {} may change until it closes; these may not: {}",
        SAFE_DURING_DEAL.join(", "),
        .0.join(", ")
    )]
    UnsafeDuringDeal(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replaces bot `bot_id`'s settings with `def` and rebuilds its alerts. Without an open deal
/// anything may change; during a deal only [`SAFE_DURING_DEAL`]: its take profit and stop
/// loss move to the new percentages from the deal's average price at once, its safety orders
/// stay as they are. `None` if the bot is not `user`'s.
pub async fn replace_bot(
    store: &Store,
    user: Uuid,
    bot_id: Uuid,
    def: &BotDefinition,
    now: DateTime<Utc>,
) -> Result<Option<BotRow>, ReplaceError> {
    let mut attempts = 0;
    loop {
        let Some(bot) = store.get_bot(user, bot_id).await? else {
            return Ok(None);
        };
        let state = load_state(store, &bot).await?;
        let result = match &state.deal {
            None => {
                let mut rows = new_bot(def, bot_id);
                if bot.status == BotStatus::Paused {
                    pause_all(&mut rows);
                }
                store.replace_bot(user, &rows, None, now).await
            }
            Some(deal) => {
                let current = stored_definition(&bot)?;
                let unsafe_fields = changed_fields(&current, def)
                    .into_iter()
                    .filter(|f| !SAFE_DURING_DEAL.contains(&f.as_str()))
                    .collect::<Vec<_>>();
                if !unsafe_fields.is_empty() {
                    return Err(ReplaceError::UnsafeDuringDeal(unsafe_fields));
                }
                let mut rows = bot_in_state(
                    def,
                    bot_id,
                    &state,
                    Some(BarTime::from_millis(deal.opened_at)),
                );
                if bot.status == BotStatus::Paused {
                    pause_all(&mut rows);
                }
                store.replace_bot(user, &rows, Some(bot.version), now).await
            }
        };
        match result {
            Err(StoreError::Stale(_)) if attempts < STALE_RETRIES => attempts += 1,
            other => return Ok(other?),
        }
    }
}

fn pause_all(bot: &mut NewBot) {
    for a in &mut bot.alerts {
        a.alert.status = AlertStatus::Paused;
    }
}

/// The top-level fields of the bots' canonical JSON that differ.
fn changed_fields(a: &BotDefinition, b: &BotDefinition) -> Vec<String> {
    let (a, b) = (a.to_json(), b.to_json());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["(the bot)".into()];
    };
    let mut fields: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

fn stored_definition(bot: &BotRow) -> Result<BotDefinition, StoreError> {
    parse_bot(&bot.definition)
        .map_err(|e| StoreError::Corrupt(format!("bot {}'s definition: {e:?}", bot.id)))
}

/// The bot's state as the store has it.
async fn load_state(store: &Store, bot: &BotRow) -> Result<BotState, StoreError> {
    let open = store.open_deal(bot.id).await?;
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

/// The role a `bot_trigger` payload names (never [`Role::Close`]).
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

/// The dispatcher's bot handler, and what closes deals on a user's request: paper execution
/// against the store, each fill published to the user's live events.
pub struct StoreBots {
    store: Store,
    live: Option<LiveHub>,
    /// The in-process runner, woken after a fill so the alerts it armed apply at once.
    runner: Option<Waker>,
    /// Held from taking a fill's time to publishing it, so this process records and publishes
    /// bot orders in time order (what the live events' resume ids rely on).
    recording: tokio::sync::Mutex<()>,
}

/// What closing a deal by hand did.
#[derive(Clone, Debug, PartialEq)]
pub enum CloseOutcome {
    /// The sell filled and closed the deal.
    Closed(Box<BotOrderRow>),
    /// This deal was closed by this request already (the same client order id).
    AlreadyClosed,
    /// No deal is open.
    NoDeal,
}

impl StoreBots {
    pub fn new(store: Store) -> Arc<Self> {
        Self::with_live(store, None, None)
    }

    /// A handler that publishes each new fill to `live` and wakes `runner` to read the alert
    /// changes it made.
    pub fn with_live(store: Store, live: Option<LiveHub>, runner: Option<Waker>) -> Arc<Self> {
        Arc::new(Self {
            store,
            live,
            runner,
            recording: tokio::sync::Mutex::new(()),
        })
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
        let mut attempts = 0;
        loop {
            let Some(bot) = self.store.bot_by_id(bot_id).await.map_err(retry)? else {
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
            let def = stored_definition(&bot).map_err(|e| BotError::Permanent(e.to_string()))?;
            let mut state = load_state(&self.store, &bot).await.map_err(retry)?;
            let before = state.deal.clone();
            let mut paper = PaperExecutor::new(def.fee_pct, def.quantity_step);
            let outcome = state
                .on_trigger(&def, &trigger, &mut paper)
                .map_err(exec_error)?;
            let Outcome::Filled { order, changes } = outcome else {
                return Ok(None);
            };
            let fill = fill_of(&bot, &def, &state, before, &order, changes)?;
            match self.record(&fill).await.map_err(retry)? {
                FillRecorded::Stale if attempts < STALE_RETRIES => attempts += 1,
                FillRecorded::Stale => {
                    return Err(BotError::Retry(format!(
                        "bot {bot_id} kept changing while its order was recorded"
                    )));
                }
                recorded => return Ok(Some(recorded)),
            }
        }
    }

    /// Closes `user`'s bot's open deal at `price` now (a market sell of the whole position),
    /// as if an alert had fired on bar `bar_time`; the entry re-arms after the cooldown as
    /// after a take profit. Once per deal: the client order id names the deal. `None` if the
    /// bot is not `user`'s.
    pub async fn close_deal(
        &self,
        user: Uuid,
        bot_id: Uuid,
        price: f64,
        bar_time: BarTime,
    ) -> Result<Option<CloseOutcome>, BotError> {
        let mut attempts = 0;
        loop {
            let Some(bot) = self.store.get_bot(user, bot_id).await.map_err(retry)? else {
                return Ok(None);
            };
            let def = stored_definition(&bot).map_err(|e| BotError::Permanent(e.to_string()))?;
            let mut state = load_state(&self.store, &bot).await.map_err(retry)?;
            let before = state.deal.clone();
            let Some(deal) = &before else {
                return Ok(Some(CloseOutcome::NoDeal));
            };
            let key = format!("close:{bot_id}:{}", deal.number);
            let mut paper = PaperExecutor::new(def.fee_pct, def.quantity_step);
            let outcome = state
                .close_now(&def, key, bar_time, bar_time, price, &mut paper)
                .map_err(exec_error)?;
            let Outcome::Filled { order, changes } = outcome else {
                return Ok(Some(CloseOutcome::NoDeal));
            };
            let mut fill = fill_of(&bot, &def, &state, before, &order, changes)?;
            if bot.status == BotStatus::Paused {
                // A paused bot's entry stays paused: resuming arms it.
                for a in &mut fill.alerts {
                    a.status = AlertStatus::Paused;
                }
            }
            match self.record(&fill).await.map_err(retry)? {
                FillRecorded::New { order_id, deal_id } => {
                    return Ok(Some(CloseOutcome::Closed(Box::new(order_row(
                        &fill, order_id, deal_id,
                    )))));
                }
                FillRecorded::Duplicate => return Ok(Some(CloseOutcome::AlreadyClosed)),
                FillRecorded::NoBot => return Ok(None),
                FillRecorded::Stale if attempts < STALE_RETRIES => attempts += 1,
                FillRecorded::Stale => {
                    return Err(BotError::Retry(format!(
                        "bot {bot_id} kept changing while its deal was closed"
                    )));
                }
            }
        }
    }

    /// Records a fill and publishes it, in time order within this process.
    async fn record(&self, fill: &BotFill) -> Result<FillRecorded, StoreError> {
        let _order = self.recording.lock().await;
        let now = Utc::now();
        let recorded = self.store.record_bot_fill(fill, now).await?;
        if let FillRecorded::New { order_id, deal_id } = recorded {
            let o = &fill.order;
            tracing::info!(
                bot = %fill.bot_id, role = %o.role, side = %o.side, price = o.price,
                qty = o.base_qty, deal = fill.deal.number, "bot order filled (paper)"
            );
            if let Some(runner) = &self.runner {
                runner.wake();
            }
            if let Some(live) = &self.live {
                let mut row = order_row(fill, order_id, deal_id);
                row.created_at = now;
                live.publish(fill.user_id, LiveEvent::BotOrder(row));
            }
        }
        Ok(recorded)
    }
}

fn retry(e: StoreError) -> BotError {
    BotError::Retry(e.to_string())
}

fn exec_error(e: ExecError) -> BotError {
    match e {
        ExecError::Retry(m) => BotError::Retry(m),
        ExecError::Rejected(m) => BotError::Permanent(m),
    }
}

/// The order row a recorded fill wrote (its time is the recording's `now`).
fn order_row(fill: &BotFill, order_id: Uuid, deal_id: Uuid) -> BotOrderRow {
    let o = &fill.order;
    BotOrderRow {
        id: order_id,
        bot_id: fill.bot_id,
        deal_id,
        user_id: fill.user_id,
        client_order_id: o.client_order_id.clone(),
        role: o.role.clone(),
        side: o.side.clone(),
        price: o.price,
        base_qty: o.base_qty,
        notional: o.notional,
        fee: o.fee,
        deal_number: Some(fill.deal.number),
        average_price: Some(o.average_price),
        realized_pnl: o.realized_pnl,
        created_at: Utc::now(),
    }
}

/// The store write of a fill: the order, the deal as it stands after it (the open one, or the
/// one it closed), the alerts' changes, computed from `bot` at its version.
fn fill_of(
    bot: &BotRow,
    def: &BotDefinition,
    state: &BotState,
    before: Option<Deal>,
    order: &OrderRecord,
    changes: Vec<AlertChange>,
) -> Result<BotFill, BotError> {
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
        exit: closed.and_then(|c| c.exit.exit()).map(str::to_owned),
        realized_pnl: closed.map(|c| c.realized_pnl),
    };
    let bot_key = bot.id.to_string();
    let alerts = changes
        .into_iter()
        .map(|change| match change {
            AlertChange::Activate {
                role,
                threshold,
                from,
            } => BotAlertUpdate {
                role: role.key(),
                definition: compile::alert(
                    &bot_key,
                    def,
                    role,
                    threshold.unwrap_or(0.0),
                    Some(from),
                ),
                status: AlertStatus::Active,
            },
            AlertChange::Pause { role } => BotAlertUpdate {
                role: role.key(),
                definition: None,
                status: AlertStatus::Paused,
            },
        })
        .collect();
    Ok(BotFill {
        bot_id: bot.id,
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
            average_price: order.average_price,
            realized_pnl: order.realized_pnl,
        },
        deal,
        alerts,
        deals_opened: i64::from(state.deals_opened),
        expected_version: bot.version,
    })
}

impl BotHandler for StoreBots {
    fn handle(&self, action: BotAction) -> BoxFuture<'_, Result<(), BotError>> {
        Box::pin(async move { self.carry_out(&action).await.map(|_| ()) })
    }
}
