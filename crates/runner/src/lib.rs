//! The live runner: market data in, triggers out.
//!
//! [`Runner`] loads the active alerts from the store (streamed), restores what the engine must
//! remember (the last bar each alert fired on), tells the market data source which symbols it
//! needs and how much history, then loops: candle updates go through the engine in rounds, the
//! triggers a round produces are recorded in the store in one batch (trigger, notification and
//! webhook outbox rows in one transaction, at most once per (alert, bar)) by a recording task
//! that works while the next round is evaluated (`record`), and the store's change feed is
//! polled every `poll` so created, changed, paused and deleted alerts reach the engine.
//!
//! A store outage (PostgreSQL restarting, a dropped connection) does not stop the runner: the
//! round's triggers are kept and recording is retried with backoff until it succeeds (the
//! runner waits once a few rounds are queued, and the source meanwhile: its channel fills),
//! or, once shutdown was requested, for a grace period after which the runner stops with the
//! error and logs what it could not record.

mod convert;
mod metrics_names;
mod query;
mod record;
pub mod shard;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alert_core::{BarTime, Shard, Symbol, Timeframe};
use alert_engine::{AlertDefinition, AlertId, Engine, EngineConfig, EngineState, Event, Series};
use alert_marketdata::{SourceEvent, Wanted};
use alert_store::{AlertRow, AlertStatus, Store, StoreError};
use chrono::{DateTime, Utc};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The market data crate, whose `SourceEvent`s [`Runner::run`] reads (for crates that feed a
/// runner themselves).
pub use alert_marketdata as marketdata;
pub use convert::trigger_to_record;
pub use metrics_names::*;
pub use query::{Bar, IndicatorPoint, IndicatorSeries, MAX_LIMIT, MarketHandle, QueryError};

/// Runner settings.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// How often the store's change feed is polled (`ALERT_RUNNER_POLL_MS`).
    pub poll: Duration,
    /// The timeframe the market data source sends.
    pub feed: Timeframe,
    /// Closed bars kept per (symbol, timeframe) for warming up new alerts.
    pub history_bars: usize,
    /// Most candle updates processed before recording their triggers.
    pub max_batch: usize,
    /// An evaluation slower than this is logged with its symbol (the seeds' 200 ms).
    pub slow_evaluation: Duration,
    /// An alert evaluates only data newer than itself (`Engine::upsert_active_from` with the
    /// time it was saved), so the history a live source sends for warm-up fires nothing. Off
    /// for replays, whose data is history by design.
    pub live_only: bool,
    /// `alert_runner_alerts_active_by_symbol` has a series for at most this many symbols (the
    /// most alerted); the others are summed under `symbol="other"`.
    pub alerts_by_symbol_top: usize,
    /// Triggers (and expiries) evaluated but not yet recorded, at most: beyond, the runner
    /// waits for the recorder (a round larger than this waits until the queue is empty).
    pub record_queue: usize,
    /// `--shard I/N`: only the alerts and candles of the symbols this shard owns
    /// ([`Shard::owns`]); `None`: every symbol.
    pub shard: Option<Shard>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(1000),
            feed: Timeframe::M1,
            history_bars: 500,
            max_batch: 512,
            slow_evaluation: Duration::from_millis(200),
            live_only: true,
            alerts_by_symbol_top: 50,
            record_queue: 16_384,
            shard: None,
        }
    }
}

/// The first wait before a failed store write is tried again; doubled after each failure up
/// to [`STORE_RETRY_MAX`].
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);
/// Once shutdown was requested, how long failed writes are still retried before the runner
/// gives up on them (a supervisor's stop timeout is usually longer).
const SHUTDOWN_STORE_GRACE: Duration = Duration::from_secs(10);

/// Whether a store error may pass by itself (the database restarting, a dropped connection, a
/// pool out of connections), so the write is worth retrying. The others (a limit, a conflict,
/// a corrupt row, a configuration error) would fail the same way again.
fn transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(_))
}

/// Runs a store write until it succeeds: transient errors are logged, counted in
/// [`ERRORS`]`{kind="store"}` and retried with a doubling backoff; after `cancel`, for
/// [`SHUTDOWN_STORE_GRACE`] more, then the last error is returned.
async fn retry_store<T, F, Fut>(
    what: &'static str,
    cancel: &CancellationToken,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut wait = STORE_RETRY_FIRST;
    let mut failures = 0u32;
    let mut deadline: Option<Instant> = None;
    loop {
        let e = match op().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(what, failures, "store reachable again: written");
                }
                return Ok(v);
            }
            Err(e) if !transient(&e) => return Err(e),
            Err(e) => e,
        };
        failures += 1;
        metrics::counter!(ERRORS, "kind" => "store").increment(1);
        if cancel.is_cancelled() {
            let until = *deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_STORE_GRACE);
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::error!(what, failures, error = %e, "store still failing at shutdown: giving up");
                return Err(e);
            }
            wait = wait.min(left);
        }
        tracing::warn!(
            what, failures, error = %e, retry_in_ms = wait.as_millis() as u64,
            "store write failed; keeping it and retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Shutdown: one more try at once, then the grace applies.
            () = cancel.cancelled(), if deadline.is_none() => {}
        }
        wait = (wait * 2).min(STORE_RETRY_MAX);
    }
}

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The recording task ended unexpectedly (it panicked, or stopped early).
    #[error("the trigger recorder stopped: {0}")]
    Recorder(String),
}

/// What the runner knows about one loaded alert.
struct Loaded {
    updated_at: DateTime<Utc>,
    /// Closed feed bars it needs at start (computed once, at load).
    warmup: usize,
    def: Arc<AlertDefinition>,
}

/// The alerts of one symbol, as [`Runner::publish_wanted`] and the gauges need them: warm-up
/// length → alerts needing it (the symbol needs the largest; their sum is its alert count).
type SymbolAlerts = BTreeMap<usize, usize>;

/// How far back each read of alert changes reaches before the point it resumes from: a
/// writer's transaction may commit this long after the time it stamped on its rows (and
/// processes' clocks may differ by as much).
const CHANGE_OVERLAP: Duration = Duration::from_secs(5);

/// How long after a change notification its read waits, gathering the ones that follow.
const CHANGE_COALESCE: Duration = Duration::from_millis(50);

/// Shared readiness: true once every wanted symbol is warm.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets it (the runner does; a sharded process clears it while it stands by).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// Counts since start, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunnerStats {
    pub candles: u64,
    pub rejected_candles: u64,
    pub triggers_recorded: u64,
    pub duplicates: u64,
    /// Changes (alert versions and deletions) read while polling for changes.
    pub changes_read: u64,
    /// Reads of alert changes (polls, notifications, wake-ups).
    pub change_reads: u64,
}

pub struct Runner {
    store: Store,
    engine: Engine,
    config: RunnerConfig,
    alerts: HashMap<Uuid, Loaded>,
    /// Per symbol: how many alerts, and how many need each warm-up length — kept as alerts
    /// come and go, so an alert change costs O(1) and the wanted set and gauges O(symbols)
    /// (recounting every alert on each change stalled a runner of 200,000 alerts).
    per_symbol: HashMap<Symbol, SymbolAlerts>,
    wanted: watch::Sender<Wanted>,
    warm: BTreeMap<Symbol, bool>,
    watermark: DateTime<Utc>,
    /// When the last successful read of changes (or the initial load) started: every change
    /// stamped more than [`CHANGE_OVERLAP`] before it was visible to that read, so the next
    /// one need not go back further (else a bulk import is re-read at every poll until a
    /// newer change moves the watermark).
    last_read: DateTime<Utc>,
    readiness: Readiness,
    stats: RunnerStats,
    by_symbol: metrics_names::ActiveBySymbol,
    outlets: Outlets,
    /// Questions from [`MarketHandle`]s, once one was made.
    queries: Option<query::Queries>,
}

/// Where recorded triggers are announced in-process, besides the store.
#[derive(Clone, Debug, Default)]
pub struct Outlets {
    /// Live clients (SSE/WebSocket): each new trigger and notification, to its user.
    pub live: Option<alert_dispatch::LiveHub>,
    /// The in-process dispatcher, woken when deliveries were queued so it sends them at once
    /// rather than at its next poll.
    pub dispatcher: Option<alert_dispatch::Waker>,
    /// Woken by in-process writers of alert changes (a bot's fill arming its next orders), so
    /// the runner reads them at once rather than at its next poll (PostgreSQL also notifies;
    /// SQLite cannot).
    pub changes: Option<alert_dispatch::Waker>,
}

/// The closed bars of the feed timeframe an alert needs to be warm.
fn warmup_needed(def: &AlertDefinition, feed: Timeframe) -> usize {
    let mut bars = 2usize;
    for c in def.leaves() {
        for o in c.test.operands().into_iter().chain([c.lhs]) {
            let per_bar = (o.timeframe.duration_ms() / feed.duration_ms()).max(1) as usize;
            let n = match o.series {
                Series::Indicator { spec, .. } => spec.warmup_bars() + 1,
                Series::Price(_) => 1,
            } + c.test.history_needed();
            bars = bars.max(n.saturating_mul(per_bar));
        }
    }
    bars.min(100_000)
}

impl Runner {
    /// Announces recorded triggers to live clients and wakes the dispatcher.
    pub fn with_outlets(mut self, outlets: Outlets) -> Self {
        self.outlets = outlets;
        self
    }

    /// Reports readiness through `readiness` (shared with a `/readyz` that outlives this
    /// runner: a sharded process runs one runner per term of ownership).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        readiness.set(self.readiness.is_ready());
        self.readiness = readiness;
        self
    }

    /// Loads the active alerts and the engine state from the store.
    pub async fn start(
        store: Store,
        config: RunnerConfig,
    ) -> Result<(Self, watch::Receiver<Wanted>, Readiness), RunnerError> {
        let (wanted, wanted_rx) = watch::channel(Wanted::new());
        let readiness = Readiness::default();
        let engine = Engine::new(EngineConfig {
            feed: config.feed,
            history_bars: config.history_bars,
        });
        let mut runner = Self {
            store,
            engine,
            config,
            alerts: HashMap::new(),
            per_symbol: HashMap::new(),
            wanted,
            warm: BTreeMap::new(),
            watermark: DateTime::<Utc>::MIN_UTC,
            last_read: DateTime::<Utc>::MIN_UTC,
            readiness: readiness.clone(),
            stats: RunnerStats::default(),
            by_symbol: Default::default(),
            outlets: Outlets::default(),
            queries: None,
        };
        // What must survive a restart: the last bar each alert fired on.
        let mut state = EngineState::default();
        for (id, bar) in runner.store.last_fired_bars().await? {
            if let Ok(id) = AlertId::new(&id.to_string()) {
                state.alerts.insert(
                    id,
                    alert_engine::AlertState {
                        last_fired_bar: Some(BarTime::from_millis(bar.timestamp_millis())),
                        ..Default::default()
                    },
                );
            }
        }
        runner.engine.import_state(state);
        runner.last_read = Utc::now();
        let started = Instant::now();
        let mut rows = Vec::new();
        {
            let store = runner.store.clone();
            // A shard drops the other shards' rows as they stream in, before decoding them.
            let shard = runner.config.shard;
            let mut stream = store.stream_active_alerts_where(move |symbol| {
                shard.is_none_or(|shard| shard.owns_name(symbol))
            });
            while let Some(row) = stream.next().await {
                rows.push(row?);
                if rows.len() >= 1024 {
                    for r in rows.drain(..) {
                        runner.load(r);
                    }
                }
            }
        }
        for r in rows {
            runner.load(r);
        }
        runner.watermark = runner
            .alerts
            .values()
            .map(|a| a.updated_at)
            .max()
            .unwrap_or_else(Utc::now);
        runner.publish_wanted();
        tracing::info!(
            alerts = runner.alerts.len(),
            symbols = runner.per_symbol.len(),
            shard = runner.config.shard.map(|s| s.to_string()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "alerts loaded"
        );
        Ok((runner, wanted_rx, readiness))
    }

    /// Registers (or replaces: the engine keeps the bar it last fired on) a stored alert; an
    /// inactive, unparsable or refused one is removed and logged.
    fn load(&mut self, row: AlertRow) {
        let id = row.id;
        // Another shard's (its symbol may have been changed away from this shard's).
        if row.status != AlertStatus::Active || !self.owns_name(&row.symbol) {
            self.unload(id);
            return;
        }
        let def = match alert_engine::parse::parse_alert(&row.definition) {
            Ok(mut def) => {
                def.id = AlertId::new(&id.to_string()).ok();
                def.user_id = Some(row.user_id.to_string());
                def
            }
            Err(e) => {
                tracing::warn!(alert = %id, error = %e, "stored alert does not parse; skipped");
                metrics::counter!(ERRORS, "kind" => "bad_alert").increment(1);
                self.unload(id);
                return;
            }
        };
        let Ok(engine_id) = AlertId::new(&id.to_string()) else {
            return;
        };
        let def = Arc::new(def);
        // With a live source, an alert evaluates only data newer than the alert itself: the
        // warm-up history fires nothing.
        let from = if self.config.live_only {
            BarTime::from_millis(row.updated_at.timestamp_millis())
        } else {
            BarTime::from_millis(i64::MIN)
        };
        match self
            .engine
            .upsert_active_from(engine_id, Arc::clone(&def), from)
        {
            Ok(()) => {
                let warmup =
                    warmup_needed(&def, self.config.feed).max(self.config.history_bars.min(1_000));
                self.insert_loaded(
                    id,
                    Loaded {
                        updated_at: row.updated_at,
                        warmup,
                        def,
                    },
                );
            }
            Err(e) => {
                // The engine dropped any previous version of it.
                self.remove_loaded(id);
                tracing::warn!(alert = %id, error = %e, "alert refused by the engine; skipped");
                metrics::counter!(ERRORS, "kind" => "bad_alert").increment(1);
            }
        }
    }

    fn unload(&mut self, id: Uuid) {
        if self.remove_loaded(id).is_some()
            && let Ok(engine_id) = AlertId::new(&id.to_string())
        {
            self.engine.remove(&engine_id);
        }
    }

    fn insert_loaded(&mut self, id: Uuid, loaded: Loaded) {
        *self
            .per_symbol
            .entry(loaded.def.symbol)
            .or_default()
            .entry(loaded.warmup)
            .or_insert(0) += 1;
        if let Some(previous) = self.alerts.insert(id, loaded) {
            self.forget(&previous);
        }
    }

    fn remove_loaded(&mut self, id: Uuid) -> Option<Loaded> {
        let removed = self.alerts.remove(&id)?;
        self.forget(&removed);
        Some(removed)
    }

    /// Takes a loaded alert out of its symbol's counts.
    fn forget(&mut self, loaded: &Loaded) {
        let symbol = loaded.def.symbol;
        let Some(warmups) = self.per_symbol.get_mut(&symbol) else {
            return;
        };
        if let Some(n) = warmups.get_mut(&loaded.warmup) {
            *n -= 1;
            if *n == 0 {
                warmups.remove(&loaded.warmup);
            }
        }
        if warmups.is_empty() {
            self.per_symbol.remove(&symbol);
        }
    }

    /// Whether this runner handles the symbol named `name` (every symbol without a shard).
    fn owns_name(&self, name: &str) -> bool {
        self.config.shard.is_none_or(|shard| shard.owns_name(name))
    }

    fn owns(&self, symbol: &Symbol) -> bool {
        self.config.shard.is_none_or(|shard| shard.owns(symbol))
    }

    /// Tells the source which symbols are needed, with how much history.
    fn publish_wanted(&mut self) {
        let mut wanted = Wanted::new();
        for (symbol, warmups) in &self.per_symbol {
            if let Some((warmup, _)) = warmups.last_key_value() {
                wanted.insert(*symbol, *warmup);
            }
        }
        self.publish_alert_gauges();
        for s in wanted.keys() {
            self.warm.entry(*s).or_insert(false);
        }
        self.wanted.send_if_modified(|current| {
            if *current == wanted {
                false
            } else {
                *current = wanted;
                true
            }
        });
        self.update_readiness();
    }

    /// Active alerts, total and per symbol (bounded); on alert changes, never per candle.
    fn publish_alert_gauges(&mut self) {
        metrics::gauge!(ALERTS_ACTIVE).set(self.alerts.len() as f64);
        let counts: HashMap<Symbol, usize> = self
            .per_symbol
            .iter()
            .map(|(symbol, warmups)| (*symbol, warmups.values().sum()))
            .collect();
        self.by_symbol
            .publish(&counts, self.config.alerts_by_symbol_top);
    }

    /// Ready once every wanted symbol has reported its warm-up done.
    fn update_readiness(&self) {
        let ready = self
            .wanted
            .borrow()
            .keys()
            .all(|s| self.warm.get(s).copied().unwrap_or(false));
        self.readiness.set(ready);
    }

    /// Applies the store's changes since the last poll.
    pub async fn poll_changes(&mut self) -> Result<usize, RunnerError> {
        let read_at = Utc::now();
        let alerts = &self.alerts;
        let shard = self.config.shard;
        // Only rows this runner does not hold at that version (or holds but are no longer
        // active) are read whole: each of those is applied. A shard reads another shard's
        // alert only when it holds it (its symbol was changed away: it is unloaded).
        let changes = self
            .store
            .alert_changes_where(
                self.watermark.max(self.last_read),
                CHANGE_OVERLAP,
                |id, updated_at, status, symbol| match alerts.get(&id) {
                    Some(held) => held.updated_at != updated_at || status != AlertStatus::Active,
                    None => {
                        status == AlertStatus::Active
                            && shard.is_none_or(|shard| shard.owns_name(symbol))
                    }
                },
            )
            .await?;
        self.stats.changes_read += changes.seen as u64;
        self.stats.change_reads += 1;
        let mut applied = changes.changed.len();
        for row in changes.changed {
            self.load(row);
        }
        for id in changes.deleted {
            if self.alerts.contains_key(&id) {
                applied += 1;
                self.unload(id);
            }
        }
        if let Some(w) = changes.watermark {
            self.watermark = self.watermark.max(w);
        }
        self.last_read = self.last_read.max(read_at);
        if applied > 0 {
            self.publish_wanted();
            tracing::debug!(applied, "alert changes applied");
        }
        Ok(applied)
    }

    pub fn stats(&self) -> RunnerStats {
        self.stats
    }

    pub fn alert_count(&self) -> usize {
        self.alerts.len()
    }

    /// Runs until `cancel` (then drains what was received and records it) or until the source
    /// ends.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceEvent>,
        cancel: CancellationToken,
    ) -> Result<RunnerStats, RunnerError> {
        let mut poll = tokio::time::interval(self.config.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(self.config.max_batch);
        // PostgreSQL tells us of changes at once; SQLite is polled only.
        let mut notified = match self.store.listen_alert_changes().await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN for alert changes failed; polling only");
                None
            }
        };
        // Market data questions: answered after each batch, and at once when idle.
        let mut queries = self.queries.take().map(|q| q.rx);
        let changes = self.outlets.changes.clone();
        // LISTEN ends when its connection does (the database restarted): polling covers the
        // gap and each poll tick tries to listen again.
        let relisten = notified.is_some();
        // Notifications (and wake-ups) only mark changes as due; one read serves all that arrived within
        // CHANGE_COALESCE (each `once` alert that fires notifies: thousands per bar at scale,
        // and one read per notification starved the candles).
        let mut changes_due: Option<tokio::time::Instant> = None;
        let due_soon = || tokio::time::Instant::now() + CHANGE_COALESCE;
        // Recording runs beside evaluation (see `record`): rounds go to it in order.
        let (rounds, rounds_rx) = mpsc::unbounded_channel();
        let room = Arc::new(tokio::sync::Semaphore::new(self.config.record_queue.max(1)));
        let mut recorder = tokio::spawn(
            record::Recorder::new(self.store.clone(), self.outlets.clone())
                .run(rounds_rx, cancel.clone()),
        );
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                // It ends by itself only on an error it could not retry away.
                joined = &mut recorder => return Err(recorder_failure(joined)),
                note = async {
                    match notified.as_mut() {
                        Some(stream) => stream.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if note.is_none() {
                        tracing::warn!("alert change notifications lost; polling until LISTEN works again");
                        notified = None;
                    } else {
                        // Take every notification already here: they ask for one read.
                        if let Some(stream) = notified.as_mut() {
                            while let Some(Some(())) = stream.next().now_or_never() {}
                        }
                        changes_due.get_or_insert_with(due_soon);
                    }
                }
                received = events.recv_many(&mut batch, self.config.max_batch) => {
                    if received == 0 {
                        break; // the source ended
                    }
                    let round = Instant::now();
                    if self.process(&mut batch, round, &rounds, &room).await.is_err() {
                        return Err(recorder_failure(recorder.await));
                    }
                    metrics::histogram!(ROUND_SECONDS).record(round.elapsed().as_secs_f64());
                    query::answer_waiting(&self.engine, &mut queries);
                }
                () = async {
                    match changes_due {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                } => {
                    changes_due = None;
                    if let Err(e) = self.poll_changes().await {
                        tracing::error!(error = %e, "reading alert changes failed");
                    }
                }
                () = async {
                    match &changes {
                        Some(waker) => waker.notified().await,
                        None => std::future::pending().await,
                    }
                } => {
                    changes_due.get_or_insert_with(due_soon);
                }
                question = query::next(&mut queries) => match question {
                    Some(q) => query::answer(&self.engine, q),
                    None => queries = None,
                },
                _ = poll.tick() => {
                    if let Err(e) = self.poll_changes().await {
                        tracing::error!(error = %e, "polling alert changes failed; retrying next tick");
                        metrics::counter!(ERRORS, "kind" => "store").increment(1);
                    } else if relisten && notified.is_none() {
                        match self.store.listen_alert_changes().await {
                            Ok(stream) => {
                                if stream.is_some() {
                                    tracing::info!("listening for alert changes again");
                                }
                                notified = stream;
                                // What changed between the old listener's end and this one.
                                if let Err(e) = self.poll_changes().await {
                                    tracing::error!(error = %e, "reading alert changes failed");
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "LISTEN failed again; polling"),
                        }
                    }
                }
            }
        }
        // Shutdown: evaluate what was already received and record it.
        events.close();
        while events.recv_many(&mut batch, self.config.max_batch).await > 0 {
            if self
                .process(&mut batch, Instant::now(), &rounds, &room)
                .await
                .is_err()
            {
                return Err(recorder_failure(recorder.await));
            }
        }
        drop(rounds);
        let recorded = match recorder.await {
            Ok(result) => result?,
            Err(e) => return Err(RunnerError::Recorder(e.to_string())),
        };
        self.stats.triggers_recorded += recorded.triggers_recorded;
        self.stats.duplicates += recorded.duplicates;
        tracing::info!(?self.stats, "runner stopped");
        Ok(self.stats)
    }

    /// Feeds a batch of source events through the engine and hands the round's triggers and
    /// expiries to the recorder (waiting for room when `record_queue` of them are not yet
    /// recorded). Fails only when the recorder has stopped.
    async fn process(
        &mut self,
        batch: &mut Vec<SourceEvent>,
        started: Instant,
        rounds: &mpsc::UnboundedSender<record::Round>,
        room: &Arc<tokio::sync::Semaphore>,
    ) -> Result<(), RecorderGone> {
        let mut fired = Vec::new();
        let mut expired = Vec::new();
        let mut out = Vec::new();
        for event in batch.drain(..) {
            match event {
                // Another shard's symbol (a replay or the simulated market sends every
                // symbol it has, whatever is wanted).
                SourceEvent::Candle { symbol, .. } | SourceEvent::Warm { symbol }
                    if !self.owns(&symbol) => {}
                SourceEvent::Candle { symbol, update } => {
                    let t = Instant::now();
                    match self.engine.on_candle(symbol, &update, &mut out) {
                        Ok(()) => {
                            self.stats.candles += 1;
                            metrics::counter!(CANDLES).increment(1);
                        }
                        Err(e) => {
                            self.stats.rejected_candles += 1;
                            metrics::counter!(CANDLES_REJECTED).increment(1);
                            tracing::debug!(%symbol, error = %e, "candle rejected");
                        }
                    }
                    let spent = t.elapsed();
                    metrics::histogram!(EVALUATION_SECONDS).record(spent.as_secs_f64());
                    if spent > self.config.slow_evaluation {
                        tracing::warn!(%symbol, elapsed_ms = spent.as_millis() as u64, "slow evaluation");
                    }
                    if update.closed {
                        let close = update
                            .candle
                            .open_time
                            .plus_millis(self.config.feed.duration_ms())
                            .millis();
                        let lag = Utc::now().timestamp_millis() - close;
                        metrics::gauge!(DATA_LAG_SECONDS).set(lag as f64 / 1000.0);
                    }
                    for e in out.drain(..) {
                        match e {
                            Event::Triggered(t) => fired.push(*t),
                            Event::Expired { alert_id, .. } => {
                                if let Ok(uuid) = Uuid::parse_str(alert_id.as_str()) {
                                    expired.push(uuid);
                                }
                            }
                        }
                    }
                }
                SourceEvent::Warm { symbol } => {
                    self.warm.insert(symbol, true);
                    self.update_readiness();
                }
                SourceEvent::Reconnected => metrics::counter!(RECONNECTS).increment(1),
            }
        }
        // The engine has let go of an expired alert; the recorder stores the expiry after the
        // round's triggers.
        for id in &expired {
            self.unload(*id);
        }
        if !expired.is_empty() {
            self.publish_alert_gauges();
        }
        if fired.is_empty() && expired.is_empty() {
            return Ok(());
        }
        let wanted = (fired.len() + expired.len()).clamp(1, self.config.record_queue.max(1));
        let room = Arc::clone(room)
            .acquire_many_owned(u32::try_from(wanted).unwrap_or(u32::MAX))
            .await
            .map_err(|_| RecorderGone)?;
        rounds
            .send(record::Round {
                started,
                fired,
                expired,
                room,
            })
            .map_err(|_| RecorderGone)
    }
}

/// A round could not be handed to the recorder: it has stopped (its result says why).
struct RecorderGone;

/// Why the recorder stopped while the runner still had rounds for it.
fn recorder_failure(
    joined: Result<Result<record::RecordStats, RunnerError>, tokio::task::JoinError>,
) -> RunnerError {
    match joined {
        Ok(Err(e)) => e,
        Ok(Ok(_)) => RunnerError::Recorder("stopped before the runner".into()),
        Err(e) => RunnerError::Recorder(e.to_string()),
    }
}
