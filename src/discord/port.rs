//! Delivery to Discord: incident channels, the pinned status card, nudges with buttons and
//! mentions, SDM direct messages. Requests are built by serenity and sent here, so that a 429's
//! `retry_after` and a 5xx reach the courier's retry logic.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use serenity::all::{
    ButtonStyle, ChannelId, ChannelType, CreateActionRow, CreateAllowedMentions, CreateButton,
    CreateChannel, CreateEmbed, CreateMessage, EditMessage, GuildId, LightMethod, MessageId, Nonce,
    Request, RoleId, Route, UserId,
};

use crate::app::App;
use crate::domain::engine::relative;
use crate::domain::{
    Button, CallbackOutcome, Incident, IncidentId, IncidentRole, IncidentState, MessageKind,
    PlanBDecision, RoleKey, Target, UserName,
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

pub struct DiscordPort {
    app: Arc<App>,
    client: reqwest::Client,
    /// `Bot <token>`; never logged.
    auth: String,
    proxy: Option<String>,
}

impl DiscordPort {
    pub fn new(app: Arc<App>, token: &str, proxy: Option<String>) -> DiscordPort {
        DiscordPort {
            app,
            client: reqwest::Client::new(),
            auth: format!("Bot {}", token.trim_start_matches("Bot ")),
            proxy,
        }
    }

    fn permanent(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent {
            reason: reason.into(),
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

    /// Sends one request, classifying failures for the courier.
    async fn send(
        &self,
        route: Route<'_>,
        method: LightMethod,
        body: Option<Vec<u8>>,
    ) -> Result<Json, DeliveryError> {
        let req = Request::new(route, method)
            .body(body)
            .build(&self.client, &self.auth, self.proxy.as_deref())
            .map_err(|e| Self::permanent(format!("cannot build the request: {e}")))?;
        let resp = req.send().await.map_err(|e| DeliveryError::Retry {
            after: None,
            reason: format!("network error: {e}"),
        })?;
        let status = resp.status();
        let header_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<f64>().ok());
        let text = resp.text().await.unwrap_or_default();
        let body: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if status.is_success() {
            return Ok(body);
        }
        let what = format!(
            "{} {}: {}",
            status.as_u16(),
            body["code"]
                .as_i64()
                .map_or(String::new(), |c| c.to_string()),
            body["message"].as_str().unwrap_or("")
        );
        if status.as_u16() == 429 {
            let after = body["retry_after"]
                .as_f64()
                .or(header_after)
                .map(Duration::from_secs_f64);
            Err(DeliveryError::Retry {
                after,
                reason: what,
            })
        } else if status.is_server_error() {
            Err(DeliveryError::Retry {
                after: None,
                reason: what,
            })
        } else {
            Err(Self::permanent(what))
        }
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

    /// The incident's channel: known, found by name (after a crash), or created now.
    async fn channel(&self, incident: IncidentId, name: &str) -> Result<ChannelId, DeliveryError> {
        let key = format!("discord/channel/{}", incident.0);
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
                    )
                    .await?;
                made["id"].as_str().and_then(|s| s.parse::<u64>().ok())
            }
        }
        .ok_or_else(|| Self::permanent("Discord answered a channel without an id"))?;
        self.put_id(&key, id)?;
        self.put_id(&format!("discord/incident/{id}"), incident.0)?;
        Ok(ChannelId::new(id))
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

    async fn post(&self, channel: ChannelId, m: &CreateMessage) -> Result<Json, DeliveryError> {
        self.send(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Post,
            Self::json(m),
        )
        .await
    }

    /// Who gets SDM nudges by direct message: mapped users holding `sdm` for this incident.
    fn sdm_user_ids(&self, inc: &Incident) -> Vec<u64> {
        let cfg = self.app.config();
        let mut users: Vec<UserName> = cfg
            .policy
            .roster
            .holders(&RoleKey::sdm())
            .into_iter()
            .cloned()
            .collect();
        if let Some(u) = inc.assignments.get(&IncidentRole::Sdm) {
            users = vec![u.clone()];
        }
        users
            .iter()
            .filter_map(|u| cfg.discord.users.get(u).copied())
            .collect()
    }

    async fn dm_sdm(
        &self,
        msg: &Outgoing,
        inc: &Incident,
        channel: ChannelId,
    ) -> Result<(), DeliveryError> {
        let targets_sdm = msg.mentions.iter().any(|t| match t {
            Target::Role(r) => *r == RoleKey::sdm(),
            Target::User(u) => {
                inc.assignments.get(&IncidentRole::Sdm) == Some(u)
                    || self
                        .app
                        .config()
                        .policy
                        .roster
                        .roles_of(u)
                        .contains(&RoleKey::sdm())
            }
        });
        if !targets_sdm || !self.app.config().discord.dm_sdm {
            return Ok(());
        }
        for (i, user) in self.sdm_user_ids(inc).into_iter().enumerate() {
            let dm = self.dm_channel(user).await?;
            let mut dm_msg = msg.clone();
            dm_msg.text = format!("{} in <#{}>: {}", inc.id, channel, msg.text);
            dm_msg.buttons.clear();
            let m = self.message(&dm_msg, fit(&format!("{}d{i}", msg.id), 25));
            self.post(dm, &m).await?;
        }
        Ok(())
    }

    /// A message that belongs to no incident: to the ops channel if configured, and to the SDMs.
    async fn ops(&self, msg: &Outgoing) -> Result<(), DeliveryError> {
        let d = &self.app.config().discord;
        if let Some(ch) = d.ops_channel_id {
            let m = self.message(msg, msg.id.to_string());
            self.post(ChannelId::new(ch), &m).await?;
        }
        let users: Vec<u64> = self
            .app
            .config()
            .policy
            .roster
            .holders(&RoleKey::sdm())
            .into_iter()
            .filter_map(|u| d.users.get(u).copied())
            .collect();
        if d.ops_channel_id.is_none() && users.is_empty() {
            return Err(Self::permanent(
                "no discord.ops_channel_id and no SDM mapped under [discord.users]: nowhere to send it",
            ));
        }
        for (i, user) in users.into_iter().enumerate() {
            let dm = self.dm_channel(user).await?;
            let m = self.message(msg, fit(&format!("{}d{i}", msg.id), 25));
            self.post(dm, &m).await?;
        }
        Ok(())
    }

    async fn dm_channel(&self, user: u64) -> Result<ChannelId, DeliveryError> {
        let key = format!("discord/dm/{user}");
        if let Some(id) = self.get_id(&key) {
            return Ok(ChannelId::new(id));
        }
        let made = self
            .send(
                Route::UserMeDmChannels,
                LightMethod::Post,
                Self::json(&json!({ "recipient_id": user.to_string() })),
            )
            .await?;
        let id = made["id"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Self::permanent("Discord answered a DM channel without an id"))?;
        self.put_id(&key, id)?;
        Ok(ChannelId::new(id))
    }

    /// Creates the pinned status card, or edits it in place.
    async fn card(
        &self,
        inc: &Incident,
        channel: ChannelId,
        nonce: String,
    ) -> Result<(), DeliveryError> {
        let embed = status_embed(inc);
        let key = format!("discord/card/{}", inc.id.0);
        if let Some(id) = self.get_id(&key) {
            let edit = EditMessage::new().embed(embed);
            self.send(
                Route::ChannelMessage {
                    channel_id: channel,
                    message_id: MessageId::new(id),
                },
                LightMethod::Patch,
                Self::json(&edit),
            )
            .await?;
            return Ok(());
        }
        let made = self
            .post(
                channel,
                &CreateMessage::new()
                    .embed(embed)
                    .nonce(Nonce::String(nonce))
                    .enforce_nonce(true),
            )
            .await?;
        let id = made["id"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Self::permanent("Discord answered a message without an id"))?;
        self.send(
            Route::ChannelPin {
                channel_id: channel,
                message_id: MessageId::new(id),
            },
            LightMethod::Put,
            None,
        )
        .await?;
        self.put_id(&key, id)
    }
}

impl ChatPort for DiscordPort {
    fn deliver<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            if msg.incident.0 == 0 {
                return self.ops(msg).await;
            }
            let channel = self.channel(msg.incident, &msg.channel).await?;
            if msg.kind == MessageKind::Status {
                // The card shows the incident as it is now, however late the refresh runs.
                let inc = self.incident(msg.incident)?;
                return self.card(&inc, channel, msg.id.to_string()).await;
            }
            let m = self.message(msg, msg.id.to_string());
            self.post(channel, &m).await?;
            if msg.kind == MessageKind::Nudge {
                let inc = self.incident(msg.incident)?;
                self.dm_sdm(msg, &inc, channel).await?;
            }
            Ok(())
        })
    }
}

/// The status card as an embed: severity, tier, SDM, tracks, next timers, vendor cases.
pub fn status_embed(inc: &Incident) -> CreateEmbed {
    let drill = if inc.is_drill() { "[DRILL] " } else { "" };
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
        &format!("{drill}{} · {}", inc.id, inc.title),
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
