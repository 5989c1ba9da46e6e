//! SSRF protection for user-given webhook URLs.
//!
//! A webhook URL is user input that makes this server open connections, so without a guard
//! anyone who can create an alert can make it reach loopback services, the private network or a
//! cloud metadata endpoint. [`AddressPolicy`] refuses such destinations in two places:
//!
//! - **At alert creation**, [`AddressPolicy::check_url_resolving`] parses the URL, checks the
//!   scheme (http/https only) and port, and resolves the host, refusing it with a clear
//!   [`SsrfError`] if *any* address it resolves to is forbidden.
//! - **At every delivery**, the HTTP client uses [`AddressPolicy::resolver`] as its DNS resolver:
//!   it resolves the name once, drops forbidden addresses and hands the checked ones to reqwest,
//!   which connects to exactly those (no second lookup, so DNS rebinding between the check and
//!   the connection is not possible).
//!
//! # What the caller must still do
//!
//! reqwest does **not** call the DNS resolver when the URL's host is an IP literal
//! (`http://127.0.0.1/`, `http://[::1]/`, and the spellings the URL parser normalises to them,
//! such as `http://2130706433/` or `http://0x7f.1/`), nor does the resolver see the scheme or the
//! port. So before *each* request, run [`AddressPolicy::check_url`] on the URL (it is cheap and
//! does no DNS) and send the request with the [`url::Url`] it returns. Build the client with
//! `.no_proxy()` (with a proxy the resolver would check the proxy's address, not the target's)
//! and without following redirects.
//!
//! # Settings
//!
//! [`AddressPolicy::from_env`] reads `ALERT_WEBHOOK_ALLOW_PRIVATE` (`1`/`true`: skip the address
//! checks, for tests and self-hosted setups whose webhooks live on the local network; scheme and
//! port checks still apply) and `ALERT_WEBHOOK_ALLOWED_PORTS` (e.g. `80,443,8080`; unset or
//! empty: any port).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::{Host, Url};

/// Environment variable that lifts the address checks when `1` or `true`.
pub const ALLOW_PRIVATE_ENV: &str = "ALERT_WEBHOOK_ALLOW_PRIVATE";
/// Environment variable holding a comma-separated list of allowed ports (unset or empty: any).
pub const ALLOWED_PORTS_ENV: &str = "ALERT_WEBHOOK_ALLOWED_PORTS";
/// How long [`GuardedResolver`] waits for a lookup when built by [`AddressPolicy::resolver`].
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which webhook destinations are allowed.
///
/// The default refuses every non-public address and allows any port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Skip the address checks (loopback, private, metadata, ...). Scheme and port checks
    /// still apply.
    pub allow_private: bool,
    /// The ports a webhook URL may use (its explicit port, or 80/443 by default); `None` = any.
    pub allowed_ports: Option<Vec<u16>>,
}

/// Why a webhook URL is refused.
///
/// Messages name the host but never the whole URL: webhook URLs often carry secrets in their
/// path or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// The URL does not parse, or has no host.
    #[error("invalid webhook URL: {0}")]
    BadUrl(String),
    /// The scheme is not http or https.
    #[error("webhook URL scheme `{0}` is not allowed (only http and https)")]
    Scheme(String),
    /// The port is not in the allowed list.
    #[error("webhook port {0} is not allowed")]
    Port(u16),
    /// The host is, or resolves to, a forbidden address. The message names the address only
    /// when the URL spells it (an IP literal): which internal address a name resolves to is
    /// not the user's to learn (the kind of address is kept). `addr` keeps it for operators'
    /// logs.
    #[error("{}", forbidden_message(host, addr, reason))]
    Forbidden {
        /// The host as written in the URL (IPv6 literals in brackets).
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// Why the address is forbidden, as given by [`forbidden_reason`].
        reason: &'static str,
    },
    /// The host resolved to no address at all.
    #[error("webhook host {0} resolves to no address")]
    NoAddress(String),
    /// The lookup failed or timed out.
    #[error("could not resolve webhook host: {0}")]
    Resolve(String),
    /// A setting (environment variable) is invalid.
    #[error("invalid webhook address setting: {0}")]
    Config(String),
}

fn forbidden_message(host: &str, addr: &IpAddr, reason: &str) -> String {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok_and(|ip| ip == *addr) {
        format!("webhook host {host} is refused: {addr} is a forbidden address ({reason})")
    } else {
        format!("webhook host {host} is refused: it resolves to a non-public address ({reason})")
    }
}

impl SsrfError {
    /// Finds an `SsrfError` in an error's source chain, e.g. inside the `reqwest::Error` of a
    /// request refused by [`GuardedResolver`]. Such a failure is permanent: retrying won't help
    /// until the host's DNS changes.
    pub fn find_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a SsrfError> {
        let mut cur = Some(err);
        while let Some(e) = cur {
            if let Some(found) = e.downcast_ref::<SsrfError>() {
                return Some(found);
            }
            cur = e.source();
        }
        None
    }
}

/// Why `ip` may not be a webhook destination, or `None` if it is a public address.
///
/// IPv4: unspecified and `0.0.0.0/8`, loopback, private (RFC 1918), link-local, CGNAT
/// (`100.64.0.0/10`), `192.0.0.0/24`, documentation, benchmarking (`198.18.0.0/15`), the 6to4
/// relay anycast, multicast, reserved (`240.0.0.0/4`) and broadcast, plus cloud metadata
/// endpoints (AWS/GCP/Azure `169.254.169.254`, Alibaba `100.100.100.200`, Oracle
/// `192.0.0.192`, Azure WireServer `168.63.129.16`, which is otherwise a public address).
///
/// IPv6: unspecified, loopback, link-local, site-local, unique local (incl. AWS metadata
/// `fd00:ec2::254`), multicast, documentation, discard-only, `2001::/23` (IETF protocol
/// assignments, incl. Teredo), local-use NAT64 (`64:ff9b:1::/48`), and anything outside the
/// global unicast `2000::/3`. Forms embedding an IPv4 address are judged by that address:
/// IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48` are
/// allowed only if the embedded address is; the deprecated IPv4-compatible `::a.b.c.d` is
/// always refused.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, d] = ip.octets();
    let reason = match (a, b, c, d) {
        (0, 0, 0, 0) => "unspecified",
        (0, ..) => "this network (0.0.0.0/8)",
        (127, ..) => "loopback",
        (10, ..) | (192, 168, ..) => "private",
        (172, 16..=31, ..) => "private",
        (169, 254, 169, 254) => "cloud metadata",
        (169, 254, ..) => "link-local",
        (100, 100, 100, 200) => "cloud metadata",
        (100, 64..=127, ..) => "CGNAT (100.64.0.0/10)",
        (168, 63, 129, 16) => "cloud metadata",
        (192, 0, 0, 192) => "cloud metadata",
        (192, 0, 0, _) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2, _) | (198, 51, 100, _) | (203, 0, 113, _) => "documentation",
        (198, 18..=19, ..) => "benchmarking (198.18.0.0/15)",
        (192, 88, 99, _) => "6to4 relay anycast (192.88.99.0/24)",
        (224..=239, ..) => "multicast",
        (255, 255, 255, 255) => "broadcast",
        (240..=255, ..) => "reserved",
        _ => return None,
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded_low32 = || Ipv4Addr::from_bits(ip.to_bits() as u32);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    match s {
        // ::ffff:a.b.c.d, IPv4-mapped: a dual-stack socket connects to a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] => return v4_reason(embedded_low32()),
        // ::a.b.c.d, IPv4-compatible (deprecated by RFC 4291): nothing legitimate uses it.
        [0, 0, 0, 0, 0, 0, _, _] => {
            return Some(v4_reason(embedded_low32()).unwrap_or("IPv4-compatible (::/96)"));
        }
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix: the translator connects to a.b.c.d.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return v4_reason(embedded_low32()),
        // Local-use NAT64 (RFC 8215): translates into a local network, whatever it embeds.
        [0x64, 0xff9b, 1, ..] => return Some("local-use NAT64 (64:ff9b:1::/48)"),
        // 2002:AABB:CCDD::/48, 6to4: reaches the IPv4 host AA.BB.CC.DD.
        [0x2002, hi, lo, ..] => {
            let v4 = Ipv4Addr::from_bits((u32::from(hi) << 16) | u32::from(lo));
            return v4_reason(v4);
        }
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => return Some("cloud metadata"),
        _ => {}
    }
    let first = s[0];
    let reason = if first & 0xfe00 == 0xfc00 {
        "unique local (fc00::/7)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local (fec0::/10)"
    } else if first & 0xff00 == 0xff00 {
        "multicast"
    } else if (first == 0x2001 && s[1] == 0x0db8) || first & 0xfff0 == 0x3ff0 {
        // 2001:db8::/32 and 3fff::/20 (RFC 9637).
        "documentation"
    } else if first == 0x2001 && s[1] < 0x0200 {
        "IETF protocol assignments (2001::/23)"
    } else if first == 0x0100 && s[1..4] == [0, 0, 0] {
        "discard-only (100::/64)"
    } else if first & 0xe000 != 0x2000 {
        "reserved (outside 2000::/3)"
    } else {
        return None;
    };
    Some(reason)
}

fn config_err(var: &str, value: &str, what: &str) -> SsrfError {
    SsrfError::Config(format!("{var}={value:?}: {what}"))
}

impl AddressPolicy {
    /// The policy given by `ALERT_WEBHOOK_ALLOW_PRIVATE` (`1`, `true`, `yes`, `on` lift the
    /// address checks; `0`, `false`, `no`, `off`, empty or unset keep them) and
    /// `ALERT_WEBHOOK_ALLOWED_PORTS` (comma-separated ports, e.g. `80,443,8080`; empty or unset
    /// means any port). Any other value is an error, rather than silently falling back.
    pub fn from_env() -> Result<Self, SsrfError> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(SsrfError::Config(format!("{name} is not valid UTF-8")))
            }
        })
    }

    /// Like [`from_env`](Self::from_env), reading the variables through `get` (for settings
    /// that come from elsewhere, and for tests).
    pub fn from_lookup(
        get: impl Fn(&str) -> Result<Option<String>, SsrfError>,
    ) -> Result<Self, SsrfError> {
        let allow_private = match get(ALLOW_PRIVATE_ENV)? {
            None => false,
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => true,
                "" | "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(config_err(
                        ALLOW_PRIVATE_ENV,
                        &value,
                        "expected 1/true or 0/false",
                    ));
                }
            },
        };
        let allowed_ports = match get(ALLOWED_PORTS_ENV)? {
            None => None,
            Some(value) if value.trim().is_empty() => None,
            Some(value) => {
                let mut ports = Vec::new();
                for part in value.split(',') {
                    let part = part.trim();
                    match part.parse::<u16>() {
                        Ok(port) if port != 0 => ports.push(port),
                        _ => {
                            return Err(config_err(
                                ALLOWED_PORTS_ENV,
                                &value,
                                &format!("`{part}` is not a port (1-65535)"),
                            ));
                        }
                    }
                }
                Some(ports)
            }
        };
        Ok(Self {
            allow_private,
            allowed_ports,
        })
    }

    /// Static checks on a URL, without DNS: it parses, its scheme is http or https, it has a
    /// host, its port (explicit or the scheme's default) is allowed, and an IP-literal host is
    /// not a forbidden address (unless `allow_private`). Returns the parsed URL; send the request
    /// with it, so the checked host is the one used.
    ///
    /// The URL parser follows the WHATWG URL standard, which normalises other IPv4 spellings
    /// (`http://2130706433/`, `http://0177.0.0.1/`, `http://0x7f.1/`, `http://127.1/`) to IPv4
    /// addresses, so they are checked as such. For a domain name this checks nothing about
    /// addresses: that is [`check_url_resolving`](Self::check_url_resolving)'s and the
    /// [`resolver`](Self::resolver)'s job. Call this before every request: reqwest connects to
    /// IP-literal hosts without calling the resolver.
    pub fn check_url(&self, url: &str) -> Result<Url, SsrfError> {
        let parsed = Url::parse(url).map_err(|e| SsrfError::BadUrl(e.to_string()))?;
        let scheme = parsed.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(SsrfError::Scheme(scheme.to_owned()));
        }
        let host = parsed
            .host()
            .ok_or_else(|| SsrfError::BadUrl("the URL has no host".to_owned()))?;
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| SsrfError::BadUrl("the URL has no port".to_owned()))?;
        if let Some(allowed) = &self.allowed_ports
            && !allowed.contains(&port)
        {
            return Err(SsrfError::Port(port));
        }
        let literal = match host {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(_) => None,
        };
        if let Some(addr) = literal {
            self.check_addr(&host.to_string(), addr)?;
        }
        Ok(parsed)
    }

    /// [`check_url`](Self::check_url), then (for a domain name, unless `allow_private`) a DNS
    /// lookup bounded by `timeout`, refusing the URL if **any** resolved address is forbidden:
    /// the check at alert creation.
    ///
    /// Refusing on any (rather than all) forbidden address is deliberate: a public name that
    /// also resolves to a private address is either misconfigured or an attempt to reach the
    /// private one, and the user should hear about it now rather than see deliveries that
    /// depend on which address is tried. (At delivery, the [`resolver`](Self::resolver) drops
    /// forbidden addresses and uses the rest, which is safe since it connects only to those.)
    ///
    /// With `allow_private` there is nothing to check on the addresses, so no lookup is done.
    /// Passing this check does not make later deliveries safe by itself (the name may resolve
    /// elsewhere later): deliveries must use the resolver too.
    pub async fn check_url_resolving(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<Url, SsrfError> {
        let parsed = self.check_url(url)?;
        if self.allow_private {
            return Ok(parsed);
        }
        let Some(Host::Domain(domain)) = parsed.host() else {
            // IP literals were fully checked by check_url.
            return Ok(parsed);
        };
        let addrs = lookup(domain, timeout).await?;
        for addr in addrs {
            self.check_addr(domain, addr.ip())?;
        }
        Ok(parsed)
    }

    /// A reqwest DNS resolver enforcing this policy (with [`DEFAULT_LOOKUP_TIMEOUT`]); use it
    /// as `reqwest::ClientBuilder::dns_resolver(policy.resolver())`, with `.no_proxy()`.
    ///
    /// It resolves the name with tokio's `lookup_host`, drops forbidden addresses, and returns
    /// the remaining ones to reqwest, which connects to them: no second lookup. If every
    /// address is forbidden, the name is refused with [`SsrfError::Forbidden`] (findable in the
    /// request's error with [`SsrfError::find_in`]). reqwest does not call the resolver for
    /// IP-literal hosts: check each URL with [`check_url`](Self::check_url) too.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver::new(self.clone(), DEFAULT_LOOKUP_TIMEOUT))
    }

    fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), SsrfError> {
        if self.allow_private {
            return Ok(());
        }
        match forbidden_reason(addr) {
            Some(reason) => Err(SsrfError::Forbidden {
                host: host.to_owned(),
                addr,
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// Resolves `host` (port 0: reqwest puts in the URL's port), failing on timeout, error or an
/// empty answer.
async fn lookup(host: &str, timeout: Duration) -> Result<Vec<SocketAddr>, SsrfError> {
    let addrs = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, 0))).await {
        Err(_) => {
            return Err(SsrfError::Resolve(format!(
                "lookup of {host} timed out after {timeout:?}"
            )));
        }
        Ok(Err(e)) => return Err(SsrfError::Resolve(format!("{host}: {e}"))),
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
    };
    if addrs.is_empty() {
        return Err(SsrfError::NoAddress(host.to_owned()));
    }
    Ok(addrs)
}

/// A reqwest DNS resolver that only returns addresses its [`AddressPolicy`] allows; see
/// [`AddressPolicy::resolver`].
///
/// reqwest connects to the addresses this returns, so what was checked is what is connected
/// to. It is not called for IP-literal hosts, and it doesn't see the scheme or port: check
/// every URL with [`AddressPolicy::check_url`] as well.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    policy: AddressPolicy,
    lookup_timeout: Duration,
}

impl GuardedResolver {
    /// A resolver for `policy`, giving up on a lookup after `lookup_timeout`.
    pub fn new(policy: AddressPolicy, lookup_timeout: Duration) -> Self {
        Self {
            policy,
            lookup_timeout,
        }
    }

    /// The policy this resolver enforces.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Resolves `host` and keeps the allowed addresses (all of them with `allow_private`).
    /// Errors if the lookup fails, or if no address is left (with the first refused address's
    /// reason).
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<SocketAddr>, SsrfError> {
        let addrs = lookup(host, self.lookup_timeout).await?;
        if self.policy.allow_private {
            return Ok(addrs);
        }
        let mut first_refusal = None;
        let mut allowed = Vec::with_capacity(addrs.len());
        for addr in addrs {
            match self.policy.check_addr(host, addr.ip()) {
                Ok(()) => allowed.push(addr),
                Err(e) => {
                    tracing::warn!(
                        host,
                        addr = %addr.ip(),
                        error = %e,
                        "dropping forbidden webhook address"
                    );
                    first_refusal.get_or_insert(e);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (true, Some(refusal)) => Err(refusal),
            (true, None) => Err(SsrfError::NoAddress(host.to_owned())),
            (false, _) => Ok(allowed),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_checked(&host).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn strict() -> AddressPolicy {
        AddressPolicy::default()
    }

    #[test]
    fn public_addresses_are_allowed() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "192.0.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(forbidden_reason(ip(a)), None, "{a}");
        }
    }

    #[test]
    fn forbidden_addresses_name_their_reason() {
        let table = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network (0.0.0.0/8)"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.1.1", "link-local"),
            ("169.254.169.254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("192.0.0.192", "cloud metadata"),
            ("168.63.129.16", "cloud metadata"),
            ("100.64.0.1", "CGNAT (100.64.0.0/10)"),
            ("100.127.255.255", "CGNAT (100.64.0.0/10)"),
            ("192.0.0.8", "IETF protocol assignments (192.0.0.0/24)"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking (198.18.0.0/15)"),
            ("198.19.255.255", "benchmarking (198.18.0.0/15)"),
            ("192.88.99.1", "6to4 relay anycast (192.88.99.0/24)"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
            // IPv6
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local (fec0::/10)"),
            ("fc00::1", "unique local (fc00::/7)"),
            ("fd12:3456::1", "unique local (fc00::/7)"),
            ("fd00:ec2::254", "cloud metadata"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("100::1", "discard-only (100::/64)"),
            ("2001::1", "IETF protocol assignments (2001::/23)"),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                "IETF protocol assignments (2001::/23)",
            ),
            ("2001:1ff::1", "IETF protocol assignments (2001::/23)"),
            ("64:ff9b:1::a00:1", "local-use NAT64 (64:ff9b:1::/48)"),
            ("5f00::1", "reserved (outside 2000::/3)"),
            ("4000::1", "reserved (outside 2000::/3)"),
            ("::ffff:0:808:808", "reserved (outside 2000::/3)"),
            // IPv4 embedded in IPv6: judged by the IPv4 address.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:7f00:1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::8.8.8.8", "IPv4-compatible (::/96)"),
            ("::2", "this network (0.0.0.0/8)"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("64:ff9b::192.168.0.1", "private"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:a00:1::", "private"),
            ("2002:a9fe:a9fe:1:2:3:4:5", "cloud metadata"),
            ("2002:c0a8:101::1", "private"),
        ];
        for (a, want) in table {
            assert_eq!(forbidden_reason(ip(a)), Some(want), "{a}");
        }
    }

    #[test]
    fn ipv4_spellings_are_normalised_and_refused() {
        for (url, addr) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://127.0.0.1./", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
            ("http://017700000001/", "127.0.0.1"),
            ("http://0xA9.0xFE.0xA9.0xFE/", "169.254.169.254"),
            ("http://2852039166/latest/meta-data/", "169.254.169.254"),
            ("http://012.0.0.1:8080/", "10.0.0.1"),
            ("http://%31%32%37.0.0.1/", "127.0.0.1"),
            ("http://example.com@127.0.0.1/", "127.0.0.1"),
            ("http://user:pass@10.0.0.1:80/", "10.0.0.1"),
            ("http://127.0.0.1#@example.com/", "127.0.0.1"),
            ("http://127.0.0.1\\@example.com/", "127.0.0.1"),
            ("HTTP://LOCALHOST@127.0.0.1/", "127.0.0.1"),
            ("https://[::1]/", "::1"),
            ("http://[::]/", "::"),
            ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
            ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1"),
            ("http://[0:0:0:0:0:ffff:7f00:1]:8080/", "::ffff:127.0.0.1"),
            ("http://[::127.0.0.1]/", "::127.0.0.1"),
            ("http://[64:ff9b::10.0.0.1]/", "64:ff9b::a00:1"),
            ("http://[2002:7f00:1::]/", "2002:7f00:1::"),
            ("http://[fe80::1]/", "fe80::1"),
            ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
        ] {
            match strict().check_url(url) {
                Err(SsrfError::Forbidden { addr: got, .. }) => {
                    assert_eq!(got, ip(addr), "{url}")
                }
                other => panic!("{url}: expected Forbidden, got {other:?}"),
            }
        }
    }

    #[test]
    fn forbidden_error_is_clear() {
        let err = strict().check_url("http://0x7f.1:8080/hook").unwrap_err();
        assert_eq!(
            err,
            SsrfError::Forbidden {
                host: "127.0.0.1".into(),
                addr: ip("127.0.0.1"),
                reason: "loopback"
            }
        );
        assert_eq!(
            err.to_string(),
            "webhook host 127.0.0.1 is refused: 127.0.0.1 is a forbidden address (loopback)"
        );
        let err = strict()
            .check_url("http://[::ffff:169.254.169.254]/")
            .unwrap_err();
        assert!(err.to_string().contains("cloud metadata"), "{err}");
        assert!(err.to_string().contains("[::ffff:a9fe:a9fe]"), "{err}");
    }

    #[test]
    fn public_urls_pass() {
        for url in [
            "https://example.com/hook?token=abc",
            "http://example.com:8080/",
            "https://8.8.8.8/",
            "http://134744072/",
            "https://[2606:4700:4700::1111]/",
            "https://[::ffff:8.8.8.8]/",
            "http://127.0.0.1.nip.io/",
            "https://localhost.example.com/",
        ] {
            let parsed = strict().check_url(url);
            assert!(parsed.is_ok(), "{url}: {parsed:?}");
        }
        // The returned URL is the normalised one reqwest will use.
        let parsed = strict().check_url("http://134744072/x").unwrap();
        assert_eq!(parsed.host_str(), Some("8.8.8.8"));
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "",
            "example.com/hook",
            "http://",
            "http://[::1/",
            "http://[fe80::1%25eth0]/",
            "http://exa mple.com/",
            "http://256.0.0.1/",
            "http://0x100000000/",
            "http://1.2.3.4.5/",
            "http://example.com:99999/",
        ] {
            match strict().check_url(url) {
                Err(SsrfError::BadUrl(_)) => {}
                other => panic!("{url}: expected BadUrl, got {other:?}"),
            }
        }
    }

    #[test]
    fn only_http_and_https() {
        for (url, scheme) in [
            ("ftp://example.com/", "ftp"),
            ("file:///etc/passwd", "file"),
            ("gopher://127.0.0.1:6379/_INFO", "gopher"),
            ("ws://example.com/", "ws"),
            ("wss://example.com/", "wss"),
            ("data:text/plain,hi", "data"),
            ("javascript:alert(1)", "javascript"),
            ("dict://example.com:11211/", "dict"),
        ] {
            assert_eq!(
                strict().check_url(url),
                Err(SsrfError::Scheme(scheme.into())),
                "{url}"
            );
            // allow_private does not lift the scheme check.
            let open = AddressPolicy {
                allow_private: true,
                allowed_ports: None,
            };
            assert_eq!(open.check_url(url), Err(SsrfError::Scheme(scheme.into())));
        }
        assert!(strict().check_url("HTTPS://EXAMPLE.COM/").is_ok());
    }

    #[test]
    fn allowed_ports() {
        let policy = AddressPolicy {
            allow_private: false,
            allowed_ports: Some(vec![80, 443, 8080]),
        };
        assert!(policy.check_url("http://example.com/").is_ok());
        assert!(policy.check_url("https://example.com/").is_ok());
        assert!(policy.check_url("http://example.com:8080/").is_ok());
        assert!(policy.check_url("https://example.com:80/").is_ok());
        assert_eq!(
            policy.check_url("http://example.com:22/"),
            Err(SsrfError::Port(22))
        );
        assert_eq!(
            policy.check_url("https://example.com:8443/"),
            Err(SsrfError::Port(8443))
        );
        let https_only = AddressPolicy {
            allow_private: true,
            allowed_ports: Some(vec![443]),
        };
        assert_eq!(
            https_only.check_url("http://example.com/"),
            Err(SsrfError::Port(80))
        );
        assert_eq!(
            https_only.check_url("http://127.0.0.1:6379/"),
            Err(SsrfError::Port(6379))
        );
        // Any port by default.
        assert!(strict().check_url("http://example.com:6379/").is_ok());
        assert_eq!(
            SsrfError::Port(22).to_string(),
            "webhook port 22 is not allowed"
        );
    }

    #[test]
    fn allow_private_lifts_address_checks_only() {
        let open = AddressPolicy {
            allow_private: true,
            allowed_ports: None,
        };
        for url in [
            "http://127.0.0.1:3000/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://10.0.0.1/",
            "http://0/",
        ] {
            assert!(open.check_url(url).is_ok(), "{url}");
        }
    }

    fn lookup_from<'a>(
        vars: &'a [(&'a str, &'a str)],
    ) -> impl Fn(&str) -> Result<Option<String>, SsrfError> + 'a {
        move |name| {
            Ok(vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned()))
        }
    }

    #[test]
    fn settings() {
        assert_eq!(
            AddressPolicy::from_lookup(lookup_from(&[])),
            Ok(AddressPolicy::default())
        );
        for v in ["1", "true", "TRUE", " yes ", "on"] {
            let p = AddressPolicy::from_lookup(lookup_from(&[(ALLOW_PRIVATE_ENV, v)])).unwrap();
            assert!(p.allow_private, "{v}");
        }
        for v in ["0", "false", "", "no", "off"] {
            let p = AddressPolicy::from_lookup(lookup_from(&[(ALLOW_PRIVATE_ENV, v)])).unwrap();
            assert!(!p.allow_private, "{v}");
        }
        assert!(matches!(
            AddressPolicy::from_lookup(lookup_from(&[(ALLOW_PRIVATE_ENV, "maybe")])),
            Err(SsrfError::Config(_))
        ));
        let p = AddressPolicy::from_lookup(lookup_from(&[(ALLOWED_PORTS_ENV, "80, 443,8080")]))
            .unwrap();
        assert_eq!(p.allowed_ports, Some(vec![80, 443, 8080]));
        let p = AddressPolicy::from_lookup(lookup_from(&[(ALLOWED_PORTS_ENV, " ")])).unwrap();
        assert_eq!(p.allowed_ports, None);
        for bad in ["80,", "http", "0", "65536", "80;443", "-1"] {
            let err = AddressPolicy::from_lookup(lookup_from(&[(ALLOWED_PORTS_ENV, bad)]));
            assert!(matches!(err, Err(SsrfError::Config(_))), "{bad}: {err:?}");
        }
        // The real environment parses (whatever it holds in CI, it must not panic).
        let _ = AddressPolicy::from_env();
    }

    #[test]
    fn find_in_walks_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] SsrfError);
        let err = Outer(SsrfError::Port(1));
        assert_eq!(SsrfError::find_in(&err), Some(&SsrfError::Port(1)));
        let plain = std::io::Error::other("x");
        assert_eq!(SsrfError::find_in(&plain), None);
    }

    #[tokio::test]
    async fn resolving_check_refuses_localhost() {
        let err = strict()
            .check_url_resolving("http://localhost:1/", Duration::from_secs(5))
            .await
            .unwrap_err();
        match &err {
            SsrfError::Forbidden { host, reason, .. } => {
                assert_eq!(host, "localhost");
                assert_eq!(*reason, "loopback");
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
        // IP literals need no lookup and are refused the same way.
        let err = strict()
            .check_url_resolving("http://[::ffff:7f00:1]/", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            SsrfError::Forbidden {
                reason: "loopback",
                ..
            }
        ));
        // With allow_private nothing is looked up.
        let open = AddressPolicy {
            allow_private: true,
            allowed_ports: None,
        };
        assert!(
            open.check_url_resolving("http://localhost:1/", Duration::from_secs(5))
                .await
                .is_ok()
        );
        assert!(
            open.check_url_resolving("http://no-such-host.invalid/", Duration::from_secs(5))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn guarded_resolver_filters() {
        let refused = GuardedResolver::new(strict(), Duration::from_secs(5))
            .resolve_checked("localhost")
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            SsrfError::Forbidden {
                reason: "loopback",
                ..
            }
        ));
        let open = AddressPolicy {
            allow_private: true,
            allowed_ports: None,
        };
        let addrs = GuardedResolver::new(open, Duration::from_secs(5))
            .resolve_checked("localhost")
            .await
            .unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    fn mapped(v4: Ipv4Addr) -> IpAddr {
        IpAddr::V6(v4.to_ipv6_mapped())
    }

    fn nat64(v4: Ipv4Addr) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from_bits(
            (0x64_ff9b_u128 << 96) | u128::from(v4.to_bits()),
        ))
    }

    fn six_to_four(v4: Ipv4Addr, rest: u128) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from_bits(
            (0x2002_u128 << 112) | (u128::from(v4.to_bits()) << 80) | (rest & ((1 << 80) - 1)),
        ))
    }

    fn private_v4() -> impl Strategy<Value = (Ipv4Addr, &'static str)> {
        prop_oneof![
            any::<u32>().prop_map(|x| (
                Ipv4Addr::from_bits(0x0a00_0000 | (x & 0x00ff_ffff)),
                "private"
            )),
            any::<u32>().prop_map(|x| (
                Ipv4Addr::from_bits(0xac10_0000 | (x & 0x000f_ffff)),
                "private"
            )),
            any::<u32>().prop_map(|x| (
                Ipv4Addr::from_bits(0xc0a8_0000 | (x & 0x0000_ffff)),
                "private"
            )),
            any::<u32>().prop_map(|x| (
                Ipv4Addr::from_bits(0x7f00_0000 | (x & 0x00ff_ffff)),
                "loopback"
            )),
        ]
    }

    proptest! {
        #[test]
        fn private_and_loopback_v4_refused_in_every_form(
            (v4, reason) in private_v4(),
            rest in any::<u128>(),
        ) {
            prop_assert_eq!(forbidden_reason(IpAddr::V4(v4)), Some(reason));
            prop_assert_eq!(forbidden_reason(mapped(v4)), Some(reason));
            prop_assert_eq!(forbidden_reason(nat64(v4)), Some(reason));
            prop_assert_eq!(forbidden_reason(six_to_four(v4, rest)), Some(reason));
            prop_assert_eq!(forbidden_reason(IpAddr::V6(v4.to_ipv6_compatible())), Some(reason));
            let url = format!("http://{v4}/");
            let refused = matches!(strict().check_url(&url), Err(SsrfError::Forbidden { .. }));
            prop_assert!(refused);
            let url = format!("http://[{}]/", v4.to_ipv6_mapped());
            let refused = matches!(strict().check_url(&url), Err(SsrfError::Forbidden { .. }));
            prop_assert!(refused);
            let url = format!("http://{}/", v4.to_bits());
            let refused = matches!(strict().check_url(&url), Err(SsrfError::Forbidden { .. }));
            prop_assert!(refused);
        }

        #[test]
        fn embedded_forms_agree_with_plain_v4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from_bits(bits);
            let plain = forbidden_reason(IpAddr::V4(v4));
            prop_assert_eq!(forbidden_reason(mapped(v4)), plain);
            prop_assert_eq!(forbidden_reason(nat64(v4)), plain);
            prop_assert_eq!(forbidden_reason(six_to_four(v4, 1)), plain);
            // IPv4-compatible is refused whatever it embeds (except :: and ::1 have own names).
            prop_assert!(forbidden_reason(IpAddr::V6(v4.to_ipv6_compatible())).is_some());
        }

        #[test]
        fn anything_outside_2000_slash_3_is_refused(bits in any::<u128>()) {
            let v6 = Ipv6Addr::from_bits(bits);
            let s = v6.segments();
            let embeds_v4 = s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff)
                || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            if s[0] & 0xe000 != 0x2000 && !embeds_v4 {
                prop_assert!(forbidden_reason(IpAddr::V6(v6)).is_some());
            }
        }
    }
}
