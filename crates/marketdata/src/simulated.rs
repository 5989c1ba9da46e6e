//! `simulated`: a deterministic, seeded market simulator for the embedded default — several
//! symbols (named `SIM…` so nobody mistakes them for real prices) on an accelerated clock.
//!
//! Prices are a random walk with volatility regimes, drift swings and occasional spikes, so
//! oscillators reach their extremes and averages cross within minutes. History is sent at
//! once (indicators warm up), then live 1m bars with in-progress updates.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, SplitMix64, Symbol, Timeframe};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::source::{Source, SourceError, SourceEvent, Wanted};

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimulatedConfig {
    /// Symbols and their starting prices.
    pub symbols: Vec<(Symbol, f64)>,
    pub seed: u64,
    /// Closed 1m bars sent at once before the live bars.
    pub history_bars: u64,
    /// Simulated seconds per wall second (60: one 1m bar per second).
    pub speed: f64,
    /// In-progress updates sent before each bar closes.
    pub updates_per_bar: u32,
    /// Open time of the first history bar (default: aligned `now − history`).
    pub start: Option<BarTime>,
}

impl SimulatedConfig {
    /// Three symbols, a day of history, one bar per second.
    pub fn demo(seed: u64) -> Self {
        let symbols = [("SIMBTC", 43_000.0), ("SIMETH", 2_300.0), ("SIMSOL", 95.0)]
            .into_iter()
            .filter_map(|(s, p)| Symbol::new(s).ok().map(|s| (s, p)))
            .collect();
        Self {
            symbols,
            seed,
            history_bars: 1_440,
            speed: 60.0,
            updates_per_bar: 3,
            start: None,
        }
    }
}

struct Walk {
    price: f64,
    vol: f64,
    drift: f64,
}

/// The deterministic price paths.
pub struct Simulator {
    rng: SplitMix64,
    walks: Vec<Walk>,
}

impl Simulator {
    pub fn new(config: &SimulatedConfig) -> Self {
        Self {
            rng: SplitMix64::new(config.seed),
            walks: config
                .symbols
                .iter()
                .map(|(_, p)| Walk {
                    price: *p,
                    vol: 0.0015,
                    drift: 0.0,
                })
                .collect(),
        }
    }

    /// The next 1m bar of symbol `i`, and `partials` in-progress versions of it (last = closed).
    pub fn bar(&mut self, i: usize, open_time: BarTime, partials: u32) -> Vec<(Candle, bool)> {
        let rng = &mut self.rng;
        let Some(w) = self.walks.get_mut(i) else {
            return Vec::new();
        };
        if rng.unit() < 0.01 {
            w.vol = 0.0005 + rng.unit() * 0.004;
        }
        if rng.unit() < 0.02 {
            w.drift = (rng.unit() - 0.5) * 0.001;
        }
        let open = w.price;
        let (mut high, mut low, mut price, mut volume) = (open, open, open, 0.0);
        let steps = partials + 1;
        let mut out = Vec::with_capacity(steps as usize);
        for k in 0..steps {
            let shock = if rng.unit() < 0.002 {
                (rng.unit() - 0.5) * 0.05
            } else {
                0.0
            };
            let step =
                w.drift / f64::from(steps) + w.vol / f64::from(steps).sqrt() * rng.normal() + shock;
            price = (price * (1.0 + step)).max(open * 0.5).max(1e-6);
            high = high.max(price);
            low = low.min(price);
            volume += rng.unit() * 20.0 * (1.0 + step.abs() * 500.0) / f64::from(steps);
            out.push((
                Candle {
                    open_time,
                    open,
                    high,
                    low,
                    close: price,
                    volume,
                },
                k + 1 == steps,
            ));
        }
        w.price = price;
        out
    }
}

/// The simulated source.
pub struct Simulated {
    config: SimulatedConfig,
}

impl Simulated {
    pub fn new(config: SimulatedConfig) -> Self {
        Self { config }
    }

    async fn play(
        self,
        out: mpsc::Sender<SourceEvent>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let c = &self.config;
        let minute = Timeframe::M1.duration_ms();
        let start = c.start.unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Timeframe::M1.bar_open(BarTime::from_millis(now - c.history_bars as i64 * minute))
        });
        let mut sim = Simulator::new(c);
        let send = |e| {
            let out = out.clone();
            async move { out.send(e).await.is_ok() }
        };
        for b in 0..c.history_bars {
            let t = start.plus_millis(b as i64 * minute);
            for (i, (symbol, _)) in c.symbols.iter().enumerate() {
                for (candle, closed) in sim.bar(i, t, 0) {
                    if !send(SourceEvent::Candle {
                        symbol: *symbol,
                        update: CandleUpdate { candle, closed },
                    })
                    .await
                    {
                        return Ok(());
                    }
                }
            }
        }
        for (symbol, _) in &c.symbols {
            send(SourceEvent::Warm { symbol: *symbol }).await;
        }
        let bar_wall = Duration::from_secs_f64(60.0 / c.speed.max(0.001));
        let tick = bar_wall / (c.updates_per_bar + 1);
        let mut b = c.history_bars;
        loop {
            let t = start.plus_millis(b as i64 * minute);
            let bars: Vec<Vec<(Candle, bool)>> = (0..c.symbols.len())
                .map(|i| sim.bar(i, t, c.updates_per_bar))
                .collect();
            for k in 0..=c.updates_per_bar as usize {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                for ((symbol, _), updates) in c.symbols.iter().zip(&bars) {
                    if let Some((candle, closed)) = updates.get(k) {
                        let e = SourceEvent::Candle {
                            symbol: *symbol,
                            update: CandleUpdate {
                                candle: *candle,
                                closed: *closed,
                            },
                        };
                        if !send(e).await {
                            return Ok(());
                        }
                    }
                }
            }
            b += 1;
        }
    }
}

impl Source for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn timeframe(&self) -> Timeframe {
        Timeframe::M1
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<SourceEvent>,
        _wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin((*self).play(out, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_valid_and_deterministic() {
        let config = SimulatedConfig::demo(7);
        let run = || {
            let mut sim = Simulator::new(&config);
            (0..500)
                .flat_map(|b| sim.bar(b % 3, BarTime::from_millis(b as i64 * 60_000), 2))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run(), "same seed, same market");
        for (c, _) in &a {
            assert_eq!(c.check(), Ok(()));
        }
        assert!(
            a.chunks(3).all(|u| !u[0].1 && !u[1].1 && u[2].1),
            "two in-progress updates, then the close"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sends_history_then_live_bars() {
        let mut config = SimulatedConfig::demo(1);
        config.history_bars = 10;
        config.start = Some(BarTime::from_millis(0));
        let (tx, mut rx) = mpsc::channel(64);
        let (_w, wanted) = watch::channel(Wanted::new());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Box::new(Simulated::new(config)).run(tx, wanted, cancel.clone()));
        let mut closed = 0;
        let mut warm = 0;
        let mut live_partials = 0;
        while let Some(e) = rx.recv().await {
            match e {
                SourceEvent::Candle { update, .. } if update.closed => closed += 1,
                SourceEvent::Candle { .. } => live_partials += 1,
                SourceEvent::Warm { .. } => warm += 1,
                SourceEvent::Reconnected => {}
            }
            if closed == 30 + 3 {
                cancel.cancel();
                break;
            }
        }
        drop(rx);
        let _ = task.await;
        assert_eq!(warm, 3);
        assert_eq!(
            live_partials, 9,
            "three in-progress updates per symbol before the first live close"
        );
    }
}
