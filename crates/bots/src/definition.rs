//! A DCA bot's definition: parsed, with an error naming the JSON path of every bad field, into
//! a [`BotDefinition`] that cannot be malformed.
//!
//! | key | meaning |
//! | --- | --- |
//! | `name` | optional; default `DCA <pair>` |
//! | `pair` | the symbol, e.g. `BTCUSDT` |
//! | `timeframe` | the entry alert's base timeframe |
//! | `entry_conditions` | the alert condition array (groups allowed), as in an alert's `conditions` |
//! | `entry_logic` | `AND` (default) or `OR` over `entry_conditions` |
//! | `trigger` | the entry alert's trigger mode: `once_per_bar` (default) or `once_per_bar_close` |
//! | `base_order` | quote amount of the first order, > 0 |
//! | `safety_order` | quote amount of the first safety order, > 0 |
//! | `max_safety_orders` | 0 to 100 |
//! | `price_deviation_pct` | deviation of the first safety order below the entry price, % |
//! | `step_scale` | each next safety order's step is this times the previous (default 1) |
//! | `volume_scale` | each next safety order's size is this times the previous (default 1) |
//! | `take_profit_pct` | take profit this % above the average entry price |
//! | `stop_loss_pct` | optional: stop loss this % below the average entry price |
//! | `cooldown_bars` | bars of `timeframe` between a deal's close and the next entry (default 0) |
//! | `fee_pct` | fee charged on each fill's notional, % (default 0.1) |
//! | `quantity_step` | base quantities are rounded down to a multiple of it (default 1e-8) |
//!
//! Safety order n (1-based) sits at a cumulative deviation of `d·(1 + s + … + s^(n−1))` % below
//! the entry price and has size `so·v^(n−1)` (d = `price_deviation_pct`, s = `step_scale`,
//! so = `safety_order`, v = `volume_scale`). The deepest one must stay above zero.

use alert_core::{Symbol, Timeframe};
use alert_engine::parse::{FieldError, ValidationErrors};
use serde_json::{Map, Value, json};

/// Most safety orders a bot may have.
pub const MAX_SAFETY_ORDERS: u32 = 100;

/// How the entry alert fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryTrigger {
    OncePerBar,
    OncePerBarClose,
}

impl EntryTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OncePerBar => "once_per_bar",
            Self::OncePerBarClose => "once_per_bar_close",
        }
    }
}

/// A validated DCA bot.
#[derive(Clone, Debug, PartialEq)]
pub struct BotDefinition {
    pub name: String,
    pub pair: Symbol,
    pub timeframe: Timeframe,
    /// The entry conditions as given (already checked by the alert parser).
    pub entry_conditions: Value,
    /// `AND` or `OR`.
    pub entry_logic: &'static str,
    pub trigger: EntryTrigger,
    pub base_order: f64,
    pub safety_order: f64,
    pub max_safety_orders: u32,
    pub price_deviation_pct: f64,
    pub step_scale: f64,
    pub volume_scale: f64,
    pub take_profit_pct: f64,
    pub stop_loss_pct: Option<f64>,
    pub cooldown_bars: u32,
    pub fee_pct: f64,
    pub quantity_step: f64,
}

/// One rung of the safety-order ladder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SafetyOrderLevel {
    /// 1-based.
    pub index: u32,
    /// Cumulative deviation below the entry price, %.
    pub deviation_pct: f64,
    /// Quote amount.
    pub size: f64,
}

impl SafetyOrderLevel {
    /// Its price for a deal entered at `entry_price`.
    pub fn price(&self, entry_price: f64) -> f64 {
        entry_price * (1.0 - self.deviation_pct / 100.0)
    }
}

impl BotDefinition {
    /// Safety order `n` (1-based), or `None` past `max_safety_orders`.
    pub fn safety_order_level(&self, n: u32) -> Option<SafetyOrderLevel> {
        if n == 0 || n > self.max_safety_orders {
            return None;
        }
        let (mut step, mut deviation, mut size) =
            (self.price_deviation_pct, 0.0, self.safety_order);
        for i in 1..=n {
            deviation += step;
            if i < n {
                step *= self.step_scale;
                size *= self.volume_scale;
            }
        }
        Some(SafetyOrderLevel {
            index: n,
            deviation_pct: deviation,
            size,
        })
    }

    /// The whole ladder, first to last.
    pub fn ladder(&self) -> Vec<SafetyOrderLevel> {
        (1..=self.max_safety_orders)
            .filter_map(|n| self.safety_order_level(n))
            .collect()
    }

    /// Quote committed if every order fills: the base order and every safety order.
    pub fn max_capital(&self) -> f64 {
        self.base_order + self.ladder().iter().map(|l| l.size).sum::<f64>()
    }

    /// The bot as JSON, in its canonical form (what the store keeps and the API returns).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "pair": self.pair.as_str(),
            "timeframe": self.timeframe.as_str(),
            "entry_conditions": self.entry_conditions,
            "entry_logic": self.entry_logic,
            "trigger": self.trigger.as_str(),
            "base_order": self.base_order,
            "safety_order": self.safety_order,
            "max_safety_orders": self.max_safety_orders,
            "price_deviation_pct": self.price_deviation_pct,
            "step_scale": self.step_scale,
            "volume_scale": self.volume_scale,
            "take_profit_pct": self.take_profit_pct,
            "cooldown_bars": self.cooldown_bars,
            "fee_pct": self.fee_pct,
            "quantity_step": self.quantity_step,
        });
        if let (Some(sl), Some(map)) = (self.stop_loss_pct, v.as_object_mut()) {
            map.insert("stop_loss_pct".into(), json!(sl));
        }
        v
    }
}

const KEYS: &[&str] = &[
    "name",
    "pair",
    "timeframe",
    "entry_conditions",
    "entry_logic",
    "trigger",
    "base_order",
    "safety_order",
    "max_safety_orders",
    "price_deviation_pct",
    "step_scale",
    "volume_scale",
    "take_profit_pct",
    "stop_loss_pct",
    "cooldown_bars",
    "fee_pct",
    "quantity_step",
];

struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields<'_> {
    fn err(&mut self, path: &str, expected: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            expected: expected.into(),
        });
    }

    /// A number in `(lo, hi)` / `[lo, hi)` etc.; `default` when absent (`None`: required).
    fn number(
        &mut self,
        key: &str,
        default: Option<f64>,
        ok: impl Fn(f64) -> bool,
        expected: &str,
    ) -> f64 {
        match self.map.get(key) {
            None => match default {
                Some(d) => d,
                None => {
                    self.err(key, format!("required: {expected}"));
                    f64::NAN
                }
            },
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && ok(x) => x,
                _ => {
                    self.err(key, expected);
                    f64::NAN
                }
            },
        }
    }

    fn integer(&mut self, key: &str, default: Option<u32>, max: u32) -> u32 {
        let expected = format!("an integer from 0 to {max}");
        match self.map.get(key) {
            None => default.unwrap_or_else(|| {
                self.err(key, format!("required: {expected}"));
                0
            }),
            Some(v) => match v.as_u64() {
                Some(n) if n <= u64::from(max) => n as u32,
                _ => {
                    self.err(key, expected);
                    0
                }
            },
        }
    }
}

/// Parses and validates a bot. Every problem is reported, each with its JSON path.
pub fn parse_bot(value: &Value) -> Result<BotDefinition, ValidationErrors> {
    let Some(map) = value.as_object() else {
        return Err(ValidationErrors(vec![FieldError {
            path: String::new(),
            expected: "a JSON object (a DCA bot)".into(),
        }]));
    };
    let mut f = Fields {
        map,
        errors: Vec::new(),
    };
    for key in map.keys() {
        if !KEYS.contains(&key.as_str()) {
            f.err(
                key,
                format!("no such key: expected one of {}", KEYS.join(", ")),
            );
        }
    }
    let pair = match map.get("pair") {
        None => {
            f.err("pair", "required: a symbol such as BTCUSDT");
            None
        }
        Some(v) => match v.as_str().map(Symbol::new) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                f.err("pair", e.to_string());
                None
            }
            None => {
                f.err("pair", "a symbol such as BTCUSDT");
                None
            }
        },
    };
    let timeframe = match map.get("timeframe") {
        None => {
            f.err(
                "timeframe",
                "required: one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w",
            );
            None
        }
        Some(v) => match v.as_str().and_then(|s| s.parse::<Timeframe>().ok()) {
            Some(tf) => Some(tf),
            None => {
                f.err(
                    "timeframe",
                    "one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w",
                );
                None
            }
        },
    };
    let entry_logic = match map
        .get("entry_logic")
        .map(|v| v.as_str().map(str::to_ascii_uppercase))
    {
        None => "AND",
        Some(Some(s)) if s == "AND" => "AND",
        Some(Some(s)) if s == "OR" => "OR",
        Some(_) => {
            f.err("entry_logic", "AND or OR");
            "AND"
        }
    };
    let trigger = match map.get("trigger").map(Value::as_str) {
        None | Some(Some("once_per_bar")) => EntryTrigger::OncePerBar,
        Some(Some("once_per_bar_close")) => EntryTrigger::OncePerBarClose,
        Some(_) => {
            f.err("trigger", "once_per_bar or once_per_bar_close");
            EntryTrigger::OncePerBar
        }
    };
    let name = match map.get("name") {
        None => pair.map(|p| format!("DCA {p}")).unwrap_or_default(),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => s.clone(),
        Some(_) => {
            f.err("name", "a non-empty string of at most 200 bytes");
            String::new()
        }
    };
    let positive = |x: f64| x > 0.0;
    let base_order = f.number("base_order", None, positive, "a quote amount > 0");
    let safety_order = f.number("safety_order", None, positive, "a quote amount > 0");
    let max_safety_orders = f.integer("max_safety_orders", None, MAX_SAFETY_ORDERS);
    let price_deviation_pct = f.number(
        "price_deviation_pct",
        None,
        |x| x > 0.0 && x < 100.0,
        "a percentage above 0 and below 100",
    );
    let step_scale = f.number(
        "step_scale",
        Some(1.0),
        |x| x > 0.0 && x <= 10.0,
        "a factor above 0, at most 10",
    );
    let volume_scale = f.number(
        "volume_scale",
        Some(1.0),
        |x| x > 0.0 && x <= 10.0,
        "a factor above 0, at most 10",
    );
    let take_profit_pct = f.number(
        "take_profit_pct",
        None,
        |x| x > 0.0 && x <= 1000.0,
        "a percentage above 0, at most 1000",
    );
    let stop_loss_pct = map.get("stop_loss_pct").map(|_| {
        f.number(
            "stop_loss_pct",
            None,
            |x| x > 0.0 && x < 100.0,
            "a percentage above 0 and below 100",
        )
    });
    let cooldown_bars = f.integer("cooldown_bars", Some(0), 100_000);
    let fee_pct = f.number(
        "fee_pct",
        Some(0.1),
        |x| (0.0..10.0).contains(&x),
        "a percentage from 0, below 10",
    );
    let quantity_step = f.number(
        "quantity_step",
        Some(1e-8),
        positive,
        "a quantity step > 0, e.g. 0.00001",
    );

    // The entry conditions: exactly what an alert's `conditions` accepts, checked by the alert
    // parser itself; its paths are mapped back onto the bot's keys.
    let entry_conditions = match map.get("entry_conditions") {
        None => {
            f.err(
                "entry_conditions",
                "required: a non-empty array of alert conditions",
            );
            Value::Null
        }
        Some(conditions) => {
            if let (Some(pair), Some(tf)) = (pair, timeframe) {
                let probe = json!({
                    "name": "entry", "symbol": pair.as_str(), "base_timeframe": tf.as_str(),
                    "conditions": conditions, "conditionLogic": entry_logic,
                    "action": {"type": "notify"},
                });
                if let Err(e) = alert_engine::parse::parse_alert(&probe) {
                    for err in e.0 {
                        let path = match err.path.strip_prefix("conditions") {
                            Some(rest) => format!("entry_conditions{rest}"),
                            None => format!("entry_conditions: {}", err.path),
                        };
                        f.errors.push(FieldError {
                            path,
                            expected: err.expected,
                        });
                    }
                }
            }
            conditions.clone()
        }
    };

    let (Some(pair), Some(timeframe), true) = (pair, timeframe, f.errors.is_empty()) else {
        return Err(ValidationErrors(f.errors));
    };
    let def = BotDefinition {
        name: name.trim().to_owned(),
        pair,
        timeframe,
        entry_conditions,
        entry_logic,
        trigger,
        base_order,
        safety_order,
        max_safety_orders,
        price_deviation_pct,
        step_scale,
        volume_scale,
        take_profit_pct,
        stop_loss_pct,
        cooldown_bars,
        fee_pct,
        quantity_step,
    };
    if let Some(last) = def.safety_order_level(def.max_safety_orders)
        && last.deviation_pct >= 100.0
    {
        f.err(
            "max_safety_orders",
            format!(
                "a ladder that stays above zero: safety order {} would sit {:.4}% below the entry \
                 (lower max_safety_orders, price_deviation_pct or step_scale)",
                last.index, last.deviation_pct
            ),
        );
    }
    if !f.errors.is_empty() {
        return Err(ValidationErrors(f.errors));
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example() -> Value {
        json!({
            "pair": "BTCUSDT", "timeframe": "1h",
            "entry_conditions": [{"type": "indicator", "indicator": "RSI", "component": "RSI",
                                  "settings": {"length": 14}, "operator": "<", "compareValue": 30}],
            "base_order": 100, "safety_order": 50, "max_safety_orders": 3,
            "price_deviation_pct": 2, "step_scale": 1.5, "volume_scale": 2,
            "take_profit_pct": 1.5, "stop_loss_pct": 15, "cooldown_bars": 2
        })
    }

    #[test]
    fn ladder_follows_the_documented_formulas() {
        let def = parse_bot(&example()).unwrap();
        let ladder = def.ladder();
        // d = 2, s = 1.5: 2, 2 + 3 = 5, 2 + 3 + 4.5 = 9.5; so = 50, v = 2: 50, 100, 200.
        let got: Vec<(u32, f64, f64)> = ladder
            .iter()
            .map(|l| (l.index, l.deviation_pct, l.size))
            .collect();
        assert_eq!(got, [(1, 2.0, 50.0), (2, 5.0, 100.0), (3, 9.5, 200.0)]);
        assert_eq!(ladder[2].price(1000.0), 905.0);
        assert_eq!(def.max_capital(), 450.0);
        assert_eq!(def.fee_pct, 0.1, "default fee");
        assert_eq!(def.name, "DCA BTCUSDT");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = example();
        let m = bad.as_object_mut().unwrap();
        m.insert("base_order".into(), json!(0));
        m.insert("price_deviation_pct".into(), json!(120));
        m.insert("trigger".into(), json!("sometimes"));
        m.insert("take_profit".into(), json!(1));
        m.insert(
            "entry_conditions".into(),
            json!([{"type": "indicator", "indicator": "RSI",
            "component": "RSI", "settings": {"length": 0}, "operator": "<", "compareValue": 30}]),
        );
        let e = parse_bot(&bad).unwrap_err();
        for path in [
            "base_order",
            "price_deviation_pct",
            "trigger",
            "take_profit",
        ] {
            assert!(e.has_path(path), "{path}: {e:?}");
        }
        assert!(
            e.0.iter()
                .any(|x| x.path.starts_with("entry_conditions[0].settings")),
            "{e:?}"
        );
        let e = parse_bot(&json!({})).unwrap_err();
        for path in [
            "pair",
            "timeframe",
            "entry_conditions",
            "base_order",
            "take_profit_pct",
        ] {
            assert!(e.has_path(path), "{path}: {e:?}");
        }
    }

    #[test]
    fn a_ladder_below_zero_is_refused() {
        let mut bot = example();
        bot["price_deviation_pct"] = json!(10);
        bot["step_scale"] = json!(2);
        bot["max_safety_orders"] = json!(4); // 10 + 20 + 40 + 80 = 150 %
        let e = parse_bot(&bot).unwrap_err();
        assert!(e.has_path("max_safety_orders"), "{e:?}");
        bot["max_safety_orders"] = json!(3); // 70 %
        assert!(parse_bot(&bot).is_ok());
    }

    #[test]
    fn canonical_json_parses_to_the_same_bot() {
        let def = parse_bot(&example()).unwrap();
        assert_eq!(parse_bot(&def.to_json()).unwrap(), def);
    }

    proptest::proptest! {
        /// Any JSON object either parses or names a path; a parsed ladder is increasing in
        /// depth, above zero, and sized by the formula.
        #[test]
        fn ladders_are_monotonic(d in 0.1f64..20.0, s in 0.5f64..2.0, v in 0.5f64..3.0, n in 0u32..12) {
            let mut bot = example();
            bot["price_deviation_pct"] = json!(d);
            bot["step_scale"] = json!(s);
            bot["volume_scale"] = json!(v);
            bot["max_safety_orders"] = json!(n);
            match parse_bot(&bot) {
                Ok(def) => {
                    let ladder = def.ladder();
                    proptest::prop_assert_eq!(ladder.len(), n as usize);
                    let mut prev = 0.0;
                    for l in &ladder {
                        proptest::prop_assert!(l.deviation_pct > prev && l.deviation_pct < 100.0);
                        let want = 50.0 * v.powi(l.index as i32 - 1);
                        proptest::prop_assert!((l.size - want).abs() <= 1e-9 * want);
                        prev = l.deviation_pct;
                    }
                }
                Err(e) => proptest::prop_assert!(e.has_path("max_safety_orders"), "{:?}", e),
            }
        }

        #[test]
        fn arbitrary_values_never_panic(key in proptest::sample::select(KEYS), value in proptest::prelude::any::<i64>()) {
            let mut bot = example();
            bot[key] = json!(value);
            if let Err(e) = parse_bot(&bot) {
                proptest::prop_assert!(!e.0.is_empty());
            }
        }
    }
}
