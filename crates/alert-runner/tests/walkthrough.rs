//! The README's walk-through, run as written: the `sh` block after the `<!-- walkthrough`
//! marker, in a fresh directory, with the built `alert-runner` first on PATH and only the port
//! changed (8080 may be taken). It must start `serve` on the embedded defaults, mint a token,
//! create an alert with `curl`, and print the trigger and notification from `/v1/events`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const README: &str = include_str!("../../../README.md");

/// The block the README marks as the walk-through.
fn walkthrough() -> &'static str {
    let Some(marker) = README.find("<!-- walkthrough") else {
        panic!("README has no walk-through marker")
    };
    let rest = &README[marker..];
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

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    assert!(
        script.contains("alert-runner serve") && script.contains("$API/events"),
        "{script}"
    );
    let Some(bin_dir) = Path::new(BIN).parent() else {
        panic!("{BIN}")
    };
    let dir = std::env::temp_dir().join(format!("ar-walkthrough-{}", std::process::id()));
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
    while started.elapsed() < Duration::from_secs(120) {
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
        "the walk-through did not finish in 120 s\n{context}"
    );
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

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
