//! `test`: one request to a webhook, the verdict, the hints, `--retries`.

use super::{APPROVALS, assert_exit, cli, json};
use crate::harness::app;
use crate::support::logzio::Scripted;
use serde_json::Value;

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
