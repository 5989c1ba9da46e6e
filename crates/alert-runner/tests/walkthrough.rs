//! The README's walk-throughs, run as written: the `sh` block after a `<!-- walkthrough…`
//! marker, in a fresh directory, with the built `alert-runner` first on PATH and only the port
//! changed (8080 may be taken). The first must start `serve` on the embedded defaults, mint a
//! token, create an alert with `curl`, and print the trigger and notification from
//! `/v1/events`; the second must create a DCA bot and print its orders from `/v1/events` until
//! a deal that averaged down closes at its take profit.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const README: &str = include_str!("../../../README.md");

/// The `sh` block after the README's `<!-- {marker}` comment.
fn walkthrough(marker: &str) -> &'static str {
    let Some(at) = README.find(&format!("<!-- {marker}:")) else {
        panic!("README has no {marker} marker")
    };
    let rest = &README[at..];
    let Some(open) = rest.find("```sh\n") else {
        panic!("no sh block after the marker")
    };
    let body = &rest[open + 6..];
    let Some(close) = body.find("\n```") else {
        panic!("unterminated block")
    };
    &body[..close]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_383)
}

/// What a walk-through left behind.
struct Ran {
    stdout: String,
    /// `serve.log` in its directory.
    log: String,
    db: bool,
    secret: bool,
    /// stdout, and the tails of stderr and the log, for assertion messages.
    context: String,
}

/// Runs a walk-through in a fresh directory, with the built binary first on PATH, the
/// embedded defaults (no `ALERT_*` settings from this environment), and only the port changed;
/// fails if it does not finish within `limit`.
fn run(name: &str, script: &str, limit: Duration) -> Ran {
    let Some(bin_dir) = Path::new(BIN).parent() else {
        panic!("{BIN}")
    };
    let dir = std::env::temp_dir().join(format!("ar-{name}-{}", std::process::id()));
    assert!(std::fs::create_dir_all(&dir).is_ok());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let script = script.replace("127.0.0.1:8080", &listen);
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .current_dir(&dir)
        .env("PATH", path)
        .env("ALERT_LISTEN", &listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a failure kills `serve` too.
        .process_group(0);
    // The embedded defaults: nothing from the environment of the test run.
    for (key, _) in std::env::vars() {
        if key.starts_with("ALERT_") && key != "ALERT_LISTEN"
            || key == "DATABASE_URL"
            || key == "SUPABASE_JWT_SECRET"
        {
            cmd.env_remove(key);
        }
    }
    let Ok(mut child) = cmd.spawn() else {
        panic!("bash is needed to run the walk-through")
    };
    let started = Instant::now();
    let mut status = None;
    while started.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Whatever happened, nothing of the group survives.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let db = dir.join("alert-runner.db").exists();
    let secret = dir.join("alert-runner.jwt-secret").exists();
    let _ = std::fs::remove_dir_all(&dir);

    let context = format!(
        "stdout:\n{out}\nstderr (tail):\n{}\nserve.log (tail):\n{}",
        tail(&err, 20),
        tail(&log, 20)
    );
    assert!(
        status.is_some(),
        "the walk-through did not finish in {limit:?}\n{context}"
    );
    Ran {
        stdout: out,
        log,
        db,
        secret,
        context,
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = walkthrough("walkthrough");
    assert!(
        script.contains("alert-runner serve") && script.contains("$API/events"),
        "{script}"
    );
    let Ran {
        stdout: out,
        log,
        db,
        secret,
        context,
    } = run("walkthrough", script, Duration::from_secs(120));
    assert!(
        db && secret,
        "SQLite and the JWT secret in the working directory\n{context}"
    );
    // The created alert, then its trigger and notification from the stream.
    let mut lines = out.lines();
    let created: serde_json::Value = lines
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no created alert printed\n{context}"));
    let Some(id) = created["id"].as_str() else {
        panic!("created: {created}\n{context}")
    };
    assert_eq!(created["status"], "active", "{context}");
    let events: Vec<serde_json::Value> = lines
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let kinds: Vec<_> = events.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(kinds, ["trigger", "notification"], "{context}");
    assert!(
        events.iter().all(|e| e["alert_id"] == id),
        "both of the created alert\n{context}"
    );
    assert!(
        events[0]["snapshot"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIMBTC at ")),
        "{context}"
    );
    assert_eq!(events[1]["title"], "SIMBTC above 1000", "{context}");
    let fired_line = format!(
        "\"trigger\":\"{}\"",
        events[0]["trigger_id"].as_str().unwrap_or("?")
    );
    assert!(
        log.lines()
            .any(|l| l.contains("alert fired") && l.contains(&fired_line)),
        "serve.log shows the trigger\n{context}"
    );
}

/// The README's bot walk-through: a DCA bot created over the API on the embedded market,
/// watched on `/v1/events` until a deal that averaged down closes at its take profit.
#[test]
fn the_readme_bot_walkthrough_runs_as_written() {
    let script = walkthrough("walkthrough-bot");
    assert!(
        script.contains("alert-runner serve") && script.contains("$API/bots"),
        "{script}"
    );
    let ran = run("walkthrough-bot", script, Duration::from_secs(180));
    let context = &ran.context;
    let mut lines = ran.stdout.lines();
    let bot: serde_json::Value = lines
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no created bot printed\n{context}"));
    let Some(bot_id) = bot["id"].as_str() else {
        panic!("bot: {bot}\n{context}")
    };
    assert_eq!(bot["status"], "active", "{context}");
    let events: Vec<serde_json::Value> = lines
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(
        events.iter().all(|e| e["bot_id"] == bot_id),
        "only the bot's events\n{context}"
    );
    // The last deal: entry, at least one safety order, take profit, closed — in that order,
    // each buy lowering the average, the sale at or above the take profit, a profit after fees.
    let Some(last) = events.last() else {
        panic!("no bot events\n{context}")
    };
    assert_eq!(last["type"], "deal_closed", "{context}");
    assert_eq!(last["exit"], "take_profit", "{context}");
    let deal: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "bot_order" && e["deal_id"] == last["deal_id"])
        .collect();
    let roles: Vec<&str> = deal.iter().filter_map(|e| e["role"].as_str()).collect();
    assert_eq!(roles.first(), Some(&"entry"), "{roles:?}\n{context}");
    assert_eq!(roles.last(), Some(&"tp"), "{roles:?}\n{context}");
    let safety = &roles[1..roles.len() - 1];
    assert!(
        !safety.is_empty() && safety.iter().all(|r| r.starts_with("so")),
        "averaged down: {roles:?}\n{context}"
    );
    let num = |e: &serde_json::Value, k: &str| e[k].as_f64().unwrap_or(f64::NAN);
    let entry_price = num(deal[0], "price");
    let average = num(deal[deal.len() - 2], "average_price");
    assert!(
        average < entry_price,
        "{average} vs {entry_price}\n{context}"
    );
    let tp = deal[deal.len() - 1];
    assert!(
        num(tp, "price") >= average * 1.003 * (1.0 - 1e-12),
        "{tp}\n{context}"
    );
    assert!(num(last, "realized_pnl") > 0.0, "{last}\n{context}");
    assert_eq!(last["realized_pnl"], tp["realized_pnl"], "{context}");
    assert!(
        ran.log
            .lines()
            .any(|l| l.contains("bot order filled (paper)")),
        "serve.log shows the fills\n{context}"
    );
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
