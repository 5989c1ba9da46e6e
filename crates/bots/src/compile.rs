//! A bot compiled to alerts (seed 002): an entry alert (`bot_trigger` / `execute_entry`,
//! `debounce_bars` 1), one alert per safety order (`execute_dca`, `dca_index` = n, fires
//! `once`), a take-profit alert and a stop-loss alert. Price-level alerts carry their
//! threshold in the one condition `price`; it is set when they are armed.

use serde_json::{Value, json};

use crate::deal::Role;
use crate::definition::BotDefinition;

/// The roles of a bot's alerts: entry, each safety order, take profit, stop loss if any.
pub fn roles(def: &BotDefinition) -> Vec<Role> {
    let mut roles = vec![Role::Entry];
    roles.extend((1..=def.max_safety_orders).map(Role::SafetyOrder));
    roles.push(Role::TakeProfit);
    if def.stop_loss_pct.is_some() {
        roles.push(Role::StopLoss);
    }
    roles
}

/// Every alert a bot has: `(role, alert JSON)`; thresholds are 0 until a deal arms them.
pub fn alerts(bot_id: &str, def: &BotDefinition) -> Vec<(Role, Value)> {
    roles(def)
        .into_iter()
        .filter_map(|role| Some((role, alert(bot_id, def, role, 0.0, None)?)))
        .collect()
}

/// The alert JSON of one role, with `threshold` for the price-level ones, evaluating no data
/// before `not_before` (when a deal armed it: so a re-armed alert never looks like the spent
/// one it replaces, and an entry waits out its cooldown). `None` for [`Role::Close`], which has
/// no alert.
pub fn alert(
    bot_id: &str,
    def: &BotDefinition,
    role: Role,
    threshold: f64,
    not_before: Option<alert_core::BarTime>,
) -> Option<Value> {
    let action = |action_type: &str| json!({"type": "bot_trigger", "bot_id": bot_id, "action_type": action_type});
    let price = |operator: &str| json!([{"id": "price", "type": "price", "operator": operator, "compareValue": threshold}]);
    let base = |name: String, conditions: Value, trigger: &str, action: Value| {
        json!({
            "name": name, "symbol": def.pair.as_str(), "base_timeframe": def.timeframe.as_str(),
            "conditions": conditions, "trigger": trigger, "debounce_bars": 1, "action": action,
            "message": "{{symbol}} at {{close}}",
        })
    };
    let mut alert = match role {
        Role::Entry => {
            let mut a = base(
                format!("{}: entry", def.name),
                def.entry_conditions.clone(),
                def.trigger.as_str(),
                action("execute_entry"),
            );
            a["conditionLogic"] = json!(def.entry_logic);
            a
        }
        Role::SafetyOrder(n) => {
            let mut act = action("execute_dca");
            act["dca_index"] = json!(n);
            base(
                format!("{}: safety order {n}", def.name),
                price("<="),
                "once",
                act,
            )
        }
        Role::TakeProfit => base(
            format!("{}: take profit", def.name),
            price(">="),
            "once_per_bar",
            action("take_profit"),
        ),
        Role::StopLoss => base(
            format!("{}: stop loss", def.name),
            price("<="),
            "once_per_bar",
            action("stop_loss"),
        ),
        Role::Close => return None,
    };
    if let Some(t) = not_before {
        alert["not_before"] = json!(t.millis());
    }
    Some(alert)
}

/// The role of a bot alert, from its action.
pub fn role_of(action: &alert_engine::Action) -> Option<Role> {
    use alert_engine::{Action, BotActionType};
    match action {
        Action::BotTrigger {
            action_type,
            dca_index,
            ..
        } => Some(match action_type {
            BotActionType::ExecuteEntry => Role::Entry,
            BotActionType::ExecuteDca => Role::SafetyOrder((*dca_index)?),
            BotActionType::TakeProfit => Role::TakeProfit,
            BotActionType::StopLoss => Role::StopLoss,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::parse_bot;

    #[test]
    fn every_compiled_alert_is_a_valid_alert_with_its_role() {
        let def = parse_bot(&json!({
            "pair": "ETHUSDT", "timeframe": "15m",
            "entry_conditions": [{"type": "indicator", "indicator": "RSI", "component": "RSI",
                                  "operator": "<", "compareValue": 30}],
            "base_order": 10, "safety_order": 10, "max_safety_orders": 2,
            "price_deviation_pct": 1, "take_profit_pct": 1, "stop_loss_pct": 5
        }))
        .unwrap();
        let alerts = alerts("b1", &def);
        let roles: Vec<Role> = alerts.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            roles,
            [
                Role::Entry,
                Role::SafetyOrder(1),
                Role::SafetyOrder(2),
                Role::TakeProfit,
                Role::StopLoss
            ]
        );
        for (role, json) in &alerts {
            let parsed = alert_engine::parse::parse_alert(json)
                .unwrap_or_else(|e| panic!("{role:?}: {e:?}"));
            let actions = &parsed.actions;
            assert_eq!(role_of(&actions[0]), Some(*role));
            assert_eq!(parsed.debounce_bars, 1);
        }
    }
}
