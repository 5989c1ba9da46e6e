//! The security review (issue 9, SECURITY.md "Tested guarantees"), one test per point, end to
//! end: `serve` started as a child process on an ephemeral port (SQLite or PostgreSQL) and
//! called over real HTTP; the dispatch crate's sender and dispatcher for send-time SSRF,
//! redirects and the per-user webhook cap; direct SQL as role `authenticated` for RLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const JWT_SECRET: &str = "security-test-jwt-secret-0123456789-abcdef";
const SERVICE_KEY: &str = "security-test-service-key-0123456789";

// ---- harness (the patterns of tests/api.rs) ------------------------------------------------

struct Serve {
    child: Child,
    base: String,
    url: String,
    dir: PathBuf,
    _db: Option<DropDatabase>,
}

struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
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

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Serve {
    /// Everything the process wrote to stdout and stderr so far.
    fn logs(&self) -> String {
        let out = std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        out + &err
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ar-sec-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn postgres_database() -> (String, DropDatabase) {
    let admin = admin_url();
    let name = format!("ar_sec_{}", Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    (format!("{base}/{name}"), DropDatabase { admin, name })
}

#[derive(Clone, Copy, PartialEq)]
enum Db {
    Sqlite,
    Postgres,
}

/// `serve --source ingest` with `extra` flags and `env`; webhooks to loopback allowed unless
/// `env` says otherwise.
async fn serve_with(db: Db, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let dir = temp_dir();
    let (url, guard) = match db {
        Db::Sqlite => (format!("sqlite://{}", dir.join("sec.db").display()), None),
        Db::Postgres => {
            let (url, guard) = postgres_database().await;
            (url, Some(guard))
        }
    };
    serve_at(dir, url, guard, extra, env).await
}

async fn serve_at(
    dir: PathBuf,
    url: String,
    db: Option<DropDatabase>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Serve {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--source", "ingest", "--poll-ms", "100"])
        .args(["--log-format", "json", "--dispatch-poll-ms", "100"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &url])
        .args(["--jwt-secret", JWT_SECRET])
        .args(extra);
    if !extra.contains(&"--service-key") {
        cmd.args(["--service-key", SERVICE_KEY]);
    }
    cmd.env("ALERT_WEBHOOK_ALLOW_PRIVATE", "1")
        .env_remove("RUST_LOG")
        .current_dir(&dir)
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let s = Serve {
        child,
        base: format!("http://127.0.0.1:{port}"),
        url,
        dir,
        _db: db,
    };
    let started = Instant::now();
    let client = reqwest::Client::new();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(r) = client.get(format!("{}/healthz", s.base)).send().await
            && r.status().is_success()
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("serve did not start: {}", s.logs())
}

async fn serve(db: Db, extra: &[&str]) -> Serve {
    serve_with(db, extra, &[]).await
}

fn token(user: Uuid) -> String {
    alert_api::auth::mint(JWT_SECRET, user, Duration::from_secs(600)).unwrap()
}

fn sign(claims: &Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(user: Uuid) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": user.to_string(), "role": "authenticated", "aud": "authenticated",
           "exp": now + 600, "iat": now})
}

/// URL-safe base64 without padding (to forge tokens jsonwebtoken refuses to make).
fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(s: &Serve) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: s.base.clone(),
        }
    }

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
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: String,
    ) -> (StatusCode, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap_or_default())
    }
}

fn alert(name: &str, message: &str, actions: Value) -> Value {
    json!({"name": name, "symbol": "BTCUSDT", "base_timeframe": "1m",
           "conditions": [{"id": "p", "type": "price", "operator": ">", "compareValue": 100}],
           "message": message, "actions": actions})
}

async fn push_candle(c: &Client, close: f64) {
    let now = chrono::Utc::now().timestamp_millis();
    let m0 = now - now.rem_euclid(60_000);
    let body = json!({"candles": [{"symbol": "BTCUSDT", "open_time": m0, "open": close, "high": close,
                                   "low": close, "close": close, "volume": 1, "closed": false}]});
    let (status, e) = c
        .call(Method::POST, "/v1/candles", Some(SERVICE_KEY), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{e}");
}

async fn eventually(c: &Client, path: &str, auth: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = c.call(Method::GET, path, Some(auth), None).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path}: timed out; last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A receiver on loopback answering every POST with `status`; counts requests.
async fn receiver(status: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::ready(StatusCode::from_u16(status).unwrap())
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, hits)
}

fn assert_unauthorized(what: &str, status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
}

// ---- JWT -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_alg_none_is_refused() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let payload = b64(claims(Uuid::new_v4()).to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        for signature in ["", "AAAA"] {
            let forged = format!("{}.{payload}.{signature}", b64(header.as_bytes()));
            let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&forged), None).await;
            assert_unauthorized(header, status, &body);
            assert!(
                !body.to_string().contains(&payload),
                "the token is not echoed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_hs256_signed_with_public_key_confusion_is_refused() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let user = Uuid::new_v4();
    // The classic confusion: a verifier that takes the token's alg would check an HS256
    // signature with the RSA public key as HMAC secret. Here only HS256 with the project
    // secret passes: an RSA public key as secret is a wrong signature…
    let public_key = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n-----END PUBLIC KEY-----\n";
    let hmac_with_public_key = sign(
        &claims(user),
        jsonwebtoken::Algorithm::HS256,
        public_key.as_bytes(),
    );
    // …an RS256/ES256/HS512 header is refused before any signature check, even over a valid
    // HS256 signature of the same payload…
    let valid = sign(
        &claims(user),
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET.as_bytes(),
    );
    let (_, rest) = valid.split_once('.').unwrap();
    let mut cases = vec![("HS256 with a public key", hmac_with_public_key)];
    for alg in ["RS256", "ES256", "PS256", "EdDSA"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        cases.push((alg, format!("{header}.{rest}")));
    }
    cases.push((
        "HS512 with the right secret",
        sign(
            &claims(user),
            jsonwebtoken::Algorithm::HS512,
            JWT_SECRET.as_bytes(),
        ),
    ));
    for (what, forged) in cases {
        let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&forged), None).await;
        assert_unauthorized(what, status, &body);
    }
    // …while the genuine token works.
    let (status, _) = c.call(Method::GET, "/v1/alerts", Some(&valid), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_refused() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let now = chrono::Utc::now().timestamp();
    let mut expired = claims(Uuid::new_v4());
    expired["exp"] = json!(now - 120); // beyond the 30 s leeway
    let t = sign(
        &expired,
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET.as_bytes(),
    );
    let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
    assert_unauthorized("expired", status, &body);
    assert_eq!(body["error"]["message"], "token expired");
    let mut no_exp = claims(Uuid::new_v4());
    no_exp.as_object_mut().unwrap().remove("exp");
    let t = sign(
        &no_exp,
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET.as_bytes(),
    );
    let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
    assert_unauthorized("no exp", status, &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_token_refused() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let mut early = claims(Uuid::new_v4());
    early["nbf"] = json!(chrono::Utc::now().timestamp() + 600);
    let t = sign(
        &early,
        jsonwebtoken::Algorithm::HS256,
        JWT_SECRET.as_bytes(),
    );
    let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
    assert_unauthorized("nbf", status, &body);
    assert_eq!(body["error"]["message"], "token not yet valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_audience_and_configured_issuer_are_checked() {
    let issuer = "https://project.supabase.co/auth/v1";
    let s = serve(Db::Sqlite, &["--jwt-issuer", issuer]).await;
    let c = Client::new(&s);
    let user = Uuid::new_v4();
    let with = |k: &str, v: Value| {
        let mut cl = claims(user);
        cl["iss"] = json!(issuer);
        cl[k] = v;
        sign(&cl, jsonwebtoken::Algorithm::HS256, JWT_SECRET.as_bytes())
    };
    for (what, t) in [
        ("no iss", token(user)),
        (
            "other iss",
            with("iss", json!("https://other.supabase.co/auth/v1")),
        ),
        ("aud anon", with("aud", json!("anon"))),
        ("role anon", with("role", json!("anon"))),
        ("role service_role", with("role", json!("service_role"))),
    ] {
        let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
        assert_unauthorized(what, status, &body);
    }
    let good =
        alert_api::auth::mint_with_issuer(JWT_SECRET, user, Duration::from_secs(60), Some(issuer))
            .unwrap();
    let (status, body) = c.call(Method::GET, "/v1/alerts", Some(&good), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_query_parameter_only_on_streaming_routes() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    for path in [
        "/v1/alerts",
        "/v1/notifications",
        "/v1/webhook-secret",
        "/v1/bots",
    ] {
        let (status, body) = c
            .call(Method::GET, &format!("{path}?access_token={t}"), None, None)
            .await;
        assert_unauthorized(path, status, &body);
    }
    let resp = c
        .http
        .get(format!("{}/v1/events?access_token={t}", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "SSE takes the query token");
    drop(resp);
    // The WebSocket too.
    let ws = format!(
        "{}/v1/ws?access_token={t}",
        c.base.replace("http://", "ws://")
    );
    let (_socket, response) = tokio_tungstenite::connect_async(ws).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
}

// ---- RLS / isolation -----------------------------------------------------------------------

/// Every route of /openapi.json with a path parameter, as `(method, path template)`.
async fn routes_with_ids(c: &Client) -> Vec<(String, String)> {
    let (_, doc) = c.call(Method::GET, "/openapi.json", None, None).await;
    let mut out = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out.sort();
    out
}

async fn every_endpoint_refuses_another_users_ids(db: Db) {
    let (hook, _) = receiver(200).await;
    let s = serve(db, &["--rate-limit", "1000"]).await;
    let c = Client::new(&s);
    let (alice_id, bob_id) = (Uuid::new_v4(), Uuid::new_v4());
    let (alice, bob) = (token(alice_id), token(bob_id));
    let actions = json!([{"type": "notify", "title": "up"},
                         {"type": "webhook", "url": format!("http://127.0.0.1:{hook}/hook")}]);
    let (status, created) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&alice),
            Some(alert("a", "{{symbol}}", actions)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let alert_id = created["id"].as_str().unwrap().to_owned();
    let bot_json = json!({
        "name": "dip buyer", "pair": "BTCUSDT", "timeframe": "1m",
        "entry_conditions": [{"type": "price", "operator": "<=", "compareValue": 1}],
        "base_order": 100, "safety_order": 50, "max_safety_orders": 2,
        "price_deviation_pct": 2, "take_profit_pct": 1, "quantity_step": 0.00001
    });
    let (status, bot) = c
        .call(
            Method::POST,
            "/v1/bots",
            Some(&alice),
            Some(bot_json.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bot}");
    let bot_id = bot["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    push_candle(&c, 150.0).await;
    let notes = eventually(&c, "/v1/notifications", &alice, |b| {
        b.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let note_id = notes[0]["id"].as_str().unwrap().to_owned();
    let deliveries = eventually(&c, "/v1/deliveries", &alice, |b| {
        b[0]["status"] == "delivered"
    })
    .await;
    let delivery_id = deliveries[0]["id"].as_str().unwrap().to_owned();
    let (_, alice_secret) = c
        .call(Method::GET, "/v1/webhook-secret", Some(&alice), None)
        .await;
    let before_alert = c
        .call(
            Method::GET,
            &format!("/v1/alerts/{alert_id}"),
            Some(&alice),
            None,
        )
        .await
        .1;
    let before_bot = c
        .call(
            Method::GET,
            &format!("/v1/bots/{bot_id}"),
            Some(&alice),
            None,
        )
        .await
        .1;

    // Bob, with Alice's ids, on every route that takes one.
    let routes = routes_with_ids(&c).await;
    let mut covered = 0;
    for (method, template) in &routes {
        let id = if template.starts_with("/v1/alerts/") {
            &alert_id
        } else if template.starts_with("/v1/bots/") {
            &bot_id
        } else if template.starts_with("/v1/notifications/") {
            &note_id
        } else if template.starts_with("/v1/deliveries/") {
            &delivery_id
        } else {
            panic!("{method} {template}: a route with an id this test does not know: add it")
        };
        let path = template.replace("{id}", id);
        let body = match (method.as_str(), template.as_str()) {
            ("PUT", "/v1/alerts/{id}") => Some(alert("mine", "x", json!([{"type": "notify"}]))),
            ("PATCH", "/v1/alerts/{id}") => Some(json!({"name": "mine"})),
            ("PUT", "/v1/bots/{id}") => Some(bot_json.clone()),
            ("POST", "/v1/alerts/{id}/evaluate") => Some(json!({})),
            _ => None,
        };
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = c.call(m, &path, Some(&bob), body).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} as bob: {body}"
        );
        assert_eq!(body["error"]["code"], "not_found", "{method} {path}");
        covered += 1;
    }
    assert!(covered >= 14, "only {covered} routes with ids: {routes:?}");

    // Lists show Bob nothing of Alice's.
    for path in [
        "/v1/alerts",
        "/v1/triggers",
        &format!("/v1/triggers?alert_id={alert_id}"),
    ] {
        let (status, body) = c.call(Method::GET, path, Some(&bob), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body["items"], json!([]), "{path}: {body}");
    }
    for path in ["/v1/notifications", "/v1/deliveries", "/v1/bots"] {
        let (_, body) = c.call(Method::GET, path, Some(&bob), None).await;
        assert_eq!(body, json!([]), "{path}");
    }
    let (_, bob_secret) = c
        .call(Method::GET, "/v1/webhook-secret", Some(&bob), None)
        .await;
    assert_ne!(bob_secret["secret"], alice_secret["secret"]);

    // And nothing changed.
    let after_alert = c
        .call(
            Method::GET,
            &format!("/v1/alerts/{alert_id}"),
            Some(&alice),
            None,
        )
        .await
        .1;
    let after_bot = c
        .call(
            Method::GET,
            &format!("/v1/bots/{bot_id}"),
            Some(&alice),
            None,
        )
        .await
        .1;
    assert_eq!(before_alert["name"], after_alert["name"]);
    assert_eq!(before_alert["status"], after_alert["status"]);
    assert_eq!(before_alert["updated_at"], after_alert["updated_at"]);
    assert_eq!(before_bot["status"], after_bot["status"]);
    assert_eq!(before_bot["name"], after_bot["name"]);
    let (_, notes) = c
        .call(Method::GET, "/v1/notifications", Some(&alice), None)
        .await;
    assert_eq!(notes[0]["read_at"], Value::Null, "bob did not mark it read");
    let (_, d) = c
        .call(Method::GET, "/v1/deliveries", Some(&alice), None)
        .await;
    assert_eq!(
        d.as_array().map(Vec::len),
        Some(1),
        "bob redelivered nothing"
    );
    let (_, secret_again) = c
        .call(Method::GET, "/v1/webhook-secret", Some(&alice), None)
        .await;
    assert_eq!(secret_again["secret"], alice_secret["secret"]);

    if db == Db::Postgres {
        rls_refuses_other_users_rows(&s.url, alice_id, bob_id).await;
    }
}

/// As role `authenticated` with Bob's claims (what the store does per request), no RLS table
/// gives Bob Alice's rows, to read, update or delete.
async fn rls_refuses_other_users_rows(url: &str, alice: Uuid, bob: Uuid) {
    use sqlx::Row;
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity
           AND EXISTS (SELECT 1 FROM information_schema.columns col
                       WHERE col.table_schema = 'public' AND col.table_name = c.relname AND col.column_name = 'user_id')
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect();
    for expected in [
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
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} lacks forced RLS: {tables:?}"
        );
    }
    let count = |table: &str| format!("SELECT count(*) AS n FROM {table} WHERE user_id = $1");
    let mut non_empty = 0;
    for table in &tables {
        let owned: i64 = sqlx::query(sqlx::AssertSqlSafe(count(table)))
            .bind(alice)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("n");
        non_empty += usize::from(owned > 0);
        let as_bob = |sql: String, other: Option<Uuid>| {
            let pool = pool.clone();
            async move { as_user(&pool, bob, sql, alice, other).await }
        };
        let read = as_bob(count(table), None).await;
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{table}: bob reads alice's rows: {read:?}"
        );
        let updated = as_bob(
            format!("UPDATE {table} SET user_id = user_id WHERE user_id = $1"),
            None,
        )
        .await;
        assert!(
            matches!(updated, Ok(0) | Err(_)),
            "{table}: bob updates alice's rows: {updated:?}"
        );
        let stolen = as_bob(
            format!("UPDATE {table} SET user_id = $2 WHERE user_id = $1"),
            Some(bob),
        )
        .await;
        assert!(
            matches!(stolen, Ok(0) | Err(_)),
            "{table}: bob takes alice's rows: {stolen:?}"
        );
        let deleted = as_bob(format!("DELETE FROM {table} WHERE user_id = $1"), None).await;
        assert!(
            matches!(deleted, Ok(0) | Err(_)),
            "{table}: bob deletes alice's rows: {deleted:?}"
        );
        if let Ok(seen) = as_user(&pool, alice, count(table), alice, None).await {
            assert_eq!(
                seen, owned,
                "{table}: alice sees her own rows (the role setup works)"
            );
        }
        let after: i64 = sqlx::query(sqlx::AssertSqlSafe(count(table)))
            .bind(alice)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("n");
        assert_eq!(after, owned, "{table}: alice's rows unchanged");
    }
    assert!(
        non_empty >= 6,
        "too few tables hold alice's rows to prove anything: {non_empty}"
    );
    pool.close().await;
}

/// Runs `sql` (a count, or a statement: rows affected) as role `authenticated` with `who`'s
/// claims, binding `owner` (and `other`), in a transaction rolled back afterwards.
async fn as_user(
    pool: &sqlx::PgPool,
    who: Uuid,
    sql: String,
    owner: Uuid,
    other: Option<Uuid>,
) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    let mut tx = pool.begin().await?;
    let claims = json!({"sub": who, "role": "authenticated"}).to_string();
    sqlx::query("SELECT set_config('role', 'authenticated', true), set_config('request.jwt.claims', $1, true)")
        .bind(claims)
        .execute(&mut *tx)
        .await?;
    let result = if sql.starts_with("SELECT") {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_one(&mut *tx)
            .await
            .map(|r| r.get::<i64, _>("n"))
    } else {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(owner);
        if let Some(other) = other {
            q = q.bind(other);
        }
        q.execute(&mut *tx).await.map(|r| r.rows_affected() as i64)
    };
    let _ = tx.rollback().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_another_users_ids_postgres() {
    every_endpoint_refuses_another_users_ids(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_another_users_ids_sqlite() {
    every_endpoint_refuses_another_users_ids(Db::Sqlite).await;
}

// ---- SSRF ----------------------------------------------------------------------------------

const PRIVATE_URLS: &[&str] = &[
    "http://localhost/",
    "http://ip6-localhost/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://example.com@127.0.0.1/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_urls_to_private_addresses_refused_at_creation() {
    let s = serve_with(Db::Sqlite, &[], &[("ALERT_WEBHOOK_ALLOW_PRIVATE", "0")]).await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    for url in PRIVATE_URLS {
        if *url == "http://ip6-localhost/"
            && tokio::net::lookup_host(("ip6-localhost", 80))
                .await
                .is_err()
        {
            continue; // not in this machine's hosts file
        }
        let body = alert(
            "ssrf",
            "x",
            json!([{"type": "notify"}, {"type": "webhook", "url": url}]),
        );
        let (status, e) = c
            .call(Method::POST, "/v1/alerts", Some(&t), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {e}");
        assert_eq!(e["error"]["path"], "actions[1].url", "{url}: {e}");
        // A name's resolved internal address is not revealed.
        if url.contains("localhost") {
            let msg = e["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !msg.contains("127.0.0.1") && !msg.contains("::1"),
                "{url}: {msg}"
            );
            assert!(msg.contains("non-public address"), "{msg}");
        }
    }
    let (_, list) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn webhook_urls_to_private_addresses_refused_at_send_time() {
    use alert_dispatch::webhook::{Verdict, WebhookSender};
    use alert_dispatch::{AddressPolicy, Secret};
    let (port, hits) = receiver(200).await;
    let sender = WebhookSender::new(AddressPolicy::default(), Duration::from_secs(2)).unwrap();
    let secret = Secret::parse(&alert_dispatch::generate_secret()).unwrap();
    let mut urls: Vec<String> = PRIVATE_URLS.iter().map(|u| u.to_string()).collect();
    // The live receiver, by every spelling: none may reach it.
    for host in [
        "localhost",
        "127.0.0.1",
        "2130706433",
        "0x7f.1",
        "[::ffff:127.0.0.1]",
    ] {
        urls.push(format!("http://{host}:{port}/hook"));
    }
    for url in &urls {
        let attempt = sender
            .send(
                url,
                "msg_1",
                1_700_000_000,
                std::slice::from_ref(&secret),
                "{}",
            )
            .await;
        assert_eq!(attempt.verdict, Verdict::Fail, "{url}: {attempt:?}");
        assert_eq!(attempt.status, None, "{url}: nothing sent");
        let error = attempt.error.unwrap_or_default();
        if url.contains("localhost") {
            assert!(
                !error.contains("127.0.0.1") && !error.contains("::1"),
                "{url}: {error}"
            );
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the receiver was reached");
}

#[tokio::test]
async fn webhook_redirect_to_loopback_is_not_followed() {
    use alert_dispatch::webhook::{Verdict, WebhookSender};
    use alert_dispatch::{AddressPolicy, Secret};
    let (internal, internal_hits) = receiver(200).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(move || {
        std::future::ready(
            axum::response::Response::builder()
                .status(302)
                .header("location", format!("http://127.0.0.1:{internal}/admin"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    // Private addresses allowed so the "public-looking" receiver on loopback is reachable:
    // the point is that its redirect is not followed, whatever the target.
    let policy = AddressPolicy {
        allow_private: true,
        allowed_ports: None,
    };
    let sender = WebhookSender::new(policy, Duration::from_secs(2)).unwrap();
    let secret = Secret::parse(&alert_dispatch::generate_secret()).unwrap();
    let attempt = sender
        .send(
            &format!("http://127.0.0.1:{public}/hook"),
            "msg_1",
            1_700_000_000,
            &[secret],
            "{}",
        )
        .await;
    assert_eq!(attempt.status, Some(302));
    assert_eq!(
        attempt.verdict,
        Verdict::Fail,
        "a redirect is a permanent failure"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

// ---- hostile bodies ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_with_the_error_shape() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(alert_api::MAX_BODY + 1));
    for path in ["/v1/alerts", "/v1/alerts/validate", "/v1/bots"] {
        let (status, text) = c.raw(Method::POST, path, Some(&t), big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], "payload_too_large", "{path}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_is_400_and_server_stays_up() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    let depth = 10_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let in_field = format!("{{\"name\":\"n\",\"conditions\":{arrays}}}");
    for body in [arrays, objects, in_field] {
        for path in ["/v1/alerts", "/v1/alerts/validate", "/v1/bots"] {
            let (status, text) = c.raw(Method::POST, path, Some(&t), body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
            let e: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(e["error"]["code"], "validation_failed");
        }
    }
    let (status, _) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK, "still up");
}

// ---- template injection --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_values_are_not_expanded_again() {
    let s = serve(Db::Sqlite, &[]).await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    // An unknown placeholder is refused at creation, naming the field.
    for message in [
        "{{secret}}",
        "{{ env.DATABASE_URL }}",
        "{{symbol",
        "{{alert.user_id}}",
    ] {
        let (status, e) = c
            .call(
                Method::POST,
                "/v1/alerts",
                Some(&t),
                Some(alert("x", message, json!([{"type": "notify"}]))),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}: {e}");
        assert_eq!(e["error"]["path"], "message", "{message}: {e}");
    }
    // A substituted value that looks like a placeholder stays as written.
    let name = "{{close}} {{secret}} {{alert.id}} {{ }}";
    let (status, created) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&t),
            Some(alert(
                name,
                "{{alert.name}} | {{symbol}} {{close}}",
                json!([{"type": "notify"}]),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    push_candle(&c, 150.0).await;
    let triggers = eventually(&c, &format!("/v1/triggers?alert_id={id}"), &t, |b| {
        b["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(
        triggers["items"][0]["snapshot"]["message"],
        format!("{name} | BTCUSDT 150")
    );
}

// ---- secrets -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_in_logs_or_error_bodies() {
    let db_password = "pg-pass-9f8e7d6c5b";
    let metrics_token = "metrics-token-55aa66bb77cc";
    let (url, guard) = postgres_database().await;
    let with_password = url.replacen("://postgres@", &format!("://postgres:{db_password}@"), 1);
    assert_ne!(with_password, url, "the admin URL has the expected shape");
    let (failing, failing_hits) = receiver(500).await;
    let s = serve_at(
        temp_dir(),
        with_password.clone(),
        Some(guard),
        &[
            "--metrics-token",
            metrics_token,
            "--webhook-retry-schedule",
            "100ms,100ms",
        ],
        &[("RUST_LOG", "debug,sqlx=debug,hyper=info,h2=info")],
    )
    .await;
    let c = Client::new(&s);
    let user = Uuid::new_v4();
    let t = token(user);
    let action_secret = alert_dispatch::generate_secret();
    let (_, user_secret) = c
        .call(Method::GET, "/v1/webhook-secret", Some(&t), None)
        .await;
    let user_secret = user_secret["secret"].as_str().unwrap().to_owned();
    let actions = json!([{"type": "webhook", "url": format!("http://127.0.0.1:{failing}/h?key=url-secret-123"), "secret": action_secret},
                         {"type": "webhook", "url": format!("http://127.0.0.1:{failing}/h2")}]);
    let (status, e) = c
        .call(
            Method::POST,
            "/v1/alerts",
            Some(&t),
            Some(alert("s", "{{symbol}}", actions)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    push_candle(&c, 150.0).await;

    // Errors, each body checked.
    let mut bodies = Vec::new();
    let wrong_sig = sign(
        &claims(user),
        jsonwebtoken::Algorithm::HS256,
        b"x-wrong-secret-of-32-characters-xxxxxxx",
    );
    for (method, path, auth) in [
        (Method::GET, "/v1/alerts", Some(wrong_sig.as_str())),
        (Method::GET, "/v1/alerts", Some(SERVICE_KEY)),
        (Method::GET, "/v1/alerts", Some(JWT_SECRET)),
        (Method::POST, "/v1/candles", Some(t.as_str())),
        (Method::POST, "/v1/candles", Some("wrong-service-key")),
        (Method::GET, "/v1/nothing", Some(t.as_str())),
        (Method::GET, "/v1/alerts/not-a-uuid", Some(t.as_str())),
    ] {
        let (status, text) = c.raw(method, path, auth, "{\"candles\": 1}".into()).await;
        assert!(status.is_client_error(), "{path}: {status}");
        bodies.push(text);
    }
    let (status, text) = c
        .raw(
            Method::POST,
            "/v1/alerts",
            Some(&t),
            format!("{{\"name\": \"{JWT_SECRET}\", "),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    bodies.push(text);
    let metrics = c
        .http
        .get(format!("{}/metrics", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        metrics.status(),
        StatusCode::UNAUTHORIZED,
        "metrics without the token"
    );
    bodies.push(metrics.text().await.unwrap());
    let metrics = c
        .http
        .get(format!("{}/metrics", c.base))
        .bearer_auth(metrics_token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK, "metrics with the token");
    bodies.push(metrics.text().await.unwrap());

    // The failing webhook is retried and fails for good.
    eventually(&c, "/v1/deliveries", &t, |b| {
        b.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|d| d["status"] == "failed"))
    })
    .await;
    assert!(failing_hits.load(Ordering::SeqCst) >= 6);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = s.logs();
    assert!(
        logs.contains("delivery failed for good"),
        "debug logs were captured"
    );
    let secrets = [
        db_password,
        JWT_SECRET,
        SERVICE_KEY,
        metrics_token,
        &action_secret,
        user_secret.as_str(),
        user_secret.trim_start_matches("whsec_"),
        action_secret.trim_start_matches("whsec_"),
        t.as_str(),
        "url-secret-123",
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret ({}…) is in the logs",
            &secret[..6]
        );
        for body in &bodies {
            assert!(
                !body.contains(secret),
                "a secret ({}…) is in an error body: {body}",
                &secret[..6]
            );
        }
    }
}

#[test]
fn database_password_not_in_startup_errors() {
    let password = "pg-startup-pass-1a2b3c";
    let missing = format!(
        "postgres://postgres:{password}@127.0.0.1:5432/ar_sec_missing_{}",
        Uuid::new_v4().simple()
    );
    let runs: Vec<_> = [
        vec!["serve", "--source", "simulated", "--listen", "127.0.0.1:0"],
        vec!["dispatch", "--listen", "127.0.0.1:0"],
        vec!["migrate"],
        vec![
            "alerts",
            "list",
            "--user",
            "00000000-0000-4000-8000-000000000001",
        ],
    ]
    .into_iter()
    .map(|args| {
        let url = missing.clone();
        std::thread::spawn(move || {
            let dir = temp_dir();
            let out = Command::new(BIN)
                .args(&args)
                .args(["--database-url", &url])
                .env("SUPABASE_JWT_SECRET", JWT_SECRET)
                .env_remove("RUST_LOG")
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {url}: {text}");
            assert!(
                !text.contains(password),
                "{args:?}: the password is printed: {text}"
            );
            if args[0] == "serve" || args[0] == "dispatch" {
                assert!(
                    text.contains("postgres://postgres:***@127.0.0.1"),
                    "{args:?}: the URL is named, redacted: {text}"
                );
            }
        })
    })
    .collect();
    for run in runs {
        run.join().unwrap();
    }
}

// ---- limits under concurrency --------------------------------------------------------------

async fn limits_hold_under_concurrency(db: Db) {
    let s = serve(
        db,
        &[
            "--rate-limit",
            "10000",
            "--max-alerts-per-symbol",
            "5",
            "--max-alerts-per-user",
            "8",
        ],
    )
    .await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    let create = |symbol: &'static str, i: usize| {
        let (c, t) = (c.clone(), t.clone());
        tokio::spawn(async move {
            let mut body = alert(&format!("a{i}"), "x", json!([{"type": "notify"}]));
            body["symbol"] = json!(symbol);
            c.call(Method::POST, "/v1/alerts", Some(&t), Some(body))
                .await
        })
    };
    let tally = |results: Vec<(StatusCode, Value)>| {
        let created = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        for (status, body) in &results {
            assert!(
                *status == StatusCode::CREATED
                    || (*status == StatusCode::CONFLICT
                        && body["error"]["code"] == "limit_exceeded"),
                "{status} {body}"
            );
        }
        created
    };
    let burst: Vec<_> = (0..30).map(|i| create("BTCUSDT", i)).collect();
    let mut results = Vec::new();
    for h in burst {
        results.push(h.await.unwrap());
    }
    assert_eq!(tally(results), 5, "per user and symbol");
    let symbols = ["ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"];
    let burst: Vec<_> = (0..30)
        .map(|i| create(symbols[i % symbols.len()], i))
        .collect();
    let mut results = Vec::new();
    for h in burst {
        results.push(h.await.unwrap());
    }
    assert_eq!(tally(results), 3, "per user: 8 in all");
    let (_, list) = c
        .call(Method::GET, "/v1/alerts?limit=100", Some(&t), None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(8), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_limits_hold_under_concurrency_sqlite() {
    limits_hold_under_concurrency(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_limits_hold_under_concurrency_postgres() {
    limits_hold_under_concurrency(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_under_concurrency() {
    // 1 request/s, bursts of 2.
    let s = serve(Db::Sqlite, &["--rate-limit", "1"]).await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let (c, t) = (c.clone(), t.clone());
            tokio::spawn(async move {
                let resp = c
                    .http
                    .get(format!("{}/v1/alerts", c.base))
                    .bearer_auth(&t)
                    .send()
                    .await
                    .unwrap();
                (resp.status(), resp.headers().contains_key("retry-after"))
            })
        })
        .collect();
    let started = Instant::now();
    let mut ok = 0;
    for h in burst {
        let (status, retry_after) = h.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => assert!(retry_after),
            other => panic!("{other}"),
        }
    }
    // The burst, plus what refilled while the burst ran (1/s).
    let refill = started.elapsed().as_secs() as usize + 1;
    assert!(ok >= 1 && ok <= 2 + refill, "{ok} succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_bounded_by_timeout_and_in_flight_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = serve(
        Db::Sqlite,
        &[
            "--max-requests-in-flight",
            "2",
            "--request-timeout-ms",
            "1500",
        ],
    )
    .await;
    let c = Client::new(&s);
    let t = token(Uuid::new_v4());
    let addr = s.base.trim_start_matches("http://").to_owned();
    // Two requests whose bodies never arrive hold both slots.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        stalled.push(sock);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, e) = c.call(Method::GET, "/v1/catalog", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(e["error"]["code"], "unavailable");
    let (status, _) = c.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "health checks are not behind the API's cap"
    );
    // The timeout answers the stalled requests and frees the slots.
    for mut sock in stalled {
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    }
    let (status, _) = c.call(Method::GET, "/v1/alerts", Some(&t), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_key_is_trimmed_and_compared_whole() {
    let padded = format!("  {SERVICE_KEY}\n");
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("sec.db").display());
    // The configured key padded with whitespace (as from a file or env var with a newline).
    let s = serve_at(dir, url, None, &["--service-key", &padded], &[]).await;
    let c = Client::new(&s);
    push_candle(&c, 1.0).await;
    for wrong in [
        &SERVICE_KEY[..SERVICE_KEY.len() - 1],
        &format!("{SERVICE_KEY}x"),
        "",
    ] {
        let (status, _) = c
            .raw(
                Method::POST,
                "/v1/candles",
                Some(wrong),
                "{\"candles\": []}".into(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
}

// ---- per-user webhook concurrency ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_slow_receivers_do_not_starve_other_users() {
    use alert_dispatch::{AddressPolicy, DispatchConfig, Dispatcher};
    use alert_store::{DeliveryKind, NewDelivery, NewTrigger, Store, StoreOptions};
    let dir = temp_dir();
    let store = Store::connect(
        &format!("sqlite://{}", dir.join("d.db").display()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    // Six slow receivers (six host:port keys) for the greedy user, one fast one for the other.
    let slow_app = || {
        axum::Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "ok"
        })
    };
    let mut slow = Vec::new();
    for _ in 0..6 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        slow.push(l.local_addr().unwrap().port());
        let app = slow_app();
        tokio::spawn(async move { axum::serve(l, app).await });
    }
    let (fast, fast_hits) = receiver(200).await;
    let (greedy, other) = (Uuid::new_v4(), Uuid::new_v4());
    let def = |user: Uuid| {
        let store = store.clone();
        async move {
            let json = alert("a", "x", json!([{"type": "notify"}]));
            let d = alert_engine::parse::parse_alert(&json).unwrap();
            let new = alert_store::NewAlert {
                name: d.name.clone(),
                symbol: d.symbol,
                base_timeframe: d.base_timeframe,
                definition: json,
                status: alert_store::AlertStatus::Active,
            };
            store
                .create_alert(user, &new, chrono::Utc::now())
                .await
                .unwrap()
        }
    };
    let (a, b) = (def(greedy).await, def(other).await);
    let base = chrono::Utc::now() - chrono::Duration::hours(48);
    let mut triggers = Vec::new();
    for h in 0..12 {
        let bar = base + chrono::Duration::minutes(h);
        triggers.push(NewTrigger {
            alert_id: a.id,
            user_id: a.user_id,
            symbol: a.symbol.clone(),
            bar_time: bar,
            fired_at: bar,
            snapshot: json!({}),
            notification: None,
            deliveries: vec![NewDelivery {
                action_index: 0,
                kind: DeliveryKind::Webhook,
                url: format!("http://127.0.0.1:{}/h", slow[h as usize % slow.len()]),
                secret: None,
                payload: "{}".into(),
            }],
            spend: false,
        });
    }
    store
        .record_triggers(&triggers, chrono::Utc::now())
        .await
        .unwrap();
    let mut others = Vec::new();
    for h in 0..4 {
        let bar = base + chrono::Duration::minutes(h);
        others.push(NewTrigger {
            alert_id: b.id,
            user_id: b.user_id,
            symbol: b.symbol.clone(),
            bar_time: bar,
            fired_at: bar,
            snapshot: json!({}),
            notification: None,
            deliveries: vec![NewDelivery {
                action_index: 0,
                kind: DeliveryKind::Webhook,
                url: format!("http://127.0.0.1:{fast}/h"),
                secret: None,
                payload: "{}".into(),
            }],
            spend: false,
        });
    }
    store
        .record_triggers(&others, chrono::Utc::now())
        .await
        .unwrap();
    let config = DispatchConfig {
        poll: Duration::from_millis(20),
        timeout: Duration::from_secs(3),
        lease: Duration::from_secs(10),
        max_in_flight: 8,
        per_host: 2,
        per_user: 3,
        defer: Duration::from_millis(50),
        policy: AddressPolicy {
            allow_private: true,
            allowed_ports: None,
        },
        ..DispatchConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), config, None).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let run = tokio::spawn(dispatcher.run(cancel.clone()));
    while fast_hits.load(Ordering::SeqCst) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the other user's webhooks never went out"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "the other user waited {:?} behind the greedy one's slow receivers",
        started.elapsed()
    );
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), run).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
