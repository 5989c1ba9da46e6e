//! The Binance source against a local fake exchange (`support/fake_binance.rs`): warm-up with
//! pagination, live updates, reconnects with gap backfill, rate limits, several connections,
//! run-time subscription changes, dead-link detection and renewal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use alert_core::{BarTime, Candle, CandleUpdate, Timeframe};
use alert_marketdata::{Binance, BinanceConfig, Source, SourceError, SourceEvent, Wanted};
use support::fake_binance::{FakeBinance, kline_message, sym};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A minute boundary.
const T0: BarTime = BarTime::from_millis(1_700_000_040_000);
const M: i64 = 60_000;

/// The open time `i` minutes from `T0`.
fn t(i: i64) -> BarTime {
    T0.plus_millis(i * M)
}

/// Minutes from `T0` of an open time.
fn idx(t: BarTime) -> i64 {
    (t.millis() - T0.millis()) / M
}

async fn fake() -> FakeBinance {
    FakeBinance::start(Timeframe::M1, t(0).plus_millis(30_000)).await
}

fn config(fake: &FakeBinance) -> BinanceConfig {
    BinanceConfig {
        rest_url: fake.rest_url(),
        ws_url: fake.ws_url(),
        clock: fake.clock(),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..BinanceConfig::default()
    }
}

fn wanted(list: &[(&str, usize)]) -> Wanted {
    list.iter().map(|(s, n)| (sym(s), *n)).collect()
}

struct Run {
    rx: mpsc::Receiver<SourceEvent>,
    wanted: watch::Sender<Wanted>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), SourceError>>,
}

impl Run {
    fn start(config: BinanceConfig, list: &[(&str, usize)]) -> Self {
        let (tx, rx) = mpsc::channel(10_000);
        let (wanted, wanted_rx) = watch::channel(wanted(list));
        let cancel = CancellationToken::new();
        let source: Box<dyn Source> = Box::new(Binance::new(config));
        assert_eq!(source.name(), "binance");
        let task = tokio::spawn(source.run(tx, wanted_rx, cancel.clone()));
        Self {
            rx,
            wanted,
            cancel,
            task,
        }
    }

    async fn next(&mut self) -> SourceEvent {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("the source is running")
    }

    /// Events up to and including the first one matching `last`.
    async fn until(&mut self, last: impl Fn(&SourceEvent) -> bool) -> Vec<SourceEvent> {
        let mut got = Vec::new();
        loop {
            let e = self.next().await;
            let done = last(&e);
            got.push(e);
            if done {
                return got;
            }
        }
    }

    async fn until_warm(&mut self, symbol: &str) -> Vec<SourceEvent> {
        let s = sym(symbol);
        self.until(|e| matches!(e, SourceEvent::Warm { symbol } if *symbol == s))
            .await
    }

    /// Whatever arrives within `d`.
    async fn drain(&mut self, d: Duration) -> Vec<SourceEvent> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            got.push(e);
        }
        got
    }

    async fn stop(self) {
        self.cancel.cancel();
        let r = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        assert!(
            matches!(r, Ok(Ok(Ok(())))),
            "the source stops cleanly: {r:?}"
        );
    }
}

/// Minutes from T0 of the closed candles of `symbol`, in arrival order.
fn closed(events: &[SourceEvent], symbol: &str) -> Vec<i64> {
    let s = sym(symbol);
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Candle { symbol, update } if *symbol == s && update.closed => {
                Some(idx(update.candle.open_time))
            }
            _ => None,
        })
        .collect()
}

fn candle_event(symbol: &str, candle: Candle, closed: bool) -> SourceEvent {
    SourceEvent::Candle {
        symbol: sym(symbol),
        update: CandleUpdate { candle, closed },
    }
}

fn stream(symbol: &str) -> String {
    format!("{}@kline_1m", symbol.to_ascii_lowercase())
}

/// A still-forming version of a bar.
fn forming(c: Candle) -> Candle {
    Candle {
        close: c.open,
        high: c.high.max(c.open),
        volume: c.volume / 2.0,
        ..c
    }
}

#[tokio::test]
async fn warm_up_paginates_then_streams_live_updates() {
    let fake = fake().await;
    fake.add_closed("BTCUSDT", t(-2000), 2000);
    // The exchange's open bar: REST returns it last; it must not be taken as closed.
    fake.push("BTCUSDT", forming(fake.candle("BTCUSDT", t(0))), false);
    let mut run = Run::start(config(&fake), &[("BTCUSDT", 1500)]);

    let warm = run.until_warm("BTCUSDT").await;
    assert_eq!(warm.len(), 1501, "1500 closed bars, then Warm");
    assert_eq!(closed(&warm, "BTCUSDT"), (-1500..=-1).collect::<Vec<_>>());
    for (e, i) in warm[..1500].iter().zip(-1500..) {
        assert_eq!(
            *e,
            candle_event("BTCUSDT", fake.candle("BTCUSDT", t(i)), true)
        );
    }
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "1500 bars take two pages: {reqs:?}");
    assert!(
        reqs.iter()
            .all(|r| r.limit == 1000 && r.symbol == "BTCUSDT")
    );
    assert_eq!(reqs[0].start, Some(t(-1500).millis()));
    assert_eq!(reqs[1].start, Some(t(-500).millis()));

    fake.wait_for("the stream", |f| {
        f.connections() == vec![BTreeSet::from([stream("BTCUSDT")])]
    })
    .await;
    let c0 = fake.candle("BTCUSDT", t(0));
    assert_eq!(fake.push("BTCUSDT", forming(c0), false), 1);
    // Bad data is skipped: not JSON, and a candle whose high is below its low.
    fake.push_raw("BTCUSDT", "{not json");
    let bad = Candle {
        high: c0.low - 1.0,
        ..c0
    };
    fake.push_raw(
        "BTCUSDT",
        &kline_message("BTCUSDT", &bad, true, Timeframe::M1),
    );
    fake.push("BTCUSDT", c0, true);
    fake.set_now(t(1).plus_millis(10_000));
    let c1 = forming(fake.candle("BTCUSDT", t(1)));
    fake.push("BTCUSDT", c1, false);
    let live = run
        .until(
            |e| matches!(e, SourceEvent::Candle { update, .. } if update.candle.open_time == t(1)),
        )
        .await;
    assert_eq!(
        live,
        vec![
            candle_event("BTCUSDT", forming(c0), false),
            candle_event("BTCUSDT", c0, true),
            candle_event("BTCUSDT", c1, false),
        ]
    );

    // Pings are answered.
    fake.ping_all();
    fake.wait_for("a pong", |f| f.pongs() >= 1).await;
    assert!(run.drain(Duration::from_millis(100)).await.is_empty());
    run.stop().await;
}

#[tokio::test]
async fn reconnect_backfills_missed_bars_before_live_updates() {
    let fake = fake().await;
    fake.add_closed("BTCUSDT", t(-10), 10);
    let mut run = Run::start(config(&fake), &[("BTCUSDT", 5)]);
    let warm = run.until_warm("BTCUSDT").await;
    assert_eq!(closed(&warm, "BTCUSDT"), vec![-5, -4, -3, -2, -1]);
    fake.wait_for("the stream", |f| f.connections().len() == 1)
        .await;
    fake.push("BTCUSDT", fake.candle("BTCUSDT", t(0)), true);
    assert_eq!(
        run.next().await,
        candle_event("BTCUSDT", fake.candle("BTCUSDT", t(0)), true)
    );

    // The link drops; bars 1..=3 close while we are away, bar 4 is forming.
    fake.add_closed("BTCUSDT", t(1), 3);
    fake.set_now(t(4).plus_millis(20_000));
    fake.set_rest_delay(Duration::from_millis(300));
    fake.drop_connections();
    fake.wait_for("the new connection", |f| {
        f.total_connections() == 2 && f.connections().len() == 1
    })
    .await;
    // Live messages while the backfill is still running: a repeat of bar 3's close (REST
    // has it too) and bar 4 forming.
    fake.push("BTCUSDT", fake.candle("BTCUSDT", t(3)), true);
    let c4 = fake.candle("BTCUSDT", t(4));
    fake.push("BTCUSDT", forming(c4), false);
    let got = run
        .until(|e| matches!(e, SourceEvent::Candle { update, .. } if !update.closed))
        .await;
    let mut expected = vec![SourceEvent::Reconnected];
    for i in 1..=3 {
        expected.push(candle_event("BTCUSDT", fake.candle("BTCUSDT", t(i)), true));
    }
    expected.push(candle_event("BTCUSDT", forming(c4), false));
    assert_eq!(got, expected);
    let fill = fake
        .requests()
        .into_iter()
        .filter(|r| r.start == Some(t(1).millis()))
        .collect::<Vec<_>>();
    assert_eq!(fill.len(), 1, "one REST request for the gap");
    assert_eq!(fill[0].end, Some(t(4).millis() - 1));

    fake.push("BTCUSDT", c4, true);
    assert_eq!(run.next().await, candle_event("BTCUSDT", c4, true));
    let mut all = warm;
    all.push(candle_event("BTCUSDT", fake.candle("BTCUSDT", t(0)), true));
    all.extend(got);
    all.push(candle_event("BTCUSDT", c4, true));
    assert_eq!(
        closed(&all, "BTCUSDT"),
        (-5..=4).collect::<Vec<_>>(),
        "every closed bar once, in order"
    );
    assert!(run.drain(Duration::from_millis(100)).await.is_empty());
    run.stop().await;
}

#[tokio::test]
async fn a_hole_in_the_live_stream_is_filled_over_rest() {
    let fake = fake().await;
    fake.add_closed("SOLUSDT", t(-5), 5);
    let mut run = Run::start(config(&fake), &[("SOLUSDT", 3)]);
    let warm = run.until_warm("SOLUSDT").await;
    assert_eq!(closed(&warm, "SOLUSDT"), vec![-3, -2, -1]);
    fake.wait_for("the stream", |f| f.connections().len() == 1)
        .await;
    // Bars 0 and 1 closed at the exchange, but the stream skipped them.
    fake.add_closed("SOLUSDT", t(0), 2);
    fake.set_now(t(2).plus_millis(30_000));
    let c2 = forming(fake.candle("SOLUSDT", t(2)));
    fake.push("SOLUSDT", c2, false);
    let got = run
        .until(|e| matches!(e, SourceEvent::Candle { update, .. } if !update.closed))
        .await;
    assert_eq!(
        got,
        vec![
            candle_event("SOLUSDT", fake.candle("SOLUSDT", t(0)), true),
            candle_event("SOLUSDT", fake.candle("SOLUSDT", t(1)), true),
            candle_event("SOLUSDT", c2, false),
        ]
    );
    run.stop().await;
}

#[tokio::test]
async fn rate_limit_retry_after_is_obeyed() {
    let fake = fake().await;
    fake.add_closed("ETHUSDT", t(-10), 10);
    fake.fail_next_klines(429, 1);
    let mut run = Run::start(config(&fake), &[("ETHUSDT", 10)]);
    let warm = run.until_warm("ETHUSDT").await;
    assert_eq!(closed(&warm, "ETHUSDT"), (-10..=-1).collect::<Vec<_>>());
    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After's 1 s"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    run.stop().await;
}

#[tokio::test]
async fn symbols_are_spread_over_several_connections() {
    let fake = fake().await;
    let names = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"];
    for s in names {
        fake.add_closed(s, t(-3), 3);
    }
    let list: Vec<(&str, usize)> = names.iter().map(|s| (*s, 2)).collect();
    let mut run = Run::start(
        BinanceConfig {
            max_streams_per_connection: 2,
            // The second stream of each connection comes by SUBSCRIBE.
            streams_in_url: 1,
            ..config(&fake)
        },
        &list,
    );
    let started = Instant::now();
    let mut events = Vec::new();
    while events
        .iter()
        .filter(|e| matches!(e, SourceEvent::Warm { .. }))
        .count()
        < names.len()
    {
        events.push(run.next().await);
    }
    for s in names {
        assert_eq!(closed(&events, s), vec![-2, -1], "{s}");
    }
    let all: BTreeSet<String> = names.iter().map(|s| stream(s)).collect();
    fake.wait_for("three connections carrying every stream", |f| {
        let conns = f.connections();
        conns.len() == 3
            && conns.iter().all(|c| c.len() <= 2)
            && conns.iter().flatten().cloned().collect::<BTreeSet<_>>() == all
    })
    .await;
    for s in names {
        assert_eq!(fake.push(s, fake.candle(s, t(0)), true), 1, "{s}");
    }
    let mut live = Vec::new();
    for _ in names {
        live.push(run.next().await);
    }
    for s in names {
        assert_eq!(closed(&live, s), vec![0], "{s}");
    }
    assert!(run.drain(Duration::from_millis(100)).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    run.stop().await;
}

#[tokio::test]
async fn symbols_added_and_removed_at_run_time() {
    let fake = fake().await;
    fake.add_closed("AAAUSDT", t(-5), 5);
    fake.add_closed("BBBUSDT", t(-5), 5);
    let mut run = Run::start(config(&fake), &[("AAAUSDT", 3)]);
    let mut events = run.until_warm("AAAUSDT").await;
    fake.wait_for("A's stream", |f| {
        f.connections() == vec![BTreeSet::from([stream("AAAUSDT")])]
    })
    .await;
    fake.push("AAAUSDT", fake.candle("AAAUSDT", t(0)), true);
    events.push(run.next().await);

    // B is added: its history, Warm, then its stream (on the same connection, restarted).
    run.wanted
        .send(wanted(&[("AAAUSDT", 3), ("BBBUSDT", 4)]))
        .unwrap();
    let b = run.until_warm("BBBUSDT").await;
    assert_eq!(closed(&b, "BBBUSDT"), vec![-4, -3, -2, -1]);
    assert!(
        !b.contains(&SourceEvent::Reconnected),
        "a subscription change is no reconnect"
    );
    events.extend(b);
    fake.wait_for("A and B streamed", |f| {
        f.connections() == vec![BTreeSet::from([stream("AAAUSDT"), stream("BBBUSDT")])]
    })
    .await;
    fake.push("AAAUSDT", fake.candle("AAAUSDT", t(0)), true); // a repeat: dropped
    let a1 = forming(fake.candle("AAAUSDT", t(1)));
    fake.push("AAAUSDT", a1, false);
    fake.push("BBBUSDT", fake.candle("BBBUSDT", t(0)), true);
    let live = run.drain(Duration::from_millis(300)).await;
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live.contains(&candle_event("AAAUSDT", a1, false)));
    assert!(live.contains(&candle_event("BBBUSDT", fake.candle("BBBUSDT", t(0)), true)));
    events.extend(live);
    assert_eq!(closed(&events, "AAAUSDT"), vec![-3, -2, -1, 0]);
    assert_eq!(closed(&events, "BBBUSDT"), vec![-4, -3, -2, -1, 0]);

    // A is removed: only B is streamed.
    run.wanted.send(wanted(&[("BBBUSDT", 4)])).unwrap();
    fake.wait_for("only B streamed", |f| {
        f.connections() == vec![BTreeSet::from([stream("BBBUSDT")])]
    })
    .await;
    assert_eq!(fake.push("AAAUSDT", fake.candle("AAAUSDT", t(1)), true), 0);
    let b1 = forming(fake.candle("BBBUSDT", t(1)));
    fake.push("BBBUSDT", b1, false);
    assert_eq!(run.next().await, candle_event("BBBUSDT", b1, false));
    assert!(run.drain(Duration::from_millis(100)).await.is_empty());
    run.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_replaced() {
    let fake = fake().await;
    fake.add_closed("AAAUSDT", t(-5), 5);
    fake.silence_next_connections(1);
    let mut run = Run::start(
        BinanceConfig {
            idle_timeout: Duration::from_millis(300),
            ..config(&fake)
        },
        &[("AAAUSDT", 2)],
    );
    let warm = run.until_warm("AAAUSDT").await;
    assert_eq!(closed(&warm, "AAAUSDT"), vec![-2, -1]);
    assert_eq!(run.next().await, SourceEvent::Reconnected);
    fake.wait_for("a live connection", |f| {
        f.total_connections() >= 2 && f.connections().len() == 1
    })
    .await;
    let c0 = fake.candle("AAAUSDT", t(0));
    assert_eq!(fake.push("AAAUSDT", c0, true), 1);
    assert_eq!(run.next().await, candle_event("AAAUSDT", c0, true));
    run.stop().await;
}

#[tokio::test]
async fn connections_are_renewed_without_losing_or_repeating_bars() {
    let fake = fake().await;
    fake.add_closed("AAAUSDT", t(-5), 5);
    let mut run = Run::start(
        BinanceConfig {
            renew_after: Duration::from_millis(300),
            ..config(&fake)
        },
        &[("AAAUSDT", 2)],
    );
    let warm = run.until_warm("AAAUSDT").await;
    assert_eq!(closed(&warm, "AAAUSDT"), vec![-2, -1]);
    assert_eq!(run.next().await, SourceEvent::Reconnected);
    assert_eq!(run.next().await, SourceEvent::Reconnected);
    assert!(fake.total_connections() >= 3);

    // Bar 0 closes at the exchange and bar 1 forms. Its updates are sent until one gets
    // through (a message sent during a renewal is lost, as on the real exchange): bar 0's
    // close must come first, exactly once, however the renewals fall.
    fake.add_closed("AAAUSDT", t(0), 1);
    fake.set_now(t(1).plus_millis(30_000));
    let c1 = forming(fake.candle("AAAUSDT", t(1)));
    let mut got = Vec::new();
    'outer: for _ in 0..200 {
        fake.push("AAAUSDT", c1, false);
        for e in run.drain(Duration::from_millis(20)).await {
            let done = e == candle_event("AAAUSDT", c1, false);
            got.push(e);
            if done {
                break 'outer;
            }
        }
    }
    got.extend(run.drain(Duration::from_millis(700)).await);
    let candles: Vec<&SourceEvent> = got
        .iter()
        .filter(|e| **e != SourceEvent::Reconnected)
        .collect();
    assert_eq!(
        candles.first(),
        Some(&&candle_event(
            "AAAUSDT",
            fake.candle("AAAUSDT", t(0)),
            true
        ))
    );
    assert!(
        candles[1..]
            .iter()
            .all(|e| **e == candle_event("AAAUSDT", c1, false)),
        "{candles:?}"
    );
    assert!(candles.len() >= 2);
    assert!(
        got.iter()
            .filter(|e| **e == SourceEvent::Reconnected)
            .count()
            >= 2,
        "renewed again within 700 ms"
    );
    run.stop().await;
}
