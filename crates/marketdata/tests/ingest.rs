//! The ingest source through its public API, as the HTTP layer drives it: request bodies
//! parsed and pushed from many clones of the handle at once, each batch fed whole and in
//! order, the stale rule holding across batches, and backpressure releasing once the runner
//! reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alert_core::{BarTime, Timeframe};
use alert_marketdata::ingest::{MAX_CANDLES_PER_REQUEST, MIN_QUEUE};
use alert_marketdata::{
    Ingest, IngestConfig, IngestHandle, PushError, Source, SourceEvent, Wanted,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A minute boundary, in the past.
const T0: i64 = 1_700_000_040_000;

fn body(symbol: &str, minutes: std::ops::Range<i64>) -> String {
    let items: Vec<String> = minutes
        .map(|m| {
            format!(
                r#"{{"symbol":"{symbol}","open_time":{},"open":{m},"high":{m},"low":{m},"close":{m},"volume":3}}"#,
                T0 + m * 60_000
            )
        })
        .collect();
    format!(r#"{{"candles":[{}]}}"#, items.join(","))
}

fn start(
    capacity: usize,
    wait: Duration,
) -> (
    IngestHandle,
    mpsc::Receiver<SourceEvent>,
    watch::Sender<Wanted>,
    CancellationToken,
) {
    let mut config = IngestConfig::new(Timeframe::M1);
    config.wait = wait;
    let (source, handle) = Ingest::new(config);
    assert_eq!(source.name(), "ingest");
    assert_eq!(source.timeframe(), Timeframe::M1);
    let (tx, rx) = mpsc::channel(capacity);
    let (w, wanted) = watch::channel(Wanted::new());
    let cancel = CancellationToken::new();
    tokio::spawn(Box::new(source).run(tx, wanted, cancel.clone()));
    (handle, rx, w, cancel)
}

async fn until_running(handle: &IngestHandle) {
    for _ in 0..1000 {
        if handle.push(vec![]).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the ingest source did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_fed_whole_and_in_order() {
    let (handle, mut rx, _w, cancel) = start(MIN_QUEUE, Duration::from_secs(5));
    until_running(&handle).await;
    let mut tasks = Vec::new();
    for s in ["AAA", "BBB", "CCC", "DDD"] {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for chunk in 0..10 {
                let candles = handle.parse(body(s, chunk * 100..chunk * 100 + 100).as_bytes());
                let pushed = handle.push(candles.unwrap()).await.unwrap();
                assert!(pushed.rejected.is_empty(), "{:?}", pushed.rejected);
                accepted += pushed.accepted;
            }
            accepted
        }));
    }
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < 4000 {
            match rx.recv().await {
                Some(SourceEvent::Candle { symbol, update }) => {
                    got.push((symbol.to_string(), update.candle.close as i64))
                }
                Some(_) => {}
                None => break,
            }
        }
        got
    });
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1000);
    }
    let got = reader.await.unwrap();
    cancel.cancel();
    assert_eq!(got.len(), 4000);
    // Each request's 100 candles arrive together, and each symbol's bars in order.
    for run in got.chunks(100) {
        assert!(
            run.iter().all(|(s, _)| *s == run[0].0),
            "a batch was interleaved"
        );
    }
    for s in ["AAA", "BBB", "CCC", "DDD"] {
        let bars: Vec<i64> = got
            .iter()
            .filter(|(x, _)| x == s)
            .map(|(_, m)| *m)
            .collect();
        assert_eq!(bars, (0..1000).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn resending_a_batch_feeds_nothing_twice() {
    let (handle, mut rx, _w, cancel) = start(MIN_QUEUE, Duration::from_secs(1));
    until_running(&handle).await;
    let first = handle.parse(body("BTCUSDT", 0..5).as_bytes()).unwrap();
    assert_eq!(handle.push(first.clone()).await.unwrap().accepted, 5);
    // The client retries after a timeout, with one more bar.
    let again = handle.parse(body("BTCUSDT", 0..6).as_bytes()).unwrap();
    let pushed = handle.push(again).await.unwrap();
    assert_eq!(pushed.accepted, 1);
    assert_eq!(pushed.rejected.len(), 5);
    assert_eq!(pushed.rejected[4].path, "candles[4].open_time");
    let mut opens = Vec::new();
    while let Ok(e) = rx.try_recv() {
        if let SourceEvent::Candle { update, .. } = e {
            opens.push(update.candle.open_time);
        }
    }
    let want: Vec<_> = (0..6)
        .map(|m| BarTime::from_millis(T0 + m * 60_000))
        .collect();
    assert_eq!(opens, want);
    cancel.cancel();
}

#[tokio::test]
async fn backpressure_gives_up_then_recovers_when_the_runner_reads() {
    let (handle, mut rx, _w, cancel) = start(MAX_CANDLES_PER_REQUEST, Duration::from_millis(100));
    until_running(&handle).await;
    let big = handle
        .parse(body("ETHUSDT", 0..MAX_CANDLES_PER_REQUEST as i64).as_bytes())
        .unwrap();
    assert_eq!(big.len(), MAX_CANDLES_PER_REQUEST);
    assert_eq!(
        handle.push(big).await.unwrap().accepted,
        MAX_CANDLES_PER_REQUEST
    );
    let next = handle
        .parse(body("ETHUSDT", 10_000..10_010).as_bytes())
        .unwrap();
    assert_eq!(handle.push(next.clone()).await, Err(PushError::Full));
    // The runner catches up while the push waits: it goes through.
    let push = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tries = 0;
            loop {
                match handle.push(next.clone()).await {
                    Err(PushError::Full) if tries < 50 => tries += 1,
                    other => return other,
                }
            }
        })
    };
    let mut read = 0;
    while read < MAX_CANDLES_PER_REQUEST + 10 {
        match rx.recv().await {
            Some(SourceEvent::Candle { .. }) => read += 1,
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(push.await.unwrap().map(|p| p.accepted), Ok(10));
    assert_eq!(read, MAX_CANDLES_PER_REQUEST + 10);
    cancel.cancel();
}
