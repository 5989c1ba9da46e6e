//! `GET /v1/demo-token`: a token for the embedded default's demo user, for the dashboard's
//! "demo token" button.
//!
//! Only answered when `serve` runs the embedded default — SQLite, no `SUPABASE_JWT_SECRET`, the
//! demo user seeded — and then it hands out a token for that one user to anyone who can reach
//! the server (which, by default, listens on 127.0.0.1 only). `serve` decides
//! ([`crate::HttpConfig::demo_token`]); everywhere else it is a 404 (`not_found`, "demo token
//! not found: …"), with no minting code reachable.

use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};

/// How `GET /v1/demo-token` mints: the embedded default's secret and its demo user.
#[derive(Clone)]
pub struct DemoToken {
    pub jwt_secret: String,
    pub user: Uuid,
    /// How long a minted token is valid.
    pub ttl: Duration,
}

impl std::fmt::Debug for DemoToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoToken")
            .field("jwt_secret", &"***")
            .field("user", &self.user)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A token for the demo user.
#[derive(Serialize, ToSchema)]
pub struct DemoTokenBody {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub user_id: Uuid,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// The route; with `None` it answers 404 (it is in the OpenAPI document, so it is routed).
pub fn routes(demo: Option<DemoToken>) -> Router<ApiState> {
    Router::new().route(
        "/v1/demo-token",
        get(demo_token).layer(axum::Extension(demo)),
    )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(demo_token), components(schemas(DemoTokenBody, ErrorBody)))]
pub struct Doc;

/// A token for the embedded default's demo user (no authentication). Exists only when `serve`
/// runs the embedded default (SQLite, no `SUPABASE_JWT_SECRET`, the demo user seeded); 404
/// with any configured JWT secret or on PostgreSQL.
#[utoipa::path(get, path = "/v1/demo-token", tag = "auth",
    responses((status = 200, body = DemoTokenBody), (status = 404, body = ErrorBody, description = "not the embedded default")))]
pub async fn demo_token(axum::Extension(demo): axum::Extension<Option<DemoToken>>) -> Response {
    let Some(demo) = demo else {
        return ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "demo token not found: only the embedded default (SQLite, no SUPABASE_JWT_SECRET, \
             the demo user) has one",
        )
        .into_response();
    };
    match crate::auth::mint(&demo.jwt_secret, demo.user, demo.ttl) {
        Ok(token) => {
            let mut r = Json(DemoTokenBody {
                token,
                user_id: demo.user,
                expires_in: demo.ttl.as_secs(),
            })
            .into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => ApiError::internal("minting the demo token failed").into_response(),
    }
}
