//! What the worker is run with: its config (the shipped files with the bench's names, CA and
//! port) and the events of the backlog.

use crate::err;
use lapin::BasicProperties;
use serde_json::Value;
use std::path::Path;
use webhook_relay::config::{Config, MAX_LINE_BYTES};
use webhook_relay::model::event::{self, Trigger};

/// The shipped worker settings; the bench changes only names, the CA file and the port.
const SHIPPED_RELAY: &str = include_str!("../../config/relay.toml");
/// The shipped Logz.io webhook, used as is except for its URL.
const SHIPPED_WEBHOOK: &str = include_str!("../../config/webhooks/logzio.toml");
/// The URL in the shipped webhook.
const SHIPPED_URL: &str = "https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono";
/// The end of the shipped body template, where the latency phase adds the sequence number.
pub const SHIPPED_TEMPLATE_END: &str = r#""type": "Apono"}'''"#;
/// The batching settings of issue #5.
pub const BATCH_TABLE: &str = r#"
[webhook.batch]
max_events = 200
max_bytes = "5MiB"
linger = "200ms"
"#;
/// The log shipping token the bench's webhooks use.
pub const TOKEN: &str = "bench-token";
/// The worker's prefetch (the shipped value); the bare consumer uses the same.
pub const PREFETCH: u16 = 256;

/// The shipped seed webhook pointed at `https://127.0.0.1:<port>`.
pub fn single_webhook(port: u16) -> String {
    assert!(
        SHIPPED_WEBHOOK.contains(SHIPPED_URL),
        "config/webhooks/logzio.toml no longer holds the listener URL"
    );
    SHIPPED_WEBHOOK.replace(
        SHIPPED_URL,
        &format!("https://127.0.0.1:{port}/?token=${{LOGZIO_TOKEN}}&type=apono"),
    )
}

/// Writes `dir/relay.toml` (the shipped one with the bench's names, CA and port, and the
/// phase's own `keys`), `dir/ca.pem` and `dir/webhooks/logzio.toml`.
pub fn write_config(
    dir: &Path,
    prefix: &str,
    port: u16,
    ca_pem: &str,
    webhook: &str,
    keys: &[(&str, String)],
) -> Result<(), String> {
    let mut relay = SHIPPED_RELAY.to_string();
    let bench_keys = [
        ("url", "\"${BENCH_AMQP_URL}\"".to_string()),
        ("exchange", format!("\"{prefix}\"")),
        ("queue", format!("\"{prefix}.in\"")),
        ("dead_letter_queue", format!("\"{prefix}.dlq\"")),
        ("prefetch", PREFETCH.to_string()),
        ("ca_file", "\"ca.pem\"".to_string()),
        ("allowed_ports", format!("[{port}]")),
    ];
    for (key, value) in bench_keys.iter().chain(keys) {
        relay = set_key(&relay, key, value)?;
    }
    std::fs::create_dir_all(dir.join("webhooks")).map_err(err)?;
    std::fs::write(dir.join("relay.toml"), relay).map_err(err)?;
    std::fs::write(dir.join("ca.pem"), ca_pem).map_err(err)?;
    std::fs::write(dir.join("webhooks/logzio.toml"), webhook).map_err(err)?;
    Ok(())
}

/// Replaces the first `key = …` line of `text` (comment and all). A `key` written as
/// `# name` sets a key the shipped file has commented out (`name = value`).
fn set_key(text: &str, key: &str, value: &str) -> Result<String, String> {
    let name = key.strip_prefix("# ").unwrap_or(key);
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_key = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key && !done {
                done = true;
                format!("{name} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    if !done {
        return Err(format!("config/relay.toml has no `{key} =` line"));
    }
    Ok(lines.join("\n") + "\n")
}

pub fn trigger_of(i: u64) -> Trigger {
    Trigger::ALL[(i % Trigger::ALL.len() as u64) as usize]
}

/// Event number `i`: the built-in sample of a trigger (in turn), with its own `data.id`,
/// `friendly_id`, `event_time` and `data.custom_fields.seq = i`.
pub fn event_body(i: u64) -> Vec<u8> {
    serde_json::to_vec(&event_value(i)).expect("event serialises")
}

fn event_value(i: u64) -> Value {
    let mut event = event::sample(trigger_of(i));
    event["event_time"] = Value::from(1_764_064_800.0 + i as f64 / 1000.0);
    let data = &mut event["data"];
    data["id"] = Value::from(format!("req-{i:010x}"));
    data["friendly_id"] = Value::from(format!("AR-{i}"));
    data["custom_fields"]["seq"] = Value::from(i);
    event
}

/// Characters of `data.justification` in a big event: with the rest of the sample, and as
/// the seed template embeds it, an event and its Logz.io line are about 451 kB, under the
/// listener's 500,000-byte line (issue #9's report).
pub const BIG_JUSTIFICATION: usize = 450_000;

/// Event number `i` as [`event_body`] makes it, with a `data.justification` of
/// [`BIG_JUSTIFICATION`] characters of plain text (nothing a template would escape).
pub fn big_event_body(i: u64) -> Vec<u8> {
    const WORDS: &str = "Need read access to the production billing database to investigate \
                         the failed invoice run; ";
    let mut justification = format!("AR-{i}: ");
    while justification.len() < BIG_JUSTIFICATION {
        justification.push_str(WORDS);
    }
    justification.truncate(BIG_JUSTIFICATION);
    let mut event = event_value(i);
    event["data"]["justification"] = Value::from(justification);
    serde_json::to_vec(&event).expect("event serialises")
}

/// The size of a big event and of the body the phase's first webhook renders from it, said
/// against Logz.io's line limit.
pub fn big_sizes(config: &Config) -> String {
    let body = big_event_body(0);
    let event: Value = serde_json::from_slice(&body).expect("a big event is JSON");
    let rendered = config
        .webhooks
        .first()
        .and_then(|w| w.template.render(&event).ok())
        .map_or_else(|| "?".to_string(), |r| r.len().to_string());
    format!(
        "events of {} bytes, each rendered into a request body of {rendered} bytes \
         (Logz.io's line limit: {MAX_LINE_BYTES})",
        body.len()
    )
}

pub fn event_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

/// Why a phase's config does not load, said briefly when it is the missing batch key.
pub fn not_available(problem: &str) -> String {
    if problem.contains("unknown field `batch`") {
        "not available in this build (the config has no [webhook.batch])".into()
    } else {
        format!("not available in this build (config: {problem})")
    }
}
