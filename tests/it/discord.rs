//! The Discord front end end to end: the real bot (the code path of `warroom discord`) over
//! real serenity, against the fake Discord, with a virtual clock driving the bot's time.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Value, json};

use warroom::clock::VirtualClock;
use warroom::config::Config;
use warroom::discord::{DiscordOptions, Running, start};
use warroom::domain::{IncidentId, Plan};

use crate::fake_discord::*;
use crate::helpers::{START, at};

pub(crate) const ALICE: (u64, &str) = (201, "alice");
pub(crate) const BOB: (u64, &str) = (202, "bob");
pub(crate) const DANA: (u64, &str) = (203, "dana");
pub(crate) const SAM: (u64, &str) = (204, "sam");
pub(crate) const ROLE_L2: u64 = 102;
pub(crate) const ROLE_SDM: u64 = 104;

fn config(dir: &Path, base: &str) -> Arc<Config> {
    config_with(dir, base, "")
}

fn config_with(dir: &Path, base: &str, extra: &str) -> Arc<Config> {
    config_full(dir, base, "", extra)
}

/// The tests' configuration; `discord_keys` go under `[discord]`, `extra` after it all.
pub(crate) fn config_full(dir: &Path, base: &str, discord_keys: &str, extra: &str) -> Arc<Config> {
    let path = dir.join("warroom.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[discord]
guild_id = "{GUILD}"
incident_category_id = "{CATEGORY}"
dm_sdm = true
api_base = "{base}"
{discord_keys}
[discord.roles]
l1 = "101"
l2 = "102"
l3 = "103"
sdm = "104"
rebuild = "105"
[discord.users]
alice = "201"
bob = "202"
dana = "203"
sam = "204"
carol = "205"
ravi = "206"
kim = "207"
{extra}
"#
        ),
    )
    .unwrap();
    Arc::new(Config::load(Some(&path), &[]).unwrap())
}

async fn bot(fake: &FakeDiscord, dir: &Path, clock: Arc<VirtualClock>) -> Running {
    bot_with(fake, dir, clock, config(dir, &fake.base())).await
}

pub(crate) async fn bot_with(
    fake: &FakeDiscord,
    dir: &Path,
    clock: Arc<VirtualClock>,
    config: Arc<Config>,
) -> Running {
    let before = fake.state.lock().unwrap().identified;
    let running = start(DiscordOptions {
        token: "fake-token-for-tests".into(),
        config,
        data: dir.join("data"),
        clock,
    })
    .await
    .expect("the bot starts against the fake");
    fake.until("the bot identifies on the gateway", |s| {
        s.identified > before
    })
    .await;
    running
}

/// A fake Discord, a temporary data folder, a virtual clock at START and the bot running.
struct Harness {
    fake: FakeDiscord,
    dir: tempfile::TempDir,
    clock: Arc<VirtualClock>,
    running: Running,
}

async fn harness() -> Harness {
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(at(START)));
    let running = bot(&fake, dir.path(), clock.clone()).await;
    Harness {
        fake,
        dir,
        clock,
        running,
    }
}

pub(crate) fn open_options(title: &str) -> Value {
    json!([{"name": "open", "type": 1, "options": [
        {"name": "title", "type": 3, "value": title},
        {"name": "severity", "type": 4, "value": 1},
        {"name": "service", "type": 3, "value": "mail"}]}])
}

/// Opens INC-1 from #general and returns the incident channel's id.
pub(crate) async fn open_incident(fake: &FakeDiscord) -> u64 {
    let id = fake.command(
        ALICE,
        GENERAL,
        "incident",
        open_options("Core mail server down"),
    );
    let resp = fake.response(id).await;
    assert_eq!(resp["type"], 4, "{resp}");
    assert!(
        resp["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Opened INC-1"),
        "{resp}"
    );
    let after = fake.state.lock().unwrap().interactions[&id]
        .response_after
        .unwrap();
    assert!(after < Duration::from_secs(3), "answered after {after:?}");
    fake.until("the incident channel", |s| {
        s.channels.iter().any(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("inc-1-core-mail-server"))
        })
    })
    .await;
    let ch: u64 = fake.channel_named("inc-1-").unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    fake.until("a pinned status card", |s| {
        s.messages
            .values()
            .any(|m| m["channel_id"] == json!(ch.to_string()) && m["pinned"] == json!(true))
    })
    .await;
    ch
}

pub(crate) fn card(fake: &FakeDiscord, channel: u64) -> (u64, Value) {
    let m = fake
        .messages_in(channel)
        .into_iter()
        .find(|m| m["pinned"] == json!(true))
        .expect("a pinned card");
    (m["id"].as_str().unwrap().parse().unwrap(), m)
}

fn edits(fake: &FakeDiscord, card: u64) -> usize {
    fake.state
        .lock()
        .unwrap()
        .edits
        .get(&card)
        .copied()
        .unwrap_or(0)
}

pub(crate) fn with_text(fake: &FakeDiscord, channel: u64, needle: &str) -> Vec<Value> {
    fake.messages_in(channel)
        .into_iter()
        .filter(|m| m["content"].as_str().is_some_and(|c| c.contains(needle)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_an_incident_gives_a_channel_a_pinned_card_and_a_timely_answer() {
    let Harness {
        fake,
        dir: _dir,
        running,
        ..
    } = harness().await;
    let ch = open_incident(&fake).await;
    let channel = fake.channel_named("inc-1-").unwrap();
    assert_eq!(channel["parent_id"], json!(CATEGORY.to_string()));
    let (_, card) = card(&fake, ch);
    let embed = &card["embeds"][0];
    assert!(
        embed["title"].as_str().unwrap().contains("INC-1"),
        "{embed}"
    );
    let fields = embed["fields"].to_string();
    assert!(
        fields.contains("SEV1") && fields.contains("Plan A") && fields.contains("<t:"),
        "{fields}"
    );
    // The commands were registered from commands/.
    let registered = fake
        .state
        .lock()
        .unwrap()
        .commands
        .as_array()
        .unwrap()
        .len();
    assert_eq!(registered, warroom::spec::CommandSet::builtin().tops.len());
    // Bad input is answered only to the sender.
    let id = fake.command(ALICE, ch, "snooze", json!([{"name": "duration", "type": 3, "value": "soonish"}, {"name": "reason", "type": 3, "value": "x"}]));
    let resp = fake.response(id).await;
    assert_eq!(resp["data"]["flags"], json!(64), "{resp}");
    assert!(
        resp["data"]["content"]
            .as_str()
            .unwrap()
            .contains("'soonish' is not a duration"),
        "{resp}"
    );
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_story_through_discord() {
    let Harness {
        fake,
        dir: _dir,
        clock,
        running,
    } = harness().await;
    let app = running.app.clone();
    let ch = open_incident(&fake).await;
    let (card_id, _) = card(&fake, ch);
    let step = |n: usize| n;

    // +30m: the L2 role is mentioned, and only it may be pinged.
    let e0 = edits(&fake, card_id);
    app.advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    fake.wait("the L2 nudge", || {
        !with_text(&fake, ch, "L1 → L2").is_empty()
    })
    .await;
    let l2 = &with_text(&fake, ch, "L1 → L2")[0];
    assert!(
        l2["content"]
            .as_str()
            .unwrap()
            .contains(&format!("<@&{ROLE_L2}>")),
        "{l2}"
    );
    assert_eq!(
        l2["allowed_mentions"]["roles"],
        json!([ROLE_L2.to_string()])
    );
    fake.wait("the card edited after escalation", || {
        edits(&fake, card_id) > step(e0)
    })
    .await;

    // Bob escalates to L3: the SDM is mentioned, in the channel and by DM.
    let e1 = edits(&fake, card_id);
    let id = fake.command(BOB, ch, "escalate", json!([{"name": "reason", "type": 3, "value": "need L3"}, {"name": "tier", "type": 4, "value": 3}]));
    assert!(fake.reply(id).await.contains("escalated L2 → L3"));
    fake.wait("the SDM alert", || {
        !with_text(&fake, ch, "SDM alert").is_empty()
    })
    .await;
    let alert = &with_text(&fake, ch, "SDM alert")[0];
    assert!(
        alert["content"]
            .as_str()
            .unwrap()
            .contains(&format!("<@&{ROLE_SDM}>"))
    );
    fake.until("the SDM's direct message", |s| {
        s.channels.iter().any(|c| c["type"] == json!(1))
    })
    .await;
    fake.wait("the card edited after L3", || edits(&fake, card_id) > e1)
        .await;

    // +2h: the Plan B nudge, with buttons.
    app.advance_to(&clock, at(START) + TimeDelta::hours(2))
        .unwrap();
    fake.wait("the Plan B nudge", || {
        !with_text(&fake, ch, "Plan B deadline reached").is_empty()
    })
    .await;
    let nudge = with_text(&fake, ch, "Plan B deadline reached").remove(0);
    let buttons = nudge["components"][0]["components"]
        .as_array()
        .unwrap()
        .clone();
    let open_b = buttons
        .iter()
        .find(|b| b["label"] == json!("Open Plan B"))
        .expect("an Open Plan B button");
    let custom = open_b["custom_id"].as_str().unwrap();

    // A non-SDM pressing it is refused, only to them, and nothing changes.
    let id = fake.press(ALICE, &nudge, custom);
    let resp = fake.response(id).await;
    assert_eq!(resp["data"]["flags"], json!(64), "{resp}");
    assert!(
        resp["data"]["content"]
            .as_str()
            .unwrap()
            .contains("/plan open is refused"),
        "{resp}"
    );
    assert!(
        !app.store()
            .incident(IncidentId(1))
            .unwrap()
            .unwrap()
            .tracks
            .contains_key(&Plan::B)
    );

    // The SDM pressing it opens Plan B, as the command would.
    let e2 = edits(&fake, card_id);
    let id = fake.press(SAM, &nudge, custom);
    let resp = fake.response(id).await;
    assert!(
        resp["data"]["content"]
            .as_str()
            .unwrap()
            .contains("Plan B is open"),
        "{resp}"
    );
    assert!(
        app.store()
            .incident(IncidentId(1))
            .unwrap()
            .unwrap()
            .tracks
            .contains_key(&Plan::B)
    );
    fake.wait("Plan B's post", || {
        !with_text(&fake, ch, "Plan B opened by sam").is_empty()
    })
    .await;
    fake.wait("the card edited after Plan B", || {
        edits(&fake, card_id) > e2
    })
    .await;

    // Resolution cancels everything.
    let e3 = edits(&fake, card_id);
    let id = fake.command(DANA, ch, "incident", json!([{"name": "resolve", "type": 1, "options": [
        {"name": "summary", "type": 3, "value": "rebuilt from backup"}, {"name": "plan", "type": 3, "value": "B"}]}]));
    assert!(fake.reply(id).await.contains("resolved by Plan B"));
    fake.wait("the card shows resolution", || {
        edits(&fake, card_id) > e3
            && card(&fake, ch).1["embeds"][0]
                .to_string()
                .contains("resolved")
    })
    .await;
    // The card renders the incident as it is when delivered, so an earlier refresh can show
    // the resolution before the resolution post itself is out: wait for both.
    fake.wait("the resolution post and an empty outbox", || {
        !with_text(&fake, ch, "INC-1 resolved by Plan B").is_empty()
            && app.store().outbox().unwrap().is_empty()
    })
    .await;
    let count = fake.messages_in(ch).len();
    app.advance_to(&clock, at(START) + TimeDelta::hours(14))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<Value> = fake.messages_in(ch).into_iter().skip(count).collect();
    assert!(after.is_empty(), "nothing after resolution: {after:#?}");
    assert_eq!(app.store().pending_timers().unwrap(), 0);
    drop(app);
    running.stop().await;
    fake.assert_validated_at_least(21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_then_a_429_lose_no_nudge_and_duplicate_none() {
    let Harness {
        fake,
        dir: _dir,
        clock,
        running,
    } = harness().await;
    let ch = open_incident(&fake).await;
    fake.fault("POST", "/channels/*/messages", 500, None, 2);
    fake.fault("POST", "/channels/*/messages", 429, Some(0.3), 1);
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    fake.wait("the L2 nudge after the faults", || {
        !with_text(&fake, ch, "L1 → L2").is_empty()
    })
    .await;
    fake.wait("Plan A's silence nudge too", || {
        !with_text(&fake, ch, "has been silent").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(with_text(&fake, ch, "L1 → L2").len(), 1);
    assert_eq!(with_text(&fake, ch, "has been silent").len(), 1);
    let statuses: Vec<u16> = fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/messages"))
        .map(|r| r.status)
        .collect();
    assert!(
        statuses.windows(3).any(|w| w == [500, 500, 429]),
        "{statuses:?}"
    );
    assert!(running.app.store().outbox().unwrap().is_empty());
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_incident_fires_what_fell_due_once() {
    let Harness {
        fake, dir, running, ..
    } = harness().await;
    let ch = open_incident(&fake).await;
    running.stop().await;

    // Down for 45 minutes: the L1 budget and Plan A's silence check fell due at +30m.
    let later = Arc::new(VirtualClock::new(at(START) + TimeDelta::minutes(45)));
    let running = bot(&fake, dir.path(), later).await;
    fake.wait("the late L2 nudge", || {
        !with_text(&fake, ch, "L1 → L2").is_empty()
    })
    .await;
    fake.wait("the late silence nudge", || {
        !with_text(&fake, ch, "has been silent").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l2 = with_text(&fake, ch, "L1 → L2");
    assert_eq!(l2.len(), 1);
    assert!(
        l2[0]["content"].as_str().unwrap().contains("15m late"),
        "{}",
        l2[0]["content"]
    );
    assert_eq!(with_text(&fake, ch, "has been silent").len(), 1);
    // The same channel is reused, not a new one.
    let incident_channels = fake
        .state
        .lock()
        .unwrap()
        .channels
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("inc-1-")))
        .count();
    assert_eq!(incident_channels, 1);
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_are_truncated_visibly_not_rejected() {
    let Harness {
        fake,
        dir: _dir,
        running,
        ..
    } = harness().await;
    let help = warroom::spec::CommandSet::builtin().help(None).unwrap();
    assert!(help.chars().count() > 2000, "the test needs a long answer");
    // The report is a file, whole, not a truncated message.
    let ch = open_incident(&fake).await;
    let id = fake.command(ALICE, ch, "report", json!([]));
    assert!(fake.reply(id).await.contains("INC-1-report.md is attached"));
    let files = fake.state.lock().unwrap().files.clone();
    let (name, content) = files
        .iter()
        .find(|(n, _)| n == "INC-1-report.md")
        .expect("the report file");
    let md = String::from_utf8(content.clone()).unwrap();
    assert!(
        md.starts_with("# INC-1: Core mail server down") && md.contains("## Timeline"),
        "{name}: {md}"
    );

    let id = fake.command(ALICE, GENERAL, "help", json!([]));
    let resp = fake.response(id).await;
    let content = resp["data"]["content"].as_str().unwrap();
    assert!(content.chars().count() <= 2000);
    assert!(content.ends_with("(truncated)"), "{content}");
    running.stop().await;
    fake.assert_valid();
}

/// The fake itself: it must reject what Discord rejects, or the other tests prove nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_enforces_discords_rules() {
    let fake = FakeDiscord::start().await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/api/v10{p}", fake.base());
    let post = |p: String, body: Value| {
        http.post(p)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };

    let long = "x".repeat(2001);
    let r = post(
        url(&format!("/channels/{GENERAL}/messages")),
        json!({"content": long}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["code"],
        50035
    );

    let r = post(
        url(&format!("/guilds/{GUILD}/channels")),
        json!({"name": "x".repeat(101)}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);

    for i in 0..50 {
        let r = post(
            url(&format!("/guilds/{GUILD}/channels")),
            json!({"name": format!("c{i}"), "parent_id": CATEGORY.to_string()}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = post(
        url(&format!("/guilds/{GUILD}/channels")),
        json!({"name": "c50", "parent_id": CATEGORY.to_string()}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "50 channels per category");

    // Interactions: one acknowledgement, within 3 s, with a token valid for 15 minutes.
    for (id, age) in [(1u64, 0u64), (2, 4), (3, 16 * 60)] {
        let mut st = fake.state.lock().unwrap();
        st.interactions.insert(
            id,
            Interaction {
                id,
                token: format!("t{id}"),
                created: std::time::Instant::now(),
                aged: Duration::from_secs(age),
                acked: false,
                response: None,
                response_after: None,
                original_edit: None,
            },
        );
    }
    let cb = |id: u64| url(&format!("/interactions/{id}/t{id}/callback"));
    let reply = json!({"type": 4, "data": {"content": "hi"}});
    assert_eq!(post(cb(1), reply.clone()).await.unwrap().status(), 204);
    let second = post(cb(1), reply.clone()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&second.text().await.unwrap()).unwrap()["code"],
        40060
    );
    let late = post(cb(2), reply.clone()).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&late.text().await.unwrap()).unwrap()["code"],
        10062
    );
    let expired = post(cb(3), reply).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&expired.text().await.unwrap()).unwrap()["code"],
        50027
    );

    // The OpenAPI check catches a body Discord would refuse.
    if let Some(api) = OpenApi::load() {
        let path = format!("/channels/{GENERAL}/messages");
        assert_eq!(
            api.validate("POST", &path, Some(&json!({"content": "fine"}))),
            Ok(true)
        );
        assert!(
            api.validate("POST", &path, Some(&json!({"content": 5, "embeds": "no"})))
                .is_err()
        );
        assert!(
            api.validate("POST", "/no/such/route", Some(&json!({})))
                .is_err()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reconnect_starts_nothing_twice() {
    let Harness {
        fake,
        dir: _dir,
        clock,
        running,
    } = harness().await;
    let ch = open_incident(&fake).await;
    let before = fake.state.lock().unwrap().identified;
    fake.ask_reconnect();
    fake.until("the bot identifies again", |s| s.identified > before)
        .await;
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    fake.wait("the L2 nudge", || {
        !with_text(&fake, ch, "L1 → L2").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        with_text(&fake, ch, "L1 → L2").len(),
        1,
        "one scheduler, one courier"
    );
    // Interactions still reach the bot after the reconnect.
    let id = fake.command(BOB, ch, "ack", json!([]));
    assert!(fake.reply(id).await.contains("Acknowledged"));
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_checklist_buttons_and_vendor_cases_through_discord() {
    let Harness {
        fake,
        dir: _dir,
        running,
        ..
    } = harness().await;
    let app = running.app.clone();
    let ch = open_incident(&fake).await;
    const CAROL: (u64, &str) = (205, "carol");
    const KIM: (u64, &str) = (207, "kim");

    // /plan open suggests the service's templates as the SDM types.
    let id = fake.autocomplete(SAM, ch, "plan", json!([{"name": "open", "type": 1, "options": [
        {"name": "plan", "type": 3, "value": "B"}, {"name": "title", "type": 3, "value": "rebuild", "focused": true}]}]));
    let resp = fake.response(id).await;
    assert_eq!(resp["type"], 8, "{resp}");
    let choices = resp["data"]["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1, "{resp}");
    assert!(
        choices[0]["value"]
            .as_str()
            .unwrap()
            .starts_with("Rebuild the mail server")
    );

    // Plan B from the service's template, with carol (a Discord user option) as lead.
    let id = fake.command(
        SAM,
        ch,
        "plan",
        json!([{"name": "open", "type": 1, "options": [
        {"name": "plan", "type": 3, "value": "B"}, {"name": "lead", "type": 6, "value": "205"}]}]),
    );
    assert!(fake.reply(id).await.contains("Plan B is open"));
    fake.wait("the checklist card", || {
        !with_text(&fake, ch, "runbook checklist").is_empty()
    })
    .await;
    let checklist = with_text(&fake, ch, "runbook checklist").remove(0);
    let tick2 = checklist["components"][0]["components"][1].clone();
    assert_eq!(tick2["label"], json!("Tick 2"));
    let id = fake.press(CAROL, &checklist, tick2["custom_id"].as_str().unwrap());
    assert!(fake.reply(id).await.contains("Ticked item 2 of Plan B"));
    let inc = app.store().incident(IncidentId(1)).unwrap().unwrap();
    assert!(inc.tracks[&Plan::B].checklist[1].done.is_some());

    // Carol hands Plan B over to dana; dana accepts with the button.
    let id = fake.command(CAROL, ch, "handover", json!([
        {"name": "to", "type": 6, "value": "203"}, {"name": "summary", "type": 3, "value": "restore at 40%"},
        {"name": "plan", "type": 3, "value": "B"}]));
    assert!(fake.reply(id).await.contains("Handover card sent to dana"));
    fake.wait("the handover card", || {
        !with_text(&fake, ch, "Handover of Plan B").is_empty()
    })
    .await;
    let card_msg = with_text(&fake, ch, "Handover of Plan B").remove(0);
    assert!(
        card_msg["content"]
            .as_str()
            .unwrap()
            .starts_with(&format!("<@{}>", DANA.0))
    );
    assert_eq!(
        card_msg["allowed_mentions"]["users"],
        json!([DANA.0.to_string()])
    );
    let ack = card_msg["components"][0]["components"][0].clone();
    assert_eq!(ack["label"], json!("Acknowledge"));
    // Only dana can accept it.
    let id = fake.press(CAROL, &card_msg, ack["custom_id"].as_str().unwrap());
    assert_eq!(fake.response(id).await["data"]["flags"], json!(64));
    let id = fake.press(DANA, &card_msg, ack["custom_id"].as_str().unwrap());
    fake.response(id).await;
    let inc = app.store().incident(IncidentId(1)).unwrap().unwrap();
    assert_eq!(
        inc.tracks[&Plan::B].lead.as_ref().map(|u| u.as_str()),
        Some("dana")
    );

    // A vendor case shows on the status card.
    let id = fake.command(KIM, ch, "vendor", json!([{"name": "add", "type": 1, "options": [
        {"name": "name", "type": 3, "value": "VMware"}, {"name": "case", "type": 3, "value": "SR-4711"},
        {"name": "callback", "type": 3, "value": "30m"}]}]));
    assert!(
        fake.reply(id)
            .await
            .contains("Tracking VMware case SR-4711")
    );
    drop(app);
    fake.wait("the vendor case on the card", || {
        card(&fake, ch).1["embeds"][0]
            .to_string()
            .contains("Vendor VMware · case SR-4711")
    })
    .await;
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_drill_reaches_the_sdm_by_dm_and_its_button_starts_it() {
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(at(START)));
    let before = fake.state.lock().unwrap().identified;
    let running = start(DiscordOptions {
        token: "fake-token-for-tests".into(),
        config: config_with(
            dir.path(),
            &fake.base(),
            "[services.mail]\ndrill_every = \"1d\"\n",
        ),
        data: dir.path().join("data"),
        clock: clock.clone(),
    })
    .await
    .unwrap();
    fake.until("identified", |s| s.identified > before).await;
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::days(1))
        .unwrap();
    fake.until("a DM channel", |s| {
        s.channels.iter().any(|c| c["type"] == json!(1))
    })
    .await;
    let dm: u64 = fake
        .state
        .lock()
        .unwrap()
        .channels
        .iter()
        .find(|c| c["type"] == json!(1))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    fake.wait("the drill reminder", || {
        !with_text(&fake, dm, "DR drill due for service mail").is_empty()
    })
    .await;
    let msg = with_text(&fake, dm, "DR drill due").remove(0);
    let button = msg["components"][0]["components"][0].clone();
    assert_eq!(button["label"], json!("Start the drill"));
    let id = fake.press(SAM, &msg, button["custom_id"].as_str().unwrap());
    assert!(fake.reply(id).await.contains("Opened INC-1"));
    fake.until("the drill's channel", |s| {
        s.channels.iter().any(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("inc-1-drill-"))
        })
    })
    .await;
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_off_the_roster_can_be_added_and_is_limited_to_updates() {
    let Harness {
        fake,
        dir: _dir,
        running,
        ..
    } = harness().await;
    let ch = open_incident(&fake).await;
    const VENDOR: (u64, &str) = (999, "vmware-engineer");
    // Before being added, they are not in the war room.
    let id = fake.command(
        VENDOR,
        ch,
        "update",
        json!([{"name": "text", "type": 3, "value": "hello"}]),
    );
    assert_eq!(fake.response(id).await["data"]["flags"], json!(64));
    let id = fake.command(SAM, ch, "participant", json!([{"name": "add", "type": 1, "options": [
        {"name": "user", "type": 6, "value": "999"}, {"name": "kind", "type": 3, "value": "vendor"}]}]));
    assert!(
        fake.reply(id)
            .await
            .contains("discord-999 is in the INC-1 war room as vendor staff")
    );
    let id = fake.command(
        VENDOR,
        ch,
        "update",
        json!([{"name": "text", "type": 3, "value": "SR-4711: engineer assigned"}]),
    );
    assert!(fake.reply(id).await.contains("Update posted to Plan A"));
    let id = fake.command(
        VENDOR,
        ch,
        "escalate",
        json!([{"name": "reason", "type": 3, "value": "x"}]),
    );
    let resp = fake.response(id).await;
    assert_eq!(resp["data"]["flags"], json!(64));
    assert!(
        resp["data"]["content"]
            .as_str()
            .unwrap()
            .contains("/escalate is refused"),
        "{resp}"
    );
    running.stop().await;
    fake.assert_valid();
}
