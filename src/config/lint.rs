//! Config lint: checks of a loaded [`Config`] that go beyond what loading refuses, for
//! `webhook-relay check`. Template paths that can never exist in an event, bodies that render
//! invalid JSON for the sample events, webhooks that can never fire or are duplicates, a
//! retry window close to the broker's consumer timeout, batches that cannot fill, and secrets
//! written into files. Each finding is a [`Problem`] like a load error, with its
//! [`Severity`]. Pure: no network.

use crate::config::{Config, Problem, Severity, Webhook};
use crate::model::event::{self, Trigger};

/// A retry window above this share of the consumer timeout is flagged.
const CONSUMER_TIMEOUT_MARGIN: f64 = 0.8;

/// Every finding for `config`: the config as a whole, then each webhook in order, then
/// duplicates.
pub fn lint(config: &Config) -> Vec<Problem> {
    let mut out: Vec<Problem> = no_active_webhook(config).into_iter().collect();
    for webhook in &config.webhooks {
        out.extend(template_paths(webhook));
        out.extend(
            render_problems(webhook)
                .into_iter()
                .map(|m| finding(webhook, Severity::Warning, "body_template", m)),
        );
        out.extend(no_triggers(webhook));
        out.extend(retry_window_near_consumer_timeout(config, webhook));
        out.extend(batch_cannot_fill(config, webhook));
        out.extend(inline_secrets(webhook));
        out.extend(validator_problems(webhook));
        out.extend(rate_limit_parks(webhook));
    }
    out.extend(duplicates(&config.webhooks));
    out
}

/// A finding about `field` of `webhook`.
fn finding(webhook: &Webhook, severity: Severity, field: &str, message: String) -> Problem {
    Problem::webhook(&webhook.source, &webhook.name, field, message).with_severity(severity)
}

/// No active webhook: an error, unless `policy.allow_idle` says to start idle.
fn no_active_webhook(config: &Config) -> Option<Problem> {
    if config.webhooks.iter().any(|w| w.is_active()) {
        return None;
    }
    let (severity, message) = if config.policy.allow_idle {
        (
            Severity::Warning,
            "no active webhook: `run` starts idle (policy.allow_idle) and consumes nothing \
             until a reload brings one",
        )
    } else {
        (
            Severity::Error,
            "no active webhook: every event would be acked and dropped, so `run` refuses to \
             start (set policy.allow_idle = true to start without consuming)",
        )
    };
    Some(Problem::file(&config.dir.join("webhooks"), message).with_severity(severity))
}

/// Template paths that the event schema says can never exist (errors), with the closest
/// real path when it looks like a typo.
fn template_paths(webhook: &Webhook) -> Vec<Problem> {
    let mut out = Vec::new();
    for path in webhook.template.expressions() {
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        if event::schema_allows_path(&segments) {
            continue;
        }
        let dotted = dotted(&path);
        let hint = suggest(&dotted)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let message = format!(
            "`{dotted}` can never exist in an access-request event{hint}; \
             see `webhook-relay schema --fields`"
        );
        out.push(finding(webhook, Severity::Error, "body_template", message));
    }
    out
}

/// A webhook without triggers never fires.
fn no_triggers(webhook: &Webhook) -> Option<Problem> {
    webhook.triggers.is_empty().then(|| {
        let message = "the webhook has no triggers, so no event will ever reach it";
        finding(webhook, Severity::Warning, "triggers", message.into())
    })
}

/// In-process retries that could hold a message close to the broker's consumer timeout
/// (loading refuses them only from the timeout on).
fn retry_window_near_consumer_timeout(config: &Config, webhook: &Webhook) -> Option<Problem> {
    let hold = webhook.delivery.worst_case_hold().as_secs_f64();
    let limit = config.amqp.consumer_timeout.as_secs_f64();
    (hold > limit * CONSUMER_TIMEOUT_MARGIN).then(|| {
        let message = format!(
            "retry_window + timeout ({:.0}s) is within {:.0}% of the broker's consumer \
             timeout ({:.0}s): a slow broker or clock could make it close the channel",
            hold,
            (1.0 - CONSUMER_TIMEOUT_MARGIN) * 100.0,
            limit
        );
        finding(webhook, Severity::Warning, "delivery.retry_window", message)
    })
}

/// Response validators that can hardly be meant: an `expected` list mixing types, a string
/// that spells a number or boolean (a JSON `200` never equals `"200"`), a path validated
/// twice (both must pass).
fn validator_problems(webhook: &Webhook) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, validator) in webhook.response_validators.iter().enumerate() {
        let field = format!("response_validators[{i}]");
        let path = validator.path.text.as_str();
        if seen.contains(&path) {
            let message = format!("`{path}` is validated twice; every validator must pass");
            out.push(finding(
                webhook,
                Severity::Warning,
                &format!("{field}.path"),
                message,
            ));
        }
        seen.push(path);
        let kinds: std::collections::BTreeSet<&str> =
            validator.expected.iter().map(json_kind).collect();
        if kinds.len() > 1 {
            let kinds: Vec<&str> = kinds.into_iter().collect();
            let message = format!(
                "mixes {}: a value matches only one of the same type; is that meant?",
                kinds.join(" and ")
            );
            out.push(finding(
                webhook,
                Severity::Warning,
                &format!("{field}.expected"),
                message,
            ));
        }
        for value in &validator.expected {
            let Some(text) = value.as_str() else { continue };
            let spelled = text.trim();
            if spelled.parse::<f64>().is_ok() || matches!(spelled, "true" | "false" | "null") {
                let message = format!(
                    "\"{text}\" is a string: it never equals the JSON {spelled}; write                      {spelled} without quotes if the endpoint answers a {}",
                    if spelled.parse::<f64>().is_ok() {
                        "number"
                    } else {
                        "literal"
                    }
                );
                out.push(finding(
                    webhook,
                    Severity::Warning,
                    &format!("{field}.expected"),
                    message,
                ));
            }
        }
    }
    out
}

/// The type of a JSON scalar, as `check` names it.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::String(_) => "strings",
        serde_json::Value::Number(_) => "numbers",
        serde_json::Value::Bool(_) => "booleans",
        _ => "null",
    }
}

/// A rate limit whose spacing is longer than the retry window: every delivery but the first
/// of a burst parks in the retry queue instead of waiting in process.
fn rate_limit_parks(webhook: &Webhook) -> Option<Problem> {
    let limit = webhook.rate_limit?;
    let interval = limit.per / limit.count;
    (interval > webhook.delivery.retry_window).then(|| {
        let message = format!(
            "{limit} spaces requests {} apart, more than delivery.retry_window ({}): every \
             delivery after the first of a burst will wait in the retry queue",
            crate::config::show_duration(interval),
            crate::config::show_duration(webhook.delivery.retry_window),
        );
        finding(webhook, Severity::Warning, "rate_limit", message)
    })
}

/// A batch larger than what can be in flight at once could never fill.
fn batch_cannot_fill(config: &Config, webhook: &Webhook) -> Option<Problem> {
    let batch = webhook.batch?;
    let in_flight = u32::from(config.amqp.prefetch);
    (batch.max_events > in_flight).then(|| {
        let message = format!(
            "{} is more than can be in flight at once (amqp.prefetch = {}): such a \
             batch could never fill and would wait out linger every time, so the \
             worker sends batches of {in_flight}",
            batch.max_events, config.amqp.prefetch
        );
        finding(webhook, Severity::Warning, "batch.max_events", message)
    })
}

/// Secrets written into the file instead of taken from `${VAR}`.
fn inline_secrets(webhook: &Webhook) -> Vec<Problem> {
    let message = "holds a secret written into the file; use ${VAR} and set it in the \
                   environment (e.g. token=${LOGZIO_TOKEN})";
    webhook
        .inline_secrets
        .iter()
        .map(|field| finding(webhook, Severity::Warning, field, message.into()))
        .collect()
}

/// Each webhook that behaves exactly like an earlier one: every event would be sent twice.
fn duplicates(webhooks: &[std::sync::Arc<Webhook>]) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, a) in webhooks.iter().enumerate() {
        for b in webhooks[i + 1..].iter().filter(|b| same_behaviour(a, b)) {
            let message = format!(
                "is identical to webhook `{}` ({}): every event would be sent twice",
                a.name,
                a.source.display()
            );
            out.push(Problem {
                webhook: Some(b.name.clone()),
                ..Problem::file(&b.source, message).with_severity(Severity::Warning)
            });
        }
    }
    out
}

/// Renders the webhook's template for the sample event of each of its triggers (all of them
/// when it has none) and reports failures and bodies that are not the JSON they claim to be.
fn render_problems(webhook: &Webhook) -> Vec<String> {
    let triggers: Vec<Trigger> = if webhook.triggers.is_empty() {
        Trigger::ALL.to_vec()
    } else {
        webhook.triggers.clone()
    };
    let mut out = Vec::new();
    for trigger in triggers {
        let sample = event::sample(trigger);
        match webhook.template.render(&sample) {
            Err(e) => out.push(format!(
                "fails to render for the sample {trigger} event: {e}"
            )),
            Ok(body) if webhook.json_body => {
                if let Some(problem) = nested_json_problem(&body) {
                    out.push(format!("for the sample {trigger} event, {problem}"));
                }
            }
            Ok(_) => {}
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// A top-level string field that looks like a JSON document (the Logz.io `message` style) but
/// does not parse as one.
fn nested_json_problem(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let object = value.as_object()?;
    for (key, field) in object {
        let Some(text) = field.as_str() else { continue };
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Err(e) = serde_json::from_str::<serde_json::Value>(text)
        {
            return Some(format!(
                "the `{key}` string looks like JSON but does not parse: {e}"
            ));
        }
    }
    None
}

/// Whether two webhooks send the same requests for the same events.
fn same_behaviour(a: &Webhook, b: &Webhook) -> bool {
    a.method == b.method
        && a.url.expose() == b.url.expose()
        && a.template_source == b.template_source
        && a.triggers == b.triggers
        && a.filters == b.filters
        && a.status == b.status
        && a.headers.len() == b.headers.len()
        && a.headers.iter().zip(&b.headers).all(|(x, y)| {
            x.name.eq_ignore_ascii_case(&y.name) && x.value.expose() == y.value.expose()
        })
        && a.auth.as_ref().map(|x| x.describe()) == b.auth.as_ref().map(|x| x.describe())
        && a.signing.is_some() == b.signing.is_some()
        && a.response_validators == b.response_validators
        && a.rate_limit == b.rate_limit
}

/// A template path written the way the schema lists it: `data.access_groups.[0].name`.
fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit()) {
                format!("[{s}]")
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The schema path closest to `path`, when it is close enough to be a typo.
fn suggest(path: &str) -> Option<String> {
    event::field_paths()
        .into_iter()
        .map(|f| (distance(path, &f.path), f.path))
        .filter(|(d, candidate)| *d <= 3.max(candidate.len() / 10))
        .min_by_key(|(d, _)| *d)
        .map(|(_, p)| p)
}

/// Levenshtein distance, for typo suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, load};

    fn config_with(webhooks: &str, relay: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("relay.toml"), relay).unwrap();
        std::fs::create_dir(dir.path().join("webhooks")).unwrap();
        std::fs::write(dir.path().join("webhooks/a.toml"), webhooks).unwrap();
        load(dir.path(), &Env::from_pairs([("TOKEN", "tok-123456")])).unwrap()
    }

    fn hook(name: &str, template: &str, extra: &str) -> String {
        format!(
            "[[webhook]]\nname = \"{name}\"\nurl = \"https://h/?token=${{TOKEN}}\"\n\
             triggers = [\"RequestApproved\"]\nbody_template = '{template}'\n{extra}\n"
        )
    }

    fn messages(config: &Config) -> Vec<String> {
        lint(config).iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn shipped_config_is_clean() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let config = load(&dir, &Env::from_pairs([("LOGZIO_TOKEN", "t0ken")])).unwrap();
        assert_eq!(messages(&config), Vec::<String>::new());
    }

    #[test]
    fn no_active_webhook_is_an_error_unless_idle_is_allowed() {
        let inactive = hook("a", "{}", "status = \"inactive\"");
        let findings = lint(&config_with(&inactive, ""));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Error);
        assert!(
            findings[0]
                .to_string()
                .contains("webhooks: no active webhook"),
            "{}",
            findings[0]
        );
        let findings = lint(&config_with("", "[policy]\nallow_idle = true\n"));
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Warning);
    }

    #[test]
    fn impossible_path_is_an_error_with_a_suggestion() {
        let config = config_with(&hook("a", r#"{"e": "{{ data.requester.mail }}"}"#, ""), "");
        let findings = lint(&config);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Error);
        assert!(
            findings[0]
                .message
                .contains("`data.requester.mail` can never exist")
                && findings[0]
                    .message
                    .contains("did you mean `data.requester.email`"),
            "{}",
            findings[0]
        );
    }

    #[test]
    fn validators_that_can_hardly_be_meant_and_parking_rate_limits_are_warned() {
        let extra = "rate_limit = \"2/m\"\n\
                     [[webhook.response_validators]]\npath = \"$.data.status\"\n\
                     expected = [\"ok\", 200]\n\
                     [[webhook.response_validators]]\npath = \"$.data.status\"\n\
                     expected = [\"200\"]\n";
        let findings = lint(&config_with(&hook("a", "{}", extra), ""));
        let fields: Vec<&str> = findings
            .iter()
            .map(|f| f.field.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            [
                "response_validators[0].expected",
                "response_validators[1].path",
                "response_validators[1].expected",
                "rate_limit"
            ],
            "{findings:?}"
        );
        assert!(findings.iter().all(|f| f.severity == Severity::Warning));
        assert!(findings[0].message.contains("mixes numbers and strings"));
        assert!(findings[2].message.contains("never equals the JSON 200"));
        assert!(findings[3].message.contains("retry queue"));
    }

    #[test]
    fn custom_fields_and_array_paths_are_fine() {
        let template = r#"{"a": "{{ data.custom_fields.ticket }}", "b": "{{ data.access_groups.[0].access_units.[0].permission.name }}"}"#;
        let config = config_with(&hook("a", template, ""), "");
        assert_eq!(messages(&config), Vec::<String>::new());
    }

    #[test]
    fn invalid_nested_json_no_triggers_duplicates_and_inline_tokens_are_warned() {
        let broken_inner = r#"{"message": "{ \"a\": {{ data.justification }} }"}"#;
        let mut text = hook("nested", broken_inner, "");
        text.push_str(
            "[[webhook]]\nname = \"silent\"\nurl = \"https://h/\"\ntriggers = []\nbody_template = '{}'\n",
        );
        text.push_str(&hook("one", "{}", ""));
        text.push_str(&hook("two", "{}", ""));
        text.push_str(
            "[[webhook]]\nname = \"inline\"\nurl = \"https://h/?token=abc123\"\ntriggers = [\"Manual\"]\nbody_template = '{}'\n",
        );
        let config = config_with(&text, "");
        let all = messages(&config);
        let has = |needle: &str| all.iter().any(|m| m.contains(needle));
        assert!(
            has(
                "webhook `nested`: body_template: for the sample RequestApproved event, the `message` string looks like JSON but does not parse"
            ),
            "{all:#?}"
        );
        assert!(
            has("webhook `silent`: triggers: the webhook has no triggers"),
            "{all:#?}"
        );
        assert!(
            has("webhook `two`: is identical to webhook `one`"),
            "{all:#?}"
        );
        assert!(
            has("webhook `inline`: url (query parameter token): holds a secret"),
            "{all:#?}"
        );
        assert!(!all.iter().any(|m| m.contains("abc123")), "{all:#?}");
    }

    #[test]
    fn batches_that_cannot_fill_are_warned() {
        let relay = "[amqp]\nprefetch = 100\n";
        let config = config_with(
            &hook("a", "{}", "[webhook.batch]\nmax_events = 200\n"),
            relay,
        );
        let all = messages(&config);
        assert!(
            all.iter()
                .any(|m| m.contains("batch.max_events: 200 is more than can be in flight")),
            "{all:#?}"
        );
    }

    #[test]
    fn retry_window_close_to_consumer_timeout_is_warned() {
        let relay = "[amqp]\nconsumer_timeout = \"12m\"\n[delivery]\nretry_window = \"10m\"\n";
        let config = config_with(&hook("a", "{}", ""), relay);
        let all = messages(&config);
        assert!(
            all.iter().any(|m| m.contains("delivery.retry_window")),
            "{all:#?}"
        );
    }
}
