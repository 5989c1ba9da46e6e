//! Live events for connected clients: each user's triggers, notifications and bot orders,
//! pushed the moment they are recorded.
//!
//! Every subscriber has a bounded buffer. Publishing never waits: a subscriber whose buffer is
//! full is dropped (its stream ends; the client reconnects and reads what it missed from the
//! API), so one slow client never holds up the runner or other clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Buffered events per subscriber by default.
pub const DEFAULT_BUFFER: usize = 256;

/// One event for a user's live connections.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// An alert fired (recorded once per (alert, bar)).
    Trigger {
        trigger_id: Uuid,
        alert_id: Uuid,
        symbol: String,
        bar_time: DateTime<Utc>,
        fired_at: DateTime<Utc>,
        /// When it was recorded: the time the store wrote as its `created_at` (as its
        /// notification's), which orders the user's events in the store.
        recorded_at: DateTime<Utc>,
        snapshot: serde_json::Value,
    },
    /// A `notify` action's notification.
    Notification {
        id: Uuid,
        trigger_id: Uuid,
        alert_id: Uuid,
        title: String,
        body: String,
        created_at: DateTime<Utc>,
    },
    /// A DCA bot's order filled (an order that closes its deal also closes the deal).
    BotOrder(alert_store::BotOrderRow),
}

impl LiveEvent {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            LiveEvent::Trigger { .. } => "trigger",
            LiveEvent::Notification { .. } => "notification",
            LiveEvent::BotOrder(_) => "bot_order",
        }
    }
}

type Subscribers = HashMap<Uuid, Vec<(u64, mpsc::Sender<Arc<LiveEvent>>)>>;

#[derive(Default)]
struct Inner {
    next_id: u64,
    subscribers: Subscribers,
    /// Closed while the events cannot reach it (its relay lost the database): a subscription
    /// ends at once, and its client catches up from the store when it reconnects.
    closed: bool,
}

/// The broadcast hub. Cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    inner: Arc<Mutex<Inner>>,
    buffer: usize,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new(DEFAULT_BUFFER)
    }
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("buffer", &self.buffer)
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}

/// A user's live stream; unsubscribes when dropped.
pub struct Subscription {
    receiver: mpsc::Receiver<Arc<LiveEvent>>,
    hub: LiveHub,
    user: Uuid,
    id: u64,
}

impl Subscription {
    /// The next event; `None` once the hub dropped this subscriber (it fell behind).
    pub async fn recv(&mut self) -> Option<Arc<LiveEvent>> {
        self.receiver.recv().await
    }

    /// The receiving end, for adapters (e.g. into a `Stream`).
    pub fn receiver(&mut self) -> &mut mpsc::Receiver<Arc<LiveEvent>> {
        &mut self.receiver
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.user, self.id);
    }
}

impl LiveHub {
    /// A hub whose subscribers buffer up to `buffer` events each.
    pub fn new(buffer: usize) -> Self {
        Self {
            inner: Arc::default(),
            buffer: buffer.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent whatever panicked while holding it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes to `user`'s events.
    pub fn subscribe(&self, user: Uuid) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        if inner.closed {
            // The sender is dropped here: the stream ends after what the store had.
            return Subscription {
                receiver: rx,
                hub: self.clone(),
                user,
                id,
            };
        }
        inner.subscribers.entry(user).or_default().push((id, tx));
        drop(inner);
        metrics::gauge!(crate::metrics_names::LIVE_SUBSCRIBERS).increment(1.0);
        Subscription {
            receiver: rx,
            hub: self.clone(),
            user,
            id,
        }
    }

    fn remove(&self, user: Uuid, id: u64) {
        let mut inner = self.lock();
        if let Some(list) = inner.subscribers.get_mut(&user) {
            let before = list.len();
            list.retain(|(i, _)| *i != id);
            if list.len() < before {
                metrics::gauge!(crate::metrics_names::LIVE_SUBSCRIBERS).decrement(1.0);
            }
            if list.is_empty() {
                inner.subscribers.remove(&user);
            }
        }
    }

    /// Sends `event` to `user`'s subscribers without waiting; returns how many received it.
    /// A subscriber whose buffer is full is dropped.
    pub fn publish(&self, user: Uuid, event: LiveEvent) -> usize {
        let mut inner = self.lock();
        let Some(list) = inner.subscribers.get_mut(&user) else {
            return 0;
        };
        let event = Arc::new(event);
        let mut delivered = 0;
        let before = list.len();
        list.retain(|(_, tx)| match tx.try_send(Arc::clone(&event)) {
            Ok(()) => {
                delivered += 1;
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(crate::metrics_names::LIVE_DROPPED).increment(1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        let removed = before - list.len();
        if list.is_empty() {
            inner.subscribers.remove(&user);
        }
        drop(inner);
        if removed > 0 {
            metrics::gauge!(crate::metrics_names::LIVE_SUBSCRIBERS).decrement(removed as f64);
        }
        delivered
    }

    /// Live subscribers over all users.
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.values().map(Vec::len).sum()
    }

    /// Whether `user` has a subscriber (a relay reads only their rows).
    pub fn has_subscribers(&self, user: Uuid) -> bool {
        self.lock().subscribers.contains_key(&user)
    }

    /// Ends every subscription (their clients reconnect and catch up from the store): events
    /// were missed. Returns how many ended.
    pub fn drop_all(&self) -> usize {
        let dropped: usize = {
            let mut inner = self.lock();
            let n = inner.subscribers.values().map(Vec::len).sum();
            inner.subscribers.clear();
            n
        };
        if dropped > 0 {
            metrics::gauge!(crate::metrics_names::LIVE_SUBSCRIBERS).decrement(dropped as f64);
            metrics::counter!(crate::metrics_names::LIVE_DROPPED).increment(dropped as u64);
        }
        dropped
    }

    /// Closes the hub (every subscription ends, new ones end at once) or opens it again.
    pub fn set_open(&self, open: bool) {
        self.lock().closed = !open;
        if !open {
            self.drop_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(n: u128) -> LiveEvent {
        LiveEvent::Notification {
            id: Uuid::from_u128(n),
            trigger_id: Uuid::from_u128(n),
            alert_id: Uuid::from_u128(1),
            title: "t".into(),
            body: format!("{n}"),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn events_reach_only_their_user() {
        let hub = LiveHub::new(8);
        let (alice, bob) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let mut a1 = hub.subscribe(alice);
        let mut a2 = hub.subscribe(alice);
        let mut b = hub.subscribe(bob);
        assert_eq!(hub.publish(alice, note(1)), 2);
        assert_eq!(*a1.recv().await.unwrap(), note(1));
        assert_eq!(*a2.recv().await.unwrap(), note(1));
        assert!(b.receiver().try_recv().is_err());
        assert_eq!(hub.publish(Uuid::from_u128(99), note(2)), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_and_others_keep_receiving() {
        let hub = LiveHub::new(2);
        let user = Uuid::from_u128(10);
        let mut slow = hub.subscribe(user);
        let mut fast = hub.subscribe(user);
        for n in 0..5 {
            hub.publish(user, note(n));
            assert_eq!(*fast.recv().await.unwrap(), note(n));
        }
        // The slow one got its buffer's worth, then its stream ended.
        assert_eq!(*slow.recv().await.unwrap(), note(0));
        assert_eq!(*slow.recv().await.unwrap(), note(1));
        assert!(slow.recv().await.is_none());
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes() {
        let hub = LiveHub::new(2);
        let user = Uuid::from_u128(10);
        let s = hub.subscribe(user);
        assert_eq!(hub.subscriber_count(), 1);
        drop(s);
        assert_eq!(hub.subscriber_count(), 0);
        assert_eq!(hub.publish(user, note(1)), 0);
    }

    #[tokio::test]
    async fn a_closed_hub_ends_every_subscription_until_opened() {
        let hub = LiveHub::new(4);
        let user = Uuid::from_u128(10);
        let mut before = hub.subscribe(user);
        assert!(hub.has_subscribers(user));
        hub.set_open(false);
        assert!(before.recv().await.is_none());
        let mut during = hub.subscribe(user);
        assert!(during.recv().await.is_none());
        assert!(!hub.has_subscribers(user));
        assert_eq!(hub.publish(user, note(1)), 0);
        hub.set_open(true);
        let mut after = hub.subscribe(user);
        assert_eq!(hub.publish(user, note(2)), 1);
        assert_eq!(*after.recv().await.unwrap(), note(2));
        assert_eq!(hub.drop_all(), 1);
        assert!(after.recv().await.is_none());
        assert_eq!(hub.subscriber_count(), 0);
    }

    #[test]
    fn events_serialise_with_their_type() {
        let json = serde_json::to_value(note(3)).unwrap();
        assert_eq!(json["type"], "notification");
        assert_eq!(json["body"], "3");
        assert_eq!(note(3).kind(), "notification");
    }
}
