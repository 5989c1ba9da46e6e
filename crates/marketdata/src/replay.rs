//! `replay`: candle files played back as a market — as fast as possible or at a speed factor,
//! optionally looping — merged across symbols in time order.
//!
//! A file's symbol is its name up to the first `-`, `_` or `.` (`BTCUSDT.csv`,
//! `BTCUSDT-1m-2024-01.csv`). A directory holds files of one or more symbols; several files of
//! one symbol are played in name order (Binance's monthly files sort by date).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use alert_core::{BarTime, Candle, CandleUpdate, Symbol, Timeframe};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::source::{Source, SourceError, SourceEvent, Wanted};
use crate::{CandleFileError, CandleReader};

/// Replay settings.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Files or directories.
    pub paths: Vec<PathBuf>,
    /// The candles' timeframe.
    pub timeframe: Timeframe,
    /// `None`: as fast as the consumer takes them. `Some(f)`: data time runs `f` times faster
    /// than wall time (60 = one 1m bar per second).
    pub speed: Option<f64>,
    /// Start again from the beginning, shifted in time so bars keep increasing.
    pub looping: bool,
}

/// The files of each symbol, in play order.
pub fn discover(paths: &[PathBuf]) -> Result<BTreeMap<Symbol, Vec<PathBuf>>, SourceError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p)
                .map_err(|e| SourceError::Other(format!("{}: {e}", p.display())))?;
            for e in entries.flatten() {
                let path = e.path();
                if path
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("csv"))
                {
                    files.push(path);
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    let mut by_symbol: BTreeMap<Symbol, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let symbol = symbol_of(&f)?;
        by_symbol.entry(symbol).or_default().push(f);
    }
    if by_symbol.is_empty() {
        return Err(SourceError::Other(
            "replay: no candle files (*.csv) found".into(),
        ));
    }
    Ok(by_symbol)
}

fn symbol_of(path: &Path) -> Result<Symbol, SourceError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.split(['-', '_', '.']).next().unwrap_or_default();
    Symbol::new(stem).map_err(|e| {
        SourceError::Other(format!(
            "{}: cannot tell the symbol from the file name: {e}",
            path.display()
        ))
    })
}

/// One symbol's candles, across its files, read lazily.
struct Track {
    symbol: Symbol,
    files: Vec<PathBuf>,
    next_file: usize,
    reader: Option<CandleReader<std::io::BufReader<std::fs::File>>>,
    head: Option<Candle>,
}

impl Track {
    fn advance(&mut self) -> Result<(), CandleFileError> {
        loop {
            if let Some(r) = self.reader.as_mut() {
                match r.next() {
                    Some(c) => {
                        self.head = Some(c?);
                        return Ok(());
                    }
                    None => self.reader = None,
                }
            }
            let Some(f) = self.files.get(self.next_file) else {
                self.head = None;
                return Ok(());
            };
            self.next_file += 1;
            self.reader = Some(CandleReader::open(f)?);
        }
    }
}

/// The replay source.
pub struct Replay {
    config: ReplayConfig,
    files: BTreeMap<Symbol, Vec<PathBuf>>,
}

impl Replay {
    pub fn new(config: ReplayConfig) -> Result<Self, SourceError> {
        let files = discover(&config.paths)?;
        Ok(Self { config, files })
    }

    pub fn symbols(&self) -> Vec<Symbol> {
        self.files.keys().copied().collect()
    }

    async fn play(
        self,
        out: mpsc::Sender<SourceEvent>,
        cancel: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut shift = 0i64;
        loop {
            let mut tracks: Vec<Track> = self
                .files
                .iter()
                .map(|(s, f)| Track {
                    symbol: *s,
                    files: f.clone(),
                    next_file: 0,
                    reader: None,
                    head: None,
                })
                .collect();
            for t in &mut tracks {
                t.advance()?;
            }
            let (mut first, mut last) = (None::<i64>, None::<i64>);
            let started = tokio::time::Instant::now();
            // The earliest head across symbols (a k-way merge; a handful of symbols).
            while let Some(i) = tracks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.head.map(|c| (i, c.open_time)))
                .min_by_key(|(_, t)| *t)
                .map(|(i, _)| i)
            {
                let Some(mut candle) = tracks[i].head else {
                    break;
                };
                let t = candle.open_time.millis();
                let first_t = *first.get_or_insert(t);
                last = Some(t);
                if let Some(speed) = self.config.speed.filter(|s| *s > 0.0) {
                    let due = Duration::from_secs_f64(((t - first_t) as f64 / 1000.0) / speed);
                    tokio::select! {
                        _ = tokio::time::sleep_until(started + due) => {}
                        _ = cancel.cancelled() => return Ok(()),
                    }
                }
                candle.open_time = BarTime::from_millis(t + shift);
                let event = SourceEvent::Candle {
                    symbol: tracks[i].symbol,
                    update: CandleUpdate {
                        candle,
                        closed: true,
                    },
                };
                tokio::select! {
                    sent = out.send(event) => if sent.is_err() { return Ok(()) },
                    _ = cancel.cancelled() => return Ok(()),
                }
                tracks[i].advance()?;
            }
            for t in &tracks {
                let _ = out.send(SourceEvent::Warm { symbol: t.symbol }).await;
            }
            match (self.config.looping, first, last) {
                (true, Some(f), Some(l)) => shift += l - f + self.config.timeframe.duration_ms(),
                _ => return Ok(()),
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }
}

impl Source for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn timeframe(&self) -> Timeframe {
        self.config.timeframe
    }

    fn run(
        self: Box<Self>,
        out: mpsc::Sender<SourceEvent>,
        _wanted: watch::Receiver<Wanted>,
        cancel: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin((*self).play(out, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, rows: &[(i64, f64)]) {
        let mut text = String::from("open_time_ms,open,high,low,close,volume\n");
        for (t, c) in rows {
            text.push_str(&format!("{t},{c},{c},{c},{c},1\n"));
        }
        assert!(std::fs::write(dir.join(name), text).is_ok());
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ar-replay-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        assert!(std::fs::create_dir_all(&d).is_ok());
        d
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }

    async fn collect(config: ReplayConfig, max: usize) -> Vec<(String, i64)> {
        let (tx, mut rx) = mpsc::channel(16);
        let (_w, wanted) = watch::channel(Wanted::new());
        let cancel = CancellationToken::new();
        let Ok(replay) = Replay::new(config) else {
            panic!("replay")
        };
        let task = tokio::spawn(Box::new(replay).run(tx, wanted, cancel.clone()));
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            if let SourceEvent::Candle { symbol, update } = e {
                got.push((symbol.to_string(), update.candle.open_time.millis()));
                if got.len() == max {
                    cancel.cancel();
                    break;
                }
            }
        }
        drop(rx);
        let _ = task.await;
        got
    }

    #[tokio::test]
    async fn merges_symbols_in_time_order_across_files() {
        let d = tempdir();
        write(&d, "BTCUSDT-1m-2024-01.csv", &[(0, 1.0), (120_000, 2.0)]);
        write(&d, "BTCUSDT-1m-2024-02.csv", &[(240_000, 3.0)]);
        write(&d, "ETHUSDT.csv", &[(60_000, 1.0), (180_000, 2.0)]);
        let got = collect(
            ReplayConfig {
                paths: vec![d.clone()],
                timeframe: Timeframe::M1,
                speed: None,
                looping: false,
            },
            100,
        )
        .await;
        let _ = std::fs::remove_dir_all(&d);
        let names: Vec<(&str, i64)> = got.iter().map(|(s, t)| (s.as_str(), *t)).collect();
        assert_eq!(
            names,
            vec![
                ("BTCUSDT", 0),
                ("ETHUSDT", 60_000),
                ("BTCUSDT", 120_000),
                ("ETHUSDT", 180_000),
                ("BTCUSDT", 240_000)
            ]
        );
    }

    #[tokio::test]
    async fn looping_shifts_time_forward() {
        let d = tempdir();
        write(&d, "SOLUSDT.csv", &[(0, 1.0), (60_000, 2.0)]);
        let got = collect(
            ReplayConfig {
                paths: vec![d.clone()],
                timeframe: Timeframe::M1,
                speed: None,
                looping: true,
            },
            5,
        )
        .await;
        let _ = std::fs::remove_dir_all(&d);
        let times: Vec<i64> = got.iter().map(|(_, t)| *t).collect();
        assert_eq!(times, vec![0, 60_000, 120_000, 180_000, 240_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn speed_factor_paces_the_replay() {
        let d = tempdir();
        write(
            &d,
            "BTCUSDT.csv",
            &[(0, 1.0), (60_000, 2.0), (120_000, 3.0)],
        );
        let started = tokio::time::Instant::now();
        let got = collect(
            ReplayConfig {
                paths: vec![d.clone()],
                timeframe: Timeframe::M1,
                speed: Some(60.0),
                looping: false,
            },
            3,
        )
        .await;
        let _ = std::fs::remove_dir_all(&d);
        assert_eq!(got.len(), 3);
        // 2 minutes of data at 60x = 2 s of (virtual) wall time.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    }

    #[test]
    fn refuses_a_file_without_a_symbol_name() {
        assert!(symbol_of(Path::new("/x/.csv")).is_err());
        assert!(
            matches!(symbol_of(Path::new("/x/btcusdt_1m.csv")), Ok(s) if s.as_str() == "BTCUSDT")
        );
    }
}
