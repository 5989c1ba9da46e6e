//! Alerts compiled against a symbol's value table: every operand becomes a slot index, every
//! condition a small test over slots, so evaluating an alert is a handful of loads and
//! compares.

use std::collections::VecDeque;
use std::sync::Arc;

use alert_core::{BarTime, Timeframe};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::definition::{AlertDefinition, AlertId, Bound, Direction, Logic, Test, TriggerMode};

/// A value a test reads: a slot of the symbol's value table (NaN = no value yet). Constants
/// of the alert's conditions live in the table too, so a test is a few loads from one small
/// array and a compiled condition stays small.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Val(pub u32);

impl Val {
    #[inline]
    pub fn get(self, values: &[f64]) -> f64 {
        values.get(self.0 as usize).copied().unwrap_or(f64::NAN)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrossKind {
    Above,
    Below,
    Either,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    Entering,
    Exiting,
    Inside,
    Outside,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CTest {
    Cmp(Cmp, Val),
    Equals(Val, f64),
    Cross(CrossKind, Val),
    Channel(ChannelKind, Val, Val),
    Divergence(Val, Direction),
    Convergence(Val),
    Moving { up: bool, pct: f64 },
}

impl CTest {
    /// The compiled form of `test`; `slot` gives each right-hand bound its value slot, in the
    /// order of [`Test::rhs_bounds`].
    pub(crate) fn compile(test: &Test, mut slot: impl FnMut(&Bound) -> Val) -> Self {
        match test {
            Test::Greater(b) => CTest::Cmp(Cmp::Gt, slot(b)),
            Test::Less(b) => CTest::Cmp(Cmp::Lt, slot(b)),
            Test::GreaterOrEqual(b) => CTest::Cmp(Cmp::Ge, slot(b)),
            Test::LessOrEqual(b) => CTest::Cmp(Cmp::Le, slot(b)),
            Test::Equals { rhs, tolerance } => CTest::Equals(slot(rhs), *tolerance),
            Test::CrossesAbove(b) => CTest::Cross(CrossKind::Above, slot(b)),
            Test::CrossesBelow(b) => CTest::Cross(CrossKind::Below, slot(b)),
            Test::Crosses(b) => CTest::Cross(CrossKind::Either, slot(b)),
            Test::Divergence {
                other, direction, ..
            } => CTest::Divergence(slot(&Bound::Series(*other)), *direction),
            Test::Convergence { other, .. } => CTest::Convergence(slot(&Bound::Series(*other))),
            Test::EnteringChannel { lower, upper } => {
                CTest::Channel(ChannelKind::Entering, slot(lower), slot(upper))
            }
            Test::ExitingChannel { lower, upper } => {
                CTest::Channel(ChannelKind::Exiting, slot(lower), slot(upper))
            }
            Test::InsideChannel { lower, upper } => {
                CTest::Channel(ChannelKind::Inside, slot(lower), slot(upper))
            }
            Test::OutsideChannel { lower, upper } => {
                CTest::Channel(ChannelKind::Outside, slot(lower), slot(upper))
            }
            Test::MovingUpPct { pct, .. } => CTest::Moving {
                up: true,
                pct: *pct,
            },
            Test::MovingDownPct { pct, .. } => CTest::Moving {
                up: false,
                pct: *pct,
            },
        }
    }
}

/// Values of a condition's operands at the last closes of its timeframe. Crossings and
/// channels need only the last close, kept inline (no allocation); divergence and moving %
/// keep a ring of `cap` closes.
#[derive(Clone, Debug)]
#[allow(clippy::box_collection)]
pub(crate) enum Past {
    One(Option<[f64; 3]>),
    Ring {
        cap: usize,
        buf: Box<VecDeque<[f64; 3]>>,
    },
}

impl Past {
    pub fn new(cap: usize) -> Self {
        if cap <= 1 {
            Past::One(None)
        } else {
            Past::Ring {
                cap,
                buf: Box::new(VecDeque::with_capacity(cap)),
            }
        }
    }

    pub fn capacity(&self) -> usize {
        match self {
            Past::One(_) => 1,
            Past::Ring { cap, .. } => *cap,
        }
    }

    pub fn push(&mut self, v: [f64; 3]) {
        match self {
            Past::One(slot) => *slot = Some(v),
            Past::Ring { cap, buf } => {
                if buf.len() == *cap {
                    buf.pop_front();
                }
                buf.push_back(v);
            }
        }
    }

    /// The values `cap` closes ago, once that many are recorded.
    #[inline]
    pub fn oldest_full(&self) -> Option<[f64; 3]> {
        match self {
            Past::One(slot) => *slot,
            Past::Ring { cap, buf } => (buf.len() == *cap).then(|| buf.front().copied()).flatten(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Leaf {
    /// Index of the condition's timeframe in `Timeframe::ALL`.
    pub tf: u8,
    pub lhs: u32,
    /// Value-table slots holding this condition's constants (`u32::MAX`: unused), freed with
    /// the alert.
    pub consts: [u32; 2],
    pub test: CTest,
    pub past: Option<Past>,
}

impl Leaf {
    /// The operand values recorded at a close, and shown in a snapshot: (lhs, rhs, rhs2).
    #[inline]
    pub fn operands(&self, values: &[f64]) -> [f64; 3] {
        let a = Val(self.lhs).get(values);
        match self.test {
            CTest::Cmp(_, b)
            | CTest::Equals(b, _)
            | CTest::Cross(_, b)
            | CTest::Divergence(b, _)
            | CTest::Convergence(b) => [a, b.get(values), f64::NAN],
            CTest::Channel(_, lo, hi) => [a, lo.get(values), hi.get(values)],
            CTest::Moving { .. } => [a, f64::NAN, f64::NAN],
        }
    }

    /// Whether the condition holds on the current values.
    #[inline]
    pub fn holds(&self, values: &[f64]) -> bool {
        let [a, b, c] = self.operands(values);
        let prev = || self.past.as_ref().and_then(|p| p.oldest_full());
        match self.test {
            CTest::Cmp(op, _) => match op {
                Cmp::Gt => a > b,
                Cmp::Lt => a < b,
                Cmp::Ge => a >= b,
                Cmp::Le => a <= b,
            },
            CTest::Equals(_, tol) => a == b || (a - b).abs() <= tol * a.abs().max(b.abs()),
            CTest::Cross(kind, _) => {
                let Some([pa, pb, _]) = prev() else {
                    return false;
                };
                let up = a > b && pa <= pb;
                let down = a < b && pa >= pb;
                match kind {
                    CrossKind::Above => up,
                    CrossKind::Below => down,
                    CrossKind::Either => up || down,
                }
            }
            CTest::Channel(kind, _, _) => {
                let inside = |x: f64, lo: f64, hi: f64| lo <= x && x <= hi;
                let outside = |x: f64, lo: f64, hi: f64| x < lo || x > hi;
                match kind {
                    ChannelKind::Inside => inside(a, b, c),
                    ChannelKind::Outside => outside(a, b, c),
                    ChannelKind::Entering => {
                        prev().is_some_and(|[pa, pl, ph]| inside(a, b, c) && outside(pa, pl, ph))
                    }
                    ChannelKind::Exiting => {
                        prev().is_some_and(|[pa, pl, ph]| outside(a, b, c) && inside(pa, pl, ph))
                    }
                }
            }
            CTest::Divergence(_, direction) => prev().is_some_and(|[pa, pb, _]| {
                let (da, dp) = (a - pa, b - pb);
                let bullish = dp < 0.0 && da > 0.0;
                let bearish = dp > 0.0 && da < 0.0;
                match direction {
                    Direction::Any => bullish || bearish,
                    Direction::Bullish => bullish,
                    Direction::Bearish => bearish,
                }
            }),
            CTest::Convergence(_) => prev().is_some_and(|[pa, pb, _]| {
                let (da, dp) = (a - pa, b - pb);
                (da > 0.0 && dp > 0.0) || (da < 0.0 && dp < 0.0)
            }),
            CTest::Moving { up, pct } => prev().is_some_and(|[old, _, _]| {
                if old == 0.0 || !old.is_finite() {
                    return false;
                }
                let change = (a - old) / old.abs() * 100.0;
                if up { change >= pct } else { -change >= pct }
            }),
        }
    }

    /// The value shown as `rhs` for tests that look back (the past value for moving %).
    pub fn past_rhs(&self) -> Option<f64> {
        match self.test {
            CTest::Moving { .. } => self
                .past
                .as_ref()
                .and_then(|p| p.oldest_full())
                .map(|v| v[0]),
            _ => None,
        }
    }
}

/// A nested condition tree over leaf indices (alerts whose conditions are one flat group need
/// none: their leaves are combined directly).
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Leaf(u16),
    Group { any: bool, children: Vec<Node> },
}

impl Node {
    #[inline]
    pub fn holds(&self, leaves: &[Leaf], values: &[f64]) -> bool {
        match self {
            Node::Leaf(i) => leaves.get(*i as usize).is_some_and(|l| l.holds(values)),
            Node::Group {
                any: true,
                children,
            } => children.iter().any(|c| c.holds(leaves, values)),
            Node::Group {
                any: false,
                children,
            } => children.iter().all(|c| c.holds(leaves, values)),
        }
    }
}

pub(crate) fn group(logic: Logic, children: Vec<Node>) -> Node {
    Node::Group {
        any: logic == Logic::Or,
        children,
    }
}

/// What the engine remembers about an alert across restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// Open time of the base bar it last fired on.
    pub last_fired_bar: Option<BarTime>,
    /// A `once` alert that fired: it never fires again.
    #[serde(default)]
    pub spent: bool,
    /// Past its `expires_at`.
    #[serde(default)]
    pub expired: bool,
}

/// An alert ready to evaluate on its symbol. Hot fields first; the leaves of typical alerts
/// (one or two conditions) are stored inline, so evaluating an alert reads one contiguous
/// record.
#[derive(Clone, Debug)]
pub(crate) struct CompiledAlert {
    pub state: AlertState,
    pub base: u8,
    pub trigger: TriggerMode,
    /// The root group's logic: any (OR) or all (AND) of its children.
    pub any: bool,
    pub debounce_ms: i64,
    pub expires_at: Option<BarTime>,
    pub leaves: SmallVec<[Leaf; 1]>,
    /// Set only when the root group has nested groups.
    pub tree: Option<Box<Node>>,
    /// Evaluation points before this time (ms) are not evaluated: data the alert predates.
    pub active_from: i64,
    pub id: AlertId,
    pub def: Arc<AlertDefinition>,
}

impl CompiledAlert {
    /// The alert's base timeframe.
    pub fn base_tf(&self) -> Timeframe {
        Timeframe::ALL[self.base as usize]
    }

    #[inline]
    pub fn holds(&self, values: &[f64]) -> bool {
        match &self.tree {
            Some(tree) => tree.holds(&self.leaves, values),
            None if self.any => self.leaves.iter().any(|l| l.holds(values)),
            None => self.leaves.iter().all(|l| l.holds(values)),
        }
    }
}
