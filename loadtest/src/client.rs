//! A lean HTTP/1.1 client for one target: keep-alive connections in a
//! small pool, one request per connection at a time, every exchange bounded
//! in time. Built on hyper's connection API directly, so a request costs a
//! write and a read and no URL parsing, redirects, cookies or proxies.
//!
//! Only `http://` targets, and by default only loopback addresses: the
//! generator sends traffic nowhere but where it is told, and refuses
//! anything beyond this machine unless `--allow-remote` says so.
//!
//! With an [`ApiKey`], every request carries it as `X-API-Key`. The key is
//! never printed: not by `Debug`, not in errors, not in reports.

use crate::stats::ErrorKind;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Bytes of an unexpected answer's body kept for the log.
const KEEP_BODY: usize = 512;

/// The header an [`ApiKey`] is sent in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// An API key to present on every request, as a header value marked
/// sensitive. Its `Debug` form and its errors never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(HeaderValue);

/// Why a key was refused (without repeating it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyError {
    Empty,
    Characters,
}

impl fmt::Display for ApiKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiKeyError::Empty => "the API key is empty",
            ApiKeyError::Characters => {
                "the API key has characters a header cannot carry (spaces, control or non-ASCII \
                 characters)"
            }
        })
    }
}

impl std::error::Error for ApiKeyError {}

impl ApiKey {
    /// `key` without surrounding whitespace, if it is printable ASCII.
    pub fn new(key: &str) -> Result<ApiKey, ApiKeyError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(ApiKeyError::Empty);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiKeyError::Characters);
        }
        let mut value = HeaderValue::from_str(key).map_err(|_| ApiKeyError::Characters)?;
        value.set_sensitive(true);
        Ok(ApiKey(value))
    }

    /// The header value to send.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// `http://host:port` as given, without a trailing slash.
    pub base: String,
    /// A path prefix from the URL (usually empty).
    pub prefix: String,
}

impl Target {
    /// Resolves `url` (`http://HOST[:PORT][/PREFIX]`).
    pub async fn resolve(url: &str, allow_remote: bool) -> anyhow::Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL such as http://127.0.0.1:8080"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("only http:// targets are supported, not {other}://"),
            None => bail!("{url:?} has no scheme; use http://HOST:PORT"),
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{url:?} has no host"))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} has no address"))?;
        if !addr.ip().is_loopback() && !allow_remote {
            bail!(
                "{url} resolves to {}, which is not a loopback address; load tests target this \
                 machine only unless --allow-remote is given",
                addr.ip()
            );
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str())
                .context("the host is not a valid header")?,
            base: format!("http://{authority}"),
            prefix,
        })
    }

    /// `prefix + path` as a request URI.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        format!("{}{path}", self.prefix)
            .parse()
            .with_context(|| format!("{path:?} is not a valid path"))
    }

    /// The path of a `Location` answer, if it points at this target.
    pub fn same_origin_path(&self, location: &str) -> Option<String> {
        if location.starts_with('/') {
            return Some(location.to_owned());
        }
        let rest = location.strip_prefix(&self.base)?;
        rest.starts_with('/').then(|| rest.to_owned())
    }
}

/// What came back from one exchange.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    /// `X-Airq-Answer`.
    pub answer: Option<String>,
    pub retry_after: Option<u64>,
    /// The body is an answer: its `Content-Type` is one of the answer
    /// formats (CSV, NDJSON, GeoJSON), not a status document.
    pub is_answer: bool,
    /// Body length as received.
    pub body_len: u64,
    /// The first bytes of a non-2xx body, for the log.
    pub body_head: Option<Bytes>,
}

/// A request to send.
pub struct Outgoing<'a> {
    pub method: Method,
    pub uri: Uri,
    pub body: Option<Bytes>,
    pub headers: &'a [(&'static str, &'static str)],
}

pub struct Client {
    target: Target,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    connect_timeout: Duration,
    request_timeout: Duration,
    api_key: Option<ApiKey>,
    /// Sends `Accept-Encoding: gzip` ([`Client::with_gzip`]).
    gzip: bool,
}

impl Client {
    pub fn new(target: Target, connect_timeout: Duration, request_timeout: Duration) -> Client {
        Client {
            target,
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            request_timeout,
            api_key: None,
            gzip: false,
        }
    }

    /// Asks for gzipped answers on every request (`Accept-Encoding: gzip`).
    pub fn with_gzip(mut self, gzip: bool) -> Client {
        self.gzip = gzip;
        self
    }

    /// Whether it asks for gzipped answers ([`Client::with_gzip`]).
    pub fn asks_gzip(&self) -> bool {
        self.gzip
    }

    /// Sends `key` (if any) as `X-API-Key` on every request.
    pub fn with_api_key(mut self, key: Option<ApiKey>) -> Client {
        self.api_key = key;
        self
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn pop_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        self.idle.lock().ok()?.pop()
    }

    fn push_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(sender);
        }
    }

    /// Closes every idle connection.
    pub fn close_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(self.target.addr),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "connect failed");
                return Err(ErrorKind::Connect);
            }
            Err(_) => return Err(ErrorKind::Connect),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| {
            tracing::debug!(error = %e, "handshake failed");
            ErrorKind::Connect
        })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended");
            }
        });
        Ok(sender)
    }

    /// An idle connection ready for a request, or a new one.
    async fn checkout(&self) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
        while let Some(mut s) = self.pop_idle() {
            if s.is_closed() {
                continue;
            }
            if s.is_ready() || s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let mut s = self.connect().await?;
        s.ready().await.map_err(|_| ErrorKind::Connect)?;
        Ok(s)
    }

    /// Sends one request and reads the whole answer, within the request
    /// timeout. The body is counted, not kept (except the start of an
    /// error's body).
    pub async fn exchange(&self, out: Outgoing<'_>) -> Result<Reply, ErrorKind> {
        let mut sender = match tokio::time::timeout(self.request_timeout, self.checkout()).await {
            Ok(r) => r?,
            Err(_) => return Err(ErrorKind::Timeout),
        };
        let mut builder = Request::builder()
            .method(out.method)
            .uri(out.uri)
            .header(HOST, self.target.host.clone());
        if out.body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = &self.api_key {
            builder = builder.header(API_KEY_HEADER, key.header().clone());
        }
        if self.gzip {
            builder = builder.header(ACCEPT_ENCODING, "gzip");
        }
        for (k, v) in out.headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(out.body.unwrap_or_default()))
            .map_err(|_| ErrorKind::Protocol)?;

        let work = async {
            let response = sender.send_request(request).await.map_err(classify)?;
            let status = response.status().as_u16();
            let h = response.headers();
            let text = |v: &HeaderValue| v.to_str().ok().map(str::to_owned);
            let mut reply = Reply {
                status,
                location: h.get(LOCATION).and_then(text),
                answer: h.get("x-airq-answer").and_then(text),
                retry_after: h
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
                is_answer: h
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| {
                        ["text/csv", "application/x-ndjson", "application/geo+json"]
                            .iter()
                            .any(|t| v.starts_with(t))
                    }),
                ..Reply::default()
            };
            let keep = !(200..300).contains(&status);
            let mut head = Vec::new();
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(classify)?;
                if let Some(data) = frame.data_ref() {
                    reply.body_len += data.len() as u64;
                    if keep && head.len() < KEEP_BODY {
                        let n = (KEEP_BODY - head.len()).min(data.len());
                        head.extend_from_slice(&data[..n]);
                    }
                }
            }
            if keep {
                reply.body_head = Some(Bytes::from(head));
            }
            Ok::<_, ErrorKind>(reply)
        };
        match tokio::time::timeout(self.request_timeout, work).await {
            Ok(Ok(reply)) => {
                self.push_idle(sender);
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            // The connection is dropped with `sender`: it may still carry
            // the late answer.
            Err(_) => Err(ErrorKind::Timeout),
        }
    }
}

impl Client {
    /// GETs `path` and returns the status and the whole body (for small
    /// documents such as `/api/meta`; not for measured requests).
    pub async fn fetch(&self, path: &str) -> anyhow::Result<(u16, Bytes)> {
        let uri = self.target.uri(path)?;
        let work = async {
            let mut sender = self
                .checkout()
                .await
                .map_err(|e| anyhow::anyhow!("{e} error"))?;
            let mut request = Request::get(uri).header(HOST, self.target.host.clone());
            if let Some(key) = &self.api_key {
                request = request.header(API_KEY_HEADER, key.header().clone());
            }
            let request = request.body(Full::new(Bytes::new()))?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            self.push_idle(sender);
            Ok::<_, anyhow::Error>((status, body))
        };
        tokio::time::timeout(self.request_timeout, work)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {:?}", self.request_timeout))?
            .with_context(|| format!("GET {}{path}", self.target.base))
    }
}

fn classify(e: hyper::Error) -> ErrorKind {
    tracing::debug!(error = %e, "exchange failed");
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_parse() || e.is_user() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_loopback_unless_allowed() {
        let t = Target::resolve("http://127.0.0.1:9/", false).await.unwrap();
        assert_eq!(t.base, "http://127.0.0.1:9");
        assert_eq!(t.prefix, "");
        assert_eq!(t.uri("/healthz").unwrap(), "/healthz");
        assert_eq!(
            t.same_origin_path("/api/results/x").as_deref(),
            Some("/api/results/x")
        );
        assert_eq!(
            t.same_origin_path("http://127.0.0.1:9/api/results/x")
                .as_deref(),
            Some("/api/results/x")
        );
        assert_eq!(t.same_origin_path("http://example.org/api/results/x"), None);
        assert!(Target::resolve("http://[::1]:9", false).await.is_ok());
        assert!(Target::resolve("http://192.0.2.1:80", false).await.is_err());
        assert!(Target::resolve("https://127.0.0.1:9", false).await.is_err());
        assert!(Target::resolve("127.0.0.1:9", false).await.is_err());
        let p = Target::resolve("http://127.0.0.1:9/airq/", false)
            .await
            .unwrap();
        assert_eq!(p.uri("/healthz").unwrap(), "/airq/healthz");
    }

    /// A server answering `200 ok` to every request on every connection,
    /// sending the head of each request it receives to the channel.
    async fn recording_server() -> (Target, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Bodies here are small JSON documents sent with
                        // the head; the test needs only the head.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if buf.len() < end + 4 + len {
                                break;
                            }
                            buf.drain(..end + 4 + len);
                            let _ = tx.send(head);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if conn.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (Target::resolve(&url, false).await.unwrap(), rx)
    }

    /// The value of header `name` in a request head, if present.
    fn header_in(head: &str, name: &str) -> Option<String> {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    #[tokio::test]
    async fn a_configured_api_key_is_sent_on_every_request() {
        let (target, mut heads) = recording_server().await;
        let key = format!("airq_{}", "0123456789abcdef".repeat(4));
        let c = Client::new(
            target.clone(),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .with_api_key(Some(ApiKey::new(&format!(" {key}\n")).unwrap()));
        // A submit, a poll or download, and the /api/meta fetch.
        let submit = c
            .exchange(Outgoing {
                method: Method::POST,
                uri: Uri::from_static("/api/query"),
                body: Some(Bytes::from_static(b"{}")),
                headers: &[("prefer", "respond-async")],
            })
            .await
            .unwrap();
        assert_eq!(submit.status, 200);
        let poll = c
            .exchange(Outgoing {
                method: Method::GET,
                uri: Uri::from_static("/api/results/x"),
                body: None,
                headers: &[],
            })
            .await
            .unwrap();
        assert_eq!(poll.status, 200);
        assert_eq!(c.fetch("/api/meta").await.unwrap().0, 200);
        for path in ["POST /api/query ", "GET /api/results/x ", "GET /api/meta "] {
            let head = heads.recv().await.unwrap();
            assert!(head.starts_with(path), "{head}");
            assert_eq!(
                header_in(&head, API_KEY_HEADER).as_deref(),
                Some(key.as_str()),
                "{head}"
            );
        }

        // Without a key, no header.
        let c = Client::new(target, Duration::from_secs(5), Duration::from_secs(5));
        c.fetch("/api/meta").await.unwrap();
        let head = heads.recv().await.unwrap();
        assert_eq!(header_in(&head, API_KEY_HEADER), None, "{head}");
    }

    #[test]
    fn api_keys_are_never_shown() {
        let key = ApiKey::new("airq_s3cret").unwrap();
        assert!(key.header().is_sensitive());
        assert!(!format!("{key:?}").contains("s3cret"));
        assert_eq!(ApiKey::new("  "), Err(ApiKeyError::Empty));
        let e = ApiKey::new("airq_s3cret with space").unwrap_err();
        assert_eq!(e, ApiKeyError::Characters);
        assert!(!e.to_string().contains("s3cret"));
        assert_eq!(ApiKey::new("airq_é"), Err(ApiKeyError::Characters));
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error() {
        // Bind and drop a listener to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Target::resolve(&format!("http://127.0.0.1:{port}"), false)
            .await
            .unwrap();
        let c = Client::new(t, Duration::from_secs(1), Duration::from_secs(1));
        let r = c
            .exchange(Outgoing {
                method: Method::GET,
                uri: Uri::from_static("/healthz"),
                body: None,
                headers: &[],
            })
            .await;
        assert_eq!(r.unwrap_err(), ErrorKind::Connect);
    }
}
