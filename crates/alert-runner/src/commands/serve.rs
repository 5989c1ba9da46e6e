//! `alert-runner serve` (everything in one process) and `alert-runner run` (the runner only):
//! market data → engine → store, plus `/healthz`, `/readyz` and `/metrics` for `serve`, and
//! `POST /v1/candles` with the ingest source.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use alert_dispatch::{Dispatcher, LiveHub};
use alert_marketdata::ingest::MAX_CANDLES_PER_REQUEST;
use alert_marketdata::{
    Ingest, IngestConfig, IngestHandle, Replay, ReplayConfig, Simulated, SimulatedConfig, Source,
};
use alert_runtime::marketdata::Wanted;
use alert_runtime::{MarketHandle, Outlets, Readiness, Runner, RunnerConfig, RunnerStats};
use alert_store::{BackendKind, Limits, Store, StoreOptions};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cli::{RunArgs, SourceKind};

/// Logs as JSON lines, or human-readable when stdout is a terminal (`--log-format`).
pub(crate) fn init_logging(format: &str) {
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
    if args.source == SourceKind::Bus {
        return bus_source(args);
    }
    market_source(args.source, &args.market)
}

/// `--source bus`: the candle bus's durable consumer.
fn bus_source(args: &RunArgs) -> anyhow::Result<Box<dyn Source>> {
    let config = bus_config(args)?;
    tracing::info!(bus = %config.url, stream = %config.stream, durable = %config.durable, feed = %config.timeframe, replayed = args.bus.replayed, "market data: candle bus");
    Ok(Box::new(alert_marketdata::Bus::new(config)))
}

fn bus_config(args: &RunArgs) -> anyhow::Result<alert_marketdata::BusConfig> {
    let url = args.bus.url.as_deref().map(str::trim).unwrap_or("");
    anyhow::ensure!(
        !url.is_empty(),
        "--source bus needs --bus nats://HOST:PORT (or ALERT_BUS_URL)"
    );
    let durable = args.bus.durable.clone().unwrap_or_else(|| {
        alert_marketdata::bus::default_durable(
            args.market.feed,
            args.shard.map(|s| (s.index, s.count)),
        )
    });
    for (what, name) in [
        ("--bus-stream", &args.bus.stream),
        ("--bus-durable", &durable),
    ] {
        anyhow::ensure!(
            alert_marketdata::bus::valid_name(name),
            "{what} {name:?}: expected 1 to 64 printable characters without spaces, '.', '*', '>', '/' or '\\'"
        );
    }
    Ok(alert_marketdata::BusConfig {
        url: url.to_owned(),
        stream: args.bus.stream.clone(),
        subjects: args.bus.subjects.clone(),
        durable,
        timeframe: args.market.feed,
    })
}

/// `--bus` belongs to `--source bus`: refused with any other source rather than ignored.
fn check_bus(args: &RunArgs) -> anyhow::Result<()> {
    // An API instance reads no market: the shards' settings it may share (one environment
    // for every process) are not its own.
    if args.no_runner {
        return Ok(());
    }
    if args.source == SourceKind::Bus {
        return bus_config(args).map(drop);
    }
    if args.source != SourceKind::Bus && args.bus.url.is_some() {
        anyhow::bail!(
            "--bus (ALERT_BUS_URL) is read by --source bus only: add --source bus, or unset it for --source {}",
            format!("{:?}", args.source).to_lowercase()
        );
    }
    Ok(())
}

/// A market source of `kind` (simulated, replay or binance).
pub(crate) fn market_source(
    kind: SourceKind,
    args: &crate::cli::MarketArgs,
) -> anyhow::Result<Box<dyn Source>> {
    Ok(match kind {
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
                paths: args.replay.to_vec(),
                timeframe: args.feed,
                speed: args.replay_speed,
                looping: args.replay_loop,
            })?;
            tracing::info!(symbols = ?replay.symbols(), "market data: replay");
            Box::new(replay)
        }
        SourceKind::Binance => {
            let mut config = alert_marketdata::BinanceConfig {
                rest_url: args.binance_rest_url.to_owned(),
                ws_url: args.binance_ws_url.to_owned(),
                interval: args.feed,
                ..alert_marketdata::BinanceConfig::default()
            };
            // Tests only (tests/chaos_market.rs): an accelerated clock shared with a local
            // exchange. Deliberately not a flag, so it stays out of --help.
            use alert_marketdata::binance::{Clock, TEST_CLOCK_ENV};
            if let Ok(spec) = std::env::var(TEST_CLOCK_ENV) {
                config.clock = Clock::from_test_spec(&spec)?;
                tracing::warn!(%spec, "market data: binance on a TEST clock ({TEST_CLOCK_ENV}), not the system clock");
            }
            tracing::info!(rest = %config.rest_url, ws = %config.ws_url, interval = %config.interval, "market data: binance");
            Box::new(alert_marketdata::Binance::new(config))
        }
        SourceKind::Ingest => anyhow::bail!("the ingest source is built by ingest_source"),
        SourceKind::Bus => anyhow::bail!("the bus source is built by bus_source"),
    })
}

/// With `--source ingest`: the source, and the handle `POST /v1/candles` feeds it through.
fn ingest_source(args: &RunArgs, http: bool) -> anyhow::Result<Option<(Ingest, IngestHandle)>> {
    if args.source != SourceKind::Ingest {
        return Ok(None);
    }
    anyhow::ensure!(
        http,
        "--source ingest receives candles over HTTP (POST /v1/candles): use `alert-runner serve`"
    );
    check_service_key(args)?;
    let (source, handle) = Ingest::new(IngestConfig::new(args.market.feed));
    Ok(Some((source, handle)))
}

/// The service key `--source ingest` requires (the API checks it on `POST /v1/candles`).
fn check_service_key(args: &RunArgs) -> anyhow::Result<()> {
    let key = args.service_key.as_deref().map(str::trim).unwrap_or("");
    anyhow::ensure!(
        !key.is_empty(),
        "--source ingest needs a service key for POST /v1/candles: set ALERT_SERVICE_KEY (or --service-key) to a long random string, e.g. `openssl rand -hex 32`"
    );
    if key.len() < 16 {
        tracing::warn!(
            "the service key is shorter than 16 characters: use a long random string in production"
        );
    }
    Ok(())
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

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// A database URL fit to print: the password (in the user info or a `password=` query
/// parameter) replaced by `***`; scheme, user, host, port and database kept.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

/// `GET /metrics`: the Prometheus text, behind `Authorization: Bearer <token>` when a token
/// is configured (compared in constant time).
pub(crate) fn metrics_route(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    token: Option<&str>,
) -> axum::routing::MethodRouter {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    get(move |headers: axum::http::HeaderMap| {
        let allowed = match &token {
            None => true,
            Some(expected) => alert_api::auth::bearer_token(&headers).is_ok_and(|given| {
                alert_dispatch::sign::constant_time_eq(given.as_bytes(), expected.as_bytes())
            }),
        };
        let response = if allowed {
            handle.render().into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need Authorization: Bearer <ALERT_METRICS_TOKEN>",
            )
                .into_response()
        };
        std::future::ready(response)
    })
}

/// `/healthz`, `/readyz` and `/metrics`: what `serve` answers beside its API, and `run` with
/// `--metrics-listen` alone.
fn ops_routes(
    readiness: Readiness,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    token: Option<&str>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .route("/metrics", metrics_route(metrics, token))
}

/// Serves `app` on `listener` until `cancel`, then lets the open requests finish.
fn spawn_server(
    listener: tokio::net::TcpListener,
    app: Router,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
    })
}

async fn readyz(State(ready): State<Readiness>) -> impl IntoResponse {
    if ready.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "warming up")
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub(crate) fn on_shutdown_signal(token: CancellationToken) {
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
    // Configuration errors first, before anything is opened.
    check_bus(args)?;
    check_shard(args, http)?;
    let ingest = if args.no_runner {
        None
    } else {
        ingest_source(args, http)?
    };
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        // Round times as a histogram (cumulative buckets) rather than the default summary
        // (quantiles over a sliding window): a whole run's p99 can be read off it.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(alert_runtime::ROUND_SECONDS.to_owned()),
            alert_runtime::ROUND_SECONDS_BUCKETS,
        )
        .context("configuring the metrics recorder")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                alert_runtime::ROUND_RECORDED_SECONDS.to_owned(),
            ),
            alert_runtime::ROUND_SECONDS_BUCKETS,
        )
        .context("configuring the metrics recorder")?
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
    .with_context(|| format!("opening {}", redact_url(&args.database.database_url)))?;
    tracing::info!(backend = ?store.kind(), "store open");
    let demo = args
        .demo
        .unwrap_or(matches!(args.source, SourceKind::Simulated));
    if demo {
        seed_demo(&store).await?;
    }

    let (source, ingest): (Option<Box<dyn Source>>, _) = match ingest {
        Some((source, api)) => (Some(Box::new(source)), Some(api)),
        None if args.no_runner => (None, None),
        None => (Some(source(args)?), None),
    };
    let feed = source
        .as_ref()
        .map_or(args.market.feed, |source| source.timeframe());
    let config = RunnerConfig {
        poll: Duration::from_millis(args.poll_ms.max(10)),
        feed,
        // Replayed data is history by design (also when a replay feeds the bus).
        live_only: !(args.source == SourceKind::Replay
            || (args.source == SourceKind::Bus && args.bus.replayed)),
        ..RunnerConfig::default()
    };
    let live = LiveHub::default();
    // Who feeds the API's live events. SQLite: this process's runner and bot handler, as they
    // record. PostgreSQL: the relay, from the database's announcements of what any process
    // recorded (other shards, dispatchers, API instances) in commit order; this process's
    // parts then publish nothing themselves, or events would arrive twice and out of order.
    let relayed = store.kind() == BackendKind::Postgres;
    let local_live = (!relayed).then(|| live.clone());
    // One bot handler for the dispatcher and the API's "close deal now".
    let runner_changes = alert_dispatch::Waker::default();
    let bots = alert_bots::live::StoreBots::with_live(
        store.clone(),
        local_live.clone(),
        Some(runner_changes.clone()),
    );
    // serve runs the dispatcher too, unless told that `dispatch` processes send.
    let dispatcher = if http && !args.no_dispatch {
        let config = args.dispatch.config()?;
        args.dispatch.log(&config);
        Some(Dispatcher::new(
            store.clone(),
            config,
            Some(bots.clone() as std::sync::Arc<dyn alert_dispatch::BotHandler>),
        )?)
    } else {
        None
    };
    let outlets = Outlets {
        live: local_live,
        dispatcher: dispatcher.as_ref().map(Dispatcher::waker),
        changes: Some(runner_changes),
    };
    let cancel = CancellationToken::new();
    on_shutdown_signal(cancel.clone());
    // The dispatcher stops after the runner has flushed its last triggers.
    let dispatch_cancel = CancellationToken::new();
    let dispatch_task = dispatcher.map(|d| tokio::spawn(d.run(dispatch_cancel.clone())));
    let relay_task = if http && relayed {
        let (listening, listened) = tokio::sync::oneshot::channel();
        let relay = alert_dispatch::EventRelay::new(store.clone(), live.clone());
        let task = tokio::spawn(relay.run(cancel.clone(), Some(listening)));
        // Streams opened before it listens would end at once: wait for it (a while; it
        // keeps trying after, and streams end until it listens).
        if tokio::time::timeout(Duration::from_secs(10), listened)
            .await
            .is_err()
        {
            tracing::warn!("live events: not listening yet; streams end until it does");
        }
        Some(task)
    } else {
        None
    };

    // With ingest, the largest request fits whole, with room for the next.
    let capacity = if ingest.is_some() {
        2 * MAX_CANDLES_PER_REQUEST
    } else {
        4096
    };
    let readiness = Readiness::default();
    let term = RunnerTerm {
        store: store.clone(),
        config: RunnerConfig {
            shard: args.shard,
            ..config
        },
        outlets,
        readiness: readiness.clone(),
        capacity,
    };
    // Unsharded: one runner, started now (the API asks it about market data). Sharded: a
    // runner per term of ownership of the shard's lock, none while standing by.
    let (market, runner_task): (Option<MarketHandle>, _) = match (source, args.shard) {
        // An API instance: it serves until told to stop.
        (None, _) => {
            // Ready as soon as it answers: it has no market to warm up.
            readiness.set(true);
            let cancel = cancel.clone();
            let task: RunnerTask<'_> = Box::pin(async move {
                cancel.cancelled().await;
                Ok(None)
            });
            (None, task)
        }
        (Some(source), None) => {
            let (mut runner, wanted) = term.start().await?;
            let market = runner.market_handle();
            let task = tokio::spawn(term.run(runner, wanted, source, cancel.clone()));
            let task: RunnerTask<'_> =
                Box::pin(async move { task.await.context("runner task")?.map(Some) });
            (Some(market), task)
        }
        (Some(source), Some(shard)) => {
            let store = store.clone();
            let cancel = cancel.clone();
            let mut first = Some(source);
            let task: RunnerTask<'_> = Box::pin(async move {
                alert_runtime::shard::run_as_owner(
                    &store,
                    shard,
                    alert_runtime::shard::OwnershipConfig::default(),
                    cancel,
                    |term_cancel| {
                        // A fresh source each term: it backfills (binance) or starts over
                        // (replay) what the runner needs.
                        let source = first.take().map_or_else(|| self::source(args), Ok);
                        let term = term.clone();
                        async move {
                            let (runner, wanted) = term.start().await?;
                            term.run(runner, wanted, source?, term_cancel).await
                        }
                    },
                )
                .await
            });
            (None, task)
        }
    };

    let ops = ops_routes(readiness.clone(), metrics, args.metrics_token.as_deref());
    let server = if http {
        let mut app = ops;
        let jwt_secret = crate::commands::token::jwt_secret(args.jwt_secret.as_deref())?;
        // The dashboard's "demo token" button: only on the embedded default (SQLite, the
        // generated secret, the demo user seeded), never with a configured secret.
        let demo_token = (demo && args.jwt_secret.is_none() && store.kind() == BackendKind::Sqlite)
            .then(|| alert_api::demo::DemoToken {
                jwt_secret: jwt_secret.clone(),
                user: crate::commands::DEMO_USER,
                ttl: Duration::from_secs(24 * 3600),
            });
        let api_state = alert_api::ApiState {
            store: store.clone(),
            auth: std::sync::Arc::new(
                alert_api::Auth::new(&jwt_secret, args.service_key.clone())
                    .with_issuer(args.jwt_issuer.as_deref()),
            ),
            rate: std::sync::Arc::new(alert_api::RateLimiter::new(
                args.rate_limit,
                (args.rate_limit * 2.0).ceil().clamp(1.0, 1e6) as u32,
            )),
            live: live.clone(),
            policy: args.dispatch.webhooks.address_policy(),
            secret_grace: args.webhook_secret_grace,
            market,
            ingest,
            bots,
        };
        app = app.merge(alert_api::router(
            api_state,
            &alert_api::HttpConfig {
                cors_origins: args.cors_origins.clone(),
                request_timeout: (args.request_timeout_ms > 0)
                    .then(|| Duration::from_millis(args.request_timeout_ms)),
                max_in_flight: args.max_requests_in_flight,
                demo_token: demo_token.clone(),
            },
        ));
        if !args.no_dashboard {
            app = app.merge(alert_web::router());
        }
        let addr: SocketAddr = args
            .listen
            .parse()
            .with_context(|| format!("--listen {:?}", args.listen))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        if matches!(args.source, SourceKind::Ingest) {
            tracing::info!(%addr, "listening: /v1 API (POST /v1/candles for ingest), /openapi.json, /healthz /readyz /metrics");
        } else {
            tracing::info!(%addr, "listening: /v1 API, /openapi.json, /healthz /readyz /metrics");
        }
        if !args.no_dashboard {
            let local = listener.local_addr().unwrap_or(addr);
            let shown = if local.ip().is_unspecified() {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
            } else {
                local
            };
            tracing::info!(
                demo_token = demo_token.is_some(),
                "dashboard: http://{shown}/"
            );
            if demo_token.is_some() && !local.ip().is_loopback() {
                tracing::warn!(%addr, "the dashboard's demo token is served to anyone who can reach this address (embedded default): listen on 127.0.0.1, or set SUPABASE_JWT_SECRET or --demo false");
            }
        }
        Some(spawn_server(listener, app, cancel.clone()))
    } else if let Some(listen) = &args.metrics_listen {
        // run: the operations endpoints only.
        let addr: SocketAddr = listen.parse().with_context(|| {
            format!("--metrics-listen {listen:?}: expected an address such as 127.0.0.1:9090")
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "listening: /healthz /readyz /metrics");
        Some(spawn_server(listener, ops, cancel.clone()))
    } else {
        None
    };

    let stats = runner_task.await;
    cancel.cancel();
    readiness.set(false);
    dispatch_cancel.cancel();
    if let Some(task) = relay_task {
        let _ = task.await;
    }
    if let Some(task) = dispatch_task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "dispatcher panicked");
    }
    let stats = stats?.unwrap_or_default();
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

/// `--shard` needs PostgreSQL (the shards share one database and take their ownership lock
/// there) and a source each shard can open itself.
fn check_shard(args: &RunArgs, http: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        !http || args.metrics_listen.is_none(),
        "--metrics-listen is for `run`: serve answers /metrics on --listen"
    );
    if args.no_runner {
        anyhow::ensure!(
            http,
            "--no-runner is for `serve` (an API instance): `run` is the runner"
        );
        anyhow::ensure!(
            BackendKind::of_url(&args.database.database_url) == Some(BackendKind::Postgres),
            "--no-runner needs PostgreSQL (DATABASE_URL postgres://…): an API instance streams the live events other processes record through the database; {} is SQLite",
            redact_url(&args.database.database_url)
        );
        anyhow::ensure!(
            args.shard.is_none(),
            "--no-runner runs no runner, so no shard: drop --shard (run the shards with `alert-runner run --shard I/N`)"
        );
        anyhow::ensure!(
            args.source != SourceKind::Ingest,
            "--no-runner with --source ingest: there is no runner here to take the candles"
        );
    }
    let Some(shard) = args.shard else {
        return Ok(());
    };
    let url = args.database.database_url.trim_start();
    anyhow::ensure!(
        BackendKind::of_url(url) == Some(BackendKind::Postgres),
        "--shard {shard} needs PostgreSQL (DATABASE_URL postgres://…): the shards share one database and take their ownership lock there; {} is SQLite",
        redact_url(url)
    );
    anyhow::ensure!(
        args.source != SourceKind::Ingest,
        "--shard with --source ingest is not supported: candles pushed to one process reach only its runner"
    );
    Ok(())
}

/// The runner (unsharded) or the shard's owner-or-standby loop, to the end.
type RunnerTask<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = anyhow::Result<Option<RunnerStats>>> + Send + 'a>,
>;

/// What a runner needs to start and run, once (unsharded) or once per term of ownership
/// (`--shard`).
#[derive(Clone)]
struct RunnerTerm {
    store: Store,
    config: RunnerConfig,
    outlets: Outlets,
    readiness: Readiness,
    capacity: usize,
}

impl RunnerTerm {
    /// Loads the alerts and the engine state from the store.
    async fn start(&self) -> anyhow::Result<(Runner, watch::Receiver<Wanted>)> {
        let (runner, wanted, _) = Runner::start(self.store.clone(), self.config.clone()).await?;
        let runner = runner
            .with_outlets(self.outlets.clone())
            .with_readiness(self.readiness.clone());
        Ok((runner, wanted))
    }

    /// Feeds the runner from `source` until `cancel` or the source's end, then stops the
    /// source.
    async fn run(
        self,
        runner: Runner,
        wanted: watch::Receiver<Wanted>,
        source: Box<dyn Source>,
        cancel: CancellationToken,
    ) -> anyhow::Result<RunnerStats> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let source_name = source.name();
        let source_cancel = cancel.child_token();
        let source_task = tokio::spawn(source.run(tx, wanted, source_cancel.clone()));
        let stats = tokio::spawn(runner.run(rx, cancel)).await;
        source_cancel.cancel();
        self.readiness.set(false);
        match source_task.await {
            Ok(Err(e)) => {
                tracing::error!(source = source_name, error = %e, "market data source stopped")
            }
            Err(e) => {
                tracing::error!(source = source_name, error = %e, "market data source panicked")
            }
            Ok(Ok(())) => {}
        }
        Ok(stats.context("runner task")??)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_urls_are_printed_without_their_password() {
        for (url, shown) in [
            (
                "postgres://app:s3cr%40t@db.example.com:5432/alerts?sslmode=require",
                "postgres://app:***@db.example.com:5432/alerts?sslmode=require",
            ),
            (
                "postgresql://app:p@ss@host/db",
                "postgresql://app:***@host/db",
            ),
            (
                "postgres://app@host/db?password=hunter2&sslmode=disable",
                "postgres://app@host/db?password=***&sslmode=disable",
            ),
            ("postgres://host/db", "postgres://host/db"),
            ("sqlite://./alert-runner.db", "sqlite://./alert-runner.db"),
            ("user:pw@host", "user:***@host"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
