//! Message templates (users' text): parsed or refused, and an accepted one renders any
//! values without panicking, placeholders replaced and nothing else changed.
#![no_main]

use alert_core::BarTime;
use alert_engine::template::{RenderContext, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = Template::parse(text, &["c1", "rsi"]) else {
        return;
    };
    let value = |id: &str| (id == "rsi").then_some(f64::NAN);
    let ctx = RenderContext {
        symbol: "BTCUSDT",
        timeframe: "1h",
        open: 1.0,
        high: f64::INFINITY,
        low: -0.0,
        close: 1e308,
        volume: 0.0,
        time: BarTime::from_millis(i64::MIN / 2),
        now: BarTime::from_millis(0),
        alert_name: "{{close}}",
        alert_id: "id",
        condition_value: &value,
    };
    let out = template.render(&ctx);
    if !text.contains("{{") {
        assert_eq!(out, text, "text without placeholders renders as itself");
    }
});
