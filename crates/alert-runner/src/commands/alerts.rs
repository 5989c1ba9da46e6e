//! `alert-runner alerts import|list`: stored alerts from the command line.

use alert_store::{AlertQuery, AlertStatus, NewAlert, Store, StoreOptions};
use anyhow::Context;

use crate::cli::{AlertsCommand, WebhookSecretCommand};

/// Every webhook URL of `defs` that the policy refuses, and the warnings, as
/// `[<index>].<json path>: <reason>` lines (see `alert_api::alerts::check_webhooks`).
async fn refused_webhooks(
    policy: &alert_dispatch::AddressPolicy,
    defs: &[alert_engine::AlertDefinition],
    raw: &[serde_json::Value],
) -> (Vec<String>, Vec<String>) {
    let mut refused = Vec::new();
    let mut warnings = Vec::new();
    for (i, (def, json)) in defs.iter().zip(raw).enumerate() {
        let (r, w) = alert_api::alerts::check_webhooks(policy, def, json).await;
        let line = |e: alert_api::error::FieldError| format!("[{i}].{}: {}", e.path, e.message);
        refused.extend(r.into_iter().map(line));
        warnings.extend(w.into_iter().map(line));
    }
    (refused, warnings)
}

pub fn run(cmd: &AlertsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cmd {
            AlertsCommand::Import {
                database,
                user,
                file,
                webhooks,
            } => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let defs = alert_engine::parse::parse_alerts_array(&text)
                    .map_err(|e| anyhow::anyhow!("{}: invalid alerts:\n{e}", file.display()))?;
                let raw: Vec<serde_json::Value> = serde_json::from_str(&text)?;
                let (refused, warnings) =
                    refused_webhooks(&webhooks.address_policy(), &defs, &raw).await;
                for w in &warnings {
                    eprintln!("warning: {}: {w}", file.display());
                }
                anyhow::ensure!(
                    refused.is_empty(),
                    "{}: webhook URLs refused (nothing stored):\n{}",
                    file.display(),
                    refused.join("\n")
                );
                let store = Store::connect(&database.database_url, StoreOptions::default()).await?;
                let now = chrono::Utc::now();
                for (def, json) in defs.iter().zip(raw) {
                    let new = NewAlert {
                        name: def.name.clone(),
                        symbol: def.symbol,
                        base_timeframe: def.base_timeframe,
                        definition: json,
                        status: AlertStatus::Active,
                    };
                    let row = store.create_alert(*user, &new, now).await?;
                    println!("{}\t{}", row.id, row.name);
                }
                store.close().await;
            }
            AlertsCommand::List { database, user } => {
                let store = Store::connect(&database.database_url, StoreOptions::default()).await?;
                let mut after = None;
                loop {
                    let page = store
                        .list_alerts(
                            *user,
                            &AlertQuery {
                                after,
                                limit: 500,
                                ..Default::default()
                            },
                        )
                        .await?;
                    for a in &page {
                        println!("{}", serde_json::to_string(a)?);
                    }
                    match page.last() {
                        Some(last) if page.len() == 500 => {
                            after = Some(alert_store::Cursor {
                                at: last.created_at,
                                id: last.id,
                            })
                        }
                        _ => break,
                    }
                }
                store.close().await;
            }
        }
        anyhow::Ok(())
    })
}

/// `alert-runner webhook-secret show|rotate`.
pub fn run_secret(cmd: &WebhookSecretCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (database, user) = match cmd {
            WebhookSecretCommand::Show { database, user }
            | WebhookSecretCommand::Rotate { database, user, .. } => (database, *user),
        };
        let store = Store::connect(&database.database_url, StoreOptions::default()).await?;
        let now = chrono::Utc::now();
        let candidate = alert_dispatch::generate_secret();
        let secrets = match cmd {
            WebhookSecretCommand::Show { .. } => {
                store.webhook_secret(user, &candidate, now).await?
            }
            WebhookSecretCommand::Rotate { grace, .. } => {
                store
                    .rotate_webhook_secret(user, &candidate, *grace, now)
                    .await?
            }
        };
        println!("{}", secrets.current);
        if let Some(previous) = &secrets.previous {
            eprintln!("previous secret (still signing during the grace period): {previous}");
        }
        store.close().await;
        anyhow::Ok(())
    })
}
