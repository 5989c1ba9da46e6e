//! Questions about market data, answered by the running runner: the candles it keeps, an
//! indicator over them, and dry runs of alerts.
//!
//! The engine lives in the runner's task, so questions travel to it: a [`MarketHandle`] (from
//! [`Runner::market_handle`], cheap to clone) sends them over a bounded channel with a
//! one-shot reply. The runner answers between candle batches (after each batch it answers
//! what has queued, at most [`ANSWERS_PER_BATCH`]; when no candles arrive, at once), so
//! answering never holds up candle intake for long. Every answer is computed from the
//! engine's data without changing it: indicators are recomputed from the stored history
//! rather than read from (or added to) the shared ones, and a dry run fires nothing.
//!
//! A question when the runner is gone (stopped, or never run) is
//! [`QueryError::Unavailable`]; when its queue stays full or it takes too long to answer,
//! [`QueryError::Busy`]. The API answers both with 503.

use std::sync::Arc;
use std::time::Duration;

use alert_core::{BarTime, Candle, Symbol, Timeframe};
use alert_engine::{AlertDefinition, DryRun, DryRunError, Engine};
use alert_indicators::{AnyIndicator, Components, Indicator, IndicatorSpec};
use tokio::sync::{mpsc, oneshot};

use crate::Runner;

/// Most candles (or indicator values) one question returns.
pub const MAX_LIMIT: usize = 1000;
/// Questions waiting for the runner; beyond, senders wait up to [`SEND_TIMEOUT`].
pub const QUERY_QUEUE: usize = 64;
/// Questions answered after each candle batch, before the next batch.
pub const ANSWERS_PER_BATCH: usize = 16;
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One bar: closed, or the one in progress (the last).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub candle: Candle,
    pub closed: bool,
}

/// An indicator's values, one per bar, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorSeries {
    pub spec: IndicatorSpec,
    /// Component names, in the order of each point's values.
    pub components: &'static [&'static str],
    pub points: Vec<IndicatorPoint>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IndicatorPoint {
    pub open_time: BarTime,
    /// `false` for the bar in progress: its values are peeked, not committed.
    pub closed: bool,
    pub values: Components,
}

/// Why a question got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("the market data runner is not running")]
    Unavailable,
    #[error("the market data runner is busy: try again")]
    Busy,
    #[error(
        "timeframe {timeframe} cannot be built from the {feed} candles the runner is fed with: expected a multiple of {feed}"
    )]
    Timeframe {
        timeframe: Timeframe,
        feed: Timeframe,
    },
    #[error(transparent)]
    DryRun(#[from] DryRunError),
}

/// A question for the runner, with where to send the answer.
pub(crate) enum MarketQuery {
    Candles {
        symbol: Symbol,
        timeframe: Timeframe,
        limit: usize,
        reply: oneshot::Sender<Vec<Bar>>,
    },
    Indicator {
        symbol: Symbol,
        timeframe: Timeframe,
        spec: IndicatorSpec,
        limit: usize,
        reply: oneshot::Sender<IndicatorSeries>,
    },
    Evaluate {
        def: Arc<AlertDefinition>,
        reply: oneshot::Sender<Result<DryRun, DryRunError>>,
    },
}

/// Asks the runner about its market data. Cheap to clone; see the module docs.
#[derive(Clone, Debug)]
pub struct MarketHandle {
    tx: mpsc::Sender<MarketQuery>,
    feed: Timeframe,
}

impl std::fmt::Debug for MarketQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Candles {
                symbol, timeframe, ..
            } => write!(f, "Candles({symbol}, {timeframe})"),
            Self::Indicator {
                symbol,
                timeframe,
                spec,
                ..
            } => write!(f, "Indicator({symbol}, {timeframe}, {spec})"),
            Self::Evaluate { def, .. } => write!(f, "Evaluate({})", def.name),
        }
    }
}

impl MarketHandle {
    /// The timeframe the runner is fed with: every timeframe asked about must be a multiple.
    pub fn feed(&self) -> Timeframe {
        self.feed
    }

    fn check(&self, timeframe: Timeframe) -> Result<(), QueryError> {
        if timeframe.is_multiple_of(self.feed) {
            Ok(())
        } else {
            Err(QueryError::Timeframe {
                timeframe,
                feed: self.feed,
            })
        }
    }

    async fn ask<T>(
        &self,
        question: impl FnOnce(oneshot::Sender<T>) -> MarketQuery,
    ) -> Result<T, QueryError> {
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout(SEND_TIMEOUT, self.tx.send(question(reply))).await {
            Err(_) => return Err(QueryError::Busy),
            Ok(Err(_)) => return Err(QueryError::Unavailable),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
            Err(_) => Err(QueryError::Busy),
            Ok(Err(_)) => Err(QueryError::Unavailable),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// The last `limit` (at most [`MAX_LIMIT`]) bars of (symbol, timeframe) the runner keeps,
    /// oldest first; the last may be in progress. Empty when it has no data for the symbol.
    pub async fn candles(
        &self,
        symbol: Symbol,
        timeframe: Timeframe,
        limit: usize,
    ) -> Result<Vec<Bar>, QueryError> {
        self.check(timeframe)?;
        let limit = limit.clamp(1, MAX_LIMIT);
        self.ask(|reply| MarketQuery::Candles {
            symbol,
            timeframe,
            limit,
            reply,
        })
        .await
    }

    /// `spec` computed over the bars the runner keeps for (symbol, timeframe) (as the engine
    /// warms a new indicator), its last `limit` values, oldest first; the value on a bar in
    /// progress is peeked. Values before the indicator's lookback are `None`.
    pub async fn indicator(
        &self,
        symbol: Symbol,
        timeframe: Timeframe,
        spec: IndicatorSpec,
        limit: usize,
    ) -> Result<IndicatorSeries, QueryError> {
        self.check(timeframe)?;
        let limit = limit.clamp(1, MAX_LIMIT);
        self.ask(|reply| MarketQuery::Indicator {
            symbol,
            timeframe,
            spec,
            limit,
            reply,
        })
        .await
    }

    /// Evaluates an alert on the data as it stands (see [`alert_engine::Engine::dry_run`]):
    /// nothing is registered, fired or recorded.
    pub async fn evaluate(&self, def: AlertDefinition) -> Result<DryRun, QueryError> {
        let def = Arc::new(def);
        self.ask(|reply| MarketQuery::Evaluate { def, reply })
            .await?
            .map_err(QueryError::from)
    }
}

/// The channel behind the handles (created by the first [`Runner::market_handle`]).
pub(crate) struct Queries {
    pub tx: mpsc::Sender<MarketQuery>,
    pub rx: mpsc::Receiver<MarketQuery>,
}

impl Runner {
    /// A handle for asking this runner about its market data once it runs (the API's
    /// `/v1/candles`, `/v1/indicators` and dry runs). Call before [`Runner::run`]; every call
    /// returns a handle to the same runner. Questions asked before `run` wait in the queue;
    /// once the runner has stopped they fail with [`QueryError::Unavailable`].
    pub fn market_handle(&mut self) -> MarketHandle {
        let queries = self.queries.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUERY_QUEUE);
            Queries { tx, rx }
        });
        MarketHandle {
            tx: queries.tx.clone(),
            feed: self.config.feed,
        }
    }
}

/// Waits for the next question (forever without a channel).
pub(crate) async fn next(rx: &mut Option<mpsc::Receiver<MarketQuery>>) -> Option<MarketQuery> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Answers up to [`ANSWERS_PER_BATCH`] questions already waiting.
pub(crate) fn answer_waiting(engine: &Engine, rx: &mut Option<mpsc::Receiver<MarketQuery>>) {
    let Some(rx) = rx.as_mut() else { return };
    for _ in 0..ANSWERS_PER_BATCH {
        match rx.try_recv() {
            Ok(q) => answer(engine, q),
            Err(_) => return,
        }
    }
}

/// Answers one question from the engine's data, changing nothing.
pub(crate) fn answer(engine: &Engine, query: MarketQuery) {
    tracing::trace!(?query, "market query");
    match query {
        MarketQuery::Candles {
            symbol,
            timeframe,
            limit,
            reply,
        } => {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(candles(engine, symbol, timeframe, limit));
        }
        MarketQuery::Indicator {
            symbol,
            timeframe,
            spec,
            limit,
            reply,
        } => {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(indicator(engine, symbol, timeframe, spec, limit));
        }
        MarketQuery::Evaluate { def, reply } => {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(engine.dry_run(&def));
        }
    }
}

fn candles(engine: &Engine, symbol: Symbol, timeframe: Timeframe, limit: usize) -> Vec<Bar> {
    let all = engine.candles(symbol, timeframe);
    let skip = all.len().saturating_sub(limit);
    all.into_iter()
        .skip(skip)
        .map(|(candle, in_progress)| Bar {
            candle,
            closed: !in_progress,
        })
        .collect()
}

/// `spec` over every kept bar (the committed history, then a peek at the bar in progress).
fn indicator(
    engine: &Engine,
    symbol: Symbol,
    timeframe: Timeframe,
    spec: IndicatorSpec,
    limit: usize,
) -> IndicatorSeries {
    let bars = engine.candles(symbol, timeframe);
    let mut ind = AnyIndicator::new(&spec);
    let width = spec.kind().components().len();
    let skip = bars.len().saturating_sub(limit);
    let mut points = Vec::with_capacity(bars.len().min(limit));
    for (i, (bar, in_progress)) in bars.iter().enumerate() {
        let values = if *in_progress {
            ind.peek(bar)
        } else {
            ind.update(bar)
        }
        .unwrap_or(Components::none(width));
        if i >= skip {
            points.push(IndicatorPoint {
                open_time: bar.open_time,
                closed: !in_progress,
                values,
            });
        }
    }
    IndicatorSeries {
        spec,
        components: spec.kind().components(),
        points,
    }
}

#[cfg(test)]
mod tests {
    use alert_core::CandleUpdate;
    use alert_marketdata::SourceEvent;
    use alert_store::{Store, StoreOptions, TriggerQuery};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::RunnerConfig;

    const T0: i64 = 1_704_067_200_000;
    const USER: uuid::Uuid = uuid::Uuid::from_u128(7);

    fn sym() -> Symbol {
        Symbol::new("ETHUSDT").unwrap()
    }

    fn candle(minute: i64, close: f64, closed: bool) -> SourceEvent {
        SourceEvent::Candle {
            symbol: sym(),
            update: CandleUpdate {
                candle: Candle {
                    open_time: BarTime::from_millis(T0 + minute * 60_000),
                    open: close,
                    high: close + 1.0,
                    low: close - 1.0,
                    close,
                    volume: 5.0,
                },
                closed,
            },
        }
    }

    fn def(conditions: serde_json::Value) -> AlertDefinition {
        alert_engine::parse::parse_alert(&serde_json::json!({
            "symbol": "ETHUSDT", "base_timeframe": "1m", "conditions": conditions,
            "action": {"type": "notify"}
        }))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_runner_answers_from_its_data_and_fires_nothing() {
        let store = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        let (mut runner, _wanted, _ready) = Runner::start(
            store.clone(),
            RunnerConfig {
                poll: Duration::from_millis(50),
                live_only: false,
                ..RunnerConfig::default()
            },
        )
        .await
        .unwrap();
        let handle = runner.market_handle();
        assert_eq!(handle.feed(), Timeframe::M1);
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(rx, cancel.clone()));

        // Before any data: empty answers, a dry run warming up.
        assert!(
            handle
                .candles(sym(), Timeframe::M1, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let price_above_sma = def(serde_json::json!([
            {"id": "p", "type": "price", "operator": ">",
             "rhs": {"indicator": "SMA", "settings": {"length": 3}}}
        ]));
        let r = handle.evaluate(price_above_sma.clone()).await.unwrap();
        assert!(r.warming_up && !r.holds);

        // Closes 10..=14, then the bar at minute 5 in progress at 20.
        for m in 0..5 {
            tx.send(candle(m, 10.0 + m as f64, true)).await.unwrap();
        }
        tx.send(candle(5, 20.0, false)).await.unwrap();

        let bars = handle.candles(sym(), Timeframe::M1, 1000).await.unwrap();
        let closes: Vec<_> = bars.iter().map(|b| (b.candle.close, b.closed)).collect();
        assert_eq!(
            closes,
            [
                (10.0, true),
                (11.0, true),
                (12.0, true),
                (13.0, true),
                (14.0, true),
                (20.0, false)
            ]
        );
        let last2 = handle.candles(sym(), Timeframe::M1, 2).await.unwrap();
        assert_eq!(last2, bars[4..]);
        // 5m: the closed bar of minutes 0-4, and minute 5 in progress.
        let five = handle.candles(sym(), Timeframe::M5, 10).await.unwrap();
        assert_eq!(five.len(), 2);
        assert_eq!(
            (
                five[0].candle.open,
                five[0].candle.close,
                five[0].candle.volume
            ),
            (10.0, 14.0, 25.0)
        );
        assert_eq!((five[0].candle.high, five[0].candle.low), (15.0, 9.0));
        assert!(five[0].closed && !five[1].closed);

        // SMA(3) by hand.
        let spec: IndicatorSpec = "SMA(3)".parse().unwrap();
        let sma = handle
            .indicator(sym(), Timeframe::M1, spec, 1000)
            .await
            .unwrap();
        assert_eq!(sma.components, ["SMA"]);
        let values: Vec<_> = sma.points.iter().map(|p| p.values.get(0)).collect();
        assert_eq!(
            values,
            [
                None,
                None,
                Some(11.0),
                Some(12.0),
                Some(13.0),
                Some((13.0 + 14.0 + 20.0) / 3.0)
            ]
        );
        assert!(!sma.points[5].closed && sma.points[4].closed);
        let tail = handle
            .indicator(sym(), Timeframe::M1, spec, 2)
            .await
            .unwrap();
        assert_eq!(tail.points, sma.points[4..]);

        // Dry runs: values of every operand, nothing recorded.
        let r = handle.evaluate(price_above_sma).await.unwrap();
        assert!(r.holds && !r.warming_up, "{r:?}");
        assert_eq!(r.conditions[0].value, Some(20.0));
        assert_eq!(r.conditions[0].rhs, Some((13.0 + 14.0 + 20.0) / 3.0));
        let mut stored_style = def(serde_json::json!([
            {"id": "up", "type": "price", "operator": "crosses_above", "compareValue": 15},
            {"id": "rsi", "indicator": "RSI", "operator": "<", "compareValue": 30}
        ]));
        stored_style.id = alert_engine::AlertId::new(&uuid::Uuid::new_v4().to_string()).ok();
        stored_style.user_id = Some(USER.to_string());
        let r = handle.evaluate(stored_style).await.unwrap();
        assert!(r.conditions[0].held, "20 crossed 15 from 14");
        assert!(r.conditions[1].warming_up && !r.holds);
        assert_eq!(
            r.reason.as_deref().map(|s| s.starts_with("rsi: ")),
            Some(true)
        );
        cancel.cancel();
        let stats = task.await.unwrap().unwrap();
        assert_eq!(stats.triggers_recorded, 0);
        assert_eq!(stats.candles, 6);
        let triggers = store
            .list_triggers(
                USER,
                &TriggerQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(triggers.is_empty());

        // The runner is gone.
        assert_eq!(
            handle.candles(sym(), Timeframe::M1, 10).await,
            Err(QueryError::Unavailable)
        );
        assert_eq!(
            handle
                .evaluate(def(serde_json::json!([
                    {"type": "price", "operator": ">", "compareValue": 1}
                ])))
                .await
                .map(|_| ()),
            Err(QueryError::Unavailable)
        );
    }

    #[tokio::test]
    async fn timeframes_the_feed_cannot_build_are_refused_before_asking() {
        let (tx, _rx) = mpsc::channel(1);
        let handle = MarketHandle {
            tx,
            feed: Timeframe::M5,
        };
        assert!(matches!(
            handle.candles(sym(), Timeframe::M3, 10).await,
            Err(QueryError::Timeframe {
                timeframe: Timeframe::M3,
                feed: Timeframe::M5
            })
        ));
        let spec: IndicatorSpec = "RSI".parse().unwrap();
        assert!(matches!(
            handle.indicator(sym(), Timeframe::M1, spec, 10).await,
            Err(QueryError::Timeframe { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_runner_that_does_not_answer_is_busy() {
        let (tx, mut rx) = mpsc::channel(1);
        let handle = MarketHandle {
            tx,
            feed: Timeframe::M1,
        };
        // Received but never answered (the reply is held).
        let held = tokio::spawn(async move {
            let q = rx.recv().await;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(q);
        });
        assert_eq!(
            handle.candles(sym(), Timeframe::M1, 10).await,
            Err(QueryError::Busy)
        );
        held.abort();
    }
}
