//! warroom's HTTP listener (`[http] listen`, off by default), inside `warroom discord` and, when
//! asked with `--http`, inside `warroom console`.
//!
//! The contract:
//! - `POST /alerts/<source>`: one alert notification from a configured source (`intake`). A 2xx
//!   means its effect is committed and durable; a 4xx means the body or the token is wrong and
//!   nothing changed (do not retry); a 5xx means nothing could be saved (retry).
//! - `GET /health`: the process answers. `GET /ready`: the store is open, the scheduler runs and
//!   (for Discord) the gateway is connected (`ops`); for a replica on PostgreSQL, also its role
//!   and term, and a standby is never ready.
//! - A standby replica serves `/health`, `/ready` and `/metrics` (`warroom_active` 0), and
//!   answers `POST /alerts/…` with 503 and `Retry-After`: only the active decides, so that no
//!   two processes overwrite each other's decision on one incident.
//! - `GET /metrics`: Prometheus text exposition (`crate::metrics`).
//! - `GET /oncall/<schedule>.ics`: a schedule's shifts as an iCalendar feed (`oncall`).
//! - With `[board] enabled = true`: the incident board's pages (`crate::board`), `/`, `/login`,
//!   `/incidents/…`, `/share/…`, `/events`.
//!
//! Handlers stay thin: read, authenticate, parse, call `App`, map the result to a status.
//! Blocking store work runs on tokio's blocking threads, never on the async ones.

pub mod intake;
pub mod oncall;
pub mod ops;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::sync::watch;

use crate::alerts::Sources;
use crate::app::App;

/// The largest body accepted: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// What `/ready` reports, set by the front end as its parts start.
#[derive(Debug, Default)]
pub struct Readiness {
    scheduler: AtomicBool,
    /// None: this front end has no gateway (the console).
    gateway: Option<AtomicBool>,
    /// None: a single process, not one of several replicas.
    role: Mutex<Option<Role>>,
}

/// A replica's part, for `/ready` and the alert intake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Holds the lease (its term is the store's fence, which a renewal may move on).
    Active,
    /// Waits for the lease.
    Standby,
}

impl Readiness {
    /// For a front end with a gateway connection (Discord), which starts disconnected.
    pub fn with_gateway() -> Readiness {
        Readiness {
            scheduler: AtomicBool::new(false),
            gateway: Some(AtomicBool::new(false)),
            role: Mutex::new(None),
        }
    }
    /// A standby replica's: nothing runs, and it says so.
    pub fn standby() -> Readiness {
        let r = Readiness::with_gateway();
        r.set_role(Role::Standby);
        r
    }
    pub fn set_role(&self, role: Role) {
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = Some(role);
    }
    /// None for a single process.
    pub fn role(&self) -> Option<Role> {
        self.role.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn set_scheduler(&self, running: bool) {
        self.scheduler.store(running, Ordering::SeqCst);
    }
    pub fn set_gateway(&self, connected: bool) {
        if let Some(g) = &self.gateway {
            g.store(connected, Ordering::SeqCst);
        }
    }
    pub fn scheduler(&self) -> bool {
        self.scheduler.load(Ordering::SeqCst)
    }
    /// None when this front end has no gateway.
    pub fn gateway(&self) -> Option<bool> {
        self.gateway.as_ref().map(|g| g.load(Ordering::SeqCst))
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct HttpState {
    pub app: Arc<App>,
    pub sources: Arc<Sources>,
    pub readiness: Arc<Readiness>,
    /// The incident board, when enabled.
    pub board: Option<Arc<crate::board::Board>>,
}

/// The routes.
pub fn router(state: HttpState) -> Router {
    let board = match state.board {
        Some(_) => crate::board::routes(),
        None => Router::new(),
    };
    board
        .route("/alerts/{source}", post(intake::receive))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/oncall/{file}", get(oncall::feed))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Binds the listener, with a message that names the address when it cannot.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {addr} (http.listen or --http): {e}; is another process using it?"
        )
    })
}

/// Serves until `shutdown` turns true; requests in flight finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The board's live streams end with the listener, so that shutdown never waits for them.
    let state = HttpState {
        board: state
            .board
            .as_ref()
            .map(|b| Arc::new(b.with_stop(shutdown.clone()))),
        ..state
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// Every alert source's token (and secret) from the process environment: a front end calls
/// this before it opens anything, so that a source whose variable is unset stops the start
/// with a message naming the source and the variable.
pub fn sources_from_env(config: &crate::config::Config) -> anyhow::Result<Sources> {
    config
        .alerts
        .resolve(|var| std::env::var(var).ok())
        .map_err(anyhow::Error::msg)
}

/// The board of this configuration, its viewer token read from the process environment: a
/// front end calls this before it opens anything, like `sources_from_env`.
pub fn board_from_env(
    config: &crate::config::Config,
) -> anyhow::Result<Option<crate::board::Board>> {
    crate::board::Board::from_config(config, |var| std::env::var(var).ok())
        .map_err(anyhow::Error::msg)
}

/// Starts the listener for a front end: binds `addr`, logs the address it got, and serves in
/// the background until `shutdown`. Returns the bound address and the task.
pub async fn start(
    app: Arc<App>,
    addr: SocketAddr,
    sources: Sources,
    board: Option<crate::board::Board>,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, sources = %sources.names(), board = board.is_some(), "http listening");
    let state = HttpState {
        app,
        sources: Arc::new(sources),
        readiness,
        board: board.map(Arc::new),
    };
    let task = tokio::spawn(async move {
        if let Err(e) = serve(listener, state, shutdown).await {
            tracing::error!(error = %e, "the http listener stopped");
        }
    });
    Ok((local, task))
}
