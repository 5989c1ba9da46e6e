//! A bot over history, through the same engine and the same deal machine as a live bot: its
//! alerts are registered in an [`Engine`], each trigger goes to [`BotState::on_trigger`] with
//! a [`PaperExecutor`], and the resulting alert changes are applied back to the engine.

use std::collections::HashMap;
use std::sync::Arc;

use alert_core::{BarTime, CandleUpdate, Symbol};
use alert_engine::{AlertId, Engine, EngineConfig, EngineError, Event};
use serde::Serialize;

use crate::compile;
use crate::deal::{AlertChange, BotState, BotTrigger, OrderRecord, Outcome, Role};
use crate::definition::BotDefinition;
use crate::executor::{ExecError, PaperExecutor};

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("bot alert {role:?}: {error}")]
    Alert { role: Role, error: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("candle: {0}")]
    Data(#[from] alert_engine::DataError),
    #[error("order refused: {0}")]
    Order(#[from] ExecError),
}

/// The backtest's totals.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub candles: u64,
    pub deals_closed: usize,
    pub take_profits: usize,
    pub stop_losses: usize,
    /// Share of closed deals with a positive realised P&L, 0 to 1.
    pub win_rate: f64,
    pub realized_pnl: f64,
    pub fees: f64,
    /// Most quote tied up in one deal at once.
    pub max_capital_committed: f64,
    /// Largest fall of equity (realised + unrealised P&L) from a previous peak, in quote.
    pub max_drawdown: f64,
    /// Data time spent with a deal open, in milliseconds, and as a share of the data's span.
    pub time_in_deals_ms: i64,
    pub time_in_deals_share: f64,
    /// The deal still open at the end, if any: its unrealised P&L at the last close.
    pub open_deal_unrealized_pnl: Option<f64>,
    pub orders: u64,
}

/// One bot replayed over candles of its pair.
pub struct BotBacktest {
    def: BotDefinition,
    bot_id: String,
    engine: Engine,
    state: BotState,
    executor: PaperExecutor,
    ids: HashMap<Role, AlertId>,
    summary: Summary,
    /// Realised P&L so far: equity is tracked at every candle without summing the deals.
    realized: f64,
    peak_equity: f64,
    first_time: Option<BarTime>,
    last_time: Option<BarTime>,
    last_close: f64,
    deal_open_since: Option<BarTime>,
    events: Vec<Event>,
    feed: alert_core::Timeframe,
}

impl BotBacktest {
    /// `feed`: the timeframe of the candles that will be fed (the bot's may be higher).
    pub fn new(
        bot_id: &str,
        def: BotDefinition,
        feed: alert_core::Timeframe,
    ) -> Result<Self, BacktestError> {
        let mut ids = HashMap::new();
        for role in compile::roles(&def) {
            let id = AlertId::new(&format!("bot.{bot_id}.{}", role.key()))
                .map_err(|error| BacktestError::Alert { role, error })?;
            ids.insert(role, id);
        }
        let executor = PaperExecutor::new(def.fee_pct, def.quantity_step);
        let mut bt = Self {
            def,
            bot_id: bot_id.to_owned(),
            engine: Engine::new(EngineConfig {
                feed,
                history_bars: 0,
            }),
            state: BotState::default(),
            executor,
            ids,
            summary: Summary::default(),
            realized: 0.0,
            peak_equity: 0.0,
            first_time: None,
            last_time: None,
            last_close: f64::NAN,
            deal_open_since: None,
            events: Vec::new(),
            feed,
        };
        bt.activate(Role::Entry, None, None)?;
        Ok(bt)
    }

    /// Arms `role`'s alert; the engine honours its `not_before`, as a live runner's does.
    fn activate(
        &mut self,
        role: Role,
        threshold: Option<f64>,
        not_before: Option<BarTime>,
    ) -> Result<(), BacktestError> {
        let Some(json) = compile::alert(
            &self.bot_id,
            &self.def,
            role,
            threshold.unwrap_or(0.0),
            not_before,
        ) else {
            return Err(BacktestError::Alert {
                role,
                error: "this role has no alert".into(),
            });
        };
        let mut def =
            alert_engine::parse::parse_alert(&json).map_err(|e| BacktestError::Alert {
                role,
                error: format!("{e:?}"),
            })?;
        let Some(id) = self.ids.get(&role).cloned() else {
            return Err(BacktestError::Alert {
                role,
                error: "not one of the bot's alerts".into(),
            });
        };
        def.id = Some(id.clone());
        self.engine.upsert(id, Arc::new(def))?;
        Ok(())
    }

    /// Feeds one closed candle; returns the orders it placed.
    pub fn on_candle(
        &mut self,
        candle: alert_core::Candle,
    ) -> Result<Vec<OrderRecord>, BacktestError> {
        let symbol: Symbol = self.def.pair;
        self.engine.on_candle(
            symbol,
            &CandleUpdate {
                candle,
                closed: true,
            },
            &mut self.events,
        )?;
        let end = candle.open_time.plus_millis(self.feed.duration_ms());
        self.first_time.get_or_insert(candle.open_time);
        self.last_time = Some(end);
        self.last_close = candle.close;
        self.summary.candles += 1;
        let mut orders = Vec::new();
        let events = std::mem::take(&mut self.events);
        for event in &events {
            let Event::Triggered(t) = event else { continue };
            let Some(role) = t.definition.actions.first().and_then(compile::role_of) else {
                continue;
            };
            let Some(bar) = t.bar else { continue };
            let trigger = BotTrigger {
                role,
                key: format!("{}:{}", t.alert_id, t.bar_time.millis()),
                bar_time: t.bar_time,
                fired_at: t.fired_at,
                bar,
            };
            let was_open = self.state.deal.is_some();
            match self
                .state
                .on_trigger(&self.def, &trigger, &mut self.executor)?
            {
                Outcome::Ignored(_) => {}
                Outcome::Filled { order, changes } => {
                    for change in changes {
                        match change {
                            AlertChange::Pause { role } => {
                                if let Some(id) = self.ids.get(&role) {
                                    self.engine.remove(id);
                                }
                            }
                            AlertChange::Activate {
                                role,
                                threshold,
                                from,
                            } => {
                                self.activate(role, threshold, Some(from))?;
                            }
                        }
                    }
                    self.summary.fees += order.fee;
                    self.realized += order.realized_pnl.unwrap_or(0.0);
                    self.summary.orders += 1;
                    if let Some(d) = &self.state.deal {
                        self.summary.max_capital_committed =
                            self.summary.max_capital_committed.max(d.cost);
                    }
                    match (was_open, self.state.deal.is_some()) {
                        (false, true) => self.deal_open_since = Some(t.fired_at),
                        (true, false) => {
                            if let Some(since) = self.deal_open_since.take() {
                                self.summary.time_in_deals_ms +=
                                    t.fired_at.millis() - since.millis();
                            }
                        }
                        _ => {}
                    }
                    orders.push(order);
                }
            }
        }
        self.events = events;
        self.events.clear();
        self.track_equity(candle.close);
        Ok(orders)
    }

    fn track_equity(&mut self, close: f64) {
        let unrealized = self
            .state
            .deal
            .as_ref()
            .map_or(0.0, |d| d.unrealized_pnl(close, self.def.fee_pct));
        let equity = self.realized + unrealized;
        self.peak_equity = self.peak_equity.max(equity);
        self.summary.max_drawdown = self.summary.max_drawdown.max(self.peak_equity - equity);
    }

    /// The bot's state now (its open deal, closed deals).
    pub fn state(&self) -> &BotState {
        &self.state
    }

    /// How many orders the executor actually traded (repeats of a client order id excluded).
    pub fn orders_traded(&self) -> u64 {
        self.executor.orders_placed
    }

    /// The totals so far.
    pub fn summary(&self) -> Summary {
        let mut s = self.summary.clone();
        let closed = &self.state.closed;
        s.deals_closed = closed.len();
        s.take_profits = closed.iter().filter(|c| c.exit == Role::TakeProfit).count();
        s.stop_losses = closed.iter().filter(|c| c.exit == Role::StopLoss).count();
        s.realized_pnl = self.realized;
        s.win_rate = if closed.is_empty() {
            0.0
        } else {
            closed.iter().filter(|c| c.realized_pnl > 0.0).count() as f64 / closed.len() as f64
        };
        if let (Some(since), Some(end)) = (self.deal_open_since, self.last_time) {
            s.time_in_deals_ms += end.millis() - since.millis();
        }
        if let (Some(first), Some(end)) = (self.first_time, self.last_time) {
            let span = (end.millis() - first.millis()).max(1);
            s.time_in_deals_share = s.time_in_deals_ms as f64 / span as f64;
        }
        s.open_deal_unrealized_pnl = self
            .state
            .deal
            .as_ref()
            .map(|d| d.unrealized_pnl(self.last_close, self.def.fee_pct));
        s
    }
}
