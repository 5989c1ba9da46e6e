//! API instances (issue 11, part 4), with the real binary on PostgreSQL over a replayed market:
//! two `serve --no-runner` processes and two `run --shard I/2` processes recording at once.
//! Every SSE client receives every trigger (and notification) of its user, wherever it was
//! recorded, each once; a client that drops its connection to one instance and resumes on the
//! other with its last id misses nothing and receives nothing twice; each lane's recording
//! times arrive in order (what the ids rely on).

#[path = "common/scale.rs"]
mod scale;

use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use scale::*;

const JWT_SECRET: &str = "api-instances-test-secret-0123456789abcdef";

/// `serve --no-runner` on a free port; its base URL.
fn spawn_api(url: &str, log: &std::path::Path) -> (Child, String) {
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--no-runner", "--no-dispatch", "--no-dashboard"])
        .args(["--database-url", url])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--jwt-secret", JWT_SECRET, "--log-format", "json"])
        // The shards' environment, shared in a deployment: an instance reads no market and
        // ignores it.
        .env("ALERT_BUS_URL", "nats://127.0.0.1:4222")
        .env("ALERT_SOURCE", "simulated");
    log_to(&mut cmd, log);
    (
        ok(cmd.spawn(), "spawn serve --no-runner"),
        format!("http://127.0.0.1:{port}"),
    )
}

/// One received event.
#[derive(Clone, Debug)]
struct Got {
    id: String,
    kind: String,
    row: uuid::Uuid,
    lane_time: String,
}

/// An SSE connection and what it received.
struct Stream {
    resp: reqwest::Response,
    buf: String,
    got: Vec<Got>,
}

impl Stream {
    async fn open(http: &reqwest::Client, base: &str, token: &str, last: Option<&str>) -> Self {
        let mut req = http.get(format!("{base}/v1/events")).bearer_auth(token);
        if let Some(id) = last {
            req = req.header("Last-Event-ID", id);
        }
        let resp = ok(req.send().await, "GET /v1/events");
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "{base}/v1/events");
        Self {
            resp,
            buf: String::new(),
            got: Vec::new(),
        }
    }

    /// Reads what arrives within `wait`; false once the stream ended.
    async fn read_for(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut kind, mut id, mut data) = (String::new(), String::new(), None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = serde_json::from_str::<serde_json::Value>(v.trim()).ok();
                    }
                }
                let Some(data) = data else { continue };
                let (row, time) = match kind.as_str() {
                    "trigger" => (&data["trigger_id"], &data["recorded_at"]),
                    "notification" => (&data["notification_id"], &data["created_at"]),
                    _ => continue,
                };
                let row = ok(
                    uuid::Uuid::parse_str(row.as_str().unwrap_or_default()),
                    "event row id",
                );
                self.got.push(Got {
                    id,
                    kind,
                    row,
                    lane_time: time.as_str().unwrap_or_default().to_owned(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) => return false,
                Err(_) => return true,
            }
        }
    }

    fn triggers(&self) -> Vec<uuid::Uuid> {
        self.got
            .iter()
            .filter(|g| g.kind == "trigger")
            .map(|g| g.row)
            .collect()
    }
}

/// Each lane's times never go back within one connection: trigger and notification times
/// (the alerts lane) are compared as RFC 3339 instants.
fn assert_in_time_order(got: &[Got], who: &str) {
    let times: Vec<chrono::DateTime<chrono::Utc>> = got
        .iter()
        .map(|g| {
            ok(
                chrono::DateTime::parse_from_rfc3339(&g.lane_time),
                "event time",
            )
            .to_utc()
        })
        .collect();
    for (i, w) in times.windows(2).enumerate() {
        assert!(
            w[0] <= w[1],
            "{who}: event {} recorded at {} arrived after one recorded at {}",
            i + 1,
            w[1],
            w[0]
        );
    }
}

fn no_repeats(rows: &[uuid::Uuid], who: &str) {
    let unique: HashSet<_> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "{who} received a row twice");
}

async fn stored_triggers(url: &str) -> BTreeSet<uuid::Uuid> {
    let pool = ok(sqlx::PgPool::connect(url).await, "connect");
    let rows: Vec<uuid::Uuid> = ok(
        sqlx::query_scalar("SELECT id FROM alert_triggers WHERE user_id = $1")
            .bind(USER)
            .fetch_all(&pool)
            .await,
        "read triggers",
    );
    pool.close().await;
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_streams_every_shards_events_and_a_resume_on_another_misses_nothing() {
    let dir = tempdir("api-instances");
    write_market(&dir.join("market"));
    let db = scratch().await;
    seed(db.url(), &dir, None);
    let http = reqwest::Client::new();
    let token = ok(
        alert_api::auth::mint(JWT_SECRET, USER, Duration::from_secs(600)),
        "mint",
    );

    let (mut api_a, base_a) = spawn_api(db.url(), &dir.join("api-a.log"));
    let (mut api_b, base_b) = spawn_api(db.url(), &dir.join("api-b.log"));
    for base in [&base_a, &base_b] {
        assert!(
            wait_ready(base, Duration::from_secs(30)).await,
            "{base} never became ready"
        );
    }
    assert!(
        wait_log(
            &dir.join("api-a.log"),
            "live events: listening",
            Duration::from_secs(10)
        )
        .await
        .is_some()
            && wait_log(
                &dir.join("api-b.log"),
                "live events: listening",
                Duration::from_secs(10)
            )
            .await
            .is_some(),
        "both instances listen for the database's announcements"
    );

    // Whole streams on each instance; a third that moves from B to A half-way.
    let mut on_a = Stream::open(&http, &base_a, &token, None).await;
    let mut on_b = Stream::open(&http, &base_b, &token, None).await;
    let mut mover = Stream::open(&http, &base_b, &token, None).await;

    // Two shards record at once (a slower replay than the shard tests: the streams are read
    // while they run).
    let mut shards = Vec::new();
    for i in 0..2 {
        let log = dir.join(format!("shard{i}.log"));
        let shard = format!("{i}/2");
        shards.push((
            spawn_run(
                &dir.join("market"),
                db.url(),
                Some(SPEED / 4.0),
                &["--shard", &shard],
                &log,
            ),
            log,
        ));
    }

    // The mover reads until it has some of the events, then its connection is dropped.
    let started = Instant::now();
    while mover.triggers().len() < 60 && started.elapsed() < Duration::from_secs(60) {
        assert!(
            mover.read_for(Duration::from_millis(200)).await,
            "B's stream ended"
        );
        on_a.read_for(Duration::from_millis(50)).await;
        on_b.read_for(Duration::from_millis(50)).await;
    }
    let first_leg = mover.got.clone();
    assert!(
        first_leg.len() >= 60,
        "the mover received events on B: {}",
        first_leg.len()
    );
    let last_id = first_leg.last().map(|g| g.id.clone()).unwrap_or_default();
    drop(mover);
    // Events keep being recorded while it is away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut resumed = Stream::open(&http, &base_a, &token, Some(&last_id)).await;

    for (child, log) in &mut shards {
        let status = wait_exit(child, Duration::from_secs(120)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "a shard did not finish cleanly: {status:?} (log {})",
            log.display()
        );
    }
    let stored = stored_triggers(db.url()).await;
    assert!(
        stored.len() > 300,
        "the market fires plenty: {}",
        stored.len()
    );
    let shard_symbols: BTreeSet<u32> = SYMBOLS.iter().map(|s| alert_core::shard_of(s, 2)).collect();
    assert_eq!(shard_symbols.len(), 2, "both shards own symbols");

    // Everything recorded reaches every stream (the resumed one: what the first leg lacked).
    let first_triggers: BTreeSet<_> = first_leg
        .iter()
        .filter(|g| g.kind == "trigger")
        .map(|g| g.row)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (s, wanted) in [
        (&mut on_a, stored.len()),
        (&mut on_b, stored.len()),
        (&mut resumed, stored.len() - first_triggers.len()),
    ] {
        while s.triggers().len() < wanted && Instant::now() < deadline {
            assert!(
                s.read_for(Duration::from_millis(300)).await,
                "a stream ended"
            );
        }
        // Anything more (a repeat) would show now.
        s.read_for(Duration::from_millis(300)).await;
    }

    for (s, who) in [(&on_a, "the stream on A"), (&on_b, "the stream on B")] {
        let rows: Vec<_> = s.got.iter().map(|g| g.row).collect();
        no_repeats(&rows, who);
        assert_in_time_order(&s.got, who);
        let got: BTreeSet<_> = s.triggers().into_iter().collect();
        assert_same_set(&got, &stored, who);
    }
    let both_legs: Vec<_> = first_leg
        .iter()
        .chain(&resumed.got)
        .map(|g| g.row)
        .collect();
    no_repeats(&both_legs, "the mover (B, then A from its last id)");
    assert_in_time_order(&resumed.got, "the mover's second leg");
    let union: BTreeSet<_> = first_triggers
        .iter()
        .copied()
        .chain(resumed.triggers())
        .collect();
    assert_same_set(
        &union,
        &stored,
        "the mover's two legs (B, then A from its last id)",
    );
    println!(
        "stored {} triggers from 2 shards; stream on A {}, on B {}, the mover {} on B + {} on A after resuming",
        stored.len(),
        on_a.triggers().len(),
        on_b.triggers().len(),
        first_triggers.len(),
        resumed.triggers().len()
    );

    sigterm(&api_a);
    sigterm(&api_b);
    for api in [&mut api_a, &mut api_b] {
        let status = wait_exit(api, Duration::from_secs(15)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "an API instance did not stop cleanly: {status:?}"
        );
    }
    let _ = db.remove().await;
}

#[test]
fn no_runner_refuses_sqlite_and_shards() {
    for (args, says) in [
        (
            vec!["serve", "--no-runner", "--database-url", "sqlite::memory:"],
            "--no-runner needs PostgreSQL",
        ),
        (
            vec![
                "serve",
                "--no-runner",
                "--shard",
                "0/2",
                "--database-url",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ],
            "--no-runner runs no runner, so no shard",
        ),
        (
            vec![
                "run",
                "--no-runner",
                "--database-url",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ],
            "--no-runner is for `serve`",
        ),
    ] {
        let out = ok(Command::new(BIN).args(&args).output(), "run alert-runner");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
