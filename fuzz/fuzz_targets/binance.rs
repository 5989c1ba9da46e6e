//! Binance payloads (WebSocket messages, REST kline bodies), as a hostile feed could send them:
//! every candle accepted holds the candle invariants.
#![no_main]

use alert_core::Candle;
use alert_marketdata::binance::fuzzing;
use libfuzzer_sys::fuzz_target;

fn check(c: &Candle) {
    for v in [c.open, c.high, c.low, c.close, c.volume] {
        assert!(v.is_finite(), "{c:?}");
    }
    assert!(c.low <= c.high && c.volume >= 0.0, "{c:?}");
    assert!((c.low..=c.high).contains(&c.open), "{c:?}");
    assert!((c.low..=c.high).contains(&c.close), "{c:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(c) = fuzzing::ws_message(text) {
        check(&c);
    }
    for c in fuzzing::rest_klines(text) {
        check(&c);
    }
});
