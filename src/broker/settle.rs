//! Settling one message: the only place that decides its fate, by the audit-trail rule
//! **ack only what is safe somewhere**. The message is an input event or a delivery coming
//! back from a webhook's retry queue; both settle the same way.
//!
//! - Every outcome final: each dead letter confirmed by the broker, each parked delivery
//!   confirmed in its webhook's retry path. Then ack.
//! - A dead letter or parked delivery the broker does not confirm (the queue was deleted, the
//!   broker nacks, the publish channel failed): the outcomes are kept and only the store is
//!   retried, with backoff, until it works. The endpoints are never asked again because the
//!   broker side failed. While any message waits so, [`StoreHealth`] says the store is
//!   failing: the worker stops taking new messages and reports not ready. A queue that went
//!   missing is declared again when `amqp.declare = true`.
//! - Shutdown (or a lost connection) while waiting: requeue, so the message is not lost. That
//!   is the one path that delivers an event again to webhooks that already had it.
//!
//! An ack or requeue that fails because the channel is gone needs nothing more: the broker
//! redelivers every unacked message of a closed channel.

use crate::broker::dead_letter::{self, DeadLetter};
use crate::broker::{AmqpError, Inbound, SettleHandle};
use crate::config::Webhook;
use crate::pipeline::event::EventId;
use crate::pipeline::outcome::Outcome;
use backon::BackoffBuilder;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Pause before requeueing a message that cannot be processed now (its webhook was removed
/// by a reload), so that it does not turn into a hot loop.
pub const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// First wait before storing a dead letter or parked delivery again.
pub const STORE_RETRY_INITIAL: Duration = Duration::from_millis(200);

/// Longest wait between tries to store a dead letter or parked delivery.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(10);

/// The outcome of one (event, webhook), or of the message alone when it never reached a
/// webhook (`webhook: None`, e.g. `invalid_event`).
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    /// The webhook, if the outcome is about one.
    pub webhook: Option<Arc<Webhook>>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What happened to the message.
#[derive(Debug)]
pub enum Settled {
    /// Acked: every outcome was final and stored.
    Acked {
        /// Deliveries that succeeded.
        delivered: usize,
        /// Dead letters published and confirmed.
        dead_lettered: usize,
        /// Deliveries parked in a retry queue, confirmed.
        parked: usize,
    },
    /// Returned to the queue for redelivery.
    Requeued {
        /// Why.
        reason: String,
    },
    /// The channel was lost before the ack or requeue; the broker redelivers the message.
    Lost(AmqpError),
}

/// How many messages are holding outcomes that could not be stored yet. Shared by every
/// settle of one worker; the worker watches it to pause intake and report readiness.
#[derive(Debug)]
pub struct StoreHealth {
    held: watch::Sender<usize>,
}

impl StoreHealth {
    /// Nothing held.
    pub fn new() -> Arc<StoreHealth> {
        Arc::new(StoreHealth {
            held: watch::Sender::new(0),
        })
    }

    /// Messages holding outcomes that could not be stored yet; 0 when the store works.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.held.subscribe()
    }

    /// Whether no message is waiting for the store.
    pub fn is_healthy(&self) -> bool {
        *self.held.borrow() == 0
    }

    fn hold(self: &Arc<Self>) -> Held {
        self.held.send_modify(|n| *n += 1);
        Held(self.clone())
    }
}

/// One message waiting for the store; counted in [`StoreHealth`] until dropped.
struct Held(Arc<StoreHealth>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// What settling needs besides the message: the worker's store health, and the token that
/// ends waiting for the store (shutdown or a lost connection).
#[derive(Clone)]
pub struct SettleContext {
    /// Where a failing store is reported.
    pub health: Arc<StoreHealth>,
    /// Cancelled at shutdown or when the message's connection is lost.
    pub cancel: CancellationToken,
}

/// Settles `message` given the outcomes of every webhook it was for (none when it matched
/// nothing). Dead letters and parked deliveries are published one per (event, webhook), each
/// confirmed, before the ack; one that is not confirmed is tried again (see the module docs).
pub async fn settle(
    message: Inbound,
    event_id: Option<&EventId>,
    outcomes: &[WebhookOutcome],
    context: &SettleContext,
) -> Settled {
    let handle = &message.handle;
    let routing_key = message.original_routing_key();
    let (mut delivered, mut dead_lettered, mut parked) = (0, 0, 0);
    let now = SystemTime::now();
    for item in outcomes {
        let name = item.webhook.as_ref().map(|w| w.name.as_str());
        let store = match &item.outcome {
            Outcome::Delivered { .. } => {
                delivered += 1;
                continue;
            }
            Outcome::DeadLetter(failure) => {
                dead_lettered += 1;
                let letter = DeadLetter {
                    webhook: name.map(str::to_owned),
                    event_id: event_id.cloned(),
                    failure: failure.clone(),
                    failed_at: now,
                };
                Store::DeadLetter(letter.properties(&message.properties, &routing_key))
            }
            Outcome::Park(parking) => {
                let (Some(webhook), Some(id)) = (&item.webhook, event_id) else {
                    // Unreachable by construction: only a delivery to a webhook parks.
                    tracing::error!(
                        webhook = name,
                        "a parked delivery without its webhook or event id; requeueing"
                    );
                    return requeue(handle, "a parked delivery needs its webhook and event id")
                        .await;
                };
                parked += 1;
                let properties = dead_letter::park_properties(
                    &message.properties,
                    &webhook.name,
                    id,
                    parking,
                    &routing_key,
                );
                Store::Park {
                    webhook,
                    delay: parking.next_delay,
                    properties,
                }
            }
        };
        let id = event_id.map(|id| id.0.as_str());
        if let Err(reason) =
            store_until_confirmed(handle, &message.body, &store, context, id, name).await
        {
            return requeue(handle, &reason).await;
        }
    }
    match handle.ack().await {
        Ok(()) => Settled::Acked {
            delivered,
            dead_lettered,
            parked,
        },
        Err(e) => Settled::Lost(e),
    }
}

/// A message to return to its queue for now, without outcomes (e.g. its webhook was removed
/// by a reload while it was on its way): after [`REQUEUE_PAUSE`], requeue it.
pub async fn put_back(message: Inbound, reason: &str) -> Settled {
    tokio::time::sleep(REQUEUE_PAUSE).await;
    requeue(&message.handle, reason).await
}

async fn requeue(handle: &SettleHandle, reason: &str) -> Settled {
    match handle.requeue().await {
        Ok(()) => Settled::Requeued {
            reason: reason.to_owned(),
        },
        Err(e) => Settled::Lost(e),
    }
}

/// What one outcome stores.
enum Store<'a> {
    DeadLetter(lapin::BasicProperties),
    Park {
        webhook: &'a Webhook,
        delay: Duration,
        properties: lapin::BasicProperties,
    },
}

impl Store<'_> {
    async fn publish(&self, handle: &SettleHandle, body: &[u8]) -> Result<(), AmqpError> {
        match self {
            Store::DeadLetter(properties) => {
                handle.publish_dead_letter(body, properties.clone()).await
            }
            Store::Park {
                webhook,
                delay,
                properties,
            } => {
                handle
                    .publish_park(webhook, *delay, body, properties.clone())
                    .await
            }
        }
    }

    async fn restore_queue(&self, handle: &SettleHandle) -> Result<bool, AmqpError> {
        match self {
            Store::DeadLetter(_) => handle.restore_dead_letter_queue().await,
            Store::Park { webhook, delay, .. } => handle.restore_wait_queue(webhook, *delay).await,
        }
    }
}

/// Publishes `store` until the broker confirms it, with backoff between tries. `Err` with a
/// reason only when `context.cancel` ends the wait first.
async fn store_until_confirmed(
    handle: &SettleHandle,
    body: &[u8],
    store: &Store<'_>,
    context: &SettleContext,
    event_id: Option<&str>,
    webhook: Option<&str>,
) -> Result<(), String> {
    let mut held = None;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(STORE_RETRY_INITIAL)
        .with_max_delay(STORE_RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build();
    loop {
        let error = match store.publish(handle, body).await {
            Ok(()) => {
                if held.is_some() {
                    tracing::info!(
                        event_id,
                        webhook,
                        "stored after retrying; settling the message"
                    );
                }
                return Ok(());
            }
            Err(e) => e,
        };
        let delay = delays.next().unwrap_or(STORE_RETRY_MAX);
        if held.is_none() {
            held = Some(context.health.hold());
            tracing::error!(
                event_id,
                webhook,
                error = %error,
                "not stored; keeping the outcome and retrying the store (intake paused)"
            );
        } else {
            tracing::warn!(event_id, webhook, error = %error, retry_in_ms = delay.as_millis() as u64, "still not stored");
        }
        if matches!(error, AmqpError::Unroutable { .. })
            && let Err(e) = store.restore_queue(handle).await
        {
            tracing::warn!(error = %e, "cannot declare the missing queue");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = context.cancel.cancelled() => {
                return Err(format!("not stored before shutdown or a lost connection: {error}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_health_counts_held_messages() {
        let health = StoreHealth::new();
        let watch = health.subscribe();
        assert!(health.is_healthy());
        let first = health.hold();
        let second = health.hold();
        assert_eq!(*watch.borrow(), 2);
        assert!(!health.is_healthy());
        drop(first);
        assert!(!health.is_healthy());
        drop(second);
        assert!(health.is_healthy());
    }
}
