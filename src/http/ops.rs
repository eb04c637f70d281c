//! The operations endpoints: `/health` (the process answers), `/ready` (store, scheduler and,
//! for Discord, the gateway; a replica's role and term) and `/metrics` (Prometheus text
//! exposition).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;

pub async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

pub async fn ready(State(st): State<HttpState>) -> Response {
    let app = st.app.clone();
    // A read proves the store is open and answering.
    let store = tokio::task::spawn_blocking(move || app.store().next_incident_id().is_ok())
        .await
        .unwrap_or(false);
    let scheduler = st.readiness.scheduler();
    let gateway = st.readiness.gateway();
    let role = st.readiness.role();
    let ready = store && scheduler && gateway.unwrap_or(true) && role != Some(super::Role::Standby);
    let mut body = json!({
        "ready": ready,
        "store": if store { "open" } else { "unavailable" },
        "scheduler": if scheduler { "running" } else { "stopped" },
    });
    if let Some(obj) = body.as_object_mut() {
        match role {
            Some(super::Role::Active) => {
                obj.insert("role".into(), json!("active"));
                let term = st.app.store().postgres().and_then(|p| p.fenced_term());
                obj.insert("term".into(), json!(term));
            }
            Some(super::Role::Standby) => {
                obj.insert("role".into(), json!("standby"));
            }
            None => {}
        }
    }
    if let (Some(g), Some(obj)) = (gateway, body.as_object_mut()) {
        obj.insert(
            "gateway".into(),
            json!(if g { "connected" } else { "disconnected" }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The OpenMetrics text that `prometheus-client` writes; Prometheus reads it.
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn metrics(State(st): State<HttpState>) -> Response {
    let app = st.app.clone();
    let text = tokio::task::spawn_blocking(move || {
        let store = app.store();
        let open: Vec<_> = store
            .incidents()
            .map(|all| all.into_iter().filter(|i| i.is_open()).collect())
            .map_err(|e| store.explain(e).to_string())?;
        let outbox = store.outbox().map_err(|e| store.explain(e).to_string())?;
        Ok::<String, String>(app.metrics().render(&open, &outbox, app.clock().now()))
    })
    .await;
    match text {
        Ok(Ok(text)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, METRICS_TYPE)], text).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the metrics cannot be read from the store: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the metrics task failed: {e}\n"),
        )
            .into_response(),
    }
}
