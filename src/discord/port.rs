//! Delivery to Discord: incident channels (recreated if someone deletes one), the pinned status
//! card, nudges with buttons and mentions, direct messages and the ops channel. Requests are
//! built by serenity and sent here with timeouts, through our own rate limiter, so that
//! `retry_after`, buckets and global limits are kept, and each failure reaches the courier
//! classified: retry, unreachable, or refused for good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use serenity::all::{
    ButtonStyle, ChannelId, ChannelType, CreateActionRow, CreateAllowedMentions, CreateButton,
    CreateChannel, CreateEmbed, CreateMessage, EditMessage, GuildId, LightMethod, MessageId, Nonce,
    Request, RoleId, Route, UserId,
};

use crate::app::App;
use crate::delivery::Destination;
use crate::delivery::ratelimit::{Limited, Outcome, RateLimits};
use crate::domain::engine::relative;
use crate::domain::{
    Button, CallbackOutcome, Incident, IncidentId, IncidentRole, IncidentState, MessageKind,
    PlanBDecision, Target, UserName,
};
use crate::port::{BoxFuture, ChatPort, DeliveryError};
use crate::store::Outgoing;

/// Discord's limits (see shared/discord/FAKE-DISCORD.md).
pub const CONTENT_MAX: usize = 2000;
const EMBED_TITLE_MAX: usize = 256;
const EMBED_DESCRIPTION_MAX: usize = 4096;
const FIELD_NAME_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1024;
const FIELDS_MAX: usize = 25;
const EMBED_TOTAL_MAX: usize = 6000;

/// Discord's error codes that warroom acts on.
const UNKNOWN_CHANNEL: i64 = 10003;
const UNKNOWN_MESSAGE: i64 = 10008;
const MISSING_PERMISSIONS: i64 = 50013;

/// How many of a channel's latest messages are read to find out whether a message whose first
/// attempt got no answer was posted after all.
const RECENT: u32 = 50;

/// Cuts text to `max` characters, saying so visibly.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let marker = " … (truncated)";
    let keep = max.saturating_sub(marker.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(marker);
    out
}

/// A request that failed, as Discord answered it, or did not.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The HTTP status; None when no answer came (timeout, connection lost).
    pub status: Option<u16>,
    /// Discord's JSON error code.
    pub code: Option<i64>,
    /// For people and logs: `403 50013: Missing Permissions`.
    pub what: String,
    pub after: Option<Duration>,
    /// The request could not even be built: nothing was sent.
    pub local: bool,
}

impl Failure {
    fn is(&self, code: i64) -> bool {
        self.code == Some(code)
    }
}

impl From<Failure> for DeliveryError {
    /// Transient failures are retried; a refused token or permission makes the destination
    /// unreachable (kept, retried with capped backoff, nudges by the fallback route); anything
    /// else Discord refused is refused for good.
    fn from(f: Failure) -> DeliveryError {
        match f.status {
            _ if f.local => DeliveryError::Permanent { reason: f.what },
            None => DeliveryError::Retry {
                after: None,
                reason: f.what,
            },
            Some(429) => DeliveryError::Retry {
                after: f.after,
                reason: f.what,
            },
            Some(s) if s >= 500 => DeliveryError::Retry {
                after: None,
                reason: f.what,
            },
            Some(401) => DeliveryError::Unreachable {
                reason: format!(
                    "{}: Discord refused the bot's token; check DISCORD_TOKEN",
                    f.what
                ),
            },
            Some(403) => DeliveryError::Unreachable {
                reason: format!("{}: the bot lacks a permission there", f.what),
            },
            Some(_) => DeliveryError::Permanent { reason: f.what },
        }
    }
}

/// The rate-limit key of a request: its method and path, with message ids left out (Discord
/// buckets by channel, guild or webhook, not by message).
fn route_key(method: LightMethod, route: Route<'_>) -> String {
    let path = route.path();
    let path = path.split("/api/v10").nth(1).unwrap_or(&path);
    let mut out = String::new();
    let mut after_messages = false;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if after_messages && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(":id");
        } else {
            out.push_str(seg);
        }
        after_messages = seg == "messages" || seg == "pins";
    }
    format!("{method:?} {out}")
}

fn header<'h>(h: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub struct DiscordPort {
    app: Arc<App>,
    client: reqwest::Client,
    /// `Bot <token>`; never logged.
    auth: String,
    proxy: Option<String>,
    limits: RateLimits,
    /// One channel creation at a time per incident: the courier and an `/incident open` answer
    /// may both ask for the same channel.
    creating: Mutex<HashMap<IncidentId, Arc<tokio::sync::Mutex<()>>>>,
}

impl DiscordPort {
    pub fn new(app: Arc<App>, token: &str, proxy: Option<String>) -> DiscordPort {
        let timeout = app.config().discord.request_timeout;
        let client = reqwest::Client::builder()
            .connect_timeout(timeout / 3)
            .timeout(timeout)
            .build()
            .unwrap_or_else(|e| {
                // The courier's own delivery timeout still bounds every delivery.
                tracing::error!(error = %e, "cannot build an HTTP client with timeouts; using the default");
                reqwest::Client::new()
            });
        DiscordPort {
            app,
            client,
            auth: format!("Bot {}", token.trim_start_matches("Bot ")),
            proxy,
            limits: RateLimits::default(),
            creating: Mutex::new(HashMap::new()),
        }
    }

    fn permanent(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }

    fn local(what: impl Into<String>) -> Failure {
        Failure {
            status: None,
            code: None,
            what: what.into(),
            after: None,
            local: true,
        }
    }

    /// A store or lookup error met halfway through a request sequence, as a `Failure`: a
    /// retry stays a retry, anything else is final.
    fn from_delivery(e: DeliveryError) -> Failure {
        match e {
            DeliveryError::Retry { reason, .. } => Failure {
                status: None,
                code: None,
                what: reason,
                after: None,
                local: false,
            },
            DeliveryError::Unreachable { reason } | DeliveryError::Permanent { reason } => {
                Self::local(reason)
            }
        }
    }

    fn guild(&self) -> Result<GuildId, DeliveryError> {
        self.app
            .config()
            .discord
            .guild_id
            .map(GuildId::new)
            .ok_or_else(|| Self::permanent("discord.guild_id is not set in the configuration"))
    }

    /// Whether this process may send now: on PostgreSQL, only the active replica may.
    async fn may_act(&self) -> bool {
        let app = self.app.clone();
        let now = self.app.clock().now();
        let may = tokio::task::spawn_blocking(move || app.store().may_act(now)).await;
        matches!(may, Ok(Ok(true)))
    }

    /// Sends one request once its rate limits admit it, and reads what Discord answered.
    // Indexing here is serde_json's `Value[&str]`, which yields Null for a missing key or a
    // non-object and never panics: Discord's answers are read leniently, then checked.
    #[allow(clippy::indexing_slicing)]
    async fn send(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<Vec<u8>>,
        params: Option<Vec<(&'static str, String)>>,
    ) -> Result<Json, Failure> {
        let key = route_key(method, route);
        let req = Request::new(route, method)
            .body(body)
            .params(params)
            .build(&self.client, &self.auth, self.proxy.as_deref())
            .map_err(|e| Self::local(format!("cannot build the request: {e}")))?;
        let ticket = self.limits.acquire(&key).await;
        // A replica that is no longer the active one sends nothing (see `replica`).
        if self.app.store().postgres().is_some() && !self.may_act().await {
            ticket.settle(&Outcome::default(), Instant::now());
            return Err(Failure {
                status: None,
                code: None,
                what: "not sent: this replica is not the active one (its lease lapsed, or another took over)".into(),
                after: Some(Duration::from_secs(1)),
                local: false,
            });
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                ticket.settle(&Outcome::default(), Instant::now());
                let what = if e.is_timeout() {
                    format!(
                        "no answer from Discord within {:?}",
                        self.app.config().discord.request_timeout
                    )
                } else {
                    format!("network error: {e}")
                };
                return Err(Failure {
                    status: None,
                    code: None,
                    what,
                    after: None,
                    local: false,
                });
            }
        };
        let status = resp.status().as_u16();
        let h = resp.headers();
        let header_after = header(h, "retry-after").and_then(|s| s.parse::<f64>().ok());
        let mut outcome = Outcome {
            bucket: header(h, "x-ratelimit-bucket").map(str::to_string),
            remaining: header(h, "x-ratelimit-remaining").and_then(|s| s.parse().ok()),
            reset_after: header(h, "x-ratelimit-reset-after")
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            limited: None,
            answered: true,
        };
        let global_header = header(h, "x-ratelimit-global").is_some_and(|v| v == "true")
            || header(h, "x-ratelimit-scope").is_some_and(|v| v == "global");
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                // The status came but the body did not: the outcome of a create is unknown.
                ticket.settle(&Outcome::default(), Instant::now());
                return Err(Failure {
                    status: None,
                    code: None,
                    what: format!("Discord's answer broke off: {e}"),
                    after: None,
                    local: false,
                });
            }
        };
        let body: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        let after = if status == 429 {
            body["retry_after"]
                .as_f64()
                .or(header_after)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
        } else {
            None
        };
        if status == 429 {
            outcome.limited = Some(Limited {
                retry_after: after.unwrap_or(Duration::from_secs(1)),
                global: global_header || body["global"].as_bool() == Some(true),
            });
        }
        ticket.settle(&outcome, Instant::now());
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let code = body["code"].as_i64();
        let what = format!(
            "Discord {status}{}: {}",
            code.filter(|c| *c != 0)
                .map_or(String::new(), |c| format!(" {c}")),
            body["message"].as_str().unwrap_or("")
        );
        Err(Failure {
            status: Some(status),
            code,
            what,
            after,
            local: false,
        })
    }

    fn json<T: serde::Serialize>(v: &T) -> Option<Vec<u8>> {
        serde_json::to_vec(v).ok()
    }

    fn incident(&self, id: IncidentId) -> Result<Incident, DeliveryError> {
        self.app
            .store()
            .incident(id)
            .map_err(|e| DeliveryError::Retry {
                after: None,
                reason: e.to_string(),
            })?
            .ok_or_else(|| Self::permanent(format!("{id} is not in the store")))
    }

    fn get_id(&self, key: &str) -> Option<u64> {
        self.app
            .store()
            .adapter_get(key)
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
    }

    fn put_id(&self, key: &str, id: u64) -> Result<(), DeliveryError> {
        self.app
            .store()
            .adapter_put(key, id.to_string().as_bytes())
            .map_err(|e| DeliveryError::Retry {
                after: None,
                reason: format!("cannot record a Discord id: {e}"),
            })
    }

    fn forget(&self, key: &str) {
        if let Err(e) = self.app.store().adapter_remove(key) {
            tracing::error!(error = %e, key, "cannot forget a Discord id");
        }
    }

    fn creation_lock(&self, incident: IncidentId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(incident).or_default().clone()
    }

    /// The incident's channel if Discord has it now: known, found by name (after a crash), or
    /// created. `/incident open` asks this before it answers, so that its answer names the
    /// channel only if it exists.
    pub async fn ensure_channel(&self, incident: IncidentId) -> Result<ChannelId, DeliveryError> {
        let inc = self.incident(incident)?;
        self.channel(incident, &inc.channel).await
    }

    /// The incident's channel: known, found by name (after a crash), or created now.
    // Indexing here is serde_json's `Value[&str]`, which yields Null for a missing key or a
    // non-object and never panics: Discord's answers are read leniently, then checked.
    #[allow(clippy::indexing_slicing)]
    async fn channel(&self, incident: IncidentId, name: &str) -> Result<ChannelId, DeliveryError> {
        let key = format!("discord/channel/{}", incident.0);
        if let Some(id) = self.get_id(&key) {
            return Ok(ChannelId::new(id));
        }
        let lock = self.creation_lock(incident);
        let _one_at_a_time = lock.lock().await;
        if let Some(id) = self.get_id(&key) {
            return Ok(ChannelId::new(id));
        }
        let guild = self.guild()?;
        let category = self.app.config().discord.incident_category_id;
        let existing = self
            .send(
                Route::GuildChannels { guild_id: guild },
                LightMethod::Get,
                None,
                None,
            )
            .await?;
        let found = existing.as_array().and_then(|list| {
            list.iter().find(|c| {
                c["name"].as_str() == Some(name)
                    && category.is_none_or(|cat| c["parent_id"].as_str() == Some(&cat.to_string()))
            })
        });
        let id = match found {
            Some(c) => c["id"].as_str().and_then(|s| s.parse::<u64>().ok()),
            None => {
                let inc = self.incident(incident).ok();
                let mut create = CreateChannel::new(fit(name, 100)).kind(ChannelType::Text);
                if let Some(cat) = category {
                    create = create.category(ChannelId::new(cat));
                }
                if let Some(inc) = inc {
                    create = create.topic(fit(
                        &format!(
                            "{} · {} · {}{}",
                            inc.id,
                            inc.severity,
                            inc.title,
                            if inc.is_drill() { " · DRILL" } else { "" }
                        ),
                        1024,
                    ));
                }
                let made = self
                    .send(
                        Route::GuildChannels { guild_id: guild },
                        LightMethod::Post,
                        Self::json(&create),
                        None,
                    )
                    .await
                    .map_err(|f| match f.status {
                        Some(403) => DeliveryError::Unreachable {
                            reason: format!(
                                "Discord refused to create the incident's channel ({}). Give the bot the Manage Channels permission{}",
                                f.what,
                                if f.is(MISSING_PERMISSIONS) { " on the incidents category" } else { "" }
                            ),
                        },
                        _ => f.into(),
                    })?;
                made["id"].as_str().and_then(|s| s.parse::<u64>().ok())
            }
        }
        .ok_or_else(|| Self::permanent("Discord answered a channel without an id"))?;
        self.put_id(&key, id)?;
        self.put_id(&format!("discord/incident/{id}"), incident.0)?;
        Ok(ChannelId::new(id))
    }

    /// Someone deleted the incident's channel: forget it (and its card) so that it is made anew.
    fn forget_channel(&self, incident: IncidentId, channel: ChannelId) {
        self.forget(&format!("discord/channel/{}", incident.0));
        self.forget(&format!("discord/incident/{}", channel.get()));
        self.forget(&format!("discord/card/{}", incident.0));
    }

    fn mention(&self, t: &Target) -> (String, Option<Result<RoleId, UserId>>) {
        let d = &self.app.config().discord;
        match t {
            Target::Role(r) => match d.roles.get(r) {
                Some(id) => (format!("<@&{id}>"), Some(Ok(RoleId::new(*id)))),
                None => (format!("@{r}"), None),
            },
            Target::User(u) => match d.users.get(u) {
                Some(id) => (format!("<@{id}>"), Some(Err(UserId::new(*id)))),
                None => (format!("@{u}"), None),
            },
        }
    }

    fn message(&self, msg: &Outgoing, nonce: String) -> CreateMessage {
        let mut text = msg.text.clone();
        let mut prefix = Vec::new();
        let mut roles = Vec::new();
        let mut users = Vec::new();
        for t in &msg.mentions {
            let (m, id) = self.mention(t);
            text = text.replace(&t.to_string(), &m);
            prefix.push(m);
            match id {
                Some(Ok(r)) => roles.push(r),
                Some(Err(u)) => users.push(u),
                None => {}
            }
        }
        let content = if prefix.is_empty() {
            text
        } else {
            format!("{} {text}", prefix.join(" "))
        };
        let mut m = CreateMessage::new()
            .content(fit(&content, CONTENT_MAX))
            .allowed_mentions(CreateAllowedMentions::new().roles(roles).users(users))
            .nonce(Nonce::String(nonce))
            .enforce_nonce(true);
        if !msg.buttons.is_empty() {
            let nudge = msg.nudge.map_or(0, |n| n.0).to_string();
            let inc = msg.incident.0;
            let buttons: Vec<CreateButton> = msg
                .buttons
                .iter()
                .map(|b| {
                    let (id, label, style, arg) = match b {
                        Button::Ack => (
                            "ack",
                            "Acknowledge".to_string(),
                            ButtonStyle::Primary,
                            nudge.clone(),
                        ),
                        Button::Snooze15m => (
                            "snooze",
                            "Snooze 15m".into(),
                            ButtonStyle::Secondary,
                            nudge.clone(),
                        ),
                        Button::Escalate => (
                            "escalate",
                            "Escalate".into(),
                            ButtonStyle::Danger,
                            nudge.clone(),
                        ),
                        Button::OpenPlanB => (
                            "planb",
                            "Open Plan B".into(),
                            ButtonStyle::Success,
                            nudge.clone(),
                        ),
                        Button::Check { plan, item } => (
                            "check",
                            format!("Tick {item}"),
                            ButtonStyle::Secondary,
                            format!("{plan}{item}"),
                        ),
                        Button::StartDrill { service } => (
                            "drill",
                            "Start the drill".into(),
                            ButtonStyle::Success,
                            service.clone(),
                        ),
                        Button::AckNudge { nudge } => (
                            "ack",
                            format!("Ack {nudge}"),
                            ButtonStyle::Primary,
                            nudge.0.to_string(),
                        ),
                    };
                    CreateButton::new(fit(&format!("wr:{id}:{inc}:{arg}"), 100))
                        .label(label)
                        .style(style)
                })
                .collect();
            // Discord takes at most five buttons a row and five rows.
            let rows = buttons
                .chunks(5)
                .take(5)
                .map(|row| CreateActionRow::Buttons(row.to_vec()))
                .collect();
            m = m.components(rows);
        }
        m
    }

    async fn post(&self, channel: ChannelId, m: &CreateMessage) -> Result<Json, Failure> {
        self.send(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Post,
            Self::json(m),
            None,
        )
        .await
    }

    /// The channel's latest messages, newest first.
    async fn recent(&self, channel: ChannelId) -> Result<Json, Failure> {
        self.send(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Get,
            None,
            Some(vec![("limit", RECENT.to_string())]),
        )
        .await
    }

    /// The oldest of the channel's latest messages that a bot posted and that `matches`. Without
    /// Read Message History (403) nothing can be found: the caller posts, and the nonce still
    /// guards a retry within Discord's window. Better once more than never.
    async fn find_recent(
        &self,
        channel: ChannelId,
        matches: impl Fn(&Json) -> bool,
    ) -> Result<Option<Json>, Failure> {
        let recent = match self.recent(channel).await {
            Ok(recent) => recent,
            Err(f) if f.status == Some(403) => {
                tracing::warn!(channel = channel.get(), reason = %f.what, "cannot read the channel's history to check an earlier attempt; sending");
                return Ok(None);
            }
            Err(f) => return Err(f),
        };
        // Listed newest first.
        Ok(recent.as_array().and_then(|list| {
            list.iter()
                .rev()
                .find(|m| m.pointer("/author/bot") == Some(&Json::Bool(true)) && matches(m))
                .cloned()
        }))
    }

    /// Posts `m` at most once, as far as can be known, under the attempt record `key`. Discord
    /// drops a repeated nonce only for a few minutes, so the attempt is recorded (in the store,
    /// shared by replicas) before it is sent, and a later try that finds it first looks among
    /// the channel's latest for a message that `matches`. Returns the message, and whether it
    /// was found rather than made. A refusal (4xx) says for sure that nothing was made, and
    /// drops the record; otherwise the caller drops it once the outcome is kept.
    async fn post_recorded(
        &self,
        channel: ChannelId,
        key: &str,
        m: &CreateMessage,
        matches: impl Fn(&Json) -> bool,
    ) -> Result<(Json, bool), Failure> {
        if self.get_id(key) == Some(channel.get())
            && let Some(found) = self.find_recent(channel, matches).await?
        {
            tracing::info!(
                attempt = key,
                channel = channel.get(),
                "an earlier attempt had posted it; not sending it again"
            );
            return Ok((found, true));
        }
        self.put_id(key, channel.get())
            .map_err(Self::from_delivery)?;
        let r = self.post(channel, m).await;
        if r.as_ref()
            .err()
            .is_some_and(|f| f.status.is_some_and(|s| s < 500))
        {
            self.forget(key);
        }
        r.map(|made| (made, false))
    }

    /// Posts one outbox message at most once (`post_recorded`, found again by its text). The
    /// record stays until the courier has marked the message delivered (`ChatPort::delivered`):
    /// a process killed in between leaves it, and whoever delivers next looks first.
    // Indexing here is serde_json's `Value[&str]`, which yields Null for a missing key or a
    // non-object and never panics: Discord's answers are read leniently, then checked.
    #[allow(clippy::indexing_slicing)]
    async fn post_once(
        &self,
        channel: ChannelId,
        id: u64,
        m: &CreateMessage,
    ) -> Result<Json, Failure> {
        let content = Self::json(m)
            .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
            .and_then(|v| v["content"].as_str().map(str::to_string));
        match content {
            Some(content) => self
                .post_recorded(channel, &format!("discord/attempt/{id}"), m, |msg| {
                    msg["content"].as_str() == Some(content.as_str())
                })
                .await
                .map(|(msg, _)| msg),
            // Nothing to recognise it by.
            None => self.post(channel, m).await,
        }
    }

    /// Who a person is on Discord: mapped under `[discord.users]`, or `discord-<id>`.
    fn user_id(&self, user: &UserName) -> Option<u64> {
        self.app
            .config()
            .discord
            .users
            .get(user)
            .copied()
            .or_else(|| user.as_str().strip_prefix("discord-")?.parse().ok())
    }

    // Indexing here is serde_json's `Value[&str]`, which yields Null for a missing key or a
    // non-object and never panics: Discord's answers are read leniently, then checked.
    #[allow(clippy::indexing_slicing)]
    async fn dm_channel(&self, user: u64) -> Result<ChannelId, Failure> {
        let key = format!("discord/dm/{user}");
        if let Some(id) = self.get_id(&key) {
            return Ok(ChannelId::new(id));
        }
        let made = self
            .send(
                Route::UserMeDmChannels,
                LightMethod::Post,
                Self::json(&json!({ "recipient_id": user.to_string() })),
                None,
            )
            .await?;
        let id = made["id"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Self::local("Discord answered a DM channel without an id"))?;
        self.put_id(&key, id).map_err(Self::from_delivery)?;
        Ok(ChannelId::new(id))
    }

    /// A direct message; the incident's channel is linked where known.
    async fn direct(&self, msg: &Outgoing, user: &UserName) -> Result<(), DeliveryError> {
        let Some(uid) = self.user_id(user) else {
            return Err(Self::permanent(format!(
                "{user} has no Discord id: map them under [discord.users]"
            )));
        };
        let mut dm = msg.clone();
        if msg.incident.0 != 0
            && let Some(ch) = self.get_id(&format!("discord/channel/{}", msg.incident.0))
        {
            dm.text = dm
                .text
                .replacen(&format!("#{}", msg.channel), &format!("<#{ch}>"), 1);
        }
        let m = self.message(&dm, msg.id.to_string());
        let channel = self.dm_channel(uid).await?;
        match self.post_once(channel, msg.id, &m).await {
            Err(f) if f.is(UNKNOWN_CHANNEL) => {
                // The cached DM channel is gone: open it again, once.
                self.forget(&format!("discord/dm/{uid}"));
                let channel = self.dm_channel(uid).await?;
                self.post_once(channel, msg.id, &m).await?;
                Ok(())
            }
            // A person who takes no direct messages from the bot (50007) will not start to
            // by retrying: a dead letter, and the notices say so.
            Err(f) if f.status == Some(403) => Err(Self::permanent(format!(
                "{}: {user} does not take direct messages from the bot",
                f.what
            ))),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    /// A message for the ops channel; without one configured there is nowhere to put it, and
    /// its direct copies (queued beside it) carry it.
    async fn ops(&self, msg: &Outgoing) -> Result<(), DeliveryError> {
        let Some(ch) = self.app.config().discord.ops_channel_id else {
            tracing::debug!(
                outbox_id = msg.id,
                "no discord.ops_channel_id: an ops message is not posted"
            );
            return Ok(());
        };
        let m = self.message(msg, msg.id.to_string());
        self.post_once(ChannelId::new(ch), msg.id, &m).await?;
        Ok(())
    }

    /// One message into a known incident channel.
    async fn post_in(&self, channel: ChannelId, msg: &Outgoing) -> Result<(), Failure> {
        if msg.kind == MessageKind::Status {
            // The card shows the incident as it is now, however late the refresh runs.
            let inc = self.incident(msg.incident).map_err(Self::from_delivery)?;
            return self.card(&inc, channel, msg.id.to_string()).await;
        }
        let m = self.message(msg, msg.id.to_string());
        self.post_once(channel, msg.id, &m).await.map(|_| ())
    }

    /// A message for an incident's channel. A channel someone deleted is made anew (same name
    /// and category), with a note and a fresh pinned card, and the message goes there.
    async fn incident_channel(&self, msg: &Outgoing) -> Result<(), DeliveryError> {
        let channel = self.channel(msg.incident, &msg.channel).await?;
        match self.post_in(channel, msg).await {
            Err(f) if f.is(UNKNOWN_CHANNEL) => {
                tracing::warn!(incident = %msg.incident, outbox_id = msg.id, channel = channel.get(), "the incident's channel was deleted; recreating it");
                self.forget_channel(msg.incident, channel);
                let fresh = self.channel(msg.incident, &msg.channel).await?;
                let note = CreateMessage::new()
                    .content(fit(
                        &format!(
                            "This channel replaces #{}, which was deleted. warroom recreated it for {}; messages not yet delivered continue here, and the status card is pinned.",
                            msg.channel, msg.incident
                        ),
                        CONTENT_MAX,
                    ))
                    .allowed_mentions(CreateAllowedMentions::new())
                    .nonce(Nonce::String(fit(&format!("r{}", msg.id), 25)))
                    .enforce_nonce(true);
                self.post(fresh, &note).await?;
                if msg.kind != MessageKind::Status {
                    let inc = self.incident(msg.incident)?;
                    self.card(&inc, fresh, format!("c{}", msg.id)).await?;
                }
                match self.post_in(fresh, msg).await {
                    // Gone again already: start over on the next attempt.
                    Err(f) if f.is(UNKNOWN_CHANNEL) => {
                        self.forget_channel(msg.incident, fresh);
                        Err(DeliveryError::Retry {
                            after: None,
                            reason: "the recreated channel was deleted too".into(),
                        })
                    }
                    r => r.map_err(Into::into),
                }
            }
            r => r.map_err(Into::into),
        }
    }

    /// Creates the pinned status card, or edits it in place.
    // Indexing here is serde_json's `Value[&str]`, which yields Null for a missing key or a
    // non-object and never panics: Discord's answers are read leniently, then checked.
    #[allow(clippy::indexing_slicing)]
    async fn card(&self, inc: &Incident, channel: ChannelId, nonce: String) -> Result<(), Failure> {
        let embed = status_embed(inc, &self.app.health.lines_for(inc.id));
        let key = format!("discord/card/{}", inc.id.0);
        if let Some(id) = self.get_id(&key) {
            let edit = EditMessage::new().embed(embed.clone());
            match self
                .send(
                    Route::ChannelMessage {
                        channel_id: channel,
                        message_id: MessageId::new(id),
                    },
                    LightMethod::Patch,
                    Self::json(&edit),
                    None,
                )
                .await
            {
                Ok(_) => return Ok(()),
                // Someone deleted the card: post a new one.
                Err(f) if f.is(UNKNOWN_MESSAGE) => self.forget(&key),
                Err(f) => return Err(f),
            }
        }
        // Posting the card and recording its id are two steps: a process killed or deposed
        // between them leaves the attempt behind, and the next try finds the card by its
        // title's incident id (the rest of the title may have changed).
        let attempt = format!("discord/card-attempt/{}", inc.id.0);
        let prefix = card_title_prefix(inc);
        let card = CreateMessage::new()
            .embed(embed.clone())
            .nonce(Nonce::String(fit(&nonce, 25)))
            .enforce_nonce(true);
        let (made, found) = self
            .post_recorded(channel, &attempt, &card, |m| {
                m["content"].as_str().unwrap_or("").is_empty()
                    && m["embeds"][0]["title"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(&prefix))
            })
            .await?;
        let id = made["id"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Self::local("Discord answered a message without an id"))?;
        self.send(
            Route::ChannelPin {
                channel_id: channel,
                message_id: MessageId::new(id),
            },
            LightMethod::Put,
            None,
            None,
        )
        .await?;
        self.put_id(&key, id).map_err(Self::from_delivery)?;
        self.forget(&attempt);
        if found {
            // The card found was drawn by the earlier attempt: show the incident as it is now.
            self.send(
                Route::ChannelMessage {
                    channel_id: channel,
                    message_id: MessageId::new(id),
                },
                LightMethod::Patch,
                Self::json(&EditMessage::new().embed(embed)),
                None,
            )
            .await?;
        }
        Ok(())
    }
}

/// How every status card's title begins: `INC-7 · ` (after `[DRILL] ` for a drill).
fn card_title_prefix(inc: &Incident) -> String {
    let drill = if inc.is_drill() { "[DRILL] " } else { "" };
    format!("{drill}{} · ", inc.id)
}

impl ChatPort for DiscordPort {
    fn deliver<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            match &msg.to {
                Destination::Direct { user } => self.direct(msg, user).await,
                Destination::Ops => self.ops(msg).await,
                Destination::Incident if msg.incident.0 == 0 => self.ops(msg).await,
                Destination::Incident => self.incident_channel(msg).await,
            }
        })
    }

    fn delivered(&self, id: u64) {
        self.forget(&format!("discord/attempt/{id}"));
    }
}

/// The status card as an embed: severity, tier, SDM, tracks, next timers, vendor cases.
/// `delivery` lists delivery trouble, if any, as `/incident status` does.
pub fn status_embed(inc: &Incident, delivery: &[String]) -> CreateEmbed {
    let state = match &inc.state {
        IncidentState::Open => "open".to_string(),
        IncidentState::Resolved { plan, at, .. } => format!(
            "resolved {}{}",
            relative(*at),
            plan.map_or(String::new(), |p| format!(" by Plan {p}"))
        ),
    };
    let colour = match (&inc.state, inc.severity.level()) {
        (IncidentState::Resolved { .. }, _) => 0x2e_cc_71,
        (_, 1) => 0xe7_4c_3c,
        (_, 2) => 0xe6_7e_22,
        (_, 3) => 0xf1_c4_0f,
        _ => 0x95_a5_a6,
    };
    let mut fields: Vec<(String, String, bool)> = vec![
        ("Severity".into(), inc.severity.to_string(), true),
        (
            "Tier".into(),
            format!("{} since {}", inc.tier, relative(inc.tier_entered_at)),
            true,
        ),
        (
            "SDM".into(),
            inc.assignments
                .get(&IncidentRole::Sdm)
                .map_or("the sdm role".into(), |u| u.to_string())
                + &inc
                    .sdm_alerted_at
                    .map_or(String::new(), |t| format!(", alerted {}", relative(t))),
            true,
        ),
    ];
    match &inc.plan_b {
        PlanBDecision::Pending => {}
        PlanBDecision::Opened { at } => {
            fields.push(("Plan B".into(), format!("started {}", relative(*at)), true))
        }
        PlanBDecision::Declined { by, reason, .. } => {
            fields.push(("Plan B".into(), format!("declined by {by}: {reason}"), true))
        }
    }
    for t in inc.tracks.values() {
        let last = t
            .last_update
            .as_ref()
            .map_or("no update yet".to_string(), |u| {
                format!("{} {}: {}", relative(u.at), u.by, u.text)
            });
        let hand = t
            .handover
            .as_ref()
            .map_or(String::new(), |h| format!("\nHandover to {} pending", h.to));
        fields.push((
            format!("Plan {} · {} · {}", t.plan, t.state, t.title),
            format!(
                "Lead {} · team {}\nLast: {last}{hand}",
                t.lead.as_ref().map_or("none".into(), |l| l.to_string()),
                t.team.as_ref().map_or("none".into(), |r| r.to_string())
            ),
            false,
        ));
    }
    for c in &inc.vendor_cases {
        let cb = match (c.callback, &c.callback_outcome) {
            (None, _) => "no callback promised".to_string(),
            (Some(t), CallbackOutcome::Waiting) => format!("callback due {}", relative(t)),
            (Some(_), CallbackOutcome::Met { at }) => format!("called back {}", relative(*at)),
            (Some(t), CallbackOutcome::Missed) => format!("callback MISSED (due {})", relative(t)),
        };
        let closed = if c.closed_at.is_some() {
            " (closed)"
        } else {
            ""
        };
        fields.push((
            format!("Vendor {} · case {}{closed}", c.vendor, c.case),
            cb,
            true,
        ));
    }
    let timers = inc
        .next_timers()
        .into_iter()
        .take(5)
        .map(|t| format!("{} {}", t.kind.label(), relative(t.due)))
        .collect::<Vec<_>>();
    if !delivery.is_empty() {
        fields.push(("Delivery trouble".into(), delivery.join("\n"), false));
    }
    fields.push((
        "Next timers".into(),
        if timers.is_empty() {
            "none".into()
        } else {
            timers.join("\n")
        },
        false,
    ));
    let title = fit(
        &format!("{}{}", card_title_prefix(inc), inc.title),
        EMBED_TITLE_MAX,
    );
    let description = fit(
        &format!(
            "Service {} · {} · opened {} by {}",
            inc.service,
            state,
            relative(inc.opened_at),
            inc.opener
        ),
        EMBED_DESCRIPTION_MAX,
    );
    let mut total = title.chars().count() + description.chars().count();
    let mut embed = CreateEmbed::new()
        .title(title)
        .description(description)
        .colour(colour);
    for (name, value, inline) in fields.into_iter().take(FIELDS_MAX) {
        let name = fit(&name, FIELD_NAME_MAX);
        let value = fit(&value, FIELD_VALUE_MAX);
        let len = name.chars().count() + value.chars().count();
        if total + len > EMBED_TOTAL_MAX {
            break;
        }
        total += len;
        embed = embed.field(name, value, inline);
    }
    embed
}
