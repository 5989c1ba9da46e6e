//! The runner against a real store: alerts created while it runs reach the engine (by polling
//! on SQLite, at once through LISTEN/NOTIFY on PostgreSQL), fire on the next candles, are
//! recorded once; deleted alerts stop.

use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, Symbol, Timeframe};
use alert_marketdata::SourceEvent;
use alert_runtime::{Runner, RunnerConfig};
use alert_store::bench::ScratchDatabase;
use alert_store::{AlertStatus, NewAlert, Store, StoreOptions, TriggerQuery};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const USER: uuid::Uuid = uuid::Uuid::from_u128(42);

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
                high: close + 1.0,
                low: close - 1.0,
                close,
                volume: 10.0,
            },
            closed: true,
        },
    }
}

fn alert(threshold: f64) -> NewAlert {
    let json = serde_json::json!({
        "name": format!("above {threshold}"), "symbol": "BTCUSDT", "base_timeframe": "1m",
        "conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": threshold}],
        "action": {"type": "notify"}
    });
    let Ok(symbol) = Symbol::new("BTCUSDT") else {
        panic!("symbol")
    };
    NewAlert {
        name: format!("above {threshold}"),
        symbol,
        base_timeframe: Timeframe::M1,
        definition: json,
        status: AlertStatus::Active,
    }
}

async fn triggers(store: &Store) -> usize {
    store
        .list_triggers(
            USER,
            &TriggerQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .map(|t| t.len())
        .unwrap_or(0)
}

async fn wait_for(store: &Store, n: usize) -> bool {
    for _ in 0..100 {
        if triggers(store).await >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn scenario(store: Store, poll: Duration) {
    let (runner, _wanted, _ready) = match Runner::start(
        store.clone(),
        RunnerConfig {
            poll,
            live_only: false,
            ..RunnerConfig::default()
        },
    )
    .await
    {
        Ok(r) => r,
        Err(e) => panic!("start: {e}"),
    };
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, cancel.clone()));
    let _ = tx.send(candle(0, 100.0)).await;

    // Created while running: picked up, then fires on the next candle.
    let Ok(row) = store
        .create_alert(USER, &alert(50.0), chrono::Utc::now())
        .await
    else {
        panic!("create")
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = tx.send(candle(1, 100.0)).await;
    assert!(wait_for(&store, 1).await, "the new alert fired");
    // The same bar again (a replay): recorded once.
    let _ = tx.send(candle(1, 100.0)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(triggers(&store).await, 1);

    // Deleted: no more triggers.
    assert!(
        store
            .delete_alert(USER, row.id, chrono::Utc::now())
            .await
            .is_ok_and(|d| d)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = tx.send(candle(2, 100.0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        triggers(&store).await,
        0,
        "deleting the alert removed its triggers and it fires no more"
    );

    cancel.cancel();
    let stats = task.await.ok().and_then(Result::ok).unwrap_or_default();
    assert!(stats.candles >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_changes_are_polled() {
    let path = std::env::temp_dir().join(format!("ar-live-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open")
    };
    scenario(store.clone(), Duration::from_millis(100)).await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_arrive_by_notify() {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("ar_live_{}", uuid::Uuid::new_v4().simple());
    let Ok(pool) = sqlx::PgPool::connect(&admin).await else {
        panic!("PostgreSQL at {admin}")
    };
    let create = format!("CREATE DATABASE {db}");
    assert!(
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&pool)
            .await
            .is_ok()
    );
    let (base, _) = admin.rsplit_once('/').unwrap_or((admin.as_str(), ""));
    let url = format!("{base}/{db}");
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open {url}")
    };
    // A poll interval far longer than the test: only NOTIFY can deliver the changes in time.
    scenario(store.clone(), Duration::from_secs(600)).await;
    store.close().await;
    let drop = format!("DROP DATABASE {db} WITH (FORCE)");
    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_triggers_reach_live_clients_and_wake_the_dispatcher() {
    let path = std::env::temp_dir().join(format!("ar-live-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open")
    };
    let mut def = alert(50.0);
    def.definition["actions"] = serde_json::json!([
        {"type": "notify", "title": "up"},
        {"type": "webhook", "url": "https://example.com/hook"}
    ]);
    let Ok(row) = store.create_alert(USER, &def, chrono::Utc::now()).await else {
        panic!("create")
    };
    let hub = alert_dispatch::LiveHub::new(16);
    let mut mine = hub.subscribe(USER);
    let mut other = hub.subscribe(uuid::Uuid::from_u128(7));
    let waker = alert_dispatch::Waker::default();
    let woken = waker.clone();
    let Ok((runner, _wanted, _ready)) = Runner::start(
        store.clone(),
        RunnerConfig {
            live_only: false,
            ..RunnerConfig::default()
        },
    )
    .await
    else {
        panic!("start")
    };
    let runner = runner.with_outlets(alert_runtime::Outlets {
        live: Some(hub.clone()),
        dispatcher: Some(waker),
        changes: None,
    });
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, cancel.clone()));
    let _ = tx.send(candle(0, 100.0)).await;

    let Ok(Some(first)) = tokio::time::timeout(Duration::from_secs(5), mine.recv()).await else {
        panic!("no trigger event")
    };
    let Ok(Some(second)) = tokio::time::timeout(Duration::from_secs(5), mine.recv()).await else {
        panic!("no notification event")
    };
    let (trigger_id, alert_id) = match &*first {
        alert_dispatch::LiveEvent::Trigger {
            trigger_id,
            alert_id,
            ..
        } => (*trigger_id, *alert_id),
        other => panic!("expected the trigger first, got {other:?}"),
    };
    assert_eq!(alert_id, row.id);
    let Ok(notes) = store.list_notifications(USER, 10).await else {
        panic!("notifications")
    };
    match &*second {
        alert_dispatch::LiveEvent::Notification {
            id,
            trigger_id: t,
            title,
            ..
        } => {
            assert_eq!(*t, trigger_id);
            assert_eq!(title, "up");
            assert_eq!(notes.len(), 1);
            assert_eq!(
                *id, notes[0].id,
                "the live event carries the stored notification's id"
            );
        }
        other => panic!("expected a notification, got {other:?}"),
    }
    assert!(
        other.receiver().try_recv().is_err(),
        "another user's stream got nothing"
    );
    // The webhook was queued: the dispatcher's waker holds a notification for it.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), woken.notified())
            .await
            .is_ok()
    );
    cancel.cancel();
    let _ = task.await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn alert_on(symbol: &str, name: &str, condition: serde_json::Value) -> NewAlert {
    let Ok(sym) = Symbol::new(symbol) else {
        panic!("symbol")
    };
    NewAlert {
        name: name.to_owned(),
        symbol: sym,
        base_timeframe: Timeframe::M1,
        definition: serde_json::json!({
            "name": name, "symbol": symbol, "base_timeframe": "1m",
            "conditions": [condition], "action": {"type": "notify"}
        }),
        status: AlertStatus::Active,
    }
}

/// The symbols (and history) the source is asked for follow alerts as they come and go: a
/// symbol's warm-up is its longest alert's, a symbol without alerts is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wanted_symbols_follow_alert_changes() {
    let path = std::env::temp_dir().join(format!("ar-wanted-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open")
    };
    let now = chrono::Utc::now();
    let price = serde_json::json!({"id": "p", "type": "price", "operator": ">", "compareValue": 1});
    let rsi = serde_json::json!({"id": "r", "type": "indicator", "indicator": "RSI",
        "operator": "<", "compareValue": 30, "settings": {"length": 100}});
    let mut ids = Vec::new();
    for (symbol, name, condition) in [
        ("BTCUSDT", "btc price", &price),
        ("BTCUSDT", "btc rsi", &rsi),
        ("BTCUSDT", "btc price 2", &price),
        ("ETHUSDT", "eth price", &price),
    ] {
        let Ok(row) = store
            .create_alert(USER, &alert_on(symbol, name, condition.clone()), now)
            .await
        else {
            panic!("create {name}")
        };
        ids.push(row.id);
    }
    let Ok((mut runner, wanted, _ready)) = Runner::start(
        store.clone(),
        RunnerConfig {
            history_bars: 1,
            live_only: false,
            ..RunnerConfig::default()
        },
    )
    .await
    else {
        panic!("start")
    };
    let (Ok(btc), Ok(eth)) = (Symbol::new("BTCUSDT"), Symbol::new("ETHUSDT")) else {
        panic!("symbols")
    };
    let at_start = wanted.borrow().clone();
    assert_eq!(at_start.len(), 2, "{at_start:?}");
    let (btc_long, eth_short) = (at_start[&btc], at_start[&eth]);
    assert!(
        btc_long >= 100 && eth_short < btc_long,
        "BTC needs its RSI(100) warm-up: {at_start:?}"
    );

    // The RSI alert goes: BTC needs only what its price alerts need (ETH's length).
    let later = chrono::Utc::now() + chrono::Duration::milliseconds(5);
    assert!(
        store
            .delete_alert(USER, ids[1], later)
            .await
            .is_ok_and(|d| d)
    );
    assert!(runner.poll_changes().await.is_ok_and(|n| n == 1));
    assert_eq!(wanted.borrow().get(&btc), Some(&eth_short));
    assert_eq!(runner.alert_count(), 3);

    // ETH's only alert goes: ETH is no longer wanted; BTC keeps its two.
    let later = later + chrono::Duration::milliseconds(5);
    assert!(
        store
            .delete_alert(USER, ids[3], later)
            .await
            .is_ok_and(|d| d)
    );
    assert!(runner.poll_changes().await.is_ok_and(|n| n == 1));
    assert_eq!(
        wanted.borrow().keys().copied().collect::<Vec<_>>(),
        vec![btc]
    );
    // Replacing an alert (same id, new version) does not count it twice: BTC's warm-up
    // follows the new definition, and deleting its two alerts leaves nothing wanted.
    let rsi50 = serde_json::json!({"id": "r", "type": "indicator", "indicator": "RSI",
        "operator": "<", "compareValue": 30, "settings": {"length": 50}});
    let later = later + chrono::Duration::milliseconds(5);
    assert!(
        store
            .update_alert(
                USER,
                ids[0],
                &alert_on("BTCUSDT", "btc rsi 50", rsi50),
                later
            )
            .await
            .is_ok_and(|r| r.is_some())
    );
    assert!(runner.poll_changes().await.is_ok_and(|n| n == 1));
    let btc_mid = wanted.borrow().get(&btc).copied().unwrap_or(0);
    assert!(btc_mid >= 50 && btc_mid < btc_long, "{btc_mid}");
    assert_eq!(runner.alert_count(), 2);
    for (k, id) in [ids[0], ids[2]].into_iter().enumerate() {
        let at = later + chrono::Duration::milliseconds(5 * (k as i64 + 1));
        assert!(store.delete_alert(USER, id, at).await.is_ok_and(|d| d));
        assert!(runner.poll_changes().await.is_ok_and(|n| n == 1));
    }
    assert!(wanted.borrow().is_empty(), "{:?}", wanted.borrow());
    assert_eq!(runner.alert_count(), 0);
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Alerts imported a while before the runner starts are read once (at load), not again at
/// every poll: reads resume from the last read's start, not only from the newest change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_not_read_again_at_every_poll() {
    let path = std::env::temp_dir().join(format!("ar-reread-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let Ok(store) = Store::connect(&url, StoreOptions::default()).await else {
        panic!("open")
    };
    let imported = chrono::Utc::now() - chrono::Duration::seconds(3);
    for k in 0..40 {
        assert!(
            store
                .create_alert(USER, &alert(f64::from(k)), imported)
                .await
                .is_ok()
        );
    }
    let Ok((mut runner, _wanted, _ready)) =
        Runner::start(store.clone(), RunnerConfig::default()).await
    else {
        panic!("start")
    };
    assert_eq!(runner.alert_count(), 40);
    // The first poll may look back over the load (5 s of overlap); once that has passed,
    // polls read only what changed.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(runner.poll_changes().await.is_ok());
    let after_first = runner.stats().changes_read;
    for _ in 0..3 {
        assert!(runner.poll_changes().await.is_ok_and(|n| n == 0));
    }
    assert_eq!(
        runner.stats().changes_read,
        after_first,
        "polls with nothing new read nothing"
    );
    // A change is still seen.
    let Ok(row) = store
        .create_alert(USER, &alert(99.0), chrono::Utc::now())
        .await
    else {
        panic!("create")
    };
    assert!(runner.poll_changes().await.is_ok_and(|n| n == 1));
    assert_eq!(runner.alert_count(), 41);
    assert!(
        store
            .delete_alert(USER, row.id, chrono::Utc::now())
            .await
            .is_ok_and(|d| d)
    );
    assert!(runner.poll_changes().await.is_ok_and(|n| n == 1));
    assert_eq!(runner.alert_count(), 40);
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A burst of change notifications (here 300 alerts created one by one, as an import does;
/// at scale, every `once` alert that fires) is read in a few reads, not one per
/// notification — one read each starved the candles at 1,000,000 alerts — and every alert
/// still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_notifications_is_read_in_few_reads() {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let scratch = match ScratchDatabase::create(&admin).await {
        Ok(s) => s,
        Err(e) => panic!("PostgreSQL at {admin}: {e}"),
    };
    let Ok(store) = Store::connect(scratch.url(), StoreOptions::default()).await else {
        panic!("open {}", scratch.url())
    };
    let Ok((runner, _wanted, _ready)) = Runner::start(
        store.clone(),
        RunnerConfig {
            // Only notifications can deliver the changes in time.
            poll: Duration::from_secs(600),
            live_only: false,
            ..RunnerConfig::default()
        },
    )
    .await
    else {
        panic!("start")
    };
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = uuid::Uuid::from_u128(43);
    for k in 0..300 {
        // Two users: the per-user limit (1,000 by default) is not what is tested.
        let user = if k % 2 == 0 { USER } else { other };
        assert!(
            store
                .create_alert(user, &alert(f64::from(k % 50)), chrono::Utc::now())
                .await
                .is_ok()
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every alert is loaded: one candle above all thresholds fires all 300.
    let _ = tx.send(candle(0, 100.0)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    let stats = match task.await {
        Ok(Ok(stats)) => stats,
        other => panic!("runner: {other:?}"),
    };
    assert_eq!(stats.triggers_recorded, 300, "{stats:?}");
    assert!(
        stats.change_reads < 60,
        "300 notifications, {} reads: {stats:?}",
        stats.change_reads
    );
    store.close().await;
    let _ = scratch.remove().await;
}
