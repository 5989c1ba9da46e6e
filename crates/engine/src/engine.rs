//! The engine's public face: alerts in, candle updates in, events out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use alert_core::{BarTime, CandleUpdate, Symbol, Timeframe};
use serde::{Deserialize, Serialize};

use crate::book::SymbolBook;
use crate::compile::AlertState;
use crate::definition::{AlertDefinition, AlertId};
use crate::events::Event;

/// Engine settings.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// The timeframe symbols are fed with unless [`Engine::set_feed`] says otherwise; every
    /// other timeframe is built from it.
    pub feed: Timeframe,
    /// Closed bars kept per (symbol, timeframe), from which new indicators warm up.
    pub history_bars: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            feed: Timeframe::M1,
            history_bars: 300,
        }
    }
}

/// An alert the engine cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error(
        "alert {alert}: timeframe {timeframe} cannot be built from the {feed} candles this symbol is fed with: expected a multiple of {feed}"
    )]
    Timeframe {
        alert: AlertId,
        timeframe: Timeframe,
        feed: Timeframe,
    },
    #[error("symbol {symbol} already has data on {current}: its feed cannot change to {requested}")]
    FeedInUse {
        symbol: Symbol,
        current: Timeframe,
        requested: Timeframe,
    },
}

/// A candle update the engine refused; nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("{symbol} candle at {time}: {reason}")]
    BadCandle {
        symbol: Symbol,
        time: BarTime,
        reason: String,
    },
    #[error("{symbol} candle at {time} is not aligned to the {feed} feed")]
    Misaligned {
        symbol: Symbol,
        time: BarTime,
        feed: Timeframe,
    },
    #[error(
        "{symbol} candle at {time} is not after the bar at {last_closed}: stale or duplicate, ignored"
    )]
    Stale {
        symbol: Symbol,
        time: BarTime,
        last_closed: BarTime,
    },
}

/// What the engine needs to resume without firing twice: per alert, the last bar it fired on
/// and whether a `once` alert is spent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    pub alerts: BTreeMap<AlertId, AlertState>,
}

/// The sans-I/O engine.
pub struct Engine {
    config: EngineConfig,
    feeds: HashMap<Symbol, Timeframe>,
    books: HashMap<Symbol, SymbolBook>,
    /// Which symbol each alert is on, as an index into `symbols` (small entries: a million
    /// alerts keep this map compact).
    index: HashMap<AlertId, u32>,
    symbols: Vec<Symbol>,
    symbol_numbers: HashMap<Symbol, u32>,
    /// Imported state for alerts not registered yet.
    pending: HashMap<AlertId, AlertState>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            feeds: HashMap::new(),
            books: HashMap::new(),
            index: HashMap::new(),
            symbols: Vec::new(),
            symbol_numbers: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Sets the timeframe a symbol is fed with, before it has data.
    pub fn set_feed(&mut self, symbol: Symbol, feed: Timeframe) -> Result<(), EngineError> {
        if let Some(book) = self.books.get(&symbol) {
            if book.feed == feed {
                return Ok(());
            }
            if book.has_data() || !book.alerts.is_empty() {
                return Err(EngineError::FeedInUse {
                    symbol,
                    current: book.feed,
                    requested: feed,
                });
            }
            self.books.remove(&symbol);
        }
        self.feeds.insert(symbol, feed);
        Ok(())
    }

    fn book(&mut self, symbol: Symbol) -> &mut SymbolBook {
        let feed = self.feeds.get(&symbol).copied().unwrap_or(self.config.feed);
        let history = self.config.history_bars;
        self.books
            .entry(symbol)
            .or_insert_with(|| SymbolBook::new(symbol, feed, history))
    }

    /// Adds or replaces an alert. A replaced alert keeps the bar it last fired on (so an edit
    /// cannot make it fire twice on one bar); a `once` alert stays spent only if its
    /// definition is unchanged.
    pub fn upsert(&mut self, id: AlertId, def: Arc<AlertDefinition>) -> Result<(), EngineError> {
        self.upsert_active_from(id, def, BarTime::from_millis(i64::MIN))
    }

    /// [`Engine::upsert`], for an alert that must not evaluate data before `from` (a live
    /// runner passes the time the alert was saved, so the history a source sends for warm-up
    /// fires nothing — and spends no `once` alert — while it still warms the indicators).
    pub fn upsert_active_from(
        &mut self,
        id: AlertId,
        def: Arc<AlertDefinition>,
        from: BarTime,
    ) -> Result<(), EngineError> {
        let mut state = self.pending.remove(&id).unwrap_or_default();
        if let Some(old) = self.remove_compiled(&id) {
            state = AlertState {
                last_fired_bar: old.state.last_fired_bar,
                spent: old.state.spent && *old.def == *def,
                expired: old.state.expired && old.def.expires_at == def.expires_at,
            };
        }
        let symbol = def.symbol;
        let from = def
            .not_before
            .map_or(from, |not_before| from.max(not_before));
        let result = self
            .book(symbol)
            .add_alert(id.clone(), def, state, from.millis());
        if result.is_ok() {
            let number = match self.symbol_numbers.get(&symbol) {
                Some(n) => *n,
                None => {
                    self.symbols.push(symbol);
                    let n = (self.symbols.len() - 1) as u32;
                    self.symbol_numbers.insert(symbol, n);
                    n
                }
            };
            self.index.insert(id, number);
        }
        result
    }

    fn remove_compiled(&mut self, id: &AlertId) -> Option<crate::compile::CompiledAlert> {
        let number = self.index.remove(id)?;
        let symbol = self.symbols.get(number as usize)?;
        self.books.get_mut(symbol)?.remove_alert(id)
    }

    /// Removes an alert; indicators no other alert reads are dropped. Returns whether it existed.
    pub fn remove(&mut self, id: &AlertId) -> bool {
        self.remove_compiled(id).is_some()
    }

    /// Feeds one candle update of `symbol` (in its feed timeframe) and evaluates the alerts on
    /// that symbol; what fired is appended to `out`. A refused update changes nothing.
    pub fn on_candle(
        &mut self,
        symbol: Symbol,
        update: &CandleUpdate,
        out: &mut Vec<Event>,
    ) -> Result<(), DataError> {
        self.book(symbol).on_update(update, out)
    }

    /// Alert evaluations performed so far (an alert tested at one evaluation point).
    pub fn evaluations(&self) -> u64 {
        self.books.values().map(|b| b.evaluations).sum()
    }

    pub fn alert_count(&self) -> usize {
        self.index.len()
    }

    /// Alerts registered on `symbol`.
    pub fn alerts_on(&self, symbol: Symbol) -> usize {
        self.books.get(&symbol).map_or(0, |b| b.alerts.len())
    }

    /// Distinct indicator instances kept for `symbol` (each shared by all alerts reading it).
    pub fn indicator_count(&self, symbol: Symbol) -> usize {
        self.books
            .get(&symbol)
            .map_or(0, SymbolBook::indicator_count)
    }

    /// The closed bars kept for (symbol, timeframe), oldest first, then the current bar if it
    /// is in progress (flagged `true`).
    pub fn candles(&self, symbol: Symbol, tf: Timeframe) -> Vec<(alert_core::Candle, bool)> {
        let Some(series) = self.books.get(&symbol).and_then(|b| b.series(tf)) else {
            return Vec::new();
        };
        let mut out: Vec<_> = series.history().iter().map(|c| (*c, false)).collect();
        if let Some(c) = series.current.filter(|_| series.in_progress) {
            out.push((c, true));
        }
        out
    }

    /// The current values of an indicator that some alert reads on (symbol, timeframe).
    pub fn indicator_values(
        &self,
        symbol: Symbol,
        tf: Timeframe,
        spec: &alert_indicators::IndicatorSpec,
    ) -> Option<alert_indicators::Components> {
        self.books.get(&symbol)?.series(tf)?.shared_values(spec)
    }

    /// Evaluates `def` on the data as it stands, without registering it, firing it or changing
    /// any state: every condition's operand values and whether it holds, and whether the alert's
    /// conditions hold (see [`crate::DryRun`]). `def` need not be registered.
    pub fn dry_run(&self, def: &AlertDefinition) -> Result<crate::DryRun, crate::DryRunError> {
        let book = self.books.get(&def.symbol);
        let feed = book
            .map(|b| b.feed)
            .or_else(|| self.feeds.get(&def.symbol).copied())
            .unwrap_or(self.config.feed);
        crate::dry_run::evaluate(book, feed, def)
    }

    /// The runtime state of one alert.
    pub fn alert_state(&self, id: &AlertId) -> Option<AlertState> {
        let book = self
            .books
            .get(self.symbols.get(*self.index.get(id)? as usize)?)?;
        book.alerts.iter().find(|a| &a.id == id).map(|a| a.state)
    }

    /// What must survive a restart.
    pub fn export_state(&self) -> EngineState {
        let mut alerts: BTreeMap<AlertId, AlertState> = self
            .pending
            .iter()
            .map(|(id, s)| (id.clone(), *s))
            .collect();
        for book in self.books.values() {
            for a in &book.alerts {
                if a.state != AlertState::default() {
                    alerts.insert(a.id.clone(), a.state);
                }
            }
        }
        EngineState { alerts }
    }

    /// Restores exported state: applied now to registered alerts, and kept for alerts
    /// registered later.
    pub fn import_state(&mut self, state: EngineState) {
        for (id, s) in state.alerts {
            let symbol = self
                .index
                .get(&id)
                .and_then(|n| self.symbols.get(*n as usize));
            let applied = symbol
                .and_then(|sym| self.books.get_mut(sym))
                .and_then(|book| {
                    book.alerts.iter_mut().find(|a| a.id == id).map(|a| {
                        a.state = s;
                    })
                });
            if applied.is_none() {
                self.pending.insert(id, s);
            }
        }
    }
}
