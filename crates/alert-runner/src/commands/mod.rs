//! One module per subcommand.

mod alerts;
mod backtest;
mod bench;
mod bench_dispatch;
mod bench_serve;
mod bot_backtest;
mod dispatch;
mod indicators;
mod ingest;
mod migrate;
mod serve;
pub(crate) mod token;

pub use backtest::parse_time;

/// The embedded default's demo user.
pub const DEMO_USER: uuid::Uuid = uuid::Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Indicators(args) => indicators::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchStore(args) => bench::run_store(&args),
        Command::BenchDispatch(args) => bench_dispatch::run(&args),
        Command::BenchServe(args) => bench_serve::run(&args),
        Command::Backtest(args) => backtest::run(&args),
        Command::BotBacktest(args) => bot_backtest::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Alerts(cmd) => alerts::run(&cmd),
        Command::WebhookSecret(cmd) => alerts::run_secret(&cmd),
        Command::Token(args) => token::run(&args),
        Command::Serve(args) => serve::run(&args, true),
        Command::Run(args) => serve::run(&args, false),
        Command::Dispatch(args) => dispatch::run(&args),
        Command::Ingest(args) => ingest::run(&args),
    }
}

/// The dispatcher's bot handler: DCA bots stored with the store, paper execution (a
/// `dispatch` process has no live clients: `serve` builds its own, with its live hub).
pub(crate) fn bot_handler(
    store: &alert_store::Store,
) -> std::sync::Arc<dyn alert_dispatch::BotHandler> {
    alert_bots::live::StoreBots::new(store.clone())
}

/// Whether an error is stdout having been closed by the reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.downcast_ref::<csv::Error>().is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
    })
}
