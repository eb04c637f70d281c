//! The platform's rate limits, kept as data: a global gate for limits the platform marks global,
//! and a gate per bucket (learned from `X-RateLimit-Bucket`) for the rest. A request is admitted
//! only through its gates; a wait the platform asked for is kept by every later request, however
//! newly queued. After a 429 the first request past the wait goes alone, as a probe: the others
//! wait for its answer, so a long limit costs one request per `retry_after`, not one per lane.
//!
//! Shaped after twilight's http-ratelimiting (buckets by header, a global gate, waits that no new
//! request can jump); the code is our own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a request waits for a probe in flight before asking again.
pub const PROBE_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Default, Clone)]
struct Gate {
    /// Closed until then.
    until: Option<Instant>,
    /// Once open again, the first request goes alone (after a 429, not after a spent bucket).
    probe: bool,
    /// A probe is in flight.
    probing: bool,
}

impl Gate {
    /// Ok(true): admitted as the probe; Ok(false): admitted; Err: wait this long.
    fn admit(&mut self, now: Instant) -> Result<bool, Duration> {
        if let Some(until) = self.until {
            if until > now {
                return Err(until.saturating_duration_since(now));
            }
            if !self.probe {
                self.until = None;
                return Ok(false);
            }
            if self.probing {
                return Err(PROBE_WAIT);
            }
            self.probing = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn close(&mut self, until: Instant, probe: bool) {
        // Never shorten a wait already asked for.
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
        }
        self.probe |= probe;
    }

    fn open(&mut self) {
        *self = Gate::default();
    }
}

#[derive(Default)]
struct Inner {
    global: Gate,
    /// bucket id → gate
    buckets: HashMap<String, Gate>,
    /// route key → bucket id; a route with no known bucket is its own.
    routes: HashMap<String, String>,
}

/// A route's major parameter: Discord's limits are per bucket *and* channel, guild or webhook,
/// so two channels that share a bucket hash still have limits of their own.
fn major(route: &str) -> &str {
    let mut segs = route.split('/');
    while let Some(seg) = segs.next() {
        if matches!(seg, "channels" | "guilds" | "webhooks") {
            return segs.next().unwrap_or("");
        }
    }
    ""
}

impl Inner {
    fn bucket_of(&self, route: &str) -> String {
        match self.routes.get(route) {
            Some(hash) => format!("{hash}:{}", major(route)),
            None => route.to_string(),
        }
    }
}

/// The latest instant a wait may reach: a platform that asks for more is asked again later.
const LONGEST_WAIT: Duration = Duration::from_secs(3600);

fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(LONGEST_WAIT)).unwrap_or(now)
}

/// What a response said about limits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// `X-RateLimit-Bucket`.
    pub bucket: Option<String>,
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-RateLimit-Reset-After`.
    pub reset_after: Option<Duration>,
    /// A 429: how long to wait, and whether the limit is global.
    pub limited: Option<Limited>,
    /// False when no response came (timeout, connection lost): a probe learnt nothing.
    pub answered: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub retry_after: Duration,
    pub global: bool,
}

#[derive(Default)]
pub struct RateLimits {
    inner: Mutex<Inner>,
}

/// Leave to send one request on a route. Dropped without `settle` (the request was cancelled),
/// it releases the probe it held.
pub struct Ticket<'a> {
    limits: &'a RateLimits,
    route: String,
    global_probe: bool,
    bucket_probe: Option<String>,
}

impl RateLimits {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data, changed in place by short non-panicking code.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a request on `route` now, or says how long to wait first.
    pub fn admit(&self, route: &str, now: Instant) -> Result<Ticket<'_>, Duration> {
        let mut inner = self.inner();
        let bucket = inner.bucket_of(route);
        // Check the bucket first without side effects, so that a closed bucket does not leave
        // the global gate's probe taken.
        if let Some(g) = inner.buckets.get(&bucket)
            && let Some(until) = g.until
            && until > now
        {
            return Err(until.saturating_duration_since(now));
        }
        let global_probe = inner.global.admit(now)?;
        let bucket_probe = match inner.buckets.entry(bucket.clone()).or_default().admit(now) {
            Ok(true) => Some(bucket),
            Ok(false) => None,
            Err(wait) => {
                if global_probe {
                    inner.global.probing = false;
                }
                return Err(wait);
            }
        };
        Ok(Ticket {
            limits: self,
            route: route.to_string(),
            global_probe,
            bucket_probe,
        })
    }

    /// Waits (asynchronously) until `route` admits a request.
    pub async fn acquire(&self, route: &str) -> Ticket<'_> {
        loop {
            match self.admit(route, Instant::now()) {
                Ok(t) => return t,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// The longest wait in force on any gate, for logs and health.
    pub fn global_wait(&self, now: Instant) -> Option<Duration> {
        self.inner()
            .global
            .until
            .filter(|u| *u > now)
            .map(|u| u.saturating_duration_since(now))
    }
}

impl Ticket<'_> {
    /// Records what the response said.
    pub fn settle(mut self, outcome: &Outcome, now: Instant) {
        let mut inner = self.limits.inner();
        if let Some(b) = &outcome.bucket {
            inner.routes.insert(self.route.clone(), b.clone());
        }
        let bucket = inner.bucket_of(&self.route);
        if self.global_probe {
            inner.global.probing = false;
        }
        if let Some(b) = &self.bucket_probe
            && let Some(g) = inner.buckets.get_mut(b)
        {
            g.probing = false;
        }
        if outcome.answered {
            match &outcome.limited {
                Some(l) if l.global => inner.global.close(after(now, l.retry_after), true),
                Some(l) => inner
                    .buckets
                    .entry(bucket)
                    .or_default()
                    .close(after(now, l.retry_after), true),
                None => {
                    // Any answer but a 429 means the limit we probed is over.
                    if self.global_probe {
                        inner.global.open();
                    }
                    let g = inner.buckets.entry(bucket).or_default();
                    if self.bucket_probe.is_some() {
                        g.open();
                    }
                    if outcome.remaining == Some(0)
                        && let Some(reset) = outcome.reset_after
                    {
                        g.close(after(now, reset), false);
                    }
                }
            }
        }
        self.global_probe = false;
        self.bucket_probe = None;
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.global_probe && self.bucket_probe.is_none() {
            return;
        }
        let mut inner = self.limits.inner();
        if self.global_probe {
            inner.global.probing = false;
        }
        if let Some(b) = &self.bucket_probe
            && let Some(g) = inner.buckets.get_mut(b)
        {
            g.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(secs: u64, global: bool) -> Outcome {
        Outcome {
            limited: Some(Limited {
                retry_after: Duration::from_secs(secs),
                global,
            }),
            answered: true,
            ..Outcome::default()
        }
    }

    #[test]
    fn a_global_limit_holds_every_route_and_then_admits_one_probe() {
        let rl = RateLimits::default();
        let t0 = Instant::now();
        let t = rl.admit("POST /channels/1/messages", t0).ok().unwrap();
        t.settle(&limited(5, true), t0);
        // Another route, newly asked: it waits too.
        assert!(rl.admit("POST /channels/2/messages", t0).is_err());
        let later = t0 + Duration::from_secs(5);
        let probe = rl.admit("POST /channels/2/messages", later).ok().unwrap();
        assert_eq!(
            rl.admit("POST /channels/3/messages", later).err(),
            Some(PROBE_WAIT),
            "only the probe goes"
        );
        probe.settle(
            &Outcome {
                answered: true,
                ..Outcome::default()
            },
            later,
        );
        assert!(rl.admit("POST /channels/3/messages", later).is_ok());
    }

    #[test]
    fn a_bucket_limit_holds_only_its_routes_and_a_dropped_probe_is_released() {
        let rl = RateLimits::default();
        let t0 = Instant::now();
        let mut o = limited(2, false);
        o.bucket = Some("abc".into());
        rl.admit("POST /channels/1/messages", t0)
            .ok()
            .unwrap()
            .settle(&o, t0);
        assert!(rl.admit("POST /channels/1/messages", t0).is_err());
        assert!(rl.admit("POST /channels/9/messages", t0).is_ok());
        let later = t0 + Duration::from_secs(2);
        drop(rl.admit("POST /channels/1/messages", later).ok().unwrap());
        assert!(
            rl.admit("POST /channels/1/messages", later).is_ok(),
            "a cancelled probe frees the gate"
        );
    }

    #[test]
    fn a_shared_bucket_hash_still_limits_each_channel_on_its_own() {
        let rl = RateLimits::default();
        let t0 = Instant::now();
        for ch in ["1", "2"] {
            rl.admit(&format!("Post /channels/{ch}/messages"), t0)
                .ok()
                .unwrap()
                .settle(
                    &Outcome {
                        bucket: Some("same-hash".into()),
                        answered: true,
                        ..Outcome::default()
                    },
                    t0,
                );
        }
        let mut o = limited(5, false);
        o.bucket = Some("same-hash".into());
        rl.admit("Post /channels/1/messages", t0)
            .ok()
            .unwrap()
            .settle(&o, t0);
        assert!(rl.admit("Post /channels/1/messages", t0).is_err());
        assert!(
            rl.admit("Post /channels/2/messages", t0).is_ok(),
            "channel 2 has its own limit"
        );
    }

    #[test]
    fn an_absurd_retry_after_is_capped() {
        let rl = RateLimits::default();
        let t0 = Instant::now();
        rl.admit("Post /channels/1/messages", t0)
            .ok()
            .unwrap()
            .settle(&limited(u64::MAX / 4, true), t0);
        let wait = rl.admit("Post /channels/1/messages", t0).err().unwrap();
        assert!(wait <= LONGEST_WAIT, "{wait:?}");
    }

    #[test]
    fn a_spent_bucket_waits_for_its_reset_without_a_probe() {
        let rl = RateLimits::default();
        let t0 = Instant::now();
        rl.admit("PATCH /channels/1/messages/:id", t0)
            .ok()
            .unwrap()
            .settle(
                &Outcome {
                    remaining: Some(0),
                    reset_after: Some(Duration::from_secs(1)),
                    answered: true,
                    ..Outcome::default()
                },
                t0,
            );
        assert!(rl.admit("PATCH /channels/1/messages/:id", t0).is_err());
        let later = t0 + Duration::from_secs(1);
        assert!(rl.admit("PATCH /channels/1/messages/:id", later).is_ok());
        assert!(rl.admit("PATCH /channels/1/messages/:id", later).is_ok());
    }
}
