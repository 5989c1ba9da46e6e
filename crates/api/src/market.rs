//! Market data and what a UI needs to build alerts: candles and indicator values as the runner
//! keeps them, the catalog of indicators, operators and settings, ready-made alert templates,
//! and dry runs of a stored alert on the current data.
//!
//! Candles, indicators and dry runs are answered by the runner of this process
//! ([`ApiState::market`]); without one, or when it has stopped, they are 503. Every endpoint
//! needs a user token.

use std::collections::HashMap;
use std::str::FromStr;

use alert_core::{BarTime, PriceSource, Symbol, Timeframe};
use alert_engine::parse::{ValidationErrors, parse_alert};
use alert_engine::{Action, BotActionType, DryRun, TriggerMode};
use alert_indicators::{IndicatorKind, IndicatorSpec, MAX_PERIOD, Params};
use alert_runtime::{MAX_LIMIT, MarketHandle, QueryError};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::{ApiState, User};

/// Bars (or values) returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 500;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/v1/candles",
            get(candles).merge(
                post(crate::ingest::post_candles)
                    .layer(DefaultBodyLimit::max(crate::ingest::MAX_INGEST_BODY)),
            ),
        )
        .route("/v1/indicators", get(indicators))
        .route("/v1/catalog", get(catalog))
        .route("/v1/templates", get(templates))
        .route("/v1/alerts/{id}/evaluate", post(evaluate))
        .route("/v1/alerts/evaluate", post(evaluate_definition))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(candles, indicators, catalog, templates, evaluate, evaluate_definition),
    components(schemas(
        CandleOut,
        IndicatorValues,
        Catalog,
        IndicatorInfo,
        SettingInfo,
        OperatorInfo,
        TimeframeInfo,
        NamedInfo,
        ActionInfo,
        FieldInfo,
        Limits,
        AlertTemplate,
        Evaluation,
        ConditionEvaluation,
        ErrorBody,
        FieldError
    ))
)]
pub struct Doc;

// ---- shapes ------------------------------------------------------------------------------

/// One bar.
#[derive(Serialize, ToSchema, Debug, Clone, PartialEq)]
pub struct CandleOut {
    /// RFC 3339, UTC.
    pub open_time: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// `false` for the bar still in progress (the last one).
    pub closed: bool,
}

impl From<alert_runtime::Bar> for CandleOut {
    fn from(b: alert_runtime::Bar) -> Self {
        let c = b.candle;
        Self {
            open_time: c.open_time.to_rfc3339(),
            open: c.open,
            high: c.high,
            low: c.low,
            close: c.close,
            volume: c.volume,
            closed: b.closed,
        }
    }
}

/// An indicator's values, oldest first.
#[derive(Serialize, ToSchema)]
pub struct IndicatorValues {
    /// The canonical spec (`RSI(14)`, `MACD(12,26,9)`).
    pub spec: String,
    /// The component names, keys of each value object.
    pub components: Vec<String>,
    /// `{"open_time": RFC 3339, "closed": bool, <component>: number | null}` per bar; `null`
    /// before the indicator's lookback.
    #[schema(value_type = Vec<Object>)]
    pub values: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Catalog {
    pub indicators: Vec<IndicatorInfo>,
    pub operators: Vec<OperatorInfo>,
    pub timeframes: Vec<TimeframeInfo>,
    /// What a `price` condition, an operand or an indicator's `source` may read.
    pub price_sources: Vec<String>,
    /// A condition's `type`.
    pub condition_types: Vec<NamedInfo>,
    /// A condition's `compareWith`.
    pub compare_with: Vec<NamedInfo>,
    /// `conditionLogic` of the alert and of groups.
    pub logic: Vec<String>,
    /// The alert's `trigger`.
    pub trigger_modes: Vec<NamedInfo>,
    pub action_types: Vec<ActionInfo>,
    /// `action_type` of a `bot_trigger` action.
    pub bot_action_types: Vec<String>,
    /// Operator settings of a `divergence` condition: `settings.direction`.
    pub divergence_directions: Vec<String>,
    pub limits: Limits,
}

#[derive(Serialize, ToSchema)]
pub struct IndicatorInfo {
    /// The name to send as `indicator`.
    pub name: String,
    /// Other accepted names.
    pub aliases: Vec<String>,
    /// Arguments in order with their defaults, and what it computes.
    pub usage: String,
    /// Component names (`component` of a condition); one-component indicators need none.
    pub components: Vec<String>,
    /// The `settings` keys it reads.
    pub settings: Vec<SettingInfo>,
    /// The spec with default settings, e.g. `RSI(14)` (for `/v1/indicators`).
    pub default_spec: String,
}

#[derive(Serialize, ToSchema)]
pub struct SettingInfo {
    /// The key in `settings`.
    pub key: String,
    /// Other accepted spellings of the key.
    pub aliases: Vec<String>,
    /// `integer`, `number`, `price_source` or `enum`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub default: Value,
    /// Smallest accepted value (numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Values must be greater than this (numbers with an open lower bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive_min: Option<f64>,
    /// Largest accepted value (numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Accepted values (`price_source` and `enum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct OperatorInfo {
    pub name: String,
    pub aliases: Vec<String>,
    /// What the condition needs besides its left-hand side: `comparand` (`compareValue`, or an
    /// operand in `rhs` / per `compareWith`), `operand` (another series: `rhs`, else the close
    /// or the volume per `compareWith`), `channel` (lower `rhs`/`lowerBound` and upper
    /// `rhs2`/`upperBound`, or `rhs` = BBANDS), `percent` (`compareValue` = a percentage > 0).
    pub needs: String,
    /// Whether it compares with past closes of the condition's timeframe (it holds only once
    /// those closes exist).
    pub looks_back: bool,
    /// Operator settings (in the condition's `settings`).
    pub settings: Vec<SettingInfo>,
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct TimeframeInfo {
    pub name: String,
    pub seconds: i64,
    /// Whether this server can build it from the candles it is fed with (unknown: true).
    pub available: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NamedInfo {
    pub name: String,
    pub aliases: Vec<String>,
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct ActionInfo {
    /// The action's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub fields: Vec<FieldInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldInfo {
    pub name: String,
    pub required: bool,
    pub description: String,
}

#[derive(Serialize, ToSchema)]
pub struct Limits {
    /// Leaf conditions in one alert.
    pub max_conditions: usize,
    /// Nesting of condition groups (the root group is depth 1).
    pub max_group_depth: usize,
    /// `debounce_bars` range.
    pub debounce_bars: [u32; 2],
    /// Most values one `/v1/candles` or `/v1/indicators` request returns.
    pub max_limit: usize,
}

/// A ready-made alert.
#[derive(Serialize, ToSchema, Clone)]
pub struct AlertTemplate {
    pub id: String,
    pub name: String,
    pub description: String,
    /// A valid alert once the placeholders `{{SYMBOL}}` (in `symbol`) and `{{TIMEFRAME}}` (in
    /// `base_timeframe`) are replaced, exactly as written (upper case; the lower-case
    /// `{{symbol}}` of the message is the message's own placeholder).
    #[schema(value_type = Object)]
    pub alert: Value,
}

/// A dry run of an alert on the current data: nothing fired or recorded.
#[derive(Serialize, ToSchema)]
pub struct Evaluation {
    /// The stored alert evaluated; `null` for an unsaved definition
    /// (`POST /v1/alerts/evaluate`).
    pub alert_id: Option<Uuid>,
    pub symbol: String,
    pub base_timeframe: String,
    /// Whether the alert's conditions (its AND/OR tree) hold now. Trigger policy (debounce,
    /// once per bar, `once_per_bar_close`) is not applied.
    pub holds: bool,
    /// Some condition lacks data (no value yet, or not enough closed bars to look back on).
    pub warming_up: bool,
    pub reason: Option<String>,
    /// Close time of the latest data evaluated (RFC 3339); null without data.
    pub as_of: Option<String>,
    /// The base-timeframe bar as it stands.
    pub bar: Option<CandleOut>,
    /// Every leaf condition, in document order.
    pub conditions: Vec<ConditionEvaluation>,
}

#[derive(Serialize, ToSchema)]
pub struct ConditionEvaluation {
    pub id: String,
    pub timeframe: String,
    /// The left-hand operand.
    pub value: Option<f64>,
    /// The right-hand operand (the lower bound for channels; the past value for moving %).
    pub rhs: Option<f64>,
    /// The upper bound, for channels.
    pub rhs2: Option<f64>,
    pub held: bool,
    pub warming_up: bool,
    pub reason: Option<String>,
}

impl Evaluation {
    fn new(alert_id: Option<Uuid>, def: &alert_engine::AlertDefinition, r: DryRun) -> Self {
        Self {
            alert_id,
            symbol: def.symbol.to_string(),
            base_timeframe: def.base_timeframe.to_string(),
            holds: r.holds,
            warming_up: r.warming_up,
            reason: r.reason,
            as_of: r.as_of.map(BarTime::to_rfc3339),
            bar: r
                .bar
                .map(|(candle, closed)| alert_runtime::Bar { candle, closed }.into()),
            conditions: r
                .conditions
                .into_iter()
                .map(|c| ConditionEvaluation {
                    id: c.id,
                    timeframe: c.timeframe.to_string(),
                    value: c.value,
                    rhs: c.rhs,
                    rhs2: c.rhs2,
                    held: c.held,
                    warming_up: c.warming_up,
                    reason: c.reason,
                })
                .collect(),
        }
    }
}

// ---- query parameters --------------------------------------------------------------------

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CandlesQuery {
    /// e.g. `BTCUSDT` (case-insensitive).
    symbol: String,
    /// `1m` … `1w`; a multiple of the timeframe the server is fed with.
    timeframe: String,
    /// 1 to 1000 (default 500): the last bars; the runner keeps a bounded history.
    limit: Option<u32>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct IndicatorsQuery {
    symbol: String,
    timeframe: String,
    /// `RSI(14)`, `MACD(12,26,9)`, `BBANDS(20,2)`, `SMA(50,hl2)`, `OBV`, ...
    spec: String,
    /// 1 to 1000 (default 500).
    limit: Option<u32>,
}

/// The query string's parameters (unknown ones, such as `access_token`, are ignored).
struct QueryParams(HashMap<String, String>);

impl QueryParams {
    fn from(q: Result<Query<HashMap<String, String>>, QueryRejection>) -> ApiResult<Self> {
        q.map(|Query(m)| Self(m))
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))
    }

    fn required<T>(
        &self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Result<T, String>,
        errors: &mut Vec<FieldError>,
    ) -> Option<T> {
        let mut err = |message: String| {
            errors.push(FieldError {
                path: key.to_owned(),
                message,
            });
            None
        };
        match self.0.get(key).map(|s| s.trim()) {
            None | Some("") => err(format!("missing: expected {expected}")),
            Some(v) => parse(v).map_or_else(err, Some),
        }
    }

    fn limit(&self, errors: &mut Vec<FieldError>) -> usize {
        match self.0.get("limit").map(|s| s.trim()) {
            None | Some("") => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    errors.push(FieldError {
                        path: "limit".into(),
                        message: format!("an integer from 1 to {MAX_LIMIT} (got {v:?})"),
                    });
                    DEFAULT_LIMIT
                }
            },
        }
    }

    fn symbol(&self, errors: &mut Vec<FieldError>) -> Option<Symbol> {
        self.required(
            "symbol",
            "a symbol such as BTCUSDT",
            |s| Symbol::new(s).map_err(|e| e.to_string()),
            errors,
        )
    }

    fn timeframe(
        &self,
        market: Option<&MarketHandle>,
        errors: &mut Vec<FieldError>,
    ) -> Option<Timeframe> {
        self.required(
            "timeframe",
            "one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w",
            |s| {
                let tf = Timeframe::from_str(s).map_err(|e| e.to_string())?;
                match market {
                    Some(m) if !tf.is_multiple_of(m.feed()) => Err(format!(
                        "a multiple of {feed}, the timeframe this server is fed with (got {tf})",
                        feed = m.feed()
                    )),
                    _ => Ok(tf),
                }
            },
            errors,
        )
    }
}

fn market(state: &ApiState) -> ApiResult<&MarketHandle> {
    state.market.as_ref().ok_or_else(|| {
        ApiError::unavailable("market data is not available: no runner in this process")
    })
}

fn query_error(e: QueryError) -> ApiError {
    match e {
        QueryError::Unavailable | QueryError::Busy => ApiError::unavailable(e.to_string()),
        QueryError::Timeframe { .. } => ApiError::field("timeframe", e.to_string()),
        QueryError::DryRun(e) => ApiError::bad_request(e.to_string()),
    }
}

// ---- handlers ----------------------------------------------------------------------------

/// The candles the runner keeps for (symbol, timeframe), oldest first; the last may be in
/// progress (`closed: false`). Empty when the runner has no data for the symbol (no active
/// alert watches it).
#[utoipa::path(get, path = "/v1/candles", tag = "market", params(CandlesQuery),
    responses((status = 200, body = Vec<CandleOut>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "no runner in this process, or it is busy")),
    security(("bearer" = [])))]
pub async fn candles(
    User(_user): User,
    State(state): State<ApiState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<Vec<CandleOut>>> {
    let q = QueryParams::from(query)?;
    let mut errors = Vec::new();
    let symbol = q.symbol(&mut errors);
    let timeframe = q.timeframe(state.market.as_ref(), &mut errors);
    let limit = q.limit(&mut errors);
    let (Some(symbol), Some(timeframe), true) = (symbol, timeframe, errors.is_empty()) else {
        return Err(ApiError::fields(errors));
    };
    let bars = market(&state)?
        .candles(symbol, timeframe, limit)
        .await
        .map_err(query_error)?;
    Ok(Json(bars.into_iter().map(CandleOut::from).collect()))
}

/// An indicator computed on demand over the candles the runner keeps for (symbol, timeframe)
/// (the engine's own indicators are not touched), its last `limit` values, oldest first. The
/// value on a bar in progress is what it would be if the bar closed now.
#[utoipa::path(get, path = "/v1/indicators", tag = "market", params(IndicatorsQuery),
    responses((status = 200, body = IndicatorValues), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn indicators(
    User(_user): User,
    State(state): State<ApiState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Json<IndicatorValues>> {
    let q = QueryParams::from(query)?;
    let mut errors = Vec::new();
    let symbol = q.symbol(&mut errors);
    let timeframe = q.timeframe(state.market.as_ref(), &mut errors);
    let spec = q.required(
        "spec",
        "an indicator spec such as RSI(14) or MACD(12,26,9)",
        |s| IndicatorSpec::from_str(s).map_err(|e| e.to_string()),
        &mut errors,
    );
    let limit = q.limit(&mut errors);
    let (Some(symbol), Some(timeframe), Some(spec), true) =
        (symbol, timeframe, spec, errors.is_empty())
    else {
        return Err(ApiError::fields(errors));
    };
    let series = market(&state)?
        .indicator(symbol, timeframe, spec, limit)
        .await
        .map_err(query_error)?;
    let values = series
        .points
        .iter()
        .map(|p| {
            let mut row = serde_json::Map::new();
            row.insert("open_time".into(), p.open_time.to_rfc3339().into());
            row.insert("closed".into(), p.closed.into());
            for (i, name) in series.components.iter().enumerate() {
                let v = p.values.get(i).filter(|v| v.is_finite());
                row.insert((*name).to_owned(), v.map_or(Value::Null, Value::from));
            }
            Value::Object(row)
        })
        .collect();
    Ok(Json(IndicatorValues {
        spec: series.spec.to_string(),
        components: series.components.iter().map(|c| (*c).to_owned()).collect(),
        values,
    }))
}

/// Everything a UI needs to build the alert form: indicators with their settings, operators
/// with what they need, timeframes, price sources, condition types, trigger modes and
/// actions.
#[utoipa::path(get, path = "/v1/catalog", tag = "market",
    responses((status = 200, body = Catalog), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn catalog(User(_user): User, State(state): State<ApiState>) -> Json<Catalog> {
    Json(build_catalog(state.market.as_ref().map(MarketHandle::feed)))
}

/// Ready-made alerts; replace `{{SYMBOL}}` and `{{TIMEFRAME}}`, then create them with
/// `POST /v1/alerts` (adjusting the action).
#[utoipa::path(get, path = "/v1/templates", tag = "market",
    responses((status = 200, body = Vec<AlertTemplate>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn templates(User(_user): User) -> Json<Vec<AlertTemplate>> {
    Json(alert_templates())
}

/// Evaluates one of the caller's alerts on the current data, as the runner would now: every
/// condition's operand values, whether each holds, and whether the alert's conditions hold.
/// Nothing fires, nothing is recorded, the alert's state is unchanged (works for paused
/// alerts too).
#[utoipa::path(post, path = "/v1/alerts/{id}/evaluate", tag = "alerts", params(("id" = Uuid, Path)),
    responses((status = 200, body = Evaluation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn evaluate(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Evaluation>> {
    let Some(row) = state.store.get_alert(user, id).await? else {
        return Err(ApiError::not_found("alert"));
    };
    let def = parse_alert(&row.definition).map_err(validation)?;
    dry_run(&state, Some(id), def).await
}

/// The runner's dry run of `def`, as both evaluate endpoints answer it.
async fn dry_run(
    state: &ApiState,
    id: Option<Uuid>,
    def: alert_engine::AlertDefinition,
) -> ApiResult<Json<Evaluation>> {
    let result = market(state)?
        .evaluate(def.clone())
        .await
        .map_err(query_error)?;
    Ok(Json(Evaluation::new(id, &def, result)))
}

/// Evaluates an alert that is not saved (the alert JSON, as `POST /v1/alerts` takes it) on
/// the current data, exactly as `POST /v1/alerts/{id}/evaluate` does a stored one: the
/// dashboard's "test now" on the form. Validation errors name the alert's own paths
/// (`conditions[0].settings.length`). Nothing is stored, fired or recorded.
#[utoipa::path(post, path = "/v1/alerts/evaluate", tag = "alerts", request_body(content = Object, description = "The alert JSON"),
    responses((status = 200, body = Evaluation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn evaluate_definition(
    User(_user): User,
    State(state): State<ApiState>,
    crate::error::JsonBody(json): crate::error::JsonBody,
) -> ApiResult<Json<Evaluation>> {
    if !json.is_object() {
        return Err(ApiError::field("", "a JSON object (the alert)"));
    }
    let def = parse_alert(&json).map_err(crate::alerts::validation)?;
    dry_run(&state, None, def).await
}

fn validation(e: ValidationErrors) -> ApiError {
    ApiError::fields(
        e.errors()
            .iter()
            .map(|f| FieldError {
                path: format!("definition.{}", f.path)
                    .trim_end_matches('.')
                    .to_owned(),
                message: f.expected.clone(),
            })
            .collect(),
    )
}

// ---- the catalog -------------------------------------------------------------------------

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn named(name: &str, aliases: &[&str], description: &str) -> NamedInfo {
    NamedInfo {
        name: name.into(),
        aliases: strings(aliases),
        description: description.into(),
    }
}

/// Names `IndicatorKind::parse_name` accepts besides the canonical one.
fn indicator_aliases(kind: IndicatorKind) -> &'static [&'static str] {
    match kind {
        IndicatorKind::Bbands => &["Bollinger Bands", "BB"],
        IndicatorKind::Stoch => &["Stochastic"],
        IndicatorKind::Willr => &["Williams %R"],
        _ => &[],
    }
}

/// The smallest value `IndicatorSpec::new` accepts for one setting.
fn smallest(kind: IndicatorKind, params: impl Fn(usize) -> Params) -> f64 {
    (0..=MAX_PERIOD)
        .take(16)
        .find(|n| IndicatorSpec::new(kind, params(*n)).is_ok())
        .unwrap_or(1) as f64
}

fn period(key: &str, aliases: &[&str], default: usize, min: f64, description: &str) -> SettingInfo {
    SettingInfo {
        key: key.into(),
        aliases: strings(aliases),
        kind: "integer".into(),
        default: default.into(),
        min: Some(min),
        exclusive_min: None,
        max: Some(MAX_PERIOD as f64),
        options: None,
        description: description.into(),
    }
}

fn source_setting(default: PriceSource) -> SettingInfo {
    SettingInfo {
        key: "source".into(),
        aliases: Vec::new(),
        kind: "price_source".into(),
        default: default.as_str().into(),
        min: None,
        exclusive_min: None,
        max: None,
        options: Some(
            PriceSource::ALL
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        ),
        description: "the price the indicator reads".into(),
    }
}

fn indicator_settings(kind: IndicatorKind) -> Vec<SettingInfo> {
    let length = ["period"];
    match kind.default_params() {
        Params::Length(n) => vec![period(
            "length",
            &length,
            n,
            smallest(kind, Params::Length),
            "bars in the window",
        )],
        Params::LengthOf(n, src) => vec![
            period(
                "length",
                &length,
                n,
                smallest(kind, |p| Params::LengthOf(p, src)),
                "bars in the window",
            ),
            source_setting(src),
        ],
        Params::Macd {
            fast,
            slow,
            signal,
            source,
        } => {
            let with = |f: usize, s: usize, g: usize| Params::Macd {
                fast: f,
                slow: s,
                signal: g,
                source,
            };
            vec![
                period(
                    "fast",
                    &[],
                    fast,
                    smallest(kind, |n| with(n, slow, signal)),
                    "the fast EMA's period",
                ),
                period(
                    "slow",
                    &[],
                    slow,
                    smallest(kind, |n| with(fast, n, signal)),
                    "the slow EMA's period",
                ),
                period(
                    "signal",
                    &[],
                    signal,
                    smallest(kind, |n| with(fast, slow, n)),
                    "the signal EMA's period",
                ),
                source_setting(source),
            ]
        }
        Params::Bbands {
            period: p,
            stddev,
            source,
        } => vec![
            period(
                "length",
                &length,
                p,
                smallest(kind, |n| Params::Bbands {
                    period: n,
                    stddev,
                    source,
                }),
                "bars in the window",
            ),
            SettingInfo {
                key: "stddev".into(),
                aliases: strings(&["std", "std_dev", "mult", "multiplier", "nbdev"]),
                kind: "number".into(),
                default: stddev.get().into(),
                min: None,
                exclusive_min: Some(0.0),
                max: Some(STDDEV_MAX),
                options: None,
                description: "band width in (population) standard deviations".into(),
            },
            source_setting(source),
        ],
        Params::Stoch { k, smooth_k, d } => {
            let with = |a: usize, b: usize, c: usize| Params::Stoch {
                k: a,
                smooth_k: b,
                d: c,
            };
            vec![
                period(
                    "k",
                    &[],
                    k,
                    smallest(kind, |n| with(n, smooth_k, d)),
                    "bars of the %K window",
                ),
                period(
                    "smoothK",
                    &["smooth_k"],
                    smooth_k,
                    smallest(kind, |n| with(k, n, d)),
                    "SMA smoothing of %K",
                ),
                period(
                    "d",
                    &[],
                    d,
                    smallest(kind, |n| with(k, smooth_k, n)),
                    "SMA of the smoothed %K",
                ),
            ]
        }
        Params::None => Vec::new(),
    }
}

/// The largest Bollinger width accepted (`StdDevMultiplier::new`; checked by a test).
const STDDEV_MAX: f64 = 1e6;

fn operator_setting(
    key: &str,
    kind: &str,
    default: Value,
    range: Option<(f64, f64)>,
    options: Option<&[&str]>,
    description: &str,
) -> SettingInfo {
    SettingInfo {
        key: key.into(),
        aliases: Vec::new(),
        kind: kind.into(),
        default,
        min: range.map(|r| r.0),
        exclusive_min: None,
        max: range.map(|r| r.1),
        options: options.map(strings),
        description: description.into(),
    }
}

/// The operators the parser accepts (`alert_engine::parse`; a test checks this table
/// against it).
fn operators() -> Vec<OperatorInfo> {
    let op = |name: &str, aliases: &[&str], needs: &str, looks_back: bool, description: &str| {
        OperatorInfo {
            name: name.into(),
            aliases: strings(aliases),
            needs: needs.into(),
            looks_back,
            settings: Vec::new(),
            description: description.into(),
        }
    };
    let lookback = || {
        operator_setting(
            "lookback",
            "integer",
            14.into(),
            Some((1.0, 1000.0)),
            None,
            "bars between the two points compared",
        )
    };
    let bars = || {
        operator_setting(
            "bars",
            "integer",
            1.into(),
            Some((1.0, 1000.0)),
            None,
            "bars the change is measured over",
        )
    };
    vec![
        op(
            ">",
            &["gt", "greater_than", "above"],
            "comparand",
            false,
            "greater than",
        ),
        op(
            "<",
            &["lt", "less_than", "below"],
            "comparand",
            false,
            "less than",
        ),
        op(
            ">=",
            &["gte", "ge", "greater_than_or_equal", "greater_or_equal"],
            "comparand",
            false,
            "greater than or equal",
        ),
        op(
            "<=",
            &["lte", "le", "less_than_or_equal", "less_or_equal"],
            "comparand",
            false,
            "less than or equal",
        ),
        OperatorInfo {
            settings: vec![operator_setting(
                "tolerance",
                "number",
                1e-9.into(),
                Some((0.0, f64::MAX)),
                None,
                "relative: |a − b| <= tolerance × max(|a|, |b|)",
            )],
            ..op(
                "equals",
                &["==", "=", "eq", "equal"],
                "comparand",
                false,
                "equal within the tolerance",
            )
        },
        op(
            "crosses_above",
            &["cross_above", "crossover"],
            "comparand",
            true,
            "above now, at or below at the previous close",
        ),
        op(
            "crosses_below",
            &["cross_below", "crossunder"],
            "comparand",
            true,
            "below now, at or above at the previous close",
        ),
        op("crosses", &["cross"], "comparand", true, "either crossing"),
        OperatorInfo {
            settings: vec![
                lookback(),
                operator_setting(
                    "direction",
                    "enum",
                    "any".into(),
                    None,
                    Some(&["any", "bullish", "bearish"]),
                    "bullish: price down, indicator up; bearish: price up, indicator down",
                ),
            ],
            ..op(
                "divergence",
                &[],
                "operand",
                true,
                "the changes of the left-hand side and of the other operand (default: the close) over `lookback` bars have strictly opposite signs",
            )
        },
        OperatorInfo {
            settings: vec![lookback()],
            ..op(
                "convergence",
                &[],
                "operand",
                true,
                "the changes over `lookback` bars have strictly the same sign",
            )
        },
        op(
            "entering_channel",
            &[],
            "channel",
            true,
            "inside [lower, upper] now, outside at the previous close",
        ),
        op(
            "exiting_channel",
            &[],
            "channel",
            true,
            "outside now, inside at the previous close",
        ),
        op(
            "inside_channel",
            &["between"],
            "channel",
            false,
            "lower <= value <= upper",
        ),
        op(
            "outside_channel",
            &[],
            "channel",
            false,
            "value < lower or value > upper",
        ),
        OperatorInfo {
            settings: vec![bars()],
            ..op(
                "moving_up_pct",
                &["moving_up_percent"],
                "percent",
                true,
                "risen by at least compareValue % over `bars` closes",
            )
        },
        OperatorInfo {
            settings: vec![bars()],
            ..op(
                "moving_down_pct",
                &["moving_down_percent"],
                "percent",
                true,
                "fallen by at least compareValue % over `bars` closes",
            )
        },
    ]
}

fn serde_name(v: impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => o
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

fn field(name: &str, required: bool, description: &str) -> FieldInfo {
    FieldInfo {
        name: name.into(),
        required,
        description: description.into(),
    }
}

fn action_types() -> Vec<ActionInfo> {
    let bot_actions = [
        BotActionType::ExecuteEntry,
        BotActionType::ExecuteDca,
        BotActionType::TakeProfit,
        BotActionType::StopLoss,
    ];
    let samples = [
        (
            Action::Notify { title: None },
            "an in-app notification (stored, and pushed to connected clients)",
            vec![field(
                "title",
                false,
                "at most 256 characters; default: the alert's name",
            )],
        ),
        (
            Action::Webhook {
                url: String::new(),
                secret: None,
                body: Default::default(),
            },
            "a signed HTTP POST (Standard Webhooks), retried with backoff",
            vec![
                field("url", true, "an absolute http:// or https:// URL"),
                field(
                    "secret",
                    false,
                    "whsec_ + base64, or 16 to 1024 characters; default: the account's webhook secret",
                ),
                field(
                    "body",
                    false,
                    "envelope (default: JSON with alert, snapshot and message) or message (the rendered message alone)",
                ),
            ],
        ),
        (
            Action::Bot {
                bot_id: String::new(),
            },
            "triggers a trading bot",
            vec![field("bot_id", true, "the bot's id")],
        ),
        (
            Action::BotTrigger {
                bot_id: String::new(),
                action_type: BotActionType::ExecuteEntry,
                dca_index: None,
            },
            "a DCA bot's order",
            vec![
                field("bot_id", true, "the bot's id"),
                field(
                    "action_type",
                    true,
                    &format!("one of {}", bot_actions.map(serde_name).join(", ")),
                ),
                field(
                    "dca_index",
                    false,
                    "required for execute_dca (an integer >= 0), refused otherwise",
                ),
            ],
        ),
    ];
    samples
        .into_iter()
        .map(|(action, description, fields)| ActionInfo {
            kind: serde_name(action),
            description: description.into(),
            fields,
        })
        .collect()
}

/// The catalog; `feed`: the timeframe this server is fed with, if known.
pub fn build_catalog(feed: Option<Timeframe>) -> Catalog {
    let indicators = IndicatorKind::ALL
        .into_iter()
        .map(|kind| IndicatorInfo {
            name: kind.name().into(),
            aliases: strings(indicator_aliases(kind)),
            usage: kind
                .usage()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            components: strings(kind.components()),
            settings: indicator_settings(kind),
            default_spec: IndicatorSpec::default_for(kind).to_string(),
        })
        .collect();
    let timeframes = Timeframe::ALL
        .into_iter()
        .map(|tf| TimeframeInfo {
            name: tf.as_str().into(),
            seconds: tf.duration_ms() / 1000,
            available: feed.is_none_or(|f| tf.is_multiple_of(f)),
        })
        .collect();
    let trigger = |mode: TriggerMode, aliases: &[&str], description: &str| {
        named(&serde_name(mode), aliases, description)
    };
    Catalog {
        indicators,
        operators: operators(),
        timeframes,
        price_sources: PriceSource::ALL
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        condition_types: vec![
            named(
                "indicator",
                &[],
                "an indicator component (`indicator`, `component`, `settings`)",
            ),
            named("price", &[], "a price of the bar: `source` (default close)"),
            named("volume", &[], "the bar's volume"),
        ],
        compare_with: vec![
            named("value", &[], "a constant: `compareValue`"),
            named(
                "indicator_component",
                &["indicator"],
                "an indicator operand: `rhs` {indicator, component?, settings?, timeframe?}",
            ),
            named(
                "price",
                &[],
                "a price operand: `rhs` {type: price, source?, timeframe?}, default the close",
            ),
            named(
                "volume",
                &[],
                "the volume: `rhs` {type: volume, timeframe?} optional",
            ),
        ],
        logic: strings(&["AND", "OR"]),
        trigger_modes: vec![
            trigger(
                TriggerMode::OncePerBar,
                &["per_bar"],
                "may fire intrabar, at most once per base-timeframe bar (default)",
            ),
            trigger(
                TriggerMode::OncePerBarClose,
                &["per_close"],
                "evaluated only when the base bar closes",
            ),
            trigger(
                TriggerMode::Once,
                &[],
                "fires once, then the alert's status becomes triggered",
            ),
        ],
        action_types: action_types(),
        bot_action_types: [
            BotActionType::ExecuteEntry,
            BotActionType::ExecuteDca,
            BotActionType::TakeProfit,
            BotActionType::StopLoss,
        ]
        .map(serde_name)
        .to_vec(),
        divergence_directions: strings(&["any", "bullish", "bearish"]),
        limits: Limits {
            max_conditions: alert_engine::MAX_CONDITIONS,
            max_group_depth: alert_engine::MAX_GROUP_DEPTH,
            debounce_bars: [1, 10_000],
            max_limit: MAX_LIMIT,
        },
    }
}

// ---- templates ---------------------------------------------------------------------------

fn template(
    id: &str,
    name: &str,
    description: &str,
    conditions: Value,
    message: &str,
) -> AlertTemplate {
    AlertTemplate {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        alert: json!({
            "name": format!("{{{{SYMBOL}}}} {{{{TIMEFRAME}}}} {name}"),
            "symbol": "{{SYMBOL}}",
            "base_timeframe": "{{TIMEFRAME}}",
            "conditionLogic": "AND",
            "conditions": conditions,
            "action": {"type": "notify"},
            "trigger": "once_per_bar_close",
            "debounce_bars": 1,
            "message": message,
        }),
    }
}

/// The ready-made alerts of `GET /v1/templates`.
pub fn alert_templates() -> Vec<AlertTemplate> {
    vec![
        template(
            "rsi_oversold",
            "RSI oversold",
            "RSI(14) closes below 30.",
            json!([{"id": "rsi", "type": "indicator", "indicator": "RSI", "component": "RSI",
                    "operator": "<", "compareWith": "value", "compareValue": 30,
                    "settings": {"length": 14}}]),
            "{{symbol}} RSI oversold: {{rsi.value}} at {{close}}",
        ),
        template(
            "rsi_overbought",
            "RSI overbought",
            "RSI(14) closes above 70.",
            json!([{"id": "rsi", "type": "indicator", "indicator": "RSI", "component": "RSI",
                    "operator": ">", "compareWith": "value", "compareValue": 70,
                    "settings": {"length": 14}}]),
            "{{symbol}} RSI overbought: {{rsi.value}} at {{close}}",
        ),
        template(
            "golden_cross",
            "Golden cross",
            "SMA(50) crosses above SMA(200). Needs 200 bars of history to warm up.",
            json!([{"id": "cross", "type": "indicator", "indicator": "SMA", "settings": {"length": 50},
                    "operator": "crosses_above", "compareWith": "indicator_component",
                    "rhs": {"indicator": "SMA", "settings": {"length": 200}}}]),
            "{{symbol}} golden cross: SMA50 {{cross.value}} above SMA200 at {{close}}",
        ),
        template(
            "death_cross",
            "Death cross",
            "SMA(50) crosses below SMA(200). Needs 200 bars of history to warm up.",
            json!([{"id": "cross", "type": "indicator", "indicator": "SMA", "settings": {"length": 50},
                    "operator": "crosses_below", "compareWith": "indicator_component",
                    "rhs": {"indicator": "SMA", "settings": {"length": 200}}}]),
            "{{symbol}} death cross: SMA50 {{cross.value}} below SMA200 at {{close}}",
        ),
        template(
            "macd_bullish_cross",
            "MACD bullish cross",
            "The MACD line (12,26,9) crosses above its signal line.",
            json!([{"id": "macd", "type": "indicator", "indicator": "MACD", "component": "MACD",
                    "settings": {"fast": 12, "slow": 26, "signal": 9},
                    "operator": "crosses_above", "compareWith": "indicator_component",
                    "rhs": {"indicator": "MACD", "component": "Signal",
                            "settings": {"fast": 12, "slow": 26, "signal": 9}}}]),
            "{{symbol}} MACD crossed above its signal: {{macd.value}}",
        ),
        template(
            "macd_bearish_cross",
            "MACD bearish cross",
            "The MACD line (12,26,9) crosses below its signal line.",
            json!([{"id": "macd", "type": "indicator", "indicator": "MACD", "component": "MACD",
                    "settings": {"fast": 12, "slow": 26, "signal": 9},
                    "operator": "crosses_below", "compareWith": "indicator_component",
                    "rhs": {"indicator": "MACD", "component": "Signal",
                            "settings": {"fast": 12, "slow": 26, "signal": 9}}}]),
            "{{symbol}} MACD crossed below its signal: {{macd.value}}",
        ),
        template(
            "bollinger_breakout",
            "Bollinger breakout",
            "The close leaves the Bollinger Bands (20, 2): it was inside the bands at the previous close and is above the upper or below the lower band now.",
            json!([{"id": "bb", "type": "price", "source": "close", "operator": "exiting_channel",
                    "compareWith": "indicator_component",
                    "rhs": {"indicator": "BBANDS", "settings": {"length": 20, "stddev": 2}}}]),
            "{{symbol}} broke out of its Bollinger Bands at {{close}}",
        ),
        template(
            "volume_spike",
            "Volume spike",
            "The bar's volume is more than 2 standard deviations above its 20-bar average (above the upper Bollinger band of volume, BBANDS(20,2,volume)).",
            json!([{"id": "vol", "type": "volume", "operator": ">", "compareWith": "indicator_component",
                    "rhs": {"indicator": "BBANDS", "component": "Upper",
                            "settings": {"length": 20, "stddev": 2, "source": "volume"}}}]),
            "{{symbol}} volume spike: {{vol.value}}",
        ),
        template(
            "rsi_bullish_divergence",
            "RSI bullish divergence",
            "Approximation: over the last 14 bars the close fell while RSI(14) rose (the `divergence` operator compares the change over a fixed lookback; it does not locate swing lows as a chartist would).",
            json!([{"id": "div", "type": "indicator", "indicator": "RSI", "operator": "divergence",
                    "compareWith": "price",
                    "settings": {"length": 14, "lookback": 14, "direction": "bullish"}}]),
            "{{symbol}} bullish RSI divergence: RSI {{div.value}} at {{close}}",
        ),
        template(
            "rsi_bearish_divergence",
            "RSI bearish divergence",
            "Approximation: over the last 14 bars the close rose while RSI(14) fell (the `divergence` operator compares the change over a fixed lookback; it does not locate swing highs as a chartist would).",
            json!([{"id": "div", "type": "indicator", "indicator": "RSI", "operator": "divergence",
                    "compareWith": "price",
                    "settings": {"length": 14, "lookback": 14, "direction": "bearish"}}]),
            "{{symbol}} bearish RSI divergence: RSI {{div.value}} at {{close}}",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use alert_indicators::StdDevMultiplier;

    use super::*;

    fn substitute(alert: &Value, symbol: &str, tf: &str) -> Value {
        let text = alert
            .to_string()
            .replace("{{SYMBOL}}", symbol)
            .replace("{{TIMEFRAME}}", tf);
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn every_template_parses_once_substituted() {
        let templates = alert_templates();
        assert!(templates.len() >= 8);
        let mut ids = std::collections::HashSet::new();
        for t in &templates {
            assert!(ids.insert(t.id.clone()), "duplicate id {}", t.id);
            let text = t.alert.to_string();
            assert!(text.contains("{{SYMBOL}}") && text.contains("{{TIMEFRAME}}"));
            for tf in ["1m", "1h", "1d"] {
                let alert = substitute(&t.alert, "BTCUSDT", tf);
                let def = parse_alert(&alert).unwrap_or_else(|e| panic!("{}: {e}", t.id));
                assert_eq!(def.symbol.as_str(), "BTCUSDT");
                assert_eq!(def.base_timeframe.as_str(), tf);
                assert!(def.name.starts_with("BTCUSDT "), "{}", def.name);
            }
        }
        // Unsubstituted, they are not alerts.
        assert!(parse_alert(&templates[0].alert).is_err());
    }

    #[test]
    fn every_operator_and_alias_is_the_parsers() {
        let ops = operators();
        let cond = |op: &str, needs: &str| match needs {
            "comparand" => json!({"type": "price", "operator": op, "compareValue": 10}),
            "operand" => json!({"indicator": "RSI", "operator": op}),
            "channel" => json!({"type": "price", "operator": op, "lowerBound": 1, "upperBound": 2}),
            "percent" => json!({"type": "price", "operator": op, "compareValue": 5}),
            other => panic!("unknown need {other}"),
        };
        let alert = |c: Value| {
            json!({"symbol": "BTCUSDT", "base_timeframe": "1h", "conditions": [c],
                   "action": {"type": "notify"}})
        };
        for o in &ops {
            for name in std::iter::once(&o.name).chain(&o.aliases) {
                let a = alert(cond(name, &o.needs));
                let def = parse_alert(&a).unwrap_or_else(|e| panic!("{name}: {e}"));
                let leaf = def.leaves()[0].clone();
                assert_eq!(
                    leaf.test.history_needed() > 0,
                    o.looks_back,
                    "{name} looks back"
                );
                for s in &o.settings {
                    let mut c = cond(name, &o.needs);
                    c["settings"] = json!({ &s.key: s.default.clone() });
                    assert!(parse_alert(&alert(c)).is_ok(), "{name} setting {}", s.key);
                }
            }
        }
        // The parser's own list of operator names is this table's names (and `between`).
        let err = parse_alert(&alert(
            json!({"type": "price", "operator": "nope", "compareValue": 1}),
        ))
        .unwrap_err()
        .to_string();
        let listed = err
            .split("one of ")
            .nth(1)
            .unwrap()
            .split(" (")
            .next()
            .unwrap()
            .split(", ")
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut ours: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
        ours.push("between");
        let (mut a, mut b) = (listed.clone(), ours.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "{err}");
    }

    #[test]
    fn catalog_is_derived_from_the_engine() {
        let c = build_catalog(Some(Timeframe::M5));
        assert_eq!(c.indicators.len(), IndicatorKind::ALL.len());
        let rsi = c.indicators.iter().find(|i| i.name == "RSI").unwrap();
        assert_eq!(rsi.default_spec, "RSI(14)");
        assert_eq!(rsi.settings[0].key, "length");
        assert_eq!(rsi.settings[0].default, json!(14));
        assert_eq!(rsi.settings[0].min, Some(2.0));
        let sma = c.indicators.iter().find(|i| i.name == "SMA").unwrap();
        assert_eq!(sma.settings[0].min, Some(1.0));
        let macd = c.indicators.iter().find(|i| i.name == "MACD").unwrap();
        assert_eq!(macd.components, ["MACD", "Signal", "Histogram"]);
        assert_eq!(
            macd.settings
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>(),
            ["fast", "slow", "signal", "source"]
        );
        // Every indicator with its aliases, components and settings is accepted by the parser.
        for i in &c.indicators {
            for name in std::iter::once(&i.name).chain(&i.aliases) {
                assert_eq!(
                    IndicatorKind::parse_name(name).map(|k| k.name()),
                    Some(i.name.as_str())
                );
            }
            let mut settings = serde_json::Map::new();
            for s in &i.settings {
                settings.insert(s.key.clone(), s.default.clone());
            }
            let alert = json!({"symbol": "BTCUSDT", "base_timeframe": "1h",
                "conditions": [{"indicator": i.name, "component": i.components[0],
                                "settings": settings, "operator": ">", "compareValue": 1}],
                "action": {"type": "notify"}});
            parse_alert(&alert).unwrap_or_else(|e| panic!("{}: {e}", i.name));
            assert_eq!(
                IndicatorSpec::from_str(&i.default_spec).map(|s| s.kind().name()),
                Ok(i.name.as_str())
            );
        }
        assert!(StdDevMultiplier::new(STDDEV_MAX).is_ok());
        assert!(StdDevMultiplier::new(STDDEV_MAX * 1.01).is_err());
        assert!(StdDevMultiplier::new(0.0).is_err());
        // Trigger modes, actions and timeframes.
        let modes: Vec<_> = c.trigger_modes.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(modes, ["once_per_bar", "once_per_bar_close", "once"]);
        for m in &c.trigger_modes {
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                let alert = json!({"symbol": "BTCUSDT", "base_timeframe": "1h", "trigger": name,
                    "conditions": [{"type": "price", "operator": ">", "compareValue": 1}],
                    "action": {"type": "notify"}});
                assert!(parse_alert(&alert).is_ok(), "{name}");
            }
        }
        let actions: Vec<_> = c.action_types.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(actions, ["notify", "webhook", "bot", "bot_trigger"]);
        assert_eq!(c.bot_action_types[1], "execute_dca");
        assert_eq!(c.timeframes.len(), 14);
        assert!(!c.timeframes[0].available, "1m is not built from 5m");
        assert!(
            c.timeframes
                .iter()
                .find(|t| t.name == "1h")
                .unwrap()
                .available
        );
        assert_eq!(c.price_sources.len(), PriceSource::ALL.len());
    }
}
