//! Delivery: sends one rendered request to one webhook and retries it with backoff. It knows
//! HTTP and nothing of AMQP: it never acks, nacks or publishes, it returns an [`Outcome`].
//!
//! The stages of one delivery are types: a [`DeliveryRequest`] (what to send), an [`Attempt`]
//! per try (what happened, with an [`AttemptError`] when it failed, judged in [`classify`]),
//! and how it [`Finished`]: the [`Outcome`].
//!
//! # Layout
//! - `request`: the request to send and the HTTP request it becomes.
//! - `attempt`: one try, its response and what it means.
//! - `error`: what can go wrong, as values.
//! - [`classify`]: the one place that decides what an error means.
//! - `retry`: the retry loop and its budget.
//! - [`breaker`]: the per-webhook circuit breaker.
//! - `client`: the shared HTTP client.

mod attempt;
pub mod breaker;
pub mod classify;
mod client;
mod error;
mod request;
mod retry;

pub use attempt::{Attempt, RESPONSE_BODY_LIMIT, ResponseInfo};
pub use classify::{FailureClass, StatusClass, Verdict};
pub use client::build_client;
pub use error::{AttemptError, DeliveryError, LineCounts};
pub use request::{
    BATCH_SIZE_HEADER, DeliveryRequest, EVENT_ID_HEADER, IDEMPOTENCY_HEADER, USER_AGENT,
    header_safe,
};
pub use retry::{Backoff, Finished};

use crate::config::{Config, DeliverySettings};
use crate::ops::metrics::WebhookMetrics;
use crate::pipeline::outcome::Outcome;
use crate::redact::Redactor;
use breaker::{Admission, Breaker};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Sends requests: the shared HTTP client (connection reuse), the redactor, and one
/// concurrency limit per webhook. Cheap to share behind an `Arc`.
pub struct Deliverer {
    client: reqwest::Client,
    redactor: Redactor,
    limits: HashMap<String, Arc<Semaphore>>,
    breakers: HashMap<String, Arc<Breaker>>,
    /// Each webhook's own headers, parsed once.
    headers: HashMap<String, reqwest::header::HeaderMap>,
    /// Each webhook's metric handles (empty when nobody collects them).
    metrics: HashMap<String, WebhookMetrics>,
}

impl Deliverer {
    /// A deliverer for every webhook in `config`.
    pub fn new(config: &Config) -> Result<Self, DeliveryError> {
        let client = build_client(&config.http)?;
        let limits = config
            .webhooks
            .iter()
            .map(|w| {
                let permits = usize::try_from(w.delivery.concurrency).unwrap_or(usize::MAX);
                (w.name.clone(), Arc::new(Semaphore::new(permits)))
            })
            .collect();
        let breakers = config
            .webhooks
            .iter()
            .map(|w| {
                let breaker =
                    Breaker::new(w.delivery.circuit_failures, w.delivery.circuit_cooldown);
                (w.name.clone(), Arc::new(breaker))
            })
            .collect();
        let headers = config
            .webhooks
            .iter()
            .filter_map(|w| Some((w.name.clone(), request::header_map(w)?)))
            .collect();
        Ok(Deliverer {
            client,
            redactor: config.redactor.clone(),
            limits,
            breakers,
            headers,
            metrics: HashMap::new(),
        })
    }

    /// Records every attempt's status class, latency and in-flight count, and circuit changes,
    /// in these per-webhook handles.
    pub fn with_metrics(mut self, metrics: HashMap<String, WebhookMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The metric handles of a webhook, if collected.
    pub fn webhook_metrics(&self, webhook: &str) -> Option<&WebhookMetrics> {
        self.metrics.get(webhook)
    }

    /// A deliverer for `config` that keeps the circuit state of `previous` for webhooks of the
    /// same name (a config reload must not close an open circuit).
    pub fn reloaded(config: &Config, previous: &Deliverer) -> Result<Self, DeliveryError> {
        let mut next = Deliverer::new(config)?;
        for (name, breaker) in next.breakers.iter_mut() {
            if let Some(old) = previous.breakers.get(name) {
                *breaker = Arc::clone(old);
            }
        }
        Ok(next)
    }

    /// The circuit breaker of a webhook.
    pub fn breaker(&self, webhook: &str) -> Option<&Breaker> {
        self.breakers.get(webhook).map(Arc::as_ref)
    }

    /// The redactor every message from here passes through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Waits for a slot under `webhook`'s concurrency limit; the slot is free again when the
    /// returned permit is dropped. `None` when the webhook has no limit here.
    async fn slot(&self, webhook: &str) -> Option<OwnedSemaphorePermit> {
        match self.limits.get(webhook) {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Makes one attempt, waiting for a slot under the webhook's concurrency limit first.
    pub async fn send_once(&self, request: &DeliveryRequest, number: u32) -> Attempt {
        let _slot = self.slot(&request.webhook.name).await;
        self.attempt(request, number).await
    }

    /// Makes attempt `number` for a caller that already holds a slot, counting it in the
    /// webhook's metrics.
    async fn attempt(&self, request: &DeliveryRequest, number: u32) -> Attempt {
        let name = &request.webhook.name;
        let builder = request.build(&self.client, self.headers.get(name));
        let metrics = self.metrics.get(name);
        if let Some(m) = metrics {
            m.in_flight.increment(1.0);
        }
        let started = Instant::now();
        let result = attempt::send_and_read(builder).await;
        let latency = started.elapsed();
        if let Some(m) = metrics {
            m.in_flight.decrement(1.0);
            let status = result.as_ref().ok().map(|r| r.status);
            m.response(status, latency.as_secs_f64());
        }
        Attempt::new(number, latency, result, &self.redactor)
    }

    /// Delivers with retries until success, a permanent failure, the retry budget running out
    /// (`max_attempts`, `max_elapsed`) or `cancel` firing during a backoff sleep.
    pub async fn deliver(&self, request: &DeliveryRequest, cancel: &CancellationToken) -> Outcome {
        self.finish(request, request.webhook.delivery, cancel)
            .await
            .outcome
    }

    /// [`Deliverer::deliver`] with other retry settings than the webhook's (replays).
    pub async fn deliver_with(
        &self,
        request: &DeliveryRequest,
        settings: DeliverySettings,
        cancel: &CancellationToken,
    ) -> Outcome {
        self.finish(request, settings, cancel).await.outcome
    }

    /// [`Deliverer::deliver_with`], keeping the deciding attempt's error in its typed form
    /// (the batcher reads Logz.io's line counts from it).
    pub async fn finish(
        &self,
        request: &DeliveryRequest,
        settings: DeliverySettings,
        cancel: &CancellationToken,
    ) -> Finished {
        let lane = Lane {
            deliverer: self,
            request,
        };
        retry::deliver(&lane, settings, request.prior, cancel).await
    }
}

/// One request's path through a [`Deliverer`], as the retry loop drives it.
struct Lane<'a> {
    deliverer: &'a Deliverer,
    request: &'a DeliveryRequest,
}

impl retry::Endpoint for Lane<'_> {
    /// `None` when the webhook has no concurrency limit here (it was not in the config).
    type Slot = Option<OwnedSemaphorePermit>;

    fn slot(&self) -> impl Future<Output = Self::Slot> + Send {
        self.deliverer.slot(&self.request.webhook.name)
    }

    fn admit(&self) -> Admission {
        self.deliverer
            .breaker(&self.request.webhook.name)
            .map_or(Admission::Allowed, Breaker::admit)
    }

    async fn attempt(&self, number: u32, slot: Self::Slot) -> Attempt {
        let attempt = self.deliverer.attempt(self.request, number).await;
        drop(slot);
        attempt
    }

    fn record(&self, attempt: &Attempt) {
        attempt.log(self.request);
        let name = &self.request.webhook.name;
        let Some(breaker) = self.deliverer.breaker(name) else {
            return;
        };
        if let Some(state) = breaker.record(attempt.verdict.is_retryable()) {
            tracing::warn!(webhook = %name, circuit = %state, "circuit state changed");
            if let Some(m) = self.deliverer.webhook_metrics(name) {
                m.circuit.set(state.as_gauge());
            }
        }
    }
}

/// A transport error for tests: a connection refused, to a URL that carries `?token=zzz`.
#[cfg(test)]
async fn refused_connection() -> reqwest::Error {
    crate::tls::install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/?token=zzz"))
        .send()
        .await
        .unwrap_err()
}
