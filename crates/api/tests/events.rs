//! Live events over real HTTP: `/v1/events` (SSE) and `/v1/ws` (WebSocket), served by
//! `axum::serve` over a store (each test on SQLite and on PostgreSQL) and a live hub, with triggers recorded in the store and
//! published to the hub as the runner does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use alert_api::{ApiState, Auth, HttpConfig, RateLimiter};
use alert_core::{Symbol, Timeframe};
use alert_dispatch::{AddressPolicy, LiveEvent, LiveHub};
use alert_store::bench::ScratchDatabase;
use alert_store::{
    AlertRow, AlertStatus, NewAlert, NewNotification, NewTrigger, Recorded, Store, StoreOptions,
};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use uuid::Uuid;

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
/// How long a stream must stay silent to count as "nothing arrived".
const QUIET: Duration = Duration::from_millis(400);
const WAIT: Duration = Duration::from_secs(5);

// ---- the server ---------------------------------------------------------------------------

struct Server {
    addr: SocketAddr,
    store: Store,
    hub: LiveHub,
    scratch: Option<ScratchDatabase>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime: remove the database from a thread of its own.
        let Some(scratch) = self.scratch.take() else {
            return;
        };
        // The store's connections belong to the blocked runtime: no close (it would wait for
        // them forever); PostgreSQL drops the database WITH (FORCE).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = scratch.remove().await;
            });
        })
        .join();
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Each test on both backends: `mod name { sqlite, postgres }`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

both_backends!(
    sse_events_reach_their_user_only,
    sse_resume_replays_exactly_what_was_missed,
    sse_resume_from_the_first_id_misses_nothing,
    sse_refusals,
    sse_stream_ends_when_the_client_falls_behind,
    websocket_with_a_query_token_and_with_an_auth_message,
    websocket_resumes_from_an_id,
    websocket_refusals,
    websocket_closes_when_the_client_falls_behind,
);

/// The PostgreSQL server of `DATABASE_URL` (default: the local one), on which each test makes
/// a database of its own.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn server(backend: Backend) -> Server {
    server_with(backend, LiveHub::default()).await
}

async fn server_with(backend: Backend, hub: LiveHub) -> Server {
    let next_to = match backend {
        Backend::Sqlite => "sqlite://events.db".to_owned(),
        Backend::Postgres => admin_url(),
    };
    let scratch = ScratchDatabase::create(&next_to).await.unwrap();
    let store = Store::connect(scratch.url(), StoreOptions::default())
        .await
        .unwrap();
    let state = ApiState {
        store: store.clone(),
        auth: Arc::new(Auth::new(SECRET, None)),
        rate: Arc::new(RateLimiter::new(1000.0, 1000)),
        live: hub.clone(),
        policy: AddressPolicy::default(),
        secret_grace: Duration::from_secs(60),
        market: None,
        ingest: None,
        bots: alert_bots::live::StoreBots::with_live(store.clone(), Some(hub.clone()), None),
    };
    let app = alert_api::router(state, &HttpConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        addr,
        store,
        hub,
        scratch: Some(scratch),
    }
}

fn token(user: Uuid) -> String {
    alert_api::auth::mint(SECRET, user, Duration::from_secs(600)).unwrap()
}

async fn alert(s: &Server, user: Uuid, name: &str) -> AlertRow {
    let new = NewAlert {
        name: name.to_owned(),
        symbol: Symbol::new("BTCUSDT").unwrap(),
        base_timeframe: Timeframe::H1,
        definition: json!({"name": name}),
        status: AlertStatus::Active,
    };
    s.store.create_alert(user, &new, Utc::now()).await.unwrap()
}

/// What one recorded trigger wrote.
#[derive(Clone, Copy, Debug)]
struct Fired {
    trigger: Uuid,
    note: Option<Uuid>,
}

impl Fired {
    fn rows(&self) -> Vec<Uuid> {
        std::iter::once(self.trigger).chain(self.note).collect()
    }
}

static BAR: AtomicI64 = AtomicI64::new(0);

/// Records one batch at `now` (each alert once, with a notification if `true`) and publishes
/// it as the runner does: each trigger, then its notification, in batch order.
async fn fire_at(s: &Server, batch: &[(&AlertRow, bool)], now: DateTime<Utc>) -> Vec<Fired> {
    let bar =
        DateTime::from_timestamp(1_700_000_000 + BAR.fetch_add(3600, Ordering::SeqCst), 0).unwrap();
    let records: Vec<NewTrigger> = batch
        .iter()
        .map(|(a, notify)| NewTrigger {
            alert_id: a.id,
            user_id: a.user_id,
            symbol: a.symbol.clone(),
            bar_time: bar,
            fired_at: now,
            snapshot: json!({"close": 101.5, "alert": a.name}),
            notification: notify.then(|| NewNotification {
                title: format!("{} fired", a.name),
                body: "up".into(),
            }),
            deliveries: Vec::new(),
            spend: false,
        })
        .collect();
    let results = s.store.record_triggers(&records, now).await.unwrap();
    let mut out = Vec::new();
    for (r, rec) in results.iter().zip(&records) {
        let Recorded::New {
            trigger_id,
            notification_id,
        } = *r
        else {
            panic!("not recorded: {r:?}")
        };
        s.hub.publish(
            rec.user_id,
            LiveEvent::Trigger {
                trigger_id,
                alert_id: rec.alert_id,
                symbol: rec.symbol.clone(),
                bar_time: rec.bar_time,
                fired_at: rec.fired_at,
                recorded_at: now,
                snapshot: rec.snapshot.clone(),
            },
        );
        if let (Some(n), Some(id)) = (&rec.notification, notification_id) {
            s.hub.publish(
                rec.user_id,
                LiveEvent::Notification {
                    id,
                    trigger_id,
                    alert_id: rec.alert_id,
                    title: n.title.clone(),
                    body: n.body.clone(),
                    created_at: now,
                },
            );
        }
        out.push(Fired {
            trigger: trigger_id,
            note: notification_id,
        });
    }
    out
}

/// One batch, recorded now. Batches get distinct milliseconds (SQLite's precision).
async fn fire(s: &Server, batch: &[(&AlertRow, bool)]) -> Vec<Fired> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    fire_at(s, batch, Utc::now()).await
}

fn all_rows(fired: &[Fired]) -> Vec<Uuid> {
    fired.iter().flat_map(Fired::rows).collect()
}

/// The row an event is (its trigger or notification id).
fn row_of(data: &Value) -> Uuid {
    let key = match data["type"].as_str() {
        Some("trigger") => "trigger_id",
        Some("notification") => "notification_id",
        other => panic!("unknown event type {other:?}: {data}"),
    };
    data[key].as_str().unwrap().parse().unwrap()
}

// ---- an SSE client ------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SseEvent {
    event: Option<String>,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

enum Read<T> {
    Got(T),
    Ended,
    Quiet,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

struct SseClient {
    body: Body,
    buf: String,
}

async fn sse_request(s: &Server, user: Option<Uuid>, last_id: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("http://{}/v1/events", s.addr));
    if let Some(u) = user {
        req = req.bearer_auth(token(u));
    }
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    req.send().await.unwrap()
}

impl SseClient {
    /// Connects and reads the connection's first id (sent once subscribed).
    async fn connect(s: &Server, user: Uuid, last_id: Option<&str>) -> (Self, String) {
        let resp = sse_request(s, Some(user), last_id).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut c = Self {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        };
        let Read::Got(first) = c.next_within(WAIT).await else {
            panic!("no first id")
        };
        assert!(first.data.is_empty(), "the first event is an id alone");
        (c, first.id.expect("an id"))
    }

    async fn next_within(&mut self, wait: Duration) -> Read<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut e = SseEvent {
                    event: None,
                    id: None,
                    data: String::new(),
                };
                let mut fields = 0;
                for line in block.lines() {
                    if line.starts_with(':') || line.is_empty() {
                        continue;
                    }
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    fields += 1;
                    match k {
                        "event" => e.event = Some(v.to_owned()),
                        "id" => e.id = Some(v.to_owned()),
                        "data" => e.data.push_str(v),
                        _ => {}
                    }
                }
                if fields > 0 {
                    return Read::Got(e);
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Read::Quiet,
                Ok(None | Some(Err(_))) => return Read::Ended,
                Ok(Some(Ok(chunk))) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            }
        }
    }

    async fn next(&mut self) -> SseEvent {
        match self.next_within(WAIT).await {
            Read::Got(e) => e,
            Read::Ended => panic!("the stream ended"),
            Read::Quiet => panic!("no event within {WAIT:?}"),
        }
    }

    /// Every event until the stream is quiet.
    async fn drain(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            match self.next_within(QUIET).await {
                Read::Got(e) => out.push(e),
                Read::Ended => panic!("the stream ended"),
                Read::Quiet => return out,
            }
        }
    }

    async fn assert_quiet(&mut self) {
        match self.next_within(QUIET).await {
            Read::Quiet => {}
            Read::Got(e) => panic!("unexpected event {e:?}"),
            Read::Ended => panic!("the stream ended"),
        }
    }
}

/// The rows of `events`, checking each is well formed: named like its data, with an id, and
/// each notification after its trigger (when both are there).
fn rows(events: &[SseEvent]) -> Vec<Uuid> {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for e in events {
        let data = e.json();
        assert_eq!(e.event.as_deref(), data["type"].as_str(), "{e:?}");
        assert_eq!(e.id.as_deref(), data["id"].as_str(), "{e:?}");
        if data["type"] == "notification" {
            let trigger: Uuid = data["trigger_id"].as_str().unwrap().parse().unwrap();
            notes.push((out.len(), trigger));
        }
        out.push(row_of(&data));
    }
    for (at, trigger) in notes {
        if let Some(t) = out.iter().position(|r| *r == trigger) {
            assert!(t < at, "a notification before its trigger");
        }
    }
    out
}

fn same_set(got: &[Uuid], want: &[Uuid]) {
    let g: HashSet<_> = got.iter().collect();
    assert_eq!(g.len(), got.len(), "duplicates in {got:?}");
    let w: HashSet<_> = want.iter().collect();
    assert_eq!(g, w);
}

// ---- SSE ----------------------------------------------------------------------------------

async fn sse_events_reach_their_user_only(backend: Backend) {
    let s = server(backend).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let a = alert(&s, alice, "a").await;
    let b = alert(&s, bob, "b").await;
    let (mut sa, _) = SseClient::connect(&s, alice, None).await;
    let (mut sb, _) = SseClient::connect(&s, bob, None).await;

    let fired = fire(&s, &[(&a, true)]).await;
    let t = sa.next().await;
    let n = sa.next().await;
    assert_eq!(t.event.as_deref(), Some("trigger"));
    assert_eq!(n.event.as_deref(), Some("notification"));
    let (tj, nj) = (t.json(), n.json());
    assert_eq!(tj["trigger_id"], fired[0].trigger.to_string());
    assert_eq!(tj["alert_id"], a.id.to_string());
    assert_eq!(tj["symbol"], "BTCUSDT");
    assert_eq!(tj["snapshot"]["alert"], "a");
    assert_eq!(nj["notification_id"], fired[0].note.unwrap().to_string());
    assert_eq!(nj["trigger_id"], fired[0].trigger.to_string());
    assert_eq!(nj["title"], "a fired");
    // Ids: the recording time (µs, at SQLite's milliseconds) and the rows of that time.
    let stored = s
        .store
        .triggers_since(
            alice,
            alert_store::Cursor {
                at: DateTime::UNIX_EPOCH,
                id: Uuid::nil(),
            },
            10,
        )
        .await
        .unwrap();
    let us = stored[0].recorded_at.timestamp_micros();
    // The alerts lane's part (before `~`; the bots lane has not moved).
    let lane = |id: &Option<String>| {
        id.as_deref()
            .and_then(|i| i.split_once('~'))
            .map(|p| p.0.to_owned())
    };
    assert_eq!(lane(&t.id), Some(format!("{us}_{}", fired[0].trigger)));
    assert_eq!(
        lane(&n.id),
        Some(format!(
            "{us}_{}_{}",
            fired[0].trigger,
            fired[0].note.unwrap()
        ))
    );
    assert_eq!(
        t.id.as_deref().and_then(|i| i.split_once('~')).map(|p| p.1),
        n.id.as_deref().and_then(|i| i.split_once('~')).map(|p| p.1)
    );
    assert_eq!(
        DateTime::parse_from_rfc3339(tj["recorded_at"].as_str().unwrap()).unwrap(),
        stored[0].recorded_at
    );
    rows(&[t, n]);
    sb.assert_quiet().await;

    let fired_b = fire(&s, &[(&b, false)]).await;
    let e = sb.next().await;
    assert_eq!(row_of(&e.json()), fired_b[0].trigger);
    sa.assert_quiet().await;
    sb.assert_quiet().await;
}

async fn sse_resume_replays_exactly_what_was_missed(backend: Backend) {
    let s = server(backend).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let x = alert(&s, alice, "x").await;
    let y = alert(&s, alice, "y").await;
    let z = alert(&s, alice, "z").await;
    let theirs = alert(&s, bob, "theirs").await;
    let (mut c, _) = SseClient::connect(&s, alice, None).await;

    let first = fire(&s, &[(&x, true)]).await;
    same_set(&rows(&c.drain().await), &all_rows(&first));

    // A batch of three triggers: the client reads two of its five events, then goes away.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let now = Utc::now();
    let group = fire_at(&s, &[(&x, true), (&y, false), (&z, true)], now).await;
    let got = [c.next().await, c.next().await];
    let last_id = got[1].id.clone().unwrap();
    let received = rows(&got);
    drop(c);

    // Recorded meanwhile: another batch of the same millisecond (SQLite cannot tell them
    // apart by time), later batches, and another user's.
    let same_ms = fire_at(&s, &[(&y, true)], now).await;
    let later = fire(&s, &[(&y, false), (&z, true)]).await;
    let last = fire(&s, &[(&x, true)]).await;
    fire(&s, &[(&theirs, true)]).await;

    let (mut c, start) = SseClient::connect(&s, alice, Some(&last_id)).await;
    assert_eq!(
        start, last_id,
        "the position is the client's until more arrives"
    );
    let replayed = c.drain().await;
    let mut want: Vec<Uuid> = all_rows(&group)
        .into_iter()
        .filter(|r| !received.contains(r))
        .collect();
    want.extend(all_rows(&same_ms));
    want.extend(all_rows(&later));
    want.extend(all_rows(&last));
    same_set(&rows(&replayed), &want);

    // Live events of rows already replayed (a runner's publish racing the store read) are
    // skipped; new ones come through, once.
    s.hub.publish(
        alice,
        LiveEvent::Notification {
            id: last[0].note.unwrap(),
            trigger_id: last[0].trigger,
            alert_id: x.id,
            title: "x fired".into(),
            body: "up".into(),
            created_at: Utc::now(),
        },
    );
    let live = fire(&s, &[(&z, true)]).await;
    same_set(&rows(&c.drain().await), &all_rows(&live));

    // Resuming from any event's id replays exactly what followed it.
    let events: Vec<SseEvent> = replayed;
    for (i, e) in events.iter().enumerate() {
        let (mut again, _) = SseClient::connect(&s, alice, e.id.as_deref()).await;
        let mut want = rows(&events[i + 1..]);
        want.extend(all_rows(&live));
        same_set(&rows(&again.drain().await), &want);
    }
}

async fn sse_resume_from_the_first_id_misses_nothing(backend: Backend) {
    let s = server(backend).await;
    let alice = Uuid::new_v4();
    let x = alert(&s, alice, "x").await;
    let (c, start) = SseClient::connect(&s, alice, None).await;
    drop(c);
    let fired = fire(&s, &[(&x, true)]).await;
    let (mut c, _) = SseClient::connect(&s, alice, Some(&start)).await;
    same_set(&rows(&c.drain().await), &all_rows(&fired));
}

async fn sse_refusals(backend: Backend) {
    let s = server(backend).await;
    let resp = sse_request(&s, None, None).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let resp = reqwest::Client::new()
        .get(format!("http://{}/v1/events", s.addr))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = sse_request(&s, Some(Uuid::new_v4()), Some("yesterday")).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["path"], "Last-Event-ID");

    // The token in the query string (browsers' EventSource cannot set headers).
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/events?access_token={}",
            s.addr,
            token(Uuid::new_v4())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

async fn sse_stream_ends_when_the_client_falls_behind(backend: Backend) {
    // One thread: the server cannot read the subscription while the hub publishes.
    let s = server_with(backend, LiveHub::new(2)).await;
    let alice = Uuid::new_v4();
    let (mut c, _) = SseClient::connect(&s, alice, None).await;
    for i in 0..10 {
        s.hub.publish(
            alice,
            LiveEvent::Notification {
                id: Uuid::new_v4(),
                trigger_id: Uuid::new_v4(),
                alert_id: Uuid::new_v4(),
                title: format!("{i}"),
                body: String::new(),
                created_at: Utc::now(),
            },
        );
    }
    let mut got = 0;
    loop {
        match c.next_within(WAIT).await {
            Read::Got(_) => got += 1,
            Read::Ended => break,
            Read::Quiet => panic!("the stream should end"),
        }
    }
    assert_eq!(got, 2, "what the buffer held, then the end");
    assert_eq!(s.hub.subscriber_count(), 0);
}

// ---- WebSocket ----------------------------------------------------------------------------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum WsRead {
    Json(Value),
    Closed(Option<u16>),
    Quiet,
}

async fn ws_connect(s: &Server, query: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/v1/ws{query}", s.addr))
        .await
        .unwrap();
    ws
}

async fn ws_read(ws: &mut Ws, wait: Duration) -> WsRead {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return WsRead::Quiet,
            Ok(None | Some(Err(_))) => return WsRead::Closed(None),
            Ok(Some(Ok(Message::Text(t)))) => {
                return WsRead::Json(serde_json::from_str(t.as_str()).unwrap());
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return WsRead::Closed(frame.map(|f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn ws_json(ws: &mut Ws) -> Value {
    match ws_read(ws, WAIT).await {
        WsRead::Json(v) => v,
        WsRead::Closed(code) => panic!("closed: {code:?}"),
        WsRead::Quiet => panic!("no message within {WAIT:?}"),
    }
}

/// Every event until the socket is quiet.
async fn ws_drain(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        match ws_read(ws, QUIET).await {
            WsRead::Json(v) => out.push(v),
            WsRead::Closed(code) => panic!("closed: {code:?}"),
            WsRead::Quiet => return out,
        }
    }
}

async fn ws_ready(ws: &mut Ws) -> String {
    let ready = ws_json(ws).await;
    assert_eq!(ready["type"], "ready", "{ready}");
    ready["id"].as_str().unwrap().to_owned()
}

async fn send_text(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

fn ws_rows(events: &[Value]) -> Vec<Uuid> {
    events
        .iter()
        .map(|e| {
            assert!(e["id"].is_string(), "{e}");
            row_of(e)
        })
        .collect()
}

async fn websocket_with_a_query_token_and_with_an_auth_message(backend: Backend) {
    let s = server(backend).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let a = alert(&s, alice, "a").await;
    let b = alert(&s, bob, "b").await;

    let mut wa = ws_connect(&s, &format!("?access_token={}", token(alice))).await;
    ws_ready(&mut wa).await;
    let mut wb = ws_connect(&s, "").await;
    send_text(
        &mut wb,
        json!({"type": "auth", "token": token(bob)}).to_string(),
    )
    .await;
    ws_ready(&mut wb).await;

    let fired = fire(&s, &[(&a, true)]).await;
    let events = ws_drain(&mut wa).await;
    assert_eq!(ws_rows(&events), all_rows(&fired));
    assert_eq!(events[0]["type"], "trigger");
    assert_eq!(events[0]["alert_id"], a.id.to_string());
    assert_eq!(events[1]["type"], "notification");
    assert!(ws_drain(&mut wb).await.is_empty(), "not bob's");

    let fired_b = fire(&s, &[(&b, true)]).await;
    assert_eq!(ws_rows(&ws_drain(&mut wb).await), all_rows(&fired_b));
    assert!(ws_drain(&mut wa).await.is_empty(), "not alice's");

    // Application-level ping.
    send_text(&mut wa, r#"{"type":"ping"}"#.into()).await;
    assert_eq!(ws_json(&mut wa).await, json!({"type": "pong"}));
}

async fn websocket_resumes_from_an_id(backend: Backend) {
    let s = server(backend).await;
    let alice = Uuid::new_v4();
    let x = alert(&s, alice, "x").await;
    let mut ws = ws_connect(&s, &format!("?access_token={}", token(alice))).await;
    ws_ready(&mut ws).await;
    let first = fire(&s, &[(&x, true)]).await;
    let events = ws_drain(&mut ws).await;
    assert_eq!(ws_rows(&events), all_rows(&first));
    let last_id = events[1]["id"].as_str().unwrap().to_owned();
    drop(ws);

    let missed = fire(&s, &[(&x, true)]).await;
    // In the URL.
    let mut ws = ws_connect(
        &s,
        &format!("?access_token={}&last_event_id={last_id}", token(alice)),
    )
    .await;
    ws_ready(&mut ws).await;
    assert_eq!(ws_rows(&ws_drain(&mut ws).await), all_rows(&missed));
    // In the auth message.
    let mut ws = ws_connect(&s, "").await;
    send_text(
        &mut ws,
        json!({"type": "auth", "token": token(alice), "last_event_id": last_id}).to_string(),
    )
    .await;
    ws_ready(&mut ws).await;
    assert_eq!(ws_rows(&ws_drain(&mut ws).await), all_rows(&missed));
}

async fn websocket_refusals(backend: Backend) {
    let s = server(backend).await;
    // A plain request without a token.
    let resp = reqwest::get(format!("http://{}/v1/ws", s.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A bad token in the URL: refused before the upgrade.
    let Err(err) =
        tokio_tungstenite::connect_async(format!("ws://{}/v1/ws?access_token=bad", s.addr)).await
    else {
        panic!("a bad token is refused")
    };
    match err {
        tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("{other:?}"),
    }
    // Also in a header.
    let mut req = format!("ws://{}/v1/ws", s.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer bad".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    // A bad token in the auth message.
    let mut ws = ws_connect(&s, "").await;
    send_text(&mut ws, json!({"type": "auth", "token": "bad"}).to_string()).await;
    assert!(matches!(
        ws_read(&mut ws, WAIT).await,
        WsRead::Closed(Some(4401))
    ));
    // Something else first.
    let mut ws = ws_connect(&s, "").await;
    send_text(&mut ws, r#"{"type":"ping"}"#.into()).await;
    assert!(matches!(
        ws_read(&mut ws, WAIT).await,
        WsRead::Closed(Some(4401))
    ));
    // An unknown id.
    let resp = reqwest::Client::new()
        .get(format!("http://{}/v1/ws?last_event_id=x", s.addr))
        .bearer_auth(token(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

async fn websocket_closes_when_the_client_falls_behind(backend: Backend) {
    let s = server_with(backend, LiveHub::new(2)).await;
    let alice = Uuid::new_v4();
    let mut ws = ws_connect(&s, &format!("?access_token={}", token(alice))).await;
    ws_ready(&mut ws).await;
    for _ in 0..10 {
        s.hub.publish(
            alice,
            LiveEvent::Notification {
                id: Uuid::new_v4(),
                trigger_id: Uuid::new_v4(),
                alert_id: Uuid::new_v4(),
                title: String::new(),
                body: String::new(),
                created_at: Utc::now(),
            },
        );
    }
    let mut got = HashMap::new();
    loop {
        match ws_read(&mut ws, WAIT).await {
            WsRead::Json(v) => {
                *got.entry(v["type"].as_str().unwrap().to_owned())
                    .or_insert(0) += 1
            }
            WsRead::Closed(code) => {
                assert_eq!(code, Some(1013));
                break;
            }
            WsRead::Quiet => panic!("the socket should close"),
        }
    }
    assert_eq!(got.get("notification"), Some(&2));
}
