//! The evaluation engine: plain data in, plain data out — no clock, no async, no I/O.
//!
//! Alerts ([`AlertDefinition`], parsed from the seed-compatible JSON by [`parse`]) are
//! compiled over shared per-symbol state: one bounded history per (symbol, timeframe),
//! resampled from the fed timeframe, and one indicator instance per distinct (symbol,
//! timeframe, indicator, settings), however many alerts read it. [`Engine::on_candle`] takes
//! a candle update (in progress or closed) and returns [`Event`]s; only the alerts on the
//! updated symbol are touched.

mod book;
mod compile;
pub mod definition;
mod dry_run;
mod engine;
mod events;
pub mod parse;
mod series;
pub mod synthetic;
pub mod template;

pub use compile::AlertState;
pub use definition::*;
pub use dry_run::{DryCondition, DryRun, DryRunError};
pub use engine::{DataError, Engine, EngineConfig, EngineError, EngineState};
pub use events::{BarSnapshot, ConditionSnapshot, Event, Trigger};
pub use template::{Placeholder, RenderContext, Template, TemplateError};
