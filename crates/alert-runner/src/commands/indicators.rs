//! `alert-runner indicators`: indicator values over a candle file, as CSV.

use std::io::Write;

use alert_indicators::{AnyIndicator, Indicator};
use alert_marketdata::CandleReader;
use anyhow::Context;

use crate::cli::IndicatorsArgs;

pub fn run(args: &IndicatorsArgs) -> anyhow::Result<()> {
    let reader = CandleReader::open(&args.candles)?;
    let mut indicators: Vec<AnyIndicator> = args.indicators.iter().map(AnyIndicator::new).collect();

    let stdout = std::io::stdout().lock();
    let mut out =
        csv::WriterBuilder::new().from_writer(std::io::BufWriter::with_capacity(1 << 16, stdout));
    let mut header = vec!["open_time_ms".to_owned()];
    for spec in &args.indicators {
        for component in spec.kind().components() {
            header.push(format!("{spec}.{component}"));
        }
    }
    out.write_record(&header).context("writing the header")?;

    let mut row: Vec<String> = Vec::with_capacity(header.len());
    let mut numbers = ryu::Buffer::new();
    for candle in reader {
        let candle = candle?;
        row.clear();
        row.push(candle.open_time.millis().to_string());
        for ind in &mut indicators {
            let values = ind.update(&candle);
            for i in 0..ind.width() {
                match values.and_then(|v| v.get(i)) {
                    Some(v) => row.push(numbers.format(v).to_owned()),
                    None => row.push(String::new()),
                }
            }
        }
        out.write_record(&row).context("writing a row")?;
    }
    let mut inner = out
        .into_inner()
        .map_err(|e| anyhow::anyhow!("flushing output: {}", e.error()))?;
    inner.flush().context("flushing output")?;
    Ok(())
}
