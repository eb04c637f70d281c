//! The incident board: read-only web pages on the HTTP listener (`[board] enabled = true`),
//! for the SDM on a phone and for people who are not in the chat.
//!
//! The contract:
//! - Off unless configured: with the board disabled none of its routes exist (404).
//! - `GET /login` shows a form; `POST /login` takes the viewer token (from the variable
//!   `board.token_env`, never a file) and answers 303 to `/` with a session cookie (HttpOnly,
//!   SameSite=Strict, 12 h), or 401 with the form again. The token is never logged or stored;
//!   see `access` for the cookie and the keys.
//! - Signed in: `GET /` (every open incident, then the recently resolved ones),
//!   `GET /incidents/INC-n` (status, plans and checklists, nudges, timers, vendor cases, the
//!   chart inline, the timeline, its share link), `…/report.md`, `…/report.json`,
//!   `…/chart.svg`, and the live streams `GET /events`, `GET /incidents/INC-n/events`.
//!   Not signed in: 401 with the sign-in form.
//! - A share link `GET /share/INC-n/<sig>` (and the same five sub-paths) shows that incident
//!   only: a signature for another incident is 403, an unknown incident 404, and a link whose
//!   incident resolved more than a day ago 410.
//! - Live: each stream sends `hello` on connect and `change` after every committed round
//!   (`App::changes`: commands, fired timers, alerts); `board.js` then re-reads the page. A
//!   stream ends when the listener shuts down, so shutdown never waits for a browser.
//! - Every page sends a strict Content-Security-Policy (`CSP`: scripts and styles from the
//!   board's own files only, no inline script or style, no framing), `nosniff`, no referrer
//!   (a share link's path is a credential) and `no-store`.
//!
//! Handlers stay thin: authenticate, read the store on a blocking thread, render with `page`
//! (pure), answer.

pub mod access;
pub mod page;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use futures_util::Stream;
use maud::Markup;
use tokio::sync::watch;

use crate::app::App;
use crate::domain::{IncidentId, RoleKey, chart, render};
use crate::http::HttpState;
pub use access::{Access, TokenError};
use page::{IncidentView, IndexView, Viewer};

/// The Content-Security-Policy of every board response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SCRIPT: &str = include_str!("board.js");
const STYLE: &str = include_str!("board.css");

/// The board as the listener serves it: who may see it, and the listener's shutdown signal
/// (which ends the live streams).
#[derive(Clone, Debug)]
pub struct Board {
    access: Access,
    stop: Option<watch::Receiver<bool>>,
}

impl Board {
    pub fn new(access: Access) -> Board {
        Board { access, stop: None }
    }

    /// The board of this configuration, with its token read through `env`: None when the board
    /// is disabled; an error naming the variable when it is enabled and the token is unusable.
    pub fn from_config(
        config: &crate::config::Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Board>, TokenError> {
        if !config.board.enabled {
            return Ok(None);
        }
        let var = &config.board.token_env;
        Access::new(var, env(var)).map(|a| Some(Board::new(a)))
    }

    /// The same board, its live streams ending when `stop` turns true.
    pub fn with_stop(&self, stop: watch::Receiver<bool>) -> Board {
        Board {
            access: self.access.clone(),
            stop: Some(stop),
        }
    }

    pub fn access(&self) -> &Access {
        &self.access
    }
}

/// The board's routes, merged into the listener's when the board is enabled.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/board.js", get(script))
        .route("/board.css", get(style))
        .route("/events", get(board_events))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/{part}", get(incident_part))
        .route("/share/{id}/{sig}", get(shared))
        .route("/share/{id}/{sig}/{part}", get(shared_part))
}

/// Headers every board response carries.
fn guarded(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, m: Markup) -> Response {
    guarded(status, "text/html; charset=utf-8", m.into_string())
}

/// A refusal: its status and page (heading, what to do, and the sign-in form if it helps).
pub struct Refused {
    status: StatusCode,
    title: &'static str,
    text: String,
    login: bool,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        html(
            self.status,
            page::message(self.title, &self.text, self.login),
        )
    }
}

fn refusal(status: StatusCode, title: &'static str, text: &str) -> Refused {
    Refused {
        status,
        title,
        text: text.to_string(),
        login: false,
    }
}

fn not_signed_in() -> Refused {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        title: "Sign in to see the incident board",
        text: "This board needs the viewer token. Enter it below; your browser keeps a session cookie for 12 hours.".into(),
        login: true,
    }
}

fn board_of(st: &HttpState) -> Result<Arc<Board>, Refused> {
    // The routes exist only with a board, so this is only a guard.
    st.board.clone().ok_or_else(|| {
        refusal(
            StatusCode::NOT_FOUND,
            "No board here",
            "The incident board is off.",
        )
    })
}

/// Whether the request carries a valid session cookie (checked on the wall clock: the cookie's
/// lifetime is the browser's, not the incidents' clock).
fn signed_in(board: &Board, headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| access::cookie(v, access::COOKIE))
        .any(|v| board.access.session_valid(v, Utc::now()))
}

fn require_session(st: &HttpState, headers: &HeaderMap) -> Result<Arc<Board>, Refused> {
    let board = board_of(st)?;
    if signed_in(&board, headers) {
        Ok(board)
    } else {
        Err(not_signed_in())
    }
}

/// Runs store reads on a blocking thread; a failure is a 503 page.
async fn read<T: Send + 'static>(
    app: Arc<App>,
    f: impl FnOnce(&App) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Refused> {
    let unavailable = |e: String| {
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The store cannot be read",
            &format!("warroom cannot read its store right now: {e}. Try again shortly."),
        )
    };
    match tokio::task::spawn_blocking(move || f(&app).map_err(|e| app.store().explain(e))).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

async fn script() -> Response {
    guarded(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        SCRIPT.to_string(),
    )
}

async fn style() -> Response {
    guarded(StatusCode::OK, "text/css; charset=utf-8", STYLE.to_string())
}

async fn login_form(State(st): State<HttpState>, headers: HeaderMap) -> Response {
    let board = match board_of(&st) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if signed_in(&board, &headers) {
        return see_other("/", None);
    }
    html(StatusCode::OK, page::login(None))
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
}

fn see_other(to: &'static str, cookie: Option<String>) -> Response {
    let mut r = guarded(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        String::new(),
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

async fn login(
    State(st): State<HttpState>,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let board = match board_of(&st) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Ok(Form(form)) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            page::login(Some(
                "The sign-in form was not understood; enter the viewer token and send it again.",
            )),
        );
    };
    if !board.access.token_matches(&form.token) {
        // Never the token itself.
        tracing::info!("board sign-in refused: wrong viewer token");
        return html(
            StatusCode::UNAUTHORIZED,
            page::login(Some(
                "That is not the board's viewer token; nothing was signed in.",
            )),
        );
    }
    let value = board.access.session(Utc::now());
    let cookie = format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        access::COOKIE,
        access::SESSION_HOURS * 3600
    );
    see_other("/", Some(cookie))
}

fn trouble_map(app: &App) -> (BTreeMap<IncidentId, Vec<String>>, Vec<String>) {
    let mut by = BTreeMap::<IncidentId, Vec<String>>::new();
    let mut other = Vec::new();
    for (_, t) in app.health.all() {
        match t.incident {
            Some(id) => by.entry(id).or_default().push(t.line()),
            None => other.push(t.line()),
        }
    }
    (by, other)
}

/// Renders the index page from what the store holds: the whole page, as the handler and the
/// bench produce it.
pub fn render_index(app: &App, incidents: &[crate::domain::Incident]) -> String {
    let holders = app.config().policy.roster.holders(&RoleKey::sdm());
    let (trouble, other) = trouble_map(app);
    page::index(&IndexView {
        now: app.clock().now(),
        incidents,
        sdm_holders: &holders,
        trouble: &trouble,
        other_trouble: &other,
    })
    .into_string()
}

async fn index(State(st): State<HttpState>, headers: HeaderMap) -> Response {
    if let Err(r) = require_session(&st, &headers) {
        return r.into_response();
    }
    match read(st.app.clone(), |app| {
        let all = app.store().incidents()?;
        Ok(render_index(app, &all))
    })
    .await
    {
        Ok(body) => guarded(StatusCode::OK, "text/html; charset=utf-8", body),
        Err(r) => r.into_response(),
    }
}

fn parse_id(raw: &str) -> Result<IncidentId, Refused> {
    raw.parse::<IncidentId>()
        .map_err(|e| refusal(StatusCode::NOT_FOUND, "No such incident", &format!("{e}.")))
}

/// What part of an incident a path asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Part {
    Page,
    Markdown,
    Json,
    Svg,
    Events,
}

fn part(raw: &str) -> Result<Part, Refused> {
    match raw {
        "report.md" => Ok(Part::Markdown),
        "report.json" => Ok(Part::Json),
        "chart.svg" => Ok(Part::Svg),
        "events" => Ok(Part::Events),
        _ => Err(refusal(
            StatusCode::NOT_FOUND,
            "No such page",
            "An incident has report.md, report.json, chart.svg and events.",
        )),
    }
}

/// Answers one part of one incident, for a board viewer or a share link.
async fn serve_incident(
    st: &HttpState,
    board: &Board,
    id: IncidentId,
    part: Part,
    viewer: Viewer,
) -> Response {
    if part == Part::Events {
        return live(&st.app, board.stop.clone()).into_response();
    }
    let share_path = match viewer {
        Viewer::Board => Some(board.access.share_path(id)),
        Viewer::Share(_) => None,
    };
    let shared = matches!(viewer, Viewer::Share(_));
    let found = read(st.app.clone(), move |app| {
        let Some(inc) = app.store().incident(id)? else {
            return Ok(None);
        };
        let events = app.store().events(id)?;
        Ok(Some((inc, events, app.clock().now())))
    })
    .await;
    let (inc, events, now) = match found {
        Ok(Some(f)) => f,
        Ok(None) => {
            return refusal(
                StatusCode::NOT_FOUND,
                "No such incident",
                &format!("{id} does not exist."),
            )
            .into_response();
        }
        Err(r) => return r.into_response(),
    };
    if shared && !access::share_live(&inc, now) {
        return refusal(
            StatusCode::GONE,
            "This share link has expired",
            &format!(
                "{id} resolved more than a day ago, so its share link no longer works. Ask the incident's SDM for the report."
            ),
        )
        .into_response();
    }
    match part {
        Part::Markdown => guarded(
            StatusCode::OK,
            "text/markdown; charset=utf-8",
            render::report(&inc, &events),
        ),
        Part::Json => guarded(
            StatusCode::OK,
            "application/json",
            serde_json::json!({"incident": inc, "timeline": events}).to_string(),
        ),
        Part::Svg => guarded(
            StatusCode::OK,
            "image/svg+xml; charset=utf-8",
            chart::svg(&inc, &events, now),
        ),
        Part::Page | Part::Events => {
            let holders = st.app.config().policy.roster.holders(&RoleKey::sdm());
            let trouble = st.app.health.lines_for(id);
            let svg = chart::svg(&inc, &events, now);
            html(
                StatusCode::OK,
                page::incident(&IncidentView {
                    now,
                    incident: &inc,
                    events: &events,
                    sdm_holders: &holders,
                    trouble: &trouble,
                    chart: &svg,
                    viewer,
                    share_path,
                }),
            )
        }
    }
}

async fn incident(
    State(st): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let board = match require_session(&st, &headers) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match parse_id(&id) {
        Ok(id) => serve_incident(&st, &board, id, Part::Page, Viewer::Board).await,
        Err(r) => r.into_response(),
    }
}

async fn incident_part(
    State(st): State<HttpState>,
    headers: HeaderMap,
    Path((id, p)): Path<(String, String)>,
) -> Response {
    let board = match require_session(&st, &headers) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    match (parse_id(&id), part(&p)) {
        (Ok(id), Ok(p)) => serve_incident(&st, &board, id, p, Viewer::Board).await,
        (Err(r), _) | (_, Err(r)) => r.into_response(),
    }
}

/// Checks a share link's signature against the incident it names.
fn share_check(st: &HttpState, id: &str, sig: &str) -> Result<(Arc<Board>, IncidentId), Refused> {
    let board = board_of(st)?;
    let id = parse_id(id)?;
    if !board.access.share_sig_matches(id, sig) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "This share link is not valid",
            &format!(
                "This link does not open {id}: a share link opens only the incident it was made for."
            ),
        ));
    }
    Ok((board, id))
}

async fn shared(State(st): State<HttpState>, Path((id, sig)): Path<(String, String)>) -> Response {
    match share_check(&st, &id, &sig) {
        Ok((board, id)) => {
            let base = board.access.share_path(id);
            serve_incident(&st, &board, id, Part::Page, Viewer::Share(base)).await
        }
        Err(r) => r.into_response(),
    }
}

async fn shared_part(
    State(st): State<HttpState>,
    Path((id, sig, p)): Path<(String, String, String)>,
) -> Response {
    match (share_check(&st, &id, &sig), part(&p)) {
        (Ok((board, id)), Ok(p)) => {
            let base = board.access.share_path(id);
            serve_incident(&st, &board, id, p, Viewer::Share(base)).await
        }
        (Err(r), _) | (_, Err(r)) => r.into_response(),
    }
}

async fn board_events(State(st): State<HttpState>, headers: HeaderMap) -> Response {
    match require_session(&st, &headers) {
        Ok(board) => live(&st.app, board.stop.clone()).into_response(),
        Err(r) => r.into_response(),
    }
}

/// Waits until the listener stops (forever without a stop signal).
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// The live stream: `hello` at once (with the retry delay), then `change` after each committed
/// round, until the listener stops.
fn live(
    app: &App,
    stop: Option<watch::Receiver<bool>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let rx = app.changes.subscribe();
    let stream = futures_util::stream::unfold(
        (rx, stop, true),
        |(mut rx, mut stop, first)| async move {
            if first {
                let v = *rx.borrow_and_update();
                let hello = Event::default()
                    .event("hello")
                    .retry(Duration::from_secs(2))
                    .data(v.to_string());
                return Some((Ok(hello), (rx, stop, false)));
            }
            tokio::select! {
                changed = rx.changed() => match changed {
                    Ok(()) => {
                        let v = *rx.borrow_and_update();
                        Some((Ok(Event::default().event("change").data(v.to_string())), (rx, stop, false)))
                    }
                    Err(_) => None,
                },
                _ = stopped(&mut stop) => None,
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
