//! `webhook-relay render NAME`: the exact request a webhook would send for an event, and
//! whether the event would match it at all.

use super::output::{Style, print_json};
use super::target::{Target, parse_trigger};
use crate::config::{Config, Webhook};
use crate::model::event::{Event, Trigger};
use crate::pipeline::rules;
use std::path::PathBuf;

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

#[derive(serde::Serialize)]
struct Rendered<'a> {
    webhook: &'a str,
    active: bool,
    event_id: &'a str,
    event_source: &'a str,
    matches: bool,
    mismatch: Option<&'a str>,
    method: &'a str,
    url: &'a str,
    headers: &'a [(String, String)],
    body: Option<&'a str>,
    render_error: Option<&'a str>,
}

/// What `render` shows for a webhook and an event (the console's Render view too).
pub struct Preview {
    /// Why `run` would not send the event, if it would not.
    pub mismatch: Option<String>,
    /// The request's headers, secret values masked.
    pub headers: Vec<(String, String)>,
    /// The rendered body, or why it did not render (scrubbed of secrets).
    pub body: Result<String, String>,
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
    let target = match Target::resolve(config, &args.name, args.event.as_deref(), args.trigger) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let preview = Preview::of(config, &target);
    if json {
        print_json(&preview.json(&target));
    } else {
        preview.print_text(&target, &Style::detect());
    }
    super::exit_code(preview.body.is_ok())
}

impl Preview {
    /// The request `target`'s webhook would send for its event, without sending it.
    pub fn of(config: &Config, target: &Target) -> Self {
        let event = &target.input.event;
        let body = target
            .webhook
            .template
            .render(&event.raw)
            .map_err(|e| config.redactor.scrub(&e.to_string()));
        Preview {
            mismatch: mismatch(target.webhook, event),
            headers: target
                .request(body.clone().unwrap_or_default())
                .shown_headers(),
            body,
        }
    }

    fn json<'a>(&'a self, target: &'a Target) -> Rendered<'a> {
        let webhook = target.webhook;
        Rendered {
            webhook: &webhook.name,
            active: webhook.is_active(),
            event_id: &target.input.event.id.0,
            event_source: &target.input.source,
            matches: self.mismatch.is_none(),
            mismatch: self.mismatch.as_deref(),
            method: webhook.method.as_str(),
            url: webhook.url.redacted(),
            headers: &self.headers,
            body: self.body.as_deref().ok(),
            render_error: self.body.as_ref().err().map(String::as_str),
        }
    }

    fn print_text(&self, target: &Target, style: &Style) {
        let webhook = target.webhook;
        println!(
            "{}  {}  {}  ({})",
            style.bold("webhook"),
            webhook.name,
            super::status_dot(style, webhook),
            webhook.source.display()
        );
        println!(
            "{}    {}  ({})",
            style.bold("event"),
            target.input.event.id,
            target.input.source
        );
        match &self.mismatch {
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
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let label = if i == 0 { "headers" } else { "" };
            println!("{}{name}: {value}", style.bold(&format!("{label:<9}")));
        }
        match &self.body {
            Ok(body) => {
                println!("{}", style.bold("body"));
                println!("{body}");
            }
            Err(e) => println!(
                "{}     {}",
                style.bold("body"),
                style.bad(&format!("render failed: {e}"))
            ),
        }
    }
}
