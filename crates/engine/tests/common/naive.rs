//! A naive reference evaluator: at every evaluation point it rebuilds every bar of every
//! timeframe from all the candles fed so far and recomputes every indicator from scratch —
//! no resampling state, no shared indicators, no recorded past values. It implements
//! DESIGN.md §4 directly, so the engine must agree with it exactly.

use alert_core::{BarTime, Candle, Timeframe};
use alert_engine::{
    AlertDefinition, AlertId, Bound, ConditionNode, Direction, Logic, Operand, Series, Test,
    TriggerMode,
};
use alert_indicators::{AnyIndicator, Indicator};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fire {
    pub alert: String,
    pub bar_time: i64,
    pub fired_at: i64,
}

struct NaiveAlert {
    id: AlertId,
    def: AlertDefinition,
    last_fired: Option<BarTime>,
    spent: bool,
    expired: bool,
}

pub struct Naive {
    feed: Timeframe,
    alerts: Vec<NaiveAlert>,
    closed: Vec<Candle>,
    in_progress: Option<Candle>,
    /// Buckets ending at or before this time are closed.
    horizon: i64,
}

/// The data as of one evaluation point.
#[derive(Clone, Copy)]
struct View<'a> {
    candles: &'a [Candle],
    extra: Option<Candle>,
    horizon: i64,
}

impl<'a> View<'a> {
    /// Bars of `tf`, each with whether it is closed.
    fn bars(&self, tf: Timeframe) -> Vec<(Candle, bool)> {
        let mut out: Vec<(Candle, bool)> = Vec::new();
        for c in self.candles.iter().chain(self.extra.as_ref()) {
            let bucket = tf.bar_open(c.open_time);
            match out.last_mut() {
                Some((b, _)) if b.open_time == bucket => {
                    b.high = b.high.max(c.high);
                    b.low = b.low.min(c.low);
                    b.close = c.close;
                    b.volume += c.volume;
                }
                _ => {
                    let mut b = *c;
                    b.open_time = bucket;
                    out.push((b, false));
                }
            }
        }
        for (b, closed) in &mut out {
            *closed = tf.bar_close(b.open_time).millis() <= self.horizon;
        }
        out
    }

    fn value(&self, o: &Operand) -> f64 {
        let bars = self.bars(o.timeframe);
        let Some((last, _)) = bars.last() else {
            return f64::NAN;
        };
        match o.series {
            Series::Price(src) => last.price(src),
            Series::Indicator { spec, component } => {
                let mut ind = AnyIndicator::new(&spec);
                let mut v = None;
                for (b, _) in &bars {
                    v = ind.update(b);
                }
                v.and_then(|c| c.get(component)).unwrap_or(f64::NAN)
            }
        }
    }
}

fn bound(view: &View<'_>, b: &Bound) -> f64 {
    match b {
        Bound::Value(v) => *v,
        Bound::Series(o) => view.value(o),
    }
}

impl Naive {
    pub fn new(feed: Timeframe) -> Self {
        Self {
            feed,
            alerts: Vec::new(),
            closed: Vec::new(),
            in_progress: None,
            horizon: i64::MIN,
        }
    }

    pub fn add(&mut self, id: AlertId, def: AlertDefinition) {
        self.alerts.push(NaiveAlert {
            id,
            def,
            last_fired: None,
            spent: false,
            expired: false,
        });
    }

    /// Close times of `tf`'s bars that closed before `now`, newest first.
    fn past_closes(&self, tf: Timeframe, now: i64, n: usize) -> Vec<i64> {
        let view = View {
            candles: &self.closed,
            extra: None,
            horizon: self.horizon,
        };
        let mut ends: Vec<i64> = view
            .bars(tf)
            .into_iter()
            .filter(|(_, closed)| *closed)
            .map(|(b, _)| tf.bar_close(b.open_time).millis())
            .filter(|&e| e < now)
            .collect();
        ends.reverse();
        ends.truncate(n);
        ends
    }

    fn as_of(&self, t: i64) -> View<'_> {
        let upto = self
            .closed
            .iter()
            .take_while(|c| c.open_time.millis() + self.feed.duration_ms() <= t)
            .count();
        View {
            candles: &self.closed[..upto],
            extra: None,
            horizon: t,
        }
    }

    fn holds(&self, leaf: &alert_engine::Condition, view: &View<'_>, now: i64) -> bool {
        let a = view.value(&leaf.lhs);
        let need = leaf.test.history_needed();
        let past = || -> Option<View<'_>> {
            let closes = self.past_closes(leaf.timeframe, now, need);
            (closes.len() == need).then(|| self.as_of(closes[need - 1]))
        };
        let inside = |x: f64, lo: f64, hi: f64| lo <= x && x <= hi;
        let outside = |x: f64, lo: f64, hi: f64| x < lo || x > hi;
        match &leaf.test {
            Test::Greater(b) => a > bound(view, b),
            Test::Less(b) => a < bound(view, b),
            Test::GreaterOrEqual(b) => a >= bound(view, b),
            Test::LessOrEqual(b) => a <= bound(view, b),
            Test::Equals { rhs, tolerance } => {
                let b = bound(view, rhs);
                a == b || (a - b).abs() <= tolerance * a.abs().max(b.abs())
            }
            Test::CrossesAbove(b) | Test::CrossesBelow(b) | Test::Crosses(b) => {
                let Some(p) = past() else { return false };
                let (bn, pa, pb) = (bound(view, b), p.value(&leaf.lhs), bound(&p, b));
                let up = a > bn && pa <= pb;
                let down = a < bn && pa >= pb;
                match leaf.test {
                    Test::CrossesAbove(_) => up,
                    Test::CrossesBelow(_) => down,
                    _ => up || down,
                }
            }
            Test::InsideChannel { lower, upper } => {
                inside(a, bound(view, lower), bound(view, upper))
            }
            Test::OutsideChannel { lower, upper } => {
                outside(a, bound(view, lower), bound(view, upper))
            }
            Test::EnteringChannel { lower, upper } | Test::ExitingChannel { lower, upper } => {
                let Some(p) = past() else { return false };
                let now_in = inside(a, bound(view, lower), bound(view, upper));
                let now_out = outside(a, bound(view, lower), bound(view, upper));
                let pa = p.value(&leaf.lhs);
                let was_in = inside(pa, bound(&p, lower), bound(&p, upper));
                let was_out = outside(pa, bound(&p, lower), bound(&p, upper));
                if matches!(leaf.test, Test::EnteringChannel { .. }) {
                    now_in && was_out
                } else {
                    now_out && was_in
                }
            }
            Test::Divergence { other, .. } | Test::Convergence { other, .. } => {
                let Some(p) = past() else { return false };
                let da = a - p.value(&leaf.lhs);
                let dp = view.value(other) - p.value(other);
                match leaf.test {
                    Test::Divergence { direction, .. } => {
                        let bullish = dp < 0.0 && da > 0.0;
                        let bearish = dp > 0.0 && da < 0.0;
                        match direction {
                            Direction::Any => bullish || bearish,
                            Direction::Bullish => bullish,
                            Direction::Bearish => bearish,
                        }
                    }
                    _ => (da > 0.0 && dp > 0.0) || (da < 0.0 && dp < 0.0),
                }
            }
            Test::MovingUpPct { pct, .. } | Test::MovingDownPct { pct, .. } => {
                let Some(p) = past() else { return false };
                let old = p.value(&leaf.lhs);
                if old == 0.0 || !old.is_finite() {
                    return false;
                }
                let change = (a - old) / old.abs() * 100.0;
                if matches!(leaf.test, Test::MovingUpPct { .. }) {
                    change >= *pct
                } else {
                    -change >= *pct
                }
            }
        }
    }

    fn node(&self, n: &ConditionNode, view: &View<'_>, now: i64) -> bool {
        match n {
            ConditionNode::Leaf(c) => self.holds(c, view, now),
            ConditionNode::Group { logic, children } => self.group(*logic, children, view, now),
        }
    }

    fn group(&self, logic: Logic, children: &[ConditionNode], view: &View<'_>, now: i64) -> bool {
        match logic {
            Logic::And => children.iter().all(|c| self.node(c, view, now)),
            Logic::Or => children.iter().any(|c| self.node(c, view, now)),
        }
    }

    fn step(&mut self, now: i64, base_closed: &dyn Fn(Timeframe) -> bool, out: &mut Vec<Fire>) {
        let view = View {
            candles: &self.closed,
            extra: self.in_progress,
            horizon: self.horizon,
        };
        let mut fires = Vec::new();
        for (i, a) in self.alerts.iter().enumerate() {
            let base = a.def.base_timeframe;
            let bar_time = base.bar_open(BarTime::from_millis(now - 1));
            let expired = a.expired || a.def.expires_at.is_some_and(|e| now >= e.millis());
            let eligible = !a.spent
                && !expired
                && (a.def.trigger != TriggerMode::OncePerBarClose || base_closed(base))
                && a.last_fired.is_none_or(|l| {
                    bar_time.millis()
                        >= l.millis() + i64::from(a.def.debounce_bars) * base.duration_ms()
                });
            let fires_now = eligible && self.group(a.def.logic, &a.def.conditions, &view, now);
            fires.push((i, expired, fires_now.then_some(bar_time)));
        }
        for (i, expired, fired) in fires {
            let a = &mut self.alerts[i];
            a.expired = expired;
            if let Some(bar_time) = fired {
                a.last_fired = Some(bar_time);
                a.spent |= a.def.trigger == TriggerMode::Once;
                out.push(Fire {
                    alert: a.id.to_string(),
                    bar_time: bar_time.millis(),
                    fired_at: now,
                });
            }
        }
    }

    fn close_candle(&mut self, c: Candle, out: &mut Vec<Fire>) {
        let end = c.open_time.millis() + self.feed.duration_ms();
        self.closed.push(c);
        self.in_progress = None;
        self.horizon = end;
        self.step(end, &|tf| tf.bar_close(c.open_time).millis() == end, out);
    }

    pub fn on_update(&mut self, c: Candle, closed: bool, out: &mut Vec<Fire>) {
        if let Some(cur) = self.in_progress
            && cur.open_time < c.open_time
        {
            self.close_candle(cur, out);
        }
        // Higher-timeframe buckets whose end the data skipped close first, earliest first.
        loop {
            let view = View {
                candles: &self.closed,
                extra: None,
                horizon: self.horizon,
            };
            let ends: Vec<i64> = Timeframe::ALL
                .iter()
                .filter(|tf| **tf != self.feed && tf.is_multiple_of(self.feed))
                .filter_map(|tf| {
                    view.bars(*tf)
                        .last()
                        .filter(|(_, closed)| !closed)
                        .map(|(b, _)| tf.bar_close(b.open_time).millis())
                })
                .filter(|&e| e <= c.open_time.millis())
                .collect();
            let Some(&end) = ends.iter().min() else { break };
            let last_bucket_end = |tf: Timeframe| {
                view.bars(tf)
                    .last()
                    .map(|(b, _)| tf.bar_close(b.open_time).millis())
            };
            let closing: Vec<Timeframe> = Timeframe::ALL
                .iter()
                .copied()
                .filter(|tf| *tf != self.feed && last_bucket_end(*tf) == Some(end))
                .collect();
            self.horizon = end;
            self.step(end, &|tf| closing.contains(&tf), out);
        }
        if closed {
            self.close_candle(c, out);
        } else {
            self.in_progress = Some(c);
            self.horizon = c.open_time.millis();
            let end = c.open_time.millis() + self.feed.duration_ms();
            self.step(end, &|_| false, out);
        }
    }
}
