//! The outbox courier and the timer scheduler: the two background loops.
//!
//! The scheduler is modelled on mini-redis's expiry loop: it sleeps until the earliest
//! deadline or until poked, fires what is due, and goes round again. Neither loop ends on an
//! error: it is logged and the loop carries on after a pause.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::port::{ChatPort, DeliveryError};

/// Delivery backoff: 1 s doubling to 5 min, or what the platform asked for.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The outcome of one pass over the outbox.
#[derive(Debug, PartialEq)]
pub enum Drained {
    /// Everything was delivered (or dead-lettered).
    Empty,
    /// Delivery failed; try again after this long. Later messages wait, to keep order.
    RetryAfter(Duration),
}

pub struct Courier {
    app: Arc<App>,
    port: Arc<dyn ChatPort>,
    backoff: Duration,
}

impl Courier {
    pub fn new(app: Arc<App>, port: Arc<dyn ChatPort>) -> Courier {
        Courier {
            app,
            port,
            backoff: BACKOFF_START,
        }
    }

    /// Delivers waiting messages in order until the outbox is empty or a delivery fails.
    pub async fn drain(&mut self) -> Drained {
        loop {
            let msg = match self.app.store().outbox_first() {
                Ok(Some(m)) => m,
                Ok(None) => {
                    self.backoff = BACKOFF_START;
                    return Drained::Empty;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    return Drained::RetryAfter(ERROR_PAUSE);
                }
            };
            match self.port.deliver(&msg).await {
                Ok(()) => {
                    if let Err(e) = self.app.store().delivered(msg.id) {
                        // It stays in the outbox and goes again: at least once.
                        tracing::error!(error = %e, "cannot mark a message delivered");
                        return Drained::RetryAfter(ERROR_PAUSE);
                    }
                    self.backoff = BACKOFF_START;
                }
                Err(DeliveryError::Retry { after, reason }) => {
                    let wait = after.unwrap_or(self.backoff).min(BACKOFF_MAX);
                    tracing::warn!(incident = %msg.incident, outbox_id = msg.id, %reason, ?wait, "delivery failed; will retry");
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                    return Drained::RetryAfter(wait);
                }
                Err(DeliveryError::Permanent { reason }) => {
                    tracing::error!(incident = %msg.incident, outbox_id = msg.id, %reason, "the chat platform refused a message for good; kept in dead_letters");
                    if let Err(e) = self.app.store().dead_letter(&msg, &reason) {
                        tracing::error!(error = %e, "cannot move a message to dead_letters");
                        return Drained::RetryAfter(ERROR_PAUSE);
                    }
                }
            }
        }
    }

    /// Delivers until shutdown, waking on new messages and retrying with backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let ready = self.app.outbox_ready.clone();
        loop {
            let pause = match self.drain().await {
                Drained::Empty => None,
                Drained::RetryAfter(d) => Some(d),
            };
            tokio::select! {
                _ = ready.notified() => {}
                _ = tokio::time::sleep(pause.unwrap_or(Duration::MAX / 4)), if pause.is_some() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }
}

/// Fires timers as they fall due, until shutdown.
pub async fn run_scheduler(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let poke = app.timers_changed.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = app.clock().now();
        let wait = match app.fire_due(now).and_then(|_| app.next_due()) {
            Ok(Some(due)) => app.clock().real_wait(due),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler could not fire a timer; retrying");
                Some(ERROR_PAUSE)
            }
        };
        tokio::select! {
            _ = poke.notified() => {}
            _ = tokio::time::sleep(wait.unwrap_or(Duration::MAX / 4)), if wait.is_some() => {}
            _ = shutdown.changed() => {}
        }
    }
}
