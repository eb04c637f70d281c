//! The performance harness behind `warroom bench`: per-command latency of the engine alone
//! and of the engine plus the durable sled commit, measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::app::{App, ReplyKind};
use crate::clock::{Clock, VirtualClock};
use crate::config::Config;
use crate::domain::engine::{self, Ctx};
use crate::domain::{Command, IncidentId, Plan, UserName};
use crate::store::Store;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).or(sorted.last()).copied().unwrap_or_default()
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Runs `rounds` of open + 3 updates + escalate per incident and reports medians and p99s.
pub fn run(dir: &std::path::Path, rounds: usize) -> anyhow::Result<String> {
    let config = Arc::new(Config::builtin()?);
    let clock = Arc::new(VirtualClock::new(Utc::now()));
    let app = App::new(Store::open(dir)?, config.clone(), clock.clone());
    let alice = app.actor(&UserName::new("alice"));
    let bob = app.actor(&UserName::new("bob"));
    let mut durable = Vec::with_capacity(rounds * 5);
    let mut pure = Vec::with_capacity(rounds * 5);
    for i in 0..rounds {
        let t = Instant::now();
        let r = app.run_line(
            &alice,
            None,
            &format!("/incident open title:\"bench {i}\" severity:1 service:mail force:true"),
        );
        durable.push(t.elapsed());
        anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
        let id = r.incident;
        for n in 0..3 {
            let t = Instant::now();
            let r = app.run_line(&alice, id, &format!("/update text:\"step {n}\""));
            durable.push(t.elapsed());
            anyhow::ensure!(
                r.kind == ReplyKind::Reply,
                "bench update failed: {}",
                r.text
            );
        }
        let t = Instant::now();
        let r = app.run_line(&bob, id, "/escalate reason:\"bench\"");
        durable.push(t.elapsed());
        anyhow::ensure!(
            r.kind == ReplyKind::Reply,
            "bench escalate failed: {}",
            r.text
        );
        clock.advance(TimeDelta::seconds(1));

        // The same five decisions without parsing or storage: the engine alone.
        let ctx = Ctx {
            now: clock.now(),
            policy: &config.policy,
        };
        let t = Instant::now();
        let mut d = engine::open(
            &ctx,
            &alice,
            IncidentId(1),
            "bench",
            crate::domain::Severity::Sev1,
            "mail",
            crate::domain::Exercise::Real,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        pure.push(t.elapsed());
        for n in 0..3 {
            let cmd = Command::Update {
                text: format!("step {n}"),
                plan: Some(Plan::A),
            };
            let t = Instant::now();
            d = engine::handle(&ctx, &alice, &d.incident, &cmd)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            pure.push(t.elapsed());
        }
        let cmd = Command::Escalate {
            tier: None,
            reason: "bench".into(),
        };
        let t = Instant::now();
        engine::handle(&ctx, &bob, &d.incident, &cmd).map_err(|e| anyhow::anyhow!("{e}"))?;
        pure.push(t.elapsed());
    }
    durable.sort();
    pure.sort();
    let (dm, d99) = (percentile(&durable, 0.5), percentile(&durable, 0.99));
    let (pm, p99) = (percentile(&pure, 0.5), percentile(&pure, 0.99));
    let floor = fdatasync_floor(dir, durable.len())?;
    let (fm, f99) = (percentile(&floor, 0.5), percentile(&floor, 0.99));
    let pending = app.store().pending_timers();
    let ids: Vec<Option<IncidentId>> = (1..=rounds as u64).map(|n| Some(IncidentId(n))).collect();
    let app = Arc::new(app);
    let mut rates = Vec::new();
    for callers in [1usize, 4, 16, 64] {
        rates.push((callers, concurrent_rate(&app, &ids, callers, 2000)?));
    }
    let single = rates.first().map_or(0.0, |r| r.1);
    let mut out = format!(
        "commands: {} ({} incidents × open, 3 updates, escalate)\n\
         engine + parse + durable commit (fdatasync): median {}, p99 {}\n\
         raw 4 KiB write + fdatasync, same folder:   median {}, p99 {}\n\
         ratio durable command / fdatasync (medians): {:.2}×\n\
         engine alone:                                median {}, p99 {}\n\
         ratio durable / engine (medians): {:.0}×\n\
         pending timers at the end: {}\n",
        durable.len(),
        rounds,
        micros(dm),
        micros(d99),
        micros(fm),
        micros(f99),
        dm.as_secs_f64() / fm.as_secs_f64().max(1e-9),
        micros(pm),
        micros(p99),
        dm.as_secs_f64() / pm.as_secs_f64().max(1e-9),
        pending
    );
    for (callers, rate) in rates {
        out.push_str(&format!(
            "durable commands/s with {callers:>2} concurrent callers: {rate:.0} ({:.2}× one caller)\n",
            rate / single.max(1e-9)
        ));
    }
    Ok(out)
}

/// The disk's own floor: a 4 KiB write and an fdatasync, `n` times, in the same folder.
fn fdatasync_floor(dir: &std::path::Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    use std::io::Write as _;
    let path = dir.join("bench-fdatasync-floor");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        out.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    out.sort();
    Ok(out)
}

/// Durable commands per second with `callers` threads posting updates at once, `total` in all.
fn concurrent_rate(
    app: &Arc<App>,
    ids: &[Option<IncidentId>],
    callers: usize,
    total: usize,
) -> anyhow::Result<f64> {
    let per = total / callers.max(1);
    let t = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|c| {
            let app = app.clone();
            let ids = ids.to_vec();
            std::thread::spawn(move || -> Result<(), String> {
                let alice = app.actor(&UserName::new("alice"));
                for n in 0..per {
                    let id = ids.get((c * per + n) % ids.len().max(1)).copied().flatten();
                    let r = app.run_line(&alice, id, &format!("/update text:\"c{c} n{n}\""));
                    if r.kind != ReplyKind::Reply {
                        return Err(r.text);
                    }
                }
                Ok(())
            })
        })
        .collect();
    for th in threads {
        th.join()
            .map_err(|_| anyhow::anyhow!("a bench caller panicked"))?
            .map_err(|e| anyhow::anyhow!("bench update failed: {e}"))?;
    }
    Ok((per * callers) as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

/// With `pending` timers in the store: how long a restart takes to find the next deadline, and
/// how long claiming and committing one due timer takes (the work between a deadline and its
/// message reaching the outbox).
pub fn timers(dir: &std::path::Path, pending: usize, fires: usize) -> anyhow::Result<String> {
    let config = Arc::new(Config::builtin()?);
    let start = Utc::now();
    let clock = Arc::new(VirtualClock::new(start));
    let app = App::new(Store::open(dir)?, config.clone(), clock.clone());
    let alice = app.actor(&UserName::new("alice"));
    let t = Instant::now();
    let mut opened = 0;
    // Each SEV2 incident opens with three timers (L1 budget, Plan B deadline, Plan A
    // silence). Counting them in sled (`Tree::len`) walks the whole tree, so count here.
    while opened * 3 < pending {
        let r = app.run_line(
            &alice,
            None,
            &format!("/incident open title:\"load {opened}\" severity:2 service:mail force:true"),
        );
        anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
        opened += 1;
        clock.advance(TimeDelta::seconds(1));
    }
    let fill = t.elapsed();
    drop(app);

    let mut reopen = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let store = Store::open(dir)?;
        let next = store.next_timer()?;
        reopen.push(t.elapsed());
        anyhow::ensure!(next.is_some(), "no timer after reopening");
        drop(store);
    }
    reopen.sort();

    let app = App::new(Store::open(dir)?, config, clock.clone());
    let mut fire = Vec::with_capacity(fires);
    for _ in 0..fires {
        let Some(due) = app.next_due()? else { break };
        clock.set(due);
        let t = Instant::now();
        app.fire_one(due)?;
        fire.push(t.elapsed());
    }
    fire.sort();
    Ok(format!(
        "pending timers: {} ({} incidents, filled in {:.1} s)\n\
         restart (open the store, find the next deadline): median {}, max {} over 5\n\
         fire one due timer (claim, decide, commit, queue): median {}, p99 {} over {}\n",
        app.store().pending_timers(),
        opened,
        fill.as_secs_f64(),
        micros(percentile(&reopen, 0.5)),
        micros(percentile(&reopen, 1.0)),
        micros(percentile(&fire, 0.5)),
        micros(percentile(&fire, 0.99)),
        fire.len()
    ))
}

/// A simulated chat platform for the delivery bench: each delivery takes `latency`; a lane
/// may be stalled (each attempt hangs for the request timeout, then fails) or down (fails at
/// once) until a given instant.
struct SimPort {
    latency: Duration,
    stall: Duration,
    trouble: std::sync::Mutex<std::collections::HashMap<String, (Trouble, Instant)>>,
    delivered: std::sync::Mutex<std::collections::HashMap<u64, (String, Instant)>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Trouble {
    Stalled,
    Down,
}

impl crate::port::ChatPort for SimPort {
    fn deliver<'a>(
        &'a self,
        msg: &'a crate::store::Outgoing,
    ) -> crate::port::BoxFuture<'a, Result<(), crate::port::DeliveryError>> {
        Box::pin(async move {
            let lane = msg.lane();
            let trouble = self
                .trouble
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&lane)
                .copied()
                .filter(|(_, until)| Instant::now() < *until);
            match trouble {
                Some((Trouble::Stalled, _)) => {
                    tokio::time::sleep(self.stall).await;
                    return Err(crate::port::DeliveryError::Retry {
                        after: None,
                        reason: "no answer within the request timeout".into(),
                    });
                }
                Some((Trouble::Down, _)) => {
                    tokio::time::sleep(self.latency).await;
                    return Err(crate::port::DeliveryError::Retry {
                        after: None,
                        reason: "503".into(),
                    });
                }
                None => {}
            }
            tokio::time::sleep(self.latency).await;
            self.delivered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(msg.id)
                .or_insert((lane, Instant::now()));
            Ok(())
        })
    }
}

/// One delivery scenario: `lanes` × `per_lane` messages queued at once; returns, per lane, when
/// its last message arrived (from the start), and when the whole outbox was empty.
async fn delivery_scenario(
    dir: &std::path::Path,
    lanes: usize,
    per_lane: usize,
    trouble: &[(usize, Trouble, Duration)],
) -> anyhow::Result<(Vec<(usize, Duration)>, Duration)> {
    let config = Arc::new(Config::builtin()?);
    let clock = Arc::new(VirtualClock::new(Utc::now()));
    let app = Arc::new(App::new(Store::open(dir)?, config, clock.clone()));
    let mut msgs = Vec::with_capacity(lanes * per_lane);
    for n in 0..per_lane {
        for l in 0..lanes {
            let inc = IncidentId(l as u64 + 1);
            msgs.push(crate::store::Outgoing::new(
                app.store().outbox_id()?,
                inc,
                &format!("inc-{}", inc.0),
                crate::domain::Message {
                    at: clock.now(),
                    kind: crate::domain::MessageKind::Post,
                    text: format!("message {n}"),
                    mentions: Vec::new(),
                    buttons: Vec::new(),
                    nudge: None,
                },
            ));
        }
    }
    let start = Instant::now();
    let port = Arc::new(SimPort {
        latency: Duration::from_millis(2),
        stall: Duration::from_secs(2),
        trouble: std::sync::Mutex::new(
            trouble
                .iter()
                .map(|(l, t, d)| (format!("incident:{}", l + 1), (*t, start + *d)))
                .collect(),
        ),
        delivered: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    app.store().queue(&msgs)?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let courier =
        tokio::spawn(crate::delivery::Courier::new(app.clone(), port.clone()).run(stop_rx));
    let limit = start + Duration::from_secs(120);
    while Instant::now() < limit {
        if port
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
            >= msgs.len()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let empty = start.elapsed();
    let _ = stop.send(true);
    let _ = courier.await;
    let delivered = port
        .delivered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    anyhow::ensure!(
        delivered.len() == msgs.len(),
        "the delivery bench lost messages: {} of {}",
        delivered.len(),
        msgs.len()
    );
    let mut last: std::collections::BTreeMap<usize, Duration> = std::collections::BTreeMap::new();
    for (lane, at) in delivered.values() {
        let l: usize = lane
            .strip_prefix("incident:")
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .unwrap_or(0);
        let d = at.saturating_duration_since(start);
        let e = last.entry(l).or_insert(d);
        *e = (*e).max(d);
    }
    Ok((last.into_iter().collect(), empty))
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "n/a".into();
    }
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// `warroom bench --delivery`: the courier under faults, against a simulated platform (2 ms a
/// delivery), each scenario repeated `runs` times; medians over runs, ratios within the run.
pub async fn delivery(dir: &std::path::Path, runs: usize) -> anyhow::Result<String> {
    const LANES: usize = 20;
    const PER_LANE: usize = 25;
    let mut healthy = Vec::new();
    let mut stalled_others = Vec::new();
    let mut stalled_self = Vec::new();
    let mut after_recovery = Vec::new();
    let outage = Duration::from_secs(5);
    for r in 0..runs.max(1) {
        let sub = dir.join(format!("d{r}"));
        let (lanes, _) = delivery_scenario(&sub.join("a"), LANES, PER_LANE, &[]).await?;
        let mut all: Vec<Duration> = lanes.iter().map(|(_, d)| *d).collect();
        all.sort();
        healthy.push(percentile(&all, 0.5));

        let stall = Duration::from_secs(6);
        let (lanes, _) = delivery_scenario(
            &sub.join("b"),
            LANES,
            PER_LANE,
            &[(0, Trouble::Stalled, stall)],
        )
        .await?;
        let mut others: Vec<Duration> = lanes
            .iter()
            .filter(|(l, _)| *l != 0)
            .map(|(_, d)| *d)
            .collect();
        others.sort();
        stalled_others.push(percentile(&others, 0.5));
        stalled_self.push(
            lanes
                .iter()
                .find(|(l, _)| *l == 0)
                .map_or(Duration::ZERO, |(_, d)| *d),
        );

        let down: Vec<(usize, Trouble, Duration)> =
            (0..LANES).map(|l| (l, Trouble::Down, outage)).collect();
        let (_, empty) = delivery_scenario(&sub.join("c"), LANES, PER_LANE, &down).await?;
        after_recovery.push(empty.saturating_sub(outage));
        let _ = std::fs::remove_dir_all(&sub);
    }
    for v in [
        &mut healthy,
        &mut stalled_others,
        &mut stalled_self,
        &mut after_recovery,
    ] {
        v.sort();
    }
    let h = percentile(&healthy, 0.5);
    let so = percentile(&stalled_others, 0.5);
    Ok(format!(
        "delivery ({LANES} lanes × {PER_LANE} messages, 2 ms a delivery, medians over {runs} runs):\n\
         all healthy: a lane's backlog delivered in {}\n\
         one lane stalled for 6 s (2 s request timeouts): the other lanes in {} ({} of healthy), the stalled lane in {}\n\
         every lane down (503) for {} s: backlog delivered {} after recovery\n",
        millis(h),
        millis(so),
        ratio(so, h),
        millis(percentile(&stalled_self, 0.5)),
        outage.as_secs(),
        millis(percentile(&after_recovery, 0.5)),
    ))
}
