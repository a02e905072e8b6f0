//! `publish`: validating events by line and publishing them with confirms.

use super::{APPROVALS, assert_exit, cli, cli_in, event, json, wait_ready};
use crate::harness::app;
use serde_json::Value;
use std::time::Duration;
use webhook_relay::model::event::Trigger;

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
