//! Candle CSV files (both formats): every candle read holds the candle invariants, times
//! strictly increase, and a bad row is an error, never a panic.
#![no_main]

use alert_marketdata::CandleReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut previous: Option<i64> = None;
    for row in CandleReader::new(data, "fuzz.csv").take(10_000) {
        let Ok(c) = row else {
            break;
        };
        for v in [c.open, c.high, c.low, c.close, c.volume] {
            assert!(v.is_finite(), "{c:?}");
        }
        assert!(c.low <= c.high && c.volume >= 0.0, "{c:?}");
        assert!((c.low..=c.high).contains(&c.open), "{c:?}");
        assert!((c.low..=c.high).contains(&c.close), "{c:?}");
        let t = c.open_time.millis();
        assert!(previous.is_none_or(|p| t > p), "times go back: {c:?}");
        previous = Some(t);
    }
});
