//! Storage for alert-runner, behind one interface with two backends:
//!
//! - **SQLite** (`sqlite://./alert-runner.db`, the embedded default): created on first use, WAL
//!   mode, foreign keys on. Every user-facing call takes the user and filters by it.
//! - **PostgreSQL** (`postgres://…`, also a Supabase project's connection string): row-level
//!   security on every user table as Supabase does it; user-facing calls run in a transaction
//!   as role `authenticated` with the user's JWT claims set (as PostgREST does), so the
//!   database itself refuses another user's rows. The runner and dispatcher use the service
//!   path (no role switch): RLS is enabled and forced, so the connecting role must bypass it
//!   (a superuser, `BYPASSRLS`, or Supabase's `postgres`). It must be able to `SET ROLE
//!   authenticated` (Supabase's `postgres` can; the migrations grant it where they may).
//!
//! Times: SQLite keeps milliseconds, PostgreSQL microseconds; [`Cursor`]s keep microseconds.
//!
//! [`bench`] measures the store on a scratch database (`alert-runner bench-store`).
//!
//! Migrations are embedded and idempotent ([`Store::migrate`]). A trigger is recorded with its
//! notification and outbox rows in one transaction, at most once per (alert, bar).

pub mod bench;
mod bots;
mod error;
mod live_feed;
mod model;
mod notify;
mod postgres;
mod sqlite;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use uuid::Uuid;

pub use bots::{
    BotAlertRow, BotAlertUpdate, BotFill, BotOrderRow, BotRow, BotStatus, DealRow, DealWrite,
    FillRecorded, NewBot, NewBotAlert, NewBotOrder,
};
pub use error::StoreError;
pub use live_feed::{EVENT_CHANNEL, EventListener, EventNotice, Heard, TriggerRef};
pub use model::*;
pub use notify::ALERT_CHANNEL;
pub use postgres::{AdvisoryLock, SHARD_LOCK_NAMESPACE, shard_lock_key};

/// Limits on active alerts, checked when an alert is created or resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Active alerts per user and symbol (`ALERT_MAX_ALERTS_PER_SYMBOL`, default 200).
    pub per_symbol: u32,
    /// Active alerts per user (default 1,000).
    pub per_user: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_symbol: 200,
            per_user: 1_000,
        }
    }
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Apply the embedded migrations on connect.
    pub migrate: bool,
    pub limits: Limits,
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            migrate: true,
            limits: Limits::default(),
            max_connections: 8,
        }
    }
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The store. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    limits: Limits,
}

/// Which database a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    /// The database a `DATABASE_URL` names: `sqlite:…`, or `postgres://…` / `postgresql://…`;
    /// `None` for anything else.
    pub fn of_url(url: &str) -> Option<Self> {
        let url = url.trim_start();
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

impl Store {
    /// Opens `url`: `sqlite://path` (created if missing; `sqlite::memory:` for a private
    /// in-memory database) or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let backend = match BackendKind::of_url(url) {
            Some(BackendKind::Sqlite) => {
                let connect = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Config(format!("DATABASE_URL {url:?}: {e}")))?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    // One connection for an in-memory database: each connection would get its own.
                    .max_connections(if memory {
                        1
                    } else {
                        options.max_connections.max(1)
                    })
                    .connect_with(connect)
                    .await?;
                Backend::Sqlite(pool)
            }
            Some(BackendKind::Postgres) => {
                let connect = sqlx::postgres::PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Config(format!("DATABASE_URL: {e}")))?;
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(connect)
                    .await?;
                Backend::Postgres(pool)
            }
            None => {
                return Err(StoreError::Config(format!(
                    "DATABASE_URL {url:?}: expected sqlite://PATH or postgres://USER@HOST/DB"
                )));
            }
        };
        let store = Self {
            backend,
            limits: options.limits,
        };
        if options.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The PostgreSQL pool, for operator tools and tests that need raw SQL.
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.backend {
            Backend::Postgres(p) => Some(p),
            Backend::Sqlite(_) => None,
        }
    }

    /// The SQLite pool, for operator tools and tests.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.backend {
            Backend::Sqlite(p) => Some(p),
            Backend::Postgres(_) => None,
        }
    }

    /// Applies the embedded migrations (idempotent; safe to run concurrently and on a
    /// database that already has Supabase's `auth` schema and roles).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            Backend::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => p.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }

    // ---- alerts, scoped to a user -------------------------------------------------------

    /// Creates an alert for `user`. Refused, writing nothing, when it would exceed the limits
    /// of active alerts. Here and in every write, NUL characters (which PostgreSQL cannot
    /// store) are replaced with U+FFFD.
    pub async fn create_alert(
        &self,
        user: Uuid,
        alert: &NewAlert,
        now: DateTime<Utc>,
    ) -> Result<AlertRow, StoreError> {
        let alert = &*alert.without_nul();
        match &self.backend {
            Backend::Sqlite(p) => sqlite::create_alert(p, self.limits, user, alert, now).await,
            Backend::Postgres(p) => postgres::create_alert(p, self.limits, user, alert, now).await,
        }
    }

    /// The alert, if it exists and belongs to `user`.
    pub async fn get_alert(&self, user: Uuid, id: Uuid) -> Result<Option<AlertRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::get_alert(p, user, id).await,
            Backend::Postgres(p) => postgres::get_alert(p, user, id).await,
        }
    }

    /// `user`'s alerts, oldest first, after the cursor, with optional filters.
    pub async fn list_alerts(
        &self,
        user: Uuid,
        query: &AlertQuery,
    ) -> Result<Vec<AlertRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::list_alerts(p, user, query).await,
            Backend::Postgres(p) => postgres::list_alerts(p, user, query).await,
        }
    }

    /// Replaces an alert's definition (and name, symbol, timeframe), enabling its disabled
    /// webhook actions again (the user fixed them). `None` if it is not `user`'s.
    pub async fn update_alert(
        &self,
        user: Uuid,
        id: Uuid,
        alert: &NewAlert,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, StoreError> {
        let alert = &*alert.without_nul();
        match &self.backend {
            Backend::Sqlite(p) => sqlite::update_alert(p, self.limits, user, id, alert, now).await,
            Backend::Postgres(p) => {
                postgres::update_alert(p, self.limits, user, id, alert, now).await
            }
        }
    }

    /// Sets an alert's status (pause, resume, …). Resuming checks the limits.
    pub async fn set_status(
        &self,
        user: Uuid,
        id: Uuid,
        status: AlertStatus,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::set_status(p, self.limits, user, id, status, now).await,
            Backend::Postgres(p) => {
                postgres::set_status(p, self.limits, user, id, status, now).await
            }
        }
    }

    /// Deletes an alert (its triggers, notifications, deliveries and disabled webhook actions
    /// go with it) and leaves a tombstone at `now` for [`Store::alert_changes`]. Returns
    /// whether it existed and was `user`'s.
    pub async fn delete_alert(
        &self,
        user: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::delete_alert(p, user, id, now).await,
            Backend::Postgres(p) => postgres::delete_alert(p, user, id, now).await,
        }
    }

    /// `user`'s triggers, newest first.
    pub async fn list_triggers(
        &self,
        user: Uuid,
        query: &TriggerQuery,
    ) -> Result<Vec<TriggerRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::list_triggers(p, user, query).await,
            Backend::Postgres(p) => postgres::list_triggers(p, user, query).await,
        }
    }

    /// `user`'s notifications, newest first.
    pub async fn list_notifications(
        &self,
        user: Uuid,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::list_notifications(p, user, limit).await,
            Backend::Postgres(p) => postgres::list_notifications(p, user, limit).await,
        }
    }

    /// Marks a notification read; `false` if it is not `user`'s.
    pub async fn mark_notification_read(
        &self,
        user: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::mark_notification_read(p, user, id, now).await,
            Backend::Postgres(p) => postgres::mark_notification_read(p, user, id, now).await,
        }
    }

    /// `user`'s webhook deliveries with their attempts, newest first.
    pub async fn list_deliveries(
        &self,
        user: Uuid,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::list_deliveries(p, user, limit).await,
            Backend::Postgres(p) => postgres::list_deliveries(p, user, limit).await,
        }
    }

    // ---- the runner (service) ----------------------------------------------------------

    /// Every active alert, streamed (never materialised as a whole).
    pub fn stream_active_alerts(&self) -> BoxStream<'_, Result<AlertRow, StoreError>> {
        self.stream_active_alerts_where(|_| true)
    }

    /// The active alerts whose symbol (as stored: upper-case) `keep` accepts, streamed; the
    /// others are dropped as their rows arrive, before their definitions are decoded (a
    /// shard's runner loads only its symbols' alerts).
    pub fn stream_active_alerts_where<'a, K>(
        &'a self,
        keep: K,
    ) -> BoxStream<'a, Result<AlertRow, StoreError>>
    where
        K: Fn(&str) -> bool + Send + 'a,
    {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::stream_active_alerts(p, keep),
            Backend::Postgres(p) => postgres::stream_active_alerts(p, keep),
        }
    }

    /// Alerts changed (created, updated, paused, resumed) and deleted at or after `since`,
    /// with the watermark to ask from next time. The window overlaps the previous one by
    /// `overlap` so rows committed late with an earlier timestamp are not missed; applying a
    /// change twice is harmless.
    pub async fn alert_changes(
        &self,
        since: DateTime<Utc>,
        overlap: Duration,
    ) -> Result<AlertChanges, StoreError> {
        self.alert_changes_where(since, overlap, |_, _, _, _| true)
            .await
    }

    /// [`Store::alert_changes`], returning whole rows only for the changes `wanted` chooses
    /// by (id, `updated_at`, status, symbol): the window is read as versions first, so rows
    /// the caller already holds at that version (or whose symbol another shard owns) are not
    /// read and parsed again (the watermark still covers every change seen).
    pub async fn alert_changes_where<F>(
        &self,
        since: DateTime<Utc>,
        overlap: Duration,
        wanted: F,
    ) -> Result<AlertChanges, StoreError>
    where
        F: Fn(Uuid, DateTime<Utc>, AlertStatus, &str) -> bool,
    {
        let from = since
            - chrono::Duration::from_std(overlap).unwrap_or_else(|_| chrono::Duration::seconds(5));
        match &self.backend {
            Backend::Sqlite(p) => sqlite::alert_changes(p, from, wanted).await,
            Backend::Postgres(p) => postgres::alert_changes(p, from, wanted).await,
        }
    }

    /// Records triggers, each with its notification and outbox rows (webhooks, bot orders), in
    /// one transaction; one [`Recorded`] per trigger, in order. A trigger whose (alert, bar) is
    /// already recorded (or earlier in the batch) writes nothing and is a
    /// [`Recorded::Duplicate`]. A trigger whose alert is deleted, no longer active (paused,
    /// spent, expired) or not `user_id`'s writes nothing and is [`Recorded::Skipped`]: the
    /// runner's view of that alert is stale; the rest of the batch is recorded. A `spend`
    /// trigger makes its alert `triggered`, so a `once` alert records one trigger even when
    /// several runners (or later triggers in the same batch) fire it. Safe to call
    /// concurrently with overlapping batches.
    pub async fn record_triggers(
        &self,
        batch: &[NewTrigger],
        now: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch = &*NewTrigger::batch_without_nul(batch);
        match &self.backend {
            Backend::Sqlite(p) => sqlite::record_triggers(p, batch, now).await,
            Backend::Postgres(p) => postgres::record_triggers(p, batch, now).await,
        }
    }

    /// The last bar each alert fired on (`max(bar_time)` per alert): what a restarted engine
    /// must remember so it never fires twice for one (alert, bar).
    pub async fn last_fired_bars(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::last_fired_bars(p).await,
            Backend::Postgres(p) => postgres::last_fired_bars(p).await,
        }
    }

    /// A session-level advisory lock on `key`, on a connection of its own (not the pool's),
    /// not yet taken: [`AdvisoryLock::try_acquire`] takes it, and it is held until the guard
    /// is dropped or released, or its connection drops (the owner died, PostgreSQL
    /// restarted) — [`AdvisoryLock::still_held`] tells. PostgreSQL only: SQLite has no
    /// advisory locks (and one SQLite file is not shared between machines).
    pub async fn advisory_lock(&self, key: i64) -> Result<AdvisoryLock, StoreError> {
        match &self.backend {
            Backend::Postgres(p) => AdvisoryLock::open(p, key).await,
            Backend::Sqlite(_) => Err(StoreError::Config(
                "advisory locks (shards) need PostgreSQL: DATABASE_URL is SQLite".into(),
            )),
        }
    }

    /// Marks alerts expired (their `expires_at` passed).
    pub async fn expire_alert(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::expire_alert(p, id, now).await,
            Backend::Postgres(p) => postgres::expire_alert(p, id, now).await,
        }
    }

    // ---- the outbox (service) -----------------------------------------------------------

    /// Claims up to `limit` due deliveries of the given `kinds` (earliest due first) for
    /// `worker` with a lease until `now + lease`; rows of other kinds stay pending (a process
    /// without a bot handler leaves bot orders to one that has). A delivery whose lease
    /// expired (its worker crashed) is claimed again. On PostgreSQL concurrent workers skip
    /// each other's rows (`FOR UPDATE SKIP LOCKED`).
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        kinds: &[DeliveryKind],
        limit: u32,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, StoreError> {
        let kinds: Vec<DeliveryKind> = DeliveryKind::ALL
            .into_iter()
            .filter(|k| kinds.contains(k))
            .collect();
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let until = now
            + chrono::Duration::from_std(lease).unwrap_or_else(|_| chrono::Duration::seconds(60));
        match &self.backend {
            Backend::Sqlite(p) => {
                sqlite::claim_deliveries(p, worker, &kinds, limit, now, until).await
            }
            Backend::Postgres(p) => {
                postgres::claim_deliveries(p, worker, &kinds, limit, now, until).await
            }
        }
    }

    /// Records an attempt and its outcome for a delivery `worker` holds the lease of. Returns
    /// `false` (writing nothing) if the lease was lost to another worker.
    pub async fn complete_delivery(
        &self,
        id: Uuid,
        worker: &str,
        attempt: &AttemptRecord,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let attempt = &*attempt.without_nul();
        match &self.backend {
            Backend::Sqlite(p) => sqlite::complete_delivery(p, id, worker, attempt, now).await,
            Backend::Postgres(p) => postgres::complete_delivery(p, id, worker, attempt, now).await,
        }
    }

    /// Puts a delivery `worker` holds the lease of back in the queue until `until` without
    /// counting an attempt (nothing was sent: say, the receiver's host has as many requests
    /// in flight as it may). Returns `false` (writing nothing) if the lease was lost.
    pub async fn defer_delivery(
        &self,
        id: Uuid,
        worker: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::defer_delivery(p, id, worker, until, now).await,
            Backend::Postgres(p) => postgres::defer_delivery(p, id, worker, until, now).await,
        }
    }

    /// Disables webhook action `action_index` of alert `alert_id` (its receiver said 410
    /// Gone), and in the same transaction cancels that action's pending deliveries (with
    /// `reason` as their last error) but those a worker holds a live lease on: that worker
    /// completes its own. Later claims of the action's deliveries say
    /// [`Delivery::disabled`]. Disabling again updates the reason; a deleted alert is a no-op.
    /// Replacing the alert ([`Store::update_alert`]) enables its webhooks again.
    pub async fn disable_webhook(
        &self,
        alert_id: Uuid,
        action_index: i32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reason = &*model::text_without_nul(reason);
        match &self.backend {
            Backend::Sqlite(p) => {
                sqlite::disable_webhook(p, alert_id, action_index, reason, now).await
            }
            Backend::Postgres(p) => {
                postgres::disable_webhook(p, alert_id, action_index, reason, now).await
            }
        }
    }

    /// The disabled webhook actions of `user`'s alert `alert_id` (none if it is not theirs),
    /// by action index.
    pub async fn disabled_webhooks(
        &self,
        user: Uuid,
        alert_id: Uuid,
    ) -> Result<Vec<DisabledWebhook>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::disabled_webhooks(p, user, alert_id).await,
            Backend::Postgres(p) => postgres::disabled_webhooks(p, user, alert_id).await,
        }
    }

    /// `user`'s webhook signing secrets, created as `candidate` if the user has none yet (two
    /// concurrent calls create one, and both return it). The previous secret is returned
    /// while its grace period after a rotation lasts (`previous_expires_at > now`). The
    /// caller generates candidates: the store does no cryptography.
    pub async fn webhook_secret(
        &self,
        user: Uuid,
        candidate: &str,
        now: DateTime<Utc>,
    ) -> Result<WebhookSecrets, StoreError> {
        let candidate = &*model::text_without_nul(candidate);
        match &self.backend {
            Backend::Sqlite(p) => sqlite::webhook_secret(p, user, candidate, now).await,
            Backend::Postgres(p) => postgres::webhook_secret(p, user, candidate, now).await,
        }
    }

    /// Rotates `user`'s webhook signing secret: `candidate` becomes current, the current one
    /// becomes the previous one, valid until `now + grace` (the secret is created if the user
    /// has none; there is no previous one then).
    pub async fn rotate_webhook_secret(
        &self,
        user: Uuid,
        candidate: &str,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> Result<WebhookSecrets, StoreError> {
        let candidate = &*model::text_without_nul(candidate);
        let expires = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|g| now.checked_add_signed(g))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        match &self.backend {
            Backend::Sqlite(p) => {
                sqlite::rotate_webhook_secret(p, user, candidate, expires, now).await
            }
            Backend::Postgres(p) => {
                postgres::rotate_webhook_secret(p, user, candidate, expires, now).await
            }
        }
    }

    /// Puts a finished delivery back in the queue (the API's "redeliver"); `false` if it is
    /// not `user`'s.
    pub async fn redeliver(
        &self,
        user: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::redeliver(p, user, id, now).await,
            Backend::Postgres(p) => postgres::redeliver(p, user, id, now).await,
        }
    }

    /// Counts deliveries by status (for metrics and the backlog).
    pub async fn delivery_counts(&self) -> Result<DeliveryCounts, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::delivery_counts(p).await,
            Backend::Postgres(p) => postgres::delivery_counts(p).await,
        }
    }

    // ---- live feeds, scoped to a user ----------------------------------------------------

    /// `user`'s triggers recorded after `after`, oldest first: ordered by (recorded time,
    /// id), those strictly after the cursor (its time in microseconds, compared exactly also
    /// on SQLite, which keeps milliseconds). With each, when it was recorded. What a live
    /// client that reconnects catches up with.
    pub async fn triggers_since(
        &self,
        user: Uuid,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<RecordedTrigger>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::triggers_since(p, user, after, limit).await,
            Backend::Postgres(p) => postgres::triggers_since(p, user, after, limit).await,
        }
    }

    /// `user`'s notifications created after `after`, oldest first: ordered by (created_at,
    /// id), those strictly after the cursor (as [`Store::triggers_since`]). A notification is
    /// created with its trigger: both have the same time.
    pub async fn notifications_since(
        &self,
        user: Uuid,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlite::notifications_since(p, user, after, limit).await,
            Backend::Postgres(p) => postgres::notifications_since(p, user, after, limit).await,
        }
    }

    // ---- DCA bots ------------------------------------------------------------------------

    /// Creates a bot and all its alerts in one transaction (the active ones count toward the
    /// alert limits; nothing is written if one is refused).
    pub async fn create_bot(
        &self,
        user: Uuid,
        bot: &NewBot,
        now: DateTime<Utc>,
    ) -> Result<BotRow, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::create_bot(p, self.limits, user, bot, now).await,
            Backend::Postgres(p) => {
                bots::postgres::create_bot(p, self.limits, user, bot, now).await
            }
        }
    }

    /// Replaces a bot (`bot.id`) and all its alerts in one transaction; `None` if it is not
    /// `user`'s. With `in_deal` `None`, only while no deal is open ([`StoreError::Conflict`]
    /// otherwise); with `Some(version)` (a change allowed during a deal, its alerts computed
    /// from the open deal of that version), only while that deal is open and the bot still at
    /// `version` ([`StoreError::Stale`] otherwise).
    pub async fn replace_bot(
        &self,
        user: Uuid,
        bot: &NewBot,
        in_deal: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Option<BotRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => {
                bots::sqlite::replace_bot(p, self.limits, user, bot, in_deal, now).await
            }
            Backend::Postgres(p) => {
                bots::postgres::replace_bot(p, self.limits, user, bot, in_deal, now).await
            }
        }
    }

    /// `user`'s bot orders recorded after `after`, oldest first: ordered by (created_at, id)
    /// as [`Store::triggers_since`]. What a live client that reconnects catches up with.
    pub async fn bot_orders_since(
        &self,
        user: Uuid,
        after: Cursor,
        limit: u32,
    ) -> Result<Vec<BotOrderRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::bot_orders_since(p, user, after, limit).await,
            Backend::Postgres(p) => bots::postgres::bot_orders_since(p, user, after, limit).await,
        }
    }

    /// The bot, if it exists and is `user`'s.
    pub async fn get_bot(&self, user: Uuid, id: Uuid) -> Result<Option<BotRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::get_bot(p, user, id).await,
            Backend::Postgres(p) => bots::postgres::get_bot(p, user, id).await,
        }
    }

    /// `user`'s bots, oldest first.
    pub async fn list_bots(&self, user: Uuid) -> Result<Vec<BotRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::list_bots(p, user).await,
            Backend::Postgres(p) => bots::postgres::list_bots(p, user).await,
        }
    }

    /// The bot's alerts with their roles (empty if the bot is not `user`'s).
    pub async fn bot_alerts(&self, user: Uuid, bot: Uuid) -> Result<Vec<BotAlertRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::bot_alerts(p, user, bot).await,
            Backend::Postgres(p) => bots::postgres::bot_alerts(p, user, bot).await,
        }
    }

    /// Deletes the bot with its alerts (tombstones at `now`), deals and orders.
    pub async fn delete_bot(
        &self,
        user: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::delete_bot(p, user, id, now).await,
            Backend::Postgres(p) => bots::postgres::delete_bot(p, user, id, now).await,
        }
    }

    /// Sets the bot's status and applies `updates` (computed from the bot at
    /// `expected_version`) to its alerts, in one transaction; [`StoreError::Stale`] if the bot
    /// changed since.
    pub async fn set_bot_status(
        &self,
        user: Uuid,
        id: Uuid,
        status: BotStatus,
        updates: &[BotAlertUpdate],
        expected_version: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<BotRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => {
                bots::sqlite::set_bot_status(p, user, id, status, updates, expected_version, now)
                    .await
            }
            Backend::Postgres(p) => {
                bots::postgres::set_bot_status(p, user, id, status, updates, expected_version, now)
                    .await
            }
        }
    }

    /// Records a fill with its deal, alert changes and deal counter in one transaction, once
    /// per client order id, and only while the bot is at the fill's `expected_version`
    /// ([`FillRecorded::Stale`] otherwise) (service path).
    pub async fn record_bot_fill(
        &self,
        fill: &BotFill,
        now: DateTime<Utc>,
    ) -> Result<FillRecorded, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::record_bot_fill(p, fill, now).await,
            Backend::Postgres(p) => bots::postgres::record_bot_fill(p, fill, now).await,
        }
    }

    /// The bot (service path).
    pub async fn bot_by_id(&self, bot: Uuid) -> Result<Option<BotRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::bot_by_id(p, bot).await,
            Backend::Postgres(p) => bots::postgres::bot_by_id(p, bot).await,
        }
    }

    /// The bot's open deal (service path).
    pub async fn open_deal(&self, bot: Uuid) -> Result<Option<DealRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::open_deal(p, bot).await,
            Backend::Postgres(p) => bots::postgres::open_deal(p, bot).await,
        }
    }

    /// The bot's deals, by number.
    pub async fn list_deals(&self, user: Uuid, bot: Uuid) -> Result<Vec<DealRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::list_deals(p, user, bot).await,
            Backend::Postgres(p) => bots::postgres::list_deals(p, user, bot).await,
        }
    }

    /// The bot's orders, oldest first.
    pub async fn list_bot_orders(
        &self,
        user: Uuid,
        bot: Uuid,
    ) -> Result<Vec<BotOrderRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => bots::sqlite::list_bot_orders(p, user, bot).await,
            Backend::Postgres(p) => bots::postgres::list_bot_orders(p, user, bot).await,
        }
    }
}
