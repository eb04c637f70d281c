//! The chat port: the one way the engine's messages reach people. Discord and the console
//! implement it; the outbox courier drives it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::store::Outgoing;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Debug, PartialEq)]
pub enum DeliveryError {
    /// Try again later (5xx, 429, network): after `after` if the platform said so.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The destination cannot take messages for now, and retrying alone will not fix it soon
    /// (no permission to create the channel, for example). The courier sends the waiting
    /// nudges by the fallback route, says so once, and retries with capped backoff.
    Unreachable { reason: String },
    /// The platform will never take this message (for example a message it finds invalid).
    Permanent { reason: String },
}

pub trait ChatPort: Send + Sync {
    /// Delivers one message. `msg.id` is its idempotency key: a retry of the same id must not
    /// show twice where the platform can deduplicate.
    fn deliver<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), DeliveryError>>;

    /// Told once message `id` is recorded as delivered (it has left the outbox), so that the
    /// port may drop what it kept to recognise a repeat of it.
    fn delivered(&self, _id: u64) {}
}
