//! Alert JSON → [`AlertDefinition`]: the seed-compatible format of DESIGN.md §3, validated.
//!
//! Every problem is reported as a [`FieldError`]: the JSON path of the offending field
//! (`conditions[1].rhs.settings.period`, `action.url`; `""` is the root) and what was
//! expected there. The parser collects every independent error it can find rather than
//! stopping at the first, never panics, and bounds its work by the size of the input.
//!
//! # Keys and spellings
//! Every key may be written in camelCase or snake_case (`compareWith` = `compare_with`,
//! `base_timeframe` = `baseTimeframe`, `smoothK` = `smooth_k`); no other spelling is
//! accepted (keys are case-sensitive). Giving two spellings or two aliases of one key
//! (`id` and `alert_id`, `length` and `period`, a condition's `period` and its
//! `settings.length`) is an error at the second one. Unknown keys are errors, never ignored.
//! A JSON `null` is the same as leaving the key out (a required key given as `null` is
//! missing). Duplicate keys inside one JSON object cannot be seen (the JSON reader keeps the
//! last one).
//!
//! # The alert
//! | key | meaning |
//! |---|---|
//! | `id` (alias `alert_id`) | optional; [`AlertId`] rules (1–128 of letters, digits, `_ - . :`) |
//! | `user_id` | optional string, 1–256 characters |
//! | `name` | optional, at most 256 characters; default: the id, else `"alert"` (empty = default) |
//! | `symbol` | required, [`Symbol`] rules (`btcusdt` is upper-cased) |
//! | `base_timeframe` | required, a Binance interval (`1m` … `1w`) |
//! | `conditionLogic` (aliases `logic`) | `AND` / `OR`, case-insensitive; default `AND` |
//! | `conditions` | required, a non-empty array of conditions and groups |
//! | `action`, `actions` | one action, and/or an array of them (at most 16 in all, `action` first); at least one is required |
//! | `trigger` (alias `fireMode`) | `once_per_bar` (default) · `once_per_bar_close` · `once`; the seed's `per_bar` / `per_close` are accepted in either key (case-insensitive) |
//! | `debounce_bars` | an integer 1–10000 (`3.0` is fine); default 1 |
//! | `message` | a [`Template`]; `{{<condition id>.value}}` must name a condition of this alert; empty = none |
//! | `not_before` | like `expires_at`: the alert evaluates no data before this time (a DCA bot's entry re-armed after a cooldown) |
//! | `expires_at` | `null`, an RFC 3339 time (`2025-01-31T00:00:00Z`, or a date `2025-01-31`), or epoch **milliseconds** (an integer ≥ 1e11: smaller values are refused as probably seconds) |
//!
//! # Conditions
//! A *group* is an object with a `conditions` key: `{"logic": "OR", "conditions": [...]}`
//! (keys `id` — checked like a leaf id, not kept —, `logic`/`conditionLogic`, default AND,
//! and `conditions`, non-empty). The alert's own `conditions` array is the root group (depth 1);
//! groups nest at most [`MAX_GROUP_DEPTH`] deep, and an alert has at most [`MAX_CONDITIONS`]
//! leaves (leaves past the limit are counted, not parsed).
//!
//! A *leaf*:
//! - `id`: `[A-Za-z0-9_]{1,64}`, unique in the alert; default `c<n>` for the n-th leaf in
//!   document order (counting all leaves). A default that collides with an explicit id is
//!   an error asking for an explicit id.
//! - `type`: `indicator` | `price` | `volume` (case-insensitive); when missing, `indicator` if an
//!   `indicator` key is present, else an error.
//! - `indicator` (names and aliases of [`IndicatorKind::parse_name`]: `Bollinger Bands`, `BB`,
//!   `Stochastic`, case-insensitive), `component` ([`IndicatorKind::component_index`],
//!   with the seeds' `macd_line`, `signal_line`, `histogram`; optional for one-component
//!   indicators, required otherwise), `settings`, and the seeds' `period` directly on the
//!   condition (= `settings.length`). These are refused on `price`/`volume` conditions.
//! - `source`: the price (`open high low close hl2 hlc3 ohlc4 volume`) a `price` condition
//!   reads (default close), or the input of an indicator that takes one (SMA EMA WMA RSI MACD
//!   BBANDS ROC; = `settings.source`). Refused on `volume` conditions and on other indicators.
//! - `timeframe`: missing, `null` or `"same"` = the alert's base timeframe; else a Binance
//!   interval. Whether the feed can provide it is checked by the engine, not here.
//! - `operator`, `compareWith`, `compareValue`, `rhs`, `rhs2`, `lowerBound`, `upperBound`.
//!
//! `settings` keys: indicator settings — `length` (alias `period`) for one-period
//! indicators; MACD `fast`, `slow`, `signal`; BBANDS `length`/`period` and `stddev` (aliases
//! `std`, `std_dev`/`stdDev`, `mult`, `multiplier`, `nbdev`); STOCH `k`, `smoothK`, `d`;
//! `source` where the indicator takes one — and the operator's settings: `tolerance`
//! (`equals`; a number ≥ 0, default 1e-9, relative), `bars` (`moving_*_pct`; 1–1000, default 1),
//! `lookback` (`divergence`, `convergence`; 1–1000, default 14), `direction` (`divergence`;
//! `bullish` | `bearish` | `any`, default any). Any other key is an unknown-key error listing
//! the keys this indicator and operator accept. Integer settings may be written `14.0`;
//! `14.5`, negative numbers and strings are refused with the allowed range (the text of
//! [`IndicatorSpec::new`]'s errors). Missing settings take [`IndicatorKind::default_params`].
//!
//! An *operand* (`rhs`, `rhs2`) is `{"indicator", "component"?, "settings"?, "period"?,
//! "source"?, "timeframe"?}` (`type` optional: `indicator`) or `{"type": "price" | "volume",
//! "source"?, "timeframe"?}`; its `timeframe` defaults to (and `"same"` means) the condition's.
//! Without `type` or `indicator`, the type comes from `compareWith` (`price`/`volume`).
//!
//! `compareWith`: `value` (`compareValue`) | `indicator_component` (alias `indicator`; `rhs`) |
//! `price` | `volume` (`rhs` optional: default the close / the volume on the condition's
//! timeframe). When missing it follows from what is given: `compareValue` → value, `rhs` →
//! that operand. `compareValue`, `lowerBound` and `upperBound` must be JSON numbers (a string
//! such as `"30"` is refused).
//!
//! # Operators (case-insensitive; camelCase and spaces fold to snake_case)
//! | operator | aliases | needs |
//! |---|---|---|
//! | `>` | `gt`, `greater_than`, `above` | a value or operand |
//! | `<` | `lt`, `less_than`, `below` | 〃 |
//! | `>=` | `gte`, `ge`, `greater_than_or_equal`, `greater_or_equal` | 〃 |
//! | `<=` | `lte`, `le`, `less_than_or_equal`, `less_or_equal` | 〃 |
//! | `equals` | `==`, `=`, `eq`, `equal` | 〃, `settings.tolerance` |
//! | `crosses_above` | `cross_above`, `crossover` | 〃 |
//! | `crosses_below` | `cross_below`, `crossunder` | 〃 |
//! | `crosses` | `cross` | 〃 |
//! | `divergence`, `convergence` | | other operand: `rhs`, else per `compareWith` price (default: the close) / volume; no `compareValue` |
//! | `entering_channel`, `exiting_channel`, `inside_channel`, `outside_channel` | `between` = `inside_channel` | lower = `rhs` or `lowerBound`, upper = `rhs2` or `upperBound`; or `rhs` = BBANDS without `component` (lower = its Lower, upper = its Upper) |
//! | `moving_up_pct`, `moving_down_pct` | `moving_up_percent`, `moving_down_percent` | `compareValue` = the percentage (> 0), no operand; `settings.bars` |
//!
//! Refused: fields an operator does not use (`rhs2` on `>`, `compareValue` on a channel,
//! `rhs` on `moving_up_pct`, ...), a constant lower bound above the constant upper bound, and
//! any operand equal to the left-hand side ("compares the series with itself", e.g.
//! `divergence` of a price condition on the close against the default close).
//!
//! # Actions
//! - `{"type": "notify", "title"?}` (title at most 256 characters).
//! - `{"type": "webhook", "url", "secret"?, "body"?}`: `url` an absolute `http://` or
//!   `https://` URL with a host (ASCII; optional `user@` and `:port` 1–65535), at most 2048
//!   characters, no whitespace or control characters (whether the host may be reached is the
//!   dispatcher's SSRF check); `secret` either `whsec_` + standard base64 of at least 16 bytes
//!   (Standard Webhooks), or any other string of 16 to 1024 characters without control
//!   characters; `body` `envelope` (default) or `message`.
//! - `{"type": "bot", "bot_id"}`.
//! - `{"type": "bot_trigger", "bot_id", "action_type", "dca_index"?}`: `action_type`
//!   `execute_entry` | `execute_dca` | `take_profit` | `stop_loss`; `dca_index` (an integer ≥ 0)
//!   is required for `execute_dca` and refused otherwise.
//!
//! `bot_id` is a string of 1–128 characters, or a non-negative integer (kept as its decimal
//! text), as Python code may store either.
//!
//! # Arrays of alerts
//! [`parse_alerts_array`] prefixes every path with the alert's index (`[3].conditions[0]`) and
//! also refuses two alerts with the same `id`.

use std::collections::{HashMap, HashSet};
use std::fmt;

use alert_core::{BarTime, PriceSource, Symbol, Timeframe};
use alert_indicators::{IndicatorKind, IndicatorSpec, Params, SpecError, StdDevMultiplier};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::definition::{
    Action, AlertDefinition, AlertId, BotActionType, Bound, Condition, ConditionNode, Direction,
    Logic, MAX_CONDITIONS, MAX_GROUP_DEPTH, Operand, Series, Test, TriggerMode, WebhookBody,
};
use crate::template::Template;

/// One invalid field: where it is and what was expected there. Displays as
/// `path: expected` (just `expected` at the root). Serializes as `{"path", "expected"}`, ready
/// for a 400 response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path: `conditions[1].rhs.settings.period`, `action.url`, `[3].symbol`; `""` is the
    /// root.
    pub path: String,
    /// What was expected, e.g. `an integer from at least 2 to 100000`.
    pub expected: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, expected: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            expected: expected.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.expected)
        } else {
            write!(f, "{}: {}", self.path, self.expected)
        }
    }
}

/// Every problem found in an alert (never empty). Displays as `path: expected; path: expected`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
#[error("{}", join_errors(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The errors, in the order found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether some error is at exactly `path`.
    pub fn has_path(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

fn join_errors(errs: &[FieldError]) -> String {
    let parts: Vec<String> = errs.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// Parses one alert from a JSON value.
pub fn parse_alert(value: &Value) -> Result<AlertDefinition, ValidationErrors> {
    let mut p = Parser::default();
    let def = p.alert(value, "");
    p.result(def)
}

/// Parses one alert from JSON text. A syntax error is a [`FieldError`] at the root with the
/// JSON reader's message (which names line and column).
pub fn parse_alert_str(text: &str) -> Result<AlertDefinition, ValidationErrors> {
    let value = read_json(text)?;
    parse_alert(&value)
}

/// Parses a JSON array of alerts; paths are prefixed with the alert's index
/// (`[3].conditions[0].operator`). Two alerts with the same `id` are an error.
pub fn parse_alerts_array(text: &str) -> Result<Vec<AlertDefinition>, ValidationErrors> {
    let value = read_json(text)?;
    let Value::Array(items) = &value else {
        return Err(ValidationErrors(vec![FieldError::new(
            "",
            format!("a JSON array of alerts (got {})", type_name(&value)),
        )]));
    };
    let mut p = Parser::default();
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = index(i, "");
        if let Some(def) = p.alert(item, &path) {
            if let Some(id) = &def.id {
                if let Some(first) = seen.get(id.as_str()) {
                    p.err(
                        child(&path, "id"),
                        format!(
                            "an id unique in the array ({:?} is also the id of [{first}])",
                            id.as_str()
                        ),
                    );
                } else {
                    seen.insert(id.as_str().to_owned(), i);
                }
            }
            out.push(def);
        }
    }
    if p.errs.is_empty() && out.len() == items.len() {
        Ok(out)
    } else {
        Err(p.into_errors())
    }
}

fn read_json(text: &str) -> Result<Value, ValidationErrors> {
    serde_json::from_str(text)
        .map_err(|e| ValidationErrors(vec![FieldError::new("", format!("valid JSON ({e})"))]))
}

// ---------------------------------------------------------------------------------------------
// Paths, key spellings and objects

fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (plain, path.is_empty()) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => {
            let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
            format!("{path}[{quoted}]")
        }
    }
}

fn index(i: usize, path: &str) -> String {
    format!("{path}[{i}]")
}

fn to_snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

fn to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `key` spells `name` exactly, in camelCase or in snake_case.
fn key_matches(key: &str, name: &str) -> bool {
    key == name || key == to_snake(name) || key == to_camel(name)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A present, non-null field.
struct Field<'a> {
    value: &'a Value,
    path: String,
}

/// An object being read: remembers which keys were taken, so the rest can be reported.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    used: HashSet<&'a str>,
}

impl<'a> Obj<'a> {
    fn new(map: &'a Map<String, Value>, path: &str) -> Self {
        Self {
            map,
            path: path.to_owned(),
            used: HashSet::new(),
        }
    }

    /// Takes the key spelled as any of `names` (camelCase or snake_case). Two present
    /// spellings are an error at the second; `null` counts as absent.
    fn take(&mut self, p: &mut Parser, names: &[&str]) -> Option<Field<'a>> {
        let spellings: Vec<String> = names
            .iter()
            .flat_map(|n| [(*n).to_owned(), to_snake(n), to_camel(n)])
            .collect();
        let mut found: Option<(Field<'a>, &'a str)> = None;
        for (k, v) in self.map {
            if !spellings.iter().any(|n| n == k) {
                continue;
            }
            self.used.insert(k.as_str());
            if v.is_null() {
                continue;
            }
            match &found {
                None => {
                    found = Some((
                        Field {
                            value: v,
                            path: child(&self.path, k),
                        },
                        k.as_str(),
                    ));
                }
                Some((_, first)) => p.err(
                    child(&self.path, k),
                    format!("only one of `{first}` and `{k}` (they are the same key)"),
                ),
            }
        }
        found.map(|(f, _)| f)
    }

    /// Whether a key spelled as any of `names` is present and not null (without taking it).
    fn has(&self, names: &[&str]) -> bool {
        self.map
            .iter()
            .any(|(k, v)| !v.is_null() && names.iter().any(|n| key_matches(k, n)))
    }

    /// Reports every key not taken as unknown.
    fn finish(self, p: &mut Parser, accepted: &[&str]) {
        for k in self.map.keys() {
            if !self.used.contains(k.as_str()) {
                let expected = if accepted.is_empty() {
                    "unknown key: no keys are accepted here".to_owned()
                } else {
                    format!(
                        "unknown key: expected one of {} (camelCase or snake_case)",
                        accepted.join(", ")
                    )
                };
                p.err(child(&self.path, k), expected);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

const ALERT_KEYS: &[&str] = &[
    "id",
    "alert_id",
    "user_id",
    "name",
    "symbol",
    "base_timeframe",
    "conditionLogic",
    "logic",
    "conditions",
    "action",
    "actions",
    "trigger",
    "fireMode",
    "debounce_bars",
    "message",
    "expires_at",
    "not_before",
];
const GROUP_KEYS: &[&str] = &["id", "logic", "conditionLogic", "conditions"];
const LEAF_KEYS: &[&str] = &[
    "id",
    "type",
    "indicator",
    "component",
    "settings",
    "period",
    "source",
    "operator",
    "compareWith",
    "compareValue",
    "rhs",
    "rhs2",
    "lowerBound",
    "upperBound",
    "timeframe",
];
const OPERAND_KEYS: &[&str] = &[
    "type",
    "indicator",
    "component",
    "settings",
    "period",
    "source",
    "timeframe",
];
const LENGTH: &[&str] = &["length", "period"];
const STDDEV: &[&str] = &["stddev", "std", "std_dev", "mult", "multiplier", "nbdev"];

const MAX_ACTIONS: usize = 16;
const MAX_DEBOUNCE: u64 = 10_000;
const MAX_OP_BARS: u64 = 1_000;
const MIN_EPOCH_MS: i64 = 100_000_000_000;
const MAX_EPOCH_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

const PRICE_SOURCES: &str = "one of open, high, low, close, hl2, hlc3, ohlc4, volume";
const INDICATORS: &str = "one of SMA, EMA, WMA, RSI, MACD, BBANDS (Bollinger Bands, BB), STOCH (Stochastic), ATR, VOLUME_SMA, ADX, CCI, MFI, ROC, WILLR, OBV, VWAP";
const OPERATORS: &str = "one of >, <, >=, <=, equals, crosses_above, crosses_below, crosses, divergence, convergence, entering_channel, exiting_channel, inside_channel, outside_channel, between, moving_up_pct, moving_down_pct";
const CONDITION_ID: &str = "1 to 64 letters, digits or '_' (templates read {{<id>.value}})";

/// What a condition or operand reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Indicator,
    Price,
    Volume,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "indicator" => Some(Self::Indicator),
            "price" => Some(Self::Price),
            "volume" => Some(Self::Volume),
            _ => None,
        }
    }
}

/// `compareWith`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cw {
    Value,
    Indicator,
    Price,
    Volume,
}

impl Cw {
    fn parse(s: &str) -> Option<Self> {
        match to_snake(s.trim()).to_ascii_lowercase().as_str() {
            "value" => Some(Self::Value),
            "indicator_component" | "indicator" => Some(Self::Indicator),
            "price" => Some(Self::Price),
            "volume" => Some(Self::Volume),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Indicator => "indicator_component",
            Self::Price => "price",
            Self::Volume => "volume",
        }
    }

    fn kind(self) -> Option<Kind> {
        match self {
            Self::Value => None,
            Self::Indicator => Some(Kind::Indicator),
            Self::Price => Some(Kind::Price),
            Self::Volume => Some(Kind::Volume),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    CrossAbove,
    CrossBelow,
    Cross,
    Divergence,
    Convergence,
    Entering,
    Exiting,
    Inside,
    Outside,
    MovingUp,
    MovingDown,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        let folded = to_snake(s.trim())
            .to_ascii_lowercase()
            .replace([' ', '-'], "_");
        Some(match folded.as_str() {
            ">" | "gt" | "greater_than" | "above" => Self::Gt,
            "<" | "lt" | "less_than" | "below" => Self::Lt,
            ">=" | "gte" | "ge" | "greater_than_or_equal" | "greater_or_equal" => Self::Ge,
            "<=" | "lte" | "le" | "less_than_or_equal" | "less_or_equal" => Self::Le,
            "equals" | "==" | "=" | "eq" | "equal" => Self::Eq,
            "crosses_above" | "cross_above" | "crossover" => Self::CrossAbove,
            "crosses_below" | "cross_below" | "crossunder" => Self::CrossBelow,
            "crosses" | "cross" => Self::Cross,
            "divergence" => Self::Divergence,
            "convergence" => Self::Convergence,
            "entering_channel" => Self::Entering,
            "exiting_channel" => Self::Exiting,
            "inside_channel" | "between" => Self::Inside,
            "outside_channel" => Self::Outside,
            "moving_up_pct" | "moving_up_percent" => Self::MovingUp,
            "moving_down_pct" | "moving_down_percent" => Self::MovingDown,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Lt => "<",
            Self::Ge => ">=",
            Self::Le => "<=",
            Self::Eq => "equals",
            Self::CrossAbove => "crosses_above",
            Self::CrossBelow => "crosses_below",
            Self::Cross => "crosses",
            Self::Divergence => "divergence",
            Self::Convergence => "convergence",
            Self::Entering => "entering_channel",
            Self::Exiting => "exiting_channel",
            Self::Inside => "inside_channel",
            Self::Outside => "outside_channel",
            Self::MovingUp => "moving_up_pct",
            Self::MovingDown => "moving_down_pct",
        }
    }

    /// The `settings` keys this operator reads.
    fn settings_keys(self) -> &'static [&'static str] {
        match self {
            Self::Eq => &["tolerance"],
            Self::MovingUp | Self::MovingDown => &["bars"],
            Self::Divergence => &["lookback", "direction"],
            Self::Convergence => &["lookback"],
            _ => &[],
        }
    }

    fn is_channel(self) -> bool {
        matches!(
            self,
            Self::Entering | Self::Exiting | Self::Inside | Self::Outside
        )
    }
}

/// The `settings` keys an indicator reads (canonical spellings, for messages).
fn indicator_settings_keys(kind: IndicatorKind) -> &'static [&'static str] {
    match kind.default_params() {
        Params::LengthOf(..) => &["length", "period", "source"],
        Params::Length(_) => &["length", "period"],
        Params::Macd { .. } => &["fast", "slow", "signal", "source"],
        Params::Bbands { .. } => &[
            "length",
            "period",
            "stddev",
            "std",
            "std_dev",
            "mult",
            "multiplier",
            "nbdev",
            "source",
        ],
        Params::Stoch { .. } => &["k", "smoothK", "d"],
        Params::None => &[],
    }
}

/// The operator's settings with their defaults.
struct OpSettings {
    tolerance: f64,
    bars: usize,
    lookback: usize,
    direction: Direction,
}

/// What a series reads, as far as it was understood; decides which `settings` keys are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reads {
    /// A bar's price or volume: no indicator settings.
    Bar,
    Indicator(IndicatorKind),
    /// Not understood (an error was reported): its settings cannot be judged.
    Unknown,
}

impl Reads {
    fn settings_keys(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Bar => Some(&[]),
            Self::Indicator(k) => Some(indicator_settings_keys(k)),
            Self::Unknown => None,
        }
    }
}

/// A parsed operand: one series, or both bands of a BBANDS given without a component.
enum Rhs {
    One(Operand),
    Band { lower: Operand, upper: Operand },
}

/// What a condition compares, before the operator decides what it needs.
struct LeafParts<'a> {
    path: String,
    tf: Timeframe,
    lhs: Option<Operand>,
    cw: Option<(Cw, String)>,
    cw_invalid: bool,
    cv: Option<Field<'a>>,
    rhs: Option<Field<'a>>,
    rhs2: Option<Field<'a>>,
    lower: Option<Field<'a>>,
    upper: Option<Field<'a>>,
}

/// Leaf bookkeeping across the condition tree.
#[derive(Default)]
struct Tree {
    leaves: usize,
    /// (id, path of the leaf, explicit).
    ids: Vec<(String, String, bool)>,
}

// ---------------------------------------------------------------------------------------------
// The parser

#[derive(Default)]
struct Parser {
    errs: Vec<FieldError>,
}

impl Parser {
    fn err(&mut self, path: impl Into<String>, expected: impl Into<String>) {
        self.errs.push(FieldError::new(path, expected));
    }

    fn into_errors(mut self) -> ValidationErrors {
        if self.errs.is_empty() {
            self.err("", "a valid alert");
        }
        ValidationErrors(self.errs)
    }

    fn result<T>(self, value: Option<T>) -> Result<T, ValidationErrors> {
        match value {
            Some(v) if self.errs.is_empty() => Ok(v),
            _ => Err(self.into_errors()),
        }
    }

    fn missing(&mut self, parent: &str, key: &str, expected: &str) {
        self.err(child(parent, key), format!("missing: expected {expected}"));
    }

    fn object<'a>(&mut self, value: &'a Value, path: &str, expected: &str) -> Option<Obj<'a>> {
        match value {
            Value::Object(map) => Some(Obj::new(map, path)),
            other => {
                self.err(path, format!("{expected} (got {})", type_name(other)));
                None
            }
        }
    }

    fn str<'a>(&mut self, f: &Field<'a>, expected: &str) -> Option<&'a str> {
        match f.value {
            Value::String(s) => Some(s),
            other => {
                self.err(&f.path, format!("{expected} (got {})", type_name(other)));
                None
            }
        }
    }

    /// A finite JSON number.
    fn number(&mut self, f: &Field<'_>, expected: &str) -> Option<f64> {
        match f.value.as_f64() {
            Some(v) if v.is_finite() => Some(v),
            _ => {
                self.err(&f.path, format!("{expected} (got {})", type_name(f.value)));
                None
            }
        }
    }

    /// An integer in `min..=max` (`14.0` is an integer).
    fn uint(&mut self, f: &Field<'_>, min: u64, max: u64) -> Option<u64> {
        match as_uint(f.value) {
            Some(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.err(&f.path, format!("an integer from {min} to {max}"));
                None
            }
        }
    }

    /// A string of 1 to `max` characters without control characters.
    fn text(&mut self, f: &Field<'_>, max: usize) -> Option<String> {
        let expected = format!("a string of 1 to {max} characters without control characters");
        let s = self.str(f, &expected)?;
        let n = s.chars().count();
        if n == 0 || n > max || s.chars().any(char::is_control) {
            self.err(&f.path, expected);
            return None;
        }
        Some(s.to_owned())
    }

    fn timeframe(&mut self, f: &Field<'_>, same: Timeframe) -> Option<Timeframe> {
        let expected = "\"same\" or one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w";
        let s = self.str(f, expected)?;
        if s.trim().eq_ignore_ascii_case("same") {
            return Some(same);
        }
        match s.parse::<Timeframe>() {
            Ok(tf) => Some(tf),
            Err(_) => {
                self.err(&f.path, expected);
                None
            }
        }
    }

    fn logic(&mut self, f: Option<Field<'_>>) -> Option<Logic> {
        let Some(f) = f else {
            return Some(Logic::And);
        };
        let s = self.str(&f, "AND or OR")?;
        match s.trim().to_ascii_uppercase().as_str() {
            "AND" => Some(Logic::And),
            "OR" => Some(Logic::Or),
            _ => {
                self.err(&f.path, "AND or OR");
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // The alert

    fn alert(&mut self, value: &Value, path: &str) -> Option<AlertDefinition> {
        let mut o = self.object(value, path, "an alert object")?;
        let errors_before = self.errs.len();

        let id = o.take(self, &["id", "alert_id"]).and_then(|f| {
            let s = self.str(&f, "a string id")?;
            AlertId::new(s).map_err(|e| self.err(&f.path, e)).ok()
        });
        let user_id = o.take(self, &["user_id"]).and_then(|f| self.text(&f, 256));
        let name = match o.take(self, &["name"]) {
            None => Some(None),
            Some(f) => self.str(&f, "a string").and_then(|s| {
                if s.trim().is_empty() {
                    Some(None)
                } else if s.chars().count() > 256 || s.chars().any(char::is_control) {
                    self.err(&f.path, "at most 256 characters without control characters");
                    None
                } else {
                    Some(Some(s.to_owned()))
                }
            }),
        };
        let symbol = match o.take(self, &["symbol"]) {
            None => {
                self.missing(path, "symbol", "a symbol like BTCUSDT");
                None
            }
            Some(f) => self.str(&f, "a symbol like BTCUSDT").and_then(|s| {
                Symbol::new(s)
                    .map_err(|e| self.err(&f.path, e.to_string()))
                    .ok()
            }),
        };
        let base = match o.take(self, &["base_timeframe"]) {
            None => {
                self.missing(
                    path,
                    "base_timeframe",
                    "one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w",
                );
                None
            }
            Some(f) => {
                let expected = "one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w";
                self.str(&f, expected).and_then(|s| {
                    s.parse::<Timeframe>()
                        .map_err(|e| self.err(&f.path, e.to_string()))
                        .ok()
                })
            }
        };
        let logic_f = o.take(self, &["conditionLogic", "logic"]);
        let logic = self.logic(logic_f);

        let mut tree = Tree::default();
        let conditions = match o.take(self, &["conditions"]) {
            None => {
                self.missing(path, "conditions", "a non-empty array of conditions");
                None
            }
            Some(f) => {
                // A wrong base timeframe is already reported; conditions are still checked.
                let tf = base.unwrap_or(Timeframe::H1);
                let nodes = self.nodes(f.value, &f.path, 1, &mut tree, tf);
                if tree.leaves > MAX_CONDITIONS {
                    self.err(
                        &f.path,
                        format!(
                            "at most {MAX_CONDITIONS} leaf conditions in all (got {})",
                            tree.leaves
                        ),
                    );
                }
                nodes
            }
        };
        self.check_ids(&tree);

        let action = o.take(self, &["action"]);
        let actions_f = o.take(self, &["actions"]);
        let actions = self.actions(action, actions_f, path);

        let trigger = match o.take(self, &["trigger", "fireMode"]) {
            None => Some(TriggerMode::OncePerBar),
            Some(f) => {
                let expected = "one of once_per_bar, once_per_bar_close, once (or the seed's per_bar, per_close)";
                self.str(&f, expected).and_then(|s| {
                    match to_snake(s.trim()).to_ascii_lowercase().as_str() {
                        "once_per_bar" | "per_bar" => Some(TriggerMode::OncePerBar),
                        "once_per_bar_close" | "per_close" | "per_bar_close" => {
                            Some(TriggerMode::OncePerBarClose)
                        }
                        "once" => Some(TriggerMode::Once),
                        _ => {
                            self.err(&f.path, expected);
                            None
                        }
                    }
                })
            }
        };
        let debounce_bars = match o.take(self, &["debounce_bars"]) {
            None => Some(1),
            Some(f) => self.uint(&f, 1, MAX_DEBOUNCE).map(|v| v as u32),
        };
        let message = match o.take(self, &["message"]) {
            None => Some(None),
            Some(f) => self.str(&f, "a message template string").and_then(|s| {
                if s.is_empty() {
                    return Some(None);
                }
                let ids: Vec<&str> = tree.ids.iter().map(|(id, _, _)| id.as_str()).collect();
                Template::parse(s, &ids)
                    .map(Some)
                    .map_err(|e| self.err(&f.path, e.to_string()))
                    .ok()
            }),
        };
        let expires_at = match o.take(self, &["expires_at"]) {
            None => Some(None),
            Some(f) => self.expires_at(&f).map(Some),
        };
        let not_before = match o.take(self, &["not_before"]) {
            None => Some(None),
            Some(f) if f.value.is_null() => Some(None),
            Some(f) => self.expires_at(&f).map(Some),
        };
        o.finish(self, ALERT_KEYS);

        if self.errs.len() != errors_before {
            return None;
        }
        let name = name?.unwrap_or_else(|| {
            id.as_ref()
                .map_or_else(|| "alert".to_owned(), |id| id.as_str().to_owned())
        });
        Some(AlertDefinition {
            id,
            user_id,
            name,
            symbol: symbol?,
            base_timeframe: base?,
            logic: logic?,
            conditions: conditions?,
            trigger: trigger?,
            debounce_bars: debounce_bars?,
            message: message?,
            expires_at: expires_at?,
            not_before: not_before?,
            actions: actions?,
        })
    }

    fn expires_at(&mut self, f: &Field<'_>) -> Option<BarTime> {
        let expected =
            "null, an RFC 3339 time like 2025-01-31T00:00:00Z, or epoch milliseconds (an integer)";
        match f.value {
            Value::String(s) => {
                let t = BarTime::parse_rfc3339(s);
                if t.is_none() {
                    self.err(&f.path, expected);
                }
                t
            }
            Value::Number(n) => {
                let ms = n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|v| v.fract() == 0.0 && v.abs() < 9.0e15)
                        .map(|v| v as i64)
                });
                match ms {
                    Some(ms) if (MIN_EPOCH_MS..=MAX_EPOCH_MS).contains(&ms) => {
                        Some(BarTime::from_millis(ms))
                    }
                    Some(ms) if (0..MIN_EPOCH_MS).contains(&ms) => {
                        self.err(
                            &f.path,
                            "epoch milliseconds (this is before 1973: seconds? multiply by 1000)",
                        );
                        None
                    }
                    _ => {
                        self.err(
                            &f.path,
                            format!(
                                "epoch milliseconds, an integer from {MIN_EPOCH_MS} to {MAX_EPOCH_MS}"
                            ),
                        );
                        None
                    }
                }
            }
            other => {
                self.err(&f.path, format!("{expected} (got {})", type_name(other)));
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Conditions

    fn nodes(
        &mut self,
        value: &Value,
        path: &str,
        depth: usize,
        tree: &mut Tree,
        base: Timeframe,
    ) -> Option<Vec<ConditionNode>> {
        let Value::Array(items) = value else {
            self.err(
                path,
                format!("an array of conditions (got {})", type_name(value)),
            );
            return None;
        };
        if items.is_empty() {
            self.err(path, "at least one condition");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.node(item, &index(i, path), depth, tree, base) {
                Some(n) => out.push(n),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn node(
        &mut self,
        value: &Value,
        path: &str,
        depth: usize,
        tree: &mut Tree,
        base: Timeframe,
    ) -> Option<ConditionNode> {
        let Value::Object(map) = value else {
            self.err(
                path,
                format!(
                    "a condition or a group {{\"logic\", \"conditions\"}} (got {})",
                    type_name(value)
                ),
            );
            return None;
        };
        let mut o = Obj::new(map, path);
        if !o.has(&["conditions"]) {
            return self.leaf(o, tree, base).map(ConditionNode::Leaf);
        }
        if depth >= MAX_GROUP_DEPTH {
            self.err(
                path,
                format!(
                    "groups nested at most {MAX_GROUP_DEPTH} deep (the alert's conditions are depth 1)"
                ),
            );
            return None;
        }
        if let Some(f) = o.take(self, &["id"]) {
            self.condition_id(&f);
        }
        let logic_f = o.take(self, &["logic", "conditionLogic"]);
        let logic = self.logic(logic_f);
        let children = o
            .take(self, &["conditions"])
            .and_then(|f| self.nodes(f.value, &f.path, depth + 1, tree, base));
        o.finish(self, GROUP_KEYS);
        Some(ConditionNode::Group {
            logic: logic?,
            children: children?,
        })
    }

    fn condition_id(&mut self, f: &Field<'_>) -> Option<String> {
        let s = self.str(f, CONDITION_ID)?;
        let ok =
            (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            self.err(&f.path, CONDITION_ID);
            return None;
        }
        Some(s.to_owned())
    }

    fn check_ids(&mut self, tree: &Tree) {
        let mut first: HashMap<&str, &str> = HashMap::new();
        for (id, path, explicit) in &tree.ids {
            match first.get(id.as_str()) {
                None => {
                    first.insert(id, path);
                }
                Some(other) if *explicit => self.err(
                    child(path, "id"),
                    format!("an id unique in the alert ({id:?} is also the id of {other})"),
                ),
                Some(other) => self.err(
                    path.clone(),
                    format!("an explicit id: its default id {id:?} is already the id of {other}"),
                ),
            }
        }
    }

    fn leaf(&mut self, mut o: Obj<'_>, tree: &mut Tree, base: Timeframe) -> Option<Condition> {
        let path = o.path.clone();
        tree.leaves += 1;
        if tree.leaves > MAX_CONDITIONS {
            return None; // counted and reported once, not parsed
        }
        let errors_before = self.errs.len();

        let id = match o.take(self, &["id"]) {
            Some(f) => self.condition_id(&f).inspect(|id| {
                tree.ids.push((id.clone(), path.clone(), true));
            }),
            None => {
                let id = format!("c{}", tree.leaves);
                tree.ids.push((id.clone(), path.clone(), false));
                Some(id)
            }
        };
        let kind = match o.take(self, &["type"]) {
            Some(f) => self
                .str(&f, "one of indicator, price, volume")
                .and_then(|s| {
                    let k = Kind::parse(s);
                    if k.is_none() {
                        self.err(&f.path, "one of indicator, price, volume");
                    }
                    k
                }),
            None if o.has(&["indicator"]) => Some(Kind::Indicator),
            None => {
                self.missing(
                    &path,
                    "type",
                    "one of indicator, price, volume (or an indicator key)",
                );
                None
            }
        };
        let tf = match o.take(self, &["timeframe"]) {
            None => Some(base),
            Some(f) => self.timeframe(&f, base),
        };
        let op = match o.take(self, &["operator"]) {
            None => {
                self.missing(&path, "operator", OPERATORS);
                None
            }
            Some(f) => self.str(&f, OPERATORS).and_then(|s| {
                let op = Op::parse(s);
                if op.is_none() {
                    self.err(&f.path, OPERATORS);
                }
                op
            }),
        };
        let settings_path = child(&path, "settings");
        let mut settings = o
            .take(self, &["settings"])
            .and_then(|f| self.object(f.value, &f.path, "an object of settings"));
        let op_settings = op.map(|op| self.op_settings(op, settings.as_mut()));

        let series_tf = tf.unwrap_or(base);
        let (lhs, reads) = match kind {
            Some(kind) => {
                let (rhs, reads) = self.series(
                    &mut o,
                    kind,
                    settings.as_mut(),
                    &settings_path,
                    series_tf,
                    false,
                );
                let lhs = rhs.and_then(|r| match r {
                    Rhs::One(op) => Some(op),
                    Rhs::Band { .. } => None, // not produced with allow_band = false
                });
                (lhs, reads)
            }
            None => {
                for key in ["indicator", "component", "period", "source"] {
                    o.take(self, &[key]);
                }
                (None, Reads::Unknown)
            }
        };

        let cw_f = o.take(self, &["compareWith"]);
        let mut cw_invalid = false;
        let cw = cw_f.and_then(|f| {
            let expected = "one of value, indicator_component, price, volume";
            let cw = self.str(&f, expected).and_then(|s| {
                let cw = Cw::parse(s);
                if cw.is_none() {
                    self.err(&f.path, expected);
                }
                cw
            });
            cw_invalid = cw.is_none();
            cw.map(|c| (c, f.path.clone()))
        });
        let parts = LeafParts {
            path: path.clone(),
            tf: series_tf,
            lhs,
            cw,
            cw_invalid,
            cv: o.take(self, &["compareValue"]),
            rhs: o.take(self, &["rhs"]),
            rhs2: o.take(self, &["rhs2"]),
            lower: o.take(self, &["lowerBound"]),
            upper: o.take(self, &["upperBound"]),
        };
        o.finish(self, LEAF_KEYS);

        // With an unknown operator or indicator, the settings cannot be judged.
        if let (Some(s), Some(op), Some(keys)) = (settings, op, reads.settings_keys()) {
            let mut accepted: Vec<&str> = op.settings_keys().to_vec();
            accepted.extend_from_slice(keys);
            s.finish(self, &accepted);
        }
        let test = match (op, op_settings) {
            (Some(op), Some(settings)) => self.test(op, &parts, settings),
            _ => None,
        };
        if self.errs.len() != errors_before {
            return None;
        }
        Some(Condition {
            id: id?,
            timeframe: tf?,
            lhs: parts.lhs?,
            test: test?,
        })
    }

    fn op_settings(&mut self, op: Op, mut settings: Option<&mut Obj<'_>>) -> OpSettings {
        let mut out = OpSettings {
            tolerance: 1e-9,
            bars: 1,
            lookback: 14,
            direction: Direction::Any,
        };
        let mut take = |p: &mut Parser, key: &str| settings.as_mut()?.take(p, &[key]);
        match op {
            Op::Eq => {
                if let Some(f) = take(self, "tolerance") {
                    let expected = "a number >= 0 (relative tolerance; default 1e-9)";
                    match self.number(&f, expected) {
                        Some(v) if v >= 0.0 => out.tolerance = v,
                        Some(_) => self.err(&f.path, expected),
                        None => {}
                    }
                }
            }
            Op::MovingUp | Op::MovingDown => {
                if let Some(f) = take(self, "bars")
                    && let Some(v) = self.uint(&f, 1, MAX_OP_BARS)
                {
                    out.bars = v as usize;
                }
            }
            Op::Divergence | Op::Convergence => {
                if let Some(f) = take(self, "lookback")
                    && let Some(v) = self.uint(&f, 1, MAX_OP_BARS)
                {
                    out.lookback = v as usize;
                }
                if op == Op::Divergence
                    && let Some(f) = take(self, "direction")
                {
                    let expected = "one of bullish, bearish, any";
                    if let Some(s) = self.str(&f, expected) {
                        match s.trim().to_ascii_lowercase().as_str() {
                            "bullish" => out.direction = Direction::Bullish,
                            "bearish" => out.direction = Direction::Bearish,
                            "any" => out.direction = Direction::Any,
                            _ => self.err(&f.path, expected),
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// Reads the series keys of a condition (`as_rhs = false`) or an operand from `o`:
    /// `indicator`, `component`, `period`, `source`, with `settings` already opened. Returns
    /// the series (`None` after an error) and whether the indicator kind was understood.
    fn series<'a>(
        &mut self,
        o: &mut Obj<'a>,
        kind: Kind,
        settings: Option<&mut Obj<'a>>,
        settings_path: &str,
        tf: Timeframe,
        allow_band: bool,
    ) -> (Option<Rhs>, Reads) {
        let path = o.path.clone();
        let one = |series| {
            Some(Rhs::One(Operand {
                timeframe: tf,
                series,
            }))
        };
        match kind {
            Kind::Price | Kind::Volume => {
                let what = if kind == Kind::Price {
                    "price"
                } else {
                    "volume"
                };
                for key in ["indicator", "component", "period"] {
                    if let Some(f) = o.take(self, &[key]) {
                        self.err(
                            &f.path,
                            format!("no `{key}` on a {what} operand (type is {what})"),
                        );
                    }
                }
                let source = o.take(self, &["source"]);
                let series = match (kind, source) {
                    (Kind::Volume, Some(f)) => {
                        self.err(
                            &f.path,
                            "no source on a volume operand (it reads the bar's volume)",
                        );
                        None
                    }
                    (Kind::Volume, None) => Some(Series::Price(PriceSource::Volume)),
                    (_, None) => Some(Series::Price(PriceSource::Close)),
                    (_, Some(f)) => self.price_source(&f).map(Series::Price),
                };
                (series.and_then(one), Reads::Bar)
            }
            Kind::Indicator => {
                let ind = o.take(self, &["indicator"]);
                let component = o.take(self, &["component"]);
                let period = o.take(self, &["period"]);
                let source = o.take(self, &["source"]);
                let Some(ind) = ind else {
                    self.missing(&path, "indicator", INDICATORS);
                    return (None, Reads::Unknown);
                };
                let Some(ikind) = self.str(&ind, INDICATORS).and_then(|s| {
                    let k = IndicatorKind::parse_name(s);
                    if k.is_none() {
                        self.err(&ind.path, INDICATORS);
                    }
                    k
                }) else {
                    return (None, Reads::Unknown);
                };
                let spec = self.spec(ikind, settings, settings_path, period, source);
                let names = ikind.components();
                let component = match component {
                    Some(f) => {
                        let expected =
                            format!("one of {} (components of {ikind})", names.join(", "));
                        self.str(&f, &expected).and_then(|s| {
                            let i = ikind.component_index(s);
                            if i.is_none() {
                                self.err(&f.path, expected.clone());
                            }
                            i
                        })
                    }
                    None if names.len() == 1 => Some(0),
                    None if allow_band && ikind == IndicatorKind::Bbands => {
                        let Some(spec) = spec else {
                            return (None, Reads::Indicator(ikind));
                        };
                        let band = |component| Operand {
                            timeframe: tf,
                            series: Series::Indicator { spec, component },
                        };
                        return (
                            Some(Rhs::Band {
                                lower: band(2),
                                upper: band(0),
                            }),
                            Reads::Indicator(ikind),
                        );
                    }
                    None => {
                        self.missing(
                            &path,
                            "component",
                            &format!("one of {} ({ikind} has several)", names.join(", ")),
                        );
                        None
                    }
                };
                let rhs = match (spec, component) {
                    (Some(spec), Some(component)) => one(Series::Indicator { spec, component }),
                    _ => None,
                };
                (rhs, Reads::Indicator(ikind))
            }
        }
    }

    fn price_source(&mut self, f: &Field<'_>) -> Option<PriceSource> {
        let s = self.str(f, PRICE_SOURCES)?;
        let src = PriceSource::parse(s.trim());
        if src.is_none() {
            self.err(&f.path, PRICE_SOURCES);
        }
        src
    }

    /// Builds an indicator's settings from `settings` and the condition-level `period` and
    /// `source`, reporting each bad setting at its own path.
    fn spec<'a>(
        &mut self,
        kind: IndicatorKind,
        mut settings: Option<&mut Obj<'a>>,
        settings_path: &str,
        cond_period: Option<Field<'a>>,
        cond_source: Option<Field<'a>>,
    ) -> Option<IndicatorSpec> {
        let mut take = |p: &mut Parser, names: &[&str]| settings.as_mut()?.take(p, names);
        let errors_before = self.errs.len();
        let defaults = kind.default_params();
        // (setting name as IndicatorSpec::new reports it, path where the user wrote it)
        let mut paths: Vec<(&'static str, String)> = Vec::new();
        let mut int = |name: &'static str, f: Option<Field<'a>>, default| match f {
            None => default,
            Some(f) => {
                paths.push((name, f.path.clone()));
                // Not an integer: 0, which every setting refuses, so that the allowed range
                // in the message comes from IndicatorSpec::new.
                as_uint(f.value).map_or(0, |v| usize::try_from(v).unwrap_or(usize::MAX))
            }
        };

        let takes_source = matches!(
            defaults,
            Params::LengthOf(..) | Params::Macd { .. } | Params::Bbands { .. }
        );
        let settings_source = take(self, &["source"]);
        let source_f = merge(self, cond_source, settings_source);
        let source = match source_f {
            None => PriceSource::Close,
            Some(f) if takes_source => self.price_source(&f).unwrap_or(PriceSource::Close),
            Some(f) => {
                self.err(
                    &f.path,
                    format!("no source: {kind} reads the bar's own fields (it takes no source)"),
                );
                PriceSource::Close
            }
        };
        let one_period = matches!(
            defaults,
            Params::LengthOf(..) | Params::Length(_) | Params::Bbands { .. }
        );
        let period_f = if one_period {
            let settings_period = take(self, LENGTH);
            merge(self, cond_period, settings_period)
        } else {
            if let Some(f) = cond_period {
                let expected = match defaults {
                    Params::Macd { .. } => "no period: MACD takes settings fast, slow and signal",
                    Params::Stoch { .. } => "no period: STOCH takes settings k, smoothK and d",
                    _ => "no period: this indicator takes no settings",
                };
                self.err(&f.path, expected);
            }
            None
        };

        let params = match defaults {
            Params::None => Params::None,
            Params::Length(d) => Params::Length(int("period", period_f, d)),
            Params::LengthOf(d, _) => Params::LengthOf(int("period", period_f, d), source),
            Params::Macd {
                fast, slow, signal, ..
            } => {
                let (f, s, g) = (
                    take(self, &["fast"]),
                    take(self, &["slow"]),
                    take(self, &["signal"]),
                );
                Params::Macd {
                    fast: int("fast", f, fast),
                    slow: int("slow", s, slow),
                    signal: int("signal", g, signal),
                    source,
                }
            }
            Params::Stoch { k, smooth_k, d } => {
                let (kf, sf, df) = (
                    take(self, &["k"]),
                    take(self, &["smoothK"]),
                    take(self, &["d"]),
                );
                Params::Stoch {
                    k: int("k", kf, k),
                    smooth_k: int("smoothK", sf, smooth_k),
                    d: int("d", df, d),
                }
            }
            Params::Bbands { period, stddev, .. } => {
                let stddev = match take(self, STDDEV) {
                    None => stddev,
                    Some(f) => {
                        let expected = StdDevMultiplier::new(f64::NAN)
                            .err()
                            .map_or_else(|| "a positive number".to_owned(), |e| e.expected);
                        match f.value.as_f64().map(StdDevMultiplier::new) {
                            Some(Ok(m)) => m,
                            _ => {
                                self.err(&f.path, expected);
                                stddev
                            }
                        }
                    }
                };
                Params::Bbands {
                    period: int("period", period_f, period),
                    stddev,
                    source,
                }
            }
        };

        // IndicatorSpec::new reports one bad setting at a time: report it, reset it to its
        // default, and ask again, so every bad setting gets its own error.
        let mut params = params;
        for _ in 0..8 {
            match IndicatorSpec::new(kind, params) {
                Ok(spec) => {
                    return (self.errs.len() == errors_before).then_some(spec);
                }
                Err(SpecError::Setting { source, .. }) => {
                    let at = paths
                        .iter()
                        .find(|(name, _)| *name == source.setting)
                        .map_or_else(|| settings_path.to_owned(), |(_, p)| p.clone());
                    self.err(at, source.expected.clone());
                    params = reset_setting(params, defaults, source.setting)?;
                }
                Err(e) => {
                    self.err(settings_path, e.to_string());
                    return None;
                }
            }
        }
        None
    }

    // -----------------------------------------------------------------------------------------
    // Operators

    fn test(&mut self, op: Op, c: &LeafParts<'_>, s: OpSettings) -> Option<Test> {
        let name = op.name();
        if !op.is_channel() {
            for f in [&c.rhs2, &c.lower, &c.upper].into_iter().flatten() {
                self.err(
                    &f.path,
                    format!("not used by {name} (only by the channel operators)"),
                );
            }
        }
        match op {
            Op::Gt
            | Op::Lt
            | Op::Ge
            | Op::Le
            | Op::Eq
            | Op::CrossAbove
            | Op::CrossBelow
            | Op::Cross => {
                let (bound, at) = self.single_bound(op, c)?;
                self.not_self(c, &bound, &at)?;
                Some(match op {
                    Op::Gt => Test::Greater(bound),
                    Op::Lt => Test::Less(bound),
                    Op::Ge => Test::GreaterOrEqual(bound),
                    Op::Le => Test::LessOrEqual(bound),
                    Op::Eq => Test::Equals {
                        rhs: bound,
                        tolerance: s.tolerance,
                    },
                    Op::CrossAbove => Test::CrossesAbove(bound),
                    Op::CrossBelow => Test::CrossesBelow(bound),
                    _ => Test::Crosses(bound),
                })
            }
            Op::Divergence | Op::Convergence => {
                if let Some(f) = &c.cv {
                    self.err(
                        &f.path,
                        format!("not used by {name} (it compares two series' changes)"),
                    );
                }
                let cw = c.cw.as_ref().map(|(cw, _)| *cw);
                if let Some((Cw::Value, at)) = &c.cw {
                    self.err(
                        at,
                        format!("price, volume or indicator_component ({name} needs a series)"),
                    );
                    return None;
                }
                let (other, at) = match (&c.rhs, cw) {
                    (Some(f), _) => (self.rhs_one(f, c)?, f.path.clone()),
                    (None, Some(Cw::Indicator)) => {
                        self.missing(
                            &c.path,
                            "rhs",
                            "an indicator operand (compareWith is indicator_component)",
                        );
                        return None;
                    }
                    (None, Some(Cw::Volume)) => (
                        self.default_series(c, PriceSource::Volume),
                        child(&c.path, "rhs"),
                    ),
                    (None, _) => (
                        self.default_series(c, PriceSource::Close),
                        child(&c.path, "rhs"),
                    ),
                };
                self.not_self(c, &Bound::Series(other), &at)?;
                Some(if op == Op::Divergence {
                    Test::Divergence {
                        other,
                        lookback: s.lookback,
                        direction: s.direction,
                    }
                } else {
                    Test::Convergence {
                        other,
                        lookback: s.lookback,
                    }
                })
            }
            Op::Entering | Op::Exiting | Op::Inside | Op::Outside => {
                let (lower, upper) = self.channel(name, c)?;
                Some(match op {
                    Op::Entering => Test::EnteringChannel { lower, upper },
                    Op::Exiting => Test::ExitingChannel { lower, upper },
                    Op::Inside => Test::InsideChannel { lower, upper },
                    _ => Test::OutsideChannel { lower, upper },
                })
            }
            Op::MovingUp | Op::MovingDown => {
                if let Some(f) = &c.rhs {
                    self.err(
                        &f.path,
                        format!("not used by {name} (it watches the left-hand series alone)"),
                    );
                }
                if let Some((cw, at)) = &c.cw
                    && *cw != Cw::Value
                {
                    self.err(
                        at,
                        format!("value ({name} takes a percentage in compareValue)"),
                    );
                }
                let expected = "the percentage, a number > 0";
                let Some(f) = &c.cv else {
                    self.missing(&c.path, "compareValue", expected);
                    return None;
                };
                let pct = self.number(f, expected)?;
                if pct <= 0.0 {
                    self.err(&f.path, expected);
                    return None;
                }
                Some(if op == Op::MovingUp {
                    Test::MovingUpPct { pct, bars: s.bars }
                } else {
                    Test::MovingDownPct { pct, bars: s.bars }
                })
            }
        }
    }

    /// The right-hand side of a comparison or crossing, and the path it came from.
    fn single_bound(&mut self, op: Op, c: &LeafParts<'_>) -> Option<(Bound, String)> {
        let name = op.name();
        let cv_path = child(&c.path, "compareValue");
        let rhs_path = child(&c.path, "rhs");
        let value = |p: &mut Parser, f: &Field<'_>| {
            p.number(f, "a number")
                .map(|v| (Bound::Value(v), f.path.clone()))
        };
        match &c.cw {
            Some((Cw::Value, _)) => {
                if let Some(f) = &c.rhs {
                    self.err(&f.path, "not used when compareWith is value");
                }
                match &c.cv {
                    Some(f) => value(self, f),
                    None => {
                        self.err(cv_path, "missing: expected a number (compareWith is value)");
                        None
                    }
                }
            }
            Some((cw, cw_path)) => {
                if let Some(f) = &c.cv {
                    self.err(
                        &f.path,
                        format!("not used when compareWith is {}", cw.name()),
                    );
                }
                match (&c.rhs, cw) {
                    (Some(f), _) => self
                        .rhs_one(f, c)
                        .map(|o| (Bound::Series(o), f.path.clone())),
                    (None, Cw::Price) => Some((
                        Bound::Series(self.default_series(c, PriceSource::Close)),
                        cw_path.clone(),
                    )),
                    (None, Cw::Volume) => Some((
                        Bound::Series(self.default_series(c, PriceSource::Volume)),
                        cw_path.clone(),
                    )),
                    (None, _) => {
                        self.err(
                            rhs_path,
                            "missing: expected an indicator operand like {\"indicator\": \"EMA\", \"settings\": {\"length\": 20}} (compareWith is indicator_component)",
                        );
                        None
                    }
                }
            }
            None => match (&c.cv, &c.rhs) {
                (Some(f), None) => value(self, f),
                (None, Some(f)) => self
                    .rhs_one(f, c)
                    .map(|o| (Bound::Series(o), f.path.clone())),
                (Some(_), Some(f)) => {
                    self.err(&f.path, "either compareValue or rhs, not both");
                    None
                }
                (None, None) if c.cw_invalid => None,
                (None, None) => {
                    self.err(
                        cv_path,
                        format!(
                            "missing: {name} needs a number (compareValue) or an operand (rhs, or compareWith price/volume)"
                        ),
                    );
                    None
                }
            },
        }
    }

    fn default_series(&self, c: &LeafParts<'_>, source: PriceSource) -> Operand {
        Operand {
            timeframe: c.tf,
            series: Series::Price(source),
        }
    }

    /// Parses `f` as an operand (an indicator component, price or volume).
    fn rhs_one(&mut self, f: &Field<'_>, c: &LeafParts<'_>) -> Option<Operand> {
        match self.operand(f, c, false)? {
            Rhs::One(o) => Some(o),
            Rhs::Band { .. } => None,
        }
    }

    fn operand(&mut self, f: &Field<'_>, c: &LeafParts<'_>, allow_band: bool) -> Option<Rhs> {
        let mut o = self.object(
            f.value,
            &f.path,
            "an operand like {\"indicator\": \"EMA\", \"component\": \"EMA\", \"settings\": {\"length\": 20}} or {\"type\": \"price\"}",
        )?;
        let errors_before = self.errs.len();
        let cw_kind = c.cw.as_ref().and_then(|(cw, _)| cw.kind());
        let kind = match o.take(self, &["type"]) {
            Some(t) => self
                .str(&t, "one of indicator, price, volume")
                .and_then(|s| {
                    let k = Kind::parse(s);
                    match (k, cw_kind) {
                        (None, _) => self.err(&t.path, "one of indicator, price, volume"),
                        (Some(k), Some(cwk)) if k != cwk => {
                            if let Some((cw, _)) = &c.cw {
                                self.err(
                                    &t.path,
                                    format!("{} (compareWith is {})", kind_name(cwk), cw.name()),
                                );
                            }
                        }
                        _ => {}
                    }
                    k
                }),
            None if o.has(&["indicator"]) => {
                if let (Some(cwk), Some((cw, _))) = (cw_kind, &c.cw)
                    && cwk != Kind::Indicator
                {
                    self.err(
                        &f.path,
                        format!(
                            "a {} operand (compareWith is {})",
                            kind_name(cwk),
                            cw.name()
                        ),
                    );
                }
                Some(Kind::Indicator)
            }
            None => match cw_kind {
                Some(k) => Some(k),
                None => {
                    self.missing(
                        &f.path,
                        "type",
                        "one of indicator, price, volume (or an indicator key)",
                    );
                    None
                }
            },
        };
        let tf = match o.take(self, &["timeframe"]) {
            None => Some(c.tf),
            Some(t) => self.timeframe(&t, c.tf),
        };
        let settings_path = child(&f.path, "settings");
        let settings_f = o.take(self, &["settings"]);
        let mut settings = match (&settings_f, kind) {
            (Some(s), Some(Kind::Price | Kind::Volume)) => {
                self.err(&s.path, "no settings on a price or volume operand");
                None
            }
            (Some(s), _) => self.object(s.value, &s.path, "an object of settings"),
            (None, _) => None,
        };
        let (rhs, reads) = match kind {
            Some(kind) => self.series(
                &mut o,
                kind,
                settings.as_mut(),
                &settings_path,
                tf.unwrap_or(c.tf),
                allow_band,
            ),
            None => {
                for key in ["indicator", "component", "period", "source"] {
                    o.take(self, &[key]);
                }
                (None, Reads::Unknown)
            }
        };
        o.finish(self, OPERAND_KEYS);
        if let (Some(s), Some(keys)) = (settings, reads.settings_keys()) {
            s.finish(self, keys);
        }
        if self.errs.len() != errors_before {
            return None;
        }
        tf?;
        rhs
    }

    /// Refuses an operand equal to the condition's left-hand side.
    fn not_self(&mut self, c: &LeafParts<'_>, b: &Bound, at: &str) -> Option<()> {
        match (b, c.lhs) {
            (Bound::Series(o), Some(lhs)) if *o == lhs => {
                self.err(
                    at,
                    format!(
                        "a different operand: this compares the series with itself ({} on {})",
                        describe(&lhs.series),
                        lhs.timeframe
                    ),
                );
                None
            }
            _ => Some(()),
        }
    }

    fn channel(&mut self, name: &str, c: &LeafParts<'_>) -> Option<(Bound, Bound)> {
        if let Some(f) = &c.cv {
            self.err(
                &f.path,
                format!("not used by {name} (give lowerBound/upperBound or rhs/rhs2)"),
            );
        }
        for (a, b) in [(&c.rhs, &c.lower), (&c.rhs2, &c.upper)] {
            if let (Some(a), Some(b)) = (a, b) {
                self.err(&b.path, format!("either `{}` or this, not both", a.path));
                return None;
            }
        }
        let mut lower: Option<(Bound, String)> = None;
        let mut upper: Option<(Bound, String)> = None;
        let mut failed = false;
        let bound_num = |p: &mut Parser, f: &Field<'_>| {
            p.number(f, "a number")
                .map(|v| (Bound::Value(v), f.path.clone()))
        };
        if let Some(f) = &c.rhs {
            match self.operand(f, c, true) {
                Some(Rhs::One(o)) => lower = Some((Bound::Series(o), f.path.clone())),
                Some(Rhs::Band { lower: l, upper: u }) => {
                    if let Some(g) = c.rhs2.as_ref().or(c.upper.as_ref()) {
                        self.err(
                            &g.path,
                            "not used: the upper bound is the Upper band of the BBANDS in rhs",
                        );
                        return None;
                    }
                    lower = Some((Bound::Series(l), f.path.clone()));
                    upper = Some((Bound::Series(u), f.path.clone()));
                }
                None => failed = true,
            }
        } else if let Some(f) = &c.lower {
            lower = bound_num(self, f);
            failed |= lower.is_none();
        }
        if upper.is_none() {
            if let Some(f) = &c.rhs2 {
                upper = self
                    .rhs_one(f, c)
                    .map(|o| (Bound::Series(o), f.path.clone()));
                failed |= upper.is_none();
            } else if let Some(f) = &c.upper {
                upper = bound_num(self, f);
                failed |= upper.is_none();
            }
        }
        if !failed && lower.is_none() {
            self.missing(
                &c.path,
                "lowerBound",
                &format!(
                    "the lower bound of {name}: lowerBound (a number), rhs (an operand), or rhs = a BBANDS without component"
                ),
            );
        }
        if !failed && upper.is_none() {
            self.missing(
                &c.path,
                "upperBound",
                &format!("the upper bound of {name}: upperBound (a number) or rhs2 (an operand)"),
            );
        }
        let (lower, lower_at) = lower?;
        let (upper, upper_at) = upper?;
        if let (Bound::Value(l), Bound::Value(u)) = (lower, upper)
            && l > u
        {
            self.err(
                &lower_at,
                format!("a lower bound <= the upper bound ({l} > {u})"),
            );
            return None;
        }
        let a = self.not_self(c, &lower, &lower_at);
        let b = self.not_self(c, &upper, &upper_at);
        a.and(b)?;
        Some((lower, upper))
    }

    // -----------------------------------------------------------------------------------------
    // Actions

    fn actions(
        &mut self,
        action: Option<Field<'_>>,
        actions: Option<Field<'_>>,
        path: &str,
    ) -> Option<Vec<Action>> {
        let mut out = Vec::new();
        let mut ok = true;
        let mut count = 0;
        if let Some(f) = &action {
            count += 1;
            match self.action(f.value, &f.path) {
                Some(a) => out.push(a),
                None => ok = false,
            }
        }
        if let Some(f) = &actions {
            match f.value {
                Value::Array(items) => {
                    if items.is_empty() && action.is_none() {
                        self.err(&f.path, "at least one action");
                        return None;
                    }
                    count += items.len();
                    if count > MAX_ACTIONS {
                        self.err(
                            &f.path,
                            format!("at most {MAX_ACTIONS} actions in all (got {count})"),
                        );
                        return None;
                    }
                    for (i, item) in items.iter().enumerate() {
                        match self.action(item, &index(i, &f.path)) {
                            Some(a) => out.push(a),
                            None => ok = false,
                        }
                    }
                }
                other => {
                    self.err(
                        &f.path,
                        format!("an array of actions (got {})", type_name(other)),
                    );
                    ok = false;
                }
            }
        }
        if action.is_none() && actions.is_none() {
            self.missing(
                path,
                "action",
                "an action: {\"type\": \"notify\"}, {\"type\": \"webhook\", \"url\": ...}, {\"type\": \"bot\", \"bot_id\": ...} or {\"type\": \"bot_trigger\", ...} (or `actions`: an array of them)",
            );
            return None;
        }
        ok.then_some(out)
    }

    fn action(&mut self, value: &Value, path: &str) -> Option<Action> {
        let expected_type = "one of notify, webhook, bot, bot_trigger";
        let mut o = self.object(value, path, "an action object")?;
        let errors_before = self.errs.len();
        let Some(tf) = o.take(self, &["type"]) else {
            self.missing(path, "type", expected_type);
            return None;
        };
        let ty = self.str(&tf, expected_type)?;
        let action = match ty.trim().to_ascii_lowercase().as_str() {
            "notify" | "notification" => {
                let title = o.take(self, &["title"]).and_then(|f| self.text(&f, 256));
                o.finish(self, &["type", "title"]);
                Action::Notify { title }
            }
            "webhook" => {
                let url = match o.take(self, &["url"]) {
                    None => {
                        self.missing(path, "url", "an absolute http:// or https:// URL");
                        None
                    }
                    Some(f) => self
                        .str(&f, "an absolute http:// or https:// URL")
                        .and_then(|s| {
                            check_url(s)
                                .map(|()| s.to_owned())
                                .map_err(|e| self.err(&f.path, e))
                                .ok()
                        }),
                };
                let secret = o.take(self, &["secret"]).and_then(|f| {
                    let s = self.str(&f, "a string")?;
                    check_secret(s)
                        .map(|()| s.to_owned())
                        .map_err(|e| self.err(&f.path, e))
                        .ok()
                });
                let body = match o.take(self, &["body"]) {
                    None => WebhookBody::Envelope,
                    Some(f) => {
                        let expected = "envelope or message";
                        match self
                            .str(&f, expected)
                            .map(|s| s.trim().to_ascii_lowercase())
                        {
                            Some(s) if s == "envelope" => WebhookBody::Envelope,
                            Some(s) if s == "message" => WebhookBody::Message,
                            Some(_) => {
                                self.err(&f.path, expected);
                                WebhookBody::Envelope
                            }
                            None => WebhookBody::Envelope,
                        }
                    }
                };
                o.finish(self, &["type", "url", "secret", "body"]);
                Action::Webhook {
                    url: url?,
                    secret,
                    body,
                }
            }
            "bot" => {
                let bot_id = self.bot_id(&mut o, path);
                o.finish(self, &["type", "bot_id"]);
                Action::Bot { bot_id: bot_id? }
            }
            "bot_trigger" => {
                let bot_id = self.bot_id(&mut o, path);
                let expected = "one of execute_entry, execute_dca, take_profit, stop_loss";
                let action_type = match o.take(self, &["action_type"]) {
                    None => {
                        self.missing(path, "action_type", expected);
                        None
                    }
                    Some(f) => self.str(&f, expected).and_then(|s| {
                        match s.trim().to_ascii_lowercase().as_str() {
                            "execute_entry" => Some(BotActionType::ExecuteEntry),
                            "execute_dca" => Some(BotActionType::ExecuteDca),
                            "take_profit" => Some(BotActionType::TakeProfit),
                            "stop_loss" => Some(BotActionType::StopLoss),
                            _ => {
                                self.err(&f.path, expected);
                                None
                            }
                        }
                    }),
                };
                let dca_f = o.take(self, &["dca_index"]);
                let dca_index = match (action_type, dca_f) {
                    (Some(BotActionType::ExecuteDca), None) => {
                        self.missing(
                            path,
                            "dca_index",
                            "an integer >= 0 (required for execute_dca)",
                        );
                        None
                    }
                    (Some(BotActionType::ExecuteDca), Some(f)) => self
                        .uint(&f, 0, u64::from(u32::MAX))
                        .map(|v| Some(v as u32)),
                    (Some(_), Some(f)) => {
                        self.err(&f.path, "no dca_index: it is only for execute_dca");
                        None
                    }
                    (_, _) => Some(None),
                };
                o.finish(self, &["type", "bot_id", "action_type", "dca_index"]);
                Action::BotTrigger {
                    bot_id: bot_id?,
                    action_type: action_type?,
                    dca_index: dca_index?,
                }
            }
            _ => {
                self.err(&tf.path, expected_type);
                return None;
            }
        };
        (self.errs.len() == errors_before).then_some(action)
    }

    fn bot_id(&mut self, o: &mut Obj<'_>, path: &str) -> Option<String> {
        let expected = "a bot id: a string of 1 to 128 characters or an integer >= 0";
        let Some(f) = o.take(self, &["bot_id"]) else {
            self.missing(path, "bot_id", expected);
            return None;
        };
        match f.value {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64().map(|v| v.to_string()),
            Value::String(s)
                if (1..=128).contains(&s.chars().count())
                    && !s.chars().any(char::is_control)
                    && !s.trim().is_empty() =>
            {
                Some(s.clone())
            }
            _ => {
                self.err(&f.path, expected);
                None
            }
        }
    }
}

/// The first of two fields naming one setting; the second is an error.
fn merge<'a>(p: &mut Parser, a: Option<Field<'a>>, b: Option<Field<'a>>) -> Option<Field<'a>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            p.err(
                &b.path,
                format!(
                    "only one of `{}` and this (they are the same setting)",
                    a.path
                ),
            );
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

/// `params` with the setting `name` back at its default; `None` for an unknown name.
fn reset_setting(params: Params, defaults: Params, name: &str) -> Option<Params> {
    Some(match (params, defaults, name) {
        (Params::Length(_), Params::Length(d), "period") => Params::Length(d),
        (Params::LengthOf(_, s), Params::LengthOf(d, _), "period") => Params::LengthOf(d, s),
        (
            Params::Macd {
                fast: f,
                slow: sl,
                signal: sg,
                source,
            },
            Params::Macd {
                fast, slow, signal, ..
            },
            n,
        ) => match n {
            "fast" => Params::Macd {
                fast,
                slow: sl,
                signal: sg,
                source,
            },
            "slow" => Params::Macd {
                fast: f,
                slow,
                signal: sg,
                source,
            },
            "signal" => Params::Macd {
                fast: f,
                slow: sl,
                signal,
                source,
            },
            _ => return None,
        },
        (Params::Bbands { stddev, source, .. }, Params::Bbands { period, .. }, "period") => {
            Params::Bbands {
                period,
                stddev,
                source,
            }
        }
        (
            Params::Stoch { k, smooth_k, d },
            Params::Stoch {
                k: dk,
                smooth_k: ds,
                d: dd,
            },
            n,
        ) => match n {
            "k" => Params::Stoch { k: dk, smooth_k, d },
            "smoothK" => Params::Stoch { k, smooth_k: ds, d },
            "d" => Params::Stoch { k, smooth_k, d: dd },
            _ => return None,
        },
        _ => return None,
    })
}

/// A non-negative integer; `14.0` counts, `14.5` does not.
fn as_uint(v: &Value) -> Option<u64> {
    let Value::Number(n) = v else {
        return None;
    };
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15)
            .map(|f| f as u64)
    })
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Indicator => "indicator",
        Kind::Price => "price",
        Kind::Volume => "volume",
    }
}

fn describe(s: &Series) -> String {
    match s {
        Series::Price(p) => p.as_str().to_owned(),
        Series::Indicator { spec, component } => {
            let names = spec.kind().components();
            match names.get(*component) {
                Some(c) if names.len() > 1 => format!("{spec} {c}"),
                _ => spec.to_string(),
            }
        }
    }
}

/// An absolute http(s) URL with a host.
fn check_url(s: &str) -> Result<(), String> {
    const EXPECTED: &str = "an absolute http:// or https:// URL with a host";
    if s.len() > 2048 {
        return Err(format!("{EXPECTED}, at most 2048 characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{EXPECTED}, without spaces or control characters"));
    }
    let lower = s.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return Err(EXPECTED.to_owned());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let v6 = host_port.starts_with('[');
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else {
            return Err(format!("{EXPECTED} (unclosed [ in the host)"));
        };
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("{EXPECTED} (bad IPv6 address)"));
        }
        match after {
            "" => (inside, None),
            a => match a.strip_prefix(':') {
                Some(p) => (inside, Some(p)),
                None => return Err(format!("{EXPECTED} (bad port)")),
            },
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{EXPECTED} (the host is missing)"));
    }
    if !v6
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return Err(format!(
            "{EXPECTED} (the host may hold only ASCII letters, digits, '-', '.' and '_'; punycode for international names)"
        ));
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n));
        if !ok {
            return Err(format!("{EXPECTED} (the port must be 1 to 65535)"));
        }
    }
    Ok(())
}

/// `whsec_` + base64 of at least 16 bytes, or any other 16 to 1024 characters.
fn check_secret(s: &str) -> Result<(), String> {
    const EXPECTED: &str = "a secret: whsec_ followed by base64 of at least 16 bytes, or 16 to 1024 other characters without control characters";
    if s.chars().any(char::is_control) || s.len() > 1024 {
        return Err(EXPECTED.to_owned());
    }
    match s.strip_prefix("whsec_") {
        Some(b64) => match base64_len(b64) {
            Some(n) if n >= 16 => Ok(()),
            _ => Err(EXPECTED.to_owned()),
        },
        None if s.chars().count() >= 16 => Ok(()),
        None => Err(EXPECTED.to_owned()),
    }
}

/// The decoded length of standard base64 (padding optional), if `s` is valid.
fn base64_len(s: &str) -> Option<usize> {
    let body = s.trim_end_matches('=');
    let pad = s.len() - body.len();
    if pad > 2
        || body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    if (pad > 0 && !s.len().is_multiple_of(4)) || body.len() % 4 == 1 {
        return None;
    }
    Some(body.len() * 6 / 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn alert(conditions: Value) -> Value {
        json!({
            "symbol": "BTCUSDT",
            "base_timeframe": "1h",
            "conditions": conditions,
            "action": {"type": "notify"}
        })
    }

    fn one(condition: Value) -> Value {
        alert(json!([condition]))
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn price_gt() -> Value {
        json!({"type": "price", "operator": ">", "compareValue": 1})
    }

    fn ok(v: &Value) -> AlertDefinition {
        match parse_alert(v) {
            Ok(d) => d,
            Err(e) => panic!("expected to parse, got: {e}"),
        }
    }

    fn errors(v: &Value) -> Vec<(String, String)> {
        match parse_alert(v) {
            Ok(d) => panic!("expected errors, parsed: {d:?}"),
            Err(e) => {
                assert!(!e.0.is_empty());
                e.0.into_iter().map(|e| (e.path, e.expected)).collect()
            }
        }
    }

    fn paths(v: &Value) -> Vec<String> {
        errors(v).into_iter().map(|(p, _)| p).collect()
    }

    /// The single error of `v`, as (path, expected).
    fn error(v: &Value) -> (String, String) {
        let mut e = errors(v);
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    fn leaf(v: &Value) -> Condition {
        let def = ok(v);
        let leaves = def.leaves();
        assert_eq!(leaves.len(), 1);
        leaves[0].clone()
    }

    fn test_of(condition: Value) -> Test {
        leaf(&one(condition)).test
    }

    fn spec(s: &str) -> IndicatorSpec {
        match s.parse() {
            Ok(s) => s,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn ind(s: &str, component: usize, timeframe: Timeframe) -> Operand {
        Operand {
            timeframe,
            series: Series::Indicator {
                spec: spec(s),
                component,
            },
        }
    }

    fn price(source: PriceSource, timeframe: Timeframe) -> Operand {
        Operand {
            timeframe,
            series: Series::Price(source),
        }
    }

    fn s(x: &str) -> String {
        x.to_owned()
    }

    // --- the alert ---------------------------------------------------------------------------

    #[test]
    fn minimal_alert_takes_the_defaults() {
        let def = ok(&alert(json!([price_gt()])));
        assert_eq!(def.id, None);
        assert_eq!(def.user_id, None);
        assert_eq!(def.name, "alert");
        assert_eq!(def.symbol.as_str(), "BTCUSDT");
        assert_eq!(def.base_timeframe, Timeframe::H1);
        assert_eq!(def.logic, Logic::And);
        assert_eq!(def.trigger, TriggerMode::OncePerBar);
        assert_eq!(def.debounce_bars, 1);
        assert_eq!(def.message, None);
        assert_eq!(def.expires_at, None);
        assert_eq!(def.actions, vec![Action::Notify { title: None }]);
        assert_eq!(
            def.conditions,
            vec![ConditionNode::Leaf(Condition {
                id: s("c1"),
                timeframe: Timeframe::H1,
                lhs: price(PriceSource::Close, Timeframe::H1),
                test: Test::Greater(Bound::Value(1.0)),
            })]
        );
    }

    #[test]
    fn name_defaults_to_the_id_and_nulls_are_absent() {
        let v = with(alert(json!([price_gt()])), "alert_id", json!("bot_1_entry"));
        let def = ok(&v);
        assert_eq!(def.id.as_ref().map(AlertId::as_str), Some("bot_1_entry"));
        assert_eq!(def.name, "bot_1_entry");
        let v = with(v, "name", json!("  "));
        assert_eq!(ok(&v).name, "bot_1_entry");
        let v = with(v, "message", Value::Null);
        let v = with(v, "user_id", Value::Null);
        assert_eq!(ok(&v).message, None);
        let v = with(v, "name", json!("Dip"));
        assert_eq!(ok(&v).name, "Dip");
    }

    #[test]
    fn camel_and_snake_spellings_of_every_key() {
        let v = json!({
            "alertId": "a.1",
            "userId": "u1",
            "symbol": "ethusdt",
            "baseTimeframe": "4h",
            "condition_logic": "or",
            "conditions": [
                {"id": "x", "type": "indicator", "indicator": "rsi", "compare_with": "value",
                 "compare_value": 70, "operator": ">=", "settings": {"length": 7.0}},
                {"type": "price", "operator": "between", "lower_bound": 1, "upperBound": 2},
                {"type": "indicator", "indicator": "stoch", "component": "%K",
                 "settings": {"k": 5, "smooth_k": 2, "d": 2}, "operator": "<", "compareValue": 20}
            ],
            "actions": [{"type": "bot_trigger", "botId": 7, "actionType": "take_profit"}],
            "fire_mode": "per_close",
            "debounceBars": 3.0,
            "expiresAt": "2025-01-31T00:00:00Z"
        });
        let def = ok(&v);
        assert_eq!(def.id.as_ref().map(AlertId::as_str), Some("a.1"));
        assert_eq!(def.user_id.as_deref(), Some("u1"));
        assert_eq!(def.symbol.as_str(), "ETHUSDT");
        assert_eq!(def.base_timeframe, Timeframe::H4);
        assert_eq!(def.logic, Logic::Or);
        assert_eq!(def.trigger, TriggerMode::OncePerBarClose);
        assert_eq!(def.debounce_bars, 3);
        assert_eq!(
            def.expires_at,
            Some(BarTime::from_millis(1_738_281_600_000))
        );
        assert_eq!(
            def.actions,
            vec![Action::BotTrigger {
                bot_id: s("7"),
                action_type: BotActionType::TakeProfit,
                dca_index: None
            }]
        );
        let leaves = def.leaves();
        assert_eq!(leaves[0].lhs, ind("RSI(7)", 0, Timeframe::H4));
        assert_eq!(leaves[0].test, Test::GreaterOrEqual(Bound::Value(70.0)));
        assert_eq!(
            leaves[1].test,
            Test::InsideChannel {
                lower: Bound::Value(1.0),
                upper: Bound::Value(2.0)
            }
        );
        assert_eq!(leaves[2].lhs, ind("STOCH(5,2,2)", 0, Timeframe::H4));
        assert_eq!(
            leaves.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["x", "c2", "c3"]
        );
    }

    #[test]
    fn other_spellings_are_unknown_keys() {
        let v = with(alert(json!([price_gt()])), "Symbol", json!("BTCUSDT"));
        let (path, expected) = error(&v);
        assert_eq!(path, "Symbol");
        assert!(
            expected
                .starts_with("unknown key: expected one of id, alert_id, user_id, name, symbol"),
            "{expected}"
        );
    }

    #[test]
    fn two_spellings_of_one_key_are_refused() {
        let v = with(alert(json!([price_gt()])), "id", json!("a"));
        let v = with(v, "alert_id", json!("b"));
        assert_eq!(
            error(&v),
            (
                s("id"),
                s("only one of `alert_id` and `id` (they are the same key)")
            )
        );

        let v = with(alert(json!([price_gt()])), "trigger", json!("once"));
        let v = with(v, "fireMode", json!("per_bar"));
        assert_eq!(error(&v).0, "trigger");

        let v = one(json!({"type": "price", "operator": ">", "compareValue": 1,
                           "compareWith": "value", "compare_with": "value"}));
        assert_eq!(error(&v).0, "conditions[0].compare_with");

        let v = one(
            json!({"indicator": "RSI", "operator": ">", "compareValue": 1,
                           "settings": {"length": 14, "period": 14}}),
        );
        assert_eq!(error(&v).0, "conditions[0].settings.period");

        let v = one(
            json!({"indicator": "RSI", "operator": ">", "compareValue": 1,
                           "period": 14, "settings": {"length": 14}}),
        );
        assert_eq!(
            error(&v),
            (
                s("conditions[0].settings.length"),
                s("only one of `conditions[0].period` and this (they are the same setting)")
            )
        );
    }

    #[test]
    fn unknown_keys_everywhere_are_reported_with_the_accepted_keys() {
        let v = json!({
            "symbol": "BTCUSDT", "base_timeframe": "1h", "status": "active",
            "my key": 1,
            "conditions": [{"indicator": "RSI", "operator": "<", "compareValue": 30,
                            "offset": 1, "settings": {"length": 14, "smoothing": 2}},
                           {"type": "price", "operator": ">",
                            "rhs": {"indicator": "EMA", "shift": 1},
                            "settings": {"tolerance": 1}}],
            "action": {"type": "webhook", "url": "https://x.io", "method": "POST"}
        });
        let e = errors(&v);
        let got: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            got,
            [
                "conditions[0].offset",
                "conditions[0].settings.smoothing",
                "conditions[1].settings.tolerance",
                "conditions[1].rhs.shift",
                "action.method",
                "[\"my key\"]",
                "status",
            ]
        );
        assert_eq!(
            e[1].1,
            "unknown key: expected one of length, period, source (camelCase or snake_case)"
        );
        assert_eq!(e[2].1, "unknown key: no keys are accepted here");
        assert_eq!(
            e[4].1,
            "unknown key: expected one of type, url, secret, body (camelCase or snake_case)"
        );
    }

    #[test]
    fn required_keys_are_reported_missing() {
        let e = errors(&json!({}));
        let got: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(got, ["symbol", "base_timeframe", "conditions", "action"]);
        assert_eq!(e[0].1, "missing: expected a symbol like BTCUSDT");
        assert_eq!(
            error(&json!([])),
            (s(""), s("an alert object (got an array)"))
        );
        let v = with(alert(json!([price_gt()])), "symbol", Value::Null);
        assert_eq!(error(&v).0, "symbol");
    }

    #[test]
    fn many_independent_errors_are_collected() {
        let v = json!({
            "symbol": "BTC/USDT", "base_timeframe": "60m",
            "conditions": [
                {"indicator": "RSX", "operator": "<", "compareValue": 30},
                {"type": "price", "operator": "near", "compareValue": 1},
                {"type": "price", "operator": ">", "compareValue": "30"}
            ],
            "action": {"type": "webhook", "url": "ftp://example.com"},
            "debounce_bars": 0
        });
        let e = errors(&v);
        assert_eq!(
            e,
            vec![
                (
                    s("symbol"),
                    s(
                        "symbol \"BTC/USDT\" has '/': expected only ASCII letters and digits, like BTCUSDT"
                    )
                ),
                (
                    s("base_timeframe"),
                    s(
                        "unknown timeframe \"60m\": expected one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w"
                    )
                ),
                (s("conditions[0].indicator"), s(INDICATORS)),
                (s("conditions[1].operator"), s(OPERATORS)),
                (
                    s("conditions[2].compareValue"),
                    s("a number (got a string)")
                ),
                (
                    s("action.url"),
                    s("an absolute http:// or https:// URL with a host")
                ),
                (s("debounce_bars"), s("an integer from 1 to 10000")),
            ]
        );
        let shown = ValidationErrors(vec![
            FieldError::new("symbol", "a symbol"),
            FieldError::new("", "valid JSON"),
        ])
        .to_string();
        assert_eq!(shown, "symbol: a symbol; valid JSON");
    }

    #[test]
    fn trigger_modes_and_debounce() {
        let base = alert(json!([price_gt()]));
        for (given, want) in [
            ("once_per_bar", TriggerMode::OncePerBar),
            ("per_bar", TriggerMode::OncePerBar),
            ("once_per_bar_close", TriggerMode::OncePerBarClose),
            ("per_close", TriggerMode::OncePerBarClose),
            ("ONCE", TriggerMode::Once),
        ] {
            assert_eq!(
                ok(&with(base.clone(), "trigger", json!(given))).trigger,
                want
            );
            assert_eq!(
                ok(&with(base.clone(), "fireMode", json!(given))).trigger,
                want
            );
        }
        assert_eq!(
            error(&with(base.clone(), "trigger", json!("always"))).0,
            "trigger"
        );
        assert_eq!(
            ok(&with(base.clone(), "debounce_bars", json!(10000))).debounce_bars,
            10000
        );
        for bad in [json!(0), json!(2.5), json!(10001), json!(-1), json!("2")] {
            assert_eq!(
                error(&with(base.clone(), "debounce_bars", bad)),
                (s("debounce_bars"), s("an integer from 1 to 10000"))
            );
        }
    }

    #[test]
    fn not_before_forms() {
        let base = alert(json!([price_gt()]));
        let t = Some(BarTime::from_millis(1_738_281_600_000));
        assert_eq!(
            ok(&with(
                base.clone(),
                "not_before",
                json!("2025-01-31T00:00:00Z")
            ))
            .not_before,
            t
        );
        assert_eq!(
            ok(&with(
                base.clone(),
                "not_before",
                json!(1_738_281_600_000_i64)
            ))
            .not_before,
            t
        );
        assert_eq!(
            ok(&with(base.clone(), "not_before", Value::Null)).not_before,
            None
        );
        assert_eq!(ok(&base).not_before, None);
        let e = parse_alert(&with(base, "not_before", json!("soon"))).unwrap_err();
        assert!(e.has_path("not_before"), "{e:?}");
    }

    #[test]
    fn expires_at_forms() {
        let base = alert(json!([price_gt()]));
        let t = Some(BarTime::from_millis(1_738_281_600_000));
        assert_eq!(
            ok(&with(
                base.clone(),
                "expires_at",
                json!("2025-01-31T00:00:00Z")
            ))
            .expires_at,
            t
        );
        assert_eq!(
            ok(&with(base.clone(), "expires_at", json!("2025-01-31"))).expires_at,
            t
        );
        assert_eq!(
            ok(&with(
                base.clone(),
                "expires_at",
                json!(1_738_281_600_000_i64)
            ))
            .expires_at,
            t
        );
        assert_eq!(
            ok(&with(base.clone(), "expires_at", json!(1.7382816e12))).expires_at,
            t
        );
        assert_eq!(
            ok(&with(base.clone(), "expires_at", Value::Null)).expires_at,
            None
        );
        let (path, expected) = error(&with(base.clone(), "expires_at", json!(1_738_281_600)));
        assert_eq!(path, "expires_at");
        assert!(expected.contains("seconds?"), "{expected}");
        for bad in [json!("tomorrow"), json!(true), json!(-5), json!(1e300)] {
            assert_eq!(
                error(&with(base.clone(), "expires_at", bad)).0,
                "expires_at"
            );
        }
    }

    #[test]
    fn message_templates_read_this_alerts_condition_ids() {
        let v = with(
            alert(
                json!([price_gt(), {"id": "rsi", "indicator": "RSI", "operator": "<", "compareValue": 30}]),
            ),
            "message",
            json!("{{symbol}} {{c1.value}} {{rsi.value}}"),
        );
        assert_eq!(
            ok(&v).message.as_ref().map(Template::source),
            Some("{{symbol}} {{c1.value}} {{rsi.value}}")
        );
        let v = with(v, "message", json!("{{ema.value}}"));
        assert_eq!(
            error(&v),
            (
                s("message"),
                crate::template::TemplateError::Unknown(s("ema.value")).to_string()
            )
        );
        let v = with(v, "message", json!(""));
        assert_eq!(ok(&v).message, None);
    }

    // --- conditions --------------------------------------------------------------------------

    #[test]
    fn condition_type_is_inferred_from_indicator_or_required() {
        assert_eq!(
            leaf(&one(
                json!({"indicator": "EMA", "operator": ">", "compareValue": 1})
            ))
            .lhs,
            ind("EMA(20)", 0, Timeframe::H1)
        );
        assert_eq!(
            error(&one(json!({"operator": ">", "compareValue": 1}))),
            (
                s("conditions[0].type"),
                s("missing: expected one of indicator, price, volume (or an indicator key)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "candle", "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].type"),
                s("one of indicator, price, volume")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "indicator": "RSI", "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].indicator"),
                s("no `indicator` on a price operand (type is price)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "volume", "source": "open", "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].source"),
                s("no source on a volume operand (it reads the bar's volume)")
            )
        );
        assert_eq!(
            leaf(&one(
                json!({"type": "volume", "operator": ">", "compareValue": 1})
            ))
            .lhs,
            price(PriceSource::Volume, Timeframe::H1)
        );
        assert_eq!(
            leaf(&one(
                json!({"type": "price", "source": "HLC3", "operator": ">", "compareValue": 1})
            ))
            .lhs,
            price(PriceSource::Hlc3, Timeframe::H1)
        );
    }

    #[test]
    fn indicators_components_and_sources() {
        let c = |v: Value| leaf(&one(v)).lhs;
        assert_eq!(
            c(
                json!({"indicator": "Bollinger Bands", "component": "lower", "operator": ">", "compareValue": 1})
            ),
            ind("BBANDS(20,2)", 2, Timeframe::H1)
        );
        assert_eq!(
            c(
                json!({"indicator": "BB", "component": "Upper", "source": "hl2",
                     "settings": {"period": 10, "mult": 1.5}, "operator": ">", "compareValue": 1})
            ),
            ind("BBANDS(10,1.5,hl2)", 0, Timeframe::H1)
        );
        assert_eq!(
            c(
                json!({"indicator": "MACD", "component": "signal_line", "operator": ">", "compareValue": 1,
                     "settings": {"fast": 5, "slow": 35, "signal": 5, "source": "open"}})
            ),
            ind("MACD(5,35,5,open)", 1, Timeframe::H1)
        );
        assert_eq!(
            c(
                json!({"indicator": "Stochastic", "component": "D", "operator": ">", "compareValue": 1})
            ),
            ind("STOCH(14,3,3)", 1, Timeframe::H1)
        );
        assert_eq!(
            c(json!({"indicator": "OBV", "operator": ">", "compareValue": 1})),
            ind("OBV", 0, Timeframe::H1)
        );
        assert_eq!(
            c(
                json!({"indicator": "ADX", "component": "plus_di", "operator": ">", "compareValue": 1, "period": 10})
            ),
            ind("ADX(10)", 1, Timeframe::H1)
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "MACD", "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].component"),
                s("missing: expected one of MACD, Signal, Histogram (MACD has several)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "component": "Signal", "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].component"),
                s("one of RSI (components of RSI)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "ATR", "source": "open", "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].source"),
                s("no source: ATR reads the bar's own fields (it takes no source)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "MACD", "component": "MACD", "period": 9, "operator": ">", "compareValue": 1})
            )),
            (
                s("conditions[0].period"),
                s("no period: MACD takes settings fast, slow and signal")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "SMA", "source": "typical", "operator": ">", "compareValue": 1})
            )),
            (s("conditions[0].source"), s(PRICE_SOURCES))
        );
    }

    #[test]
    fn bad_settings_name_their_path_and_allowed_range() {
        let v = alert(json!([
            price_gt(),
            {"type": "price", "operator": "crosses_above",
             "rhs": {"indicator": "EMA", "settings": {"period": 14.5}}}
        ]));
        assert_eq!(
            error(&v),
            (
                s("conditions[1].rhs.settings.period"),
                s("an integer from at least 1 to 100000")
            )
        );

        let rsi = |settings: Value| {
            one(
                json!({"indicator": "RSI", "operator": "<", "compareValue": 30, "settings": settings}),
            )
        };
        assert_eq!(
            leaf(&rsi(json!({"length": 21.0}))).lhs,
            ind("RSI(21)", 0, Timeframe::H1)
        );
        for bad in [
            json!(1),
            json!(-14),
            json!(14.5),
            json!("14"),
            json!(100_001),
            json!("NaN"),
        ] {
            assert_eq!(
                error(&rsi(json!({"length": bad}))),
                (
                    s("conditions[0].settings.length"),
                    s("an integer from at least 2 to 100000")
                )
            );
        }

        // Every bad setting gets its own error.
        let v = one(
            json!({"indicator": "MACD", "component": "MACD", "operator": ">", "compareValue": 0,
                           "settings": {"fast": -3, "slow": "26", "signal": 0}}),
        );
        assert_eq!(
            errors(&v),
            vec![
                (
                    s("conditions[0].settings.fast"),
                    s("an integer from at least 2 to 100000")
                ),
                (
                    s("conditions[0].settings.slow"),
                    s("an integer from at least 2 to 100000")
                ),
                (
                    s("conditions[0].settings.signal"),
                    s("an integer from at least 1 to 100000")
                ),
            ]
        );
        let v = one(
            json!({"indicator": "STOCH", "component": "K", "operator": ">", "compareValue": 0,
                           "settings": {"k": 0, "smooth_k": 0.5, "d": 3}}),
        );
        assert_eq!(
            paths(&v),
            [
                "conditions[0].settings.k",
                "conditions[0].settings.smooth_k"
            ]
        );
        for bad in [json!("NaN"), json!(0), json!(-2), json!(2e6)] {
            let v = one(
                json!({"indicator": "BBANDS", "component": "Upper", "operator": ">",
                               "compareValue": 0, "settings": {"stdDev": bad}}),
            );
            assert_eq!(
                error(&v),
                (
                    s("conditions[0].settings.stdDev"),
                    s("a positive number up to 1e6")
                )
            );
        }
        // A failing setting does not hide its neighbours, nor the keys its indicator accepts.
        let v = one(
            json!({"indicator": "RSI", "operator": "equals", "compareValue": 0,
                           "settings": {"length": 0, "foo": 1}}),
        );
        assert_eq!(
            errors(&v),
            vec![
                (
                    s("conditions[0].settings.length"),
                    s("an integer from at least 2 to 100000")
                ),
                (
                    s("conditions[0].settings.foo"),
                    s(
                        "unknown key: expected one of tolerance, length, period, source (camelCase or snake_case)"
                    )
                ),
            ]
        );
        // An unknown indicator's settings are not judged (one error, not a cascade).
        let v = one(
            json!({"indicator": "ICHIMOKU", "operator": ">", "compareValue": 0,
                           "settings": {"tenkan": 9}}),
        );
        assert_eq!(paths(&v), ["conditions[0].indicator"]);
        let v = one(
            json!({"indicator": "OBV", "operator": ">", "compareValue": 0, "settings": {"length": 3}}),
        );
        assert_eq!(
            error(&v),
            (
                s("conditions[0].settings.length"),
                s("unknown key: no keys are accepted here")
            )
        );
        let v =
            one(json!({"indicator": "RSI", "operator": ">", "compareValue": 0, "settings": [14]}));
        assert_eq!(
            error(&v),
            (
                s("conditions[0].settings"),
                s("an object of settings (got an array)")
            )
        );
    }

    #[test]
    fn timeframes_of_conditions_and_operands() {
        let c = leaf(&one(
            json!({"type": "price", "operator": ">", "timeframe": "15m",
                                 "rhs": {"indicator": "SMA", "timeframe": "4h"}}),
        ));
        assert_eq!(c.timeframe, Timeframe::M15);
        assert_eq!(c.lhs, price(PriceSource::Close, Timeframe::M15));
        assert_eq!(
            c.test,
            Test::Greater(Bound::Series(ind("SMA(20)", 0, Timeframe::H4)))
        );
        let c = leaf(&one(
            json!({"type": "price", "operator": ">", "timeframe": "same",
                                 "rhs": {"indicator": "SMA", "timeframe": "same"}}),
        ));
        assert_eq!(c.timeframe, Timeframe::H1);
        assert_eq!(
            c.test,
            Test::Greater(Bound::Series(ind("SMA(20)", 0, Timeframe::H1)))
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "compareValue": 1, "timeframe": "2w"})
            ))
            .0,
            "conditions[0].timeframe"
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "rhs": {"indicator": "SMA", "timeframe": 60}})
            )),
            (
                s("conditions[0].rhs.timeframe"),
                s("\"same\" or one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w (got a number)")
            )
        );
    }

    #[test]
    fn condition_ids() {
        let def = ok(&alert(
            json!([price_gt(), {"id": "mine", "type": "price", "operator": "<", "compareValue": 9}, price_gt()]),
        ));
        assert_eq!(
            def.leaves()
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["c1", "mine", "c3"]
        );
        let dup = alert(json!([
            {"id": "a", "type": "price", "operator": ">", "compareValue": 1},
            {"id": "a", "type": "price", "operator": "<", "compareValue": 1}
        ]));
        assert_eq!(
            error(&dup),
            (
                s("conditions[1].id"),
                s("an id unique in the alert (\"a\" is also the id of conditions[0])")
            )
        );
        let clash = alert(json!([
            {"id": "c2", "type": "price", "operator": ">", "compareValue": 1},
            price_gt()
        ]));
        assert_eq!(
            error(&clash),
            (
                s("conditions[1]"),
                s("an explicit id: its default id \"c2\" is already the id of conditions[0]")
            )
        );
        for bad in [json!("rsi-1"), json!(""), json!("x".repeat(65)), json!(3)] {
            let v = one(json!({"id": bad, "type": "price", "operator": ">", "compareValue": 1}));
            assert_eq!(error(&v).0, "conditions[0].id");
        }
    }

    #[test]
    fn groups_nest_up_to_the_limit() {
        let v = with(
            alert(json!([
                price_gt(),
                {"logic": "OR", "conditions": [
                    {"type": "volume", "operator": ">", "compareValue": 5},
                    {"conditionLogic": "and", "id": "g2", "conditions": [price_gt()]}
                ]}
            ])),
            "logic",
            json!("AND"),
        );
        let def = ok(&v);
        assert_eq!(def.leaves().len(), 3);
        let ConditionNode::Group { logic, children } = &def.conditions[1] else {
            panic!("a group")
        };
        assert_eq!(*logic, Logic::Or);
        assert!(matches!(
            &children[1],
            ConditionNode::Group { logic: Logic::And, children } if children.len() == 1
        ));

        let nest = |levels: usize| {
            let mut node = price_gt();
            for _ in 0..levels {
                node = json!({"logic": "OR", "conditions": [node]});
            }
            alert(json!([node]))
        };
        // The root is depth 1: three nested groups reach MAX_GROUP_DEPTH.
        assert_eq!(ok(&nest(MAX_GROUP_DEPTH - 1)).leaves().len(), 1);
        let (path, expected) = error(&nest(MAX_GROUP_DEPTH));
        assert_eq!(
            path,
            "conditions[0].conditions[0].conditions[0].conditions[0]"
        );
        assert!(
            expected.starts_with("groups nested at most 4 deep"),
            "{expected}"
        );

        assert_eq!(
            error(&alert(json!([{"logic": "OR", "conditions": []}]))),
            (s("conditions[0].conditions"), s("at least one condition"))
        );
        assert_eq!(
            error(&alert(json!([]))),
            (s("conditions"), s("at least one condition"))
        );
        assert_eq!(
            error(&alert(json!({"a": 1}))),
            (s("conditions"), s("an array of conditions (got an object)"))
        );
        assert_eq!(
            error(&alert(
                json!([{"logic": "XOR", "conditions": [price_gt()]}])
            )),
            (s("conditions[0].logic"), s("AND or OR"))
        );
        assert_eq!(
            error(&alert(
                json!([{"logic": "OR", "conditions": [price_gt()], "operator": ">"}])
            ))
            .0,
            "conditions[0].operator"
        );
        assert_eq!(
            error(&alert(json!([7]))),
            (
                s("conditions[0]"),
                s("a condition or a group {\"logic\", \"conditions\"} (got a number)")
            )
        );
    }

    #[test]
    fn at_most_max_conditions_leaves() {
        let leaves = |n: usize| Value::Array(vec![price_gt(); n]);
        assert_eq!(
            ok(&alert(leaves(MAX_CONDITIONS))).leaves().len(),
            MAX_CONDITIONS
        );
        assert_eq!(
            error(&alert(leaves(MAX_CONDITIONS + 1))),
            (
                s("conditions"),
                s("at most 32 leaf conditions in all (got 33)")
            )
        );
        let split = json!([{"conditions": leaves(20)}, {"logic": "OR", "conditions": leaves(20)}]);
        assert_eq!(
            error(&alert(split)),
            (
                s("conditions"),
                s("at most 32 leaf conditions in all (got 40)")
            )
        );
    }

    // --- operators ---------------------------------------------------------------------------

    #[test]
    fn operator_names_and_aliases() {
        let one_value =
            |op: &str| test_of(json!({"type": "price", "operator": op, "compareValue": 2}));
        let v = Bound::Value(2.0);
        for op in [">", "gt", "greater_than", "above", "GreaterThan"] {
            assert_eq!(one_value(op), Test::Greater(v), "{op}");
        }
        for op in ["<", "lt", "less_than", "below"] {
            assert_eq!(one_value(op), Test::Less(v), "{op}");
        }
        for op in [">=", "gte", "ge", "greater_than_or_equal"] {
            assert_eq!(one_value(op), Test::GreaterOrEqual(v), "{op}");
        }
        for op in ["<=", "lte", "le", "less_or_equal"] {
            assert_eq!(one_value(op), Test::LessOrEqual(v), "{op}");
        }
        for op in ["equals", "==", "eq", "Equals"] {
            assert_eq!(
                one_value(op),
                Test::Equals {
                    rhs: v,
                    tolerance: 1e-9
                },
                "{op}"
            );
        }
        for op in [
            "crosses_above",
            "crossesAbove",
            "Crosses Above",
            "crossover",
        ] {
            assert_eq!(one_value(op), Test::CrossesAbove(v), "{op}");
        }
        for op in ["crosses_below", "cross_below", "crossunder"] {
            assert_eq!(one_value(op), Test::CrossesBelow(v), "{op}");
        }
        assert_eq!(one_value("crosses"), Test::Crosses(v));
        assert_eq!(
            test_of(json!({"type": "price", "operator": "moving_up_percent", "compareValue": 2})),
            Test::MovingUpPct { pct: 2.0, bars: 1 }
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": 5, "compareValue": 2})
            )),
            (
                s("conditions[0].operator"),
                format!("{OPERATORS} (got a number)")
            )
        );
        assert_eq!(
            error(&one(json!({"type": "price", "compareValue": 2}))),
            (
                s("conditions[0].operator"),
                format!("missing: expected {OPERATORS}")
            )
        );
    }

    #[test]
    fn comparisons_need_a_value_or_an_operand() {
        assert_eq!(
            error(&one(json!({"type": "price", "operator": "crosses_above"}))),
            (
                s("conditions[0].compareValue"),
                s(
                    "missing: crosses_above needs a number (compareValue) or an operand (rhs, or compareWith price/volume)"
                )
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "compareWith": "value"})
            )),
            (
                s("conditions[0].compareValue"),
                s("missing: expected a number (compareWith is value)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "operator": ">", "compareWith": "indicator_component"})
            ))
            .0,
            "conditions[0].rhs"
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "compareValue": 1,
                              "rhs": {"indicator": "SMA"}})
            )),
            (
                s("conditions[0].rhs"),
                s("either compareValue or rhs, not both")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "SMA", "operator": ">", "compareValue": 1, "compareWith": "price"})
            )),
            (
                s("conditions[0].compareValue"),
                s("not used when compareWith is price")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "compareValue": 1, "upperBound": 3})
            )),
            (
                s("conditions[0].upperBound"),
                s("not used by > (only by the channel operators)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "compareWith": "candles"})
            )),
            (
                s("conditions[0].compareWith"),
                s("one of value, indicator_component, price, volume")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "compareWith": "indicator_component",
                              "rhs": {"type": "volume"}})
            )),
            (
                s("conditions[0].rhs.type"),
                s("indicator (compareWith is indicator_component)")
            )
        );
    }

    #[test]
    fn compare_with_price_and_volume_default_to_the_bar() {
        assert_eq!(
            test_of(json!({"indicator": "SMA", "operator": "crosses", "compareWith": "price"})),
            Test::Crosses(Bound::Series(price(PriceSource::Close, Timeframe::H1)))
        );
        assert_eq!(
            test_of(
                json!({"indicator": "VOLUME_SMA", "operator": "<", "compareWith": "volume", "timeframe": "1d"})
            ),
            Test::Less(Bound::Series(price(PriceSource::Volume, Timeframe::D1)))
        );
        assert_eq!(
            test_of(
                json!({"indicator": "SMA", "operator": "<", "compareWith": "price", "rhs": {"source": "low"}})
            ),
            Test::Less(Bound::Series(price(PriceSource::Low, Timeframe::H1)))
        );
        assert_eq!(
            test_of(
                json!({"type": "price", "operator": ">", "rhs": {"type": "price", "source": "open", "timeframe": "1d"}})
            ),
            Test::Greater(Bound::Series(price(PriceSource::Open, Timeframe::D1)))
        );
    }

    #[test]
    fn an_operand_equal_to_the_lhs_is_refused() {
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "rhs": {"type": "price"}})
            )),
            (
                s("conditions[0].rhs"),
                s("a different operand: this compares the series with itself (close on 1h)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "volume", "operator": ">", "compareWith": "volume"})
            ))
            .0,
            "conditions[0].compareWith"
        );
        let (path, expected) = error(&one(json!({
            "indicator": "MACD", "component": "macd_line", "operator": "crosses_above",
            "rhs": {"indicator": "MACD", "component": "MACD", "settings": {"fast": 12}}})));
        assert_eq!(path, "conditions[0].rhs");
        assert!(
            expected.ends_with("(MACD(12,26,9) MACD on 1h)"),
            "{expected}"
        );
        // Another timeframe is another series.
        assert!(
            parse_alert(&one(json!({"type": "price", "operator": ">",
                                        "rhs": {"type": "price", "timeframe": "4h"}})))
            .is_ok()
        );
    }

    #[test]
    fn equals_tolerance() {
        assert_eq!(
            test_of(
                json!({"type": "price", "operator": "equals", "compareValue": 100, "settings": {"tolerance": 0.01}})
            ),
            Test::Equals {
                rhs: Bound::Value(100.0),
                tolerance: 0.01
            }
        );
        for bad in [json!(-1), json!("0.1")] {
            assert_eq!(
                error(&one(json!({"type": "price", "operator": "equals", "compareValue": 1, "settings": {"tolerance": bad}}))).0,
                "conditions[0].settings.tolerance"
            );
        }
        // Only `equals` reads a tolerance.
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "operator": ">", "compareValue": 1, "settings": {"tolerance": 0.1}})
            )),
            (
                s("conditions[0].settings.tolerance"),
                s("unknown key: expected one of length, period, source (camelCase or snake_case)")
            )
        );
    }

    #[test]
    fn divergence_and_convergence() {
        assert_eq!(
            test_of(json!({"indicator": "RSI", "operator": "divergence"})),
            Test::Divergence {
                other: price(PriceSource::Close, Timeframe::H1),
                lookback: 14,
                direction: Direction::Any
            }
        );
        assert_eq!(
            test_of(
                json!({"indicator": "RSI", "operator": "divergence", "timeframe": "4h",
                           "settings": {"lookback": 5, "direction": "Bullish", "length": 9}})
            ),
            Test::Divergence {
                other: price(PriceSource::Close, Timeframe::H4),
                lookback: 5,
                direction: Direction::Bullish
            }
        );
        assert_eq!(
            test_of(
                json!({"indicator": "OBV", "operator": "convergence", "compareWith": "volume"})
            ),
            Test::Convergence {
                other: price(PriceSource::Volume, Timeframe::H1),
                lookback: 14
            }
        );
        assert_eq!(
            test_of(
                json!({"type": "price", "operator": "convergence", "rhs": {"indicator": "OBV"}})
            ),
            Test::Convergence {
                other: ind("OBV", 0, Timeframe::H1),
                lookback: 14
            }
        );
        assert_eq!(
            error(&one(json!({"type": "price", "operator": "divergence"}))),
            (
                s("conditions[0].rhs"),
                s("a different operand: this compares the series with itself (close on 1h)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "operator": "divergence", "compareValue": 3})
            )),
            (
                s("conditions[0].compareValue"),
                s("not used by divergence (it compares two series' changes)")
            )
        );
        assert_eq!(
            error(&one(json!({"indicator": "RSI", "operator": "convergence", "settings": {"direction": "bullish"}}))).0,
            "conditions[0].settings.direction"
        );
        for bad in [
            json!({"lookback": 0}),
            json!({"lookback": 1001}),
            json!({"direction": "up"}),
        ] {
            let v = one(json!({"indicator": "RSI", "operator": "divergence", "settings": bad}));
            assert_eq!(errors(&v).len(), 1);
        }
    }

    #[test]
    fn channels() {
        let bb = spec("BBANDS(20,2)");
        let band = |component| Operand {
            timeframe: Timeframe::H1,
            series: Series::Indicator {
                spec: bb,
                component,
            },
        };
        assert_eq!(
            test_of(
                json!({"type": "price", "operator": "entering_channel", "rhs": {"indicator": "BB"}})
            ),
            Test::EnteringChannel {
                lower: Bound::Series(band(2)),
                upper: Bound::Series(band(0))
            }
        );
        assert_eq!(
            test_of(
                json!({"indicator": "RSI", "operator": "outside_channel", "lowerBound": 30, "upperBound": 70})
            ),
            Test::OutsideChannel {
                lower: Bound::Value(30.0),
                upper: Bound::Value(70.0)
            }
        );
        assert_eq!(
            test_of(json!({"type": "price", "operator": "inside_channel",
                           "rhs": {"indicator": "SMA", "settings": {"length": 50}}, "upperBound": 1e6})),
            Test::InsideChannel {
                lower: Bound::Series(ind("SMA(50)", 0, Timeframe::H1)),
                upper: Bound::Value(1e6)
            }
        );
        assert_eq!(
            test_of(json!({"type": "price", "operator": "exiting_channel",
                           "rhs": {"indicator": "BBANDS", "component": "Lower"},
                           "rhs2": {"indicator": "BBANDS", "component": "Middle"}})),
            Test::ExitingChannel {
                lower: Bound::Series(band(2)),
                upper: Bound::Series(band(1))
            }
        );
        assert_eq!(
            test_of(
                json!({"indicator": "RSI", "operator": "between", "compareWith": "value",
                           "lowerBound": 30, "upperBound": 30})
            ),
            Test::InsideChannel {
                lower: Bound::Value(30.0),
                upper: Bound::Value(30.0)
            }
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "operator": "between", "lowerBound": 60, "upperBound": 40})
            )),
            (
                s("conditions[0].lowerBound"),
                s("a lower bound <= the upper bound (60 > 40)")
            )
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "operator": "between", "lowerBound": 60})
            )),
            (
                s("conditions[0].upperBound"),
                s(
                    "missing: expected the upper bound of inside_channel: upperBound (a number) or rhs2 (an operand)"
                )
            )
        );
        assert_eq!(
            paths(&one(json!({"indicator": "RSI", "operator": "between"}))),
            ["conditions[0].lowerBound", "conditions[0].upperBound"]
        );
        assert_eq!(
            error(&one(
                json!({"indicator": "RSI", "operator": "between", "compareValue": 3,
                              "lowerBound": 1, "upperBound": 2})
            ))
            .0,
            "conditions[0].compareValue"
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": "between", "rhs": {"indicator": "BB"}, "upperBound": 2})
            )),
            (
                s("conditions[0].upperBound"),
                s("not used: the upper bound is the Upper band of the BBANDS in rhs")
            )
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": "between", "rhs": {"indicator": "SMA"},
                              "lowerBound": 1, "upperBound": 2})
            ))
            .0,
            "conditions[0].lowerBound"
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": "between", "lowerBound": "1", "upperBound": 2})
            )),
            (s("conditions[0].lowerBound"), s("a number (got a string)"))
        );
        // A band without component is only a channel's pair of bounds.
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": ">", "rhs": {"indicator": "BB"}})
            ))
            .0,
            "conditions[0].rhs.component"
        );
        // A bound equal to the lhs.
        assert_eq!(
            error(&one(json!({"indicator": "SMA", "operator": "between", "rhs": {"indicator": "SMA"}, "upperBound": 9}))).0,
            "conditions[0].rhs"
        );
    }

    #[test]
    fn moving_percent() {
        assert_eq!(
            test_of(
                json!({"type": "price", "operator": "moving_down_pct", "compareValue": 3.5, "settings": {"bars": 4}})
            ),
            Test::MovingDownPct { pct: 3.5, bars: 4 }
        );
        assert_eq!(
            error(&one(json!({"type": "price", "operator": "moving_up_pct"}))),
            (
                s("conditions[0].compareValue"),
                s("missing: expected the percentage, a number > 0")
            )
        );
        for bad in [json!(0), json!(-2)] {
            assert_eq!(
                error(&one(
                    json!({"type": "price", "operator": "moving_up_pct", "compareValue": bad})
                )),
                (
                    s("conditions[0].compareValue"),
                    s("the percentage, a number > 0")
                )
            );
        }
        assert_eq!(
            paths(&one(
                json!({"type": "price", "operator": "moving_up_pct", "compareValue": 1,
                              "rhs": {"indicator": "SMA"}})
            )),
            ["conditions[0].rhs"]
        );
        assert_eq!(
            error(&one(
                json!({"type": "price", "operator": "moving_up_pct", "compareValue": 1, "settings": {"bars": 0}})
            )),
            (
                s("conditions[0].settings.bars"),
                s("an integer from 1 to 1000")
            )
        );
        assert_eq!(
            error(&one(json!({"type": "price", "operator": "moving_up_pct", "compareValue": 1, "compareWith": "price"}))).0,
            "conditions[0].compareWith"
        );
    }

    // --- actions -----------------------------------------------------------------------------

    fn action(a: Value) -> Result<Vec<Action>, Vec<(String, String)>> {
        let v = with(alert(json!([price_gt()])), "action", a);
        parse_alert(&v)
            .map(|d| d.actions)
            .map_err(|e| e.0.into_iter().map(|e| (e.path, e.expected)).collect())
    }

    #[test]
    fn webhook_urls_and_secrets() {
        for url in [
            "https://example.com/hook",
            "HTTP://example.com",
            "https://api.example.com:8443/a?b=c#d",
            "https://user:pw@hooks.example.com/x",
            "http://[::1]:8080/x",
            "http://127.0.0.1:9000",
        ] {
            assert!(
                action(json!({"type": "webhook", "url": url})).is_ok(),
                "{url}"
            );
        }
        for url in [
            "ftp://example.com",
            "example.com/hook",
            "https://",
            "https:///path",
            "https://exa mple.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:",
            "https://ex%61mple.com",
            "http://[::1",
            "https://bücher.de",
        ] {
            let Err(e) = action(json!({"type": "webhook", "url": url})) else {
                panic!("{url} accepted")
            };
            assert_eq!(e.len(), 1, "{url}");
            assert_eq!(e[0].0, "action.url");
            assert!(
                e[0].1.starts_with("an absolute http:// or https:// URL"),
                "{url}: {}",
                e[0].1
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(action(json!({"type": "webhook", "url": long})).is_err());

        let ok_secret = |secret: &str| {
            action(json!({"type": "webhook", "url": "https://x.io", "secret": secret})).is_ok()
        };
        assert!(ok_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        assert!(ok_secret("whsec_AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(ok_secret("0123456789abcdef"));
        assert!(!ok_secret("whsec_short"));
        assert!(!ok_secret("whsec_AAAA")); // 3 bytes
        assert!(!ok_secret("whsec_not*base64*at*all*0123456789"));
        assert!(!ok_secret("hunter2"));

        assert_eq!(
            action(json!({"type": "webhook", "url": "https://x.io", "body": "message"})),
            Ok(vec![Action::Webhook {
                url: s("https://x.io"),
                secret: None,
                body: WebhookBody::Message
            }])
        );
        assert_eq!(
            action(json!({"type": "webhook"})),
            Err(vec![(
                s("action.url"),
                s("missing: expected an absolute http:// or https:// URL")
            )])
        );
    }

    #[test]
    fn bot_actions() {
        assert_eq!(
            action(json!({"type": "bot", "bot_id": "uuid-of-bot"})),
            Ok(vec![Action::Bot {
                bot_id: s("uuid-of-bot")
            }])
        );
        assert_eq!(
            action(
                json!({"type": "bot_trigger", "bot_id": "b", "action_type": "execute_dca", "dca_index": 2})
            ),
            Ok(vec![Action::BotTrigger {
                bot_id: s("b"),
                action_type: BotActionType::ExecuteDca,
                dca_index: Some(2)
            }])
        );
        assert_eq!(
            action(json!({"type": "bot_trigger", "bot_id": "b", "action_type": "execute_dca"})),
            Err(vec![(
                s("action.dca_index"),
                s("missing: expected an integer >= 0 (required for execute_dca)")
            )])
        );
        assert_eq!(
            action(
                json!({"type": "bot_trigger", "bot_id": "b", "action_type": "stop_loss", "dca_index": 0})
            ),
            Err(vec![(
                s("action.dca_index"),
                s("no dca_index: it is only for execute_dca")
            )])
        );
        assert_eq!(
            action(
                json!({"type": "bot_trigger", "bot_id": "b", "action_type": "execute_dca", "dca_index": -1})
            ),
            Err(vec![(
                s("action.dca_index"),
                s("an integer from 0 to 4294967295")
            )])
        );
        assert_eq!(
            action(json!({"type": "bot_trigger", "action_type": "sell"}))
                .map_err(|e| e.into_iter().map(|(p, _)| p).collect::<Vec<_>>()),
            Err(vec![s("action.bot_id"), s("action.action_type")])
        );
        assert_eq!(
            action(json!({"type": "bot", "bot_id": ""})).map_err(|e| e[0].0.clone()),
            Err(s("action.bot_id"))
        );
    }

    #[test]
    fn action_lists() {
        let base = alert(json!([price_gt()]));
        let mut none = base.clone();
        if let Some(o) = none.as_object_mut() {
            o.remove("action");
        }
        let (path, expected) = error(&none);
        assert_eq!(path, "action");
        assert!(
            expected.starts_with("missing: expected an action"),
            "{expected}"
        );
        assert_eq!(
            error(&with(none.clone(), "actions", json!([]))),
            (s("actions"), s("at least one action"))
        );
        let both = with(
            base.clone(),
            "actions",
            json!([{"type": "webhook", "url": "https://x.io"}, {"type": "notify", "title": "Hi"}]),
        );
        assert_eq!(ok(&both).actions.len(), 3);
        assert_eq!(
            error(&with(
                none.clone(),
                "actions",
                json!([{"type": "notify"}, {"type": "sms"}])
            )),
            (
                s("actions[1].type"),
                s("one of notify, webhook, bot, bot_trigger")
            )
        );
        assert_eq!(
            error(&with(
                none.clone(),
                "actions",
                Value::Array(vec![json!({"type": "notify"}); 17])
            )),
            (s("actions"), s("at most 16 actions in all (got 17)"))
        );
        assert_eq!(
            error(&with(base, "action", json!({"title": "x"}))),
            (
                s("action.type"),
                s("missing: expected one of notify, webhook, bot, bot_trigger")
            )
        );
    }

    // --- entry points ------------------------------------------------------------------------

    #[test]
    fn syntax_errors_are_one_root_error_with_line_and_column() {
        let Err(e) = parse_alert_str("{\n  \"symbol\": \"BTCUSDT\",\n  oops\n}") else {
            panic!("parsed")
        };
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, "");
        assert!(e.0[0].expected.contains("line 3"), "{}", e.0[0].expected);
        assert!(parse_alert_str("").is_err());
        assert!(parse_alerts_array("[1,").is_err());
        let Ok(def) = parse_alert_str(&alert(json!([price_gt()])).to_string()) else {
            panic!("valid")
        };
        assert_eq!(def.name, "alert");
    }

    #[test]
    fn arrays_of_alerts_prefix_paths_and_refuse_duplicate_ids() {
        let good = with(alert(json!([price_gt()])), "id", json!("a"));
        let bad = with(with(good.clone(), "id", json!("b")), "symbol", json!(""));
        let text = Value::Array(vec![good.clone(), bad, json!(3)]).to_string();
        let Err(e) = parse_alerts_array(&text) else {
            panic!("parsed")
        };
        assert_eq!(
            e.0,
            vec![
                FieldError::new(
                    "[1].symbol",
                    "symbol is empty: expected 1 to 23 ASCII letters and digits, like BTCUSDT"
                ),
                FieldError::new("[2]", "an alert object (got a number)"),
            ]
        );
        let text = Value::Array(vec![
            good.clone(),
            with(
                good.clone(),
                "conditions",
                json!([{"type": "price", "operator": "?"}]),
            ),
        ])
        .to_string();
        let Err(e) = parse_alerts_array(&text) else {
            panic!("parsed")
        };
        assert_eq!(e.0[0].path, "[1].conditions[0].operator");
        let text = Value::Array(vec![good.clone(), good.clone()]).to_string();
        let Err(e) = parse_alerts_array(&text) else {
            panic!("parsed")
        };
        assert_eq!(
            e.0,
            vec![FieldError::new(
                "[1].id",
                "an id unique in the array (\"a\" is also the id of [0])"
            )]
        );
        assert_eq!(parse_alerts_array("[]").map(|v| v.len()), Ok(0));
        let Err(e) = parse_alerts_array("{}") else {
            panic!("parsed")
        };
        assert_eq!(
            e.0,
            vec![FieldError::new(
                "",
                "a JSON array of alerts (got an object)"
            )]
        );
    }

    #[test]
    fn key_spellings() {
        assert_eq!(to_snake("compareWith"), "compare_with");
        assert_eq!(to_snake("smoothK"), "smooth_k");
        assert_eq!(to_camel("base_timeframe"), "baseTimeframe");
        assert_eq!(to_camel("rhs2"), "rhs2");
        assert!(key_matches("fire_mode", "fireMode"));
        assert!(key_matches("stdDev", "std_dev"));
        assert!(!key_matches("Symbol", "symbol"));
        assert_eq!(child("", "a b"), "[\"a b\"]");
        assert_eq!(child("[2]", "rhs"), "[2].rhs");
    }

    // --- properties --------------------------------------------------------------------------

    const WORDS: &[&str] = &[
        "BTCUSDT",
        "1h",
        "15m",
        "same",
        "AND",
        "OR",
        "RSI",
        "EMA",
        "MACD",
        "BBANDS",
        "BB",
        "STOCH",
        "OBV",
        "signal_line",
        "Upper",
        "K",
        ">",
        "<",
        "equals",
        "crosses_above",
        "crosses",
        "divergence",
        "between",
        "entering_channel",
        "moving_up_pct",
        "indicator",
        "price",
        "volume",
        "value",
        "indicator_component",
        "notify",
        "webhook",
        "bot",
        "bot_trigger",
        "execute_dca",
        "https://example.com/h",
        "close",
        "hl2",
        "bullish",
        "{{c1.value}}",
        "c1",
        "per_close",
        "once",
        "2025-01-31T00:00:00Z",
        "NaN",
    ];
    const KEYS: &[&str] = &[
        "id",
        "alert_id",
        "name",
        "symbol",
        "base_timeframe",
        "conditionLogic",
        "logic",
        "conditions",
        "action",
        "actions",
        "trigger",
        "fireMode",
        "debounce_bars",
        "message",
        "expires_at",
        "type",
        "indicator",
        "component",
        "settings",
        "period",
        "length",
        "source",
        "operator",
        "compareWith",
        "compareValue",
        "rhs",
        "rhs2",
        "lowerBound",
        "upperBound",
        "timeframe",
        "fast",
        "slow",
        "signal",
        "stddev",
        "k",
        "smoothK",
        "d",
        "tolerance",
        "bars",
        "lookback",
        "direction",
        "url",
        "secret",
        "bot_id",
        "action_type",
        "dca_index",
        "title",
        "body",
        "compare_value",
    ];

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..40).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop::sample::select(WORDS).prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 96, 8, |inner| {
            let key = prop_oneof![
                4 => prop::sample::select(KEYS).prop_map(str::to_owned),
                1 => "\\PC{0,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key, inner), 0..10)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Mostly well-formed leaves, so that many generated alerts parse.
    fn arb_leaf() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(&["indicator", "price", "volume"][..]),
            prop::sample::select(&["RSI", "EMA", "MACD", "BBANDS", "OBV", "STOCH"][..]),
            prop::sample::select(
                &[
                    ">",
                    "crosses_below",
                    "equals",
                    "divergence",
                    "between",
                    "moving_up_pct",
                ][..],
            ),
            prop::option::weighted(0.97, 0.5f64..100.0),
            prop::option::of(prop::sample::select(&["same", "15m", "4h"][..])),
        )
            .prop_map(|(ty, ind, op, value, tf)| {
                let mut c = json!({"type": ty, "operator": op});
                if ty == "indicator" {
                    c["indicator"] = json!(ind);
                    c["component"] = json!(match ind {
                        "MACD" => "Signal",
                        "BBANDS" => "Middle",
                        "STOCH" => "D",
                        other => other,
                    });
                }
                if let Some(v) = value {
                    if op == "between" {
                        c["lowerBound"] = json!(v);
                        c["upperBound"] = json!(v + 1.0);
                    } else if op != "divergence" {
                        c["compareValue"] = json!(v);
                    }
                }
                if op == "divergence" && ty != "indicator" {
                    c["rhs"] = json!({"indicator": "OBV"});
                }
                if let Some(tf) = tf {
                    c["timeframe"] = json!(tf);
                }
                c
            })
    }

    fn arb_conditions() -> impl Strategy<Value = Value> {
        let node = arb_leaf().prop_recursive(5, 80, 12, |inner| {
            (
                prop::sample::select(&["AND", "OR"][..]),
                prop::collection::vec(inner, 0..8),
            )
                .prop_map(|(logic, children)| json!({"logic": logic, "conditions": children}))
        });
        prop::collection::vec(node, 0..24).prop_map(Value::Array)
    }

    fn check_invariants(v: &Value) -> Result<(), TestCaseError> {
        match parse_alert(v) {
            Ok(def) => {
                let leaves = def.leaves();
                prop_assert!(!leaves.is_empty());
                prop_assert!(leaves.len() <= MAX_CONDITIONS);
                prop_assert!(!def.actions.is_empty());
                prop_assert!(def.debounce_bars >= 1);
                let mut ids: Vec<&str> = leaves.iter().map(|c| c.id.as_str()).collect();
                ids.sort_unstable();
                ids.dedup();
                prop_assert_eq!(ids.len(), leaves.len());
            }
            Err(e) => {
                prop_assert!(!e.0.is_empty());
                prop_assert!(!e.to_string().is_empty());
            }
        }
        // The text entry point agrees with the value entry point.
        let again = parse_alert_str(&v.to_string());
        prop_assert_eq!(again.is_ok(), parse_alert(v).is_ok());
        Ok(())
    }

    /// The generator for condition trees yields both valid alerts and alerts over the limits,
    /// so the property below checks something.
    #[test]
    fn generated_condition_trees_cover_both_outcomes() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let strategy = arb_conditions();
        let (mut parsed, mut too_many) = (0, 0);
        for _ in 0..300 {
            let Ok(tree) = strategy.new_tree(&mut runner) else {
                panic!("strategy failed")
            };
            match parse_alert(&alert(tree.current())) {
                Ok(_) => parsed += 1,
                Err(e) => {
                    if e.0
                        .iter()
                        .any(|f| f.expected.starts_with("at most 32 leaf"))
                    {
                        too_many += 1;
                    }
                }
            }
        }
        assert!(parsed >= 10, "{parsed} parsed");
        assert!(too_many >= 10, "{too_many} over the limit");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_json_never_panics(v in arb_json()) {
            check_invariants(&v)?;
            let _ = parse_alerts_array(&Value::Array(vec![v.clone(), v]).to_string());
        }

        #[test]
        fn random_alert_bodies_never_panic(v in arb_json()) {
            // Random values under the alert's own keys.
            let mut a = alert(json!([price_gt()]));
            if let (Some(obj), Value::Object(extra)) = (a.as_object_mut(), v) {
                for (k, x) in extra {
                    obj.insert(k, x);
                }
            }
            check_invariants(&a)?;
        }

        #[test]
        fn generated_condition_trees_respect_the_limits(conds in arb_conditions()) {
            check_invariants(&alert(conds))?;
        }
    }
}
