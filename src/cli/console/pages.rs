//! The webhooks table, a webhook's detail with Test and Render, the payload schema, and the
//! embedded assets. Each page calls the library function its CLI command calls.

use super::Console;
use super::auth::{Csrf, Who, page};
use crate::broker::{Broker, dlq, topology};
use crate::cli::render::Preview;
use crate::cli::target::{self, EventInput, Target};
use crate::cli::test_webhook::{self, Invocation, TestError};
use crate::cli::webhooks::{short_filters, short_triggers};
use crate::config::{Config, Webhook};
use crate::model::event::{self, Trigger};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What every page's frame needs.
pub struct Chrome {
    /// The CSRF token for the page's forms.
    pub csrf: String,
    /// Actions hidden.
    pub read_only: bool,
    /// Show the logout button.
    pub login: bool,
    /// Which tab is current: `webhooks`, `schema` or `dead-letters`.
    pub tab: &'static str,
}

impl Chrome {
    /// The frame for a page of `tab`.
    pub fn new(console: &Console, csrf: Csrf, tab: &'static str) -> Self {
        Chrome {
            csrf: csrf.0,
            read_only: console.read_only,
            login: console.auth.required(),
            tab,
        }
    }
}

/// One row of the webhooks table.
pub struct WebhookRow {
    name: String,
    active: bool,
    method: String,
    url: String,
    triggers: String,
    filters: String,
    auth: String,
    delivery: String,
    retry_depth: String,
    dead_letters: String,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    rows: Vec<WebhookRow>,
    active: usize,
    broker_note: Option<String>,
    dead_letter_queue: String,
}

/// How a webhook authenticates, for the table: its `[webhook.auth]` (type, never the secret),
/// else where a credential sits: an `Authorization` or secret header, or a token in the URL.
pub fn auth_type(webhook: &Webhook) -> String {
    if let Some(auth) = &webhook.auth {
        return auth.describe();
    }
    if let Some(header) = webhook
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
    {
        let scheme = header
            .value
            .expose()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        return match scheme.as_str() {
            "bearer" => "bearer token (header)".into(),
            "basic" => "basic (header)".into(),
            _ => "authorization header".into(),
        };
    }
    if let Some(header) = webhook.headers.iter().find(|h| h.secret) {
        return format!("header {}", header.name);
    }
    if webhook.url.redacted().contains(crate::redact::MASK) {
        return "token in URL".into();
    }
    "none".into()
}

/// `single`, or `batch` with its limits.
fn delivery_mode(webhook: &Webhook) -> String {
    match &webhook.batch {
        None => "single".into(),
        Some(batch) => format!("batch (≤ {} events)", batch.max_events),
    }
}

/// Per-webhook figures from the broker: retry-queue depth and dead letters.
struct BrokerFigures {
    retry_depth: BTreeMap<String, u32>,
    dead_letters: BTreeMap<String, usize>,
    /// Whether the dead letters were counted (a queue not declared yet counts as empty).
    counted: bool,
    /// What kept the figures from being read, if anything.
    note: Option<String>,
}

/// Reads the figures: every webhook's retry-queue depth, and the dead letters counted by
/// webhook (read without acking, returned in order when the connection closes).
async fn broker_figures(config: &Config) -> BrokerFigures {
    let mut figures = BrokerFigures {
        retry_depth: BTreeMap::new(),
        dead_letters: BTreeMap::new(),
        counted: false,
        note: None,
    };
    let broker = match Broker::connect(&config.amqp, &config.redactor).await {
        Ok(broker) => broker,
        Err(e) => {
            figures.note = Some(format!("broker unavailable: {e}"));
            return figures;
        }
    };
    for webhook in &config.webhooks {
        let queue = topology::retry_queue(&config.amqp.queue, &webhook.name);
        if let Ok(n) = broker.ready_count(&queue).await {
            figures.retry_depth.insert(webhook.name.clone(), n);
        }
    }
    match dlq::read_all(
        &broker,
        &config.amqp.dead_letter_queue,
        crate::cli::dlq::DEFAULT_SCAN_LIMIT,
    )
    .await
    {
        Ok(entries) => {
            figures.counted = true;
            for entry in &entries {
                if let Some(webhook) = &entry.info.webhook {
                    *figures.dead_letters.entry(webhook.clone()).or_default() += 1;
                }
            }
        }
        Err(e @ dlq::ReadError::Missing(_)) => {
            figures.counted = true;
            figures.note = Some(e.to_string());
        }
        Err(e) => figures.note = Some(format!("dead letters unavailable: {e}")),
    }
    broker.close().await;
    figures
}

/// `GET /`: the webhooks table.
pub async fn webhooks(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
) -> Response {
    let config = &console.config;
    let figures = {
        let _reading = console.dead_letters.lock().await;
        broker_figures(config).await
    };
    let rows = config
        .webhooks
        .iter()
        .map(|w| WebhookRow {
            name: w.name.clone(),
            active: w.is_active(),
            method: w.method.to_string(),
            url: w.url.redacted().to_string(),
            triggers: short_triggers(&w.triggers),
            filters: short_filters(w),
            auth: auth_type(w),
            delivery: delivery_mode(w),
            retry_depth: figures
                .retry_depth
                .get(&w.name)
                .map_or("-".into(), u32::to_string),
            dead_letters: if !figures.counted {
                "-".into()
            } else {
                figures
                    .dead_letters
                    .get(&w.name)
                    .copied()
                    .unwrap_or(0)
                    .to_string()
            },
        })
        .collect();
    page(WebhooksPage {
        chrome: Chrome::new(&console, csrf, "webhooks"),
        rows,
        active: config.webhooks.iter().filter(|w| w.is_active()).count(),
        broker_note: figures.note.map(|n| config.redactor.scrub(&n)),
        dead_letter_queue: config.amqp.dead_letter_queue.clone(),
    })
}

/// A webhook's config as it may be shown: every secret masked.
struct Masked {
    name: String,
    active: bool,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    triggers: Vec<&'static str>,
    filters: Vec<(&'static str, String)>,
    template: String,
    strict: bool,
    json_body: bool,
    delivery: Vec<(&'static str, String)>,
    delivery_mode: String,
    auth: String,
    file: String,
}

fn masked(config: &Config, w: &Webhook) -> Masked {
    let d = &w.delivery;
    let duration = |d: std::time::Duration| humantime::format_duration(d).to_string();
    Masked {
        name: w.name.clone(),
        active: w.is_active(),
        method: w.method.to_string(),
        url: w.url.redacted().to_string(),
        headers: w
            .headers
            .iter()
            .map(|h| (h.name.clone(), h.shown_value().to_string()))
            .collect(),
        triggers: w.triggers.iter().map(|t| t.as_str()).collect(),
        filters: w
            .filters
            .listed()
            .into_iter()
            .map(|(name, values)| (name, values.join(", ")))
            .collect(),
        // The template is config text; a secret written into it is still a secret.
        template: config.redactor.scrub(&w.template_source),
        strict: w.strict,
        json_body: w.json_body,
        delivery: vec![
            ("timeout", duration(d.timeout)),
            ("max_attempts", d.max_attempts.to_string()),
            ("initial_backoff", duration(d.initial_backoff)),
            ("max_backoff", duration(d.max_backoff)),
            ("max_elapsed", duration(d.max_elapsed)),
            ("retry_window", duration(d.retry_window)),
            ("concurrency", d.concurrency.to_string()),
            ("circuit_failures", d.circuit_failures.to_string()),
            ("circuit_cooldown", duration(d.circuit_cooldown)),
        ],
        delivery_mode: delivery_mode(w),
        auth: auth_type(w),
        file: w.source.display().to_string(),
    }
}

#[derive(Template)]
#[template(path = "console/webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    webhook: Masked,
    /// Every trigger, and whether it is the one selected at first.
    triggers: Vec<(&'static str, bool)>,
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

/// `GET /webhooks/{name}`: the masked config, with the Test and Render forms.
pub async fn webhook(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    Path(name): Path<String>,
) -> Response {
    let config = &console.config;
    let webhook = match target::find_webhook(config, &name) {
        Ok(w) => w,
        Err(e) => return not_found(e),
    };
    let first = webhook
        .triggers
        .first()
        .copied()
        .unwrap_or(Trigger::RequestApproved);
    page(WebhookPage {
        chrome: Chrome::new(&console, csrf, "webhooks"),
        webhook: masked(config, webhook),
        triggers: Trigger::ALL
            .iter()
            .map(|t| (t.as_str(), *t == first))
            .collect(),
    })
}

/// The Test and Render forms' fields.
#[derive(serde::Deserialize)]
pub struct EventForm {
    /// A built-in sample's trigger.
    #[serde(default)]
    trigger: Option<String>,
    /// A pasted event (JSON); wins over `trigger` when not blank.
    #[serde(default)]
    event: Option<String>,
}

impl EventForm {
    /// The pasted event, or the sample of the chosen trigger (the webhook's first by default).
    fn input(&self, webhook: &Webhook) -> Result<EventInput, String> {
        if let Some(text) = self.event.as_deref().filter(|t| !t.trim().is_empty()) {
            return target::event_from_bytes(text.as_bytes(), "the pasted event".into());
        }
        let trigger = match self.trigger.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => Some(t.parse::<Trigger>().map_err(|e| e.to_string())?),
            None => None,
        };
        target::event_input(None, trigger, webhook)
    }
}

#[derive(Template)]
#[template(path = "console/invocation.html")]
struct InvocationPage<'a> {
    chrome: Chrome,
    invocation: Invocation<'a>,
}

#[derive(Template)]
#[template(path = "console/message.html")]
struct MessagePage {
    chrome: Chrome,
    title: String,
    lines: Vec<String>,
    back: String,
}

fn message(
    console: &Console,
    csrf: Csrf,
    status: StatusCode,
    title: &str,
    lines: Vec<String>,
    back: String,
) -> Response {
    let mut response = page(MessagePage {
        chrome: Chrome::new(console, csrf, "webhooks"),
        title: title.to_string(),
        lines,
        back,
    });
    *response.status_mut() = status;
    response
}

/// `POST /webhooks/{name}/test`: sends the event through the real delivery path, as `test`
/// does, and shows the invocation data.
pub async fn test(
    State(console): State<Arc<Console>>,
    axum::Extension(who): axum::Extension<Who>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<EventForm>,
) -> Response {
    let config = &console.config;
    if console.read_only {
        console.count("test", "refused", 0);
        return (StatusCode::FORBIDDEN, "the console is read-only\n").into_response();
    }
    let webhook = match target::find_webhook(config, &name) {
        Ok(w) => w,
        Err(e) => return not_found(e),
    };
    let back = format!("/webhooks/{name}");
    let input = match form.input(webhook) {
        Ok(input) => input,
        Err(e) => {
            return message(
                &console,
                csrf,
                StatusCode::BAD_REQUEST,
                "No event to send",
                vec![e],
                back,
            );
        }
    };
    let run = match test_webhook::execute(config, webhook, &input.event, 0).await {
        Ok(run) => run,
        Err(e) => {
            console.count("test", "failed", 0);
            tracing::info!(target: "console", who = who.0, webhook = name, event_id = %input.event.id, "test: {e}");
            let status = match e {
                TestError::Render(_) => StatusCode::UNPROCESSABLE_ENTITY,
                TestError::Client(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return message(
                &console,
                csrf,
                status,
                "Test failed",
                vec![e.to_string()],
                back,
            );
        }
    };
    let shown = run.shown(config, &input.source);
    let mut invocation = shown.json();
    // Transport errors are redacted where they are made; a page scrubs them once more.
    for attempt in &mut invocation.attempts {
        attempt.error = attempt.error.take().map(|e| config.redactor.scrub(&e));
    }
    let status = run
        .attempts
        .last()
        .and_then(|a| a.response.as_ref())
        .map(|r| r.status);
    tracing::info!(
        target: "console",
        who = who.0,
        webhook = name,
        event_id = %input.event.id,
        success = run.success,
        status,
        "test sent"
    );
    console.count("test", if run.success { "ok" } else { "failed" }, 0);
    page(InvocationPage {
        chrome: Chrome::new(&console, csrf, "webhooks"),
        invocation,
    })
}

#[derive(Template)]
#[template(path = "console/render.html")]
struct RenderPage {
    chrome: Chrome,
    webhook: String,
    active: bool,
    event_id: String,
    source: String,
    mismatch: Option<String>,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Result<String, String>,
}

/// `POST /webhooks/{name}/render`: the request the webhook would send, without sending it,
/// as `render` shows it. A POST only because a pasted event may be large; it changes nothing.
pub async fn render(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
    Path(name): Path<String>,
    axum::Form(form): axum::Form<EventForm>,
) -> Response {
    let config = &console.config;
    let webhook = match target::find_webhook(config, &name) {
        Ok(w) => w,
        Err(e) => return not_found(e),
    };
    let input = match form.input(webhook) {
        Ok(input) => input,
        Err(e) => {
            return message(
                &console,
                csrf,
                StatusCode::BAD_REQUEST,
                "No event to render",
                vec![e],
                format!("/webhooks/{name}"),
            );
        }
    };
    let target = Target { webhook, input };
    let preview = Preview::of(config, &target);
    page(RenderPage {
        chrome: Chrome::new(&console, csrf, "webhooks"),
        webhook: webhook.name.clone(),
        active: webhook.is_active(),
        event_id: target.input.event.id.0.clone(),
        source: target.input.source.clone(),
        mismatch: preview.mismatch,
        method: webhook.method.to_string(),
        url: webhook.url.redacted().to_string(),
        headers: preview.headers,
        body: preview.body,
    })
}

/// One field of the schema tree.
struct Field {
    /// Nesting depth, 0 for a top-level field.
    depth: usize,
    /// The last segment, e.g. `email`.
    name: String,
    /// The whole Handlebars path, e.g. `data.requester.email`.
    path: String,
    ty: String,
    description: String,
    sample: String,
}

#[derive(Template)]
#[template(path = "console/schema.html")]
struct SchemaPage {
    chrome: Chrome,
    fields: Vec<Field>,
}

/// `GET /schema`: the event's fields as a tree, with types, descriptions, a sample value and
/// the Handlebars path to copy (what `schema --fields` lists).
pub async fn schema(
    State(console): State<Arc<Console>>,
    axum::Extension(csrf): axum::Extension<Csrf>,
) -> Response {
    let sample = event::sample(Trigger::RequestApproved);
    let fields = event::field_paths()
        .into_iter()
        .map(|f| {
            let value = crate::cli::schema::sample_value(&sample, &f.path);
            Field {
                depth: f.path.matches('.').count(),
                name: f.path.rsplit('.').next().unwrap_or(&f.path).to_string(),
                sample: match &value {
                    serde_json::Value::Object(_) => "{…}".into(),
                    serde_json::Value::Array(items) => {
                        format!("[{}]", crate::cli::output::plural(items.len(), "item"))
                    }
                    serde_json::Value::Null => String::new(),
                    other => crate::cli::output::truncate(&other.to_string(), 60),
                },
                path: f.path,
                ty: f.ty,
                description: f.description,
            }
        })
        .collect();
    page(SchemaPage {
        chrome: Chrome::new(&console, csrf, "schema"),
        fields,
    })
}

/// `GET /metrics`: the console's own counters (Prometheus text).
pub async fn metrics(State(console): State<Arc<Console>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        console.metrics.render(),
    )
        .into_response()
}

/// `GET /assets/console.css`.
pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("assets/console.css"),
    )
        .into_response()
}

/// `GET /assets/console.js`.
pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}
