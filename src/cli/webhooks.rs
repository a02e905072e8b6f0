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
