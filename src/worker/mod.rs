//! The `run` loop: connect, declare, consume the input queue and every active webhook's retry
//! queue, and for each message run the one-way path decode → match → render → deliver →
//! settle ([`pipeline`]) in its own task.
//!
//! Work in flight is bounded twice. By count: at most `amqp.prefetch` input messages, and per
//! webhook at most its own retry prefetch, are unacked at once. By bytes: every body in flight
//! counts against `amqp.memory_budget`, and each consumer's prefetch starts small and follows
//! the budget ([`crate::broker::flow`]), so a backlog of large events cannot outgrow the memory
//! limit. Deliveries of one event to its webhooks run concurrently, and each webhook has its
//! own concurrency limit. A delivery still failing after its short in-process retry window is
//! parked in its webhook's durable retry queue, so a dead endpoint holds no input events.
//!
//! The broker going away does not end the run: the loop reconnects with backoff (trying every
//! configured broker URL in turn) and the broker redelivers whatever was unacked. The backoff
//! starts over only after a connection stayed up for `amqp.reconnect_max_backoff`, so a
//! broker that accepts connections and drops them at once never sees a tight loop. Only the
//! first connection is allowed to fail the run, so a wrong URL or a broker that is down at
//! start is one clear error and a non-zero exit.
//!
//! When dead letters or parked deliveries cannot be stored, the messages keep their outcomes
//! and retry only the store ([`crate::broker::settle`]); meanwhile every consumer is paused and
//! `/readyz` says why, until the store works again.
//!
//! With no active webhook every event would be acked and dropped, so the run refuses to
//! start unless `policy.allow_idle` opts in, and then consumes nothing until a reload brings
//! an active webhook. A reload that would leave no active webhook is refused.
//!
//! A new config (SIGHUP) replaces the pipeline whole: messages already in flight finish with
//! the config they started with; retry consumers are started and stopped to match.
//!
//! Shutdown (the token is cancelled): stop consuming, let in-flight deliveries finish within
//! the grace period (backoff sleeps wake at once and park their delivery), settle what
//! finished, close the connection so the broker redelivers the rest.

mod message;
mod monitor;
mod pipeline;
mod retries;

use crate::broker::flow::Budget;
use crate::broker::intake::Intake;
use crate::broker::settle::StoreHealth;
use crate::broker::{AmqpError, Broker};
use crate::config::Config;
use crate::ops::metrics::{self, Metrics, NotReady};
use crate::pipeline::delivery::{Deliverer, DeliveryError};
use backon::BackoffBuilder;
use message::{Message, Source};
use pipeline::Pipeline;
use retries::{RetryConsumers, RetryContext};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
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
    /// No webhook is active and `policy.allow_idle` is not set: every event would be acked
    /// and dropped.
    #[error(
        "{}: no active webhook: every event would be acked and dropped, so the worker does not \
         start. Add or activate a webhook, or set policy.allow_idle = true to start without \
         consuming",
        .0.display()
    )]
    NoActiveWebhook(std::path::PathBuf),
}

/// A request to reload: the new config, already loaded and validated by the caller.
pub type Reload = Arc<Config>;

/// Runs until `shutdown` is cancelled. Returns an error only when the config has no active
/// webhook (without `policy.allow_idle`), or when the first connection or topology setup
/// fails.
pub async fn run(
    config: Arc<Config>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
) -> Result<(), WorkerError> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with_reloads(config, shutdown, metrics, reloads).await
}

/// [`run`], also taking new configs from `reloads` (SIGHUP in the binary).
pub async fn run_with_reloads(
    config: Arc<Config>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    mut reloads: mpsc::Receiver<Reload>,
) -> Result<(), WorkerError> {
    let deliverer = Deliverer::new(&config)?;
    let health = StoreHealth::new();
    let pipeline = Pipeline::new(
        config.clone(),
        deliverer,
        metrics.clone(),
        health.clone(),
        &shutdown,
    );
    if !pipeline.has_active_webhook() && !config.policy.allow_idle {
        return Err(WorkerError::NoActiveWebhook(config.dir.join("webhooks")));
    }
    let (current, _) = watch::channel(Arc::new(pipeline));
    let budget = Budget::new(config.amqp.memory_budget);
    let tracker = TaskTracker::new();
    let mut reconnect = Reconnect::new(
        config.amqp.reconnect_initial_backoff,
        config.amqp.reconnect_max_backoff,
    );
    let mut connected_once = false;
    let reconnects = metrics.counter(metrics::RECONNECTS, vec![]);

    while !shutdown.is_cancelled() {
        let config = current.borrow().config.clone();
        let broker = match connect(&config).await {
            Ok(broker) => Arc::new(broker),
            Err(e) if !connected_once => return Err(e.into()),
            Err(e) => {
                let delay = reconnect.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
                metrics.readiness.set_not_ready(NotReady::Reconnecting);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        if connected_once {
            reconnects.increment(1);
        }
        connected_once = true;
        let connected_at = Instant::now();
        metrics.counter(metrics::CONNECTIONS, vec![]).increment(1);

        // Deliveries of this connection stop retrying when it is lost: their messages can no
        // longer be acked and will be redelivered on the next connection.
        let connection_token = shutdown.child_token();
        let connection = Connection {
            broker: broker.clone(),
            current: &current,
            metrics: &metrics,
            health: &health,
            budget: &budget,
            tracker: &tracker,
            token: connection_token.clone(),
            shutdown: &shutdown,
        };
        let ended = connection.serve(&mut reloads).await;
        if shutdown.is_cancelled() {
            metrics.readiness.set_not_ready(NotReady::ShuttingDown);
            tracker.close();
            let grace = current.borrow().config.shutdown.grace;
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
        metrics.readiness.set_not_ready(NotReady::Reconnecting);
        connection_token.cancel();
        broker.close().await;
        let delay = reconnect.after_connection(connected_at.elapsed());
        tracing::warn!(
            reason = ended,
            retry_in_ms = delay.as_millis() as u64,
            "broker connection lost; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracker.close();
    let grace = current.borrow().config.shutdown.grace;
    let _ = tokio::time::timeout(grace, tracker.wait()).await;
    Ok(())
}

/// One broker connection's work: the input intake, the retry consumers and the monitor.
struct Connection<'a> {
    broker: Arc<Broker>,
    current: &'a watch::Sender<Arc<Pipeline>>,
    metrics: &'a Arc<Metrics>,
    health: &'a Arc<StoreHealth>,
    budget: &'a Arc<Budget>,
    tracker: &'a TaskTracker,
    /// Cancelled when this connection ends.
    token: CancellationToken,
    shutdown: &'a CancellationToken,
}

impl Connection<'_> {
    /// Consumes until shutdown or until the connection is lost; returns why it ended.
    async fn serve(self, reloads: &mut mpsc::Receiver<Reload>) -> &'static str {
        let config = self.current.borrow().config.clone();
        let mut input = self.broker.input_intake(&config.amqp, self.budget);
        let mut store = self.health.subscribe();
        let mut retries = RetryConsumers::default();
        let lost_retry_consumer = retries.lost.clone();
        let retry_context = RetryContext {
            broker: self.broker.clone(),
            current: self.current.clone(),
            tracker: self.tracker.clone(),
            connection: self.token.clone(),
            budget: self.budget.clone(),
            store: store.clone(),
        };
        retries.reconcile(&retry_context).await;
        let monitor = tokio::spawn(monitor::monitor(
            self.broker.clone(),
            self.current.subscribe(),
            self.budget.clone(),
            self.token.clone(),
        ));
        let consumed = self.metrics.counter(metrics::EVENTS_CONSUMED, vec![]);
        let prefetch = self.metrics.gauge(metrics::PREFETCH, vec![]);
        let held = self.metrics.gauge(metrics::STORE_HELD, vec![]);
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
            self.metrics.readiness.set_store_failing(waiting > 0);
            prefetch.set(f64::from(input.prefetch()));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break "shutdown",
                _ = lost_retry_consumer.notified() => break "a retry consumer ended",
                Some(new_config) = reloads.recv() => {
                    reload(&self.broker, self.current, new_config, self.metrics, self.health, self.shutdown).await;
                    retries.reconcile(&retry_context).await;
                }
                changed = store.changed() => {
                    if changed.is_err() {
                        break "store health gone";
                    }
                }
                next = input.next() => match next {
                    Some(Ok(inbound)) => {
                        consumed.increment(1);
                        let pipeline = self.current.borrow().clone();
                        let token = self.token.clone();
                        let message = Message::new(inbound, Source::Input, pipeline, token);
                        self.tracker.spawn(message.process());
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

    /// Consumes the input queue when there is an active webhook and the store works; pauses
    /// it otherwise. Keeps `/readyz` in step.
    async fn set_flow(
        &self,
        input: &mut Intake,
        waiting_for_store: usize,
        idle: &mut bool,
    ) -> Result<(), AmqpError> {
        let active = self.current.borrow().has_active_webhook();
        if active && waiting_for_store == 0 {
            input.resume().await?;
        } else {
            input.pause().await?;
        }
        if active {
            self.metrics.readiness.set_ready();
        } else {
            if !*idle {
                tracing::warn!("idle: no active webhook (policy.allow_idle); consuming nothing");
            }
            self.metrics.readiness.set_not_ready(NotReady::Idle);
        }
        *idle = !active;
        Ok(())
    }
}

async fn connect(config: &Config) -> Result<Broker, AmqpError> {
    let broker = Broker::connect(&config.amqp, &config.redactor).await?;
    broker.declare_topology(&config.amqp).await?;
    broker
        .declare_retry_topology(&config.amqp, &config.webhooks)
        .await?;
    Ok(broker)
}

/// Swaps in a new config. Refused, and the old config stays in force, when the new one has
/// no active webhook (unless it sets `policy.allow_idle`), when its HTTP client cannot be
/// built, or when its retry topology cannot be declared.
async fn reload(
    broker: &Broker,
    current: &watch::Sender<Arc<Pipeline>>,
    config: Arc<Config>,
    metrics: &Arc<Metrics>,
    health: &Arc<StoreHealth>,
    shutdown: &CancellationToken,
) {
    let refuse = |error: &dyn std::fmt::Display| {
        metrics.record_reload(false);
        tracing::error!(error = %error, "config reload refused; the old config stays in force");
    };
    if !config.webhooks.iter().any(|w| w.is_active()) && !config.policy.allow_idle {
        return refuse(&WorkerError::NoActiveWebhook(config.dir.join("webhooks")));
    }
    let previous = current.borrow().clone();
    let deliverer = match Deliverer::reloaded(&config, &previous.deliverer) {
        Ok(d) => d,
        Err(e) => return refuse(&e),
    };
    if let Err(e) = broker
        .declare_retry_topology(&config.amqp, &config.webhooks)
        .await
    {
        return refuse(&e);
    }
    let webhooks = config.webhooks.len();
    current.send_replace(Arc::new(Pipeline::new(
        config,
        deliverer,
        metrics.clone(),
        health.clone(),
        shutdown,
    )));
    metrics.record_reload(true);
    tracing::info!(webhooks, "config reloaded");
}

/// The reconnect schedule: exponential with jitter from `amqp.reconnect_initial_backoff` to
/// `amqp.reconnect_max_backoff`. It starts over only after a connection stayed up for
/// `reconnect_max_backoff`: one that opens and dies at once keeps backing off.
struct Reconnect {
    builder: backon::ExponentialBuilder,
    schedule: backon::ExponentialBackoff,
    max: Duration,
}

impl Reconnect {
    fn new(initial: Duration, max: Duration) -> Reconnect {
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Reconnect {
            schedule: builder.build(),
            builder,
            max,
        }
    }

    /// The wait before the next try after a failed connect.
    fn next_delay(&mut self) -> Duration {
        self.schedule.next().unwrap_or(self.max).min(self.max)
    }

    /// The wait before reconnecting after a connection that lasted `lasted` ended.
    fn after_connection(&mut self, lasted: Duration) -> Duration {
        if lasted >= self.max {
            self.schedule = self.builder.build();
        }
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconnect(initial_ms: u64, max_ms: u64) -> Reconnect {
        Reconnect::new(
            Duration::from_millis(initial_ms),
            Duration::from_millis(max_ms),
        )
    }

    #[test]
    fn a_connection_that_dies_at_once_keeps_backing_off() {
        let mut r = reconnect(100, 3_000);
        let delays: Vec<Duration> = (0..8)
            .map(|_| r.after_connection(Duration::from_millis(5)))
            .collect();
        assert!(delays[0] >= Duration::from_millis(100));
        assert!(
            delays[6] >= Duration::from_millis(3_000),
            "the schedule reached its cap: {delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(3_000)));
    }

    #[test]
    fn the_backoff_starts_over_after_a_healthy_connection() {
        let mut r = reconnect(100, 3_000);
        for _ in 0..8 {
            r.next_delay();
        }
        let after_healthy = r.after_connection(Duration::from_secs(3));
        assert!(
            after_healthy < Duration::from_millis(300),
            "{after_healthy:?}"
        );
    }
}
