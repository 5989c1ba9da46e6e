//! What the engine returns: triggers with their snapshot, and lifecycle events.

use std::collections::BTreeMap;
use std::sync::Arc;

use alert_core::{BarTime, Symbol, Timeframe};
use serde::Serialize;

use crate::definition::{AlertDefinition, AlertId};

/// Something the engine decided while processing an update.
#[derive(Clone, Debug)]
pub enum Event {
    /// An alert fired.
    Triggered(Box<Trigger>),
    /// An alert passed its `expires_at` (the data's time reached it); it no longer evaluates.
    Expired { alert_id: AlertId, at: BarTime },
}

/// An alert fired: identified by (alert id, base bar open time).
#[derive(Clone, Debug, Serialize)]
pub struct Trigger {
    pub alert_id: AlertId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub symbol: Symbol,
    /// The alert's base timeframe.
    pub timeframe: Timeframe,
    /// Open time of the base-timeframe bar the alert fired on.
    pub bar_time: BarTime,
    /// Close time of the fed candle whose update made it fire.
    pub fired_at: BarTime,
    /// Every leaf condition by id: its operands' values and whether it held.
    pub conditions: BTreeMap<String, ConditionSnapshot>,
    /// The base bar as it stood (in progress or closed).
    pub bar: Option<BarSnapshot>,
    /// The alert as it was when it fired (for actions and messages).
    #[serde(skip)]
    pub definition: Arc<AlertDefinition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ConditionSnapshot {
    /// The left-hand operand.
    pub value: Option<f64>,
    /// The right-hand operand (the lower bound for channels; the past value for moving %).
    pub rhs: Option<f64>,
    /// The upper bound, for channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rhs2: Option<f64>,
    pub held: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BarSnapshot {
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl Trigger {
    /// The message rendered with the snapshot's values, `now` as `{{timenow}}`.
    pub fn render_message(&self, now: BarTime) -> Option<String> {
        let template = self.definition.message.as_ref()?;
        let bar = self.bar.unwrap_or(BarSnapshot {
            open: f64::NAN,
            high: f64::NAN,
            low: f64::NAN,
            close: f64::NAN,
            volume: f64::NAN,
        });
        let lookup = |id: &str| self.conditions.get(id).and_then(|c| c.value);
        let id = self.alert_id.to_string();
        Some(template.render(&crate::template::RenderContext {
            symbol: self.symbol.as_str(),
            timeframe: self.timeframe.as_str(),
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
            time: self.bar_time,
            now,
            alert_name: &self.definition.name,
            alert_id: &id,
            condition_value: &lookup,
        }))
    }
}
