//! The consumers of the active webhooks' retry queues on one connection: one task per
//! webhook, each on a channel of its own, feeding deliveries back into the pipeline for that
//! webhook only.

use super::message::{Message, Source};
use super::pipeline::Pipeline;
use crate::broker::Broker;
use crate::broker::flow::Budget;
use crate::broker::intake::Intake;
use crate::config::Webhook;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What every retry consumer of one connection shares.
pub(super) struct RetryContext {
    pub(super) broker: Arc<Broker>,
    pub(super) current: watch::Sender<Arc<Pipeline>>,
    pub(super) tracker: TaskTracker,
    /// Cancelled when the connection is lost or at shutdown.
    pub(super) connection: CancellationToken,
    pub(super) budget: Arc<Budget>,
    /// Messages waiting for the store (0 when it works): consumers pause while it is not 0.
    pub(super) store: watch::Receiver<usize>,
}

/// The running retry consumers, by webhook name.
#[derive(Default)]
pub(super) struct RetryConsumers {
    running: HashMap<String, CancellationToken>,
    /// Notified when the broker ends a retry consumer: the connection is reconnected.
    pub(super) lost: Arc<Notify>,
}

impl RetryConsumers {
    /// Starts a consumer for every active webhook that has none, and stops those of webhooks
    /// that are gone or inactive.
    pub(super) async fn reconcile(&mut self, context: &RetryContext) {
        let pipeline = context.current.borrow().clone();
        let config = &pipeline.config;
        let wanted: HashMap<&str, &Arc<Webhook>> = config
            .webhooks
            .iter()
            .filter(|w| w.is_active())
            .map(|w| (w.name.as_str(), w))
            .collect();
        self.running.retain(|name, token| {
            let keep = wanted.contains_key(name.as_str());
            if !keep {
                token.cancel();
            }
            keep
        });
        for (name, webhook) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            // A batched webhook sends many events per request: its retry queue may hold as many
            // unacked as the input, so its batches can fill.
            let limit = if webhook.batch.is_some() {
                u32::from(config.amqp.prefetch)
            } else {
                webhook.delivery.concurrency
            };
            let prefetch = u16::try_from(limit)
                .unwrap_or(u16::MAX)
                .min(config.amqp.prefetch)
                .max(1);
            let intake = match context
                .broker
                .consume_retry(&config.amqp, name, prefetch, &context.budget)
                .await
            {
                Ok(intake) => intake,
                Err(e) => {
                    tracing::error!(webhook = name, error = %e, "cannot consume the retry queue");
                    continue;
                }
            };
            let token = context.connection.child_token();
            self.running.insert(name.to_string(), token.clone());
            let consumer = RetryConsumer {
                webhook: name.to_string(),
                intake,
                current: context.current.subscribe(),
                tracker: context.tracker.clone(),
                connection: context.connection.clone(),
                store: context.store.clone(),
                lost: self.lost.clone(),
            };
            context.tracker.spawn(consumer.run(token));
        }
    }

    /// Stops every consumer; their deliveries in flight still settle.
    pub(super) fn stop_all(&mut self) {
        for token in self.running.values() {
            token.cancel();
        }
        self.running.clear();
    }
}

/// One webhook's retry consumer.
struct RetryConsumer {
    webhook: String,
    intake: Intake,
    current: watch::Receiver<Arc<Pipeline>>,
    tracker: TaskTracker,
    connection: CancellationToken,
    store: watch::Receiver<usize>,
    lost: Arc<Notify>,
}

impl RetryConsumer {
    /// Consumes until `stop` is cancelled, pausing while the store fails. When the broker
    /// ends the consumer, notifies `lost` so that the connection is set up again.
    async fn run(mut self, stop: CancellationToken) {
        loop {
            let flowing = *self.store.borrow() == 0;
            let switched = if flowing {
                self.intake.resume().await
            } else {
                self.intake.pause().await
            };
            if let Err(e) = switched {
                tracing::warn!(webhook = %self.webhook, error = %e, "retry consumer failed; reconnecting");
                self.lost.notify_one();
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => {
                    self.intake.stop().await;
                    return;
                }
                changed = self.store.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                next = self.intake.next() => match next {
                    Some(Ok(inbound)) => {
                        let pipeline = self.current.borrow().clone();
                        pipeline.counters.retries_consumed.increment(1);
                        let source = Source::Retry(self.webhook.clone());
                        let message =
                            Message::new(inbound, source, pipeline, self.connection.clone());
                        self.tracker.spawn(message.process());
                        if let Err(e) = self.intake.adjust().await {
                            tracing::warn!(webhook = %self.webhook, error = %e, "cannot change the retry prefetch; reconnecting");
                            self.lost.notify_one();
                            return;
                        }
                    }
                    _ => {
                        tracing::warn!(webhook = %self.webhook, "retry consumer ended by the broker; reconnecting");
                        self.lost.notify_one();
                        return;
                    }
                },
            }
        }
    }
}
