//! The `run` loop: connect, declare, consume the input queue and every active webhook's retry
//! queue, and for each message run the one-way path decode → match → render → deliver →
//! settle in its own task.
//!
//! Work in flight is bounded by the broker's prefetch: at most `prefetch` input messages, and
//! per webhook at most its own retry prefetch, are unacked at once. Deliveries of one event to
//! its webhooks run concurrently, and each webhook has its own concurrency limit. A delivery
//! still failing after its short in-process retry window is parked in its webhook's durable
//! retry queue, so a dead endpoint holds no input events and cannot starve the others.
//!
//! The broker going away does not end the run: the loop reconnects with backoff (trying every
//! configured broker URL in turn) and the broker redelivers whatever was unacked. Only the
//! first connection is allowed to fail the run, so a wrong URL or a broker that is down at
//! start is one clear error and a non-zero exit.
//!
//! A new config (SIGHUP) replaces the pipeline whole: messages already in flight finish with
//! the config they started with; retry consumers are started and stopped to match.
//!
//! Shutdown (the token is cancelled): stop consuming, let in-flight deliveries finish within
//! the grace period (backoff sleeps wake at once and park their delivery), settle what
//! finished, close the connection so the broker redelivers the rest.

use crate::amqp::{AmqpError, Broker, Inbound, topology};
use crate::batch::{self, Batchers, Line};
use crate::config::{Config, QueueType, Webhook};
use crate::dead_letter;
use crate::delivery::{Deliverer, DeliveryError, DeliveryRequest};
use crate::event::{self, Event};
use crate::metrics::{self, Metrics, Readiness, WebhookMetrics};
use crate::outcome::{Failure, Outcome, Reason};
use crate::rules;
use crate::settle::{self, Settled, WebhookOutcome};
use crate::template::RenderInput;
use backon::BackoffBuilder;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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
    /// Messages taken from retry queues.
    pub retries_consumed: AtomicU64,
    /// Messages that matched no webhook (acked without delivery).
    pub unmatched: AtomicU64,
    /// Deliveries that succeeded.
    pub delivered: AtomicU64,
    /// Dead letters published and confirmed.
    pub dead_lettered: AtomicU64,
    /// Deliveries parked in a retry queue, confirmed.
    pub parked: AtomicU64,
    /// Messages acked.
    pub acked: AtomicU64,
    /// Messages requeued (a dead letter or parked delivery not stored).
    pub requeued: AtomicU64,
    /// Successful connections to the broker, the first included.
    pub connections: AtomicU64,
    /// Config reloads that took effect.
    pub reloads: AtomicU64,
    /// Config reloads refused because the new config is invalid.
    pub reloads_refused: AtomicU64,
    /// The Prometheus registry the same events are recorded in, with labels.
    pub metrics: Metrics,
    /// Connected and consuming, or why not (`/readyz`).
    pub readiness: Readiness,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts a config reload that took effect (`ok`) or was refused.
    pub fn record_reload(&self, ok: bool) {
        Stats::add(
            if ok {
                &self.reloads
            } else {
                &self.reloads_refused
            },
            1,
        );
        let result = if ok { "success" } else { "failure" };
        self.metrics
            .counter(
                metrics::RELOADS,
                vec![::metrics::Label::new("result", result)],
            )
            .increment(1);
    }
}

/// One config and everything built from it. Immutable; a reload makes a new one.
struct Pipeline {
    config: Arc<Config>,
    deliverer: Arc<Deliverer>,
    batchers: Batchers,
    stats: Arc<Stats>,
    webhook_metrics: HashMap<String, WebhookMetrics>,
}

impl Pipeline {
    fn new(
        config: Arc<Config>,
        deliverer: Deliverer,
        stats: Arc<Stats>,
        shutdown: &CancellationToken,
    ) -> Self {
        let webhook_metrics: HashMap<String, WebhookMetrics> = config
            .webhooks
            .iter()
            .map(|w| (w.name.clone(), stats.metrics.webhook(&w.name)))
            .collect();
        let deliverer = Arc::new(deliverer.with_metrics(webhook_metrics.clone()));
        let batchers = Batchers::start(&config, deliverer.clone(), shutdown.clone());
        Pipeline {
            config,
            deliverer,
            batchers,
            stats,
            webhook_metrics,
        }
    }
}

/// A request to reload: the new config, already loaded and validated by the caller.
pub type Reload = Arc<Config>;

/// Runs until `shutdown` is cancelled. Returns an error only when the first connection or
/// topology setup fails.
pub async fn run(
    config: Arc<Config>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
) -> Result<(), WorkerError> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with_reloads(config, shutdown, stats, reloads).await
}

/// [`run`], also taking new configs from `reloads` (SIGHUP in the binary).
pub async fn run_with_reloads(
    config: Arc<Config>,
    shutdown: CancellationToken,
    stats: Arc<Stats>,
    mut reloads: mpsc::Receiver<Reload>,
) -> Result<(), WorkerError> {
    let deliverer = Deliverer::new(&config)?;
    let pipeline = Arc::new(Pipeline::new(config, deliverer, stats.clone(), &shutdown));
    let (current, _) = watch::channel(pipeline);
    let tracker = TaskTracker::new();
    let mut reconnect = reconnect_schedule(&current.borrow().config);
    let mut connected_once = false;
    let consumed = stats.metrics.counter(metrics::EVENTS_CONSUMED, vec![]);
    let reconnects = stats.metrics.counter(metrics::RECONNECTS, vec![]);

    while !shutdown.is_cancelled() {
        let config = current.borrow().config.clone();
        let broker = match connect(&config).await {
            Ok(broker) => Arc::new(broker),
            Err(e) if !connected_once => return Err(e.into()),
            Err(e) => {
                let delay = reconnect
                    .next()
                    .unwrap_or(config.amqp.reconnect_max_backoff);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
                stats
                    .readiness
                    .set_not_ready(format!("reconnecting to the broker: {e}"));
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
        reconnect = reconnect_schedule(&config);
        Stats::add(&stats.connections, 1);

        // Deliveries of this connection stop retrying when it is lost: their messages can no
        // longer be acked and will be redelivered on the next connection.
        let connection_token = shutdown.child_token();
        let mut messages = match broker.consume(&config.amqp).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume; reconnecting");
                connection_token.cancel();
                broker.close().await;
                continue;
            }
        };
        tracing::info!(
            broker = %config.amqp.url_redacted,
            queue = %config.amqp.queue,
            prefetch = config.amqp.prefetch,
            webhooks = config.webhooks.len(),
            "consuming"
        );
        let mut retries = RetryConsumers::default();
        let lost_retry_consumer = retries.lost.clone();
        retries
            .reconcile(&broker, &current, &tracker, &connection_token)
            .await;
        let monitor = tokio::spawn(monitor(
            broker.clone(),
            current.subscribe(),
            connection_token.clone(),
        ));
        stats.readiness.set_ready();

        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = lost_retry_consumer.notified() => break,
                Some(new_config) = reloads.recv() => {
                    reload(&broker, &current, new_config, &stats, &shutdown).await;
                    retries.reconcile(&broker, &current, &tracker, &connection_token).await;
                }
                next = messages.next() => match next {
                    Some(Ok(inbound)) => {
                        Stats::add(&stats.consumed, 1);
                        consumed.increment(1);
                        let pipeline = current.borrow().clone();
                        let token = connection_token.clone();
                        tracker.spawn(async move { pipeline.handle_input(inbound, token).await });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "broker connection lost; reconnecting");
                        stats.readiness.set_not_ready(format!("reconnecting to the broker: {e}"));
                        break;
                    }
                    None => {
                        tracing::warn!("consumer ended by the broker; reconnecting");
                        stats.readiness.set_not_ready("reconnecting to the broker: the consumer was cancelled");
                        break;
                    }
                },
            }
        }
        drop(messages);
        monitor.abort();
        retries.stop_all().await;
        if !shutdown.is_cancelled() {
            stats.readiness.set_not_ready("reconnecting to the broker");
        }

        if shutdown.is_cancelled() {
            stats.readiness.set_not_ready("shutting down");
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
        connection_token.cancel();
        broker.close().await;
    }
    tracker.close();
    let grace = current.borrow().config.shutdown.grace;
    let _ = tokio::time::timeout(grace, tracker.wait()).await;
    Ok(())
}

async fn connect(config: &Config) -> Result<Broker, AmqpError> {
    let broker = Broker::connect(&config.amqp, &config.redactor).await?;
    broker.declare_topology(&config.amqp).await?;
    broker
        .declare_retry_topology(&config.amqp, &config.webhooks)
        .await?;
    Ok(broker)
}

/// Swaps in a new config. Its retry topology is declared first; if that fails the old config
/// stays in force.
async fn reload(
    broker: &Broker,
    current: &watch::Sender<Arc<Pipeline>>,
    config: Arc<Config>,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
) {
    let previous = current.borrow().clone();
    let deliverer = match Deliverer::reloaded(&config, &previous.deliverer) {
        Ok(d) => d,
        Err(e) => {
            stats.record_reload(false);
            tracing::error!(error = %e, "config reload refused; the old config stays in force");
            return;
        }
    };
    if let Err(e) = broker
        .declare_retry_topology(&config.amqp, &config.webhooks)
        .await
    {
        stats.record_reload(false);
        tracing::error!(error = %e, "config reload refused; the old config stays in force");
        return;
    }
    let webhooks = config.webhooks.len();
    current.send_replace(Arc::new(Pipeline::new(
        config,
        deliverer,
        stats.clone(),
        shutdown,
    )));
    stats.record_reload(true);
    tracing::info!(webhooks, "config reloaded");
}

fn reconnect_schedule(config: &Config) -> impl Iterator<Item = Duration> + use<> {
    backon::ExponentialBuilder::default()
        .with_min_delay(config.amqp.reconnect_initial_backoff)
        .with_max_delay(config.amqp.reconnect_max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The consumers of the active webhooks' retry queues on one connection.
#[derive(Default)]
struct RetryConsumers {
    running: HashMap<String, CancellationToken>,
    /// Woken when the broker ends a retry consumer that was not asked to stop (its queue was
    /// deleted, its channel failed): the run loop then reconnects, which starts it again.
    lost: Arc<tokio::sync::Notify>,
}

impl RetryConsumers {
    /// Starts a consumer for every active webhook that has none, stops those whose webhook is
    /// gone or inactive. A stopped consumer's messages already received still settle.
    async fn reconcile(
        &mut self,
        broker: &Arc<Broker>,
        current: &watch::Sender<Arc<Pipeline>>,
        tracker: &TaskTracker,
        connection: &CancellationToken,
    ) {
        let config = current.borrow().config.clone();
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
            let consumer = match broker.consume_retry(&config.amqp, name, prefetch).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(webhook = name, error = %e, "cannot consume the retry queue");
                    continue;
                }
            };
            let token = connection.child_token();
            self.running.insert(name.to_string(), token.clone());
            let current = current.subscribe();
            let tracker_inner = tracker.clone();
            let name = name.to_string();
            let connection = connection.clone();
            let lost = self.lost.clone();
            tracker.spawn(async move {
                let mut consumer = consumer;
                loop {
                    tokio::select! {
                        _ = token.cancelled() => {
                            consumer.cancel().await;
                            break;
                        }
                        next = consumer.stream.next() => match next {
                            Some(Ok(inbound)) => {
                                let pipeline = current.borrow().clone();
                                Stats::add(&pipeline.stats.retries_consumed, 1);
                                let name = name.clone();
                                let token = connection.clone();
                                tracker_inner.spawn(async move {
                                    pipeline.handle_retry(inbound, &name, token).await
                                });
                            }
                            _ => {
                                tracing::warn!(webhook = %name, "retry consumer ended by the broker; reconnecting");
                                lost.notify_one();
                                break;
                            }
                        },
                    }
                }
            });
        }
    }

    async fn stop_all(&mut self) {
        for token in self.running.values() {
            token.cancel();
        }
        self.running.clear();
    }
}

/// Logs each webhook's circuit state and retry depth every `monitor.interval`.
async fn monitor(
    broker: Arc<Broker>,
    current: watch::Receiver<Arc<Pipeline>>,
    stop: CancellationToken,
) {
    loop {
        let interval = current.borrow().config.monitor_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return,
        }
        let pipeline = current.borrow().clone();
        for webhook in &pipeline.config.webhooks {
            let queue = &pipeline.config.amqp.queue;
            let mut depth = broker
                .ready_count(&topology::retry_queue(queue, &webhook.name))
                .await
                .unwrap_or(0);
            for tier in topology::tiers(&webhook.delivery) {
                depth += broker
                    .ready_count(&topology::wait_queue(queue, &webhook.name, tier))
                    .await
                    .unwrap_or(0);
            }
            let state = pipeline.deliverer.breaker(&webhook.name).map(|b| b.state());
            if let Some(m) = pipeline.webhook_metrics.get(&webhook.name) {
                m.retry_depth.set(f64::from(depth));
                if let Some(state) = state {
                    m.circuit.set(metrics::circuit_value(state));
                }
            }
            let circuit = state.map(|s| s.to_string()).unwrap_or_default();
            tracing::info!(webhook = %webhook.name, %circuit, retry_depth = depth, "webhook status");
        }
        let dead_letters = broker
            .ready_count(&pipeline.config.amqp.dead_letter_queue)
            .await
            .unwrap_or(0);
        pipeline
            .stats
            .metrics
            .gauge(metrics::DEAD_LETTER_DEPTH, vec![])
            .set(f64::from(dead_letters));
    }
}

impl Pipeline {
    /// An input event: decode, match, render and deliver per webhook, settle.
    async fn handle_input(&self, inbound: Inbound, cancel: CancellationToken) {
        if let Some(outcomes) = self.over_redelivery_limit(&inbound, None) {
            return self.settle(inbound, None, outcomes).await;
        }
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
            Ok(mut event) => {
                let span =
                    tracing::info_span!("event", event_id = %event.id, event_type = %event.trigger);
                let input = take_render_input(&mut event);
                let outcomes = self
                    .deliver_to_matching(&event, input, &cancel)
                    .instrument(span.clone())
                    .await;
                let id = event.id;
                return self
                    .settle(inbound, Some(id), outcomes)
                    .instrument(span)
                    .await;
            }
        };
        self.settle(inbound, event_id, outcomes).await;
    }

    /// A delivery back from `webhook`'s retry queue: the same path, for that webhook only.
    async fn handle_retry(&self, inbound: Inbound, webhook: &str, cancel: CancellationToken) {
        let Some(hook) = self.config.webhook(webhook).cloned() else {
            // Removed by a reload while the message was on its way: it waits in the retry
            // queue until the webhook comes back (or an operator purges it).
            tokio::time::sleep(settle::REQUEUE_PAUSE).await;
            let _ = inbound.handle.requeue().await;
            return;
        };
        if let Some(outcomes) = self.over_redelivery_limit(&inbound, Some(&hook)) {
            return self.settle(inbound, None, outcomes).await;
        }
        let (event_id, outcome) = match event::decode(&inbound.body, inbound.message_id()) {
            Err(invalid) => (
                None,
                Outcome::DeadLetter(Failure {
                    reason: Reason::InvalidEvent,
                    attempts: 0,
                    last_status: None,
                    last_error: invalid.to_string(),
                }),
            ),
            Ok(mut event) => {
                let span =
                    tracing::info_span!("event", event_id = %event.id, event_type = %event.trigger);
                let input = take_render_input(&mut event);
                let prior =
                    dead_letter::retry_state(&inbound.properties, hook.delivery.max_attempts);
                let rendered = self.render(&hook, &input, prior);
                drop(input);
                let outcome = self
                    .send(&hook, &event, rendered, prior, &cancel)
                    .instrument(span)
                    .await;
                (Some(event.id), outcome)
            }
        };
        let outcomes = vec![WebhookOutcome {
            webhook: Some(hook),
            outcome,
        }];
        self.settle(inbound, event_id, outcomes).await;
    }

    /// With quorum queues: a message delivered more often than the limit is dead-lettered
    /// unprocessed, so a poison message cannot loop for ever.
    fn over_redelivery_limit(
        &self,
        inbound: &Inbound,
        webhook: Option<&Arc<Webhook>>,
    ) -> Option<Vec<WebhookOutcome>> {
        let limit = i64::from(self.config.amqp.redelivery_limit);
        if self.config.amqp.queue_type != QueueType::Quorum {
            return None;
        }
        let count = inbound.delivery_count()?;
        if count <= limit {
            return None;
        }
        tracing::warn!(
            routing_key = %inbound.routing_key,
            deliveries = count,
            "message redelivered too often; dead-lettering it unprocessed"
        );
        Some(vec![WebhookOutcome {
            webhook: webhook.cloned(),
            outcome: Outcome::DeadLetter(Failure {
                reason: Reason::RedeliveryLimit,
                attempts: 0,
                last_status: None,
                last_error: format!(
                    "delivered {count} times without being settled (amqp.redelivery_limit = {limit})"
                ),
            }),
        }])
    }

    async fn settle(
        &self,
        inbound: Inbound,
        event_id: Option<event::EventId>,
        outcomes: Vec<WebhookOutcome>,
    ) {
        let settled = settle::settle(inbound, event_id.as_ref(), &outcomes).await;
        let id = event_id.as_ref().map(|id| id.0.as_str());
        match settled {
            Settled::Acked {
                delivered,
                dead_lettered,
                parked,
            } => {
                Stats::add(&self.stats.acked, 1);
                Stats::add(&self.stats.delivered, delivered as u64);
                Stats::add(&self.stats.dead_lettered, dead_lettered as u64);
                Stats::add(&self.stats.parked, parked as u64);
                self.record_outcomes(&outcomes);
            }
            Settled::Requeued { reason } => {
                Stats::add(&self.stats.requeued, 1);
                tracing::info!(event_id = id, %reason, "message requeued");
            }
            Settled::Lost(e) => {
                tracing::warn!(event_id = id, error = %e, "message not settled; the broker will redeliver it");
            }
        }
    }

    /// Counts the outcomes of a message that was acked: only then are its dead letters and
    /// parked deliveries stored.
    fn record_outcomes(&self, outcomes: &[WebhookOutcome]) {
        for item in outcomes {
            let name = item.webhook.as_ref().map(|w| w.name.as_str());
            if let Outcome::DeadLetter(failure) = &item.outcome {
                self.stats
                    .metrics
                    .dead_letter(name, failure.reason.as_str());
            }
            let Some(m) = name.and_then(|n| self.webhook_metrics.get(n)) else {
                continue;
            };
            match &item.outcome {
                Outcome::Delivered { attempts, .. } => {
                    m.success.increment(1);
                    m.attempts.record(f64::from(*attempts));
                }
                Outcome::Park(_) => m.retry.increment(1),
                Outcome::DeadLetter(failure) => {
                    match failure.reason {
                        Reason::DeliveryFailed => m.failed.increment(1),
                        _ => m.rejected.increment(1),
                    }
                    m.attempts.record(f64::from(failure.attempts));
                }
            }
        }
    }

    /// Renders and delivers to every matching webhook concurrently.
    async fn deliver_to_matching(
        &self,
        event: &Event,
        input: RenderInput,
        cancel: &CancellationToken,
    ) -> Vec<WebhookOutcome> {
        let hooks = rules::matching(&self.config.webhooks, event);
        for hook in &hooks {
            if let Some(m) = self.webhook_metrics.get(&hook.name) {
                m.matched.increment(1);
            }
        }
        if hooks.is_empty() {
            Stats::add(&self.stats.unmatched, 1);
            self.stats
                .metrics
                .counter(metrics::EVENTS_UNMATCHED, vec![])
                .increment(1);
            tracing::info!(event_id = %event.id, event_type = %event.trigger, "event matched no webhook");
            return Vec::new();
        }
        // Every body first, then the event's JSON tree is dropped: while requests are on the
        // wire (most of a message's life) it holds only its bodies.
        let rendered: Vec<(Arc<Webhook>, Rendered)> = hooks
            .into_iter()
            .map(|webhook| {
                let body = self.render(&webhook, &input, None);
                (webhook, body)
            })
            .collect();
        drop(input);
        let deliveries = rendered.into_iter().map(|(webhook, body)| async move {
            let outcome = self.send(&webhook, event, body, None, cancel).await;
            WebhookOutcome {
                webhook: Some(webhook),
                outcome,
            }
        });
        futures_util::future::join_all(deliveries).await
    }

    /// Renders `webhook`'s body: the request body, a batch line, or the dead letter it
    /// becomes when it cannot be rendered.
    fn render(
        &self,
        webhook: &Webhook,
        input: &RenderInput,
        prior: Option<crate::outcome::RetryState>,
    ) -> Rendered {
        let attempts = prior.map_or(0, |p| p.attempts);
        match webhook.template.render_input(input) {
            Err(e) => Rendered::Failed(Outcome::DeadLetter(Failure {
                reason: Reason::RenderFailed,
                attempts,
                last_status: None,
                last_error: self.deliverer.redactor().scrub(&e.to_string()),
            })),
            Ok(body) if webhook.batch.is_some() => match batch::to_line(&body) {
                Err(failure) => Rendered::Failed(Outcome::DeadLetter(Failure {
                    attempts,
                    ..failure
                })),
                Ok(line) => Rendered::Line(line),
            },
            Ok(body) => Rendered::Body(body),
        }
    }

    /// Sends a rendered body (through the batcher for a batched webhook) in a `delivery` span.
    async fn send(
        &self,
        webhook: &Arc<Webhook>,
        event: &Event,
        rendered: Rendered,
        prior: Option<crate::outcome::RetryState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let span = tracing::info_span!("delivery", webhook = %webhook.name);
        async {
            let outcome = match rendered {
                Rendered::Failed(outcome) => outcome,
                Rendered::Line(text) => {
                    let line = Line {
                        text,
                        event_id: event.id.clone(),
                        prior,
                    };
                    self.batchers.submit(webhook, line).await
                }
                Rendered::Body(body) => {
                    let request = DeliveryRequest {
                        webhook: webhook.clone(),
                        event_id: event.id.clone(),
                        body,
                        prior,
                        batch_size: None,
                    };
                    self.deliverer.deliver(&request, cancel).await
                }
            };
            log_outcome(event, &webhook.name, &outcome);
            outcome
        }
        .instrument(span)
        .await
    }
}

/// A webhook's rendered body, ready to send.
enum Rendered {
    /// One request's body.
    Body(String),
    /// One NDJSON line for the webhook's batcher.
    Line(String),
    /// It could not be rendered: this is its outcome.
    Failed(Outcome),
}

/// Moves the event's JSON into a [`RenderInput`] without copying it; from here on only the
/// typed view, trigger and id of `event` are used.
fn take_render_input(event: &mut Event) -> RenderInput {
    let raw = std::mem::replace(&mut event.raw, Arc::new(serde_json::Value::Null));
    RenderInput::new(Arc::unwrap_or_clone(raw))
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
        Outcome::Park(parked) => tracing::info!(
            event_id = %event.id,
            event_type = %event.trigger,
            webhook,
            attempts = parked.state.attempts,
            retry_in_ms = parked.next_delay.as_millis() as u64,
            error = %parked.last_error,
            "delivery parked in the retry queue"
        ),
    }
}
