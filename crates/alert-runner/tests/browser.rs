//! The dashboard in a real headless browser: `serve` on the embedded default (SQLite in a
//! temporary directory, the simulated market, the demo user) on a free port, then
//! `node web/tests/dashboard.mjs <the printed dashboard URL>`, which drives Debian's Chromium
//! with playwright-core (sign in, the form, a validation error, test now, an alert firing live,
//! its triggers on the chart, bots, deliveries). Fails if node fails.
//!
//! ```sh
//! cargo test --workspace --test browser -- --ignored --nocapture   # .ci/run runs this
//! ```
//! Needs `node` (18+), `npm ci` done in `web/tests`, and Chromium at `/usr/bin/chromium`
//! (`apt-get install chromium`; another path with `CHROMIUM=`). Screenshots go to
//! `$BROWSER_ARTIFACTS` (default `<target dir>/browser-artifacts`); with
//! `UPDATE_SCREENSHOT=1` the chart's is copied to `docs/dashboard.png` (the README's).
//! `ALERT_RUNNER_SKIP_BROWSER=1` skips it with a message; anything missing otherwise is a
//! failure that says how to install it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_alert-runner");
const SKIP_ENV: &str = "ALERT_RUNNER_SKIP_BROWSER";
/// The whole browser run; it takes about a minute.
const NODE_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the run needs, or how to get it.
fn prerequisites() -> Result<(PathBuf, PathBuf), String> {
    let root = repo();
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok {
        return Err(
            "node is not installed: install Node.js 18+ (e.g. `apt-get install nodejs npm`)".into(),
        );
    }
    let modules = root.join("web/tests/node_modules/playwright-core");
    if !modules.is_dir() {
        return Err(format!(
            "{} is missing: run `npm ci` in web/tests",
            modules.display()
        ));
    }
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {}: `apt-get install -y chromium` (Debian), or set CHROMIUM=/path/to/chrome",
            chromium.display()
        ));
    }
    Ok((root, chromium))
}

fn artifacts_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("BROWSER_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("browser-artifacts")
}

struct Serve {
    child: Child,
    dir: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` on the embedded default in a fresh directory, on a port the OS picks; returns it
/// with the dashboard URL it printed.
fn start_serve() -> (Serve, String) {
    let dir = std::env::temp_dir().join(format!("ar-browser-{}", uuid::Uuid::new_v4()));
    assert!(
        std::fs::create_dir_all(&dir).is_ok(),
        "create {}",
        dir.display()
    );
    let log = std::fs::File::create(dir.join("serve.log"))
        .unwrap_or_else(|e| panic!("create serve.log: {e}"));
    let mut child = Command::new(BIN)
        .current_dir(&dir)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            // The test's webhook receiver listens on 127.0.0.1.
            "--webhook-allow-private",
        ])
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("SUPABASE_JWT_SECRET")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn serve: {e}"));
    let Some(stdout) = child.stdout.take() else {
        panic!("serve has no stdout")
    };
    // Copy the log to serve.log while looking for the dashboard's line.
    let (tx, rx) = mpsc::channel();
    let log_path = dir.join("serve.stdout.log");
    std::thread::spawn(move || {
        use std::io::Write;
        let mut out = std::fs::File::create(&log_path).ok();
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(f) = out.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if !sent && let Some(at) = line.find("dashboard: http://") {
                let url: String = line[at + "dashboard: ".len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
                    .collect();
                let _ = tx.send(url);
                sent = true;
            }
        }
    });
    let serve = Serve { child, dir };
    let Ok(url) = rx.recv_timeout(Duration::from_secs(60)) else {
        panic!(
            "serve printed no `dashboard: http://…` line within 60 s; logs in {}",
            serve.dir.display()
        )
    };
    (serve, url)
}

fn get(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "headless Chromium (about a minute); run by .ci/run"]
fn dashboard_in_a_real_browser() {
    if std::env::var_os(SKIP_ENV).is_some_and(|v| v != "0" && !v.is_empty()) {
        eprintln!("SKIPPED: {SKIP_ENV} is set: the dashboard's browser tests did not run");
        return;
    }
    let (root, chromium) = match prerequisites() {
        Ok(p) => p,
        Err(how) => panic!(
            "the browser tests cannot run: {how} (.ci/run installs all of it; set {SKIP_ENV}=1 to skip them knowingly)"
        ),
    };
    let started = Instant::now();
    let (mut serve, url) = start_serve();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "the printed dashboard URL: {url}"
    );
    // Ready: the demo alerts are loaded and the market is running.
    let ready = format!("{url}readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&ready) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "serve not ready within 60 s; logs in {}",
            serve.dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let artifacts = artifacts_dir(&root);
    // This run's screenshots only.
    for old in std::fs::read_dir(&artifacts)
        .into_iter()
        .flatten()
        .flatten()
    {
        if old.path().extension().is_some_and(|e| e == "png") {
            let _ = std::fs::remove_file(old.path());
        }
    }
    let _ = std::fs::create_dir_all(&artifacts);
    eprintln!("dashboard at {url}; screenshots in {}", artifacts.display());

    let mut node = Command::new("node")
        .current_dir(root.join("web/tests"))
        .arg("dashboard.mjs")
        .arg(&url)
        .env("BROWSER_ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn node: {e}"));
    let deadline = Instant::now() + NODE_TIMEOUT;
    let status = loop {
        match node.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = node.kill();
                let _ = node.wait();
                break None;
            }
        }
    };
    let alive = matches!(serve.child.try_wait(), Ok(None));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "the browser tests failed ({s}); screenshots in {}, serve's logs in {}",
            artifacts.display(),
            serve.dir.display()
        ),
        None => panic!(
            "the browser tests took longer than {} s; screenshots in {}, serve's logs in {}",
            NODE_TIMEOUT.as_secs(),
            artifacts.display(),
            serve.dir.display()
        ),
    }
    assert!(
        alive,
        "serve exited during the run; logs in {}",
        serve.dir.display()
    );
    if std::env::var_os("UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let shot = std::fs::read_dir(&artifacts)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-chart.png"));
        if let Some(shot) = shot {
            let to = root.join("docs/dashboard.png");
            assert!(
                std::fs::copy(&shot, &to).is_ok(),
                "copy to {}",
                to.display()
            );
            eprintln!("{} → {}", shot.display(), to.display());
        }
    }
    let _ = serve.child.kill();
    let _ = serve.child.wait();
    let _ = std::fs::remove_dir_all(&serve.dir);
    eprintln!(
        "browser tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
