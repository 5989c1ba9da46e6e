//! PostgreSQL only: row-level security proven by SQL, migrations on a Supabase-like database,
//! the service path as a non-superuser table owner, and `FOR UPDATE SKIP LOCKED` claims.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use alert_store::{AttemptOutcome, AttemptRecord, Recorded, Store, StoreError, StoreOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use common::{ALL, Backend, TestDb, TestResult, at, create, hour, trigger};

const TABLES: [&str; 11] = [
    "alerts",
    "alert_tombstones",
    "alert_triggers",
    "notifications",
    "webhook_deliveries",
    "webhook_attempts",
    "disabled_webhooks",
    "webhook_secrets",
    "bots",
    "bot_deals",
    "bot_orders",
];

/// One user's rows in every table, made through the store (the service path for the runner's
/// and dispatcher's writes).
struct Seeded {
    alert: Uuid,
    trigger: Uuid,
    delivery: Uuid,
    bot: Uuid,
    deal: Uuid,
}

async fn seed(store: &Store, user: Uuid) -> Seeded {
    let alert = create(store, user, "kept", "BTCUSDT").await;
    let other = create(store, user, "also kept", "ETHUSDT").await;
    let doomed = create(store, user, "deleted", "BTCUSDT").await;
    assert!(store.delete_alert(user, doomed.id, at(1)).await.unwrap());
    let r = store
        .record_triggers(
            &[
                trigger(&alert, hour(1), 1),
                trigger(&alert, hour(2), 1),
                trigger(&other, hour(1), 1),
            ],
            at(2),
        )
        .await
        .unwrap();
    let Recorded::New { trigger_id, .. } = r[0] else {
        panic!("{r:?}")
    };
    let worker = format!("w-{user}");
    let mut delivery = None;
    loop {
        let claimed = store
            .claim_deliveries(&worker, ALL, 100, StdDuration::from_secs(60), at(3))
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        for d in claimed {
            if d.trigger_id == trigger_id {
                delivery = Some(d.id);
            }
            let a = AttemptRecord {
                status_code: Some(500),
                error: Some("HTTP 500".into()),
                duration_ms: 5,
                outcome: AttemptOutcome::Retry { at: at(100) },
                response: None,
            };
            assert!(
                store
                    .complete_delivery(d.id, &worker, &a, at(4))
                    .await
                    .unwrap()
            );
        }
    }
    // A disabled webhook action (one with no deliveries: nothing is cancelled) and a signing
    // secret (the user path).
    store
        .disable_webhook(alert.id, 7, "410 Gone", at(5))
        .await
        .unwrap();
    let secret = store
        .webhook_secret(user, &format!("whsec_{user}"), at(5))
        .await
        .unwrap();
    assert_eq!(secret.current, format!("whsec_{user}"));
    // A bot with two alerts, a deal and an order (the user path, then the service path).
    let (bot, deal) = seed_bot(store, user).await;
    Seeded {
        alert: alert.id,
        trigger: trigger_id,
        delivery: delivery.expect("a delivery for the trigger"),
        bot,
        deal,
    }
}

async fn seed_bot(store: &Store, user: Uuid) -> (Uuid, Uuid) {
    let alert = |role: &str, status| alert_store::NewBotAlert {
        role: role.into(),
        alert: alert_store::NewAlert {
            status,
            ..common::new_alert(role, "SOLUSDT")
        },
    };
    let bot = store
        .create_bot(
            user,
            &alert_store::NewBot {
                id: Uuid::new_v4(),
                name: "dca".into(),
                pair: alert_core::Symbol::new("SOLUSDT").unwrap(),
                timeframe: alert_core::Timeframe::H1,
                definition: serde_json::json!({}),
                alerts: vec![
                    alert("entry", alert_store::AlertStatus::Active),
                    alert("tp", alert_store::AlertStatus::Paused),
                ],
            },
            at(6),
        )
        .await
        .unwrap();
    let fill = alert_store::BotFill {
        bot_id: bot.id,
        user_id: user,
        order: alert_store::NewBotOrder {
            client_order_id: format!("order-{user}"),
            role: "entry".into(),
            side: "buy".into(),
            price: 1.0,
            base_qty: 1.0,
            notional: 1.0,
            fee: 0.0,
            average_price: 1.0,
            realized_pnl: None,
        },
        deal: alert_store::DealWrite {
            number: 1,
            open: true,
            opened_at: at(7),
            closed_at: None,
            entry_price: 1.0,
            base_qty: 1.0,
            cost: 1.0,
            fees: 0.0,
            filled: Vec::new(),
            exit: None,
            realized_pnl: None,
        },
        alerts: Vec::new(),
        deals_opened: 1,
        expected_version: bot.version,
    };
    let alert_store::FillRecorded::New { deal_id, .. } =
        store.record_bot_fill(&fill, at(7)).await.unwrap()
    else {
        panic!("fill not recorded")
    };
    (bot.id, deal_id)
}

/// A transaction as PostgREST runs a request: role `authenticated`, the JWT's claims set.
async fn as_authenticated<'c>(
    conn: &'c mut PgConnection,
    user: Option<Uuid>,
) -> Transaction<'c, Postgres> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    if let Some(u) = user {
        let claims = serde_json::json!({"sub": u, "role": "authenticated"}).to_string();
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(claims)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx
}

async fn count_in(tx: &mut PgConnection, table: &str, filter: &str, user: Uuid) -> i64 {
    let sql = format!("SELECT count(*) FROM {table} WHERE {filter}");
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(user)
        .fetch_one(tx)
        .await
        .unwrap()
}

/// An INSERT into `table` of a row owned by `owner`, referring to `a`'s rows where it must.
fn insert_sql(table: &str) -> &'static str {
    match table {
        "alerts" => {
            "INSERT INTO alerts (user_id, name, symbol, base_timeframe, definition) \
             VALUES ($1, 'x', 'BTCUSDT', '1h', '{}')"
        }
        "alert_tombstones" => {
            "INSERT INTO alert_tombstones (alert_id, user_id) VALUES (gen_random_uuid(), $1)"
        }
        "alert_triggers" => {
            "INSERT INTO alert_triggers (alert_id, user_id, symbol, bar_time, fired_at, snapshot) \
             VALUES ($2, $1, 'BTCUSDT', '2030-01-01', '2030-01-01', '{}')"
        }
        "notifications" => {
            "INSERT INTO notifications (user_id, alert_id, trigger_id, title, body) \
             VALUES ($1, $2, $3, 't', 'b')"
        }
        "webhook_deliveries" => {
            "INSERT INTO webhook_deliveries (trigger_id, alert_id, user_id, action_index, url, payload) \
             VALUES ($3, $2, $1, 99, 'https://example.com', '{}')"
        }
        "webhook_attempts" => {
            "INSERT INTO webhook_attempts (delivery_id, user_id, attempt, attempted_at, duration_ms) \
             VALUES ($4, $1, 99, now(), 1)"
        }
        "disabled_webhooks" => {
            "INSERT INTO disabled_webhooks (alert_id, action_index, user_id, reason, disabled_at) \
             VALUES ($2, 98, $1, '410 Gone', now())"
        }
        // The user has a secret already: an upsert, so the own insert affects one row.
        "webhook_secrets" => {
            "INSERT INTO webhook_secrets (user_id, secret) VALUES ($1, 'whsec_x') \
             ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret"
        }
        "bots" => {
            "INSERT INTO bots (user_id, name, pair, timeframe, definition) \
             VALUES ($1, 'x', 'BTCUSDT', '1h', '{}')"
        }
        "bot_deals" => {
            "INSERT INTO bot_deals (bot_id, user_id, number, status, opened_at, entry_price, \
             base_qty, cost, fees) VALUES ($5, $1, 99, 'closed', now(), 1, 1, 1, 0)"
        }
        "bot_orders" => {
            "INSERT INTO bot_orders (bot_id, deal_id, user_id, client_order_id, role, side, \
             price, base_qty, notional, fee) \
             VALUES ($5, $6, $1, gen_random_uuid()::text, 'entry', 'buy', 1, 1, 1, 0)"
        }
        other => panic!("no insert for {other}"),
    }
}

async fn try_insert(
    conn: &mut PgConnection,
    as_user: Uuid,
    table: &str,
    owner: Uuid,
    refs: &Seeded,
) -> Result<u64, sqlx::Error> {
    let mut tx = as_authenticated(conn, Some(as_user)).await;
    let r = sqlx::query(insert_sql(table))
        .bind(owner)
        .bind(refs.alert)
        .bind(refs.trigger)
        .bind(refs.delivery)
        .bind(refs.bot)
        .bind(refs.deal)
        .execute(&mut *tx)
        .await
        .map(|r| r.rows_affected());
    tx.rollback().await.unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_scopes_every_table_to_the_claimed_user() -> TestResult {
    let db = TestDb::new(Backend::Postgres).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let sa = seed(&db.store, a).await;
    let sb = seed(&db.store, b).await;
    let mut conn = PgConnection::connect(&db.url).await?;

    for table in TABLES {
        let (mine, theirs) = (db.count_of(table, a).await, db.count_of(table, b).await);
        assert!(mine > 0 && theirs > 0, "{table}: both users have rows");

        // A sees exactly A's rows.
        let mut tx = as_authenticated(&mut conn, Some(a)).await;
        assert_eq!(
            count_in(&mut tx, table, "$1::uuid IS NOT NULL", a).await,
            mine,
            "{table}"
        );
        assert_eq!(
            count_in(&mut tx, table, "user_id <> $1", a).await,
            0,
            "{table}"
        );
        // UPDATE and DELETE of B's rows touch nothing.
        let sql = format!("UPDATE {table} SET user_id = user_id WHERE user_id = $1");
        let n = sqlx::query(AssertSqlSafe(sql))
            .bind(b)
            .execute(&mut *tx)
            .await?;
        assert_eq!(n.rows_affected(), 0, "{table}: update of B's rows");
        let sql = format!("DELETE FROM {table} WHERE user_id = $1");
        let n = sqlx::query(AssertSqlSafe(sql))
            .bind(b)
            .execute(&mut *tx)
            .await?;
        assert_eq!(n.rows_affected(), 0, "{table}: delete of B's rows");
        // An unqualified UPDATE reaches only A's rows.
        let sql = format!("UPDATE {table} SET user_id = user_id");
        let n = sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        assert_eq!(
            n.rows_affected(),
            mine as u64,
            "{table}: unqualified update"
        );
        tx.rollback().await?;

        // A cannot give one of its rows to B.
        let mut tx = as_authenticated(&mut conn, Some(a)).await;
        let sql = format!("UPDATE {table} SET user_id = $2 WHERE user_id = $1");
        let err = sqlx::query(AssertSqlSafe(sql))
            .bind(a)
            .bind(b)
            .execute(&mut *tx)
            .await
            .expect_err("moving a row to another user");
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
        tx.rollback().await?;

        // A can insert its own rows (so the refusal below is RLS, not a missing grant)...
        let n = try_insert(&mut conn, a, table, a, &sa).await?;
        assert_eq!(n, 1, "{table}: own insert");
        // ...but not B's.
        let err = try_insert(&mut conn, a, table, b, &sa)
            .await
            .expect_err("inserting another user's row");
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{table}: {err}");
        assert!(
            err.to_string().contains("row-level security"),
            "{table}: {err}"
        );

        // Nothing of B's changed.
        assert_eq!(db.count_of(table, b).await, theirs, "{table}");
        assert_eq!(db.count_of(table, a).await, mine, "{table}");
    }
    // B's own view, the other way round.
    let mut tx = as_authenticated(&mut conn, Some(b)).await;
    for table in TABLES {
        assert_eq!(
            count_in(&mut tx, table, "user_id = $1", a).await,
            0,
            "{table}"
        );
    }
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM alerts")
        .fetch_all(&mut *tx)
        .await?;
    assert!(!ids.contains(&sa.alert));
    assert!(ids.iter().all(|id| *id != sa.alert));
    let seen: Option<Uuid> = sqlx::query_scalar("SELECT id FROM webhook_deliveries WHERE id = $1")
        .bind(sb.delivery)
        .fetch_optional(&mut *tx)
        .await?;
    assert_eq!(seen, Some(sb.delivery));
    tx.rollback().await?;
    conn.close().await?;
    // The store's user calls on the dispatch tables (as `authenticated`): B gets none of A's.
    assert!(db.store.disabled_webhooks(b, sa.alert).await?.is_empty());
    assert_eq!(db.store.disabled_webhooks(a, sa.alert).await?.len(), 1);
    let theirs = db.store.webhook_secret(b, "whsec_new", at(6)).await?;
    assert_eq!(theirs.current, format!("whsec_{b}"));
    Ok(())
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_without_claims_sees_nothing_and_service_role_sees_all() -> TestResult {
    let db = TestDb::new(Backend::Postgres).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    seed(&db.store, a).await;
    seed(&db.store, b).await;
    // One connection throughout: a claim set for one transaction leaves an empty (not absent)
    // setting behind, which must read as "no user", not fail.
    let mut conn = PgConnection::connect(&db.url).await?;
    for round in 0..2 {
        let mut tx = as_authenticated(&mut conn, None).await;
        for table in TABLES {
            let n = count_in(&mut tx, table, "$1::uuid IS NOT NULL", a).await;
            assert_eq!(n, 0, "round {round}: {table} without claims");
        }
        let uid: Option<Uuid> = sqlx::query_scalar("SELECT auth.uid()")
            .fetch_one(&mut *tx)
            .await?;
        assert_eq!(uid, None);
        tx.rollback().await?;
        // A request with claims on the same connection, then none again.
        let mut tx = as_authenticated(&mut conn, Some(a)).await;
        let uid: Option<Uuid> = sqlx::query_scalar("SELECT auth.uid()")
            .fetch_one(&mut *tx)
            .await?;
        assert_eq!(uid, Some(a));
        tx.commit().await?;
    }
    // An unknown user sees nothing either.
    let mut tx = as_authenticated(&mut conn, Some(Uuid::new_v4())).await;
    for table in TABLES {
        assert_eq!(
            count_in(&mut tx, table, "$1::uuid IS NOT NULL", a).await,
            0,
            "{table}"
        );
    }
    tx.rollback().await?;
    // The older PostgREST setting, `request.jwt.claim.sub`, is honoured too.
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('request.jwt.claim.sub', $1, true)")
        .bind(b.to_string())
        .execute(&mut *tx)
        .await?;
    let n = count_in(&mut tx, "alerts", "user_id = $1", b).await;
    assert_eq!(n, db.count_of("alerts", b).await);
    assert_eq!(count_in(&mut tx, "alerts", "user_id = $1", a).await, 0);
    tx.rollback().await?;

    // service_role bypasses RLS: every row of every user.
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL ROLE service_role")
        .execute(&mut *tx)
        .await?;
    let bypass: bool =
        sqlx::query_scalar("SELECT rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut *tx)
            .await?;
    assert!(bypass);
    for table in TABLES {
        let all = db.count(table).await;
        assert_eq!(
            count_in(&mut tx, table, "$1::uuid IS NOT NULL", a).await,
            all,
            "{table}"
        );
        assert!(count_in(&mut tx, table, "user_id = $1", a).await > 0);
        assert!(count_in(&mut tx, table, "user_id <> $1", a).await > 0);
    }
    tx.rollback().await?;
    conn.close().await?;
    Ok(())
}

/// The policies are in place on every table, for the `authenticated` role, and RLS is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_policies_exist_on_every_table() -> TestResult {
    let db = TestDb::new(Backend::Postgres).await;
    let pool = db.store.pg_pool().unwrap();
    for table in TABLES {
        let on: bool =
            sqlx::query_scalar("SELECT relrowsecurity FROM pg_class WHERE oid = $1::regclass")
                .bind(table)
                .fetch_one(pool)
                .await?;
        assert!(on, "{table}: RLS enabled");
        let cmds: Vec<String> = sqlx::query_scalar(
            "SELECT cmd FROM pg_policies WHERE tablename = $1 AND 'authenticated' = ANY(roles) ORDER BY cmd",
        )
        .bind(table)
        .fetch_all(pool)
        .await?;
        assert_eq!(cmds, ["DELETE", "INSERT", "SELECT", "UPDATE"], "{table}");
    }
    Ok(())
}

/// A database that already has Supabase's `auth` schema, `auth.uid()` and roles: the
/// migrations apply without error and keep Supabase's function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_on_a_supabase_like_database() -> TestResult {
    let (url, _guard) = common::fresh_database(Backend::Postgres).await;
    let mut conn = PgConnection::connect(&url).await?;
    sqlx::raw_sql(
        r#"
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
                BEGIN CREATE ROLE anon NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
                BEGIN CREATE ROLE authenticated NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
                BEGIN CREATE ROLE service_role NOLOGIN BYPASSRLS; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
            END IF;
        END
        $$;
        CREATE SCHEMA auth;
        CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
        CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$
            -- supabase's own auth.uid()
            SELECT coalesce(
                nullif(current_setting('request.jwt.claim.sub', true), ''),
                (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
            )::uuid
        $fn$;
        CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $fn$
            SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
        $fn$;
        "#,
    )
    .execute(&mut conn)
    .await?;

    let store = Store::connect(&url, StoreOptions::default()).await?;
    store.migrate().await?;
    let again = Store::connect(&url, StoreOptions::default()).await?;
    again.close().await;

    let src: Vec<String> = sqlx::query_scalar(
        "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'auth' AND p.proname = 'uid'",
    )
    .fetch_all(&mut conn)
    .await?;
    assert_eq!(src.len(), 1);
    assert!(
        src[0].contains("supabase's own auth.uid()"),
        "kept: {}",
        src[0]
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.users")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(users, 0, "auth.users untouched");

    // The store works on it, scoped by Supabase's function.
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let sa = seed(&store, a).await;
    seed(&store, b).await;
    assert!(store.get_alert(b, sa.alert).await?.is_none());
    assert!(store.get_alert(a, sa.alert).await?.is_some());
    let mut tx = as_authenticated(&mut conn, Some(a)).await;
    for table in TABLES {
        assert_eq!(
            count_in(&mut tx, table, "user_id <> $1", a).await,
            0,
            "{table}"
        );
        assert!(
            count_in(&mut tx, table, "user_id = $1", a).await > 0,
            "{table}"
        );
    }
    tx.rollback().await?;
    store.close().await;
    conn.close().await?;
    Ok(())
}

/// `url` with its user replaced.
fn with_user(url: &str, user: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let host = rest.find('@').map_or(rest, |i| &rest[i + 1..]);
    format!("{}{user}@{host}", &url[..scheme_end])
}

/// Drops a login role at the end (after the database it owns: declare it first).
struct RoleGuard {
    admin: String,
    role: String,
}

impl Drop for RoleGuard {
    fn drop(&mut self) {
        let (admin, role) = (self.admin.clone(), self.role.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                        "DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\""
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Production on Supabase connects as `postgres`, which owns the tables, is not a superuser,
/// and bypasses RLS. With RLS forced, the service path (runner, dispatcher) still writes as
/// such a role, and user-facing calls still switch to `authenticated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_path_works_as_a_non_superuser_owner() -> TestResult {
    let admin = common::admin_url();
    let role = format!("alert_owner_{}", Uuid::new_v4().simple());
    let _role_guard = RoleGuard {
        admin: admin.clone(),
        role: role.clone(),
    };
    let (url, _db_guard) = common::fresh_database(Backend::Postgres).await;
    let db = url.rsplit('/').next().unwrap().to_owned();
    let mut su = PgConnection::connect(&admin).await?;
    // CREATEROLE (as Supabase's postgres has) but not yet a member of `authenticated`: the
    // migrations grant it.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN NOSUPERUSER BYPASSRLS CREATEROLE; \
         ALTER DATABASE \"{db}\" OWNER TO \"{role}\";"
    )))
    .execute(&mut su)
    .await?;
    let mut su_db = PgConnection::connect(&url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER SCHEMA public OWNER TO \"{role}\""
    )))
    .execute(&mut su_db)
    .await?;

    let owner_url = with_user(&url, &role);
    let store = Store::connect(&owner_url, StoreOptions::default()).await?;
    let (is_super, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(store.pg_pool().unwrap())
            .await?;
    assert!(
        !is_super && bypass,
        "connected as a non-superuser owner that bypasses RLS"
    );

    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let sa = seed(&store, a).await; // user calls as `authenticated`; service writes as owner
    seed(&store, b).await;
    assert!(store.get_alert(b, sa.alert).await?.is_none());
    let changes = store.alert_changes(at(0), StdDuration::ZERO).await?;
    assert_eq!(
        changes.deleted.len(),
        2,
        "tombstones written by the delete trigger"
    );
    // Two alerts and a bot's two alerts, for each user.
    assert_eq!(changes.changed.len(), 8);
    assert_eq!(store.delivery_counts().await?.pending, 6);
    let ds = store.list_deliveries(a, 0).await?;
    assert_eq!(ds.len(), 3);
    assert!(ds.iter().all(|d| d.attempt_log.len() == 1));

    // RLS is forced: the owner is scoped like anyone else; only its BYPASSRLS lets it write.
    let forced: bool = sqlx::query_scalar(
        "SELECT relforcerowsecurity FROM pg_class WHERE relname = 'alert_triggers'",
    )
    .fetch_one(&mut su_db)
    .await?;
    assert!(forced, "row-level security is forced");
    store.close().await;
    su_db.close().await?;
    su.close().await?;
    Ok(())
}

/// Two workers claiming at once never get the same delivery; a row locked by one claim is
/// skipped (not waited for) by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_skip_locked_rows() -> TestResult {
    let db = TestDb::new(Backend::Postgres).await;
    let s = &db.store;
    let a = Uuid::new_v4();
    let mut alerts = Vec::new();
    for i in 0..100 {
        alerts.push(create(s, a, &format!("a{i}"), "BTCUSDT").await);
    }
    let batch: Vec<_> = alerts.iter().map(|al| trigger(al, hour(1), 5)).collect();
    s.record_triggers(&batch, at(0)).await?;

    // A row locked by an open transaction (a claim in flight) is skipped without waiting.
    let mut conn = PgConnection::connect(&db.url).await?;
    let mut tx = conn.begin().await?;
    let locked: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries ORDER BY next_attempt_at, id LIMIT 3 FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let got = tokio::time::timeout(
        StdDuration::from_secs(5),
        s.claim_deliveries("w0", ALL, 10, StdDuration::from_secs(60), at(1)),
    )
    .await
    .expect("claim does not wait for locked rows")?;
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|d| !locked.contains(&d.id)));
    tx.rollback().await?;
    conn.close().await?;

    // Two workers, each with a pool of its own, racing for the rest.
    let mut tasks = Vec::new();
    for w in ["w1", "w2"] {
        let store = db.connect(StoreOptions::default()).await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let c = store
                    .claim_deliveries(w, ALL, 5, StdDuration::from_secs(60), at(1))
                    .await?;
                if c.is_empty() {
                    break;
                }
                got.extend(c.into_iter().map(|d| d.id));
            }
            store.close().await;
            Ok::<_, StoreError>(got)
        }));
    }
    let mut all: Vec<Uuid> = got.iter().map(|d| d.id).collect();
    let mut per_worker = Vec::new();
    for t in tasks {
        let ids = t.await??;
        per_worker.push(ids.len());
        all.extend(ids);
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 500, "per worker: {per_worker:?}");
    assert_eq!(unique.len(), 500);
    Ok(())
}
