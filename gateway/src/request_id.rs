//! Request ids: one id follows one query from its submit to its download.
//!
//! A request's id is the client's `X-Request-Id` when it is a sensible one
//! (1 to 128 characters of `A-Za-z0-9._~:+/=-`), otherwise a new random
//! UUID. It is on every log line of the request (a field of its span), in
//! the response's `X-Request-Id`, in the job a queued query becomes (so the
//! worker's log lines name it) and in the result record. Polling a result
//! without an `X-Request-Id` of one's own answers with the submit's id, and
//! logs the poll under it too: a client that set an id at submit sees that
//! id to the end.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a client.
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    id: Arc<str>,
    /// Whether the client chose it (rather than the gateway).
    from_client: bool,
}

impl RequestId {
    /// The client's id if it is acceptable, else a new one.
    pub fn for_request(sent: Option<&HeaderValue>) -> RequestId {
        match sent.and_then(|v| v.to_str().ok()).filter(|v| acceptable(v)) {
            Some(id) => RequestId {
                id: id.into(),
                from_client: true,
            },
            None => RequestId {
                id: Uuid::new_v4().to_string().into(),
                from_client: false,
            },
        }
    }

    pub fn sent_by_client(&self) -> bool {
        self.from_client
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Whether `id` may be used as given: short, and made of characters that
/// need no escaping in a header, a log line or a URL.
pub fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:+/=-".contains(&b))
}

/// The middleware: gives the request its id (as an extension, for the log
/// span and the handlers) and the response its `X-Request-Id` unless the
/// handler set one (see the module documentation).
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = RequestId::for_request(request.headers().get(HEADER));
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).await;
    if !response.headers().contains_key(HEADER) {
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert(HEADER, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensible_client_id_is_kept_and_anything_else_replaced() {
        for good in ["abc", "4f1c-9e:trace/1+x=", &"a".repeat(128)] {
            let id = RequestId::for_request(Some(&HeaderValue::from_str(good).unwrap()));
            assert!(id.sent_by_client() && id.as_str() == good, "{good}");
        }
        for bad in ["", "has space", "quote\"", "<script>", &"a".repeat(129)] {
            let id = RequestId::for_request(Some(&HeaderValue::from_str(bad).unwrap()));
            assert!(!id.sent_by_client(), "{bad}");
            assert!(Uuid::parse_str(id.as_str()).is_ok());
        }
        let none = RequestId::for_request(None);
        assert!(!none.sent_by_client());
        assert_ne!(none, RequestId::for_request(None));
    }
}
