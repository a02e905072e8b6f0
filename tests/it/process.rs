//! The real binary: signals, exit codes, what it prints.

use crate::binary::{Finished, Relay};
use crate::harness::{TestApp, app, child_env, closed_port, publish_ids};
use crate::support::logzio::{Scripted, TEST_TOKEN};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::path::Path;
use std::time::{Duration, Instant};
use webhook_relay::broker::Inbound;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::pipeline::outcome::Reason;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `run --config <dir>` to its end (it must exit within `WAIT`).
async fn run_to_exit<K: AsRef<str>, V: AsRef<str>>(dir: &Path, env: &[(K, V)]) -> Finished {
    Relay::run(dir, env).exit_within(WAIT).await
}

/// Waits until the queue has no ready message left (the worker took them all).
async fn wait_queue_drained(app: &TestApp, queue: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if app.ready_count(queue).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

const APPROVALS: &str = r#"
[[webhook]]
name = "approvals"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

const GRACE_10S: &str = "\n[shutdown]\ngrace = \"10s\"\n";

/// SIGTERM while deliveries wait for a slow endpoint: they finish, their messages are acked,
/// and the process exits 0 within the grace period.
#[tokio::test]
async fn sigterm_lets_in_flight_deliveries_finish_and_acks_them() {
    let app = app("sigterm-inflight")
        .webhook(APPROVALS)
        .relay_extra(GRACE_10S)
        .build()
        .await;
    app.listener().set_delay(Duration::from_secs(2));
    publish_ids(&app, "inflight", 0..3).await;
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[]));

    let requests = app.listener().wait_for_requests(3, WAIT).await;
    assert_eq!(
        requests.len(),
        3,
        "all three deliveries are in flight; stderr:\n{}",
        relay.stderr_so_far()
    );
    let signalled = Instant::now();
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    let took = signalled.elapsed();

    assert_eq!(finished.code(), Some(0), "stderr:\n{}", finished.stderr);
    assert!(took < Duration::from_secs(10), "exited within the grace");
    assert!(
        took >= Duration::from_millis(1000),
        "waited for the in-flight deliveries ({took:?})"
    );
    assert!(
        finished.stderr.contains("SIGTERM received"),
        "{}",
        finished.stderr
    );
    let delivered = finished
        .stderr
        .lines()
        .filter(|l| l.contains(" delivered "))
        .count();
    assert_eq!(delivered, 3, "stderr:\n{}", finished.stderr);
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);

    // The worker is gone: anything unacked would be back in the queue by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.ready_count(&app.config.amqp.queue).await,
        0,
        "all acked"
    );
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    assert_eq!(app.listener().requests().len(), 3, "no second attempt");
    app.finish().await;
}

/// SIGTERM while a delivery sleeps before its next attempt: the sleep is cut short, the
/// delivery is parked in its webhook's retry path with its attempt count (not dead-lettered,
/// not lost, not sent to other webhooks again), the input is acked and the process exits 0
/// at once.
#[tokio::test]
async fn sigterm_during_a_backoff_sleep_parks_the_delivery_and_exits_promptly() {
    let app = app("sigterm-backoff")
        .webhook(APPROVALS)
        .delivery(
            r#"
timeout = "5s"
max_attempts = 3
initial_backoff = "5s"
max_backoff = "10s"
max_elapsed = "60s"
retry_window = "30s"
"#,
        )
        .relay_extra(GRACE_10S)
        .build()
        .await;
    app.listener().push_response(Scripted::status(503));
    publish_ids(&app, "backoff", 0..1).await;
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[("RUST_LOG", "debug")]));

    let requests = app.listener().wait_for_requests(1, WAIT).await;
    assert_eq!(
        requests.len(),
        1,
        "first attempt made; stderr:\n{}",
        relay.stderr_so_far()
    );
    assert_eq!(requests[0].status, 503);
    // Let the worker read the 503 and start its (at least 5s) backoff sleep.
    let in_backoff = Instant::now() + WAIT;
    while !relay.stderr_so_far().contains("delivery attempt") && Instant::now() < in_backoff {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    let took = signalled.elapsed();

    assert_eq!(finished.code(), Some(0), "stderr:\n{}", finished.stderr);
    assert!(
        took < Duration::from_secs(3),
        "exited well before the 5s backoff would end ({took:?})"
    );
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.ready_count(&app.config.amqp.queue).await,
        0,
        "the input is acked"
    );
    assert_eq!(
        app.retry_path_count("approvals").await,
        1,
        "the delivery waits in the webhook's retry path"
    );
    assert_eq!(
        app.ready_count(&app.config.amqp.dead_letter_queue).await,
        0,
        "not dead-lettered"
    );
    assert_eq!(app.listener().requests().len(), 1, "no second attempt");
    app.finish().await;
}

/// Every header of a dead letter, its properties and body, as text.
fn dump_letter(letter: &Inbound) -> String {
    let mut out = format!("{:?}\n", letter.properties);
    if let Some(headers) = letter.properties.headers() {
        for (name, value) in headers.inner() {
            let value = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_string(),
                other => format!("{other:?}"),
            };
            out.push_str(&format!("{name}: {value}\n"));
        }
    }
    out.push_str(&String::from_utf8_lossy(&letter.body));
    out
}

/// Deliveries fail every way we can make them, with debug logs on: the token in the URL and a
/// secret header value appear nowhere, neither in the output nor in a dead letter.
#[tokio::test]
async fn no_token_or_secret_header_in_output_or_dead_letters() {
    const HEADER_SECRET: &str = "hdr-secret-4711-zq";
    let app = app("no-token")
        .listeners(2)
        .webhook(
            r#"
[[webhook]]
name = "echoing-500"
url = "@URL0@"
headers = { Authorization = "Bearer ${SECRET_HEADER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "closed-port"
url = "@URL1@"
headers = { Authorization = "Bearer ${SECRET_HEADER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .delivery(
            r#"
timeout = "2s"
max_attempts = 3
initial_backoff = "50ms"
max_backoff = "100ms"
max_elapsed = "10s"
"#,
        )
        .env("SECRET_HEADER", HEADER_SECRET)
        .build()
        .await;
    // Listener 1 goes away: its port is allowed but nothing listens there any more.
    app.listeners[1].shutdown().await;
    let echoed_url = app.listeners[0].url("apono");
    assert!(echoed_url.contains(TEST_TOKEN));
    for _ in 0..6 {
        app.listeners[0].push_response(
            Scripted::status(500)
                .with_header("X-Echo", format!("token={TEST_TOKEN}"))
                .with_body(format!(
                    "bad request for {echoed_url} with Authorization: Bearer {HEADER_SECRET}"
                )),
        );
    }
    publish_ids(&app, "secret", 0..2).await;
    let mut relay = Relay::run(app.config_dir(), &child_env(&app, &[("RUST_LOG", "debug")]));

    let letters = app.dead_letters(4, WAIT).await;
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_eq!(
        letters.len(),
        4,
        "two events × two webhooks dead-lettered; stderr:\n{}",
        finished.stderr
    );
    assert_eq!(finished.code(), Some(0));
    assert_eq!(
        app.listeners[0].requests().len(),
        6,
        "3 attempts × 2 events"
    );

    let mut dumps = String::new();
    for letter in &letters {
        let info = DeadLetterInfo::from_properties(&letter.properties);
        assert_eq!(info.reason, Some(Reason::DeliveryFailed), "{info:?}");
        assert_eq!(info.attempts, Some(3), "{info:?}");
        let error = info.last_error.clone().unwrap_or_default();
        match info.webhook.as_deref() {
            Some("echoing-500") => {
                assert_eq!(info.last_status, Some(500));
                // The echo arrived and was masked, not dropped.
                assert!(error.starts_with("http 500"), "{error}");
                assert!(error.contains("token=***"), "{error}");
                assert!(error.contains("Authorization: ***"), "{error}");
            }
            Some("closed-port") => {
                assert_eq!(info.last_status, None);
                assert!(!error.is_empty());
            }
            other => panic!("unexpected webhook {other:?}"),
        }
        dumps.push_str(&dump_letter(letter));
        dumps.push('\n');
    }

    assert!(
        finished.stderr.contains("delivery attempt"),
        "debug logs are on: {}",
        finished.stderr
    );
    for (place, text) in [
        ("stdout", &finished.stdout),
        ("stderr", &finished.stderr),
        ("dead letters", &dumps),
    ] {
        for secret in [TEST_TOKEN, HEADER_SECRET] {
            let leaks: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
            assert!(
                leaks.is_empty(),
                "`{secret}` leaked into {place}:\n{}",
                leaks.join("\n")
            );
        }
    }
    app.finish().await;
}

// ---- No broker needed: config folders written by hand. ----

const SECRET_TOKEN: &str = "cfg-token-secret-42";
const SECRET_HEADER: &str = "cfg-header-secret-99";
const SECRET_AMQP_PASSWORD: &str = "cfg-amqp-pw-77";

/// `relay.toml` pointing at a broker on `port` (closed: a config that loads exits 1, never
/// touching the shared broker), with `extra` inserted into `[amqp]`.
fn relay_toml(port: u16, amqp_extra: &str) -> String {
    format!(
        r#"[amqp]
url = "amqp://guest:${{AMQP_PASSWORD}}@127.0.0.1:{port}/%2f"
exchange = "it-process-unused"
queue = "it-process-unused.in"
dead_letter_queue = "it-process-unused.dlq"
{amqp_extra}

[policy]
allowed_ports = [8443]

[server]
listen = ""

[log]
format = "pretty"
"#
    )
}

/// Writes a config folder: relay.toml and the given webhook files.
fn write_config(dir: &Path, relay: &str, webhooks: &[(&str, &str)]) {
    std::fs::write(dir.join("relay.toml"), relay).unwrap();
    std::fs::create_dir_all(dir.join("webhooks")).unwrap();
    for (name, text) in webhooks {
        std::fs::write(dir.join("webhooks").join(name), text).unwrap();
    }
}

fn secret_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LOGZIO_TOKEN", SECRET_TOKEN),
        ("SECRET_HEADER", SECRET_HEADER),
        ("AMQP_PASSWORD", SECRET_AMQP_PASSWORD),
    ]
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!(
        r#"[[webhook]]
name = "{name}"
url = "{url}"
headers = {{ Authorization = "Bearer ${{SECRET_HEADER}}" }}
triggers = ["RequestApproved"]
body_template = '{{"id": "{{{{ data.id }}}}"}}'
{extra}
"#
    )
}

fn assert_no_secret(place: &str, text: &str) {
    for secret in [SECRET_TOKEN, SECRET_HEADER, SECRET_AMQP_PASSWORD] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into {place}:\n{text}"
        );
    }
}

/// One broken config folder and what its error line must name.
struct ConfigCase {
    what: &'static str,
    relay: String,
    webhooks: Vec<(&'static str, String)>,
    /// The file named, relative to the config folder.
    file: &'static str,
    /// The webhook named, and the field of it (as `webhook \`w\`: field:`).
    webhook_field: Option<(&'static str, &'static str)>,
    /// Other words the line must contain.
    words: Vec<&'static str>,
}

/// A valid webhook `name` whose URL carries the token, edited by `edit`.
fn hook_with(name: &str, edit: impl FnOnce(String) -> String) -> String {
    edit(webhook(
        name,
        "https://127.0.0.1/?token=${LOGZIO_TOKEN}",
        "",
    ))
}

/// Each broken config: exit 2 and one line naming the file, the webhook and the field.
#[tokio::test]
async fn config_errors_exit_2_with_one_clear_line_each() {
    let port = closed_port();
    let relay = || relay_toml(port, "");
    let cases = vec![
        ConfigCase {
            what: "unknown key in relay.toml",
            relay: relay_toml(port, "prefetchh = 10"),
            webhooks: vec![("a.toml", hook_with("good", |h| h))],
            file: "relay.toml",
            webhook_field: None,
            words: vec!["prefetchh"],
        },
        ConfigCase {
            what: "duplicate webhook name",
            relay: relay(),
            webhooks: vec![
                ("a.toml", hook_with("twice", |h| h)),
                ("b.toml", hook_with("twice", |h| h)),
            ],
            file: "webhooks/b.toml",
            webhook_field: Some(("twice", "name")),
            words: vec!["a.toml"],
        },
        ConfigCase {
            what: "bad trigger",
            relay: relay(),
            webhooks: vec![(
                "a.toml",
                hook_with("bad-trigger", |h| {
                    h.replace("\"RequestApproved\"", "\"RequestAproved\"")
                }),
            )],
            file: "webhooks/a.toml",
            webhook_field: Some(("bad-trigger", "triggers")),
            words: vec!["RequestAproved"],
        },
        ConfigCase {
            what: "non-HTTPS URL",
            relay: relay(),
            webhooks: vec![(
                "a.toml",
                hook_with("plain-http", |h| h.replace("https://", "http://")),
            )],
            file: "webhooks/a.toml",
            webhook_field: Some(("plain-http", "url")),
            words: vec!["https", "token=***"],
        },
        ConfigCase {
            what: "port not allowed",
            relay: relay(),
            webhooks: vec![(
                "a.toml",
                hook_with("odd-port", |h| h.replace("127.0.0.1/", "127.0.0.1:8071/")),
            )],
            file: "webhooks/a.toml",
            webhook_field: Some(("odd-port", "url")),
            words: vec!["8071", "allowed_ports", "token=***"],
        },
        ConfigCase {
            what: "unset variable",
            relay: relay(),
            webhooks: vec![(
                "a.toml",
                hook_with("unset-var", |h| {
                    h.replace("LOGZIO_TOKEN", "NOT_SET_ANYWHERE")
                }),
            )],
            file: "webhooks/a.toml",
            webhook_field: Some(("unset-var", "url")),
            words: vec!["NOT_SET_ANYWHERE"],
        },
        ConfigCase {
            what: "template that does not compile",
            relay: relay(),
            webhooks: vec![(
                "a.toml",
                hook_with("bad-template", |h| {
                    h.replace("{{ data.id }}", "{{#if data.id}}")
                }),
            )],
            file: "webhooks/a.toml",
            webhook_field: Some(("bad-template", "body_template")),
            words: vec![],
        },
    ];

    for case in cases {
        let what = case.what;
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(&str, &str)> = case
            .webhooks
            .iter()
            .map(|(n, t)| (*n, t.as_str()))
            .collect();
        write_config(dir.path(), &case.relay, &files);
        let finished = run_to_exit(dir.path(), &secret_env()).await;
        let stderr = &finished.stderr;
        assert_eq!(
            finished.code(),
            Some(2),
            "{what}: exit code; stderr:\n{stderr}"
        );
        let lines = finished.stderr_lines();
        assert_eq!(lines.len(), 1, "{what}: one line; stderr:\n{stderr}");
        let line = lines[0];
        assert!(line.starts_with("error: "), "{what}: {line}");
        let path = dir.path().join(case.file);
        assert!(
            line.contains(&format!("{}: ", path.display())),
            "{what}: names {}: {line}",
            path.display()
        );
        if let Some((name, field)) = case.webhook_field {
            assert!(
                line.contains(&format!("webhook `{name}`: {field}: ")),
                "{what}: names the webhook and the field: {line}"
            );
        }
        for word in case.words {
            assert!(line.contains(word), "{what}: mentions `{word}`: {line}");
        }
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(
            finished.stdout.is_empty(),
            "{what}: stdout: {}",
            finished.stdout
        );
        assert_no_secret(what, stderr);
    }
}

/// A broker that is not there: exit 1, one clear error line naming it with the password
/// masked.
#[tokio::test]
async fn broker_unreachable_exits_1_with_one_clear_line() {
    let port = closed_port();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay_toml(port, "");
    let hook = webhook("good", "https://127.0.0.1/?token=${LOGZIO_TOKEN}", "");
    write_config(dir.path(), &relay, &[("a.toml", &hook)]);

    let started = Instant::now();
    let finished = run_to_exit(dir.path(), &secret_env()).await;
    let stderr = &finished.stderr;
    assert_eq!(finished.code(), Some(1), "stderr:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // At the default log level nothing else is printed: the error is said once, not also as
    // a log line.
    let lines = finished.stderr_lines();
    assert_eq!(lines.len(), 1, "one line; stderr:\n{stderr}");
    let masked = format!("amqp://guest:***@127.0.0.1:{port}");
    assert!(
        lines[0].starts_with("error: cannot connect to the broker at ")
            && lines[0].contains(&masked),
        "names the broker, password masked: {}",
        lines[0]
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_secret("stderr", stderr);
    assert_no_secret("stdout", &finished.stdout);
}

/// `--config` and `WEBHOOK_RELAY_CONFIG` both pick the folder; `--config` wins over the
/// variable.
#[tokio::test]
async fn config_folder_comes_from_flag_or_environment() {
    let port = closed_port();
    let from_flag = tempfile::tempdir().unwrap();
    let from_env = tempfile::tempdir().unwrap();
    // Invalid in a recognisable way: an unknown key.
    for dir in [&from_flag, &from_env] {
        write_config(dir.path(), &relay_toml(port, "nonsense = 1"), &[]);
    }
    let relay_of = |dir: &tempfile::TempDir| dir.path().join("relay.toml").display().to_string();

    let by_flag = run_to_exit(from_flag.path(), &secret_env()).await;
    assert_eq!(by_flag.code(), Some(2), "{}", by_flag.stderr);
    assert!(
        by_flag.stderr.contains(&relay_of(&from_flag)),
        "{}",
        by_flag.stderr
    );

    let mut env = secret_env();
    let env_dir = from_env.path().to_str().unwrap().to_string();
    env.push(("WEBHOOK_RELAY_CONFIG", &env_dir));
    let by_env = Relay::spawn(&["run"], &env).exit_within(WAIT).await;
    assert_eq!(by_env.code(), Some(2), "{}", by_env.stderr);
    assert!(
        by_env.stderr.contains(&relay_of(&from_env)),
        "{}",
        by_env.stderr
    );

    let both = run_to_exit(from_flag.path(), &env).await;
    assert_eq!(both.code(), Some(2), "{}", both.stderr);
    assert!(
        both.stderr.contains(&relay_of(&from_flag)),
        "{}",
        both.stderr
    );
    assert!(
        !both.stderr.contains(&relay_of(&from_env)),
        "{}",
        both.stderr
    );
}

/// `RELAY__AMQP__URL` reaches the binary: the error names the overriding broker's port, not
/// the file's.
#[tokio::test]
async fn env_override_of_the_broker_url_reaches_the_binary() {
    let file_port = closed_port();
    let env_port = loop {
        let port = closed_port();
        if port != file_port {
            break port;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let hook = webhook("good", "https://127.0.0.1/?token=${LOGZIO_TOKEN}", "");
    write_config(dir.path(), &relay_toml(file_port, ""), &[("a.toml", &hook)]);
    let mut env = secret_env();
    let url = format!("amqp://guest:{SECRET_AMQP_PASSWORD}@127.0.0.1:{env_port}/%2f");
    env.push(("RELAY__AMQP__URL", &url));

    let finished = run_to_exit(dir.path(), &env).await;
    assert_eq!(finished.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains(&format!("amqp://guest:***@127.0.0.1:{env_port}")),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains(&format!(":{file_port}")),
        "{}",
        finished.stderr
    );
    assert_no_secret("stderr", &finished.stderr);
}

/// `RELAY__AMQP__QUEUE` reaches the binary end to end: the worker consumes the queue the
/// variable names, not the file's.
#[tokio::test]
async fn env_override_of_the_queue_reaches_the_binary() {
    let app = app("env-queue").webhook(APPROVALS).build().await;
    let amqp = &app.config.amqp;
    let other = format!("{}.from-env", amqp.queue);
    // Declared (with the input queue's arguments) and bound as the worker would, before
    // publishing, so the event reaches it.
    let channel = app.admin.channel();
    channel
        .queue_declare(
            other.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            webhook_relay::broker::topology::input_queue_arguments(amqp.into()),
        )
        .await
        .expect("declare the override queue");
    channel
        .queue_bind(
            other.as_str().into(),
            amqp.exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind the override queue");
    app.publish(&sample(Trigger::RequestApproved)).await;

    let mut relay = Relay::run(
        app.config_dir(),
        &child_env(&app, &[("RELAY__AMQP__QUEUE", other.as_str())]),
    );
    let requests = app.listener().wait_for_requests(1, WAIT).await;
    let drained = wait_queue_drained(&app, &other, WAIT).await;
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_eq!(requests.len(), 1, "delivered; stderr:\n{}", finished.stderr);
    assert!(drained, "the override queue was consumed");
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr);
    assert!(
        finished.stderr.contains(&format!("queue={other}")),
        "the worker names the queue it consumes:\n{}",
        finished.stderr
    );
    assert_eq!(
        app.ready_count(&amqp.queue).await,
        1,
        "the file's queue was not consumed"
    );
    let mut overridden = amqp.clone();
    overridden.queue = other.clone();
    app.admin
        .delete_topology(&overridden, &app.config.webhooks)
        .await
        .expect("delete the override queue and its retry path");
    app.finish().await;
}
