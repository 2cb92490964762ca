//! HTTP errors. Every error answer is JSON of one shape:
//!
//! ```json
//! {"error": "invalid query", "fields": [{"field": "endDate", "message": "..."}]}
//! ```
//!
//! `fields` is present when the problem is in the request (400, 413, 415)
//! and names the field at fault: a query field (of the JSON body, or of
//! `GET /api/latest`'s query string), `body` for the document as a whole,
//! or `Content-Type`. Backend failures are 503 (with
//! `Retry-After`), never 500; 500 is only the answer to a bug (a panic).

use crate::rate_limit::Standing;
use airq_core::query::FieldError;
use airq_core::{BackendError, QueryError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid query: {0}")]
    InvalidQuery(QueryError),

    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },

    #[error("unsupported content type {got:?}")]
    UnsupportedMediaType { got: Option<String> },

    #[error("not found: {0}")]
    NotFound(&'static str),

    #[error("method not allowed")]
    MethodNotAllowed,

    #[error("result expired")]
    Expired,

    #[error("range not satisfiable")]
    RangeNotSatisfiable,

    #[error("too many queued queries")]
    Backlog { visible: u64, max: u64 },

    /// No key where one is needed, or one that is malformed, unknown or
    /// revoked; the reason never repeats the key.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    #[error("an API key in the URL")]
    KeyInUrl,

    /// The client spent its budget.
    #[error("rate limited")]
    RateLimited { standing: Standing, tier: String },

    /// The client has its tier's most queries queued or running.
    #[error("too many queries of this client queued")]
    TooManyQueued { cap: u32, tier: String },

    /// A backend call failed; `what` says which, for the client and the log.
    /// `source` is the store's own error, whatever its kind; shared, as one
    /// failure can answer several requests (coalesced direct answers).
    #[error("{what}: {source}")]
    Unavailable {
        what: &'static str,
        #[source]
        source: Arc<BackendError>,
    },

    #[error("the response took too long to start")]
    Timeout,

    /// No place for one more event stream or long poll: `whose` is
    /// `"this client"` (its share, `429`) or `"this gateway"` (`503`).
    #[error("too many followers")]
    TooManyFollowers { max: usize, whose: &'static str },

    /// No place for one more live stream (`GET /api/stream/latest`):
    /// `whose` as for [`ApiError::TooManyFollowers`].
    #[error("too many live streams")]
    TooManyStreams { max: usize, whose: &'static str },

    /// No room for one more alert: `whose` is `"this API key"` (its cap,
    /// `429`) or `"this service"` (`--max-alerts`, `503`).
    #[error("too many alerts")]
    TooManyAlerts { max: usize, whose: &'static str },

    /// What this backend does not do (yet); the message says what does.
    #[error("not implemented: {0}")]
    NotImplemented(String),

    /// What only the direct path answers (the latest readings), on a
    /// gateway with no direct slots (`--direct-limit 0`).
    #[error("no direct slots")]
    NoDirectSlots,

    #[error("internal error")]
    Internal,
}

/// Every `reason` of `airq_rejections_total` ([`ApiError::rejection`]).
pub const REJECTION_REASONS: [&str; 8] = [
    "rate_limit",
    "queued_cap",
    "followers",
    "streams",
    "alerts",
    "auth",
    "key_in_url",
    "backlog",
];

impl ApiError {
    /// `map_err(ApiError::unavailable("result store unavailable"))`.
    pub fn unavailable(what: &'static str) -> impl FnOnce(BackendError) -> ApiError {
        move |source| ApiError::Unavailable {
            what,
            source: Arc::new(source),
        }
    }

    /// The `reason` label of `airq_rejections_total` when this error
    /// refuses a client (rather than reports a fault).
    fn rejection(&self) -> Option<&'static str> {
        Some(match self {
            ApiError::RateLimited { .. } => "rate_limit",
            ApiError::TooManyQueued { .. } => "queued_cap",
            ApiError::TooManyFollowers { .. } => "followers",
            ApiError::TooManyStreams { .. } => "streams",
            ApiError::TooManyAlerts { .. } => "alerts",
            ApiError::Unauthorized(_) => "auth",
            ApiError::KeyInUrl => "key_in_url",
            ApiError::Backlog { .. } => "backlog",
            _ => return None,
        })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::KeyInUrl => StatusCode::BAD_REQUEST,
            ApiError::RateLimited { .. } | ApiError::TooManyQueued { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TooManyFollowers { whose, .. } if *whose == "this client" => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TooManyFollowers { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyStreams { whose, .. } if *whose == "this client" => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TooManyStreams { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyAlerts { whose, .. } if *whose == "this API key" => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TooManyAlerts { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Expired => StatusCode::GONE,
            ApiError::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Backlog { .. }
            | ApiError::Unavailable { .. }
            | ApiError::Timeout
            | ApiError::NoDirectSlots => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fields: &'a [FieldError],
}

fn field(name: &str, message: String) -> Vec<FieldError> {
    vec![FieldError {
        field: name.to_owned(),
        message,
    }]
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Some(reason) = self.rejection() {
            metrics::counter!("airq_rejections_total", "reason" => reason).increment(1);
        }
        let (error, fields) = match &self {
            ApiError::InvalidQuery(e) => ("invalid query".to_owned(), e.errors.clone()),
            ApiError::BodyTooLarge { limit } => (
                "request body too large".to_owned(),
                field("body", format!("must be at most {limit} bytes")),
            ),
            ApiError::UnsupportedMediaType { got } => (
                "unsupported media type".to_owned(),
                field(
                    "Content-Type",
                    match got {
                        Some(got) => format!("must be application/json, got {got:?}"),
                        None => "must be application/json, and is missing".to_owned(),
                    },
                ),
            ),
            ApiError::NotFound(what) => ((*what).to_owned(), Vec::new()),
            ApiError::MethodNotAllowed => ("method not allowed".to_owned(), Vec::new()),
            ApiError::Unauthorized(why) => (why.clone(), Vec::new()),
            ApiError::KeyInUrl => (
                "API keys are not accepted in the URL".to_owned(),
                field(
                    "query string",
                    "send the key in the X-API-Key header: URLs end up in logs and \
                     browser histories, so treat a key sent in one as exposed \
                     (revoke it and make another)"
                        .to_owned(),
                ),
            ),
            ApiError::RateLimited { standing, tier } => (
                format!(
                    "rate limit reached: {} {} for this client (tier {tier}); retry after {} s",
                    standing.budget,
                    standing.kind.name(),
                    standing.retry_after_secs().unwrap_or(1)
                ),
                Vec::new(),
            ),
            ApiError::TooManyQueued { cap, tier } => (
                format!(
                    "this client already has {cap} queries queued or running, the most its \
                     tier ({tier}) allows; retry when one has finished"
                ),
                Vec::new(),
            ),
            ApiError::Expired => (
                "the result has expired; send the query again".to_owned(),
                Vec::new(),
            ),
            ApiError::RangeNotSatisfiable => (
                "the range asked for is outside the result".to_owned(),
                field(
                    "Range",
                    "must be one byte range within the CSV (see Content-Range)".to_owned(),
                ),
            ),
            ApiError::Backlog { visible, max } => {
                tracing::debug!(visible, max, "refusing a queued query: backlog full");
                (
                    "too many queries are waiting; retry later".to_owned(),
                    Vec::new(),
                )
            }
            ApiError::Unavailable { what, source } => {
                tracing::error!(error = %source, "{what}");
                (format!("{what}; retry later"), Vec::new())
            }
            ApiError::Timeout => (
                "the response took too long to start; retry later".to_owned(),
                Vec::new(),
            ),
            ApiError::TooManyFollowers { max, whose } => (
                format!(
                    "{whose} already follows {max} results at once (event streams and \
                     waiting polls), the most it may; close one, or poll without `wait`"
                ),
                Vec::new(),
            ),
            ApiError::TooManyStreams { max, whose } => (
                format!(
                    "{whose} already has {max} live streams open, the most it may; close one, \
                     or ask GET /api/latest instead"
                ),
                Vec::new(),
            ),
            ApiError::TooManyAlerts { max, whose } => (
                format!("{whose} already has {max} alerts, the most it may; delete one first"),
                Vec::new(),
            ),
            ApiError::NotImplemented(what) => (what.clone(), Vec::new()),
            ApiError::NoDirectSlots => (
                "this gateway answers nothing directly (--direct-limit 0), and the latest \
                 readings are only answered directly; ask another gateway"
                    .to_owned(),
                Vec::new(),
            ),
            ApiError::Internal => ("internal error".to_owned(), Vec::new()),
        };
        let body = serde_json::to_vec(&ErrorBody {
            error,
            fields: &fields,
        })
        .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        let h = response.headers_mut();
        match &self {
            ApiError::RateLimited { standing, .. } => {
                h.extend(standing.headers());
                let secs = standing.retry_after_secs().unwrap_or(1);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::TooManyQueued { .. }
            | ApiError::TooManyFollowers { .. }
            | ApiError::TooManyStreams { .. }
            | ApiError::TooManyAlerts { .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::Unauthorized(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"airq\""),
                );
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_reason_is_in_the_list() {
        let standing = crate::rate_limit::Standing {
            kind: crate::rate_limit::Kind::Submits,
            budget: airq_core::keys::Budget::Off,
            denied: None,
            remaining: 0,
            reset_secs: 0,
        };
        for e in [
            ApiError::RateLimited {
                standing,
                tier: "t".into(),
            },
            ApiError::TooManyQueued {
                cap: 1,
                tier: "t".into(),
            },
            ApiError::TooManyFollowers { max: 1, whose: "x" },
            ApiError::TooManyStreams { max: 1, whose: "x" },
            ApiError::TooManyAlerts { max: 1, whose: "x" },
            ApiError::Unauthorized("x".into()),
            ApiError::KeyInUrl,
            ApiError::Backlog { visible: 1, max: 1 },
        ] {
            let reason = e.rejection().expect("a rejection");
            assert!(REJECTION_REASONS.contains(&reason), "{reason}");
        }
    }

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn invalid_query_names_fields() {
        let e = QueryError {
            errors: field("endDate", "is required".into()),
        };
        let (status, v) = body(ApiError::InvalidQuery(e)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"], "invalid query");
        assert_eq!(v["fields"][0]["field"], "endDate");
        assert_eq!(v["fields"][0]["message"], "is required");
    }

    #[tokio::test]
    async fn plain_errors_have_no_fields() {
        let (status, v) = body(ApiError::NotFound("no such result")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(v, serde_json::json!({"error": "no such result"}));
    }

    #[test]
    fn unavailable_says_when_to_retry() {
        let r = ApiError::Backlog { visible: 2, max: 1 }.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }
}
