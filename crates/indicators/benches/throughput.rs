//! Update throughput of every indicator over 1,000,000 bars, side by side with the `ta`
//! (0.5) and `yata` (0.7) crates wherever they have the same indicator.
//!
//! Run with `cargo bench -p alert-indicators --bench throughput`. Every benchmark processes
//! the whole series per iteration with a freshly built indicator (construction is inside the
//! timed closure; it is negligible next to a million updates), and reports elements (bars)
//! per second, so criterion's `time` divided by 1,000,000 is the cost of one bar.
//!
//! For each indicator there is a criterion group named after its spec (`RSI(14)`) with the
//! functions:
//!
//! - `alert-runner`: our concrete type, `update` on every bar;
//! - `alert-runner peek` (RSI, BBANDS, STOCH only): one `peek` and then one `update` per bar,
//!   the pattern of a live bar that is looked at once before it closes;
//! - `ta` and `yata`: the peer crates' equivalent, where one exists.
//!
//! THE COMPARISON IS OF SPEED ONLY. Several peer implementations do not compute TA-Lib's
//! values (ours do, see `tests/golden.rs`); the differences are noted at each group. In
//! short:
//!
//! - `ta`'s EMA seeds with the first value instead of the SMA of the first `n`, and its MACD,
//!   RSI and ATR are built on that EMA (RSI and ATR are not Wilder-smoothed); its
//!   `FastStochastic` is the raw %K, and its `SlowStochastic` smooths %K with an EMA and has
//!   no %D line; its CCI takes the mean deviation of the close, not of the typical price;
//!   every `ta` indicator returns a value from the first bar (no lookback).
//! - `yata`'s EMA also seeds with the first value (MACD too); its RSI, STOCH, MFI and ADX are
//!   on a 0–1 scale, its RSI defaults to an EMA (configured here with its Wilder `RMA`, which
//!   still starts from 0 instead of TA-Lib's SMA seed), its BBANDS use the sample deviation
//!   (n − 1) instead of the population one, its ROC is a ratio not a percentage, its CCI is
//!   rescaled, and its indicators also compute trading signals on every bar. It has no ATR,
//!   WILLR, OBV or VWAP (nor does `ta` have WMA, WILLR, ADX or VWAP).
//!
//! Inputs are converted up front to each crate's own bar type (`alert_core::Candle`,
//! `ta::DataItem`, `yata::core::Candle`, or plain `f64` closes for `yata`'s `Method`s), so
//! the conversion is not timed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use alert_core::{BarTime, Candle, PriceSource, SplitMix64};
use alert_indicators::Indicator;
use alert_indicators::averages::{Ema, Macd, Sma, Wma};
use alert_indicators::momentum::{Adx, Cci, Mfi, Roc, Rsi, Stoch, Willr};
use alert_indicators::volatility::{Atr, Bbands};
use alert_indicators::volume::{Obv, Vwap};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use ta::Next as _;
use yata::core::IndicatorInstance as _;

/// Bars in the series.
const BARS: usize = 1_000_000;

/// The series in each crate's input type, built once outside every timed loop.
struct Series {
    ours: Vec<Candle>,
    ta: Vec<ta::DataItem>,
    yata: Vec<yata::core::Candle>,
    /// Closes, for `yata`'s single-input `Method`s.
    close: Vec<f64>,
}

/// Standard normal (Box–Muller; one of the pair is enough here).
fn normal(rng: &mut SplitMix64) -> f64 {
    let (u, v) = (1.0 - rng.unit(), rng.unit()); // u in (0, 1]: ln(u) is finite
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A deterministic one-minute OHLCV series: a mean-reverting log-price random walk around
/// 100 with slowly changing volatility regimes, small opening gaps, wicks on both sides,
/// prices on a 0.01 tick (so equal closes and flat bars occur, as in real data) and
/// log-normal volumes that rise with the size of the move.
fn series() -> Series {
    let mut rng = SplitMix64::new(0x00A1_E127_2026_0001);
    let tick = |p: f64| (p * 100.0).round() / 100.0;
    let anchor = 100.0_f64.ln();
    let mut log_price = anchor;
    let mut log_vol_regime = 0.0_f64;
    let mut prev_close = 100.0_f64;
    let mut ours = Vec::with_capacity(BARS);
    for i in 0..BARS {
        log_vol_regime = 0.999 * log_vol_regime + 0.03 * normal(&mut rng);
        let sigma = 0.0012 * log_vol_regime.exp();
        log_price += -0.0002 * (log_price - anchor) + sigma * normal(&mut rng);
        let open = tick(prev_close * (1.0 + 0.1 * sigma * normal(&mut rng))).max(0.01);
        let close = tick(log_price.exp()).max(0.01);
        let body_high = open.max(close);
        let body_low = open.min(close);
        let high = tick(body_high * (1.0 + 0.6 * sigma * normal(&mut rng).abs())).max(body_high);
        let low =
            tick(body_low * (1.0 - 0.6 * sigma * normal(&mut rng).abs())).clamp(0.01, body_low);
        let move_size = ((close - prev_close) / prev_close).abs() / sigma;
        let volume = (1_000.0 * (0.8 * normal(&mut rng)).exp() * (1.0 + move_size)).round();
        prev_close = close;
        ours.push(Candle {
            open_time: BarTime::from_millis(1_600_000_000_000 + i as i64 * 60_000),
            open,
            high,
            low,
            close,
            volume,
        });
    }
    assert!(
        ours.iter().all(|c| c.check().is_ok()),
        "synthetic bar out of range"
    );

    let ta = ours
        .iter()
        .map(|c| {
            ta::DataItem::builder()
                .open(c.open)
                .high(c.high)
                .low(c.low)
                .close(c.close)
                .volume(c.volume)
                .build()
                .expect("synthetic bar is a valid ta::DataItem")
        })
        .collect();
    let yata = ours
        .iter()
        .map(|c| yata::core::Candle {
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
        })
        .collect();
    let close = ours.iter().map(|c| c.close).collect();
    Series {
        ours,
        ta,
        yata,
        close,
    }
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

fn group<'a>(c: &'a mut Criterion, name: &str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(BARS as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g
}

/// Times one pass over `data`: a fresh state from `make`, then `step` on every bar, every
/// output black-boxed so none of the work can be skipped.
fn run<D, S, O>(
    g: &mut Group<'_>,
    name: &str,
    data: &[D],
    make: impl Fn() -> S,
    step: impl Fn(&mut S, &D) -> O,
) {
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut state = make();
            for bar in data {
                black_box(step(&mut state, bar));
            }
        });
    });
}

/// Our indicator: `update` on every bar.
fn ours<I: Indicator>(g: &mut Group<'_>, s: &Series, make: impl Fn() -> I) {
    run(g, "alert-runner", &s.ours, make, |ind, bar| ind.update(bar));
}

/// Our indicator with one `peek` at each bar before it is committed.
fn ours_peek<I: Indicator>(g: &mut Group<'_>, s: &Series, make: impl Fn() -> I) {
    run(g, "alert-runner peek", &s.ours, make, |ind, bar| {
        (ind.peek(bar), ind.update(bar))
    });
}

/// A `ta` indicator fed `&DataItem`s.
fn ta<T, O>(g: &mut Group<'_>, s: &Series, make: impl Fn() -> T)
where
    T: for<'d> ta::Next<&'d ta::DataItem, Output = O>,
{
    run(g, "ta", &s.ta, make, |ind, bar| ind.next(bar));
}

/// A `yata` `Method` over closes; it is seeded with the first close and then fed every
/// close, first included, as `yata`'s own `Method::over` does.
fn yata_method<M>(g: &mut Group<'_>, s: &Series, params: M::Params)
where
    M: yata::core::Method<Input = f64>,
    M::Params: Copy,
{
    let first = s.close[0];
    run(
        g,
        "yata",
        &s.close,
        || M::new(params, &first).expect("valid yata method"),
        |m, x| m.next(x),
    );
}

/// A `yata` indicator over candles, initialised with the first candle and then fed every
/// candle, as `yata`'s own `IndicatorConfig::over` does.
fn yata_indicator<C: yata::core::IndicatorConfig>(g: &mut Group<'_>, s: &Series, cfg: C) {
    let first = s.yata[0];
    run(
        g,
        "yata",
        &s.yata,
        || cfg.clone().init(&first).expect("valid yata config"),
        |ind, bar| ind.next(bar),
    );
}

fn benches(c: &mut Criterion) {
    use PriceSource::Close;
    use ta::indicators as t;
    use yata::helpers::MA;
    use yata::indicators as y;
    use yata::methods as ym;

    let s = series();

    let mut g = group(c, "SMA(20)");
    ours(&mut g, &s, || Sma::new(20, Close).unwrap());
    ta(&mut g, &s, || t::SimpleMovingAverage::new(20).unwrap());
    yata_method::<ym::SMA>(&mut g, &s, 20);
    g.finish();

    // ta and yata seed the EMA with the first value, TA-Lib with the SMA of the first 20.
    let mut g = group(c, "EMA(20)");
    ours(&mut g, &s, || Ema::new(20, Close).unwrap());
    ta(&mut g, &s, || t::ExponentialMovingAverage::new(20).unwrap());
    yata_method::<ym::EMA>(&mut g, &s, 20);
    g.finish();

    // ta has no WMA.
    let mut g = group(c, "WMA(20)");
    ours(&mut g, &s, || Wma::new(20, Close).unwrap());
    yata_method::<ym::WMA>(&mut g, &s, 20);
    g.finish();

    // ta: EMA-smoothed (not Wilder), seeded with 0.1/0.1 on the first bar. yata: 0–1 scale;
    // configured with its Wilder RMA (its default is an EMA), which starts from 0 rather than
    // TA-Lib's SMA seed.
    let mut g = group(c, "RSI(14)");
    ours(&mut g, &s, || Rsi::new(14, Close).unwrap());
    ours_peek(&mut g, &s, || Rsi::new(14, Close).unwrap());
    ta(&mut g, &s, || t::RelativeStrengthIndex::new(14).unwrap());
    yata_indicator(
        &mut g,
        &s,
        y::RSI {
            ma: MA::RMA(14),
            ..y::RSI::default()
        },
    );
    g.finish();

    // Both peers' EMAs seed with the first value; yata gives no histogram (it is one
    // subtraction) but computes two crossing signals per bar.
    let mut g = group(c, "MACD(12,26,9)");
    ours(&mut g, &s, || Macd::new(12, 26, 9, Close).unwrap());
    ta(&mut g, &s, || {
        t::MovingAverageConvergenceDivergence::new(12, 26, 9).unwrap()
    });
    yata_indicator(
        &mut g,
        &s,
        y::MACD {
            ma1: MA::EMA(12),
            ma2: MA::EMA(26),
            signal: MA::EMA(9),
            ..y::MACD::default()
        },
    );
    g.finish();

    // yata uses the sample standard deviation (n − 1); TA-Lib and ta the population one.
    let mut g = group(c, "BBANDS(20,2)");
    ours(&mut g, &s, || Bbands::new(20, 2.0, Close).unwrap());
    ours_peek(&mut g, &s, || Bbands::new(20, 2.0, Close).unwrap());
    ta(&mut g, &s, || t::BollingerBands::new(20, 2.0).unwrap());
    yata_indicator(
        &mut g,
        &s,
        y::BollingerBands {
            avg_size: 20,
            sigma: 2.0,
            ..y::BollingerBands::default()
        },
    );
    g.finish();

    // ta has no slow stochastic with a %D line: its `SlowStochastic` is the fast %K smoothed
    // by an EMA(3), so an EMA(3) of that is added for %D, to do comparable work (TA-Lib
    // smooths both with SMAs). yata: SMA(3)/SMA(3) smoothing as TA-Lib, on a 0–1 scale.
    let mut g = group(c, "STOCH(14,3,3)");
    ours(&mut g, &s, || Stoch::new(14, 3, 3).unwrap());
    ours_peek(&mut g, &s, || Stoch::new(14, 3, 3).unwrap());
    run(
        &mut g,
        "ta",
        &s.ta,
        || {
            (
                t::SlowStochastic::new(14, 3).unwrap(),
                t::ExponentialMovingAverage::new(3).unwrap(),
            )
        },
        |(k, d), bar| {
            let k = k.next(bar);
            (k, d.next(k))
        },
    );
    yata_indicator(
        &mut g,
        &s,
        y::StochasticOscillator {
            period: 14,
            ma: MA::SMA(3),
            signal: MA::SMA(3),
            ..y::StochasticOscillator::default()
        },
    );
    g.finish();

    // ta: EMA of the true range seeded with the first one (not Wilder). yata has no ATR.
    let mut g = group(c, "ATR(14)");
    ours(&mut g, &s, || Atr::new(14).unwrap());
    ta(&mut g, &s, || t::AverageTrueRange::new(14).unwrap());
    g.finish();

    // ta has no ADX. yata: Wilder RMA smoothing started from 0 (TA-Lib seeds with sums),
    // 0–1 scale.
    let mut g = group(c, "ADX(14)");
    ours(&mut g, &s, || Adx::new(14).unwrap());
    yata_indicator(
        &mut g,
        &s,
        y::AverageDirectionalIndex {
            method1: MA::RMA(14),
            method2: MA::RMA(14),
            period1: 1,
            ..y::AverageDirectionalIndex::default()
        },
    );
    g.finish();

    // ta takes the mean deviation of the close instead of the typical price. yata's CCI is
    // divided by 1.5 instead of TA-Lib's 0.015 scaling (a ×1/100 difference); typical price
    // as source. All three compute the mean deviation by a pass over the window, as TA-Lib.
    let mut g = group(c, "CCI(20)");
    ours(&mut g, &s, || Cci::new(20).unwrap());
    ta(&mut g, &s, || t::CommodityChannelIndex::new(20).unwrap());
    yata_indicator(
        &mut g,
        &s,
        y::CommodityChannelIndex {
            period: 20,
            source: yata::core::Source::TP,
            ..y::CommodityChannelIndex::default()
        },
    );
    g.finish();

    // yata: 0–1 scale. ta returns 50 on the first bar and values from the second.
    let mut g = group(c, "MFI(14)");
    ours(&mut g, &s, || Mfi::new(14).unwrap());
    ta(&mut g, &s, || t::MoneyFlowIndex::new(14).unwrap());
    yata_indicator(
        &mut g,
        &s,
        y::MoneyFlowIndex {
            period: 14,
            ..y::MoneyFlowIndex::default()
        },
    );
    g.finish();

    // yata's ROC is a ratio, not a percentage.
    let mut g = group(c, "ROC(10)");
    ours(&mut g, &s, || Roc::new(10, Close).unwrap());
    ta(&mut g, &s, || t::RateOfChange::new(10).unwrap());
    yata_method::<ym::ROC>(&mut g, &s, 10);
    g.finish();

    // Neither peer has Williams %R.
    let mut g = group(c, "WILLR(14)");
    ours(&mut g, &s, || Willr::new(14).unwrap());
    g.finish();

    // yata has no OBV.
    let mut g = group(c, "OBV");
    ours(&mut g, &s, Obv::new);
    ta(&mut g, &s, t::OnBalanceVolume::new);
    g.finish();

    // Neither peer has a VWAP.
    let mut g = group(c, "VWAP");
    ours(&mut g, &s, Vwap::new);
    g.finish();
}

criterion_group!(throughput, benches);
criterion_main!(throughput);
