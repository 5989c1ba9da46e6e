//! The one error shape of the API: `{"error": {"code", "message", "path"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The JSON path of the offending field, for validation errors.
    pub path: Option<String>,
    /// More validation errors, when a body has several.
    pub details: Vec<FieldError>,
    /// Seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

/// One field's validation error.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `validation_failed`, `unauthorized`, `not_found`, `limit_exceeded`,
    /// `conflict`,
    /// `payload_too_large`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
    pub message: String,
    /// The JSON path of the (first) offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Every validation error, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            path: None,
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }

    /// A validation error at `path`.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        let path = path.into();
        let message = message.into();
        Self {
            details: vec![FieldError {
                path: path.clone(),
                message: message.clone(),
            }],
            path: Some(path.clone()),
            message: if path.is_empty() {
                message
            } else {
                format!("{path}: {message}")
            },
            ..Self::bad_request("")
        }
    }

    /// Several validation errors; the first names the error.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let Some(first) = errors.first().cloned() else {
            return Self::bad_request("invalid request");
        };
        let mut e = Self::field(first.path, first.message);
        if errors.len() > 1 {
            e.message = format!("{} (and {} more)", e.message, errors.len() - 1);
        }
        e.details = errors;
        e
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// A limit on the user's resources would be exceeded.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "limit_exceeded", message)
    }

    /// The change conflicts with the resource's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// A server-side failure: logged in full, answered without details.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it was logged",
        )
    }
}

impl From<alert_store::StoreError> for ApiError {
    fn from(e: alert_store::StoreError) -> Self {
        match e {
            alert_store::StoreError::Limit(message) => Self::limit_exceeded(message),
            alert_store::StoreError::Conflict(message)
            | alert_store::StoreError::Stale(message) => Self::conflict(message),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                path: self.path,
                errors: if self.details.len() > 1 {
                    self.details
                } else {
                    Vec::new()
                },
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON request body whose rejections use the API's error shape: 413 over the body limit,
/// 400 naming the line and column of a syntax error.
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body is larger than {} bytes", crate::MAX_BODY),
                    )
                } else {
                    ApiError::bad_request(format!("reading the body: {e}"))
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::field("", format!("valid JSON ({e})")))
    }
}
