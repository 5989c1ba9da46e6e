//! The bus [`Source`]: a runner's candles from the stream, through a durable pull consumer.
//!
//! **Start.** The consumer resumes after the last message it acknowledged (the durable's ack
//! floor, kept by the server across restarts); a durable seen for the first time starts at
//! the stream's head. Before live messages, each wanted symbol's history is read from the
//! stream itself — its last N closed bars (N from [`Wanted`]) published up to the resume
//! point, by a short-lived ephemeral consumer on `candles.<SYMBOL>.<TF>` starting
//! `(N + 2) bars + 10 minutes` before that point's publish time — and sent as closed
//! candles, then [`SourceEvent::Warm`]. A symbol that becomes wanted later gets the same, up
//! to the last message handled. So a runner that was down gets its history and then every
//! message it missed, in order.
//!
//! **Live.** The durable (`--bus-durable`, filter `candles.*.<TF>`, ack policy "all") is
//! recreated at every (re)connection to start exactly after the resume point (so messages a
//! dead process had in flight come in order, not after the ack wait). Each message is acked
//! once it is handed to the runner's channel, or at once when its symbol is not wanted (the
//! filter takes every symbol: NATS 2.9 has one filter subject per consumer). Delivery is at
//! least once: a redelivered message (sequence not above the last handled) is acked and
//! dropped, and the runner's (alert, bar) key drops a trigger fired twice.
//!
//! One process at a time per durable name: a second one would recreate the consumer under
//! the first.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use alert_core::{Candle, CandleUpdate, Symbol, Timeframe};
use async_nats::jetstream::{self, consumer, stream::Stream};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{BusError, Subjects, decode, is_closed_id};
use crate::source::{Source, SourceError, SourceEvent, Wanted};

/// Messages asked for per pull request.
const PULL_BATCH: usize = 256;
/// How long a pull request waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Unacknowledged messages the server lets the consumer have.
const MAX_ACK_PENDING: i64 = 20_000;
/// How long the server waits for an ack before delivering a message again.
const ACK_WAIT: Duration = Duration::from_secs(300);
/// Extra publish time read before a symbol's history window.
const HISTORY_MARGIN: Duration = Duration::from_secs(600);
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// The bus source's settings.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The stream (created by `alert-runner ingest`).
    pub stream: String,
    /// The subjects' prefix (the stream's subjects are `<prefix>.>`).
    pub subjects: Subjects,
    /// The durable consumer's name.
    pub durable: String,
    /// The timeframe consumed (`candles.*.<TF>`).
    pub timeframe: Timeframe,
}

/// The bus source.
pub struct Bus {
    config: BusConfig,
}

impl Bus {
    pub fn new(config: BusConfig) -> Self {
        Self { config }
    }
}

impl Source for Bus {
    fn name(&self) -> &'static str {
        "bus"
    }

    fn timeframe(&self) -> Timeframe {
        self.config.timeframe
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<SourceEvent>,
        wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        let mut state = State {
            config: self.config,
            out,
            wanted,
            cancel,
            position: None,
            warm: BTreeSet::new(),
            current: Wanted::new(),
        };
        Box::pin(async move { state.run().await })
    }
}

/// Why a session ended.
enum End {
    /// Cancelled, or the runner is gone.
    Stop,
    /// A NATS error: connect again.
    Failed(BusError),
}

impl From<BusError> for End {
    fn from(e: BusError) -> Self {
        Self::Failed(e)
    }
}

struct State {
    config: BusConfig,
    out: mpsc::Sender<SourceEvent>,
    wanted: watch::Receiver<Wanted>,
    cancel: CancellationToken,
    /// The stream sequence of the last message handled (sent on or dropped); `None` until the
    /// first connection has read the durable's ack floor.
    position: Option<u64>,
    /// Symbols whose history was sent.
    warm: BTreeSet<Symbol>,
    /// The wanted set as last applied.
    current: Wanted,
}

impl State {
    async fn run(&mut self) -> Result<(), SourceError> {
        let mut wait = RETRY_FIRST;
        let mut sessions = 0u64;
        loop {
            if sessions > 0 {
                let _ = self.out.send(SourceEvent::Reconnected).await;
            }
            sessions += 1;
            match self.session(&mut wait).await {
                End::Stop => return Ok(()),
                End::Failed(e) => {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "candle bus: connection lost; reconnecting");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => return Ok(()),
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    async fn session(&mut self, wait: &mut Duration) -> End {
        let client = tokio::select! {
            c = super::connect(&self.config.url, "alert-runner bus consumer") => match c {
                Ok(c) => c,
                Err(e) => return End::Failed(e),
            },
            _ = self.cancel.cancelled() => return End::Stop,
        };
        let end = self.consume(&client, wait).await;
        // Acks are plain publishes: make sure they left before the connection goes.
        let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        end
    }

    async fn consume(&mut self, client: &async_nats::Client, wait: &mut Duration) -> End {
        let js = jetstream::new(client.clone());
        let mut stream = match js.get_stream(&self.config.stream).await {
            Ok(s) => s,
            Err(e) => {
                return End::Failed(BusError::nats(
                    "stream",
                    format!(
                        "{}: {e} (alert-runner ingest creates it)",
                        self.config.stream
                    ),
                ));
            }
        };
        let last = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => return End::Failed(BusError::nats("stream info", e)),
        };
        let resume = match self.position {
            Some(p) => p,
            None => match self.durable_floor(&stream).await {
                Ok(Some(floor)) => floor,
                Ok(None) => {
                    tracing::info!(durable = %self.config.durable, head = last, "candle bus: new durable consumer, starting at the stream's head (history is read from the stream)");
                    last
                }
                Err(e) => return End::Failed(e),
            },
        };
        let resume = if resume > last {
            tracing::warn!(
                resume,
                last,
                "candle bus: the stream is behind the consumer (was it recreated?); starting at its head"
            );
            last
        } else {
            resume
        };
        let durable = match self.recreate_durable(&stream, resume).await {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        tracing::info!(stream = %self.config.stream, durable = %self.config.durable, filter = %self.config.subjects.filter(self.config.timeframe), after = resume, "candle bus: consuming");
        self.position = Some(resume);
        *wait = RETRY_FIRST;
        self.wanted.mark_changed();
        loop {
            if self.cancel.is_cancelled() {
                return End::Stop;
            }
            // Also between batches: an idle stream must not delay a new symbol's warm-up.
            if let Err(end) = self.apply_wanted(&stream).await {
                return end;
            }
            let mut last_acked: Option<jetstream::Message> = None;
            let mut batch = match durable
                .batch()
                .max_messages(PULL_BATCH)
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(b) => b,
                Err(e) => return End::Failed(BusError::nats("pull", e)),
            };
            loop {
                let next = tokio::select! {
                    next = batch.next() => next,
                    _ = self.cancel.cancelled() => {
                        confirm(last_acked.as_ref()).await;
                        return End::Stop;
                    }
                };
                let message = match next {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => return End::Failed(BusError::nats("pull", e)),
                };
                if let Err(end) = self.apply_wanted(&stream).await {
                    return end;
                }
                match self.handle(&message).await {
                    Handled::Sent | Handled::Dropped => {
                        if let Err(e) = message.ack().await {
                            return End::Failed(BusError::nats("ack", e));
                        }
                        last_acked = Some(message);
                    }
                    Handled::Stop => {
                        confirm(last_acked.as_ref()).await;
                        return End::Stop;
                    }
                }
            }
        }
    }

    /// The sequence the durable has acknowledged up to, `None` when it does not exist.
    async fn durable_floor(&self, stream: &Stream) -> Result<Option<u64>, BusError> {
        match stream.consumer_info(&self.config.durable).await {
            Ok(info) => {
                // A consumer created at sequence S+1 that acked nothing reports a floor of 0.
                let start = match info.config.deliver_policy {
                    consumer::DeliverPolicy::ByStartSequence { start_sequence } => {
                        start_sequence.saturating_sub(1)
                    }
                    _ => 0,
                };
                let floor = info.ack_floor.stream_sequence.max(start);
                tracing::info!(durable = %self.config.durable, acked_up_to = floor, pending = info.num_pending, "candle bus: resuming the durable consumer");
                Ok(Some(floor))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(BusError::nats("consumer info", e)),
        }
    }

    /// Deletes the durable (if any) and creates it anew, delivering from `after + 1`.
    async fn recreate_durable(
        &self,
        stream: &Stream,
        after: u64,
    ) -> Result<consumer::PullConsumer, BusError> {
        match stream.delete_consumer(&self.config.durable).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(BusError::nats("deleting the durable consumer", e)),
        }
        let config = consumer::pull::Config {
            durable_name: Some(self.config.durable.clone()),
            description: Some("alert-runner bus source".to_owned()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
            ack_policy: consumer::AckPolicy::All,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING,
            filter_subject: self.config.subjects.filter(self.config.timeframe),
            ..Default::default()
        };
        stream
            .create_consumer(config)
            .await
            .map_err(|e| BusError::nats("creating the durable consumer", e))
    }

    /// Applies a change of the wanted set: new symbols get their history (up to the last
    /// message handled) and `Warm`; symbols no longer wanted stop being sent.
    async fn apply_wanted(&mut self, stream: &Stream) -> Result<(), End> {
        if !self.wanted.has_changed().unwrap_or(false) {
            return Ok(());
        }
        self.current = self.wanted.borrow_and_update().clone();
        self.warm.retain(|s| self.current.contains_key(s));
        let position = self.position.unwrap_or(0);
        let new: Vec<(Symbol, usize)> = self
            .current
            .iter()
            .filter(|(s, _)| !self.warm.contains(s))
            .map(|(s, n)| (*s, *n))
            .collect();
        for (symbol, bars) in new {
            let history = tokio::select! {
                h = history(stream, &self.config.subjects, symbol, self.config.timeframe, bars, position) => h?,
                _ = self.cancel.cancelled() => return Err(End::Stop),
            };
            tracing::debug!(%symbol, bars = history.len(), wanted = bars, up_to = position, "candle bus: history read");
            if bars > 0 && history.is_empty() {
                tracing::info!(%symbol, "candle bus: no history of this symbol on the stream yet");
            }
            for candle in history {
                self.send(SourceEvent::Candle {
                    symbol,
                    update: CandleUpdate {
                        candle,
                        closed: true,
                    },
                })
                .await?;
            }
            self.send(SourceEvent::Warm { symbol }).await?;
            self.warm.insert(symbol);
        }
        Ok(())
    }

    async fn send(&self, event: SourceEvent) -> Result<(), End> {
        tokio::select! {
            sent = self.out.send(event) => sent.map_err(|_| End::Stop),
            _ = self.cancel.cancelled() => Err(End::Stop),
        }
    }

    async fn handle(&mut self, message: &jetstream::Message) -> Handled {
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                tracing::warn!(error = %e, subject = %message.subject, "candle bus: message without JetStream metadata; dropped");
                return Handled::Dropped;
            }
        };
        if self.position.is_some_and(|p| seq <= p) {
            // Delivered again (an ack that did not arrive in time): handled before.
            return Handled::Dropped;
        }
        let handled = match self.config.subjects.parse(&message.subject) {
            Some((symbol, tf)) if tf == self.config.timeframe => {
                if self.current.contains_key(&symbol) {
                    match decode(symbol, tf, &message.payload) {
                        Ok(update) => {
                            if self
                                .send(SourceEvent::Candle { symbol, update })
                                .await
                                .is_err()
                            {
                                // Not handed over: not acknowledged, delivered again next time.
                                return Handled::Stop;
                            }
                            Handled::Sent
                        }
                        Err(e) => {
                            tracing::warn!(subject = %message.subject, seq, error = %e, "candle bus: bad candle message; dropped");
                            Handled::Dropped
                        }
                    }
                } else {
                    Handled::Dropped
                }
            }
            _ => {
                tracing::debug!(subject = %message.subject, "candle bus: not a candle subject of this feed; dropped");
                Handled::Dropped
            }
        };
        self.position = Some(seq);
        handled
    }
}

enum Handled {
    Sent,
    Dropped,
    Stop,
}

fn is_not_found(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("not found") || text.contains("10014")
}

/// The last `bars` closed candles of `symbol` among the stream's messages up to sequence
/// `upto` (inclusive), oldest first.
async fn history(
    stream: &Stream,
    subjects: &Subjects,
    symbol: Symbol,
    tf: Timeframe,
    bars: usize,
    upto: u64,
) -> Result<Vec<Candle>, BusError> {
    if bars == 0 || upto == 0 {
        return Ok(Vec::new());
    }
    // The window, by publish time: from (bars + 2) bars and a margin before the resume
    // point's message (now, if it is gone).
    let anchor = match stream.get_raw_message(upto).await {
        Ok(m) => m.time,
        Err(_) => chrono::Utc::now(),
    };
    let span_ms = i64::try_from(bars)
        .unwrap_or(i64::MAX)
        .saturating_add(2)
        .saturating_mul(tf.duration_ms())
        .saturating_add(HISTORY_MARGIN.as_millis() as i64);
    let start = chrono::Duration::try_milliseconds(span_ms)
        .and_then(|span| anchor.checked_sub_signed(span))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
    let reader = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: start },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: subjects.subject(symbol, tf),
            inactive_threshold: Duration::from_secs(60),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::nats("creating a history reader", e))?;
    let name = reader.cached_info().name.clone();
    let mut kept: VecDeque<Candle> = VecDeque::with_capacity(bars.min(4096));
    let result = async {
        'pull: loop {
            let mut batch = reader
                .fetch()
                .max_messages(1024)
                .messages()
                .await
                .map_err(|e| BusError::nats("reading history", e))?;
            let mut got = 0usize;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| BusError::nats("reading history", e))?;
                got += 1;
                let (seq, pending) = match m.info() {
                    Ok(info) => (info.stream_sequence, info.pending),
                    Err(_) => continue,
                };
                if seq > upto {
                    break 'pull;
                }
                let closed = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .is_some_and(|id| is_closed_id(id.as_str()));
                if closed {
                    match decode(symbol, tf, &m.payload) {
                        // Strictly later bars only: a closed bar published again after
                        // the duplicate window is not history twice.
                        Ok(u) if u.closed
                            && kept.back().is_none_or(|c| c.open_time < u.candle.open_time) =>
                        {
                            if kept.len() == bars {
                                kept.pop_front();
                            }
                            kept.push_back(u.candle);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(%symbol, seq, error = %e, "candle bus: bad candle in history; skipped");
                        }
                    }
                }
                if pending == 0 || seq == upto {
                    break 'pull;
                }
            }
            if got == 0 {
                break;
            }
        }
        Ok::<(), BusError>(())
    }
    .await;
    let _ = stream.delete_consumer(&name).await;
    result?;
    Ok(kept.into())
}

/// Acks are plain publishes the server applies when it gets to them: before stopping, the last
/// one is acked again and its confirmation awaited (ack policy "all": it covers every earlier
/// message), so the durable's ack floor a restart reads is where this process stopped, not
/// behind it (which would hand over again what was handled).
async fn confirm(last: Option<&jetstream::Message>) {
    if let Some(message) = last
        && let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), message.double_ack()).await
    {
        tracing::debug!(error = %e, "candle bus: confirming the last ack failed; a restart may hand over a few messages again");
    }
}
