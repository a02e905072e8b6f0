//! Settling one input message: the only place that decides its fate, by the audit-trail rule
//! **ack only what is safe somewhere**.
//!
//! - Every outcome final and every dead letter confirmed by the broker: ack.
//! - A dead letter the broker did not confirm: requeue (after a short pause, so a broken
//!   dead-letter queue does not turn into a hot loop against the endpoints).
//! - A delivery interrupted by shutdown or a lost connection: requeue, so it is redelivered.
//!
//! An ack or requeue that fails because the channel is gone needs nothing more: the broker
//! redelivers every unacked message of a closed channel.

use crate::amqp::{AmqpError, Inbound};
use crate::dead_letter::DeadLetter;
use crate::event::EventId;
use crate::outcome::Outcome;
use std::time::{Duration, SystemTime};

/// Pause before requeueing a message whose dead letter could not be stored.
pub const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// The outcome of one (event, webhook), or of the event alone when it never reached a webhook
/// (`webhook: None`, e.g. `invalid_event`).
#[derive(Debug, Clone)]
pub struct WebhookOutcome {
    /// The webhook, if the outcome is about one.
    pub webhook: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What happened to the input message.
#[derive(Debug)]
pub enum Settled {
    /// Acked: every outcome was final and every dead letter is confirmed.
    Acked {
        /// Deliveries that succeeded.
        delivered: usize,
        /// Dead letters published and confirmed.
        dead_lettered: usize,
    },
    /// Returned to the queue for redelivery.
    Requeued {
        /// Why.
        reason: String,
    },
    /// The channel was lost before the ack or requeue; the broker redelivers the message.
    Lost(AmqpError),
}

/// Settles `message` given the outcomes of every webhook it matched (none when it matched
/// nothing). Dead letters are published one per failed (event, webhook), each confirmed,
/// before the ack.
pub async fn settle(
    message: Inbound,
    event_id: Option<&EventId>,
    outcomes: &[WebhookOutcome],
) -> Settled {
    let handle = &message.handle;
    if outcomes
        .iter()
        .any(|o| matches!(o.outcome, Outcome::Interrupted { .. }))
    {
        return match handle.requeue().await {
            Ok(()) => Settled::Requeued {
                reason: "interrupted before every delivery finished".into(),
            },
            Err(e) => Settled::Lost(e),
        };
    }

    let mut delivered = 0;
    let mut dead_lettered = 0;
    let failed_at = SystemTime::now();
    for item in outcomes {
        match &item.outcome {
            Outcome::Delivered { .. } => delivered += 1,
            Outcome::DeadLetter(failure) => {
                let letter = DeadLetter {
                    webhook: item.webhook.clone(),
                    event_id: event_id.cloned(),
                    failure: failure.clone(),
                    failed_at,
                };
                let properties = letter.properties(&message.properties, &message.routing_key);
                if let Err(e) = handle.publish_dead_letter(&message.body, properties).await {
                    tracing::error!(
                        event_id = event_id.map(|id| id.0.as_str()),
                        webhook = item.webhook.as_deref(),
                        error = %e,
                        "dead letter not stored; requeueing the event"
                    );
                    tokio::time::sleep(REQUEUE_PAUSE).await;
                    return match handle.requeue().await {
                        Ok(()) => Settled::Requeued {
                            reason: format!("dead letter not stored: {e}"),
                        },
                        Err(e) => Settled::Lost(e),
                    };
                }
                dead_lettered += 1;
            }
            // Requeued above before anything was published.
            Outcome::Interrupted { .. } => {}
        }
    }
    match handle.ack().await {
        Ok(()) => Settled::Acked {
            delivered,
            dead_lettered,
        },
        Err(e) => Settled::Lost(e),
    }
}
