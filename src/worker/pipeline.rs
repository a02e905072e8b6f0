//! The stages built from one config: matching, rendering and sending (through the batcher for
//! a batched webhook), and counting what was settled. A [`Pipeline`] is immutable; a reload
//! makes a new one, and messages already in flight ([`super::message`]) finish with the old.

use crate::broker::settle::{SettleContext, Settled, StoreHealth, WebhookOutcome};
use crate::config::{Config, Webhook};
use crate::model::event::{self, Event};
use crate::model::template::RenderInput;
use crate::ops::metrics::{MessageCounters, Metrics, WebhookMetrics};
use crate::pipeline::batch::{self, Batchers, Line};
use crate::pipeline::delivery::{Deliverer, DeliveryRequest};
use crate::pipeline::outcome::{Failure, Outcome, Reason};
use crate::pipeline::rules;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One config and everything built from it. Immutable; a reload makes a new one.
pub(super) struct Pipeline {
    pub(super) config: Arc<Config>,
    pub(super) deliverer: Arc<Deliverer>,
    batchers: Batchers,
    pub(super) metrics: Arc<Metrics>,
    pub(super) webhook_metrics: HashMap<String, WebhookMetrics>,
    /// The counters every message touches, registered once.
    pub(super) counters: MessageCounters,
    health: Arc<StoreHealth>,
}

impl Pipeline {
    pub(super) fn new(
        config: Arc<Config>,
        deliverer: Deliverer,
        metrics: Arc<Metrics>,
        health: Arc<StoreHealth>,
        shutdown: &CancellationToken,
    ) -> Self {
        let webhook_metrics: HashMap<String, WebhookMetrics> = config
            .webhooks
            .iter()
            .map(|w| (w.name.clone(), metrics.webhook(&w.name)))
            .collect();
        let deliverer = Arc::new(deliverer.with_metrics(webhook_metrics.clone()));
        let batchers = Batchers::start(&config, deliverer.clone(), shutdown.clone());
        Pipeline {
            config,
            deliverer,
            batchers,
            counters: metrics.message_counters(),
            metrics,
            webhook_metrics,
            health,
        }
    }

    /// What settling one of this pipeline's messages needs.
    pub(super) fn settle_context(&self, cancel: CancellationToken) -> SettleContext {
        SettleContext {
            health: self.health.clone(),
            cancel,
        }
    }

    /// Whether any webhook is active: without one, nothing may be consumed (every event
    /// would be acked and dropped).
    pub(super) fn has_active_webhook(&self) -> bool {
        self.config.webhooks.iter().any(|w| w.is_active())
    }
}

impl Pipeline {
    /// Counts and logs how a message was settled.
    pub(super) fn record_settled(
        &self,
        settled: &Settled,
        event_id: Option<&event::EventId>,
        outcomes: &[WebhookOutcome],
    ) {
        let id = event_id.map(|id| id.0.as_str());
        match settled {
            Settled::Acked { .. } => {
                self.counters.acked.increment(1);
                self.record_outcomes(outcomes);
            }
            Settled::Requeued { reason } => {
                self.counters.requeued.increment(1);
                tracing::info!(event_id = id, %reason, "message requeued");
            }
            Settled::Lost(e) => {
                self.counters.lost.increment(1);
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
                self.metrics.dead_letter(name, failure.reason.as_str());
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
    pub(super) async fn deliver_to_matching(
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
            self.counters.unmatched.increment(1);
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
    pub(super) fn render(
        &self,
        webhook: &Webhook,
        input: &RenderInput,
        prior: Option<crate::pipeline::outcome::RetryState>,
    ) -> Rendered {
        let attempts = prior.map_or(0, |p| p.attempts);
        match webhook.template.render_input(input) {
            Err(e) => Rendered::Failed(Outcome::DeadLetter(
                Failure::new(
                    Reason::RenderFailed,
                    self.deliverer.redactor().scrub(&e.to_string()),
                )
                .with_attempts(attempts),
            )),
            Ok(body) if webhook.batch.is_some() => match batch::to_line(&body) {
                Err(failure) => {
                    Rendered::Failed(Outcome::DeadLetter(failure.with_attempts(attempts)))
                }
                Ok(line) => Rendered::Line(line),
            },
            Ok(body) => Rendered::Body(body),
        }
    }

    /// Sends a rendered body (through the batcher for a batched webhook) in a `delivery` span.
    pub(super) async fn send(
        &self,
        webhook: &Arc<Webhook>,
        event: &Event,
        rendered: Rendered,
        prior: Option<crate::pipeline::outcome::RetryState>,
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
                        body: body.into(),
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
pub(super) enum Rendered {
    /// One request's body.
    Body(String),
    /// One NDJSON line for the webhook's batcher.
    Line(String),
    /// It could not be rendered: this is its outcome.
    Failed(Outcome),
}

/// Moves the event's JSON into a [`RenderInput`] without copying it; from here on only the
/// typed view, trigger and id of `event` are used.
pub(super) fn take_render_input(event: &mut Event) -> RenderInput {
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
