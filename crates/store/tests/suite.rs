//! The store's shared suite: every test runs against SQLite (a temp file) and PostgreSQL (a
//! fresh database on `DATABASE_URL`'s server), as `<test>::sqlite` and `<test>::postgres`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use alert_store::{
    AlertQuery, AlertStatus, AttemptOutcome, AttemptRecord, Cursor, Delivery, DeliveryCounts,
    DeliveryKind, DisabledWebhook, Limits, NewDelivery, Recorded, Store, StoreError, StoreOptions,
    TriggerQuery, WebhookSecrets,
};
use chrono::Duration;
use futures_util::TryStreamExt;
use uuid::Uuid;

use common::{ALL, TestDb, TestResult, at, create, hour, new_alert, paused, t0, trigger};

store_test!(
    alert_crud_is_scoped_per_user,
    list_alerts_pages_by_cursor_and_filters,
    cursor_survives_sub_millisecond_times,
    limits_refuse_and_write_nothing,
    limits_hold_under_concurrent_creates,
    record_trigger_is_exactly_once,
    record_triggers_batch_with_internal_duplicate,
    concurrent_writers_record_one_trigger,
    record_triggers_large_batches,
    record_triggers_skips_gone_and_inactive_alerts,
    once_alert_fires_once,
    delete_cascades_to_triggers_notifications_deliveries,
    alert_changes_feed,
    stream_active_alerts_returns_exactly_active,
    outbox_lease_and_reclaim,
    outbox_retry_schedule_and_attempt_log,
    outbox_final_states_redeliver_and_counts,
    concurrent_claims_never_share_a_delivery,
    notifications_list_and_mark_read_scoped,
    list_triggers_filters_and_pages,
    migrations_are_idempotent,
    nul_characters_never_fail_a_write,
    last_fired_bars_per_alert,
    listen_alert_changes_wakes_on_changes,
    claims_take_only_the_given_kinds,
    action_secrets_reach_claims_not_listings,
    attempt_response_bodies_round_trip,
    disable_webhook_cancels_pending_and_flags_claims,
    replacing_or_deleting_an_alert_enables_its_webhooks,
    webhook_secret_get_or_create_is_idempotent,
    webhook_secret_rotation_keeps_previous_for_grace,
    concurrent_webhook_secret_creation_yields_one,
    defer_releases_the_lease_without_an_attempt,
    notification_ids_match_the_listing,
);

fn user() -> Uuid {
    Uuid::new_v4()
}

fn attempt(outcome: AttemptOutcome, code: Option<i32>) -> AttemptRecord {
    AttemptRecord {
        status_code: code,
        error: code.filter(|c| *c >= 400).map(|c| format!("HTTP {c}")),
        duration_ms: 12,
        outcome,
        response: None,
    }
}

fn new_id(r: &Recorded) -> Uuid {
    match r {
        Recorded::New { trigger_id, .. } => *trigger_id,
        other => panic!("expected a new trigger, got {other:?}"),
    }
}

// ---- alerts ------------------------------------------------------------------------------

async fn alert_crud_is_scoped_per_user(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let mine = s
        .create_alert(a, &new_alert("mine", "BTCUSDT"), at(0))
        .await?;
    assert_eq!(mine.user_id, a);
    assert_eq!(mine.name, "mine");
    assert_eq!(mine.symbol, "BTCUSDT");
    assert_eq!(mine.base_timeframe, "1h");
    assert_eq!(mine.status, AlertStatus::Active);
    assert_eq!(mine.created_at, at(0));
    assert_eq!(mine.updated_at, at(0));
    assert_eq!(mine.fire_count, 0);
    assert_eq!(mine.last_fired_at, None);
    assert_eq!(mine.definition, new_alert("mine", "BTCUSDT").definition);
    let theirs = s
        .create_alert(b, &new_alert("theirs", "ETHUSDT"), at(1))
        .await?;

    // Read.
    assert_eq!(s.get_alert(a, mine.id).await?, Some(mine.clone()));
    assert_eq!(s.get_alert(b, mine.id).await?, None);
    assert_eq!(s.get_alert(a, Uuid::new_v4()).await?, None);
    let listed = s.list_alerts(a, &AlertQuery::default()).await?;
    assert_eq!(listed, vec![mine.clone()]);
    let listed = s.list_alerts(b, &AlertQuery::default()).await?;
    assert_eq!(listed, vec![theirs.clone()]);

    // Update.
    let mut changed = new_alert("mine, renamed", "ETHUSDT");
    changed.definition = serde_json::json!({"name": "mine, renamed", "conditions": []});
    assert_eq!(s.update_alert(b, mine.id, &changed, at(5)).await?, None);
    let updated = s
        .update_alert(a, mine.id, &changed, at(5))
        .await?
        .expect("own alert updates");
    assert_eq!(updated.name, "mine, renamed");
    assert_eq!(updated.symbol, "ETHUSDT");
    assert_eq!(updated.definition, changed.definition);
    assert_eq!(updated.created_at, at(0));
    assert_eq!(updated.updated_at, at(5));
    assert_eq!(s.get_alert(a, mine.id).await?, Some(updated.clone()));

    // Status.
    assert_eq!(
        s.set_status(b, mine.id, AlertStatus::Paused, at(6)).await?,
        None
    );
    assert_eq!(
        s.get_alert(a, mine.id).await?.unwrap().status,
        AlertStatus::Active
    );
    let p = s
        .set_status(a, mine.id, AlertStatus::Paused, at(7))
        .await?
        .unwrap();
    assert_eq!(p.status, AlertStatus::Paused);
    assert_eq!(p.updated_at, at(7));
    assert_eq!(
        s.set_status(b, mine.id, AlertStatus::Active, at(8)).await?,
        None,
        "resuming another user's alert"
    );
    assert_eq!(
        s.set_status(a, Uuid::new_v4(), AlertStatus::Active, at(8))
            .await?,
        None
    );

    // Delete.
    assert!(!s.delete_alert(b, mine.id, at(9)).await?);
    assert!(s.get_alert(a, mine.id).await?.is_some());
    assert!(s.delete_alert(a, mine.id, at(9)).await?);
    assert!(!s.delete_alert(a, mine.id, at(9)).await?, "already deleted");
    assert_eq!(s.get_alert(a, mine.id).await?, None);
    assert!(s.list_alerts(a, &AlertQuery::default()).await?.is_empty());
    // B's alert untouched by all of this.
    assert_eq!(s.get_alert(b, theirs.id).await?, Some(theirs));
    Ok(())
}

async fn list_alerts_pages_by_cursor_and_filters(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
    let mut all = Vec::new();
    for i in 0..25_i64 {
        // Pairs of alerts share a created_at: the id breaks the tie.
        let mut na = new_alert(&format!("a{i}"), symbols[(i % 3) as usize]);
        if i % 4 == 0 {
            na = paused(na);
        }
        all.push(s.create_alert(a, &na, at(i / 2)).await?);
    }
    for i in 0..3 {
        create(s, b, &format!("b{i}"), "BTCUSDT").await;
    }
    all.sort_by_key(|r| (r.created_at, r.id));

    // Every page through an encoded cursor: all rows, in order, once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = AlertQuery {
            after,
            limit: 7,
            ..AlertQuery::default()
        };
        let page = s.list_alerts(a, &q).await?;
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        let text = Cursor {
            at: last.created_at,
            id: last.id,
        }
        .encode();
        after = Some(Cursor::decode(&text).expect("cursor decodes"));
        seen.extend(page);
    }
    assert_eq!(seen, all);

    // Filters.
    let btc = s
        .list_alerts(
            a,
            &AlertQuery {
                symbol: Some("BTCUSDT".into()),
                ..AlertQuery::default()
            },
        )
        .await?;
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.symbol == "BTCUSDT")
        .cloned()
        .collect();
    assert_eq!(btc, want);
    let paused_rows = s
        .list_alerts(
            a,
            &AlertQuery {
                status: Some(AlertStatus::Paused),
                ..AlertQuery::default()
            },
        )
        .await?;
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.status == AlertStatus::Paused)
        .cloned()
        .collect();
    assert_eq!(paused_rows, want);
    let both = s
        .list_alerts(
            a,
            &AlertQuery {
                symbol: Some("ETHUSDT".into()),
                status: Some(AlertStatus::Active),
                limit: 2,
                ..AlertQuery::default()
            },
        )
        .await?;
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.symbol == "ETHUSDT" && r.status == AlertStatus::Active)
        .take(2)
        .cloned()
        .collect();
    assert_eq!(both, want);
    // Limit 0 means the default page (100): everything here.
    assert_eq!(s.list_alerts(a, &AlertQuery::default()).await?.len(), 25);
    // Past the end.
    let last = all.last().unwrap();
    let q = AlertQuery {
        after: Some(Cursor {
            at: last.created_at,
            id: last.id,
        }),
        ..AlertQuery::default()
    };
    assert!(s.list_alerts(a, &q).await?.is_empty());
    Ok(())
}

/// Alerts created with the wall clock (microseconds on PostgreSQL): paging through the API's
/// text cursor must neither repeat nor skip a row.
async fn cursor_survives_sub_millisecond_times(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let base = t0() + Duration::microseconds(123_456);
    for i in 0..6_i64 {
        s.create_alert(
            a,
            &new_alert(&format!("a{i}"), "BTCUSDT"),
            base + Duration::microseconds(i * 7),
        )
        .await?;
    }
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    for _ in 0..10 {
        let q = AlertQuery {
            after,
            limit: 1,
            ..AlertQuery::default()
        };
        let page = s.list_alerts(a, &q).await?;
        let Some(last) = page.last() else { break };
        after = Cursor::decode(
            &Cursor {
                at: last.created_at,
                id: last.id,
            }
            .encode(),
        );
        seen.push(last.id);
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), 6, "pages: {seen:?}");
    assert_eq!(unique.len(), 6);
    Ok(())
}

async fn limits_refuse_and_write_nothing(db: TestDb) -> TestResult {
    assert_eq!(
        Limits::default(),
        Limits {
            per_symbol: 200,
            per_user: 1000
        }
    );
    let s = db
        .connect(StoreOptions {
            limits: Limits {
                per_symbol: 2,
                per_user: 3,
            },
            ..StoreOptions::default()
        })
        .await;
    let (a, b) = (user(), user());
    let btc1 = s
        .create_alert(a, &new_alert("btc1", "BTCUSDT"), at(0))
        .await?;
    let btc2 = s
        .create_alert(a, &new_alert("btc2", "BTCUSDT"), at(1))
        .await?;
    let err = s
        .create_alert(a, &new_alert("btc3", "BTCUSDT"), at(2))
        .await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
    assert_eq!(
        db.count_of("alerts", a).await,
        2,
        "refused create wrote nothing"
    );
    // Another user has limits of their own.
    s.create_alert(b, &new_alert("b", "BTCUSDT"), at(2)).await?;
    s.create_alert(b, &new_alert("b", "BTCUSDT"), at(2)).await?;
    // Per user.
    let eth = s
        .create_alert(a, &new_alert("eth", "ETHUSDT"), at(3))
        .await?;
    let err = s.create_alert(a, &new_alert("sol", "SOLUSDT"), at(4)).await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
    assert_eq!(db.count_of("alerts", a).await, 3);
    // Paused alerts do not count and are not refused.
    let sol = s
        .create_alert(a, &paused(new_alert("sol", "SOLUSDT")), at(5))
        .await?;
    assert_eq!(sol.status, AlertStatus::Paused);
    // Resuming checks the limits, and a refused resume changes nothing.
    let err = s.set_status(a, sol.id, AlertStatus::Active, at(6)).await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
    let still = s.get_alert(a, sol.id).await?.unwrap();
    assert_eq!(still.status, AlertStatus::Paused);
    assert_eq!(still.updated_at, at(5));
    // Updating an active alert in place is not refused (it does not count against itself).
    let same = s
        .update_alert(a, eth.id, &new_alert("eth v2", "ETHUSDT"), at(7))
        .await?;
    assert_eq!(same.unwrap().name, "eth v2");
    // Moving an alert onto a full symbol is refused.
    let err = s
        .update_alert(a, eth.id, &new_alert("eth to btc", "BTCUSDT"), at(8))
        .await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
    assert_eq!(s.get_alert(a, eth.id).await?.unwrap().symbol, "ETHUSDT");
    // Another user's alert: None, not a limit error, even when the caller is at its limits.
    assert_eq!(
        s.update_alert(a, btc1.id, &new_alert("x", "BTCUSDT"), at(8))
            .await?
            .map(|r| r.id),
        Some(btc1.id)
    );
    let b_alerts = s.list_alerts(b, &AlertQuery::default()).await?;
    let err = s
        .update_alert(a, b_alerts[0].id, &new_alert("steal", "SOLUSDT"), at(8))
        .await;
    assert!(matches!(err, Ok(None)), "{err:?}");
    let err = s
        .set_status(a, b_alerts[0].id, AlertStatus::Active, at(8))
        .await;
    assert!(matches!(err, Ok(None)), "{err:?}");
    // Resuming an already active alert is not refused.
    let again = s.set_status(a, btc2.id, AlertStatus::Active, at(9)).await?;
    assert_eq!(again.unwrap().status, AlertStatus::Active);
    // Pause one, then the paused one can be resumed.
    s.set_status(a, btc1.id, AlertStatus::Paused, at(10))
        .await?;
    let resumed = s.set_status(a, sol.id, AlertStatus::Active, at(11)).await?;
    assert_eq!(resumed.unwrap().status, AlertStatus::Active);
    let err = s.set_status(a, btc1.id, AlertStatus::Active, at(12)).await;
    assert!(matches!(err, Err(StoreError::Limit(_))), "{err:?}");
    s.close().await;
    Ok(())
}

async fn limits_hold_under_concurrent_creates(db: TestDb) -> TestResult {
    let s = db
        .connect(StoreOptions {
            limits: Limits {
                per_symbol: 3,
                per_user: 100,
            },
            ..StoreOptions::default()
        })
        .await;
    let a = user();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_alert(a, &new_alert(&format!("c{i}"), "BTCUSDT"), at(i))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await? {
            Ok(_) => ok += 1,
            Err(StoreError::Limit(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(db.count_of("alerts", a).await, 3);
    s.close().await;
    Ok(())
}

// ---- triggers ----------------------------------------------------------------------------

async fn record_trigger_is_exactly_once(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let alert = create(s, a, "once", "BTCUSDT").await;
    let t = trigger(&alert, hour(1), 1);
    let first = s
        .record_triggers(std::slice::from_ref(&t), at(7200))
        .await?;
    assert_eq!(first.len(), 1);
    let id = new_id(&first[0]);
    let second = s
        .record_triggers(std::slice::from_ref(&t), at(7300))
        .await?;
    assert_eq!(second, vec![Recorded::Duplicate]);
    assert_eq!(db.count("alert_triggers").await, 1);
    assert_eq!(db.count("notifications").await, 1);
    assert_eq!(db.count("webhook_deliveries").await, 1);

    let row = s.get_alert(a, alert.id).await?.unwrap();
    assert_eq!(row.fire_count, 1);
    assert_eq!(row.last_fired_at, Some(t.fired_at));
    assert_eq!(row.status, AlertStatus::Active);
    assert_eq!(row.updated_at, alert.updated_at, "firing is not an edit");

    let triggers = s.list_triggers(a, &TriggerQuery::default()).await?;
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].id, id);
    assert_eq!(triggers[0].alert_id, alert.id);
    assert_eq!(triggers[0].user_id, a);
    assert_eq!(triggers[0].symbol, "BTCUSDT");
    assert_eq!(triggers[0].bar_time, hour(1));
    assert_eq!(triggers[0].fired_at, t.fired_at);
    assert_eq!(triggers[0].snapshot, t.snapshot);
    let notes = s.list_notifications(a, 0).await?;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].trigger_id, id);
    assert_eq!(notes[0].alert_id, alert.id);
    assert_eq!(notes[0].title, "once fired");
    let deliveries = s.list_deliveries(a, 0).await?;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].trigger_id, id);
    assert_eq!(deliveries[0].status, "pending");
    assert_eq!(deliveries[0].attempts, 0);
    assert_eq!(deliveries[0].url, "https://example.com/hook/0");

    // A later bar fires again; last_fired_at moves forward, never back.
    let t2 = trigger(&alert, hour(2), 1);
    let older = trigger(&alert, hour(0), 0);
    let r = s.record_triggers(&[t2.clone(), older], at(9000)).await?;
    assert!(matches!(
        r[..],
        [Recorded::New { .. }, Recorded::New { .. }]
    ));
    let row = s.get_alert(a, alert.id).await?.unwrap();
    assert_eq!(row.fire_count, 3);
    assert_eq!(row.last_fired_at, Some(t2.fired_at));

    // A `once` alert is spent: status triggered, seen by the change feed.
    let once = create(s, a, "spend me", "ETHUSDT").await;
    let mut t = trigger(&once, hour(1), 0);
    t.spend = true;
    let r = s
        .record_triggers(std::slice::from_ref(&t), at(7200))
        .await?;
    new_id(&r[0]);
    let row = s.get_alert(a, once.id).await?.unwrap();
    assert_eq!(row.status, AlertStatus::Triggered);
    assert_eq!(row.fire_count, 1);
    assert_eq!(row.updated_at, at(7200));
    let changes = s.alert_changes(at(7200), StdDuration::ZERO).await?;
    assert!(
        changes
            .changed
            .iter()
            .any(|c| c.id == once.id && c.status == AlertStatus::Triggered)
    );
    // Recording it again (a replay) is a duplicate and changes nothing.
    assert_eq!(
        s.record_triggers(std::slice::from_ref(&t), at(7300))
            .await?,
        vec![Recorded::Duplicate]
    );
    assert_eq!(s.get_alert(a, once.id).await?.unwrap().fire_count, 1);
    Ok(())
}

async fn record_triggers_batch_with_internal_duplicate(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let x = create(s, a, "x", "BTCUSDT").await;
    let y = create(s, a, "y", "BTCUSDT").await;
    let tx = trigger(&x, hour(1), 2);
    let mut tx_again = tx.clone();
    tx_again.snapshot = serde_json::json!({"another": "snapshot"});
    let ty = trigger(&y, hour(1), 1);
    let r = s
        .record_triggers(&[tx.clone(), tx_again, ty, tx.clone()], at(3600))
        .await?;
    assert!(
        matches!(
            r[..],
            [
                Recorded::New { .. },
                Recorded::Duplicate,
                Recorded::New { .. },
                Recorded::Duplicate
            ]
        ),
        "{r:?}"
    );
    assert_ne!(new_id(&r[0]), new_id(&r[2]));
    assert_eq!(db.count("alert_triggers").await, 2);
    assert_eq!(db.count("notifications").await, 2);
    assert_eq!(db.count("webhook_deliveries").await, 3);
    assert_eq!(s.get_alert(a, x.id).await?.unwrap().fire_count, 1);
    // The first of the duplicates is the one recorded.
    let rows = s
        .list_triggers(
            a,
            &TriggerQuery {
                alert_id: Some(x.id),
                ..TriggerQuery::default()
            },
        )
        .await?;
    assert_eq!(rows[0].snapshot, tx.snapshot);
    // Empty batch.
    assert!(s.record_triggers(&[], at(0)).await?.is_empty());
    Ok(())
}

async fn concurrent_writers_record_one_trigger(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let alert = create(s, a, "contended", "BTCUSDT").await;
    let t = trigger(&alert, hour(1), 1);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (s, t) = (s.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            s.record_triggers(std::slice::from_ref(&t), at(3600)).await
        }));
    }
    let mut new = 0;
    for task in tasks {
        match task.await??[..] {
            [Recorded::New { .. }] => new += 1,
            [Recorded::Duplicate] => {}
            ref other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(new, 1);
    assert_eq!(db.count("alert_triggers").await, 1);
    assert_eq!(db.count("notifications").await, 1);
    assert_eq!(db.count("webhook_deliveries").await, 1);
    assert_eq!(s.get_alert(a, alert.id).await?.unwrap().fire_count, 1);

    // Overlapping batches from concurrent writers (two runners on the same symbols, in any
    // order): each pair recorded once, no deadlock.
    let mut alerts = Vec::new();
    for i in 0..40 {
        alerts.push(create(s, a, &format!("m{i}"), "ETHUSDT").await);
    }
    let mut tasks = Vec::new();
    for w in 0..8_usize {
        let s = s.clone();
        let mut batch: Vec<_> = alerts.iter().map(|al| trigger(al, hour(5), 1)).collect();
        batch.rotate_left(w * 5);
        if w % 2 == 1 {
            batch.reverse();
        }
        tasks.push(tokio::spawn(async move {
            s.record_triggers(&batch, at(20000)).await
        }));
    }
    let mut new = 0;
    for task in tasks {
        new += task
            .await??
            .iter()
            .filter(|r| matches!(r, Recorded::New { .. }))
            .count();
    }
    assert_eq!(new, 40);
    assert_eq!(db.count("alert_triggers").await, 41);
    assert_eq!(db.count("webhook_deliveries").await, 41);
    for al in &alerts {
        assert_eq!(s.get_alert(a, al.id).await?.unwrap().fire_count, 1);
    }
    Ok(())
}

async fn record_triggers_large_batches(db: TestDb) -> TestResult {
    let s = &db.store;
    let users = [user(), user(), user()];
    let mut alerts = Vec::new();
    for i in 0..60 {
        alerts.push(create(s, users[i % 3], &format!("a{i}"), "BTCUSDT").await);
    }
    let mut all = Vec::new();
    for bar in 0..25 {
        for al in &alerts {
            all.push(trigger(al, hour(bar), 2));
        }
    }
    // 1,500 triggers in batches of 500.
    let mut ids = HashSet::new();
    for chunk in all.chunks(500) {
        let r = s.record_triggers(chunk, at(100_000)).await?;
        assert_eq!(r.len(), chunk.len());
        for x in &r {
            assert!(ids.insert(new_id(x)));
        }
    }
    assert_eq!(db.count("alert_triggers").await, 1500);
    assert_eq!(db.count("notifications").await, 1500);
    assert_eq!(db.count("webhook_deliveries").await, 3000);
    for u in users {
        assert_eq!(db.count_of("alert_triggers", u).await, 500);
        assert_eq!(db.count_of("webhook_deliveries", u).await, 1000);
    }
    for al in &alerts {
        let row = s.get_alert(al.user_id, al.id).await?.unwrap();
        assert_eq!(row.fire_count, 25);
        assert_eq!(row.last_fired_at, Some(hour(24) + Duration::hours(1)));
    }
    // Replaying all of it (one big batch): all duplicates, nothing written.
    let r = s.record_triggers(&all, at(200_000)).await?;
    assert!(r.iter().all(|x| *x == Recorded::Duplicate));
    assert_eq!(db.count("alert_triggers").await, 1500);
    assert_eq!(db.count("webhook_deliveries").await, 3000);
    assert_eq!(
        s.get_alert(alerts[0].user_id, alerts[0].id)
            .await?
            .unwrap()
            .fire_count,
        25
    );
    Ok(())
}

/// The runner's view of alerts lags behind the API's: a trigger for an alert deleted, paused
/// or spent in the meantime, or naming the wrong user, must not fail the batch nor write.
async fn record_triggers_skips_gone_and_inactive_alerts(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let live = create(s, a, "live", "BTCUSDT").await;
    let gone = create(s, a, "gone", "BTCUSDT").await;
    let pausd = create(s, a, "paused", "BTCUSDT").await;
    let spent = create(s, a, "spent", "BTCUSDT").await;
    s.delete_alert(a, gone.id, at(10)).await?;
    s.set_status(a, pausd.id, AlertStatus::Paused, at(10))
        .await?;
    let mut sp = trigger(&spent, hour(1), 0);
    sp.spend = true;
    new_id(&s.record_triggers(&[sp], at(20)).await?[0]);
    let mut wrong_user = trigger(&live, hour(3), 1);
    wrong_user.user_id = b;

    let batch = [
        trigger(&gone, hour(2), 1),
        trigger(&live, hour(2), 1),
        trigger(&pausd, hour(2), 1),
        trigger(&spent, hour(2), 1),
        wrong_user,
    ];
    let r = s.record_triggers(&batch, at(30)).await?;
    assert!(
        matches!(
            r[..],
            [
                Recorded::Skipped,
                Recorded::New { .. },
                Recorded::Skipped,
                Recorded::Skipped,
                Recorded::Skipped
            ]
        ),
        "{r:?}"
    );
    assert_eq!(db.count("alert_triggers").await, 2);
    assert_eq!(db.count("webhook_deliveries").await, 1);
    assert_eq!(db.count_of("alert_triggers", b).await, 0);
    assert_eq!(s.get_alert(a, pausd.id).await?.unwrap().fire_count, 0);
    assert_eq!(s.get_alert(a, spent.id).await?.unwrap().fire_count, 1);
    Ok(())
}

/// A `once` alert (`spend`) records one trigger, whatever the batches and writers.
async fn once_alert_fires_once(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    // In one batch: the first spend ends the alert's triggers in the batch.
    let x = create(s, a, "x", "BTCUSDT").await;
    let mut batch: Vec<_> = (1..4).map(|h| trigger(&x, hour(h), 1)).collect();
    for t in &mut batch {
        t.spend = true;
    }
    let r = s.record_triggers(&batch, at(0)).await?;
    assert!(
        matches!(
            r[..],
            [Recorded::New { .. }, Recorded::Skipped, Recorded::Skipped]
        ),
        "{r:?}"
    );
    // Replayed: the spent bar is a duplicate, the others stay skipped.
    let r = s.record_triggers(&batch, at(1)).await?;
    assert_eq!(
        r,
        vec![Recorded::Duplicate, Recorded::Skipped, Recorded::Skipped]
    );
    assert_eq!(db.count("webhook_deliveries").await, 1);

    // Two runners (or a lagging one) fire it on different bars at once: one wins.
    let y = create(s, a, "y", "BTCUSDT").await;
    let mut tasks = Vec::new();
    for h in 0..8 {
        let s = s.clone();
        let mut t = trigger(&y, hour(h), 1);
        t.spend = true;
        tasks.push(tokio::spawn(
            async move { s.record_triggers(&[t], at(2)).await },
        ));
    }
    let mut new = 0;
    for t in tasks {
        match t.await??[..] {
            [Recorded::New { .. }] => new += 1,
            [Recorded::Skipped] => {}
            ref other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(new, 1);
    let q = TriggerQuery {
        alert_id: Some(y.id),
        ..TriggerQuery::default()
    };
    assert_eq!(s.list_triggers(a, &q).await?.len(), 1);
    let row = s.get_alert(a, y.id).await?.unwrap();
    assert_eq!((row.status, row.fire_count), (AlertStatus::Triggered, 1));
    // Resumed by its user, it can fire once more.
    s.set_status(a, y.id, AlertStatus::Active, at(3)).await?;
    let mut t = trigger(&y, hour(20), 0);
    t.spend = true;
    new_id(&s.record_triggers(&[t], at(4)).await?[0]);
    Ok(())
}

async fn delete_cascades_to_triggers_notifications_deliveries(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let doomed = create(s, a, "doomed", "BTCUSDT").await;
    let kept = create(s, a, "kept", "BTCUSDT").await;
    let batch: Vec<_> = (0..3)
        .flat_map(|h| [trigger(&doomed, hour(h), 2), trigger(&kept, hour(h), 1)])
        .collect();
    s.record_triggers(&batch, at(0)).await?;
    // Some attempts too.
    let claimed = s
        .claim_deliveries("w", ALL, 100, StdDuration::from_secs(60), at(0))
        .await?;
    assert_eq!(claimed.len(), 9);
    for d in &claimed {
        let o = attempt(AttemptOutcome::Retry { at: at(60) }, Some(500));
        assert!(s.complete_delivery(d.id, "w", &o, at(1)).await?);
    }
    assert_eq!(db.count("webhook_attempts").await, 9);

    assert!(s.delete_alert(a, doomed.id, at(2)).await?);
    assert_eq!(db.count("alert_triggers").await, 3);
    assert_eq!(db.count("notifications").await, 3);
    assert_eq!(db.count("webhook_deliveries").await, 3);
    assert_eq!(db.count("webhook_attempts").await, 3);
    let q = TriggerQuery {
        alert_id: Some(doomed.id),
        ..TriggerQuery::default()
    };
    assert!(s.list_triggers(a, &q).await?.is_empty());
    assert!(
        s.list_notifications(a, 0)
            .await?
            .iter()
            .all(|n| n.alert_id == kept.id)
    );
    assert!(
        s.list_deliveries(a, 0)
            .await?
            .iter()
            .all(|d| d.alert_id == kept.id)
    );
    assert_eq!(
        s.delivery_counts().await?,
        DeliveryCounts {
            pending: 3,
            ..DeliveryCounts::default()
        }
    );
    // Deleting a trigger by itself (a retention job, an operator) takes its rows along too.
    let t = &s.list_triggers(a, &TriggerQuery::default()).await?[0];
    let sql = format!("DELETE FROM alert_triggers WHERE id = '{}'", t.id);
    assert_eq!(common::exec(s, &sql).await, 1);
    assert_eq!(db.count("alert_triggers").await, 2);
    assert_eq!(db.count("notifications").await, 2);
    assert_eq!(db.count("webhook_deliveries").await, 2);
    assert_eq!(db.count("webhook_attempts").await, 2);
    // A user's deletion cascades to every user row it owns, and touches nobody else's.
    let b = user();
    let theirs = create(s, b, "theirs", "BTCUSDT").await;
    s.record_triggers(&[trigger(&theirs, hour(1), 1)], at(3))
        .await?;
    assert!(s.delete_alert(a, kept.id, at(4)).await?);
    for table in [
        "alert_triggers",
        "notifications",
        "webhook_deliveries",
        "webhook_attempts",
    ] {
        assert_eq!(db.count_of(table, a).await, 0, "{table}");
    }
    assert_eq!(db.count_of("alert_triggers", b).await, 1);
    assert_eq!(db.count_of("webhook_deliveries", b).await, 1);
    Ok(())
}

// ---- the runner's view -------------------------------------------------------------------

async fn alert_changes_feed(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let none = s.alert_changes(at(0), StdDuration::ZERO).await?;
    assert!(none.changed.is_empty() && none.deleted.is_empty());
    assert_eq!(none.watermark, None);

    let x = s
        .create_alert(a, &new_alert("x", "BTCUSDT"), at(10))
        .await?;
    let y = s
        .create_alert(b, &new_alert("y", "ETHUSDT"), at(11))
        .await?;
    let c = s.alert_changes(at(0), StdDuration::ZERO).await?;
    let ids: Vec<_> = c.changed.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![x.id, y.id], "creations, oldest first, all users");
    assert_eq!(c.watermark, Some(at(11)));

    // Update: seen from the watermark, with the new definition.
    let w = c.watermark.unwrap();
    s.update_alert(a, x.id, &new_alert("x v2", "BTCUSDT"), at(20))
        .await?;
    let c = s.alert_changes(w, StdDuration::from_secs(5)).await?;
    // The overlap re-delivers y (changed at the watermark): harmless, and the update is there.
    let ids: Vec<_> = c.changed.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![y.id, x.id]);
    assert_eq!(c.changed[1].name, "x v2");
    assert_eq!(c.watermark, Some(at(20)));

    // Pause.
    let w = c.watermark.unwrap();
    s.set_status(b, y.id, AlertStatus::Paused, at(30)).await?;
    let c = s.alert_changes(w, StdDuration::ZERO).await?;
    let got: Vec<_> = c.changed.iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(
        got,
        vec![(x.id, AlertStatus::Active), (y.id, AlertStatus::Paused)]
    );
    assert_eq!(c.watermark, Some(at(30)));
    // Asking from past the last change sees nothing new.
    let c2 = s.alert_changes(at(31), StdDuration::ZERO).await?;
    assert!(c2.changed.is_empty() && c2.deleted.is_empty());
    assert_eq!(c2.watermark, None);

    // Deletion.
    s.delete_alert(a, x.id, at(40)).await?;
    let c = s.alert_changes(at(31), StdDuration::ZERO).await?;
    assert!(c.changed.is_empty());
    assert_eq!(c.deleted, vec![x.id]);
    assert_eq!(c.watermark, Some(at(40)));
    // The overlap window from a later watermark still includes the deletion.
    let c = s.alert_changes(at(43), StdDuration::from_secs(5)).await?;
    assert_eq!(c.deleted, vec![x.id]);
    let c = s.alert_changes(at(46), StdDuration::from_secs(5)).await?;
    assert!(c.deleted.is_empty());

    // Firing (not spending) is not a change; expiring is.
    s.record_triggers(&[trigger(&y, hour(1), 0)], at(50))
        .await?;
    s.set_status(b, y.id, AlertStatus::Active, at(60)).await?;
    s.expire_alert(y.id, at(70)).await?;
    let c = s.alert_changes(at(61), StdDuration::ZERO).await?;
    let got: Vec<_> = c.changed.iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(got, vec![(y.id, AlertStatus::Expired)]);
    Ok(())
}

async fn stream_active_alerts_returns_exactly_active(db: TestDb) -> TestResult {
    let s = &db.store;
    let empty: Vec<_> = s.stream_active_alerts().try_collect().await?;
    assert!(empty.is_empty());
    let mut want = HashSet::new();
    for i in 0..30 {
        let u = user();
        let al = create(s, u, &format!("a{i}"), ["BTCUSDT", "ETHUSDT"][i % 2]).await;
        match i % 5 {
            0 => {
                s.set_status(u, al.id, AlertStatus::Paused, at(1)).await?;
            }
            1 => {
                s.expire_alert(al.id, at(1)).await?;
            }
            2 => {
                let mut t = trigger(&al, hour(1), 0);
                t.spend = true;
                s.record_triggers(&[t], at(1)).await?;
            }
            3 => {
                s.delete_alert(u, al.id, at(1)).await?;
            }
            _ => {
                want.insert(al.id);
            }
        }
    }
    // Paused-then-resumed is active again.
    let u = user();
    let al = s
        .create_alert(u, &paused(new_alert("r", "BTCUSDT")), at(0))
        .await?;
    s.set_status(u, al.id, AlertStatus::Active, at(1)).await?;
    want.insert(al.id);

    let rows: Vec<_> = s.stream_active_alerts().try_collect().await?;
    assert!(rows.iter().all(|r| r.status == AlertStatus::Active));
    let got: HashSet<_> = rows.iter().map(|r| r.id).collect();
    assert_eq!(rows.len(), got.len(), "no row twice");
    assert_eq!(got, want);
    // Rows carry the full definition.
    assert!(rows.iter().all(|r| r.definition["conditions"].is_array()));
    Ok(())
}

// ---- the outbox --------------------------------------------------------------------------

async fn one_delivery(db: &TestDb, user: Uuid) -> (Uuid, Uuid) {
    let al = create(&db.store, user, "hooked", "BTCUSDT").await;
    let r = db
        .store
        .record_triggers(&[trigger(&al, hour(1), 1)], at(0))
        .await
        .unwrap();
    (al.id, new_id(&r[0]))
}

async fn outbox_lease_and_reclaim(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let (alert_id, trigger_id) = one_delivery(&db, a).await;
    let lease = StdDuration::from_secs(30);

    let got = s.claim_deliveries("w1", ALL, 10, lease, at(1)).await?;
    assert_eq!(got.len(), 1);
    let d: &Delivery = &got[0];
    assert_eq!(d.trigger_id, trigger_id);
    assert_eq!(d.alert_id, alert_id);
    assert_eq!(d.user_id, a);
    assert_eq!(d.action_index, 0);
    assert_eq!(d.url, "https://example.com/hook/0");
    assert_eq!(d.attempts, 0);
    assert!(d.payload.contains(&alert_id.to_string()));

    // Leased: nobody else gets it, not even the same worker, until the lease ends.
    assert!(
        s.claim_deliveries("w2", ALL, 10, lease, at(1))
            .await?
            .is_empty()
    );
    assert!(
        s.claim_deliveries("w2", ALL, 10, lease, at(30))
            .await?
            .is_empty()
    );
    assert!(
        s.claim_deliveries("w1", ALL, 10, lease, at(30))
            .await?
            .is_empty()
    );
    // w1 crashed: after the lease another worker reclaims it.
    let again = s.claim_deliveries("w2", ALL, 10, lease, at(31)).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, d.id);
    assert_eq!(again[0].attempts, 0);

    // w1 comes back: its completion is refused and writes nothing.
    let ok = s
        .complete_delivery(
            d.id,
            "w1",
            &attempt(AttemptOutcome::Delivered, Some(200)),
            at(32),
        )
        .await?;
    assert!(!ok);
    assert_eq!(db.count("webhook_attempts").await, 0);
    let row = &s.list_deliveries(a, 0).await?[0];
    assert_eq!((row.status.as_str(), row.attempts), ("pending", 0));
    assert!(row.attempt_log.is_empty());
    // An unknown delivery.
    let ok = s
        .complete_delivery(
            Uuid::new_v4(),
            "w2",
            &attempt(AttemptOutcome::Delivered, Some(200)),
            at(32),
        )
        .await?;
    assert!(!ok);

    // w2 holds the lease and completes.
    assert!(
        s.complete_delivery(
            d.id,
            "w2",
            &attempt(AttemptOutcome::Delivered, Some(204)),
            at(33)
        )
        .await?
    );
    let row = &s.list_deliveries(a, 0).await?[0];
    assert_eq!(row.status, "delivered");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.delivered_at, Some(at(33)));
    assert_eq!(row.last_status_code, Some(204));
    assert_eq!(row.attempt_log.len(), 1);
    assert_eq!(row.attempt_log[0].attempt, 1);
    assert_eq!(row.attempt_log[0].attempted_at, at(33));
    assert_eq!(row.attempt_log[0].status_code, Some(204));
    assert_eq!(row.attempt_log[0].duration_ms, 12);
    // Delivered is final: never claimed again, a second completion is refused.
    assert!(
        s.claim_deliveries("w3", ALL, 10, lease, at(10_000))
            .await?
            .is_empty()
    );
    assert!(
        !s.complete_delivery(
            d.id,
            "w2",
            &attempt(AttemptOutcome::Delivered, Some(200)),
            at(34)
        )
        .await?
    );
    assert_eq!(db.count("webhook_attempts").await, 1);
    Ok(())
}

async fn outbox_retry_schedule_and_attempt_log(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    one_delivery(&db, a).await;
    let lease = StdDuration::from_secs(30);
    let d = s
        .claim_deliveries("w", ALL, 10, lease, at(1))
        .await?
        .remove(0);

    // Attempt 1: 503, retry at +60 s.
    assert!(
        s.complete_delivery(
            d.id,
            "w",
            &attempt(AttemptOutcome::Retry { at: at(61) }, Some(503)),
            at(2)
        )
        .await?
    );
    let row = &s.list_deliveries(a, 0).await?[0];
    assert_eq!(row.status, "pending");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.next_attempt_at, at(61));
    assert_eq!(row.last_status_code, Some(503));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(s.delivery_counts().await?.pending, 1);
    // Not claimable before it is due, even with no lease on it.
    assert!(
        s.claim_deliveries("w", ALL, 10, lease, at(2))
            .await?
            .is_empty()
    );
    assert!(
        s.claim_deliveries("w", ALL, 10, lease, at(60))
            .await?
            .is_empty()
    );
    let d2 = s.claim_deliveries("w", ALL, 10, lease, at(61)).await?;
    assert_eq!(d2.len(), 1);
    assert_eq!(d2[0].attempts, 1, "attempts made before this one");

    // Attempt 2: a connection error (no status), retry at +300 s.
    let conn_err = AttemptRecord {
        status_code: None,
        error: Some("connection refused".into()),
        duration_ms: 3,
        outcome: AttemptOutcome::Retry { at: at(400) },
        response: None,
    };
    assert!(s.complete_delivery(d.id, "w", &conn_err, at(100)).await?);
    let d3 = s.claim_deliveries("w", ALL, 10, lease, at(400)).await?;
    assert_eq!(d3[0].attempts, 2);
    // Attempt 3: gives up.
    assert!(
        s.complete_delivery(
            d.id,
            "w",
            &attempt(AttemptOutcome::Failed, Some(500)),
            at(401)
        )
        .await?
    );
    let row = &s.list_deliveries(a, 0).await?[0];
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, 3);
    assert_eq!(row.delivered_at, None);
    let log: Vec<_> = row
        .attempt_log
        .iter()
        .map(|x| (x.attempt, x.attempted_at, x.status_code, x.error.clone()))
        .collect();
    assert_eq!(
        log,
        vec![
            (1, at(2), Some(503), Some("HTTP 503".to_owned())),
            (2, at(100), None, Some("connection refused".to_owned())),
            (3, at(401), Some(500), Some("HTTP 500".to_owned())),
        ]
    );
    // Final.
    assert!(
        s.claim_deliveries("w", ALL, 10, lease, at(100_000))
            .await?
            .is_empty()
    );
    assert_eq!(
        s.delivery_counts().await?,
        DeliveryCounts {
            failed: 1,
            ..DeliveryCounts::default()
        }
    );
    Ok(())
}

async fn outbox_final_states_redeliver_and_counts(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let al = create(s, a, "three hooks", "BTCUSDT").await;
    s.record_triggers(&[trigger(&al, hour(1), 3)], at(0))
        .await?;
    let bl = create(s, b, "b's", "BTCUSDT").await;
    s.record_triggers(&[trigger(&bl, hour(1), 1)], at(0))
        .await?;
    assert_eq!(
        s.delivery_counts().await?,
        DeliveryCounts {
            pending: 4,
            ..DeliveryCounts::default()
        }
    );
    let lease = StdDuration::from_secs(30);
    // Claim limits are honoured.
    let first = s.claim_deliveries("w", ALL, 2, lease, at(1)).await?;
    assert_eq!(first.len(), 2);
    let rest = s.claim_deliveries("w", ALL, 10, lease, at(1)).await?;
    assert_eq!(rest.len(), 2);
    let mut claimed: Vec<_> = first.into_iter().chain(rest).collect();
    claimed.sort_by_key(|d| (d.user_id == b, d.action_index));
    let outcomes = [
        AttemptOutcome::Delivered,
        AttemptOutcome::Failed,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Delivered,
    ];
    for (d, o) in claimed.iter().zip(outcomes) {
        let code = match o {
            AttemptOutcome::Delivered => 200,
            AttemptOutcome::Cancelled => 410,
            _ => 500,
        };
        assert!(
            s.complete_delivery(d.id, "w", &attempt(o, Some(code)), at(2))
                .await?
        );
    }
    assert_eq!(
        s.delivery_counts().await?,
        DeliveryCounts {
            pending: 0,
            delivered: 2,
            failed: 1,
            cancelled: 1
        }
    );
    // All final: nothing to claim, completions refused.
    assert!(
        s.claim_deliveries("w", ALL, 10, lease, at(100_000))
            .await?
            .is_empty()
    );
    for d in &claimed {
        let o = attempt(AttemptOutcome::Retry { at: at(3) }, Some(500));
        assert!(!s.complete_delivery(d.id, "w", &o, at(3)).await?);
    }

    // Redeliver: only the owner, only a final delivery.
    let failed = claimed[1].id;
    assert!(
        !s.redeliver(b, failed, at(10)).await?,
        "another user's delivery"
    );
    assert!(!s.redeliver(a, Uuid::new_v4(), at(10)).await?);
    assert!(s.redeliver(a, failed, at(10)).await?);
    assert!(!s.redeliver(a, failed, at(10)).await?, "already pending");
    let row = s
        .list_deliveries(a, 0)
        .await?
        .into_iter()
        .find(|d| d.id == failed)
        .unwrap();
    assert_eq!(row.status, "pending");
    assert_eq!(row.next_attempt_at, at(10));
    assert_eq!(row.attempt_log.len(), 1, "history is kept");
    assert_eq!(s.delivery_counts().await?.pending, 1);
    assert!(
        s.claim_deliveries("w", ALL, 10, lease, at(9))
            .await?
            .is_empty()
    );
    let again = s.claim_deliveries("w2", ALL, 10, lease, at(10)).await?;
    assert_eq!(again.iter().map(|d| d.id).collect::<Vec<_>>(), vec![failed]);
    assert_eq!(again[0].attempts, 1);
    assert!(
        s.complete_delivery(
            failed,
            "w2",
            &attempt(AttemptOutcome::Delivered, Some(200)),
            at(11)
        )
        .await?
    );
    let row = s
        .list_deliveries(a, 0)
        .await?
        .into_iter()
        .find(|d| d.id == failed)
        .unwrap();
    assert_eq!(row.status, "delivered");
    assert_eq!(
        row.attempt_log
            .iter()
            .map(|x| x.attempt)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    // A delivered one can be redelivered too (the receiver lost it).
    let delivered_b = claimed[3].id;
    assert!(s.redeliver(b, delivered_b, at(12)).await?);

    // Listings are scoped and newest first.
    assert_eq!(s.list_deliveries(a, 0).await?.len(), 3);
    assert_eq!(s.list_deliveries(b, 0).await?.len(), 1);
    assert_eq!(s.list_deliveries(a, 2).await?.len(), 2);
    assert!(s.list_deliveries(user(), 0).await?.is_empty());
    Ok(())
}

async fn concurrent_claims_never_share_a_delivery(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let mut alerts = Vec::new();
    for i in 0..50 {
        alerts.push(create(s, a, &format!("a{i}"), "BTCUSDT").await);
    }
    let batch: Vec<_> = alerts.iter().map(|al| trigger(al, hour(1), 4)).collect();
    s.record_triggers(&batch, at(0)).await?;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let c = s
                    .claim_deliveries(&format!("w{w}"), ALL, 7, StdDuration::from_secs(60), at(1))
                    .await?;
                if c.is_empty() {
                    break;
                }
                got.extend(c.into_iter().map(|d| d.id));
            }
            Ok::<_, StoreError>(got)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unique.len(), 200);
    Ok(())
}

// ---- dispatch: kinds, secrets, responses, disabled webhooks, deferral -------------------

fn bot_order(action_index: i32, bot: &str) -> NewDelivery {
    NewDelivery {
        action_index,
        kind: DeliveryKind::Bot,
        url: bot.to_owned(),
        secret: None,
        payload: format!("{{\"bot_id\":\"{bot}\"}}"),
    }
}

async fn claims_take_only_the_given_kinds(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let lease = StdDuration::from_secs(30);
    let al = create(s, a, "mixed", "BTCUSDT").await;
    // Bot orders due first (hour 1, 2), a webhook later (hour 3, recorded at a later time).
    for h in 1..=2 {
        let mut t = trigger(&al, hour(h), 0);
        t.deliveries = vec![bot_order(0, "bot-1")];
        s.record_triggers(&[t], at(h)).await?;
    }
    s.record_triggers(&[trigger(&al, hour(3), 1)], at(3))
        .await?;

    // No kinds: nothing.
    assert!(
        s.claim_deliveries("w", &[], 10, lease, at(10))
            .await?
            .is_empty()
    );
    // A process without a bot handler: only the webhook, even with older bot orders due and
    // a limit of one.
    let hooks = s
        .claim_deliveries("w", &[DeliveryKind::Webhook], 1, lease, at(10))
        .await?;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].kind, DeliveryKind::Webhook);
    assert_eq!(hooks[0].url, "https://example.com/hook/0");
    assert!(!hooks[0].disabled);
    assert!(
        s.claim_deliveries("w", &[DeliveryKind::Webhook], 10, lease, at(20))
            .await?
            .is_empty(),
        "bot orders stay pending for a process that has a bot handler to claim them"
    );
    // The bot handler: both orders, earliest due first when the limit cuts.
    let bots = s
        .claim_deliveries("b", &[DeliveryKind::Bot], 1, lease, at(11))
        .await?;
    assert_eq!(bots.len(), 1);
    assert_eq!(bots[0].kind, DeliveryKind::Bot);
    assert_eq!(bots[0].url, "bot-1");
    assert_eq!(bots[0].payload, "{\"bot_id\":\"bot-1\"}");
    assert_eq!(bots[0].created_at, at(1));
    let rest = s
        .claim_deliveries(
            "b",
            &[DeliveryKind::Bot, DeliveryKind::Bot],
            10,
            lease,
            at(11),
        )
        .await?;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].created_at, at(2));
    // Both kinds at once, earliest due first across kinds.
    let al2 = create(s, a, "mixed 2", "BTCUSDT").await;
    let mut t = trigger(&al2, hour(1), 2);
    t.deliveries.push(bot_order(2, "bot-2"));
    s.record_triggers(&[t], at(20)).await?;
    let all = s.claim_deliveries("w", ALL, 10, lease, at(21)).await?;
    let mut kinds: Vec<_> = all.iter().map(|d| (d.action_index, d.kind)).collect();
    kinds.sort_by_key(|k| k.0);
    assert_eq!(
        kinds,
        vec![
            (0, DeliveryKind::Webhook),
            (1, DeliveryKind::Webhook),
            (2, DeliveryKind::Bot)
        ]
    );
    // The listing says which kind each row is.
    let rows = s.list_deliveries(a, 0).await?;
    assert_eq!(rows.len(), 6);
    assert_eq!(rows.iter().filter(|r| r.kind == "bot").count(), 3);
    assert_eq!(rows.iter().filter(|r| r.kind == "webhook").count(), 3);
    assert_eq!(DeliveryKind::parse("bot"), Some(DeliveryKind::Bot));
    assert_eq!(DeliveryKind::parse("webhook"), Some(DeliveryKind::Webhook));
    assert_eq!(DeliveryKind::parse("email"), None);
    Ok(())
}

async fn action_secrets_reach_claims_not_listings(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let al = create(s, a, "signed", "BTCUSDT").await;
    let mut t = trigger(&al, hour(1), 2);
    t.deliveries[0].secret = Some("whsec_b3duIHNlY3JldA==".into());
    s.record_triggers(&[t], at(0)).await?;
    let mut got = s
        .claim_deliveries("w", ALL, 10, StdDuration::from_secs(30), at(1))
        .await?;
    got.sort_by_key(|d| d.action_index);
    assert_eq!(got[0].secret.as_deref(), Some("whsec_b3duIHNlY3JldA=="));
    assert_eq!(got[1].secret, None);
    assert!(
        !format!("{:?}", got[0]).contains("whsec_b3du"),
        "Debug hides the secret"
    );
    // User-facing listings never carry it.
    let rows = s.list_deliveries(a, 0).await?;
    assert_eq!(rows.len(), 2);
    let json = serde_json::to_string(&rows)?;
    assert!(!json.contains("whsec_b3du"), "{json}");
    assert!(!json.contains("secret"), "{json}");
    Ok(())
}

async fn attempt_response_bodies_round_trip(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    one_delivery(&db, a).await;
    let lease = StdDuration::from_secs(30);
    let d = s
        .claim_deliveries("w", ALL, 10, lease, at(1))
        .await?
        .remove(0);
    let mut rec = attempt(AttemptOutcome::Retry { at: at(10) }, Some(503));
    rec.response = Some("{\"error\":\"busy\0\"}".into());
    assert!(s.complete_delivery(d.id, "w", &rec, at(2)).await?);
    s.claim_deliveries("w", ALL, 10, lease, at(10)).await?;
    assert!(
        s.complete_delivery(
            d.id,
            "w",
            &attempt(AttemptOutcome::Delivered, Some(204)),
            at(11)
        )
        .await?
    );
    let row = &s.list_deliveries(a, 0).await?[0];
    let bodies: Vec<_> = row
        .attempt_log
        .iter()
        .map(|x| x.response_body.clone())
        .collect();
    assert_eq!(
        bodies,
        vec![Some("{\"error\":\"busy\u{FFFD}\"}".to_owned()), None]
    );
    Ok(())
}

async fn disable_webhook_cancels_pending_and_flags_claims(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let lease = StdDuration::from_secs(30);
    let al = create(s, a, "gone", "BTCUSDT").await;
    let other = create(s, a, "other", "BTCUSDT").await;
    let batch: Vec<_> = (1..=3)
        .map(|h| trigger(&al, hour(h), 2))
        .chain([trigger(&other, hour(1), 1)])
        .collect();
    s.record_triggers(&batch, at(0)).await?;
    // A worker holds one of action 0's deliveries (the one whose receiver said 410); it
    // lets the others go.
    let mut all = s.claim_deliveries("w", ALL, 100, lease, at(1)).await?;
    assert_eq!(all.len(), 7);
    let i = all
        .iter()
        .position(|d| d.alert_id == al.id && d.action_index == 0)
        .unwrap();
    let held = all.remove(i);
    for d in all {
        assert!(s.defer_delivery(d.id, "w", at(1), at(1)).await?);
    }
    assert!(!held.disabled);

    s.disable_webhook(al.id, 0, "410 Gone", at(2)).await?;
    assert_eq!(
        s.disabled_webhooks(a, al.id).await?,
        vec![DisabledWebhook {
            action_index: 0,
            reason: "410 Gone".into(),
            disabled_at: at(2),
        }]
    );
    assert!(
        s.disabled_webhooks(b, al.id).await?.is_empty(),
        "another user"
    );
    assert!(s.disabled_webhooks(a, other.id).await?.is_empty());
    // Action 0's other pending deliveries are cancelled, with the reason; the held one is its
    // worker's to complete; action 1 and the other alert are untouched.
    let rows = s.list_deliveries(a, 0).await?;
    for r in &rows {
        let want = if r.alert_id == al.id && r.id != held.id && r.url.ends_with("/0") {
            ("cancelled", Some("410 Gone"))
        } else {
            ("pending", None)
        };
        assert_eq!((r.status.as_str(), r.last_error.as_deref()), want, "{r:?}");
    }
    assert_eq!(s.delivery_counts().await?.cancelled, 2);
    let gone = AttemptRecord {
        status_code: Some(410),
        error: Some("HTTP 410".into()),
        duration_ms: 9,
        outcome: AttemptOutcome::Cancelled,
        response: None,
    };
    assert!(s.complete_delivery(held.id, "w", &gone, at(3)).await?);

    // Disabling again updates the reason; an unknown alert is a no-op.
    s.disable_webhook(al.id, 0, "410 Gone again", at(4)).await?;
    s.disable_webhook(Uuid::new_v4(), 0, "410 Gone", at(4))
        .await?;
    assert_eq!(db.count("disabled_webhooks").await, 1);
    let listed = s.disabled_webhooks(a, al.id).await?;
    assert_eq!(
        (listed[0].reason.as_str(), listed[0].disabled_at),
        ("410 Gone again", at(4))
    );

    // Deliveries recorded since are claimed flagged (the dispatcher cancels them unsent).
    let r = s
        .record_triggers(&[trigger(&al, hour(4), 2)], at(5))
        .await?;
    let fresh = new_id(&r[0]);
    let claimed = s.claim_deliveries("w", ALL, 100, lease, at(5)).await?;
    let flags: HashSet<_> = claimed
        .iter()
        .map(|d| {
            (
                d.trigger_id == fresh,
                d.alert_id == al.id,
                d.action_index,
                d.disabled,
            )
        })
        .collect();
    assert!(flags.contains(&(true, true, 0, true)), "{flags:?}");
    assert!(flags.contains(&(true, true, 1, false)), "{flags:?}");
    assert!(
        claimed
            .iter()
            .all(|d| d.disabled == (d.alert_id == al.id && d.action_index == 0)),
        "{claimed:?}"
    );
    Ok(())
}

async fn replacing_or_deleting_an_alert_enables_its_webhooks(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let lease = StdDuration::from_secs(30);
    let al = create(s, a, "fixed", "BTCUSDT").await;
    s.disable_webhook(al.id, 0, "410 Gone", at(1)).await?;
    s.disable_webhook(al.id, 1, "410 Gone", at(1)).await?;
    assert_eq!(s.disabled_webhooks(a, al.id).await?.len(), 2);
    // Pausing is not replacing.
    s.set_status(a, al.id, AlertStatus::Paused, at(2)).await?;
    s.set_status(a, al.id, AlertStatus::Active, at(3)).await?;
    assert_eq!(s.disabled_webhooks(a, al.id).await?.len(), 2);
    // Another user's replacement is refused and changes nothing.
    assert!(
        s.update_alert(user(), al.id, &new_alert("x", "BTCUSDT"), at(4))
            .await?
            .is_none()
    );
    assert_eq!(s.disabled_webhooks(a, al.id).await?.len(), 2);
    // The user replaces the alert (a new URL): enabled again.
    s.update_alert(a, al.id, &new_alert("fixed", "BTCUSDT"), at(5))
        .await?
        .unwrap();
    assert!(s.disabled_webhooks(a, al.id).await?.is_empty());
    assert_eq!(db.count("disabled_webhooks").await, 0);
    s.record_triggers(&[trigger(&al, hour(1), 2)], at(6))
        .await?;
    let claimed = s.claim_deliveries("w", ALL, 10, lease, at(6)).await?;
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|d| !d.disabled));

    // Deleting the alert removes its disabled actions; others' stay.
    let kept = create(s, a, "kept", "BTCUSDT").await;
    s.disable_webhook(al.id, 0, "410 Gone", at(7)).await?;
    s.disable_webhook(kept.id, 0, "410 Gone", at(7)).await?;
    assert!(s.delete_alert(a, al.id, at(8)).await?);
    assert_eq!(db.count("disabled_webhooks").await, 1);
    assert!(s.disabled_webhooks(a, al.id).await?.is_empty());
    assert_eq!(s.disabled_webhooks(a, kept.id).await?.len(), 1);
    Ok(())
}

fn secrets(current: &str, previous: Option<&str>) -> WebhookSecrets {
    WebhookSecrets {
        current: current.to_owned(),
        previous: previous.map(str::to_owned),
    }
}

async fn webhook_secret_get_or_create_is_idempotent(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    assert_eq!(
        s.webhook_secret(a, "whsec_a1", at(0)).await?,
        secrets("whsec_a1", None)
    );
    // Later candidates are ignored: the user has a secret.
    assert_eq!(
        s.webhook_secret(a, "whsec_a2", at(1)).await?,
        secrets("whsec_a1", None)
    );
    assert_eq!(
        s.webhook_secret(b, "whsec_b1", at(1)).await?,
        secrets("whsec_b1", None)
    );
    assert_eq!(
        s.webhook_secret(a, "whsec_a3", at(2)).await?,
        secrets("whsec_a1", None)
    );
    assert_eq!(db.count("webhook_secrets").await, 2);
    assert!(!format!("{:?}", secrets("whsec_a1", Some("whsec_a0"))).contains("whsec_"));
    Ok(())
}

async fn webhook_secret_rotation_keeps_previous_for_grace(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let grace = StdDuration::from_secs(3600);
    s.webhook_secret(a, "one", at(0)).await?;
    s.webhook_secret(b, "b-one", at(0)).await?;
    assert_eq!(
        s.rotate_webhook_secret(a, "two", grace, at(10)).await?,
        secrets("two", Some("one"))
    );
    // The previous secret is returned while the grace lasts, not after.
    assert_eq!(
        s.webhook_secret(a, "ignored", at(3609)).await?,
        secrets("two", Some("one"))
    );
    assert_eq!(
        s.webhook_secret(a, "ignored", at(3610)).await?,
        secrets("two", None)
    );
    // Rotating again: the previous one is the one just replaced.
    assert_eq!(
        s.rotate_webhook_secret(a, "three", grace, at(5000)).await?,
        secrets("three", Some("two"))
    );
    // No grace: the previous secret is gone at once.
    assert_eq!(
        s.rotate_webhook_secret(a, "four", StdDuration::ZERO, at(6000))
            .await?,
        secrets("four", None)
    );
    // Another user's secret is untouched.
    assert_eq!(
        s.webhook_secret(b, "ignored", at(6000)).await?,
        secrets("b-one", None)
    );
    // Rotating a user who has no secret creates one, with no previous.
    let c = user();
    assert_eq!(
        s.rotate_webhook_secret(c, "c-one", grace, at(0)).await?,
        secrets("c-one", None)
    );
    assert_eq!(
        s.webhook_secret(c, "ignored", at(1)).await?,
        secrets("c-one", None)
    );
    // NUL characters are replaced, like everywhere.
    let d = user();
    assert_eq!(
        s.webhook_secret(d, "x\0y", at(0)).await?.current,
        "x\u{FFFD}y"
    );
    Ok(())
}

async fn concurrent_webhook_secret_creation_yields_one(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.webhook_secret(a, &format!("candidate-{i}"), at(0)).await
        }));
    }
    let mut got = HashSet::new();
    for t in tasks {
        got.insert(t.await??.current);
    }
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(db.count_of("webhook_secrets", a).await, 1);
    let stored = s.webhook_secret(a, "late", at(1)).await?.current;
    assert!(got.contains(&stored));
    Ok(())
}

async fn defer_releases_the_lease_without_an_attempt(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    one_delivery(&db, a).await;
    let lease = StdDuration::from_secs(30);
    let d = s
        .claim_deliveries("w1", ALL, 10, lease, at(1))
        .await?
        .remove(0);
    // Only the lease holder defers.
    assert!(!s.defer_delivery(d.id, "w2", at(5), at(2)).await?);
    assert!(!s.defer_delivery(Uuid::new_v4(), "w1", at(5), at(2)).await?);
    assert!(s.defer_delivery(d.id, "w1", at(5), at(2)).await?);
    let row = &s.list_deliveries(a, 0).await?[0];
    assert_eq!(
        (row.status.as_str(), row.attempts, row.next_attempt_at),
        ("pending", 0, at(5))
    );
    assert!(row.attempt_log.is_empty());
    assert_eq!(db.count("webhook_attempts").await, 0);
    // The lease is gone: a second defer (or a completion) by w1 is refused.
    assert!(!s.defer_delivery(d.id, "w1", at(6), at(3)).await?);
    assert!(
        !s.complete_delivery(
            d.id,
            "w1",
            &attempt(AttemptOutcome::Delivered, Some(200)),
            at(3)
        )
        .await?
    );
    // Not due before `until` (although no lease holds it); then anyone claims it, still
    // with no attempt counted.
    assert!(
        s.claim_deliveries("w2", ALL, 10, lease, at(4))
            .await?
            .is_empty()
    );
    let again = s.claim_deliveries("w2", ALL, 10, lease, at(5)).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
    assert!(
        s.complete_delivery(
            d.id,
            "w2",
            &attempt(AttemptOutcome::Delivered, Some(200)),
            at(6)
        )
        .await?
    );
    // A finished delivery is not deferred.
    assert!(!s.defer_delivery(d.id, "w2", at(9), at(7)).await?);
    assert_eq!(s.list_deliveries(a, 0).await?[0].attempts, 1);
    Ok(())
}

async fn notification_ids_match_the_listing(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let x = create(s, a, "x", "BTCUSDT").await;
    let y = create(s, a, "y", "BTCUSDT").await;
    let mut quiet = trigger(&y, hour(1), 1);
    quiet.notification = None;
    let r = s
        .record_triggers(
            &[
                trigger(&x, hour(1), 0),
                quiet,
                trigger(&x, hour(2), 1),
                trigger(&x, hour(1), 0),
            ],
            at(0),
        )
        .await?;
    assert_eq!(r[3], Recorded::Duplicate);
    let notes = s.list_notifications(a, 0).await?;
    assert_eq!(notes.len(), 2);
    for (i, want_note) in [(0, true), (1, false), (2, true)] {
        let Recorded::New {
            trigger_id,
            notification_id,
        } = r[i]
        else {
            panic!("{:?}", r[i])
        };
        match notification_id {
            Some(id) => {
                assert!(want_note);
                let n = notes.iter().find(|n| n.id == id).expect("listed");
                assert_eq!(n.trigger_id, trigger_id);
            }
            None => {
                assert!(!want_note);
                assert!(notes.iter().all(|n| n.trigger_id != trigger_id));
            }
        }
    }
    // A replay of a recorded trigger writes nothing and names no notification.
    let again = s.record_triggers(&[trigger(&x, hour(2), 1)], at(1)).await?;
    assert_eq!(again, vec![Recorded::Duplicate]);
    Ok(())
}

// ---- notifications and trigger history ---------------------------------------------------

async fn notifications_list_and_mark_read_scoped(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let al = create(s, a, "n", "BTCUSDT").await;
    let bl = create(s, b, "n", "BTCUSDT").await;
    for h in 0..5 {
        s.record_triggers(&[trigger(&al, hour(h), 0)], at(h * 100))
            .await?;
    }
    let mut quiet = trigger(&al, hour(9), 0);
    quiet.notification = None;
    s.record_triggers(&[quiet, trigger(&bl, hour(0), 0)], at(1000))
        .await?;

    let notes = s.list_notifications(a, 0).await?;
    assert_eq!(
        notes.len(),
        5,
        "a trigger without a notification writes none"
    );
    let times: Vec<_> = notes.iter().map(|n| n.created_at).collect();
    assert_eq!(
        times,
        vec![at(400), at(300), at(200), at(100), at(0)],
        "newest first"
    );
    assert!(
        notes
            .iter()
            .all(|n| n.alert_id == al.id && n.read_at.is_none())
    );
    assert_eq!(s.list_notifications(a, 2).await?, notes[..2].to_vec());
    let theirs = s.list_notifications(b, 0).await?;
    assert_eq!(theirs.len(), 1);

    assert!(!s.mark_notification_read(b, notes[0].id, at(2000)).await?);
    assert!(!s.mark_notification_read(a, theirs[0].id, at(2000)).await?);
    assert!(
        !s.mark_notification_read(a, Uuid::new_v4(), at(2000))
            .await?
    );
    assert!(s.mark_notification_read(a, notes[0].id, at(2000)).await?);
    // Marking again keeps the first read time.
    assert!(s.mark_notification_read(a, notes[0].id, at(3000)).await?);
    let notes = s.list_notifications(a, 0).await?;
    assert_eq!(notes[0].read_at, Some(at(2000)));
    assert!(notes[1..].iter().all(|n| n.read_at.is_none()));
    assert_eq!(s.list_notifications(b, 0).await?[0].read_at, None);
    Ok(())
}

async fn list_triggers_filters_and_pages(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let x = create(s, a, "x", "BTCUSDT").await;
    let y = create(s, a, "y", "ETHUSDT").await;
    let z = create(s, b, "z", "BTCUSDT").await;
    let mut batch = Vec::new();
    for h in 0..10 {
        batch.push(trigger(&x, hour(h), 0));
        batch.push(trigger(&y, hour(h), 0));
        batch.push(trigger(&z, hour(h), 0));
    }
    s.record_triggers(&batch, at(0)).await?;

    let all = s.list_triggers(a, &TriggerQuery::default()).await?;
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|t| t.user_id == a));
    let mut sorted = all.clone();
    sorted.sort_by_key(|t| std::cmp::Reverse((t.fired_at, t.id)));
    assert_eq!(all, sorted, "newest first, ties by id");

    let only_x = s
        .list_triggers(
            a,
            &TriggerQuery {
                alert_id: Some(x.id),
                ..TriggerQuery::default()
            },
        )
        .await?;
    assert_eq!(only_x.len(), 10);
    assert!(only_x.iter().all(|t| t.alert_id == x.id));
    // Another user's alert id finds nothing.
    let q = TriggerQuery {
        alert_id: Some(z.id),
        ..TriggerQuery::default()
    };
    assert!(s.list_triggers(a, &q).await?.is_empty());

    // Time range on fired_at: [from, to).
    let fired = |h: i64| hour(h) + Duration::hours(1);
    let ranged = s
        .list_triggers(
            a,
            &TriggerQuery {
                from: Some(fired(3)),
                to: Some(fired(6)),
                ..TriggerQuery::default()
            },
        )
        .await?;
    assert_eq!(ranged.len(), 6);
    assert!(
        ranged
            .iter()
            .all(|t| t.fired_at >= fired(3) && t.fired_at < fired(6))
    );
    let ranged = s
        .list_triggers(
            a,
            &TriggerQuery {
                alert_id: Some(y.id),
                from: Some(fired(8)),
                ..TriggerQuery::default()
            },
        )
        .await?;
    assert_eq!(
        ranged.iter().map(|t| t.bar_time).collect::<Vec<_>>(),
        vec![hour(9), hour(8)]
    );

    // Paging with a `before` cursor.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_triggers(
                a,
                &TriggerQuery {
                    before,
                    limit: 3,
                    ..TriggerQuery::default()
                },
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Cursor::decode(
            &Cursor {
                at: last.fired_at,
                id: last.id,
            }
            .encode(),
        );
        paged.extend(page);
    }
    assert_eq!(paged, all);
    Ok(())
}

async fn migrations_are_idempotent(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let al = create(s, a, "survives", "BTCUSDT").await;
    s.migrate().await?;
    s.migrate().await?;
    // A second store on the same database (migrating on connect), and a third at once.
    let (two, three) = tokio::join!(
        Store::connect(&db.url, StoreOptions::default()),
        Store::connect(&db.url, StoreOptions::default())
    );
    let (two, three) = (two?, three?);
    assert_eq!(two.get_alert(a, al.id).await?, Some(al.clone()));
    assert_eq!(three.kind(), s.kind());
    let b2 = create(&two, a, "via two", "ETHUSDT").await;
    assert!(s.get_alert(a, b2.id).await?.is_some());
    two.close().await;
    three.close().await;
    let skipped = Store::connect(
        &db.url,
        StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        },
    )
    .await?;
    assert_eq!(
        skipped.list_alerts(a, &AlertQuery::default()).await?.len(),
        2
    );
    skipped.close().await;
    Ok(())
}

/// PostgreSQL cannot store NUL in text or `\u0000` in jsonb: one in a user's alert, a
/// snapshot, a payload or a receiver's error text must not fail the write (a whole batch of
/// triggers, or a delivery's completion forever). Both backends store U+FFFD instead.
async fn nul_characters_never_fail_a_write(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let mut na = new_alert("bad\0name", "BTCUSDT");
    na.definition = serde_json::json!({"message": "x\u{0}y", "k\u{0}": [1, "\u{0}"]});
    let al = s.create_alert(a, &na, at(0)).await?;
    assert_eq!(al.name, "bad\u{FFFD}name");
    assert_eq!(
        al.definition,
        serde_json::json!({"message": "x\u{FFFD}y", "k\u{FFFD}": [1, "\u{FFFD}"]})
    );
    let again = s.update_alert(a, al.id, &na, at(1)).await?.unwrap();
    assert_eq!(again.name, "bad\u{FFFD}name");

    let good = create(s, a, "good", "BTCUSDT").await;
    let mut t = trigger(&al, hour(1), 1);
    t.snapshot = serde_json::json!({"id": "c\u{0}1"});
    t.notification.as_mut().unwrap().body = "b\0ody".into();
    t.deliveries[0].payload = "{\"p\":\"\0\"}".into();
    let r = s
        .record_triggers(&[t, trigger(&good, hour(1), 1)], at(2))
        .await?;
    assert!(
        matches!(r[..], [Recorded::New { .. }, Recorded::New { .. }]),
        "{r:?}"
    );
    let q = TriggerQuery {
        alert_id: Some(al.id),
        ..TriggerQuery::default()
    };
    assert_eq!(
        s.list_triggers(a, &q).await?[0].snapshot,
        serde_json::json!({"id": "c\u{FFFD}1"})
    );
    let notes = s.list_notifications(a, 0).await?;
    assert!(notes.iter().any(|n| n.body == "b\u{FFFD}ody"));

    let claimed = s
        .claim_deliveries("w", ALL, 10, StdDuration::from_secs(60), at(3))
        .await?;
    assert_eq!(claimed.len(), 2);
    let bad = claimed.iter().find(|d| d.alert_id == al.id).unwrap();
    assert_eq!(bad.payload, "{\"p\":\"\u{FFFD}\"}");
    let rec = AttemptRecord {
        status_code: Some(500),
        error: Some("body: \0\0".into()),
        duration_ms: 1,
        outcome: AttemptOutcome::Failed,
        response: None,
    };
    assert!(s.complete_delivery(bad.id, "w", &rec, at(4)).await?);
    let row = s
        .list_deliveries(a, 0)
        .await?
        .into_iter()
        .find(|d| d.id == bad.id)
        .unwrap();
    assert_eq!(row.last_error.as_deref(), Some("body: \u{FFFD}\u{FFFD}"));
    assert_eq!(
        row.attempt_log[0].error.as_deref(),
        Some("body: \u{FFFD}\u{FFFD}")
    );
    Ok(())
}

async fn last_fired_bars_per_alert(db: TestDb) -> TestResult {
    let s = &db.store;
    assert!(s.last_fired_bars().await?.is_empty());
    let (a, b) = (user(), user());
    let x = create(s, a, "x", "BTCUSDT").await;
    let y = create(s, b, "y", "ETHUSDT").await;
    create(s, a, "never fired", "BTCUSDT").await;
    s.record_triggers(
        &[
            trigger(&x, hour(3), 0),
            trigger(&x, hour(1), 0),
            trigger(&y, hour(2), 0),
        ],
        at(0),
    )
    .await?;
    let mut got = s.last_fired_bars().await?;
    got.sort();
    let mut want = vec![(x.id, hour(3)), (y.id, hour(2))];
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

/// PostgreSQL wakes the runner on every alert change (creation, edit, pause, deletion), not on
/// a trigger being recorded; SQLite has no listener (the runner polls).
async fn listen_alert_changes_wakes_on_changes(db: TestDb) -> TestResult {
    use futures_util::StreamExt;
    let s = &db.store;
    let Some(mut changes) = s.listen_alert_changes().await? else {
        assert_eq!(db.backend, common::Backend::Sqlite);
        return Ok(());
    };
    assert_eq!(db.backend, common::Backend::Postgres);
    let wait = StdDuration::from_secs(5);
    let quiet = StdDuration::from_millis(300);
    let a = user();
    let al = create(s, a, "x", "BTCUSDT").await;
    tokio::time::timeout(wait, changes.next())
        .await?
        .expect("created");
    s.record_triggers(&[trigger(&al, hour(1), 1)], at(1))
        .await?;
    assert!(
        tokio::time::timeout(quiet, changes.next()).await.is_err(),
        "recording a trigger is not a change"
    );
    s.update_alert(a, al.id, &new_alert("x2", "BTCUSDT"), at(2))
        .await?;
    tokio::time::timeout(wait, changes.next())
        .await?
        .expect("updated");
    s.set_status(a, al.id, AlertStatus::Paused, at(3)).await?;
    tokio::time::timeout(wait, changes.next())
        .await?
        .expect("paused");
    s.delete_alert(a, al.id, at(4)).await?;
    tokio::time::timeout(wait, changes.next())
        .await?
        .expect("deleted");
    Ok(())
}

#[tokio::test]
async fn connect_refuses_unknown_urls() {
    let err = Store::connect("mysql://localhost/x", StoreOptions::default()).await;
    assert!(matches!(err, Err(StoreError::Config(_))), "{err:?}");
}

#[test]
fn cursor_text_round_trips() {
    let c = Cursor {
        at: t0() + Duration::microseconds(1_234_567),
        id: Uuid::new_v4(),
    };
    assert_eq!(Cursor::decode(&c.encode()), Some(c));
    assert_eq!(Cursor::decode("nonsense"), None);
    assert_eq!(Cursor::decode("12_notauuid"), None);
}

/// The harness drops a test's database even when the test panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_cleans_up_after_a_panic() {
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let db = TestDb::new(backend).await;
            let _ = tx.send(db.url.clone());
            panic!("deliberate panic in a test body");
        });
        assert!(task.await.is_err(), "the task panicked");
        let url = rx.await.unwrap();
        match backend {
            common::Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite://");
                let dir = std::path::Path::new(path).parent().unwrap();
                assert!(!dir.exists(), "{dir:?} removed");
            }
            common::Backend::Postgres => {
                let name = url.rsplit('/').next().unwrap().to_owned();
                let admin = common::admin_url();
                let pool = sqlx::PgPool::connect(&admin).await.unwrap();
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
                        .bind(&name)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                assert_eq!(n, 0, "{name} dropped");
                pool.close().await;
            }
        }
    }
}

#[test]
fn database_urls_are_derived_from_the_server_url() {
    use common::with_database;
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@db.example.com/x?sslmode=require", "t2"),
        "postgresql://u:p@db.example.com/t2?sslmode=require"
    );
    assert_eq!(
        with_database("postgres://localhost", "t3"),
        "postgres://localhost/t3"
    );
}

/// The benchmark runs end to end on small sizes, on both backends, and cleans up after itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_on_both_backends() {
    use alert_store::bench::{self, BenchSizes};
    let sizes = BenchSizes {
        triggers: 500,
        trigger_batch: 120,
        alerts: 2_000,
        deliveries: 300,
        claim_batch: 50,
    };
    for url in ["sqlite://ignored.db".to_owned(), common::admin_url()] {
        let report = bench::run(&url, sizes).await.unwrap();
        assert_eq!(report.load_alerts.count, 2_000, "{url}");
        assert_eq!(report.record_triggers.count, 500);
        assert_eq!(report.deliveries.count, 300);
        assert!(report.record_triggers.per_second > 0.0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["sizes"]["alerts"], 2_000);
        if report.backend == "sqlite" {
            assert!(!std::path::Path::new(&report.database).exists());
        } else {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
                .bind(&report.database)
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(n, 0, "scratch database dropped");
            pool.close().await;
        }
    }
}

// ---- live feeds: rows since a cursor, in recording order ---------------------------------

store_test!(
    triggers_since_lists_in_recording_order,
    notifications_since_lists_in_recording_order,
    recording_times_follow_commit_order
);

/// A batch whose clock reads earlier than one already committed (another shard's, or a retry
/// of a batch that failed) is recorded after it on PostgreSQL, where many processes record and
/// event ids need times that increase in commit order; SQLite has one writer and keeps the
/// time it is given.
async fn recording_times_follow_commit_order(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let x = create(s, a, "x", "BTCUSDT").await;
    s.record_triggers(&[trigger(&x, hour(1), 0)], at(20))
        .await?;
    s.record_triggers(&[trigger(&x, hour(2), 0)], at(10))
        .await?;
    s.record_triggers(&[trigger(&x, hour(3), 0)], at(20))
        .await?;
    s.record_triggers(&[trigger(&x, hour(4), 0)], at(30))
        .await?;
    let triggers = s.triggers_since(a, origin(), 0).await?;
    let notes = s.notifications_since(a, origin(), 0).await?;
    let bars: Vec<_> = triggers.iter().map(|t| t.trigger.bar_time).collect();
    let times: Vec<_> = triggers.iter().map(|t| t.recorded_at).collect();
    let us = Duration::microseconds;
    match db.backend {
        common::Backend::Postgres => {
            assert_eq!(bars, [hour(1), hour(2), hour(3), hour(4)], "commit order");
            assert_eq!(times, [at(20), at(20) + us(1), at(20) + us(2), at(30)]);
        }
        common::Backend::Sqlite => {
            assert_eq!(bars, [hour(2), hour(1), hour(3), hour(4)]);
            assert_eq!(times, [at(10), at(20), at(20), at(30)]);
        }
    }
    // Each notification has its trigger's time.
    for n in &notes {
        let t = triggers.iter().find(|t| t.trigger.id == n.trigger_id);
        assert_eq!(t.map(|t| t.recorded_at), Some(n.created_at));
    }
    assert_eq!(notes.len(), 4);
    Ok(())
}

/// From the beginning.
fn origin() -> Cursor {
    Cursor {
        at: chrono::DateTime::UNIX_EPOCH,
        id: Uuid::nil(),
    }
}

async fn triggers_since_lists_in_recording_order(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let x = create(s, a, "x", "BTCUSDT").await;
    let y = create(s, a, "y", "BTCUSDT").await;
    let z = create(s, b, "z", "BTCUSDT").await;
    // Recorded out of bar order: the listing follows the recording time, then the id. (The
    // times increase as the batches commit: see recording_times_follow_commit_order.)
    let late = at(30) + Duration::microseconds(123_456);
    s.record_triggers(&[trigger(&x, hour(1), 0), trigger(&y, hour(1), 0)], at(10))
        .await?;
    s.record_triggers(&[trigger(&z, hour(1), 0)], at(15))
        .await?;
    s.record_triggers(&[trigger(&x, hour(5), 0)], at(20))
        .await?;
    s.record_triggers(&[trigger(&y, hour(2), 0)], late).await?;

    let all = s.triggers_since(a, origin(), 0).await?;
    assert_eq!(all.len(), 4, "only a's");
    assert!(all.iter().all(|t| t.trigger.user_id == a));
    let keys: Vec<_> = all.iter().map(|t| (t.recorded_at, t.trigger.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        all.iter().map(|t| t.recorded_at).collect::<Vec<_>>()[..3],
        [at(10), at(10), at(20)]
    );
    // The backend's precision: SQLite keeps milliseconds, PostgreSQL microseconds.
    let kept = match db.backend {
        common::Backend::Sqlite => at(30) + Duration::milliseconds(123),
        common::Backend::Postgres => late,
    };
    assert_eq!(all[3].recorded_at, kept);
    assert_eq!(all[3].trigger.bar_time, hour(2));
    assert_eq!(all[3].trigger.alert_id, y.id);
    // The rows as the history lists them.
    let listed = s.list_triggers(a, &TriggerQuery::default()).await?;
    for t in &all {
        assert!(listed.contains(&t.trigger));
    }

    // Paging one by one from each row's cursor gives the same sequence.
    let mut cursor = origin();
    let mut paged = Vec::new();
    loop {
        let page = s.triggers_since(a, cursor, 1).await?;
        let Some(t) = page.first() else { break };
        cursor = Cursor {
            at: t.recorded_at,
            id: t.trigger.id,
        };
        paged.push(t.clone());
    }
    assert_eq!(paged, all);

    // Strictly after the cursor, with its time compared to the microsecond (SQLite included).
    let after = |at, id| s.triggers_since(a, Cursor { at, id }, 0);
    assert_eq!(after(at(10), Uuid::max()).await?, all[2..]);
    assert_eq!(
        after(at(10) - Duration::microseconds(1), Uuid::max()).await?,
        all,
        "at or after a time"
    );
    assert_eq!(
        after(at(10) + Duration::microseconds(500), Uuid::nil()).await?,
        all[2..],
        "a cursor between two milliseconds"
    );
    assert_eq!(after(kept, all[3].trigger.id).await?, vec![]);
    assert_eq!(
        after(kept - Duration::microseconds(1), Uuid::max()).await?,
        all[3..]
    );
    assert_eq!(s.triggers_since(b, origin(), 0).await?.len(), 1);
    assert_eq!(s.triggers_since(user(), origin(), 0).await?, vec![]);
    Ok(())
}

async fn notifications_since_lists_in_recording_order(db: TestDb) -> TestResult {
    let s = &db.store;
    let (a, b) = (user(), user());
    let x = create(s, a, "x", "BTCUSDT").await;
    let y = create(s, a, "y", "BTCUSDT").await;
    let z = create(s, b, "z", "BTCUSDT").await;
    let mut quiet = trigger(&y, hour(3), 0);
    quiet.notification = None;
    let first = s
        .record_triggers(&[trigger(&x, hour(1), 0), trigger(&y, hour(1), 0)], at(10))
        .await?;
    s.record_triggers(&[trigger(&z, hour(1), 0)], at(15))
        .await?;
    s.record_triggers(&[trigger(&x, hour(2), 0), quiet], at(20))
        .await?;

    let all = s.notifications_since(a, origin(), 0).await?;
    assert_eq!(all.len(), 3, "a's, with notifications");
    let keys: Vec<_> = all.iter().map(|n| (n.created_at, n.id)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        all.iter().map(|n| n.created_at).collect::<Vec<_>>(),
        [at(10), at(10), at(20)]
    );
    // Each is its trigger's, with the same time.
    let triggers = s.triggers_since(a, origin(), 0).await?;
    for n in &all {
        let t = triggers
            .iter()
            .find(|t| t.trigger.id == n.trigger_id)
            .unwrap();
        assert_eq!(t.recorded_at, n.created_at);
        assert_eq!(t.trigger.alert_id, n.alert_id);
    }
    let ids: HashSet<Uuid> = first
        .iter()
        .map(|r| match r {
            Recorded::New {
                notification_id: Some(id),
                ..
            } => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(all[..2].iter().map(|n| n.id).collect::<HashSet<_>>(), ids);
    // As the listing has them.
    let listed = s.list_notifications(a, 0).await?;
    for n in &all {
        assert!(listed.contains(n));
    }

    let mut cursor = origin();
    let mut paged = Vec::new();
    while let Some(n) = s.notifications_since(a, cursor, 1).await?.pop() {
        cursor = Cursor {
            at: n.created_at,
            id: n.id,
        };
        paged.push(n);
    }
    assert_eq!(paged, all);
    let after = |at, id| s.notifications_since(a, Cursor { at, id }, 0);
    assert_eq!(after(at(10), all[0].id).await?, all[1..]);
    assert_eq!(
        after(at(10) - Duration::microseconds(1), Uuid::max()).await?,
        all
    );
    assert_eq!(
        after(at(10) + Duration::microseconds(1), Uuid::nil()).await?,
        all[2..]
    );
    assert_eq!(s.notifications_since(b, origin(), 0).await?.len(), 1);
    assert_eq!(s.notifications_since(user(), origin(), 0).await?, vec![]);
    Ok(())
}

store_test!(event_feed_queries_use_their_indexes);

/// The feed's resume queries walk an index in order (no sort of the user's history); on
/// PostgreSQL with sequential scans off, so the tiny test table does not hide a missing index.
async fn event_feed_queries_use_their_indexes(db: TestDb) -> TestResult {
    let feeds = [
        ("alert_triggers", "alert_triggers_user_created_idx"),
        ("notifications", "notifications_user_created_idx"),
        ("bot_orders", "bot_orders_user_created_idx"),
    ];
    for (table, index) in feeds {
        let plan: String = if let Some(pool) = db.store.pg_pool() {
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await?;
            let sql = format!(
                "EXPLAIN SELECT * FROM {table} WHERE user_id = $1 AND (created_at, id) > ($2, $3) \
                 ORDER BY created_at, id LIMIT 100"
            );
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(user())
                .bind(chrono::DateTime::UNIX_EPOCH)
                .bind(Uuid::nil())
                .fetch_all(&mut *tx)
                .await?;
            rows.join("\n")
        } else if let Some(pool) = db.store.sqlite_pool() {
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT * FROM {table} WHERE user_id = ?1 \
                 AND (created_at > ?2 OR (created_at = ?2 AND id > ?3)) \
                 ORDER BY created_at, id LIMIT 100"
            );
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(user().to_string())
                .bind(0_i64)
                .bind(Uuid::nil().to_string())
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        } else {
            unreachable!("two backends")
        };
        assert!(plan.contains(index), "{table}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{table}: sorted: {plan}");
        assert!(!plan.contains("Sort"), "{table}: sorted: {plan}");
    }
    Ok(())
}

// ---- DCA bots ------------------------------------------------------------------------------

store_test!(
    bots_are_created_with_their_alerts_scoped_and_limited,
    bot_fills_are_recorded_once_with_their_changes,
    bot_changes_computed_from_a_stale_version_are_refused,
    bot_orders_are_listed_in_fill_order_whatever_the_callers_clock,
    deleting_a_bot_removes_its_alerts_deals_and_orders
);

fn new_bot(alerts: &[(&str, AlertStatus)]) -> alert_store::NewBot {
    alert_store::NewBot {
        id: Uuid::new_v4(),
        name: "dca".into(),
        pair: alert_core::Symbol::new("BTCUSDT").unwrap(),
        timeframe: alert_core::Timeframe::H1,
        definition: serde_json::json!({"pair": "BTCUSDT", "timeframe": "1h"}),
        alerts: alerts
            .iter()
            .map(|(role, status)| alert_store::NewBotAlert {
                role: (*role).to_owned(),
                alert: alert_store::NewAlert {
                    status: *status,
                    ..new_alert(&format!("dca: {role}"), "BTCUSDT")
                },
            })
            .collect(),
    }
}

const ROLES: [(&str, AlertStatus); 4] = [
    ("entry", AlertStatus::Active),
    ("so1", AlertStatus::Paused),
    ("so2", AlertStatus::Paused),
    ("tp", AlertStatus::Paused),
];

async fn bots_are_created_with_their_alerts_scoped_and_limited(db: TestDb) -> TestResult {
    let s = db
        .connect(StoreOptions {
            limits: Limits {
                per_symbol: 2,
                per_user: 10,
            },
            ..StoreOptions::default()
        })
        .await;
    let (a, b) = (user(), user());
    let bot = s.create_bot(a, &new_bot(&ROLES), at(0)).await?;
    assert_eq!(
        (bot.status, bot.deals_opened),
        (alert_store::BotStatus::Active, 0)
    );
    let alerts = s.bot_alerts(a, bot.id).await?;
    let roles: Vec<(&str, AlertStatus)> = alerts
        .iter()
        .map(|r| (r.role.as_str(), r.alert.status))
        .collect();
    assert_eq!(roles, ROLES);
    // The bot's alerts are alerts: the runner streams the active one.
    assert_eq!(s.list_alerts(a, &AlertQuery::default()).await?.len(), 4);
    // Another user sees nothing of it.
    assert_eq!(s.get_bot(b, bot.id).await?, None);
    assert!(s.bot_alerts(b, bot.id).await?.is_empty());
    assert!(s.list_bots(b).await?.is_empty());
    assert!(!s.delete_bot(b, bot.id, at(1)).await?);
    assert_eq!(s.list_bots(a).await?, std::slice::from_ref(&bot));
    // A second bot's entry is the user's second active alert on BTCUSDT; a third is refused,
    // and nothing of it is written.
    s.create_bot(a, &new_bot(&ROLES), at(2)).await?;
    let refused = s.create_bot(a, &new_bot(&ROLES), at(3)).await;
    assert!(matches!(refused, Err(StoreError::Limit(_))), "{refused:?}");
    assert_eq!(s.list_bots(a).await?.len(), 2);
    assert_eq!(s.list_alerts(a, &AlertQuery::default()).await?.len(), 8);
    Ok(())
}

fn fill(
    bot: &alert_store::BotRow,
    key: &str,
    deal: alert_store::DealWrite,
) -> alert_store::BotFill {
    alert_store::BotFill {
        bot_id: bot.id,
        user_id: bot.user_id,
        order: alert_store::NewBotOrder {
            client_order_id: key.into(),
            role: "entry".into(),
            side: "buy".into(),
            price: 100.0,
            base_qty: 1.0,
            notional: 100.0,
            fee: 0.1,
            average_price: 100.0,
            realized_pnl: None,
        },
        deal,
        alerts: vec![
            alert_store::BotAlertUpdate {
                role: "entry".into(),
                definition: None,
                status: AlertStatus::Paused,
            },
            alert_store::BotAlertUpdate {
                role: "so1".into(),
                definition: Some(serde_json::json!({"name": "so1", "threshold": 98.0})),
                status: AlertStatus::Active,
            },
        ],
        deals_opened: 1,
        expected_version: bot.version,
    }
}

fn open_deal(number: i64) -> alert_store::DealWrite {
    alert_store::DealWrite {
        number,
        open: true,
        opened_at: at(10),
        closed_at: None,
        entry_price: 100.0,
        base_qty: 1.0,
        cost: 100.0,
        fees: 0.1,
        filled: vec![false, false],
        exit: None,
        realized_pnl: None,
    }
}

async fn bot_fills_are_recorded_once_with_their_changes(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let bot = s.create_bot(a, &new_bot(&ROLES), at(0)).await?;
    let first = s
        .record_bot_fill(&fill(&bot, "trigger-1", open_deal(1)), at(10))
        .await?;
    let alert_store::FillRecorded::New { deal_id, .. } = first else {
        panic!("{first:?}")
    };
    // The same trigger again: nothing more.
    let again = s
        .record_bot_fill(&fill(&bot, "trigger-1", open_deal(1)), at(11))
        .await?;
    assert_eq!(again, alert_store::FillRecorded::Duplicate);
    assert_eq!(s.list_bot_orders(a, bot.id).await?.len(), 1);
    // The alerts changed as told; the runner's change feed sees them.
    let alerts = s.bot_alerts(a, bot.id).await?;
    let by_role = |r: &str| alerts.iter().find(|x| x.role == r).unwrap().alert.clone();
    assert_eq!(by_role("entry").status, AlertStatus::Paused);
    assert_eq!(by_role("so1").status, AlertStatus::Active);
    assert_eq!(by_role("so1").definition["threshold"], 98.0);
    assert_eq!(by_role("so2").status, AlertStatus::Paused);
    let changes = s.alert_changes(at(9), StdDuration::ZERO).await?;
    assert!(changes.changed.iter().any(|c| c.id == by_role("so1").id));
    // The open deal is what a restarted handler resumes from.
    let deal = s.open_deal(bot.id).await?.unwrap();
    assert_eq!(
        (deal.id, deal.number, deal.filled.clone()),
        (deal_id, 1, vec![false, false])
    );
    let bot = s.get_bot(a, bot.id).await?.unwrap();
    assert_eq!(bot.deals_opened, 1);
    // A fill computed from the bot before that one is refused: it would overwrite the deal.
    let mut stale = fill(&bot, "trigger-stale", open_deal(1));
    stale.expected_version -= 1;
    assert_eq!(
        s.record_bot_fill(&stale, at(12)).await?,
        alert_store::FillRecorded::Stale
    );
    assert_eq!(s.list_bot_orders(a, bot.id).await?.len(), 1);
    // A safety order, then the close: the same deal row, now closed.
    let mut so = open_deal(1);
    so.base_qty = 1.5;
    so.cost = 149.0;
    so.filled = vec![true, false];
    let mut f = fill(&bot, "trigger-2", so);
    f.order.role = "so1".into();
    f.alerts.clear();
    assert!(matches!(
        s.record_bot_fill(&f, at(20)).await?,
        alert_store::FillRecorded::New { .. }
    ));
    assert_eq!(s.open_deal(bot.id).await?.unwrap().filled, [true, false]);
    let bot = s.get_bot(a, bot.id).await?.unwrap();
    let mut closed = open_deal(1);
    closed.open = false;
    closed.closed_at = Some(at(30));
    closed.exit = Some("take_profit".into());
    closed.realized_pnl = Some(2.5);
    let mut f = fill(&bot, "trigger-3", closed);
    f.order.side = "sell".into();
    f.order.role = "tp".into();
    f.order.realized_pnl = Some(2.5);
    assert!(matches!(
        s.record_bot_fill(&f, at(30)).await?,
        alert_store::FillRecorded::New { .. }
    ));
    assert_eq!(s.open_deal(bot.id).await?, None);
    let deals = s.list_deals(a, bot.id).await?;
    assert_eq!(deals.len(), 1);
    assert_eq!(
        (deals[0].exit.as_deref(), deals[0].realized_pnl),
        (Some("take_profit"), Some(2.5))
    );
    let orders = s.list_bot_orders(a, bot.id).await?;
    let sides: Vec<&str> = orders.iter().map(|o| o.side.as_str()).collect();
    assert_eq!(sides, ["buy", "buy", "sell"]);
    assert!(orders.iter().all(|o| o.deal_id == deal_id));
    assert!(orders.iter().all(|o| o.deal_number == Some(1)));
    assert_eq!(orders[2].realized_pnl, Some(2.5));
    // The live events' replay: the user's orders after a cursor, in recording order.
    let since = s
        .bot_orders_since(
            a,
            alert_store::Cursor {
                at: at(10),
                id: orders[0].id,
            },
            10,
        )
        .await?;
    assert_eq!(
        since.iter().map(|o| o.id).collect::<Vec<_>>(),
        [orders[1].id, orders[2].id]
    );
    let page = s
        .bot_orders_since(
            a,
            alert_store::Cursor {
                at: at(0),
                id: Uuid::nil(),
            },
            2,
        )
        .await?;
    assert_eq!(page, orders[..2]);
    let others = s
        .bot_orders_since(
            user(),
            alert_store::Cursor {
                at: at(0),
                id: Uuid::nil(),
            },
            10,
        )
        .await?;
    assert!(others.is_empty());
    // Isolation, and a fill for a bot that is gone.
    assert!(s.list_deals(user(), bot.id).await?.is_empty());
    assert!(s.list_bot_orders(user(), bot.id).await?.is_empty());
    let mut ghost = fill(&bot, "trigger-9", open_deal(2));
    ghost.bot_id = Uuid::new_v4();
    assert_eq!(
        s.record_bot_fill(&ghost, at(40)).await?,
        alert_store::FillRecorded::NoBot
    );
    Ok(())
}

/// Two fills that raced: the second to take the bot's lock read its clock first (or in the same
/// millisecond). The listing is still in fill order, so the last order's average is the deal's.
async fn bot_orders_are_listed_in_fill_order_whatever_the_callers_clock(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let bot = s.create_bot(a, &new_bot(&ROLES), at(0)).await?;
    s.record_bot_fill(&fill(&bot, "t-entry", open_deal(1)), at(10))
        .await?;
    let mut previous = "entry".to_string();
    for (n, (role, clock)) in [("so1", at(9)), ("so2", at(9))].into_iter().enumerate() {
        let bot = s.get_bot(a, bot.id).await?.unwrap();
        let mut deal = open_deal(1);
        deal.filled = vec![true, n == 1];
        let mut f = fill(&bot, &format!("t-{role}"), deal);
        f.order.role = role.into();
        f.order.average_price = 99.0 - n as f64;
        f.alerts.clear();
        assert!(matches!(
            s.record_bot_fill(&f, clock).await?,
            alert_store::FillRecorded::New { .. }
        ));
        let orders = s.list_bot_orders(a, bot.id).await?;
        let roles: Vec<&str> = orders.iter().map(|o| o.role.as_str()).collect();
        assert_eq!(roles.last(), Some(&role), "after {previous}: {roles:?}");
        assert!(orders.windows(2).all(|w| w[0].created_at < w[1].created_at));
        previous = role.to_string();
    }
    let orders = s.list_bot_orders(a, bot.id).await?;
    assert_eq!(orders.last().and_then(|o| o.average_price), Some(98.0));
    Ok(())
}

/// Every change to a bot counts in its version; a change computed from another version (a
/// fill or an edit that raced another) writes nothing.
async fn bot_changes_computed_from_a_stale_version_are_refused(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let bot = s.create_bot(a, &new_bot(&ROLES), at(0)).await?;
    assert_eq!(bot.version, 0);
    let mut renamed = new_bot(&ROLES);
    renamed.id = bot.id;
    renamed.name = "renamed".into();
    // Without a deal, a replacement needs no version; with one, it needs the current one.
    let row = s.replace_bot(a, &renamed, None, at(1)).await?.unwrap();
    assert_eq!((row.name.as_str(), row.version), ("renamed", 1));
    let stale_during_idle = s.replace_bot(a, &renamed, Some(1), at(2)).await;
    assert!(
        matches!(stale_during_idle, Err(StoreError::Stale(_))),
        "no deal is open: {stale_during_idle:?}"
    );
    let bot = s.get_bot(a, bot.id).await?.unwrap();
    assert_eq!(bot.version, 1, "a refused change counts nothing");
    s.record_bot_fill(&fill(&bot, "t-1", open_deal(1)), at(3))
        .await?;
    let bot = s.get_bot(a, bot.id).await?.unwrap();
    assert_eq!(bot.version, 2);
    let refused = s.replace_bot(a, &renamed, None, at(4)).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let stale = s.replace_bot(a, &renamed, Some(1), at(4)).await;
    assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
    renamed.name = "during the deal".into();
    let row = s.replace_bot(a, &renamed, Some(2), at(5)).await?.unwrap();
    assert_eq!((row.name.as_str(), row.version), ("during the deal", 3));
    assert_eq!(s.bot_alerts(a, bot.id).await?.len(), ROLES.len());
    // Pause and resume carry the version they were computed from too.
    let stale = s
        .set_bot_status(a, bot.id, alert_store::BotStatus::Paused, &[], 2, at(6))
        .await;
    assert!(matches!(stale, Err(StoreError::Stale(_))), "{stale:?}");
    let paused = s
        .set_bot_status(a, bot.id, alert_store::BotStatus::Paused, &[], 3, at(6))
        .await?
        .unwrap();
    assert_eq!(
        (paused.status, paused.version),
        (alert_store::BotStatus::Paused, 4)
    );
    // Another user's bot is not found, whatever the version.
    assert_eq!(s.replace_bot(user(), &renamed, Some(4), at(7)).await?, None);
    Ok(())
}

async fn deleting_a_bot_removes_its_alerts_deals_and_orders(db: TestDb) -> TestResult {
    let s = &db.store;
    let a = user();
    let bot = s.create_bot(a, &new_bot(&ROLES), at(0)).await?;
    let mine = create(s, a, "not the bot's", "BTCUSDT").await;
    s.record_bot_fill(&fill(&bot, "t-1", open_deal(1)), at(10))
        .await?;
    let ids: HashSet<Uuid> = s
        .bot_alerts(a, bot.id)
        .await?
        .iter()
        .map(|r| r.alert.id)
        .collect();
    assert!(s.delete_bot(a, bot.id, at(20)).await?);
    assert_eq!(s.get_bot(a, bot.id).await?, None);
    assert!(s.bot_alerts(a, bot.id).await?.is_empty());
    assert!(s.list_deals(a, bot.id).await?.is_empty());
    assert!(s.list_bot_orders(a, bot.id).await?.is_empty());
    assert_eq!(s.open_deal(bot.id).await?, None);
    // Runners learn of the deleted alerts; the user's other alert stays.
    let changes = s.alert_changes(at(19), StdDuration::ZERO).await?;
    let deleted: HashSet<Uuid> = changes.deleted.into_iter().collect();
    assert_eq!(deleted, ids);
    assert!(s.get_alert(a, mine.id).await?.is_some());
    Ok(())
}
