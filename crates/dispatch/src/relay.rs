//! The relay: on PostgreSQL, an API process's [`LiveHub`] is fed from the database, not by the
//! runner in the same process, so that every API instance streams each user's events wherever
//! they were recorded (any shard's runner, any dispatcher's bot handler, any API instance's
//! "close deal now").
//!
//! The recording transactions announce what they committed on `alert_runner_events` (see
//! `alert_store`'s `live_feed`), in commit order, each lane's times increasing in that order.
//! The relay listens, reads the announced rows of the users it has subscribers for, by id, and
//! publishes them in the announced order — the order the event ids rely on.
//!
//! When the listening connection is lost, what commits meanwhile is not heard: the hub is
//! closed (every stream ends; clients reconnect with their last id and catch up from the
//! store) until the relay listens again. A read that fails drops the streams alike.

use std::collections::HashMap;
use std::time::Duration;

use alert_store::{EventListener, EventNotice, Heard, Store, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::live::{LiveEvent, LiveHub};

/// Most notifications read together (each names up to about 70 rows).
const MAX_BATCH: usize = 64;
/// Longest wait between attempts to listen again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Feeds a [`LiveHub`] from the database's announcements.
#[derive(Clone, Debug)]
pub struct EventRelay {
    store: Store,
    hub: LiveHub,
}

impl EventRelay {
    pub fn new(store: Store, hub: LiveHub) -> Self {
        Self { store, hub }
    }

    /// Relays until cancelled; `listening` is told the first time it listens (a server can
    /// wait for it before it accepts streams). On SQLite (one process records and streams) it
    /// does nothing.
    pub async fn run(
        self,
        cancel: CancellationToken,
        mut listening: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            // Closed until listening: a stream opened now would miss what commits meanwhile.
            self.hub.set_open(false);
            metrics::gauge!(crate::metrics_names::LIVE_RELAY_LISTENING).set(0.0);
            let listener = tokio::select! {
                () = cancel.cancelled() => return,
                l = self.store.listen_events() => l,
            };
            let mut listener = match listener {
                Ok(Some(l)) => l,
                Ok(None) => {
                    self.hub.set_open(true);
                    if let Some(tell) = listening.take() {
                        let _ = tell.send(());
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "live events: cannot listen");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            self.hub.set_open(true);
            if let Some(tell) = listening.take() {
                let _ = tell.send(());
            }
            metrics::gauge!(crate::metrics_names::LIVE_RELAY_LISTENING).set(1.0);
            tracing::info!("live events: listening");
            backoff = Duration::from_millis(100);
            tokio::select! {
                () = cancel.cancelled() => return,
                lost = self.relay(&mut listener) => {
                    tracing::warn!(error = %lost, "live events: the listening connection was lost; streams end and catch up from the store");
                }
            }
        }
    }

    /// Relays until the connection is lost; returns why.
    async fn relay(&self, listener: &mut EventListener) -> String {
        loop {
            let first = match listener.next().await {
                Ok(Heard::Notice(n)) => n,
                Ok(Heard::Gap) => {
                    return "connection lost, or a notice this version cannot read".to_owned();
                }
                Err(e) => return e.to_string(),
            };
            // What else has arrived: read together.
            let mut batch = vec![first];
            let mut gap = false;
            while batch.len() < MAX_BATCH
                && let Some(heard) = listener.next_buffered()
            {
                match heard {
                    Heard::Notice(n) => batch.push(n),
                    Heard::Gap => {
                        gap = true;
                        break;
                    }
                }
            }
            if let Err(e) = self.publish(&batch).await {
                let dropped = self.hub.drop_all();
                tracing::warn!(error = %e, dropped, "live events: reading announced rows failed; streams end and catch up from the store");
            }
            if gap {
                self.hub.drop_all();
            }
        }
    }

    /// Reads the announced rows of subscribed users and publishes them in announced order.
    /// Returns how many events were published.
    pub async fn publish(&self, batch: &[EventNotice]) -> Result<usize, StoreError> {
        let wanted = |user: Uuid| self.hub.has_subscribers(user);
        let mut triggers = Vec::new();
        let mut notes = Vec::new();
        let mut orders = Vec::new();
        for notice in batch {
            match notice {
                EventNotice::Triggers(refs) => {
                    for r in refs.iter().filter(|r| wanted(r.user)) {
                        triggers.push(r.trigger);
                        notes.extend(r.notification);
                    }
                }
                EventNotice::BotOrders(pairs) => {
                    orders.extend(pairs.iter().filter(|(u, _)| wanted(*u)).map(|(_, o)| *o));
                }
            }
        }
        if triggers.is_empty() && orders.is_empty() {
            return Ok(0);
        }
        let (triggers, notes, orders) = tokio::try_join!(
            self.store.triggers_by_id(&triggers),
            self.store.notifications_by_id(&notes),
            self.store.bot_orders_by_id(&orders),
        )?;
        let mut triggers: HashMap<Uuid, _> =
            triggers.into_iter().map(|t| (t.trigger.id, t)).collect();
        let mut notes: HashMap<Uuid, _> = notes.into_iter().map(|n| (n.id, n)).collect();
        let mut orders: HashMap<Uuid, _> = orders.into_iter().map(|o| (o.id, o)).collect();
        let mut published = 0;
        for notice in batch {
            match notice {
                EventNotice::Triggers(refs) => {
                    for r in refs {
                        // Absent: not subscribed, or deleted since (its alert was).
                        let Some(t) = triggers.remove(&r.trigger) else {
                            continue;
                        };
                        let user = t.trigger.user_id;
                        self.hub.publish(
                            user,
                            LiveEvent::Trigger {
                                trigger_id: t.trigger.id,
                                alert_id: t.trigger.alert_id,
                                symbol: t.trigger.symbol,
                                bar_time: t.trigger.bar_time,
                                fired_at: t.trigger.fired_at,
                                recorded_at: t.recorded_at,
                                snapshot: t.trigger.snapshot,
                            },
                        );
                        published += 1;
                        if let Some(n) = r.notification.and_then(|id| notes.remove(&id)) {
                            self.hub.publish(
                                user,
                                LiveEvent::Notification {
                                    id: n.id,
                                    trigger_id: n.trigger_id,
                                    alert_id: n.alert_id,
                                    title: n.title,
                                    body: n.body,
                                    created_at: n.created_at,
                                },
                            );
                            published += 1;
                        }
                    }
                }
                EventNotice::BotOrders(pairs) => {
                    for (user, order) in pairs {
                        if let Some(o) = orders.remove(order) {
                            self.hub.publish(*user, LiveEvent::BotOrder(o));
                            published += 1;
                        }
                    }
                }
            }
        }
        metrics::counter!(crate::metrics_names::LIVE_RELAYED).increment(published as u64);
        Ok(published)
    }
}
