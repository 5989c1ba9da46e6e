//! `alert-runner bot-backtest` on a candle file: orders as JSON lines that keep the bot's
//! rules (ladder prices, take profit from the average, one exit per deal), and a summary that
//! adds up; a bad bot is refused with its field named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

const BOT: &str = "tests/fixtures/dca_bot_btc_1h.json";
const CANDLES: &str = "../indicators/tests/golden/btc_1h.candles.csv";

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn bot_backtest(bot: &Path, symbol: &str) -> Output {
    common::bot_backtest(bot, &path(CANDLES), symbol, "1h")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn orders_follow_the_bot_and_the_summary_adds_up() {
    let out = bot_backtest(&path(BOT), "BTCUSDT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (orders, summary) = common::orders_and_summary(&out.stdout);
    let summary = &summary;
    assert_eq!(summary["orders"].as_u64(), Some(orders.len() as u64));
    assert_eq!(summary["candles"], 15_000);
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);

    // Walk the deals: an entry, safety orders at entry·(1 − cumulative %), one exit.
    let ladder = [1.5, 1.5 + 2.1, 1.5 + 2.1 + 2.94, 1.5 + 2.1 + 2.94 + 4.116];
    let sizes = [50.0, 80.0, 128.0, 204.8];
    let (mut deals, mut entry, mut open, mut pnl, mut fees) = (0, 0.0, false, 0.0, 0.0);
    for o in &orders {
        fees += num(o, "fee");
        match o["role"].as_str() {
            Some("entry") => {
                assert!(!open, "an entry inside a deal: {o}");
                open = true;
                deals += 1;
                entry = num(o, "price");
                // 100 quote, less what the 0.00001 quantity step rounds away.
                let notional = num(o, "notional");
                assert!(
                    notional <= 100.0 && notional > 100.0 - entry * 0.00001,
                    "{o}"
                );
            }
            Some("take_profit") | Some("stop_loss") => {
                assert!(open, "an exit without a deal: {o}");
                open = false;
                pnl += num(o, "realized_pnl");
                let avg = num(o, "average_price");
                if o["role"] == "take_profit" {
                    assert!(num(o, "price") >= avg * 1.02 * (1.0 - 1e-12), "{o}");
                } else {
                    assert!(num(o, "price") <= avg * 0.80 * (1.0 + 1e-12), "{o}");
                }
            }
            _ => {
                let n = o["role"]["safety_order"].as_u64().unwrap_or(0) as usize;
                assert!((1..=4).contains(&n), "{o}");
                assert!(open, "a safety order without a deal: {o}");
                let level = entry * (1.0 - ladder[n - 1] / 100.0);
                // At the level when the bar traded through it, else at a close below it.
                assert!(
                    num(o, "price") <= level * (1.0 + 1e-12),
                    "SO{n} above its level: {o}"
                );
                let notional = num(o, "notional");
                let step = num(o, "price") * 0.00001;
                assert!(
                    notional <= sizes[n - 1] + 1e-9 && notional > sizes[n - 1] - step,
                    "{o}"
                );
            }
        }
    }
    assert!(deals >= 3, "the RSI dips of the series open deals: {deals}");
    let closed = summary["deals_closed"].as_u64().unwrap_or(0);
    assert_eq!(closed, deals - u64::from(open));
    assert!(close(num(summary, "realized_pnl"), pnl));
    assert!(close(num(summary, "fees"), fees));
    assert!(num(summary, "max_capital_committed") <= 100.0 + 50.0 + 80.0 + 128.0 + 204.8 + 1e-6);
    assert!(num(summary, "max_drawdown") >= 0.0);
    let share = num(summary, "time_in_deals_share");
    assert!((0.0..=1.0).contains(&share), "{share}");
    assert!(stderr.contains("deals closed"), "{stderr}");
}

#[test]
fn a_bad_bot_or_another_symbol_is_refused_with_its_field() {
    let dir = std::env::temp_dir().join(format!("ar-bot-bt-{}", std::process::id()));
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let bad = dir.join("bad.json");
    let text = std::fs::read_to_string(path(BOT)).unwrap_or_default();
    let text = text.replace("\"take_profit_pct\": 2", "\"take_profit_pct\": -2");
    assert!(std::fs::write(&bad, text).is_ok());
    let out = bot_backtest(&bad, "BTCUSDT");
    let other = bot_backtest(&path(BOT), "ETHUSDT");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("take_profit_pct"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed for a bad bot");
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("pair"));
}
