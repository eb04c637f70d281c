//! Delivery: the courier against a simulated platform (2 ms a delivery) with one lane stalled
//! and with every lane down, beside the all-healthy run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::app::App;
use crate::clock::{Clock, VirtualClock};
use crate::config::Config;
use crate::domain::IncidentId;
use crate::store::Store;

use super::{Figure, ms, percentile};

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

/// `warroom bench --delivery`: the courier under faults, against a simulated platform (2 ms a
/// delivery), each scenario repeated `runs` times; medians over runs, ratios within the run.
pub async fn delivery(dir: &std::path::Path, runs: usize) -> anyhow::Result<Vec<Figure>> {
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
    let what = format!("{LANES} lanes × {PER_LANE} messages, median of {runs} runs");
    Ok(vec![
        Figure::new(
            "delivery_healthy_ms",
            format!("delivery, all lanes healthy: a lane's backlog delivered ({what})"),
            ms(h),
            "ms",
        ),
        Figure::new(
            "delivery_one_stalled_ms",
            "delivery, one lane stalled 6 s: the other lanes' backlogs delivered",
            ms(so),
            "ms",
        )
        .floor("all healthy", ms(h), "ms")
        .note(format!(
            "the stalled lane in {:.0} ms",
            ms(percentile(&stalled_self, 0.5))
        )),
        Figure::new(
            "delivery_after_outage_ms",
            format!(
                "delivery, every lane down (503) for {} s: backlog delivered after recovery",
                outage.as_secs()
            ),
            ms(percentile(&after_recovery, 0.5)),
            "ms",
        ),
    ])
}
