//! What an API request passes before its handler runs: who is asking (an
//! API key, or the address it came from) and whether that client's budget
//! allows one more request. The handler gets the [`Caller`] as a request
//! extension; the response gets the `RateLimit` headers.
//!
//! | route                      | budget    | key (`--auth required`) |
//! |----------------------------|-----------|-------------------------|
//! | `POST /api/query`          | `submits` | required                |
//! | `GET /api/latest`          | `submits` | required                |
//! | `GET /api/results/{id}`    | `polls`   | required                |
//! | `GET /api/meta`, `/metrics` | `polls`  | optional                |
//! | `/healthz`, `/readyz`, the web page and its files | none | no |
//!
//! A key is read from `X-API-Key`, or from `Authorization: Bearer`; both
//! at once must agree. A key in the URL's query string is refused (`400`):
//! URLs end up in proxy logs and browser histories. Refusals are logged at
//! most once per [`LOG_EVERY`] per kind, with how many were not logged,
//! naming the client (a key's public id, or an address), never a key.

use crate::config::{AuthMode, Config};
use crate::error::ApiError;
use crate::rate_limit::{Kind, RateLimits, Standing};
use crate::state::AppState;
use crate::tiers::{Tier, Tiers};
use airq_core::keys::{parse_presented, Budget, KeyHash, KeyRecord, KeyStore};
use airq_core::ClientId;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one log line per this interval for each kind of refusal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
/// Keys remembered at once (found or not).
const KEY_CACHE_ENTRIES: u64 = 10_000;
/// Store lookups of keys not seen lately, per address: far more than the
/// keys one address has in use, and few enough that a flood of made-up
/// keys cannot become a flood of store reads.
const KEY_LOOKUPS_PER_MINUTE: u32 = 60;

/// Who a request is from, for its handler.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: ClientId,
    /// Its limits: its tier's, with a key's own over them.
    pub tier: Arc<Tier>,
}

pub struct Admission {
    auth: AuthMode,
    tiers: Tiers,
    trusted: Vec<IpNet>,
    limits: RateLimits,
    keys: KeyCache,
    auth_refusals: Sampled,
    rate_refusals: Sampled,
    unknown_tiers: Sampled,
}

impl Admission {
    pub fn new(config: &Config, keys: Arc<dyn KeyStore>) -> Admission {
        Admission {
            auth: config.auth,
            tiers: Tiers::new(&config.tiers),
            trusted: config.trusted_proxies.clone(),
            limits: RateLimits::new(config.max_tracked_clients),
            keys: KeyCache::new(keys, config.key_cache_ttl),
            auth_refusals: Sampled::default(),
            rate_refusals: Sampled::default(),
            unknown_tiers: Sampled::default(),
        }
    }

    /// The tiers, for the log at start.
    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    /// Identifies the caller and spends one request of its budget.
    async fn admit(
        &self,
        route: Route,
        headers: &HeaderMap,
        uri: &Uri,
        peer: Option<IpAddr>,
    ) -> Result<(Caller, Option<Standing>), ApiError> {
        let address = ClientId::address(client_address(&self.trusted, peer, headers));
        if key_in_url(uri) {
            self.auth_refusals.log(
                |skipped| tracing::info!(client = %address, skipped, "refused a key in a URL"),
            );
            return Err(ApiError::KeyInUrl);
        }
        let caller = self
            .identify(route, headers, address)
            .await
            .inspect_err(|e| {
                if let ApiError::Unauthorized(why) = e {
                    self.auth_refusals.log(|skipped| {
                        tracing::info!(client = %address, reason = %why, skipped, "refused a request: 401")
                    });
                }
            })?;
        let budget = budget(&caller.tier, route.kind);
        let standing = self.limits.spend(caller.client, route.kind, budget).await;
        if let Some(s) = standing.as_ref().filter(|s| s.denied.is_some()) {
            self.rate_refusals.log(|skipped| {
                tracing::info!(client = %caller.client, tier = %caller.tier.name,
                    budget = %s.budget, kind = s.kind.name(), skipped, "refused a request: 429")
            });
            return Err(ApiError::RateLimited {
                standing: s.clone(),
                tier: caller.tier.name.clone(),
            });
        }
        Ok((caller, standing))
    }

    async fn identify(
        &self,
        route: Route,
        headers: &HeaderMap,
        address: ClientId,
    ) -> Result<Caller, ApiError> {
        let presented = match self.auth {
            AuthMode::Off => None,
            AuthMode::Optional | AuthMode::Required => presented_key(headers)?,
        };
        let Some(hash) = presented else {
            if self.auth == AuthMode::Required && route.needs_key {
                return Err(ApiError::Unauthorized(
                    "this service needs an API key: send it in the X-API-Key header".into(),
                ));
            }
            return Ok(Caller {
                client: address,
                tier: self.tiers.anonymous(),
            });
        };
        let record = match self.keys.cached(&hash).await {
            Some(known) => known,
            None => {
                // A key not looked up lately costs one of its address's
                // key lookups first (see KEY_LOOKUPS_PER_MINUTE).
                let budget = Budget::rate(KEY_LOOKUPS_PER_MINUTE, Duration::from_secs(60))
                    .unwrap_or(Budget::Off);
                if let Some(s) = self.limits.spend(address, Kind::KeyLookups, budget).await {
                    if s.denied.is_some() {
                        return Err(ApiError::RateLimited {
                            standing: s,
                            tier: self.tiers.anonymous().name.clone(),
                        });
                    }
                }
                self.keys
                    .load(hash)
                    .await
                    .map_err(ApiError::unavailable("key store unavailable"))?
            }
        };
        let Some(record) = record else {
            return Err(ApiError::Unauthorized("unknown API key".into()));
        };
        if let Some(at) = record.revoked_at {
            return Err(ApiError::Unauthorized(format!(
                "this API key was revoked at {at} UTC"
            )));
        }
        let (tier, defined) = self.tiers.get(&record.tier);
        if !defined {
            self.unknown_tiers.log(|skipped| {
                tracing::warn!(key = %record.id, tier = %record.tier, skipped,
                    "a key names a tier this gateway does not define (--tier); limiting it as standard")
            });
        }
        let tier = if record.limits.is_empty() {
            tier
        } else {
            Arc::new(tier.with(&record.limits))
        };
        Ok(Caller {
            client: ClientId::Key(record.id),
            tier,
        })
    }
}

/// The address a request is from: the connection's peer, or, when the
/// peer is a trusted proxy, the nearest address in `X-Forwarded-For` that
/// is not one (read from the right: proxies append, so only the entries
/// our own proxies added can be believed).
fn client_address(trusted: &[IpNet], peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
    let Some(peer) = peer else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut nearest = peer;
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => nearest = ip,
            Ok(ip) => return ip,
            // Garbage: believe nothing further left.
            Err(_) => break,
        }
    }
    nearest
}

fn budget(tier: &Tier, kind: Kind) -> Budget {
    match kind {
        Kind::Submits => tier.submits,
        Kind::Polls => tier.polls,
        Kind::KeyLookups => Budget::Off,
    }
}

/// An API route's budget, and whether `--auth required` needs a key on it.
#[derive(Debug, Clone, Copy)]
struct Route {
    kind: Kind,
    needs_key: bool,
}

fn route_of(method: &Method, path: &str) -> Option<Route> {
    match (method, path) {
        // The latest readings are a read of the reading store like a
        // direct query, and hand out the same data: the same budget, and
        // the same need for a key.
        (&Method::POST, "/api/query")
        | (&Method::GET | &Method::HEAD, "/api/latest" | "/api/stream/latest") => Some(Route {
            kind: Kind::Submits,
            needs_key: true,
        }),
        (&Method::GET | &Method::HEAD, "/api/meta" | "/metrics") => Some(Route {
            kind: Kind::Polls,
            needs_key: false,
        }),
        // Creating an alert costs what a query does; reading or deleting
        // one, what a poll does. Alerts always need a key (the handler
        // says so); `needs_key` is what `--auth required` adds.
        (&Method::POST, "/api/alerts") => Some(Route {
            kind: Kind::Submits,
            needs_key: true,
        }),
        (&Method::GET | &Method::HEAD | &Method::DELETE, p) if p.starts_with("/api/alerts/") => {
            Some(Route {
                kind: Kind::Polls,
                needs_key: true,
            })
        }
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/api/results/") => Some(Route {
            kind: Kind::Polls,
            needs_key: true,
        }),
        _ => None,
    }
}

/// The middleware: admits the request (see the module documentation) or
/// answers `400`/`401`/`429`/`503` itself.
pub async fn admit(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(route) = route_of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let admitted = app
        .admission
        .admit(route, request.headers(), request.uri(), peer)
        .await;
    match admitted {
        Ok((caller, standing)) => {
            request.extensions_mut().insert(caller);
            let mut response = next.run(request).await;
            if let Some(s) = standing {
                response.headers_mut().extend(s.headers());
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// The key a request presents, if any, as its hash; `401` for one that
/// cannot be a key (the message says why, never what was sent).
fn presented_key(headers: &HeaderMap) -> Result<Option<KeyHash>, ApiError> {
    let refuse = |why: &str| ApiError::Unauthorized(why.to_owned());
    let mut sent = headers.get_all("x-api-key").iter();
    let from_header = match (sent.next(), sent.next()) {
        (None, _) => None,
        (Some(v), None) => Some(
            v.to_str()
                .map_err(|_| refuse("the X-API-Key header is not ASCII text"))?,
        ),
        (Some(_), Some(_)) => return Err(refuse("send one X-API-Key header, not several")),
    };
    let bearer = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| refuse("the Authorization header is not ASCII text"))?
                .trim();
            let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(refuse(
                    "the Authorization header must be `Bearer <key>` (or send X-API-Key)",
                ));
            }
            Some(token.trim())
        }
    };
    let key = match (from_header, bearer) {
        (None, None) => return Ok(None),
        (Some(a), Some(b)) if a.trim() != b => {
            return Err(refuse("X-API-Key and Authorization carry different keys"))
        }
        (Some(k), _) | (None, Some(k)) => k,
    };
    parse_presented(key)
        .map(Some)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))
}

/// Query-string parameter names that carry keys in other services' APIs.
const KEY_PARAMS: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "key",
    "token",
    "access_token",
];

/// Whether the URL's query string carries what looks like a key: a
/// parameter named like one, or anything that reads `airq_` (every key's
/// prefix) once decoded as a browser encodes it (`+`, `%XX`, however many
/// times over: `%2561` is `%61` is `a`).
fn key_in_url(uri: &Uri) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    form_urlencoded::parse(query.as_bytes()).any(|(name, value)| {
        KEY_PARAMS.contains(&name.to_ascii_lowercase().as_str())
            || looks_like_a_key(&name)
            || looks_like_a_key(&value)
    }) || looks_like_a_key(query)
}

/// How many rounds of percent-decoding [`looks_like_a_key`] undoes: more
/// than any client encodes by accident, and each round is one pass over a
/// URL hyper has already bounded (`--max-header-bytes`).
const DECODE_ROUNDS: usize = 4;

/// Whether `text` contains a key's prefix, `airq_` in any case, as is or
/// after percent-decoding. Also used to keep such paths out of the log.
pub fn looks_like_a_key(text: &str) -> bool {
    let mut text = std::borrow::Cow::Borrowed(text);
    for _ in 0..DECODE_ROUNDS {
        if text.to_ascii_lowercase().contains("airq_") {
            return true;
        }
        if !text.contains('%') {
            return false;
        }
        let decoded = percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == *text {
            return false;
        }
        text = std::borrow::Cow::Owned(decoded);
    }
    text.to_ascii_lowercase().contains("airq_")
}

/// Keys looked up lately, found or not, so that a request with a key
/// costs a store read at most once per `--key-cache-ttl` per key.
struct KeyCache {
    store: Arc<dyn KeyStore>,
    known: moka::future::Cache<KeyHash, Option<Arc<KeyRecord>>>,
}

impl KeyCache {
    fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> KeyCache {
        KeyCache {
            store,
            known: moka::future::Cache::builder()
                .max_capacity(KEY_CACHE_ENTRIES)
                .time_to_live(ttl)
                .build(),
        }
    }

    async fn cached(&self, hash: &KeyHash) -> Option<Option<Arc<KeyRecord>>> {
        self.known.get(hash).await
    }

    async fn load(&self, hash: KeyHash) -> Result<Option<Arc<KeyRecord>>, airq_core::BackendError> {
        let found = self.store.find(&hash).await?.map(Arc::new);
        self.known.insert(hash, found.clone()).await;
        Ok(found)
    }
}

/// Lets a log line through at most once per [`LOG_EVERY`], counting the
/// ones it holds back.
#[derive(Default)]
struct Sampled {
    last: Mutex<Option<Instant>>,
    skipped: AtomicU64,
}

impl Sampled {
    /// Calls `log` with the number held back since the last line, if due.
    fn log(&self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        let due = match self.last.lock() {
            Ok(mut last) => match *last {
                Some(t) if now.duration_since(t) < LOG_EVERY => false,
                _ => {
                    *last = Some(now);
                    true
                }
            },
            Err(_) => false,
        };
        if due {
            log(self.skipped.swap(0, Ordering::Relaxed));
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn key() -> String {
        format!("airq_{}", "ab".repeat(32))
    }

    #[test]
    fn keys_come_from_either_header() {
        assert_eq!(presented_key(&HeaderMap::new()).unwrap(), None);
        let k = key();
        let a = presented_key(&headers(&[("x-api-key", &k)])).unwrap();
        let b = presented_key(&headers(&[("authorization", &format!("Bearer {k}"))])).unwrap();
        let both = presented_key(&headers(&[
            ("x-api-key", &k),
            ("authorization", &format!("bearer {k}")),
        ]))
        .unwrap();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(a, both);
    }

    #[test]
    fn bad_keys_are_refused_without_repeating_them() {
        let other = format!("airq_{}", "cd".repeat(32));
        for (h, says) in [
            (headers(&[("x-api-key", "")]), "empty"),
            (
                headers(&[("x-api-key", &"s".repeat(5000))]),
                "5000 characters",
            ),
            (
                headers(&[("x-api-key", "airq_secretsecret")]),
                "characters long",
            ),
            (
                headers(&[("x-api-key", &key()), ("x-api-key", &key())]),
                "one X-API-Key",
            ),
            (
                headers(&[("authorization", "Basic dXNlcjpwYXNz")]),
                "Bearer",
            ),
            (
                headers(&[
                    ("x-api-key", &key()),
                    ("authorization", &format!("Bearer {other}")),
                ]),
                "different keys",
            ),
        ] {
            match presented_key(&h) {
                Err(ApiError::Unauthorized(why)) => {
                    assert!(why.contains(says), "{why}");
                    assert!(!why.contains("secret") && !why.contains("sss"), "{why}");
                }
                other => panic!("{says}: {other:?}"),
            }
        }
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_bytes(b"airq_\xff").unwrap());
        assert!(matches!(presented_key(&h), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn keys_in_urls_are_spotted() {
        for yes in [
            "/api/results/x?api_key=1",
            "/api/meta?a=1&KEY=2",
            "/api/query?x=airq_0123",
            "/api/query?access_token=t",
            // Percent-encoded forms, as the red-team pass sent them.
            "/api/query?x=airq%5F0123",
            "/api/query?x=%61irq_0123",
            "/api/query?x=%2561irq%255F0123",
            "/api/query?api%5Fkey=1",
            "/api/query?API%5fKEY=1",
            "/api/query?%6Bey=1",
            "/api/query?x=AIRQ_0123",
        ] {
            assert!(key_in_url(&yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "/api/results/x",
            "/api/meta?pretty=1",
            "/api/query?monkey=1",
            "/api/query?x=air%20q_",
            "/api/query?x=%ZZ",
        ] {
            assert!(!key_in_url(&no.parse().unwrap()), "{no}");
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let fwd = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.1.1.1")]);
        // From the internet, the header is the client's own say: ignored.
        assert_eq!(
            client_address(&trusted, Some(ip("192.0.2.9")), &fwd),
            ip("192.0.2.9")
        );
        // From our proxy: the nearest address it did not add.
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.2")), &fwd),
            ip("203.0.113.5")
        );
        let split = headers(&[
            ("x-forwarded-for", "203.0.113.5"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.2")), &split),
            ip("203.0.113.5")
        );
        let garbage = headers(&[("x-forwarded-for", "203.0.113.5, nonsense, 10.1.1.1")]);
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.2")), &garbage),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_address(&trusted, Some(ip("10.0.0.2")), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(&[], Some(ip("10.0.0.2")), &fwd),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn routes_and_their_budgets() {
        let r = route_of(&Method::POST, "/api/query").unwrap();
        assert!(r.kind == Kind::Submits && r.needs_key);
        let r = route_of(&Method::GET, "/api/results/abc").unwrap();
        assert!(r.kind == Kind::Polls && r.needs_key);
        let r = route_of(&Method::GET, "/api/latest").unwrap();
        assert!(r.kind == Kind::Submits && r.needs_key);
        let r = route_of(&Method::GET, "/api/meta").unwrap();
        assert!(r.kind == Kind::Polls && !r.needs_key);
        for (m, p) in [
            (Method::GET, "/healthz"),
            (Method::GET, "/readyz"),
            (Method::GET, "/"),
            (Method::GET, "/assets/app.js"),
            (Method::GET, "/api/query"),
        ] {
            assert!(route_of(&m, p).is_none(), "{m} {p}");
        }
    }
}
