//! Candle CSV files, read as a stream.
//!
//! Two formats are accepted and told apart by the first line:
//! - **header format**: a header `open_time_ms,open,high,low,close,volume`, then one bar per
//!   line;
//! - **Binance kline files** (`data.binance.vision`): 12 columns, no header — open time,
//!   open, high, low, close, volume, close time, quote volume, trades, taker buy base,
//!   taker buy quote, ignore. Open times are in milliseconds, or in microseconds as Binance's
//!   spot files are since 2025: a time of 10^14 or more is taken as microseconds (10^14 ms
//!   is in the year 5138) and must be a whole millisecond.
//!
//! Every row is checked: a missing field, a non-number, NaN or infinity, high below low,
//! open/close outside [low, high], negative volume, or an open time not after the previous
//! one is an error naming the file, the line and the reason. Nothing is loaded whole.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use alert_core::{BarTime, Candle, CandleError};

const HEADER: [&str; 6] = ["open_time_ms", "open", "high", "low", "close", "volume"];
const BINANCE_COLUMNS: usize = 12;
const MICROS_THRESHOLD: i64 = 100_000_000_000_000;

/// Which of the two layouts a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandleFileFormat {
    /// `open_time_ms,open,high,low,close,volume` with that header.
    Header,
    /// Binance's 12-column kline CSV without a header.
    BinanceKlines,
}

/// A candle file could not be read: which file, which line (1-based; 0 when the error is not
/// about a line) and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct CandleFileError {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

/// Streams the candles of a CSV file, checking each row.
pub struct CandleReader<R: Read> {
    name: String,
    csv: csv::Reader<R>,
    record: csv::ByteRecord,
    format: Option<CandleFileFormat>,
    previous: Option<BarTime>,
    failed: bool,
}

impl CandleReader<BufReader<File>> {
    /// Opens a file; `path` is also the name used in errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CandleFileError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| CandleFileError {
            file: path.display().to_string(),
            line: 0,
            reason: format!("cannot open: {e}"),
        })?;
        Ok(Self::new(
            BufReader::with_capacity(1 << 16, file),
            path.display().to_string(),
        ))
    }
}

impl<R: Read> CandleReader<R> {
    /// Reads candles from any reader; `name` identifies it in errors.
    pub fn new(reader: R, name: impl Into<String>) -> Self {
        let csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        Self {
            name: name.into(),
            csv,
            record: csv::ByteRecord::new(),
            format: None,
            previous: None,
            failed: false,
        }
    }

    /// The format, once the first line has been read.
    pub fn format(&self) -> Option<CandleFileFormat> {
        self.format
    }

    fn error(&self, line: u64, reason: impl Into<String>) -> CandleFileError {
        CandleFileError {
            file: self.name.clone(),
            line,
            reason: reason.into(),
        }
    }

    fn field<'a>(
        &self,
        record: &'a csv::ByteRecord,
        i: usize,
        name: &str,
        line: u64,
    ) -> Result<&'a str, CandleFileError> {
        let raw = record
            .get(i)
            .ok_or_else(|| self.error(line, format!("missing field {name} (column {})", i + 1)))?;
        std::str::from_utf8(raw).map_err(|_| self.error(line, format!("{name} is not valid UTF-8")))
    }

    fn number(
        &self,
        record: &csv::ByteRecord,
        i: usize,
        name: &str,
        line: u64,
    ) -> Result<f64, CandleFileError> {
        let text = self.field(record, i, name, line)?;
        text.parse::<f64>()
            .map_err(|_| self.error(line, format!("{name} is {text:?}: expected a number")))
    }

    /// Decides the format from the first line; returns whether that line is a header.
    fn detect(&mut self, line: u64) -> Result<bool, CandleFileError> {
        let first = self.record.get(0).unwrap_or_default();
        let is_header = !first
            .first()
            .is_some_and(|b| b.is_ascii_digit() || *b == b'-');
        if is_header {
            let fields: Vec<String> = self
                .record
                .iter()
                .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
                .collect();
            if fields.iter().map(String::as_str).eq(HEADER) {
                self.format = Some(CandleFileFormat::Header);
                return Ok(true);
            }
            return Err(self.error(
                line,
                format!(
                    "unrecognised header {:?}: expected `{}` or Binance's 12-column kline CSV without a header",
                    fields.join(","),
                    HEADER.join(",")
                ),
            ));
        }
        self.format = Some(match self.record.len() {
            BINANCE_COLUMNS => CandleFileFormat::BinanceKlines,
            n => {
                return Err(self.error(
                    line,
                    format!(
                        "{n} columns and no header: expected a header `{}` or Binance's {BINANCE_COLUMNS}-column kline CSV",
                        HEADER.join(",")
                    ),
                ));
            }
        });
        Ok(false)
    }

    fn parse_row(&self, line: u64) -> Result<Candle, CandleFileError> {
        let record = &self.record;
        let expected = match self.format {
            Some(CandleFileFormat::BinanceKlines) => BINANCE_COLUMNS,
            _ => HEADER.len(),
        };
        if record.len() != expected {
            return Err(self.error(
                line,
                format!("{} fields: expected {expected}", record.len()),
            ));
        }
        let time_text = self.field(record, 0, "open time", line)?;
        let raw_time: i64 = time_text.parse().map_err(|_| {
            self.error(
                line,
                format!("open time is {time_text:?}: expected whole milliseconds since the epoch"),
            )
        })?;
        let millis = if self.format == Some(CandleFileFormat::BinanceKlines)
            && raw_time >= MICROS_THRESHOLD
        {
            if raw_time % 1000 != 0 {
                return Err(self.error(
                    line,
                    format!("open time {raw_time} (microseconds) is not a whole millisecond"),
                ));
            }
            raw_time / 1000
        } else {
            raw_time
        };
        let candle = Candle {
            open_time: BarTime::from_millis(millis),
            open: self.number(record, 1, "open", line)?,
            high: self.number(record, 2, "high", line)?,
            low: self.number(record, 3, "low", line)?,
            close: self.number(record, 4, "close", line)?,
            volume: self.number(record, 5, "volume", line)?,
        };
        candle
            .check()
            .map_err(|e: CandleError| self.error(line, e.to_string()))?;
        if let Some(prev) = self.previous
            && candle.open_time <= prev
        {
            return Err(self.error(
                line,
                format!("open time {} is not after the previous bar's {}: rows must be in increasing time order", candle.open_time, prev),
            ));
        }
        Ok(candle)
    }
}

impl<R: Read> Iterator for CandleReader<R> {
    type Item = Result<Candle, CandleFileError>;

    /// The next candle; after an error the stream ends.
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let result = match self.csv.read_byte_record(&mut self.record) {
                Ok(false) => return None,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    Err(self.error(line, format!("unreadable CSV: {e}")))
                }
                Ok(true) => {
                    let line = self.record.position().map_or(0, |p| p.line());
                    if self.record.len() == 1 && self.record.get(0).is_some_and(<[u8]>::is_empty) {
                        continue; // blank line
                    }
                    match self.format {
                        None => match self.detect(line) {
                            Ok(true) => continue,
                            Ok(false) => self.parse_row(line),
                            Err(e) => Err(e),
                        },
                        Some(_) => self.parse_row(line),
                    }
                }
            };
            match &result {
                Ok(c) => self.previous = Some(c.open_time),
                Err(_) => self.failed = true,
            }
            return Some(result);
        }
    }
}

/// Reads a whole file into memory (for small files and tests; prefer [`CandleReader`]).
pub fn read_candles(path: impl AsRef<Path>) -> Result<Vec<Candle>, CandleFileError> {
    CandleReader::open(path)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<Candle>, CandleFileError> {
        CandleReader::new(text.as_bytes(), "t.csv").collect()
    }

    fn err(text: &str) -> String {
        match read(text) {
            Ok(c) => panic!("expected an error, read {} candles", c.len()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_header_format() {
        let Ok(c) = read(
            "open_time_ms,open,high,low,close,volume\n0,1,2,0.5,1.5,10\n60000,1.5,1.7,1.2,1.3,0\n",
        ) else {
            panic!("valid file")
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].open_time.millis(), 60_000);
        assert_eq!(
            (c[0].open, c[0].high, c[0].low, c[0].close, c[0].volume),
            (1.0, 2.0, 0.5, 1.5, 10.0)
        );
    }

    #[test]
    fn reads_binance_klines_in_ms_and_us() {
        let ms = "1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68108,1704070799999,53957248.97,47134,682.57581,28957416.82,0\n\
                  1704070800000,42475.23,42775.00,42431.65,42613.56,1196.37856,1704074399999,50984391.71,44400,586.86613,25012808.42,0\n";
        let Ok(a) = read(ms) else {
            panic!("valid ms file")
        };
        let us = ms
            .replace("1704067200000,", "1704067200000000,")
            .replace("1704070800000,", "1704070800000000,");
        let Ok(b) = read(&us) else {
            panic!("valid us file")
        };
        assert_eq!(a, b);
        assert_eq!(a[0].open_time.millis(), 1_704_067_200_000);
        assert_eq!(a[1].close, 42613.56);
        let mut reader = CandleReader::new(ms.as_bytes(), "x");
        assert!(reader.next().is_some_and(|r| r.is_ok()));
        assert_eq!(reader.format(), Some(CandleFileFormat::BinanceKlines));
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let h = "open_time_ms,open,high,low,close,volume\n";
        assert_eq!(
            err(&format!("{h}0,1,2,0.5,1.5\n")),
            "t.csv:2: 5 fields: expected 6"
        );
        assert!(
            err(&format!("{h}0,1,2,0.5,abc,1\n"))
                .starts_with("t.csv:2: close is \"abc\": expected a number")
        );
        assert!(
            err(&format!("{h}0,1,2,0.5,NaN,1\n"))
                .contains("t.csv:2: close is NaN: expected a finite number")
        );
        assert!(err(&format!("{h}0,1,2,0.5,inf,1\n")).contains("close is inf"));
        assert!(err(&format!("{h}0,1,2,3,1,1\n")).contains("t.csv:2: high 2 is below low 3"));
        assert!(err(&format!("{h}0,1,2,0.5,1,-1\n")).contains("volume -1 is negative"));
        assert!(
            err(&format!(
                "{h}0,1,2,0.5,1,1\n60000,1,2,0.5,1,1\n60000,1,2,0.5,1,1\n"
            ))
            .starts_with("t.csv:4: open time 60000 is not after")
        );
        assert!(err(&format!("{h}60000,1,2,0.5,1,1\n0,1,2,0.5,1,1\n")).starts_with("t.csv:3:"));
        assert!(err("time,o,h,l,c,v\n").starts_with("t.csv:1: unrecognised header"));
        assert!(err("0,1,2,0.5,1,1\n").starts_with("t.csv:1: 6 columns and no header"));
        assert!(
            err("1704067200000001,1,2,0.5,1,1,0,0,0,0,0,0\n").contains("not a whole millisecond")
        );
        assert!(err(&format!("{h}1.5,1,2,0.5,1,1\n")).contains("open time is \"1.5\""));
    }

    #[test]
    fn stops_after_the_first_error() {
        let text = "open_time_ms,open,high,low,close,volume\n0,1,2,0.5,x,1\n60000,1,2,0.5,1,1\n";
        let results: Vec<_> = CandleReader::new(text.as_bytes(), "t").collect();
        assert_eq!(results.len(), 1);
        assert!(results[0].is_err());
    }

    #[test]
    fn skips_blank_lines_and_reports_missing_files() {
        let Ok(c) = read("open_time_ms,open,high,low,close,volume\n\n0,1,2,0.5,1.5,10\n\n") else {
            panic!("valid")
        };
        assert_eq!(c.len(), 1);
        let Err(e) = CandleReader::open("/nonexistent/candles.csv") else {
            panic!("missing file opened")
        };
        assert!(
            e.to_string()
                .starts_with("/nonexistent/candles.csv:0: cannot open")
        );
    }

    #[test]
    fn reads_the_golden_series_from_disk() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../indicators/tests/golden/btc_1h.candles.csv");
        let Ok(c) = read_candles(&dir) else {
            panic!("golden file readable")
        };
        assert!(c.len() > 10_000);
        assert!(c.windows(2).all(|w| w[0].open_time < w[1].open_time));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn candle_strategy() -> impl Strategy<Value = (f64, f64, f64, f64, f64)> {
            (
                1e-8f64..1e9,
                0.0f64..1.0,
                0.0f64..1.0,
                0.0f64..1.0,
                0.0f64..1e12,
            )
                .prop_map(|(low, a, b, span, v)| {
                    let high = low * (1.0 + span);
                    let open = low + (high - low) * a;
                    let close = low + (high - low) * b;
                    (open.clamp(low, high), high, low, close.clamp(low, high), v)
                })
        }

        proptest! {
            #[test]
            fn written_candles_read_back_identically(bars in prop::collection::vec(candle_strategy(), 0..50), step in 1i64..10_000_000) {
                let mut text = String::from("open_time_ms,open,high,low,close,volume\n");
                for (i, (o, h, l, c, v)) in bars.iter().enumerate() {
                    text.push_str(&format!("{},{o:?},{h:?},{l:?},{c:?},{v:?}\n", i as i64 * step));
                }
                let read: Vec<Candle> = match read(&text) { Ok(r) => r, Err(e) => return Err(TestCaseError::fail(e.to_string())) };
                prop_assert_eq!(read.len(), bars.len());
                for (got, want) in read.iter().zip(&bars) {
                    prop_assert_eq!((got.open, got.high, got.low, got.close, got.volume), *want);
                }
            }

            #[test]
            fn arbitrary_input_never_panics(text in "[0-9a-z,.\\-\n\"]{0,200}") {
                let _ = CandleReader::new(text.as_bytes(), "fuzz").take(100).count();
            }
        }
    }
}
