//! Store benchmarks, on a database of their own (a fresh PostgreSQL database on the server of
//! the URL, or a fresh SQLite file in the temp directory), removed afterwards:
//!
//! - **load**: `alerts` active alerts (bulk-inserted first by direct SQL, not timed as part of
//!   the load) streamed with [`Store::stream_active_alerts`], as the runner does at start;
//! - **record**: `triggers` triggers of one bar close, each with a notification and one
//!   webhook, recorded with [`Store::record_triggers`] in calls of `trigger_batch`;
//! - **deliver**: `deliveries` of those webhooks claimed in batches of `claim_batch` and
//!   completed one by one (as delivered), as a dispatch worker does.
//!
//! [`ScratchDatabase`] is the throw-away database they run on (also used by
//! `alert-runner bench-dispatch`).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

use crate::{
    AttemptOutcome, AttemptRecord, BackendKind, DeliveryKind, NewDelivery, NewNotification,
    NewTrigger, Recorded, Store, StoreError, StoreOptions,
};

/// How much work each phase does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchSizes {
    /// Triggers recorded for one bar close (default 10,000).
    pub triggers: u32,
    /// Triggers per `record_triggers` call (default 1,000).
    pub trigger_batch: u32,
    /// Active alerts loaded at start (default 1,000,000).
    pub alerts: u32,
    /// Deliveries claimed and completed (default 10,000; at most `triggers`: one webhook each).
    pub deliveries: u32,
    /// Deliveries per claim (default 100).
    pub claim_batch: u32,
}

impl Default for BenchSizes {
    fn default() -> Self {
        Self {
            triggers: 10_000,
            trigger_batch: 1_000,
            alerts: 1_000_000,
            deliveries: 10_000,
            claim_batch: 100,
        }
    }
}

/// One timed phase.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Phase {
    /// Items processed (alerts, triggers or deliveries).
    pub count: u64,
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
}

impl Phase {
    fn new(count: u64, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self {
            count,
            seconds,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

/// What [`run`] measured. Serialises to JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The scratch database used (and removed): a PostgreSQL database name or a file path.
    pub database: String,
    pub sizes: BenchSizes,
    /// Bulk insert of the alerts by direct SQL, then VACUUM ANALYZE and a checkpoint
    /// (set-up, for reference).
    pub seed_alerts: Phase,
    /// (b) `stream_active_alerts` over all of them: alerts/s.
    pub load_alerts: Phase,
    /// (a) `record_triggers`: triggers/s (each with a notification and one webhook).
    pub record_triggers: Phase,
    /// (c) claim + complete: deliveries/s.
    pub deliveries: Phase,
}

/// Runs the benchmarks on a scratch database next to `url` (`postgres://…`: a new database
/// on that server, created and dropped with the URL's credentials, which need CREATEDB;
/// `sqlite:…`: a new file in the system temp directory, deleted afterwards).
pub async fn run(url: &str, sizes: BenchSizes) -> Result<BenchReport, StoreError> {
    if sizes.trigger_batch == 0 || sizes.claim_batch == 0 {
        return Err(StoreError::Config(
            "bench: trigger_batch and claim_batch must be positive".into(),
        ));
    }
    let scratch = ScratchDatabase::create(url).await?;
    let result = run_on(&scratch, sizes).await;
    let cleaned = scratch.remove().await;
    let report = result?;
    cleaned?;
    Ok(report)
}

/// A scratch database for a benchmark, next to a configured one: a new PostgreSQL database on
/// the server of a `postgres://…` URL (created and dropped with the URL's credentials, which
/// need CREATEDB), or a new SQLite file in a fresh directory under the system temp directory
/// for a `sqlite:…` URL. [`ScratchDatabase::remove`] drops it; nothing removes it on drop.
pub struct ScratchDatabase(Scratch);

impl std::fmt::Debug for ScratchDatabase {
    // The URLs may carry a password: show the database only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ScratchDatabase")
            .field(&self.describe())
            .finish()
    }
}

enum Scratch {
    Sqlite {
        dir: std::path::PathBuf,
        url: String,
    },
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl ScratchDatabase {
    /// Creates an empty scratch database next to `url` (no migrations applied yet: the store
    /// applies them when it connects).
    pub async fn create(url: &str) -> Result<Self, StoreError> {
        let tag = Uuid::new_v4().simple().to_string();
        let kind = crate::BackendKind::of_url(url);
        if kind == Some(crate::BackendKind::Sqlite) {
            let dir = std::env::temp_dir().join(format!("alert-store-bench-{tag}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Config(format!("bench: create {}: {e}", dir.display())))?;
            let url = format!("sqlite://{}", dir.join("bench.db").display());
            Ok(Self(Scratch::Sqlite { dir, url }))
        } else if kind == Some(crate::BackendKind::Postgres) {
            let name = format!("alert_store_bench_{tag}");
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            Ok(Self(Scratch::Postgres {
                admin: url.to_owned(),
                url: with_database(url, &name),
                name,
            }))
        } else {
            Err(StoreError::Config(format!(
                "bench: {url:?}: expected sqlite://PATH or postgres://USER@HOST/DB"
            )))
        }
    }

    /// The scratch database's URL, for [`Store::connect`].
    pub fn url(&self) -> &str {
        match &self.0 {
            Scratch::Sqlite { url, .. } | Scratch::Postgres { url, .. } => url,
        }
    }

    /// The scratch database for reports: a PostgreSQL database name or a file path.
    pub fn describe(&self) -> String {
        match &self.0 {
            Scratch::Sqlite { url, .. } => url.trim_start_matches("sqlite://").to_owned(),
            Scratch::Postgres { name, .. } => name.clone(),
        }
    }

    /// Removes the scratch database (close every store on it first; PostgreSQL's is dropped
    /// `WITH (FORCE)` anyway).
    pub async fn remove(self) -> Result<(), StoreError> {
        match self.0 {
            Scratch::Sqlite { dir, .. } => std::fs::remove_dir_all(&dir)
                .map_err(|e| StoreError::Config(format!("bench: remove {}: {e}", dir.display()))),
            Scratch::Postgres { admin, name, .. } => {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await?;
                Ok(())
            }
        }
    }
}

/// `url` with its database (the path) replaced by `db`, keeping the query string.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A realistic stored alert (DESIGN §3's example).
const DEFINITION: &str = r#"{"name":"BTC oversold on 1h, 15m confirms","symbol":"BTCUSDT","base_timeframe":"1h","conditionLogic":"AND","conditions":[{"id":"rsi_oversold","type":"indicator","indicator":"RSI","component":"RSI","operator":"<","compareWith":"value","compareValue":30,"timeframe":"same","settings":{"length":14}},{"id":"price_above_ema","type":"price","operator":"crosses_above","compareWith":"indicator_component","rhs":{"indicator":"EMA","component":"EMA","settings":{"period":20}},"timeframe":"15m"}],"action":{"type":"webhook","url":"https://example.com/hook"},"trigger":"once_per_bar","debounce_bars":1,"message":"{{symbol}} RSI {{rsi_oversold.value}} at {{close}}","expires_at":null}"#;

/// Alerts per (synthetic) user and the symbols they are spread over.
const ALERTS_PER_USER: u32 = 100;
const SYMBOLS: u32 = 50;

fn bench_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_else(Utc::now)
}

async fn run_on(scratch: &ScratchDatabase, sizes: BenchSizes) -> Result<BenchReport, StoreError> {
    let store = Store::connect(
        scratch.url(),
        StoreOptions {
            max_connections: 8,
            ..StoreOptions::default()
        },
    )
    .await?;
    let now = bench_now();
    let wanted = sizes.alerts.max(sizes.triggers);

    // Set-up: the alerts, by direct SQL.
    let started = Instant::now();
    seed_alerts(&store, wanted, now).await?;
    let seed = Phase::new(u64::from(wanted), started.elapsed());

    // (b) Load every active alert, as the runner does at start.
    let started = Instant::now();
    let mut loaded = 0_u64;
    let mut firing = Vec::with_capacity(sizes.triggers as usize);
    let mut rows = store.stream_active_alerts();
    while let Some(alert) = rows.try_next().await? {
        loaded += 1;
        if firing.len() < sizes.triggers as usize {
            firing.push((alert.id, alert.user_id, alert.symbol));
        }
    }
    drop(rows);
    let load = Phase::new(loaded, started.elapsed());

    // (a) One bar close fires `triggers` alerts.
    let bar = now;
    let fired = now + chrono::Duration::hours(1);
    let triggers: Vec<NewTrigger> = firing
        .into_iter()
        .map(|(alert_id, user_id, symbol)| bench_trigger(alert_id, user_id, symbol, bar, fired))
        .collect();
    let started = Instant::now();
    let mut new = 0_u64;
    for chunk in triggers.chunks(sizes.trigger_batch as usize) {
        let recorded = store.record_triggers(chunk, fired).await?;
        new += recorded
            .iter()
            .filter(|r| matches!(r, Recorded::New { .. }))
            .count() as u64;
    }
    let record = Phase::new(new, started.elapsed());
    if new != triggers.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "bench: {new} of {} triggers recorded",
            triggers.len()
        )));
    }

    // (c) A dispatch worker claims and completes the webhooks.
    let worker = "bench-worker";
    let lease = Duration::from_secs(300);
    let done_at = fired + chrono::Duration::seconds(1);
    let delivered = AttemptRecord {
        status_code: Some(200),
        error: None,
        duration_ms: 25,
        outcome: AttemptOutcome::Delivered,
        response: None,
    };
    let target = u64::from(sizes.deliveries);
    let started = Instant::now();
    let mut completed = 0_u64;
    while completed < target {
        let limit = u64::from(sizes.claim_batch).min(target - completed) as u32;
        let claimed = store
            .claim_deliveries(worker, &DeliveryKind::ALL, limit, lease, done_at)
            .await?;
        if claimed.is_empty() {
            break;
        }
        for d in &claimed {
            if store
                .complete_delivery(d.id, worker, &delivered, done_at)
                .await?
            {
                completed += 1;
            }
        }
    }
    let deliveries = Phase::new(completed, started.elapsed());

    store.close().await;
    Ok(BenchReport {
        backend: match store.kind() {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        }
        .to_owned(),
        database: scratch.describe(),
        sizes,
        seed_alerts: seed,
        load_alerts: load,
        record_triggers: record,
        deliveries,
    })
}

fn bench_trigger(
    alert_id: Uuid,
    user_id: Uuid,
    symbol: String,
    bar: DateTime<Utc>,
    fired: DateTime<Utc>,
) -> NewTrigger {
    let snapshot = serde_json::json!({
        "bar": {"open_time": bar.timestamp_millis(), "open": 42000.5, "high": 42310.0,
                "low": 41890.25, "close": 42250.75, "volume": 1234.567},
        "conditions": {"rsi_oversold": {"held": true, "lhs": 28.7, "rhs": 30.0},
                       "price_above_ema": {"held": true, "lhs": 42250.75, "rhs": 42101.3}},
    });
    let payload = serde_json::json!({
        "type": "alert.triggered", "alert_id": alert_id, "symbol": symbol,
        "bar_time": bar, "fired_at": fired, "snapshot": snapshot,
        "message": format!("{symbol} RSI 28.7 at 42250.75"),
    })
    .to_string();
    NewTrigger {
        alert_id,
        user_id,
        bar_time: bar,
        fired_at: fired,
        snapshot,
        notification: Some(NewNotification {
            title: format!("{symbol} alert fired"),
            body: format!("{symbol} RSI 28.7 at 42250.75"),
        }),
        deliveries: vec![NewDelivery {
            action_index: 0,
            kind: DeliveryKind::Webhook,
            url: "https://example.com/hook".to_owned(),
            secret: None,
            payload,
        }],
        symbol,
        spend: false,
    }
}

/// One active alert for [`insert_active_alerts`]: its definition is the alert JSON.
#[derive(Clone, Debug)]
pub struct SeedAlert {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub symbol: String,
    pub base_timeframe: String,
    pub definition: String,
}

/// Inserts active alerts by direct SQL in one statement per call (PostgreSQL only): a
/// benchmark's set-up, much faster than creating them one by one through the API. The
/// definitions are stored as given: the runner parses them when it loads them.
pub async fn insert_active_alerts(
    store: &Store,
    alerts: &[SeedAlert],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let Some(pool) = store.pg_pool() else {
        return Err(StoreError::Config(
            "the bulk alert insert needs PostgreSQL".to_owned(),
        ));
    };
    let column = |f: fn(&SeedAlert) -> &str| alerts.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO alerts (id, user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at) \
         SELECT id, user_id, name, symbol, tf, definition::jsonb, 'active', $7, $7 \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[]) \
              AS t(id, user_id, name, symbol, tf, definition)",
    )
    .bind(alerts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind(alerts.iter().map(|a| a.user_id).collect::<Vec<_>>())
    .bind(column(|a| &a.name))
    .bind(column(|a| &a.symbol))
    .bind(column(|a| &a.base_timeframe))
    .bind(column(|a| &a.definition))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Inserts `n` active alerts by direct SQL: `ALERTS_PER_USER` per user, spread over
/// `SYMBOLS` symbols, each with [`DEFINITION`].
async fn seed_alerts(store: &Store, n: u32, now: DateTime<Utc>) -> Result<(), StoreError> {
    const CHUNK: u32 = 100_000;
    if let Some(pool) = store.pg_pool() {
        let mut from = 0;
        while from < n {
            let to = (from + CHUNK).min(n);
            sqlx::query(
                "INSERT INTO alerts (id, user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at) \
                 SELECT gen_random_uuid(), \
                        ('00000000-0000-4000-8000-' || lpad(to_hex(g / $3), 12, '0'))::uuid, \
                        'bench ' || g, 'SYM' || (g % $4) || 'USDT', '1h', $5::jsonb, 'active', $6, $6 \
                 FROM generate_series($1::bigint, $2::bigint - 1) AS g",
            )
            .bind(i64::from(from))
            .bind(i64::from(to))
            .bind(i64::from(ALERTS_PER_USER))
            .bind(i64::from(SYMBOLS))
            .bind(DEFINITION)
            .bind(now)
            .execute(pool)
            .await?;
            from = to;
        }
        // Settle as a database that has been running would be: hint bits and the visibility
        // map set, statistics known, the bulk load checkpointed (CHECKPOINT needs superuser
        // or pg_checkpoint; without it the load is only less settled).
        sqlx::query("VACUUM (ANALYZE) alerts").execute(pool).await?;
        let _ = sqlx::query("CHECKPOINT").execute(pool).await;
    } else if let Some(pool) = store.sqlite_pool() {
        let ms = now.timestamp_millis();
        let mut from = 0;
        while from < n {
            let to = (from + CHUNK).min(n);
            sqlx::query(
                "WITH RECURSIVE g(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?) \
                 INSERT INTO alerts (id, user_id, name, symbol, base_timeframe, definition, status, created_at, updated_at) \
                 SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) \
                              || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), \
                        printf('00000000-0000-4000-8000-%012x', n / ?), \
                        'bench ' || n, 'SYM' || (n % ?) || 'USDT', '1h', ?, 'active', ?, ? \
                 FROM g",
            )
            .bind(i64::from(from))
            .bind(i64::from(to))
            .bind(i64::from(ALERTS_PER_USER))
            .bind(i64::from(SYMBOLS))
            .bind(DEFINITION)
            .bind(ms)
            .bind(ms)
            .execute(pool)
            .await?;
            from = to;
        }
        sqlx::query("ANALYZE").execute(pool).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "b"),
            "postgres://u@h:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b"), "postgres://h/b");
    }

    #[test]
    fn phases_compute_rates() {
        let p = Phase::new(1_000, Duration::from_millis(500));
        assert_eq!(p.count, 1_000);
        assert!((p.per_second - 2_000.0).abs() < 1e-9);
        assert_eq!(Phase::new(5, Duration::ZERO).per_second, 0.0);
    }
}
