//! One webhook attempt: the signed request, and what its answer means.

use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};

use crate::sign::{Secret, signature_header};
use crate::ssrf::AddressPolicy;

/// Bytes of a response body kept with the attempt.
pub const RESPONSE_KEEP: usize = 1024;

/// The receiver's idempotency key: stable for a trigger and one of its actions, so a retry,
/// a redelivery or a send after a crash carries the same id.
pub fn message_id(trigger_id: uuid::Uuid, action_index: i32) -> String {
    format!("msg_{}_{}", trigger_id.simple(), action_index)
}

/// `application/json` when the body is JSON, else `text/plain` (a rendered message).
pub fn content_type(body: &str) -> &'static str {
    if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// What an attempt's answer means for the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// Connection error, timeout, 408, 429 or 5xx: try again later.
    Retry,
    /// 410 Gone: the receiver asks us to stop; the alert's webhook action is disabled.
    Gone,
    /// Anything else (3xx — redirects are not followed —, other 4xx, a refused address):
    /// retrying would not help.
    Fail,
}

/// The verdict on an HTTP status.
pub fn verdict(status: StatusCode) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry,
        410 => Verdict::Gone,
        _ => Verdict::Fail,
    }
}

/// One attempt's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration: Duration,
    /// The first [`RESPONSE_KEEP`] bytes of the response body (lossy UTF-8).
    pub response: Option<String>,
    pub retry_after: Option<Duration>,
}

impl Attempt {
    /// An attempt that ended before anything was sent.
    pub fn not_sent(verdict: Verdict, error: String) -> Self {
        Self {
            verdict,
            status: None,
            error: Some(error),
            duration: Duration::ZERO,
            response: None,
            retry_after: None,
        }
    }
}

/// Sends webhooks: no redirects, no proxies, the SSRF policy's resolver, a timeout.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: AddressPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("webhook HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl WebhookSender {
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<Self, ClientError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(policy.resolver())
            .pool_max_idle_per_host(32)
            .build()?;
        Ok(Self { client, policy })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Sends `body` to `url`, signed with `secrets` (one signature each) at `timestamp`
    /// (Unix seconds).
    pub async fn send(
        &self,
        url: &str,
        msg_id: &str,
        timestamp: i64,
        secrets: &[Secret],
        body: &str,
    ) -> Attempt {
        let started = Instant::now();
        let fail = |verdict, error: String| Attempt {
            duration: started.elapsed(),
            ..Attempt::not_sent(verdict, error)
        };
        // Literal addresses never reach the resolver: check them (and scheme, port) here.
        let url = match self.policy.check_url(url) {
            Ok(u) => u,
            Err(e) => return fail(Verdict::Fail, e.to_string()),
        };
        let mut headers = HeaderMap::new();
        let signature = signature_header(secrets, msg_id, timestamp, body.as_bytes());
        for (name, value) in [
            ("webhook-id", msg_id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ] {
            match HeaderValue::from_str(&value) {
                Ok(v) => {
                    headers.insert(name, v);
                }
                Err(_) => return fail(Verdict::Fail, format!("{name}: not a header value")),
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(body)));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("alert-runner/", env!("CARGO_PKG_VERSION"))),
        );
        let response = match self
            .client
            .post(url)
            .headers(headers)
            .body(body.to_owned())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // A name that resolved only to refused addresses will not get better.
                if let Some(refused) = crate::ssrf::SsrfError::find_in(&e) {
                    return fail(Verdict::Fail, refused.to_string());
                }
                return fail(Verdict::Retry, describe(&e));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retry::parse_retry_after(v, SystemTime::now()));
        let (response, read_error) = read_prefix(response).await;
        let verdict = verdict(status);
        let error = match verdict {
            Verdict::Delivered => None,
            _ => Some(read_error.unwrap_or_else(|| format!("HTTP {status}"))),
        };
        Attempt {
            verdict,
            status: Some(status.as_u16()),
            error,
            duration: started.elapsed(),
            response: Some(response),
            retry_after,
        }
    }
}

/// The first [`RESPONSE_KEEP`] bytes of the body; the rest is not read.
async fn read_prefix(response: reqwest::Response) -> (String, Option<String>) {
    let mut kept = Vec::with_capacity(256);
    let mut stream = response.bytes_stream();
    let mut error = None;
    while kept.len() < RESPONSE_KEEP {
        match stream.next().await {
            Some(Ok(chunk)) => {
                let room = RESPONSE_KEEP - kept.len();
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Some(Err(e)) => {
                error = Some(format!("reading the response: {}", describe(&e)));
                break;
            }
            None => break,
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), error)
}

/// A reqwest error with its causes, without the URL (it may carry credentials).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_retry_rules() {
        for (code, v) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (301, Verdict::Fail),
            (400, Verdict::Fail),
            (404, Verdict::Fail),
            (408, Verdict::Retry),
            (410, Verdict::Gone),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
        ] {
            assert_eq!(verdict(StatusCode::from_u16(code).unwrap()), v, "{code}");
        }
    }

    #[test]
    fn message_bodies_get_their_content_type() {
        assert_eq!(content_type(r#"{"a":1}"#), "application/json");
        assert_eq!(
            content_type("BTCUSDT crossed 100"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(""), "text/plain; charset=utf-8");
    }

    #[test]
    fn message_ids_are_stable_per_trigger_and_action() {
        let t = uuid::Uuid::from_u128(0xabc);
        assert_eq!(message_id(t, 1), message_id(t, 1));
        assert_ne!(message_id(t, 1), message_id(t, 2));
        assert!(message_id(t, 0).starts_with("msg_"));
    }
}
