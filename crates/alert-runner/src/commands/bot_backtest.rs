//! `alert-runner bot-backtest`: a DCA bot replayed over a candle file, one JSON line per order,
//! then the summary.

use std::io::Write;

use alert_bots::{BotBacktest, parse_bot};
use alert_marketdata::CandleReader;
use anyhow::{Context, bail};

use crate::cli::BotBacktestArgs;

pub fn run(args: &BotBacktestArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.bot)
        .with_context(|| format!("reading {}", args.bot.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", args.bot.display()))?;
    let def = parse_bot(&json).map_err(|e| {
        let lines: Vec<String> = e
            .errors()
            .iter()
            .map(|f| {
                format!(
                    "  {}: {}",
                    if f.path.is_empty() {
                        "(the bot)"
                    } else {
                        &f.path
                    },
                    f.expected
                )
            })
            .collect();
        anyhow::anyhow!("{}: invalid bot:\n{}", args.bot.display(), lines.join("\n"))
    })?;
    if def.pair != args.symbol {
        bail!(
            "{}: pair: is {} but the candles are {}",
            args.bot.display(),
            def.pair,
            args.symbol
        );
    }
    let name = def.name.clone();
    let mut backtest = BotBacktest::new("backtest", def, args.timeframe)?;
    let file = std::fs::File::open(&args.candles)
        .with_context(|| format!("opening {}", args.candles.display()))?;
    let reader = CandleReader::new(
        std::io::BufReader::with_capacity(1 << 16, file),
        args.candles.display().to_string(),
    );
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for candle in reader {
        let candle = candle?;
        let orders = backtest
            .on_candle(candle)
            .with_context(|| args.candles.display().to_string())?;
        for order in orders {
            serde_json::to_writer(&mut out, &order)?;
            out.write_all(b"\n")?;
        }
    }
    let summary = backtest.summary();
    serde_json::to_writer(&mut out, &serde_json::json!({ "summary": summary }))?;
    out.write_all(b"\n")?;
    out.flush()?;
    eprintln!(
        "bot-backtest {name:?}: {} candles, {} orders, {} deals closed ({} take profit, {} stop loss), win rate {:.1} %, realised P&L {:.4}, fees {:.4}, max capital {:.4}, max drawdown {:.4}, in deals {:.1} % of the time",
        summary.candles,
        summary.orders,
        summary.deals_closed,
        summary.take_profits,
        summary.stop_losses,
        summary.win_rate * 100.0,
        summary.realized_pnl,
        summary.fees,
        summary.max_capital_committed,
        summary.max_drawdown,
        summary.time_in_deals_share * 100.0
    );
    Ok(())
}
