//! Alerts and their history: create (the seed JSON), list, get, replace, patch, delete, pause,
//! resume, validate; triggers; notifications; webhook deliveries; the webhook secret.
//!
//! Every call is scoped to the caller: the store filters by user (and on PostgreSQL runs as
//! `authenticated` under row-level security), so another user's resource is a 404.

use alert_engine::parse::{ValidationErrors, parse_alert};
use alert_store::{
    AlertQuery, AlertRow, AlertStatus, AttemptRow, Cursor, DeliveryRow, NewAlert, NotificationRow,
    TriggerQuery, TriggerRow,
};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, ErrorBody, FieldError, JsonBody};
use crate::{ApiState, User};

/// How long a webhook host may take to resolve when an alert is saved.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/v1/alerts", post(create_alert).get(list_alerts))
        .route("/v1/alerts/validate", post(validate_alert))
        .route(
            "/v1/alerts/{id}",
            get(get_alert)
                .put(replace_alert)
                .patch(patch_alert)
                .delete(delete_alert),
        )
        .route("/v1/alerts/{id}/pause", post(pause_alert))
        .route("/v1/alerts/{id}/resume", post(resume_alert))
        .route("/v1/triggers", get(list_triggers))
        .route("/v1/notifications", get(list_notifications))
        .route("/v1/notifications/{id}/read", post(mark_read))
        .route("/v1/deliveries", get(list_deliveries))
        .route("/v1/deliveries/{id}/redeliver", post(redeliver))
        .route("/v1/webhook-secret", get(get_secret))
        .route("/v1/webhook-secret/rotate", post(rotate_secret))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create_alert,
        list_alerts,
        validate_alert,
        get_alert,
        replace_alert,
        patch_alert,
        delete_alert,
        pause_alert,
        resume_alert,
        list_triggers,
        list_notifications,
        mark_read,
        list_deliveries,
        redeliver,
        get_secret,
        rotate_secret
    ),
    components(schemas(
        AlertRow,
        alert_store::AlertStatus,
        AlertPage,
        Validated,
        TriggerRow,
        TriggerPage,
        NotificationRow,
        DeliveryRow,
        AttemptRow,
        Secret,
        ErrorBody,
        FieldError
    ))
)]
pub struct Doc;

// ---- shapes ---------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertRow>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct AlertListQuery {
    pub symbol: Option<String>,
    /// `active`, `paused`, `triggered` or `expired`.
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// At most 500 (default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct Validated {
    pub valid: bool,
    /// Warnings that do not prevent saving (e.g. a webhook host that does not resolve now).
    pub warnings: Vec<FieldError>,
}

#[derive(Serialize, ToSchema)]
pub struct TriggerPage {
    pub items: Vec<TriggerRow>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct TriggerListQuery {
    pub alert_id: Option<Uuid>,
    /// Fired at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Fired before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
pub struct LimitQuery {
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct Secret {
    /// Signs every webhook: `whsec_` + base64.
    pub secret: String,
    /// After a rotation, the old secret, still signing until the grace period ends.
    pub previous: Option<String>,
}

// ---- helpers -----------------------------------------------------------------------------

pub(crate) fn validation(e: ValidationErrors) -> ApiError {
    ApiError::fields(
        e.errors()
            .iter()
            .map(|f| FieldError {
                path: f.path.clone(),
                message: f.expected.clone(),
            })
            .collect(),
    )
}

fn page(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::field("limit", "an integer from 1 to 500")),
    }
}

fn cursor(text: Option<&str>) -> ApiResult<Option<Cursor>> {
    text.map(|c| {
        Cursor::decode(c).ok_or_else(|| ApiError::field("cursor", "a cursor from a previous page"))
    })
    .transpose()
}

/// Checks an alert's webhook URLs against the SSRF policy, resolving host names as the
/// dispatcher will: (refused, warnings), each naming the URL's path in `json` (the alert JSON
/// `def` was parsed from). A host that does not resolve now is only a warning: DNS may be down
/// or the name not yet published, and the dispatcher checks again before every connection.
pub async fn check_webhooks(
    policy: &alert_dispatch::AddressPolicy,
    def: &alert_engine::AlertDefinition,
    json: &serde_json::Value,
) -> (Vec<FieldError>, Vec<FieldError>) {
    let mut refused = Vec::new();
    let mut warnings = Vec::new();
    let listed = json.get("actions").is_some();
    for (j, action) in def.actions.iter().enumerate() {
        let alert_engine::Action::Webhook { url, .. } = action else {
            continue;
        };
        let Err(e) = policy.check_url_resolving(url, RESOLVE_TIMEOUT).await else {
            continue;
        };
        let error = FieldError {
            path: if listed {
                format!("actions[{j}].url")
            } else {
                "action.url".to_owned()
            },
            message: e.to_string(),
        };
        match e {
            alert_dispatch::SsrfError::Resolve(_) | alert_dispatch::SsrfError::NoAddress(_) => {
                warnings.push(error)
            }
            _ => refused.push(error),
        }
    }
    (refused, warnings)
}

/// Parses an alert and checks its webhook URLs; returns the store's row to write and
/// warnings.
async fn checked(
    state: &ApiState,
    json: &serde_json::Value,
    status: AlertStatus,
) -> ApiResult<(NewAlert, Vec<FieldError>)> {
    let def = parse_alert(json).map_err(validation)?;
    let (refused, warnings) = check_webhooks(&state.policy, &def, json).await;
    if !refused.is_empty() {
        return Err(ApiError::fields(refused));
    }
    Ok((
        NewAlert {
            name: def.name.clone(),
            symbol: def.symbol,
            base_timeframe: def.base_timeframe,
            definition: json.clone(),
            status,
        },
        warnings,
    ))
}

fn body_object(json: &serde_json::Value) -> ApiResult<()> {
    if json.is_object() {
        Ok(())
    } else {
        Err(ApiError::field("", "a JSON object (the alert)"))
    }
}

// ---- alerts ------------------------------------------------------------------------------

/// Creates an alert from the alert JSON (DESIGN §3; snake_case aliases accepted). Every
/// validation error is reported with its JSON path.
#[utoipa::path(post, path = "/v1/alerts", tag = "alerts", request_body(content = Object, description = "The alert JSON"),
    responses((status = 201, body = AlertRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody, description = "a limit on active alerts")),
    security(("bearer" = [])))]
pub async fn create_alert(
    User(user): User,
    State(state): State<ApiState>,
    JsonBody(json): JsonBody,
) -> ApiResult<(StatusCode, Json<AlertRow>)> {
    body_object(&json)?;
    let (new, _warnings) = checked(&state, &json, AlertStatus::Active).await?;
    let row = state.store.create_alert(user, &new, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Checks an alert without saving it.
#[utoipa::path(post, path = "/v1/alerts/validate", tag = "alerts", request_body(content = Object, description = "The alert JSON"),
    responses((status = 200, body = Validated), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn validate_alert(
    User(_user): User,
    State(state): State<ApiState>,
    JsonBody(json): JsonBody,
) -> ApiResult<Json<Validated>> {
    body_object(&json)?;
    let (_, warnings) = checked(&state, &json, AlertStatus::Active).await?;
    Ok(Json(Validated {
        valid: true,
        warnings,
    }))
}

/// The caller's alerts, oldest first, with optional filters and cursor pagination.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertListQuery),
    responses((status = 200, body = AlertPage), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_alerts(
    User(user): User,
    State(state): State<ApiState>,
    Query(q): Query<AlertListQuery>,
) -> ApiResult<Json<AlertPage>> {
    let limit = page(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            AlertStatus::parse(s).ok_or_else(|| {
                ApiError::field("status", "one of active, paused, triggered, expired")
            })
        })
        .transpose()?;
    let rows = state
        .store
        .list_alerts(
            user,
            &AlertQuery {
                symbol: q.symbol.map(|s| s.to_ascii_uppercase()),
                status,
                after: cursor(q.cursor.as_deref())?,
                limit,
            },
        )
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|r| {
            Cursor {
                at: r.created_at,
                id: r.id,
            }
            .encode()
        });
    Ok(Json(AlertPage {
        items: rows,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertRow), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_alert(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AlertRow>> {
    let row = state.store.get_alert(user, id).await?;
    row.map(Json).ok_or_else(|| ApiError::not_found("alert"))
}

/// Replaces an alert's definition (clears a webhook action disabled by 410 Gone).
#[utoipa::path(put, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = Uuid, Path)), request_body(content = Object, description = "The alert JSON"),
    responses((status = 200, body = AlertRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn replace_alert(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    JsonBody(json): JsonBody,
) -> ApiResult<Json<AlertRow>> {
    body_object(&json)?;
    let Some(current) = state.store.get_alert(user, id).await? else {
        return Err(ApiError::not_found("alert"));
    };
    let (new, _) = checked(&state, &json, current.status).await?;
    let row = state.store.update_alert(user, id, &new, Utc::now()).await?;
    row.map(Json).ok_or_else(|| ApiError::not_found("alert"))
}

/// Applies a JSON merge patch (RFC 7386) to the stored alert JSON and saves the result if it
/// is valid; a `"status": "active" | "paused"` member pauses or resumes.
#[utoipa::path(patch, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = Uuid, Path)), request_body(content = Object, description = "A JSON merge patch"),
    responses((status = 200, body = AlertRow), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn patch_alert(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    JsonBody(mut patch): JsonBody,
) -> ApiResult<Json<AlertRow>> {
    body_object(&patch)?;
    let Some(current) = state.store.get_alert(user, id).await? else {
        return Err(ApiError::not_found("alert"));
    };
    let status = match patch.as_object_mut().and_then(|o| o.remove("status")) {
        None => None,
        Some(serde_json::Value::String(s)) if s == "active" => Some(AlertStatus::Active),
        Some(serde_json::Value::String(s)) if s == "paused" => Some(AlertStatus::Paused),
        Some(_) => return Err(ApiError::field("status", "active or paused")),
    };
    let mut row = current.clone();
    let has_changes = patch.as_object().is_some_and(|o| !o.is_empty());
    if has_changes {
        let mut definition = current.definition.clone();
        merge_patch(&mut definition, &patch);
        let (new, _) = checked(&state, &definition, current.status).await?;
        row = state
            .store
            .update_alert(user, id, &new, Utc::now())
            .await?
            .ok_or_else(|| ApiError::not_found("alert"))?;
    }
    if let Some(status) = status {
        row = state
            .store
            .set_status(user, id, status, Utc::now())
            .await?
            .ok_or_else(|| ApiError::not_found("alert"))?;
    }
    Ok(Json(row))
}

/// RFC 7386: objects merge member by member, `null` removes, anything else replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (None, Some(p)) => {
            let mut fresh = serde_json::Value::Object(serde_json::Map::new());
            merge_patch(&mut fresh, &serde_json::Value::Object(p.clone()));
            *target = fresh;
        }
        _ => *target = patch.clone(),
    }
}

#[utoipa::path(delete, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted, with its triggers, notifications and deliveries"), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_alert(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    if state.store.delete_alert(user, id, Utc::now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("alert"))
    }
}

async fn set_status(
    state: &ApiState,
    user: Uuid,
    id: Uuid,
    status: AlertStatus,
) -> ApiResult<Json<AlertRow>> {
    let row = state.store.set_status(user, id, status, Utc::now()).await?;
    row.map(Json).ok_or_else(|| ApiError::not_found("alert"))
}

#[utoipa::path(post, path = "/v1/alerts/{id}/pause", tag = "alerts", params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertRow), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn pause_alert(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AlertRow>> {
    set_status(&state, user, id, AlertStatus::Paused).await
}

/// Resumes an alert (also a spent `once` alert or an expired one); checks the limits.
#[utoipa::path(post, path = "/v1/alerts/{id}/resume", tag = "alerts", params(("id" = Uuid, Path)),
    responses((status = 200, body = AlertRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn resume_alert(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<AlertRow>> {
    set_status(&state, user, id, AlertStatus::Active).await
}

// ---- history -----------------------------------------------------------------------------

/// The caller's triggers, newest first: by alert, in a time range, paginated.
#[utoipa::path(get, path = "/v1/triggers", tag = "history", params(TriggerListQuery),
    responses((status = 200, body = TriggerPage), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_triggers(
    User(user): User,
    State(state): State<ApiState>,
    Query(q): Query<TriggerListQuery>,
) -> ApiResult<Json<TriggerPage>> {
    let limit = page(q.limit)?;
    let rows = state
        .store
        .list_triggers(
            user,
            &TriggerQuery {
                alert_id: q.alert_id,
                from: q.from,
                to: q.to,
                before: cursor(q.cursor.as_deref())?,
                limit,
            },
        )
        .await?;
    let next_cursor = (rows.len() == limit as usize)
        .then(|| rows.last())
        .flatten()
        .map(|r| {
            Cursor {
                at: r.fired_at,
                id: r.id,
            }
            .encode()
        });
    Ok(Json(TriggerPage {
        items: rows,
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/notifications", tag = "history", params(LimitQuery),
    responses((status = 200, body = Vec<NotificationRow>)), security(("bearer" = [])))]
pub async fn list_notifications(
    User(user): User,
    State(state): State<ApiState>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Vec<NotificationRow>>> {
    let rows = state.store.list_notifications(user, page(q.limit)?).await?;
    Ok(Json(rows))
}

#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "history", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn mark_read(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    if state
        .store
        .mark_notification_read(user, id, Utc::now())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("notification"))
    }
}

/// The caller's webhook (and bot) deliveries with every attempt, newest first.
#[utoipa::path(get, path = "/v1/deliveries", tag = "history", params(LimitQuery),
    responses((status = 200, body = Vec<DeliveryRow>)), security(("bearer" = [])))]
pub async fn list_deliveries(
    User(user): User,
    State(state): State<ApiState>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Vec<DeliveryRow>>> {
    let rows = state.store.list_deliveries(user, page(q.limit)?).await?;
    Ok(Json(rows))
}

/// Sends a finished (delivered, failed or cancelled) delivery again, with the same
/// `webhook-id`.
#[utoipa::path(post, path = "/v1/deliveries/{id}/redeliver", tag = "history", params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404, body = ErrorBody, description = "not the caller's, or still pending")), security(("bearer" = [])))]
pub async fn redeliver(
    User(user): User,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    if state.store.redeliver(user, id, Utc::now()).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found("finished delivery"))
    }
}

/// The caller's webhook signing secret (created on first use).
#[utoipa::path(get, path = "/v1/webhook-secret", tag = "webhooks",
    responses((status = 200, body = Secret)), security(("bearer" = [])))]
pub async fn get_secret(
    User(user): User,
    State(state): State<ApiState>,
) -> ApiResult<Json<Secret>> {
    let s = state
        .store
        .webhook_secret(user, &alert_dispatch::generate_secret(), Utc::now())
        .await?;
    Ok(Json(Secret {
        secret: s.current,
        previous: s.previous,
    }))
}

/// Replaces the secret; the old one keeps signing beside the new one for the grace period.
#[utoipa::path(post, path = "/v1/webhook-secret/rotate", tag = "webhooks",
    responses((status = 200, body = Secret)), security(("bearer" = [])))]
pub async fn rotate_secret(
    User(user): User,
    State(state): State<ApiState>,
) -> ApiResult<Json<Secret>> {
    let s = state
        .store
        .rotate_webhook_secret(
            user,
            &alert_dispatch::generate_secret(),
            state.secret_grace,
            Utc::now(),
        )
        .await?;
    Ok(Json(Secret {
        secret: s.current,
        previous: s.previous,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}, "k": [1]});
        merge_patch(
            &mut doc,
            &serde_json::json!({"a": "z", "c": {"f": null}, "k": [2, 3], "n": {"x": 1}}),
        );
        assert_eq!(
            doc,
            serde_json::json!({"a": "z", "c": {"d": "e"}, "k": [2, 3], "n": {"x": 1}})
        );
    }
}
