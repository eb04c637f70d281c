//! `POST /alerts/<source>`: authenticate, check the body, parse it as the source's format,
//! and hand the notice to `App::ingest_alert`. Every refusal is a JSON body that names what was
//! wrong; nothing is stored for a refused request.
//!
//! The order of checks: the source exists (404); for bearer-only kinds the token (401) before
//! anything about the body; the content type (415); the size (413); JSON and the format (400),
//! with an Events `routing_key` checked as soon as the body is read (401); then the decision
//! (422 if refused, 503 if it could not be saved: the sender retries).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{HttpState, MAX_BODY};
use crate::alerts::ingest::{IngestError, Ingested};
use crate::alerts::payload::{self, Parsed};
use crate::alerts::{Source, SourceKind};

/// Grafana's signature header.
pub const SIGNATURE_HEADER: &str = "x-grafana-alerting-signature";

/// A refusal: its status and what to say.
struct Refusal {
    status: StatusCode,
    outcome: &'static str,
    message: String,
}

fn refusal(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        outcome,
        message: message.into(),
    }
}

impl Refusal {
    fn into_response(self, kind: Option<SourceKind>) -> Response {
        let body = match kind {
            // The Events API's own error shape, so its clients understand it.
            Some(SourceKind::Events) => json!({
                "status": if self.status == StatusCode::UNAUTHORIZED { "unauthorized" } else { "invalid event" },
                "message": self.message,
                "errors": [self.message],
            }),
            _ => json!({"status": "error", "message": self.message}),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The bearer token of an `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

fn content_type_ok(headers: &HeaderMap) -> Result<(), Refusal> {
    let unsupported = |found: &str| {
        refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "refused",
            format!("Content-Type must be application/json, found {found}"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("none"));
    };
    let Ok(text) = value.to_str() else {
        return Err(unsupported("a value that is not text"));
    };
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(unsupported(&format!(
            "\"{}\"",
            essence.chars().take(60).collect::<String>()
        )))
    }
}

fn unauthorized(name: &str, kind: SourceKind) -> Refusal {
    let how = match kind {
        SourceKind::Events => "an Authorization: Bearer header or the routing_key",
        _ => "an Authorization: Bearer header",
    };
    refusal(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "the token for alert source '{name}' is missing or wrong; send it in {how}; nothing changed"
        ),
    )
}

pub async fn receive(
    State(st): State<HttpState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(source) = st.sources.get(&name).cloned() else {
        // Not a label from the path: anyone could mint series.
        st.app.metrics().alert("(unknown)", "refused");
        return refusal(
            StatusCode::NOT_FOUND,
            "refused",
            format!(
                "there is no alert source named '{}'; configured: {}",
                name.chars().take(64).collect::<String>(),
                st.sources.names()
            ),
        )
        .into_response(None);
    };
    let kind = source.kind;
    if st.readiness.role() == Some(super::Role::Standby) {
        st.app.metrics().alert(&name, "failed");
        let mut r = refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "this warroom replica is a standby and decides nothing; nothing was saved. Retry: the active replica (the one whose /ready answers 200) takes alerts, and a standby that takes over does too",
        )
        .into_response(Some(kind));
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return r;
    }
    match accept(&st, &name, &source, &headers, body).await {
        Ok(r) => {
            st.app.metrics().alert(&name, r.1);
            r.0
        }
        Err(f) => {
            st.app.metrics().alert(&name, f.outcome);
            tracing::info!(source = %name, status = f.status.as_u16(), message = %f.message, "alert refused");
            f.into_response(Some(kind))
        }
    }
}

async fn accept(
    st: &HttpState,
    name: &str,
    source: &Source,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Response, &'static str), Refusal> {
    let bearer_ok = bearer(headers).is_some_and(|t| source.token.matches(t));
    if !bearer_ok && source.kind != SourceKind::Events {
        return Err(unauthorized(name, source.kind));
    }
    content_type_ok(headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "refused",
                format!("the body is larger than {MAX_BODY} bytes (1 MiB), the most accepted"),
            )
        } else {
            refusal(
                e.status(),
                "refused",
                format!("the body could not be read: {}", e.body_text()),
            )
        }
    })?;
    if body.len() > MAX_BODY {
        return Err(refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "refused",
            format!("the body is larger than {MAX_BODY} bytes (1 MiB), the most accepted"),
        ));
    }
    if source.kind == SourceKind::Events && !bearer_ok {
        let key_ok =
            payload::routing_key(&body).is_some_and(|k| source.token.matches(k.as_bytes()));
        if !key_ok {
            return Err(unauthorized(name, source.kind));
        }
    }
    if source.kind == SourceKind::Grafana {
        let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
        if !source.signature_ok(&body, signature) {
            return Err(refusal(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!(
                    "the X-Grafana-Alerting-Signature of this body is missing or wrong for alert source '{name}' (expected the lowercase hex HMAC-SHA256 of the body under its secret); nothing changed"
                ),
            ));
        }
    }
    let Parsed {
        notice, dedup_key, ..
    } = payload::parse(source.kind, name, &body)
        .map_err(|e| refusal(StatusCode::BAD_REQUEST, "refused", e.0))?;
    let app = st.app.clone();
    let policy = source.policy.clone();
    let routes = st.sources.routes.clone();
    let done = tokio::task::spawn_blocking(move || app.ingest_alert(&notice, &policy, &routes))
        .await
        .map_err(|e| {
            refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed",
                format!("the alert could not be handled ({e}); nothing is confirmed, retry"),
            )
        })?;
    let done = match done {
        Ok(d) => d,
        Err(IngestError::Refused(why)) => {
            return Err(refusal(StatusCode::UNPROCESSABLE_ENTITY, "refused", why));
        }
        Err(IngestError::Storage(why)) => {
            return Err(refusal(StatusCode::SERVICE_UNAVAILABLE, "failed", why));
        }
    };
    tracing::info!(source = %name, outcome = done.outcome(), incident = ?done.incident(), "alert taken");
    let incident = done.incident().map(|i| i.to_string());
    let response = match source.kind {
        SourceKind::Events => (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": dedup_key,
                "outcome": done.outcome(),
                "incident": incident,
            })),
        )
            .into_response(),
        _ => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "ok",
                "outcome": done.outcome(),
                "incident": incident,
            })),
        )
            .into_response(),
    };
    Ok((response, outcome_of(&done)))
}

fn outcome_of(d: &Ingested) -> &'static str {
    d.outcome()
}
