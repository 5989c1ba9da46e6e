//! Prometheus metric names (one place, so dashboards and code agree), and the bounded
//! per-symbol active-alerts gauge.

use std::collections::{BTreeSet, HashMap};

use alert_core::Symbol;

pub const CANDLES: &str = "alert_runner_candles_total";
pub const CANDLES_REJECTED: &str = "alert_runner_candles_rejected_total";
pub const EVALUATION_SECONDS: &str = "alert_runner_evaluation_seconds";
/// One round: a batch of candle updates taken from the source together (with a replay, the
/// symbols' bars of one minute, up to `max_batch`), evaluated, and its triggers handed to the
/// recorder (which records them in one transaction while the next round is evaluated; when it
/// is behind, the wait for room counts here). Exported as a histogram with
/// [`ROUND_SECONDS_BUCKETS`]; see also [`ROUND_RECORDED_SECONDS`].
pub const ROUND_SECONDS: &str = "alert_runner_round_seconds";
/// Bucket bounds of [`ROUND_SECONDS`] (seconds): fine below the 200 ms target.
pub const ROUND_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0,
];
/// From a round's start to its triggers recorded (and announced), for rounds that fired or
/// expired something: the round's evaluation, its wait in the recorder's queue and the store
/// write. Same buckets as [`ROUND_SECONDS`].
pub const ROUND_RECORDED_SECONDS: &str = "alert_runner_round_recorded_seconds";
pub const ALERTS_ACTIVE: &str = "alert_runner_alerts_active";
/// Active alerts per symbol (`symbol` label), for the top symbols by count only; the rest are
/// summed under `symbol="other"` (see [`RunnerConfig::alerts_by_symbol_top`](crate::RunnerConfig)).
pub const ALERTS_ACTIVE_BY_SYMBOL: &str = "alert_runner_alerts_active_by_symbol";
/// The `symbol` label value the symbols outside the top K are summed under (symbols are
/// upper-case, so it cannot clash with one).
pub const OTHER_SYMBOLS: &str = "other";
pub const TRIGGERS: &str = "alert_runner_triggers_total";
pub const DATA_LAG_SECONDS: &str = "alert_runner_data_lag_seconds";
pub const RECONNECTS: &str = "alert_runner_source_reconnects_total";
pub const ERRORS: &str = "alert_runner_errors_total";
/// 1 while this process owns its shard (`--shard I/N`, label `shard="I/N"`), 0 while it is
/// a hot standby waiting for the shard's lock.
pub const SHARD_OWNER: &str = "alert_runner_shard_owner";

/// The `k` symbols with the most active alerts (most first; ties by symbol, so the choice is
/// stable), and the sum of the others' counts.
pub fn top_symbols(counts: &HashMap<Symbol, usize>, k: usize) -> (Vec<(Symbol, usize)>, usize) {
    let mut all: Vec<(Symbol, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| (*s, *n))
        .collect();
    let order = |a: &(Symbol, usize), b: &(Symbol, usize)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
    if all.len() > k {
        if k > 0 {
            all.select_nth_unstable_by(k - 1, order);
        }
        let other = all[k..].iter().map(|(_, n)| n).sum();
        all.truncate(k);
        all.sort_unstable_by(order);
        (all, other)
    } else {
        all.sort_unstable_by(order);
        (all, 0)
    }
}

/// Exports [`ALERTS_ACTIVE_BY_SYMBOL`] with bounded cardinality: recomputed when the loaded
/// alerts change (never per candle); a symbol that leaves the top K has its series set to 0.
#[derive(Debug, Default)]
pub(crate) struct ActiveBySymbol {
    exported: BTreeSet<Symbol>,
}

impl ActiveBySymbol {
    pub(crate) fn publish(&mut self, counts: &HashMap<Symbol, usize>, k: usize) {
        let (top, other) = top_symbols(counts, k);
        let now: BTreeSet<Symbol> = top.iter().map(|(s, _)| *s).collect();
        for gone in self.exported.difference(&now) {
            metrics::gauge!(ALERTS_ACTIVE_BY_SYMBOL, "symbol" => gone.to_string()).set(0.0);
        }
        for (symbol, n) in &top {
            metrics::gauge!(ALERTS_ACTIVE_BY_SYMBOL, "symbol" => symbol.to_string()).set(*n as f64);
        }
        metrics::gauge!(ALERTS_ACTIVE_BY_SYMBOL, "symbol" => OTHER_SYMBOLS).set(other as f64);
        // A series set to 0 stays in the exporter at 0: only symbols that were once in the top
        // K ever get one, not every symbol fed.
        self.exported = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        match Symbol::new(s) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn top_k_with_the_rest_summed() {
        let counts: HashMap<Symbol, usize> =
            [("AAA", 3), ("BBB", 7), ("CCC", 3), ("DDD", 1), ("EEE", 0)]
                .into_iter()
                .map(|(s, n)| (sym(s), n))
                .collect();
        let (top, other) = top_symbols(&counts, 2);
        assert_eq!(
            top,
            vec![(sym("BBB"), 7), (sym("AAA"), 3)],
            "ties broken by symbol"
        );
        assert_eq!(other, 4);
        let (top, other) = top_symbols(&counts, 50);
        assert_eq!(top.len(), 4, "zero counts are not exported");
        assert_eq!(other, 0);
        let (top, other) = top_symbols(&counts, 0);
        assert!(top.is_empty());
        assert_eq!(other, 14);
    }
}
