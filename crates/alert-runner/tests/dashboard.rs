//! The dashboard as `serve` mounts it, over real HTTP: the page and its assets with their
//! policy, the URL printed at start, `GET /v1/demo-token` on the embedded default only (not
//! with a configured JWT secret, not on PostgreSQL, not with `--demo false`), and
//! `POST /v1/alerts/evaluate` (the form's "test now") on both backends.
//! The browser itself is in `tests/browser.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alert_store::bench::ScratchDatabase;
use serde_json::{Value, json};

#[path = "common/scale.rs"]
mod scale;

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const SECRET: &str = "dashboard-test-secret-with-at-least-32-characters";

struct Serve {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Serve {
    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("stderr"))
    }
}

/// `serve` on the simulated market in a fresh directory (its working directory: the embedded
/// default's database and JWT secret file go there) with `args`.
async fn serve(args: &[&str], env: &[(&str, &str)]) -> Serve {
    let dir = std::env::temp_dir().join(format!("ar-dash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = scale::free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--log-format", "json", "--poll-ms", "100"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_JWT_SECRET")
        .env_remove("RUST_LOG")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let s = Serve {
        child: cmd.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    if scale::wait_ready(&s.base, Duration::from_secs(60)).await {
        return s;
    }
    panic!("serve did not get ready: {}", s.logs())
}

async fn demo_token_status(s: &Serve) -> (u16, Value) {
    let r = reqwest::get(format!("{}/v1/demo-token", s.base))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn embedded_default_serves_the_dashboard_and_the_demo_token() {
    let s = serve(&[], &[]).await;
    let http = reqwest::Client::new();

    // The page, with its policy.
    let page = http.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"));
    assert_eq!(
        page.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    assert!(page.text().await.unwrap().contains("/assets/js/app.js"));
    let js = http
        .get(format!("{}/assets/js/app.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = http
        .get(format!("{}/assets/nope.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The API's own 404s are unchanged.
    let route = http
        .get(format!("{}/v1/nope", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), 404);
    let body: Value = route.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // The URL in the log.
    let logs = s.logs();
    let port = s.base.rsplit(':').next().unwrap();
    assert!(
        logs.contains(&format!("dashboard: http://127.0.0.1:{port}/")),
        "{logs}"
    );

    // The demo token: the demo user's, accepted by the API, never cached.
    let r = http
        .get(format!("{}/v1/demo-token", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user_id"], "00000000-0000-4000-8000-000000000001");
    let token = body["token"].as_str().unwrap();
    let alerts: Value = http
        .get(format!("{}/v1/alerts", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(alerts["items"].as_array().unwrap().len() >= 4, "{alerts}");
    // It is in the OpenAPI document.
    let doc: Value = http
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/demo-token"]["get"].is_object());
    assert!(doc["paths"]["/v1/alerts/evaluate"]["post"].is_object());
}

#[tokio::test]
async fn no_demo_token_with_a_configured_secret() {
    let s = serve(&[], &[("SUPABASE_JWT_SECRET", SECRET)]).await;
    let (status, body) = demo_token_status(&s).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(message.starts_with("demo token not found"), "{body}");
    assert!(body.get("token").is_none());
    // The dashboard itself is still there (paste a token).
    let page = reqwest::get(format!("{}/", s.base)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(!s.logs().contains("demo_token\":true"), "{}", s.logs());
}

#[tokio::test]
async fn no_demo_token_without_the_demo_user() {
    let s = serve(&["--demo", "false"], &[]).await;
    assert_eq!(demo_token_status(&s).await.0, 404);
}

#[tokio::test]
async fn no_demo_token_on_postgres() {
    let db = ScratchDatabase::create(&scale::admin_url()).await.unwrap();
    let s = serve(&["--database-url", db.url()], &[]).await;
    let (status, _) = demo_token_status(&s).await;
    drop(s);
    db.remove().await.unwrap();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn no_dashboard_with_no_dashboard() {
    let s = serve(&["--no-dashboard"], &[]).await;
    let r = reqwest::get(format!("{}/", s.base)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!s.logs().contains("dashboard: http://"));
}

/// "Test now" on an unsaved alert: every operand's value, nothing stored; validation errors
/// at the alert's own paths. Both backends.
async fn evaluate_unsaved(args: &[&str]) {
    let s = serve(args, &[("SUPABASE_JWT_SECRET", SECRET)]).await;
    let user = uuid::Uuid::new_v4();
    let token = alert_api::auth::mint(SECRET, user, Duration::from_secs(600)).unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", s.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    // SIMBTC is watched by the demo alerts: wait until the runner has a bar of it.
    let alert = json!({
        "name": "unsaved", "symbol": "SIMBTC", "base_timeframe": "1m",
        "conditions": [{"id": "above", "type": "price", "operator": ">", "compareValue": 1},
                       {"id": "rsi", "type": "indicator", "indicator": "RSI", "settings": {"length": 3},
                        "operator": "<", "compareValue": 101}],
        "action": {"type": "notify"}});
    let started = Instant::now();
    let answer = loop {
        let r = post("/v1/alerts/evaluate", alert.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if !v["warming_up"].as_bool().unwrap() || started.elapsed() > Duration::from_secs(30) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(answer["alert_id"], Value::Null);
    assert_eq!(answer["symbol"], "SIMBTC");
    assert_eq!(answer["holds"], true, "{answer}");
    let conditions = answer["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 2);
    assert_eq!(conditions[0]["id"], "above");
    assert!(conditions[0]["value"].as_f64().unwrap() > 1.0, "{answer}");
    assert_eq!(conditions[0]["rhs"], 1.0);
    assert!(conditions[1]["value"].as_f64().is_some(), "{answer}");
    // Nothing was stored.
    let list: Value = http
        .get(format!("{}/v1/alerts", s.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    // Errors name the field as the form has it.
    let mut bad = alert.clone();
    bad["conditions"][1]["settings"]["length"] = json!(0);
    let r = post("/v1/alerts/evaluate", bad).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["path"], "conditions[1].settings.length", "{v}");
    let r = post("/v1/alerts/evaluate", json!([1])).await.unwrap();
    assert_eq!(r.status(), 400);
    // A token is needed.
    let r = http
        .post(format!("{}/v1/alerts/evaluate", s.base))
        .json(&alert)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn evaluate_unsaved_alert_sqlite() {
    evaluate_unsaved(&["--demo", "true"]).await;
}

#[tokio::test]
async fn evaluate_unsaved_alert_postgres() {
    let db = ScratchDatabase::create(&scale::admin_url()).await.unwrap();
    evaluate_unsaved(&["--demo", "true", "--database-url", db.url()]).await;
    db.remove().await.unwrap();
}
