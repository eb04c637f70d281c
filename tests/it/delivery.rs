//! The last mile under faults, on the fake Discord with the real bot: a deleted channel, a
//! refused channel create, a stalled request, a global 429, an outage and its recovery, a lost
//! interaction answer, and an unknown outcome past the nonce window. Each scenario counts what
//! reached people, and that nothing shows twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::{Value, json};

use warroom::clock::VirtualClock;
use warroom::discord::Running;
use warroom::domain::{EventKind, IncidentId};

use crate::discord::{ALICE, bot_with, card, config_full, open_incident, open_options, with_text};
use crate::fake_discord::*;
use crate::helpers::{START, at};

/// The ops channel the tests configure.
const OPS: u64 = 800_000_000_000_000_004;
const SAM_ID: u64 = 204;

struct Scene {
    fake: FakeDiscord,
    dir: tempfile::TempDir,
    clock: Arc<VirtualClock>,
    running: Running,
}

async fn scene() -> Scene {
    let fake = FakeDiscord::start().await;
    fake.state.lock().unwrap().channels.push(json!({"id": OPS.to_string(), "type": 0, "guild_id": GUILD.to_string(), "name": "ops", "position": 2, "parent_id": null}));
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(at(START)));
    let running = start_bot(&fake, dir.path(), clock.clone()).await;
    Scene {
        fake,
        dir,
        clock,
        running,
    }
}

async fn start_bot(fake: &FakeDiscord, dir: &Path, clock: Arc<VirtualClock>) -> Running {
    let config = config_full(
        dir,
        &fake.base(),
        &format!("ops_channel_id = \"{OPS}\"\nrequest_timeout = \"2s\""),
        "",
    );
    bot_with(fake, dir, clock, config).await
}

fn options(title: &str, service: &str) -> Value {
    json!([{"name": "open", "type": 1, "options": [
        {"name": "title", "type": 3, "value": title},
        {"name": "severity", "type": 4, "value": 1},
        {"name": "service", "type": 3, "value": service}]}])
}

/// The DM channel the bot opened with a user, if any.
fn dm_of(fake: &FakeDiscord, user: u64) -> Option<u64> {
    fake.state
        .lock()
        .unwrap()
        .channels
        .iter()
        .find(|c| c["type"] == json!(1) && c["recipients"][0]["id"] == json!(user.to_string()))
        .and_then(|c| c["id"].as_str()?.parse().ok())
}

/// Whether some message carries this nudge's send: the first (`repeat` 1) or a reminder.
fn carries(content: &str, nudge: u32, repeat: u32) -> bool {
    let label = format!("Nudge #{nudge} · ");
    if repeat > 1 {
        return content.contains(&format!("{label}reminder {}", repeat - 1));
    }
    content
        .match_indices(&label)
        .any(|(i, _)| !content[i + label.len()..].starts_with("reminder"))
}

/// Every nudge send on the incident's timeline: (nudge, repeat, meant for the SDM).
fn sends(running: &Running, id: IncidentId) -> Vec<(u32, u32, bool)> {
    running
        .app
        .store()
        .events(id)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Nudged { nudge, repeat } => Some((
                nudge.0,
                repeat,
                e.text.contains("@sdm") || e.text.contains("@sam"),
            )),
            _ => None,
        })
        .collect()
}

/// Fails if any channel shows the same bot message twice.
fn assert_no_duplicates(fake: &FakeDiscord) {
    let mut seen: BTreeMap<(u64, String), usize> = BTreeMap::new();
    for (ch, content) in fake.contents() {
        if !content.is_empty() {
            *seen.entry((ch, content)).or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "shown more than once: {twice:#?}");
}

/// Opens INC-1 from #general and waits until everything it queued is delivered; returns its
/// channel.
async fn opened(fake: &FakeDiscord, running: &Running) -> u64 {
    let ch = open_incident(fake).await;
    outbox_empty(fake, running, Duration::from_secs(10)).await;
    ch
}

/// The id of the channel whose name starts with `prefix`.
fn channel_id(fake: &FakeDiscord, prefix: &str) -> u64 {
    fake.channel_named(prefix).expect("the channel")["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The end of every scenario: nothing left to deliver, nothing shown twice, every body valid.
async fn finish(fake: &FakeDiscord, running: Running) {
    outbox_empty(fake, &running, Duration::from_secs(30)).await;
    assert_no_duplicates(fake);
    running.stop().await;
    fake.assert_valid();
}

async fn outbox_empty(fake: &FakeDiscord, running: &Running, limit: Duration) {
    fake.wait_up_to("the outbox to drain", limit, || {
        running.app.store().outbox().unwrap().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_channel_is_recreated_and_no_nudge_goes_missing() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    let old = opened(&fake, &running).await;
    fake.delete_channel(old);
    running
        .app
        .advance_to(
            &clock,
            at(START) + TimeDelta::hours(2) + TimeDelta::minutes(20),
        )
        .unwrap();
    outbox_empty(&fake, &running, Duration::from_secs(30)).await;

    let fresh = fake.channel_named("inc-1-").expect("a recreated channel");
    let fresh_id: u64 = fresh["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(fresh_id, old);
    assert_eq!(fresh["parent_id"], json!(CATEGORY.to_string()));
    assert_eq!(
        with_text(&fake, fresh_id, "which was deleted").len(),
        1,
        "one note that it replaces the deleted channel"
    );
    let pinned = fake
        .messages_in(fresh_id)
        .iter()
        .filter(|m| m["pinned"] == json!(true))
        .count();
    assert_eq!(pinned, 1, "one fresh pinned card");
    let _ = card(&fake, fresh_id);
    // What was due after the deletion continued in the new channel.
    let in_fresh: Vec<String> = fake
        .messages_in(fresh_id)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();

    let sends = sends(&running, IncidentId(1));
    assert!(sends.len() >= 5, "{sends:?}");
    let everywhere: Vec<String> = fake.contents().into_iter().map(|(_, c)| c).collect();
    let sam = dm_of(&fake, SAM_ID).expect("the SDM's DMs");
    let to_sam: Vec<String> = fake
        .messages_in(sam)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();
    let mut missing = Vec::new();
    for (nudge, repeat, for_sdm) in &sends {
        if !everywhere.iter().any(|c| carries(c, *nudge, *repeat)) {
            missing.push(format!("nudge #{nudge} send {repeat}"));
        }
        if !in_fresh.iter().any(|c| carries(c, *nudge, *repeat)) {
            missing.push(format!(
                "nudge #{nudge} send {repeat} in the recreated channel"
            ));
        }
        if *for_sdm && !to_sam.iter().any(|c| carries(c, *nudge, *repeat)) {
            missing.push(format!("nudge #{nudge} send {repeat} in the SDM's DMs"));
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}");
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_channel_create_is_told_retried_and_routed_around() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    fake.fault_for(
        "POST",
        "/guilds/*/channels",
        403,
        50013,
        "Missing Permissions",
        Duration::from_secs(20),
    );
    let t0 = Instant::now();
    let id = fake.command(
        ALICE,
        GENERAL,
        "incident",
        open_options("Core mail server down"),
    );
    let reply = fake.reply(id).await;
    assert!(
        reply.contains("INC-1") && reply.contains("no channel yet"),
        "{reply}"
    );
    assert!(reply.contains("Manage Channels"), "{reply}");
    assert!(
        !reply.contains("#inc-1") && !reply.contains("<#"),
        "claims a channel: {reply}"
    );

    let sam = || dm_of(&fake, SAM_ID);
    fake.wait("the SDM and the ops channel are told", || {
        !with_text(&fake, OPS, "cannot be used").is_empty()
            && sam().is_some_and(|d| !with_text(&fake, d, "cannot be used").is_empty())
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "told after {:?}",
        t0.elapsed()
    );

    // A nudge while there is no channel takes the fallback route, and status says why.
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    fake.wait("the L2 nudge by the fallback route", || {
        with_text(&fake, OPS, "L1 → L2").len() == 1
            && dm_of(&fake, 202).is_some_and(|bob| with_text(&fake, bob, "L1 → L2").len() == 1)
    })
    .await;
    let inc = running
        .app
        .store()
        .incident(IncidentId(1))
        .unwrap()
        .unwrap();
    let status = running.app.status_card(&inc);
    assert!(
        status.contains("cannot be used") && status.contains("Missing Permissions"),
        "{status}"
    );

    // Once permission returns, the channel appears with its opening post, once.
    fake.wait_up_to(
        "the channel once permission returns",
        Duration::from_secs(50),
        || fake.channel_named("inc-1-").is_some(),
    )
    .await;
    let ch: u64 = channel_id(&fake, "inc-1-");
    fake.wait("the opening post and the nudge in the channel", || {
        with_text(&fake, ch, "opened by alice").len() == 1
            && with_text(&fake, ch, "L1 → L2").len() == 1
    })
    .await;
    outbox_empty(&fake, &running, Duration::from_secs(10)).await;
    let status = running.app.status_card(
        &running
            .app
            .store()
            .incident(IncidentId(1))
            .unwrap()
            .unwrap(),
    );
    assert!(!status.contains("Delivery:"), "{status}");
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_holds_up_no_other_incident() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    let services = ["mail", "db", "web", "dns", "auth", "vpn"];
    for s in services {
        let id = fake.command(ALICE, GENERAL, "incident", options(&format!("{s} down"), s));
        let reply = fake.reply(id).await;
        assert!(reply.contains("Opened"), "{reply}");
    }
    outbox_empty(&fake, &running, Duration::from_secs(20)).await;
    let channels: Vec<u64> = (1..=services.len())
        .map(|n| {
            fake.channel_named(&format!("inc-{n}-")).unwrap()["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let stalled = channels[0];
    // Three requests in a row get no answer: each ends at the 2 s request timeout, and the
    // lane backs off between them, so it is held for about 11 s.
    fake.stall(
        "POST",
        &format!("/channels/{stalled}/messages"),
        Stall::Before,
        3,
    );
    let t0 = Instant::now();
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    let others = &channels[1..];
    fake.wait_up_to(
        "the other incidents' L2 nudges",
        Duration::from_secs(20),
        || {
            let done = others
                .iter()
                .filter(|c| with_text(&fake, **c, "L1 → L2").len() == 1)
                .count();
            done * 10 >= others.len() * 9
        },
    )
    .await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        with_text(&fake, stalled, "L1 → L2").is_empty(),
        "the others overtook the stalled lane (they took {took:?})"
    );
    // The stalled one times out, is retried, and arrives once.
    fake.wait("the stalled incident's nudge after its retry", || {
        with_text(&fake, stalled, "L1 → L2").len() == 1
    })
    .await;
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_channels_429_waits_alone_though_every_channel_shares_the_bucket_hash() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    for s in ["mail", "db"] {
        let reply = fake
            .reply(fake.command(ALICE, GENERAL, "incident", options(&format!("{s} down"), s)))
            .await;
        assert!(reply.contains("Opened"), "{reply}");
    }
    outbox_empty(&fake, &running, Duration::from_secs(20)).await;
    let a: u64 = channel_id(&fake, "inc-1-");
    let b: u64 = channel_id(&fake, "inc-2-");
    fake.limited_for(
        "POST",
        &format!("/channels/{a}/messages"),
        5.0,
        Duration::from_secs(6),
    );
    let t0 = Instant::now();
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    fake.wait("the other channel's nudge", || {
        with_text(&fake, b, "L1 → L2").len() == 1
    })
    .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "held up by another channel's limit: {took:?}"
    );
    assert!(
        with_text(&fake, a, "L1 → L2").is_empty(),
        "the limited channel waits its 5 s"
    );
    fake.wait("the limited channel's nudge after its wait", || {
        with_text(&fake, a, "L1 → L2").len() == 1
    })
    .await;
    let creates_a = fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path == format!("/channels/{a}/messages")
                && r.at >= t0
                && r.status == 429
        })
        .count();
    assert!(
        creates_a <= 3,
        "{creates_a} refused requests in a 6 s limit asking for 5 s"
    );
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_429_is_waited_out_not_hammered_and_loses_nothing() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    opened(&fake, &running).await;
    let window = Duration::from_secs(20);
    fake.global_429_for(5.0, window);
    let t0 = Instant::now();
    running
        .app
        .advance_to(
            &clock,
            at(START) + TimeDelta::hours(2) + TimeDelta::minutes(5),
        )
        .unwrap();
    tokio::time::sleep(window).await;
    let creates = fake.creates_between(t0, t0 + window);
    assert!(
        creates <= 6,
        "{creates} message creates during a 20 s global 429"
    );
    assert!(creates >= 1, "it did try");
    outbox_empty(&fake, &running, Duration::from_secs(30)).await;
    let everywhere: Vec<String> = fake.contents().into_iter().map(|(_, c)| c).collect();
    for (nudge, repeat, _) in sends(&running, IncidentId(1)) {
        assert!(
            everywhere.iter().any(|c| carries(c, nudge, repeat)),
            "nudge #{nudge} send {repeat} lost"
        );
    }
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_backlog_drains_within_30_s_of_recovery() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    let ch = opened(&fake, &running).await;
    let outage = Duration::from_secs(20);
    fake.fault_for(
        "POST",
        "/channels/*/messages",
        503,
        0,
        "Service Unavailable",
        outage,
    );
    let t0 = Instant::now();
    running
        .app
        .advance_to(
            &clock,
            at(START) + TimeDelta::hours(1) + TimeDelta::minutes(35),
        )
        .unwrap();
    fake.wait("the trouble shows in status", || {
        let inc = running
            .app
            .store()
            .incident(IncidentId(1))
            .unwrap()
            .unwrap();
        running.app.status_card(&inc).contains("Discord 503")
    })
    .await;
    let inc = running
        .app
        .store()
        .incident(IncidentId(1))
        .unwrap()
        .unwrap();
    let status = running.app.status_card(&inc);
    assert!(status.contains("waiting for #inc-1-"), "{status}");
    tokio::time::sleep(outage.saturating_sub(t0.elapsed())).await;
    let recovered = Instant::now();
    outbox_empty(&fake, &running, Duration::from_secs(40)).await;
    let took = recovered.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "backlog drained {took:?} after recovery"
    );
    let in_channel: Vec<String> = fake
        .messages_in(ch)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect();
    let sends = sends(&running, IncidentId(1));
    assert!(sends.len() >= 4, "{sends:?}");
    for (nudge, repeat, _) in sends {
        assert!(
            in_channel.iter().any(|c| carries(c, nudge, repeat)),
            "nudge #{nudge} send {repeat} lost"
        );
    }
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_first_answer_is_still_told_and_the_retry_opens_nothing_new() {
    let Scene {
        fake,
        dir: _dir,
        running,
        ..
    } = scene().await;
    let lost = fake.command_expired(
        ALICE,
        GENERAL,
        "incident",
        open_options("Core mail server down"),
    );
    let alice_dm = || dm_of(&fake, ALICE.0);
    fake.wait("the outcome reaches alice by DM", || {
        alice_dm().is_some_and(|d| !with_text(&fake, d, "Opened INC-1").is_empty())
    })
    .await;
    assert!(
        fake.state.lock().unwrap().interactions[&lost]
            .response
            .is_none()
    );
    // Her natural retry: the incident already open, no second one.
    let again = fake.command(
        ALICE,
        GENERAL,
        "incident",
        open_options("Core mail server down"),
    );
    let reply = fake.reply(again).await;
    assert!(reply.contains("INC-1 is already open"), "{reply}");
    assert!(reply.contains("force:true"), "{reply}");
    assert_eq!(running.app.store().incidents().unwrap().len(), 1);
    // Insisting opens a second.
    let mut forced = open_options("Core mail server down");
    forced[0]["options"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "force", "type": 5, "value": true}));
    let reply = fake
        .reply(fake.command(ALICE, GENERAL, "incident", forced))
        .await;
    assert!(reply.contains("Opened INC-2"), "{reply}");
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_outcome_is_not_posted_twice_after_the_nonce_window_and_a_restart() {
    let Scene {
        fake,
        dir,
        clock,
        running,
    } = scene().await;
    fake.state.lock().unwrap().nonce_window = Some(Duration::from_secs(2));
    let ch = opened(&fake, &running).await;
    // The next post is made but never answered; then an outage outlasts the nonce window.
    fake.stall("POST", &format!("/channels/{ch}/messages"), Stall::After, 1);
    fake.fault_for(
        "POST",
        "/channels/*/messages",
        502,
        0,
        "Bad Gateway",
        Duration::from_secs(8),
    );
    fake.fault_for(
        "GET",
        "/channels/*/messages",
        502,
        0,
        "Bad Gateway",
        Duration::from_secs(8),
    );
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    fake.wait("the unanswered post was made", || {
        with_text(&fake, ch, "L1 → L2").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;
    let running = start_bot(&fake, dir.path(), clock.clone()).await;
    outbox_empty(&fake, &running, Duration::from_secs(40)).await;
    assert_eq!(with_text(&fake, ch, "L1 → L2").len(), 1, "posted twice");
    assert!(
        !with_text(&fake, ch, "has been silent").is_empty(),
        "what waited behind it went out"
    );
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_posted_by_an_attempt_that_died_before_recording_it_is_found_not_posted_again() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    let ch = opened(&fake, &running).await;
    let (first, _) = card(&fake, ch);
    // As a process killed (or deposed) after Discord made the card and before its id was
    // kept: the attempt is recorded, the id is not, and the pin never came.
    let store = running.app.store();
    store.adapter_remove("discord/card/1").unwrap();
    store
        .adapter_put("discord/card-attempt/1", ch.to_string().as_bytes())
        .unwrap();
    if let Some(m) = fake.state.lock().unwrap().messages.get_mut(&first) {
        m["pinned"] = json!(false);
    }
    // L1 → L2 refreshes the card.
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::minutes(30))
        .unwrap();
    outbox_empty(&fake, &running, Duration::from_secs(20)).await;
    let cards: Vec<Value> = fake
        .messages_in(ch)
        .into_iter()
        .filter(|m| {
            m["embeds"][0]["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("INC-1 · "))
        })
        .collect();
    assert_eq!(cards.len(), 1, "a second card: {cards:#?}");
    let (pinned, shown) = card(&fake, ch);
    assert_eq!(pinned, first, "the earlier card is pinned and kept");
    assert!(
        shown.to_string().contains("L2"),
        "the card shows the incident as it is now: {shown}"
    );
    assert!(
        store
            .adapter_get("discord/card-attempt/1")
            .unwrap()
            .is_none(),
        "the attempt is forgotten once the card is known"
    );
    finish(&fake, running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_direct_message_is_a_dead_letter_with_a_notice_not_a_stuck_lane() {
    let Scene {
        fake,
        dir: _dir,
        clock,
        running,
    } = scene().await;
    open_incident(&fake).await;
    // By L3 the SDM has been alerted, by DM too.
    running
        .app
        .advance_to(
            &clock,
            at(START) + TimeDelta::hours(1) + TimeDelta::minutes(31),
        )
        .unwrap();
    outbox_empty(&fake, &running, Duration::from_secs(20)).await;
    let sam = dm_of(&fake, SAM_ID).expect("the SDM's DMs");
    let before = fake.messages_in(sam).len();
    fake.fault_for(
        "POST",
        &format!("/channels/{sam}/messages"),
        403,
        50007,
        "Cannot send messages to this user",
        Duration::from_secs(5),
    );
    running
        .app
        .advance_to(
            &clock,
            at(START) + TimeDelta::hours(2) + TimeDelta::minutes(1),
        )
        .unwrap();
    fake.wait("the notice in the ops channel", || {
        !with_text(
            &fake,
            OPS,
            "could not be delivered to sam's direct messages",
        )
        .is_empty()
    })
    .await;
    let notice = &with_text(
        &fake,
        OPS,
        "could not be delivered to sam's direct messages",
    )[0];
    let text = notice["content"].as_str().unwrap();
    assert!(
        text.contains("INC-1") && text.contains("50007") && text.contains("warroom outbox retry"),
        "{text}"
    );
    outbox_empty(&fake, &running, Duration::from_secs(20)).await;
    let dead = running.app.store().dead_letter_list().unwrap();
    assert!(
        !dead.is_empty() && dead.iter().all(|d| d.reason.contains("50007")),
        "{dead:?}"
    );
    // Not retried blindly: one refused request per dead letter.
    let refused = fake
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.path == format!("/channels/{sam}/messages") && r.status == 403)
        .count();
    assert_eq!(refused, dead.len());
    // Once sam takes DMs again, the lane is not stuck.
    tokio::time::sleep(Duration::from_secs(5)).await;
    running
        .app
        .advance_to(&clock, at(START) + TimeDelta::hours(3))
        .unwrap();
    fake.wait("a later DM to sam", || fake.messages_in(sam).len() > before)
        .await;
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warroom_discord_stops_cleanly_on_sigterm_and_shrugs_off_sighup() {
    let fake = FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warroom.toml");
    std::fs::write(
        &config,
        format!(
            "[discord]\nguild_id = \"{GUILD}\"\nincident_category_id = \"{CATEGORY}\"\napi_base = \"{}\"\n",
            fake.base()
        ),
    )
    .unwrap();
    let mut bot = std::process::Command::new(env!("CARGO_BIN_EXE_warroom"))
        .args([
            "discord",
            "--config",
            config.to_str().unwrap(),
            "--data",
            dir.path().join("data").to_str().unwrap(),
        ])
        .env("DISCORD_TOKEN", "fake-token-for-tests")
        .env_remove("WARROOM_DATA")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    fake.until("the bot identifies on the gateway", |s| s.identified > 0)
        .await;
    let pid = bot.id().to_string();
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
    };
    assert!(kill("-HUP").success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bot.try_wait().unwrap().is_none(), "SIGHUP ended the bot");
    assert!(kill("-TERM").success());
    let mut status = None;
    for _ in 0..150 {
        if let Some(s) = bot.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("it stops within 15 s");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let mut err = String::new();
    use std::io::Read as _;
    bot.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("SIGHUP"), "{err}");
    assert!(
        !err.contains("fake-token-for-tests"),
        "the token was printed"
    );
    // The folder was closed cleanly: the next open trusts it without a copy.
    let state = std::fs::read_to_string(dir.path().join("data/warroom.state")).unwrap();
    assert!(state.contains("\"clean\":["), "{state}");
}
