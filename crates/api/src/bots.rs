//! DCA bots: create (the bot JSON, validated with the alerts' precise errors), list, get (with
//! the open deal and P&L), update, delete, pause, resume, close the open deal now; a bot's
//! deals and orders. Scoped to the caller like every user resource.

use alert_bots::live::{CloseOutcome, ReplaceError, create_bot as store_create_bot, set_paused};
use alert_bots::parse_bot;
use alert_core::BarTime;
use alert_store::{BotOrderRow, BotRow, DealRow};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::alerts::validation;
use crate::error::{ApiError, ApiResult, ErrorBody, JsonBody};
use crate::{ApiState, User};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/bots", post(create_bot).get(list_bots))
        .route(
            "/v1/bots/{id}",
            get(get_bot).put(replace_bot).delete(delete_bot),
        )
        .route("/v1/bots/{id}/pause", post(pause_bot))
        .route("/v1/bots/{id}/resume", post(resume_bot))
        .route("/v1/bots/{id}/close", post(close_deal))
        .route("/v1/bots/{id}/deals", get(list_deals))
        .route("/v1/bots/{id}/orders", get(list_orders))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_bot,
        list_bots,
        get_bot,
        replace_bot,
        delete_bot,
        pause_bot,
        resume_bot,
        close_deal,
        list_deals,
        list_orders
    ),
    components(schemas(BotView, ClosedView, BotRow, DealRow, BotOrderRow))
)]
pub(crate) struct Doc;

/// A bot with its open deal and P&L.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotView {
    pub bot: BotRow,
    pub open_deal: Option<DealRow>,
    pub deals_closed: usize,
    /// Sum over the closed deals, fees included.
    pub realized_pnl: f64,
    /// The open deal at `last_price`, less the closing fee; `null` without a deal or a price.
    pub unrealized_pnl: Option<f64>,
    /// The pair's last price as the runner of this process has it.
    pub last_price: Option<f64>,
}

async fn owned(state: &ApiState, user: Uuid, id: Uuid) -> ApiResult<BotRow> {
    state
        .store
        .get_bot(user, id)
        .await?
        .ok_or_else(|| ApiError::not_found("bot"))
}

/// Creates a DCA bot with all its alerts (README "DCA bots"): the entry armed, the others
/// armed by its deals. Every validation error is reported with its JSON path.
#[utoipa::path(post, path = "/v1/bots", tag = "bots", request_body(content = Object, description = "The bot JSON"),
    responses((status = 201, body = BotRow), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody, description = "a limit on active alerts")),
    security(("bearer" = [])))]
pub async fn create_bot(
    User(user): User,
    State(state): State<ApiState>,
    JsonBody(json): JsonBody,
) -> ApiResult<(StatusCode, Json<BotRow>)> {
    let def = parse_bot(&json).map_err(validation)?;
    let row = store_create_bot(&state.store, user, &def, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// The caller's bots, oldest first.
#[utoipa::path(get, path = "/v1/bots", tag = "bots",
    responses((status = 200, body = Vec<BotRow>)), security(("bearer" = [])))]
pub async fn list_bots(
    User(user): User,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<BotRow>>> {
    Ok(Json(state.store.list_bots(user).await?))
}

/// A bot, its open deal, and its realised and unrealised P&L.
#[utoipa::path(get, path = "/v1/bots/{id}", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 200, body = BotView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_bot(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<BotView>> {
    let bot = owned(&state, user, id).await?;
    let deals = state.store.list_deals(user, id).await?;
    let open_deal = deals.iter().find(|d| d.status == "open").cloned();
    let closed: Vec<&DealRow> = deals.iter().filter(|d| d.status == "closed").collect();
    let last_price = last_bar(&state, &bot).await.map(|(price, _)| price);
    let fee_pct = parse_bot(&bot.definition).map_or(0.0, |d| d.fee_pct);
    let unrealized_pnl = match (&open_deal, last_price) {
        (Some(d), Some(p)) => Some(alert_bots::live::deal_of(d.clone()).unrealized_pnl(p, fee_pct)),
        _ => None,
    };
    Ok(Json(BotView {
        deals_closed: closed.len(),
        realized_pnl: closed.iter().filter_map(|d| d.realized_pnl).sum(),
        bot,
        open_deal,
        unrealized_pnl,
        last_price,
    }))
}

/// The pair's last price and its bar's open time, as the runner of this process has them.
async fn last_bar(state: &ApiState, bot: &BotRow) -> Option<(f64, BarTime)> {
    let market = state.market.as_ref()?;
    let symbol = alert_core::Symbol::new(&bot.pair).ok()?;
    let tf: alert_core::Timeframe = bot.timeframe.parse().ok()?;
    let bars = market.candles(symbol, tf, 1).await.ok()?;
    bars.last().map(|b| (b.candle.close, b.candle.open_time))
}

/// Replaces a bot's settings (the whole bot JSON) and rebuilds its alerts. While a deal is
/// open only `name`, `entry_conditions`, `trigger`, `take_profit_pct`, `stop_loss_pct` and
/// `cooldown_bars` may change (409 `conflict` naming the others): the take profit and stop
/// loss move at once to the new percentages from the deal's average price.
#[utoipa::path(put, path = "/v1/bots/{id}", tag = "bots", params(("id" = Uuid, Path)),
    request_body(content = Object, description = "The bot JSON"),
    responses((status = 200, body = BotRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a deal is open and a field that may not change during a deal differs, or a limit on active alerts")),
    security(("bearer" = [])))]
pub async fn replace_bot(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    JsonBody(json): JsonBody,
) -> ApiResult<Json<BotRow>> {
    let def = parse_bot(&json).map_err(validation)?;
    let row = alert_bots::live::replace_bot(&state.store, user, id, &def, Utc::now())
        .await
        .map_err(|e| match e {
            ReplaceError::Store(e) => ApiError::from(e),
            unsafe_fields @ ReplaceError::UnsafeDuringDeal(_) => {
                ApiError::conflict(unsafe_fields.to_string())
            }
        })?;
    row.map(Json).ok_or_else(|| ApiError::not_found("bot"))
}

/// The order that closed a deal by hand, and the closed deal.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClosedView {
    pub order: BotOrderRow,
    pub deal: Option<DealRow>,
}

/// Closes the bot's open deal now: sells the whole position at the pair's last price (paper),
/// records the deal as `closed_by_user`, and re-arms the entry after the cooldown as a take
/// profit would (a paused bot stays paused). The order goes to the live events like any fill.
#[utoipa::path(post, path = "/v1/bots/{id}/close", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 200, body = ClosedView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no deal is open"),
        (status = 503, body = ErrorBody, description = "no price for the pair yet")),
    security(("bearer" = [])))]
pub async fn close_deal(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ClosedView>> {
    let bot = owned(&state, user, id).await?;
    let Some((price, bar_time)) = last_bar(&state, &bot).await else {
        return Err(ApiError::unavailable(format!(
            "no price for {} {} yet: the runner has no candle of it",
            bot.pair, bot.timeframe
        )));
    };
    let outcome = state
        .bots
        .close_deal(user, id, price, bar_time)
        .await
        .map_err(ApiError::internal)?;
    match outcome {
        None => Err(ApiError::not_found("bot")),
        Some(CloseOutcome::NoDeal | CloseOutcome::AlreadyClosed) => {
            Err(ApiError::conflict("the bot has no open deal"))
        }
        Some(CloseOutcome::Closed(order)) => {
            let deal = state
                .store
                .list_deals(user, id)
                .await?
                .into_iter()
                .find(|d| d.id == order.deal_id);
            Ok(Json(ClosedView {
                order: *order,
                deal,
            }))
        }
    }
}

/// Deletes a bot with its alerts, deals and orders.
#[utoipa::path(delete, path = "/v1/bots/{id}", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_bot(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    if state.store.delete_bot(user, id, Utc::now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("bot"))
    }
}

async fn pause(state: &ApiState, user: Uuid, id: Uuid, paused: bool) -> ApiResult<Json<BotRow>> {
    let row = set_paused(&state.store, user, id, paused, Utc::now()).await?;
    row.map(Json).ok_or_else(|| ApiError::not_found("bot"))
}

/// Pauses a bot: all its alerts pause (an open deal stays open).
#[utoipa::path(post, path = "/v1/bots/{id}/pause", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 200, body = BotRow), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn pause_bot(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<BotRow>> {
    pause(&state, user, id, true).await
}

/// Resumes a bot: what its state arms is armed again (the entry, or the open deal's orders).
#[utoipa::path(post, path = "/v1/bots/{id}/resume", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 200, body = BotRow), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn resume_bot(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<BotRow>> {
    pause(&state, user, id, false).await
}

/// The bot's deals, by number.
#[utoipa::path(get, path = "/v1/bots/{id}/deals", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<DealRow>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_deals(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<DealRow>>> {
    owned(&state, user, id).await?;
    Ok(Json(state.store.list_deals(user, id).await?))
}

/// The bot's orders, oldest first.
#[utoipa::path(get, path = "/v1/bots/{id}/orders", tag = "bots", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<BotOrderRow>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_orders(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<BotOrderRow>>> {
    owned(&state, user, id).await?;
    Ok(Json(state.store.list_bot_orders(user, id).await?))
}
