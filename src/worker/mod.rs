//! The `run` loop: connect, declare, consume the input queue and every active webhook's retry
//! queue, and for each message run the one-way path decode → match → render → deliver →
//! settle (`message`, over the stages of `pipeline`) in its own task.
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

mod connection;
mod message;
mod monitor;
mod pipeline;
mod reconnect;
mod retries;

use crate::broker::flow::Budget;
use crate::broker::settle::StoreHealth;
use crate::broker::{AmqpError, Broker};
use crate::config::Config;
use crate::ops::metrics::{self, Metrics, NotReady};
use crate::pipeline::delivery::{Deliverer, DeliveryError};
use connection::Connection;
use pipeline::Pipeline;
use reconnect::Reconnect;
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
    let worker = Worker::start(config, shutdown, metrics)?;
    let amqp = worker.current.borrow().config.amqp.clone();
    let mut reconnect = Reconnect::new(amqp.reconnect_initial_backoff, amqp.reconnect_max_backoff);
    let mut connected_once = false;
    while !worker.shutdown.is_cancelled() {
        let broker = match worker.connect().await {
            Ok(broker) => Arc::new(broker),
            Err(e) if !connected_once => return Err(e.into()),
            Err(e) => {
                let delay = reconnect.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
                worker
                    .metrics
                    .readiness
                    .set_not_ready(NotReady::Reconnecting);
                match worker.sleep(delay).await {
                    true => continue,
                    false => break,
                }
            }
        };
        worker.count_connection(connected_once);
        connected_once = true;
        let connected_at = Instant::now();
        // Deliveries of this connection stop retrying when it is lost: their messages can no
        // longer be acked and will be redelivered on the next connection.
        let token = worker.shutdown.child_token();
        let ended = Connection::new(&worker, broker.clone(), token.clone())
            .serve(&mut reloads)
            .await;
        if worker.shutdown.is_cancelled() {
            worker.drain().await;
            broker.close().await;
            return Ok(());
        }
        worker
            .metrics
            .readiness
            .set_not_ready(NotReady::Reconnecting);
        token.cancel();
        broker.close().await;
        let delay = reconnect.after_connection(connected_at.elapsed());
        let retry_in_ms = delay.as_millis() as u64;
        tracing::warn!(
            reason = ended,
            retry_in_ms,
            "broker connection lost; reconnecting"
        );
        if !worker.sleep(delay).await {
            break;
        }
    }
    worker.drain().await;
    Ok(())
}

/// What every connection of one run shares: the pipeline in force (swapped whole on reload),
/// the metrics, the store health, the memory budget and the tasks of messages in flight.
struct Worker {
    current: watch::Sender<Arc<Pipeline>>,
    metrics: Arc<Metrics>,
    health: Arc<StoreHealth>,
    budget: Arc<Budget>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Worker {
    /// Builds the first pipeline; refuses a config without an active webhook unless
    /// `policy.allow_idle` opts in.
    fn start(
        config: Arc<Config>,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Result<Worker, WorkerError> {
        let deliverer = Deliverer::new(&config)?;
        let health = StoreHealth::counted(metrics.counter(metrics::STORE_FAILURES, vec![]));
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
        Ok(Worker {
            current: watch::Sender::new(Arc::new(pipeline)),
            metrics,
            health,
            budget: Budget::new(config.amqp.memory_budget),
            tracker: TaskTracker::new(),
            shutdown,
        })
    }

    /// Connects with the config in force and declares its topology.
    async fn connect(&self) -> Result<Broker, AmqpError> {
        let config = self.current.borrow().config.clone();
        let broker = Broker::connect(&config.amqp, &config.redactor).await?;
        broker.declare_topology(&config.amqp).await?;
        broker
            .declare_retry_topology(&config.amqp, &config.webhooks)
            .await?;
        Ok(broker)
    }

    fn count_connection(&self, reconnected: bool) {
        self.metrics
            .counter(metrics::CONNECTIONS, vec![])
            .increment(1);
        if reconnected {
            self.metrics
                .counter(metrics::RECONNECTS, vec![])
                .increment(1);
        }
    }

    /// Sleeps `delay`; `false` when shutdown came first.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Lets messages in flight finish within the grace period; what does not finish goes
    /// back to the broker when the connection closes.
    async fn drain(&self) {
        self.metrics.readiness.set_not_ready(NotReady::ShuttingDown);
        self.tracker.close();
        let grace = self.current.borrow().config.shutdown.grace;
        tracing::info!(
            in_flight = self.tracker.len(),
            grace_ms = grace.as_millis() as u64,
            "shutting down: waiting for in-flight deliveries"
        );
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                unfinished = self.tracker.len(),
                "grace period over; unfinished messages go back to the broker"
            );
        }
    }

    /// Swaps in a new config. Refused, and the old config stays in force, when the new one
    /// has no active webhook (unless it sets `policy.allow_idle`), when its HTTP client cannot
    /// be built, or when its retry topology cannot be declared.
    async fn reload(&self, broker: &Broker, config: Arc<Config>) {
        let refuse = |error: &dyn std::fmt::Display| {
            self.metrics.record_reload(false);
            tracing::error!(error = %error, "config reload refused; the old config stays in force");
        };
        if !config.webhooks.iter().any(|w| w.is_active()) && !config.policy.allow_idle {
            return refuse(&WorkerError::NoActiveWebhook(config.dir.join("webhooks")));
        }
        let previous = self.current.borrow().clone();
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
        self.current.send_replace(Arc::new(Pipeline::new(
            config,
            deliverer,
            self.metrics.clone(),
            self.health.clone(),
            &self.shutdown,
        )));
        self.metrics.record_reload(true);
        tracing::info!(webhooks, "config reloaded");
    }
}
