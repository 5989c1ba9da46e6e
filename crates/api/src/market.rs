//! Placeholder: replaced by the market endpoints.

use axum::Router;

use crate::ApiState;

pub fn routes() -> Router<ApiState> {
    Router::new()
}

#[derive(utoipa::OpenApi)]
#[openapi()]
pub struct Doc;
