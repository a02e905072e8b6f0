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
//! - [`oauth`]: OAuth2 client-credentials tokens, cached and shared per webhook.
//! - [`signing`]: Standard Webhooks signatures.
//! - [`validation`]: response validators.
//! - [`rate`]: the per-webhook rate limiter.

mod attempt;
pub mod breaker;
pub mod classify;
mod client;
mod error;
pub mod oauth;
pub mod rate;
mod request;
mod retry;
pub mod signing;
pub mod validation;

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
use oauth::{Token, TokenCache};
use rate::RateLimiter;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
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
    /// Each bearer or basic webhook's `Authorization` value, built once.
    authorizations: HashMap<String, reqwest::header::HeaderValue>,
    /// Each OAuth2 webhook's token, shared by all its deliveries.
    tokens: HashMap<String, Arc<TokenCache>>,
    /// Each rate-limited webhook's limiter, shared by the intake and retry paths.
    limiters: HashMap<String, Arc<RateLimiter>>,
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
        let authorizations = config
            .webhooks
            .iter()
            .filter_map(|w| Some((w.name.clone(), request::static_authorization(w)?)))
            .collect();
        let tokens = config
            .webhooks
            .iter()
            .filter_map(|w| match &w.auth {
                Some(crate::config::Auth::OAuth2(oauth)) => {
                    Some((w.name.clone(), Arc::new(TokenCache::for_webhook(w, oauth))))
                }
                _ => None,
            })
            .collect();
        let limiters = config
            .webhooks
            .iter()
            .filter_map(|w| Some((w.name.clone(), Arc::new(RateLimiter::new(w.rate_limit?)))))
            .collect();
        Ok(Deliverer {
            client,
            redactor: config.redactor.clone(),
            limits,
            breakers,
            headers,
            authorizations,
            tokens,
            limiters,
            metrics: HashMap::new(),
        })
    }

    /// The OAuth2 token cache of a webhook, if it uses OAuth2.
    pub fn token_cache(&self, webhook: &str) -> Option<&TokenCache> {
        self.tokens.get(webhook).map(Arc::as_ref)
    }

    /// The rate limiter of a webhook, if it has a `rate_limit`.
    pub fn rate_limiter(&self, webhook: &str) -> Option<&RateLimiter> {
        self.limiters.get(webhook).map(Arc::as_ref)
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
    /// same name (a config reload must not close an open circuit), their OAuth2 tokens while
    /// the target's origin and every OAuth2 setting are unchanged (never a token fetched for
    /// one target or client sent to another), and
    /// their rate limiters when the limit is unchanged (a reload must not grant a new burst).
    pub fn reloaded(config: &Config, previous: &Deliverer) -> Result<Self, DeliveryError> {
        let mut next = Deliverer::new(config)?;
        for (name, breaker) in next.breakers.iter_mut() {
            if let Some(old) = previous.breakers.get(name) {
                *breaker = Arc::clone(old);
            }
        }
        for (name, cache) in next.tokens.iter_mut() {
            if let Some(old) = previous.tokens.get(name)
                && old.same_identity(cache)
            {
                *cache = Arc::clone(old);
            }
        }
        for (name, limiter) in next.limiters.iter_mut() {
            if let Some(old) = previous.limiters.get(name)
                && old.limit() == limiter.limit()
            {
                *limiter = Arc::clone(old);
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

    /// Waits for `webhook`'s next rate-limit turn if it comes by `deadline`; `false` at once
    /// when it would come later. Always `true` without a rate limit. Taken while holding the
    /// concurrency slot, so that the request leaves right at its turn.
    async fn turn(&self, webhook: &str, deadline: tokio::time::Instant) -> bool {
        match self.limiters.get(webhook) {
            Some(limiter) => limiter.turn(deadline).await,
            None => true,
        }
    }

    /// Makes one attempt, waiting for a slot under the webhook's concurrency limit, its token
    /// and its rate-limit turn first (as long as it takes: this is the `test` command's path).
    pub async fn send_once(&self, request: &DeliveryRequest, number: u32) -> Attempt {
        let ready = self.ready(request).await;
        if ready.may_send() {
            let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
            self.turn(&request.webhook.name, far).await;
        }
        self.attempt(request, number, ready).await
    }

    /// The slot under the webhook's concurrency limit, then its OAuth2 token (waiting for a
    /// fetch another delivery started, or fetching). The rate-limit turn comes after both, so
    /// that a request leaves right at its turn, never after a token fetch.
    async fn ready(&self, request: &DeliveryRequest) -> Ready {
        let name = &request.webhook.name;
        let permit = self.slot(name).await;
        let token = match self.oauth_of(request) {
            Some((cache, oauth)) => Some(self.token(cache, oauth, request, None).await),
            None => None,
        };
        Ready {
            _permit: permit,
            token,
        }
    }

    /// Makes attempt `number` for a caller that is `ready` and has its rate-limit turn: with
    /// the webhook's OAuth2 token when it has one (a 401 refreshes the token once and sends
    /// again at once, after another turn), judged by its response validators.
    async fn attempt(&self, request: &DeliveryRequest, number: u32, ready: Ready) -> Attempt {
        let name = &request.webhook.name;
        let (Some((cache, oauth)), Some(token)) = (self.oauth_of(request), ready.token.as_ref())
        else {
            return self.send(request, number, None).await;
        };
        let token = match token {
            Ok(token) => token,
            Err(error) => {
                // Counted as an attempt without a status, like a transport failure.
                if let Some(m) = self.metrics.get(name) {
                    m.response(None, 0.0);
                }
                return Attempt::failed(number, Duration::ZERO, error.clone());
            }
        };
        let first = self.send(request, number, Some(token)).await;
        if first.status() != Some(401) {
            return first;
        }
        tracing::debug!(webhook = %name, "401 with an OAuth2 token: refreshing it once");
        let fresh = match self
            .token(cache, oauth, request, Some(token.generation))
            .await
        {
            Ok(fresh) => fresh,
            Err(error) => return Attempt::failed(number, first.latency, error),
        };
        let deadline = tokio::time::Instant::now() + request.webhook.delivery.retry_window;
        if !self.turn(name, deadline).await {
            return first;
        }
        self.send(request, number, Some(&fresh)).await
    }

    /// The token cache of the request's webhook and its OAuth2 settings, when it uses OAuth2.
    fn oauth_of<'a>(
        &'a self,
        request: &'a DeliveryRequest,
    ) -> Option<(&'a TokenCache, &'a crate::config::OAuth2)> {
        let Some(crate::config::Auth::OAuth2(oauth)) = &request.webhook.auth else {
            return None;
        };
        let cache = self.tokens.get(&request.webhook.name)?;
        Some((cache.as_ref(), oauth))
    }

    /// The webhook's OAuth2 token, newer than generation `refused` when given.
    async fn token(
        &self,
        cache: &TokenCache,
        oauth: &crate::config::OAuth2,
        request: &DeliveryRequest,
        refused: Option<u64>,
    ) -> Result<Arc<Token>, AttemptError> {
        let timeout = request.webhook.delivery.timeout;
        cache
            .token(&self.client, oauth, timeout, refused, &self.redactor)
            .await
    }

    /// Sends the request once (with `token` when the webhook uses OAuth2), counting it in the
    /// webhook's metrics, and judges the answer.
    async fn send(&self, request: &DeliveryRequest, number: u32, token: Option<&Token>) -> Attempt {
        let name = &request.webhook.name;
        let authorization = match token {
            Some(token) => Some(&token.header),
            None => self.authorizations.get(name),
        };
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let builder = request.build(&self.client, self.headers.get(name), authorization, now);
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
        let scrubbed;
        let redactor = match token {
            // The endpoint may echo the token back in an error.
            Some(token) => {
                scrubbed = self
                    .redactor
                    .merged(&Redactor::new([token.value.expose().as_str()]));
                &scrubbed
            }
            None => &self.redactor,
        };
        Attempt::new(number, latency, result, redactor)
            .validated(&request.webhook.response_validators, redactor)
            .carrying(token.map(|t| t.value.clone()))
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

/// What an attempt holds before it goes: its place under the webhook's concurrency limit
/// (`None` when the webhook has no limit here: it was not in the config) and, for an OAuth2
/// webhook, its token or why there is none.
struct Ready {
    _permit: Option<OwnedSemaphorePermit>,
    token: Option<Result<Arc<Token>, AttemptError>>,
}

impl Ready {
    /// Whether a request will go out (no token failure stops it first).
    fn may_send(&self) -> bool {
        !matches!(self.token, Some(Err(_)))
    }
}

impl retry::Endpoint for Lane<'_> {
    type Slot = Ready;

    /// The slot and token ([`Deliverer::ready`]), then the rate-limit turn if it comes
    /// within `wait`; `None` when it would not. An attempt that will not go out (no token)
    /// takes no turn.
    async fn slot(&self, wait: Duration) -> Option<Self::Slot> {
        let deadline = tokio::time::Instant::now() + wait;
        let ready = self.deliverer.ready(self.request).await;
        if !ready.may_send() {
            return Some(ready);
        }
        let name = &self.request.webhook.name;
        self.deliverer.turn(name, deadline).await.then_some(ready)
    }

    fn admit(&self) -> Admission {
        self.deliverer
            .breaker(&self.request.webhook.name)
            .map_or(Admission::Allowed, Breaker::admit)
    }

    async fn attempt(&self, number: u32, slot: Self::Slot) -> Attempt {
        // The slot is released when the attempt, which owns it, returns.
        self.deliverer.attempt(self.request, number, slot).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, load};

    fn config(rate: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        let toml = format!(
            "[[webhook]]\nname = \"w\"\nurl = \"https://h/\"\nbody_template = '{{}}'\n\
             rate_limit = \"{rate}\"\n[webhook.auth]\ntype = \"oauth2\"\n\
             token_url = \"https://idp/token\"\nclient_id = \"relay\"\n\
             client_secret = \"${{CS}}\"\n"
        );
        std::fs::write(dir.path().join("webhooks/w.toml"), toml).unwrap();
        load(dir.path(), &Env::from_pairs([("CS", "client-secret-1")])).unwrap()
    }

    #[test]
    fn a_reload_keeps_the_token_and_an_unchanged_limiter() {
        let first = Deliverer::new(&config("5/s")).unwrap();
        let same = Deliverer::reloaded(&config("5/s"), &first).unwrap();
        assert!(std::ptr::eq(
            first.token_cache("w").unwrap(),
            same.token_cache("w").unwrap()
        ));
        assert!(std::ptr::eq(
            first.rate_limiter("w").unwrap(),
            same.rate_limiter("w").unwrap()
        ));
        let changed = Deliverer::reloaded(&config("9/s"), &same).unwrap();
        assert!(!std::ptr::eq(
            same.rate_limiter("w").unwrap(),
            changed.rate_limiter("w").unwrap()
        ));
        assert_eq!(changed.rate_limiter("w").unwrap().limit().count, 9);
        assert!(std::ptr::eq(
            same.token_cache("w").unwrap(),
            changed.token_cache("w").unwrap()
        ));
    }
}
