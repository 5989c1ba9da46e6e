//! `POST /v1/candles`: candles pushed by a trusted client (the service key) into a runner fed
//! by the ingest source (`alert_marketdata::ingest` holds the rules). Errors use the API's one
//! shape, with the JSON path of every bad field (`candles[1].high`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::{ApiState, Service};
use alert_marketdata::ingest::{MAX_CANDLES_PER_REQUEST, MAX_ERRORS_LISTED};
use alert_marketdata::{BatchError, PushError};
use alert_runtime::CANDLES_REJECTED;

#[derive(utoipa::OpenApi)]
#[openapi(paths(post_candles), components(schemas(IngestOutcome)))]
pub(crate) struct Doc;

/// Largest `POST /v1/candles` body: the largest batch, with room to spare.
pub const MAX_INGEST_BODY: usize = 4 * 1024 * 1024;

/// What a pushed batch did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    /// Candles fed to the runner.
    pub accepted: usize,
    /// Candles skipped as stale or duplicate (re-sending a batch is safe).
    pub rejected: usize,
    /// The first skipped ones (`candles[i].open_time` and why), at most 100.
    pub rejections: Vec<FieldError>,
}

/// Feeds a batch of candle updates (`{"candles": [{symbol, open_time, open, high, low, close,
/// volume, closed}]}`, at most 10,000) to this process's runner. A batch with any invalid
/// candle is refused whole (400 naming each bad field); stale or duplicate bars are skipped and
/// reported; 503 with `Retry-After` while the runner's queue has no room for the whole batch.
/// Needs the service key, and `serve --source ingest`.
#[utoipa::path(post, path = "/v1/candles", tag = "market",
    request_body(content = serde_json::Value, description = "{\"candles\": [...]}"),
    responses((status = 202, body = IngestOutcome), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody, description = "not the service key"),
        (status = 404, body = ErrorBody, description = "this server is not fed over HTTP"),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_candles(
    _service: Service,
    State(state): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Some(ingest) = state.ingest.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server does not take candles over HTTP: start it with `serve --source ingest`",
        ));
    };
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than {MAX_INGEST_BODY} bytes: send at most {MAX_CANDLES_PER_REQUEST} candles per request"
                ),
            )
        } else {
            ApiError::bad_request(format!("reading the body: {e}"))
        }
    })?;
    let candles = ingest.parse(&body).map_err(refused)?;
    let pushed = ingest.push(candles).await.map_err(|e| {
        if e == PushError::Full {
            tracing::warn!("ingest batch refused: the candle queue is full");
        }
        ApiError::unavailable(e.to_string())
    })?;
    let rejected = pushed.rejected.len();
    if rejected > 0 {
        metrics::counter!(CANDLES_REJECTED).increment(rejected as u64);
    }
    let rejections = pushed
        .rejected
        .into_iter()
        .take(MAX_ERRORS_LISTED)
        .map(|r| FieldError {
            path: r.path,
            message: r.message,
        })
        .collect();
    let outcome = IngestOutcome {
        accepted: pushed.accepted,
        rejected,
        rejections,
    };
    Ok((StatusCode::ACCEPTED, Json(outcome)).into_response())
}

/// A batch refused whole: every listed field error, counted in the metrics.
fn refused(e: BatchError) -> ApiError {
    if e.invalid > 0 {
        metrics::counter!(CANDLES_REJECTED).increment(e.invalid as u64);
    }
    tracing::warn!(error = %e.error, first = ?e.errors.first(), "ingest batch refused");
    let mut error = ApiError::fields(
        e.errors
            .into_iter()
            .map(|f| FieldError {
                path: f.path,
                message: f.message,
            })
            .collect(),
    );
    if e.invalid > 1 {
        error.message = format!("{} ({} invalid candles)", error.message, e.invalid);
    }
    error
}
