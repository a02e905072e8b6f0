//! Operating on the dead-letter queue: list, show, replay and purge.
//!
//! Every operation reads the queue the same way: it takes the messages with `basic.get`
//! without acking them, so nothing can be lost while it looks, and whatever it does not settle
//! goes back to the queue, in its original order, when its connection closes. Only a replay
//! that succeeded, or whose new dead letter is confirmed, removes a dead letter; only a purge
//! deletes one.

use crate::broker::dead_letter::DeadLetterInfo;
use crate::broker::settle::{Fate, SettleContext, Settled, WebhookOutcome, settle};
use crate::broker::{AmqpError, Broker, Inbound};
use crate::config::{Config, Webhook};
use crate::model::event::{self, Event};
use crate::pipeline::delivery::{Deliverer, DeliveryRequest};
use crate::pipeline::outcome::{Failure, Outcome, Reason};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One dead letter as read from the queue.
pub struct Entry {
    /// 1-based position in the queue when it was read.
    pub position: usize,
    /// Its `x-relay-*` headers.
    pub info: DeadLetterInfo,
    /// The event type, when the body is an event.
    pub event_type: Option<String>,
    /// The message itself; settling it through its handle removes or returns it.
    pub message: Inbound,
}

impl Entry {
    /// The original event bytes.
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }
}

/// Which dead letters an operation applies to. Empty fields select everything.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Positions (`3`) or event ids (`req-1:RequestApproved:…`); empty selects all.
    pub ids: Vec<String>,
    /// Only dead letters for this webhook.
    pub webhook: Option<String>,
    /// Only dead letters with this reason.
    pub reason: Option<Reason>,
}

impl Selection {
    /// Whether `entry` is selected.
    pub fn matches(&self, entry: &Entry) -> bool {
        let id_ok = self.ids.is_empty()
            || self.ids.iter().any(|id| {
                id.parse::<usize>().ok() == Some(entry.position)
                    || entry.info.event_id.as_deref() == Some(id.as_str())
            });
        let webhook_ok = self
            .webhook
            .as_ref()
            .is_none_or(|w| entry.info.webhook.as_ref() == Some(w));
        let reason_ok = self.reason.is_none_or(|r| entry.info.reason == Some(r));
        id_ok && webhook_ok && reason_ok
    }
}

/// Why the dead letters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The queue has not been declared yet: no worker has run with this config, so there is
    /// not a single dead letter. Not a broker failure; the caller says so in one line.
    #[error(
        "the dead-letter queue `{0}` does not exist yet (no worker has declared it), so there are \
         no dead letters"
    )]
    Missing(String),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] AmqpError),
}

/// Reads up to `scan_limit` messages from the dead-letter queue without acking them. They stay
/// with this connection until settled or until it closes.
///
/// The queue's existence is checked first with a passive declare: `basic.get` on a missing
/// queue would close the channel with a protocol error. A missing queue is
/// [`ReadError::Missing`]; the consuming channel is then closed, so the broker connection is
/// done (every caller reads once per connection).
pub async fn read_all(
    broker: &Broker,
    queue: &str,
    scan_limit: usize,
) -> Result<Vec<Entry>, ReadError> {
    ensure_exists(broker, queue).await?;
    let mut entries = Vec::new();
    while entries.len() < scan_limit {
        let Some(message) = broker.fetch(queue).await? else {
            break;
        };
        let info = DeadLetterInfo::from_properties(&message.properties);
        let event_type = serde_json::from_slice::<serde_json::Value>(&message.body)
            .ok()
            .and_then(|v| v.get("event_type")?.as_str().map(str::to_string));
        entries.push(Entry {
            position: entries.len() + 1,
            info,
            event_type,
            message,
        });
    }
    Ok(entries)
}

/// [`ReadError::Missing`] when `queue` has not been declared; other broker errors as they are.
async fn ensure_exists(broker: &Broker, queue: &str) -> Result<(), ReadError> {
    let declared = broker
        .channel()
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..lapin::options::QueueDeclareOptions::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await;
    match declared {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(ReadError::Missing(queue.to_string())),
        Err(e) => Err(ReadError::Broker(AmqpError::Operation {
            operation: format!("check queue `{queue}`"),
            message: broker_message(&e),
        })),
    }
}

/// Whether the broker answered `NOT_FOUND` (the queue does not exist).
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp) if matches!(
            amqp.kind(),
            lapin::protocol::AMQPErrorKind::Soft(lapin::protocol::AMQPSoftError::NOTFOUND)
        )
    )
}

/// The broker's reply text for a protocol error (no URL in it), else a generic line: lapin's
/// other errors can quote the connection URL.
fn broker_message(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().as_str().to_string(),
        _ => "the broker connection failed".to_string(),
    }
}

/// What a purge did.
#[derive(Debug, Default)]
pub struct Purged {
    /// Dead letters deleted.
    pub deleted: usize,
    /// Why others were not (their deletion was lost; they stay queued).
    pub errors: Vec<String>,
}

/// Deletes `entries`, each settled as removed (acked).
pub async fn purge(entries: &[&Entry]) -> Purged {
    let mut purged = Purged::default();
    let context = SettleContext::standalone(CancellationToken::new());
    for entry in entries {
        match settle(&entry.message, Fate::Remove, &context).await {
            Settled::Lost(e) => purged.errors.push(e.to_string()),
            _ => purged.deleted += 1,
        }
    }
    purged
}

/// How one replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayResult {
    /// Delivered; the dead letter was removed.
    Delivered {
        /// Attempts it took.
        attempts: u32,
    },
    /// Failed again; a new dead letter (with the new reason) replaced the old one.
    FailedAgain(Failure),
    /// Not attempted; the dead letter stays where it was.
    Skipped(String),
    /// With `--dry-run`: what would be attempted.
    WouldReplay,
}

/// The per-message result of a replay, for the summary.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Position in the queue when read.
    pub position: usize,
    /// The event id, if known.
    pub event_id: Option<String>,
    /// The webhook it was replayed to.
    pub webhook: Option<String>,
    /// What happened.
    pub result: ReplayResult,
}

/// How a replay runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Report what would be replayed; change nothing.
    pub dry_run: bool,
    /// Attempts per dead letter instead of the webhook's `max_attempts`.
    pub attempts: Option<u32>,
}

/// Re-delivers one dead letter to the webhook named in its `x-relay-webhook` header, and only
/// to it, with the current config (template, URL, token). On success the dead letter is
/// acked; on failure a new dead letter is published with a confirm and then the old one is
/// acked. Anything else leaves it in the queue.
pub async fn replay_one(
    entry: &Entry,
    config: &Config,
    deliverer: &Deliverer,
    options: ReplayOptions,
    cancel: &CancellationToken,
) -> Replayed {
    let replayed = |result| Replayed {
        position: entry.position,
        event_id: entry.info.event_id.clone(),
        webhook: entry.info.webhook.clone(),
        result,
    };
    let (webhook, event) = match target(entry, config) {
        Ok(target) => target,
        Err(why) => return replayed(ReplayResult::Skipped(why)),
    };
    if options.dry_run {
        return replayed(ReplayResult::WouldReplay);
    }
    let outcome = redeliver(webhook, &event, config, deliverer, options, cancel).await;
    replayed(settle_replay(entry, webhook, &event, outcome, cancel).await)
}

/// The webhook a dead letter goes back to and its event, or why it is not replayable.
fn target<'c>(entry: &Entry, config: &'c Config) -> Result<(&'c Arc<Webhook>, Event), String> {
    let Some(name) = entry.info.webhook.as_deref() else {
        return Err("no x-relay-webhook header (an invalid event is not replayable)".into());
    };
    let Some(webhook) = config.webhook(name) else {
        return Err(format!("webhook `{name}` is not in the current config"));
    };
    let event = event::decode(entry.body(), entry.message.message_id())
        .map_err(|e| format!("invalid event: {e}"))?;
    Ok((webhook, event))
}

/// Renders and delivers the event again; never parks.
async fn redeliver(
    webhook: &Arc<Webhook>,
    event: &Event,
    config: &Config,
    deliverer: &Deliverer,
    options: ReplayOptions,
    cancel: &CancellationToken,
) -> Outcome {
    let body = match webhook.template.render(&event.raw) {
        Ok(body) => body,
        Err(e) => {
            return Outcome::DeadLetter(Failure::new(
                Reason::RenderFailed,
                config.redactor.scrub(&e.to_string()),
            ));
        }
    };
    let request = DeliveryRequest {
        webhook: Arc::clone(webhook),
        event_id: event.id.clone(),
        body: body.into(),
        prior: None,
        batch_size: None,
    };
    let mut settings = webhook.delivery;
    if let Some(attempts) = options.attempts {
        settings.max_attempts = attempts.max(1);
    }
    // A replay retries in process for the webhook's retry window, like the worker. Still
    // failing after it (or with the circuit open) means failed again: the dead letter is
    // replaced, never moved to the retry path behind the operator's back.
    match deliverer.deliver_with(&request, settings, cancel).await {
        Outcome::Park(parked) => Outcome::DeadLetter(parked.into_failure()),
        other => other,
    }
}

/// Removes the replayed dead letter when it was delivered, or replaces it with a new one
/// (published with a confirm first) when it failed again.
async fn settle_replay(
    entry: &Entry,
    webhook: &Arc<Webhook>,
    event: &Event,
    outcome: Outcome,
    cancel: &CancellationToken,
) -> ReplayResult {
    let context = SettleContext::standalone(cancel.clone());
    let outcomes = [WebhookOutcome {
        webhook: Some(Arc::clone(webhook)),
        outcome: outcome.clone(),
    }];
    let fate = Fate::Outcomes {
        event_id: Some(&event.id),
        outcomes: &outcomes,
    };
    match (outcome, settle(&entry.message, fate, &context).await) {
        (Outcome::Delivered { attempts, .. }, Settled::Acked { .. }) => {
            ReplayResult::Delivered { attempts }
        }
        (Outcome::DeadLetter(failure), Settled::Acked { .. }) => ReplayResult::FailedAgain(failure),
        (Outcome::Delivered { .. }, Settled::Lost(e)) => ReplayResult::Skipped(format!(
            "delivered, but the dead letter could not be removed ({e}); it stays queued"
        )),
        (_, Settled::Lost(e)) => ReplayResult::Skipped(format!(
            "failed again and re-dead-lettered, but the old dead letter could not be removed ({e})"
        )),
        (outcome, Settled::Requeued { reason }) => ReplayResult::Skipped(format!(
            "failed again ({}) and the new dead letter was not confirmed ({reason}); the old one \
             stays",
            match outcome {
                Outcome::DeadLetter(failure) => failure.last_error,
                other => other.label(),
            }
        )),
        // `redeliver` never parks.
        (Outcome::Park(parked), _) => ReplayResult::Skipped(format!(
            "still failing ({}); the dead letter stays",
            parked.last_error
        )),
    }
}
