use super::*;
use std::fs;

const RELAY: &str = r#"
[amqp]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
exchange = "file-exchange"
queue = "file-queue"
dead_letter_queue = "file-dlq"
prefetch = 16
declare = true

[delivery]
timeout = "5s"
max_attempts = 4
initial_backoff = "100ms"
max_backoff = "2s"
max_elapsed = "1m"

[policy]
require_https = true
allowed_ports = []
"#;

const WEBHOOK: &str = r#"
[[webhook]]
name = "logzio-audit"
url = "https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono"
triggers = ["RequestApproved", "AccessRequestCreated"]
body_template = '{"message": "{{ data.id }}"}'
[webhook.filters]
integration_names = ["prod-postgres"]
[webhook.delivery]
max_attempts = 3
"#;

fn dir_with(relay: &str, webhooks: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("relay.toml"), relay).unwrap();
    fs::create_dir(dir.path().join("webhooks")).unwrap();
    for (name, text) in webhooks {
        fs::write(dir.path().join("webhooks").join(name), text).unwrap();
    }
    dir
}

fn env() -> Env {
    Env::from_pairs([("LOGZIO_TOKEN", "tok-abcdef")])
}

fn problems(dir: &tempfile::TempDir, env: &Env) -> String {
    load(dir.path(), env).unwrap_err().to_string()
}

#[test]
fn loads_the_file_and_merges_delivery_overrides() {
    let dir = dir_with(RELAY, &[("a.toml", WEBHOOK)]);
    let config = load(dir.path(), &env()).unwrap();
    assert_eq!(config.amqp.queue, "file-queue");
    assert_eq!(config.amqp.prefetch, 16);
    assert_eq!(
        config.amqp.url_redacted,
        "amqp://guest:***@127.0.0.1:5672/%2f"
    );
    let hook = config.webhook("logzio-audit").unwrap();
    assert_eq!(hook.delivery.max_attempts, 3, "webhook override");
    assert_eq!(
        hook.delivery.timeout,
        Duration::from_secs(5),
        "relay default"
    );
    assert_eq!(
        hook.url.redacted(),
        "https://listener.logz.io/?token=***&type=apono"
    );
    assert_eq!(
        hook.url.expose().as_str(),
        "https://listener.logz.io/?token=tok-abcdef&type=apono"
    );
    assert!(hook.json_body, "Content-Type defaults to application/json");
    assert_eq!(hook.triggers.len(), 2);
    assert!(config.redactor.leaks("x tok-abcdef y"));
    assert!(
        !format!("{config:?}").contains("tok-abcdef"),
        "Debug leaks the token"
    );
}

/// Every documented env override really replaces the file's value.
#[test]
fn each_env_override_replaces_the_file_value() {
    let dir = dir_with(RELAY, &[]);
    type Read = fn(&Config) -> String;
    let cases: &[(&str, &str, Read)] = &[
        ("RELAY__AMQP__URL", "amqp://u:p4ss@10.0.0.1:5673/v", |c| {
            c.amqp.url.expose().clone()
        }),
        ("RELAY__AMQP__EXCHANGE", "env-exchange", |c| {
            c.amqp.exchange.clone()
        }),
        ("RELAY__AMQP__QUEUE", "env-queue", |c| c.amqp.queue.clone()),
        ("RELAY__AMQP__DEAD_LETTER_QUEUE", "env-dlq", |c| {
            c.amqp.dead_letter_queue.clone()
        }),
        ("RELAY__AMQP__PREFETCH", "7", |c| {
            c.amqp.prefetch.to_string()
        }),
        ("RELAY__AMQP__DECLARE", "false", |c| {
            c.amqp.declare.to_string()
        }),
        ("RELAY__DELIVERY__TIMEOUT", "3s", |c| {
            show_duration(c.delivery.timeout)
        }),
        ("RELAY__DELIVERY__MAX_ATTEMPTS", "2", |c| {
            c.delivery.max_attempts.to_string()
        }),
        ("RELAY__DELIVERY__INITIAL_BACKOFF", "50ms", |c| {
            show_duration(c.delivery.initial_backoff)
        }),
        ("RELAY__DELIVERY__MAX_BACKOFF", "1s", |c| {
            show_duration(c.delivery.max_backoff)
        }),
        ("RELAY__DELIVERY__MAX_ELAPSED", "30s", |c| {
            show_duration(c.delivery.max_elapsed)
        }),
        ("RELAY__POLICY__REQUIRE_HTTPS", "false", |c| {
            c.policy.require_https.to_string()
        }),
        ("RELAY__POLICY__ALLOWED_PORTS", "8071,8443", |c| {
            format!("{:?}", c.policy.allowed_ports)
        }),
        ("RELAY__SHUTDOWN__GRACE", "5s", |c| {
            show_duration(c.shutdown.grace)
        }),
    ];
    for (name, value, read) in cases {
        let base = load(dir.path(), &env()).unwrap();
        let mut overridden_env = env();
        overridden_env.set(*name, *value);
        let overridden =
            load(dir.path(), &overridden_env).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        assert_ne!(read(&base), read(&overridden), "{name} changed nothing");
        let expected = match *name {
            "RELAY__POLICY__ALLOWED_PORTS" => "[8071, 8443]",
            _ => value,
        };
        assert_eq!(read(&overridden), expected, "{name}");
    }
}

#[test]
fn misspelled_overrides_are_reported_not_silently_ignored() {
    let dir = dir_with(RELAY, &[]);
    let mut e = env();
    e.set("RELAY_AMQP__QUEUE", "x");
    let config = load(dir.path(), &e).unwrap();
    assert_eq!(config.amqp.queue, "file-queue");
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`RELAY_AMQP__QUEUE` is ignored")),
        "{warnings:?}"
    );

    let mut e = env();
    e.set("RELAY__AMQP__QUEU", "x");
    let err = problems(&dir, &e);
    assert!(err.contains("queu"), "{err}");
}

#[test]
fn unknown_key_in_relay_toml_names_the_file() {
    let dir = dir_with(&format!("{RELAY}\n[amqp2]\nx = 1\n"), &[]);
    let err = problems(&dir, &env());
    assert!(err.contains("relay.toml") && err.contains("amqp2"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn retry_window_must_stay_below_consumer_timeout() {
    let relay = RELAY.replace(
        "max_elapsed = \"1m\"",
        "max_elapsed = \"2h\"\nretry_window = \"30m\"",
    );
    let dir = dir_with(&relay, &[]);
    let err = problems(&dir, &env());
    assert!(
        err.contains("delivery.retry_window") && err.contains("consumer timeout"),
        "{err}"
    );
}

#[test]
fn missing_relay_toml() {
    let dir = tempfile::tempdir().unwrap();
    let err = problems_of(dir.path());
    assert!(err.contains("relay.toml: not found"), "{err}");
}

fn problems_of(path: &Path) -> String {
    load(path, &env()).unwrap_err().to_string()
}

#[test]
fn webhook_problems_name_file_webhook_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "url = \"https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono\"",
            "url = \"https://listener.logz.io/?token=${NOT_SET}\"",
            "url: environment variable `NOT_SET` is not set",
        ),
        (
            "url = \"https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono\"",
            "url = \"http://listener.logz.io/?token=${LOGZIO_TOKEN}\"",
            "url: `http://listener.logz.io/?token=***` is not HTTPS",
        ),
        (
            "url = \"https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono\"",
            "url = \"https://listener.logz.io:8071/?token=${LOGZIO_TOKEN}\"",
            "port 8071 is not allowed",
        ),
        (
            "\"RequestApproved\"",
            "\"RequestApprove\"",
            "triggers: unknown trigger `RequestApprove`",
        ),
        (
            "max_attempts = 3",
            "max_attempts = \"three\"",
            "delivery.max_attempts: invalid type",
        ),
        (
            "[webhook.filters]",
            "colour = 1\n[webhook.filters]",
            "colour",
        ),
        (
            "max_attempts = 3",
            "max_attempts = 0",
            "delivery.max_attempts",
        ),
        (
            "integration_names = [\"prod-postgres\"]",
            "integration_names = []",
            "filters.integration_names",
        ),
    ];
    for (from, to, expected) in cases {
        let text = WEBHOOK.replace(from, to);
        assert_ne!(text, WEBHOOK, "case {to} did not apply");
        let dir = dir_with(RELAY, &[("hooks.toml", &text)]);
        let err = problems(&dir, &env());
        assert!(err.contains(expected), "{to}: {err}");
        assert!(err.contains("hooks.toml"), "{to}: {err}");
        assert!(err.contains("logzio-audit"), "{to}: {err}");
        assert!(!err.contains("tok-abcdef"), "{to}: {err}");
        assert_eq!(err.lines().count(), 1, "{to}: {err}");
    }
}

#[test]
fn template_that_does_not_compile() {
    let text = WEBHOOK.replace("{{ data.id }}", "{{#if data.id}}");
    let dir = dir_with(RELAY, &[("hooks.toml", &text)]);
    let err = problems(&dir, &env());
    assert!(
        err.contains("hooks.toml: webhook `logzio-audit`: body_template:"),
        "{err}"
    );
}

#[test]
fn duplicate_names_across_files() {
    let dir = dir_with(RELAY, &[("a.toml", WEBHOOK), ("b.toml", WEBHOOK)]);
    let err = problems(&dir, &env());
    assert!(
        err.contains("b.toml: webhook `logzio-audit`: name: is already used by a webhook in")
            && err.contains("a.toml"),
        "{err}"
    );
}

#[test]
fn files_are_concatenated_not_replaced() {
    let second = WEBHOOK.replace("logzio-audit", "second");
    let dir = dir_with(RELAY, &[("a.toml", WEBHOOK), ("b.toml", &second)]);
    let config = load(dir.path(), &env()).unwrap();
    let names: Vec<&str> = config.webhooks.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["logzio-audit", "second"]);
}

#[test]
fn secret_headers_are_redacted_and_registered() {
    let text = WEBHOOK.replace(
        "triggers",
        "headers = { Authorization = \"Bearer s3cr3t-value\", X-Team = \"sec\" }\ntriggers",
    );
    let dir = dir_with(RELAY, &[("a.toml", &text)]);
    let config = load(dir.path(), &env()).unwrap();
    let hook = config.webhook("logzio-audit").unwrap();
    let auth = hook
        .headers
        .iter()
        .find(|h| h.name == "Authorization")
        .unwrap();
    assert_eq!(auth.shown_value(), "***");
    let team = hook.headers.iter().find(|h| h.name == "X-Team").unwrap();
    assert_eq!(team.shown_value(), "sec");
    assert_eq!(
        config.redactor.scrub("got Bearer s3cr3t-value back"),
        "got *** back"
    );
}

#[test]
fn shipped_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = load(&dir, &env()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.webhook("logzio-audit").is_some());
}

/// A mistyped or invalid override is reported by key and variable, never with its value.
#[test]
fn override_errors_name_the_variable_not_the_value() {
    let dir = dir_with(RELAY, &[]);
    let cases = [
        ("RELAY__AMQP__URLS", "amqp://u:envleak-pw@h", "amqp.urls"),
        ("RELAY__AMQP__PREFETCH", "envleak-prefetch", "amqp.prefetch"),
        ("RELAY__DELIVERY__TIMEOUT", "envleak-5x", "delivery.timeout"),
        (
            "RELAY__POLICY__ALLOWED_PORTS",
            "8071,envleak",
            "policy.allowed_ports",
        ),
        (
            "RELAY__AMQP__QUEUE_TYPE",
            "envleak-quorom",
            "amqp.queue_type",
        ),
        (
            "RELAY__AMQP__URL",
            "http://u:envleak-pw@envleak-host/",
            "amqp.url",
        ),
    ];
    for (name, value, key) in cases {
        let mut e = env();
        e.set(name, value);
        let err = problems(&dir, &e);
        assert!(!err.contains("envleak"), "{name}: {err}");
        assert!(err.contains(key), "{name}: {err}");
        assert!(err.contains(name), "{name} is named: {err}");
        assert!(err.contains("relay.toml"), "{name}: {err}");
    }
    let mut e = env();
    e.set("RELAY__AMQP__PREFETCH", "x");
    let err = problems(&dir, &e);
    assert!(
        err.contains("expected an integer, found a string"),
        "the expected type is said: {err}"
    );
}

/// Values in secret positions of the files are not quoted back either.
#[test]
fn file_errors_in_secret_positions_do_not_quote_the_value() {
    let relay = RELAY.replace(
        "declare = true",
        "declare = true\nurls = \"amqp://u:fileleak@h\"",
    );
    let dir = dir_with(&relay, &[]);
    let err = problems(&dir, &env());
    assert!(
        err.contains("amqp.urls") && err.contains("expected a sequence"),
        "{err}"
    );
    assert!(!err.contains("fileleak"), "{err}");

    let broken = RELAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        "url = \"amqp://guest:fileleak@127.0.0.1:5672/%2f",
    );
    let dir = dir_with(&broken, &[]);
    let err = problems(&dir, &env());
    assert!(err.contains("relay.toml: line 3:"), "{err}");
    assert!(!err.contains("fileleak"), "{err}");

    for (from, to, field) in [
        (
            "triggers",
            "headers = \"Authorization: Bearer fileleak\"\ntriggers",
            "headers",
        ),
        (
            "triggers",
            "headers = { X-Api-Key = 12345678 }\ntriggers",
            "headers.X-Api-Key",
        ),
    ] {
        let text = WEBHOOK.replace(from, to);
        let dir = dir_with(RELAY, &[("a.toml", &text)]);
        let err = problems(&dir, &env());
        assert!(err.contains(&format!("{field}: invalid type")), "{err}");
        assert!(
            !err.contains("fileleak") && !err.contains("12345678"),
            "{err}"
        );
    }
}

/// Every `${VAR}`, wherever it sits in a URL, is masked in the URL's shown form and known to
/// the redactor, and so are inline credentials; short ones are warned about.
#[test]
fn every_url_secret_is_masked_and_registered() {
    let text = WEBHOOK.replace(
        "url = \"https://listener.logz.io/?token=${LOGZIO_TOKEN}&type=apono\"",
        "url = \"https://user:inline-pw@${HOST}/${SEGMENT}/x?token=inline-token&k=${SHORT}#${FRAG}\"\n\
         headers = { X-Path = \"${HDR}\", Authorization = \"Bearer inline-bearer\" }",
    );
    let dir = dir_with(
        &RELAY.replace(
            "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            "url = \"amqp://guest:${AMQP_PW}@${AMQP_HOST}:5672/%2f\"",
        ),
        &[("a.toml", &text)],
    );
    let mut e = env();
    for (name, value) in [
        ("HOST", "secret-host.example"),
        ("SEGMENT", "path-secret"),
        ("SHORT", "Zq"),
        ("FRAG", "frag-secret"),
        ("HDR", "header-secret"),
        ("AMQP_PW", "amqp-secret"),
        ("AMQP_HOST", "broker-host"),
    ] {
        e.set(name, value);
    }
    let config = load(dir.path(), &e).unwrap_or_else(|e| panic!("{e}"));
    let hook = config.webhook("logzio-audit").unwrap();
    assert_eq!(
        hook.url.redacted(),
        "https://user:***@***/***/x?token=***&k=***#***"
    );
    assert_eq!(config.amqp.url_redacted, "amqp://guest:***@***:5672/%2f");
    for secret in [
        "inline-pw",
        "secret-host.example",
        "path-secret",
        "inline-token",
        "frag-secret",
        "header-secret",
        "inline-bearer",
        "amqp-secret",
        "broker-host",
    ] {
        assert_eq!(
            config.redactor.scrub(&format!("x {secret} y")),
            "x *** y",
            "{secret} is registered"
        );
    }
    assert_eq!(
        config.redactor.scrub(&format!("GET {}", hook.url.expose())),
        "GET https://user:***@***/***/x?token=***&k=***#***"
    );
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.iter().any(|w| w
            .contains("webhook `logzio-audit`: url: `${SHORT}` is a secret shorter than 4 bytes")),
        "{warnings:?}"
    );
    assert!(!warnings.iter().any(|w| w.contains("Zq")), "{warnings:?}");
}

/// `Debug` of everything that holds a raw URL, a header value or the environment is
/// redacted.
#[test]
fn debug_never_shows_secrets() {
    let text = WEBHOOK.replace(
        "triggers",
        "headers = { Authorization = \"Bearer debug-bearer\" }\ntriggers",
    );
    let dir = dir_with(
        &RELAY.replace("guest:guest", "guest:debug-amqp-pw"),
        &[("a.toml", &text)],
    );
    let config = load(dir.path(), &env()).unwrap_or_else(|e| panic!("{e}"));
    let raw = source::read_relay(&dir.path().join("relay.toml"), &env()).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let spec: webhook::WebhookSpec = table["webhook"][0].clone().try_into().unwrap();
    for (what, shown) in [
        ("Config", format!("{config:?}")),
        ("RawRelay", format!("{raw:?}")),
        ("WebhookSpec", format!("{spec:?}")),
        ("Env", format!("{:?}", env())),
    ] {
        for secret in ["tok-abcdef", "debug-bearer", "debug-amqp-pw"] {
            assert!(
                !shown.contains(secret),
                "{what} Debug shows {secret}: {shown}"
            );
        }
    }
}

/// A variable holding the whole broker URL shows like a written URL: password masked, host
/// shown; the whole value is still a secret.
#[test]
fn a_whole_url_variable_shows_redacted_not_masked() {
    let relay = RELAY.replace(
        "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
        "url = \"${AMQP_URL}\"",
    );
    let dir = dir_with(&relay, &[]);
    let mut e = env();
    e.set(
        "AMQP_URL",
        "amqp://relay:whole-url-pw@broker.internal:5672/%2f",
    );
    let config = load(dir.path(), &e).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.amqp.url_redacted,
        "amqp://relay:***@broker.internal:5672/%2f"
    );
    assert_eq!(config.redactor.scrub("pw whole-url-pw"), "pw ***");
}
