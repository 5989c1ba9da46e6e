//! `alert-runner alerts import|list`: stored alerts from the command line.

use alert_store::{AlertQuery, AlertStatus, NewAlert, Store, StoreOptions};
use anyhow::Context;

use crate::cli::{AlertsCommand, WebhookSecretCommand};

/// How long a webhook host may take to resolve when an alert is stored.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every webhook URL of `defs` that the policy refuses (resolving host names, as the
/// dispatcher will), as `<json path>: <reason>` lines; `raw` is the JSON the paths name.
/// A host that does not resolve now is not refused (DNS may be down or the name not yet
/// published; the dispatcher checks again before every connection): it is a warning.
pub async fn refused_webhooks(
    policy: &alert_dispatch::AddressPolicy,
    defs: &[alert_engine::AlertDefinition],
    raw: &[serde_json::Value],
) -> (Vec<String>, Vec<String>) {
    let mut refused = Vec::new();
    let mut warnings = Vec::new();
    for (i, (def, json)) in defs.iter().zip(raw).enumerate() {
        let listed = json.get("actions").is_some();
        for (j, action) in def.actions.iter().enumerate() {
            let alert_engine::Action::Webhook { url, .. } = action else {
                continue;
            };
            if let Err(e) = policy.check_url_resolving(url, RESOLVE_TIMEOUT).await {
                let path = if listed {
                    format!("[{i}].actions[{j}].url")
                } else {
                    format!("[{i}].action.url")
                };
                match e {
                    alert_dispatch::SsrfError::Resolve(_)
                    | alert_dispatch::SsrfError::NoAddress(_) => {
                        warnings.push(format!("{path}: {e}"))
                    }
                    _ => refused.push(format!("{path}: {e}")),
                }
            }
        }
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
