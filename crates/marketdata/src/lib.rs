//! Market data for alert-runner: where candles come from.
//!
//! - [`candle_file`]: candle CSV files (our header format and Binance's kline files),
//!   streamed row by row with precise errors; the basis of replay and backtests.

pub mod candle_file;

pub use candle_file::{CandleFileError, CandleFileFormat, CandleReader, read_candles};
