//! The SSRF guard end to end: a reqwest client using the policy's resolver, against a real
//! HTTP server on 127.0.0.1 (the only address these tests connect to).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alert_dispatch::ssrf::{AddressPolicy, GuardedResolver, SsrfError};
use axum::Router;
use axum::extract::State;
use axum::routing::get;

/// A server on 127.0.0.1 answering `ok` and counting the requests it got.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/",
            get(|State(hits): State<Arc<AtomicUsize>>| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, hits)
}

fn client(policy: &AddressPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(policy.resolver())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn strict() -> AddressPolicy {
    AddressPolicy::default()
}

fn open() -> AddressPolicy {
    AddressPolicy {
        allow_private: true,
        allowed_ports: None,
    }
}

#[tokio::test]
async fn resolver_refuses_a_name_resolving_to_loopback() {
    let (addr, hits) = server().await;
    let url = format!("http://localhost:{}/", addr.port());

    // The static check can't know where `localhost` points: it passes.
    assert!(strict().check_url(&url).is_ok());

    let err = client(&strict()).get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let ssrf = SsrfError::find_in(&err).unwrap_or_else(|| panic!("no SsrfError in {err:?}"));
    match ssrf {
        SsrfError::Forbidden { host, addr, reason } => {
            assert_eq!(host, "localhost");
            assert!(addr.is_loopback(), "{addr}");
            assert_eq!(*reason, "loopback");
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the server must not be reached"
    );
}

#[tokio::test]
async fn allow_private_connects_to_the_resolved_address() {
    let (addr, hits) = server().await;
    let url = format!("http://localhost:{}/", addr.port());
    let resp = client(&open()).get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The connection went to the address the resolver returned (the server's).
    assert_eq!(resp.remote_addr().map(|a| a.ip()), Some(addr.ip()));
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn ports_and_resolving_check_apply_with_the_server_up() {
    let (addr, _hits) = server().await;
    let url = format!("http://localhost:{}/", addr.port());
    let only_443 = AddressPolicy {
        allow_private: true,
        allowed_ports: Some(vec![443]),
    };
    assert_eq!(only_443.check_url(&url), Err(SsrfError::Port(addr.port())));
    assert!(
        open()
            .check_url_resolving(&url, Duration::from_secs(5))
            .await
            .is_ok()
    );
    let err = strict()
        .check_url_resolving(&url, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        SsrfError::Forbidden {
            reason: "loopback",
            ..
        }
    ));
}

/// reqwest connects to IP-literal hosts without asking the resolver, which is why every URL
/// must also go through `check_url` before it is requested.
#[tokio::test]
async fn ip_literals_bypass_the_resolver_so_check_url_is_required() {
    let (addr, hits) = server().await;
    for url in [
        format!("http://127.0.0.1:{}/", addr.port()),
        format!("http://2130706433:{}/", addr.port()),
        format!("http://0x7f.1:{}/", addr.port()),
    ] {
        let err = strict().check_url(&url).unwrap_err();
        assert!(
            matches!(
                err,
                SsrfError::Forbidden {
                    reason: "loopback",
                    ..
                }
            ),
            "{url}: {err:?}"
        );
        // Without check_url, the guarded client alone would connect.
        let resp = client(&strict()).get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn check_url_resolving_names_loopback() {
    let err = strict()
        .check_url_resolving("http://localhost:1/", Duration::from_secs(5))
        .await
        .unwrap_err();
    let named = matches!(
        &err,
        SsrfError::Forbidden { host, reason: "loopback", .. } if host == "localhost"
    );
    assert!(named, "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("localhost") && msg.contains("loopback"),
        "{msg}"
    );
}

#[tokio::test]
async fn unknown_names_fail_to_resolve() {
    // `.invalid` never resolves (RFC 6761); no query leaves the machine for it on a sane resolver.
    let err = strict()
        .check_url_resolving("https://hook.invalid/", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SsrfError::Resolve(_) | SsrfError::NoAddress(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn resolver_trait_returns_only_checked_addresses() {
    use reqwest::dns::Resolve;

    let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
    let refused = strict().resolver().resolve(name()).await;
    let err = refused.err().unwrap();
    assert!(matches!(
        err.downcast_ref::<SsrfError>(),
        Some(SsrfError::Forbidden {
            reason: "loopback",
            ..
        })
    ));

    let resolver = Arc::new(GuardedResolver::new(open(), Duration::from_secs(5)));
    let addrs: Vec<SocketAddr> = resolver.resolve(name()).await.unwrap().collect();
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}
