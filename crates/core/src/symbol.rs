use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MAX_LEN: usize = 23;

/// A market symbol such as `BTCUSDT`: 1 to 23 ASCII letters and digits, stored upper-case.
///
/// Inline and `Copy`, so keying maps by symbol on the hot path allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Symbol {
    len: u8,
    bytes: [u8; MAX_LEN],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("symbol is empty: expected 1 to {MAX_LEN} ASCII letters and digits, like BTCUSDT")]
    Empty,
    #[error("symbol {given:?} is longer than {MAX_LEN} characters")]
    TooLong { given: String },
    #[error("symbol {given:?} has {bad:?}: expected only ASCII letters and digits, like BTCUSDT")]
    BadChar { given: String, bad: char },
}

impl Symbol {
    /// Parses a symbol; lower-case letters are accepted and upper-cased (`btcusdt` = `BTCUSDT`),
    /// as Binance's stream names are lower-case.
    pub fn new(s: &str) -> Result<Self, SymbolError> {
        if s.is_empty() {
            return Err(SymbolError::Empty);
        }
        if let Some(bad) = s.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(SymbolError::BadChar {
                given: s.to_owned(),
                bad,
            });
        }
        if s.len() > MAX_LEN {
            return Err(SymbolError::TooLong {
                given: s.to_owned(),
            });
        }
        let mut bytes = [0u8; MAX_LEN];
        for (dst, src) in bytes.iter_mut().zip(s.bytes()) {
            *dst = src.to_ascii_uppercase();
        }
        Ok(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({})", self.as_str())
    }
}

impl FromStr for Symbol {
    type Err = SymbolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_case() {
        let s = Symbol::new("btcUSDT").ok();
        assert_eq!(s.map(|s| s.to_string()).as_deref(), Some("BTCUSDT"));
        assert_eq!(Symbol::new("ETHBTC").ok(), "ethbtc".parse().ok());
    }

    #[test]
    fn rejects_bad_symbols_with_reasons() {
        assert_eq!(Symbol::new(""), Err(SymbolError::Empty));
        assert!(matches!(
            Symbol::new("BTC/USDT"),
            Err(SymbolError::BadChar { bad: '/', .. })
        ));
        assert!(matches!(
            Symbol::new(&"A".repeat(24)),
            Err(SymbolError::TooLong { .. })
        ));
        assert!(Symbol::new(&"A".repeat(23)).is_ok());
        assert!(matches!(
            Symbol::new("BTC USDT"),
            Err(SymbolError::BadChar { bad: ' ', .. })
        ));
    }

    #[test]
    fn serde_round_trip() {
        let s: Result<Symbol, _> = serde_json::from_str("\"solusdt\"");
        assert_eq!(s.as_ref().map(|s| s.as_str()).ok(), Some("SOLUSDT"));
        assert_eq!(
            s.ok()
                .and_then(|s| serde_json::to_string(&s).ok())
                .as_deref(),
            Some("\"SOLUSDT\"")
        );
        assert!(serde_json::from_str::<Symbol>("\"\"").is_err());
    }
}
