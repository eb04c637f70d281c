//! On-call schedules through the console binary on the virtual clock: a handoff that carries an
//! open incident across, an override for a night, a restart across a handoff, the DST change;
//! `check-config`'s refusals and `warroom oncall`.

use crate::helpers::*;

/// alice and erin alternate 12h shifts on L1, handing off at 08:00 and 20:00 London time:
/// alice has the day shift (08:00-20:00) on every day of the rotation, erin the night.
const CONFIG: &str = r#"
[roster]
alice = []
erin  = []
frank = []
bob   = ["l2"]
dana  = ["l3"]
sam   = ["sdm"]
ravi  = ["fm"]

[console]
acting_user = "sam"

[policy.sev2]
l1_budget      = "4h"
update_cadence = "30m"
nudge_repeat   = "15m"

[schedules.l1-emea]
role      = "l1"
time_zone = "Europe/London"
rotation  = ["alice", "erin"]
shift     = "12h"
handoff   = "08:00"
start     = "2026-10-01"
"#;

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("warroom.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn oncall_console(dir: &std::path::Path, clock: &str, input: &str) -> Run {
    let cfg = write_config(dir, CONFIG);
    let data = dir.join("data");
    run_binary(
        &[
            "--config",
            &cfg,
            "console",
            "--data",
            data.to_str().unwrap(),
            "--clock",
            &format!("virtual:{clock}"),
            "--format",
            "jsonl",
        ],
        input,
    )
}

#[test]
fn an_incident_open_across_the_0800_handoff_is_handed_over_and_nudges_both_until_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    // 07:00 GMT: erin is on the night shift, and holds L1 by being on call (the roster gives
    // her no role), so she may open the incident.
    let input = "/as erin\n/incident open title:\"Mail down\" severity:2 service:mail\n\
                 /clock advance 40m\n/update text:\"looking at logs\"\n/clock advance 30m\n\
                 /as alice\n/ack\n/clock advance 30m\n/as erin\n/incident resolve summary:\"x\"\n";
    let run = oncall_console(dir.path(), "2026-11-23T07:00:00Z", input);
    assert!(run.success, "{}", run.stderr);
    let l = &run.lines;
    assert!(
        l.iter().any(|x| x.text.starts_with("Opened INC-1")),
        "{l:#?}"
    );
    // 08:00: the handover card, from erin to alice.
    let card = l
        .iter()
        .find(|x| x.text.contains("Handover of Plan A from erin to @alice"))
        .expect("handover card");
    assert_eq!(card.at, at("2026-11-23T08:00:00Z"));
    assert!(card.text.contains("Handover card · INC-1"), "{}", card.text);
    assert!(card.text.contains("shift handoff for l1"), "{}", card.text);
    // alice is told, in her direct messages, until when and with which incidents.
    let dm = l
        .iter()
        .find(|x| x.channel == "@alice")
        .expect("a post to alice");
    assert!(
        dm.text
            .contains("You are on call for l1 (l1-emea) until Mon 2026-11-23 20:00 GMT"),
        "{}",
        dm.text
    );
    assert!(dm.text.contains("INC-1 Mail down"), "{}", dm.text);
    // 08:10: Plan A's silence nudge reaches both until alice acknowledges.
    let silent: Vec<&Line> = l
        .iter()
        .filter(|x| x.kind == "nudge" && x.text.contains("has been silent"))
        .collect();
    let both = silent
        .iter()
        .find(|x| x.at == at("2026-11-23T08:10:00Z"))
        .expect("silence nudge at 08:10");
    assert_eq!(both.mentions, vec!["erin", "alice"], "{both:#?}");
    assert!(
        l.iter()
            .any(|x| x.text == "alice accepted the handover and now leads Plan A."),
        "{l:#?}"
    );
    // After the acknowledgement: the incoming person only (and the SDM, as reminders go).
    let after: Vec<&&Line> = silent
        .iter()
        .filter(|x| x.at > at("2026-11-23T08:10:00Z"))
        .collect();
    assert!(!after.is_empty());
    for n in &after {
        assert!(n.mentions("alice") && !n.mentions("erin"), "{n:#?}");
    }
    // At 08:40 erin is off shift: she no longer holds L1, so resolving is not hers to do.
    let last = l.last().unwrap();
    assert_eq!(last.kind, "error", "{last:#?}");
    assert!(
        last.text
            .contains("/incident resolve is refused: it is for the current tier (l1) or sdm"),
        "{}",
        last.text
    );
}

#[test]
fn a_nudge_to_l1_mentions_the_person_on_call() {
    let dir = tempfile::tempdir().unwrap();
    // sam opens it, and a Plan B worked by the l1 team: its silence nudge pings @l1.
    let input = "/incident open title:\"Disk\" severity:2 service:mail\n\
                 /plan open plan:B title:\"Rebuild\" team:l1 cadence:1m\n/clock advance 2m\n\
                 /oncall show\n/oncall show role:l1\n";
    let run = oncall_console(dir.path(), "2026-11-23T10:00:00Z", input);
    assert!(run.success, "{}", run.stderr);
    let show = run.text_starting("On call at 2026-11-23 10:02 UTC");
    assert!(
        show.contains("l1 (l1-emea): alice until Mon 2026-11-23 20:00 GMT; next: erin from Mon 2026-11-23 20:00 GMT (in 9h58m)"),
        "{show}"
    );
    // Every nudge that pings @l1 also pings alice, who is on call.
    let to_l1: Vec<&Line> = run
        .lines
        .iter()
        .filter(|x| x.kind == "nudge" && x.mentions("l1"))
        .collect();
    assert!(!to_l1.is_empty(), "{:#?}", run.lines);
    for n in to_l1 {
        assert!(n.mentions("alice") && !n.mentions("erin"), "{n:#?}");
    }
}

#[test]
fn an_override_for_a_night_puts_frank_on_and_hands_over_to_him_and_back() {
    let dir = tempfile::tempdir().unwrap();
    // 18:00 GMT. erin (night shift, 20:00-08:00) asks frank to cover 22:00-06:00.
    let input = "/as alice\n/oncall override role:l1 user:frank from:22:00 to:06:00 reason:\"nope\"\n\
                 /as erin\n/oncall override role:l1 user:frank from:22:00 to:06:00 reason:\"swap with frank\"\n\
                 /oncall overrides\n/clock advance 5h\n/oncall show\n/clock advance 9h\n/oncall show\n";
    let run = oncall_console(dir.path(), "2026-11-23T18:00:00Z", input);
    assert!(run.success, "{}", run.stderr);
    let l = &run.lines;
    let errors = run.errors();
    // alice is neither the SDM nor the one replaced.
    assert!(
        errors.first().is_some_and(|e| e
            .text
            .contains("/oncall override is refused: it is for sdm or the person on call whom it replaces (erin)")),
        "{errors:#?}"
    );
    let made = run.text_starting("Override 1:");
    assert!(
        made.contains("frank is on call for l1 from Mon 2026-11-23 22:00 GMT to Tue 2026-11-24 06:00 GMT, instead of erin"),
        "{made}"
    );
    assert!(run.text_starting("Overrides:").contains("swap with frank"));
    // Handoffs: 20:00 alice → erin, 22:00 erin → frank, 06:00 frank → erin, 08:00 erin → alice.
    let dms: Vec<(&str, chrono::DateTime<chrono::Utc>)> = l
        .iter()
        .filter(|x| x.channel.starts_with('@'))
        .map(|x| (x.channel.as_str(), x.at))
        .collect();
    assert_eq!(
        dms,
        vec![
            ("@erin", at("2026-11-23T20:00:00Z")),
            ("@frank", at("2026-11-23T22:00:00Z")),
            ("@erin", at("2026-11-24T06:00:00Z")),
            ("@alice", at("2026-11-24T08:00:00Z")),
        ],
        "{l:#?}"
    );
    let at23 = run.text_starting("On call at 2026-11-23 23:00 UTC");
    assert!(
        at23.contains("frank (override 1) until Tue 2026-11-24 06:00 GMT"),
        "{at23}"
    );
    assert!(
        at23.contains("next: erin from Tue 2026-11-24 06:00 GMT"),
        "{at23}"
    );
}

#[test]
fn a_restart_across_a_handoff_fires_it_once_late_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let first = oncall_console(dir.path(), "2026-11-23T07:30:00Z", "/oncall show role:l1\n");
    assert!(first.success, "{}", first.stderr);
    assert!(!first.lines.iter().any(|x| x.channel.starts_with('@')));
    // warroom is down from 07:30 to 09:15; the 08:00 handoff fires once, at the restart.
    let second = oncall_console(dir.path(), "2026-11-23T09:15:00Z", "/oncall show role:l1\n");
    assert!(second.success, "{}", second.stderr);
    let dms: Vec<&Line> = second
        .lines
        .iter()
        .filter(|x| x.channel == "@alice")
        .collect();
    assert_eq!(dms.len(), 1, "{:#?}", second.lines);
    assert_eq!(dms[0].at, at("2026-11-23T09:15:00Z"));
    assert!(
        dms[0]
            .text
            .contains("this handoff fell due at Mon 2026-11-23 08:00 GMT while warroom was not running: 1h15m late"),
        "{}",
        dms[0].text
    );
    // A third run fires nothing more.
    let third = oncall_console(dir.path(), "2026-11-23T09:20:00Z", "/oncall show role:l1\n");
    assert!(!third.lines.iter().any(|x| x.channel.starts_with('@')));
}

#[test]
fn across_the_autumn_dst_change_only_the_night_that_contains_it_is_longer() {
    let dir = tempfile::tempdir().unwrap();
    // London leaves BST at 01:00 UTC on 2026-10-25. From Saturday 12:00 UTC to Monday 12:00.
    let run = oncall_console(dir.path(), "2026-10-24T12:00:00Z", "/clock advance 48h\n");
    assert!(run.success, "{}", run.stderr);
    let handoffs: Vec<chrono::DateTime<chrono::Utc>> = run
        .lines
        .iter()
        .filter(|x| x.channel.starts_with('@'))
        .map(|x| x.at)
        .collect();
    // 20:00 BST = 19:00 UTC; 08:00 GMT = 08:00 UTC; every handoff at 08:00 or 20:00 local.
    assert_eq!(
        handoffs,
        vec![
            at("2026-10-24T19:00:00Z"),
            at("2026-10-25T08:00:00Z"),
            at("2026-10-25T20:00:00Z"),
            at("2026-10-26T08:00:00Z"),
        ]
    );
    let lengths: Vec<i64> = handoffs
        .windows(2)
        .map(|w| (w[1] - w[0]).num_hours())
        .collect();
    // The night of the change is 13h by the clock on the wall; the others 12h.
    assert_eq!(lengths, vec![13, 12, 12]);
}

#[test]
fn check_config_refuses_unknown_users_bad_zones_gaps_and_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            CONFIG.replace("[\"alice\", \"erin\"]", "[\"alice\", \"zoe\"]"),
            "schedules.l1-emea.rotation",
            "'zoe' is not on the roster",
        ),
        (
            CONFIG.replace("Europe/London", "Europe/Lodnon"),
            "schedules.l1-emea.time_zone",
            "is not an IANA time zone",
        ),
        (
            CONFIG.replace("shift     = \"12h\"", "shift     = \"10h\""),
            "schedules.l1-emea.shift",
            "a gap in the rotation",
        ),
        (
            format!(
                "{CONFIG}\n[schedules.l1-amer]\nrole = \"l1\"\ntime_zone = \"America/New_York\"\nrotation = [\"frank\"]\nshift = \"24h\"\nhandoff = \"09:00\"\nstart = \"2026-11-01\"\n"
            ),
            "schedules.l1-emea.role",
            "two schedules for one role overlap",
        ),
        (
            CONFIG.replace("[\"alice\", \"erin\"]", "[\"alice\", \"ravi\"]"),
            "schedules.l1-emea.rotation",
            "facilities or vendor staff",
        ),
    ];
    for (text, key, why) in cases {
        let cfg = write_config(dir.path(), &text);
        let run = run_plain(&["--config", &cfg, "check-config"], "");
        assert!(!run.success, "{key}: accepted");
        assert!(
            run.stderr.contains(key) && run.stderr.contains(why),
            "{key}: {}",
            run.stderr
        );
    }
    let cfg = write_config(dir.path(), CONFIG);
    let ok = run_plain(&["--config", &cfg, "check-config"], "");
    assert!(ok.success, "{}", ok.stderr);
    assert!(
        ok.stdout
            .contains("l1-emea: l1 in Europe/London, shifts of 12h from 08:00 local"),
        "{}",
        ok.stdout
    );
}

#[test]
fn warroom_oncall_at_a_time_shows_who_is_on_and_next() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), CONFIG);
    let data = dir.path().join("none");
    let run = run_plain(
        &[
            "--config",
            &cfg,
            "oncall",
            "--at",
            "2026-11-23T21:00:00Z",
            "--data",
            data.to_str().unwrap(),
        ],
        "",
    );
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stdout.contains("l1 (l1-emea): erin until Tue 2026-11-24 08:00 GMT; next: alice from Tue 2026-11-24 08:00 GMT (in 11h)"),
        "{}",
        run.stdout
    );
    let bad = run_plain(&["--config", &cfg, "oncall", "--at", "tonight"], "");
    assert!(!bad.success);
    assert!(bad.stderr.contains("write RFC 3339"), "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ics_feed_parses_and_lists_the_shifts_with_an_override() {
    use std::sync::Arc;
    use warroom::app::App;
    use warroom::clock::VirtualClock;
    use warroom::config::Config;
    use warroom::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), CONFIG);
    let config = Config::load(Some(std::path::Path::new(&cfg)), &[]).unwrap();
    let sources = config.alerts.resolve(|_| None).unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    let clock = Arc::new(VirtualClock::new(at("2026-11-23T18:00:00Z")));
    let app = Arc::new(App::new(store, Arc::new(config), clock.clone()));
    let made = app.run_line(
        &app.actor(&warroom::domain::UserName::new("sam")),
        None,
        "/oncall override role:l1 user:frank from:22:00 to:06:00 reason:\"swap\"",
    );
    assert_eq!(made.kind, warroom::app::ReplyKind::Reply, "{}", made.text);
    let listener = warroom::http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let state = warroom::http::HttpState {
        app: app.clone(),
        sources: Arc::new(sources),
        readiness: Arc::new(warroom::http::Readiness::default()),
        board: None,
    };
    let task = tokio::spawn(async move {
        warroom::http::serve(listener, state, stop_rx)
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/oncall/l1-emea.ics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/calendar"), "{ctype}");
    let body = r.text().await.unwrap();
    let unfolded = icalendar::parser::unfold(&body);
    let cal = icalendar::parser::read_calendar(&unfolded).expect("a valid iCalendar feed");
    let events: Vec<(String, String, String)> = cal
        .components
        .iter()
        .filter(|c| c.name.as_str() == "VEVENT")
        .map(|c| {
            let get = |k: &str| {
                c.properties
                    .iter()
                    .find(|p| p.name.as_str() == k)
                    .map(|p| p.val.as_str().to_string())
                    .unwrap_or_default()
            };
            (get("DTSTART"), get("DTEND"), get("SUMMARY"))
        })
        .collect();
    // A week back to eight weeks ahead of 18:00 on the 23rd: about 126 stretches.
    assert!(events.len() > 100, "{}", events.len());
    let find = |start: &str| {
        events
            .iter()
            .find(|e| e.0 == start)
            .unwrap_or_else(|| panic!("no event from {start}: {events:#?}"))
    };
    assert_eq!(
        find("20261123T080000Z"),
        &(
            "20261123T080000Z".into(),
            "20261123T200000Z".into(),
            "alice on call for l1".into()
        )
    );
    // erin's night, cut by frank's override from 22:00 to 06:00.
    assert_eq!(find("20261123T200000Z").1, "20261123T220000Z");
    assert_eq!(find("20261123T200000Z").2, "erin on call for l1");
    assert_eq!(
        find("20261123T220000Z"),
        &(
            "20261123T220000Z".into(),
            "20261124T060000Z".into(),
            "frank on call for l1 (override 1)".into()
        )
    );
    assert_eq!(find("20261124T060000Z").1, "20261124T080000Z");
    // Stretches follow one another with no gap.
    for w in events.windows(2) {
        assert_eq!(w[0].1, w[1].0, "{w:#?}");
    }
    let missing = client
        .get(format!("{base}/oncall/nope.ics"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("feeds: l1-emea.ics"));
    stop.send(true).unwrap();
    task.await.unwrap();
}

/// On fake Discord, alice and bob alternate L1 (UTC, 08:00 and 20:00), with `sync_roles`.
const DISCORD_SCHEDULE: &str = r#"
[schedules.l1-day]
role      = "l1"
time_zone = "UTC"
rotation  = ["alice", "bob"]
shift     = "12h"
handoff   = "08:00"
start     = "2026-11-01"
"#;

/// The role changes the bot asked for: (PUT or DELETE, user id, role id, status).
fn role_calls(fake: &crate::fake_discord::FakeDiscord) -> Vec<(String, String, String, u16)> {
    fake.state
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.path.contains("/members/") && r.path.contains("/roles/"))
        .map(|r| {
            let seg: Vec<&str> = r.path.trim_matches('/').split('/').collect();
            let user = seg.iter().position(|s| *s == "members").map(|i| seg[i + 1]);
            let role = seg.iter().position(|s| *s == "roles").map(|i| seg[i + 1]);
            (
                r.method.clone(),
                user.unwrap_or("").to_string(),
                role.unwrap_or("").to_string(),
                r.status,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_discord_the_handoff_dms_the_incoming_person_and_moves_the_role() {
    use std::sync::Arc;
    let fake = crate::fake_discord::FakeDiscord::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(warroom::clock::VirtualClock::new(at(START)));
    let config = crate::discord::config_full(
        dir.path(),
        &fake.base(),
        "sync_roles = true",
        DISCORD_SCHEDULE,
    );
    let running = crate::discord::bot_with(&fake, dir.path(), clock.clone(), config).await;
    // At start (22:00): bob holds L1 (Discord role 101); alice does not.
    fake.wait("the start's role sync", || role_calls(&fake).len() >= 2)
        .await;
    assert_eq!(
        role_calls(&fake),
        vec![
            ("PUT".into(), "202".into(), "101".into(), 204),
            ("DELETE".into(), "201".into(), "101".into(), 204),
        ]
    );
    // 08:00: alice is on. She is told by DM, and the role moves to her.
    running
        .app
        .advance_to(&clock, at("2026-11-24T08:00:00Z"))
        .unwrap();
    fake.wait("the handoff's role sync", || role_calls(&fake).len() >= 4)
        .await;
    assert_eq!(
        role_calls(&fake)[2..],
        [
            ("PUT".into(), "201".into(), "101".into(), 204),
            ("DELETE".into(), "202".into(), "101".into(), 204),
        ]
    );
    let dm_to_alice = || {
        let st = fake.state.lock().unwrap();
        let dm = st.channels.iter().find(|c| {
            c["type"] == serde_json::json!(1)
                && c["recipients"][0]["id"] == serde_json::json!("201")
        });
        dm.and_then(|c| c["id"].as_str().map(|s| s.parse::<u64>().unwrap()))
    };
    fake.wait("alice's DM channel", || dm_to_alice().is_some())
        .await;
    let dm = dm_to_alice().unwrap();
    fake.wait("the handoff DM", || {
        !crate::discord::with_text(&fake, dm, "You are on call for l1 (l1-day) until").is_empty()
    })
    .await;
    let msg = crate::discord::with_text(&fake, dm, "You are on call for l1").remove(0);
    assert!(
        msg["content"]
            .as_str()
            .unwrap()
            .contains("until Tue 2026-11-24 20:00 UTC, taking over from bob"),
        "{msg}"
    );
    running.stop().await;
    fake.assert_valid();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_discord_a_403_on_a_role_change_is_reported_not_silent() {
    use std::sync::Arc;
    let fake = crate::fake_discord::FakeDiscord::start().await;
    fake.fault("PUT", "/guilds/*/members/*/roles/*", 403, None, 1);
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(warroom::clock::VirtualClock::new(at(START)));
    let config = crate::discord::config_full(
        dir.path(),
        &fake.base(),
        "sync_roles = true",
        DISCORD_SCHEDULE,
    );
    let running = crate::discord::bot_with(&fake, dir.path(), clock.clone(), config).await;
    let notice = || {
        fake.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.status == 200)
            .filter_map(|r| r.body.as_ref()?["content"].as_str().map(str::to_string))
            .find(|t| t.contains("On-call role sync"))
    };
    fake.wait("the role sync notice", || notice().is_some())
        .await;
    let text = notice().unwrap();
    assert!(
        text.contains("could not give the Discord role for l1 to bob")
            && text.contains("Manage Roles"),
        "{text}"
    );
    assert_eq!(role_calls(&fake)[0].3, 403);
    running.stop().await;
    fake.assert_valid();
}
