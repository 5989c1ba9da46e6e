//! Runs the store benchmarks and prints the report as JSON.
//!
//! `cargo run --release -p alert-store --example bench -- postgres://postgres@127.0.0.1:5432/postgres`
//! `cargo run --release -p alert-store --example bench -- sqlite://bench.db [ALERTS]`
//!
//! An optional second argument sets the number of alerts loaded (default 1,000,000).

use alert_store::bench::{self, BenchSizes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("usage: bench DATABASE_URL [ALERTS]")?;
    let mut sizes = BenchSizes::default();
    if let Some(n) = args.next() {
        sizes.alerts = n.parse()?;
    }
    let report = bench::run(&url, sizes).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
