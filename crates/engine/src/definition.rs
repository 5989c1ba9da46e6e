//! Typed, validated alert definitions: what the alert JSON of DESIGN.md §3 parses into.
//!
//! A value of these types is well formed by construction (parse, don't validate): the
//! engine never re-checks them. Parsing lives in [`crate::parse`].

use std::fmt;

use alert_core::{BarTime, PriceSource, Symbol, Timeframe};
use alert_indicators::IndicatorSpec;
use serde::{Deserialize, Serialize};

use crate::template::Template;

/// An alert's identifier: the store's uuid, or any caller-chosen id (seed alerts use ids
/// like `bot_42_entry`). 1 to 128 characters of letters, digits and `_ - . :`. Cheap to
/// clone (shared).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AlertId(std::sync::Arc<str>);

impl AlertId {
    pub fn new(s: &str) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if s.is_empty() || s.len() > 128 || !s.chars().all(ok_char) {
            return Err(format!(
                "{s:?}: expected 1 to 128 letters, digits, '_', '-', '.' or ':'"
            ));
        }
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AlertId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<AlertId> for String {
    fn from(id: AlertId) -> String {
        id.0.as_ref().to_owned()
    }
}

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How conditions in a group combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Logic {
    And,
    Or,
}

/// When an alert may fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    /// May fire intrabar, at most once per base-timeframe bar (the default).
    #[default]
    OncePerBar,
    /// Evaluated only when the base bar closes.
    OncePerBarClose,
    /// Fires once; then the alert's status becomes `triggered`.
    Once,
}

/// A number a condition reads: a price or volume of a bar, or an indicator component, on a
/// timeframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Operand {
    pub timeframe: Timeframe,
    pub series: Series,
}

/// What an [`Operand`] reads on its timeframe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Series {
    /// A bar's price (or `PriceSource::Volume` for volume).
    Price(PriceSource),
    /// Component `component` (an index into `spec.kind().components()`) of an indicator.
    Indicator {
        spec: IndicatorSpec,
        component: usize,
    },
}

/// The right-hand side of a comparison: a constant or another series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Value(f64),
    Series(Operand),
}

/// Which divergences count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Either direction.
    #[default]
    Any,
    /// Price down, indicator up.
    Bullish,
    /// Price up, indicator down.
    Bearish,
}

/// What a condition tests, with the operands it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Test {
    Greater(Bound),
    Less(Bound),
    GreaterOrEqual(Bound),
    LessOrEqual(Bound),
    /// `|a − b| <= tolerance · max(|a|, |b|)`.
    Equals {
        rhs: Bound,
        tolerance: f64,
    },
    CrossesAbove(Bound),
    CrossesBelow(Bound),
    /// Either crossing.
    Crosses(Bound),
    /// Δa and Δother over `lookback` bars have strictly opposite signs.
    Divergence {
        other: Operand,
        lookback: usize,
        direction: Direction,
    },
    /// Δa and Δother over `lookback` bars have strictly the same sign.
    Convergence {
        other: Operand,
        lookback: usize,
    },
    /// `lower <= a <= upper` now and not at the previous bar.
    EnteringChannel {
        lower: Bound,
        upper: Bound,
    },
    /// Outside now and inside at the previous bar.
    ExitingChannel {
        lower: Bound,
        upper: Bound,
    },
    /// `lower <= a <= upper` (the seeds' `between` too).
    InsideChannel {
        lower: Bound,
        upper: Bound,
    },
    /// `a < lower || a > upper`.
    OutsideChannel {
        lower: Bound,
        upper: Bound,
    },
    /// `(a[t] − a[t−bars]) / |a[t−bars]| · 100 >= pct`.
    MovingUpPct {
        pct: f64,
        bars: usize,
    },
    /// `(a[t−bars] − a[t]) / |a[t−bars]| · 100 >= pct`.
    MovingDownPct {
        pct: f64,
        bars: usize,
    },
}

/// One leaf condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// Unique within the alert; templates read `{{<id>.value}}`. Defaults to `c1`, `c2`, …
    /// in document order.
    pub id: String,
    /// The timeframe whose bars define "previous bar" for crossings, channels, divergence
    /// and moving %: the condition's `timeframe` ("same" = the alert's base timeframe).
    pub timeframe: Timeframe,
    pub lhs: Operand,
    pub test: Test,
}

/// A condition or a group of them.
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionNode {
    Leaf(Condition),
    Group {
        logic: Logic,
        children: Vec<ConditionNode>,
    },
}

/// Deepest nesting of groups accepted (the root group is depth 1).
pub const MAX_GROUP_DEPTH: usize = 4;
/// Most leaf conditions in one alert.
pub const MAX_CONDITIONS: usize = 32;

/// What a fired alert does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// An in-app notification.
    Notify {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// A signed webhook.
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        #[serde(default)]
        body: WebhookBody,
    },
    /// The seeds' generic bot action.
    Bot { bot_id: String },
    /// A DCA bot's order.
    BotTrigger {
        bot_id: String,
        action_type: BotActionType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dca_index: Option<u32>,
    },
}

/// What a webhook's body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookBody {
    /// The JSON envelope with alert, snapshot and message.
    #[default]
    Envelope,
    /// The rendered message alone (TradingView-style).
    Message,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotActionType {
    ExecuteEntry,
    ExecuteDca,
    TakeProfit,
    StopLoss,
}

/// A validated alert.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertDefinition {
    pub id: Option<AlertId>,
    /// The owner, when the JSON names one (stored alerts do).
    pub user_id: Option<String>,
    pub name: String,
    pub symbol: Symbol,
    pub base_timeframe: Timeframe,
    /// The root group (a single condition is a group of one).
    pub logic: Logic,
    pub conditions: Vec<ConditionNode>,
    pub trigger: TriggerMode,
    /// At least 1: after a fire on base bar t, the next may come on bar t + N at the earliest.
    pub debounce_bars: u32,
    pub message: Option<Template>,
    pub expires_at: Option<BarTime>,
    /// Data before this time is not evaluated (on top of the engine's own `active_from`).
    pub not_before: Option<BarTime>,
    pub actions: Vec<Action>,
}

impl AlertDefinition {
    /// Every leaf condition, in document order.
    pub fn leaves(&self) -> Vec<&Condition> {
        fn walk<'a>(nodes: &'a [ConditionNode], out: &mut Vec<&'a Condition>) {
            for n in nodes {
                match n {
                    ConditionNode::Leaf(c) => out.push(c),
                    ConditionNode::Group { children, .. } => walk(children, out),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.conditions, &mut out);
        out
    }

    /// Every timeframe any operand reads.
    pub fn timeframes(&self) -> Vec<Timeframe> {
        let mut tfs = vec![self.base_timeframe];
        for c in self.leaves() {
            tfs.push(c.timeframe);
            tfs.extend(
                c.test
                    .operands()
                    .into_iter()
                    .chain([c.lhs])
                    .map(|o| o.timeframe),
            );
        }
        tfs.sort();
        tfs.dedup();
        tfs
    }
}

impl Test {
    /// The right-hand bounds, in value-slot order: the right-hand side (the lower bound of a
    /// channel; the other series of a divergence), then a channel's upper bound.
    pub fn rhs_bounds(&self) -> [Option<Bound>; 2] {
        match self {
            Test::Greater(x)
            | Test::Less(x)
            | Test::GreaterOrEqual(x)
            | Test::LessOrEqual(x)
            | Test::CrossesAbove(x)
            | Test::CrossesBelow(x)
            | Test::Crosses(x)
            | Test::Equals { rhs: x, .. } => [Some(*x), None],
            Test::Divergence { other, .. } | Test::Convergence { other, .. } => {
                [Some(Bound::Series(*other)), None]
            }
            Test::EnteringChannel { lower, upper }
            | Test::ExitingChannel { lower, upper }
            | Test::InsideChannel { lower, upper }
            | Test::OutsideChannel { lower, upper } => [Some(*lower), Some(*upper)],
            Test::MovingUpPct { .. } | Test::MovingDownPct { .. } => [None, None],
        }
    }

    /// The series operands besides the left-hand side.
    pub fn operands(&self) -> Vec<Operand> {
        self.rhs_bounds()
            .into_iter()
            .filter_map(|b| match b? {
                Bound::Series(o) => Some(o),
                Bound::Value(_) => None,
            })
            .collect()
    }

    /// How many past closes of the condition's timeframe the test looks back at (0 = none).
    pub fn history_needed(&self) -> usize {
        match self {
            Test::CrossesAbove(_)
            | Test::CrossesBelow(_)
            | Test::Crosses(_)
            | Test::EnteringChannel { .. }
            | Test::ExitingChannel { .. } => 1,
            Test::Divergence { lookback, .. } | Test::Convergence { lookback, .. } => *lookback,
            Test::MovingUpPct { bars, .. } | Test::MovingDownPct { bars, .. } => *bars,
            _ => 0,
        }
    }
}
