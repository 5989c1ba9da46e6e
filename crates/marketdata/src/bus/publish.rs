//! Publishing candle updates to the stream: each with its message id, each PubAck awaited,
//! at most `max_in_flight` unacknowledged at a time.

use std::collections::VecDeque;
use std::time::Duration;

use alert_core::{CandleUpdate, Symbol, Timeframe};
use async_nats::jetstream;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::{BusError, Subjects, encode, msg_id};

/// Publishes in flight (sent, PubAck not yet received) by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Sends of one message before the publisher gives up (about a minute of waits between
/// them): a NATS server away for longer stops `ingest`, whose supervisor restarts it.
const MAX_ATTEMPTS: u32 = 10;
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// What was published so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Messages the stream stored.
    pub stored: u64,
    /// Messages the stream dropped as duplicates (their id was seen within the window).
    pub duplicates: u64,
    /// Sends repeated after a failed or missing PubAck.
    pub retries: u64,
}

struct Pending {
    subject: String,
    id: String,
    payload: Bytes,
    ack: PublishAckFuture,
}

/// Publishes candle updates with bounded in-flight acknowledgements.
pub struct Publisher {
    js: jetstream::Context,
    subjects: Subjects,
    max_in_flight: usize,
    in_flight: VecDeque<Pending>,
    stats: PublishStats,
}

impl Publisher {
    pub fn new(js: jetstream::Context, subjects: Subjects, max_in_flight: usize) -> Self {
        Self {
            js,
            subjects,
            max_in_flight: max_in_flight.max(1),
            in_flight: VecDeque::new(),
            stats: PublishStats::default(),
        }
    }

    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Sends one update (waiting first for the oldest PubAck when `max_in_flight` are
    /// unacknowledged). Fails when a message could not be stored after its retries.
    pub async fn publish(
        &mut self,
        symbol: Symbol,
        tf: Timeframe,
        update: &CandleUpdate,
    ) -> Result<(), BusError> {
        while self.in_flight.len() >= self.max_in_flight {
            self.settle_oldest().await?;
        }
        let subject = self.subjects.subject(symbol, tf);
        let id = msg_id(symbol, tf, update);
        let payload = Bytes::from(encode(symbol, tf, update));
        let ack = self.send(&subject, &id, payload.clone()).await?;
        self.in_flight.push_back(Pending {
            subject,
            id,
            payload,
            ack,
        });
        Ok(())
    }

    /// Waits for every PubAck outstanding.
    pub async fn flush(&mut self) -> Result<(), BusError> {
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// One send, retried while the client cannot even queue it.
    async fn send(
        &mut self,
        subject: &str,
        id: &str,
        payload: Bytes,
    ) -> Result<PublishAckFuture, BusError> {
        let mut wait = RETRY_FIRST;
        let mut attempt = 1;
        loop {
            let message = PublishMessage::build()
                .payload(payload.clone())
                .message_id(id);
            match self.js.send_publish(subject.to_owned(), message).await {
                Ok(ack) => return Ok(ack),
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(%subject, %id, error = %e, "publish failed; retrying");
                    self.stats.retries += 1;
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => return Err(BusError::nats("publish", format!("{subject}: {e}"))),
            }
        }
    }

    /// Awaits the oldest PubAck; a failed or missing one is sent again with the same message
    /// id (the stream drops it if the first send was stored after all).
    async fn settle_oldest(&mut self) -> Result<(), BusError> {
        let Some(Pending {
            subject,
            id,
            payload,
            mut ack,
        }) = self.in_flight.pop_front()
        else {
            return Ok(());
        };
        let mut wait = RETRY_FIRST;
        let mut attempt = 1;
        loop {
            match ack.await {
                Ok(ack) => {
                    if ack.duplicate {
                        self.stats.duplicates += 1;
                    } else {
                        self.stats.stored += 1;
                    }
                    return Ok(());
                }
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::warn!(%subject, %id, error = %e, "no PubAck; sending again");
                    self.stats.retries += 1;
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                    ack = self.send(&subject, &id, payload.clone()).await?;
                }
                Err(e) => return Err(BusError::nats("PubAck", format!("{subject} {id}: {e}"))),
            }
        }
    }
}
