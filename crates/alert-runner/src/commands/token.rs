//! `alert-runner token`: mint an API token, and the JWT secret `serve` and it share.

use std::path::Path;

use anyhow::Context;

use crate::cli::TokenArgs;

/// Where the embedded default keeps its JWT secret when SUPABASE_JWT_SECRET is unset.
pub const SECRET_FILE: &str = "alert-runner.jwt-secret";

/// The configured secret, or the embedded default's (created on first use, readable by the
/// owner only).
pub fn jwt_secret(configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(s) = configured {
        anyhow::ensure!(
            s.len() >= 32,
            "SUPABASE_JWT_SECRET / --jwt-secret: expected at least 32 characters"
        );
        return Ok(s.to_owned());
    }
    let path = Path::new(SECRET_FILE);
    if let Ok(text) = std::fs::read_to_string(path) {
        let s = text.trim().to_owned();
        anyhow::ensure!(
            s.len() >= 32,
            "{SECRET_FILE}: expected a secret of at least 32 characters"
        );
        return Ok(s);
    }
    let secret = alert_dispatch::generate_secret()
        .trim_start_matches("whsec_")
        .to_owned();
    write_private(path, &secret).with_context(|| format!("creating {SECRET_FILE}"))?;
    tracing::warn!(
        file = SECRET_FILE,
        "no SUPABASE_JWT_SECRET: API tokens are signed with a generated secret (embedded default)"
    );
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let secret = jwt_secret(args.jwt_secret.as_deref())?;
    let token =
        alert_api::auth::mint_with_issuer(&secret, args.user, args.ttl, args.jwt_issuer.as_deref())
            .map_err(|e| anyhow::anyhow!("minting the token: {e}"))?;
    println!("{token}");
    Ok(())
}
