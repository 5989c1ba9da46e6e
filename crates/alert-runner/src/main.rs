//! `alert-runner`: the one binary. Each subcommand lives in `commands/`; this file only
//! parses the command line and reports errors.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // reqwest links rustls' aws-lc-rs provider and sqlx links ring: pick one before any TLS.
    alert_marketdata::binance::install_crypto_provider();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if commands::is_broken_pipe(&e) {
                // `alert-runner indicators ... | head` closing early is not a failure.
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
