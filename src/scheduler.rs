//! The timer scheduler: the background loop that fires timers as they fall due.
//!
//! Modelled on mini-redis's expiry loop: it sleeps until the earliest deadline or until poked,
//! fires what is due, and goes round again. It never ends on an error: it logs it and carries on
//! after a pause.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;

const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Fires timers as they fall due, until shutdown.
pub async fn run_scheduler(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let poke = app.timers_changed.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = app.clock().now();
        // Claiming and committing is blocking sled and disk work: off the async threads.
        let worker = app.clone();
        let fired = tokio::task::spawn_blocking(move || {
            worker.fire_due(now).and_then(|_| worker.next_due())
        })
        .await;
        let fired = match fired {
            Ok(r) => r,
            Err(e) => Err(crate::store::StoreError::Sled(format!(
                "the firing task failed: {e}"
            ))),
        };
        let wait = match fired {
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
