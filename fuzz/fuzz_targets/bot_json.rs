//! Bot JSON: refused with errors or accepted; an accepted bot's canonical JSON parses to the
//! same bot, and every alert it compiles to is a valid alert.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(bot) = alert_bots::parse_bot(&json) else {
        return;
    };
    let again = alert_bots::parse_bot(&bot.to_json()).expect("canonical bot JSON parses");
    assert_eq!(again.to_json(), bot.to_json());
    for (role, alert) in alert_bots::compile::alerts("fuzz", &bot) {
        if let Err(e) = alert_engine::parse::parse_alert(&alert) {
            panic!("{role:?} compiles to an invalid alert: {e:?}");
        }
    }
});
