//! The interface bot actions (`bot`, `bot_trigger`) are handed to.
//!
//! They travel through the same outbox as webhooks, so they survive crashes and are retried.
//! The trigger id is the idempotency key: a handler must treat a second call with the same
//! trigger id (a retry after a crash) as the same order.

use futures_util::future::BoxFuture;
use uuid::Uuid;

/// One bot action to carry out.
#[derive(Clone, Debug, PartialEq)]
pub struct BotAction {
    /// The trigger that fired it: the idempotency key (e.g. the client order id).
    pub trigger_id: Uuid,
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub bot_id: String,
    /// What the runner recorded: `action_type`, `dca_index`, `symbol`, `price`, the snapshot…
    pub payload: serde_json::Value,
}

/// Why a bot action did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotError {
    /// Worth retrying (exchange unreachable, rate limited).
    #[error("{0}")]
    Retry(String),
    /// Will never succeed (bot deleted, invalid order).
    #[error("{0}")]
    Permanent(String),
}

/// Carries out bot actions (the bots module implements it).
pub trait BotHandler: Send + Sync + 'static {
    fn handle(&self, action: BotAction) -> BoxFuture<'_, Result<(), BotError>>;
}
