//! The command line: every subcommand, flag and environment variable.

use std::path::PathBuf;

use alert_indicators::{IndicatorKind, IndicatorSpec};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "alert-runner",
    version,
    about = "Trading-alert engine: watches markets, fires alerts at most once per bar, and acts."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system in one process: market data, the engine, trigger recording, and the
    /// HTTP server (the dashboard at /, the /v1 API, /healthz, /readyz, /metrics, and
    /// POST /v1/candles with --source ingest).
    /// With no configuration: SQLite in the working
    /// directory and a simulated market, with a demo user and example alerts.
    Serve(RunArgs),
    /// Run the runner only (market data → engine → store), without the HTTP server and the
    /// dispatcher (run `dispatch` beside it).
    Run(RunArgs),
    /// Run the dispatcher only: send the store's queued webhooks (signed, retried), with
    /// /healthz and /metrics. Any number may share one PostgreSQL store.
    Dispatch(DispatchCommandArgs),
    /// Take the market feed once (Binance or a replay) and publish every candle update to a
    /// NATS JetStream stream (subjects candles.<SYMBOL>.<TF>, deduplicated by message id),
    /// for runners started with --source bus.
    Ingest(IngestArgs),
    /// Compute indicators over a candle file and print them as CSV.
    #[command(after_long_help = indicators_help())]
    Indicators(IndicatorsArgs),
    /// Replay alerts over a candle file and print one JSON line per trigger.
    #[command(after_long_help = BACKTEST_HELP)]
    Backtest(BacktestArgs),
    /// Replay a DCA bot over a candle file through the engine (paper fills): one JSON line per
    /// order, then a summary.
    #[command(after_long_help = BOT_BACKTEST_HELP)]
    BotBacktest(BotBacktestArgs),
    /// Manage stored alerts from the command line (import a JSON array for a user, list them).
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Mint an API token (a Supabase-style HS256 JWT) for a user, signed with
    /// SUPABASE_JWT_SECRET or the embedded default's ./alert-runner.jwt-secret.
    Token(TokenArgs),
    /// A user's webhook signing secret: show it (created on first use) or rotate it.
    #[command(subcommand)]
    WebhookSecret(WebhookSecretCommand),
    /// Benchmark the store on a scratch database next to --database-url (created and removed):
    /// record 10,000 triggers of one bar close, load 1,000,000 alerts, claim and complete 10,000
    /// deliveries. Prints one JSON object.
    BenchStore(BenchStoreArgs),
    /// Benchmark webhook dispatch on a scratch database next to --database-url (created and
    /// removed): deliveries per second from the outbox to a local receiver, beside a plain HTTP
    /// client's rate to the same receiver in the same run. Prints one JSON object.
    BenchDispatch(BenchDispatchArgs),
    /// Apply the database migrations (they are also applied at start unless turned off).
    Migrate(DatabaseArgs),
    /// The scale run: `serve` on a scratch PostgreSQL database next to --database-url with
    /// --alerts alerts over --symbols symbols, a replayed 1m market at --speed for --minutes,
    /// webhooks to a local receiver and API load from wrk; prints a table of peak RSS, round
    /// latency, triggers per second, delivery backlog and API latency.
    BenchServe(BenchServeArgs),
    /// Benchmark the engine on a deterministic synthetic market (1m candles, in memory) and
    /// print one JSON object with throughput, round latency and memory.
    Bench(BenchArgs),
}

const BACKTEST_HELP: &str = "Candles are fed in order as closed candles of --timeframe; an alert on a higher \
timeframe is evaluated intrabar at every fed candle (1m candles under a 1h alert simulate each minute).\n\
Output, one JSON object per trigger per line (times in epoch ms):\n  \
{\"alert_id\",\"symbol\",\"bar_time\",\"fired_at\",\"conditions\":{id:{\"value\",\"rhs\",\"held\"}},\"bar\":{\"open\",\"high\",\"low\",\"close\",\"volume\"}}\n\
Candles before --from warm the indicators up; none from --to on are read.\n\
A summary (alerts, candles, triggers, time) goes to stderr, with a progress bar when it is a terminal.";

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// A JSON array of alerts (the alert JSON), each with an `id`.
    #[arg(long, value_name = "FILE.json")]
    pub alerts: PathBuf,
    /// Candle CSV (header format or Binance klines).
    #[arg(long, value_name = "FILE")]
    pub candles: PathBuf,
    /// The candles' symbol; every alert must be on it.
    #[arg(long, value_parser = parse_symbol)]
    pub symbol: alert_core::Symbol,
    /// The candles' timeframe (1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w).
    #[arg(long, value_parser = parse_timeframe)]
    pub timeframe: alert_core::Timeframe,
    /// First bar open time reported (epoch ms, a date, or RFC 3339).
    #[arg(long, value_parser = crate::commands::parse_time)]
    pub from: Option<alert_core::BarTime>,
    /// Bars opening at or after this time are not read.
    #[arg(long, value_parser = crate::commands::parse_time)]
    pub to: Option<alert_core::BarTime>,
}

const BOT_BACKTEST_HELP: &str = "The bot JSON is documented in the README (DCA bots). Its alerts are evaluated \
on closed candles of --timeframe, as `backtest` does; orders fill on paper at the trigger's price (the close, or a \
price level the bar traded through), with the bot's fee_pct and quantity_step.\n\
Output: one JSON object per order per line \
{\"deal\",\"role\",\"side\",\"client_order_id\",\"fired_at\",\"price\",\"base_qty\",\"notional\",\"fee\",\"average_price\",\"realized_pnl\"?}, \
then one line {\"summary\": {deals_closed, take_profits, stop_losses, win_rate, realized_pnl, fees, \
max_capital_committed, max_drawdown, time_in_deals_ms, time_in_deals_share, open_deal_unrealized_pnl, orders, candles}}.";

#[derive(Debug, Args)]
pub struct BotBacktestArgs {
    /// A DCA bot (JSON object).
    #[arg(long, value_name = "FILE.json")]
    pub bot: PathBuf,
    /// Candle CSV (header format or Binance klines).
    #[arg(long, value_name = "FILE")]
    pub candles: PathBuf,
    /// The candles' symbol: the bot's pair.
    #[arg(long, value_parser = parse_symbol)]
    pub symbol: alert_core::Symbol,
    /// The candles' timeframe; the bot's may be higher.
    #[arg(long, value_parser = parse_timeframe)]
    pub timeframe: alert_core::Timeframe,
}

fn parse_symbol(s: &str) -> Result<alert_core::Symbol, String> {
    alert_core::Symbol::new(s).map_err(|e| e.to_string())
}

fn parse_subjects(s: &str) -> Result<alert_marketdata::bus::Subjects, String> {
    alert_marketdata::bus::Subjects::new(s)
}

fn parse_timeframe(s: &str) -> Result<alert_core::Timeframe, String> {
    s.parse::<alert_core::Timeframe>()
        .map_err(|e| e.to_string())
}

/// Where the data lives.
#[derive(Debug, Args, Clone)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB` (also a Supabase
    /// project's connection string).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://./alert-runner.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Store every alert of a JSON array (the alert JSON) for a user; each is validated first
    /// and nothing is stored if any is invalid.
    Import {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The owner (a uuid, as Supabase's `auth.users.id`).
        #[arg(long)]
        user: uuid::Uuid,
        /// The JSON array file.
        file: PathBuf,
        /// Webhook URLs are checked as the dispatcher will check them.
        #[command(flatten)]
        webhooks: WebhookPolicyArgs,
    },
    /// List a user's alerts as JSON lines.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        user: uuid::Uuid,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user (uuid); default: the embedded default's demo user.
    #[arg(long, default_value = "00000000-0000-4000-8000-000000000001")]
    pub user: uuid::Uuid,
    /// How long the token is valid (ms, s, m, h).
    #[arg(long, default_value = "24h", value_parser = parse_token_ttl)]
    pub ttl: std::time::Duration,
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The token's `iss` (when serve checks it with --jwt-issuer).
    #[arg(long, env = "SUPABASE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum WebhookSecretCommand {
    /// Print the user's current secret (and the previous one while it still signs).
    Show {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        user: uuid::Uuid,
    },
    /// Replace the user's secret with a new random one; the old one keeps signing beside it
    /// for --grace, so receivers can switch without losing a message.
    Rotate {
        #[command(flatten)]
        database: DatabaseArgs,
        #[arg(long)]
        user: uuid::Uuid,
        /// How long the old secret keeps signing (units ms, s, m, h).
        #[arg(long, default_value = "24h", value_parser = parse_duration_arg)]
        grace: std::time::Duration,
    },
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    alert_dispatch::retry::parse_duration(s)
        .ok_or_else(|| format!("{s:?}: expected a duration such as 30m, 24h"))
}

/// A token's lifetime: a token that is expired when minted is never what was meant.
fn parse_token_ttl(s: &str) -> Result<std::time::Duration, String> {
    let ttl = parse_duration_arg(s)?;
    if ttl.is_zero() {
        return Err(format!(
            "{s:?}: expected a lifetime above zero, such as 24h"
        ));
    }
    Ok(ttl)
}

/// Where market data comes from.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum SourceKind {
    /// A deterministic seeded market (symbols SIMBTC, SIMETH, SIMSOL), 1m bars on an
    /// accelerated clock. Not real prices.
    Simulated,
    /// Candle files played back (--replay).
    Replay,
    /// Binance spot: REST kline backfill, then WebSocket kline streams for the symbols the
    /// active alerts need.
    Binance,
    /// Candles pushed over HTTP by a trusted client: `POST /v1/candles` with
    /// `Authorization: Bearer <--service-key>` (serve only; needs --service-key). Bars of
    /// --feed.
    Ingest,
    /// Candles of --feed from the NATS JetStream candle bus at --bus, which
    /// `alert-runner ingest` publishes to (a durable consumer: a restart resumes where it
    /// stopped).
    Bus,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Do not apply migrations at start.
    #[arg(long, env = "ALERT_RUNNER_NO_MIGRATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_migrate: bool,
    /// HTTP listen address (serve).
    #[arg(long, env = "ALERT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// How often alert changes are picked up from the store, in milliseconds.
    #[arg(long, env = "ALERT_RUNNER_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,
    /// Active alerts per user and symbol.
    #[arg(long, env = "ALERT_MAX_ALERTS_PER_SYMBOL", default_value_t = 200)]
    pub max_alerts_per_symbol: u32,
    /// Active alerts per user.
    #[arg(long, env = "ALERT_MAX_ALERTS_PER_USER", default_value_t = 1000)]
    pub max_alerts_per_user: u32,
    /// Own one shard of a split into N: only the alerts and market data of the symbols with
    /// fnv1a64(SYMBOL) mod N = I, given as I/N (0 ≤ I < N). Needs PostgreSQL. Ownership is a
    /// PostgreSQL advisory lock per shard: a second process for the same shard waits as a hot
    /// standby and takes over when the owner dies.
    #[arg(long, env = "ALERT_SHARD", value_parser = parse_shard)]
    pub shard: Option<alert_core::Shard>,
    /// run: serve /healthz, /readyz and /metrics on this address (default: none; serve has
    /// them on --listen).
    #[arg(long, env = "ALERT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Market data source.
    #[arg(long, env = "ALERT_SOURCE", value_enum, default_value = "simulated")]
    pub source: SourceKind,
    #[command(flatten)]
    pub market: MarketArgs,
    /// The service key a client of `POST /v1/candles` sends as `Authorization: Bearer KEY`
    /// (required with --source ingest; use a long random string, e.g. `openssl rand -hex 32`).
    #[arg(long, env = "ALERT_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,
    #[command(flatten)]
    pub bus: BusArgs,
    /// Create the demo user's example alerts on a fresh store (default: with the simulated
    /// market).
    #[arg(long, env = "ALERT_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: Option<bool>,
    /// Log format: json, text, or auto (text on a terminal).
    #[arg(long, env = "ALERT_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    /// The Supabase project's JWT secret: API tokens are HS256-signed with it. Unset: a random
    /// secret kept in ./alert-runner.jwt-secret (created on first use; `alert-runner token`
    /// reads it too) — for the embedded default only.
    #[arg(long, env = "SUPABASE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Also require tokens' `iss` to be this (Supabase:
    /// `https://<project>.supabase.co/auth/v1`); unset: `iss` is not checked.
    #[arg(long, env = "SUPABASE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// When set, GET /metrics requires `Authorization: Bearer <this token>`; unset: /metrics
    /// is open to anyone who can reach --listen.
    #[arg(long, env = "ALERT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Longest time an API request may take to be answered (streams: until their headers),
    /// in milliseconds; beyond: 503.
    #[arg(long, env = "ALERT_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// API requests handled at once, authenticated or not; beyond: 503 at once.
    #[arg(long, env = "ALERT_MAX_REQUESTS_IN_FLIGHT", default_value_t = 1024)]
    pub max_requests_in_flight: usize,
    /// Origins allowed to call the API from a browser (CORS), comma-separated; `*` for any.
    #[arg(long, env = "ALERT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// API requests per second per user (bursts of twice as many); beyond: 429.
    #[arg(long, env = "ALERT_RATE_LIMIT", default_value_t = 20.0)]
    pub rate_limit: f64,
    /// How long a rotated webhook secret keeps signing beside the new one (ms, s, m, h).
    #[arg(long, env = "ALERT_WEBHOOK_SECRET_GRACE", default_value = "24h", value_parser = parse_duration_arg)]
    pub webhook_secret_grace: std::time::Duration,
    /// serve: do not serve the web dashboard at / (the API only).
    #[arg(long, env = "ALERT_NO_DASHBOARD", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_dashboard: bool,
    /// serve: do not run the dispatcher in this process (`dispatch` processes send instead).
    #[arg(long, env = "ALERT_NO_DISPATCH", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_dispatch: bool,
    /// serve: do not run a runner in this process — an API instance: the HTTP API and the
    /// dashboard (and the dispatcher, unless --no-dispatch), beside `run --shard` processes.
    /// Needs PostgreSQL: live events (SSE/WebSocket) come from the database's announcements,
    /// wherever they were recorded. No market data endpoints (no market here).
    #[arg(long, env = "ALERT_NO_RUNNER", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_runner: bool,
    #[command(flatten)]
    pub dispatch: DispatchArgs,
}

/// The candle bus, as `run` and `serve` read it (`--source bus`).
#[derive(Debug, Args)]
pub struct BusArgs {
    /// The NATS server of the candle bus, `nats://HOST:PORT` (with --source bus).
    #[arg(long = "bus", env = "ALERT_BUS_URL", value_name = "nats://HOST:PORT")]
    pub url: Option<String>,
    /// The JetStream stream the candles are on.
    #[arg(long = "bus-stream", env = "ALERT_BUS_STREAM", default_value = alert_marketdata::bus::DEFAULT_STREAM)]
    pub stream: String,
    /// The first token(s) of the candle subjects (<PREFIX>.<SYMBOL>.<TF>).
    #[arg(long = "bus-subject-prefix", env = "ALERT_BUS_SUBJECT_PREFIX", default_value = alert_marketdata::bus::SUBJECT_PREFIX, value_parser = parse_subjects)]
    pub subjects: alert_marketdata::bus::Subjects,
    /// The durable consumer's name: processes meant to be one consumer (a shard's owner and
    /// its standby) use the same, different runners different ones. Default:
    /// alert-runner-<FEED>, with --shard I/N alert-runner-<FEED>-shard-<I>-of-<N>.
    #[arg(long = "bus-durable", env = "ALERT_BUS_DURABLE")]
    pub durable: Option<String>,
    /// The bus carries a replayed market (history by design): alerts fire on bars older than
    /// themselves, as with --source replay.
    #[arg(long = "bus-replayed", env = "ALERT_BUS_REPLAYED", value_parser = clap::builder::BoolishValueParser::new())]
    pub replayed: bool,
}

/// Where `ingest` takes the market from.
#[derive(Debug, Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum IngestSourceKind {
    /// Binance spot klines (REST backfill of --history bars, then WebSocket) for the symbols.
    Binance,
    /// Candle files played back (--replay).
    Replay,
    /// The seeded simulated market (SIMBTC, SIMETH, SIMSOL; not real prices).
    Simulated,
}

/// Where a market source reads from (`serve`, `run`, `ingest`): replay files, Binance, or the
/// simulated market.
#[derive(Debug, Args)]
pub struct MarketArgs {
    /// Candle files or directories to replay (with --source replay).
    #[arg(long, env = "ALERT_REPLAY", value_delimiter = ',')]
    pub replay: Vec<PathBuf>,
    /// Replay speed: data time per wall time (60 = one 1m bar per second); omitted = as fast
    /// as possible.
    #[arg(long, env = "ALERT_REPLAY_SPEED")]
    pub replay_speed: Option<f64>,
    /// Loop the replay forever (times shifted forward each round).
    #[arg(long, env = "ALERT_REPLAY_LOOP", value_parser = clap::builder::BoolishValueParser::new())]
    pub replay_loop: bool,
    /// The timeframe of the candles fed (replay files, the Binance kline interval, or the
    /// candles pushed to the ingest source).
    #[arg(long, env = "ALERT_FEED_TIMEFRAME", default_value = "1m", value_parser = parse_timeframe)]
    pub feed: alert_core::Timeframe,
    /// Binance REST base URL.
    #[arg(
        long,
        env = "ALERT_BINANCE_REST_URL",
        default_value = "https://api.binance.com"
    )]
    pub binance_rest_url: String,
    /// Binance WebSocket base URL.
    #[arg(
        long,
        env = "ALERT_BINANCE_WS_URL",
        default_value = "wss://stream.binance.com:9443"
    )]
    pub binance_ws_url: String,
    /// Seed of the simulated market.
    #[arg(long, env = "ALERT_SIM_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Simulated seconds per wall second (60 = one 1m bar per second).
    #[arg(long, env = "ALERT_SIM_SPEED", default_value_t = 60.0)]
    pub sim_speed: f64,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The NATS server, `nats://HOST:PORT`.
    #[arg(long = "bus", env = "ALERT_BUS_URL", value_name = "nats://HOST:PORT")]
    pub bus: String,
    /// The JetStream stream (created when missing: subjects candles.>, file storage).
    #[arg(long = "bus-stream", env = "ALERT_BUS_STREAM", default_value = alert_marketdata::bus::DEFAULT_STREAM)]
    pub bus_stream: String,
    /// The first token(s) of the candle subjects (<PREFIX>.<SYMBOL>.<TF>); the stream is
    /// created over <PREFIX>.>. Two buses on one NATS server need different prefixes.
    #[arg(long = "bus-subject-prefix", env = "ALERT_BUS_SUBJECT_PREFIX", default_value = alert_marketdata::bus::SUBJECT_PREFIX, value_parser = parse_subjects)]
    pub bus_subjects: alert_marketdata::bus::Subjects,
    /// How long the stream keeps a message when ingest creates it (ms, s, m, h); at least the
    /// warm-up history runners read from it (500 bars of --feed by default) plus the longest
    /// time a runner may be down and still catch up.
    #[arg(long = "bus-max-age", env = "ALERT_BUS_MAX_AGE", default_value = "24h", value_parser = parse_duration_arg)]
    pub bus_max_age: std::time::Duration,
    /// Publishes awaiting their PubAck at most.
    #[arg(long = "bus-max-in-flight", env = "ALERT_BUS_MAX_IN_FLIGHT", default_value_t = alert_marketdata::bus::publish::DEFAULT_MAX_IN_FLIGHT)]
    pub bus_max_in_flight: usize,
    /// Where the market comes from.
    #[arg(
        long,
        env = "ALERT_INGEST_SOURCE",
        value_enum,
        default_value = "binance"
    )]
    pub source: IngestSourceKind,
    /// Symbols to take (comma-separated). With --database-url, the symbols of the store's
    /// active alerts are added (and followed as alerts change).
    #[arg(long, env = "ALERT_INGEST_SYMBOLS", value_delimiter = ',', value_parser = parse_symbol)]
    pub symbols: Vec<alert_core::Symbol>,
    /// A store whose active alerts' symbols are taken too (read-only; re-read every
    /// --poll-ms).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// How often the store's alerts are re-read for new symbols, in milliseconds.
    #[arg(long, env = "ALERT_INGEST_POLL_MS", default_value_t = 5000)]
    pub poll_ms: u64,
    /// Closed bars of history fetched per symbol at start (Binance), so runners warm up from
    /// the stream.
    #[arg(long, env = "ALERT_INGEST_HISTORY", default_value_t = 1000)]
    pub history: usize,
    #[command(flatten)]
    pub market: MarketArgs,
    /// Log format: json, text, or auto (text on a terminal).
    #[arg(long, env = "ALERT_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
}

/// Where webhooks may go (SSRF protection): checked when alerts are stored and before each
/// connection.
#[derive(Debug, Args)]
pub struct WebhookPolicyArgs {
    /// Allow webhooks to loopback, private, link-local and other non-public addresses
    /// (tests and self-hosted setups). Off: such URLs are refused.
    #[arg(long, env = "ALERT_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub webhook_allow_private: bool,
    /// Ports webhooks may use, comma-separated (default: any).
    #[arg(long, env = "ALERT_WEBHOOK_ALLOWED_PORTS", value_delimiter = ',')]
    pub webhook_allowed_ports: Vec<u16>,
}

/// The dispatcher's settings (serve and dispatch).
#[derive(Debug, Args)]
pub struct DispatchArgs {
    #[command(flatten)]
    pub webhooks: WebhookPolicyArgs,
    /// Timeout of one webhook attempt (connect, send, response), in milliseconds.
    #[arg(long, env = "ALERT_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// Waits before each retry, comma-separated (units ms, s, m, h); one attempt more than
    /// entries. Each wait gets ±20 % jitter; a longer Retry-After is honoured.
    #[arg(
        long,
        env = "ALERT_WEBHOOK_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h"
    )]
    pub webhook_retry_schedule: String,
    /// Webhook attempts in flight per process.
    #[arg(long, env = "ALERT_DISPATCH_CONCURRENCY", default_value_t = 256)]
    pub dispatch_concurrency: usize,
    /// Webhook attempts in flight per receiver host (host:port).
    #[arg(long, env = "ALERT_WEBHOOK_PER_HOST", default_value_t = 16)]
    pub webhook_per_host: usize,
    /// Webhook attempts in flight per user (over all their hosts), so one user's slow
    /// receivers cannot take every slot.
    #[arg(long, env = "ALERT_WEBHOOK_PER_USER", default_value_t = 32)]
    pub webhook_per_user: usize,
    /// How often the outbox is polled for due deliveries, in milliseconds (serve's runner
    /// also wakes its dispatcher at once).
    #[arg(long, env = "ALERT_DISPATCH_POLL_MS", default_value_t = 500)]
    pub dispatch_poll_ms: u64,
    /// On shutdown, how long in-flight attempts may take to finish, in milliseconds.
    #[arg(
        long,
        env = "ALERT_DISPATCH_SHUTDOWN_GRACE_MS",
        default_value_t = 15_000
    )]
    pub dispatch_shutdown_grace_ms: u64,
}

#[derive(Debug, Args)]
pub struct DispatchCommandArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Do not apply migrations at start.
    #[arg(long, env = "ALERT_RUNNER_NO_MIGRATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_migrate: bool,
    /// HTTP listen address for /healthz and /metrics.
    #[arg(long, env = "ALERT_DISPATCH_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// When set, GET /metrics requires `Authorization: Bearer <this token>`.
    #[arg(long, env = "ALERT_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Log format: json, text, or auto (text on a terminal).
    #[arg(long, env = "ALERT_LOG_FORMAT", default_value = "auto")]
    pub log_format: String,
    #[command(flatten)]
    pub dispatch: DispatchArgs,
}

#[derive(Debug, Args)]
pub struct BenchStoreArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Triggers recorded for one bar close.
    #[arg(long, default_value_t = 10_000)]
    pub triggers: u32,
    /// Active alerts loaded at start.
    #[arg(long, default_value_t = 1_000_000)]
    pub alerts: u32,
    /// Deliveries claimed and completed.
    #[arg(long, default_value_t = 10_000)]
    pub deliveries: u32,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Number of symbols.
    #[arg(long, default_value_t = 100)]
    pub symbols: usize,
    /// Number of alerts, spread evenly over the symbols.
    #[arg(long, default_value_t = 10_000)]
    pub alerts: usize,
    /// Measured 1m bars per symbol.
    #[arg(long, default_value_t = 60)]
    pub bars: u64,
    /// Seed of the synthetic market and alert mix.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// In-progress updates per bar before its close.
    #[arg(long, default_value_t = 2)]
    pub partials: usize,
    /// Bars fed before the alerts are registered (they warm up from this history).
    #[arg(long, default_value_t = 300)]
    pub warmup: u64,
    /// Closed bars kept per (symbol, timeframe).
    #[arg(long, default_value_t = 300)]
    pub history: usize,
}

#[derive(Debug, Args)]
pub struct IndicatorsArgs {
    /// Candle CSV: a header `open_time_ms,open,high,low,close,volume`, or Binance's 12-column
    /// kline CSV (open times in ms or µs).
    #[arg(long, value_name = "FILE")]
    pub candles: PathBuf,

    /// An indicator as NAME or NAME(arg,...), e.g. RSI(14), MACD(12,26,9), BBANDS(20,2),
    /// SMA(50,hl2). Repeat for several. See the list below.
    #[arg(long = "indicator", value_name = "SPEC", required = true, value_parser = parse_spec)]
    pub indicators: Vec<IndicatorSpec>,
}

fn parse_spec(s: &str) -> Result<IndicatorSpec, String> {
    s.parse::<IndicatorSpec>().map_err(|e| e.to_string())
}

fn indicators_help() -> String {
    let mut help = String::from(
        "Output: CSV on stdout. The first column is open_time_ms; then one column per output, named\n\
         SPEC.Component (e.g. RSI(14).RSI, MACD(12,26,9).Signal, BBANDS(20,2).Upper, OBV.OBV).\n\
         A cell is empty while the indicator has no value yet (TA-Lib's lookback). Numbers are\n\
         printed in their shortest form that reads back to the same f64.\n\n\
         Indicators (arguments in TA-Lib's order; missing trailing arguments take the default shown):\n",
    );
    for kind in IndicatorKind::ALL {
        help.push_str("  ");
        help.push_str(kind.usage());
        help.push('\n');
    }
    help.push_str(
        "\nsource (for SMA, EMA, WMA, RSI, MACD, BBANDS, ROC; close by default):\n  \
         open high low close hl2 hlc3 ohlc4 volume\n\n\
         Values equal TA-Lib's (default, non-Metastock mode) to within a relative 1e-9.\n\
         Example:\n  alert-runner indicators --candles btc_1h.csv --indicator RSI --indicator 'MACD(12,26,9)'\n",
    );
    help
}

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Active alerts, spread evenly over the symbols (100 per user).
    #[arg(long, default_value_t = 1_000_000)]
    pub alerts: usize,
    /// Symbols of the replayed market.
    #[arg(long, default_value_t = 1_000)]
    pub symbols: usize,
    /// Wall-clock minutes the run lasts.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Replay speed: data time per wall time (10 = a 1m bar every 6 s).
    #[arg(long, default_value_t = 10.0)]
    pub speed: f64,
    /// Share of the alerts that also send a webhook (to a local receiver).
    #[arg(long, default_value_t = 0.05)]
    pub webhook_share: f64,
    /// API requests per second from wrk during the run (0: none).
    #[arg(long, default_value_t = 200.0)]
    pub api_rate: f64,
    /// Seed of the market and the alert mix.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchDispatchArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Webhook deliveries recorded (one per trigger) and sent.
    #[arg(long, default_value_t = 20_000)]
    pub deliveries: u32,
    /// Requests in flight: the dispatcher's bound (in total and for the one receiver host) and
    /// the plain client's.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

fn parse_shard(s: &str) -> Result<alert_core::Shard, String> {
    s.parse::<alert_core::Shard>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ttl_refuses_zero_and_names_what_is_expected() {
        let err = parse_token_ttl("0s").unwrap_err();
        assert!(err.contains("above zero"), "{err}");
        assert!(parse_token_ttl("soon").is_err());
        assert_eq!(
            parse_token_ttl("90m").unwrap(),
            std::time::Duration::from_secs(5400)
        );
    }

    #[test]
    fn shard_flag_parses_i_of_n_and_names_the_rule() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["alert-runner", "run", "--shard", "1/3"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.shard, Some(alert_core::Shard { index: 1, count: 3 }));
        for (bad, says) in [("3/3", "0 ≤ I < N"), ("0/0", "N ≥ 1"), ("x", "I/N")] {
            let err = Cli::try_parse_from(["alert-runner", "serve", "--shard", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"))
                .to_string();
            assert!(
                err.contains("--shard") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }
}
