//! DCA trading bots built on alerts (seed 002).
//!
//! A bot's entry rule and its safety orders, take profit and stop loss are alerts
//! ([`compile`]), so one runner evaluates alerts and bots alike and a hundred bots on a symbol
//! share its indicators. A trigger of one of them goes to the bot's deal machine
//! ([`deal::BotState::on_trigger`], sans I/O), which places a market order through an
//! [`executor::Executor`] (the [`executor::PaperExecutor`] fills without an exchange) and says
//! how the bot's alerts change. [`backtest::BotBacktest`] drives the same machine over
//! history through the engine.

pub mod backtest;
pub mod compile;
pub mod deal;
pub mod definition;
pub mod executor;
pub mod live;

pub use backtest::{BotBacktest, Summary};
pub use deal::{AlertChange, BotState, BotTrigger, Deal, OrderRecord, Outcome, Role};
pub use definition::{BotDefinition, SafetyOrderLevel, parse_bot};
pub use executor::{ExecError, Executor, Fill, MarketOrder, PaperExecutor, Quantity, Side};
