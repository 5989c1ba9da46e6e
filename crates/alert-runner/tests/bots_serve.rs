//! A DCA bot through a running `serve` (SQLite, candles pushed over HTTP): its entry alert
//! fires, the runner queues the bot action, the dispatcher's bot handler fills it on paper and
//! arms the safety orders and take profit, which fire in turn as the price moves — every order
//! in the store, the deal closed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alert_store::{Store, StoreOptions};
use serde_json::json;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const KEY: &str = "bots-test-service-key-0123456789";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_484)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_enters_averages_down_and_takes_profit_in_serve() {
    let dir = std::env::temp_dir().join(format!("ar-bots-{}", Uuid::new_v4().simple()));
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let url = format!("sqlite://{}", dir.join("bots.db").display());
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
        .args(["--service-key", KEY, "--dispatch-poll-ms", "100"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        panic!("spawn serve")
    };
    let _serve = Serve(child);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The bot, created in the store serve uses (as the API will).
    let store = match Store::connect(&url, StoreOptions::default()).await {
        Ok(s) => s,
        Err(e) => panic!("store: {e}"),
    };
    let user = Uuid::new_v4();
    let def = match alert_bots::parse_bot(&json!({
        "pair": "BTCUSDT", "timeframe": "1m",
        "entry_conditions": [{"type": "price", "operator": "<=", "compareValue": 100}],
        "base_order": 100, "safety_order": 50, "max_safety_orders": 2,
        "price_deviation_pct": 2, "take_profit_pct": 1, "quantity_step": 0.00001
    })) {
        Ok(d) => d,
        Err(e) => panic!("bot: {e:?}"),
    };
    let bot = match alert_bots::live::create_bot(&store, user, &def, chrono::Utc::now()).await {
        Ok(b) => b,
        Err(e) => panic!("create bot: {e}"),
    };
    tokio::time::sleep(Duration::from_millis(400)).await; // the runner loads the entry alert

    let now = chrono::Utc::now().timestamp_millis();
    let m0 = now - now.rem_euclid(60_000);
    let push = |o: f64, h: f64, l: f64, c: f64| {
        let body = json!({"candles": [{"symbol": "BTCUSDT", "open_time": m0, "open": o, "high": h,
                                       "low": l, "close": c, "volume": 1, "closed": false}]});
        let req = http
            .post(format!("{base}/v1/candles"))
            .bearer_auth(KEY)
            .json(&body);
        async move {
            let status = req.send().await.map(|r| r.status().as_u16());
            assert_eq!(status.ok(), Some(202), "push");
        }
    };
    let orders = |n: usize| {
        let store = store.clone();
        async move {
            let started = Instant::now();
            loop {
                let got = store
                    .list_bot_orders(user, bot.id)
                    .await
                    .unwrap_or_default();
                if got.len() >= n {
                    return got;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "waited for {n} orders, have {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Entry at 99; safety order 1 at 99·0.98 = 97.02 (the bar trades through it); take
    // profit 1 % above the average.
    push(99.0, 99.0, 99.0, 99.0).await;
    let got = orders(1).await;
    assert_eq!((got[0].role.as_str(), got[0].price), ("entry", 99.0));
    // The safety order and take profit are armed once the fill is recorded.
    tokio::time::sleep(Duration::from_millis(400)).await;
    push(99.0, 99.0, 96.5, 96.8).await;
    let got = orders(2).await;
    assert_eq!(got[1].role, "so1");
    assert!((got[1].price - 97.02).abs() < 1e-9, "{:?}", got[1]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let deal = store.open_deal(bot.id).await.ok().flatten();
    let Some(deal) = deal else {
        panic!("an open deal after two buys")
    };
    let tp = deal.cost / deal.base_qty * 1.01;
    push(99.0, 100.5, 96.5, 100.2).await;
    let got = orders(3).await;
    assert_eq!((got[2].role.as_str(), got[2].side.as_str()), ("tp", "sell"));
    assert!(
        (got[2].price - tp).abs() < 1e-9 * tp,
        "{} vs {tp}",
        got[2].price
    );
    assert!((got[2].base_qty - deal.base_qty).abs() < 1e-12);
    let deals = store.list_deals(user, bot.id).await.unwrap_or_default();
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].exit.as_deref(), Some("take_profit"));
    assert!(deals[0].realized_pnl.is_some_and(|p| p > 0.0), "{deals:?}");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
