//! A bot's deals as a state machine, sans I/O: a trigger of one of the bot's alerts comes in,
//! an order goes to the executor, and out come the fill and the changes the bot's alerts need
//! (the same changes a live store applies and a backtest applies to its engine).

use alert_core::{BarTime, Timeframe};
use alert_engine::BarSnapshot;
use serde::Serialize;

use crate::definition::BotDefinition;
use crate::executor::{ExecError, Executor, Fill, MarketOrder, Quantity, Side};

/// Which of a bot's alerts fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Entry,
    /// 1-based.
    SafetyOrder(u32),
    TakeProfit,
    StopLoss,
    /// The user closed the deal at the market (no alert: `BotState::close_now`).
    Close,
}

impl Role {
    /// The role's key in the store (`alerts.bot_role`, `bot_orders.role`): `entry`, `so<n>`,
    /// `tp`, `sl`, `close`.
    pub fn key(self) -> String {
        match self {
            Self::Entry => "entry".into(),
            Self::SafetyOrder(n) => format!("so{n}"),
            Self::TakeProfit => "tp".into(),
            Self::StopLoss => "sl".into(),
            Self::Close => "close".into(),
        }
    }

    /// The exit of a deal closed by an order of the role with this key (`bot_orders.role`);
    /// `None` for buys.
    pub fn exit_of_key(key: &str) -> Option<&'static str> {
        [Self::TakeProfit, Self::StopLoss, Self::Close]
            .into_iter()
            .find(|r| r.key() == key)
            .and_then(Self::exit)
    }

    /// How a deal closed by this role's order ended (`bot_deals.exit`).
    pub fn exit(self) -> Option<&'static str> {
        match self {
            Self::TakeProfit => Some("take_profit"),
            Self::StopLoss => Some("stop_loss"),
            Self::Close => Some("closed_by_user"),
            Self::Entry | Self::SafetyOrder(_) => None,
        }
    }
}

/// What a bot's alert must become.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AlertChange {
    /// Active from `from` (data time), with this price threshold (price-level alerts).
    Activate {
        role: Role,
        threshold: Option<f64>,
        from: BarTime,
    },
    /// Paused (a safety order that filled is spent: paused for the rest of the deal).
    Pause { role: Role },
}

/// A trigger of one of the bot's alerts, as the bot needs it.
#[derive(Clone, Debug)]
pub struct BotTrigger {
    pub role: Role,
    /// The idempotency key: the trigger's id (or `alert:bar` in a backtest).
    pub key: String,
    /// Open time of the base bar it fired on.
    pub bar_time: BarTime,
    /// When it fired (data time).
    pub fired_at: BarTime,
    /// The bar as it stood.
    pub bar: BarSnapshot,
}

/// An order a trigger placed.
#[derive(Clone, Debug, Serialize)]
pub struct OrderRecord {
    pub deal: u32,
    pub role: Role,
    pub side: Side,
    pub client_order_id: String,
    pub fired_at: i64,
    pub price: f64,
    pub base_qty: f64,
    pub notional: f64,
    pub fee: f64,
    /// Average entry price of the deal after this order (buys), or at its close (sells).
    pub average_price: f64,
    /// Realised P&L of the deal, on the closing order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realized_pnl: Option<f64>,
}

/// What a trigger did.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// An order filled; apply `changes` to the bot's alerts.
    Filled {
        order: OrderRecord,
        changes: Vec<AlertChange>,
    },
    /// Nothing to do: the alert is not armed in the current state (a trigger that crossed a
    /// state change, or came twice), or the price no longer meets the current threshold.
    Ignored(&'static str),
}

/// An open deal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Deal {
    pub number: u32,
    pub opened_at: i64,
    pub entry_price: f64,
    pub base_qty: f64,
    /// Quote spent on buys (notional).
    pub cost: f64,
    pub fees: f64,
    /// Safety orders filled, by index (1-based; `filled[n-1]`).
    pub filled: Vec<bool>,
}

impl Deal {
    pub fn average_price(&self) -> f64 {
        self.cost / self.base_qty
    }

    pub fn safety_orders_filled(&self) -> usize {
        self.filled.iter().filter(|f| **f).count()
    }

    /// Value of the position at `price` minus what it cost (fees included, the closing fee
    /// estimated at `fee_pct`).
    pub fn unrealized_pnl(&self, price: f64, fee_pct: f64) -> f64 {
        let value = self.base_qty * price;
        value - value * fee_pct / 100.0 - self.cost - self.fees
    }
}

/// A closed deal's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClosedDeal {
    pub number: u32,
    pub opened_at: i64,
    pub closed_at: i64,
    pub exit: Role,
    pub safety_orders_filled: usize,
    pub cost: f64,
    pub fees: f64,
    pub realized_pnl: f64,
}

/// One bot's state: its open deal, the entry's re-arm time, and its history's totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BotState {
    pub deal: Option<Deal>,
    pub deals_opened: u32,
    pub closed: Vec<ClosedDeal>,
}

impl BotState {
    /// The take-profit price of the open deal.
    pub fn take_profit_price(&self, def: &BotDefinition) -> Option<f64> {
        let d = self.deal.as_ref()?;
        Some(d.average_price() * (1.0 + def.take_profit_pct / 100.0))
    }

    /// The stop-loss price of the open deal, if the bot has one.
    pub fn stop_loss_price(&self, def: &BotDefinition) -> Option<f64> {
        let d = self.deal.as_ref()?;
        Some(d.average_price() * (1.0 - def.stop_loss_pct? / 100.0))
    }

    /// Safety order `n`'s price in the open deal.
    pub fn safety_order_price(&self, def: &BotDefinition, n: u32) -> Option<f64> {
        let d = self.deal.as_ref()?;
        Some(def.safety_order_level(n)?.price(d.entry_price))
    }

    /// Whether `role`'s alert is armed now (what a live store's alert statuses mirror).
    pub fn armed(&self, def: &BotDefinition, role: Role) -> bool {
        match (&self.deal, role) {
            (None, Role::Entry) => true,
            (None, _) | (Some(_), Role::Entry) => false,
            (Some(d), Role::SafetyOrder(n)) => {
                n >= 1 && n <= def.max_safety_orders && !d.filled[n as usize - 1]
            }
            (Some(_), Role::TakeProfit | Role::Close) => true,
            (Some(_), Role::StopLoss) => def.stop_loss_pct.is_some(),
        }
    }

    /// Closes the open deal at the market now (a user's "close deal now"): a sell of the
    /// whole position at `price`, as if an alert had fired on bar `bar_time` at that price.
    /// `key` is the order's client order id. Ignored without an open deal.
    pub fn close_now(
        &mut self,
        def: &BotDefinition,
        key: String,
        bar_time: BarTime,
        fired_at: BarTime,
        price: f64,
        executor: &mut impl Executor,
    ) -> Result<Outcome, ExecError> {
        let trigger = BotTrigger {
            role: Role::Close,
            key,
            bar_time,
            fired_at,
            bar: BarSnapshot {
                open: price,
                high: price,
                low: price,
                close: price,
                volume: 0.0,
            },
        };
        self.on_trigger(def, &trigger, executor)
    }

    /// Carries out a trigger: checks it is armed and its price still holds, places the order,
    /// updates the deal, and says what the alerts must become.
    pub fn on_trigger(
        &mut self,
        def: &BotDefinition,
        trigger: &BotTrigger,
        executor: &mut impl Executor,
    ) -> Result<Outcome, ExecError> {
        if !self.armed(def, trigger.role) {
            return Ok(Outcome::Ignored("not armed in the bot's current state"));
        }
        let bar = &trigger.bar;
        // Price-level alerts fill at their threshold when the bar traded through it, else (a
        // gap past it) at the close; an entry fills at the close.
        let level = match trigger.role {
            Role::Entry | Role::Close => None,
            Role::SafetyOrder(n) => self.safety_order_price(def, n),
            Role::TakeProfit => self.take_profit_price(def),
            Role::StopLoss => self.stop_loss_price(def),
        };
        let reached = match (trigger.role, level) {
            (Role::Entry | Role::Close, _) => true,
            (Role::TakeProfit, Some(p)) => bar.close >= p,
            (_, Some(p)) => bar.close <= p,
            (_, None) => false,
        };
        if !reached {
            return Ok(Outcome::Ignored(
                "the price no longer meets the current threshold",
            ));
        }
        let price = match level {
            Some(p) if bar.low <= p && p <= bar.high => p,
            _ => bar.close,
        };
        let (side, quantity) = match trigger.role {
            Role::Entry => (Side::Buy, Quantity::Quote(def.base_order)),
            Role::SafetyOrder(n) => match def.safety_order_level(n) {
                Some(l) => (Side::Buy, Quantity::Quote(l.size)),
                None => return Ok(Outcome::Ignored("no such safety order")),
            },
            Role::TakeProfit | Role::StopLoss | Role::Close => match &self.deal {
                Some(d) => (Side::Sell, Quantity::Base(d.base_qty)),
                None => return Ok(Outcome::Ignored("no open deal")),
            },
        };
        let order = MarketOrder {
            symbol: def.pair,
            side,
            quantity,
            client_order_id: trigger.key.clone(),
            reference_price: price,
        };
        let fill = executor.place(&order)?;
        Ok(self.apply(def, trigger, side, &order.client_order_id, fill))
    }

    fn apply(
        &mut self,
        def: &BotDefinition,
        trigger: &BotTrigger,
        side: Side,
        client_order_id: &str,
        fill: Fill,
    ) -> Outcome {
        let now = trigger.fired_at;
        let average_before = self.deal.as_ref().map(Deal::average_price);
        let mut changes = Vec::new();
        let mut realized = None;
        match trigger.role {
            Role::Entry => {
                self.deals_opened += 1;
                self.deal = Some(Deal {
                    number: self.deals_opened,
                    opened_at: trigger.fired_at.millis(),
                    entry_price: fill.price,
                    base_qty: fill.base_qty,
                    cost: fill.notional,
                    fees: fill.fee,
                    filled: vec![false; def.max_safety_orders as usize],
                });
                changes.push(AlertChange::Pause { role: Role::Entry });
                for n in 1..=def.max_safety_orders {
                    changes.push(AlertChange::Activate {
                        role: Role::SafetyOrder(n),
                        threshold: self.safety_order_price(def, n),
                        from: now,
                    });
                }
                self.exits(def, now, &mut changes);
            }
            Role::SafetyOrder(n) => {
                if let Some(d) = self.deal.as_mut() {
                    d.base_qty += fill.base_qty;
                    d.cost += fill.notional;
                    d.fees += fill.fee;
                    if let Some(f) = (n as usize)
                        .checked_sub(1)
                        .and_then(|i| d.filled.get_mut(i))
                    {
                        *f = true;
                    }
                }
                changes.push(AlertChange::Pause {
                    role: Role::SafetyOrder(n),
                });
                self.exits(def, now, &mut changes);
            }
            Role::TakeProfit | Role::StopLoss | Role::Close => {
                if let Some(d) = self.deal.take() {
                    let pnl = fill.notional - fill.fee - d.cost - d.fees;
                    realized = Some(pnl);
                    self.closed.push(ClosedDeal {
                        number: d.number,
                        opened_at: d.opened_at,
                        closed_at: now.millis(),
                        exit: trigger.role,
                        safety_orders_filled: d.safety_orders_filled(),
                        cost: d.cost,
                        fees: d.fees + fill.fee,
                        realized_pnl: pnl,
                    });
                    for (i, filled) in d.filled.iter().enumerate() {
                        if !filled {
                            changes.push(AlertChange::Pause {
                                role: Role::SafetyOrder(i as u32 + 1),
                            });
                        }
                    }
                }
                changes.push(AlertChange::Pause {
                    role: Role::TakeProfit,
                });
                if def.stop_loss_pct.is_some() {
                    changes.push(AlertChange::Pause {
                        role: Role::StopLoss,
                    });
                }
                changes.push(AlertChange::Activate {
                    role: Role::Entry,
                    threshold: None,
                    from: rearm_time(def.timeframe, trigger.bar_time, def.cooldown_bars),
                });
            }
        }
        let average_price = match &self.deal {
            Some(d) => d.average_price(),
            None => average_before.unwrap_or(fill.price),
        };
        Outcome::Filled {
            order: OrderRecord {
                deal: self.deal.as_ref().map_or(self.deals_opened, |d| d.number),
                role: trigger.role,
                side,
                client_order_id: client_order_id.to_owned(),
                fired_at: now.millis(),
                price: fill.price,
                base_qty: fill.base_qty,
                notional: fill.notional,
                fee: fill.fee,
                average_price,
                realized_pnl: realized,
            },
            changes,
        }
    }

    /// Take profit (and stop loss) at the deal's current average price.
    fn exits(&self, def: &BotDefinition, now: BarTime, changes: &mut Vec<AlertChange>) {
        changes.push(AlertChange::Activate {
            role: Role::TakeProfit,
            threshold: self.take_profit_price(def),
            from: now,
        });
        if def.stop_loss_pct.is_some() {
            changes.push(AlertChange::Activate {
                role: Role::StopLoss,
                threshold: self.stop_loss_price(def),
                from: now,
            });
        }
    }
}

/// When the entry alert re-arms after a deal closed on the base bar opening at `closed_bar`:
/// after the close of bar `closed_bar + cooldown_bars` — data time strictly past it, so a
/// cooldown of 0 allows an entry from the next bar on, never on the bar that closed the deal.
pub fn rearm_time(tf: Timeframe, closed_bar: BarTime, cooldown_bars: u32) -> BarTime {
    let next = tf
        .bar_open(closed_bar)
        .plus_millis(tf.duration_ms() * (i64::from(cooldown_bars) + 1));
    next.plus_millis(1)
}
