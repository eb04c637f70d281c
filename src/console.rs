//! The console front end: a local war room in the terminal, for demos, training, offline
//! drills and tests. It reads the same slash commands, one per line, and writes every outbound
//! message as readable text or as one JSON object a line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use regex::Regex;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::watch;

use crate::app::{App, ReplyKind};
use crate::clock::{Clock, SystemClock, VirtualClock};
use crate::config::Config;
use crate::delivery::Courier;
use crate::domain::{IncidentId, Target, UserName};
use crate::port::{BoxFuture, ChatPort, DeliveryError};
use crate::scheduler::run_scheduler;
use crate::spec::parse_duration;
use crate::store::postgres::PgStore;
use crate::store::{Outgoing, Store};

#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Jsonl,
}

/// Where the console's time comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ClockChoice {
    System,
    Virtual(DateTime<Utc>),
}

impl std::str::FromStr for ClockChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "system" {
            return Ok(ClockChoice::System);
        }
        let Some(at) = s.strip_prefix("virtual:") else {
            return Err(format!(
                "'{s}' is not a clock; use system or virtual:2026-11-23T22:00:00Z"
            ));
        };
        DateTime::parse_from_rfc3339(at)
            .map(|t| ClockChoice::Virtual(t.with_timezone(&Utc)))
            .map_err(|e| {
                format!("'{at}' is not an RFC 3339 time ({e}); write it like 2026-11-23T22:00:00Z")
            })
    }
}

pub struct ConsoleOptions {
    pub data: PathBuf,
    pub config: Arc<Config>,
    pub clock: ClockChoice,
    pub format: Format,
    pub acting: Option<UserName>,
    /// Serve alerts, health and metrics here too (`--http 127.0.0.1:8080`).
    pub http: Option<std::net::SocketAddr>,
}

// A constant pattern, checked by the tests that render times: `expect` cannot fire at run time.
#[allow(clippy::expect_used)]
fn time_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"<t:(-?\d+):[a-zA-Z]>").expect("static regex"))
}

/// Renders `<t:UNIX:x>` as a UTC clock time, with the date when it is another day than `at`.
pub fn render_times(text: &str, at: DateTime<Utc>) -> String {
    time_re()
        .replace_all(text, |c: &regex::Captures| {
            let secs: i64 = c[1].parse().unwrap_or(0);
            match Utc.timestamp_opt(secs, 0).single() {
                Some(t) if t.date_naive() == at.date_naive() => t.format("%H:%M").to_string(),
                Some(t) => t.format("%b %d %H:%M").to_string(),
                None => c[0].to_string(),
            }
        })
        .into_owned()
}

fn mention_names(m: &[Target]) -> Vec<String> {
    m.iter()
        .map(|t| match t {
            Target::Role(r) => r.to_string(),
            Target::User(u) => u.to_string(),
        })
        .collect()
}

/// Writes lines to the terminal (or any writer); shared by replies and deliveries.
pub struct ConsoleOut {
    format: Format,
    out: Mutex<Box<dyn Write + Send>>,
}

impl ConsoleOut {
    pub fn new(format: Format, out: Box<dyn Write + Send>) -> ConsoleOut {
        ConsoleOut {
            format,
            out: Mutex::new(out),
        }
    }

    pub fn line(
        &self,
        at: DateTime<Utc>,
        channel: &str,
        kind: &str,
        text: &str,
        mentions: &[Target],
    ) {
        let text = render_times(text, at);
        let line = match self.format {
            Format::Jsonl => serde_json::json!({
                "at": at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "channel": channel,
                "kind": kind,
                "text": text,
                "mentions": mention_names(mentions),
            })
            .to_string(),
            Format::Text => {
                let pings = if mentions.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{} ",
                        mentions
                            .iter()
                            .map(Target::to_string)
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                };
                // Text that people typed may hold escape sequences: a terminal shows them
                // escaped, never obeys them.
                let safe: String = text
                    .chars()
                    .flat_map(|c| {
                        let escaped: Vec<char> = if c.is_control() && c != '\n' {
                            c.escape_default().collect()
                        } else {
                            vec![c]
                        };
                        escaped
                    })
                    .collect();
                let body = safe.replace('\n', "\n      | ");
                format!("{} #{channel} [{kind}] {pings}{body}", at.format("%H:%M"))
            }
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout (say, a pipe to `head`) is not worth crashing the war room for.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The console's chat port: delivering is printing.
pub struct ConsolePort(pub Arc<ConsoleOut>);

impl ChatPort for ConsolePort {
    fn deliver<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            // The console has no pinned card; /incident status shows it on demand.
            if msg.kind == crate::domain::MessageKind::Status {
                return Ok(());
            }
            self.0.line(
                msg.at,
                &msg.channel,
                msg.kind.as_str(),
                &msg.text,
                &msg.mentions,
            );
            Ok(())
        })
    }
}

struct Session {
    app: Arc<App>,
    out: Arc<ConsoleOut>,
    virtual_clock: Option<Arc<VirtualClock>>,
    acting: UserName,
    current: Option<IncidentId>,
    channel: String,
}

impl Session {
    fn say(&self, kind: ReplyKind, text: &str) {
        self.out.line(
            self.app.clock().now(),
            &self.channel,
            kind.as_str(),
            text,
            &[],
        );
    }

    fn set_current(&mut self, id: Option<IncidentId>) {
        self.current = id;
        self.channel = id
            .and_then(|id| self.app.store().incident(id).ok().flatten())
            .map_or("console".into(), |i| i.channel);
    }

    /// Handles a console-only command; None if the line is a slash command for the engine.
    fn console_command(&mut self, line: &str) -> Option<bool> {
        let mut words = line.split_whitespace();
        let head = words.next()?;
        let rest: Vec<&str> = words.collect();
        match head {
            "/quit" | "/exit" => Some(false),
            "/as" => {
                let usage = "usage: /as <user>";
                match rest.as_slice() {
                    [user] => {
                        let user = UserName::new(user.trim_start_matches('@'));
                        let participant = self
                            .current
                            .and_then(|id| self.app.store().incident(id).ok().flatten())
                            .is_some_and(|i| i.participants.contains_key(&user));
                        if self.app.config().policy.roster.contains(&user) || participant {
                            let roles = self
                                .app
                                .actor(&user)
                                .roles
                                .iter()
                                .map(|r| r.to_string())
                                .collect::<Vec<_>>()
                                .join(", ");
                            self.acting = user.clone();
                            self.say(
                                ReplyKind::Reply,
                                &format!("Now acting as {user} ({roles})."),
                            );
                        } else {
                            self.say(
                                ReplyKind::Error,
                                &format!(
                                    "/as: '{user}' is not on the roster; known people: {}\n{usage}",
                                    self.app.config().policy.roster.names()
                                ),
                            );
                        }
                    }
                    _ => self.say(
                        ReplyKind::Error,
                        &format!("/as needs one user name\n{usage}"),
                    ),
                }
                Some(true)
            }
            "/use" => {
                let usage = "usage: /use INC-<n>";
                match rest.as_slice() {
                    [id] => match id.parse::<IncidentId>() {
                        Ok(id) => match self.app.store().incident(id) {
                            Ok(Some(_)) => {
                                self.set_current(Some(id));
                                self.say(
                                    ReplyKind::Reply,
                                    &format!("Now in #{} ({id}).", self.channel),
                                );
                            }
                            _ => self.say(
                                ReplyKind::Error,
                                &format!("/use: {id} does not exist\n{usage}"),
                            ),
                        },
                        Err(e) => self.say(ReplyKind::Error, &format!("/use: {e}\n{usage}")),
                    },
                    _ => self.say(
                        ReplyKind::Error,
                        &format!("/use needs an incident id\n{usage}"),
                    ),
                }
                Some(true)
            }
            "/clock" => {
                let usage = "usage: /clock advance <duration>, for example /clock advance 30m";
                match (rest.as_slice(), &self.virtual_clock) {
                    ([], _) => {
                        let now = self.app.clock().now();
                        self.say(ReplyKind::Reply, &format!("It is {}.", now.to_rfc3339_opts(SecondsFormat::Secs, true)));
                    }
                    (["advance", d], Some(vc)) => match parse_duration(d) {
                        Some(d) if d > MAX_ADVANCE => self.say(ReplyKind::Error, &format!("/clock advance: {d_} is more than the 30 days one advance may move; advance in steps of at most 30d\n{usage}", d_ = crate::domain::engine::human(d))),
                        Some(d) => match vc.now().checked_add_signed(d) {
                            Some(target) => {
                                if let Err(e) = self.app.advance_to(vc, target) {
                                    self.say(ReplyKind::Error, &format!("/clock advance: timers could not fire ({e}); the clock stopped early"));
                                }
                            }
                            None => self.say(ReplyKind::Error, &format!("/clock advance: {d} would move the clock past the last date it can show\n{usage}")),
                        },
                        None => self.say(ReplyKind::Error, &format!("/clock advance: '{}' is not a duration; write it like 45m or 1h30m\n{usage}", crate::spec::echo(d))),
                    },
                    (["advance", ..], None) => self.say(
                        ReplyKind::Error,
                        "/clock advance: this console runs on the real clock; start it with --clock virtual:2026-11-23T22:00:00Z to move time",
                    ),
                    _ => self.say(ReplyKind::Error, &format!("/clock: unknown form\n{usage}")),
                }
                Some(true)
            }
            _ => None,
        }
    }
}

/// The longest single `/clock advance`.
const MAX_ADVANCE: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// How long the console, once told to stop, keeps delivering what waits in the outbox.
const FLUSH_ON_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the console stopped reading.
enum Stop {
    /// The input ended, or /quit.
    Done,
    /// SIGTERM or SIGINT.
    Signal(&'static str),
}

/// SIGTERM and SIGINT, caught from the moment this is made (and SIGHUP, logged and ignored:
/// the configuration is read only at start). On a platform without Unix signals, Ctrl-C.
pub struct Termination {
    #[cfg(unix)]
    signals: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl Termination {
    pub fn catch() -> Termination {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(t), Ok(i), Ok(h)) => Some((t, i, h)),
                _ => None,
            };
            Termination { signals }
        }
        #[cfg(not(unix))]
        Termination {}
    }

    /// Waits for SIGTERM or SIGINT and names it.
    pub async fn wait(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((term, int, hup)) = &mut self.signals {
            loop {
                tokio::select! {
                    _ = term.recv() => return "SIGTERM",
                    _ = int.recv() => return "SIGINT",
                    _ = hup.recv() => tracing::warn!("SIGHUP: warroom does not re-read its configuration while running; restart it to apply a change"),
                }
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Holds the console's lease on PostgreSQL while it runs; dropping it stops renewing and gives
/// the lease up, so that a replica (or the next console) takes over at once.
pub struct ConsoleLease(Option<(tokio::task::JoinHandle<()>, Arc<PgStore>, String, i64)>);

impl Drop for ConsoleLease {
    fn drop(&mut self) {
        if let Some((keeper, pg, holder, term)) = self.0.take() {
            keeper.abort();
            if let Err(e) = pg.release(&holder, term, chrono::Utc::now()) {
                tracing::warn!(error = %e, "cannot give the console's lease up; it lapses by itself");
            }
        }
    }
}

/// The console's store: the data folder, or on PostgreSQL the database, taken as the active
/// replica (the console decides and fires like one, so it refuses while another is active).
async fn open_store(
    opts: &ConsoleOptions,
) -> anyhow::Result<(Arc<dyn crate::store::Backend>, ConsoleLease)> {
    let Some(url) = &opts.config.store.url else {
        let store = Store::open_with(&opts.data, &opts.config.store)?;
        return Ok((Arc::new(store), ConsoleLease(None)));
    };
    let pg = Arc::new(PgStore::connect(url)?);
    // The lease is about real processes: it runs on the system clock even when the console's
    // own clock is virtual.
    let holder = format!("console on {}", crate::replica::Replica::default_holder());
    let replica = crate::replica::Replica::new(
        pg.clone(),
        Arc::new(SystemClock),
        holder,
        opts.config.store.lease,
    );
    let probe = pg.clone();
    let (h, ttl) = (replica.holder().to_string(), opts.config.store.lease);
    let lease = tokio::task::spawn_blocking(move || probe.try_acquire(&h, chrono::Utc::now(), ttl))
        .await??;
    let Some(lease) = lease else {
        let active = pg
            .lease()?
            .map(|l| format!("{} at term {}", l.holder, l.term))
            .unwrap_or_default();
        anyhow::bail!(
            "another warroom is active on {} ({active}); the console decides and fires timers like an active replica, so it runs only when none is. Stop that process, or use a data folder (--data) instead",
            pg.target()
        );
    };
    pg.fence(Some(lease.term));
    let holder = replica.holder().to_string();
    let keeper = tokio::spawn(async move {
        let lost = replica.keep(lease.term).await;
        tracing::error!(why = %lost, "the console lost its lease: its commands are refused from now on");
    });
    Ok((
        pg.clone(),
        ConsoleLease(Some((keeper, pg, holder, lease.term))),
    ))
}

/// Runs the console until the input ends or `/quit`.
pub async fn run(
    opts: ConsoleOptions,
    input: impl AsyncBufRead + Unpin,
    output: Box<dyn Write + Send>,
) -> anyhow::Result<()> {
    let mut termination = Termination::catch();
    // Alert tokens first: a source whose variable is unset stops the start before anything opens.
    let sources = match opts.http {
        Some(_) => Some(crate::http::sources_from_env(&opts.config)?),
        None => None,
    };
    let board = match opts.http {
        Some(_) => crate::http::board_from_env(&opts.config)?,
        None => None,
    };
    let (store, _lease) = open_store(&opts).await?;
    let (clock, virtual_clock): (Arc<dyn Clock>, Option<Arc<VirtualClock>>) = match opts.clock {
        ClockChoice::System => (Arc::new(SystemClock), None),
        ClockChoice::Virtual(start) => {
            let vc = Arc::new(VirtualClock::new(start));
            (vc.clone(), Some(vc))
        }
    };
    let app = Arc::new(App::on(store, opts.config.clone(), clock).without_cards());
    let out = Arc::new(ConsoleOut::new(opts.format, output));
    let port: Arc<dyn ChatPort> = Arc::new(ConsolePort(out.clone()));
    let acting = opts
        .acting
        .unwrap_or_else(|| opts.config.console_user.clone());
    if !opts.config.policy.roster.contains(&acting) {
        anyhow::bail!(
            "--as {acting}: not on the roster; known people: {}",
            opts.config.policy.roster.names()
        );
    }
    let mut session = Session {
        app: app.clone(),
        out: out.clone(),
        virtual_clock: virtual_clock.clone(),
        acting,
        current: None,
        channel: "console".into(),
    };
    if let Some(vc) = &virtual_clock
        && let Some(last) = app.store().last_event_at()?
        && vc.now() < last
    {
        let asked = vc.now();
        vc.set(last);
        session.say(
            ReplyKind::Reply,
            &format!(
                "The virtual clock was asked to start at {}, before this data folder's latest event ({}); it starts there instead, so that the timeline never runs backwards.",
                asked.to_rfc3339_opts(SecondsFormat::Secs, true),
                last.to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        );
    }
    app.init_drills()?;
    app.init_handoffs()?;
    session.set_current(app.latest_open()?.map(|i| i.id));
    if opts.format == Format::Text {
        eprintln!(
            "warroom console · acting as {} · data {} · {} · type /help, /as <user>, /quit",
            session.acting,
            app.store().describe(),
            match &virtual_clock {
                Some(vc) => format!(
                    "virtual clock at {} (/clock advance 30m)",
                    vc.now().to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                None => "real clock".into(),
            }
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut courier = Courier::new(app.clone(), port.clone());
    let mut background = Vec::new();
    // On PostgreSQL, `warroom backup` reads the database itself.
    if app.store().postgres().is_none() {
        background.push(tokio::spawn(crate::backup::serve(
            Arc::downgrade(&app),
            opts.data.clone(),
            stop_rx.clone(),
        )));
    }
    // With alerts arriving over HTTP, messages appear between lines: the courier runs in the
    // background then, also on a virtual clock (and lines no longer drain it themselves).
    let drain_inline = virtual_clock.is_some() && opts.http.is_none();
    if let (Some(addr), Some(sources)) = (opts.http, sources) {
        let readiness = Arc::new(crate::http::Readiness::default());
        // On a virtual clock, timers fire on /clock advance: that is its scheduler.
        readiness.set_scheduler(true);
        let (bound, task) = crate::http::start(
            app.clone(),
            addr,
            sources,
            board.clone(),
            readiness,
            stop_rx.clone(),
        )
        .await?;
        eprintln!(
            "warroom console: http listening on {bound} (POST /alerts/<source>, /health, /ready, /metrics{})",
            if board.is_some() {
                ", the board at /"
            } else {
                ""
            }
        );
        background.push(task);
    }
    if virtual_clock.is_some() && opts.http.is_some() {
        app.fire_due(app.clock().now())?;
        courier.drain().await;
        background.push(tokio::spawn(
            Courier::new(app.clone(), port.clone()).run(stop_rx.clone()),
        ));
    } else if virtual_clock.is_some() {
        // Whatever fell due while no console ran fires now, once, saying how late it is.
        app.fire_due(app.clock().now())?;
        courier.drain().await;
    } else {
        background.push(tokio::spawn(run_scheduler(app.clone(), stop_rx.clone())));
        background.push(tokio::spawn(
            Courier::new(app.clone(), port.clone()).run(stop_rx.clone()),
        ));
    }
    let mut input = input;
    let mut number = 0usize;
    let mut raw = Vec::new();
    let stopped = loop {
        raw.clear();
        // Bytes, not lines of text: one invalid UTF-8 byte must not end the session.
        let read = tokio::select! {
            r = input.read_until(b'\n', &mut raw) => r?,
            sig = termination.wait() => break Stop::Signal(sig),
        };
        if read == 0 {
            break Stop::Done;
        }
        number += 1;
        let text = match std::str::from_utf8(&raw) {
            Ok(t) => t,
            Err(e) => {
                session.say(
                    ReplyKind::Error,
                    &format!(
                        "line {number} is not valid UTF-8 (byte {} is not part of a character), so it was not run; write commands as UTF-8 text",
                        e.valid_up_to() + 1
                    ),
                );
                continue;
            }
        };
        let line = text.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match session.console_command(line) {
            Some(false) => break Stop::Done,
            Some(true) => {}
            None => {
                let actor = app.actor(&session.acting);
                let r = app.run_line(&actor, session.current, line);
                session.say(r.kind, &r.text);
                if r.kind == ReplyKind::Reply
                    && r.incident.is_some()
                    && r.incident != session.current
                {
                    session.set_current(r.incident);
                }
            }
        }
        if drain_inline {
            courier.drain().await;
        }
    };
    if let Stop::Signal(sig) = stopped {
        tracing::info!(
            signal = sig,
            "stopping: no more commands; delivering what waits"
        );
    }
    let _ = stop_tx.send(true);
    for task in background {
        let _ = task.await;
    }
    // What waits goes out now, for a few seconds at most; what is still left stays in the
    // outbox for the next run.
    let _ = tokio::time::timeout(FLUSH_ON_STOP, courier.drain()).await;
    Ok(())
}
