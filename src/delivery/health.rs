//! Delivery health: which lanes are in trouble, since when and why, so that `/incident status`,
//! the status card and the logs can say "3 messages waiting for #inc-4 since 02:10: Discord 503".

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::domain::IncidentId;
use crate::domain::engine::clock;

/// One lane's trouble.
#[derive(Clone, Debug, PartialEq)]
pub struct Trouble {
    /// The incident the lane belongs to, if it is an incident's channel.
    pub incident: Option<IncidentId>,
    /// How people name the destination: `#inc-4-db-down`, `sam's direct messages`.
    pub place: String,
    pub since: DateTime<Utc>,
    pub reason: String,
    /// Messages waiting in the lane when it last failed.
    pub waiting: usize,
    /// The destination cannot take messages at all for now (no permission, no channel), so its
    /// nudges take the fallback route.
    pub unreachable: bool,
}

impl Trouble {
    /// One line for people: what waits, where, since when, and why.
    pub fn line(&self) -> String {
        let what = match self.waiting {
            1 => "1 message".to_string(),
            n => format!("{n} messages"),
        };
        if self.unreachable {
            format!(
                "{} cannot be used since {}: {}. {what} waiting; nudges go by direct message and to the ops channel meanwhile.",
                self.place,
                clock(self.since),
                self.reason
            )
        } else {
            format!(
                "{what} waiting for {} since {}: {}",
                self.place,
                clock(self.since),
                self.reason
            )
        }
    }
}

/// Shared between the courier, which writes it, and whoever shows status.
#[derive(Default)]
pub struct Health {
    lanes: Mutex<BTreeMap<String, Trouble>>,
}

impl Health {
    fn lanes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Trouble>> {
        // Plain data, replaced whole: a poisoned lock holds nothing half-written.
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failure; `since` stays at the first failure of the episode.
    pub fn trouble(&self, lane: &str, mut t: Trouble) {
        let mut lanes = self.lanes();
        if let Some(old) = lanes.get(lane) {
            t.since = old.since;
        }
        lanes.insert(lane.to_string(), t);
    }

    /// The lane delivered: its trouble is over. Returns the trouble it had.
    pub fn clear(&self, lane: &str) -> Option<Trouble> {
        self.lanes().remove(lane)
    }

    pub fn get(&self, lane: &str) -> Option<Trouble> {
        self.lanes().get(lane).cloned()
    }

    /// Every lane in trouble.
    pub fn all(&self) -> Vec<(String, Trouble)> {
        self.lanes()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The lines about one incident: its channel, and direct messages about it.
    pub fn lines_for(&self, id: IncidentId) -> Vec<String> {
        self.lanes()
            .values()
            .filter(|t| t.incident == Some(id))
            .map(Trouble::line)
            .collect()
    }
}
