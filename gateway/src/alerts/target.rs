//! Where a webhook may go: `https` URLs of public addresses only, checked
//! after DNS resolution, on registration and again on every attempt and
//! every redirect, so that a client cannot make the gateway call into its
//! own network (server-side request forgery): no loopback, private,
//! shared (CGNAT), link-local (which holds the cloud metadata service,
//! 169.254.169.254), unique-local (fd00:ec2::254), multicast, reserved or
//! documentation address, however a name resolves and whatever an
//! IPv4-mapped IPv6 address hides. The request then goes to the address
//! that was checked (the name is not resolved twice), so a name that
//! resolves elsewhere a moment later gains nothing.
//!
//! `--webhook-allow-loopback` lets `http` URLs and loopback addresses
//! through (tests, a receiver on the same machine); every other range
//! stays refused.

use ipnet::IpNet;
use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

/// What the gateway may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub allow_loopback: bool,
}

/// A checked target: the URL and the address to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// The address ranges no webhook may reach, and why (IANA special-purpose
/// registries, RFC 6890 and its updates).
static REFUSED: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "a \"this network\" address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("127.0.0.0/8", "a loopback address"),
        (
            "169.254.0.0/16",
            "a link-local address (cloud metadata lives there)",
        ),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible address (deprecated)"),
        ("2002::/16", "a 6to4 address"),
        ("fec0::/10", "a site-local address (deprecated)"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/23", "an IETF protocol assignment"),
        ("2001:db8::/32", "a documentation address"),
        (
            "fc00::/7",
            "a unique-local address (cloud metadata lives there)",
        ),
        ("fe80::/10", "a link-local address"),
        ("ff00::/8", "a multicast address"),
    ]
    .into_iter()
    .filter_map(|(net, why)| net.parse().ok().map(|n| (n, why)))
    .collect()
});

/// Why `ip` may not be called, if it may not.
pub fn refused(ip: IpAddr, policy: Policy) -> Option<&'static str> {
    // An IPv4 address written as IPv6 (mapped, or NAT64's well-known
    // prefix) is judged as the IPv4 address it reaches.
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                    IpAddr::V4(std::net::Ipv4Addr::new(
                        (s[6] >> 8) as u8,
                        s[6] as u8,
                        (s[7] >> 8) as u8,
                        s[7] as u8,
                    ))
                } else {
                    ip
                }
            }
        },
        v4 => v4,
    };
    if policy.allow_loopback && ip.is_loopback() {
        return None;
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Some("the broadcast address");
        }
    }
    REFUSED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, why)| *why)
}

/// Checks a URL's form: absolute, `https` (or `http` with loopback
/// allowed), a host, no user name or password.
pub fn parse(url: &str, policy: Policy) -> Result<Url, String> {
    let url = Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_loopback => {}
        other => {
            return Err(format!(
                "must be an https URL (got {other}:); webhooks carry signed data"
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(url)
}

/// Resolves a URL's host and checks every address it has (refusing the
/// URL if any is refused, so that a name cannot mix a public address with
/// a private one); the target is the first address.
pub async fn resolve(url: Url, policy: Policy) -> Result<Target, String> {
    let host = url
        .host_str()
        .ok_or("must name a host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url
        .port_or_known_default()
        .ok_or("has no port and no known default")?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| format!("names a host that does not resolve ({host})"))?
            .collect(),
    };
    let Some(&first) = addrs.first() else {
        return Err(format!("names a host with no address ({host})"));
    };
    for a in &addrs {
        if let Some(why) = refused(a.ip(), policy) {
            // The kind of address, not the address: a client must not map
            // the gateway's own network through these messages.
            tracing::debug!(%host, ip = %a.ip(), why, "webhook target refused");
            return Err(format!(
                "reaches {why}; webhooks go to public addresses only"
            ));
        }
    }
    Ok(Target {
        url,
        host,
        addr: first,
    })
}

/// [`parse`] then [`resolve`].
pub async fn check(url: &str, policy: Policy) -> Result<Target, String> {
    resolve(parse(url, policy)?, policy).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Policy = Policy {
        allow_loopback: false,
    };
    const LOCAL: Policy = Policy {
        allow_loopback: true,
    };

    #[test]
    fn private_loopback_link_local_and_metadata_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::",
            "::10.0.0.1",
            "2002:a00:1::1",
            "fec0::1",
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert!(refused(ip, STRICT).is_some(), "{ip} is refused");
        }
        for ip in ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(refused(ip, STRICT), None, "{ip} is public");
        }
        // Loopback allowed, nothing else is.
        assert_eq!(refused("127.0.0.1".parse().expect("ip"), LOCAL), None);
        assert_eq!(refused("::1".parse().expect("ip"), LOCAL), None);
        assert!(refused("169.254.169.254".parse().expect("ip"), LOCAL).is_some());
        assert!(refused("10.0.0.1".parse().expect("ip"), LOCAL).is_some());
    }

    #[test]
    fn only_https_without_credentials() {
        assert!(parse("https://example.org/hook", STRICT).is_ok());
        for bad in [
            "http://example.org/hook",
            "ftp://example.org/",
            "https://user:pw@example.org/",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(parse(bad, STRICT).is_err(), "{bad}");
        }
        assert!(parse("http://127.0.0.1:9/x", LOCAL).is_ok());
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let e = check("https://localhost/hook", STRICT)
            .await
            .expect_err("localhost is loopback");
        assert!(e.contains("loopback"), "{e}");
        let e = check("https://169.254.169.254/latest/meta-data/", STRICT)
            .await
            .expect_err("metadata");
        assert!(e.contains("link-local"), "{e}");
        let t = check("http://127.0.0.1:8080/x", LOCAL)
            .await
            .expect("allowed for tests");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().expect("addr"));
    }
}
