//! `webhook-relay publish`: publishes events to the configured exchange, routing key = event
//! type, persistent, with publisher confirms. For upstream systems and for trying things out.
//!
//! Input is one JSON document, a JSON array of them, or NDJSON (one per line), from files or
//! stdin (`-`). Every event is validated against the event schema first; if any is invalid,
//! nothing is published and each problem is reported with its file and line
//! (`--no-validate` skips this).

use super::output::{Style, print_json};
use super::target::parse_trigger;
use crate::broker::Broker;
use crate::config::Config;
use crate::model::event::schema;
use crate::model::event::{self, Trigger};
use lapin::BasicProperties;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;

/// Options of `publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// Files of events (JSON, JSON array or NDJSON); `-` reads stdin.
    #[arg(conflicts_with = "sample")]
    pub files: Vec<PathBuf>,
    /// Publish the built-in sample of this trigger (or `all`: one per trigger).
    #[arg(long, value_parser = parse_sample)]
    pub sample: Option<SampleChoice>,
    /// With `--sample`: how many copies, each with its own event_time (so its own identity).
    #[arg(long, default_value_t = 1, requires = "sample")]
    pub count: u32,
    /// Publish without validating against the schema.
    #[arg(long)]
    pub no_validate: bool,
}

/// `--sample` values.
#[derive(Debug, Clone, Copy)]
pub enum SampleChoice {
    /// One trigger.
    One(Trigger),
    /// One of each trigger.
    All,
}

fn parse_sample(text: &str) -> Result<SampleChoice, String> {
    if text == "all" {
        Ok(SampleChoice::All)
    } else {
        parse_trigger(text).map(SampleChoice::One)
    }
}

/// One event read from the input, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// `file:line`, or `sample RequestApproved #3`.
    pub origin: String,
    /// The document.
    pub value: Value,
}

/// Splits a text into documents: a single document, a top-level array's items, or several
/// whitespace-separated documents (NDJSON). Each comes with its 1-based line number.
pub fn split_documents(text: &str) -> Result<Vec<(usize, Value)>, (usize, String)> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let start = text.len() - text.trim_start().len();
    if text[start..].starts_with('[') {
        return split_array(text, start + 1, &line_of);
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let before = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(value)) => {
                let begin = before + (text[before..].len() - text[before..].trim_start().len());
                out.push((line_of(begin), value));
            }
            Some(Err(e)) => return Err((e.line(), format!("not JSON: {e}"))),
        }
    }
    Ok(out)
}

fn split_array(
    text: &str,
    mut pos: usize,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<Vec<(usize, Value)>, (usize, String)> {
    let mut out = Vec::new();
    let skip_ws = |pos: usize| pos + (text[pos..].len() - text[pos..].trim_start().len());
    pos = skip_ws(pos);
    if text[pos..].starts_with(']') {
        return Ok(out);
    }
    loop {
        pos = skip_ws(pos);
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => out.push((line_of(pos), value)),
            Some(Err(e)) => {
                return Err((line_of(pos) + e.line() - 1, format!("not JSON: {e}")));
            }
            None => return Err((line_of(pos), "the array is not closed".into())),
        }
        pos = skip_ws(pos + stream.byte_offset());
        match text[pos..].chars().next() {
            Some(',') => pos += 1,
            Some(']') => break,
            _ => {
                return Err((
                    line_of(pos),
                    "expected `,` or `]` after an array item".into(),
                ));
            }
        }
    }
    let rest = text[pos + 1..].trim();
    if !rest.is_empty() {
        return Err((line_of(pos + 1), "text after the closing `]`".into()));
    }
    Ok(out)
}

fn samples(choice: SampleChoice, count: u32) -> Vec<Located> {
    let triggers: Vec<Trigger> = match choice {
        SampleChoice::One(t) => vec![t],
        SampleChoice::All => Trigger::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for trigger in triggers {
        for n in 0..count {
            let mut value = event::sample(trigger);
            if n > 0
                && let Some(time) = value["event_time"].as_f64()
            {
                value["event_time"] = serde_json::json!(time + f64::from(n) / 1000.0);
            }
            out.push(Located {
                origin: format!("sample {trigger} #{}", n + 1),
                value,
            });
        }
    }
    out
}

fn read_inputs(files: &[PathBuf]) -> Result<Vec<Located>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let files: Vec<PathBuf> = if files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        files.to_vec()
    };
    for file in files {
        let (label, text) = if file.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => ("stdin".to_string(), text),
                Err(e) => {
                    problems.push(format!("stdin: cannot read: {e}"));
                    continue;
                }
            }
        } else {
            match std::fs::read_to_string(&file) {
                Ok(text) => (file.display().to_string(), text),
                Err(e) => {
                    problems.push(format!("{}: cannot read: {e}", file.display()));
                    continue;
                }
            }
        };
        match split_documents(&text) {
            Ok(docs) => out.extend(docs.into_iter().map(|(line, value)| Located {
                origin: format!("{label}:{line}"),
                value,
            })),
            Err((line, message)) => problems.push(format!("{label}:{line}: {message}")),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Runs `publish`; exit 0 when every event was confirmed, 1 when any was refused or not
/// confirmed, 2 for unreadable input.
pub async fn run(config: &Config, args: &PublishArgs, json: bool) -> u8 {
    let style = Style::detect();
    let events = match args.sample {
        Some(choice) => samples(choice, args.count),
        None => match read_inputs(&args.files) {
            Ok(events) => events,
            Err(problems) => {
                for p in problems {
                    eprintln!("error: {p}");
                }
                return super::EXIT_CONFIG;
            }
        },
    };
    if !args.no_validate {
        let refused = invalid(&events);
        if !refused.is_empty() {
            report_refused(&refused, json, &style);
            return super::EXIT_FAILED;
        }
    }
    let broker = match super::connect(config).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    if config.amqp.declare
        && let Err(e) = broker.declare_topology(&config.amqp).await
    {
        eprintln!("error: {e}");
        broker.close().await;
        return super::EXIT_FAILED;
    }
    let (confirmed, failures) = publish_all(&broker, config, &events).await;
    broker.close().await;
    if json {
        print_json(&serde_json::json!({
            "published": events.len(),
            "confirmed": confirmed,
            "failed": failures,
            "exchange": config.amqp.exchange,
        }));
    } else {
        for f in &failures {
            eprintln!("{}: {f}", style.bad("not confirmed"));
        }
        println!(
            "{confirmed} of {} events confirmed by the broker (exchange `{}`, routing key = event type)",
            events.len(),
            config.amqp.exchange
        );
    }
    super::exit_code(failures.is_empty())
}

/// Every schema problem of every event, each naming the event's origin and number.
fn invalid(events: &[Located]) -> Vec<String> {
    let mut refused = Vec::new();
    for (i, located) in events.iter().enumerate() {
        for problem in schema::check(&located.value) {
            refused.push(format!("{}: event {}: {problem}", located.origin, i + 1));
        }
    }
    refused
}

fn report_refused(refused: &[String], json: bool, style: &Style) {
    if json {
        print_json(&serde_json::json!({"published": 0, "confirmed": 0, "refused": refused}));
    } else {
        for r in refused {
            eprintln!("{}: {r}", style.bad("invalid"));
        }
        eprintln!("nothing published: fix the events above or pass --no-validate");
    }
}

/// Publishes every event, in order, persistent, routing key = its event type, each waiting
/// for the broker's confirm. Returns how many were confirmed and a line per failure.
async fn publish_all(broker: &Broker, config: &Config, events: &[Located]) -> (usize, Vec<String>) {
    let publisher = broker.publisher();
    let mut confirmed = 0usize;
    let mut failures = Vec::new();
    for located in events {
        let routing_key = located
            .value
            .get("event_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let body = located.value.to_string();
        match publisher
            .publish_confirmed(
                &config.amqp.exchange,
                routing_key,
                body.as_bytes(),
                event_properties(),
            )
            .await
        {
            Ok(()) => confirmed += 1,
            Err(e) => failures.push(format!("{}: {e}", located.origin)),
        }
    }
    (confirmed, failures)
}

/// The properties of a published event: JSON, persistent (delivery mode 2), so that a broker
/// restart does not lose it from a durable queue.
fn event_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_document() {
        let docs = split_documents("\n\n{\"a\": 1}\n").unwrap();
        assert_eq!(docs, vec![(3, json!({"a": 1}))]);
    }

    #[test]
    fn ndjson_lines() {
        let docs = split_documents("{\"a\": 1}\n{\"a\": 2}\n\n{\"a\": 3}").unwrap();
        let lines: Vec<usize> = docs.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![1, 2, 4]);
    }

    #[test]
    fn array_items_with_lines() {
        let text = "[\n  {\"a\": 1},\n  {\n    \"a\": 2\n  }\n]\n";
        let docs = split_documents(text).unwrap();
        assert_eq!(docs, vec![(2, json!({"a": 1})), (3, json!({"a": 2}))]);
        assert_eq!(split_documents("[]").unwrap(), vec![]);
    }

    #[test]
    fn broken_input_names_the_line() {
        let (line, message) = split_documents("{\"a\": 1}\n{\"a\": }\n").unwrap_err();
        assert_eq!(line, 2, "{message}");
        let (line, _) = split_documents("[\n{\"a\": 1},\n{\"a\" 2}\n]").unwrap_err();
        assert_eq!(line, 3);
        let (line, _) = split_documents("[{\"a\": 1} {\"a\": 2}]").unwrap_err();
        assert_eq!(line, 1);
    }
}
