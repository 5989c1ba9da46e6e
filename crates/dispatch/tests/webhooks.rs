//! Webhook delivery end to end: a store's outbox → the dispatcher → real HTTP receivers on
//! 127.0.0.1, signatures checked by the Standard Webhooks reference crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../store/tests/common/mod.rs"]
mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alert_dispatch::{
    AddressPolicy, BotAction, BotError, BotHandler, DispatchConfig, Dispatcher, RetryPolicy,
};
use alert_store::{AlertRow, DeliveryKind, NewDelivery, NewTrigger, Recorded, Store};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use common::{Backend, TestDb, create, hour};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// ---- a receiver ----------------------------------------------------------------------------

/// What the receiver does with the next request on a path.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    /// Holds the request this long, then answers 200.
    Hang(Duration),
    Body(u16, String),
}

#[derive(Clone, Debug)]
struct Received {
    path: String,
    id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: Bytes,
    at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    received: Mutex<Vec<Received>>,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener).await
    }

    async fn serve(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .script
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    fn received(&self, path: &str) -> Vec<Received> {
        let all = self.state.received.lock().unwrap();
        all.iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    state.received.lock().unwrap().push(Received {
        path: path.clone(),
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body,
        at: Instant::now(),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::RetryAfter(code, secs) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", secs.to_string())],
        )
            .into_response(),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Reply::Body(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
    }
}

// ---- harness -------------------------------------------------------------------------------

fn config() -> DispatchConfig {
    DispatchConfig {
        poll: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
        lease: Duration::from_secs(5),
        retry: RetryPolicy {
            schedule: vec![Duration::from_millis(50); 5],
            jitter: 0.0,
            ..RetryPolicy::default()
        },
        policy: AddressPolicy {
            allow_private: true,
            allowed_ports: None,
        },
        defer: Duration::from_millis(50),
        ..DispatchConfig::default()
    }
}

struct Running {
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.unwrap();
    }
}

fn spawn(store: &Store, config: DispatchConfig, bots: Option<Arc<dyn BotHandler>>) -> Running {
    let dispatcher = Dispatcher::new(store.clone(), config, bots).unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(dispatcher.run(cancel.clone()));
    Running { cancel, handle }
}

fn webhook(i: i32, url: &str, secret: Option<&str>, payload: &str) -> NewDelivery {
    NewDelivery {
        action_index: i,
        kind: DeliveryKind::Webhook,
        url: url.to_owned(),
        secret: secret.map(str::to_owned),
        payload: payload.to_owned(),
    }
}

/// Records a trigger of `alert` at bar `h` hours with `deliveries`; returns the trigger id.
async fn fire(store: &Store, alert: &AlertRow, h: i64, deliveries: Vec<NewDelivery>) -> Uuid {
    let trigger = NewTrigger {
        alert_id: alert.id,
        user_id: alert.user_id,
        symbol: alert.symbol.clone(),
        bar_time: hour(h),
        fired_at: hour(h + 1),
        snapshot: serde_json::json!({"close": 101.5}),
        notification: None,
        deliveries,
        spend: false,
    };
    match store.record_triggers(&[trigger], Utc::now()).await.unwrap()[0] {
        Recorded::New { trigger_id, .. } => trigger_id,
        other => panic!("not recorded: {other:?}"),
    }
}

async fn eventually<F: FnMut() -> bool>(what: &str, limit: Duration, mut done: F) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn deliveries(store: &Store, user: Uuid) -> Vec<alert_store::DeliveryRow> {
    store.list_deliveries(user, 100).await.unwrap()
}

async fn wait_status(store: &Store, user: Uuid, n: usize, status: &str) {
    let start = Instant::now();
    loop {
        let rows = deliveries(store, user).await;
        if rows.iter().filter(|d| d.status == status).count() >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {n} {status}: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(secret: &str, r: &Received) {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("webhook-id", r.id.parse().unwrap());
    headers.insert("webhook-timestamp", r.timestamp.parse().unwrap());
    headers.insert("webhook-signature", r.signature.parse().unwrap());
    wh.verify(&r.body, &headers)
        .unwrap_or_else(|e| panic!("signature refused by standardwebhooks: {e:?} ({r:?})"));
}

// ---- tests ---------------------------------------------------------------------------------

async fn signed_with_the_users_secret(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    let envelope = r#"{"type":"alert.triggered","data":{}}"#;
    let trigger = fire(
        store,
        &alert,
        0,
        vec![
            webhook(0, &rx.url("env"), None, envelope),
            webhook(1, &rx.url("msg"), None, "BTCUSDT crossed 100"),
        ],
    )
    .await;
    let running = spawn(store, config(), None);
    wait_status(store, alert.user_id, 2, "delivered").await;
    running.stop().await;

    let secret = store
        .webhook_secret(alert.user_id, "unused-candidate-0123456789", Utc::now())
        .await
        .unwrap();
    assert!(
        secret.current.starts_with("whsec_"),
        "generated on first use"
    );
    let env = rx.received("env");
    assert_eq!(env.len(), 1);
    verify(&secret.current, &env[0]);
    assert_eq!(env[0].body, envelope.as_bytes());
    assert_eq!(env[0].content_type, "application/json");
    assert_eq!(env[0].id, format!("msg_{}_0", trigger.simple()));
    let msg = rx.received("msg");
    verify(&secret.current, &msg[0]);
    assert_eq!(msg[0].content_type, "text/plain; charset=utf-8");
    assert_eq!(msg[0].body, "BTCUSDT crossed 100".as_bytes());
    assert_ne!(msg[0].id, env[0].id, "one id per action");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_with_the_users_secret_sqlite() {
    signed_with_the_users_secret(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_with_the_users_secret_postgres() {
    signed_with_the_users_secret(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actions_own_secret_and_a_rotation_sign_as_documented() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    let own = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let old = store
        .webhook_secret(
            alert.user_id,
            &alert_dispatch::generate_secret(),
            Utc::now(),
        )
        .await
        .unwrap();
    let new = store
        .rotate_webhook_secret(
            alert.user_id,
            &alert_dispatch::generate_secret(),
            Duration::from_secs(3600),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(new.previous.as_deref(), Some(old.current.as_str()));
    fire(
        store,
        &alert,
        0,
        vec![
            webhook(0, &rx.url("own"), Some(own), "{}"),
            webhook(1, &rx.url("user"), None, "{}"),
        ],
    )
    .await;
    let running = spawn(store, config(), None);
    wait_status(store, alert.user_id, 2, "delivered").await;
    running.stop().await;
    let own_req = &rx.received("own")[0];
    verify(own, own_req);
    assert_eq!(own_req.signature.split(' ').count(), 1);
    let user_req = &rx.received("user")[0];
    assert_eq!(
        user_req.signature.split(' ').count(),
        2,
        "both keys sign during a rotation"
    );
    verify(&new.current, user_req);
    verify(&old.current, user_req);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_200_is_delivered_on_the_third_attempt_with_one_id() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script(
        "flaky",
        [
            Reply::Body(503, "busy".into()),
            Reply::Status(503),
            Reply::Body(200, "x".repeat(5000)),
        ],
    );
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    fire(
        store,
        &alert,
        0,
        vec![webhook(0, &rx.url("flaky"), None, "{}")],
    )
    .await;
    let running = spawn(store, config(), None);
    wait_status(store, alert.user_id, 1, "delivered").await;
    running.stop().await;
    let got = rx.received("flaky");
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id == got[0].id),
        "same webhook-id on every attempt"
    );
    let row = &deliveries(store, alert.user_id).await[0];
    assert_eq!(row.attempts, 3);
    let codes: Vec<_> = row.attempt_log.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(503), Some(503), Some(200)]);
    assert_eq!(row.attempt_log[0].response_body.as_deref(), Some("busy"));
    assert_eq!(
        row.attempt_log[2].response_body.as_ref().map(String::len),
        Some(1024),
        "the first KiB of the response is kept"
    );
    assert_eq!(
        row.attempt_log[0].error.as_deref(),
        Some("HTTP 503 Service Unavailable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_in_failed_and_retry_after_is_honoured() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script("wait", [Reply::RetryAfter(429, 1)]);
    rx.script("down", std::iter::repeat_n(Reply::Status(500), 10));
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    fire(
        store,
        &alert,
        0,
        vec![webhook(0, &rx.url("wait"), None, "{}")],
    )
    .await;
    fire(
        store,
        &alert,
        1,
        vec![webhook(0, &rx.url("down"), None, "{}")],
    )
    .await;
    let running = spawn(store, config(), None);
    wait_status(store, alert.user_id, 1, "failed").await;
    wait_status(store, alert.user_id, 1, "delivered").await;
    running.stop().await;
    assert_eq!(rx.received("down").len(), 6, "1 + the 5 scheduled retries");
    let wait = rx.received("wait");
    assert_eq!(wait.len(), 2);
    let gap = wait[1].at - wait[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 honoured, waited {gap:?}"
    );
    let failed = deliveries(store, alert.user_id)
        .await
        .into_iter()
        .find(|d| d.status == "failed")
        .unwrap();
    assert_eq!(failed.attempts, 6);
    assert_eq!(failed.last_status_code, Some(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_it_when_back() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    // Reserve a port, then close it: connections are refused until the receiver starts.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/late");
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    fire(store, &alert, 0, vec![webhook(0, &url, None, "{}")]).await;
    let mut cfg = config();
    cfg.retry.schedule = vec![Duration::from_millis(100); 30];
    let running = spawn(store, cfg, None);
    let start = Instant::now();
    loop {
        let rows = deliveries(store, alert.user_id).await;
        if rows[0].attempts >= 2 {
            assert!(
                rows[0]
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains("connection")
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let rx = Receiver::serve(listener).await;
    wait_status(store, alert.user_id, 1, "delivered").await;
    running.stop().await;
    assert_eq!(rx.received("late").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_action_until_the_alert_is_replaced() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script("gone", [Reply::Status(410)]);
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    fire(
        store,
        &alert,
        0,
        vec![
            webhook(0, &rx.url("gone"), None, "{}"),
            webhook(1, &rx.url("fine"), None, "{}"),
        ],
    )
    .await;
    let running = spawn(store, config(), None);
    wait_status(store, alert.user_id, 1, "cancelled").await;
    wait_status(store, alert.user_id, 1, "delivered").await;
    let disabled = store
        .disabled_webhooks(alert.user_id, alert.id)
        .await
        .unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].action_index, 0);
    assert!(disabled[0].reason.contains("410"));
    // The next trigger: action 0 is not sent, action 1 is.
    fire(
        store,
        &alert,
        1,
        vec![
            webhook(0, &rx.url("gone"), None, "{}"),
            webhook(1, &rx.url("fine"), None, "{}"),
        ],
    )
    .await;
    wait_status(store, alert.user_id, 2, "cancelled").await;
    wait_status(store, alert.user_id, 2, "delivered").await;
    running.stop().await;
    assert_eq!(
        rx.received("gone").len(),
        1,
        "a disabled action is not sent"
    );
    assert_eq!(rx.received("fine").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script("hang", [Reply::Hang(Duration::from_secs(30))]);
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    fire(
        store,
        &alert,
        0,
        vec![webhook(0, &rx.url("hang"), None, "{}")],
    )
    .await;
    let mut cfg = config();
    cfg.timeout = Duration::from_millis(300);
    let running = spawn(store, cfg, None);
    wait_status(store, alert.user_id, 1, "delivered").await;
    running.stop().await;
    let row = &deliveries(store, alert.user_id).await[0];
    assert_eq!(row.attempts, 2);
    assert!(
        row.attempt_log[0]
            .error
            .as_deref()
            .unwrap()
            .contains("timeout"),
        "{:?}",
        row.attempt_log[0]
    );
    assert_eq!(row.attempt_log[0].status_code, None);
    assert!(row.attempt_log[0].duration_ms >= 290);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_allowed() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    let port = rx.addr.port();
    let urls = [
        rx.url("literal"),
        format!("http://localhost:{port}/name"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        format!("http://2130706433:{port}/decimal"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
    ];
    let hooks = urls
        .iter()
        .enumerate()
        .map(|(i, u)| webhook(i as i32, u, None, "{}"))
        .collect();
    fire(store, &alert, 0, hooks).await;
    let mut cfg = config();
    cfg.policy.allow_private = false;
    let running = spawn(store, cfg, None);
    wait_status(store, alert.user_id, urls.len(), "failed").await;
    running.stop().await;
    assert!(
        rx.state.received.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
    for row in deliveries(store, alert.user_id).await {
        assert_eq!(
            row.attempts, 1,
            "refused addresses are not retried: {row:?}"
        );
        let error = row.last_error.unwrap_or_default();
        assert!(
            error.contains("loopback")
                || error.contains("metadata")
                || error.contains("link-local"),
            "{}: {error}",
            row.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_does_not_hold_up_the_others() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let slow = Receiver::start().await;
    let fast = Receiver::start().await;
    slow.script(
        "s",
        std::iter::repeat_n(Reply::Hang(Duration::from_millis(1500)), 20),
    );
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    for h in 0..12 {
        fire(
            store,
            &alert,
            h,
            vec![webhook(0, &slow.url("s"), None, "{}")],
        )
        .await;
    }
    for h in 12..16 {
        fire(
            store,
            &alert,
            h,
            vec![webhook(0, &fast.url("f"), None, "{}")],
        )
        .await;
    }
    let mut cfg = config();
    cfg.per_host = 2;
    cfg.max_in_flight = 8;
    let started = Instant::now();
    let running = spawn(store, cfg, None);
    eventually(
        "the fast host's deliveries",
        Duration::from_secs(10),
        || fast.received("f").len() == 4,
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "fast receiver waited {:?} behind the slow one",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        slow.received("s").len() <= 2,
        "per-host bound: {}",
        slow.received("s").len()
    );
    running.stop().await;
}

/// One busy receiver with many deliveries due: those beyond its per-host limit wait in memory
/// for a slot rather than going back to the outbox claim after claim (at scale, each went
/// round ten times: ~25,000 outbox writes for ~2,800 deliveries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_hosts_deliveries_wait_in_memory_not_in_the_outbox() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script(
        "b",
        std::iter::repeat_n(Reply::Hang(Duration::from_millis(40)), 30),
    );
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    for h in 0..30 {
        fire(store, &alert, h, vec![webhook(0, &rx.url("b"), None, "{}")]).await;
    }
    let mut cfg = config();
    cfg.per_host = 2;
    cfg.max_in_flight = 8;
    cfg.poll = Duration::from_millis(200);
    cfg.defer = Duration::from_secs(1);
    let dispatcher = Dispatcher::new(store.clone(), cfg, None).unwrap();
    let counters = dispatcher.counters();
    let cancel = CancellationToken::new();
    let running = Running {
        cancel: cancel.clone(),
        handle: tokio::spawn(dispatcher.run(cancel)),
    };
    wait_status(store, alert.user_id, 30, "delivered").await;
    running.stop().await;
    let got = rx.received("b");
    assert_eq!(got.len(), 30, "each sent once");
    let parked = counters.parked.load(std::sync::atomic::Ordering::Relaxed);
    let deferred = counters.deferred.load(std::sync::atomic::Ordering::Relaxed);
    // 2 in flight and up to 2 × PARK_PER_SLOT waiting; a claim while that is full puts back
    // at most one more than the last claim placed.
    assert!(parked >= 6, "waited in memory: {parked}");
    assert!(
        deferred < 15,
        "put back {deferred} times for 30 deliveries (parked {parked})"
    );
}

async fn a_dispatcher_killed_mid_send_delivers_after_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script("k", [Reply::Hang(Duration::from_millis(800))]);
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    // A trigger recorded, never sent: the first dispatcher dies before sending it…
    let trigger = fire(store, &alert, 0, vec![webhook(0, &rx.url("k"), None, "{}")]).await;
    let mut cfg = config();
    cfg.lease = Duration::from_millis(1500);
    let first = spawn(store, cfg.clone(), None);
    // …or while the receiver holds the request: kill it then (no graceful stop).
    eventually("the first attempt", Duration::from_secs(5), || {
        rx.received("k").len() == 1
    })
    .await;
    first.handle.abort();
    let _ = first.handle.await;
    assert_eq!(deliveries(store, alert.user_id).await[0].status, "pending");
    // A new dispatcher (a restart) retakes it once the dead one's lease expires.
    let second = spawn(store, config(), None);
    wait_status(store, alert.user_id, 1, "delivered").await;
    second.stop().await;
    let got = rx.received("k");
    assert_eq!(got.len(), 2, "sent again after the crash");
    assert_eq!(got[0].id, got[1].id, "with the same webhook-id");
    assert_eq!(got[0].id, format!("msg_{}_0", trigger.simple()));
    let unique: std::collections::HashSet<_> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(unique.len(), 1, "processed once after deduplication by id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_send_delivers_after_restart_sqlite() {
    a_dispatcher_killed_mid_send_delivers_after_restart(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_send_delivers_after_restart_postgres() {
    a_dispatcher_killed_mid_send_delivers_after_restart(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_lets_in_flight_attempts_finish() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let rx = Receiver::start().await;
    rx.script("slow", [Reply::Hang(Duration::from_millis(600))]);
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    fire(
        store,
        &alert,
        0,
        vec![webhook(0, &rx.url("slow"), None, "{}")],
    )
    .await;
    let running = spawn(store, config(), None);
    eventually("the attempt", Duration::from_secs(5), || {
        rx.received("slow").len() == 1
    })
    .await;
    running.stop().await; // returns only after the attempt finished and was recorded
    assert_eq!(
        deliveries(store, alert.user_id).await[0].status,
        "delivered"
    );
}

// ---- bot actions ---------------------------------------------------------------------------

#[derive(Default)]
struct RecordingBots {
    calls: Mutex<Vec<BotAction>>,
}

impl BotHandler for RecordingBots {
    fn handle(&self, action: BotAction) -> BoxFuture<'_, Result<(), BotError>> {
        Box::pin(async move {
            let mut calls = self.calls.lock().unwrap();
            calls.push(action);
            if calls.len() == 1 {
                Err(BotError::Retry("exchange busy".into()))
            } else {
                Ok(())
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_actions_go_through_the_outbox_with_the_trigger_id() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = &db.store;
    let alert = create(store, Uuid::new_v4(), "a", "BTCUSDT").await;
    let bot = NewDelivery {
        action_index: 0,
        kind: DeliveryKind::Bot,
        url: "bot-1".into(),
        secret: None,
        payload: r#"{"bot_id":"bot-1","action_type":"execute_entry"}"#.into(),
    };
    let trigger = fire(store, &alert, 0, vec![bot]).await;
    // Without a handler, bot actions wait in the outbox.
    let plain = spawn(store, config(), None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    plain.stop().await;
    assert_eq!(deliveries(store, alert.user_id).await[0].status, "pending");
    let bots = Arc::new(RecordingBots::default());
    let running = spawn(store, config(), Some(bots.clone()));
    wait_status(store, alert.user_id, 1, "delivered").await;
    running.stop().await;
    let calls = bots.calls.lock().unwrap();
    assert_eq!(calls.len(), 2, "retried after a retryable error");
    assert!(
        calls
            .iter()
            .all(|c| c.trigger_id == trigger && c.bot_id == "bot-1")
    );
    assert_eq!(calls[0].payload["action_type"], "execute_entry");
}
