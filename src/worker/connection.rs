//! One broker connection's work: the input intake with its flow (paused while the store
//! fails or no webhook is active), the retry consumers, the monitor, and reloads.

use super::message::{Message, Source};
use super::monitor;
use super::retries::{RetryConsumers, RetryContext};
use super::{Reload, Worker};
use crate::broker::intake::Intake;
use crate::broker::{AmqpError, Broker, Inbound};
use crate::ops::metrics::{self, NotReady};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// One broker connection's work: the input intake, the retry consumers and the monitor.
pub(super) struct Connection<'a> {
    worker: &'a Worker,
    broker: Arc<Broker>,
    /// Cancelled when this connection ends.
    token: CancellationToken,
}

impl<'a> Connection<'a> {
    pub(super) fn new(worker: &'a Worker, broker: Arc<Broker>, token: CancellationToken) -> Self {
        Connection {
            worker,
            broker,
            token,
        }
    }

    /// Consumes until shutdown or until the connection is lost; returns why it ended.
    pub(super) async fn serve(self, reloads: &mut mpsc::Receiver<Reload>) -> &'static str {
        let config = self.worker.current.borrow().config.clone();
        let mut input = self.broker.input_intake(&config.amqp, &self.worker.budget);
        let mut store = self.worker.health.subscribe();
        let mut retries = RetryConsumers::default();
        let lost_retry_consumer = retries.lost.clone();
        let retry_context = self.retry_context(&store);
        retries.reconcile(&retry_context).await;
        let monitor = tokio::spawn(monitor::monitor(
            self.broker.clone(),
            self.worker.current.subscribe(),
            self.worker.budget.clone(),
            self.token.clone(),
        ));
        let prefetch = self.worker.metrics.gauge(metrics::PREFETCH, vec![]);
        let held = self.worker.metrics.gauge(metrics::STORE_HELD, vec![]);
        tracing::info!(
            broker = %config.amqp.url_redacted,
            queue = %config.amqp.queue,
            prefetch = config.amqp.prefetch,
            memory_budget = config.amqp.memory_budget,
            webhooks = config.webhooks.len(),
            "consuming"
        );

        let mut idle = false;
        let ended = loop {
            // Paused before readiness says so: once `/readyz` reports a failing store, no new
            // message is taken.
            let waiting = *store.borrow();
            if let Err(e) = self.set_flow(&mut input, waiting, &mut idle).await {
                tracing::warn!(error = %e, "cannot start or pause consuming");
                break "consume failed";
            }
            held.set(waiting as f64);
            self.worker.metrics.readiness.set_store_failing(waiting > 0);
            prefetch.set(f64::from(input.prefetch()));
            tokio::select! {
                biased;
                _ = self.worker.shutdown.cancelled() => break "shutdown",
                _ = lost_retry_consumer.notified() => break "a retry consumer ended",
                Some(new_config) = reloads.recv() => {
                    self.worker.reload(&self.broker, new_config).await;
                    retries.reconcile(&retry_context).await;
                }
                changed = store.changed() => {
                    if changed.is_err() {
                        break "store health gone";
                    }
                }
                next = input.next() => match next {
                    Some(Ok(inbound)) => {
                        self.take(inbound);
                        if let Err(e) = input.adjust().await {
                            tracing::warn!(error = %e, "cannot change the prefetch");
                            break "consume failed";
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consuming failed");
                        break "consume failed";
                    }
                    None => break "the broker ended the input consumer",
                },
            }
        };
        input.stop().await;
        monitor.abort();
        retries.stop_all();
        ended
    }

    /// What this connection's retry consumers share.
    fn retry_context(&self, store: &watch::Receiver<usize>) -> RetryContext {
        RetryContext {
            broker: self.broker.clone(),
            current: self.worker.current.clone(),
            tracker: self.worker.tracker.clone(),
            connection: self.token.clone(),
            budget: self.worker.budget.clone(),
            store: store.clone(),
        }
    }

    /// Hands one input message to its own task, with the pipeline in force now.
    fn take(&self, inbound: Inbound) {
        let pipeline = self.worker.current.borrow().clone();
        pipeline.counters.consumed.increment(1);
        let message = Message::new(inbound, Source::Input, pipeline, self.token.clone());
        self.worker.tracker.spawn(message.process());
    }

    /// Consumes the input queue when there is an active webhook and the store works; pauses
    /// it otherwise. Keeps `/readyz` in step.
    async fn set_flow(
        &self,
        input: &mut Intake,
        waiting_for_store: usize,
        idle: &mut bool,
    ) -> Result<(), AmqpError> {
        let active = self.worker.current.borrow().has_active_webhook();
        if active && waiting_for_store == 0 {
            input.resume().await?;
        } else {
            input.pause().await?;
        }
        if active {
            self.worker.metrics.readiness.set_ready();
        } else {
            if !*idle {
                tracing::warn!("idle: no active webhook (policy.allow_idle); consuming nothing");
            }
            self.worker.metrics.readiness.set_not_ready(NotReady::Idle);
        }
        *idle = !active;
        Ok(())
    }
}
