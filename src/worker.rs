//! The `run` loop: connect, declare, consume, and for each message run the one-way path
//! decode → match → render → deliver → settle in its own task.
//!
//! Work in flight is bounded by the broker's prefetch: at most `prefetch` messages are unacked,
//! so at most that many tasks exist per connection. Deliveries of one message to its webhooks
//! run concurrently, and each webhook has its own concurrency limit.
//!
//! The broker going away does not end the run: the loop reconnects with backoff and the broker
//! redelivers whatever was unacked. Only the first connection is allowed to fail the run, so a
//! wrong URL or a broker that is down at start is one clear error and a non-zero exit.
//!
//! Shutdown (the token is cancelled): stop consuming, let in-flight deliveries finish within
//! the grace period (backoff sleeps wake at once and requeue their message), settle what
//! finished, close the connection so the broker redelivers the rest.

use crate::amqp::{AmqpError, Broker, Inbound};
use crate::config::Config;
use crate::delivery::{Deliverer, DeliveryError, DeliveryRequest};
use crate::event::{self, Event};
use crate::outcome::{Failure, Outcome, Reason};
use crate::rules;
use crate::settle::{self, Settled, WebhookOutcome};
use backon::BackoffBuilder;
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the run ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The broker could not be reached or set up at start.
    #[error(transparent)]
    Broker(#[from] AmqpError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
}

/// Counters of what the worker did since it started. Shared with whoever started the run
/// (the demo, tests); the metrics issue will export the same numbers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages taken from the input queue.
    pub consumed: AtomicU64,
    /// Messages that matched no webhook (acked without delivery).
    pub unmatched: AtomicU64,
    /// Deliveries that succeeded.
    pub delivered: AtomicU64,
    /// Dead letters published and confirmed.
    pub dead_lettered: AtomicU64,
    /// Messages acked.
    pub acked: AtomicU64,
    /// Messages requeued (interrupted, or a dead letter not stored).
    pub requeued: AtomicU64,
    /// Successful connections to the broker, the first included.
    pub connections: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Everything a message's task needs, shared by all of them.
struct Pipeline {
    config: Arc<Config>,
    deliverer: Deliverer,
    stats: Arc<Stats>,
}

/// Runs until `shutdown` is cancelled. Returns an error only when the first connection or
/// topology setup fails.
pub async fn run(
    config: Arc<Config>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> Result<(), WorkerError> {
    let pipeline = Arc::new(Pipeline {
        deliverer: Deliverer::new(&config)?,
        config: config.clone(),
        stats: stats.clone(),
    });
    let settings = &config.amqp;
    let tracker = TaskTracker::new();
    let mut reconnect = new_reconnect_schedule(&config);
    let mut connected_once = false;

    while !shutdown.is_cancelled() {
        let broker = match connect(&config).await {
            Ok(broker) => broker,
            Err(e) if !connected_once => return Err(e.into()),
            Err(e) => {
                let delay = reconnect.next().unwrap_or(settings.reconnect_max_backoff);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        connected_once = true;
        reconnect = new_reconnect_schedule(&config);
        Stats::add(&stats.connections, 1);
        tracing::info!(
            broker = %settings.url_redacted,
            queue = %settings.queue,
            prefetch = settings.prefetch,
            webhooks = config.webhooks.len(),
            "consuming"
        );

        // Deliveries of this connection stop retrying when it is lost: their messages can no
        // longer be acked and will be redelivered on the next connection.
        let connection_token = shutdown.child_token();
        let mut messages = match broker.consume(settings).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume; reconnecting");
                connection_token.cancel();
                broker.close().await;
                continue;
            }
        };
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                next = messages.next() => match next {
                    Some(Ok(inbound)) => {
                        Stats::add(&stats.consumed, 1);
                        let pipeline = pipeline.clone();
                        let token = connection_token.clone();
                        tracker.spawn(async move { pipeline.handle(inbound, token).await });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "broker connection lost; reconnecting");
                        break;
                    }
                    None => {
                        tracing::warn!("consumer ended by the broker; reconnecting");
                        break;
                    }
                },
            }
        }
        drop(messages);

        if shutdown.is_cancelled() {
            tracker.close();
            let grace = config.shutdown.grace;
            tracing::info!(
                in_flight = tracker.len(),
                grace_ms = grace.as_millis() as u64,
                "shutting down: waiting for in-flight deliveries"
            );
            if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
                tracing::warn!(
                    unfinished = tracker.len(),
                    "grace period over; unfinished messages go back to the broker"
                );
            }
            broker.close().await;
            return Ok(());
        }
        connection_token.cancel();
        broker.close().await;
    }
    tracker.close();
    let _ = tokio::time::timeout(config.shutdown.grace, tracker.wait()).await;
    Ok(())
}

async fn connect(config: &Config) -> Result<Broker, AmqpError> {
    let broker = Broker::connect(&config.amqp, &config.redactor).await?;
    broker.declare_topology(&config.amqp).await?;
    Ok(broker)
}

fn new_reconnect_schedule(config: &Config) -> impl Iterator<Item = Duration> + use<> {
    backon::ExponentialBuilder::default()
        .with_min_delay(config.amqp.reconnect_initial_backoff)
        .with_max_delay(config.amqp.reconnect_max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Pipeline {
    /// The whole path of one message: decode, match, render and deliver per webhook, settle.
    async fn handle(&self, inbound: Inbound, cancel: CancellationToken) {
        let decoded = event::decode(&inbound.body, inbound.message_id());
        let (event_id, outcomes) = match decoded {
            Err(invalid) => {
                tracing::warn!(
                    routing_key = %inbound.routing_key,
                    error = %invalid,
                    "invalid event; dead-lettering it"
                );
                let outcome = WebhookOutcome {
                    webhook: None,
                    outcome: Outcome::DeadLetter(Failure {
                        reason: Reason::InvalidEvent,
                        attempts: 0,
                        last_status: None,
                        last_error: invalid.to_string(),
                    }),
                };
                (None, vec![outcome])
            }
            Ok(event) => {
                let outcomes = self.deliver_to_matching(&event, &cancel).await;
                (Some(event.id), outcomes)
            }
        };
        let settled = settle::settle(inbound, event_id.as_ref(), &outcomes).await;
        let id = event_id.as_ref().map(|id| id.0.as_str());
        match settled {
            Settled::Acked {
                delivered,
                dead_lettered,
            } => {
                Stats::add(&self.stats.acked, 1);
                Stats::add(&self.stats.delivered, delivered as u64);
                Stats::add(&self.stats.dead_lettered, dead_lettered as u64);
            }
            Settled::Requeued { reason } => {
                Stats::add(&self.stats.requeued, 1);
                tracing::info!(event_id = id, %reason, "event requeued");
            }
            Settled::Lost(e) => {
                tracing::warn!(event_id = id, error = %e, "event not settled; the broker will redeliver it");
            }
        }
    }

    /// Renders and delivers to every matching webhook concurrently.
    async fn deliver_to_matching(
        &self,
        event: &Event,
        cancel: &CancellationToken,
    ) -> Vec<WebhookOutcome> {
        let hooks = rules::matching(&self.config.webhooks, event);
        if hooks.is_empty() {
            Stats::add(&self.stats.unmatched, 1);
            tracing::info!(event_id = %event.id, event_type = %event.trigger, "event matched no webhook");
            return Vec::new();
        }
        let deliveries = hooks.into_iter().map(|webhook| async move {
            let outcome = match webhook.template.render(&event.raw) {
                Err(e) => Outcome::DeadLetter(Failure {
                    reason: Reason::RenderFailed,
                    attempts: 0,
                    last_status: None,
                    last_error: self.deliverer.redactor().scrub(&e.to_string()),
                }),
                Ok(body) => {
                    let request = DeliveryRequest {
                        webhook: webhook.clone(),
                        event_id: event.id.clone(),
                        body,
                    };
                    self.deliverer.deliver(&request, cancel).await
                }
            };
            log_outcome(event, &webhook.name, &outcome);
            WebhookOutcome {
                webhook: Some(webhook.name.clone()),
                outcome,
            }
        });
        futures_util::future::join_all(deliveries).await
    }
}

fn log_outcome(event: &Event, webhook: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Delivered { attempts, status } => tracing::info!(
            event_id = %event.id,
            event_type = %event.trigger,
            webhook,
            attempts,
            status,
            "delivered"
        ),
        Outcome::DeadLetter(failure) => tracing::warn!(
            event_id = %event.id,
            event_type = %event.trigger,
            webhook,
            reason = %failure.reason,
            attempts = failure.attempts,
            last_status = failure.last_status,
            error = %failure.last_error,
            "delivery failed; dead-lettering"
        ),
        Outcome::Interrupted { attempts } => tracing::info!(
            event_id = %event.id,
            webhook,
            attempts,
            "delivery interrupted; the event goes back to the broker"
        ),
    }
}
