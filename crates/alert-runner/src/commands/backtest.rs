//! `alert-runner backtest`: alerts replayed over a candle file, one JSON line per trigger.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use alert_core::{BarTime, CandleUpdate};
use alert_engine::{BarSnapshot, ConditionSnapshot, Engine, EngineConfig, Event, Trigger};
use alert_marketdata::CandleReader;
use anyhow::{Context, bail};
use serde::Serialize;

use crate::cli::BacktestArgs;

/// One output line, as documented: times in epoch milliseconds; conditions and bar as the
/// engine's snapshot serialises them.
#[derive(Serialize)]
struct Line<'a> {
    alert_id: &'a str,
    symbol: &'a str,
    bar_time: i64,
    fired_at: i64,
    conditions: &'a BTreeMap<String, ConditionSnapshot>,
    bar: Option<BarSnapshot>,
}

fn line(t: &Trigger) -> Line<'_> {
    Line {
        alert_id: t.alert_id.as_str(),
        symbol: t.symbol.as_str(),
        bar_time: t.bar_time.millis(),
        fired_at: t.fired_at.millis(),
        conditions: &t.conditions,
        bar: t.bar,
    }
}

/// A time given as epoch milliseconds or RFC 3339 / a date.
pub fn parse_time(s: &str) -> Result<BarTime, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(BarTime::from_millis(ms));
    }
    BarTime::parse_rfc3339(s)
        .ok_or_else(|| format!("{s:?}: expected epoch milliseconds, a date (2024-01-31) or RFC 3339 (2024-01-31T12:00:00Z)"))
}

pub fn run(args: &BacktestArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.alerts)
        .with_context(|| format!("reading {}", args.alerts.display()))?;
    let alerts = alert_engine::parse::parse_alerts_array(&text)
        .map_err(|e| anyhow::anyhow!("{}: invalid alerts:\n{e}", args.alerts.display()))?;
    if alerts.is_empty() {
        bail!("{}: the array holds no alert", args.alerts.display());
    }
    let mut engine = Engine::new(EngineConfig {
        feed: args.timeframe,
        history_bars: 0,
    });
    for (i, def) in alerts.into_iter().enumerate() {
        let Some(id) = def.id.clone() else {
            bail!(
                "{}: [{i}].id: expected an id (backtest output names alerts by id)",
                args.alerts.display()
            );
        };
        if def.symbol != args.symbol {
            bail!(
                "{}: [{i}].symbol: is {} but the candles are {}",
                args.alerts.display(),
                def.symbol,
                args.symbol
            );
        }
        engine
            .upsert(id, Arc::new(def))
            .with_context(|| format!("{}: [{i}]", args.alerts.display()))?;
    }

    let file = std::fs::File::open(&args.candles)
        .with_context(|| format!("opening {}", args.candles.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reader = CandleReader::new(
        progress.wrap_read(std::io::BufReader::with_capacity(1 << 16, file)),
        args.candles.display().to_string(),
    );

    let started = Instant::now();
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(stdout);
    let mut events = Vec::new();
    let (mut candles, mut triggers) = (0u64, 0u64);
    for candle in reader {
        let candle = candle?;
        if args.to.is_some_and(|to| candle.open_time >= to) {
            break;
        }
        engine
            .on_candle(
                args.symbol,
                &CandleUpdate {
                    candle,
                    closed: true,
                },
                &mut events,
            )
            .with_context(|| format!("{}", args.candles.display()))?;
        candles += 1;
        // Candles before --from only warm the indicators up.
        let report = args.from.is_none_or(|from| candle.open_time >= from);
        for event in events.drain(..) {
            if let (Event::Triggered(t), true) = (event, report) {
                serde_json::to_writer(&mut out, &line(&t))?;
                out.write_all(b"\n")?;
                triggers += 1;
                progress.set_message(format!("{triggers} triggers"));
            }
        }
    }
    out.flush()?;
    progress.finish_and_clear();
    eprintln!(
        "backtest: {} alerts, {candles} candles, {triggers} triggers, {:.3} s",
        engine.alert_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
