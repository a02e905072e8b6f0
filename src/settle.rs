//! Settling one message: the only place that decides its fate, by the audit-trail rule
//! **ack only what is safe somewhere**. The message is an input event or a delivery coming
//! back from a webhook's retry queue; both settle the same way.
//!
//! - Every outcome final: each dead letter confirmed by the broker, each parked delivery
//!   confirmed in its webhook's retry path. Then ack.
//! - A dead letter or parked delivery the broker did not confirm: requeue (after a short
//!   pause, so a broken queue does not turn into a hot loop against the endpoints).
//!
//! An ack or requeue that fails because the channel is gone needs nothing more: the broker
//! redelivers every unacked message of a closed channel.

use crate::amqp::{AmqpError, Inbound};
use crate::config::Webhook;
use crate::dead_letter::{self, DeadLetter};
use crate::event::EventId;
use crate::outcome::Outcome;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Pause before requeueing a message whose dead letter or parked delivery was not stored.
pub const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

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

/// Settles `message` given the outcomes of every webhook it was for (none when it matched
/// nothing). Dead letters and parked deliveries are published one per (event, webhook), each
/// confirmed, before the ack.
pub async fn settle(
    message: Inbound,
    event_id: Option<&EventId>,
    outcomes: &[WebhookOutcome],
) -> Settled {
    let handle = &message.handle;
    let routing_key = message.original_routing_key();
    let mut delivered = 0;
    let mut dead_lettered = 0;
    let mut parked = 0;
    let now = SystemTime::now();
    for item in outcomes {
        let name = item.webhook.as_ref().map(|w| w.name.clone());
        let stored = match &item.outcome {
            Outcome::Delivered { .. } => {
                delivered += 1;
                continue;
            }
            Outcome::DeadLetter(failure) => {
                let letter = DeadLetter {
                    webhook: name.clone(),
                    event_id: event_id.cloned(),
                    failure: failure.clone(),
                    failed_at: now,
                };
                let properties = letter.properties(&message.properties, &routing_key);
                dead_lettered += 1;
                handle.publish_dead_letter(&message.body, properties).await
            }
            Outcome::Park(parking) => match (&item.webhook, event_id) {
                (Some(webhook), Some(id)) => {
                    let properties = dead_letter::park_properties(
                        &message.properties,
                        &webhook.name,
                        id,
                        parking,
                        &routing_key,
                    );
                    parked += 1;
                    handle
                        .publish_park(webhook, parking.next_delay, &message.body, properties)
                        .await
                }
                _ => Err(AmqpError::Operation {
                    operation: "park".into(),
                    message: "a parked delivery needs its webhook and event id".into(),
                }),
            },
        };
        if let Err(e) = stored {
            tracing::error!(
                event_id = event_id.map(|id| id.0.as_str()),
                webhook = name.as_deref(),
                error = %e,
                "not stored; requeueing the message"
            );
            tokio::time::sleep(REQUEUE_PAUSE).await;
            return match handle.requeue().await {
                Ok(()) => Settled::Requeued {
                    reason: format!("not stored: {e}"),
                },
                Err(e) => Settled::Lost(e),
            };
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
