//! `POST /api/alerts`, `GET /api/alerts/{id}`, `DELETE /api/alerts/{id}`:
//! a keyed client's alerts on the air of a place, delivered as signed
//! webhooks (see [`crate::alerts`]).

use super::submit::{check_content_type, drain, read_body};
use crate::admission::Caller;
use crate::alerts::{self, target, Alerts};
use crate::error::ApiError;
use crate::state::AppState;
use airq_core::alert::{Alert, AlertSpec, Refused};
use airq_core::query::FieldError;
use airq_core::{ClientId, QueryError, Timestamp};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;
use uuid::Uuid;

const UNKNOWN: &str = "no such alert (or not one of this API key's)";

/// The alerts of this gateway's backend, or 501 where it keeps none.
fn alerts_of(app: &AppState) -> Result<&Arc<Alerts>, ApiError> {
    app.alerts
        .as_ref()
        .ok_or_else(|| ApiError::NotImplemented("this deployment's backend keeps no alerts".into()))
}

/// The key an alert belongs to: alerts need one.
fn owner_of(caller: &Caller) -> Result<Uuid, ApiError> {
    match caller.client {
        ClientId::Key(id) => Ok(id),
        ClientId::Address(_) => Err(ApiError::Unauthorized(
            "alerts belong to an API key: send one (X-Api-Key or Authorization: Bearer)".into(),
        )),
    }
}

/// The alert `id` names, if `owner`'s.
async fn owned(
    alerts: &Alerts,
    owner: Uuid,
    id: Result<Path<String>, PathRejection>,
) -> Result<(Alert, airq_core::alert::AlertState), ApiError> {
    let id = id
        .ok()
        .and_then(|Path(id)| Uuid::parse_str(&id).ok())
        .ok_or(ApiError::NotFound(UNKNOWN))?;
    let (alert, state) = alerts
        .store
        .get(id)
        .await
        .map_err(ApiError::unavailable("alert store unavailable"))?
        .ok_or(ApiError::NotFound(UNKNOWN))?;
    // Another key's alert does not exist, as far as this one can tell.
    if alert.owner != owner {
        return Err(ApiError::NotFound(UNKNOWN));
    }
    Ok((alert, state))
}

#[utoipa::path(
    post,
    path = "/api/alerts",
    tag = "alerts",
    operation_id = "createAlert",
    summary = "Be told by webhook when the air of a place turns bad, and when it recovers",
    description = "Registers an alert of the caller's API key: after each ingestion, the \
        place's value (the median of its sensors' current hourly index, over those with a \
        5-minute reading of the last 2 hours) is compared with the threshold (a band: that \
        band or worse; or a value). `alert.entered` is sent when it reaches the threshold \
        (not again within `cooldown` of the last one), `alert.left` when it falls below \
        after an `alert.entered`. Each is a POST of JSON to `webhookUrl`, signed as \
        Standard Webhooks sign (`webhook-id`, `webhook-timestamp`, `webhook-signature`: \
        `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the secret returned \
        here, once), retried with exponential backoff for up to 24 hours, then \
        dead-lettered (`GET /api/alerts/{id}` shows the last deliveries). `webhookUrl` must \
        be `https` and reach public addresses only (checked after DNS resolution, on every \
        attempt and every redirect). Each key may hold `--max-alerts-per-key` alerts. \
        Spends one request of the `submits` budget.",
    request_body(content = crate::openapi::schema::AlertBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The alert, with its `secret` (shown this once)",
            body = crate::openapi::schema::AlertCreated,
            headers(("Location" = String, description = "`/api/alerts/{id}`"))),
        (status = 400, description = "Invalid fields, each named (`place`, `index`, \
            `threshold`, `webhookUrl`: not https, or reaching a private, loopback, link-local \
            or metadata address; `cooldown`)", body = crate::openapi::schema::ErrorBody),
        (status = 401, description = "No API key, or a malformed, unknown or revoked one",
            body = crate::openapi::schema::ErrorBody),
        (status = 413, description = "A body over `--body-limit`", body = crate::openapi::schema::ErrorBody),
        (status = 415, description = "Not `application/json`", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the `submits` budget, or the key has \
            `--max-alerts-per-key` alerts", body = crate::openapi::schema::ErrorBody),
        (status = 501, description = "The backend keeps no alerts",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The store does not answer, or holds `--max-alerts` alerts",
            body = crate::openapi::schema::ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []))
)]
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let (alerts, owner) = match alerts_of(&app).and_then(|a| Ok((a, owner_of(&caller)?))) {
        Ok(found) => found,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    if let Err(e) = check_content_type(&parts.headers) {
        drain(body).await;
        return Err(e);
    }
    let bytes = read_body(&parts.headers, body, app.body_limit).await?;
    let spec = AlertSpec::from_json(&bytes).map_err(ApiError::InvalidQuery)?;
    target::check(&spec.webhook_url, alerts.config.policy)
        .await
        .map_err(|message| {
            ApiError::InvalidQuery(QueryError {
                errors: vec![FieldError {
                    field: "webhookUrl".into(),
                    message,
                }],
            })
        })?;
    let alert = Alert {
        id: Uuid::new_v4(),
        owner,
        spec,
        secret: alerts::new_secret(),
        created_at: Timestamp::now(),
    };
    let stored = alerts
        .store
        .create(&alert, alerts.max_per_key, alerts.max_total)
        .await
        .map_err(ApiError::unavailable("alert store unavailable"))?;
    match stored {
        Ok(()) => {}
        Err(Refused::OwnerFull { max }) => {
            return Err(ApiError::TooManyAlerts {
                max: max as usize,
                whose: "this API key",
            })
        }
        Err(Refused::StoreFull { max }) => {
            return Err(ApiError::TooManyAlerts {
                max: max as usize,
                whose: "this service",
            })
        }
    }
    tracing::info!(alert = %alert.id, owner = %owner, "alert created");
    let mut body = alerts::alert_json(&alert, &Default::default());
    body["secret"] = alert.secret.clone().into();
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/alerts/{}", alert.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/alerts/{id}",
    tag = "alerts",
    operation_id = "getAlert",
    summary = "An alert, its state and its last deliveries",
    description = "The alert as registered (without its secret), its state (`inside`: the \
        receiver was last told `alert.entered`; `enteredAt`; `suppressedEntries` within the \
        cooldown), the place's value now (`now`: `value` and the number of `sensors` it is \
        the median of, from this gateway's copy of the latest readings; `null` without \
        one), and its last 20 deliveries, newest first (`pending` with `nextAttemptAt`, \
        `delivered`, or `dead` once retries ran out, each with its `attempts`, \
        `lastStatus` and `lastError`). Only the key that created it sees it. Spends one \
        request of the `polls` budget.",
    params(("id" = String, Path, description = "The alert id (a UUID)")),
    responses(
        (status = 200, description = "The alert", body = crate::openapi::schema::AlertView),
        (status = 401, description = "No API key, or a malformed, unknown or revoked one",
            body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such alert of this key", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the `polls` budget", body = crate::openapi::schema::ErrorBody),
        (status = 501, description = "The backend keeps no alerts",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The store does not answer", body = crate::openapi::schema::ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let alerts = alerts_of(&app)?;
    let (alert, state) = owned(alerts, owner_of(&caller)?, id).await?;
    let deliveries = alerts
        .store
        .deliveries(alert.id, alerts::SHOWN_DELIVERIES)
        .await
        .map_err(ApiError::unavailable("alert store unavailable"))?;
    let mut body = alerts::alert_json(&alert, &state);
    body["now"] = match app.live.current() {
        Some(entries) => {
            let (value, sensors) = alerts::value_of(&alert.spec.place, &entries, Timestamp::now());
            serde_json::json!({ "value": value, "sensors": sensors })
        }
        None => serde_json::Value::Null,
    };
    body["deliveries"] = deliveries.iter().map(alerts::delivery_json).collect();
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(
    delete,
    path = "/api/alerts/{id}",
    tag = "alerts",
    operation_id = "deleteAlert",
    summary = "Deletes an alert and its deliveries",
    description = "Nothing more is sent for it, pending retries included. Only the key \
        that created it may. Spends one request of the `polls` budget.",
    params(("id" = String, Path, description = "The alert id (a UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No API key, or a malformed, unknown or revoked one",
            body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such alert of this key", body = crate::openapi::schema::ErrorBody),
        (status = 429, description = "Over the `polls` budget", body = crate::openapi::schema::ErrorBody),
        (status = 501, description = "The backend keeps no alerts",
            body = crate::openapi::schema::ErrorBody),
        (status = 503, description = "The store does not answer", body = crate::openapi::schema::ErrorBody),
    ),
    security(("apiKey" = []), ("bearer" = []))
)]
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let alerts = alerts_of(&app)?;
    let (alert, _) = owned(alerts, owner_of(&caller)?, id).await?;
    let gone = alerts
        .store
        .delete(alert.id, alert.owner)
        .await
        .map_err(ApiError::unavailable("alert store unavailable"))?;
    if !gone {
        return Err(ApiError::NotFound(UNKNOWN));
    }
    tracing::info!(alert = %alert.id, "alert deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
