//! Test harness shared by the store's integration tests: a fresh database per test on either
//! backend, dropped at the end (also when the test panics), and builders for rows.
//!
//! - SQLite: a file in a fresh directory under the system temp dir, removed at the end.
//! - PostgreSQL: a fresh database on the server of `DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`), dropped `WITH (FORCE)` at the end.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;

use alert_core::{Symbol, Timeframe};
use alert_store::{
    AlertRow, AlertStatus, DeliveryKind, NewAlert, NewDelivery, NewNotification, NewTrigger, Store,
    StoreOptions,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Every kind of delivery, for claims.
pub const ALL: &[DeliveryKind] = &DeliveryKind::ALL;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server the PostgreSQL tests use (`DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` with its database (the path) replaced by `db`, keeping the query string.
pub fn with_database(url: &str, db: &str) -> String {
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

/// What to remove when a test database goes away.
enum Cleanup {
    Sqlite(PathBuf),
    Postgres { admin: String, db: String },
}

/// Removes the test database when dropped: on success and while unwinding from a panic.
pub struct Guard(Option<Cleanup>);

impl Drop for Guard {
    fn drop(&mut self) {
        match self.0.take() {
            Some(Cleanup::Sqlite(dir)) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Some(Cleanup::Postgres { admin, db }) => {
                // Drop may run inside the runtime: clean up on a thread of its own.
                let handle = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(drop_database(&admin, &db));
                    }
                });
                let _ = handle.join();
            }
            None => {}
        }
    }
}

pub async fn drop_database(admin: &str, db: &str) {
    match sqlx::PgConnection::connect(admin).await {
        Ok(mut conn) => {
            let sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await {
                eprintln!("could not drop test database {db}: {e}");
            }
            let _ = conn.close().await;
        }
        Err(e) => eprintln!("could not connect to drop test database {db}: {e}"),
    }
}

/// A fresh database for one test.
pub struct TestDb {
    pub backend: Backend,
    /// The URL of the test database itself.
    pub url: String,
    pub store: Store,
    _guard: Guard,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        Self::with_options(backend, StoreOptions::default()).await
    }

    pub async fn with_options(backend: Backend, options: StoreOptions) -> Self {
        let (url, guard) = fresh_database(backend).await;
        let store = Store::connect(&url, options)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Self {
            backend,
            url,
            store,
            _guard: guard,
        }
    }

    /// Another store on the same database.
    pub async fn connect(&self, options: StoreOptions) -> Store {
        Store::connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.url))
    }

    /// Rows in `table` (all users: the service view).
    pub async fn count(&self, table: &str) -> i64 {
        count(&self.store, table, None).await
    }

    /// Rows in `table` of one user (the service view, filtered).
    pub async fn count_of(&self, table: &str, user: Uuid) -> i64 {
        count(&self.store, table, Some(user)).await
    }
}

/// A fresh, empty database (no migrations applied) and the guard that removes it.
pub async fn fresh_database(backend: Backend) -> (String, Guard) {
    let tag = Uuid::new_v4().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("alert-store-test-{tag}"));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
            let url = format!("sqlite://{}", dir.join("t.db").display());
            (url, Guard(Some(Cleanup::Sqlite(dir))))
        }
        Backend::Postgres => {
            let admin = admin_url();
            let db = format!("alert_store_test_{tag}");
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("connect {admin} (is PostgreSQL running?): {e}"));
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("create database {db}: {e}"));
            let _ = conn.close().await;
            let url = with_database(&admin, &db);
            (url, Guard(Some(Cleanup::Postgres { admin, db })))
        }
    }
}

pub async fn count(store: &Store, table: &str, user: Option<Uuid>) -> i64 {
    if let Some(pool) = store.pg_pool() {
        let sql = match user {
            Some(_) => format!("SELECT count(*) FROM {table} WHERE user_id = $1"),
            None => format!("SELECT count(*) FROM {table} WHERE $1::uuid IS NULL"),
        };
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()))
            .bind(user)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else if let Some(pool) = store.sqlite_pool() {
        let sql = match user {
            Some(_) => format!("SELECT count(*) FROM {table} WHERE user_id = ?"),
            None => format!("SELECT count(*) FROM {table} WHERE ? IS NULL"),
        };
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()))
            .bind(user.map(|u| u.to_string()))
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else {
        panic!("unknown backend")
    }
}

/// Runs a statement on the store's database (the service view); returns rows affected.
pub async fn exec(store: &Store, sql: &str) -> u64 {
    if let Some(pool) = store.pg_pool() {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    } else if let Some(pool) = store.sqlite_pool() {
        sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    } else {
        panic!("unknown backend")
    }
}

/// Runs `body` on a fresh database of `backend`; the database is removed afterwards, also
/// when the body fails or panics.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestResult>,
{
    let db = TestDb::new(backend).await;
    if let Err(e) = body(db).await {
        panic!("{backend:?}: {e}");
    }
}

/// Generates `<name>::sqlite` and `<name>::postgres` tests from `async fn <name>(TestDb)`.
#[macro_export]
macro_rules! store_test {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::common::run($crate::common::Backend::Sqlite, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::common::run($crate::common::Backend::Postgres, super::$name).await;
            }
        }
    )+};
}

// ---- builders ----------------------------------------------------------------------------

/// A fixed instant to build test times from (whole milliseconds: SQLite keeps milliseconds).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap()
}

pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

pub fn hour(h: i64) -> DateTime<Utc> {
    t0() + Duration::hours(h)
}

pub fn new_alert(name: &str, symbol: &str) -> NewAlert {
    NewAlert {
        name: name.to_owned(),
        symbol: Symbol::new(symbol).unwrap(),
        base_timeframe: Timeframe::H1,
        definition: serde_json::json!({
            "name": name,
            "symbol": symbol,
            "base_timeframe": "1h",
            "conditionLogic": "AND",
            "conditions": [{"id": "c1", "type": "price", "operator": "greater_than", "compareValue": 100}],
        }),
        status: AlertStatus::Active,
    }
}

pub fn paused(mut a: NewAlert) -> NewAlert {
    a.status = AlertStatus::Paused;
    a
}

pub async fn create(store: &Store, user: Uuid, name: &str, symbol: &str) -> AlertRow {
    store
        .create_alert(user, &new_alert(name, symbol), t0())
        .await
        .unwrap_or_else(|e| panic!("create_alert {name}: {e}"))
}

/// A trigger of `alert` at bar `bar`, with a notification and `hooks` webhooks (no secrets).
pub fn trigger(alert: &AlertRow, bar: DateTime<Utc>, hooks: i32) -> NewTrigger {
    NewTrigger {
        alert_id: alert.id,
        user_id: alert.user_id,
        symbol: alert.symbol.clone(),
        bar_time: bar,
        fired_at: bar + Duration::hours(1),
        snapshot: serde_json::json!({"close": 101.5, "bar": bar.timestamp_millis()}),
        notification: Some(NewNotification {
            title: format!("{} fired", alert.name),
            body: format!("bar {bar}"),
        }),
        deliveries: (0..hooks)
            .map(|i| NewDelivery {
                action_index: i,
                kind: DeliveryKind::Webhook,
                url: format!("https://example.com/hook/{i}"),
                secret: None,
                payload: format!("{{\"alert\":\"{}\",\"i\":{i}}}", alert.id),
            })
            .collect(),
        spend: false,
    }
}
