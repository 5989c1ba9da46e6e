//! Shards (issue 11, part 1), with the real binary on PostgreSQL over a replayed market:
//! - (a) the two shards of a 2-shard split record exactly the (alert, bar) triggers one
//!   unsharded `run` records;
//! - (b) an owner and a hot standby for one shard: the owner is SIGKILLed mid-run, the standby
//!   takes over within seconds, and the final set still equals the undisturbed run's, nothing
//!   doubled;
//! - `--shard` refuses SQLite, and a bad `--shard` says what is expected.

#[path = "common/scale.rs"]
mod scale;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use scale::*;

const OWNED: &str = "shard owned: starting the runner";
const LOST: &str = "shard lock lost: stopping the runner, back to standby";
const STANDBY: &str = "another process owns this shard: hot standby, waiting for its lock";

/// The undisturbed, unsharded run's triggers (its own database).
async fn baseline(dir: &std::path::Path) -> Outcome {
    let db = scratch().await;
    seed(db.url(), dir, None);
    let log = dir.join("baseline.log");
    let mut run = spawn_run(&dir.join("market"), db.url(), Some(SPEED), &[], &log);
    let status = wait_exit(&mut run, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the unsharded run did not finish cleanly: {status:?} (log {})",
        log.display()
    );
    let got = outcome(db.url()).await;
    let _ = db.remove().await;
    assert!(got.triggers.len() > 300, "the market fires plenty: {got:?}");
    got
}

/// The symbols of shard `i` of 2 (by the shard function: the test is pinned to it).
fn symbols_of(i: u32) -> BTreeSet<String> {
    SYMBOLS
        .iter()
        .filter(|s| alert_core::shard_of(s, 2) == i)
        .map(|s| (*s).to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_record_exactly_what_one_run_records() {
    let dir = tempdir("shards-a");
    write_market(&dir.join("market"));
    assert!(
        !symbols_of(0).is_empty() && !symbols_of(1).is_empty(),
        "both shards own symbols"
    );
    let expected = baseline(&dir).await;

    let db = scratch().await;
    seed(db.url(), &dir, None);
    let mut shards = Vec::new();
    for i in 0..2 {
        let log = dir.join(format!("shard{i}.log"));
        let shard = format!("{i}/2");
        let child = spawn_run(
            &dir.join("market"),
            db.url(),
            Some(SPEED),
            &["--shard", &shard],
            &log,
        );
        shards.push((child, log));
    }
    for (child, log) in &mut shards {
        let status = wait_exit(child, Duration::from_secs(60)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "a shard did not finish cleanly: {status:?} (log {})",
            log.display()
        );
        assert!(log_has(log, OWNED), "it owned its shard: {}", log.display());
    }
    // Each loaded only its symbols' alerts (of 8: AAA 3, BBB 2, CCC 3).
    let loaded: Vec<u64> = shards
        .iter()
        .map(|(_, log)| {
            log_lines(log, "alerts loaded")
                .first()
                .and_then(|l| l["alerts"].as_u64())
                .unwrap_or_else(|| panic!("no 'alerts loaded' in {}", log.display()))
        })
        .collect();
    println!("alerts loaded by shard 0/2 and 1/2: {loaded:?}");
    assert_eq!(loaded, [6, 2]);
    let got = outcome(db.url()).await;
    let _ = db.remove().await;
    println!(
        "unsharded: {} triggers {:?}; 2 shards: {} triggers {:?}",
        expected.triggers.len(),
        expected.by_symbol,
        got.triggers.len(),
        got.by_symbol
    );
    assert_eq!(got.duplicates, 0);
    assert_same_set(&got.triggers, &expected.triggers, "(alert, bar) triggers");
    assert_eq!(got.by_symbol, expected.by_symbol);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_owner_is_killed() {
    let dir = tempdir("shards-b");
    write_market(&dir.join("market"));
    let expected = baseline(&dir).await;
    let owned = symbols_of(0);

    let db = scratch().await;
    seed(db.url(), &dir, None);
    let market = dir.join("market");
    let (owner_log, standby_log, other_log) = (
        dir.join("owner.log"),
        dir.join("standby.log"),
        dir.join("other.log"),
    );
    // Shard 1/2 runs undisturbed beside; shard 0/2 gets an owner, then a standby.
    let mut other = spawn_run(
        &market,
        db.url(),
        Some(SPEED),
        &["--shard", "1/2"],
        &other_log,
    );
    let started = Instant::now();
    let mut owner = spawn_run(
        &market,
        db.url(),
        Some(SPEED),
        &["--shard", "0/2"],
        &owner_log,
    );
    assert!(
        wait_log(&owner_log, OWNED, Duration::from_secs(20))
            .await
            .is_some(),
        "the first process owns the shard ({})",
        owner_log.display()
    );
    let mut standby = spawn_run(
        &market,
        db.url(),
        Some(SPEED),
        &["--shard", "0/2"],
        &standby_log,
    );
    assert!(
        wait_log(&standby_log, STANDBY, Duration::from_secs(20))
            .await
            .is_some(),
        "the second process stands by ({})",
        standby_log.display()
    );
    assert!(!log_has(&standby_log, OWNED), "the standby does not run");

    // Kill the owner while its alerts fire: once some of its triggers are recorded.
    let symbols = owned
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let mine = format!("SELECT count(*) FROM alert_triggers WHERE symbol IN ({symbols})");
    let expected_mine: usize = owned
        .iter()
        .map(|s| expected.by_symbol.get(s).copied().unwrap_or(0))
        .sum();
    let mut before = 0;
    while started.elapsed() < Duration::from_secs(30) {
        before = count(db.url(), &mine).await;
        if before as usize >= expected_mine / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(owner.try_wait(), Ok(None)),
        "the owner still runs when it is killed"
    );
    assert!(
        (before as usize) < expected_mine,
        "killed mid-run: {before} of {expected_mine} of its triggers recorded"
    );
    sigkill(&mut owner);
    let killed = Instant::now();
    let took_over = wait_log(&standby_log, OWNED, Duration::from_secs(30)).await;
    let Some(_) = took_over else {
        panic!("the standby did not take over ({})", standby_log.display())
    };
    let take_over = killed.elapsed();
    println!(
        "owner SIGKILLed after {before}/{expected_mine} of shard 0's triggers; the standby took over in {:.2} s",
        take_over.as_secs_f64()
    );
    assert!(
        take_over < Duration::from_secs(5),
        "take-over within seconds: {take_over:?}"
    );

    // The new owner's lock connection is cut (as a PostgreSQL restart would): it must stop
    // its runner at once, stand by, and take the free lock again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = alert_store::shard_lock_key(0, 2);
    let terminate = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() \
         AND application_name = 'alert-runner shard lock {key:#x}'"
    );
    let mut cut = 0;
    for _ in 0..50 {
        cut = count(db.url(), &terminate).await;
        if cut > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cut, 1, "one lock connection for shard 0/2");
    let cut_at = Instant::now();
    assert!(
        wait_log(&standby_log, LOST, Duration::from_secs(10))
            .await
            .is_some(),
        "the owner noticed the lost lock ({})",
        standby_log.display()
    );
    let noticed = cut_at.elapsed();
    assert!(
        wait_log_n(&standby_log, OWNED, 2, Duration::from_secs(20))
            .await
            .is_some(),
        "and owned the shard again ({})",
        standby_log.display()
    );
    println!(
        "lock connection terminated: runner stopped after {:.2} s, shard owned again after {:.2} s",
        noticed.as_secs_f64(),
        cut_at.elapsed().as_secs_f64()
    );

    for (child, log) in [(&mut standby, &standby_log), (&mut other, &other_log)] {
        let status = wait_exit(child, Duration::from_secs(60)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "did not finish cleanly: {status:?} (log {})",
            log.display()
        );
    }
    let got = outcome(db.url()).await;
    let _ = db.remove().await;
    println!(
        "undisturbed: {} triggers; owner killed, standby took over: {} triggers, {} duplicates",
        expected.triggers.len(),
        got.triggers.len(),
        got.duplicates
    );
    assert_eq!(got.duplicates, 0, "nothing doubled");
    assert_same_set(&got.triggers, &expected.triggers, "(alert, bar) triggers");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shards_refuse_sqlite_and_bad_values() {
    let dir = tempdir("shards-c");
    let url = format!("sqlite://{}", dir.join("a.db").display());
    let out = ok(
        Command::new(BIN)
            .args(["run", "--shard", "0/2", "--database-url", &url])
            .output(),
        "run alert-runner",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--shard 0/2 needs PostgreSQL"), "{err}");
    assert!(!dir.join("a.db").exists(), "nothing was opened");

    let out = ok(
        Command::new(BIN).args(["run", "--shard", "2/2"]).output(),
        "run alert-runner",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--shard") && err.contains("0 ≤ I < N"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
