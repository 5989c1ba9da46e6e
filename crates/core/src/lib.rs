//! Domain types shared by every alert-runner crate.
//!
//! Everything here is plain data with parsing at the edges: a [`Timeframe`],
//! [`Symbol`] or [`Candle`] that exists is well formed.

mod candle;
mod rng;
mod shard;
mod symbol;
mod time;
mod timeframe;

pub use candle::{Candle, CandleError, CandleUpdate, PriceSource};
pub use rng::SplitMix64;
pub use shard::{MAX_SHARDS, Shard, ShardError, shard_of, symbol_hash};
pub use symbol::{Symbol, SymbolError};
pub use time::BarTime;
pub use timeframe::{Timeframe, TimeframeError};
