//! The market endpoints over real HTTP, answered by a real runner on a SQLite store: auth,
//! validation with field paths, candles and indicators equal to hand-computed values, dry runs
//! of stored alerts that fire nothing, isolation between users, 503 without a runner.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alert_api::{ApiState, Auth, HttpConfig, RateLimiter};
use alert_core::{BarTime, Candle, CandleUpdate, Symbol};
use alert_dispatch::{AddressPolicy, LiveHub};
use alert_runtime::marketdata::SourceEvent;
use alert_runtime::{MarketHandle, Runner, RunnerConfig};
use alert_store::{AlertStatus, NewAlert, Store, StoreOptions, TriggerQuery};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "market-test-secret-with-at-least-32-characters";
const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const ALICE: Uuid = Uuid::from_u128(0xa11ce);
const BOB: Uuid = Uuid::from_u128(0xb0b);

fn token(user: Uuid) -> String {
    alert_api::auth::mint(SECRET, user, Duration::from_secs(600)).unwrap()
}

fn state(store: Store, market: Option<MarketHandle>) -> ApiState {
    ApiState {
        bots: alert_bots::live::StoreBots::new(store.clone()),
        store,
        auth: Arc::new(Auth::new(SECRET, None)),
        rate: Arc::new(RateLimiter::new(1000.0, 1000)),
        live: LiveHub::default(),
        policy: AddressPolicy::default(),
        secret_grace: Duration::from_secs(60),
        market,
        ingest: None,
    }
}

/// Serves `router` on a free port; returns its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn candle(minute: i64, close: f64, closed: bool) -> SourceEvent {
    SourceEvent::Candle {
        symbol: Symbol::new("BTCUSDT").unwrap(),
        update: CandleUpdate {
            candle: Candle {
                open_time: BarTime::from_millis(T0 + minute * 60_000),
                open: close - 0.5,
                high: close + 1.0,
                low: close - 1.0,
                close,
                volume: 100.0 + minute as f64,
            },
            closed,
        },
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<Uuid>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(u) = user {
            req = req.bearer_auth(token(u));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str, user: Option<Uuid>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, user).await
    }

    async fn post(&self, path: &str, user: Option<Uuid>) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, user).await
    }
}

fn error_paths(body: &Value) -> Vec<String> {
    let e = &body["error"];
    let mut paths: Vec<String> = e["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if paths.is_empty()
        && let Some(p) = e["path"].as_str()
    {
        paths.push(p.to_owned());
    }
    paths
}

async fn store_alert(store: &Store, user: Uuid, definition: Value, status: AlertStatus) -> Uuid {
    let def = alert_engine::parse::parse_alert(&definition).unwrap();
    let row = store
        .create_alert(
            user,
            &NewAlert {
                name: def.name.clone(),
                symbol: def.symbol,
                base_timeframe: def.base_timeframe,
                definition,
                status,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    row.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_endpoints_answer_from_the_runner() {
    let path = std::env::temp_dir().join(format!("ar-market-{}.db", Uuid::new_v4()));
    let store = Store::connect(
        &format!("sqlite://{}", path.display()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let (mut runner, _wanted, _ready) = Runner::start(
        store.clone(),
        RunnerConfig {
            poll: Duration::from_millis(50),
            live_only: false,
            ..RunnerConfig::default()
        },
    )
    .await
    .unwrap();
    let market = runner.market_handle();
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let runner_task = tokio::spawn(runner.run(rx, cancel.clone()));

    let app = alert_api::router(state(store.clone(), Some(market)), &HttpConfig::default());
    let c = Client {
        http: reqwest::Client::new(),
        base: serve(app).await,
    };

    // Closes 10, 11, 12, 13, 14 (closed), then minute 5 in progress at 20.
    for m in 0..5 {
        tx.send(candle(m, 10.0 + m as f64, true)).await.unwrap();
    }
    tx.send(candle(5, 20.0, false)).await.unwrap();

    // ---- auth: every endpoint needs a user.
    let id = Uuid::new_v4();
    for path in [
        "/v1/candles?symbol=BTCUSDT&timeframe=1m".to_owned(),
        "/v1/indicators?symbol=BTCUSDT&timeframe=1m&spec=SMA(3)".to_owned(),
        "/v1/catalog".to_owned(),
        "/v1/templates".to_owned(),
    ] {
        let (status, body) = c.get(&path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, _) = c.post(&format!("/v1/alerts/{id}/evaluate"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // POST on the same path is ingest (the service key, not a user).
    let (status, _) = c.post("/v1/candles", Some(ALICE)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // ---- validation: every bad parameter, by name.
    let (status, body) = c.get("/v1/candles", Some(ALICE)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_paths(&body), ["symbol", "timeframe"]);
    let (status, body) = c
        .get(
            "/v1/candles?symbol=BTC-USDT&timeframe=2m&limit=0",
            Some(ALICE),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_paths(&body), ["symbol", "timeframe", "limit"]);
    assert_eq!(body["error"]["code"], "validation_failed");
    let (status, body) = c
        .get(
            "/v1/candles?symbol=BTCUSDT&timeframe=1m&limit=1001",
            Some(ALICE),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["path"], "limit");
    let (status, body) = c
        .get(
            "/v1/indicators?symbol=BTCUSDT&timeframe=1m&spec=FOO(3)",
            Some(ALICE),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["path"], "spec");
    assert!(body["error"]["message"].as_str().unwrap().contains("FOO"));
    let (_, body) = c
        .get(
            "/v1/indicators?symbol=BTCUSDT&timeframe=1m&spec=RSI(1)",
            Some(ALICE),
        )
        .await;
    assert_eq!(body["error"]["path"], "spec");
    let (_, body) = c
        .get("/v1/indicators?symbol=BTCUSDT&timeframe=1m", Some(ALICE))
        .await;
    assert_eq!(body["error"]["path"], "spec");

    // ---- candles, as fed (and the last in progress).
    let (status, body) = c
        .get(
            "/v1/candles?symbol=btcusdt&timeframe=1m&limit=1000",
            Some(ALICE),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bars = body.as_array().unwrap();
    assert_eq!(bars.len(), 6);
    assert_eq!(
        bars[0],
        json!({"open_time": "2024-01-01T00:00:00Z", "open": 9.5, "high": 11.0, "low": 9.0,
               "close": 10.0, "volume": 100.0, "closed": true})
    );
    assert_eq!(bars[5]["open_time"], "2024-01-01T00:05:00Z");
    assert_eq!(bars[5]["close"], 20.0);
    assert_eq!(bars[5]["closed"], false);
    let (_, body) = c
        .get(
            "/v1/candles?symbol=BTCUSDT&timeframe=1m&limit=2",
            Some(ALICE),
        )
        .await;
    assert_eq!(body.as_array().unwrap().as_slice(), &bars[4..]);
    // 5m, built from the 1m feed.
    let (_, body) = c
        .get("/v1/candles?symbol=BTCUSDT&timeframe=5m", Some(ALICE))
        .await;
    assert_eq!(
        body[0],
        json!({"open_time": "2024-01-01T00:00:00Z", "open": 9.5, "high": 15.0, "low": 9.0,
               "close": 14.0, "volume": 510.0, "closed": true})
    );
    assert_eq!(body[1]["closed"], false);
    // A symbol without data.
    let (status, body) = c
        .get("/v1/candles?symbol=ETHUSDT&timeframe=1h", Some(ALICE))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    // ---- indicators: SMA(3) by hand; MACD's components by name.
    let (status, body) = c
        .get(
            "/v1/indicators?symbol=BTCUSDT&timeframe=1m&spec=sma(3)",
            Some(ALICE),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["spec"], "SMA(3)");
    assert_eq!(body["components"], json!(["SMA"]));
    let sma: Vec<Value> = body["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["SMA"].clone())
        .collect();
    assert_eq!(
        sma,
        [
            Value::Null,
            Value::Null,
            json!(11.0),
            json!(12.0),
            json!(13.0),
            json!((13.0 + 14.0 + 20.0) / 3.0)
        ]
    );
    assert_eq!(
        body["values"][2],
        json!({"open_time": "2024-01-01T00:02:00Z", "closed": true, "SMA": 11.0})
    );
    assert_eq!(body["values"][5]["closed"], false);
    let (_, body) = c
        .get(
            "/v1/indicators?symbol=BTCUSDT&timeframe=1m&spec=MACD(12,26,9)&limit=3",
            Some(ALICE),
        )
        .await;
    assert_eq!(body["components"], json!(["MACD", "Signal", "Histogram"]));
    assert_eq!(body["values"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["values"][0]["Signal"],
        Value::Null,
        "before the lookback"
    );

    // ---- catalog and templates.
    let (status, catalog) = c.get("/v1/catalog", Some(BOB)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(catalog["indicators"].as_array().unwrap().len(), 16);
    assert!(
        catalog["operators"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "crosses_above" && o["looks_back"] == true)
    );
    assert_eq!(
        catalog["timeframes"][0],
        json!({"name": "1m", "seconds": 60, "available": true})
    );
    let (status, templates) = c.get("/v1/templates", Some(BOB)).await;
    assert_eq!(status, StatusCode::OK);
    let templates = templates.as_array().unwrap();
    assert!(templates.len() >= 8);
    for t in templates {
        let text = t["alert"]
            .to_string()
            .replace("{{SYMBOL}}", "BTCUSDT")
            .replace("{{TIMEFRAME}}", "1m");
        let alert: Value = serde_json::from_str(&text).unwrap();
        assert!(
            alert_engine::parse::parse_alert(&alert).is_ok(),
            "template {}",
            t["id"]
        );
    }

    // ---- dry runs of stored alerts. Paused, so the runner itself never fires them.
    let holds = store_alert(
        &store,
        ALICE,
        json!({"name": "above SMA", "symbol": "BTCUSDT", "base_timeframe": "1m",
               "conditions": [
                   {"id": "p", "type": "price", "operator": ">", "compareWith": "indicator_component",
                    "rhs": {"indicator": "SMA", "settings": {"length": 3}}},
                   {"logic": "OR", "conditions": [
                       {"id": "up", "type": "price", "operator": "crosses_above", "compareValue": 15},
                       {"id": "rsi", "indicator": "RSI", "operator": "<", "compareValue": 30}]}],
               "action": {"type": "notify"}}),
        AlertStatus::Paused,
    )
    .await;
    let (status, body) = c
        .post(&format!("/v1/alerts/{holds}/evaluate"), Some(ALICE))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["alert_id"], holds.to_string());
    assert_eq!(body["holds"], true);
    assert_eq!(body["warming_up"], true, "RSI(14) has no value yet");
    assert!(body["reason"].as_str().unwrap().starts_with("rsi: "));
    assert_eq!(body["as_of"], "2024-01-01T00:06:00Z");
    assert_eq!(body["bar"]["close"], 20.0);
    assert_eq!(body["bar"]["closed"], false);
    let conds = body["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 3);
    assert_eq!(conds[0]["id"], "p");
    assert_eq!(conds[0]["value"], 20.0);
    assert_eq!(conds[0]["rhs"], json!((13.0 + 14.0 + 20.0) / 3.0));
    assert_eq!(conds[0]["held"], true);
    assert_eq!(conds[1]["held"], true, "20 crossed 15 from the close at 14");
    assert_eq!(conds[1]["rhs"], 15.0);
    assert_eq!(conds[2]["value"], Value::Null);
    assert_eq!(conds[2]["warming_up"], true);
    assert_eq!(conds[2]["held"], false);

    let not_yet = store_alert(
        &store,
        ALICE,
        json!({"symbol": "BTCUSDT", "base_timeframe": "1m",
               "conditions": [{"id": "rsi", "indicator": "RSI", "operator": "<", "compareValue": 30}],
               "action": {"type": "notify"}}),
        AlertStatus::Paused,
    )
    .await;
    let (_, body) = c
        .post(&format!("/v1/alerts/{not_yet}/evaluate"), Some(ALICE))
        .await;
    assert_eq!(
        (body["holds"].clone(), body["warming_up"].clone()),
        (json!(false), json!(true))
    );

    // Another user's alert, and an unknown one: 404.
    let (status, body) = c
        .post(&format!("/v1/alerts/{holds}/evaluate"), Some(BOB))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = c
        .post(&format!("/v1/alerts/{id}/evaluate"), Some(ALICE))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing fired.
    let triggers = store
        .list_triggers(
            ALICE,
            &TriggerQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(triggers.is_empty());

    // ---- the runner stops: 503.
    cancel.cancel();
    let stats = runner_task.await.unwrap().unwrap();
    assert_eq!(stats.triggers_recorded, 0);
    let (status, body) = c
        .get("/v1/candles?symbol=BTCUSDT&timeframe=1m", Some(ALICE))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = c
        .post(&format!("/v1/alerts/{holds}/evaluate"), Some(ALICE))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The catalog and templates need no runner.
    let (status, _) = c.get("/v1/catalog", Some(ALICE)).await;
    assert_eq!(status, StatusCode::OK);

    store.close().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_runner_market_data_is_503() {
    let store = Store::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    let app = alert_api::router(state(store.clone(), None), &HttpConfig::default());
    let c = Client {
        http: reqwest::Client::new(),
        base: serve(app).await,
    };
    for path in [
        "/v1/candles?symbol=BTCUSDT&timeframe=1m",
        "/v1/indicators?symbol=BTCUSDT&timeframe=1m&spec=RSI",
    ] {
        let (status, body) = c.get(path, Some(ALICE)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(body["error"]["code"], "unavailable");
    }
    // Bad parameters are still 400 first.
    let (status, _) = c.get("/v1/candles?timeframe=1m", Some(ALICE)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let id = store_alert(
        &store,
        ALICE,
        json!({"symbol": "BTCUSDT", "base_timeframe": "1m",
               "conditions": [{"type": "price", "operator": ">", "compareValue": 1}],
               "action": {"type": "notify"}}),
        AlertStatus::Active,
    )
    .await;
    let (status, _) = c
        .post(&format!("/v1/alerts/{id}/evaluate"), Some(ALICE))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = c
        .post(&format!("/v1/alerts/{id}/evaluate"), Some(BOB))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "404 before 503");
    let (status, _) = c.get("/v1/templates", Some(ALICE)).await;
    assert_eq!(status, StatusCode::OK);
    // The OpenAPI document lists the market paths.
    let (_, doc) = c.get("/openapi.json", None).await;
    for p in [
        "/v1/candles",
        "/v1/indicators",
        "/v1/catalog",
        "/v1/templates",
        "/v1/alerts/{id}/evaluate",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
}

/// `POST /v1/candles`: the service key only, the API's error shape with field paths, 404
/// without the ingest source, 413 over its body limit, 503 while the source is not running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_in_the_api_error_shape() {
    const KEY: &str = "ingest-test-service-key-0123456789";
    let store = Store::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    let (_source, handle) = alert_runtime::marketdata::Ingest::new(
        alert_runtime::marketdata::IngestConfig::new(alert_core::Timeframe::M1),
    );
    let mut with_ingest = state(store.clone(), None);
    with_ingest.auth = Arc::new(Auth::new(SECRET, Some(KEY.into())));
    with_ingest.ingest = Some(handle);
    let mut without = with_ingest.clone();
    without.ingest = None;
    let http = reqwest::Client::new();
    let fed = serve(alert_api::router(with_ingest, &HttpConfig::default())).await;
    let unfed = serve(alert_api::router(without, &HttpConfig::default())).await;
    let post = |base: &str, auth: String, body: String| {
        let req = http
            .post(format!("{base}/v1/candles"))
            .bearer_auth(auth)
            .body(body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let retry = resp.headers().get("retry-after").cloned();
            (
                status,
                resp.json::<Value>().await.unwrap_or(Value::Null),
                retry,
            )
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let m0 = now - now.rem_euclid(60_000);
    let good = json!({"candles": [{"symbol": "BTCUSDT", "open_time": m0, "open": 1, "high": 2,
                                   "low": 1, "close": 2, "volume": 1, "closed": false}]})
    .to_string();

    // A user's token is not the service key.
    let (status, body, _) = post(&fed, token(ALICE), good.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body, _) = post(&fed, "wrong".into(), good.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Every bad field named, nothing fed.
    let bad = json!({"candles": [
        {"symbol": "BTCUSDT", "open_time": m0, "open": 1, "high": 2, "low": 1, "close": 2, "volume": 1},
        {"symbol": "btc usdt", "open_time": m0 + 1, "open": 1, "high": 0, "low": 1, "close": 2, "volume": -1}]});
    let (status, body, _) = post(&fed, KEY.into(), bad.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed");
    let paths = error_paths(&body);
    assert!(paths.iter().all(|p| p.starts_with("candles[1].")), "{body}");
    assert!(paths.len() >= 2, "symbol and open_time at least: {body}");
    assert_eq!(body["error"]["path"], paths[0].as_str());
    let (status, body, _) = post(&fed, KEY.into(), "{".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["path"], "", "the body itself: {body}");
    // Larger than the API's 256 KiB is fine; larger than 4 MiB is not.
    let big = format!(
        "{{\"candles\": [], \"pad\": \"{}\"}}",
        "x".repeat(alert_api::MAX_BODY)
    );
    let (status, body, _) = post(&fed, KEY.into(), big).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "past 256 KiB, read whole: {body}"
    );
    assert_eq!(body["error"]["path"], "pad", "{body}");
    let huge = "x".repeat(alert_api::ingest::MAX_INGEST_BODY + 1);
    let (status, body, _) = post(&fed, KEY.into(), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // The source is not running: retry later.
    let (status, body, retry) = post(&fed, KEY.into(), good.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(retry.is_some(), "Retry-After");
    // A server fed otherwise has no ingest.
    let (status, body, _) = post(&unfed, KEY.into(), good).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--source ingest")),
        "{body}"
    );
}
