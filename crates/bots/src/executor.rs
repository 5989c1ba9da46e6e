//! Where orders go: an interface shaped like an exchange's market-order API, and the paper
//! executor that fills them without an exchange.

use std::collections::HashMap;

use alert_core::Symbol;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

/// How much to trade: an amount of the quote asset (buy 100 USDT of BTC) or of the base asset
/// (sell 0.0021 BTC).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    Quote(f64),
    Base(f64),
}

/// A market order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MarketOrder {
    pub symbol: Symbol,
    pub side: Side,
    pub quantity: Quantity,
    /// The idempotency key (the trigger's id): an exchange refuses a second order with it, the
    /// paper executor returns the first fill.
    pub client_order_id: String,
    /// The price the trigger saw: the paper executor fills at it; an exchange executor may use
    /// it to bound slippage.
    pub reference_price: f64,
}

/// What an order did.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Fill {
    pub price: f64,
    /// Base quantity traded (rounded to the step).
    pub base_qty: f64,
    /// `price × base_qty`.
    pub notional: f64,
    /// Charged in the quote asset.
    pub fee: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// Worth retrying (exchange unreachable, rate limited).
    #[error("{0}")]
    Retry(String),
    /// Will never succeed (below the minimum quantity, insufficient funds).
    #[error("{0}")]
    Rejected(String),
}

/// Places market orders. Implementations must be idempotent per `client_order_id`.
pub trait Executor {
    fn place(&mut self, order: &MarketOrder) -> Result<Fill, ExecError>;
}

/// Fills every order at its reference price, charges `fee_pct` of the notional, and rounds
/// base quantities down to `quantity_step`. Remembers its fills by client order id, so a
/// repeated order (a trigger delivered twice) returns the first fill and trades nothing.
#[derive(Debug, Clone)]
pub struct PaperExecutor {
    pub fee_pct: f64,
    pub quantity_step: f64,
    fills: HashMap<String, Fill>,
    /// Orders that traded (repeats excluded).
    pub orders_placed: u64,
}

impl PaperExecutor {
    pub fn new(fee_pct: f64, quantity_step: f64) -> Self {
        Self {
            fee_pct,
            quantity_step,
            fills: HashMap::new(),
            orders_placed: 0,
        }
    }

    /// `q` rounded down to the step (with a relative tolerance, so 0.3 / 0.1 steps stay 3).
    pub fn round_down(&self, q: f64) -> f64 {
        let steps = (q / self.quantity_step * (1.0 + 1e-12)).floor();
        // To the step's decimals, so 127 × 0.0001 prints as 0.0127, not 0.012700000000000001.
        let decimals = (-self.quantity_step.log10()).ceil().clamp(0.0, 15.0) as i32;
        let scale = 10f64.powi(decimals);
        (steps * self.quantity_step * scale).round() / scale
    }
}

impl Executor for PaperExecutor {
    fn place(&mut self, order: &MarketOrder) -> Result<Fill, ExecError> {
        if let Some(fill) = self.fills.get(&order.client_order_id) {
            return Ok(*fill);
        }
        let price = order.reference_price;
        if !(price.is_finite() && price > 0.0) {
            return Err(ExecError::Rejected(format!(
                "no valid price for {} ({price})",
                order.symbol
            )));
        }
        let raw = match order.quantity {
            Quantity::Quote(q) => q / price,
            Quantity::Base(b) => b,
        };
        let base_qty = self.round_down(raw);
        if base_qty.is_nan() || base_qty <= 0.0 {
            return Err(ExecError::Rejected(format!(
                "quantity {raw} of {} is below the step {}",
                order.symbol, self.quantity_step
            )));
        }
        let notional = base_qty * price;
        let fill = Fill {
            price,
            base_qty,
            notional,
            fee: notional * self.fee_pct / 100.0,
        };
        self.fills.insert(order.client_order_id.clone(), fill);
        self.orders_placed += 1;
        Ok(fill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, quantity: Quantity) -> MarketOrder {
        MarketOrder {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            side: Side::Buy,
            quantity,
            client_order_id: id.into(),
            reference_price: 40_000.0,
        }
    }

    #[test]
    fn fills_at_the_reference_price_rounded_with_fees() {
        let mut paper = PaperExecutor::new(0.1, 0.00001);
        let fill = paper.place(&order("a", Quantity::Quote(100.0))).unwrap();
        // 100 / 40000 = 0.0025 exactly.
        assert_eq!(fill.base_qty, 0.0025);
        assert!((fill.notional - 100.0).abs() < 1e-9);
        assert!((fill.fee - 0.1).abs() < 1e-12);
        let fill = paper.place(&order("b", Quantity::Quote(55.0))).unwrap();
        // 55 / 40000 = 0.001375 → 0.00137 at a 0.00001 step.
        assert!((fill.base_qty - 0.00137).abs() < 1e-15, "{fill:?}");
        assert!((fill.notional - 54.8).abs() < 1e-9);
    }

    #[test]
    fn a_repeated_client_order_id_trades_once() {
        let mut paper = PaperExecutor::new(0.1, 0.00001);
        let first = paper.place(&order("t1", Quantity::Quote(100.0))).unwrap();
        let again = paper.place(&order("t1", Quantity::Quote(100.0))).unwrap();
        assert_eq!(first, again);
        assert_eq!(paper.orders_placed, 1);
    }

    #[test]
    fn dust_is_rejected() {
        let mut paper = PaperExecutor::new(0.1, 0.001);
        let e = paper.place(&order("x", Quantity::Quote(1.0))).unwrap_err();
        assert!(matches!(e, ExecError::Rejected(_)), "{e}");
    }
}
