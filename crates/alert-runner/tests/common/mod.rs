//! Shared by the `bot-backtest` tests: run the real binary on a bot and a candle file, and split
//! its output into the order lines and the summary.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `alert-runner bot-backtest --bot BOT --candles CANDLES --symbol SYMBOL --timeframe TF`.
pub fn bot_backtest(bot: &Path, candles: &Path, symbol: &str, timeframe: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alert-runner"))
        .args(["bot-backtest", "--bot"])
        .arg(bot)
        .arg("--candles")
        .arg(candles)
        .args(["--symbol", symbol, "--timeframe", timeframe])
        .output()
        .unwrap_or_else(|e| panic!("cannot run alert-runner: {e}"))
}

/// The JSON order lines and the object of the last line, `{"summary": {…}}`.
pub fn orders_and_summary(stdout: &[u8]) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let Some(last) = lines.pop() else {
        panic!("no output")
    };
    let summary = last["summary"].clone();
    assert!(
        summary.is_object(),
        "the last line is not the summary: {last}"
    );
    (lines, summary)
}
