//! `alert-runner bot-backtest` on REAL candles: EURUSD hourly and GOOG daily from the
//! `backtesting` package's test data (AGPL-3.0: fetched at run time, never committed).
//!
//! ```sh
//! python3 scripts/realdata/fetch_candles.py DIR
//! ALERT_RUNNER_REAL_CANDLES=DIR cargo test -p alert-runner --test real_bot_backtest -- --ignored
//! ```
//!
//! `.ci/run` runs it. Every order line is checked against the bot's rules, recomputed from the
//! bot file, the order lines and the candle file (not from the bots crate): ladder levels and
//! sizes, take profit and stop loss from the average price, fills the bar's range allows, no
//! trigger missed between orders, no overlapping deals, the cooldown; and every figure of the
//! summary against the same walk.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

const ENV: &str = "ALERT_RUNNER_REAL_CANDLES";

#[test]
#[ignore = "needs real candles: python3 scripts/realdata/fetch_candles.py DIR; ALERT_RUNNER_REAL_CANDLES=DIR"]
fn a_dca_bot_on_eurusd_hourly_keeps_its_rules() {
    check(&Case {
        bot: "dca_bot_eurusd_1h.json",
        candles: "EURUSD.csv",
        symbol: "EURUSD",
        timeframe: "1h",
        bar_ms: 3_600_000,
        min_deals: 30,
        min_stop_losses: 1,
    });
}

#[test]
#[ignore = "needs real candles: python3 scripts/realdata/fetch_candles.py DIR; ALERT_RUNNER_REAL_CANDLES=DIR"]
fn a_dca_bot_on_goog_daily_keeps_its_rules() {
    check(&Case {
        bot: "dca_bot_goog_1d.json",
        candles: "GOOG.csv",
        symbol: "GOOG",
        timeframe: "1d",
        bar_ms: 86_400_000,
        min_deals: 25,
        min_stop_losses: 1,
    });
}

struct Case {
    bot: &'static str,
    candles: &'static str,
    symbol: &'static str,
    timeframe: &'static str,
    bar_ms: i64,
    /// What the fixture was tuned to produce on this file, so the checks below see real work.
    min_deals: usize,
    min_stop_losses: usize,
}

/// The bot fixture's settings, with the documented defaults.
struct Bot {
    base_order: f64,
    safety_order: f64,
    max_safety_orders: usize,
    deviation: f64,
    step_scale: f64,
    volume_scale: f64,
    take_profit: f64,
    stop_loss: Option<f64>,
    cooldown_bars: i64,
    fee_pct: f64,
    quantity_step: f64,
}

impl Bot {
    fn read(path: &Path) -> Self {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let num = |k: &str, default: Option<f64>| {
            v[k].as_f64()
                .or(default)
                .unwrap_or_else(|| panic!("{}: no {k}", path.display()))
        };
        Self {
            base_order: num("base_order", None),
            safety_order: num("safety_order", None),
            max_safety_orders: usize::try_from(v["max_safety_orders"].as_u64().unwrap_or(0))
                .unwrap_or(0),
            deviation: num("price_deviation_pct", None),
            step_scale: num("step_scale", Some(1.0)),
            volume_scale: num("volume_scale", Some(1.0)),
            take_profit: num("take_profit_pct", None),
            stop_loss: v["stop_loss_pct"].as_f64(),
            cooldown_bars: v["cooldown_bars"].as_i64().unwrap_or(0),
            fee_pct: num("fee_pct", Some(0.1)),
            quantity_step: num("quantity_step", Some(1e-8)),
        }
    }

    /// Safety order n (1-based): its cumulative deviation d·(1 + s + … + s^(n−1)) in % and its
    /// size so·v^(n−1) in quote.
    fn ladder(&self, n: usize) -> (f64, f64) {
        let (mut step, mut deviation, mut size) = (self.deviation, 0.0, self.safety_order);
        for i in 1..=n {
            deviation += step;
            if i < n {
                step *= self.step_scale;
                size *= self.volume_scale;
            }
        }
        (deviation, size)
    }
}

/// One row of the candle file (header format, as `fetch_candles.py` writes it).
struct Bar {
    open_time: i64,
    high: f64,
    low: f64,
    close: f64,
}

fn read_bars(path: &Path) -> Vec<Bar> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("open_time_ms,open,high,low,close,volume"),
        "{}: not a header-format candle file",
        path.display()
    );
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let num = |k: usize| -> f64 {
                f.get(k)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}:{}: {line}", path.display(), i + 2))
            };
            Bar {
                open_time: f
                    .first()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{}:{}: {line}", path.display(), i + 2)),
                high: num(2),
                low: num(3),
                close: num(4),
            }
        })
        .collect()
}

/// `a` and `b` agree to `rel` of the larger (or of 1e-9 near zero).
fn near(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

const EPS: f64 = 1e-12;

/// The deal being walked.
struct Deal {
    number: u64,
    entry: f64,
    qty: f64,
    cost: f64,
    fees: f64,
    filled: Vec<bool>,
    opened_at: i64,
}

impl Deal {
    fn average(&self) -> f64 {
        self.cost / self.qty
    }
}

fn check(case: &Case) {
    let Some(dir) = std::env::var_os(ENV) else {
        panic!(
            "{ENV} is not set: fetch the real candles first with \
             `python3 scripts/realdata/fetch_candles.py DIR` and run with {ENV}=DIR"
        )
    };
    let candles = PathBuf::from(dir).join(case.candles);
    assert!(
        candles.is_file(),
        "{} is missing: run `python3 scripts/realdata/fetch_candles.py DIR` with the {ENV} directory",
        candles.display()
    );
    let bot_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(case.bot);
    let bot = Bot::read(&bot_path);
    let bars = read_bars(&candles);
    assert!(!bars.is_empty(), "{}: no candles", candles.display());

    let out = common::bot_backtest(&bot_path, &candles, case.symbol, case.timeframe);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bot-backtest failed: {stderr}");
    eprintln!("{}", stderr.trim_end());
    let (orders, summary) = common::orders_and_summary(&out.stdout);
    let num = |v: &Value, k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("no number {k} in {v}"))
    };

    // The bar each order fired on: orders fire at the close of a bar (its open + one bar).
    let first_time = bars[0].open_time;
    let end_time = bars[bars.len() - 1].open_time + case.bar_ms;
    let bar_of = |o: &Value| -> usize {
        let fired = o["fired_at"]
            .as_i64()
            .unwrap_or_else(|| panic!("no fired_at: {o}"));
        assert!(
            first_time < fired && fired <= end_time,
            "an order outside the candles' time ({first_time}..{end_time}): {o}"
        );
        bars.binary_search_by_key(&(fired - case.bar_ms), |b| b.open_time)
            .unwrap_or_else(|_| panic!("an order at no bar's close: {o}"))
    };

    let mut by_bar: Vec<Vec<&Value>> = vec![Vec::new(); bars.len()];
    let mut last_fired = i64::MIN;
    for o in &orders {
        let fired = o["fired_at"].as_i64().unwrap_or(i64::MIN);
        assert!(fired >= last_fired, "orders out of time order: {o}");
        last_fired = fired;
        by_bar[bar_of(o)].push(o);
    }

    let step = bot.quantity_step;
    let (mut deal, mut deals_opened): (Option<Deal>, u64) = (None, 0);
    let (mut realized, mut fees, mut peak, mut max_drawdown) = (0.0, 0.0, 0.0_f64, 0.0_f64);
    let (mut closed, mut take_profits, mut stop_losses, mut wins) = (0, 0, 0, 0);
    let (mut safety_orders, mut max_cost, mut time_in_deals) = (0, 0.0_f64, 0_i64);
    // The next entry may come from this bar time on (the cooldown after the last close).
    let mut entry_from = i64::MIN;
    for (j, bar) in bars.iter().enumerate() {
        for &o in &by_bar[j] {
            let (price, qty, notional, fee) = (
                num(o, "price"),
                num(o, "base_qty"),
                num(o, "notional"),
                num(o, "fee"),
            );
            let fired = o["fired_at"].as_i64().unwrap_or(0);
            // The fill's own arithmetic: a whole number of quantity steps, notional, fee.
            let steps = qty / step;
            assert!(
                qty > 0.0 && (steps - steps.round()).abs() < 1e-6,
                "quantity not a multiple of {step}: {o}"
            );
            assert!(near(notional, price * qty, 1e-9), "notional: {o}");
            assert!(near(fee, notional * bot.fee_pct / 100.0, 1e-9), "fee: {o}");
            fees += fee;
            let role = &o["role"];
            let buy = role == "entry" || role.get("safety_order").is_some();
            assert_eq!(o["side"], if buy { "buy" } else { "sell" }, "{o}");
            if role == "entry" {
                assert!(deal.is_none(), "an entry inside an open deal: {o}");
                assert!(
                    bar.open_time >= entry_from,
                    "an entry inside the cooldown ({} bars after the last close): {o}",
                    bot.cooldown_bars
                );
                deals_opened += 1;
                // Every entry fills at its bar's close, for base_order quote rounded down.
                assert!(near(price, bar.close, EPS), "entry not at the close: {o}");
                assert!(
                    notional <= bot.base_order * (1.0 + EPS)
                        && notional > bot.base_order - price * step,
                    "entry size is not base_order {}: {o}",
                    bot.base_order
                );
                deal = Some(Deal {
                    number: deals_opened,
                    entry: price,
                    qty,
                    cost: notional,
                    fees: fee,
                    filled: vec![false; bot.max_safety_orders],
                    opened_at: fired,
                });
            } else if let Some(n) = role.get("safety_order") {
                let Some(d) = deal.as_mut() else {
                    panic!("a safety order without a deal: {o}")
                };
                let n = usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0);
                assert!(
                    (1..=bot.max_safety_orders).contains(&n),
                    "no such safety order: {o}"
                );
                assert!(!d.filled[n - 1], "safety order {n} filled twice: {o}");
                d.filled[n - 1] = true;
                safety_orders += 1;
                let (deviation, size) = bot.ladder(n);
                let level = d.entry * (1.0 - deviation / 100.0);
                // The alert fired on a close at or below the level; it fills at the level when
                // the bar traded through it, else (a gap past it) at the close.
                assert!(
                    bar.close <= level * (1.0 + EPS),
                    "SO{n} on a bar closing above its level {level}: {o}"
                );
                assert!(
                    bar.low <= level * (1.0 + EPS),
                    "SO{n}: the bar's low never reached {level}: {o}"
                );
                assert!(
                    price <= level * (1.0 + EPS),
                    "SO{n} above its level {level}: {o}"
                );
                assert!(
                    near(price, level, EPS) || (near(price, bar.close, EPS) && bar.high < level),
                    "SO{n} neither at its level {level} nor at the close of a gap past it: {o}"
                );
                assert!(
                    notional <= size * (1.0 + EPS) && notional > size - price * step,
                    "SO{n} size is not {size}: {o}"
                );
                d.qty += qty;
                d.cost += notional;
                d.fees += fee;
            } else {
                let Some(d) = deal.take() else {
                    panic!("an exit without a deal: {o}")
                };
                assert!(
                    near(qty, d.qty, 1e-9),
                    "the exit sells {qty}, not the position {}: {o}",
                    d.qty
                );
                let average = d.average();
                assert!(near(num(o, "average_price"), average, 1e-9), "average: {o}");
                if role == "take_profit" {
                    let tp = average * (1.0 + bot.take_profit / 100.0);
                    assert!(
                        bar.close >= tp * (1.0 - EPS),
                        "TP on a close below {tp}: {o}"
                    );
                    assert!(
                        price >= tp * (1.0 - EPS),
                        "TP below average·(1 + tp) = {tp}: {o}"
                    );
                    assert!(
                        bar.high >= price * (1.0 - EPS),
                        "TP above the bar's high: {o}"
                    );
                    take_profits += 1;
                } else if role == "stop_loss" {
                    let Some(sl) = bot.stop_loss.map(|sl| average * (1.0 - sl / 100.0)) else {
                        panic!("a stop loss on a bot without one: {o}")
                    };
                    assert!(
                        bar.close <= sl * (1.0 + EPS),
                        "SL on a close above {sl}: {o}"
                    );
                    assert!(
                        price <= sl * (1.0 + EPS),
                        "SL above average·(1 − sl) = {sl}: {o}"
                    );
                    assert!(
                        bar.low <= price * (1.0 + EPS),
                        "SL below the bar's low: {o}"
                    );
                    stop_losses += 1;
                } else {
                    panic!("unknown role: {o}");
                }
                // Safety orders fill in ladder order: the filled ones are 1..=k.
                let k = d.filled.iter().filter(|f| **f).count();
                assert!(
                    d.filled.iter().take(k).all(|f| *f),
                    "deal {} filled safety orders {:?} out of order",
                    d.number,
                    d.filled
                );
                let pnl = notional - fee - d.cost - d.fees;
                let reported = num(o, "realized_pnl");
                assert!(
                    (pnl - reported).abs() <= 1e-9 * d.cost,
                    "realized_pnl {reported}, recomputed {pnl}: {o}"
                );
                realized += pnl;
                closed += 1;
                wins += usize::from(pnl > 0.0);
                time_in_deals += fired - d.opened_at;
                entry_from = bar.open_time + case.bar_ms * (bot.cooldown_bars + 1);
            }
            let number = deal.as_ref().map_or(deals_opened, |d| d.number);
            assert_eq!(o["deal"].as_u64(), Some(number), "deal number: {o}");
            if let Some(d) = &deal {
                assert!(
                    near(num(o, "average_price"), d.average(), 1e-9),
                    "average: {o}"
                );
                max_cost = max_cost.max(d.cost);
            }
        }
        if let Some(d) = &deal {
            // No trigger missed: on a bar without orders, no close reached the take profit,
            // the stop loss or an unfilled safety order.
            if by_bar[j].is_empty() {
                let average = d.average();
                let tp = average * (1.0 + bot.take_profit / 100.0);
                assert!(
                    bar.close < tp * (1.0 + EPS),
                    "deal {}: the close {} at {} reached the take profit {tp}, no order",
                    d.number,
                    bar.close,
                    bar.open_time
                );
                if let Some(sl) = bot.stop_loss.map(|sl| average * (1.0 - sl / 100.0)) {
                    assert!(
                        bar.close > sl * (1.0 - EPS),
                        "deal {}: the close {} at {} reached the stop loss {sl}, no order",
                        d.number,
                        bar.close,
                        bar.open_time
                    );
                }
                for (i, _) in d.filled.iter().enumerate().filter(|(_, f)| !**f) {
                    let level = d.entry * (1.0 - bot.ladder(i + 1).0 / 100.0);
                    assert!(
                        bar.close > level * (1.0 - EPS),
                        "deal {}: the close {} at {} reached SO{}'s level {level}, no order",
                        d.number,
                        bar.close,
                        bar.open_time,
                        i + 1
                    );
                }
            }
        }
        // Equity: realised P&L plus the open deal's value at the close, less the closing fee.
        let unrealized = deal.as_ref().map_or(0.0, |d| {
            let value = d.qty * bar.close;
            value - value * bot.fee_pct / 100.0 - d.cost - d.fees
        });
        peak = peak.max(realized + unrealized);
        max_drawdown = max_drawdown.max(peak - (realized + unrealized));
    }

    let last_close = bars[bars.len() - 1].close;
    let open_unrealized = deal.as_ref().map(|d| {
        let value = d.qty * last_close;
        value - value * bot.fee_pct / 100.0 - d.cost - d.fees
    });
    if let Some(d) = &deal {
        time_in_deals += end_time - d.opened_at;
    }
    let name = case.candles;
    eprintln!(
        "{name}: {} orders, {deals_opened} deals ({closed} closed: {take_profits} take profit, \
         {stop_losses} stop loss), {safety_orders} safety orders",
        orders.len()
    );

    // The bot did real work on this file.
    assert!(
        closed >= case.min_deals,
        "{name}: only {closed} deals closed"
    );
    assert!(safety_orders > 0, "{name}: no safety order filled");
    assert!(
        stop_losses >= case.min_stop_losses,
        "{name}: {stop_losses} stop losses, expected at least {}",
        case.min_stop_losses
    );

    // The summary is what the orders add up to.
    let count = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no count {k}: {summary}"))
    };
    let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
    assert_eq!(count("orders"), n(orders.len()), "{summary}");
    assert_eq!(count("candles"), n(bars.len()), "{summary}");
    assert_eq!(count("deals_closed"), n(closed), "{summary}");
    assert_eq!(count("take_profits"), n(take_profits), "{summary}");
    assert_eq!(count("stop_losses"), n(stop_losses), "{summary}");
    let win_rate = if closed == 0 {
        0.0
    } else {
        f64::from(u32::try_from(wins).unwrap_or(0)) / f64::from(u32::try_from(closed).unwrap_or(1))
    };
    assert!(
        near(num(&summary, "win_rate"), win_rate, 1e-9),
        "win rate {win_rate}: {summary}"
    );
    assert!(
        near(num(&summary, "realized_pnl"), realized, 1e-6),
        "realized P&L {realized}: {summary}"
    );
    assert!(
        near(num(&summary, "fees"), fees, 1e-6),
        "fees {fees}: {summary}"
    );
    assert!(
        near(num(&summary, "max_capital_committed"), max_cost, 1e-9),
        "max capital {max_cost}: {summary}"
    );
    assert!(
        (num(&summary, "max_drawdown") - max_drawdown).abs() <= 1e-6 * max_drawdown.max(1.0),
        "max drawdown {max_drawdown}: {summary}"
    );
    assert_eq!(
        summary["time_in_deals_ms"].as_i64(),
        Some(time_in_deals),
        "{summary}"
    );
    match open_unrealized {
        None => assert!(summary["open_deal_unrealized_pnl"].is_null(), "{summary}"),
        Some(u) => assert!(
            near(num(&summary, "open_deal_unrealized_pnl"), u, 1e-6),
            "open deal's unrealised P&L {u}: {summary}"
        ),
    }
}
