//! `alert-runner dispatch` (the dispatcher alone) and the dispatcher settings `serve` shares.

use std::net::SocketAddr;
use std::time::Duration;

use alert_dispatch::{AddressPolicy, DispatchConfig, Dispatcher, RetryPolicy};
use alert_store::{Store, StoreOptions};
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::cli::{DispatchArgs, DispatchCommandArgs, WebhookPolicyArgs};
use crate::commands::serve::{
    healthz, init_logging, metrics_route, on_shutdown_signal, redact_url,
};

impl WebhookPolicyArgs {
    /// The SSRF policy for webhook URLs.
    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            allow_private: self.webhook_allow_private,
            allowed_ports: (!self.webhook_allowed_ports.is_empty())
                .then(|| self.webhook_allowed_ports.clone()),
        }
    }
}

impl DispatchArgs {
    pub fn config(&self) -> anyhow::Result<DispatchConfig> {
        let retry = RetryPolicy::with_schedule(&self.webhook_retry_schedule)
            .context("--webhook-retry-schedule / ALERT_WEBHOOK_RETRY_SCHEDULE")?;
        anyhow::ensure!(
            self.webhook_timeout_ms > 0,
            "--webhook-timeout-ms / ALERT_WEBHOOK_TIMEOUT_MS: expected a positive number of milliseconds"
        );
        let timeout = Duration::from_millis(self.webhook_timeout_ms);
        Ok(DispatchConfig {
            poll: Duration::from_millis(self.dispatch_poll_ms.max(10)),
            max_in_flight: self.dispatch_concurrency.max(1),
            per_host: self.webhook_per_host.max(1),
            per_user: self.webhook_per_user.max(1),
            timeout,
            // A lease outlives the attempt it covers, with room for recording it.
            lease: (timeout * 3).max(Duration::from_secs(30)),
            retry,
            policy: self.webhooks.address_policy(),
            shutdown_grace: Duration::from_millis(self.dispatch_shutdown_grace_ms),
            ..DispatchConfig::default()
        })
    }

    /// Logs the settings an operator should see at start.
    pub fn log(&self, config: &DispatchConfig) {
        if config.policy.allow_private {
            tracing::warn!(
                "webhooks: private and loopback addresses ALLOWED (ALERT_WEBHOOK_ALLOW_PRIVATE)"
            );
        }
        tracing::info!(
            worker = %config.worker,
            concurrency = config.max_in_flight,
            per_host = config.per_host,
            per_user = config.per_user,
            timeout_ms = config.timeout.as_millis() as u64,
            attempts = config.retry.max_attempts(),
            "dispatcher configured"
        );
    }
}

pub fn run(args: &DispatchCommandArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(dispatch(args))
}

async fn dispatch(args: &DispatchCommandArgs) -> anyhow::Result<()> {
    let config = args.dispatch.config()?;
    let addr: SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}", args.listen))?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let store = Store::connect(
        &args.database.database_url,
        StoreOptions {
            migrate: !args.no_migrate,
            ..StoreOptions::default()
        },
    )
    .await
    .with_context(|| format!("opening {}", redact_url(&args.database.database_url)))?;
    args.dispatch.log(&config);
    // Bot actions stay queued for a process with a bot handler (the bots module).
    let dispatcher = Dispatcher::new(
        store.clone(),
        config,
        Some(crate::commands::bot_handler(&store)),
    )?;
    let cancel = CancellationToken::new();
    on_shutdown_signal(cancel.clone());
    let app = Router::new().route("/healthz", get(healthz)).route(
        "/metrics",
        metrics_route(metrics, args.metrics_token.as_deref()),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "listening: /healthz /metrics");
    let token = cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
    });
    dispatcher.run(cancel.clone()).await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
