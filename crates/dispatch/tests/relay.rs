//! The relay on a real PostgreSQL: what two writers record reaches a hub in commit order with
//! increasing times, even when the writer that commits second read its clock first; batches
//! larger than one NOTIFY payload arrive whole; only subscribed users' rows are published; a
//! lost listening connection ends the streams and the relay listens again.

use std::time::Duration;

use alert_core::{Symbol, Timeframe};
use alert_dispatch::{EventRelay, LiveEvent, LiveHub, Subscription};
use alert_store::bench::ScratchDatabase;
use alert_store::{
    AlertStatus, NewAlert, NewNotification, NewTrigger, Recorded, Store, StoreOptions,
};
use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn scratch() -> (ScratchDatabase, Store) {
    let scratch = match ScratchDatabase::create(&admin_url()).await {
        Ok(s) => s,
        Err(e) => panic!("PostgreSQL at {}: {e}", admin_url()),
    };
    let store = match Store::connect(scratch.url(), StoreOptions::default()).await {
        Ok(s) => s,
        Err(e) => panic!("open {}: {e}", scratch.url()),
    };
    (scratch, store)
}

async fn alert(store: &Store, user: Uuid, symbol: &str) -> Uuid {
    let json = serde_json::json!({
        "name": symbol, "symbol": symbol, "base_timeframe": "1m",
        "conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": 1}],
        "action": {"type": "notify"}
    });
    let Ok(sym) = Symbol::new(symbol) else {
        panic!("symbol")
    };
    let new = NewAlert {
        name: symbol.to_owned(),
        symbol: sym,
        base_timeframe: Timeframe::M1,
        definition: json,
        status: AlertStatus::Active,
    };
    match store.create_alert(user, &new, Utc::now()).await {
        Ok(row) => row.id,
        Err(e) => panic!("create alert: {e}"),
    }
}

fn trigger(alert: Uuid, user: Uuid, symbol: &str, minute: i64) -> NewTrigger {
    let bar = Utc.timestamp_opt(1_704_067_200 + minute * 60, 0).unwrap();
    NewTrigger {
        alert_id: alert,
        user_id: user,
        symbol: symbol.to_owned(),
        bar_time: bar,
        fired_at: bar,
        snapshot: serde_json::json!({"minute": minute, "pad": "x".repeat(200)}),
        notification: Some(NewNotification {
            title: format!("{symbol} {minute}"),
            body: "fired".into(),
        }),
        deliveries: Vec::new(),
        spend: false,
    }
}

async fn record(store: &Store, batch: &[NewTrigger], now: DateTime<Utc>) -> Vec<Uuid> {
    match store.record_triggers(batch, now).await {
        Ok(out) => out
            .into_iter()
            .filter_map(|r| match r {
                Recorded::New { trigger_id, .. } => Some(trigger_id),
                _ => None,
            })
            .collect(),
        Err(e) => panic!("record: {e}"),
    }
}

async fn next(sub: &mut Subscription) -> Option<LiveEvent> {
    match tokio::time::timeout(Duration::from_secs(10), sub.recv()).await {
        Ok(e) => e.map(|e| (*e).clone()),
        Err(_) => panic!("no event within 10 s"),
    }
}

/// Subscribes `user` once the relay listens: a probe trigger recorded until one arrives.
async fn subscribed(hub: &LiveHub, store: &Store, user: Uuid, alert_id: Uuid) -> Subscription {
    for minute in 10_000.. {
        let mut sub = hub.subscribe(user);
        record(
            store,
            &[trigger(alert_id, user, "PROBEUSDT", minute)],
            Utc::now(),
        )
        .await;
        match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
            Ok(Some(_)) => {
                // Its notification, then the stream is clean.
                let _ = next(&mut sub).await;
                return sub;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        assert!(minute < 10_100, "the relay never published");
    }
    unreachable!()
}

fn recorded_at(e: &LiveEvent) -> (Uuid, DateTime<Utc>) {
    match e {
        LiveEvent::Trigger {
            trigger_id,
            recorded_at,
            ..
        } => (*trigger_id, *recorded_at),
        other => panic!("expected a trigger, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_out_of_clock_order_arrive_in_commit_order_with_increasing_times() {
    let (scratch, store) = scratch().await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let probe = alert(&store, alice, "PROBEUSDT").await;
    let a1 = alert(&store, alice, "AAAUSDT").await;
    let a2 = alert(&store, alice, "BBBUSDT").await;
    let b1 = alert(&store, bob, "AAAUSDT").await;
    let hub = LiveHub::new(4096);
    let cancel = CancellationToken::new();
    let relay = tokio::spawn(EventRelay::new(store.clone(), hub.clone()).run(cancel.clone(), None));
    let mut sub = subscribed(&hub, &store, alice, probe).await;

    // Writer 1 commits at its clock; writer 2 read its clock a second earlier and commits
    // after: its rows are recorded after writer 1's, not before.
    let t1 = Utc::now();
    let first = record(&store, &[trigger(a1, alice, "AAAUSDT", 1)], t1).await;
    let second = record(
        &store,
        &[
            trigger(a2, alice, "BBBUSDT", 1),
            trigger(b1, bob, "AAAUSDT", 1),
        ],
        t1 - chrono::Duration::seconds(1),
    )
    .await;
    assert_eq!((first.len(), second.len()), (1, 2));
    let e1 = next(&mut sub).await.unwrap();
    let n1 = next(&mut sub).await.unwrap();
    let e2 = next(&mut sub).await.unwrap();
    let (id1, at1) = recorded_at(&e1);
    let (id2, at2) = recorded_at(&e2);
    assert_eq!(
        (id1, id2),
        (first[0], second[0]),
        "commit order; bob's is not alice's"
    );
    assert!(
        at2 > at1,
        "the later commit has the later time: {at1} then {at2}"
    );
    assert!(matches!(n1, LiveEvent::Notification { trigger_id, .. } if trigger_id == id1));
    // The times are the stored ones: a client resuming from the store agrees.
    let stored = match store
        .triggers_since(
            alice,
            alert_store::Cursor {
                at: t1 - chrono::Duration::seconds(5),
                id: Uuid::nil(),
            },
            100,
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => panic!("{e}"),
    };
    let stored_at = |id: Uuid| {
        stored
            .iter()
            .find(|r| r.trigger.id == id)
            .map(|r| r.recorded_at)
    };
    assert_eq!(stored_at(id1), Some(at1));
    assert_eq!(stored_at(id2), Some(at2));

    // A batch far larger than one NOTIFY payload (8,000 bytes): all of it, in order.
    let big: Vec<NewTrigger> = (100..400)
        .map(|m| trigger(a1, alice, "AAAUSDT", m))
        .collect();
    let ids = record(&store, &big, Utc::now()).await;
    assert_eq!(ids.len(), 300);
    let _ = next(&mut sub).await; // e2's notification
    let mut got = Vec::new();
    while got.len() < 300 {
        match next(&mut sub).await {
            Some(LiveEvent::Trigger { trigger_id, .. }) => got.push(trigger_id),
            Some(LiveEvent::Notification { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, ids, "every trigger of the batch, in the batch's order");
    assert!(matches!(
        next(&mut sub).await,
        Some(LiveEvent::Notification { trigger_id, .. }) if Some(&trigger_id) == ids.last()
    ));

    // The listening connection is killed: the stream ends; the relay listens again and a new
    // subscription receives what is recorded next.
    let pool = match sqlx::PgPool::connect(scratch.url()).await {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    let killed: Vec<bool> = match sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%alert_runner_events%'",
    )
    .fetch_all(&pool)
    .await
    {
        Ok(k) => k,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(killed, [true], "one listening connection");
    assert!(
        next(&mut sub).await.is_none(),
        "the stream ends: what commits while the relay is away would be missed"
    );
    let mut again = subscribed(&hub, &store, alice, probe).await;
    let later = record(&store, &[trigger(a2, alice, "BBBUSDT", 500)], Utc::now()).await;
    assert_eq!(recorded_at(&next(&mut again).await.unwrap()).0, later[0]);

    cancel.cancel();
    let _ = relay.await;
    pool.close().await;
    store.close().await;
    let _ = scratch.remove().await;
}
