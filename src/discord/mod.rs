//! The Discord front end over serenity: registers the commands from `commands/`, turns
//! interactions (slash commands and nudge buttons) into the same invocations the console runs,
//! and delivers the outbox through `DiscordPort`. The scheduler and courier start once, here,
//! never from the gateway's `ready` (which fires again on every reconnect).

pub mod commands;
pub mod port;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serenity::all::{
    ChannelId, CommandDataOptionValue, CommandInteraction, ComponentInteraction, Context,
    CreateAttachment, CreateAutocompleteResponse, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, EditInteractionResponse,
    EventHandler, GatewayIntents, GuildId, HttpBuilder, Interaction, Member, Ready, ShardManager,
    User,
};
use tokio::sync::watch;

use crate::app::{App, ReplyKind, Response};
use crate::clock::Clock;
use crate::config::Config;
use crate::delivery::Courier;
use crate::delivery::Destination;
use crate::domain::{Actor, IncidentId, RoleKey};
use crate::scheduler::run_scheduler;

pub use port::DiscordPort;

/// Answer within this long, or defer: Discord allows 3 s for the first response.
const ANSWER_BUDGET: Duration = Duration::from_millis(2000);
/// How long an `/incident open` answer waits for its channel, within Discord's 3 s.
const CHANNEL_WAIT: Duration = Duration::from_millis(800);
/// The first answer goes out by then, leaving Discord's 3 s some margin for the round trip.
const FIRST_ANSWER_BY: Duration = Duration::from_millis(2500);
/// The same, once the answer was deferred (Discord then waits 15 minutes).
const DEFERRED_CHANNEL_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct DiscordOptions {
    /// From `DISCORD_TOKEN` only. Never logged.
    pub token: String,
    pub config: Arc<Config>,
    pub data: std::path::PathBuf,
    pub clock: Arc<dyn Clock>,
}

/// A running bot; `stop` shuts it down.
pub struct Running {
    pub app: Arc<App>,
    /// What `/ready` reports; a replica sets its role here.
    pub readiness: Arc<crate::http::Readiness>,
    shards: Arc<ShardManager>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the bot. When this returns, the data folder is released, so another process (or a
    /// restarted bot) can open it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.shards.shutdown_all().await;
        for t in self.tasks {
            let _ = t.await;
        }
        // The gateway handler holds the app weakly, but an interaction being answered holds it
        // for a moment; wait for those, boundedly. (Callers' own clones also count.)
        for _ in 0..200 {
            if Arc::strong_count(&self.app) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(
            "the app is still in use 2 s after stopping; the data folder stays open until it is dropped"
        );
    }
}

fn http(token: &str, api_base: Option<&str>) -> serenity::http::Http {
    let mut b = HttpBuilder::new(token);
    if let Some(base) = api_base {
        // With the rate limiter on, serenity ignores the proxy and calls discord.com.
        b = b
            .proxy(base.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    b.build()
}

fn http_client(token: &str, api_base: Option<&str>) -> serenity::http::Http {
    http(token, api_base)
}

/// `discord.sync_roles`: gives each scheduled role's Discord role to whoever holds it now and
/// takes it from the others the schedule names. A refusal (403: warroom lacks Manage Roles, or
/// its role is below the one it manages) is reported to the ops channel and the SDM.
async fn sync_roles(
    app: std::sync::Weak<App>,
    http: Arc<serenity::http::Http>,
    guild: GuildId,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<crate::app::oncall::RoleSync>,
    mut stop: watch::Receiver<bool>,
) {
    use serenity::all::{RoleId, UserId};
    loop {
        let sync = tokio::select! {
            s = rx.recv() => match s {
                Some(s) => s,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(app) = app.upgrade() else { return };
        let cfg = app.config().clone();
        let Some(role_id) = cfg.discord.roles.get(&sync.role).copied() else {
            continue;
        };
        let user_id = |u: &crate::domain::UserName| cfg.discord.users.get(u).copied();
        let mut changes = Vec::new();
        if let Some(id) = user_id(&sync.holder) {
            changes.push((true, sync.holder.clone(), id));
        }
        for u in &sync.others {
            if let Some(id) = user_id(u) {
                changes.push((false, u.clone(), id));
            }
        }
        for (give, user, id) in changes {
            let reason = Some("warroom: on-call handoff");
            let r = if give {
                http.add_member_role(guild, UserId::new(id), RoleId::new(role_id), reason)
                    .await
            } else {
                http.remove_member_role(guild, UserId::new(id), RoleId::new(role_id), reason)
                    .await
            };
            if let Err(e) = r {
                let status = match &e {
                    serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) => {
                        Some(r.status_code.as_u16())
                    }
                    _ => None,
                };
                let what = if give { "give" } else { "take" };
                let from_to = if give { "to" } else { "from" };
                let why = match status {
                    Some(403) => "Discord refused (403): give warroom's bot the Manage Roles permission, with its own role above the on-call roles".to_string(),
                    Some(s) => format!("Discord answered {s}"),
                    None => format!("{e}"),
                };
                tracing::warn!(role = %sync.role, user = %user, error = %e, "role sync failed");
                let text = format!(
                    "On-call role sync: could not {what} the Discord role for {} {from_to} {user}: {why}. @{} may ping the wrong people until it is fixed.",
                    sync.role, sync.role
                );
                if let Err(e) = app.notify_ops(text) {
                    tracing::error!(error = %e, "cannot queue the role sync notice");
                }
            }
        }
    }
}

/// Registers the commands for the configured guild, or globally.
pub async fn register(token: &str, config: &Config, global: bool) -> anyhow::Result<usize> {
    let http = http(token, config.discord.api_base.as_deref());
    let info = http
        .get_current_application_info()
        .await
        .context("cannot read the application from Discord (is DISCORD_TOKEN right?)")?;
    http.set_application_id(info.id);
    let cmds = commands::registration(crate::spec::CommandSet::builtin());
    let n = cmds.len();
    if global {
        serenity::all::Command::set_global_commands(&http, cmds).await?;
    } else {
        let guild = config
            .discord
            .guild_id
            .context("discord.guild_id is not set; put your server's id in the configuration, or use --global")?;
        GuildId::new(guild).set_commands(&http, cmds).await?;
    }
    Ok(n)
}

/// Starts the bot: opens the store, registers commands, connects to the gateway, and starts
/// the scheduler and the courier once.
pub async fn start(opts: DiscordOptions) -> anyhow::Result<Running> {
    let store = crate::store::open(&opts.data, &opts.config.store)?;
    start_on(opts, store).await
}

/// `start`, on a store already open (the replicas' loop keeps its PostgreSQL store between its
/// turns as active).
pub async fn start_on(
    opts: DiscordOptions,
    store: Arc<dyn crate::store::Backend>,
) -> anyhow::Result<Running> {
    let cfg = opts.config.clone();
    let guild = cfg
        .discord
        .guild_id
        .context("discord.guild_id is not set; put your server's id in the configuration")?;
    // Alert tokens first: a source whose variable is unset stops the start before anything opens.
    let sources = match cfg.http.listen {
        Some(_) => Some(crate::http::sources_from_env(&cfg)?),
        None => {
            if !cfg.alerts.sources.is_empty() {
                tracing::warn!(
                    "alert sources are configured but http.listen is off: no alert can arrive"
                );
            }
            None
        }
    };
    let board = match cfg.http.listen {
        Some(_) => crate::http::board_from_env(&cfg)?,
        None => {
            if cfg.board.enabled {
                tracing::warn!("the board is enabled but http.listen is off: it is not served");
            }
            None
        }
    };
    let readiness = Arc::new(crate::http::Readiness::with_gateway());
    let on_folder = store.postgres().is_none();
    // Everyone mapped to a Discord id can be reached by direct message.
    let reach = cfg.discord.users.keys().cloned().collect();
    let (sync_tx, sync_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut app =
        App::on(store, cfg.clone(), opts.clock.clone()).with_direct(reach, cfg.discord.dm_sdm);
    if cfg.discord.sync_roles {
        app = app.with_role_sync(sync_tx);
    }
    let app = Arc::new(app);
    if cfg.discord.ops_channel_id.is_none() {
        tracing::warn!(
            "discord.ops_channel_id is not set: notices about undeliverable messages reach the SDM by direct message only"
        );
    }
    app.init_drills()?;
    app.init_handoffs()?;
    let api_base = cfg.discord.api_base.clone();
    let http = http(&opts.token, api_base.as_deref());
    let info = http
        .get_current_application_info()
        .await
        .context("cannot reach Discord with DISCORD_TOKEN")?;
    http.set_application_id(info.id);
    GuildId::new(guild)
        .set_commands(
            &http,
            commands::registration(crate::spec::CommandSet::builtin()),
        )
        .await
        .context("cannot register the slash commands")?;

    let port = Arc::new(DiscordPort::new(app.clone(), &opts.token, api_base.clone()));
    // The gateway client shares the configured HTTP client (proxy, rate limiter).
    let mut client = serenity::all::ClientBuilder::new_with_http(http, GatewayIntents::GUILDS)
        .event_handler(Handler {
            app: Arc::downgrade(&app),
            port: Arc::downgrade(&port),
            readiness: readiness.clone(),
        })
        .await
        .context("cannot start the Discord client")?;
    let shards = client.shard_manager.clone();
    let (stop, stop_rx) = watch::channel(false);
    let roles_http = Arc::new(http_client(&opts.token, api_base.as_deref()));
    let mut tasks = vec![
        tokio::spawn(sync_roles(
            Arc::downgrade(&app),
            roles_http,
            GuildId::new(guild),
            sync_rx,
            stop_rx.clone(),
        )),
        tokio::spawn(run_scheduler(app.clone(), stop_rx.clone())),
        tokio::spawn(Courier::new(app.clone(), port).run(stop_rx.clone())),
    ];
    // On a folder, `warroom backup` asks this process (it holds the folder); on PostgreSQL it
    // reads the database itself.
    if on_folder {
        tasks.push(tokio::spawn(crate::backup::serve(
            Arc::downgrade(&app),
            opts.data.clone(),
            stop_rx.clone(),
        )));
    }
    readiness.set_scheduler(true);
    if let (Some(addr), Some(sources)) = (cfg.http.listen, sources) {
        let (_, task) = crate::http::start(
            app.clone(),
            addr,
            sources,
            board,
            readiness.clone(),
            stop_rx.clone(),
        )
        .await?;
        tasks.push(task);
    }
    tasks.push(tokio::spawn(async move {
        if let Err(e) = client.start().await {
            tracing::error!(error = %e, "the Discord gateway client stopped");
        }
    }));
    // Who holds each scheduled role now, for `sync_roles`.
    app.sync_all_roles();
    // Anything queued before a restart goes out now.
    app.outbox_ready.notify_one();
    app.timers_changed.notify_one();
    Ok(Running {
        app,
        readiness,
        shards,
        stop,
        tasks,
    })
}

/// How long a stopping bot keeps delivering what waits in the outbox.
const FLUSH_ON_STOP: Duration = Duration::from_secs(5);

/// Runs the bot until SIGTERM or SIGINT (systemd's stop, Ctrl-C): then it stops taking
/// commands, lets the outbox drain for a few seconds, and exits cleanly. What is still queued
/// stays in the data folder for the next start. SIGHUP is logged and ignored.
pub async fn run(opts: DiscordOptions) -> anyhow::Result<()> {
    let mut termination = crate::console::Termination::catch();
    if let Some(url) = opts.config.store.url.clone() {
        return run_replica(opts, &url, &mut termination).await;
    }
    let running = start(opts).await?;
    tracing::info!("warroom is on Discord; SIGTERM or Ctrl-C stops it");
    let signal = termination.wait().await;
    tracing::info!(signal, "stopping: no more commands; delivering what waits");
    drain_and_stop(running).await;
    Ok(())
}

/// One replica on PostgreSQL (see `replica`): standby until it holds the lease; then active
/// (gateway, scheduler, courier) until it loses it, when it stops them all and is a standby
/// again; at SIGTERM it drains the outbox, gives the lease up and exits.
async fn run_replica(
    opts: DiscordOptions,
    url: &crate::store::postgres::PgUrl,
    termination: &mut crate::console::Termination,
) -> anyhow::Result<()> {
    let pg = Arc::new(crate::store::postgres::PgStore::connect(url)?);
    let replica = crate::replica::Replica::new(
        pg.clone(),
        opts.clock.clone(),
        crate::replica::Replica::default_holder(),
        opts.config.store.lease,
    );
    tracing::warn!(
        holder = replica.holder(),
        database = pg.target(),
        "standby: on PostgreSQL, waiting for the lease"
    );
    loop {
        let listener = StandbyListener::start(&opts, &pg).await;
        let term = tokio::select! {
            t = replica.become_active() => t,
            signal = termination.wait() => {
                tracing::info!(signal, "stopping as a standby");
                listener.stop().await;
                return Ok(());
            }
        };
        // The active's own listener takes the address over.
        listener.stop().await;
        tracing::warn!(
            holder = replica.holder(),
            term,
            "active: took the lease; connecting to Discord, firing what is due and delivering what waits"
        );
        let store: Arc<dyn crate::store::Backend> = pg.clone();
        // The lease is renewed while the bot starts too (connecting to Discord can outlast
        // it); a start that loses it is finished, then stopped, never cut off halfway.
        let keeping = replica.keep(term);
        tokio::pin!(keeping);
        let starting = start_on(opts.clone(), store);
        tokio::pin!(starting);
        let (started, lost) = tokio::select! {
            r = &mut starting => (r, None),
            lost = &mut keeping => (starting.await, Some(lost)),
        };
        let running = match started {
            Ok(r) => {
                r.readiness.set_role(crate::http::Role::Active);
                r
            }
            Err(e) => {
                tracing::error!(term, error = %format!("{e:#}"), "active: cannot start; giving the lease up");
                if lost.is_none() {
                    replica.release(pg.fenced_term().unwrap_or(term)).await;
                }
                tokio::time::sleep(opts.config.store.lease).await;
                continue;
            }
        };
        let lost = match lost {
            Some(lost) => lost,
            None => tokio::select! {
                lost = &mut keeping => lost,
                signal = termination.wait() => {
                    let term = pg.fenced_term().unwrap_or(term);
                    tracing::info!(signal, term, "stopping: no more commands; delivering what waits");
                    drain_and_stop(running).await;
                    replica.release(term).await;
                    tracing::warn!(holder = replica.holder(), term, "stopped: gave the lease up");
                    return Ok(());
                }
            },
        };
        let term = pg.fenced_term().unwrap_or(term);
        tracing::warn!(holder = replica.holder(), term, why = %lost, "deposed: stopping the gateway, scheduler and courier; now a standby");
        running.stop().await;
    }
}

/// A standby's HTTP listener (with `[http] listen`): `/health`, `/ready` and `/metrics` say it
/// is a standby, and the alert intake answers 503 so that the sender retries (the active takes
/// alerts). No scheduler, courier or gateway runs behind it.
struct StandbyListener(Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>);

impl StandbyListener {
    async fn start(opts: &DiscordOptions, pg: &Arc<crate::store::postgres::PgStore>) -> Self {
        let cfg = &opts.config;
        let Some(addr) = cfg.http.listen else {
            return StandbyListener(None);
        };
        let sources = match crate::http::sources_from_env(cfg) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "standby: the HTTP listener cannot start");
                return StandbyListener(None);
            }
        };
        let store: Arc<dyn crate::store::Backend> = pg.clone();
        let app = App::on(store, cfg.clone(), opts.clock.clone());
        app.metrics().set_active(false);
        let (stop, stop_rx) = watch::channel(false);
        match crate::http::start(
            Arc::new(app),
            addr,
            sources,
            None,
            Arc::new(crate::http::Readiness::standby()),
            stop_rx,
        )
        .await
        {
            Ok((_, task)) => StandbyListener(Some((stop, task))),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "standby: the HTTP listener cannot start");
                StandbyListener(None)
            }
        }
    }

    /// Stops it; returns once the address is free again.
    async fn stop(self) {
        if let Some((stop, task)) = self.0 {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

/// Stops taking commands, lets the outbox drain for a few seconds, then stops.
async fn drain_and_stop(running: Running) {
    running.shards.shutdown_all().await;
    let flushed = async {
        while !running
            .app
            .store()
            .outbox()
            .map(|o| o.is_empty())
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(FLUSH_ON_STOP, flushed).await.is_err() {
        tracing::warn!("some messages are still queued; they go out at the next start");
    }
    running.stop().await;
}

/// The gateway event handler. It holds the app weakly: serenity may keep handlers alive after
/// shutdown (we saw it after a reconnect), and they must not keep the data folder locked.
struct Handler {
    app: std::sync::Weak<App>,
    /// Weak for the same reason: the port holds the app.
    port: std::sync::Weak<DiscordPort>,
    /// `/ready` reports the gateway connected while a shard is.
    readiness: Arc<crate::http::Readiness>,
}

/// The handler's work for one event, with the app upgraded for its duration.
struct Live {
    app: Arc<App>,
    port: Option<Arc<DiscordPort>>,
}

impl Live {
    /// Who is acting: their roster name (through discord.users) and role keys (roster roles plus
    /// Discord roles mapped through discord.roles).
    fn actor(&self, user: &User, member: Option<&Member>) -> Actor {
        let d = &self.app.config().discord;
        let name = commands::user_name(d, user.id.get());
        let mut roles = self.app.config().policy.roster.roles_of(&name);
        if let Some(m) = member {
            for r in &m.roles {
                if let Some((key, _)) = d.roles.iter().find(|(_, id)| **id == r.get()) {
                    roles.insert(key.clone());
                }
            }
        }
        Actor { user: name, roles }
    }

    fn incident_for(&self, channel: ChannelId) -> Option<IncidentId> {
        self.app
            .store()
            .adapter_get(&format!("discord/incident/{}", channel.get()))
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .map(IncidentId)
    }

    /// Runs the work off the async threads; answers within the budget, deferring if needed.
    /// With `attach`, a successful answer goes as a file of that name (the report). With
    /// `opening`, the answer names the incident's channel only once it exists.
    async fn answer<F>(
        &self,
        ctx: &Context,
        target: Responder<'_>,
        attach: Option<String>,
        opening: bool,
        work: F,
    ) where
        F: FnOnce() -> Response + Send + 'static,
    {
        let started = std::time::Instant::now();
        let mut job = tokio::task::spawn_blocking(work);
        let response = match tokio::time::timeout(ANSWER_BUDGET, &mut job).await {
            Ok(r) => r,
            Err(_) => {
                let defer = CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new().ephemeral(true),
                );
                let deferred = target.respond(ctx, defer).await;
                if let Err(e) = &deferred {
                    tracing::error!(error = %e, "cannot defer an interaction");
                }
                let r = match job.await {
                    Ok(r) if opening => Ok(self.name_channel(r, DEFERRED_CHANNEL_WAIT).await),
                    r => r,
                };
                let text = match &r {
                    Ok(r) => port::fit(&r.text, port::CONTENT_MAX),
                    Err(e) => format!("warroom failed on this command: {e}"),
                };
                let edited = target
                    .edit(ctx, EditInteractionResponse::new().content(text.clone()))
                    .await;
                if let Err(e) = edited {
                    tracing::error!(error = %e, deferred = deferred.is_ok(), "cannot send a deferred answer");
                    self.tell_anyway(ctx, &target, &text, r.ok().and_then(|r| r.incident))
                        .await;
                }
                return;
            }
        };
        let response = match response {
            Ok(r) if opening => {
                // Within Discord's 3 s for the first answer, whatever the work took.
                let left = FIRST_ANSWER_BY.saturating_sub(started.elapsed());
                Ok(self.name_channel(r, CHANNEL_WAIT.min(left)).await)
            }
            r => r,
        };
        let (text, ephemeral, ok, incident) = match response {
            Ok(r) => (
                r.text,
                r.kind == ReplyKind::Error || r.incident.is_none(),
                r.kind == ReplyKind::Reply,
                r.incident,
            ),
            Err(e) => (
                format!("warroom failed on this command: {e}"),
                true,
                false,
                None,
            ),
        };
        if let (Some(name), true, Responder::Command(cmd)) = (attach, ok, &target) {
            if let Err(e) = respond_with_file(ctx, cmd, &name, text.into_bytes()).await {
                tracing::error!(error = %e, "cannot send the report");
            }
            return;
        }
        let text = if text.is_empty() {
            "Done.".to_string()
        } else {
            text
        };
        let text = port::fit(&text, port::CONTENT_MAX);
        let msg = CreateInteractionResponseMessage::new()
            .content(text.clone())
            .ephemeral(ephemeral);
        if let Err(e) = target
            .respond(ctx, CreateInteractionResponse::Message(msg))
            .await
        {
            tracing::error!(error = %e, "cannot answer an interaction");
            self.tell_anyway(ctx, &target, &text, incident).await;
        }
    }

    /// The answer to an `/incident open` names its channel only if Discord has it: the channel
    /// is asked for here (the courier would create it a moment later anyway), and if it cannot
    /// be had, the answer says why.
    async fn name_channel(&self, mut r: Response, wait: Duration) -> Response {
        let (Some(port), Some(id), ReplyKind::Reply) = (&self.port, r.incident, r.kind) else {
            return r;
        };
        let Ok(Some(inc)) = self.app.store().incident(id) else {
            return r;
        };
        let named = format!("#{}", inc.channel);
        if !r.text.contains(&named) {
            return r;
        }
        let unnamed = |text: &str, why: String| {
            let text = text
                .replace(&format!(" in {named}"), "")
                .replace(&format!(", in {named}"), "");
            format!("{text}\n{why}")
        };
        // The creation runs on its own task: if the answer stops waiting, the request goes on
        // holding the incident's creation lock, so the courier cannot make a second channel.
        let creating = {
            let port = port.clone();
            tokio::spawn(async move { port.ensure_channel(id).await })
        };
        let made = match tokio::time::timeout(wait, creating).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(join)) => Ok(Err(crate::port::DeliveryError::Retry {
                after: None,
                reason: format!("the channel request failed: {join}"),
            })),
            Err(elapsed) => Err(elapsed),
        };
        match made {
            Ok(Ok(ch)) => r.text = r.text.replace(&named, &format!("<#{}>", ch.get())),
            Ok(Err(
                crate::port::DeliveryError::Unreachable { reason }
                | crate::port::DeliveryError::Permanent { reason },
            )) => {
                r.text = unnamed(
                    &r.text,
                    format!(
                        "{id} is open, but it has no channel yet: {reason}. warroom keeps trying; until then its nudges go by direct message and to the ops channel, and /incident status says so."
                    ),
                )
            }
            Ok(Err(crate::port::DeliveryError::Retry { reason, .. })) => {
                r.text = unnamed(
                    &r.text,
                    format!(
                        "{id} is open; its channel is not made yet ({reason}). warroom keeps trying, and /incident status says how it goes."
                    ),
                )
            }
            Err(_) => {
                r.text = unnamed(
                    &r.text,
                    format!(
                        "{id} is open; Discord is slow to create its channel, which will appear under the incidents category."
                    ),
                )
            }
        }
        r
    }

    /// The first response failed (Discord forgot the interaction: 10062, or it took too long):
    /// the person still learns the outcome, by a follow-up where Discord takes one, otherwise by
    /// a direct message (queued durably in the outbox), otherwise in the incident's channel.
    async fn tell_anyway(
        &self,
        ctx: &Context,
        target: &Responder<'_>,
        text: &str,
        incident: Option<IncidentId>,
    ) {
        let follow = CreateInteractionResponseFollowup::new()
            .content(port::fit(text, port::CONTENT_MAX))
            .ephemeral(true);
        match target.followup(ctx, follow).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot send a follow-up either; the answer goes by direct message")
            }
        }
        let user = target.user();
        let name = commands::user_name(&self.app.config().discord, user.id.get());
        let inc = incident.and_then(|id| self.app.store().incident(id).ok().flatten());
        let to = if self.app.config().discord.users.contains_key(&name)
            || name.as_str().starts_with("discord-")
        {
            Destination::Direct { user: name }
        } else {
            Destination::Incident
        };
        let (id, channel) = inc
            .as_ref()
            .map_or((IncidentId(0), App::OPS_CHANNEL.to_string()), |i| {
                (i.id, i.channel.clone())
            });
        let Ok(outbox_id) = self.app.store().outbox_id() else {
            tracing::error!("cannot queue the lost answer: no outbox id");
            return;
        };
        let mut o = crate::store::Outgoing::new(
            outbox_id,
            id,
            &channel,
            crate::domain::Message {
                at: self.app.clock().now(),
                kind: crate::domain::MessageKind::Post,
                text: format!("Discord lost the answer to your command, so here it is: {text}"),
                mentions: Vec::new(),
                buttons: Vec::new(),
                nudge: None,
            },
        );
        o.to = to;
        if let Err(e) = self.app.store().queue(&[o]) {
            tracing::error!(error = %e, "cannot queue the lost answer");
        }
        self.app.outbox_ready.notify_one();
    }

    async fn on_command(&self, ctx: &Context, cmd: &CommandInteraction) {
        let actor = self.actor(&cmd.user, cmd.member.as_deref());
        let place = self.incident_for(cmd.channel_id);
        let app = self.app.clone();
        let inv = commands::invocation(
            app.specs(),
            &app.config().discord,
            &cmd.data.name,
            &cmd.data.options,
        );
        let attach = (cmd.data.name == "report")
            .then(|| place.map(|id| format!("{id}-report.md")))
            .flatten();
        let opening = cmd.data.name == "incident"
            && cmd.data.options.first().is_some_and(|o| o.name == "open");
        self.answer(
            ctx,
            Responder::Command(cmd),
            attach,
            opening,
            move || match inv {
                Ok(inv) => app.execute(&actor, place, &inv),
                Err(e) => Response {
                    kind: ReplyKind::Error,
                    text: e,
                    incident: None,
                },
            },
        )
        .await;
    }

    /// Suggests the service's plan templates for `/plan open title:`.
    async fn on_autocomplete(&self, ctx: &Context, a: &CommandInteraction) {
        let Some(focused) = a.data.autocomplete() else {
            return;
        };
        let mut reply = CreateAutocompleteResponse::new();
        if a.data.name == "plan" && focused.name == "title" {
            let typed = focused.value.to_lowercase();
            let chosen_plan = a.data.options.first().and_then(|sub| match &sub.value {
                CommandDataOptionValue::SubCommand(opts) => {
                    opts.iter().find_map(|o| match (&*o.name, &o.value) {
                        ("plan", CommandDataOptionValue::String(p)) => {
                            p.parse::<crate::domain::Plan>().ok()
                        }
                        _ => None,
                    })
                }
                _ => None,
            });
            let service = self
                .incident_for(a.channel_id)
                .and_then(|id| self.app.store().incident(id).ok().flatten())
                .map(|i| i.service);
            let templates = service
                .and_then(|s| self.app.config().policy.services.get(&s).cloned())
                .map(|s| s.plans)
                .unwrap_or_default();
            for (plan, t) in templates.iter().take(25) {
                if chosen_plan.is_some_and(|p| p != *plan)
                    || !t.title.to_lowercase().contains(&typed)
                {
                    continue;
                }
                reply = reply.add_string_choice(
                    port::fit(&format!("Plan {plan}: {}", t.title), 100),
                    port::fit(&t.title, 100),
                );
            }
        }
        if let Err(e) = a
            .create_response(&ctx.http, CreateInteractionResponse::Autocomplete(reply))
            .await
        {
            tracing::error!(error = %e, "cannot answer an autocomplete");
        }
    }

    async fn on_button(&self, ctx: &Context, c: &ComponentInteraction) {
        let actor = self.actor(&c.user, c.member.as_ref());
        let app = self.app.clone();
        let line = button_line(&c.data.custom_id, &app);
        let opening = line
            .as_ref()
            .is_some_and(|(_, l)| l.starts_with("/incident open"));
        self.answer(
            ctx,
            Responder::Component(c),
            None,
            opening,
            move || match line {
                Some((inc, line)) => app.run_line(&actor, Some(inc), &line),
                None => Response {
                    kind: ReplyKind::Error,
                    text: "this button is not warroom's, or is from an older version".into(),
                    incident: None,
                },
            },
        )
        .await;
    }
}

/// Answers with a file attached. serenity writes a new attachment's id as the number 0, which
/// Discord's OpenAPI description (a snowflake string) rejects, so the payload is written here
/// and the request built by serenity.
async fn respond_with_file(
    ctx: &Context,
    cmd: &CommandInteraction,
    name: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    let payload = serde_json::json!({
        "type": 4,
        "data": {
            "content": format!("{name} is attached."),
            "attachments": [{"id": "0", "filename": name}],
        }
    });
    let req = serenity::all::Request::new(
        serenity::all::Route::InteractionResponse {
            interaction_id: cmd.id,
            token: &cmd.token,
        },
        serenity::all::LightMethod::Post,
    )
    .multipart(Some(serenity::all::Multipart {
        upload: serenity::all::MultipartUpload::Attachments(vec![CreateAttachment::bytes(
            bytes, name,
        )]),
        fields: vec![],
        payload_json: Some(payload.to_string()),
    }))
    .build(
        &reqwest::Client::new(),
        ctx.http.token(),
        ctx.http.proxy.as_deref(),
    )?;
    let resp = req.send().await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "Discord answered {}",
        resp.status()
    );
    Ok(())
}

/// The command line a nudge button stands for: `wr:<action>:<incident>:<nudge>`.
fn button_line(custom_id: &str, app: &App) -> Option<(IncidentId, String)> {
    let mut parts = custom_id.split(':');
    if parts.next()? != "wr" {
        return None;
    }
    let action = parts.next()?;
    let inc = IncidentId(parts.next()?.parse().ok()?);
    let arg = parts.next()?;
    let nudge = arg;
    let line = match action {
        "drill" => {
            let service = arg;
            if !app.config().policy.services.contains_key(service) {
                return None;
            }
            format!(
                "/incident open title:\"DR drill: {service}\" severity:2 service:{service} drill:true"
            )
        }
        "check" => {
            let (plan, item) = arg.split_at(1);
            format!("/plan check plan:{plan} item:{item}")
        }
        "ack" => format!("/ack nudge:{nudge}"),
        "snooze" => {
            format!("/snooze nudge:{nudge} duration:15m reason:\"snoozed from the nudge button\"")
        }
        "escalate" => "/escalate reason:\"escalated from a nudge button\"".to_string(),
        "planb" => {
            let service = app
                .store()
                .incident(inc)
                .ok()
                .flatten()
                .map_or("the service".into(), |i| i.service);
            let team = if app.config().policy.knows_role(&RoleKey::new("rebuild")) {
                " team:rebuild"
            } else {
                ""
            };
            let templated = app
                .config()
                .policy
                .services
                .get(&service)
                .is_some_and(|s| s.plans.contains_key(&crate::domain::Plan::B));
            if templated {
                // The service's Plan B template supplies title, team, cadence and checklist.
                "/plan open plan:B".to_string()
            } else {
                format!(
                    "/plan open plan:B title:\"Fallback: restore {service} (opened from the Plan B nudge)\"{team}"
                )
            }
        }
        _ => return None,
    };
    Some((inc, line))
}

enum Responder<'a> {
    Command(&'a CommandInteraction),
    Component(&'a ComponentInteraction),
}

impl Responder<'_> {
    async fn respond(&self, ctx: &Context, r: CreateInteractionResponse) -> serenity::Result<()> {
        match self {
            Responder::Command(c) => c.create_response(&ctx.http, r).await,
            Responder::Component(c) => c.create_response(&ctx.http, r).await,
        }
    }
    async fn followup(
        &self,
        ctx: &Context,
        f: CreateInteractionResponseFollowup,
    ) -> serenity::Result<()> {
        match self {
            Responder::Command(c) => c.create_followup(&ctx.http, f).await.map(|_| ()),
            Responder::Component(c) => c.create_followup(&ctx.http, f).await.map(|_| ()),
        }
    }
    fn user(&self) -> &User {
        match self {
            Responder::Command(c) => &c.user,
            Responder::Component(c) => &c.user,
        }
    }
    async fn edit(&self, ctx: &Context, e: EditInteractionResponse) -> serenity::Result<()> {
        match self {
            Responder::Command(c) => c.edit_response(&ctx.http, e).await.map(|_| ()),
            Responder::Component(c) => c.edit_response(&ctx.http, e).await.map(|_| ()),
        }
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        let Some(app) = self.app.upgrade() else {
            return; // stopped
        };
        let live = Live {
            app,
            port: self.port.upgrade(),
        };
        match &interaction {
            Interaction::Command(cmd) => live.on_command(&ctx, cmd).await,
            Interaction::Component(c) => live.on_button(&ctx, c).await,
            Interaction::Autocomplete(a) => live.on_autocomplete(&ctx, a).await,
            _ => {}
        }
    }

    async fn ready(&self, _ctx: Context, ready: Ready) {
        // Only logs and marks: `ready` fires again on every reconnect, so nothing starts here.
        tracing::info!(user = %ready.user.name, guilds = ready.guilds.len(), "connected to the Discord gateway");
        self.readiness.set_gateway(true);
    }

    async fn shard_stage_update(&self, _ctx: Context, event: serenity::all::ShardStageUpdateEvent) {
        self.readiness
            .set_gateway(event.new == serenity::all::ConnectionStage::Connected);
    }
}
