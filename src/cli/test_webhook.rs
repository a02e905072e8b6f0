//! `webhook-relay test NAME`: the Test button. Sends one mock event through the real delivery
//! path (same client, timeouts and retry classification) and prints the invocation data:
//! request, response, latency, and a troubleshooting hint when it fails.

use super::output::{Style, print_json, truncate};
use super::target::{Target, parse_trigger};
use crate::config::{Config, Webhook};
use crate::model::event::Trigger;
use crate::pipeline::delivery::validation::Validation;
use crate::pipeline::delivery::{
    Attempt, Backoff, Deliverer, DeliveryRequest, FailureClass, ResponseInfo, Verdict,
};
use crate::redact::Redactor;
use std::path::PathBuf;

/// Options of `test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The webhook's name (active or not).
    pub name: String,
    /// An event file (JSON). Without it, the built-in sample event is sent.
    #[arg(long, conflicts_with = "trigger")]
    pub event: Option<PathBuf>,
    /// Which built-in sample to send; defaults to the webhook's first trigger.
    #[arg(long, value_parser = parse_trigger)]
    pub trigger: Option<Trigger>,
    /// Retries after a retryable failure, with the webhook's backoff (default: none).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
}

/// What to try when an attempt failed this way.
pub fn hint(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Dns => {
            "the host name does not resolve: check the URL's host (Logz.io listener hosts are \
             per region, e.g. listener.logz.io or listener-eu.logz.io)"
        }
        FailureClass::Connect => {
            "nothing accepted the connection: check the host and port, that the endpoint is up, \
             and that no firewall is in the way"
        }
        FailureClass::Tls => {
            "the TLS handshake failed: the endpoint's certificate is not trusted for this host \
             name; for a private CA, set http.ca_file in relay.toml"
        }
        FailureClass::Timeout => {
            "no answer within delivery.timeout: the endpoint is slow or unreachable; raise the \
             webhook's delivery.timeout if it is just slow"
        }
        FailureClass::Status(401) | FailureClass::Status(403) => {
            "the token or credentials were refused: check the variable the URL or headers use \
             (e.g. LOGZIO_TOKEN must be a Logz.io log shipping token of the right account)"
        }
        FailureClass::Status(404) => {
            "the URL's path does not exist: check the webhook's url (Logz.io's listener takes \
             the path `/`)"
        }
        FailureClass::Status(413) => {
            "the body is too large: Logz.io takes at most 10 MB per request and 500,000 bytes \
             per line; shorten the template"
        }
        FailureClass::Status(429) => {
            "rate limited: the endpoint asks to slow down; the worker retries and honours \
             Retry-After, but lower the webhook's delivery.concurrency if it persists"
        }
        FailureClass::Status(400) | FailureClass::Status(422) => {
            "the endpoint refused the body: look at it with `webhook-relay render NAME` and at \
             the response body above"
        }
        FailureClass::Status(status) if (300..400).contains(&status) => {
            "the endpoint redirects, and redirects are never followed (a token in the URL must \
             not travel to another host): use the final URL"
        }
        FailureClass::Status(status) if status >= 500 => {
            "the endpoint failed on its side: this is transient and the worker would retry it; \
             check the endpoint's status"
        }
        FailureClass::Status(_) => "the endpoint refused the request: see the response above",
        FailureClass::Request => {
            "the connection broke during the request: check proxies and the endpoint's logs"
        }
        FailureClass::Builder => {
            "the request could not be built: check the webhook's headers and URL"
        }
        FailureClass::TokenRefused => {
            "the OAuth2 token endpoint refused the client: check auth.client_id, \
             auth.client_secret, auth.scope and auth.client_auth (\"basic\" or \"body\") \
             against the provider's settings; the error above says which"
        }
        FailureClass::TokenUnavailable => {
            "the OAuth2 token endpoint is down or slow: this is transient and the worker would \
             retry it; check auth.token_url and the provider's status"
        }
        FailureClass::ResponseMismatch { .. } => {
            "the endpoint answered 2xx but its body failed the response validators: compare \
             the response body above with the webhook's [[webhook.response_validators]]"
        }
    }
}

/// The invocation data of a test, secrets masked: what `test --json` prints and the console
/// shows.
#[derive(serde::Serialize)]
pub struct Invocation<'a> {
    /// Whether the last attempt succeeded.
    pub success: bool,
    /// The webhook's name.
    pub webhook: &'a str,
    /// The event's id.
    pub event_id: &'a str,
    /// Where the event came from.
    pub event_source: &'a str,
    /// `[webhook.auth]`'s type and where its token comes from, never the secret.
    pub auth: Option<String>,
    /// The webhook's rate limit, as written.
    pub rate_limit: Option<String>,
    /// The request sent.
    pub request: RequestData<'a>,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptData>,
    /// What to try, when it failed.
    pub hint: Option<&'static str>,
}

/// The request of a test: URL redacted, secret header values masked.
#[derive(serde::Serialize)]
pub struct RequestData<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The redacted URL.
    pub url: &'a str,
    /// Headers as they may be shown.
    pub headers: Vec<(String, String)>,
    /// The body sent.
    pub body: std::borrow::Cow<'a, str>,
}

/// One attempt of a test, response headers and body scrubbed of the config's secrets.
#[derive(serde::Serialize)]
pub struct AttemptData {
    /// 1-based.
    pub number: u32,
    /// How long it took.
    pub latency_ms: u128,
    /// The response status, if there was a response.
    pub status: Option<u16>,
    /// The response headers.
    pub response_headers: Vec<(String, String)>,
    /// The response body (at most the delivery's limit).
    pub response_body: Option<String>,
    /// Whether the body was cut at the limit.
    pub response_body_truncated: bool,
    /// The transport error, when there was no response.
    pub error: Option<String>,
    /// How the attempt failed, if it did.
    pub failure: Option<String>,
    /// The response validators' verdicts, when the answer was 2xx.
    pub validations: Vec<Validation>,
}

/// Runs `test`; returns the exit code.
pub async fn run(config: &Config, args: &TestArgs, json: bool) -> u8 {
    let style = Style::detect();
    let target = match Target::resolve(config, &args.name, args.event.as_deref(), args.trigger) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let run = match execute(config, target.webhook, &target.input.event, args.retries).await {
        Ok(run) => run,
        Err(TestError::Render(e)) => return render_failed(&e, json, &style),
        Err(TestError::Client(e)) => return super::usage_error(&e),
    };
    let test = run.shown(config, &target.input.source);
    if json {
        print_json(&test.json());
    } else {
        test.print_text(&style);
    }
    super::exit_code(run.success)
}

/// Why a test sent nothing.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The body does not render for the event (secrets scrubbed).
    #[error("the body does not render: {0}")]
    Render(String),
    /// The HTTP client cannot be built from the config.
    #[error("{0}")]
    Client(String),
}

/// One test as sent: the request, every attempt (at least one), the verdict and the hint.
pub struct TestRun {
    /// The request, as the worker would make it on a first attempt.
    pub request: DeliveryRequest,
    /// Every attempt, in order; never empty.
    pub attempts: Vec<Attempt>,
    /// Whether the last attempt succeeded.
    pub success: bool,
    /// What to try, when it failed.
    pub hint: Option<&'static str>,
}

/// Renders the body of `event` for `webhook` and sends it through the real delivery path
/// (the worker's client, timeouts and classification), retrying a retryable failure up to
/// `retries` times. What `test` and the console's Test button both run.
pub async fn execute(
    config: &Config,
    webhook: &std::sync::Arc<Webhook>,
    event: &crate::model::event::Event,
    retries: u32,
) -> Result<TestRun, TestError> {
    let body = webhook
        .template
        .render(&event.raw)
        .map_err(|e| TestError::Render(config.redactor.scrub(&e.to_string())))?;
    let deliverer = Deliverer::new(config).map_err(|e| TestError::Client(e.to_string()))?;
    let request = DeliveryRequest {
        webhook: std::sync::Arc::clone(webhook),
        event_id: event.id.clone(),
        body: body.into(),
        prior: None,
        batch_size: None,
    };
    let attempts = send(&deliverer, &request, retries).await;
    let success = attempts
        .last()
        .is_some_and(|last| last.verdict == Verdict::Success);
    let hint = if success {
        None
    } else {
        attempts.last().and_then(Attempt::failure).map(hint)
    };
    Ok(TestRun {
        request,
        attempts,
        success,
        hint,
    })
}

impl TestRun {
    /// The config's redactor, plus every OAuth2 token an attempt carried (an endpoint may
    /// echo it in its answer).
    pub fn redactor(&self, config: &Config) -> Redactor {
        let tokens: Vec<&str> = self
            .attempts
            .iter()
            .filter_map(|a| a.token.as_ref())
            .map(|t| t.expose().as_str())
            .collect();
        if tokens.is_empty() {
            config.redactor.clone()
        } else {
            config.redactor.merged(&Redactor::new(tokens))
        }
    }

    /// The run as it may be shown (secrets masked); `source` says where the event came from.
    pub fn shown<'a>(&'a self, config: &'a Config, source: &'a str) -> Test<'a> {
        Test {
            redactor: self.redactor(config),
            source,
            request: &self.request,
            attempts: &self.attempts,
            success: self.success,
            hint: self.hint,
        }
    }
}

/// Reports a body that does not render (`error` already scrubbed); returns the exit code.
fn render_failed(error: &str, json: bool, style: &Style) -> u8 {
    if json {
        print_json(&serde_json::json!({"success": false, "render_error": error}));
    } else {
        println!(
            "{}: the body does not render: {error}",
            style.bad("Test failed")
        );
    }
    super::EXIT_FAILED
}

/// Sends `request` once, then again after each retryable failure, up to `retries` times, with
/// the webhook's backoff (a `Retry-After` capped at its `max_backoff`). Returns every attempt.
async fn send(deliverer: &Deliverer, request: &DeliveryRequest, retries: u32) -> Vec<Attempt> {
    let webhook: &Webhook = &request.webhook;
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut delays = Backoff::new(&crate::config::DeliverySettings {
        max_attempts: retries.saturating_add(1),
        ..webhook.delivery
    });
    loop {
        let attempt = deliverer
            .send_once(request, attempts.len() as u32 + 1)
            .await;
        let verdict = attempt.verdict;
        attempts.push(attempt);
        let Verdict::Retry { retry_after } = verdict else {
            break;
        };
        let Some(delay) = delays.next() else { break };
        let delay = retry_after.map_or(delay, |d| d.min(webhook.delivery.max_backoff));
        tokio::time::sleep(delay).await;
    }
    attempts
}

/// What a test did, to print or show.
pub struct Test<'a> {
    /// Masks the config's secrets and the tokens the attempts carried.
    redactor: Redactor,
    /// Where the event came from.
    source: &'a str,
    request: &'a DeliveryRequest,
    /// At least one.
    attempts: &'a [Attempt],
    success: bool,
    hint: Option<&'static str>,
}

impl Test<'_> {
    /// The invocation data.
    pub fn json(&self) -> Invocation<'_> {
        let webhook = &self.request.webhook;
        Invocation {
            success: self.success,
            webhook: &webhook.name,
            event_id: &self.request.event_id.0,
            event_source: self.source,
            auth: webhook.auth.as_ref().map(|a| a.describe()),
            rate_limit: webhook.rate_limit.map(|r| r.show()),
            request: RequestData {
                method: webhook.method.as_str(),
                url: webhook.url.redacted(),
                headers: self.request.shown_headers(),
                body: self.request.body_text(),
            },
            attempts: self.attempts.iter().map(|a| self.attempt_data(a)).collect(),
            hint: self.hint,
        }
    }

    fn attempt_data(&self, attempt: &Attempt) -> AttemptData {
        let response = attempt.response.as_ref();
        AttemptData {
            number: attempt.number,
            latency_ms: attempt.latency.as_millis(),
            status: response.map(|r| r.status),
            response_headers: response
                .map(|r| scrub_headers(&self.redactor, &r.headers))
                .unwrap_or_default(),
            response_body: response.map(|r| self.redactor.scrub(&r.body)),
            response_body_truncated: response.is_some_and(|r| r.truncated),
            error: attempt
                .error
                .as_ref()
                .map(|e| self.redactor.scrub(&e.to_string())),
            failure: attempt.failure().map(|f| f.to_string()),
            validations: attempt.validations.clone(),
        }
    }

    fn print_text(&self, style: &Style) {
        let request = self.request;
        let webhook = &request.webhook;
        if self.success {
            println!("{}", style.good("Test successful"));
        } else {
            println!("{}", style.bad("Test failed"));
        }
        println!();
        println!("{}", style.bold("Invocation data"));
        println!("  webhook    {} ({})", webhook.name, self.source);
        println!("  event id   {}", request.event_id);
        if let Some(auth) = &webhook.auth {
            println!("  auth       {}", auth.describe());
        }
        if let Some(rate) = webhook.rate_limit {
            println!("  rate limit {rate} per worker");
        }
        println!("{}", style.bold("Request"));
        println!("  {} {}", webhook.method, webhook.url.redacted());
        for (name, value) in request.shown_headers() {
            println!("  {name}: {value}");
        }
        println!("  body: {}", request.body_text());
        for attempt in self.attempts {
            let title = if self.attempts.len() > 1 {
                format!("Response (attempt {})", attempt.number)
            } else {
                "Response".to_string()
            };
            println!("{}", style.bold(&title));
            match &attempt.response {
                Some(response) => self.print_response(style, attempt, response),
                None => {
                    println!("  no response after {} ms", attempt.latency.as_millis());
                    println!("  error      {}", truncate(&attempt.error_text(), 300));
                }
            }
            for v in &attempt.validations {
                let verdict = if v.passed {
                    style.good("pass")
                } else {
                    style.bad("fail")
                };
                let found = v.found.as_deref().unwrap_or("(missing)");
                println!(
                    "  validator  {verdict} {} = {found} (expected one of {})",
                    v.path,
                    v.expected.join(", ")
                );
            }
            if let Some(error) = attempt.error.as_ref().filter(|e| e.is_response_rejected()) {
                println!("  error      {}", truncate(&error.to_string(), 300));
            }
        }
        if let Some(hint) = self.hint {
            println!();
            println!("{} {hint}", style.warn("hint:"));
        }
    }

    fn print_response(&self, style: &Style, attempt: &Attempt, response: &ResponseInfo) {
        let reason = reqwest::StatusCode::from_u16(response.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let status = format!("{} {reason}", response.status);
        let status = if (200..300).contains(&response.status) {
            style.good(status.trim_end())
        } else {
            style.bad(status.trim_end())
        };
        println!("  status     {status}");
        println!("  latency    {} ms", attempt.latency.as_millis());
        for (name, value) in scrub_headers(&self.redactor, &response.headers) {
            println!("  {name}: {value}");
        }
        let body = self.redactor.scrub(&response.body);
        if body.is_empty() {
            println!("  body: {}", style.dim("(empty)"));
        } else {
            println!("  body: {body}");
        }
        if response.truncated {
            println!(
                "  {}",
                style.dim(&format!(
                    "(body truncated to its first {} bytes)",
                    crate::pipeline::delivery::RESPONSE_BODY_LIMIT
                ))
            );
        }
    }
}

/// Response headers as they may be shown: an endpoint may echo the URL or a credential back.
fn scrub_headers(redactor: &Redactor, headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            // Scrubbed as a header line, so that a short secret standing as the whole value
            // is masked too.
            let line = redactor.scrub(&format!("{name}: {value}"));
            let value = line
                .strip_prefix(&format!("{name}: "))
                .map_or_else(|| redactor.scrub(value), str::to_string);
            (redactor.scrub(name), value)
        })
        .collect()
}
