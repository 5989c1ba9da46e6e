//! A store that fails while the runner records triggers: the runner keeps the batch, retries
//! with backoff and records it once the store works again, instead of stopping (which would
//! stop `serve` on a PostgreSQL restart and drop what the engine had already evaluated).
//! The outage is simulated on SQLite by renaming the triggers table away and back.

use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, Symbol, Timeframe};
use alert_marketdata::SourceEvent;
use alert_runtime::{Runner, RunnerConfig};
use alert_store::{AlertStatus, NewAlert, Store, StoreOptions, TriggerQuery};
use sqlx::Connection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const USER: uuid::Uuid = uuid::Uuid::from_u128(7);

fn candle(minute: i64, close: f64) -> SourceEvent {
    let Ok(symbol) = Symbol::new("BTCUSDT") else {
        panic!("symbol")
    };
    SourceEvent::Candle {
        symbol,
        update: CandleUpdate {
            candle: Candle {
                open_time: BarTime::from_millis(1_704_067_200_000 + minute * 60_000),
                open: close,
                high: close,
                low: close,
                close,
                volume: 1.0,
            },
            closed: true,
        },
    }
}

async fn recorded(store: &Store) -> Option<Vec<i64>> {
    let query = TriggerQuery {
        limit: 100,
        ..Default::default()
    };
    let mut bars: Vec<i64> = store
        .list_triggers(USER, &query)
        .await
        .ok()?
        .iter()
        .map(|t| t.bar_time.timestamp_millis())
        .collect();
    bars.sort_unstable();
    Some(bars)
}

async fn sql(url: &str, statement: &str) {
    let Ok(mut conn) = sqlx::SqliteConnection::connect(url).await else {
        panic!("connect {url}")
    };
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
    {
        panic!("{statement}: {e}")
    }
    let _ = conn.close().await;
}

/// A SQLite store in a temp file with one alert of USER (BTCUSDT, close > 50: fires on every
/// candle at 100); returns it with its URL and path.
async fn sqlite_with_alert(tag: &str) -> (Store, String, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("{tag}-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open {url}")
    };
    let Ok(symbol) = Symbol::new("BTCUSDT") else {
        panic!("symbol")
    };
    let alert = NewAlert {
        name: "above 50".into(),
        symbol,
        base_timeframe: Timeframe::M1,
        definition: serde_json::json!({
            "name": "above 50", "symbol": "BTCUSDT", "base_timeframe": "1m",
            "conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": 50}],
            "action": {"type": "notify"}
        }),
        status: AlertStatus::Active,
    };
    assert!(
        store
            .create_alert(USER, &alert, chrono::Utc::now())
            .await
            .is_ok()
    );
    (store, url, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_evaluated_during_a_store_outage_are_recorded_when_it_ends() {
    let (store, url, path) = sqlite_with_alert("ar-outage").await;
    let config = RunnerConfig {
        poll: Duration::from_millis(100),
        live_only: false,
        ..RunnerConfig::default()
    };
    let Ok((runner, _wanted, _ready)) = Runner::start(store.clone(), config).await else {
        panic!("start")
    };
    let (tx, rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, cancel.clone()));

    // The outage: every write of a trigger fails.
    sql(
        &url,
        "ALTER TABLE alert_triggers RENAME TO alert_triggers_away",
    )
    .await;
    assert!(tx.send(candle(0, 100.0)).await.is_ok());
    assert!(tx.send(candle(1, 100.0)).await.is_ok());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !task.is_finished(),
        "the runner keeps running through the outage"
    );

    // The store is back: the kept batch is recorded, and later candles too.
    sql(
        &url,
        "ALTER TABLE alert_triggers_away RENAME TO alert_triggers",
    )
    .await;
    let mut got = None;
    for _ in 0..100 {
        got = recorded(&store).await;
        if got.as_ref().is_some_and(|b| b.len() >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        got,
        Some(vec![1_704_067_200_000, 1_704_067_260_000]),
        "both bars evaluated during the outage were recorded"
    );
    assert!(tx.send(candle(2, 100.0)).await.is_ok());
    cancel.cancel();
    let stats = match task.await {
        Ok(Ok(stats)) => stats,
        other => panic!("runner: {other:?}"),
    };
    assert_eq!(stats.triggers_recorded, 3, "{stats:?}");
    assert_eq!(recorded(&store).await.map(|b| b.len()), Some(3));
    store.close().await;
    let _ = std::fs::remove_file(&path);
}

/// Recording is pipelined with evaluation: while a round's write waits (here: on an outage),
/// the runner evaluates the next rounds, up to `record_queue` triggers queued; then it waits
/// too (it answers no market question), and once the store is back every round is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_goes_on_while_a_round_is_recorded_up_to_the_queue_bound() {
    let (store, url, path) = sqlite_with_alert("ar-pipeline").await;
    let Ok(symbol) = Symbol::new("BTCUSDT") else {
        panic!("symbol")
    };
    let queued = 4;
    let config = RunnerConfig {
        poll: Duration::from_secs(60),
        live_only: false,
        record_queue: queued as usize,
        ..RunnerConfig::default()
    };
    let Ok((mut runner, _wanted, _ready)) = Runner::start(store.clone(), config).await else {
        panic!("start")
    };
    let market = runner.market_handle();
    let (tx, rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, cancel.clone()));
    let bars_seen = || async {
        tokio::time::timeout(
            Duration::from_millis(700),
            market.candles(symbol, Timeframe::M1, 100),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|bars| bars.len())
    };

    sql(
        &url,
        "ALTER TABLE alert_triggers RENAME TO alert_triggers_away",
    )
    .await;
    // Round 1 is held by the recorder (retrying); rounds 2..=QUEUE wait in its queue. Each
    // candle is its own round (sent one at a time) and fires once.
    for minute in 0..queued {
        assert!(tx.send(candle(minute, 100.0)).await.is_ok());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        bars_seen().await,
        Some(queued as usize),
        "every round was evaluated while the first one's write waits"
    );
    // One trigger more does not fit: the runner waits for the recorder, and answers nothing.
    assert!(tx.send(candle(queued, 100.0)).await.is_ok());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        bars_seen().await,
        None,
        "the runner waits once the queue is full"
    );
    assert!(!task.is_finished());

    sql(
        &url,
        "ALTER TABLE alert_triggers_away RENAME TO alert_triggers",
    )
    .await;
    let want: Vec<i64> = (0..=queued)
        .map(|m| 1_704_067_200_000 + m * 60_000)
        .collect();
    let mut got = None;
    for _ in 0..100 {
        got = recorded(&store).await;
        if got.as_ref().is_some_and(|b| b.len() >= want.len()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, Some(want.clone()), "every round recorded once");
    assert_eq!(
        bars_seen().await,
        Some(want.len()),
        "and the runner answers again"
    );
    cancel.cancel();
    let stats = match task.await {
        Ok(Ok(stats)) => stats,
        other => panic!("runner: {other:?}"),
    };
    assert_eq!(stats.triggers_recorded, want.len() as u64, "{stats:?}");
    store.close().await;
    let _ = std::fs::remove_file(&path);
}
