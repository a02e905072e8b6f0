//! Delivery: sends one rendered request to one webhook and retries it with backoff. It knows
//! HTTP and nothing of AMQP: it never acks, nacks or publishes, it returns an [`Outcome`].
//!
//! The stages of one delivery are types: a [`DeliveryRequest`] (what to send), an [`Attempt`]
//! per try (what happened, classified by [`classify`]), and the final [`Outcome`].

pub mod breaker;
pub mod classify;
mod retry;

pub use classify::{FailureClass, Verdict};
pub use retry::Backoff;

use crate::config::{Config, HttpSettings, Webhook};
use crate::ops::metrics::WebhookMetrics;
use crate::pipeline::event::EventId;
use crate::pipeline::outcome::{Outcome, RetryState};
use crate::redact::Redactor;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// `User-Agent` sent with every request.
pub const USER_AGENT: &str = concat!("webhook-relay/", env!("CARGO_PKG_VERSION"));
/// Header carrying the event identity.
pub const EVENT_ID_HEADER: &str = "x-relay-event-id";
/// Header carrying the number of events in a batch request.
pub const BATCH_SIZE_HEADER: &str = "x-relay-batch-size";
/// Header carrying the idempotency key (event identity + webhook name).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How much of a response body is kept for errors and invocation data.
pub const RESPONSE_BODY_LIMIT: usize = 4096;

/// Building the HTTP client failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The extra CA file holds something that is not a certificate.
    #[error("http.ca_file: {0}")]
    CaFile(String),
    /// reqwest refused the client configuration.
    #[error("http client: {0}")]
    Client(String),
}

/// One request to send: a rendered body for one webhook. Delivery's input is this, not an
/// event, so that a batcher can later hand it a body of several lines.
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    /// The webhook to send to.
    pub webhook: Arc<Webhook>,
    /// The identity of the event the body was rendered from.
    pub event_id: EventId,
    /// The rendered body: one copy, shared by every attempt (cloning it only counts a
    /// reference). Always UTF-8, since it is built from a `String`.
    pub body: bytes::Bytes,
    /// Attempts made before this delivery came back from the retry queue, if it did.
    pub prior: Option<RetryState>,
    /// For an NDJSON batch: how many events its lines carry. `event_id` then identifies the
    /// batch, and the request carries `x-relay-batch-size` instead of `x-relay-event-id`.
    pub batch_size: Option<usize>,
}

impl DeliveryRequest {
    /// The body as text, for display.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Stable across retries and redeliveries, distinct per event and webhook.
    pub fn idempotency_key(&self) -> String {
        header_safe(&format!("{}:{}", self.webhook.name, self.event_id))
    }

    /// Every header as sent, with secret values shown as `***`.
    pub fn shown_headers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .webhook
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.shown_value().to_string()))
            .collect();
        out.extend(self.relay_headers());
        out
    }

    /// The headers the relay adds to every request.
    fn relay_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("User-Agent".to_string(), USER_AGENT.to_string()),
            (IDEMPOTENCY_HEADER.to_string(), self.idempotency_key()),
        ];
        match self.batch_size {
            Some(n) => out.push((BATCH_SIZE_HEADER.to_string(), n.to_string())),
            None => out.push((EVENT_ID_HEADER.to_string(), header_safe(&self.event_id.0))),
        }
        out
    }
}

/// Percent-encodes what a header value cannot carry (anything but visible ASCII and space).
pub fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The response of an attempt, as far as it is kept.
#[derive(Debug, Clone)]
pub struct ResponseInfo {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The first [`RESPONSE_BODY_LIMIT`] bytes of the body, lossily decoded.
    pub body: String,
    /// Whether the body was longer than what is kept.
    pub truncated: bool,
}

/// One try: what was received, how long it took and what it means.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Time from sending to the end of the kept response.
    pub latency: Duration,
    /// The response, when one came.
    pub response: Option<ResponseInfo>,
    /// What failed, when it failed.
    pub failure: Option<FailureClass>,
    /// The failure as text, redacted; empty on success.
    pub error: String,
    /// What to do next.
    pub verdict: Verdict,
}

/// Sends requests: the shared HTTP client (connection reuse), the redactor, and one
/// concurrency limit per webhook. Cheap to share behind an `Arc`.
pub struct Deliverer {
    client: reqwest::Client,
    redactor: Redactor,
    limits: HashMap<String, Arc<Semaphore>>,
    breakers: HashMap<String, Arc<breaker::Breaker>>,
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
                    breaker::Breaker::new(w.delivery.circuit_failures, w.delivery.circuit_cooldown);
                (w.name.clone(), Arc::new(breaker))
            })
            .collect();
        let headers = config
            .webhooks
            .iter()
            .filter_map(|w| Some((w.name.clone(), header_map(w)?)))
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
    pub fn breaker(&self, webhook: &str) -> Option<&breaker::Breaker> {
        self.breakers.get(webhook).map(Arc::as_ref)
    }

    /// The redactor every message from here passes through.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Waits for a slot under `webhook`'s concurrency limit; the slot is free again when the
    /// returned permit is dropped.
    async fn slot(&self, webhook: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.limits.get(webhook) {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Makes one attempt, waiting for a slot under the webhook's concurrency limit first.
    pub async fn send_once(&self, request: &DeliveryRequest, number: u32) -> Attempt {
        let _slot = self.slot(&request.webhook.name).await;
        self.send_in_slot(request, number).await
    }

    /// Makes one attempt for a caller that already holds a slot from [`Deliverer::slot`].
    async fn send_in_slot(&self, request: &DeliveryRequest, number: u32) -> Attempt {
        let webhook = &request.webhook;
        let method = reqwest::Method::from_bytes(webhook.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let mut builder = self
            .client
            .request(method, webhook.url.expose().clone())
            .timeout(webhook.delivery.timeout);
        match self.headers.get(&webhook.name) {
            Some(map) => builder = builder.headers(map.clone()),
            // Not parseable up front: let reqwest report the bad header as a builder error.
            None => {
                for header in &webhook.headers {
                    builder = builder.header(header.name.as_str(), header.value.expose().as_str());
                }
            }
        }
        for (name, value) in request.relay_headers() {
            builder = builder.header(name, value);
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }

        let metrics = self.metrics.get(&webhook.name);
        if let Some(m) = metrics {
            m.in_flight.increment(1.0);
        }
        let started = Instant::now();
        let result = send_and_read(builder).await;
        let latency = started.elapsed();
        if let Some(m) = metrics {
            m.in_flight.decrement(1.0);
            let status = result.as_ref().ok().map(|r| r.status);
            m.response(status, latency.as_secs_f64());
        }
        match result {
            Ok(response) => {
                let retry_after = response
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .map(|(_, v)| v.as_str());
                let verdict =
                    classify::classify_status(response.status, retry_after, SystemTime::now());
                let (failure, error) = match verdict {
                    Verdict::Success => (None, String::new()),
                    _ => (
                        Some(FailureClass::Status(response.status)),
                        // Scrubbed before it is cut: a secret cut in half is no longer found.
                        status_error(response.status, &self.redactor.scrub(&response.body)),
                    ),
                };
                Attempt {
                    number,
                    latency,
                    response: Some(response),
                    failure,
                    error,
                    verdict,
                }
            }
            Err(err) => {
                let class = classify::class_of(&err);
                let err = err.without_url();
                Attempt {
                    number,
                    latency,
                    response: None,
                    failure: Some(class),
                    error: self
                        .redactor
                        .scrub(&format!("{class}: {}", classify::error_chain(&err))),
                    verdict: classify::classify_failure(class),
                }
            }
        }
    }

    /// Delivers with retries until success, a permanent failure, the retry budget running out
    /// (`max_attempts`, `max_elapsed`) or `cancel` firing during a backoff sleep.
    pub async fn deliver(&self, request: &DeliveryRequest, cancel: &CancellationToken) -> Outcome {
        retry::deliver(self, request, request.webhook.delivery, cancel).await
    }

    /// [`Deliverer::deliver`] with other retry settings than the webhook's (replays).
    pub async fn deliver_with(
        &self,
        request: &DeliveryRequest,
        settings: crate::config::DeliverySettings,
        cancel: &CancellationToken,
    ) -> Outcome {
        retry::deliver(self, request, settings, cancel).await
    }
}

/// A webhook's headers as a ready header map, or `None` when one does not parse.
fn header_map(webhook: &Webhook) -> Option<reqwest::header::HeaderMap> {
    let mut map = reqwest::header::HeaderMap::with_capacity(webhook.headers.len());
    for header in &webhook.headers {
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let mut value = reqwest::header::HeaderValue::from_str(header.value.expose()).ok()?;
        value.set_sensitive(header.secret);
        map.append(name, value);
    }
    Some(map)
}

/// Sends and keeps the first [`RESPONSE_BODY_LIMIT`] bytes of the response.
async fn send_and_read(builder: reqwest::RequestBuilder) -> Result<ResponseInfo, reqwest::Error> {
    let mut response = builder.send().await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_BODY_LIMIT - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The status has arrived; a body cut short does not change what it means.
            Err(_) => break,
        }
    }
    Ok(ResponseInfo {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        truncated,
    })
}

/// `http 401: <first line of the body>`.
fn status_error(status: u16, body: &str) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let snippet: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    match (reason, snippet.is_empty()) {
        (_, true) => format!("http {status} {reason}").trim_end().to_string(),
        _ => format!("http {status} {reason}: {snippet}"),
    }
}

/// The shared HTTP client: rustls with the system roots plus `http.ca_file`, connection
/// reuse, and no redirects, since a token in the URL must not travel to another host.
pub fn build_client(http: &HttpSettings) -> Result<reqwest::Client, DeliveryError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(pem) = &http.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| DeliveryError::CaFile(e.without_url().to_string()))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| DeliveryError::Client(classify::error_chain(&e.without_url())))
}

/// Installs rustls' ring provider as the process default, once. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
