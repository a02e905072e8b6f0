//! Settling one message: the only place that decides its fate, by the audit-trail rule
//! **ack only what is safe somewhere**, and the only place that acks, nacks or requeues
//! (lapin's ack and nack options appear in this file alone). Every way a message ends is a
//! [`Fate`] handed to [`settle`]:
//!
//! - [`Fate::Outcomes`], for an input event or a delivery back from a retry queue: every
//!   outcome final (each dead letter confirmed by the broker, each parked delivery confirmed
//!   in its webhook's retry path), then ack. A dead letter or park the broker does not
//!   confirm (the queue was deleted, the broker nacks, the publish channel failed) keeps its
//!   outcome and only the store is retried, with backoff, until it works: the endpoints are
//!   never asked again because the broker side failed. While any message waits so,
//!   [`StoreHealth`] says the store is failing: the worker stops taking new messages and
//!   reports not ready. A queue that went missing is declared again when
//!   `amqp.declare = true`. Shutdown (or a lost connection) while waiting requeues the
//!   message, so it is not lost: the one path that delivers an event again to webhooks that
//!   already had it. A replay (`dlq replay`) settles its dead letter the same way.
//! - [`Fate::PutBack`]: it cannot be processed now (its webhook was removed by a reload); it
//!   goes back to its queue after a pause.
//! - [`Fate::Release`]: a reader looked at it and returns it untouched.
//! - [`Fate::Remove`]: an operator removed it (`dlq purge`); acked with nothing stored.
//!
//! An ack or requeue that fails because the channel is gone needs nothing more: the broker
//! redelivers every unacked message of a closed channel.

use crate::broker::dead_letter::{self, DeadLetter};
use crate::broker::inbound::{Inbound, SettleHandle};
use crate::broker::{AmqpError, topology};
use crate::config::Webhook;
use crate::model::event::EventId;
use crate::pipeline::outcome::Outcome;
use ::metrics::Counter;
use backon::BackoffBuilder;
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
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

/// How a message is to end: the one input of [`settle`].
#[derive(Debug, Clone, Copy)]
pub enum Fate<'a> {
    /// The outcomes of every webhook it was for (none when it matched nothing): dead letters
    /// and parked deliveries are stored, each confirmed, then the message is acked.
    Outcomes {
        /// The event's identity, when it decoded far enough to have one.
        event_id: Option<&'a EventId>,
        /// One per webhook, or one for the message alone.
        outcomes: &'a [WebhookOutcome],
    },
    /// It cannot be processed now: back to its queue after [`REQUEUE_PAUSE`], saying why.
    PutBack(&'a str),
    /// Taken only to be looked at: back to its queue at once, untouched.
    Release,
    /// Removed by an operator: acked with nothing stored.
    Remove,
}

/// What happened to the message.
#[derive(Debug)]
pub enum Settled {
    /// Acked: every outcome was final and stored (or an operator removed it).
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
pub struct StoreHealth {
    held: watch::Sender<usize>,
    /// Counts every store try the broker did not confirm.
    failures: Counter,
}

impl std::fmt::Debug for StoreHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHealth")
            .field("held", &*self.held.borrow())
            .finish_non_exhaustive()
    }
}

impl StoreHealth {
    /// Nothing held; failed store tries are not counted anywhere.
    pub fn new() -> Arc<StoreHealth> {
        StoreHealth::counted(Counter::noop())
    }

    /// Nothing held; every failed store try increments `failures`.
    pub fn counted(failures: Counter) -> Arc<StoreHealth> {
        Arc::new(StoreHealth {
            held: watch::Sender::new(0),
            failures,
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

/// What settling needs besides the message: the store health to report to, and the token
/// that ends waiting for the store (shutdown, a lost connection, a replay's deadline).
#[derive(Clone)]
pub struct SettleContext {
    /// Where a failing store is reported.
    pub health: Arc<StoreHealth>,
    /// Cancelled at shutdown or when the message's connection is lost.
    pub cancel: CancellationToken,
}

impl SettleContext {
    /// A context with a store health of its own, for a one-off settle (the CLI's `dlq`).
    pub fn standalone(cancel: CancellationToken) -> SettleContext {
        SettleContext {
            health: StoreHealth::new(),
            cancel,
        }
    }
}

/// Settles `message` as `fate` says. See the module docs for each fate.
pub async fn settle(message: &Inbound, fate: Fate<'_>, context: &SettleContext) -> Settled {
    let letter = Letter {
        body: &message.body,
        properties: &message.properties,
        routing_key: message.original_routing_key(),
    };
    decide(&message.handle, &letter, fate, context).await
}

/// [`Fate::Release`]: returns a message that was only looked at to its queue at once.
pub async fn release(message: &Inbound) -> Result<(), AmqpError> {
    let context = SettleContext::standalone(CancellationToken::new());
    match settle(message, Fate::Release, &context).await {
        Settled::Lost(e) => Err(e),
        _ => Ok(()),
    }
}

/// The parts of a message that its dead letters and parked deliveries copy.
struct Letter<'a> {
    body: &'a [u8],
    properties: &'a BasicProperties,
    routing_key: String,
}

/// What settling does to a message, over any [`Handle`]: generic so that every way a message
/// ends is unit-tested without a broker.
async fn decide(
    handle: &impl Handle,
    letter: &Letter<'_>,
    fate: Fate<'_>,
    context: &SettleContext,
) -> Settled {
    let (event_id, outcomes) = match fate {
        Fate::Outcomes { event_id, outcomes } => (event_id, outcomes),
        Fate::PutBack(reason) => {
            tokio::time::sleep(REQUEUE_PAUSE).await;
            return requeue(handle, reason).await;
        }
        Fate::Release => return requeue(handle, "released unchanged").await,
        Fate::Remove => return ack(handle, (0, 0, 0)).await,
    };
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
                let dead = DeadLetter {
                    webhook: name.map(str::to_owned),
                    event_id: event_id.cloned(),
                    failure: failure.clone(),
                    failed_at: now,
                };
                Store::DeadLetter(dead.properties(letter.properties, &letter.routing_key))
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
                Store::Park {
                    webhook,
                    delay: parking.next_delay,
                    properties: dead_letter::park_properties(
                        letter.properties,
                        &webhook.name,
                        id,
                        parking,
                        &letter.routing_key,
                    ),
                }
            }
        };
        let id = event_id.map(|id| id.0.as_str());
        if let Err(reason) =
            store_until_confirmed(handle, letter.body, &store, context, id, name).await
        {
            return requeue(handle, &reason).await;
        }
    }
    ack(handle, (delivered, dead_lettered, parked)).await
}

async fn ack(
    handle: &impl Handle,
    (delivered, dead_lettered, parked): (usize, usize, usize),
) -> Settled {
    handle.release();
    match handle.ack().await {
        Ok(()) => Settled::Acked {
            delivered,
            dead_lettered,
            parked,
        },
        Err(e) => Settled::Lost(e),
    }
}

async fn requeue(handle: &impl Handle, reason: &str) -> Settled {
    handle.release();
    match handle.requeue().await {
        Ok(()) => Settled::Requeued {
            reason: reason.to_owned(),
        },
        Err(e) => Settled::Lost(e),
    }
}

/// What one outcome stores.
enum Store<'a> {
    DeadLetter(BasicProperties),
    Park {
        webhook: &'a Webhook,
        delay: Duration,
        properties: BasicProperties,
    },
}

impl Store<'_> {
    async fn publish(&self, handle: &impl Handle, body: &[u8]) -> Result<(), AmqpError> {
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

    async fn restore_queue(&self, handle: &impl Handle) -> Result<bool, AmqpError> {
        match self {
            Store::DeadLetter(_) => handle.restore_dead_letter_queue().await,
            Store::Park { webhook, delay, .. } => handle.restore_wait_queue(webhook, *delay).await,
        }
    }
}

/// Publishes `store` until the broker confirms it, with backoff between tries. `Err` with a
/// reason only when `context.cancel` ends the wait first.
async fn store_until_confirmed(
    handle: &impl Handle,
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
        context.health.failures.increment(1);
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

/// What [`decide`] asks of a message's channel. [`SettleHandle`] is the real one.
trait Handle {
    async fn publish_dead_letter(
        &self,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError>;
    async fn publish_park(
        &self,
        webhook: &Webhook,
        delay: Duration,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError>;
    async fn restore_dead_letter_queue(&self) -> Result<bool, AmqpError>;
    async fn restore_wait_queue(
        &self,
        webhook: &Webhook,
        delay: Duration,
    ) -> Result<bool, AmqpError>;
    async fn ack(&self) -> Result<(), AmqpError>;
    async fn requeue(&self) -> Result<(), AmqpError>;
    /// Gives the message's bytes back to the memory budget: called just before the ack or
    /// nack, since the broker may send another message in its place as soon as it has it.
    fn release(&self);
}

impl SettleHandle {
    async fn restore(&self, queue: &str, arguments: FieldTable) -> Result<bool, AmqpError> {
        if !self.topology.declare {
            return Ok(false);
        }
        let channel = self.publisher.channel().await?;
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.into(), options, arguments)
            .await
            .map_err(|e| AmqpError::Operation {
                operation: format!("declare queue `{queue}` again"),
                message: self.publisher.redactor.scrub(&e.to_string()),
            })?;
        tracing::warn!(
            queue,
            "declared a missing queue again (amqp.declare = true)"
        );
        Ok(true)
    }
}

impl Handle for SettleHandle {
    fn release(&self) {
        self.lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Publishes one dead letter to the dead-letter queue and waits for the confirm.
    async fn publish_dead_letter(
        &self,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        self.publisher
            .publish_confirmed("", &self.topology.dead_letter_queue, body, properties)
            .await
    }

    /// Publishes the message to the wait queue of `webhook` whose delay fits `delay`, and
    /// waits for the confirm. From there the broker moves it to the webhook's retry queue.
    async fn publish_park(
        &self,
        webhook: &Webhook,
        delay: std::time::Duration,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let queue = topology::wait_queue_for(
            &self.topology.input_queue,
            &webhook.name,
            &webhook.delivery,
            delay,
        );
        self.publisher
            .publish_confirmed("", &queue, body, properties)
            .await
    }

    /// Declares the dead-letter queue again, after a publish to it came back unroutable.
    /// `Ok(false)` when `amqp.declare = false` forbids it.
    async fn restore_dead_letter_queue(&self) -> Result<bool, AmqpError> {
        let arguments = topology::dead_letter_queue_arguments(self.topology.queue_settings());
        self.restore(&self.topology.dead_letter_queue, arguments)
            .await
    }

    /// Declares `webhook`'s wait queue for `delay` again, after a park to it came back
    /// unroutable. `Ok(false)` when `amqp.declare = false` forbids it.
    async fn restore_wait_queue(
        &self,
        webhook: &Webhook,
        delay: std::time::Duration,
    ) -> Result<bool, AmqpError> {
        let input = &self.topology.input_queue;
        let tier = topology::tier_for(&webhook.delivery, delay);
        let retry = topology::retry_queue(input, &webhook.name);
        let arguments =
            topology::wait_queue_arguments(self.topology.queue_settings(), tier, &retry);
        self.restore(&topology::wait_queue(input, &webhook.name, tier), arguments)
            .await
    }

    /// Acks the message (coalesced with its channel's others: see [`super::acks`]). An error
    /// means the channel is gone and the broker will redeliver it.
    async fn ack(&self) -> Result<(), AmqpError> {
        self.acks.ack(self.tag, &self.acker).await
    }

    /// Returns the message to the queue for redelivery.
    async fn requeue(&self) -> Result<(), AmqpError> {
        self.acks.requeue(self.tag, &self.acker).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::outcome::{Failure, Parked, Reason, RetryState};
    use std::sync::Mutex;

    /// A channel that records what settling asked of it, and fails the first `failing`
    /// publishes (as unroutable when `unroutable`).
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        failing: Mutex<usize>,
        unroutable: bool,
        ack_fails: bool,
    }

    impl Fake {
        fn failing(n: usize, unroutable: bool) -> Fake {
            Fake {
                failing: Mutex::new(n),
                unroutable,
                ..Fake::default()
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        fn record(&self, call: &str) {
            self.calls.lock().unwrap().push(call.to_owned());
        }

        fn publish(&self, what: &str) -> Result<(), AmqpError> {
            self.record(what);
            let mut failing = self.failing.lock().unwrap();
            if *failing == 0 {
                return Ok(());
            }
            *failing -= 1;
            Err(if self.unroutable {
                AmqpError::Unroutable {
                    target: "queue `dlq`".into(),
                    reply: "NO_ROUTE".into(),
                }
            } else {
                AmqpError::NotConfirmed {
                    target: "queue `dlq`".into(),
                    message: "the broker refused it (nack)".into(),
                }
            })
        }

        fn lost(&self, what: &'static str) -> Result<(), AmqpError> {
            self.record(what);
            if self.ack_fails {
                Err(AmqpError::ChannelLost(what))
            } else {
                Ok(())
            }
        }
    }

    impl Handle for Fake {
        async fn publish_dead_letter(&self, _: &[u8], _: BasicProperties) -> Result<(), AmqpError> {
            self.publish("dead letter")
        }
        async fn publish_park(
            &self,
            webhook: &Webhook,
            _: Duration,
            _: &[u8],
            _: BasicProperties,
        ) -> Result<(), AmqpError> {
            self.publish(&format!("park {}", webhook.name))
        }
        async fn restore_dead_letter_queue(&self) -> Result<bool, AmqpError> {
            self.record("restore dead-letter queue");
            Ok(true)
        }
        async fn restore_wait_queue(&self, _: &Webhook, _: Duration) -> Result<bool, AmqpError> {
            self.record("restore wait queue");
            Ok(true)
        }
        async fn ack(&self) -> Result<(), AmqpError> {
            self.lost("ack")
        }
        fn release(&self) {
            self.record("release");
        }
        async fn requeue(&self) -> Result<(), AmqpError> {
            self.lost("nack")
        }
    }

    fn webhook() -> Arc<Webhook> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        std::fs::write(
            dir.path().join("webhooks/w.toml"),
            "[[webhook]]\nname = \"w\"\nurl = \"https://h/\"\ntriggers = [\"Manual\"]\n\
             body_template = '{}'\n",
        )
        .unwrap();
        let config = crate::config::load(dir.path(), &crate::config::Env::default()).unwrap();
        config.webhooks[0].clone()
    }

    fn outcome(outcome: Outcome) -> WebhookOutcome {
        WebhookOutcome {
            webhook: Some(webhook()),
            outcome,
        }
    }

    fn dead_letter() -> Outcome {
        Outcome::DeadLetter(Failure {
            reason: Reason::Rejected,
            attempts: 1,
            last_status: Some(400),
            last_error: "http 400".into(),
        })
    }

    fn park() -> Outcome {
        Outcome::Park(Parked {
            state: RetryState {
                attempts: 2,
                first_failure: SystemTime::UNIX_EPOCH,
            },
            next_delay: Duration::from_millis(500),
            last_status: Some(503),
            last_error: "http 503".into(),
        })
    }

    async fn run(handle: &Fake, fate: Fate<'_>, cancel: CancellationToken) -> Settled {
        let properties = BasicProperties::default();
        let letter = Letter {
            body: b"{}",
            properties: &properties,
            routing_key: "Manual".into(),
        };
        let context = SettleContext::standalone(cancel);
        decide(handle, &letter, fate, &context).await
    }

    fn outcomes<'a>(id: &'a EventId, outcomes: &'a [WebhookOutcome]) -> Fate<'a> {
        Fate::Outcomes {
            event_id: Some(id),
            outcomes,
        }
    }

    #[tokio::test]
    async fn a_message_that_matched_nothing_or_was_delivered_is_acked() {
        let id = EventId("e".into());
        let fake = Fake::default();
        let settled = run(&fake, outcomes(&id, &[]), CancellationToken::new()).await;
        assert!(matches!(settled, Settled::Acked { delivered: 0, .. }));
        let delivered = [outcome(Outcome::Delivered {
            attempts: 1,
            status: 200,
        })];
        let settled = run(&fake, outcomes(&id, &delivered), CancellationToken::new()).await;
        assert!(matches!(settled, Settled::Acked { delivered: 1, .. }));
        assert_eq!(fake.calls(), ["release", "ack", "release", "ack"]);
    }

    #[tokio::test]
    async fn dead_letters_and_parks_are_stored_before_the_ack() {
        let id = EventId("e".into());
        let fake = Fake::default();
        let items = [outcome(dead_letter()), outcome(park())];
        let settled = run(&fake, outcomes(&id, &items), CancellationToken::new()).await;
        assert!(matches!(
            settled,
            Settled::Acked {
                delivered: 0,
                dead_lettered: 1,
                parked: 1
            }
        ));
        assert_eq!(fake.calls(), ["dead letter", "park w", "release", "ack"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_is_retried_not_requeued_and_holds_the_store_health() {
        let id = EventId("e".into());
        let fake = Fake::failing(3, false);
        let items = [outcome(dead_letter())];
        let properties = BasicProperties::default();
        let letter = Letter {
            body: b"{}",
            properties: &properties,
            routing_key: "Manual".into(),
        };
        let context = SettleContext::standalone(CancellationToken::new());
        let health = context.health.subscribe();
        let settling = decide(&fake, &letter, outcomes(&id, &items), &context);
        tokio::pin!(settling);
        // Let it fail once and wait: the store is reported as failing meanwhile.
        tokio::select! {
            _ = &mut settling => panic!("settled while the store fails"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        assert_eq!(*health.borrow(), 1, "held while the store fails");
        let settled = settling.await;
        assert!(matches!(
            settled,
            Settled::Acked {
                dead_lettered: 1,
                ..
            }
        ));
        assert_eq!(
            fake.calls(),
            [
                "dead letter",
                "dead letter",
                "dead letter",
                "dead letter",
                "release",
                "ack"
            ]
        );
        assert_eq!(*health.borrow(), 0, "released once stored");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unroutable_store_declares_its_queue_again() {
        let id = EventId("e".into());
        let fake = Fake::failing(1, true);
        let items = [outcome(dead_letter()), outcome(park())];
        let settled = run(&fake, outcomes(&id, &items), CancellationToken::new()).await;
        assert!(matches!(settled, Settled::Acked { .. }));
        assert_eq!(
            fake.calls(),
            [
                "dead letter",
                "restore dead-letter queue",
                "dead letter",
                "park w",
                "release",
                "ack"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_the_store_fails_requeues() {
        let id = EventId("e".into());
        let fake = Fake::failing(usize::MAX, false);
        let items = [outcome(dead_letter())];
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stop.cancel();
        });
        let settled = run(&fake, outcomes(&id, &items), cancel).await;
        match settled {
            Settled::Requeued { reason } => assert!(reason.contains("nack"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.calls().last().map(String::as_str), Some("nack"));
        assert!(!fake.calls().contains(&"ack".to_string()), "never acked");
    }

    #[tokio::test]
    async fn a_lost_channel_is_reported_as_lost() {
        let id = EventId("e".into());
        let fake = Fake {
            ack_fails: true,
            ..Fake::default()
        };
        let settled = run(&fake, outcomes(&id, &[]), CancellationToken::new()).await;
        assert!(matches!(
            settled,
            Settled::Lost(AmqpError::ChannelLost("ack"))
        ));
        let settled = run(&fake, Fate::Release, CancellationToken::new()).await;
        assert!(matches!(
            settled,
            Settled::Lost(AmqpError::ChannelLost("nack"))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn put_back_pauses_then_requeues_release_requeues_at_once_and_remove_acks() {
        let fake = Fake::default();
        let started = tokio::time::Instant::now();
        let settled = run(
            &fake,
            Fate::PutBack("webhook removed"),
            CancellationToken::new(),
        )
        .await;
        assert!(started.elapsed() >= REQUEUE_PAUSE);
        assert!(matches!(settled, Settled::Requeued { reason } if reason == "webhook removed"));
        let started = tokio::time::Instant::now();
        let settled = run(&fake, Fate::Release, CancellationToken::new()).await;
        assert!(started.elapsed() < REQUEUE_PAUSE);
        assert!(matches!(settled, Settled::Requeued { .. }));
        let settled = run(&fake, Fate::Remove, CancellationToken::new()).await;
        assert!(matches!(
            settled,
            Settled::Acked {
                delivered: 0,
                dead_lettered: 0,
                parked: 0
            }
        ));
        assert_eq!(
            fake.calls(),
            ["release", "nack", "release", "nack", "release", "ack"],
            "the budget is released just before the broker is told"
        );
    }

    #[tokio::test]
    async fn a_park_without_its_webhook_is_requeued_not_acked() {
        let id = EventId("e".into());
        let fake = Fake::default();
        let items = [WebhookOutcome {
            webhook: None,
            outcome: park(),
        }];
        let settled = run(&fake, outcomes(&id, &items), CancellationToken::new()).await;
        assert!(matches!(settled, Settled::Requeued { .. }));
        assert_eq!(fake.calls(), ["release", "nack"]);
    }
}
