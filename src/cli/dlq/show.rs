//! `dlq show`: every header and the pretty-printed body of one dead letter, made safe for the
//! terminal (a hostile publisher or endpoint wrote them).

use crate::broker::Broker;
use crate::broker::dead_letter::{header_number, header_text};
use crate::broker::dlq::Entry;
use crate::cli::output::{Style, print_json, terminal_safe};
use crate::config::Config;
use std::collections::BTreeMap;

/// Options of `dlq show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// A position from `dlq list`, or an event id.
    pub id: String,
}

/// Runs `dlq show`; exit 1 when no dead letter has that position or event id.
pub(super) async fn run(broker: &Broker, config: &Config, args: &ShowArgs, json: bool) -> u8 {
    let entries = match super::read(broker, config, super::DEFAULT_SCAN_LIMIT).await {
        Ok(Some(e)) => e,
        Ok(None) => return crate::cli::EXIT_FAILED,
        Err(code) => return code,
    };
    let selected = super::one(&args.id);
    let Some(entry) = entries.iter().find(|e| selected.matches(e)) else {
        eprintln!(
            "error: no dead letter at position or with event id `{}` in `{}`",
            args.id, config.amqp.dead_letter_queue
        );
        return crate::cli::EXIT_FAILED;
    };
    let headers = headers(entry, config);
    let body = body(entry);
    if json {
        print_json(&serde_json::json!({
            "position": entry.position,
            "message_id": entry.message.message_id(),
            "routing_key": entry.info.routing_key,
            "headers": headers,
            "body": body,
        }));
    } else {
        print_text(entry, &headers, &body);
    }
    crate::cli::EXIT_OK
}

/// Every header of the dead letter as text, by name, with the config's secrets scrubbed.
pub(crate) fn headers(entry: &Entry, config: &Config) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    if let Some(table) = entry.message.properties.headers() {
        for (name, value) in table.inner() {
            let text = header_text(table, name.as_str())
                .or_else(|| header_number(table, name.as_str()).map(|n| n.to_string()))
                .unwrap_or_else(|| format!("{value:?}"));
            headers.insert(name.as_str().to_string(), config.redactor.scrub(&text));
        }
    }
    headers
}

/// The body as JSON, or as a JSON string when it is not JSON.
pub(crate) fn body(entry: &Entry) -> serde_json::Value {
    serde_json::from_slice(entry.body())
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(entry.body()).into()))
}

fn print_text(entry: &Entry, headers: &BTreeMap<String, String>, body: &serde_json::Value) {
    let style = Style::detect();
    println!(
        "{}",
        style.bold(&format!("dead letter #{}", entry.position))
    );
    // Everything below comes from the message: a hostile publisher or endpoint wrote it.
    if let Some(id) = entry.message.message_id() {
        println!("  message_id: {}", terminal_safe(id, false));
    }
    for (name, value) in headers {
        println!(
            "  {}: {}",
            terminal_safe(name, false),
            terminal_safe(value, false)
        );
    }
    println!("{}", style.bold("body"));
    match serde_json::to_string_pretty(body) {
        Ok(pretty) => println!("{}", terminal_safe(&pretty, true)),
        Err(_) => println!(
            "{}",
            terminal_safe(&String::from_utf8_lossy(entry.body()), true)
        ),
    }
}
