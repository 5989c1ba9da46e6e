//! Several dispatchers (issue 11, part 2): two `alert-runner dispatch` processes (the real
//! binary) share one PostgreSQL outbox (`FOR UPDATE SKIP LOCKED`, leases) and a local
//! receiver that checks every signature and deduplicates by `webhook-id`. Both do work; one is
//! SIGKILLed mid-run and the deliveries it had leased are retaken once their lease expires
//! (30 s, the dispatcher's minimum) and delivered; in the end every delivery is delivered and
//! every webhook-id was processed exactly once.

#[path = "common/scale.rs"]
mod scale;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use scale::*;
use sqlx::Connection;

async fn lease_owners(url: &str) -> Vec<(String, i64)> {
    let mut conn = ok(sqlx::PgConnection::connect(url).await, "connect");
    let rows: Vec<(String, i64)> = ok(
        sqlx::query_as(
            "SELECT lease_owner, count(*) FROM webhook_deliveries \
             WHERE lease_owner IS NOT NULL AND status = 'pending' GROUP BY lease_owner",
        )
        .fetch_all(&mut conn)
        .await,
        "read leases",
    );
    let _ = conn.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_share_the_outbox_and_retake_a_killed_ones_leases() {
    let dir = tempdir("dispatchers");
    write_market(&dir.join("market"));
    let db = scratch().await;
    let url = db.url().to_owned();
    // The receiver takes 40 ms per request, so the outbox takes a few seconds to drain.
    let secret = run_cli(
        &["webhook-secret", "show", "--user", &USER.to_string()],
        &url,
    );
    let receiver = Receiver::start(&secret, Duration::from_millis(40)).await;
    seed(&url, &dir, Some(&receiver.url()));
    // Fill the outbox: `run` has no dispatcher.
    let log = dir.join("run.log");
    let mut run = spawn_run(&dir.join("market"), &url, None, &[], &log);
    let status = wait_exit(&mut run, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "run: {status:?} ({})",
        log.display()
    );
    let total = outcome(&url).await.deliveries.len();
    assert!(total > 300, "plenty of deliveries queued: {total}");

    let (log_a, log_b) = (dir.join("dispatch-a.log"), dir.join("dispatch-b.log"));
    let per_host = ["--webhook-per-host", "8"];
    let started = Instant::now();
    let mut a = spawn_dispatch(&url, &per_host, &log_a);
    let mut b = spawn_dispatch(&url, &per_host, &log_b);
    let (worker_a, worker_b) = (worker_of(&log_a).await, worker_of(&log_b).await);
    assert_ne!(worker_a, worker_b);

    // Both claim work; kill A once a fifth is delivered while it holds leases.
    let delivered_sql =
        "SELECT count(*) FROM webhook_deliveries WHERE kind = 'webhook' AND status = 'delivered'";
    let mut owners_seen = BTreeSet::new();
    let mut killed_with = BTreeSet::new();
    let mut delivered_at_kill = 0;
    while started.elapsed() < Duration::from_secs(30) {
        for (owner, _) in lease_owners(&url).await {
            owners_seen.insert(owner);
        }
        let delivered = count(&url, delivered_sql).await;
        if delivered as usize >= total / 5 && owners_seen.contains(&worker_a) {
            let leased = leased_by(&url, &worker_a).await;
            if !leased.is_empty() {
                sigkill(&mut a);
                delivered_at_kill = delivered;
                // What it held at its death (some may have completed just before).
                killed_with = leased_by(&url, &worker_a).await;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(a.try_wait(), Ok(Some(_))),
        "A was killed mid-run (delivered {delivered_at_kill}/{total}, owners seen {owners_seen:?})"
    );
    assert!(!killed_with.is_empty(), "A held leases when it was killed");
    let killed_at = started.elapsed();
    println!(
        "A SIGKILLed after {:.1} s with {} deliveries leased; {delivered_at_kill}/{total} delivered by then",
        killed_at.as_secs_f64(),
        killed_with.len()
    );

    // B drains the rest, and A's leased deliveries once their lease (30 s) expires.
    let mut pending = i64::MAX;
    while started.elapsed() < Duration::from_secs(55) {
        for (owner, _) in lease_owners(&url).await {
            owners_seen.insert(owner);
        }
        pending = count(
            &url,
            "SELECT count(*) FROM webhook_deliveries WHERE kind = 'webhook' AND status <> 'delivered'",
        )
        .await;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    sigterm(&b);
    let b_status = wait_exit(&mut b, Duration::from_secs(20)).await;

    let got = outcome(&url).await;
    let retaken = {
        let mut conn = ok(sqlx::PgConnection::connect(&url).await, "connect");
        let ids: Vec<uuid::Uuid> = killed_with.iter().copied().collect();
        let n: i64 = ok(
            sqlx::query_scalar(
                "SELECT count(*) FROM webhook_deliveries WHERE id = ANY($1) AND status = 'delivered'",
            )
            .bind(&ids)
            .fetch_one(&mut conn)
            .await,
            "count retaken",
        );
        let _ = conn.close().await;
        n
    };
    let seen = receiver.seen();
    let ids: BTreeSet<&String> = got.deliveries.keys().collect();
    let received: BTreeSet<&String> = seen.by_id.keys().collect();
    let repeats: u64 = seen.by_id.values().map(|n| u64::from(*n) - 1).sum();
    println!(
        "| dispatchers | deliveries delivered/total | lease owners seen | A's leased at kill, delivered later | receiver: distinct webhook-ids (requests, repeats dropped) | drained in |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| 2 (A SIGKILLed at {:.1} s) | {}/{} | {} | {}/{} | {} ({}, {repeats}) | {:.1} s |",
        killed_at.as_secs_f64(),
        got.delivered(),
        got.deliveries.len(),
        owners_seen.len(),
        retaken,
        killed_with.len(),
        seen.by_id.len(),
        seen.requests,
        drained.as_secs_f64()
    );
    let _ = db.remove().await;
    assert_eq!(pending, 0, "every delivery delivered ({})", log_b.display());
    assert!(
        owners_seen.contains(&worker_a) && owners_seen.contains(&worker_b),
        "both dispatchers claimed deliveries: {owners_seen:?}"
    );
    assert_eq!(retaken as usize, killed_with.len(), "A's leases retaken");
    assert_eq!(got.delivered(), got.deliveries.len());
    assert_eq!(seen.bad_signatures, 0);
    assert!(ids == received, "every webhook-id received, nothing else");
    assert_eq!(
        seen.processed,
        got.deliveries.len() as u64,
        "each processed once"
    );
    assert!(
        b_status.is_some_and(|s| s.success()),
        "B stopped cleanly on SIGTERM"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
