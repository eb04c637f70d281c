//! The board: how long the index page of many open incidents takes to render server-side
//! (`board::render_index`, the handler's own function), and the same with the store read a
//! request adds, beside the floor of reading the store alone.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::app::{App, ReplyKind};
use crate::clock::VirtualClock;
use crate::config::Config;
use crate::domain::UserName;
use crate::store::{Durability, Store, StoreOptions};

use super::{Figure, ms, percentile};

/// The target for a page of 1,000 open incidents.
const TARGET_MS: f64 = 50.0;
/// How many times each measurement is repeated.
const REPEATS: usize = 30;

fn timed(mut f: impl FnMut() -> anyhow::Result<usize>) -> anyhow::Result<(Vec<Duration>, usize)> {
    let mut times = Vec::with_capacity(REPEATS);
    let mut bytes = 0;
    for _ in 0..REPEATS {
        let start = Instant::now();
        bytes = f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times, bytes))
}

/// Opens `incidents` incidents (each with an update and a Plan B, as a busy night has) and
/// times the index page.
pub fn board(dir: &Path, incidents: usize) -> anyhow::Result<Vec<Figure>> {
    let config = Arc::new(Config::builtin()?);
    let clock = Arc::new(VirtualClock::new(Utc::now()));
    let options = StoreOptions {
        durability: Durability::Flush,
        ..StoreOptions::default()
    };
    let app = App::new(Store::open_with(dir, &options)?, config, clock.clone());
    let alice = app.actor(&UserName::new("alice"));
    let sam = app.actor(&UserName::new("sam"));
    for n in 0..incidents {
        let r = app.run_line(
            &alice,
            None,
            &format!(
                "/incident open title:\"Board bench <{n}> & co\" severity:{} service:mail force:true",
                n % 4 + 1
            ),
        );
        anyhow::ensure!(r.kind == ReplyKind::Reply, "bench open failed: {}", r.text);
        let r = app.run_line(&alice, r.incident, "/update text:\"looking at the logs\"");
        anyhow::ensure!(
            r.kind == ReplyKind::Reply,
            "bench update failed: {}",
            r.text
        );
        if n % 2 == 0 {
            let r = app.run_line(
                &sam,
                r.incident,
                "/plan open plan:B title:\"Rebuild from backup\" lead:carol team:rebuild",
            );
            anyhow::ensure!(r.kind == ReplyKind::Reply, "bench plan failed: {}", r.text);
        }
        for o in app.store().outbox()? {
            app.store().delivered(o.id)?;
        }
        clock.advance(chrono::TimeDelta::seconds(1));
    }
    let all = app.store().incidents()?;
    let open = all.iter().filter(|i| i.is_open()).count();
    anyhow::ensure!(open == incidents, "{open} open, expected {incidents}");
    let (render, bytes) = timed(|| Ok(crate::board::render_index(&app, &all).len()))?;
    let (read, _) = timed(|| Ok(app.store().incidents()?.len()))?;
    let (request, _) = timed(|| {
        let all = app.store().incidents()?;
        Ok(crate::board::render_index(&app, &all).len())
    })?;
    let p50 = ms(percentile(&render, 0.5));
    let p99 = ms(percentile(&render, 0.99));
    let full = ms(percentile(&request, 0.5));
    let read50 = ms(percentile(&read, 0.5));
    Ok(vec![
        Figure::new(
            "board_render_p50",
            format!("board index of {incidents} open incidents, server-side render (median of {REPEATS})"),
            p50,
            "ms",
        )
        .target(format!("under {TARGET_MS:.0} ms at 1,000"), p50 < TARGET_MS && p99 < TARGET_MS)
        .note(format!("slowest {p99:.2} ms; {} KiB of HTML", bytes / 1024)),
        Figure::new(
            "board_request_p50",
            format!("board index of {incidents} open incidents, store read and render (median)"),
            full,
            "ms",
        )
        .floor("reading the incidents alone", read50, "ms"),
    ])
}
