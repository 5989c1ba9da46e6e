//! Dispatch: what a fired alert does after it is recorded.
//!
//! - [`sign`]: Standard Webhooks signatures and `whsec_` secrets.
//! - [`ssrf`]: the address policy every webhook URL passes, at alert creation and before each
//!   connection (the checked address is the one connected to).
//! - [`retry`]: the retry schedule, jitter and `Retry-After`.
//! - [`webhook`]: one HTTP attempt and its classification.
//! - [`dispatcher`]: workers that drain the store's outbox, surviving crashes (leases).
//! - [`live`]: the in-process broadcast of notifications to connected clients.
//! - [`relay`]: on PostgreSQL, the hub fed from the database's announcements (any process's
//!   events reach every API instance).
//! - [`bots`]: the interface bot actions are handed to.

pub mod bots;
pub mod dispatcher;
pub mod live;
pub mod metrics_names;
pub mod relay;
pub mod retry;
pub mod sign;
pub mod ssrf;
pub mod webhook;

pub use bots::{BotAction, BotError, BotHandler};
pub use dispatcher::{DispatchConfig, DispatchCounters, DispatchError, Dispatcher, Waker};
pub use live::{LiveEvent, LiveHub, Subscription};
pub use relay::EventRelay;
pub use retry::RetryPolicy;
pub use sign::{Secret, generate_secret};
pub use ssrf::{AddressPolicy, SsrfError};
