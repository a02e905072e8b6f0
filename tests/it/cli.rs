//! The operator commands through the real binary: `check`, `webhooks`, `render`, `test`,
//! `publish` and `dlq list | show | replay | purge`, against the real broker and local HTTPS
//! listeners. Each run gets `--config <the test's folder>` and exactly the harness's variables.

use crate::binary::{Finished, Relay};
use crate::harness::{TestApp, app, child_env, sample_with, shipped_logzio_webhook};
use crate::support::logzio::{Scripted, TEST_TOKEN};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::pipeline::event::Trigger;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `webhook-relay <args> --config <the app's folder>` with the harness's variables plus
/// `extra` (a later value wins), and waits for it to exit.
async fn cli(app: &TestApp, args: &[&str], extra: &[(&str, &str)]) -> Finished {
    cli_in(app, app.config_dir(), args, extra, None).await
}

/// [`cli`] with another config folder and optional stdin.
async fn cli_in(
    app: &TestApp,
    dir: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
    stdin: Option<&str>,
) -> Finished {
    let dir = dir.to_str().expect("temp dir path is UTF-8");
    let mut all = args.to_vec();
    all.extend(["--config", dir]);
    let finished = Relay::spawn_with_stdin(
        &all,
        &child_env(app, extra),
        stdin.map(|s| s.as_bytes().to_vec()),
    )
    .exit_within(WAIT)
    .await;
    let shown = format!("{}\n{}", finished.stdout, finished.stderr);
    assert!(
        !shown.contains(TEST_TOKEN),
        "`webhook-relay {}` printed the token:\n{shown}",
        args.join(" ")
    );
    assert!(!shown.contains("panicked"), "{shown}");
    finished
}

/// The JSON a `--json` run printed.
fn json(finished: &Finished) -> Value {
    serde_json::from_str(&finished.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            finished.stdout, finished.stderr
        )
    })
}

/// Asserts the exit code, showing what was printed when it is wrong.
#[track_caller]
fn assert_exit(finished: &Finished, code: i32) {
    assert_eq!(
        finished.code(),
        Some(code),
        "exit code; stdout:\n{}\nstderr:\n{}",
        finished.stdout,
        finished.stderr
    );
}

/// Waits until `queue` holds `n` ready messages; returns the last count seen.
async fn wait_ready(app: &TestApp, queue: &str, n: u32) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = app.ready_count(queue).await;
        if count == n || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn dlq(app: &TestApp) -> String {
    app.config.amqp.dead_letter_queue.clone()
}

/// A sample event of `trigger` with its own `data.id`.
fn event(trigger: Trigger, id: &str) -> Value {
    sample_with(trigger, |e| e["data"]["id"] = id.into())
}

/// The event id the relay gives `event` (no message id): `data.id:event_type:event_time`.
fn event_id(event: &Value) -> String {
    webhook_relay::pipeline::event::decode(event.to_string().as_bytes(), None)
        .expect("a valid event")
        .id
        .0
}

/// `dlq list --json` as a value, asserting it exits 0.
async fn dlq_list_json(app: &TestApp) -> Value {
    let listed = cli(app, &["--json", "dlq", "list"], &[]).await;
    assert_exit(&listed, 0);
    json(&listed)
}

/// Copies the app's config folder, with every webhook file passed through `edit`.
fn edited_config(app: &TestApp, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let from = app.config_dir();
    std::fs::copy(from.join("relay.toml"), copy.path().join("relay.toml")).unwrap();
    std::fs::copy(from.join("ca.pem"), copy.path().join("ca.pem")).unwrap();
    std::fs::create_dir(copy.path().join("webhooks")).unwrap();
    for file in std::fs::read_dir(from.join("webhooks")).unwrap() {
        let file = file.unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        std::fs::write(
            copy.path().join("webhooks").join(file.file_name()),
            edit(text),
        )
        .unwrap();
    }
    copy
}

const APPROVALS: &str = r#"
[[webhook]]
name = "approvals"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "email": "{{ data.requester.email }}"}'
"#;

// ---- check ----

/// `check`: 0 for a clean config; 1 for a template path that can never exist, on one line
/// naming file, webhook and field; warnings alone still exit 0; `--json` says the same.
#[tokio::test]
async fn check_exit_codes_and_one_line_per_problem() {
    let app = app("cli-check").webhook(APPROVALS).build().await;
    let dir = app.config_dir();

    let clean = cli(&app, &["check"], &[]).await;
    assert_exit(&clean, 0);
    let last = clean.stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ok ") && last.contains("1 webhook (1 active), 0 errors, 0 warnings"),
        "{}",
        clean.stdout
    );

    // An impossible path: an error naming file, webhook and field.
    let typo = dir.join("webhooks/01.toml");
    std::fs::write(
        &typo,
        r#"
[[webhook]]
name = "mail-typo"
url = "@URL@"
triggers = ["RequestCreated"]
body_template = '{"email": "{{ data.requester.mail }}"}'
"#
        .replace(
            "@URL@",
            &app.listener()
                .url("apono")
                .replace(TEST_TOKEN, "${LOGZIO_TOKEN}"),
        ),
    )
    .unwrap();
    let failed = cli(&app, &["check"], &[]).await;
    assert_exit(&failed, 1);
    let errors: Vec<&str> = failed
        .stdout
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", failed.stdout);
    let expected = format!(
        "error: {}: webhook `mail-typo`: body_template: `data.requester.mail` can never exist",
        typo.display()
    );
    assert!(errors[0].starts_with(&expected), "{}", errors[0]);
    assert!(
        errors[0].contains("did you mean `data.requester.email`"),
        "{}",
        errors[0]
    );
    assert!(
        failed.stdout.lines().last().unwrap().starts_with("failed "),
        "{}",
        failed.stdout
    );
    let report = json(&cli(&app, &["--json", "check"], &[]).await);
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["errors"], 1, "{report:#}");
    let finding = &report["findings"][0];
    assert_eq!(finding["severity"], "error", "{report:#}");
    assert_eq!(finding["file"], typo.display().to_string());
    assert_eq!(finding["webhook"], "mail-typo");
    assert_eq!(finding["field"], "body_template");

    // Warnings only: no triggers, a token written into the file, a retry window close to the
    // consumer timeout, and a duplicate. They are printed, and the exit code stays 0.
    const INLINE: &str = "inline-token-5150";
    let url = app.listener().url_with_token(INLINE, "apono");
    std::fs::write(
        &typo,
        format!(
            r#"
[[webhook]]
name = "silent"
url = "{url}"
triggers = []
body_template = '{{}}'

[[webhook]]
name = "slow"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{{}}'
[webhook.delivery]
retry_window = "25m"
max_elapsed = "2h"

[[webhook]]
name = "approvals-again"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{{"id": "{{{{ data.id }}}}", "email": "{{{{ data.requester.email }}}}"}}'
"#
        )
        .replace(
            "@URL0@",
            &app.listener()
                .url("apono")
                .replace(TEST_TOKEN, "${LOGZIO_TOKEN}"),
        ),
    )
    .unwrap();
    let warned = cli(&app, &["check"], &[]).await;
    assert_exit(&warned, 0);
    let warnings: Vec<&str> = warned
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    let file = typo.display().to_string();
    for needle in [
        format!("{file}: webhook `silent`: triggers: the webhook has no triggers"),
        format!("{file}: webhook `silent`: url (query parameter token): holds a secret"),
        format!("{file}: webhook `slow`: delivery.retry_window: "),
        format!("{file}: webhook `approvals-again`: is identical to webhook `approvals`"),
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(&needle)),
            "no warning with `{needle}`:\n{}",
            warned.stdout
        );
    }
    assert_eq!(warnings.len(), 4, "{}", warned.stdout);
    assert!(!warned.stdout.contains("error: "), "{}", warned.stdout);
    assert!(!warned.stdout.contains(INLINE), "{}", warned.stdout);
    assert!(
        warned
            .stdout
            .lines()
            .last()
            .unwrap()
            .contains("4 webhooks (4 active), 0 errors, 4 warnings"),
        "{}",
        warned.stdout
    );
    let warned_json = cli(&app, &["--json", "check"], &[]).await;
    assert_exit(&warned_json, 0);
    let report = json(&warned_json);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["warnings"], 4, "{report:#}");
    assert_eq!(report["webhooks"], 4, "{report:#}");
    app.finish().await;
}

// ---- webhooks ----

/// The table: ● for active, ○ for inactive, method, URL with the token redacted, triggers and
/// filters in short form, the file; columns aligned. `--json` has the same rows.
#[tokio::test]
async fn webhooks_table_shows_status_redacted_urls_triggers_filters_and_file() {
    let app = app("cli-webhooks")
        .webhook(APPROVALS)
        .webhook(
            r#"
[[webhook]]
name = "prod-grants"
status = "inactive"
method = "PUT"
url = "@URL0@"
triggers = ["RequestGranted", "RequestExpired"]
body_template = '{}'

[webhook.filters]
integration_names = ["prod-postgres", "prod-mysql"]
permissions = ["readonly"]
"#,
        )
        .build()
        .await;
    let port = app.listener().port();
    let out = cli(&app, &["webhooks"], &[]).await;
    assert_exit(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "header, two rows, summary:\n{}", out.stdout);
    let url = format!("https://127.0.0.1:{port}/?token=***&type=apono");
    let dir = app.config_dir().display().to_string();
    let (file0, file1) = (
        format!("{dir}/webhooks/00.toml"),
        format!("{dir}/webhooks/01.toml"),
    );
    let expected = [
        vec!["NAME", "METHOD", "URL", "TRIGGERS", "FILTERS", "FILE"],
        vec![
            "●",
            "active",
            "approvals",
            "POST",
            &url,
            "Approved",
            "-",
            &file0,
        ],
        vec![
            "○",
            "inactive",
            "prod-grants",
            "PUT",
            &url,
            "Granted,Expired",
            "integration_names=prod-postgres,prod-mysql",
            "permissions=readonly",
            &file1,
        ],
    ];
    for (line, cells) in lines.iter().zip(&expected) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words, cells, "{}", out.stdout);
    }
    // Aligned: each column starts at the same character offset on every line.
    let column = |line: &str, cell: &str| {
        let byte = line
            .find(cell)
            .unwrap_or_else(|| panic!("{cell} in {line}"));
        line[..byte].chars().count()
    };
    for cells in [
        ("NAME", "approvals", "prod-grants"),
        ("URL", "https", "https"),
    ] {
        let (h, a, b) = cells;
        assert_eq!(column(lines[0], h), column(lines[1], a), "{}", out.stdout);
        assert_eq!(column(lines[0], h), column(lines[2], b), "{}", out.stdout);
    }
    assert_eq!(lines[3], "2 webhooks, 1 active (● active, ○ inactive)");

    let rows = json(&cli(&app, &["--json", "webhooks"], &[]).await);
    let rows = rows.as_array().expect("an array of webhooks");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "approvals");
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[1]["active"], false);
    assert_eq!(rows[1]["method"], "PUT");
    assert_eq!(rows[1]["url"], url);
    assert_eq!(
        rows[1]["triggers"],
        serde_json::json!(["RequestGranted", "RequestExpired"])
    );
    app.finish().await;
}

// ---- render ----

/// `render` prints byte for byte the body the worker sends for the same event (the shipped
/// Logz.io template, hostile text included), with the same idempotency and event-id headers.
#[tokio::test]
async fn render_equals_what_run_sends() {
    let mut app = app("cli-render")
        .webhook(&shipped_logzio_webhook())
        .build()
        .await;
    let hostile = sample_with(Trigger::RequestApproved, |e| {
        e["data"]["id"] = "render-1".into();
        e["data"]["justification"] =
            "quote \" backslash \\ newline \n tab \t ünï 😀 </script> {{x}} \", \"extra\": \"x"
                .into();
    });
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("event.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&hostile).unwrap()).unwrap();
    let file = file.to_str().unwrap();

    let text = cli(&app, &["render", "logzio-audit", "--event", file], &[]).await;
    assert_exit(&text, 0);
    let rendered = cli(
        &app,
        &["--json", "render", "logzio-audit", "--event", file],
        &[],
    )
    .await;
    assert_exit(&rendered, 0);
    let rendered = json(&rendered);
    assert_eq!(rendered["matches"], true, "{rendered:#}");
    assert_eq!(rendered["event_source"], file);
    let body = rendered["body"].as_str().expect("a body").to_string();
    assert!(
        text.stdout.contains(&format!("\nbody\n{body}\n")),
        "the text output holds the same body:\n{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("match    yes: `run` would send the request below"),
        "{}",
        text.stdout
    );

    app.start_worker();
    app.publish(&hostile).await;
    let requests = app.listener().wait_for_requests(1, WAIT).await;
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.status, 200);
    assert_eq!(
        sent.body,
        body.as_bytes(),
        "render:\n{body}\nsent:\n{}",
        sent.body_text()
    );
    let header = |name: &str| {
        rendered["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .and_then(|h| h[1].as_str())
            .map(str::to_string)
    };
    for name in ["Idempotency-Key", "x-relay-event-id", "Content-Type"] {
        assert_eq!(
            sent.header(name).map(str::to_string),
            header(name),
            "header {name}"
        );
    }
    app.finish().await;
}

/// `render` says why an event would not be sent: the trigger, a filter, or the status (and
/// then what else would exclude it).
#[tokio::test]
async fn render_names_the_trigger_or_filter_that_excludes_the_event() {
    let app = app("cli-render-miss")
        .webhook(
            r#"
[[webhook]]
name = "mysql-only"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.filters]
integration_names = ["prod-mysql"]

[[webhook]]
name = "off"
status = "inactive"
url = "@URL0@"
triggers = ["RequestGranted"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .build()
        .await;
    let filtered = cli(&app, &["render", "mysql-only"], &[]).await;
    assert_exit(&filtered, 0);
    assert!(
        filtered.stdout.contains(
            "match    no: filter integration_names wants one of [\"prod-mysql\"], the event has [\"prod-postgres\"]"
        ),
        "{}",
        filtered.stdout
    );
    let trigger = cli(
        &app,
        &[
            "--json",
            "render",
            "mysql-only",
            "--trigger",
            "RequestFailed",
        ],
        &[],
    )
    .await;
    let trigger = json(&trigger);
    assert_eq!(trigger["matches"], false);
    assert!(
        trigger["mismatch"]
            .as_str()
            .unwrap()
            .starts_with("trigger RequestFailed is not one of the webhook's triggers"),
        "{trigger:#}"
    );
    let off = json(
        &cli(
            &app,
            &["--json", "render", "off", "--trigger", "RequestApproved"],
            &[],
        )
        .await,
    );
    assert_eq!(
        off["mismatch"],
        "the webhook is inactive, and trigger RequestApproved is not one of the webhook's \
         triggers (RequestGranted)"
    );
    let unknown = cli(&app, &["render", "nope"], &[]).await;
    assert_exit(&unknown, 2);
    assert!(
        unknown
            .stderr
            .contains("no webhook is called `nope`; the config has: mysql-only, off"),
        "{}",
        unknown.stderr
    );
    app.finish().await;
}

// ---- test ----

const INACTIVE: &str = r#"
[[webhook]]
name = "paused"
status = "inactive"
url = "@URL0@"
triggers = ["RequestGranted"]
body_template = '{"id": "{{ data.id }}", "grantee": "{{ data.grantee.name }}"}'
"#;

/// `test` on an inactive webhook sends one request and prints `Test successful` with the
/// invocation data; `--json` has it too.
#[tokio::test]
async fn test_succeeds_on_an_inactive_webhook_with_invocation_data() {
    let app = app("cli-test-ok").webhook(INACTIVE).build().await;
    let port = app.listener().port();
    let out = cli(&app, &["test", "paused"], &[]).await;
    assert_exit(&out, 0);
    let requests = app.listener().requests();
    assert_eq!(requests.len(), 1, "one request");
    let body = requests[0].body_text();
    assert_eq!(
        body, r#"{"id": "req-5f2c9a", "grantee": "Dana Scully"}"#,
        "the built-in RequestGranted sample"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Test successful", "{}", out.stdout);
    for needle in [
        "Invocation data".to_string(),
        "  webhook    paused (built-in sample RequestGranted)".to_string(),
        format!("  POST https://127.0.0.1:{port}/?token=***&type=apono"),
        "  Content-Type: application/json".to_string(),
        "  Idempotency-Key: paused:req-5f2c9a:RequestGranted:".to_string(),
        format!("  body: {body}"),
        "Response".to_string(),
        "  status     200 OK".to_string(),
        "  latency    ".to_string(),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&needle)),
            "no line starting `{needle}`:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("hint:"), "{}", out.stdout);

    let out = cli(&app, &["--json", "test", "paused"], &[]).await;
    assert_exit(&out, 0);
    let invocation = json(&out);
    assert_eq!(invocation["success"], true, "{invocation:#}");
    assert_eq!(
        invocation["request"]["url"],
        format!("https://127.0.0.1:{port}/?token=***&type=apono")
    );
    assert_eq!(invocation["request"]["body"], body);
    assert_eq!(invocation["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(invocation["attempts"][0]["status"], 200);
    assert!(invocation["attempts"][0]["latency_ms"].is_u64());
    assert_eq!(invocation["hint"], Value::Null);
    assert_eq!(app.listener().requests().len(), 2);
    app.finish().await;
}

/// A 401: `Test failed`, the response, and the hint about the token; one attempt only, and
/// the wrong token is not printed either.
#[tokio::test]
async fn test_with_a_wrong_token_fails_with_the_401_hint() {
    const WRONG: &str = "wrong-token-8086";
    let app = app("cli-test-401")
        .webhook(
            r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .env("WRONG_TOKEN", WRONG)
        .build()
        .await;
    let out = cli(&app, &["test", "wrong-token"], &[]).await;
    assert_exit(&out, 1);
    assert_eq!(app.listener().requests().len(), 1, "a single attempt");
    assert_eq!(app.listener().requests()[0].status, 401);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Test failed", "{}", out.stdout);
    for needle in [
        "  status     401 Unauthorized",
        "  body: token is missing or invalid",
        "hint: the token or credentials were refused",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(needle)),
            "no line starting `{needle}`:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains(WRONG), "{}", out.stdout);

    let out = cli(&app, &["--json", "test", "wrong-token"], &[]).await;
    assert_exit(&out, 1);
    let invocation = json(&out);
    assert_eq!(invocation["success"], false);
    assert_eq!(invocation["attempts"][0]["status"], 401);
    assert!(
        invocation["hint"]
            .as_str()
            .unwrap()
            .starts_with("the token or credentials were refused"),
        "{invocation:#}"
    );
    assert!(!out.stdout.contains(WRONG), "{}", out.stdout);
    app.finish().await;
}

/// Nothing listening: `Test failed`, no response, and the hint about connecting.
#[tokio::test]
async fn test_against_a_closed_port_fails_with_the_connect_hint() {
    let app = app("cli-test-refused")
        .listeners(2)
        .webhook(
            r#"
[[webhook]]
name = "nobody-home"
url = "@URL1@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .build()
        .await;
    // Listener 1 goes away: its port stays allowed, and now refuses connections.
    app.listeners[1].shutdown().await;
    let out = cli(&app, &["test", "nobody-home"], &[]).await;
    assert_exit(&out, 1);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "Test failed", "{}", out.stdout);
    for needle in [
        "  no response after ",
        "  error      connect: ",
        "hint: nothing accepted the connection",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(needle)),
            "no line starting `{needle}`:\n{}",
            out.stdout
        );
    }
    let invocation = json(&cli(&app, &["--json", "test", "nobody-home"], &[]).await);
    assert_eq!(invocation["success"], false);
    assert_eq!(invocation["attempts"][0]["status"], Value::Null);
    assert_eq!(invocation["attempts"][0]["failure"], "connect");
    app.finish().await;
}

/// `test` makes one attempt unless `--retries` asks for more: two 503s then the normal answer
/// fail a plain test and pass with `--retries 2`.
#[tokio::test]
async fn test_retries_only_when_asked() {
    let app = app("cli-test-retries").webhook(APPROVALS).build().await;
    app.listener().push_response(Scripted::status(503));
    let once = cli(&app, &["test", "approvals"], &[]).await;
    assert_exit(&once, 1);
    assert_eq!(app.listener().requests().len(), 1);
    assert!(
        once.stdout
            .contains("hint: the endpoint failed on its side"),
        "{}",
        once.stdout
    );

    app.listener().push_response(Scripted::status(503));
    app.listener().push_response(Scripted::status(503));
    let retried = cli(&app, &["test", "approvals", "--retries", "2"], &[]).await;
    assert_exit(&retried, 0);
    assert_eq!(app.listener().requests().len(), 4);
    assert!(
        retried.stdout.starts_with("Test successful\n"),
        "{}",
        retried.stdout
    );
    for n in 1..=3 {
        assert!(
            retried.stdout.contains(&format!("Response (attempt {n})")),
            "{}",
            retried.stdout
        );
    }
    app.finish().await;
}

// ---- publish ----

/// An invalid item in a JSON array is refused with its file and line and nothing is
/// published; a valid NDJSON file and stdin are published with confirms, routing key = event
/// type, persistent.
#[tokio::test]
async fn publish_refuses_invalid_events_by_line_and_publishes_valid_ndjson() {
    let app = app("cli-publish").webhook(APPROVALS).build().await;
    let queue = app.config.amqp.queue.clone();
    let files = tempfile::tempdir().unwrap();

    let good = event(Trigger::RequestApproved, "pub-1");
    let mut bad = event(Trigger::RequestGranted, "pub-2");
    bad["event_time"] = "yesterday".into();
    let array = format!(
        "[\n  {},\n{}\n]\n",
        good,
        serde_json::to_string_pretty(&bad).unwrap()
    );
    let array_file = files.path().join("events.json");
    std::fs::write(&array_file, array).unwrap();
    let array_path = array_file.to_str().unwrap();
    let refused = cli(&app, &["publish", array_path], &[]).await;
    assert_exit(&refused, 1);
    let expected = format!("invalid: {array_path}:3: event 2: event_time: expected number");
    assert!(
        refused.stderr.lines().any(|l| l.starts_with(&expected)),
        "`{expected}` in:\n{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("nothing published: fix the events above or pass --no-validate"),
        "{}",
        refused.stderr
    );
    let refused_json = json(&cli(&app, &["--json", "publish", array_path], &[]).await);
    assert_eq!(refused_json["published"], 0);
    assert_eq!(refused_json["refused"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.ready_count(&queue).await, 0, "nothing was published");

    let events: Vec<Value> = [
        Trigger::RequestCreated,
        Trigger::RequestApproved,
        Trigger::RequestExpired,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, t)| event(t, &format!("ndjson-{i}")))
    .collect();
    let ndjson: String = events.iter().map(|e| format!("{e}\n")).collect();
    let ndjson_file = files.path().join("events.ndjson");
    std::fs::write(&ndjson_file, ndjson).unwrap();
    let published = cli(&app, &["publish", ndjson_file.to_str().unwrap()], &[]).await;
    assert_exit(&published, 0);
    assert!(
        published.stdout.starts_with(&format!(
            "3 of 3 events confirmed by the broker (exchange `{}`",
            app.config.amqp.exchange
        )),
        "{}",
        published.stdout
    );
    assert_eq!(wait_ready(&app, &queue, 3).await, 3);

    let piped = event(Trigger::Manual, "stdin-1");
    let from_stdin = cli_in(
        &app,
        app.config_dir(),
        &["--json", "publish", "-"],
        &[],
        Some(&piped.to_string()),
    )
    .await;
    assert_exit(&from_stdin, 0);
    let summary = json(&from_stdin);
    assert_eq!(summary["confirmed"], 1, "{summary:#}");
    assert_eq!(wait_ready(&app, &queue, 4).await, 4);

    let mut expected: Vec<Value> = events.clone();
    expected.push(piped);
    for want in &expected {
        let got = app
            .admin
            .fetch(&queue)
            .await
            .expect("basic.get")
            .expect("a message");
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(&body, want);
        assert_eq!(got.routing_key, want["event_type"].as_str().unwrap());
        assert_eq!(*got.properties.delivery_mode(), Some(2), "persistent");
    }
    app.finish().await;
}

// ---- dlq ----

/// Two failing webhooks, one per trigger: `rejected` (wrong token, for approvals) and
/// `render_failed` (strict template missing a field, for creations).
const FAILING: &str = r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'

[[webhook]]
name = "strict-missing"
url = "@URL0@"
triggers = ["RequestCreated"]
strict = true
body_template = '{"id": "{{ data.id }}", "ticket": "{{ data.custom_fields.ticket }}"}'
"#;

/// Publishes `events` one at a time, each after the previous one's dead letter is in the
/// queue, so the dead letters' order is known.
async fn dead_letter_in_order(app: &TestApp, events: &[Value]) {
    let queue = dlq(app);
    for (i, e) in events.iter().enumerate() {
        app.publish(e).await;
        let n = u32::try_from(i + 1).unwrap();
        assert_eq!(wait_ready(app, &queue, n).await, n, "dead letter {n}");
    }
}

/// `dlq list` changes nothing: listing twice prints the same, `--json` before and after are
/// equal, and draining the queue afterwards finds every dead letter, unchanged, in order.
#[tokio::test]
async fn dlq_list_and_show_leave_the_queue_unchanged() {
    let mut app = app("cli-dlq-list")
        .webhook(FAILING)
        .env("WRONG_TOKEN", "not-the-token")
        .start()
        .await;
    let events = vec![
        event(Trigger::RequestApproved, "list-1"),
        event(Trigger::RequestCreated, "list-2"),
        event(Trigger::RequestApproved, "list-3"),
        event(Trigger::RequestCreated, "list-4"),
        event(Trigger::RequestApproved, "list-5"),
    ];
    dead_letter_in_order(&app, &events).await;
    app.stop_worker().await;

    let before = dlq_list_json(&app).await;
    let listed = before.as_array().expect("an array");
    assert_eq!(listed.len(), events.len(), "{before:#}");
    for (i, (line, e)) in listed.iter().zip(&events).enumerate() {
        assert_eq!(line["position"], i + 1);
        assert_eq!(line["event_id"], event_id(e));
        assert_eq!(line["event_type"], e["event_type"]);
        let (webhook, reason) = if e["event_type"] == "RequestApproved" {
            ("wrong-token", "rejected")
        } else {
            ("strict-missing", "render_failed")
        };
        assert_eq!(line["webhook"], webhook, "{line:#}");
        assert_eq!(line["reason"], reason, "{line:#}");
    }
    assert_eq!(listed[0]["last_status"], 401);
    assert_eq!(listed[0]["attempts"], 1);

    let first = cli(&app, &["dlq", "list"], &[]).await;
    let second = cli(&app, &["dlq", "list"], &[]).await;
    assert_exit(&first, 0);
    assert_eq!(first.stdout, second.stdout, "listing twice prints the same");
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(lines.len(), 1 + events.len() + 1, "{}", first.stdout);
    assert!(lines[0].starts_with("#  FAILED AT"), "{}", first.stdout);
    assert!(
        lines[1].starts_with("1  ") && lines[1].contains(&event_id(&events[0])),
        "{}",
        first.stdout
    );
    assert_eq!(
        *lines.last().unwrap(),
        format!("5 shown of 5 dead letters in `{}`", dlq(&app))
    );

    // Filters and --limit select without changing anything either.
    let rejected = json(
        &cli(
            &app,
            &[
                "--json", "dlq", "list", "--reason", "rejected", "--limit", "2",
            ],
            &[],
        )
        .await,
    );
    let positions: Vec<&Value> = rejected
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["position"])
        .collect();
    assert_eq!(positions, [1, 3], "{rejected:#}");
    let strict = json(
        &cli(
            &app,
            &["--json", "dlq", "list", "--webhook", "strict-missing"],
            &[],
        )
        .await,
    );
    assert_eq!(strict.as_array().unwrap().len(), 2, "{strict:#}");

    // show, by position and by event id.
    let shown = cli(&app, &["dlq", "show", "2"], &[]).await;
    assert_exit(&shown, 0);
    assert!(
        shown.stdout.starts_with("dead letter #2\n"),
        "{}",
        shown.stdout
    );
    for needle in [
        "  x-relay-reason: render_failed",
        "  x-relay-webhook: strict-missing",
        "  x-relay-attempts: 0",
        &format!("  x-relay-event-id: {}", event_id(&events[1])),
        "  x-relay-routing-key: RequestCreated",
        "  x-relay-last-error: ",
    ] {
        assert!(
            shown.stdout.contains(needle),
            "`{needle}`:\n{}",
            shown.stdout
        );
    }
    let body_text = shown.stdout.split("\nbody\n").nth(1).expect("a body");
    let body: Value = serde_json::from_str(body_text).expect("the body is pretty JSON");
    assert_eq!(body, events[1]);
    let by_id = json(&cli(&app, &["--json", "dlq", "show", &event_id(&events[4])], &[]).await);
    assert_eq!(by_id["position"], 5);
    assert_eq!(by_id["headers"]["x-relay-last-status"], "401");
    assert_eq!(by_id["body"], events[4]);
    let missing = cli(&app, &["dlq", "show", "99"], &[]).await;
    assert_exit(&missing, 1);

    let after = dlq_list_json(&app).await;
    assert_eq!(before, after, "the listing did not change");
    assert_eq!(app.ready_count(&dlq(&app)).await, 5);
    let drained = app
        .dead_letters(events.len() + 1, Duration::from_secs(1))
        .await;
    assert_eq!(drained.len(), events.len(), "nothing lost, nothing added");
    for (letter, e) in drained.iter().zip(&events) {
        assert_eq!(
            letter.body,
            e.to_string().into_bytes(),
            "the original bytes, in order"
        );
        let info = DeadLetterInfo::from_properties(&letter.properties);
        assert_eq!(info.event_id, Some(event_id(e)));
    }
    app.finish().await;
}

/// One event, two webhooks: A (wrong token) fails and is dead-lettered, B is delivered. A
/// replay goes to A only: skipped while A is not in the config, a new dead letter when it
/// fails again, nothing with `--dry-run`, and delivered (dead letter removed) once the token
/// is right. B never hears of it again.
#[tokio::test]
async fn dlq_replay_reaches_only_the_named_webhook_and_takes_the_fixed_token() {
    let mut app = app("cli-dlq-replay")
        .listeners(2)
        .webhook(
            r#"
[[webhook]]
name = "a"
url = "https://127.0.0.1:@PORT0@/?token=${A_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "email": "{{ data.requester.email }}"}'

[[webhook]]
name = "b"
url = "@URL1@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "email": "{{ data.requester.email }}"}'
"#,
        )
        .env("A_TOKEN", "not-the-token")
        .start()
        .await;
    let approved = event(Trigger::RequestApproved, "replay-1");
    app.publish(&approved).await;
    assert_eq!(wait_ready(&app, &dlq(&app), 1).await, 1);
    assert_eq!(app.listeners[1].wait_for_requests(1, WAIT).await.len(), 1);
    app.stop_worker().await;
    let (a, b) = (&app.listeners[0], &app.listeners[1]);
    assert_eq!(a.requests().len(), 1);
    assert_eq!(a.requests()[0].status, 401);
    let delivered_to_b = b.requests()[0].body.clone();
    let original = dlq_list_json(&app).await;
    assert_eq!(original[0]["webhook"], "a");
    assert_eq!(original[0]["reason"], "rejected");

    // A is not in this config (renamed): skipped, exit 1, the dead letter stays as it was.
    let renamed = edited_config(&app, |t| t.replace("name = \"a\"", "name = \"a2\""));
    let skipped = cli_in(
        &app,
        renamed.path(),
        &["dlq", "replay", "--all"],
        &[("A_TOKEN", TEST_TOKEN)],
        None,
    )
    .await;
    assert_exit(&skipped, 1);
    assert!(
        skipped
            .stdout
            .contains("skipped: 1 × webhook `a` is not in the current config"),
        "{}",
        skipped.stdout
    );
    assert_eq!(dlq_list_json(&app).await, original);

    // --dry-run: says what it would do, does nothing.
    let dry = cli(&app, &["dlq", "replay", "--all", "--dry-run"], &[]).await;
    assert_exit(&dry, 0);
    assert!(
        dry.stdout
            .contains(&format!("would replay #1 {} → a", event_id(&approved))),
        "{}",
        dry.stdout
    );
    assert_eq!(dlq_list_json(&app).await, original);

    // An id that is not there is an error.
    let unknown = cli(&app, &["dlq", "replay", "7"], &[]).await;
    assert_exit(&unknown, 1);
    assert!(
        unknown
            .stderr
            .contains("no dead letter at position or with event id `7`"),
        "{}",
        unknown.stderr
    );
    assert_eq!(a.requests().len(), 1, "no request so far");

    // Fails again (the endpoint answers 503; one attempt): exactly one dead letter, with the
    // new failure's headers, and exit 1.
    a.push_response(Scripted::status(503));
    let again = cli(
        &app,
        &["dlq", "replay", "1", "--attempts", "1"],
        &[("A_TOKEN", TEST_TOKEN)],
    )
    .await;
    assert_exit(&again, 1);
    assert!(
        again
            .stdout
            .contains("failed again: 1 × delivery_failed (http 503)"),
        "{}",
        again.stdout
    );
    assert_eq!(a.requests().len(), 2);
    let replaced = dlq_list_json(&app).await;
    let replaced = replaced.as_array().unwrap();
    assert_eq!(replaced.len(), 1, "one dead letter, not two: {replaced:#?}");
    assert_eq!(replaced[0]["webhook"], "a");
    assert_eq!(replaced[0]["reason"], "delivery_failed");
    assert_eq!(replaced[0]["last_status"], 503);
    assert_eq!(replaced[0]["event_id"], original[0]["event_id"]);
    assert_ne!(replaced[0]["failed_at"], original[0]["failed_at"]);

    // The token fixed (the variable is right now): delivered to A, the dead letter is gone.
    let fixed = cli(
        &app,
        &["--json", "dlq", "replay", "--all"],
        &[("A_TOKEN", TEST_TOKEN)],
    )
    .await;
    assert_exit(&fixed, 0);
    let summary = json(&fixed);
    assert_eq!(summary["delivered"], 1, "{summary:#}");
    assert_eq!(summary["results"][0]["webhook"], "a");
    assert_eq!(summary["results"][0]["result"], "delivered");
    let to_a = a.requests();
    assert_eq!(to_a.len(), 3);
    assert_eq!(to_a[2].status, 200);
    assert_eq!(
        to_a[2].body, delivered_to_b,
        "the same event, rendered the same"
    );
    assert_eq!(b.requests().len(), 1, "B got nothing more");
    assert_eq!(
        app.ready_count(&dlq(&app)).await,
        0,
        "the dead letter is gone"
    );
    assert_eq!(
        app.ready_count(&app.config.amqp.queue).await,
        0,
        "no fan-out"
    );
    app.finish().await;
}

/// `purge` needs `--yes` (exit 2 without it) and deletes only what the filter selects.
#[tokio::test]
async fn dlq_purge_by_reason_deletes_only_those() {
    let mut app = app("cli-dlq-purge")
        .webhook(FAILING)
        .env("WRONG_TOKEN", "not-the-token")
        .start()
        .await;
    let events = vec![
        event(Trigger::RequestApproved, "purge-1"),
        event(Trigger::RequestCreated, "purge-2"),
        event(Trigger::RequestApproved, "purge-3"),
    ];
    dead_letter_in_order(&app, &events).await;
    app.stop_worker().await;

    let unconfirmed = cli(&app, &["dlq", "purge", "--reason", "rejected"], &[]).await;
    assert_exit(&unconfirmed, 2);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert_eq!(app.ready_count(&dlq(&app)).await, 3);

    let purged = cli(
        &app,
        &["dlq", "purge", "--reason", "rejected", "--yes"],
        &[],
    )
    .await;
    assert_exit(&purged, 0);
    assert_eq!(
        purged.stdout.trim_end(),
        format!("deleted 2 of 3 dead letters in `{}`", dlq(&app))
    );
    let left = dlq_list_json(&app).await;
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["reason"], "render_failed");
    assert_eq!(left[0]["event_id"], event_id(&events[1]));

    let by_webhook = cli(
        &app,
        &[
            "--json",
            "dlq",
            "purge",
            "--webhook",
            "strict-missing",
            "--yes",
        ],
        &[],
    )
    .await;
    assert_exit(&by_webhook, 0);
    assert_eq!(json(&by_webhook)["deleted"], 1);
    assert_eq!(app.ready_count(&dlq(&app)).await, 0);
    app.finish().await;
}

/// A webhook whose dead letters are all `rejected` until the right token is set.
const WRONG_TOKEN_ONLY: &str = r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG_TOKEN}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#;

/// Three `rejected` dead letters for `wrong-token`; the worker is stopped afterwards.
async fn three_rejected(app: &mut TestApp) {
    app.start_worker();
    let events: Vec<Value> = (1..=3)
        .map(|i| event(Trigger::RequestApproved, &format!("stop-{i}")))
        .collect();
    dead_letter_in_order(app, &events).await;
    app.stop_worker().await;
    app.listener().clear();
}

/// SIGTERM during a replay: the delivery in flight finishes and its dead letter is removed;
/// the others are not attempted, stay queued, and the exit code is 1.
#[tokio::test]
async fn dlq_replay_interrupted_reports_what_it_did_not_attempt() {
    let mut app = app("cli-dlq-sigterm")
        .webhook(WRONG_TOKEN_ONLY)
        .env("WRONG_TOKEN", "not-the-token")
        .build()
        .await;
    three_rejected(&mut app).await;
    app.listener().set_delay(Duration::from_secs(1));
    let dir = app.config_dir().to_str().unwrap().to_string();
    let mut relay = Relay::spawn(
        &["dlq", "replay", "--all", "--config", &dir],
        &child_env(&app, &[("WRONG_TOKEN", TEST_TOKEN)]),
    );
    let first = app.listener().wait_for_requests(1, WAIT).await;
    assert_eq!(first.len(), 1, "stderr:\n{}", relay.stderr_so_far());
    relay.terminate();
    let finished = relay.exit_within(WAIT).await;
    assert_exit(&finished, 1);
    assert!(
        finished
            .stdout
            .starts_with("replayed 1 of 3: 1 delivered, 0 failed again, 0 skipped\n"),
        "{}",
        finished.stdout
    );
    assert!(
        finished
            .stdout
            .contains("not attempted: 2, still queued (interrupted)"),
        "{}",
        finished.stdout
    );
    assert_eq!(app.listener().requests().len(), 1);
    let left = dlq_list_json(&app).await;
    let ids: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{left:#}");
    assert!(
        ids[0].starts_with("stop-2:") && ids[1].starts_with("stop-3:"),
        "{ids:?}"
    );
    app.finish().await;
}

/// RabbitMQ closes a channel whose basic.get deliveries stay unacked past its
/// consumer_timeout, taking them back. A replay stops before a delivery could end past it
/// (the worst case is max_elapsed + timeout) instead of delivering what it can no longer
/// remove.
#[tokio::test]
async fn dlq_replay_stops_before_the_consumer_timeout() {
    let mut app = app("cli-dlq-timeout")
        .webhook(WRONG_TOKEN_ONLY)
        .env("WRONG_TOKEN", "not-the-token")
        .delivery(
            r#"
timeout = "1s"
max_attempts = 1
initial_backoff = "50ms"
max_backoff = "100ms"
max_elapsed = "500ms"
"#,
        )
        .build()
        .await;
    three_rejected(&mut app).await;
    // Each delivery takes 700ms; the worst case is 1.5s. With a 2s consumer_timeout the first
    // fits, the second would not.
    app.listener().set_delay(Duration::from_millis(700));
    let out = cli(
        &app,
        &["dlq", "replay", "--all"],
        &[
            ("WRONG_TOKEN", TEST_TOKEN),
            ("RELAY__AMQP__CONSUMER_TIMEOUT", "2s"),
        ],
    )
    .await;
    assert_exit(&out, 1);
    assert!(
        out.stdout
            .starts_with("replayed 1 of 3: 1 delivered, 0 failed again, 0 skipped\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "not attempted: 2, still queued (stopped before the broker's consumer_timeout (2s)"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(app.listener().requests().len(), 1);
    assert_eq!(app.ready_count(&dlq(&app)).await, 2);
    app.finish().await;
}
