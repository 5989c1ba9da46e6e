//! The candle bus against this machine's NATS server (JetStream, 2.9): `NATS_URL`, default
//! `nats://127.0.0.1:4222`. Each test makes its own stream with its own subject prefix and
//! deletes it at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, Symbol, Timeframe};
use alert_marketdata::bus::async_nats::jetstream;
use alert_marketdata::bus::{self, Bus, BusConfig, Publisher, StreamSettings, Subjects};
use alert_marketdata::{Source, SourceEvent, Wanted};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const MINUTE: i64 = 60_000;

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn sym(s: &str) -> Symbol {
    ok(Symbol::new(s), "symbol")
}

fn bar(i: i64, closed: bool, tick: u32) -> CandleUpdate {
    let close = 100.0 + (i as f64 * 0.37).sin() * 3.0 + f64::from(tick) * 0.01;
    CandleUpdate {
        candle: Candle {
            open_time: BarTime::from_millis(T0 + i * MINUTE),
            open: 100.0,
            high: close.max(100.0) + 0.5,
            low: close.min(100.0) - 0.5,
            close,
            volume: 10.0 + f64::from(tick),
        },
        closed,
    }
}

/// A stream of this test's own (name and subject prefix unique), deleted when dropped.
struct TestBus {
    js: jetstream::Context,
    settings: StreamSettings,
}

impl TestBus {
    async fn new(tag: &str) -> Self {
        let unique = format!(
            "{tag}{}x{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() % 1_000_000_000_000)
                .unwrap_or(0)
        );
        let settings = StreamSettings {
            name: format!("TEST_{unique}"),
            subjects: ok(Subjects::new(&format!("test-{unique}.candles")), "prefix"),
            max_age: Duration::from_secs(600),
            duplicate_window: bus::DUPLICATE_WINDOW,
        };
        let client = ok(bus::connect(&url(), "bus test").await, "connect to NATS");
        let js = jetstream::new(client);
        ok(bus::ensure_stream(&js, &settings).await, "create stream");
        Self { js, settings }
    }

    async fn messages(&self) -> u64 {
        let mut stream = ok(self.js.get_stream(&self.settings.name).await, "get stream");
        ok(stream.info().await, "stream info").state.messages
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(self.js.clone(), self.settings.subjects.clone(), 64)
    }

    fn source(&self, durable: &str) -> Bus {
        Bus::new(BusConfig {
            url: url(),
            stream: self.settings.name.clone(),
            subjects: self.settings.subjects.clone(),
            durable: durable.to_owned(),
            timeframe: Timeframe::M1,
        })
    }

    async fn delete(self) {
        ok(
            self.js.delete_stream(&self.settings.name).await,
            "delete stream",
        );
    }
}

async fn publish_all(p: &mut Publisher, symbol: Symbol, updates: &[CandleUpdate]) {
    for u in updates {
        ok(p.publish(symbol, Timeframe::M1, u).await, "publish");
    }
    ok(p.flush().await, "flush");
}

/// Closed bars and in-progress updates are stored once each: the same closed bar sent again
/// (even with other values) is a duplicate, distinct in-progress updates of one bar are not.
#[tokio::test]
async fn publishing_deduplicates_closed_bars_and_keeps_distinct_updates() {
    let bus = TestBus::new("dedup").await;
    let s = sym("AAAUSDT");
    let mut p = bus.publisher();
    let mut updates = Vec::new();
    for i in 0..20 {
        updates.push(bar(i, false, 1));
        updates.push(bar(i, false, 2));
        updates.push(bar(i, true, 3));
    }
    publish_all(&mut p, s, &updates).await;
    assert_eq!(p.stats().stored, 60);
    assert_eq!(bus.messages().await, 60);
    // A reconnect's catch-up: the closed bars again (one with changed values) and an
    // in-progress update sent twice.
    let mut again: Vec<CandleUpdate> = (0..20).map(|i| bar(i, true, 3)).collect();
    again[5].candle.volume += 1.0;
    again.push(bar(19, false, 2));
    publish_all(&mut p, s, &again).await;
    assert_eq!(p.stats().duplicates, 21, "{:?}", p.stats());
    assert_eq!(bus.messages().await, 60, "the stream is unchanged");
    // A new in-progress value of a bar is a new message.
    publish_all(&mut p, s, &[bar(19, false, 7)]).await;
    assert_eq!(bus.messages().await, 61);
    bus.delete().await;
}

/// Runs a bus source until `stop_after` events were taken from a channel of one slot, then
/// cancels it and takes what it had handed over; returns every event received.
async fn consume(source: Bus, wanted: Wanted, stop_after: usize) -> Vec<SourceEvent> {
    let (tx, mut rx) = mpsc::channel(1);
    let (_wanted_tx, wanted_rx) = watch::channel(wanted);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(source).run(tx, wanted_rx, cancel.clone()));
    let mut events = Vec::new();
    while events.len() < stop_after {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(e)) => events.push(e),
            Ok(None) => panic!("the source ended after {events:?}"),
            Err(_) => panic!("no event within 20 s; got {} so far", events.len()),
        }
    }
    cancel.cancel();
    ok(
        ok(
            tokio::time::timeout(Duration::from_secs(20), task).await,
            "source stops",
        ),
        "source task",
    )
    .unwrap_or_else(|e| panic!("source failed: {e}"));
    // What it handed over (and acknowledged) before it stopped.
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

fn closes(events: &[SourceEvent], symbol: Symbol) -> Vec<(i64, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Candle { symbol: s, update } if *s == symbol => Some((
                (update.candle.open_time.millis() - T0) / MINUTE,
                update.closed,
            )),
            _ => None,
        })
        .collect()
}

/// A consumer stopped mid-stream and started again (same durable) resumes after its last
/// acknowledged message: first the wanted history (closed bars up to that point), then
/// every later message once — no gap, nothing handed over twice beyond the history.
#[tokio::test]
async fn a_restarted_consumer_resumes_from_its_last_ack() {
    let bus = TestBus::new("resume").await;
    let (a, b) = (sym("AAAUSDT"), sym("BBBUSDT"));
    // The durable exists before any candle: it starts at the (empty) stream's head.
    let wanted: Wanted = BTreeMap::from([(a, 3)]);
    let events = consume(bus.source("shard-a"), wanted.clone(), 1).await;
    assert_eq!(
        events,
        vec![SourceEvent::Warm { symbol: a }],
        "no history yet"
    );

    let mut p = bus.publisher();
    let mut updates = Vec::new();
    for i in 0..30 {
        updates.push((b, bar(i, true, 0))); // not wanted: dropped by the consumer
        updates.push((a, bar(i, false, 1)));
        updates.push((a, bar(i, true, 2)));
    }
    for (s, u) in &updates {
        ok(p.publish(*s, Timeframe::M1, u).await, "publish");
    }
    ok(p.flush().await, "flush");

    // First run: no history before the durable's start; Warm, then it stops after 21
    // candles of A (bars 0..10 and the in-progress update of 10).
    let first = consume(bus.source("shard-a"), wanted.clone(), 22).await;
    assert_eq!(first[0], SourceEvent::Warm { symbol: a });
    let got = closes(&first, a);
    assert!(closes(&first, b).is_empty(), "B is not wanted");
    let expected: Vec<(i64, bool)> = (0..30).flat_map(|i| [(i, false), (i, true)]).collect();
    assert!(got.len() >= 21 && got.len() <= 22, "{got:?}");
    assert_eq!(got[..], expected[..got.len()], "in stream order");
    let handed = got.len();

    // Second run: the history (the last 3 closed bars handed over before), then the rest.
    let rest = expected.len() - handed;
    let second = consume(bus.source("shard-a"), wanted.clone(), 4 + rest).await;
    let got2 = closes(&second, a);
    let last_closed = expected[..handed]
        .iter()
        .rev()
        .find(|(_, closed)| *closed)
        .map(|(i, _)| *i)
        .unwrap_or(-1);
    let history: Vec<(i64, bool)> = ((last_closed - 2)..=last_closed)
        .map(|i| (i, true))
        .collect();
    assert_eq!(got2[..3], history[..], "history first: {got2:?}");
    assert_eq!(
        second
            .iter()
            .position(|e| matches!(e, SourceEvent::Warm { .. })),
        Some(3),
        "warm after the history: {second:?}"
    );
    assert_eq!(
        got2[3..],
        expected[handed..],
        "then every later update once"
    );

    // A third start has nothing new: only the history and Warm.
    let third = consume(bus.source("shard-a"), wanted, 4).await;
    assert_eq!(
        closes(&third, a),
        (27..30).map(|i| (i, true)).collect::<Vec<_>>()
    );
    bus.delete().await;
}

/// A symbol that becomes wanted while the consumer runs gets its history (up to the last
/// message handled) and `Warm`, then its live updates.
#[tokio::test]
async fn a_newly_wanted_symbol_gets_history_then_live_updates() {
    let bus = TestBus::new("late").await;
    let (a, b) = (sym("AAAUSDT"), sym("BBBUSDT"));
    let mut p = bus.publisher();
    for i in 0..10 {
        publish_all(&mut p, a, &[bar(i, true, 0)]).await;
        publish_all(&mut p, b, &[bar(i, true, 0)]).await;
    }
    let (tx, mut rx) = mpsc::channel(64);
    let (wanted_tx, wanted_rx) = watch::channel(BTreeMap::from([(a, 4)]));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(bus.source("late")).run(tx, wanted_rx, cancel.clone()));
    let mut events = Vec::new();
    let mut next = async || match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(e)) => e,
        other => panic!("no event: {other:?}"),
    };
    for _ in 0..5 {
        events.push(next().await);
    }
    // A's last 4 closed bars (from the stream: the durable starts at its head), then Warm.
    assert_eq!(
        closes(&events, a),
        (6..10).map(|i| (i, true)).collect::<Vec<_>>()
    );
    assert_eq!(events[4], SourceEvent::Warm { symbol: a });
    ok(wanted_tx.send(BTreeMap::from([(a, 4), (b, 2)])), "want B");
    publish_all(&mut p, b, &[bar(10, true, 0)]).await;
    publish_all(&mut p, a, &[bar(10, true, 0)]).await;
    let mut later = Vec::new();
    for _ in 0..5 {
        later.push(next().await);
    }
    assert_eq!(closes(&later, b), vec![(8, true), (9, true), (10, true)]);
    assert_eq!(later[2], SourceEvent::Warm { symbol: b }, "{later:?}");
    assert_eq!(closes(&later, a), vec![(10, true)]);
    cancel.cancel();
    ok(
        ok(
            tokio::time::timeout(Duration::from_secs(20), task).await,
            "stops",
        ),
        "task",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    bus.delete().await;
}
