//! The evaluation engine: plain data in, plain data out — no clock, no async, no I/O.
//!
//! Alerts ([`AlertDefinition`], parsed from the seed-compatible JSON by [`parse`]) are
//! compiled over shared per-symbol state: one bounded history per (symbol, timeframe), resampled
//! from the fed timeframe, and one indicator instance per distinct (symbol, timeframe,
//! indicator, settings), however many alerts read it.

pub mod definition;
pub mod parse;
pub mod template;

pub use definition::*;
pub use template::{Placeholder, RenderContext, Template, TemplateError};
