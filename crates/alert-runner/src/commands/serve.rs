//! `alert-runner serve` (everything in one process) and `alert-runner run` (the runner only):
//! market data → engine → store, plus `/healthz`, `/readyz` and `/metrics` for `serve`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use alert_marketdata::{Replay, ReplayConfig, Simulated, SimulatedConfig, Source};
use alert_runtime::{Readiness, Runner, RunnerConfig};
use alert_store::{Limits, Store, StoreOptions};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cli::{RunArgs, SourceKind};

/// Logs as JSON lines, or human-readable when stdout is a terminal (`--log-format`).
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

fn source(args: &RunArgs) -> anyhow::Result<Box<dyn Source>> {
    Ok(match args.source {
        SourceKind::Simulated => {
            tracing::warn!(
                "market data: SIMULATED (seeded random walk, symbols SIM*) — not real prices"
            );
            let mut config = SimulatedConfig::demo(args.seed);
            config.speed = args.sim_speed;
            Box::new(Simulated::new(config))
        }
        SourceKind::Replay => {
            anyhow::ensure!(
                !args.replay.is_empty(),
                "--source replay needs --replay PATH (files or directories)"
            );
            let replay = Replay::new(ReplayConfig {
                paths: args.replay.clone(),
                timeframe: args.feed,
                speed: args.replay_speed,
                looping: args.replay_loop,
            })?;
            tracing::info!(symbols = ?replay.symbols(), "market data: replay");
            Box::new(replay)
        }
        SourceKind::Binance => {
            let config = alert_marketdata::BinanceConfig {
                rest_url: args.binance_rest_url.clone(),
                ws_url: args.binance_ws_url.clone(),
                interval: args.feed,
                ..alert_marketdata::BinanceConfig::default()
            };
            tracing::info!(rest = %config.rest_url, ws = %config.ws_url, interval = %config.interval, "market data: binance");
            Box::new(alert_marketdata::Binance::new(config))
        }
    })
}

/// Creates the demo user's example alerts on a fresh store (embedded default only).
async fn seed_demo(store: &Store) -> anyhow::Result<()> {
    let demo_user = crate::commands::DEMO_USER;
    let existing = store
        .list_alerts(
            demo_user,
            &alert_store::AlertQuery {
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    if !existing.is_empty() {
        return Ok(());
    }
    let examples: serde_json::Value = serde_json::from_str(include_str!("demo_alerts.json"))?;
    let now = chrono::Utc::now();
    for alert in examples.as_array().into_iter().flatten() {
        let def = alert_engine::parse::parse_alert(alert)
            .map_err(|e| anyhow::anyhow!("demo alert: {e}"))?;
        let new = alert_store::NewAlert {
            name: def.name.clone(),
            symbol: def.symbol,
            base_timeframe: def.base_timeframe,
            definition: alert.clone(),
            status: alert_store::AlertStatus::Active,
        };
        store.create_alert(demo_user, &new, now).await?;
    }
    tracing::info!(user = %demo_user, "demo user and example alerts created");
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    if ready.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up")
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
fn on_shutdown_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutdown requested: stopping intake, flushing triggers");
        token.cancel();
    });
}

pub fn run(args: &RunArgs, http: bool) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, http))
}

async fn serve(args: &RunArgs, http: bool) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let store = Store::connect(
        &args.database.database_url,
        StoreOptions {
            migrate: !args.no_migrate,
            limits: Limits {
                per_symbol: args.max_alerts_per_symbol,
                per_user: args.max_alerts_per_user,
            },
            max_connections: 8,
        },
    )
    .await
    .with_context(|| format!("opening {}", args.database.database_url))?;
    tracing::info!(backend = ?store.kind(), "store open");
    if args
        .demo
        .unwrap_or(matches!(args.source, SourceKind::Simulated))
    {
        seed_demo(&store).await?;
    }

    let source = source(args)?;
    let config = RunnerConfig {
        poll: Duration::from_millis(args.poll_ms.max(10)),
        feed: source.timeframe(),
        live_only: !matches!(args.source, SourceKind::Replay),
        ..RunnerConfig::default()
    };
    let (runner, wanted, readiness) = Runner::start(store.clone(), config).await?;
    let cancel = CancellationToken::new();
    on_shutdown_signal(cancel.clone());

    let (tx, rx) = mpsc::channel(4096);
    let source_name = source.name();
    let source_task = tokio::spawn(source.run(tx, wanted, cancel.child_token()));
    let runner_task = tokio::spawn(runner.run(rx, cancel.clone()));

    let server = if http {
        let app = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(readiness)
            .route(
                "/metrics",
                get(move || std::future::ready(metrics.render())),
            );
        let addr: SocketAddr = args
            .listen
            .parse()
            .with_context(|| format!("--listen {:?}", args.listen))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "listening: /healthz /readyz /metrics");
        let token = cancel.clone();
        Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
        }))
    } else {
        None
    };

    let stats = runner_task.await.context("runner task")??;
    cancel.cancel();
    match source_task.await {
        Ok(Err(e)) => {
            tracing::error!(source = source_name, error = %e, "market data source stopped")
        }
        Err(e) => tracing::error!(source = source_name, error = %e, "market data source panicked"),
        Ok(Ok(())) => {}
    }
    if let Some(server) = server {
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    }
    store.close().await;
    tracing::info!(
        candles = stats.candles,
        triggers = stats.triggers_recorded,
        "stopped"
    );
    Ok(())
}
