//! `render`: the body the worker would send for an event, or why it would send none.

use super::{WAIT, assert_exit, cli, json};
use crate::harness::{app, sample_with, shipped_logzio_webhook};
use webhook_relay::model::event::Trigger;

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
