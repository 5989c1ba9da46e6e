//! A deterministic synthetic market and a realistic alert mix, for benchmarks (the `bench`
//! subcommand and the criterion benches drive the engine with the same data).
//!
//! Nothing here is random at run time: a seed fixes every price and every alert.

use std::sync::Arc;

use alert_core::{BarTime, Candle, PriceSource, Symbol, Timeframe};

use crate::definition::{
    Action, AlertDefinition, AlertId, Bound, Condition, ConditionNode, Logic, Operand, Series,
    Test, TriggerMode,
};

/// The generator behind the synthetic market and alert mix.
pub type Rng = alert_core::SplitMix64;

/// Symbols `SYM0000USDT`, `SYM0001USDT`, ...
pub fn symbols(n: usize) -> Vec<Symbol> {
    (0..n)
        .filter_map(|i| Symbol::new(&format!("SYM{i:04}USDT")).ok())
        .collect()
}

/// A 1m random walk per symbol, with volatility clusters; `open_time` starts at `start`.
pub struct Market {
    rng: Rng,
    prices: Vec<f64>,
    vols: Vec<f64>,
    pub start: BarTime,
}

impl Market {
    pub fn new(symbols: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let prices = (0..symbols)
            .map(|_| 10f64.powf(rng.unit() * 5.0 - 1.0))
            .collect();
        let vols = (0..symbols).map(|_| 0.0005 + rng.unit() * 0.002).collect();
        Self {
            rng,
            prices,
            vols,
            start: BarTime::from_millis(1_704_067_200_000),
        }
    }

    /// The closed 1m candle of `symbol` for bar `i`, plus `partials` in-progress versions of it.
    pub fn bar(&mut self, symbol: usize, i: u64, partials: usize, out: &mut Vec<(Candle, bool)>) {
        let open = self.prices[symbol];
        if self.rng.unit() < 0.01 {
            self.vols[symbol] = 0.0005 + self.rng.unit() * 0.004;
        }
        let vol = self.vols[symbol];
        let t = self
            .start
            .plus_millis(i as i64 * Timeframe::M1.duration_ms());
        let mut high = open;
        let mut low = open;
        let mut price = open;
        let mut volume = 0.0;
        for k in 0..=partials {
            price *= 1.0 + (self.rng.unit() - 0.5) * vol * 2.0;
            high = high.max(price);
            low = low.min(price);
            volume += self.rng.unit() * 10.0;
            let c = Candle {
                open_time: t,
                open,
                high,
                low,
                close: price,
                volume,
            };
            out.push((c, k == partials));
        }
        self.prices[symbol] = price;
    }
}

const INDICATORS: [(&str, f64, f64); 10] = [
    ("RSI(14)", 20.0, 80.0),
    ("RSI(7)", 20.0, 80.0),
    ("EMA(20)", 0.0, 0.0),
    ("EMA(50)", 0.0, 0.0),
    ("SMA(200)", 0.0, 0.0),
    ("STOCH(14,3,3)", 10.0, 90.0),
    ("WILLR(14)", -90.0, -10.0),
    ("CCI(20)", -150.0, 150.0),
    ("MFI(14)", 20.0, 80.0),
    ("ATR(14)", 0.0, 0.0),
];

fn price(tf: Timeframe) -> Operand {
    Operand {
        timeframe: tf,
        series: Series::Price(PriceSource::Close),
    }
}

fn indicator(tf: Timeframe, spec: &str, component: usize) -> Option<Operand> {
    Some(Operand {
        timeframe: tf,
        series: Series::Indicator {
            spec: spec.parse().ok()?,
            component,
        },
    })
}

/// A realistic alert on `symbol` whose current price is about `near`: price thresholds,
/// indicator thresholds, crossings, MACD, Bollinger channels, multi-timeframe conditions and
/// OR groups, with the three trigger modes.
pub fn alert(
    rng: &mut Rng,
    n: u64,
    symbol: Symbol,
    near: f64,
) -> Option<(AlertId, Arc<AlertDefinition>)> {
    let base = [Timeframe::M1, Timeframe::M5, Timeframe::M15, Timeframe::H1][rng.below(4) as usize];
    let leaf = |id: &str, tf: Timeframe, lhs: Operand, test: Test| {
        ConditionNode::Leaf(Condition {
            id: id.to_owned(),
            timeframe: tf,
            lhs,
            test,
        })
    };
    let threshold = near * (0.97 + rng.unit() * 0.06);
    let (spec, lo, hi) = INDICATORS[rng.below(INDICATORS.len() as u64) as usize];
    let conditions = match rng.below(7) {
        0 => vec![leaf(
            "price",
            base,
            price(base),
            Test::Greater(Bound::Value(threshold)),
        )],
        1 => {
            let ind = indicator(base, spec, 0)?;
            let test = if hi == 0.0 {
                Test::CrossesAbove(Bound::Series(ind))
            } else if rng.unit() < 0.5 {
                Test::Less(Bound::Value(lo))
            } else {
                Test::Greater(Bound::Value(hi))
            };
            let lhs = if hi == 0.0 { price(base) } else { ind };
            vec![leaf("ind", base, lhs, test)]
        }
        2 => vec![leaf(
            "macd",
            base,
            indicator(base, "MACD(12,26,9)", 2)?,
            Test::CrossesAbove(Bound::Value(0.0)),
        )],
        3 => vec![leaf(
            "bb",
            base,
            price(base),
            Test::ExitingChannel {
                lower: Bound::Series(indicator(base, "BBANDS(20,2)", 2)?),
                upper: Bound::Series(indicator(base, "BBANDS(20,2)", 0)?),
            },
        )],
        4 => vec![
            leaf(
                "rsi_1h",
                Timeframe::H1,
                indicator(Timeframe::H1, "RSI(14)", 0)?,
                Test::Less(Bound::Value(40.0)),
            ),
            leaf(
                "ema_15m",
                Timeframe::M15,
                price(Timeframe::M15),
                Test::CrossesAbove(Bound::Series(indicator(Timeframe::M15, "EMA(20)", 0)?)),
            ),
        ],
        5 => vec![ConditionNode::Group {
            logic: Logic::Or,
            children: vec![
                leaf(
                    "low",
                    base,
                    price(base),
                    Test::Less(Bound::Value(near * 0.98)),
                ),
                leaf(
                    "high",
                    base,
                    price(base),
                    Test::Greater(Bound::Value(near * 1.02)),
                ),
            ],
        }],
        _ => vec![leaf(
            "move",
            base,
            price(base),
            Test::MovingUpPct {
                pct: 0.5 + rng.unit(),
                bars: 3,
            },
        )],
    };
    let trigger = match rng.below(10) {
        0..=5 => TriggerMode::OncePerBar,
        6..=8 => TriggerMode::OncePerBarClose,
        _ => TriggerMode::Once,
    };
    let def = AlertDefinition {
        id: None,
        user_id: None,
        name: String::new(),
        symbol,
        base_timeframe: base,
        logic: Logic::And,
        conditions,
        trigger,
        debounce_bars: 1,
        message: None,
        expires_at: None,
        not_before: None,
        actions: vec![Action::Notify { title: None }],
    };
    Some((AlertId::new(&format!("a{n}")).ok()?, Arc::new(def)))
}
