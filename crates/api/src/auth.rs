//! Who is calling: a Supabase user (a JWT in `Authorization: Bearer`), or a trusted service
//! (the service key).
//!
//! Tokens are checked as Supabase issues them: HS256 only (any other algorithm, `none`
//! included, is refused), signed with the project's JWT secret (its UTF-8 bytes), `aud` =
//! `authenticated`, `role` = `authenticated`, `sub` = the user's uuid, `exp` in the future and
//! `nbf` (if present) in the past, with 30 s of leeway, and `iss` equal to the configured
//! issuer when one is set ([`Auth::with_issuer`]). Refusals say what kind of problem it was
//! without echoing the token or anything in it.
//!
//! The token is read from `Authorization: Bearer`; only the streaming routes
//! ([`QUERY_TOKEN_PATHS`]: browsers' `EventSource` and WebSocket cannot set headers) also
//! accept `?access_token=`, so tokens do not end up in proxies' access logs elsewhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ApiState;
use crate::error::ApiError;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// The routes that accept the token as `?access_token=` (besides the header).
pub const QUERY_TOKEN_PATHS: &[&str] = &["/v1/events", "/v1/ws"];

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

/// Verifies tokens and the service key.
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
    service_key: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("service_key", &self.service_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// Why a request was refused (safe to return).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted: expected HS256")]
    Algorithm,
    #[error("invalid token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token audience is not `authenticated`")]
    Audience,
    #[error("token role is not `authenticated`")]
    Role,
    #[error("token has no valid `sub` (a user uuid)")]
    Subject,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("invalid service key")]
    ServiceKey,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::unauthorized(e.to_string())
    }
}

impl Auth {
    /// `jwt_secret`: the Supabase project's JWT secret; `service_key`: the key of trusted
    /// clients (`ALERT_SERVICE_KEY`), if any. The key is trimmed here, once, as the
    /// presented key is (a blank key is no key).
    pub fn new(jwt_secret: &str, service_key: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&["authenticated"]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        Self {
            key: DecodingKey::from_secret(jwt_secret.as_bytes()),
            validation,
            service_key: service_key
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty()),
        }
    }

    /// Also requires `iss` to be `issuer` (Supabase: `https://<project>.supabase.co/auth/v1`);
    /// `None` or blank: `iss` is not checked.
    pub fn with_issuer(mut self, issuer: Option<&str>) -> Self {
        if let Some(iss) = issuer.map(str::trim).filter(|i| !i.is_empty()) {
            self.validation.set_issuer(&[iss]);
            self.validation
                .set_required_spec_claims(&["exp", "aud", "sub", "iss"]);
        }
        self
    }

    /// The user a token names.
    pub fn verify(&self, token: &str) -> Result<Uuid, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::Algorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::Audience,
                ErrorKind::InvalidIssuer => AuthError::Issuer,
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::Issuer,
                ErrorKind::InvalidSignature => AuthError::Signature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Algorithm
                }
                ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => AuthError::Subject,
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::Audience,
                _ => AuthError::Malformed,
            },
        )?;
        if data.claims.role.as_deref() != Some("authenticated") {
            return Err(AuthError::Role);
        }
        data.claims
            .sub
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or(AuthError::Subject)
    }

    /// Whether `key` is the service key (constant time).
    pub fn is_service_key(&self, key: &str) -> bool {
        match &self.service_key {
            Some(expected) => {
                alert_dispatch::sign::constant_time_eq(expected.as_bytes(), key.as_bytes())
            }
            None => false,
        }
    }
}

/// A token for `user`, valid for `ttl`, as Supabase would issue it (for `alert-runner token`
/// and tests).
pub fn mint(jwt_secret: &str, user: Uuid, ttl: Duration) -> Result<String, String> {
    mint_with_issuer(jwt_secret, user, ttl, None)
}

/// [`mint`], with `iss` set to `issuer` if given.
pub fn mint_with_issuer(
    jwt_secret: &str,
    user: Uuid,
    ttl: Duration,
    issuer: Option<&str>,
) -> Result<String, String> {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: Some(user.to_string()),
        role: Some("authenticated".into()),
        aud: Some(serde_json::Value::String("authenticated".into())),
        exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        nbf: None,
        iat: Some(now),
        iss: issuer.map(str::to_owned),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(jwt_secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    bearer_token(&parts.headers)
}

/// The token of an `Authorization: Bearer <token>` header (also for routes outside this
/// router, such as `/metrics`).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Missing)?
        .trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// An authenticated user (and within the rate limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User(pub Uuid);

impl<S> FromRequestParts<S> for User
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = ApiState::from_ref(state);
        // Browsers cannot set headers on EventSource/WebSocket: those routes may pass the
        // token as `?access_token=` (as Supabase Realtime does); no other route does.
        let token = match bearer(parts) {
            Ok(t) => t.to_owned(),
            Err(e) if QUERY_TOKEN_PATHS.contains(&parts.uri.path()) => {
                query_token(parts).ok_or(e)?
            }
            Err(e) => return Err(e.into()),
        };
        let user = state.auth.verify(&token)?;
        state.rate.check(user)?;
        Ok(User(user))
    }
}

fn query_token(parts: &Parts) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "access_token" && !v.is_empty()).then(|| v.to_owned())
    })
}

/// A trusted service (the service key as bearer token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service;

impl<S> FromRequestParts<S> for Service
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = ApiState::from_ref(state);
        let key = bearer(parts)?;
        if state.auth.is_service_key(key) {
            Ok(Service)
        } else {
            Err(AuthError::ServiceKey.into())
        }
    }
}

/// Requests per user: a token bucket of `burst` refilled at `per_second`.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: per_second.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `user`'s bucket, or says when to retry.
    pub fn check(&self, user: Uuid) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 100_000 {
            // Full buckets carry no state worth keeping.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(user).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64;
            Err(ApiError {
                retry_after: Some(wait),
                ..ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests: slow down",
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

    fn token(claims: serde_json::Value, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn base() -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({"sub": "6f1c7d8e-1111-4222-8333-944455556666", "role": "authenticated",
                           "aud": "authenticated", "exp": now + 600, "iat": now})
    }

    #[test]
    fn supabase_tokens_pass_and_mint_round_trips() {
        let auth = Auth::new(SECRET, None);
        let user = auth
            .verify(&token(base(), Algorithm::HS256, SECRET))
            .unwrap();
        assert_eq!(user.to_string(), "6f1c7d8e-1111-4222-8333-944455556666");
        let u = Uuid::new_v4();
        let minted = mint(SECRET, u, Duration::from_secs(60)).unwrap();
        assert_eq!(auth.verify(&minted), Ok(u));
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let auth = Auth::new(SECRET, None);
        let now = chrono::Utc::now().timestamp();
        let with = |k: &str, v: serde_json::Value| {
            let mut c = base();
            c[k] = v;
            token(c, Algorithm::HS256, SECRET)
        };
        let without = |k: &str| {
            let mut c = base();
            c.as_object_mut().unwrap().remove(k);
            token(c, Algorithm::HS256, SECRET)
        };
        assert_eq!(
            auth.verify(&token(base(), Algorithm::HS256, "another-secret")),
            Err(AuthError::Signature)
        );
        assert_eq!(
            auth.verify(&token(base(), Algorithm::HS512, SECRET)),
            Err(AuthError::Algorithm)
        );
        assert_eq!(
            auth.verify(&with("exp", (now - 120).into())),
            Err(AuthError::Expired)
        );
        assert!(
            auth.verify(&with("exp", (now - 5).into())).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            auth.verify(&with("nbf", (now + 600).into())),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            auth.verify(&with("aud", "anon".into())),
            Err(AuthError::Audience)
        );
        assert_eq!(
            auth.verify(&with("role", "anon".into())),
            Err(AuthError::Role)
        );
        assert_eq!(
            auth.verify(&with("sub", "not-a-uuid".into())),
            Err(AuthError::Subject)
        );
        assert_eq!(auth.verify(&without("sub")), Err(AuthError::Subject));
        assert_eq!(auth.verify(&without("exp")), Err(AuthError::Malformed));
        assert_eq!(auth.verify("not.a.token"), Err(AuthError::Malformed));
        // alg "none": an unsigned token with a valid-looking payload.
        use base64_like::encode;
        let unsigned = format!(
            "{}.{}.",
            encode(br#"{"alg":"none","typ":"JWT"}"#),
            encode(base().to_string().as_bytes())
        );
        assert!(auth.verify(&unsigned).is_err());
    }

    /// URL-safe base64 without padding, enough to forge test tokens.
    mod base64_like {
        pub fn encode(bytes: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }

    #[test]
    fn issuer_is_checked_when_configured() {
        let auth = Auth::new(SECRET, None).with_issuer(Some("https://p.supabase.co/auth/v1"));
        let mut claims = base();
        assert_eq!(
            auth.verify(&token(claims.clone(), Algorithm::HS256, SECRET)),
            Err(AuthError::Issuer),
            "no iss"
        );
        claims["iss"] = "https://other.supabase.co/auth/v1".into();
        assert_eq!(
            auth.verify(&token(claims.clone(), Algorithm::HS256, SECRET)),
            Err(AuthError::Issuer)
        );
        claims["iss"] = "https://p.supabase.co/auth/v1".into();
        assert!(
            auth.verify(&token(claims, Algorithm::HS256, SECRET))
                .is_ok()
        );
        let open = Auth::new(SECRET, None).with_issuer(Some("  "));
        assert!(
            open.verify(&token(base(), Algorithm::HS256, SECRET))
                .is_ok()
        );
    }

    #[test]
    fn service_key_is_trimmed_once_and_compared_whole() {
        let auth = Auth::new(SECRET, Some(" service-key-0123456789\n".into()));
        assert!(auth.is_service_key("service-key-0123456789"));
        assert!(!Auth::new(SECRET, Some("   ".into())).is_service_key(""));
        let auth = Auth::new(SECRET, Some("service-key-0123456789".into()));
        assert!(auth.is_service_key("service-key-0123456789"));
        assert!(!auth.is_service_key("service-key-012345678"));
        assert!(!auth.is_service_key(""));
        assert!(!Auth::new(SECRET, None).is_service_key(""));
    }

    #[test]
    fn rate_limit_refuses_beyond_the_burst_with_retry_after() {
        let limiter = RateLimiter::new(1.0, 3);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let refused = limiter.check(a).unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.retry_after, Some(1));
        assert!(limiter.check(b).is_ok(), "per user");
    }
}
