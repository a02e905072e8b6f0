//! `webhook-relay render NAME`: the exact request a webhook would send for an event, and
//! whether the event would match it at all.

use super::output::{Style, print_json};
use crate::config::{Config, Webhook};
use crate::model::event::{self, Event, Trigger};
use crate::pipeline::delivery::DeliveryRequest;
use crate::pipeline::rules;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `render`.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// The webhook's name.
    pub name: String,
    /// An event file (JSON). Without it, the built-in sample event is used.
    #[arg(long, conflicts_with = "trigger")]
    pub event: Option<PathBuf>,
    /// Which built-in sample to use; defaults to the webhook's first trigger.
    #[arg(long, value_parser = parse_trigger)]
    pub trigger: Option<Trigger>,
}

/// clap parser for a trigger name (either spelling).
pub fn parse_trigger(text: &str) -> Result<Trigger, String> {
    text.parse::<Trigger>().map_err(|e| e.to_string())
}

/// The event a command works on, and where it came from.
pub struct EventInput {
    /// The decoded event.
    pub event: Event,
    /// `built-in sample RequestApproved` or the file's path.
    pub source: String,
}

/// Reads `--event FILE`, or picks the built-in sample of `--trigger` or of the webhook's first
/// trigger.
pub fn event_input(
    file: Option<&Path>,
    trigger: Option<Trigger>,
    webhook: &Webhook,
) -> Result<EventInput, String> {
    match file {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let event = event::decode(&bytes, None)
                .map_err(|e| format!("{}: not an access-request event: {e}", path.display()))?;
            Ok(EventInput {
                event,
                source: path.display().to_string(),
            })
        }
        None => {
            let trigger = trigger
                .or_else(|| webhook.triggers.first().copied())
                .unwrap_or(Trigger::RequestApproved);
            let bytes = event::sample(trigger).to_string();
            let event = event::decode(bytes.as_bytes(), None)
                .map_err(|e| format!("the built-in sample does not decode: {e}"))?;
            Ok(EventInput {
                event,
                source: format!("built-in sample {trigger}"),
            })
        }
    }
}

/// The webhook named `name`, or a message listing the ones there are.
pub fn find_webhook<'a>(config: &'a Config, name: &str) -> Result<&'a Arc<Webhook>, String> {
    config.webhook(name).ok_or_else(|| {
        let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
        format!(
            "no webhook is called `{name}`; the config has: {}",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    })
}

#[derive(serde::Serialize)]
struct Rendered<'a> {
    webhook: &'a str,
    active: bool,
    event_id: &'a str,
    event_source: &'a str,
    matches: bool,
    mismatch: Option<String>,
    method: &'a str,
    url: &'a str,
    headers: Vec<(String, String)>,
    body: Option<&'a str>,
    render_error: Option<String>,
}

/// Why `run` would not send `event` to `webhook`, or `None` when it would. For an inactive
/// webhook it also says whether a trigger or filter would exclude the event once activated.
fn mismatch(webhook: &Webhook, event: &Event) -> Option<String> {
    match rules::check(webhook, event) {
        Ok(()) => None,
        Err(rules::Mismatch::Inactive) => {
            Some(match rules::check_ignoring_status(webhook, event) {
                Ok(()) => "the webhook is inactive (active, it would take this event)".to_string(),
                Err(m) => format!("the webhook is inactive, and {m}"),
            })
        }
        Err(m) => Some(m.to_string()),
    }
}

/// Runs `render`; returns the exit code.
pub fn run(config: &Config, args: &RenderArgs, json: bool) -> u8 {
    let style = Style::detect();
    let webhook = match find_webhook(config, &args.name) {
        Ok(w) => w,
        Err(e) => return super::usage_error(&e),
    };
    let input = match event_input(args.event.as_deref(), args.trigger, webhook) {
        Ok(input) => input,
        Err(e) => return super::usage_error(&e),
    };
    let event = &input.event;
    let mismatch = mismatch(webhook, event);
    let rendered = webhook.template.render(&event.raw);
    let (body, render_error) = match &rendered {
        Ok(body) => (Some(body.as_str()), None),
        Err(e) => (None, Some(config.redactor.scrub(&e.to_string()))),
    };
    let request = DeliveryRequest {
        webhook: Arc::clone(webhook),
        event_id: event.id.clone(),
        body: body.unwrap_or_default().to_string().into(),
        prior: None,
        batch_size: None,
    };
    let headers = request.shown_headers();
    if json {
        print_json(&Rendered {
            webhook: &webhook.name,
            active: webhook.is_active(),
            event_id: &event.id.0,
            event_source: &input.source,
            matches: mismatch.is_none(),
            mismatch: mismatch.clone(),
            method: webhook.method.as_str(),
            url: webhook.url.redacted(),
            headers,
            body,
            render_error: render_error.clone(),
        });
    } else {
        println!(
            "{}  {}  {}  ({})",
            style.bold("webhook"),
            webhook.name,
            super::status_dot(&style, webhook),
            webhook.source.display()
        );
        println!(
            "{}    {}  ({})",
            style.bold("event"),
            event.id,
            input.source
        );
        match &mismatch {
            None => println!(
                "{}    {}",
                style.bold("match"),
                style.good("yes: `run` would send the request below")
            ),
            Some(m) => println!(
                "{}    {}",
                style.bold("match"),
                style.warn(&format!("no: {m}; `run` would not send it"))
            ),
        }
        println!(
            "{}  {} {}",
            style.bold("request"),
            webhook.method,
            webhook.url.redacted()
        );
        for (i, (name, value)) in headers.iter().enumerate() {
            let label = if i == 0 { "headers" } else { "" };
            println!("{}{name}: {value}", style.bold(&format!("{label:<9}")));
        }
        match (body, &render_error) {
            (Some(body), _) => {
                println!("{}", style.bold("body"));
                println!("{body}");
            }
            (None, Some(e)) => println!(
                "{}     {}",
                style.bold("body"),
                style.bad(&format!("render failed: {e}"))
            ),
            (None, None) => {}
        }
    }
    if render_error.is_some() {
        super::EXIT_FAILED
    } else {
        super::EXIT_OK
    }
}
