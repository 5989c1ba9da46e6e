//! What every market data source provides: a task that sends candle updates into a channel,
//! told which symbols are wanted and how much history each needs.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use alert_core::{CandleUpdate, Symbol, Timeframe};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// One thing a source reports.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceEvent {
    /// A candle update of the feed timeframe (in progress or closed). Backfilled history is
    /// sent as closed candles, in order, before live updates.
    Candle {
        symbol: Symbol,
        update: CandleUpdate,
    },
    /// The backfill of `symbol` is complete: it is warm.
    Warm { symbol: Symbol },
    /// The source reconnected (for metrics).
    Reconnected,
}

/// The symbols a source should deliver, with how many closed bars of history each needs at
/// start (for indicator warm-up).
pub type Wanted = BTreeMap<Symbol, usize>;

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Data(#[from] crate::CandleFileError),
    #[error("{0}")]
    Other(String),
}

/// A market data source. `run` ends when the source is exhausted (a replay without looping),
/// on cancellation, or on an unrecoverable error; live sources retry transient errors
/// themselves.
pub trait Source: Send + 'static {
    /// A short name for logs and metrics (`replay`, `simulated`, `binance`).
    fn name(&self) -> &'static str;

    /// The timeframe of the candles it sends.
    fn timeframe(&self) -> Timeframe;

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<SourceEvent>,
        wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;
}
