//! Alert message templates: `{{symbol}} RSI {{rsi_oversold.value}} at {{close}}`.
//!
//! Placeholders are checked when the alert is created, not when it fires: an unknown one is a
//! validation error. A template can read only the values listed in [`Placeholder`].

use std::fmt::Write;

use alert_core::BarTime;

/// One value a template may insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placeholder {
    Symbol,
    Timeframe,
    Open,
    High,
    Low,
    Close,
    Volume,
    /// The base bar's open time (RFC 3339, UTC).
    Time,
    /// The time the message is rendered (RFC 3339, UTC).
    TimeNow,
    AlertName,
    AlertId,
    /// `{{<condition id>.value}}`: the condition's left-hand value when it fired.
    ConditionValue(String),
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{{{0}}}}}: expected one of symbol, timeframe, open, high, low, close, volume, time, timenow, alert.name, alert.id, or <condition id>.value for a condition of this alert"
    )]
    Unknown(String),
    #[error("unclosed placeholder at byte {0}: expected `}}}}`")]
    Unclosed(usize),
    #[error("message is {0} bytes: expected at most 4096")]
    TooLong(usize),
}

/// What a template is rendered with.
pub struct RenderContext<'a> {
    pub symbol: &'a str,
    pub timeframe: &'a str,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub time: BarTime,
    pub now: BarTime,
    pub alert_name: &'a str,
    pub alert_id: &'a str,
    /// Left-hand values by condition id (`None`: no value).
    pub condition_value: &'a dyn Fn(&str) -> Option<f64>,
}

impl Template {
    /// Parses `text`; `{{<id>.value}}` is accepted for the ids in `condition_ids`.
    pub fn parse(text: &str, condition_ids: &[&str]) -> Result<Self, TemplateError> {
        if text.len() > 4096 {
            return Err(TemplateError::TooLong(text.len()));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            let name = after[..close].trim();
            let placeholder = match name {
                "symbol" | "ticker" => Placeholder::Symbol,
                "timeframe" | "interval" => Placeholder::Timeframe,
                "open" => Placeholder::Open,
                "high" => Placeholder::High,
                "low" => Placeholder::Low,
                "close" => Placeholder::Close,
                "volume" => Placeholder::Volume,
                "time" => Placeholder::Time,
                "timenow" => Placeholder::TimeNow,
                "alert.name" => Placeholder::AlertName,
                "alert.id" => Placeholder::AlertId,
                other => match other.strip_suffix(".value") {
                    Some(id) if condition_ids.contains(&id) => {
                        Placeholder::ConditionValue(id.to_owned())
                    }
                    _ => return Err(TemplateError::Unknown(other.to_owned())),
                },
            };
            pieces.push(Piece::Value(placeholder));
            let consumed = open + 2 + close + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self {
            source: text.to_owned(),
            pieces,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, ctx: &RenderContext<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        let num = ryu_like;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(p) => match p {
                    Placeholder::Symbol => out.push_str(ctx.symbol),
                    Placeholder::Timeframe => out.push_str(ctx.timeframe),
                    Placeholder::Open => num(&mut out, ctx.open),
                    Placeholder::High => num(&mut out, ctx.high),
                    Placeholder::Low => num(&mut out, ctx.low),
                    Placeholder::Close => num(&mut out, ctx.close),
                    Placeholder::Volume => num(&mut out, ctx.volume),
                    Placeholder::Time => out.push_str(&ctx.time.to_rfc3339()),
                    Placeholder::TimeNow => out.push_str(&ctx.now.to_rfc3339()),
                    Placeholder::AlertName => out.push_str(ctx.alert_name),
                    Placeholder::AlertId => out.push_str(ctx.alert_id),
                    Placeholder::ConditionValue(id) => match (ctx.condition_value)(id) {
                        Some(v) => num(&mut out, v),
                        None => out.push_str("n/a"),
                    },
                },
            }
        }
        out
    }
}

/// Shortest round-trip form of a number (Rust's `Display` for `f64` is exactly that).
fn ryu_like(out: &mut String, v: f64) {
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(f: &'a dyn Fn(&str) -> Option<f64>) -> RenderContext<'a> {
        RenderContext {
            symbol: "BTCUSDT",
            timeframe: "1h",
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.25,
            volume: 10.0,
            time: BarTime::from_millis(1_704_283_200_000),
            now: BarTime::from_millis(1_704_283_260_000),
            alert_name: "dip",
            alert_id: "a1",
            condition_value: f,
        }
    }

    #[test]
    fn renders_every_placeholder() {
        let t = Template::parse(
            "{{symbol}} {{timeframe}} {{open}}/{{high}}/{{low}}/{{close}} v{{volume}} @{{time}} now {{timenow}} {{alert.name}}#{{alert.id}} rsi={{ rsi.value }}",
            &["rsi"],
        );
        let Ok(t) = t else {
            panic!("valid template: {t:?}")
        };
        let values = |id: &str| (id == "rsi").then_some(28.5);
        assert_eq!(
            t.render(&ctx(&values)),
            "BTCUSDT 1h 1/2/0.5/1.25 v10 @2024-01-03T12:00:00Z now 2024-01-03T12:01:00Z dip#a1 rsi=28.5"
        );
    }

    #[test]
    fn refuses_unknown_placeholders_at_creation() {
        assert_eq!(
            Template::parse("{{secret}}", &[]),
            Err(TemplateError::Unknown("secret".into()))
        );
        assert_eq!(
            Template::parse("{{rsi.value}}", &["ema"]),
            Err(TemplateError::Unknown("rsi.value".into()))
        );
        assert_eq!(
            Template::parse("{{env.HOME}}", &[]),
            Err(TemplateError::Unknown("env.HOME".into()))
        );
        assert_eq!(
            Template::parse("a {{close", &[]),
            Err(TemplateError::Unclosed(2))
        );
        assert!(Template::parse(&"x".repeat(5000), &[]).is_err());
        let msg = TemplateError::Unknown("x".into()).to_string();
        assert!(msg.starts_with("unknown placeholder {{x}}"), "{msg}");
    }

    #[test]
    fn plain_text_passes_through() {
        let Ok(t) = Template::parse("no placeholders } { here", &[]) else {
            panic!()
        };
        assert_eq!(t.render(&ctx(&|_| None)), "no placeholders } { here");
    }
}
