//! The ready-made webhooks in `config/examples/`: each loads and passes `check` with no finding,
//! and renders, for every trigger's sample event, a body of the shape its target documents
//! (required fields and their types). No network.

use serde_json::Value;
use std::path::Path;
use webhook_relay::config::{self, Env, lint};
use webhook_relay::model::event::{Trigger, decode, sample};

/// Values for every variable the recipes use: realistic shapes, long enough not to be warned
/// about as short secrets.
const ENV: &[(&str, &str)] = &[
    (
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    (
        "TEAMS_WORKFLOW_URL",
        "https://prod-00.westeurope.logic.azure.com:443/workflows/0000/triggers/manual/paths/invoke?api-version=2016-06-01&sig=abcdefghijkl",
    ),
    ("JIRA_SITE", "example-company"),
    ("JIRA_EMAIL", "relay@example.com"),
    ("JIRA_API_TOKEN", "ATATT3xFfGF0-example-token"),
    ("SERVICENOW_INSTANCE", "dev12345"),
    ("SERVICENOW_USER", "relay-integration"),
    ("SERVICENOW_PASSWORD", "example-password-1"),
    ("SPLUNK_HEC_HOST", "http-inputs-example.splunkcloud.com"),
    ("SPLUNK_HEC_TOKEN", "12345678-1234-1234-1234-1234567890ab"),
    ("DD_API_KEY", "0123456789abcdef0123456789abcdef"),
    (
        "SIGNED_WEBHOOK_URL",
        "https://receiver.example.com/hooks/access",
    ),
    ("WHSEC_CURRENT", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
];

/// Checks a rendered body against a target's documented request shape.
type Shape = fn(&Value) -> Result<(), String>;

/// Every recipe file and the check of its target's request shape.
const RECIPES: &[(&str, Shape)] = &[
    ("slack.toml", slack),
    ("teams.toml", teams),
    ("jira.toml", jira),
    ("servicenow.toml", servicenow),
    ("splunk.toml", splunk),
    ("datadog.toml", datadog),
    ("signed.toml", signed),
];

#[test]
fn every_recipe_passes_check_and_renders_its_targets_shape_for_every_trigger() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut files: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = RECIPES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "every recipe has a shape check");

    for (file, shape) in RECIPES {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.toml"), "").unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        std::fs::copy(examples.join(file), dir.path().join("webhooks").join(file)).unwrap();
        let config = config::load(dir.path(), &Env::from_pairs(ENV.iter().copied()))
            .unwrap_or_else(|e| panic!("{file} does not load:\n{e}"));
        let mut findings = config.warnings.clone();
        findings.extend(lint::lint(&config));
        assert!(findings.is_empty(), "{file}: {findings:#?}");
        assert_eq!(config.webhooks.len(), 1, "{file}: one webhook");
        let webhook = &config.webhooks[0];
        for trigger in Trigger::ALL {
            let event = decode(sample(trigger).to_string().as_bytes(), None).unwrap();
            let body = webhook
                .template
                .render(&event.raw)
                .unwrap_or_else(|e| panic!("{file} {trigger}: {e}"));
            let value: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{file} {trigger}: not JSON: {e}\n{body}"));
            if let Err(e) = shape(&value) {
                panic!("{file} {trigger}: {e}\n{body}");
            }
        }
    }
}

/// The recipes' own settings: Jira and ServiceNow use Basic auth, Splunk validates HEC's
/// answer code, the generic webhook signs.
#[test]
fn recipes_use_auth_validators_signing_and_rate_limits() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let text = |f: &str| std::fs::read_to_string(examples.join(f)).unwrap();
    assert!(text("jira.toml").contains("type = \"basic\""));
    assert!(text("servicenow.toml").contains("type = \"basic\""));
    assert!(text("splunk.toml").contains("path = \"$.code\""));
    assert!(text("signed.toml").contains("[webhook.signing]"));
    assert!(text("slack.toml").contains("rate_limit = \"1/s\""));
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, String> {
    let mut v = value;
    for key in path.split('.') {
        v = match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key),
        }
        .ok_or_else(|| format!("`{path}` is missing"))?;
    }
    v.as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("`{path}` must be a non-empty string"))
}

fn array<'a>(value: &'a Value, key: &str) -> Result<&'a Vec<Value>, String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("`{key}` must be a non-empty array"))
}

fn check(ok: bool, message: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(message.to_string()) }
}

/// Slack: `text` (required as the fallback), and `blocks` of typed blocks, section texts under
/// Slack's 3000-character limit.
fn slack(body: &Value) -> Result<(), String> {
    string(body, "text")?;
    for block in array(body, "blocks")? {
        let kind = string(block, "type")?;
        if kind == "section" {
            let text = string(block, "text.text")?;
            check(
                text.chars().count() <= 3000,
                "section text over 3000 characters",
            )?;
            check(string(block, "text.type")? == "mrkdwn", "section text type")?;
        }
    }
    Ok(())
}

/// Teams workflow: a `message` with Adaptive Card attachments.
fn teams(body: &Value) -> Result<(), String> {
    check(string(body, "type")? == "message", "type must be message")?;
    for attachment in array(body, "attachments")? {
        check(
            string(attachment, "contentType")? == "application/vnd.microsoft.card.adaptive",
            "contentType",
        )?;
        let card = attachment.get("content").ok_or("content is missing")?;
        check(string(card, "type")? == "AdaptiveCard", "content.type")?;
        string(card, "version")?;
        for element in array(card, "body")? {
            string(element, "type")?;
        }
    }
    Ok(())
}

/// Jira: project key, issue type name, a one-line summary of at most 255 characters and an
/// Atlassian Document Format description.
fn jira(body: &Value) -> Result<(), String> {
    string(body, "fields.project.key")?;
    string(body, "fields.issuetype.name")?;
    let summary = string(body, "fields.summary")?;
    check(
        summary.chars().count() <= 255,
        "summary over 255 characters",
    )?;
    check(!summary.contains('\n'), "summary must be one line")?;
    let description = &body["fields"]["description"];
    check(
        string(description, "type")? == "doc",
        "description.type must be doc",
    )?;
    check(description["version"] == 1, "description.version must be 1")?;
    for paragraph in array(description, "content")? {
        string(paragraph, "type")?;
        for node in array(paragraph, "content")? {
            check(string(node, "type")? == "text", "text node")?;
            string(node, "text")?;
        }
    }
    Ok(())
}

/// ServiceNow Table API: `short_description`, and every field a string.
fn servicenow(body: &Value) -> Result<(), String> {
    string(body, "short_description")?;
    let fields = body.as_object().ok_or("the body must be an object")?;
    for (name, value) in fields {
        check(value.is_string(), &format!("`{name}` must be a string"))?;
    }
    Ok(())
}

/// Splunk HEC: `event` required; `time` epoch seconds; host, source, sourcetype strings.
fn splunk(body: &Value) -> Result<(), String> {
    let event = body.get("event").ok_or("`event` is missing")?;
    check(
        event.is_object() || event.is_string(),
        "`event` must be an object or string",
    )?;
    check(body["time"].is_number(), "`time` must be epoch seconds")?;
    for key in ["host", "source", "sourcetype"] {
        string(body, key)?;
    }
    Ok(())
}

/// Datadog logs: an array of log objects with `message`, `ddsource`, `service`, `hostname` and
/// `ddtags` as comma-separated `key:value` tags.
fn datadog(body: &Value) -> Result<(), String> {
    let logs = body
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("the body must be an array")?;
    for log in logs {
        for key in ["message", "ddsource", "service", "hostname"] {
            string(log, key)?;
        }
        let tags = string(log, "ddtags")?;
        check(
            tags.split(',')
                .all(|t| t.split_once(':').is_some_and(|(k, _)| !k.is_empty())),
            "ddtags must be key:value pairs",
        )?;
    }
    Ok(())
}

/// Standard Webhooks payload: `type`, an RFC 3339 `timestamp`, and a `data` object.
fn signed(body: &Value) -> Result<(), String> {
    string(body, "type")?;
    let timestamp = string(body, "timestamp")?;
    check(
        humantime::parse_rfc3339(timestamp).is_ok(),
        "timestamp must be RFC 3339",
    )?;
    check(body["data"].is_object(), "`data` must be an object")?;
    Ok(())
}
