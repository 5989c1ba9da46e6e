//! `alert-runner migrate`: apply the embedded migrations and exit.

use alert_store::{Store, StoreOptions};

use crate::cli::DatabaseArgs;

pub fn run(args: &DatabaseArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::connect(
            &args.database_url,
            StoreOptions {
                migrate: false,
                ..StoreOptions::default()
            },
        )
        .await?;
        store.migrate().await?;
        store.close().await;
        eprintln!("migrations applied ({:?})", store.kind());
        anyhow::Ok(())
    })
}
