//! One message, owned from the moment it is consumed until it is settled: decode, match,
//! render, deliver, settle, in that order and nowhere else. An input event goes to every
//! webhook it matches; a delivery back from a webhook's retry queue goes to that webhook only.
//! The stages themselves are the [`Pipeline`]'s; this type only walks them.

use super::pipeline::{Pipeline, take_render_input};
use crate::broker::Inbound;
use crate::broker::dead_letter;
use crate::broker::settle::{self, Fate, WebhookOutcome};
use crate::config::{QueueType, Webhook};
use crate::model::event::{self, EventId};
use crate::pipeline::outcome::{Failure, Outcome, Reason};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Where a message came from, and so which webhooks it is for.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// The input queue: every webhook it matches.
    Input,
    /// A webhook's retry queue: that webhook only.
    Retry(String),
}

/// One message on its way from consume to settle, with the pipeline (config) it started with
/// and the token of its connection: when that is cancelled (shutdown, a lost connection) its
/// retries stop and it settles with what it has.
pub(super) struct Message {
    inbound: Inbound,
    source: Source,
    pipeline: Arc<Pipeline>,
    cancel: CancellationToken,
}

impl Message {
    /// A message from `source`, to run through `pipeline`.
    pub(super) fn new(
        inbound: Inbound,
        source: Source,
        pipeline: Arc<Pipeline>,
        cancel: CancellationToken,
    ) -> Message {
        Message {
            inbound,
            source,
            pipeline,
            cancel,
        }
    }

    /// Runs the message through every stage and settles it; it is acked only once every
    /// outcome is safe somewhere.
    pub(super) async fn process(self) {
        let webhook = match &self.source {
            Source::Input => None,
            Source::Retry(name) => match self.pipeline.config.webhook(name).cloned() {
                Some(webhook) => Some(webhook),
                // Removed by a reload while the message was on its way: it waits in the
                // retry queue until the webhook comes back (or an operator purges it).
                None => return self.put_back().await,
            },
        };
        if let Some(outcomes) = self.unprocessable(webhook.as_ref()) {
            return self.settle(None, outcomes).await;
        }
        let mut event = match event::decode(&self.inbound.body, self.inbound.message_id()) {
            Ok(event) => event,
            Err(invalid) => {
                tracing::warn!(
                    routing_key = %self.inbound.routing_key,
                    error = %invalid,
                    "invalid event; dead-lettering it"
                );
                let failure = Failure::new(Reason::InvalidEvent, invalid.to_string());
                let outcome = vec![WebhookOutcome {
                    webhook,
                    outcome: Outcome::DeadLetter(failure),
                }];
                return self.settle(None, outcome).await;
            }
        };
        let span = tracing::info_span!("event", event_id = %event.id, event_type = %event.trigger);
        let input = take_render_input(&mut event);
        let outcomes = async {
            match webhook {
                None => {
                    self.pipeline
                        .deliver_to_matching(&event, input, &self.cancel)
                        .await
                }
                Some(webhook) => {
                    let prior = dead_letter::retry_state(
                        &self.inbound.properties,
                        webhook.delivery.max_attempts,
                    );
                    let rendered = self.pipeline.render(&webhook, &input, prior);
                    drop(input);
                    let outcome = self
                        .pipeline
                        .send(&webhook, &event, rendered, prior, &self.cancel)
                        .await;
                    vec![WebhookOutcome {
                        webhook: Some(webhook),
                        outcome,
                    }]
                }
            }
        }
        .instrument(span.clone())
        .await;
        self.settle(Some(event.id), outcomes).instrument(span).await;
    }

    /// A message dead-lettered without being parsed: larger than `amqp.max_message_bytes`,
    /// or (with quorum queues) delivered more often than the redelivery limit, so that a
    /// poison message cannot loop for ever.
    fn unprocessable(&self, webhook: Option<&Arc<Webhook>>) -> Option<Vec<WebhookOutcome>> {
        let amqp = &self.pipeline.config.amqp;
        let size = self.inbound.body.len();
        let routing_key = &self.inbound.routing_key;
        let failure = if size > amqp.max_message_bytes as usize {
            tracing::warn!(%routing_key, bytes = size, max_message_bytes = amqp.max_message_bytes, "message too large; dead-lettering it unparsed");
            let max = amqp.max_message_bytes;
            Failure::new(
                Reason::TooLarge,
                format!("{size} bytes, over amqp.max_message_bytes = {max}"),
            )
        } else {
            let limit = i64::from(amqp.redelivery_limit);
            let count = self.inbound.delivery_count().unwrap_or(0);
            if amqp.queue_type != QueueType::Quorum || count <= limit {
                return None;
            }
            tracing::warn!(%routing_key, deliveries = count, "message redelivered too often; dead-lettering it unprocessed");
            Failure::new(
                Reason::RedeliveryLimit,
                format!(
                    "delivered {count} times without being settled (amqp.redelivery_limit = {limit})"
                ),
            )
        };
        Some(vec![WebhookOutcome {
            webhook: webhook.cloned(),
            outcome: Outcome::DeadLetter(failure),
        }])
    }

    async fn settle(self, event_id: Option<EventId>, outcomes: Vec<WebhookOutcome>) {
        let fate = Fate::Outcomes {
            event_id: event_id.as_ref(),
            outcomes: &outcomes,
        };
        let context = self.pipeline.settle_context(self.cancel.clone());
        let settled = settle::settle(&self.inbound, fate, &context).await;
        self.pipeline
            .record_settled(&settled, event_id.as_ref(), &outcomes);
    }

    async fn put_back(self) {
        let fate = Fate::PutBack("its webhook was removed by a reload");
        let context = self.pipeline.settle_context(self.cancel.clone());
        let settled = settle::settle(&self.inbound, fate, &context).await;
        self.pipeline.record_settled(&settled, None, &[]);
    }
}
