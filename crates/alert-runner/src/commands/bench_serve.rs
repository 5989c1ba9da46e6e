//! `alert-runner bench-serve`: the scale run — `serve` on PostgreSQL, end to end, under load.
//!
//! On a scratch database next to `--database-url` (created, then removed):
//! 1. a replayed 1m market of `--symbols` symbols (the seeded synthetic random walk, written
//!    as candle files) long enough for `--minutes` of wall time at `--speed`;
//! 2. `--alerts` active alerts spread evenly over the symbols, 100 per user, bulk-inserted by
//!    direct SQL (set-up, timed apart): a mix of price thresholds, RSI thresholds, EMA and MACD
//!    crossings, Bollinger exits, volume spikes, OR groups and two-timeframe conditions, in
//!    the three trigger modes; `--webhook-share` of them also send a webhook to a local
//!    receiver;
//! 3. `serve` (this binary, a child process) on them, with its dispatcher;
//! 4. `wrk` against the API at about `--api-rate` requests/s (alerts list, one alert,
//!    triggers list, with 50 users' tokens) for the whole run.
//!
//! While it runs: the child's RSS every second, its `/metrics` (triggers, candles, delivery
//! backlog), and at the end the round-time histogram (`alert_runner_round_seconds`), the
//! child's peak RSS (VmHWM) and wrk's latency distribution. Prints a Markdown table on stdout
//! and one JSON object on stderr's last line.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alert_core::Timeframe;
use alert_engine::synthetic::{self, Market, Rng};
use alert_store::bench::{ScratchDatabase, SeedAlert, insert_active_alerts};
use alert_store::{Store, StoreOptions};
use anyhow::{Context, bail};
use serde::Serialize;
use uuid::Uuid;

use crate::cli::BenchServeArgs;
use crate::commands::bench::rss_of;

const ALERTS_PER_USER: usize = 100;
const MIB: f64 = 1024.0 * 1024.0;
/// Users whose tokens the API load uses.
const API_USERS: usize = 50;
/// wrk connections; each waits `connections / rate` between its requests.
const API_CONNECTIONS: u32 = 20;

#[derive(Serialize, Default)]
struct Report {
    alerts: usize,
    symbols: usize,
    speed: f64,
    minutes: f64,
    webhook_alerts: usize,
    seed_s: f64,
    /// From `serve`'s start to its HTTP server answering (alerts loaded).
    startup_s: f64,
    peak_rss_mib: f64,
    rss_at_start_mib: f64,
    rss_at_end_mib: f64,
    candles: f64,
    rounds: f64,
    round_p50_ms: f64,
    round_p99_ms: f64,
    round_max_bucket_ms: f64,
    /// From a round's start to its triggers recorded (evaluation + queue + store write).
    recorded_p50_ms: f64,
    recorded_p99_ms: f64,
    triggers: f64,
    triggers_per_s: f64,
    triggers_peak_per_s: f64,
    deliveries_received: u64,
    backlog_max: f64,
    backlog_max_first_half: f64,
    backlog_max_second_half: f64,
    backlog_end: f64,
    api_requests_per_s: f64,
    api_p50_ms: f64,
    api_p99_ms: f64,
    api_non_2xx: u64,
    api_errors: String,
}

pub fn run(args: &BenchServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.symbols > 0, "--symbols must be at least 1");
    anyhow::ensure!(
        args.alerts >= args.symbols,
        "--alerts must be at least --symbols"
    );
    anyhow::ensure!(
        args.speed > 0.0 && args.speed.is_finite(),
        "--speed must be a positive number"
    );
    anyhow::ensure!(
        args.minutes > 0.0 && args.minutes.is_finite(),
        "--minutes must be a positive number"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.webhook_share),
        "--webhook-share must be from 0 to 1"
    );
    anyhow::ensure!(
        alert_store::BackendKind::of_url(&args.database.database_url)
            == Some(alert_store::BackendKind::Postgres),
        "--database-url: expected a postgres:// URL (the scale run is on PostgreSQL)"
    );
    if args.api_rate > 0.0 {
        std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .context("--api-rate needs wrk (Debian: apt-get install wrk), or pass --api-rate 0")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let scratch = ScratchDatabase::create(&args.database.database_url)
            .await
            .context("creating the scratch database")?;
        let work =
            std::env::temp_dir().join(format!("alert-runner-bench-serve-{}", std::process::id()));
        let result = run_on(&scratch, &work, args).await;
        let cleaned = scratch
            .remove()
            .await
            .context("removing the scratch database");
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench-serve: work files kept in {}", work.display());
                return Err(e);
            }
        };
        let _ = std::fs::remove_dir_all(&work);
        cleaned?;
        println!("{}", table(&report, args));
        eprintln!("{}", serde_json::to_string(&report)?);
        Ok(())
    })
}

async fn run_on(
    scratch: &ScratchDatabase,
    work: &Path,
    args: &BenchServeArgs,
) -> anyhow::Result<Report> {
    let mut report = Report {
        alerts: args.alerts,
        symbols: args.symbols,
        speed: args.speed,
        minutes: args.minutes,
        ..Report::default()
    };
    let market_dir = work.join("market");
    std::fs::create_dir_all(&market_dir)
        .with_context(|| format!("creating {}", market_dir.display()))?;
    // Enough bars for the whole run, and a few more: the replay must not end first.
    let bars = (args.minutes * args.speed).ceil() as u64 + 10;
    let first_closes = write_market(&market_dir, args.symbols, bars, args.seed)?;

    let receiver = Receiver::start().await?;
    // Applies the migrations; the alerts go in by direct SQL (no limits apply).
    let store = Store::connect(scratch.url(), StoreOptions::default())
        .await
        .context("opening the scratch database")?;
    let started = Instant::now();
    let seeded = seed_alerts(&store, args, &first_closes, receiver.addr).await;
    store.close().await;
    let (api_alerts, webhook_alerts) = seeded?;
    report.webhook_alerts = webhook_alerts;
    report.seed_s = started.elapsed().as_secs_f64();
    eprintln!(
        "bench-serve: {} alerts over {} symbols seeded in {:.1} s; {} bars per symbol",
        args.alerts, args.symbols, report.seed_s, bars
    );

    let jwt_secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let listen = free_port()?;
    let log_path = work.join("serve.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding this binary")?;
    let started = Instant::now();
    let serve = std::process::Command::new(exe)
        .args([
            "serve",
            "--database-url",
            scratch.url(),
            "--source",
            "replay",
        ])
        .arg("--replay")
        .arg(&market_dir)
        .args(["--replay-speed", &args.speed.to_string()])
        .args(["--listen", &listen.to_string()])
        .args(["--webhook-allow-private", "--log-format", "json"])
        // The API load must measure the server, not the per-user limiter.
        .args(["--rate-limit", "1000000"])
        .env("SUPABASE_JWT_SECRET", &jwt_secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting serve")?;
    let pid = serve.id();
    // Never leave serve running behind an error.
    let mut serve = KillOnDrop(Some(serve));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = format!("http://{listen}");
    loop {
        if let Some(status) = serve.try_wait()? {
            bail!(
                "serve exited during start-up ({status}); its log: {}",
                tail(&log_path)
            );
        }
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("serve did not answer /healthz within 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.startup_s = started.elapsed().as_secs_f64();
    report.rss_at_start_mib = rss_of(&pid.to_string()).0 / MIB;
    eprintln!(
        "bench-serve: serve up in {:.1} s, RSS {:.0} MiB; running {} min",
        report.startup_s, report.rss_at_start_mib, args.minutes
    );

    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let wrk = if args.api_rate > 0.0 {
        let script = work.join("api.lua");
        std::fs::write(
            &script,
            wrk_script(&jwt_secret, &api_alerts, args.api_rate)?,
        )?;
        let child = std::process::Command::new("wrk")
            .args([
                "-t2",
                &format!("-c{API_CONNECTIONS}"),
                &format!("-d{}s", run_for.as_secs().max(1)),
                "--timeout",
                "10s",
                "--latency",
                "-s",
            ])
            .arg(&script)
            .arg(&base)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wrk")?;
        Some(KillOnDrop(Some(child)))
    } else {
        None
    };

    // Samples, once a second.
    let begin = Instant::now();
    let mut backlog: Vec<(f64, f64)> = Vec::new();
    let mut last_triggers = (0.0, begin);
    while begin.elapsed() < run_for {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(status) = serve.try_wait()? {
            bail!(
                "serve exited during the run ({status}); its log: {}",
                tail(&log_path)
            );
        }
        let Ok(metrics) = scrape(&http, &base).await else {
            continue;
        };
        let t = begin.elapsed().as_secs_f64();
        let triggers = metric(&metrics, "alert_runner_triggers_total");
        let now = Instant::now();
        let dt = now.duration_since(last_triggers.1).as_secs_f64();
        if dt > 0.0 {
            report.triggers_peak_per_s = report
                .triggers_peak_per_s
                .max((triggers - last_triggers.0) / dt);
        }
        last_triggers = (triggers, now);
        backlog.push((t, metric(&metrics, "alert_runner_delivery_backlog")));
    }
    let (rss, peak) = rss_of(&pid.to_string());
    report.peak_rss_mib = peak / MIB;
    report.rss_at_end_mib = rss / MIB;
    let metrics = scrape(&http, &base).await.context("reading /metrics")?;
    report.candles = metric(&metrics, "alert_runner_candles_total");
    report.triggers = metric(&metrics, "alert_runner_triggers_total");
    report.triggers_per_s = report.triggers / begin.elapsed().as_secs_f64();
    let round = histogram(&metrics, "alert_runner_round_seconds");
    report.rounds = round.count;
    report.round_p50_ms = round.quantile(0.5) * 1000.0;
    report.round_p99_ms = round.quantile(0.99) * 1000.0;
    report.round_max_bucket_ms = round.max_bucket() * 1000.0;
    let recorded = histogram(&metrics, "alert_runner_round_recorded_seconds");
    report.recorded_p50_ms = recorded.quantile(0.5) * 1000.0;
    report.recorded_p99_ms = recorded.quantile(0.99) * 1000.0;
    let half = args.minutes * 30.0;
    let max_of = |from: f64, to: f64| {
        backlog
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, b)| *b)
            .fold(0.0, f64::max)
    };
    report.backlog_max = max_of(0.0, f64::MAX);
    report.backlog_max_first_half = max_of(0.0, half);
    report.backlog_max_second_half = max_of(half, f64::MAX);
    report.backlog_end = backlog.last().map_or(0.0, |(_, b)| *b);
    report.deliveries_received = receiver.count.load(Ordering::Relaxed);

    if let Some(mut wrk) = wrk {
        let child = wrk.0.take().context("wrk")?;
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await?
            .context("waiting for wrk")?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_wrk(&text, &mut report);
        if !out.status.success() {
            report.api_errors = format!("wrk: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // A clean stop: SIGTERM, then the runner flushes and the dispatcher drains.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stopping = Instant::now();
    loop {
        if let Some(status) = serve.try_wait()? {
            if !status.success() {
                bail!("serve stopped with {status}; its log: {}", tail(&log_path));
            }
            break;
        }
        if stopping.elapsed() > Duration::from_secs(60) {
            bail!("serve did not stop within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(report)
}

/// Writes one candle file per symbol; returns each symbol's first close.
fn write_market(dir: &Path, symbols: usize, bars: u64, seed: u64) -> anyhow::Result<Vec<f64>> {
    let names = synthetic::symbols(symbols);
    let mut market = Market::new(symbols, seed);
    let mut files: Vec<String> = (0..symbols)
        .map(|_| String::from("open_time_ms,open,high,low,close,volume\n"))
        .collect();
    let mut first = vec![0.0; symbols];
    let mut out = Vec::with_capacity(1);
    for i in 0..bars {
        for (s, file) in files.iter_mut().enumerate() {
            out.clear();
            market.bar(s, i, 0, &mut out);
            for (c, _) in &out {
                if i == 0 {
                    first[s] = c.close;
                }
                let _ = writeln!(
                    file,
                    "{},{},{},{},{},{}",
                    c.open_time.millis(),
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume
                );
            }
        }
    }
    for (name, text) in names.iter().zip(&files) {
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(first)
}

/// The alert mix: events rather than states, as users set them (crossings of levels, RSI
/// bounds, EMAs and MACD's signal, Bollinger exits, volume spikes, a 5m + 1m pair), in the
/// three trigger modes with a debounce of 1–60 bars; about 0.1–0.5 % of the alerts fire on a
/// bar. Every indicator is at the settings users pick most, so many alerts share each one.
fn alert_json(
    rng: &mut Rng,
    n: usize,
    symbol: &str,
    near: f64,
    webhook: Option<&str>,
) -> (String, String) {
    let tf = [Timeframe::M1, Timeframe::M1, Timeframe::M5][rng.below(3) as usize];
    let tf_name = tf.to_string();
    let level = near * (0.98 + rng.unit() * 0.04);
    let condition = match rng.below(9) {
        0 => format!(
            r#"{{"id":"level","type":"price","operator":"crosses_above","compareWith":"value","compareValue":{level}}}"#
        ),
        1 => format!(
            r#"{{"id":"level","type":"price","operator":"crosses_below","compareWith":"value","compareValue":{level}}}"#
        ),
        2 => format!(
            r#"{{"id":"rsi","type":"indicator","indicator":"RSI","component":"RSI","operator":"crosses_below","compareWith":"value","compareValue":{},"settings":{{"length":14}}}}"#,
            20 + rng.below(10)
        ),
        3 => format!(
            r#"{{"id":"ema","type":"price","operator":"crosses_above","compareWith":"indicator_component","rhs":{{"indicator":"EMA","component":"EMA","settings":{{"period":{}}}}}}}"#,
            [20, 50, 100][rng.below(3) as usize]
        ),
        4 => r#"{"id":"macd","type":"indicator","indicator":"MACD","component":"macd_line","settings":{"fast":12,"slow":26,"signal":9},"operator":"crosses_above","compareWith":"indicator_component","rhs":{"indicator":"MACD","component":"signal_line","settings":{"fast":12,"slow":26,"signal":9}}}"#.to_owned(),
        5 => r#"{"id":"bb","type":"price","operator":"exiting_channel","rhs":{"indicator":"Bollinger Bands","settings":{"length":20,"stddev":2.5}}}"#.to_owned(),
        6 => format!(
            r#"{{"id":"vol","type":"volume","operator":">","compareWith":"value","compareValue":{}}}"#,
            // The synthetic volume is uniform on 0..10: a spike is the top 0.1–1 %.
            9.9 + rng.unit() * 0.09
        ),
        7 => format!(
            r#"{{"id":"rsi","type":"indicator","indicator":"RSI","component":"RSI","operator":"crosses_above","compareWith":"value","compareValue":{},"settings":{{"length":7}}}}"#,
            80 + rng.below(10)
        ),
        _ => r#"{"id":"rsi5","type":"indicator","indicator":"RSI","operator":"<","compareValue":35,"timeframe":"5m","settings":{"length":14}},{"id":"cross1","type":"price","operator":"crosses_above","compareWith":"indicator_component","rhs":{"indicator":"EMA","settings":{"period":9}},"timeframe":"1m"}"#.to_owned(),
    };
    let tf_name = if condition.contains(r#""timeframe":"5m""#) {
        "1m".to_owned()
    } else {
        tf_name
    };
    let trigger = match rng.below(10) {
        0..=5 => "once_per_bar_close",
        6..=7 => "once_per_bar",
        _ => "once",
    };
    // At most one trigger per 1, 5, 15 or 60 bars, as users ask not to be told every minute.
    let debounce = [1, 5, 15, 60][rng.below(4) as usize];
    let action = match webhook {
        Some(url) => {
            format!(r#""actions":[{{"type":"notify"}},{{"type":"webhook","url":"{url}"}}]"#)
        }
        None => r#""action":{"type":"notify"}"#.to_owned(),
    };
    let name = format!("scale {n}");
    let json = format!(
        r#"{{"name":"{name}","symbol":"{symbol}","base_timeframe":"{tf_name}","conditions":[{condition}],"trigger":"{trigger}","debounce_bars":{debounce},{action},"message":"{{{{symbol}}}} {{{{close}}}}"}}"#
    );
    (json, tf_name)
}

/// Seeds the alerts; returns the first alert id of each of the API load's users, and how
/// many alerts send a webhook.
async fn seed_alerts(
    store: &Store,
    args: &BenchServeArgs,
    first_closes: &[f64],
    receiver: SocketAddr,
) -> anyhow::Result<(Vec<(Uuid, Uuid)>, usize)> {
    let names = synthetic::symbols(args.symbols);
    let mut rng = Rng::new(args.seed ^ 0x5ca1e);
    let url = format!("http://{receiver}/hook");
    let now = chrono::Utc::now();
    let mut api_alerts = Vec::new();
    let mut webhooks = 0;
    let mut chunk = Vec::with_capacity(10_000);
    for n in 0..args.alerts {
        let s = n % args.symbols;
        let user = Uuid::from_u128(
            0x0000_0000_0000_4000_8000_0000_0000_0000 | (n / ALERTS_PER_USER) as u128,
        );
        let webhook = (rng.unit() < args.webhook_share).then_some(url.as_str());
        webhooks += usize::from(webhook.is_some());
        let symbol = names[s].to_string();
        let (definition, base_timeframe) =
            alert_json(&mut rng, n, &symbol, first_closes[s], webhook);
        let id = Uuid::from_u128(rng.next_u64() as u128 | ((n as u128) << 64));
        if n % ALERTS_PER_USER == 0 && api_alerts.len() < API_USERS {
            api_alerts.push((user, id));
        }
        chunk.push(SeedAlert {
            id,
            user_id: user,
            name: format!("scale {n}"),
            symbol,
            base_timeframe,
            definition,
        });
        if chunk.len() == chunk.capacity() {
            insert_active_alerts(store, &chunk, now).await?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        insert_active_alerts(store, &chunk, now).await?;
    }
    Ok((api_alerts, webhooks))
}

/// wrk's script: round-robin over the users' tokens and three reads; each connection waits
/// `connections / rate` seconds between requests, so the whole runs at about `rate`.
fn wrk_script(secret: &str, users: &[(Uuid, Uuid)], rate: f64) -> anyhow::Result<String> {
    let mut tokens = String::new();
    let mut paths = String::new();
    for (user, alert) in users {
        let token = alert_api::auth::mint(secret, *user, Duration::from_secs(86_400))
            .map_err(|e| anyhow::anyhow!("minting a token: {e}"))?;
        let _ = write!(tokens, "\"{token}\",");
        let _ = write!(
            paths,
            "{{\"/v1/alerts?limit=50\",\"/v1/alerts/{alert}\",\"/v1/triggers?limit=50\"}},"
        );
    }
    let delay_ms = f64::from(API_CONNECTIONS) * 1000.0 / rate;
    Ok(format!(
        r#"local tokens = {{{tokens}}}
local paths = {{{paths}}}
local i = 0
request = function()
  i = i + 1
  local k = (i % #tokens) + 1
  local p = paths[k][(i % 3) + 1]
  return wrk.format("GET", p, {{["Authorization"] = "Bearer " .. tokens[k]}})
end
delay = function()
  return {delay_ms:.0}
end
"#
    ))
}

fn parse_wrk(text: &str, report: &mut Report) {
    let ms = |v: &str| -> f64 {
        let v = v.trim();
        let (num, scale) = if let Some(x) = v.strip_suffix("us") {
            (x, 0.001)
        } else if let Some(x) = v.strip_suffix("ms") {
            (x, 1.0)
        } else if let Some(x) = v.strip_suffix('s') {
            (x, 1000.0)
        } else if let Some(x) = v.strip_suffix('m') {
            (x, 60_000.0)
        } else {
            (v, 1.0)
        };
        num.parse::<f64>().map_or(f64::NAN, |n| n * scale)
    };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => report.api_p50_ms = ms(v),
            (Some("99%"), Some(v)) => report.api_p99_ms = ms(v),
            (Some("Requests/sec:"), Some(v)) => {
                report.api_requests_per_s = v.parse().unwrap_or(f64::NAN);
            }
            _ => {}
        }
        if let Some(n) = line.trim().strip_prefix("Non-2xx or 3xx responses:") {
            report.api_non_2xx = n.trim().parse().unwrap_or(0);
        }
        if line.trim().starts_with("Socket errors:") {
            report.api_errors = line.trim().to_owned();
        }
    }
}

fn table(r: &Report, args: &BenchServeArgs) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let no_growth = r.backlog_max_second_half <= r.backlog_max_first_half.max(1000.0);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "scale run: {} alerts ({} with a webhook) over {} symbols, 1m replay at {}x for {} min, API load {} req/s\n",
        r.alerts, r.webhook_alerts, r.symbols, args.speed, args.minutes, args.api_rate
    );
    let _ = writeln!(t, "| measure | value | target |");
    let _ = writeln!(t, "|---|---|---|");
    let _ = writeln!(t, "| alerts seeded (bulk SQL) | {:.1} s | |", r.seed_s);
    let _ = writeln!(
        t,
        "| serve start-up (alerts loaded, API up) | {:.1} s | |",
        r.startup_s
    );
    let _ = writeln!(
        t,
        "| peak RSS (VmHWM) | {:.0} MiB (start {:.0}, end {:.0}) | < 2048 MiB: {} |",
        r.peak_rss_mib,
        r.rss_at_start_mib,
        r.rss_at_end_mib,
        verdict(r.peak_rss_mib < 2048.0)
    );
    let _ = writeln!(
        t,
        "| rounds (batches of ≤512 candle updates, evaluated; recorded beside the next) | {:.0} ({:.0} candles) | |",
        r.rounds, r.candles
    );
    let _ = writeln!(
        t,
        "| round p50 / p99 | {:.1} ms / {:.1} ms (slowest bucket ≤ {:.0} ms) | p99 < 200 ms: {} |",
        r.round_p50_ms,
        r.round_p99_ms,
        r.round_max_bucket_ms,
        verdict(r.round_p99_ms < 200.0)
    );
    let _ = writeln!(
        t,
        "| a round's triggers recorded, after its start: p50 / p99 | {:.1} ms / {:.1} ms | |",
        r.recorded_p50_ms, r.recorded_p99_ms
    );
    let _ = writeln!(
        t,
        "| triggers recorded | {:.0} ({:.0}/s average, {:.0}/s peak second) | |",
        r.triggers, r.triggers_per_s, r.triggers_peak_per_s
    );
    let _ = writeln!(
        t,
        "| delivery backlog max (1st half / 2nd half) / at end | {:.0} / {:.0} / {:.0}; {} webhooks received | no growth: {} |",
        r.backlog_max_first_half,
        r.backlog_max_second_half,
        r.backlog_end,
        r.deliveries_received,
        verdict(no_growth)
    );
    if args.api_rate > 0.0 {
        let _ = writeln!(
            t,
            "| API (wrk, {} connections) | {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} non-2xx {} | |",
            API_CONNECTIONS,
            r.api_requests_per_s,
            r.api_p50_ms,
            r.api_p99_ms,
            r.api_non_2xx,
            r.api_errors
        );
    }
    t
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The sum of a metric's samples (all label sets) in Prometheus' text format.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A Prometheus histogram read back from the text format.
struct Histogram {
    /// (upper bound, cumulative count), by bound.
    buckets: Vec<(f64, f64)>,
    count: f64,
}

fn histogram(text: &str, name: &str) -> Histogram {
    let bucket = format!("{name}_bucket{{le=\"");
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(&bucket) else {
            continue;
        };
        let Some((le, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        if let Ok(v) = value.trim().parse::<f64>()
            && !le.is_nan()
        {
            buckets.push((le, v));
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Histogram {
        buckets,
        count: metric(text, &format!("{name}_count")),
    }
}

impl Histogram {
    /// As PromQL's `histogram_quantile`: linear within the bucket the rank falls in.
    fn quantile(&self, q: f64) -> f64 {
        let Some((_, total)) = self.buckets.last() else {
            return f64::NAN;
        };
        if *total <= 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for (le, count) in &self.buckets {
            if *count >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let width = count - lower.1;
                let within = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return lower.0 + (*le - lower.0) * within;
            }
            lower = (*le, *count);
        }
        lower.0
    }

    /// The upper bound of the highest bucket holding any observation.
    fn max_bucket(&self) -> f64 {
        let mut previous = 0.0;
        let mut max = 0.0;
        for (le, count) in &self.buckets {
            if *count > previous {
                max = *le;
            }
            previous = *count;
        }
        max
    }
}

/// A child process killed if still running when dropped (an early return on error).
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.0.as_mut() {
            Some(child) => child.try_wait(),
            None => Ok(None),
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Counts webhooks; answers 200 at once.
struct Receiver {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                std::future::ready(axum::http::StatusCode::OK)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_interpolate_within_buckets() {
        let text = "x_bucket{le=\"0.01\"} 50\nx_bucket{le=\"0.02\"} 90\nx_bucket{le=\"0.05\"} 100\nx_bucket{le=\"+Inf\"} 100\nx_count 100\n";
        let h = histogram(text, "x");
        assert_eq!(h.count, 100.0);
        assert!((h.quantile(0.5) - 0.01).abs() < 1e-12);
        assert!((h.quantile(0.7) - 0.015).abs() < 1e-12);
        assert!((h.quantile(0.99) - 0.047).abs() < 1e-9);
        assert_eq!(h.max_bucket(), 0.05);
    }

    #[test]
    fn metric_sums_label_sets_and_ignores_prefixes() {
        let text =
            "a_total{k=\"1\"} 2\na_total{k=\"2\"} 3\na_total_other 100\n# a_total 9\na_total 1\n";
        assert_eq!(metric(text, "a_total"), 6.0);
    }

    #[test]
    fn wrk_output_is_read() {
        let text = "  Latency Distribution\n     50%    1.50ms\n     75%    2.00ms\n     99%  120.00us\n  2000 requests in 10.00s\n  Non-2xx or 3xx responses: 7\nRequests/sec:    199.87\n";
        let mut r = Report::default();
        parse_wrk(text, &mut r);
        assert_eq!(r.api_p50_ms, 1.5);
        assert!((r.api_p99_ms - 0.12).abs() < 1e-12);
        assert_eq!(r.api_non_2xx, 7);
        assert_eq!(r.api_requests_per_s, 199.87);
    }

    #[test]
    fn every_generated_alert_parses() {
        let mut rng = Rng::new(7);
        for n in 0..500 {
            let hook = (n % 3 == 0).then_some("http://127.0.0.1:9/hook");
            let (json, tf) = alert_json(&mut rng, n, "SYM0001USDT", 123.4, hook);
            let parsed = alert_engine::parse::parse_alert_str(&json);
            assert!(parsed.is_ok(), "{json}: {parsed:?}");
            assert!(tf == "1m" || tf == "5m");
        }
    }
}
