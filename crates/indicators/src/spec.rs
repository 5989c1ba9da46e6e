//! Naming an indicator with its settings: `RSI(14)`, `MACD(12,26,9)`, `BBANDS(20,2)`,
//! `SMA(50,hl2)`, `OBV`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use alert_core::PriceSource;

use crate::{MAX_PERIOD, SettingError, check_period};

/// Every indicator alert-runner computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndicatorKind {
    Sma,
    Ema,
    Wma,
    Rsi,
    Macd,
    Bbands,
    Stoch,
    Atr,
    VolumeSma,
    Adx,
    Cci,
    Mfi,
    Roc,
    Willr,
    Obv,
    Vwap,
}

impl IndicatorKind {
    pub const ALL: [IndicatorKind; 16] = [
        Self::Sma,
        Self::Ema,
        Self::Wma,
        Self::Rsi,
        Self::Macd,
        Self::Bbands,
        Self::Stoch,
        Self::Atr,
        Self::VolumeSma,
        Self::Adx,
        Self::Cci,
        Self::Mfi,
        Self::Roc,
        Self::Willr,
        Self::Obv,
        Self::Vwap,
    ];

    /// The canonical name, as printed in specs and CSV headers.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sma => "SMA",
            Self::Ema => "EMA",
            Self::Wma => "WMA",
            Self::Rsi => "RSI",
            Self::Macd => "MACD",
            Self::Bbands => "BBANDS",
            Self::Stoch => "STOCH",
            Self::Atr => "ATR",
            Self::VolumeSma => "VOLUME_SMA",
            Self::Adx => "ADX",
            Self::Cci => "CCI",
            Self::Mfi => "MFI",
            Self::Roc => "ROC",
            Self::Willr => "WILLR",
            Self::Obv => "OBV",
            Self::Vwap => "VWAP",
        }
    }

    /// Parses a name, case-insensitively, with the seeds' aliases ("Bollinger Bands", "BB",
    /// "Stochastic").
    pub fn parse_name(s: &str) -> Option<Self> {
        let t = s.trim();
        if let Some(k) = Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(t))
        {
            return Some(k);
        }
        let folded: String = t
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .collect::<String>()
            .to_ascii_uppercase();
        match folded.as_str() {
            "BOLLINGERBANDS" | "BOLLINGER" | "BB" => Some(Self::Bbands),
            "STOCHASTIC" => Some(Self::Stoch),
            "VOLUMESMA" => Some(Self::VolumeSma),
            "WILLIAMSR" | "WILLIAMS%R" => Some(Self::Willr),
            _ => None,
        }
    }

    /// Component names, in the order of [`crate::Components`].
    pub const fn components(self) -> &'static [&'static str] {
        match self {
            Self::Macd => &["MACD", "Signal", "Histogram"],
            Self::Bbands => &["Upper", "Middle", "Lower"],
            Self::Stoch => &["K", "D"],
            Self::Adx => &["ADX", "PlusDI", "MinusDI"],
            k => match k {
                Self::Sma => &["SMA"],
                Self::Ema => &["EMA"],
                Self::Wma => &["WMA"],
                Self::Rsi => &["RSI"],
                Self::Atr => &["ATR"],
                Self::VolumeSma => &["VOLUME_SMA"],
                Self::Cci => &["CCI"],
                Self::Mfi => &["MFI"],
                Self::Roc => &["ROC"],
                Self::Willr => &["WILLR"],
                Self::Obv => &["OBV"],
                _ => &["VWAP"],
            },
        }
    }

    /// Index of a component by name, case-insensitively, accepting the seeds' spellings
    /// (`macd_line`, `signal_line`, `histogram`, `%K`, `plus_di`, ...).
    pub fn component_index(self, name: &str) -> Option<usize> {
        let fold = |s: &str| -> String {
            s.trim()
                .chars()
                .filter(|c| !matches!(c, ' ' | '_' | '-' | '%' | '+'))
                .collect::<String>()
                .to_ascii_lowercase()
        };
        let folded = fold(name);
        if let Some(i) = self.components().iter().position(|c| fold(c) == folded) {
            return Some(i);
        }
        let alias = match (self, folded.as_str()) {
            (Self::Macd, "macdline" | "line" | "value") => 0,
            (Self::Macd, "signalline" | "macdsignal") => 1,
            (Self::Macd, "hist" | "macdhist") => 2,
            (Self::Bbands, "upperband" | "top" | "up") => 0,
            (Self::Bbands, "middleband" | "basis" | "mid" | "middle") => 1,
            (Self::Bbands, "lowerband" | "bottom" | "low") => 2,
            (Self::Stoch, "slowk" | "stochk") => 0,
            (Self::Stoch, "slowd" | "stochd") => 1,
            (Self::Adx, "plusdi" | "pdi" | "diplus") => 1,
            (Self::Adx, "minusdi" | "mdi" | "diminus") => 2,
            (k, _) if k.components().len() == 1 && folded == "value" => 0,
            _ => return None,
        };
        Some(alias)
    }

    /// One line for `--help`: arguments in order, with defaults.
    pub const fn usage(self) -> &'static str {
        match self {
            Self::Sma => "SMA(period=20[,source])        simple moving average",
            Self::Ema => {
                "EMA(period=20[,source])        exponential moving average, seeded with the SMA"
            }
            Self::Wma => "WMA(period=20[,source])        linearly weighted moving average",
            Self::Rsi => "RSI(period=14[,source])        relative strength index, Wilder smoothing",
            Self::Macd => {
                "MACD(fast=12,slow=26,signal=9[,source])  components MACD, Signal, Histogram"
            }
            Self::Bbands => {
                "BBANDS(period=20,stddev=2[,source])  Bollinger Bands: Upper, Middle, Lower (population stddev)"
            }
            Self::Stoch => "STOCH(k=14,smoothK=3,d=3)     slow stochastic, SMA smoothing: K, D",
            Self::Atr => "ATR(period=14)                 average true range, Wilder smoothing",
            Self::VolumeSma => "VOLUME_SMA(period=20)          simple moving average of volume",
            Self::Adx => {
                "ADX(period=14)                 average directional index: ADX, PlusDI, MinusDI"
            }
            Self::Cci => "CCI(period=20)                 commodity channel index",
            Self::Mfi => "MFI(period=14)                 money flow index",
            Self::Roc => "ROC(period=10[,source])        rate of change, percent",
            Self::Willr => "WILLR(period=14)               Williams' %R",
            Self::Obv => "OBV                            on-balance volume",
            Self::Vwap => {
                "VWAP                           volume-weighted average price of hlc3, anchored to each UTC day"
            }
        }
    }

    fn takes_source(self) -> bool {
        matches!(
            self,
            Self::Sma | Self::Ema | Self::Wma | Self::Rsi | Self::Macd | Self::Bbands | Self::Roc
        )
    }

    /// The smallest period TA-Lib accepts for a one-period indicator.
    fn min_period(self) -> usize {
        match self {
            Self::Sma | Self::Ema | Self::Wma | Self::VolumeSma | Self::Atr | Self::Roc => 1,
            _ => 2,
        }
    }

    /// The default settings.
    pub fn default_params(self) -> Params {
        match self {
            Self::Sma | Self::Ema | Self::Wma => Params::LengthOf(20, PriceSource::Close),
            Self::Rsi => Params::LengthOf(14, PriceSource::Close),
            Self::Roc => Params::LengthOf(10, PriceSource::Close),
            Self::Macd => Params::Macd {
                fast: 12,
                slow: 26,
                signal: 9,
                source: PriceSource::Close,
            },
            Self::Bbands => Params::Bbands {
                period: 20,
                stddev: StdDevMultiplier(2.0),
                source: PriceSource::Close,
            },
            Self::Stoch => Params::Stoch {
                k: 14,
                smooth_k: 3,
                d: 3,
            },
            Self::VolumeSma | Self::Cci => Params::Length(20),
            Self::Atr | Self::Adx | Self::Mfi | Self::Willr => Params::Length(14),
            Self::Obv | Self::Vwap => Params::None,
        }
    }
}

impl fmt::Display for IndicatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Bollinger band width in standard deviations: finite and positive. Compared and hashed by
/// its bits, so equal settings share one indicator.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct StdDevMultiplier(f64);

impl StdDevMultiplier {
    pub fn new(v: f64) -> Result<Self, SettingError> {
        if v.is_finite() && v > 0.0 && v <= 1e6 {
            Ok(Self(v))
        } else {
            Err(SettingError {
                setting: "stddev",
                value: v.to_string(),
                expected: "a positive number up to 1e6".into(),
            })
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Eq for StdDevMultiplier {}

impl Hash for StdDevMultiplier {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// Validated settings of one indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Params {
    /// One period over the bar's high/low/close(/volume).
    Length(usize),
    /// One period over a chosen price source.
    LengthOf(usize, PriceSource),
    Macd {
        fast: usize,
        slow: usize,
        signal: usize,
        source: PriceSource,
    },
    Bbands {
        period: usize,
        stddev: StdDevMultiplier,
        source: PriceSource,
    },
    Stoch {
        k: usize,
        smooth_k: usize,
        d: usize,
    },
    None,
}

/// An indicator with its settings; the key under which one instance is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IndicatorSpec {
    kind: IndicatorKind,
    params: Params,
}

/// Why a spec string was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "unknown indicator {0:?}: expected one of SMA EMA WMA RSI MACD BBANDS STOCH ATR VOLUME_SMA ADX CCI MFI ROC WILLR OBV VWAP"
    )]
    UnknownIndicator(String),
    #[error("{spec:?} is not of the form NAME or NAME(arg,...)")]
    Syntax { spec: String },
    #[error("{kind} takes at most {max} arguments, got {got}")]
    TooManyArguments {
        kind: IndicatorKind,
        max: usize,
        got: usize,
    },
    #[error("{kind} argument {index} ({setting}) is {given:?}: expected {expected}")]
    BadArgument {
        kind: IndicatorKind,
        index: usize,
        setting: &'static str,
        given: String,
        expected: String,
    },
    #[error("{kind}: {source}")]
    Setting {
        kind: IndicatorKind,
        #[source]
        source: SettingError,
    },
}

impl IndicatorSpec {
    /// Builds a spec from a kind and settings, validating them.
    pub fn new(kind: IndicatorKind, params: Params) -> Result<Self, SpecError> {
        let wrap = |source| SpecError::Setting { kind, source };
        let min = kind.min_period();
        let params = match (kind, params) {
            (IndicatorKind::Obv | IndicatorKind::Vwap, Params::None) => Params::None,
            (
                IndicatorKind::Sma
                | IndicatorKind::Ema
                | IndicatorKind::Wma
                | IndicatorKind::Rsi
                | IndicatorKind::Roc,
                Params::LengthOf(n, src),
            ) => Params::LengthOf(check_period("period", n, min).map_err(wrap)?, src),
            (
                IndicatorKind::Atr
                | IndicatorKind::VolumeSma
                | IndicatorKind::Adx
                | IndicatorKind::Cci
                | IndicatorKind::Mfi
                | IndicatorKind::Willr,
                Params::Length(n),
            ) => Params::Length(check_period("period", n, min).map_err(wrap)?),
            (
                IndicatorKind::Macd,
                Params::Macd {
                    fast,
                    slow,
                    signal,
                    source,
                },
            ) => Params::Macd {
                fast: check_period("fast", fast, 2).map_err(wrap)?,
                slow: check_period("slow", slow, 2).map_err(wrap)?,
                signal: check_period("signal", signal, 1).map_err(wrap)?,
                source,
            },
            (
                IndicatorKind::Bbands,
                Params::Bbands {
                    period,
                    stddev,
                    source,
                },
            ) => Params::Bbands {
                period: check_period("period", period, 2).map_err(wrap)?,
                stddev,
                source,
            },
            (IndicatorKind::Stoch, Params::Stoch { k, smooth_k, d }) => Params::Stoch {
                k: check_period("k", k, 1).map_err(wrap)?,
                smooth_k: check_period("smoothK", smooth_k, 1).map_err(wrap)?,
                d: check_period("d", d, 1).map_err(wrap)?,
            },
            (kind, other) => {
                return Err(SpecError::Setting {
                    kind,
                    source: SettingError {
                        setting: "settings",
                        value: format!("{other:?}"),
                        expected: format!("settings of the form {}", kind.usage()),
                    },
                });
            }
        };
        Ok(Self { kind, params })
    }

    /// The indicator with its default settings.
    pub fn default_for(kind: IndicatorKind) -> Self {
        Self {
            kind,
            params: kind.default_params(),
        }
    }

    pub fn kind(&self) -> IndicatorKind {
        self.kind
    }

    pub fn params(&self) -> Params {
        self.params
    }

    /// How many past bars an instance needs to be warm: enough for every component to have
    /// converged to TA-Lib's value from the same history (recursive indicators need more
    /// than their lookback; this is the engine's warm-up length).
    pub fn warmup_bars(&self) -> usize {
        let n = match self.params {
            Params::Length(n) | Params::LengthOf(n, _) => n,
            Params::Macd {
                fast, slow, signal, ..
            } => fast.max(slow) + signal,
            Params::Bbands { period, .. } => period,
            Params::Stoch { k, smooth_k, d } => k + smooth_k + d,
            Params::None => 1,
        };
        match self.kind {
            // Exponential smoothing: ~10 time constants make the seed's weight negligible.
            IndicatorKind::Ema
            | IndicatorKind::Rsi
            | IndicatorKind::Atr
            | IndicatorKind::Macd
            | IndicatorKind::Adx => (n * 10).min(MAX_PERIOD * 2),
            _ => n,
        }
    }
}

impl fmt::Display for IndicatorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.kind.name();
        let src = |f: &mut fmt::Formatter<'_>, s: PriceSource| {
            if s == PriceSource::Close {
                Ok(())
            } else {
                write!(f, ",{}", s.as_str())
            }
        };
        match self.params {
            Params::None => f.write_str(name),
            Params::Length(n) => write!(f, "{name}({n})"),
            Params::LengthOf(n, s) => {
                write!(f, "{name}({n}")?;
                src(f, s)?;
                f.write_str(")")
            }
            Params::Macd {
                fast,
                slow,
                signal,
                source,
            } => {
                write!(f, "{name}({fast},{slow},{signal}")?;
                src(f, source)?;
                f.write_str(")")
            }
            Params::Bbands {
                period,
                stddev,
                source,
            } => {
                write!(f, "{name}({period},{}", stddev.get())?;
                src(f, source)?;
                f.write_str(")")
            }
            Params::Stoch { k, smooth_k, d } => write!(f, "{name}({k},{smooth_k},{d})"),
        }
    }
}

impl FromStr for IndicatorSpec {
    type Err = SpecError;

    /// `NAME` or `NAME(arg,...)`; arguments in TA-Lib's order, missing trailing ones take
    /// their defaults, and indicators on price accept a source (`open`, `hl2`, ...) last.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, args) = match s.find('(') {
            None => (s, ""),
            Some(open) => {
                let inner = s[open + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| SpecError::Syntax { spec: s.to_owned() })?;
                if inner.contains(['(', ')']) {
                    return Err(SpecError::Syntax { spec: s.to_owned() });
                }
                (&s[..open], inner)
            }
        };
        let kind = IndicatorKind::parse_name(name)
            .ok_or_else(|| SpecError::UnknownIndicator(name.trim().to_owned()))?;
        let mut args: Vec<&str> = args.split(',').map(str::trim).collect();
        if args == [""] {
            args.clear();
        }
        let mut source = PriceSource::Close;
        if kind.takes_source()
            && let Some(last) = args.last()
            && let Some(parsed) = PriceSource::parse(last)
        {
            source = parsed;
            args.pop();
        }
        let names: &[&'static str] = match kind {
            IndicatorKind::Macd => &["fast", "slow", "signal"],
            IndicatorKind::Bbands => &["period", "stddev"],
            IndicatorKind::Stoch => &["k", "smoothK", "d"],
            IndicatorKind::Obv | IndicatorKind::Vwap => &[],
            _ => &["period"],
        };
        if args.len() > names.len() {
            return Err(SpecError::TooManyArguments {
                kind,
                max: names.len(),
                got: args.len(),
            });
        }
        let int = |i: usize, default: usize| -> Result<usize, SpecError> {
            match args.get(i) {
                None => Ok(default),
                Some(a) => a.parse::<usize>().map_err(|_| SpecError::BadArgument {
                    kind,
                    index: i + 1,
                    setting: names[i],
                    given: (*a).to_owned(),
                    expected: "a whole number".into(),
                }),
            }
        };
        let params = match kind.default_params() {
            Params::None => Params::None,
            Params::Length(d) => Params::Length(int(0, d)?),
            Params::LengthOf(d, _) => Params::LengthOf(int(0, d)?, source),
            Params::Macd {
                fast, slow, signal, ..
            } => Params::Macd {
                fast: int(0, fast)?,
                slow: int(1, slow)?,
                signal: int(2, signal)?,
                source,
            },
            Params::Stoch { k, smooth_k, d } => Params::Stoch {
                k: int(0, k)?,
                smooth_k: int(1, smooth_k)?,
                d: int(2, d)?,
            },
            Params::Bbands { period, stddev, .. } => {
                let stddev = match args.get(1) {
                    None => stddev,
                    Some(a) => a
                        .parse::<f64>()
                        .ok()
                        .and_then(|v| StdDevMultiplier::new(v).ok())
                        .ok_or_else(|| SpecError::BadArgument {
                            kind,
                            index: 2,
                            setting: "stddev",
                            given: (*a).to_owned(),
                            expected: "a positive number up to 1e6".into(),
                        })?,
                };
                Params::Bbands {
                    period: int(0, period)?,
                    stddev,
                    source,
                }
            }
        };
        Self::new(kind, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<IndicatorSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn parses_canonical_and_default_forms() {
        let cases = [
            ("RSI", "RSI(14)"),
            ("rsi(7)", "RSI(7)"),
            ("MACD", "MACD(12,26,9)"),
            ("MACD(5, 35)", "MACD(5,35,9)"),
            ("BBANDS(20,2)", "BBANDS(20,2)"),
            ("Bollinger Bands(10,1.5)", "BBANDS(10,1.5)"),
            ("STOCH", "STOCH(14,3,3)"),
            ("Stochastic(5,1,1)", "STOCH(5,1,1)"),
            ("OBV", "OBV"),
            ("OBV()", "OBV"),
            ("VWAP", "VWAP"),
            ("SMA(20,open)", "SMA(20,open)"),
            ("SMA(20,close)", "SMA(20)"),
            ("SMA(1)", "SMA(1)"),
            ("EMA(10,hlc3)", "EMA(10,hlc3)"),
            ("VOLUME_SMA", "VOLUME_SMA(20)"),
            ("ATR(1)", "ATR(1)"),
            ("WILLR", "WILLR(14)"),
        ];
        for (input, canonical) in cases {
            let parsed = spec(input).map(|s| s.to_string());
            assert_eq!(parsed.as_deref(), Ok(canonical), "{input}");
            // Canonical forms read back to the same spec.
            assert_eq!(spec(canonical).ok(), spec(input).ok());
        }
    }

    #[test]
    fn refuses_bad_specs_precisely() {
        assert!(matches!(spec("FOO(3)"), Err(SpecError::UnknownIndicator(n)) if n == "FOO"));
        assert!(matches!(spec("RSI(14"), Err(SpecError::Syntax { .. })));
        assert!(matches!(
            spec("RSI(14,2)"),
            Err(SpecError::BadArgument {
                setting: "period",
                ..
            }) | Err(SpecError::TooManyArguments { .. })
        ));
        assert!(matches!(
            spec("RSI(x)"),
            Err(SpecError::BadArgument {
                index: 1,
                setting: "period",
                ..
            })
        ));
        assert!(matches!(
            spec("RSI(1)"),
            Err(SpecError::Setting {
                source: SettingError {
                    setting: "period",
                    ..
                },
                ..
            })
        ));
        assert!(matches!(
            spec("BBANDS(20,-1)"),
            Err(SpecError::BadArgument {
                setting: "stddev",
                ..
            })
        ));
        assert!(matches!(
            spec("BBANDS(20,nan)"),
            Err(SpecError::BadArgument {
                setting: "stddev",
                ..
            })
        ));
        assert!(matches!(
            spec("ATR(14,open)"),
            Err(SpecError::TooManyArguments { max: 1, got: 2, .. })
        ));
        assert!(matches!(
            spec("OBV(3)"),
            Err(SpecError::TooManyArguments { max: 0, .. })
        ));
        assert!(matches!(
            spec("SMA(100001)"),
            Err(SpecError::Setting { .. })
        ));
        let msg = spec("STOCH(0,3,3)")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("STOCH") && msg.contains('k') && msg.contains("at least 1"),
            "{msg}"
        );
    }

    #[test]
    fn components_and_aliases() {
        assert_eq!(IndicatorKind::Macd.component_index("Signal"), Some(1));
        assert_eq!(IndicatorKind::Macd.component_index("signal_line"), Some(1));
        assert_eq!(IndicatorKind::Macd.component_index("macd_line"), Some(0));
        assert_eq!(IndicatorKind::Macd.component_index("histogram"), Some(2));
        assert_eq!(IndicatorKind::Bbands.component_index("lower"), Some(2));
        assert_eq!(IndicatorKind::Stoch.component_index("%K"), Some(0));
        assert_eq!(IndicatorKind::Adx.component_index("plus_di"), Some(1));
        assert_eq!(IndicatorKind::Rsi.component_index("RSI"), Some(0));
        assert_eq!(IndicatorKind::Rsi.component_index("Signal"), None);
        for k in IndicatorKind::ALL {
            assert_eq!(IndicatorKind::parse_name(k.name()), Some(k));
            for (i, c) in k.components().iter().enumerate() {
                assert_eq!(k.component_index(c), Some(i));
            }
        }
    }
}
