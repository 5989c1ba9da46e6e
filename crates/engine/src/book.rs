//! Everything the engine keeps for one symbol: its timeframes, its value table and the alerts
//! that read them. Only the book of the updated symbol is touched by a candle update.

use std::sync::Arc;

use alert_core::{BarTime, Candle, CandleUpdate, PriceSource, Symbol, Timeframe};
use alert_indicators::Components;

use crate::compile::{AlertState, CTest, CompiledAlert, Leaf, Node, Past, Val, group};
use crate::definition::{
    AlertDefinition, AlertId, Bound, Condition, ConditionNode, Operand, Series, TriggerMode,
};
use crate::events::{BarSnapshot, ConditionSnapshot, Event, Trigger};
use crate::series::TfSeries;
use crate::{DataError, EngineError};

const TFS: usize = Timeframe::ALL.len();
const SOURCES: usize = PriceSource::ALL.len();
const PRICE_SLOTS: u32 = (TFS * SOURCES) as u32;

/// One evaluation point: the data as of `now`, with `closed` the timeframes whose bar closed.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// Close time of the fed candle (or of the bars a data gap closed).
    now: BarTime,
    /// Bit `i` set: `Timeframe::ALL[i]` closed a bar in this step.
    closed: u16,
}

pub(crate) struct SymbolBook {
    pub symbol: Symbol,
    pub feed: Timeframe,
    /// Indexed like `Timeframe::ALL`; `None` for timeframes the feed cannot build.
    tfs: Vec<Option<TfSeries>>,
    /// Current value of every operand: price slots first, then indicator components.
    values: Vec<f64>,
    /// Freed value-table slots, by width (1, 2, 3).
    free_slots: [Vec<u32>; 3],
    pub alerts: Vec<CompiledAlert>,
    last_closed_feed: Option<BarTime>,
    in_progress_feed: Option<Candle>,
    /// Alert evaluations performed (conditions tested), for benchmarks and metrics.
    pub evaluations: u64,
}

impl SymbolBook {
    pub fn new(symbol: Symbol, feed: Timeframe, history_bars: usize) -> Self {
        let tfs = Timeframe::ALL
            .iter()
            .map(|&tf| {
                tf.is_multiple_of(feed)
                    .then(|| TfSeries::new(tf, history_bars))
            })
            .collect();
        Self {
            symbol,
            feed,
            tfs,
            values: vec![f64::NAN; PRICE_SLOTS as usize],
            free_slots: [Vec::new(), Vec::new(), Vec::new()],
            alerts: Vec::new(),
            last_closed_feed: None,
            in_progress_feed: None,
            evaluations: 0,
        }
    }

    pub fn has_data(&self) -> bool {
        self.last_closed_feed.is_some() || self.in_progress_feed.is_some()
    }

    /// Distinct live indicator instances across the symbol's timeframes.
    pub fn indicator_count(&self) -> usize {
        self.tfs
            .iter()
            .flatten()
            .map(TfSeries::live_indicators)
            .sum()
    }

    pub fn series(&self, tf: Timeframe) -> Option<&TfSeries> {
        self.tfs.get(tf.index()).and_then(Option::as_ref)
    }

    fn alloc_slots(values: &mut Vec<f64>, free: &mut [Vec<u32>; 3], width: u8) -> u32 {
        if let Some(slot) = free
            .get_mut(usize::from(width).saturating_sub(1))
            .and_then(Vec::pop)
        {
            return slot;
        }
        let start = values.len() as u32;
        values.extend(std::iter::repeat_n(f64::NAN, width as usize));
        start
    }

    fn free_slots(&mut self, slot: u32, width: u8) {
        for v in self
            .values
            .iter_mut()
            .skip(slot as usize)
            .take(width as usize)
        {
            *v = f64::NAN;
        }
        if let Some(list) = self
            .free_slots
            .get_mut(usize::from(width).saturating_sub(1))
        {
            list.push(slot);
        }
    }

    // ---- alerts ----------------------------------------------------------------------

    /// Compiles and adds an alert. Its indicators are shared with other alerts, or built and
    /// warmed from history.
    pub fn add_alert(
        &mut self,
        id: AlertId,
        def: Arc<AlertDefinition>,
        state: AlertState,
        active_from: i64,
    ) -> Result<(), EngineError> {
        for tf in def.timeframes() {
            if !tf.is_multiple_of(self.feed) {
                return Err(EngineError::Timeframe {
                    alert: id.clone(),
                    timeframe: tf,
                    feed: self.feed,
                });
            }
        }
        let mut leaves = Vec::new();
        let nodes = self.compile_nodes(&def.conditions, &mut leaves);
        let (any, nodes) = flatten(def.logic == crate::definition::Logic::Or, nodes);
        let nested = nodes.iter().any(|n| matches!(n, Node::Group { .. }));
        let mut alert = CompiledAlert {
            state,
            base: def.base_timeframe.index() as u8,
            trigger: def.trigger,
            any,
            debounce_ms: i64::from(def.debounce_bars.max(1)) * def.base_timeframe.duration_ms(),
            expires_at: def.expires_at,
            leaves: leaves.into_iter().collect(),
            tree: nested.then(|| {
                Box::new(Node::Group {
                    any,
                    children: nodes,
                })
            }),
            active_from,
            id,
            def,
        };
        self.seed_past(&mut alert);
        self.alerts.push(alert);
        Ok(())
    }

    fn compile_nodes(&mut self, nodes: &[ConditionNode], leaves: &mut Vec<Leaf>) -> Vec<Node> {
        nodes
            .iter()
            .map(|n| match n {
                ConditionNode::Group { logic, children } => {
                    let c = self.compile_nodes(children, leaves);
                    group(*logic, c)
                }
                ConditionNode::Leaf(cond) => {
                    let mut consts = Vec::new();
                    let lhs = self.operand_slot(&cond.lhs);
                    let test = CTest::compile(&cond.test, |b| self.bound(&mut consts, b));
                    let needed = cond.test.history_needed();
                    let past = (needed > 0).then(|| Past::new(needed));
                    let mut const_slots = [u32::MAX; 2];
                    for (dst, src) in const_slots.iter_mut().zip(&consts) {
                        *dst = *src;
                    }
                    leaves.push(Leaf {
                        tf: cond.timeframe.index() as u8,
                        lhs,
                        consts: const_slots,
                        test,
                        past,
                    });
                    Node::Leaf((leaves.len() - 1) as u16)
                }
            })
            .collect()
    }

    /// A test's operand; a constant gets a slot of its own, recorded in `consts`.
    fn bound(&mut self, consts: &mut Vec<u32>, b: &Bound) -> Val {
        match b {
            Bound::Value(v) => {
                let slot = Self::alloc_slots(&mut self.values, &mut self.free_slots, 1);
                if let Some(cell) = self.values.get_mut(slot as usize) {
                    *cell = *v;
                }
                consts.push(slot);
                Val(slot)
            }
            Bound::Series(o) => Val(self.operand_slot(o)),
        }
    }

    fn operand_slot(&mut self, o: &Operand) -> u32 {
        let tfi = o.timeframe.index();
        match o.series {
            Series::Price(src) => (tfi * SOURCES) as u32 + src.index() as u32,
            Series::Indicator { spec, component } => {
                let Some(Some(series)) = self.tfs.get_mut(tfi) else {
                    return u32::MAX;
                };
                let (values, free) = (&mut self.values, &mut self.free_slots);
                let (index, new) = series.acquire(&spec, |w| Self::alloc_slots(values, free, w));
                let Some(shared) = series.indicators.get(index).and_then(|s| s.as_ref()) else {
                    return u32::MAX;
                };
                if new {
                    // Only this indicator's values are new: write them, not the whole table.
                    write_components(&mut self.values, shared, series.values_of(shared));
                }
                shared.slot.saturating_add(component as u32)
            }
        }
    }

    /// Fills a new alert's look-back memory from history, so a crossing or a moving-% condition
    /// added mid-stream evaluates correctly at once: the values each operand had at the last
    /// closes of the condition's timeframe are recomputed from the stored bars. Operands on a
    /// higher timeframe than the condition's (whose past in-progress values are not stored) and
    /// closes beyond the kept history stay unknown; such a condition starts at the next close.
    fn seed_past(&self, alert: &mut CompiledAlert) {
        let def = Arc::clone(&alert.def);
        for (leaf, cond) in alert.leaves.iter_mut().zip(def.leaves()) {
            let Some(past) = leaf.past.as_mut() else {
                continue;
            };
            let Some(own) = self.series(cond.timeframe) else {
                continue;
            };
            let closes: Vec<BarTime> = own
                .history()
                .iter()
                .rev()
                .take(past.capacity())
                .map(|b| cond.timeframe.bar_close(b.open_time))
                .collect();
            if closes.is_empty() {
                continue;
            }
            self.fill_past(cond, past, &closes);
        }
    }

    /// Pushes into `past` the values the condition's operands had at `closes` (closes of its
    /// timeframe, newest first), recomputed from the stored bars. Returns `false`, leaving
    /// `past` untouched, when some operand's past cannot be recomputed.
    pub(crate) fn fill_past(&self, cond: &Condition, past: &mut Past, closes: &[BarTime]) -> bool {
        let operand = |o: &Operand| self.values_at(o, cond.timeframe, closes);
        let bound = |b: Option<Bound>| match b {
            None => Some(vec![f64::NAN; closes.len()]),
            Some(Bound::Value(v)) => Some(vec![v; closes.len()]),
            Some(Bound::Series(o)) => operand(&o),
        };
        let [rhs, upper] = cond.test.rhs_bounds();
        let (Some(a), Some(b), Some(c)) = (operand(&cond.lhs), bound(rhs), bound(upper)) else {
            return false;
        };
        // `closes` is newest first; the memory is filled oldest first.
        for i in (0..closes.len()).rev() {
            past.push([a[i], b[i], c[i]]);
        }
        true
    }

    /// The value `o` had at each of `closes` (closes of timeframe `at`), or `None` when that
    /// cannot be recomputed from the stored bars.
    pub(crate) fn values_at(
        &self,
        o: &Operand,
        at: Timeframe,
        closes: &[BarTime],
    ) -> Option<Vec<f64>> {
        if !at.is_multiple_of(o.timeframe) {
            return None;
        }
        let series = self.series(o.timeframe)?;
        let tf = o.timeframe;
        // Value after each stored bar, with its close time.
        let mut timeline: Vec<(BarTime, f64)> = Vec::with_capacity(series.history().len());
        match o.series {
            Series::Price(src) => {
                timeline.extend(
                    series
                        .history()
                        .iter()
                        .map(|b| (tf.bar_close(b.open_time), b.price(src))),
                );
            }
            Series::Indicator { spec, component } => {
                let mut ind = alert_indicators::AnyIndicator::new(&spec);
                for b in series.history() {
                    use alert_indicators::Indicator;
                    let v = ind
                        .update(b)
                        .and_then(|c| c.get(component))
                        .unwrap_or(f64::NAN);
                    timeline.push((tf.bar_close(b.open_time), v));
                }
            }
        }
        Some(
            closes
                .iter()
                .map(|t| {
                    let i = timeline.partition_point(|(end, _)| end <= t);
                    if i == 0 { f64::NAN } else { timeline[i - 1].1 }
                })
                .collect(),
        )
    }

    /// Removes an alert and releases the indicators only it read.
    pub fn remove_alert(&mut self, id: &AlertId) -> Option<CompiledAlert> {
        let i = self.alerts.iter().position(|a| &a.id == id)?;
        let alert = self.alerts.swap_remove(i);
        let mut released = Vec::new();
        for cond in alert.def.leaves() {
            for o in cond.test.operands().into_iter().chain([cond.lhs]) {
                let Series::Indicator { spec, .. } = o.series else {
                    continue;
                };
                let Some(Some(series)) = self.tfs.get_mut(o.timeframe.index()) else {
                    continue;
                };
                let Some(index) = series
                    .indicators
                    .iter()
                    .position(|s| s.as_ref().is_some_and(|s| s.spec == spec))
                else {
                    continue;
                };
                if let Some(freed) = series.release(index) {
                    released.push(freed);
                }
            }
        }
        for leaf in &alert.leaves {
            released.extend(
                leaf.consts
                    .into_iter()
                    .filter(|s| *s != u32::MAX)
                    .map(|s| (s, 1)),
            );
        }
        for (slot, width) in released {
            self.free_slots(slot, width);
        }
        Some(alert)
    }

    // ---- data ------------------------------------------------------------------------

    /// Applies a candle update of the fed timeframe and evaluates this symbol's alerts.
    pub fn on_update(
        &mut self,
        update: &CandleUpdate,
        out: &mut Vec<Event>,
    ) -> Result<(), DataError> {
        let c = update.candle;
        c.check().map_err(|e| DataError::BadCandle {
            symbol: self.symbol,
            time: c.open_time,
            reason: e.to_string(),
        })?;
        if !self.feed.is_aligned(c.open_time) {
            return Err(DataError::Misaligned {
                symbol: self.symbol,
                time: c.open_time,
                feed: self.feed,
            });
        }
        if let Some(last) = self.last_closed_feed
            && c.open_time <= last
        {
            return Err(DataError::Stale {
                symbol: self.symbol,
                time: c.open_time,
                last_closed: last,
            });
        }
        if let Some(cur) = self.in_progress_feed {
            if c.open_time < cur.open_time {
                return Err(DataError::Stale {
                    symbol: self.symbol,
                    time: c.open_time,
                    last_closed: cur.open_time,
                });
            }
            if c.open_time > cur.open_time {
                // A later bar arrived before this one's close: it closes with its last values.
                self.apply_closed(cur, out);
            }
        }
        self.close_gaps(c.open_time, out);
        if update.closed {
            self.apply_closed(c, out);
        } else {
            self.apply_in_progress(c, out);
        }
        Ok(())
    }

    /// Closes every higher-timeframe bar whose bucket ended before `t` (the data skipped its
    /// boundary), earliest first, evaluating at each close.
    fn close_gaps(&mut self, t: BarTime, out: &mut Vec<Event>) {
        loop {
            let mut earliest: Option<BarTime> = None;
            for series in self.tfs.iter().flatten() {
                if let Some(bucket) = series.open_bucket() {
                    let end = series.tf.bar_close(bucket);
                    if end <= t && series.tf != self.feed {
                        earliest = Some(earliest.map_or(end, |e: BarTime| e.min(end)));
                    }
                }
            }
            let Some(end) = earliest else { return };
            let mut closed = 0u16;
            for (i, series) in self.tfs.iter_mut().enumerate() {
                if let Some(s) = series
                    && s.tf != self.feed
                    && s.open_bucket().is_some_and(|b| s.tf.bar_close(b) == end)
                    && s.close_open_bucket()
                {
                    closed |= 1 << i;
                }
            }
            self.refresh_values();
            self.evaluate(Step { now: end, closed }, out);
        }
    }

    fn apply_closed(&mut self, c: Candle, out: &mut Vec<Event>) {
        let feed = self.feed;
        let fed_close = c.open_time.plus_millis(feed.duration_ms());
        let mut closed = 0u16;
        for (i, series) in self.tfs.iter_mut().enumerate() {
            let Some(s) = series else { continue };
            if s.tf == feed {
                s.close_feed_bar(c);
                closed |= 1 << i;
            } else {
                let bucket = s.tf.bar_open(c.open_time);
                if s.absorb_closed(&c, bucket, s.tf.bar_close(c.open_time) == fed_close) {
                    closed |= 1 << i;
                }
            }
        }
        self.last_closed_feed = Some(c.open_time);
        self.in_progress_feed = None;
        self.refresh_values();
        self.evaluate(
            Step {
                now: fed_close,
                closed,
            },
            out,
        );
    }

    fn apply_in_progress(&mut self, c: Candle, out: &mut Vec<Event>) {
        let feed = self.feed;
        for series in self.tfs.iter_mut().flatten() {
            if series.tf == feed {
                series.feed_in_progress(c);
            } else {
                series.absorb_in_progress(&c, series.tf.bar_open(c.open_time));
            }
        }
        self.in_progress_feed = Some(c);
        self.refresh_values();
        self.evaluate(
            Step {
                now: c.open_time.plus_millis(feed.duration_ms()),
                closed: 0,
            },
            out,
        );
    }

    /// Recomputes the value table: prices of every timeframe's current bar and every shared
    /// indicator's current values (committed at a close, peeked in progress).
    fn refresh_values(&mut self) {
        for (i, series) in self.tfs.iter().enumerate() {
            let Some(s) = series else { continue };
            let base = i * SOURCES;
            match s.current {
                Some(bar) => {
                    for (k, src) in PriceSource::ALL.iter().enumerate() {
                        self.values[base + k] = bar.price(*src);
                    }
                }
                None => self.values[base..base + SOURCES].fill(f64::NAN),
            }
            for shared in s.indicators.iter().flatten() {
                write_components(&mut self.values, shared, s.values_of(shared));
            }
        }
    }

    fn evaluate(&mut self, step: Step, out: &mut Vec<Event>) {
        let values = &self.values;
        let bar_times: [BarTime; TFS] =
            std::array::from_fn(|i| Timeframe::ALL[i].bar_open(step.now.plus_millis(-1)));
        for alert in &mut self.alerts {
            let base_closed = step.closed & (1 << alert.base) != 0;
            let bar_time = bar_times[alert.base as usize];
            let live = !alert.state.spent && !alert.state.expired;
            if live && alert.expires_at.is_some_and(|e| step.now >= e) {
                alert.state.expired = true;
                out.push(Event::Expired {
                    alert_id: alert.id.clone(),
                    at: step.now,
                });
            }
            let eligible = step.now.millis() >= alert.active_from
                && !alert.state.spent
                && !alert.state.expired
                && (alert.trigger != TriggerMode::OncePerBarClose || base_closed)
                && alert
                    .state
                    .last_fired_bar
                    .is_none_or(|last| bar_time.millis() >= last.millis() + alert.debounce_ms);
            if eligible {
                self.evaluations += 1;
            }
            if eligible && alert.holds(values) {
                alert.state.last_fired_bar = Some(bar_time);
                if alert.trigger == TriggerMode::Once {
                    alert.state.spent = true;
                }
                let base_bar = self
                    .tfs
                    .get(alert.base as usize)
                    .and_then(Option::as_ref)
                    .and_then(|s| s.current);
                out.push(Event::Triggered(Box::new(snapshot(
                    &self.symbol,
                    alert,
                    values,
                    bar_time,
                    step.now,
                    base_bar,
                ))));
            }
            if step.closed != 0 {
                for leaf in &mut alert.leaves {
                    if step.closed & (1 << leaf.tf) != 0 {
                        let recorded = leaf.operands(values);
                        if let Some(past) = leaf.past.as_mut() {
                            past.push(recorded);
                        }
                    }
                }
            }
        }
    }
}

/// Writes an indicator's components into its value-table slots (NaN: no value).
#[inline]
fn write_components(values: &mut [f64], shared: &crate::series::Shared, comps: Components) {
    let slots = values
        .iter_mut()
        .skip(shared.slot as usize)
        .take(shared.width as usize);
    for (k, v) in slots.enumerate() {
        *v = comps.get(k).unwrap_or(f64::NAN);
    }
}

/// Simplifies a group without changing its meaning: a group whose only child is a group
/// becomes that child, and a child group with its parent's logic is merged into the parent —
/// so most alerts evaluate as one flat AND or OR of their leaves.
fn flatten(any: bool, mut children: Vec<Node>) -> (bool, Vec<Node>) {
    if children.len() == 1
        && let Some(Node::Group {
            any: inner,
            children: grand,
        }) = children.pop_if(|n| matches!(n, Node::Group { .. }))
    {
        return flatten(inner, grand);
    }
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        match child {
            Node::Group {
                any: inner,
                children: grand,
            } => {
                let (inner, grand) = flatten(inner, grand);
                if inner == any || grand.len() == 1 {
                    out.extend(grand);
                } else {
                    out.push(Node::Group {
                        any: inner,
                        children: grand,
                    });
                }
            }
            leaf => out.push(leaf),
        }
    }
    (any, out)
}

fn snapshot(
    symbol: &Symbol,
    alert: &CompiledAlert,
    values: &[f64],
    bar_time: BarTime,
    now: BarTime,
    bar: Option<Candle>,
) -> Trigger {
    let finite = |v: f64| v.is_finite().then_some(v);
    let leaves = alert.def.leaves();
    let conditions = alert
        .leaves
        .iter()
        .zip(leaves)
        .map(|(leaf, cond)| {
            let [a, b, c] = leaf.operands(values);
            (
                cond.id.clone(),
                ConditionSnapshot {
                    value: finite(a),
                    rhs: leaf.past_rhs().or(finite(b)),
                    rhs2: finite(c),
                    held: leaf.holds(values),
                },
            )
        })
        .collect();
    let bar = bar.map(|b| BarSnapshot {
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume: b.volume,
    });
    Trigger {
        alert_id: alert.id.clone(),
        user_id: alert.def.user_id.clone(),
        symbol: *symbol,
        timeframe: alert.base_tf(),
        bar_time,
        fired_at: now,
        conditions,
        bar,
        definition: Arc::clone(&alert.def),
    }
}
