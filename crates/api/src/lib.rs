//! The HTTP API (`/v1`), served by `alert-runner serve`.
//!
//! Users authenticate with Supabase JWTs ([`auth`]); on PostgreSQL every user request runs as
//! role `authenticated` with the request's claims (the store does it), so row-level security
//! scopes it as well; another user's resource is a 404, never a 403.

pub mod alerts;
pub mod auth;
pub mod error;

use std::sync::Arc;
use std::time::Duration;

use alert_dispatch::{AddressPolicy, LiveHub};
use alert_store::Store;

pub use auth::{Auth, RateLimiter, Service, User};
pub use error::{ApiError, ApiResult};

/// Largest request body (alerts and the like).
pub const MAX_BODY: usize = 256 * 1024;

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub auth: Arc<Auth>,
    pub rate: Arc<RateLimiter>,
    pub live: LiveHub,
    /// Webhook URLs of new and replaced alerts are checked against it.
    pub policy: AddressPolicy,
    /// How long a rotated webhook secret keeps signing.
    pub secret_grace: Duration,
    /// Asks the runner of this process about its market data (`/v1/candles`,
    /// `/v1/indicators`, dry runs); `None`: those answer 503.
    pub market: Option<alert_runtime::MarketHandle>,
    /// Where `POST /v1/candles` feeds candles (`serve --source ingest`); `None`: 404.
    pub ingest: Option<alert_marketdata::IngestHandle>,
    /// Closes bots' deals on request, publishing the orders to `live` (the dispatcher's bot
    /// handler in `serve`: one per process, so bot orders are published in time order).
    pub bots: Arc<alert_bots::live::StoreBots>,
}

pub mod bots;
pub mod demo;
pub mod events;
pub mod ingest;
pub mod market;

/// Settings of the HTTP layer.
#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Longest time a request may take to be answered (a stream: until its response head);
    /// beyond it `503 unavailable`. `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Requests handled at once, authenticated or not (token checks included); beyond it
    /// `503 unavailable` at once, without queueing. 0: no limit.
    pub max_in_flight: usize,
    /// Let `GET /v1/demo-token` mint tokens for the embedded default's demo user (`serve` sets
    /// it only for the embedded default: SQLite, no configured JWT secret, the demo user
    /// seeded). `None`: it answers 404.
    pub demo_token: Option<demo::DemoToken>,
}

/// The request timeout and in-flight cap of [`HttpConfig`]: they bound what any client,
/// authenticated or not, can make the server hold.
#[derive(Clone)]
struct Guard {
    timeout: Option<Duration>,
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

async fn guard(
    axum::extract::State(g): axum::extract::State<Guard>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // The permit is held until the response head is ready; a stream's body does not hold it.
    let _permit = match &g.slots {
        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                return ApiError::unavailable("the server is busy: retry shortly").into_response();
            }
        },
        None => None,
    };
    match g.timeout {
        Some(limit) => match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError::unavailable(format!(
                "the request took longer than {} ms",
                limit.as_millis()
            ))
            .into_response(),
        },
        None => next.run(request).await,
    }
}

/// The OpenAPI document of every `/v1` route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(title = "alert-runner", description = "Trading alerts: create them, watch them fire, receive their events."),
        modifiers(&BearerAuth)
    )]
    struct Root;
    struct BearerAuth;
    impl utoipa::Modify for BearerAuth {
        fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
            use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
            let components = doc.components.get_or_insert_with(Default::default);
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some("A Supabase access token (HS256)"))
                        .build(),
                ),
            );
        }
    }
    let mut doc = Root::openapi();
    doc.merge(alerts::Doc::openapi());
    doc.merge(market::Doc::openapi());
    doc.merge(events::Doc::openapi());
    doc.merge(ingest::Doc::openapi());
    doc.merge(bots::Doc::openapi());
    doc.merge(demo::Doc::openapi());
    doc
}

/// Every API route, with the body limit, CORS and the error shape for unknown routes.
pub fn router(state: ApiState, http: &HttpConfig) -> axum::Router {
    use axum::routing::get;
    let doc = openapi();
    let mut router = axum::Router::new()
        .merge(alerts::routes())
        .merge(market::routes())
        .merge(events::routes())
        .merge(bots::routes())
        .merge(demo::routes(http.demo_token.clone()))
        .route(
            "/openapi.json",
            get(move || std::future::ready(axum::Json(doc.clone()))),
        )
        .fallback(|| std::future::ready(ApiError::not_found("route")))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Guard {
                timeout: http.request_timeout,
                slots: (http.max_in_flight > 0)
                    .then(|| Arc::new(tokio::sync::Semaphore::new(http.max_in_flight))),
            },
            guard,
        ));
    if let Some(cors) = cors(&http.cors_origins) {
        router = router.layer(cors);
    }
    router
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods(Any)
        .allow_headers(Any)
        .max_age(Duration::from_secs(600));
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        let list: Vec<_> = origins
            .iter()
            .filter_map(|o| axum::http::HeaderValue::from_str(o).ok())
            .collect();
        layer.allow_origin(AllowOrigin::list(list))
    })
}

#[cfg(test)]
mod tests {
    /// Every path given to `.route(` in the API's source is in the OpenAPI document, with each
    /// method routed to it.
    #[test]
    fn every_route_is_documented() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let sources = [
            include_str!("alerts.rs"),
            include_str!("market.rs"),
            include_str!("events.rs"),
            include_str!("bots.rs"),
            include_str!("demo.rs"),
        ];
        let mut checked = 0;
        for source in sources {
            for (i, _) in source.match_indices(".route(") {
                let rest = &source[i..];
                let Some(open) = rest.find('"') else { continue };
                let Some(len) = rest[open + 1..].find('"') else {
                    continue;
                };
                let path = &rest[open + 1..open + 1 + len];
                // The method router runs to the next route or the end of `routes()`.
                let end = rest[1..]
                    .find(".route(")
                    .map_or(rest.len(), |e| e + 1)
                    .min(rest.find("\n}\n").unwrap_or(rest.len()));
                let call = &rest[..end];
                let ops = paths
                    .get(path)
                    .unwrap_or_else(|| panic!("{path} is routed but not in /openapi.json"));
                for method in ["get", "post", "put", "patch", "delete"] {
                    let routed = call.contains(&format!("{method}("));
                    if routed {
                        assert!(
                            ops.get(method).is_some(),
                            "{method} {path} is routed but not documented"
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 12, "found only {checked} routes");
    }
}
