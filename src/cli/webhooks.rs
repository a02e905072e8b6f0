//! `webhook-relay webhooks`: the webhooks table (the seed's list, with active ● and inactive ○).

use super::output::{Style, Table, plural, print_json};
use crate::config::{Config, Webhook};
use crate::model::event::Trigger;

#[derive(serde::Serialize)]
struct Row<'a> {
    name: &'a str,
    active: bool,
    method: &'a str,
    url: &'a str,
    triggers: Vec<&'static str>,
    filters: Vec<(&'static str, &'a [String])>,
    file: String,
    #[serde(flatten)]
    endpoint: EndpointSettings,
}

/// What a webhook asks of its endpoint, without a secret: `[webhook.auth]`'s type,
/// `[webhook.signing]`, the response validators and the rate limit.
#[derive(serde::Serialize)]
pub struct EndpointSettings {
    /// `bearer`, `basic (user relay)`, `oauth2 (https://idp/token, client relay)`, or none.
    pub auth: Option<String>,
    /// How many signing secrets (0: not signed).
    pub signing_keys: usize,
    /// Each validator as `path`, `expected` and `retry_on_mismatch`.
    pub response_validators: Vec<serde_json::Value>,
    /// E.g. `20/s`.
    pub rate_limit: Option<String>,
}

impl EndpointSettings {
    /// The settings of `webhook`.
    pub fn of(webhook: &Webhook) -> Self {
        EndpointSettings {
            auth: webhook.auth.as_ref().map(|a| a.describe()),
            signing_keys: webhook.signing.as_ref().map_or(0, |s| s.keys.len()),
            response_validators: webhook
                .response_validators
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "path": v.path.text,
                        "expected": v.expected,
                        "retry_on_mismatch": v.retry_on_mismatch,
                    })
                })
                .collect(),
            rate_limit: webhook.rate_limit.map(|r| r.show()),
        }
    }

    /// One line, e.g. `auth oauth2 (…); signed (2 keys); validators $.data.status in
    /// ["ok"]; rate 20/s`, or `None` when the webhook sets none of them.
    pub fn line(webhook: &Webhook) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(auth) = &webhook.auth {
            parts.push(format!("auth {}", auth.describe()));
        }
        if let Some(signing) = &webhook.signing {
            parts.push(format!(
                "signed (Standard Webhooks, {})",
                plural(signing.keys.len(), "key")
            ));
        }
        for v in &webhook.response_validators {
            let expected: Vec<String> = v.expected.iter().map(ToString::to_string).collect();
            let retry = if v.retry_on_mismatch {
                ", retried on mismatch"
            } else {
                ""
            };
            parts.push(format!(
                "validates {} in [{}]{retry}",
                v.path,
                expected.join(", ")
            ));
        }
        if let Some(rate) = webhook.rate_limit {
            parts.push(format!("rate limit {rate} per worker"));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The triggers in short form: `all`, `none`, or names without the `Request` prefix.
pub fn short_triggers(triggers: &[Trigger]) -> String {
    if triggers.len() == Trigger::ALL.len() {
        return "all".into();
    }
    if triggers.is_empty() {
        return "none".into();
    }
    triggers
        .iter()
        .map(|t| t.as_str().trim_start_matches("Request"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The filters in short form: `integration_names=a,b permissions=readonly`, or `-`.
pub fn short_filters(webhook: &Webhook) -> String {
    let listed = webhook.filters.listed();
    if listed.is_empty() {
        return "-".into();
    }
    listed
        .iter()
        .map(|(name, values)| format!("{name}={}", values.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `webhooks`.
pub fn run(config: &Config, json: bool) -> u8 {
    let style = Style::detect();
    if json {
        let rows: Vec<Row> = config
            .webhooks
            .iter()
            .map(|w| Row {
                name: &w.name,
                active: w.is_active(),
                method: w.method.as_str(),
                url: w.url.redacted(),
                triggers: w.triggers.iter().map(|t| t.as_str()).collect(),
                filters: w.filters.listed(),
                file: w.source.display().to_string(),
                endpoint: EndpointSettings::of(w),
            })
            .collect();
        print_json(&rows);
        return super::EXIT_OK;
    }
    let mut table = Table::new(["", "NAME", "METHOD", "URL", "TRIGGERS", "FILTERS", "FILE"]);
    for w in &config.webhooks {
        table.row([
            super::status_dot(&style, w),
            w.name.clone(),
            w.method.to_string(),
            w.url.redacted().to_string(),
            short_triggers(&w.triggers),
            short_filters(w),
            w.source.display().to_string(),
        ]);
    }
    print!("{}", table.render());
    for w in &config.webhooks {
        if let Some(line) = EndpointSettings::line(w) {
            println!("  {}: {line}", w.name);
        }
    }
    let active = config.webhooks.iter().filter(|w| w.is_active()).count();
    println!(
        "{}",
        style.dim(&format!(
            "{}, {active} active (● active, ○ inactive)",
            plural(config.webhooks.len(), "webhook")
        ))
    );
    super::EXIT_OK
}
