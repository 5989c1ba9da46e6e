//! Market data for alert-runner: where candles come from.
//!
//! - [`candle_file`]: candle CSV files (our header format and Binance's kline files),
//!   streamed row by row with precise errors; the basis of replay and backtests.
//! - [`source`]: the [`Source`] trait every live source implements (a task sending
//!   [`SourceEvent`]s), with [`replay`] (candle files as a market) and [`simulated`] (the
//!   embedded default's seeded market) here, and each exchange in a module of its own:
//!   [`binance`] (REST backfill + WebSocket kline streams), and [`ingest`] (candles pushed
//!   over HTTP by a trusted client), and [`bus`] (candles from a NATS JetStream stream that
//!   `alert-runner ingest` publishes to).

pub mod binance;
pub mod bus;
pub mod candle_file;
pub mod ingest;
pub mod replay;
pub mod simulated;
pub mod source;

pub use binance::{Binance, BinanceConfig};
pub use bus::{Bus, BusConfig};
pub use candle_file::{CandleFileError, CandleFileFormat, CandleReader, read_candles};
pub use ingest::{
    BatchError, FieldError, Ingest, IngestCandle, IngestConfig, IngestHandle, PushError, Pushed,
};
pub use replay::{Replay, ReplayConfig};
pub use simulated::{Simulated, SimulatedConfig};
pub use source::{Source, SourceError, SourceEvent, Wanted};
