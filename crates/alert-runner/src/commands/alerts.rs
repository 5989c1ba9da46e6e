//! `alert-runner alerts import|list`: stored alerts from the command line.

use alert_store::{AlertQuery, AlertStatus, NewAlert, Store, StoreOptions};
use anyhow::Context;

use crate::cli::AlertsCommand;

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
            } => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let defs = alert_engine::parse::parse_alerts_array(&text)
                    .map_err(|e| anyhow::anyhow!("{}: invalid alerts:\n{e}", file.display()))?;
                let raw: Vec<serde_json::Value> = serde_json::from_str(&text)?;
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
