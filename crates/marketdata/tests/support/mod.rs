pub mod fake_binance;
