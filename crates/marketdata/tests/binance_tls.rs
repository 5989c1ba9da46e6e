//! With both rustls crypto providers linked (aws-lc-rs by reqwest, ring as sqlx brings it into
//! the binary), `https://` and `wss://` connections must not panic with "Could not
//! automatically determine the process-level CryptoProvider": the source installs one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alert_core::{BarTime, Symbol, Timeframe};
use alert_marketdata::{Binance, BinanceConfig, Source, Wanted};
use support::fake_binance::FakeBinance;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A listener that counts TLS ClientHellos (first byte 0x16) and hangs up.
async fn hello_counter() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hellos = Arc::new(AtomicUsize::new(0));
    let count = hellos.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                let read =
                    tokio::time::timeout(Duration::from_secs(2), socket.read_exact(&mut first))
                        .await;
                if matches!(read, Ok(Ok(_))) && first[0] == 0x16 {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, hellos)
}

#[tokio::test]
async fn tls_connections_work_with_two_crypto_providers_linked() {
    // Both providers are present: rustls cannot choose by itself.
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let auto = std::panic::catch_unwind(|| {
        let _ = rustls::ClientConfig::builder();
    });
    std::panic::set_hook(quiet);
    assert!(
        auto.is_err(),
        "with ring and aws-lc-rs linked, rustls panics without an installed provider"
    );

    // wss:// (the REST backfill starts once a stream is connected, so only the stream here).
    let (addr, hellos) = hello_counter().await;
    let fake = FakeBinance::start(Timeframe::M1, BarTime::from_millis(1_700_000_070_000)).await;
    run_until(
        BinanceConfig {
            rest_url: fake.rest_url(),
            ws_url: format!("wss://{addr}"),
            ..config()
        },
        &hellos,
    )
    .await;
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    // https:// behind a plain stream.
    let (addr, hellos) = hello_counter().await;
    run_until(
        BinanceConfig {
            rest_url: format!("https://{addr}"),
            ws_url: fake.ws_url(),
            ..config()
        },
        &hellos,
    )
    .await;
}

fn config() -> BinanceConfig {
    BinanceConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..BinanceConfig::default()
    }
}

/// Runs the source until `hellos` counts two TLS handshakes, then stops it.
async fn run_until(config: BinanceConfig, hellos: &AtomicUsize) {
    let (tx, _rx) = mpsc::channel(16);
    let wanted: Wanted = [(Symbol::new("BTCUSDT").unwrap(), 10)]
        .into_iter()
        .collect();
    let (_w, wanted_rx) = watch::channel(wanted);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(Binance::new(config)).run(tx, wanted_rx, cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hellos.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline && !task.is_finished(),
            "no TLS handshakes (source finished: {})",
            task.is_finished()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(r, Ok(Ok(Ok(())))), "{r:?}");
}
