//! `GET /oncall/<schedule>.ics`: a schedule's shifts (with overrides) as an iCalendar feed
//! that calendar apps can subscribe to: from a week ago to eight weeks ahead.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;

use super::HttpState;
use crate::domain::oncall::{self, OnCall};

/// The most events one feed lists.
const MAX_EVENTS: usize = 500;

pub async fn feed(State(state): State<HttpState>, Path(file): Path<String>) -> Response {
    let Some(name) = file.strip_suffix(".ics") else {
        return (
            StatusCode::NOT_FOUND,
            "not found: the feed is /oncall/<schedule>.ics\n",
        )
            .into_response();
    };
    let config = state.app.config();
    let Some(sched) = config.policy.schedules.iter().find(|s| s.name == name) else {
        let names = config
            .policy
            .schedules
            .iter()
            .map(|s| format!("{}.ics", s.name))
            .collect::<Vec<_>>()
            .join(", ");
        return (
            StatusCode::NOT_FOUND,
            format!(
                "no schedule named '{}'; feeds: {names}\n",
                crate::spec::echo(name)
            ),
        )
            .into_response();
    };
    let now = state.app.clock().now();
    let overrides = state.app.overrides_now();
    let oc = OnCall {
        schedules: &config.policy.schedules,
        overrides: &overrides,
    };
    let from = now.checked_sub_signed(TimeDelta::days(7)).unwrap_or(now);
    let to = now.checked_add_signed(TimeDelta::weeks(8)).unwrap_or(now);
    let body = oncall::ics(&oc, sched, from, to, MAX_EVENTS, now);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        body,
    )
        .into_response()
}
