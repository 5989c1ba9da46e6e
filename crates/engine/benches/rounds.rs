//! Engine throughput: one round (a bar close of every symbol) at 100, 10,000 and 1,000,000
//! alerts over 1, 100 and 1,000 symbols, and one in-progress update of a symbol with 1,000
//! alerts. Data and alerts come from `alert_engine::synthetic`, like `alert-runner bench`.

use std::time::{Duration, Instant};

use alert_core::{Candle, CandleUpdate, Symbol, Timeframe};
use alert_engine::synthetic::{self, Market, Rng};
use alert_engine::{Engine, EngineConfig};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

struct World {
    engine: Engine,
    market: Market,
    symbols: Vec<Symbol>,
    bar: u64,
    buf: Vec<(Candle, bool)>,
    events: Vec<alert_engine::Event>,
}

impl World {
    fn new(symbols: usize, alerts: usize) -> Self {
        let symbols = synthetic::symbols(symbols);
        let mut w = World {
            engine: Engine::new(EngineConfig {
                feed: Timeframe::M1,
                history_bars: 300,
            }),
            market: Market::new(symbols.len(), 7),
            symbols,
            bar: 0,
            buf: Vec::new(),
            events: Vec::new(),
        };
        let mut closes = vec![0.0; w.symbols.len()];
        for _ in 0..120 {
            for (s, close) in closes.iter_mut().enumerate() {
                w.buf.clear();
                w.market.bar(s, w.bar, 0, &mut w.buf);
                *close = w.buf[0].0.close;
                let _ = w.engine.on_candle(
                    w.symbols[s],
                    &CandleUpdate {
                        candle: w.buf[0].0,
                        closed: true,
                    },
                    &mut w.events,
                );
            }
            w.bar += 1;
        }
        let mut rng = Rng::new(11);
        for n in 0..alerts as u64 {
            let s = n as usize % w.symbols.len();
            if let Some((id, def)) = synthetic::alert(&mut rng, n, w.symbols[s], closes[s]) {
                let _ = w.engine.upsert(id, def);
            }
        }
        w
    }

    /// Feeds one bar close of every symbol; returns the time the engine took.
    fn round(&mut self) -> Duration {
        let mut spent = Duration::ZERO;
        for s in 0..self.symbols.len() {
            self.buf.clear();
            self.market.bar(s, self.bar, 0, &mut self.buf);
            let update = CandleUpdate {
                candle: self.buf[0].0,
                closed: true,
            };
            let t = Instant::now();
            let _ = self
                .engine
                .on_candle(self.symbols[s], &update, &mut self.events);
            spent += t.elapsed();
        }
        self.events.clear();
        self.bar += 1;
        spent
    }
}

fn rounds(c: &mut Criterion) {
    let mut group = c.benchmark_group("round");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (alerts, symbols) in [(100usize, 1usize), (10_000, 100), (1_000_000, 1_000)] {
        let mut world = World::new(symbols, alerts);
        group.bench_function(
            BenchmarkId::from_parameter(format!("{alerts} alerts / {symbols} symbols")),
            |b| b.iter_custom(|iters| (0..iters).map(|_| world.round()).sum()),
        );
    }
    group.finish();
}

fn in_progress(c: &mut Criterion) {
    let mut group = c.benchmark_group("in-progress update");
    group.sample_size(20);
    let mut world = World::new(1, 1_000);
    let symbol = world.symbols[0];
    let mut k = 0u64;
    group.bench_function("1000 alerts on the symbol", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                // A new bar every 10 updates, so the in-progress bar keeps changing.
                world.buf.clear();
                world.market.bar(0, world.bar, 9, &mut world.buf);
                let (candle, closed) = world.buf[(k % 10) as usize];
                let t = Instant::now();
                let _ = world.engine.on_candle(
                    symbol,
                    &CandleUpdate { candle, closed },
                    &mut world.events,
                );
                spent += t.elapsed();
                world.events.clear();
                k += 1;
                if closed {
                    world.bar += 1;
                }
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, rounds, in_progress);
criterion_main!(benches);
