//! One module per subcommand.

mod backtest;
mod bench;
mod indicators;
mod migrate;

pub use backtest::parse_time;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Indicators(args) => indicators::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Backtest(args) => backtest::run(&args),
        Command::Migrate(args) => migrate::run(&args),
    }
}

/// Whether an error is stdout having been closed by the reader.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.downcast_ref::<csv::Error>().is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
    })
}
