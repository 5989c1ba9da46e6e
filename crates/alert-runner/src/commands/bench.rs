//! `alert-runner bench`: the engine on a deterministic synthetic market, in memory.

use std::time::Instant;

use alert_core::{CandleUpdate, Timeframe};
use alert_engine::synthetic::{self, Market, Rng};
use alert_engine::{Engine, EngineConfig, Event};
use serde::Serialize;

use crate::cli::{BenchArgs, BenchStoreArgs};

#[derive(Serialize)]
struct Report {
    symbols: usize,
    alerts: usize,
    bars: u64,
    candle_updates: u64,
    alert_evaluations: u64,
    triggers: u64,
    wall_s: f64,
    alert_evals_per_s: f64,
    round_p50_ms: f64,
    round_p99_ms: f64,
    peak_rss_mb: f64,
    /// In-progress update of one symbol (all its alerts evaluated), microseconds.
    update_p50_us: f64,
    update_p99_us: f64,
    /// Resident memory added by registering the alerts, per alert.
    bytes_per_alert: f64,
    register_s: f64,
    distinct_indicators: usize,
}

/// `(VmRSS, VmHWM)` of this process in bytes, from /proc (0 where unavailable).
fn rss() -> (f64, f64) {
    rss_of("self")
}

/// `(VmRSS, VmHWM)` of `process` (a pid, or `self`) in bytes, from /proc (0 where
/// unavailable).
pub(crate) fn rss_of(process: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb * 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.symbols > 0, "--symbols must be at least 1");
    let symbols = synthetic::symbols(args.symbols);
    let mut engine = Engine::new(EngineConfig {
        feed: Timeframe::M1,
        history_bars: args.history,
    });
    let mut market = Market::new(symbols.len(), args.seed);
    let mut updates = Vec::with_capacity(args.partials + 1);
    let mut events: Vec<Event> = Vec::new();
    let mut bar = 0u64;
    let mut closes = vec![0.0; symbols.len()];

    // Warm-up history (not measured): alerts registered afterwards warm up from it.
    for _ in 0..args.warmup {
        for (s, sym) in symbols.iter().enumerate() {
            updates.clear();
            market.bar(s, bar, 0, &mut updates);
            for (c, closed) in &updates {
                engine.on_candle(
                    *sym,
                    &CandleUpdate {
                        candle: *c,
                        closed: *closed,
                    },
                    &mut events,
                )?;
                closes[s] = c.close;
            }
        }
        bar += 1;
    }

    let (rss_before, _) = rss();
    let started = Instant::now();
    let mut rng = Rng::new(args.seed ^ 0xA1E7);
    for n in 0..args.alerts as u64 {
        let s = (n as usize) % symbols.len();
        let (id, def) = synthetic::alert(&mut rng, n, symbols[s], closes[s])
            .ok_or_else(|| anyhow::anyhow!("building synthetic alert {n}"))?;
        engine.upsert(id, def)?;
    }
    let register_s = started.elapsed().as_secs_f64();
    let (rss_after, _) = rss();
    let distinct_indicators = symbols.iter().map(|s| engine.indicator_count(*s)).sum();

    let evals_before = engine.evaluations();
    let mut candle_updates = 0u64;
    let mut triggers = 0u64;
    let mut rounds = Vec::with_capacity(args.bars as usize);
    let mut update_times = Vec::new();
    let mut pending: Vec<Vec<(alert_core::Candle, bool)>> = vec![Vec::new(); symbols.len()];
    let wall = Instant::now();
    for _ in 0..args.bars {
        for (s, p) in pending.iter_mut().enumerate() {
            p.clear();
            market.bar(s, bar, args.partials, p);
        }
        // In-progress updates of every symbol, each timed.
        for (s, sym) in symbols.iter().enumerate() {
            for (c, closed) in pending[s].iter().filter(|(_, closed)| !closed) {
                let t = Instant::now();
                engine.on_candle(
                    *sym,
                    &CandleUpdate {
                        candle: *c,
                        closed: *closed,
                    },
                    &mut events,
                )?;
                update_times.push(t.elapsed().as_secs_f64() * 1e6);
                candle_updates += 1;
            }
        }
        // The round: every symbol's bar close.
        let t = Instant::now();
        for (s, sym) in symbols.iter().enumerate() {
            for (c, closed) in pending[s].iter().filter(|(_, closed)| *closed) {
                engine.on_candle(
                    *sym,
                    &CandleUpdate {
                        candle: *c,
                        closed: *closed,
                    },
                    &mut events,
                )?;
                candle_updates += 1;
            }
        }
        rounds.push(t.elapsed().as_secs_f64() * 1e3);
        triggers += events
            .iter()
            .filter(|e| matches!(e, Event::Triggered(_)))
            .count() as u64;
        events.clear();
        bar += 1;
    }
    let wall_s = wall.elapsed().as_secs_f64();
    let alert_evaluations = engine.evaluations() - evals_before;
    rounds.sort_by(f64::total_cmp);
    update_times.sort_by(f64::total_cmp);
    let (_, peak) = rss();
    let report = Report {
        symbols: symbols.len(),
        alerts: engine.alert_count(),
        bars: args.bars,
        candle_updates,
        alert_evaluations,
        triggers,
        wall_s,
        alert_evals_per_s: alert_evaluations as f64 / wall_s.max(1e-9),
        round_p50_ms: percentile(&rounds, 0.5),
        round_p99_ms: percentile(&rounds, 0.99),
        peak_rss_mb: peak / 1_048_576.0,
        update_p50_us: percentile(&update_times, 0.5),
        update_p99_us: percentile(&update_times, 0.99),
        bytes_per_alert: (rss_after - rss_before).max(0.0) / (args.alerts.max(1)) as f64,
        register_s,
        distinct_indicators,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `alert-runner bench-store`: the store's benchmarks on a scratch database.
pub fn run_store(args: &BenchStoreArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sizes = alert_store::bench::BenchSizes {
        triggers: args.triggers,
        alerts: args.alerts,
        deliveries: args.deliveries.min(args.triggers),
        ..alert_store::bench::BenchSizes::default()
    };
    let report = runtime.block_on(alert_store::bench::run(&args.database.database_url, sizes))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
