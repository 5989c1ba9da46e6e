//! The HTTP API over real HTTP against `serve` on an ephemeral port, on SQLite and on
//! PostgreSQL: the alert lifecycle, isolation between users on every endpoint, each bad-token
//! case and each error code.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const JWT_SECRET: &str = "api-test-jwt-secret-0123456789-abcdefghij";
const SERVICE_KEY: &str = "api-test-service-key-0123456789";

struct Serve {
    child: Child,
    base: String,
    _cleanup: Option<Cleanup>,
}

enum Cleanup {
    Dir(std::path::PathBuf),
    Database { admin: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Dir(d) => {
                let _ = std::fs::remove_dir_all(d);
            }
            Cleanup::Database { admin, name } => {
                // Drop may run inside the runtime: drop the database from a thread of its own.
                let (admin, name) = (admin.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                            pool.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_282)
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database: a SQLite file in a temp dir, or a new PostgreSQL database.
async fn database(postgres: bool) -> (String, Cleanup) {
    let tag = Uuid::new_v4().simple().to_string();
    if postgres {
        let admin = admin_url();
        let name = format!("ar_api_{tag}");
        if let Err(e) = create_database(&admin, &name).await {
            panic!("create database {name} on {admin}: {e}")
        }
        let (base, _) = admin.rsplit_once('/').unwrap_or((admin.as_str(), ""));
        (format!("{base}/{name}"), Cleanup::Database { admin, name })
    } else {
        let dir = std::env::temp_dir().join(format!("ar-api-{tag}"));
        assert!(std::fs::create_dir_all(&dir).is_ok());
        (
            format!("sqlite://{}", dir.join("api.db").display()),
            Cleanup::Dir(dir),
        )
    }
}

/// Creates a database through the store crate's own connection (no psql needed).
async fn create_database(admin: &str, name: &str) -> Result<(), String> {
    let store = alert_store::Store::connect(
        admin,
        alert_store::StoreOptions {
            migrate: false,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let Some(pool) = store.pg_pool() else {
        return Err("not PostgreSQL".into());
    };
    let sql = format!("CREATE DATABASE \"{name}\"");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await;
    store.close().await;
    done.map(|_| ()).map_err(|e| e.to_string())
}

async fn serve(postgres: bool, extra: &[&str]) -> Serve {
    let (url, cleanup) = database(postgres).await;
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--source",
            "ingest",
            "--poll-ms",
            "100",
            "--log-format",
            "json",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &url,
        ])
        .args(["--jwt-secret", JWT_SECRET, "--service-key", SERVICE_KEY])
        .args(extra)
        .env("ALERT_WEBHOOK_ALLOW_PRIVATE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        panic!("spawn serve")
    };
    let s = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _cleanup: Some(cleanup),
    };
    let started = Instant::now();
    let client = reqwest::Client::new();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = client.get(format!("{}/healthz", s.base)).send().await
            && r.status().is_success()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("serve did not start")
}

fn token(user: Uuid) -> String {
    match alert_api::auth::mint(JWT_SECRET, user, Duration::from_secs(600)) {
        Ok(t) => t,
        Err(e) => panic!("mint: {e}"),
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let Ok(resp) = req.send().await else {
            panic!("{path}: no response")
        };
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn alert(name: &str, threshold: f64, actions: Value) -> Value {
    json!({"name": name, "symbol": "BTCUSDT", "base_timeframe": "1m",
           "conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": threshold}],
           "message": "{{symbol}} at {{close}}", "actions": actions})
}

async fn push_candle(c: &Client, close: f64) {
    let now = chrono::Utc::now().timestamp_millis();
    let m0 = now - now.rem_euclid(60_000);
    let body = json!({"candles": [{"symbol": "BTCUSDT", "open_time": m0, "open": close, "high": close,
                                   "low": close, "close": close, "volume": 1, "closed": false}]});
    let (status, _) = c
        .call(Method::POST, "/v1/candles", Some(SERVICE_KEY), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

async fn eventually(c: &Client, path: &str, auth: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = c.call(Method::GET, path, Some(auth), None).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path}: timed out; last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn receiver() -> u16 {
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
        panic!("bind")
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

async fn lifecycle_and_isolation(postgres: bool) {
    let s = serve(postgres, &["--max-alerts-per-symbol", "3"]).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: s.base.clone(),
    };
    let (alice, bob) = (token(Uuid::new_v4()), token(Uuid::new_v4()));
    let hook = receiver().await;
    let actions = json!([{"type": "notify", "title": "BTC up"},
                         {"type": "webhook", "url": format!("http://127.0.0.1:{hook}/hook")}]);

    // Create, read, list.
    let (status, created) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&alice),
            Some(alert("a1", 1e9, actions.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(created["status"], "active");
    let one = format!("/v1/alerts/{id}");
    let (status, got) = c.call(Method::GET, &one, Some(&alice), None).await;
    assert_eq!((status, got["name"].clone()), (StatusCode::OK, json!("a1")));
    let (_, list) = c
        .call(
            Method::GET,
            "/v1/alerts?symbol=btcusdt&status=active",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // Replace, patch, pause, resume.
    let (status, replaced) = c
        .call(
            Method::PUT,
            &one,
            Some(&alice),
            Some(alert("a1 replaced", 1e9, actions.clone())),
        )
        .await;
    assert_eq!(
        (status, replaced["name"].clone()),
        (StatusCode::OK, json!("a1 replaced"))
    );
    let (status, patched) = c
        .call(Method::PATCH, &one, Some(&alice), Some(json!({"conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": 100}], "name": "a1 patched"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["definition"]["conditions"][0]["compareValue"], 100);
    let (_, paused) = c
        .call(Method::POST, &format!("{one}/pause"), Some(&alice), None)
        .await;
    assert_eq!(paused["status"], "paused");
    let (_, resumed) = c
        .call(Method::POST, &format!("{one}/resume"), Some(&alice), None)
        .await;
    assert_eq!(resumed["status"], "active");
    let (status, valid) = c
        .call(
            Method::POST,
            "/v1/alerts/validate",
            Some(&alice),
            Some(alert("v", 1.0, json!([{"type": "notify"}]))),
        )
        .await;
    assert_eq!(
        (status, valid["valid"].clone()),
        (StatusCode::OK, json!(true))
    );

    // It fires on pushed candles: trigger, notification, delivered webhook.
    tokio::time::sleep(Duration::from_millis(300)).await; // the runner picks the change up
    push_candle(&c, 150.0).await;
    let triggers = eventually(&c, &format!("/v1/triggers?alert_id={id}"), &alice, |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(
        triggers["items"][0]["snapshot"]["message"],
        "BTCUSDT at 150"
    );
    let notes = eventually(&c, "/v1/notifications", &alice, |b| {
        b.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(notes[0]["title"], "BTC up");
    let note_id = notes[0]["id"].as_str().unwrap_or_default().to_owned();
    let deliveries = eventually(&c, "/v1/deliveries", &alice, |b| {
        b[0]["status"] == "delivered"
    })
    .await;
    let delivery_id = deliveries[0]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(deliveries[0]["attempt_log"][0]["status_code"], 200);
    let (_, secret) = c
        .call(Method::GET, "/v1/webhook-secret", Some(&alice), None)
        .await;
    assert!(
        secret["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    let (_, rotated) = c
        .call(
            Method::POST,
            "/v1/webhook-secret/rotate",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(rotated["previous"], secret["secret"]);

    // Bob sees none of it and can change none of it: 404, never 403.
    for (method, path, body) in [
        (Method::GET, one.clone(), None),
        (
            Method::PUT,
            one.clone(),
            Some(alert("mine now", 1.0, json!([{"type": "notify"}]))),
        ),
        (
            Method::PATCH,
            one.clone(),
            Some(json!({"name": "mine now"})),
        ),
        (Method::POST, format!("{one}/pause"), None),
        (Method::POST, format!("{one}/resume"), None),
        (
            Method::POST,
            format!("/v1/notifications/{note_id}/read"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/deliveries/{delivery_id}/redeliver"),
            None,
        ),
        (Method::DELETE, one.clone(), None),
    ] {
        let (status, body) = c.call(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    for path in ["/v1/alerts", "/v1/triggers"] {
        let (_, body) = c.call(Method::GET, path, Some(&bob), None).await;
        assert_eq!(body["items"], json!([]), "{path}");
    }
    for path in ["/v1/notifications", "/v1/deliveries"] {
        let (_, body) = c.call(Method::GET, path, Some(&bob), None).await;
        assert_eq!(body, json!([]), "{path}");
    }
    let (_, still) = c.call(Method::GET, &one, Some(&alice), None).await;
    assert_eq!(still["name"], "a1 patched", "bob changed nothing");

    // Alice: mark read, redeliver, delete.
    let (status, _) = c
        .call(
            Method::POST,
            &format!("/v1/notifications/{note_id}/read"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = c
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivery_id}/redeliver"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(&c, "/v1/deliveries", &alice, |b| {
        b[0]["attempts"] == 2 && b[0]["status"] == "delivered"
    })
    .await;

    // Error codes.
    let (status, e) = c
        .call(Method::POST, "/v1/alerts", Some(&alice), Some(json!({"name": "x", "symbol": "BTCUSDT", "base_timeframe": "1m",
            "conditions": [{"type": "indicator", "indicator": "RSI", "settings": {"length": 0}, "operator": "<", "compareValue": 30}],
            "action": {"type": "notify"}})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["code"], "validation_failed");
    assert_eq!(e["error"]["path"], "conditions[0].settings.length", "{e}");
    let (status, e) = c
        .call(Method::GET, "/v1/alerts?limit=0", Some(&alice), None)
        .await;
    assert_eq!(
        (status, e["error"]["path"].clone()),
        (StatusCode::BAD_REQUEST, json!("limit"))
    );
    let huge = json!({"name": "x".repeat(300 * 1024)});
    let (status, e) = c
        .call(Method::POST, "/v1/alerts", Some(&alice), Some(huge))
        .await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("payload_too_large"))
    );
    for n in 2..=3 {
        let (status, _) = c
            .call(
                Method::POST,
                "/v1/alerts",
                Some(&alice),
                Some(alert(&format!("a{n}"), 1e9, json!([{"type": "notify"}]))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, e) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&alice),
            Some(alert("a4", 1e9, json!([{"type": "notify"}]))),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("limit_exceeded")),
        "{e}"
    );
    let (status, e) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&alice),
            Some(alert(
                "ssrf",
                1.0,
                json!([{"type": "webhook", "url": "http://169.254.169.254/latest"}]),
            )),
        )
        .await;
    // Allowed private here (the test receiver is on loopback) — metadata is link-local, also allowed.
    assert!(
        status == StatusCode::CREATED || status == StatusCode::CONFLICT,
        "{e}"
    );
    let (status, e) = c
        .call(Method::GET, "/v1/nothing-here", Some(&alice), None)
        .await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );

    let (status, _) = c.call(Method::DELETE, &one, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = c.call(Method::GET, &one, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, t) = c
        .call(Method::GET, "/v1/triggers", Some(&alice), None)
        .await;
    assert_eq!(t["items"], json!([]), "deleted with the alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_isolation_sqlite() {
    lifecycle_and_isolation(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_isolation_postgres() {
    lifecycle_and_isolation(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_rate_limits_and_openapi() {
    let s = serve(false, &["--rate-limit", "2"]).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: s.base.clone(),
    };
    let user = Uuid::new_v4();
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64, aud: &str| json!({"sub": user.to_string(), "role": "authenticated", "aud": aud, "exp": exp});
    let sign = |claims: Value, alg: jsonwebtoken::Algorithm, secret: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap_or_default()
    };
    let cases = [
        ("no token", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        (
            "wrong secret",
            Some(sign(
                claims(now + 600, "authenticated"),
                jsonwebtoken::Algorithm::HS256,
                "another-secret-of-sufficient-length-000",
            )),
        ),
        (
            "other algorithm",
            Some(sign(
                claims(now + 600, "authenticated"),
                jsonwebtoken::Algorithm::HS384,
                JWT_SECRET,
            )),
        ),
        (
            "expired",
            Some(sign(
                claims(now - 3600, "authenticated"),
                jsonwebtoken::Algorithm::HS256,
                JWT_SECRET,
            )),
        ),
        (
            "wrong audience",
            Some(sign(
                claims(now + 600, "anon"),
                jsonwebtoken::Algorithm::HS256,
                JWT_SECRET,
            )),
        ),
        ("service key as user", Some(SERVICE_KEY.to_owned())),
    ];
    for (name, t) in cases {
        let (status, body) = c.call(Method::GET, "/v1/alerts", t.as_deref(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body["error"]["code"], "unauthorized", "{name}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains(JWT_SECRET) && !message.contains(&user.to_string()),
            "{name}: leaks"
        );
    }
    // A user token is not the service key.
    let good = token(user);
    let (status, _) = c
        .call(
            Method::POST,
            "/v1/candles",
            Some(&good),
            Some(json!({"candles": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // 2 requests/s, bursts of 4: a quick run of 10 gets 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let resp = c
            .http
            .get(format!("{}/v1/alerts", s.base))
            .bearer_auth(&good)
            .send()
            .await;
        if let Ok(r) = resp
            && r.status() == StatusCode::TOO_MANY_REQUESTS
        {
            limited = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            break;
        }
    }
    assert_eq!(limited.as_deref(), Some("1"), "429 with Retry-After");

    // The OpenAPI document lists what the server serves.
    let (status, doc) = c.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 12, "{paths:?}");
    tokio::time::sleep(Duration::from_secs(3)).await; // refill the bucket
    for (path, ops) in &paths {
        let concrete = path.replace("{id}", &Uuid::new_v4().to_string());
        for method in ops
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            tokio::time::sleep(Duration::from_millis(600)).await;
            // Streams (SSE, WebSocket) never end: read a body only when it is a 404's.
            let Ok(resp) = c
                .http
                .request(m.clone(), format!("{}{concrete}", s.base))
                .bearer_auth(&good)
                .send()
                .await
            else {
                panic!("{m} {path}: no response")
            };
            let status = resp.status();
            let body: Value = if status == StatusCode::NOT_FOUND {
                serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            assert!(
                body["error"]["message"] != "route not found"
                    && status != StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} is in the document but not served ({status})"
            );
        }
    }
}

// ---- live events through `serve`: candles pushed → trigger → WebSocket and SSE ----------

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text message within `wait`, or `None`.
async fn ws_next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) | Ok(None) => return None,
            Ok(Some(Err(e))) => panic!("websocket: {e}"),
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One SSE event: its `event:`, `id:` and `data:` lines.
#[derive(Debug, Default)]
struct Sse {
    event: String,
    id: String,
    data: Value,
}

/// Reads SSE events (skipping bare ids and comments) until `done` holds for one, within 30 s.
async fn sse_until(
    resp: &mut reqwest::Response,
    buf: &mut String,
    done: impl Fn(&Sse) -> bool,
) -> Sse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut e = Sse::default();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    e.event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    e.id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    e.data = serde_json::from_str(v.trim()).unwrap_or(Value::Null);
                }
            }
            if !e.event.is_empty() && done(&e) {
                return e;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, resp.chunk()).await {
            Ok(Ok(Some(bytes))) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("SSE ended or timed out: {other:?}; unread: {buf}"),
        }
    }
}

async fn sse_connect(c: &Client, auth: &str, last_id: Option<&str>) -> reqwest::Response {
    let mut req = c
        .http
        .get(format!("{}/v1/events", c.base))
        .bearer_auth(auth);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id);
    }
    let Ok(resp) = req.send().await else {
        panic!("/v1/events: no response")
    };
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

async fn live_events_from_fed_candles(postgres: bool) {
    let s = serve(postgres, &[]).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: s.base.clone(),
    };
    let (alice, bob) = (token(Uuid::new_v4()), token(Uuid::new_v4()));
    let (status, created) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&alice),
            Some(alert(
                "live",
                100.0,
                json!([{"type": "notify", "title": "BTC up"}]),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    // Bob watches too, with an alert on the same symbol that does not fire.
    let (status, _) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&bob),
            Some(alert("never", 1e9, json!([{"type": "notify"}]))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let ws_url = s.base.replacen("http", "ws", 1);
    let connect = |auth: &str| {
        let url = format!("{ws_url}/v1/ws?access_token={auth}");
        async move {
            match tokio_tungstenite::connect_async(url).await {
                Ok((ws, _)) => ws,
                Err(e) => panic!("/v1/ws: {e}"),
            }
        }
    };
    let mut alice_ws = connect(&alice).await;
    let mut bob_ws = connect(&bob).await;
    for ws in [&mut alice_ws, &mut bob_ws] {
        let ready = ws_next(ws, Duration::from_secs(5)).await;
        assert_eq!(
            ready.as_ref().map(|r| r["type"].clone()),
            Some(json!("ready"))
        );
    }
    let mut sse = sse_connect(&c, &alice, None).await;
    let mut sse_buf = String::new();

    // The runner picks the alerts up, then a candle above 100 arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    push_candle(&c, 150.0).await;

    let mut got = Vec::new();
    while got.len() < 2 {
        let Some(e) = ws_next(&mut alice_ws, Duration::from_secs(30)).await else {
            panic!("alice's WebSocket: no trigger and notification; got {got:?}")
        };
        got.push(e);
    }
    let (trigger, note) = (&got[0], &got[1]);
    assert_eq!(trigger["type"], "trigger", "{trigger}");
    assert_eq!(trigger["alert_id"], id.as_str(), "{trigger}");
    assert_eq!(trigger["symbol"], "BTCUSDT");
    assert_eq!(
        trigger["snapshot"]["message"], "BTCUSDT at 150",
        "{trigger}"
    );
    assert_eq!(note["type"], "notification", "{note}");
    assert_eq!(note["title"], "BTC up");
    assert_eq!(note["trigger_id"], trigger["trigger_id"]);
    // The same trigger as the store's.
    let stored = eventually(&c, &format!("/v1/triggers?alert_id={id}"), &alice, |b| {
        b["items"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(stored["items"][0]["id"], trigger["trigger_id"]);

    // SSE: the same two events, with ids.
    let t = sse_until(&mut sse, &mut sse_buf, |e| e.event == "trigger").await;
    assert_eq!(t.data["trigger_id"], trigger["trigger_id"]);
    let n = sse_until(&mut sse, &mut sse_buf, |e| e.event == "notification").await;
    assert_eq!(n.data["notification_id"], note["notification_id"]);
    // The same position among the triggers (before `~`; each connection's bot-order lane
    // starts where that connection started).
    let alerts_lane = |id: &str| id.split_once('~').map(|p| p.0.to_owned());
    assert!(
        !t.id.is_empty()
            && alerts_lane(&t.id) == alerts_lane(trigger["id"].as_str().unwrap_or_default()),
        "{t:?} / {trigger}"
    );

    // Bob sees nothing of Alice's.
    assert_eq!(ws_next(&mut bob_ws, Duration::from_millis(500)).await, None);

    // Resume: from before the trigger, both come again; from the notification, nothing.
    drop(sse);
    let mut again = sse_connect(&c, &alice, Some("0_00000000-0000-0000-0000-000000000000")).await;
    let mut buf = String::new();
    let t2 = sse_until(&mut again, &mut buf, |e| e.event == "trigger").await;
    assert_eq!(alerts_lane(&t2.id), alerts_lane(&t.id));
    let n2 = sse_until(&mut again, &mut buf, |e| e.event == "notification").await;
    assert_eq!(alerts_lane(&n2.id), alerts_lane(&n.id));
    let mut after = sse_connect(&c, &alice, Some(&n.id)).await;
    let mut buf = String::new();
    let quiet = tokio::time::timeout(
        Duration::from_millis(700),
        sse_until(&mut after, &mut buf, |_| true),
    )
    .await;
    assert!(quiet.is_err(), "nothing after the last id: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_from_fed_candles_sqlite() {
    live_events_from_fed_candles(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_from_fed_candles_postgres() {
    live_events_from_fed_candles(true).await;
}

/// CORS: only the configured origins are allowed (preflight and actual requests); none by
/// default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    const APP: &str = "https://app.example.com";
    let allowed = |resp: &reqwest::Response| {
        resp.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let preflight = |base: String, origin: &'static str| async move {
        let resp = reqwest::Client::new()
            .request(Method::OPTIONS, format!("{base}/v1/alerts"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
            .await;
        let Ok(resp) = resp else {
            panic!("preflight: no response")
        };
        resp
    };
    let s = serve(false, &["--cors-origins", APP]).await;
    let ok = preflight(s.base.clone(), APP).await;
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(allowed(&ok).as_deref(), Some(APP));
    let methods = ok
        .headers()
        .get("access-control-allow-methods")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!methods.is_empty(), "allowed methods listed");
    let other = preflight(s.base.clone(), "https://evil.example.net").await;
    assert_eq!(allowed(&other), None, "another origin is not allowed");
    // An actual request carries the header too (here a 401: errors are readable by the app).
    let Ok(actual) = reqwest::Client::new()
        .get(format!("{}/v1/alerts", s.base))
        .header("Origin", APP)
        .send()
        .await
    else {
        panic!("no response")
    };
    assert_eq!(actual.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed(&actual).as_deref(), Some(APP));
    drop(s);

    let plain = serve(false, &[]).await;
    let none = preflight(plain.base.clone(), APP).await;
    assert_eq!(allowed(&none), None, "no CORS unless configured");
}

// ---- DCA bots over HTTP -------------------------------------------------------------------

async fn bots_over_http(postgres: bool) {
    let s = serve(postgres, &["--dispatch-poll-ms", "100"]).await;
    let c = Client {
        http: reqwest::Client::new(),
        base: s.base.clone(),
    };
    let (alice, bob) = (token(Uuid::new_v4()), token(Uuid::new_v4()));
    let bot_json: Value = json!({
        "name": "dip buyer", "pair": "BTCUSDT", "timeframe": "1m",
        "entry_conditions": [{"type": "price", "operator": "<=", "compareValue": 100}],
        "base_order": 100, "safety_order": 50, "max_safety_orders": 2,
        "price_deviation_pct": 2, "take_profit_pct": 1, "quantity_step": 0.00001
    });
    // Every bad field named.
    let mut bad = bot_json.clone();
    bad["take_profit_pct"] = json!(-1);
    bad["entry_conditions"][0]["operator"] = json!("approximately");
    let (status, e) = c
        .call(Method::POST, "/v1/bots", Some(&alice), Some(bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let paths: Vec<&str> = e["error"]["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["path"].as_str()).collect())
        .unwrap_or_default();
    assert!(paths.contains(&"take_profit_pct"), "{e}");
    assert!(
        paths.iter().any(|p| p.starts_with("entry_conditions[0]")),
        "{e}"
    );

    let (status, bot) = c
        .call(
            Method::POST,
            "/v1/bots",
            Some(&alice),
            Some(bot_json.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    let id = bot["id"].as_str().unwrap_or_default().to_owned();
    let one = format!("/v1/bots/{id}");
    // Changed before any deal: the bot and its alerts are rebuilt.
    let mut changed = bot_json.clone();
    changed["name"] = json!("dip buyer, 2 %");
    changed["take_profit_pct"] = json!(2);
    let (status, replaced) = c
        .call(Method::PUT, &one, Some(&alice), Some(changed.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["definition"]["take_profit_pct"], 2.0);
    assert_eq!(replaced["name"], "dip buyer, 2 %");
    let (status, _) = c
        .call(Method::PUT, &one, Some(&bob), Some(changed.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not Bob's");
    let (_, list) = c.call(Method::GET, "/v1/bots", Some(&alice), None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    // Its alerts are the user's alerts too: the entry active, the rest paused.
    let (_, alerts) = c.call(Method::GET, "/v1/alerts", Some(&alice), None).await;
    let statuses: Vec<&str> = alerts["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        statuses.iter().filter(|s| **s == "active").count(),
        1,
        "{alerts}"
    );
    assert_eq!(statuses.len(), 4, "entry, two safety orders, take profit");

    // Bob sees none of it.
    for (method, path) in [
        (Method::GET, one.clone()),
        (Method::DELETE, one.clone()),
        (Method::POST, format!("{one}/pause")),
        (Method::POST, format!("{one}/resume")),
        (Method::GET, format!("{one}/deals")),
        (Method::GET, format!("{one}/orders")),
        (Method::POST, format!("{one}/close")),
    ] {
        let (status, _) = c.call(method.clone(), &path, Some(&bob), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (_, theirs) = c.call(Method::GET, "/v1/bots", Some(&bob), None).await;
    assert_eq!(theirs, json!([]));

    // Alice watches her events; Bob his.
    let mut events = sse_connect(&c, &alice, None).await;
    let mut buf = String::new();
    let mut bob_events = sse_connect(&c, &bob, None).await;

    // The entry fires on a pushed candle; the order and the open deal show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    push_candle(&c, 99.0).await;
    let entry_event = sse_until(&mut events, &mut buf, |e| e.event == "bot_order").await;
    assert_eq!(entry_event.data["type"], "bot_order");
    assert_eq!(entry_event.data["role"], "entry");
    assert_eq!(entry_event.data["side"], "buy");
    assert_eq!(entry_event.data["price"], 99.0);
    assert_eq!(entry_event.data["deal_number"], 1);
    assert_eq!(entry_event.data["bot_id"], id.as_str());
    let orders = eventually(&c, &format!("{one}/orders"), &alice, |b| {
        b.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(orders[0]["role"], "entry");
    assert_eq!(orders[0]["price"], 99.0);
    let (status, view) = c.call(Method::GET, &one, Some(&alice), None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["open_deal"]["number"], 1, "{view}");
    assert_eq!(view["last_price"], 99.0, "{view}");
    let unrealized = view["unrealized_pnl"].as_f64().unwrap_or(f64::NAN);
    assert!(unrealized < 0.0 && unrealized > -1.0, "fees only: {view}");
    let (_, deals) = c
        .call(Method::GET, &format!("{one}/deals"), Some(&alice), None)
        .await;
    assert_eq!(deals[0]["status"], "open", "{deals}");
    // With a deal open, its ladder and sizes cannot change (the refusal names them)…
    let mut ladder = changed.clone();
    ladder["base_order"] = json!(200);
    let (status, e) = c.call(Method::PUT, &one, Some(&alice), Some(ladder)).await;
    assert_eq!(
        (status, e["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("conflict"))
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("these may not: base_order")),
        "{e}"
    );
    // …its take profit can, and moves at once from the deal's average price (99).
    let mut wider = changed.clone();
    wider["take_profit_pct"] = json!(3);
    let (status, replaced) = c.call(Method::PUT, &one, Some(&alice), Some(wider)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    let (_, alerts) = c
        .call(Method::GET, "/v1/alerts?status=active", Some(&alice), None)
        .await;
    let tp = alerts["items"]
        .as_array()
        .and_then(|a| {
            a.iter().find(|x| {
                x["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("take profit"))
            })
        })
        .cloned()
        .unwrap_or_default();
    let tp_price = tp["definition"]["conditions"][0]["compareValue"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!((tp_price - 99.0 * 1.03).abs() < 1e-9, "{alerts}");

    // Pause: every alert paused; resume: the open deal's safety orders and take profit.
    let (status, paused) = c
        .call(Method::POST, &format!("{one}/pause"), Some(&alice), None)
        .await;
    assert_eq!(
        (status, paused["status"].clone()),
        (StatusCode::OK, json!("paused"))
    );
    let (_, alerts) = c
        .call(Method::GET, "/v1/alerts?status=active", Some(&alice), None)
        .await;
    assert_eq!(alerts["items"], json!([]));
    let (_, resumed) = c
        .call(Method::POST, &format!("{one}/resume"), Some(&alice), None)
        .await;
    assert_eq!(resumed["status"], "active");
    let (_, alerts) = c
        .call(Method::GET, "/v1/alerts?status=active", Some(&alice), None)
        .await;
    assert_eq!(
        alerts["items"].as_array().map(Vec::len),
        Some(3),
        "{alerts}"
    );

    // Close the deal now: a sell of everything at the last price, on the events stream as the
    // order and the deal closed; once.
    let (status, closed) = c
        .call(Method::POST, &format!("{one}/close"), Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["order"]["role"], "close");
    assert_eq!(closed["order"]["side"], "sell");
    assert_eq!(closed["order"]["price"], 99.0);
    assert_eq!(closed["deal"]["status"], "closed");
    assert_eq!(closed["deal"]["exit"], "closed_by_user");
    let pnl = closed["deal"]["realized_pnl"].as_f64().unwrap_or(f64::NAN);
    assert!(pnl < 0.0 && pnl > -1.0, "the fees: {closed}");
    let sold = sse_until(&mut events, &mut buf, |e| e.event == "bot_order").await;
    assert_eq!(sold.data["order_id"], closed["order"]["id"]);
    assert_eq!(sold.id, sold.data["id"].as_str().unwrap_or_default());
    let deal_closed = sse_until(&mut events, &mut buf, |_| true).await;
    assert_eq!(deal_closed.event, "deal_closed");
    assert_eq!(deal_closed.data["exit"], "closed_by_user");
    assert_eq!(deal_closed.data["deal_id"], closed["deal"]["id"]);
    assert_eq!(
        deal_closed.data["realized_pnl"],
        closed["deal"]["realized_pnl"]
    );
    let (status, e) = c
        .call(Method::POST, &format!("{one}/close"), Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    // A client that reconnects after the entry gets the rest from the store, nothing twice.
    let mut again = sse_connect(&c, &alice, Some(&entry_event.id)).await;
    let mut again_buf = String::new();
    let replayed = sse_until(&mut again, &mut again_buf, |_| true).await;
    assert_eq!(
        (replayed.event.as_str(), &replayed.data["order_id"]),
        ("bot_order", &closed["order"]["id"])
    );
    let replayed = sse_until(&mut again, &mut again_buf, |_| true).await;
    assert_eq!(
        (replayed.event.as_str(), replayed.id.as_str()),
        ("deal_closed", deal_closed.id.as_str())
    );
    // Bob's stream saw none of Alice's bot (a keep-alive or nothing at all).
    let quiet = tokio::time::timeout(Duration::from_millis(300), bob_events.chunk()).await;
    if let Ok(Ok(Some(bytes))) = quiet {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("bot_order"),
            "Bob got Alice's event"
        );
    }

    // Delete: the bot and its alerts are gone.
    let (status, _) = c.call(Method::DELETE, &one, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = c.call(Method::GET, &one, Some(&alice), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, alerts) = c.call(Method::GET, "/v1/alerts", Some(&alice), None).await;
    assert_eq!(alerts["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_over_http_sqlite() {
    bots_over_http(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_over_http_postgres() {
    bots_over_http(true).await;
}
