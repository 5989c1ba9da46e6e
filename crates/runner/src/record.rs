//! Recording, pipelined with evaluation: the runner evaluates a round and hands its triggers
//! and expiries here, then goes on with the next round while this task writes them to the
//! store, announces them and wakes the dispatcher.
//!
//! Rounds are recorded one at a time, in the order they were evaluated, so an alert's
//! triggers reach the store in bar order and an expiry after the round's triggers. The queue
//! between the two holds at most `RunnerConfig::record_queue` triggers (enough for a bar close
//! of every symbol at once, so such a burst is evaluated without waiting on the store): when
//! the store is slower than the market for longer, the runner waits for room (the time shows
//! in its round histogram) and the source's channel fills, as before; nothing is dropped.
//! Nothing evaluated is announced before it is stored, and a crash loses only what a crash
//! lost before: the engine's state since the last recorded round, which a restart rebuilds
//! from the store and the market's history.

use std::time::Instant;

use alert_engine::Trigger;
use chrono::Utc;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics_names::{ROUND_RECORDED_SECONDS, TRIGGERS};
use crate::{Outlets, RunnerError, retry_store, trigger_to_record};
use alert_store::{Recorded, Store};

/// What one evaluated round leaves to record.
pub(crate) struct Round {
    /// When the round's batch was taken from the source.
    pub started: Instant,
    pub fired: Vec<Trigger>,
    /// Alerts the engine expired in the round (already unloaded by the runner).
    pub expired: Vec<Uuid>,
    /// The round's room in the queue, given back once it is recorded.
    pub room: OwnedSemaphorePermit,
}

/// What the recorder counted, merged into the runner's stats when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecordStats {
    pub triggers_recorded: u64,
    pub duplicates: u64,
}

pub(crate) struct Recorder {
    store: Store,
    outlets: Outlets,
    stats: RecordStats,
}

impl Recorder {
    pub fn new(store: Store, outlets: Outlets) -> Self {
        Self {
            store,
            outlets,
            stats: RecordStats::default(),
        }
    }

    /// Records rounds until the runner closes the queue; a store error that retrying did not
    /// cure ends it (the runner then stops with that error).
    pub async fn run(
        mut self,
        mut rounds: mpsc::UnboundedReceiver<Round>,
        cancel: CancellationToken,
    ) -> Result<RecordStats, RunnerError> {
        while let Some(round) = rounds.recv().await {
            self.record(round, &cancel).await?;
        }
        Ok(self.stats)
    }

    async fn record(
        &mut self,
        round: Round,
        cancel: &CancellationToken,
    ) -> Result<(), RunnerError> {
        let mut queued_any = false;
        if !round.fired.is_empty() {
            let now = Utc::now();
            // Keep each record beside its trigger (a trigger that is not a stored alert's has
            // no record).
            let (fired, records): (Vec<_>, Vec<_>) = round
                .fired
                .into_iter()
                .filter_map(|t| trigger_to_record(&t, now).map(|r| (t, r)))
                .unzip();
            let store = &self.store;
            let results = retry_store("record triggers", cancel, || {
                store.record_triggers(&records, now)
            })
            .await
            .inspect_err(|e| {
                tracing::error!(triggers = records.len(), error = %e, "triggers NOT recorded");
            })?;
            for ((t, record), r) in fired.iter().zip(&records).zip(&results) {
                match r {
                    Recorded::New {
                        trigger_id,
                        notification_id,
                    } => {
                        queued_any |= !record.deliveries.is_empty();
                        self.announce(record, *trigger_id, *notification_id, now);
                        self.stats.triggers_recorded += 1;
                        metrics::counter!(TRIGGERS).increment(1);
                        let message = record
                            .snapshot
                            .get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or_default();
                        tracing::info!(
                            alert = %t.alert_id, name = %t.definition.name, symbol = %t.symbol,
                            bar_time = %t.bar_time.to_rfc3339(), trigger = %trigger_id, %message,
                            "alert fired"
                        );
                    }
                    Recorded::Skipped => {
                        tracing::debug!(alert = %t.alert_id, "alert no longer stored; trigger dropped");
                    }
                    Recorded::Duplicate => {
                        self.stats.duplicates += 1;
                        tracing::debug!(alert = %t.alert_id, bar_time = %t.bar_time, "trigger already recorded");
                    }
                }
            }
        }
        if let Some(waker) = &self.outlets.dispatcher
            && queued_any
        {
            waker.wake();
        }
        for id in round.expired {
            let store = &self.store;
            retry_store("expire alert", cancel, || {
                store.expire_alert(id, Utc::now())
            })
            .await?;
        }
        metrics::histogram!(ROUND_RECORDED_SECONDS).record(round.started.elapsed().as_secs_f64());
        drop(round.room);
        Ok(())
    }

    /// Pushes a recorded trigger (and its notification) to the user's live connections.
    fn announce(
        &self,
        record: &alert_store::NewTrigger,
        trigger_id: Uuid,
        notification_id: Option<Uuid>,
        now: chrono::DateTime<Utc>,
    ) {
        let Some(live) = &self.outlets.live else {
            return;
        };
        live.publish(
            record.user_id,
            alert_dispatch::LiveEvent::Trigger {
                trigger_id,
                alert_id: record.alert_id,
                symbol: record.symbol.clone(),
                bar_time: record.bar_time,
                fired_at: record.fired_at,
                recorded_at: now,
                snapshot: record.snapshot.clone(),
            },
        );
        if let (Some(n), Some(id)) = (&record.notification, notification_id) {
            live.publish(
                record.user_id,
                alert_dispatch::LiveEvent::Notification {
                    id,
                    trigger_id,
                    alert_id: record.alert_id,
                    title: n.title.clone(),
                    body: n.body.clone(),
                    created_at: now,
                },
            );
        }
    }
}
