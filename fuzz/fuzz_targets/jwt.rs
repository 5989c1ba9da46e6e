//! Bearer tokens: no input forges a user. Tokens are HS256 with a secret the input cannot
//! know, so every input must be refused — with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let auth = alert_api::Auth::new("fuzz-secret-that-the-input-cannot-know-0123456789", None);
    if let Ok(user) = auth.verify(token) {
        panic!("a forged token was accepted for {user}: {token:?}");
    }
});
