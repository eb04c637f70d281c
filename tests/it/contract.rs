//! The store contract, run against both backends: the sled folder and PostgreSQL (on a
//! throwaway cluster). The same decisions, made by the engine on a driven clock, go into each;
//! what each then holds (incidents, timelines, timers, outbox, and the backup file of it all)
//! must be the same, and a fired timer is claimed exactly once.

use chrono::{DateTime, TimeDelta, Utc};

use crate::helpers::{PgCluster, START, at};
use warroom::config::Config;
use warroom::domain::engine::{self, Ctx};
use warroom::domain::{
    Command, Decision, Exercise, Incident, IncidentId, Plan, Severity, UserName,
};
use warroom::store::postgres::{PgStore, PgUrl};
use warroom::store::{Backend, Commit, Outgoing, Store, StoreError, snapshot};

/// Commits `d` (on `before`) with its messages given fresh outbox ids; returns the incident.
fn commit(
    b: &dyn Backend,
    before: Option<&Incident>,
    d: &Decision,
    consumed: Option<&warroom::store::DueTimer>,
) -> Incident {
    let channel = format!("inc-{}", d.incident.id.0);
    let outbox: Vec<Outgoing> = d
        .messages
        .iter()
        .map(|m| Outgoing::new(b.outbox_id().unwrap(), d.incident.id, &channel, m.clone()))
        .collect();
    b.commit_durably(&[Commit {
        before,
        after: &d.incident,
        shared: None,
        events: &d.events,
        outbox: &outbox,
        consumed,
    }])
    .unwrap_or_else(|e| panic!("{}: commit failed: {e}", b.kind()));
    d.incident.clone()
}

/// The scenario: two incidents opened, updates, an escalation, then the clock runs 3 hours in
/// 5-minute steps firing every due timer, and one is resolved. Returns the times it fired at.
fn scenario(b: &dyn Backend) -> Vec<(DateTime<Utc>, IncidentId)> {
    let config = Config::builtin().unwrap();
    let overrides = [];
    let ctx = |now| Ctx {
        now,
        policy: &config.policy,
        overrides: &overrides,
    };
    let alice = engine::Actor {
        user: UserName::new("alice"),
        roles: config.policy.roster.roles_of(&UserName::new("alice")),
    };
    let bob = engine::Actor {
        user: UserName::new("bob"),
        roles: config.policy.roster.roles_of(&UserName::new("bob")),
    };
    let sam = engine::Actor {
        user: UserName::new("sam"),
        roles: config.policy.roster.roles_of(&UserName::new("sam")),
    };
    let mut now = at(START);
    let mut ids = Vec::new();
    for (title, sev) in [
        ("Mail is down", Severity::Sev1),
        ("Web is slow", Severity::Sev3),
    ] {
        let id = b.next_incident_id().unwrap();
        let d = engine::open(&ctx(now), &alice, id, title, sev, "mail", Exercise::Real).unwrap();
        commit(b, None, &d, None);
        assert_eq!(
            b.next_incident_id().unwrap().0,
            id.0 + 1,
            "{}: ids are gapless",
            b.kind()
        );
        ids.push(id);
        now += TimeDelta::seconds(30);
    }
    let Some(first) = ids.first().copied() else {
        unreachable!()
    };
    for (who, cmd) in [
        (
            &alice,
            Command::Update {
                text: "checking the VMware datastore".into(),
                plan: Some(Plan::A),
            },
        ),
        (
            &bob,
            Command::Escalate {
                tier: None,
                reason: "storage team needed".into(),
            },
        ),
    ] {
        let inc = b.incident(first).unwrap().unwrap();
        let d = engine::handle(&ctx(now), who, &inc, &cmd).unwrap();
        commit(b, Some(&inc), &d, None);
        now += TimeDelta::minutes(1);
    }
    let mut fired = Vec::new();
    let end = now + TimeDelta::hours(3);
    while now < end {
        now += TimeDelta::minutes(5);
        for t in b.due_timers(now, 256).unwrap() {
            let inc = b.incident(t.incident).unwrap().unwrap();
            // As `App` does: a timer an earlier firing of this round cancelled is not fired.
            if !inc.timers.iter().any(|x| x.seq == t.seq) {
                continue;
            }
            let d = engine::fire(&ctx(now), &inc, t.seq);
            commit(b, Some(&inc), &d, Some(&t));
            fired.push((now, t.incident));
        }
        if now >= end - TimeDelta::hours(1)
            && let Some(inc) = b.incident(first).unwrap().filter(|i| i.is_open())
        {
            let cmd = Command::Resolve {
                summary: "datastore back".into(),
                plan: None,
            };
            let d = engine::handle(&ctx(now), &sam, &inc, &cmd).unwrap();
            commit(b, Some(&inc), &d, None);
        }
    }
    fired
}

fn pg(cluster: &PgCluster, db: &str) -> PgStore {
    PgStore::connect(&PgUrl::parse(&cluster.url(db)).unwrap()).unwrap()
}

#[test]
fn both_backends_keep_the_same_state_from_the_same_decisions() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(&tmp.path().join("sled")).unwrap();
    let postgres = pg(&cluster, "contract");
    let backends: [&dyn Backend; 2] = [&sled, &postgres];
    let runs: Vec<_> = backends.iter().map(|b| scenario(*b)).collect();
    let (Some(a), Some(b)) = (runs.first(), runs.get(1)) else {
        unreachable!()
    };
    assert!(a.len() >= 5, "the scenario fired only {} timers", a.len());
    assert_eq!(a, b, "the backends fired different timers");
    for id in [IncidentId(1), IncidentId(2)] {
        assert_eq!(sled.incident(id).unwrap(), postgres.incident(id).unwrap());
        assert_eq!(
            Backend::events(&sled, id).unwrap(),
            Backend::events(&postgres, id).unwrap()
        );
    }
    assert_eq!(
        Backend::outbox(&sled).unwrap(),
        Backend::outbox(&postgres).unwrap()
    );
    let far = at(START) + TimeDelta::days(30);
    let listed = |b: &dyn Backend| -> Vec<_> {
        b.due_timers(far, 1000)
            .unwrap()
            .into_iter()
            .map(|t| (t.due, t.incident, t.seq))
            .collect()
    };
    assert_eq!(listed(&sled), listed(&postgres));
    assert_eq!(
        Backend::pending_timers(&sled).unwrap(),
        Backend::pending_timers(&postgres).unwrap()
    );
    let encoded = |b: &dyn Backend| snapshot::encode(&b.snapshot().unwrap()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&encoded(&sled)),
        String::from_utf8_lossy(&encoded(&postgres)),
        "the backends' backups differ"
    );
    // Each restores the other's backup, and then refuses a second one.
    let snap = postgres.snapshot().unwrap();
    let sled2 = Store::open(&tmp.path().join("sled2")).unwrap();
    let pg2 = pg(&cluster, "contract2");
    for b in [&sled2 as &dyn Backend, &pg2] {
        assert_eq!(b.holds().unwrap(), None);
        b.restore(&snap).unwrap();
        assert_eq!(
            encoded(b),
            encoded(&sled),
            "{}: restored differently",
            b.kind()
        );
        assert!(
            matches!(b.restore(&snap), Err(StoreError::NotEmpty { .. })),
            "{}: a second restore was not refused",
            b.kind()
        );
        assert!(
            b.outbox_id().unwrap() >= snap.next_outbox_id,
            "{}: an outbox id was reused",
            b.kind()
        );
    }
}

#[test]
fn on_postgres_a_due_timer_is_claimed_by_exactly_one_of_two_racing_commits() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let store = std::sync::Arc::new(pg(&cluster, "claims"));
    let config = Config::builtin().unwrap();
    let ctx = |now| Ctx {
        now,
        policy: &config.policy,
        overrides: &[],
    };
    let alice = engine::Actor {
        user: UserName::new("alice"),
        roles: config.policy.roster.roles_of(&UserName::new("alice")),
    };
    let now = at(START);
    let d = engine::open(
        &ctx(now),
        &alice,
        IncidentId(1),
        "Mail is down",
        Severity::Sev1,
        "mail",
        Exercise::Real,
    )
    .unwrap();
    commit(store.as_ref(), None, &d, None);
    let later = now + TimeDelta::days(1);
    let due = store.due_timers(later, 10).unwrap();
    let t = due.first().expect("a timer is pending").clone();
    let inc = store.incident(IncidentId(1)).unwrap().unwrap();
    let fired = engine::fire(&ctx(later), &inc, t.seq);
    // Two "replicas" fire the same timer at once: one commit wins, the other keeps nothing.
    let results: Vec<Result<(), StoreError>> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    store.commit_all(&[Commit {
                        before: Some(&inc),
                        after: &fired.incident,
                        shared: None,
                        events: &fired.events,
                        outbox: &[],
                        consumed: Some(&t),
                    }])
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    let lost = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(matches!(lost, StoreError::Claimed { .. }), "{lost}");
    assert!(
        lost.to_string().contains("claimed by another process"),
        "{lost}"
    );
    // The loser left nothing: the timeline holds the fired timer's events once.
    let events = store.events(IncidentId(1)).unwrap();
    assert_eq!(events.len(), d.events.len() + fired.events.len());
    assert!(
        !store
            .due_timers(later, 10)
            .unwrap()
            .iter()
            .any(|x| x.seq == t.seq),
        "the claimed timer is still pending"
    );
}

#[test]
fn on_postgres_a_deposed_replica_commits_and_delivers_nothing() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let store = pg(&cluster, "lease");
    let ttl = std::time::Duration::from_secs(10);
    let t0 = at(START);
    let a = store
        .try_acquire("replica-a", t0, ttl)
        .unwrap()
        .expect("a free lease");
    assert_eq!(a.term, 1);
    // Held: the other waits; the holder renews with the same term.
    assert_eq!(
        store
            .try_acquire("replica-b", t0 + TimeDelta::seconds(5), ttl)
            .unwrap(),
        None
    );
    let renewed = store
        .try_acquire("replica-a", t0 + TimeDelta::seconds(5), ttl)
        .unwrap()
        .unwrap();
    assert_eq!(renewed.term, 1);
    // A keeps working while it holds the lease: it opens an incident and queues a message.
    let config = Config::builtin().unwrap();
    let ctx = Ctx {
        now: t0,
        policy: &config.policy,
        overrides: &[],
    };
    let alice = engine::Actor {
        user: UserName::new("alice"),
        roles: config.policy.roster.roles_of(&UserName::new("alice")),
    };
    let open = |id| {
        engine::open(
            &ctx,
            &alice,
            IncidentId(id),
            "Mail is down",
            Severity::Sev1,
            "mail",
            Exercise::Real,
        )
        .unwrap()
    };
    let d1 = open(1);
    let msgs: Vec<Outgoing> = d1
        .messages
        .iter()
        .map(|m| {
            Outgoing::new(
                store.outbox_id().unwrap(),
                IncidentId(1),
                "inc-1",
                m.clone(),
            )
        })
        .collect();
    type Parts = Vec<(Incident, Vec<warroom::domain::Event>, Vec<Outgoing>)>;
    fn commits(p: &Parts) -> Vec<Commit<'_>> {
        p.iter()
            .map(|(i, e, o)| Commit {
                before: None,
                after: i,
                shared: None,
                events: e,
                outbox: o,
                consumed: None,
            })
            .collect()
    }
    let c = |d: &Decision, out: &[Outgoing]| -> Parts {
        vec![(d.incident.clone(), d.events.clone(), out.to_vec())]
    };
    let parts = c(&d1, &msgs);
    store.commit_fenced(&commits(&parts), Some(1)).unwrap();
    // A pauses past its lease; B takes over with a new term.
    let b = store
        .try_acquire("replica-b", t0 + TimeDelta::seconds(16), ttl)
        .unwrap()
        .expect("an expired lease is taken over");
    assert_eq!(b.term, 2);
    assert!(!store.holds_term(1).unwrap() && store.holds_term(2).unwrap());
    // A resumes: its renewal fails, and everything it tries with term 1 is refused whole.
    assert_eq!(
        store
            .try_acquire("replica-a", t0 + TimeDelta::seconds(17), ttl)
            .unwrap(),
        None
    );
    let before = snapshot::encode(&store.snapshot().unwrap()).unwrap();
    let d2 = open(2);
    let late = c(&d2, &[]);
    let refused = store.commit_fenced(&commits(&late), Some(1)).unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Deposed {
                term: 1,
                current: 2
            }
        ),
        "{refused}"
    );
    assert!(refused.to_string().contains("deposed"), "{refused}");
    let first = msgs.first().expect("the open queues messages").id;
    let refused = store.delivered_fenced(first, 1).unwrap_err();
    assert!(matches!(refused, StoreError::Deposed { .. }), "{refused}");
    assert_eq!(
        snapshot::encode(&store.snapshot().unwrap()).unwrap(),
        before,
        "the deposed replica changed something"
    );
    // B, the active one, commits and delivers.
    store.commit_fenced(&commits(&late), Some(2)).unwrap();
    store.delivered_fenced(first, 2).unwrap();
    assert!(store.incident(IncidentId(2)).unwrap().is_some());
    assert!(!store.outbox().unwrap().iter().any(|o| o.id == first));
}

#[test]
fn on_postgres_two_replicas_starting_together_get_one_lease() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let store = std::sync::Arc::new(pg(&cluster, "race"));
    let ttl = std::time::Duration::from_secs(10);
    let got: Vec<_> = std::thread::scope(|s| {
        let h: Vec<_> = ["replica-a", "replica-b", "replica-c"]
            .into_iter()
            .map(|name| {
                let store = store.clone();
                s.spawn(move || store.try_acquire(name, at(START), ttl).unwrap())
            })
            .collect();
        h.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let winners: Vec<_> = got.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{got:?}");
    assert_eq!(store.lease().unwrap().as_ref(), winners.first().copied());
}
