//! `alert-runner ingest`: takes the market feed once (Binance, a replay, or the simulated
//! market, built as `serve` builds them) and publishes every candle update to the candle bus
//! (a NATS JetStream stream) for runners started with `--source bus`.
//!
//! Symbols: `--symbols`, plus, with `--database-url`, the symbols of the store's active
//! alerts, re-read every `--poll-ms` (a new alert's symbol is taken without a restart; a
//! symbol no alert uses any more keeps being taken until the restart). Binance follows that
//! set (each symbol backfilled with `--history` closed bars, so runners warm up from the
//! stream); a replay or the simulated market publishes what it plays, only the set's symbols
//! when a set is given.

use std::collections::HashMap;
use std::time::Duration;

use alert_core::Symbol;
use alert_marketdata::bus::{self, Publisher, StreamSettings};
use alert_marketdata::{SourceEvent, Wanted};
use alert_store::{AlertStatus, Limits, Store, StoreOptions};
use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cli::{IngestArgs, IngestSourceKind, SourceKind};
use crate::commands::serve::{init_logging, market_source, on_shutdown_signal, redact_url};

/// How often progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

pub fn run(args: &IngestArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(ingest(args))
}

async fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        bus::valid_name(&args.bus_stream),
        "--bus-stream {:?}: expected 1 to 64 printable characters without spaces, '.', '*', '>', '/' or '\\'",
        args.bus_stream
    );
    anyhow::ensure!(
        args.bus_max_age >= Duration::from_secs(60),
        "--bus-max-age must be at least 1m (runners read their warm-up history from the stream)"
    );
    let followed = !args.symbols.is_empty() || args.database_url.is_some();
    anyhow::ensure!(
        followed || args.source != IngestSourceKind::Binance,
        "ingest --source binance needs symbols: --symbols BTCUSDT,ETHUSDT and/or --database-url (the active alerts' symbols)"
    );
    let kind = match args.source {
        IngestSourceKind::Binance => SourceKind::Binance,
        IngestSourceKind::Replay => SourceKind::Replay,
        IngestSourceKind::Simulated => SourceKind::Simulated,
    };
    let source = market_source(kind, &args.market)?;
    let feed = source.timeframe();

    let client = bus::connect(&args.bus, "alert-runner ingest").await?;
    let js = bus::async_nats::jetstream::new(client.clone());
    let settings = StreamSettings {
        name: args.bus_stream.clone(),
        subjects: args.bus_subjects.clone(),
        max_age: args.bus_max_age,
        duplicate_window: bus::DUPLICATE_WINDOW,
    };
    let mut stream = bus::ensure_stream(&js, &settings).await?;
    match stream.info().await {
        Ok(info) => {
            let c = &info.config;
            if c.max_age != settings.max_age || c.duplicate_window < Duration::from_secs(120) {
                tracing::warn!(stream = %c.name, max_age_s = c.max_age.as_secs(), duplicate_window_s = c.duplicate_window.as_secs(), "the existing stream's limits differ from --bus-max-age / the 5 min duplicate window; it is used as it is");
            }
            tracing::info!(bus = %args.bus, stream = %c.name, subjects = ?c.subjects, messages = info.state.messages, max_age_s = c.max_age.as_secs(), duplicate_window_s = c.duplicate_window.as_secs(), feed = %feed, source = source.name(), "ingest: publishing to the candle bus");
        }
        Err(e) => anyhow::bail!("reading the stream {}: {e}", args.bus_stream),
    }

    // The symbols taken: --symbols, plus the store's active alerts' (followed).
    let fixed: Wanted = args.symbols.iter().map(|s| (*s, args.history)).collect();
    let (wanted_tx, wanted_rx) = watch::channel(fixed.clone());
    let cancel = CancellationToken::new();
    on_shutdown_signal(cancel.clone());
    let watcher = match &args.database_url {
        Some(url) => {
            let store = Store::connect(
                url,
                StoreOptions {
                    migrate: false,
                    limits: Limits::default(),
                    max_connections: 2,
                },
            )
            .await
            .with_context(|| format!("opening {}", redact_url(url)))?;
            let mut symbols = AlertSymbols::default();
            symbols.poll(&store).await?;
            publish_wanted(&wanted_tx, &fixed, &symbols, args.history);
            let poll = Duration::from_millis(args.poll_ms.max(100));
            let history = args.history;
            let token = cancel.clone();
            Some(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = token.cancelled() => break,
                    }
                    match symbols.poll(&store).await {
                        Ok(()) => publish_wanted(&wanted_tx, &fixed, &symbols, history),
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the alerts' symbols failed; retrying")
                        }
                    }
                }
                store.close().await;
            }))
        }
        None => None,
    };
    if followed {
        tracing::info!(symbols = ?wanted_rx.borrow().keys().collect::<Vec<_>>(), "ingest: symbols");
    }

    let (tx, mut rx) = mpsc::channel(4096);
    let source_name = source.name();
    let source_task = tokio::spawn(source.run(tx, wanted_rx.clone(), cancel.child_token()));
    let mut publisher = Publisher::new(js, args.bus_subjects.clone(), args.bus_max_in_flight);
    let mut progress = tokio::time::interval(PROGRESS_EVERY);
    progress.tick().await;
    let mut skipped = 0u64;
    let mut failure = None;
    loop {
        let event = tokio::select! {
            event = rx.recv() => event,
            _ = progress.tick() => {
                let s = publisher.stats();
                tracing::info!(stored = s.stored, duplicates = s.duplicates, retries = s.retries, "ingest: progress");
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            SourceEvent::Candle { symbol, update } => {
                if followed && !wanted_rx.borrow().contains_key(&symbol) {
                    skipped += 1;
                    continue;
                }
                if let Err(e) = publisher.publish(symbol, feed, &update).await {
                    failure = Some(e);
                    break;
                }
            }
            SourceEvent::Warm { symbol } => tracing::info!(%symbol, "ingest: history published"),
            SourceEvent::Reconnected => tracing::info!("ingest: the market source reconnected"),
        }
    }
    cancel.cancel();
    if failure.is_none()
        && let Err(e) = publisher.flush().await
    {
        failure = Some(e);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
    if let Some(task) = watcher {
        let _ = task.await;
    }
    match source_task.await {
        Ok(Err(e)) => {
            tracing::error!(source = source_name, error = %e, "market data source stopped")
        }
        Err(e) => tracing::error!(source = source_name, error = %e, "market data source panicked"),
        Ok(Ok(())) => {}
    }
    let s = publisher.stats();
    tracing::info!(
        stored = s.stored,
        duplicates = s.duplicates,
        retries = s.retries,
        skipped,
        "ingest: stopped"
    );
    if let Some(e) = failure {
        anyhow::bail!("publishing to the candle bus: {e}");
    }
    Ok(())
}

fn publish_wanted(
    tx: &watch::Sender<Wanted>,
    fixed: &Wanted,
    symbols: &AlertSymbols,
    history: usize,
) {
    let mut wanted = fixed.clone();
    for symbol in symbols.by_alert.values() {
        wanted.entry(*symbol).or_insert(history);
    }
    tx.send_if_modified(|current| {
        // Symbols are added, never dropped while running (a runner may still read them).
        let before = current.len();
        for (s, n) in &wanted {
            current.entry(*s).or_insert(*n);
        }
        if current.len() != before {
            tracing::info!(
                symbols = current.len(),
                "ingest: new symbols from the alerts"
            );
            true
        } else {
            false
        }
    });
}

/// The symbols of the store's active alerts, kept up to date from its change feed.
#[derive(Default)]
struct AlertSymbols {
    by_alert: HashMap<uuid::Uuid, Symbol>,
    watermark: Option<DateTime<Utc>>,
}

impl AlertSymbols {
    async fn poll(&mut self, store: &Store) -> anyhow::Result<()> {
        let since = self.watermark.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        let changes = store
            .alert_changes(since, Duration::from_secs(5))
            .await
            .context("reading the alerts' symbols")?;
        for row in changes.changed {
            match (row.status, Symbol::new(&row.symbol)) {
                (AlertStatus::Active, Ok(symbol)) => {
                    self.by_alert.insert(row.id, symbol);
                }
                _ => {
                    self.by_alert.remove(&row.id);
                }
            }
        }
        for id in changes.deleted {
            self.by_alert.remove(&id);
        }
        if let Some(w) = changes.watermark {
            self.watermark = Some(self.watermark.map_or(w, |old| old.max(w)));
        }
        Ok(())
    }
}
