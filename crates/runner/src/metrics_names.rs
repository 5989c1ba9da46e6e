//! Prometheus metric names (one place, so dashboards and code agree).

pub const CANDLES: &str = "alert_runner_candles_total";
pub const CANDLES_REJECTED: &str = "alert_runner_candles_rejected_total";
pub const EVALUATION_SECONDS: &str = "alert_runner_evaluation_seconds";
pub const ALERTS_ACTIVE: &str = "alert_runner_alerts_active";
pub const TRIGGERS: &str = "alert_runner_triggers_total";
pub const DATA_LAG_SECONDS: &str = "alert_runner_data_lag_seconds";
pub const RECONNECTS: &str = "alert_runner_source_reconnects_total";
pub const ERRORS: &str = "alert_runner_errors_total";
