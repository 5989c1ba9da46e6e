//! The HTTP API (`/v1`), served by `alert-runner serve`.
//!
//! Users authenticate with Supabase JWTs ([`auth`]); on PostgreSQL every user request runs as
//! role `authenticated` with the request's claims (the store does it), so row-level security
//! scopes it as well; another user's resource is a 404, never a 403.

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
}

pub mod events;
pub mod market;
