//! Prometheus metric names of dispatch.

/// Finished attempts, labelled `kind` (webhook, bot) and `result` (delivered, retry, failed,
/// gone, disabled).
pub const ATTEMPTS: &str = "alert_runner_delivery_attempts_total";
/// Deliveries that reached a final state, labelled `kind` and `status` (delivered, failed,
/// cancelled).
pub const DELIVERIES: &str = "alert_runner_deliveries_total";
/// Attempt latency.
pub const ATTEMPT_SECONDS: &str = "alert_runner_delivery_attempt_seconds";
/// Pending deliveries in the outbox (refreshed every few seconds).
pub const BACKLOG: &str = "alert_runner_delivery_backlog";
/// Attempts in flight in this process.
pub const IN_FLIGHT: &str = "alert_runner_deliveries_in_flight";
/// Deliveries put back in the outbox because their receiver's host (or their user) had too
/// many in flight and too many waiting.
pub const DEFERRED: &str = "alert_runner_deliveries_deferred_total";
/// Deliveries that waited in memory for their host's or user's slot.
pub const PARKED: &str = "alert_runner_deliveries_parked_total";
/// Store errors met by the dispatcher.
pub const ERRORS: &str = "alert_runner_dispatch_errors_total";
/// Live (SSE/WebSocket) subscribers.
pub const LIVE_SUBSCRIBERS: &str = "alert_runner_live_subscribers";
/// Live subscribers dropped because they fell behind.
pub const LIVE_DROPPED: &str = "alert_runner_live_dropped_total";
/// Events the relay published to live subscribers (read from the database's announcements).
pub const LIVE_RELAYED: &str = "alert_runner_live_relayed_total";
/// 1 while the relay listens for the database's announcements, 0 while it reconnects (live
/// streams end and catch up from the store meanwhile).
pub const LIVE_RELAY_LISTENING: &str = "alert_runner_live_relay_listening";
