//! Shards: which runner process owns which symbols.
//!
//! A symbol belongs to shard `fnv1a64(upper-case symbol bytes) mod N`. The hash is FNV-1a,
//! 64-bit (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`), written out here so
//! it is the same in every build, on every platform and in every version — never `std`'s
//! `DefaultHasher`/`RandomState`, which are seeded per process. The golden test below pins
//! its values: a change of the function would move symbols between shards, so it fails CI.

use std::fmt;
use std::str::FromStr;

use crate::Symbol;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The most shards a split may have (the advisory lock key keeps N in 16 bits).
pub const MAX_SHARDS: u32 = 65_535;

/// FNV-1a 64 of a symbol's name, ASCII letters folded to upper case (symbols are stored
/// upper-case, so `btcusdt` and `BTCUSDT` hash alike).
pub fn symbol_hash(name: &str) -> u64 {
    let mut h = FNV_OFFSET;
    for b in name.bytes() {
        h ^= u64::from(b.to_ascii_uppercase());
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The shard (`0..count`) a symbol name belongs to in a split of `count` (0 when `count` is 0).
pub fn shard_of(name: &str, count: u32) -> u32 {
    if count == 0 {
        return 0;
    }
    (symbol_hash(name) % u64::from(count)) as u32
}

impl Symbol {
    /// This symbol's shard in a split of `count`: `fnv1a64(symbol) mod count` (see
    /// [`symbol_hash`]).
    pub fn shard(&self, count: u32) -> u32 {
        shard_of(self.as_str(), count)
    }
}

/// One shard of a split: `index` of `count` (`--shard I/N`, 0 ≤ I < N).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error(
        "--shard {given:?}: expected I/N, the shard index and the number of shards, with 0 ≤ I < N and 1 ≤ N ≤ {MAX_SHARDS} (e.g. 0/3)"
    )]
    Format { given: String },
    #[error(
        "--shard {given:?}: the index {index} must be below the number of shards {count} (0 ≤ I < N)"
    )]
    IndexOutOfRange {
        given: String,
        index: u32,
        count: u32,
    },
    #[error("--shard {given:?}: the number of shards must be between 1 and {MAX_SHARDS} (N ≥ 1)")]
    Count { given: String },
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        let given = format!("{index}/{count}");
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Count { given });
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange {
                given,
                index,
                count,
            });
        }
        Ok(Self { index, count })
    }

    /// Whether this shard owns `symbol`.
    pub fn owns(&self, symbol: &Symbol) -> bool {
        symbol.shard(self.count) == self.index
    }

    /// Whether this shard owns the symbol named `name` (as stored: no parsing needed).
    pub fn owns_name(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let format = || ShardError::Format {
            given: s.to_owned(),
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(format)?;
        let index: u32 = i.trim().parse().map_err(|_| format())?;
        let count: u32 = n.trim().parse().map_err(|_| format())?;
        Self::new(index, count).map_err(|e| match e {
            ShardError::Count { .. } => ShardError::Count {
                given: s.to_owned(),
            },
            ShardError::IndexOutOfRange { index, count, .. } => ShardError::IndexOutOfRange {
                given: s.to_owned(),
                index,
                count,
            },
            ShardError::Format { .. } => format(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> Symbol {
        Symbol::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Golden values: the shard function must never change (it would move symbols between
    /// running shards). FNV-1a 64 of the upper-case bytes; the hashes were computed by an
    /// independent implementation (FNV-1a 64 of "a" is the published 0xaf63dc4c8601ec8c;
    /// symbols fold to upper case, so `symbol_hash("a")` is FNV-1a 64 of "A").
    #[test]
    fn hash_and_shards_are_pinned() {
        assert_eq!(symbol_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(symbol_hash("a"), 0xaf63_fc4c_8602_22ec);
        assert_eq!(symbol_hash("A"), symbol_hash("a"));
        // (symbol, hash, shard of 2, of 3, of 16)
        let golden: [(&str, u64, u32, u32, u32); 6] = [
            ("BTCUSDT", 0x3e64_0dbf_f523_962c, 0, 0, 12),
            ("ETHUSDT", 0x7f5c_456d_3d0c_94f0, 0, 0, 0),
            ("SOLUSDT", 0xd2c4_ad56_4fc6_ae7d, 1, 2, 13),
            ("AAAUSDT", 0x4df6_bc66_eeb2_0d62, 0, 0, 2),
            ("BBBUSDT", 0xbd56_2543_3d3c_37e9, 1, 2, 9),
            ("CCCUSDT", 0xf87f_c8c1_4520_b66c, 0, 1, 12),
        ];
        for (name, hash, of2, of3, of16) in golden {
            assert_eq!(symbol_hash(name), hash, "{name}");
            let s = sym(name);
            assert_eq!(
                [s.shard(2), s.shard(3), s.shard(16)],
                [of2, of3, of16],
                "{name}"
            );
        }
    }

    #[test]
    fn symbol_shard_is_the_name_hash_mod_n() {
        let s = sym("btcusdt");
        for n in 1..20 {
            assert_eq!(s.shard(n), (symbol_hash("BTCUSDT") % u64::from(n)) as u32);
            assert!(s.shard(n) < n);
        }
        assert_eq!(s.shard(1), 0);
        assert_eq!(shard_of("BTCUSDT", 0), 0);
    }

    #[test]
    fn parses_i_of_n() {
        assert_eq!("0/1".parse(), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(" 2/3 ".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(Shard { index: 2, count: 3 }.to_string(), "2/3");
        let owner: Shard = "1/4".parse().unwrap_or_else(|e| panic!("{e}"));
        let s = sym("ETHUSDT");
        assert_eq!(owner.owns(&s), s.shard(4) == 1);
        assert_eq!(owner.owns_name("ethusdt"), owner.owns(&s));
    }

    #[test]
    fn refuses_bad_shards_naming_the_flag_and_the_rule() {
        for (given, expect) in [
            ("3/3", "0 ≤ I < N"),
            ("5/2", "0 ≤ I < N"),
            ("0/0", "N ≥ 1"),
            ("0/70000", "N ≥ 1"),
            ("1", "expected I/N"),
            ("a/b", "expected I/N"),
            ("-1/2", "expected I/N"),
            ("1/2/3", "expected I/N"),
            ("", "expected I/N"),
        ] {
            let err = given
                .parse::<Shard>()
                .err()
                .unwrap_or_else(|| panic!("{given:?} parsed"))
                .to_string();
            assert!(err.contains("--shard"), "{given}: {err}");
            assert!(err.contains(expect), "{given}: {err}");
        }
    }
}
