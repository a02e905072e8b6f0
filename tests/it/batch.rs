//! Batched delivery: NDJSON batches per webhook, each event acked only with its batch.

use crate::harness::{app, sample_with};
use crate::support::logzio::Scripted;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::model::event::Trigger;
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::outcome::Reason;

const WAIT: Duration = Duration::from_secs(20);

fn batched(max_events: u32, linger: &str) -> String {
    format!(
        r#"
[[webhook]]
name = "batched"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{{"n": "{{{{ data.custom_fields.n }}}}", "who": "{{{{ data.requester.email }}}}", "big": "{{{{ data.custom_fields.big }}}}"}}'
[webhook.batch]
max_events = {max_events}
max_bytes = "1MiB"
linger = "{linger}"
"#
    )
}

fn event(n: usize) -> Value {
    sample_with(Trigger::RequestApproved, |e| {
        e["data"]["custom_fields"] = json!({"n": n.to_string()});
        e["event_time"] = json!(1_764_064_800.0 + n as f64);
    })
}

fn numbers(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|l| l["n"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A full batch goes out as one NDJSON request carrying `x-relay-batch-size`; every event is
/// acked once its batch succeeded.
#[tokio::test]
async fn a_full_batch_is_one_request() {
    let app = app("batch-full").webhook(&batched(10, "10s")).build().await;
    for n in 0..10 {
        app.publish(&event(n)).await;
    }
    let mut app = app;
    app.start_worker();
    let accepted = app.listener().wait_for_accepted(10, WAIT).await;
    assert_eq!(numbers(&accepted).len(), 10, "{accepted:?}");
    let requests = app.listener().requests();
    assert_eq!(requests.len(), 1, "one request for the ten events");
    assert_eq!(requests[0].header("x-relay-batch-size"), Some("10"));
    assert_eq!(requests[0].header("x-relay-event-id"), None);
    assert!(
        requests[0].body_text().lines().all(|l| !l.is_empty()),
        "NDJSON, one compact line per event"
    );
    assert!(
        app.wait_count(Metrics::acked, 10, WAIT).await,
        "every event acked with its batch"
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    app.finish().await;
}

/// A batch that does not fill goes out after `linger`.
#[tokio::test]
async fn a_partial_batch_goes_out_after_linger() {
    let app = app("batch-linger")
        .webhook(&batched(200, "300ms"))
        .start()
        .await;
    for n in 0..3 {
        app.publish(&event(n)).await;
    }
    let accepted = app.listener().wait_for_accepted(3, WAIT).await;
    assert_eq!(numbers(&accepted).len(), 3);
    assert!(app.listener().requests().len() <= 3);
    assert!(app.wait_count(Metrics::acked, 3, WAIT).await);
    app.finish().await;
}

/// A line over Logz.io's 500,000-byte limit is dead-lettered on its own before sending; the
/// others are delivered.
#[tokio::test]
async fn an_oversized_line_is_rejected_before_sending() {
    let app = app("batch-oversized")
        .webhook(&batched(5, "300ms"))
        .start()
        .await;
    app.publish(&event(1)).await;
    app.publish(&sample_with(Trigger::RequestApproved, |e| {
        e["data"]["custom_fields"] = json!({"n": "big", "big": "x".repeat(600_000)});
    }))
    .await;
    app.publish(&event(2)).await;
    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1);
    let info = DeadLetterInfo::from_properties(&letters[0].properties);
    assert_eq!(info.reason, Some(Reason::Rejected));
    assert_eq!(info.attempts, Some(0));
    assert!(info.last_error.unwrap().contains("500000 bytes per line"));
    let accepted = app.listener().wait_for_accepted(2, WAIT).await;
    assert_eq!(numbers(&accepted), BTreeSet::from(["1".into(), "2".into()]));
    assert!(
        app.listener()
            .requests()
            .iter()
            .all(|r| r.body.len() < 500_000),
        "the big line was never sent"
    );
    app.finish().await;
}

/// A 400 that accepted no line: the batch is split and re-sent in halves.
#[tokio::test]
async fn a_400_that_accepted_nothing_is_narrowed_down_by_halves() {
    let app = app("batch-bisect")
        .webhook(&batched(4, "10s"))
        .build()
        .await;
    app.listener()
        .push_response(Scripted::status(400).with_body(
            r#"{"malformedLines":1,"successfulLines":0,"oversizedLines":0,"emptyLogLines":0}"#,
        ));
    for n in 0..4 {
        app.publish(&event(n)).await;
    }
    let mut app = app;
    app.start_worker();
    let accepted = app.listener().wait_for_accepted(4, WAIT).await;
    assert_eq!(numbers(&accepted).len(), 4);
    let sizes: Vec<Option<String>> = app
        .listener()
        .requests()
        .iter()
        .map(|r| r.header("x-relay-batch-size").map(str::to_string))
        .collect();
    assert_eq!(
        sizes,
        vec![Some("4".into()), Some("2".into()), Some("2".into())]
    );
    assert!(app.wait_count(Metrics::acked, 4, WAIT).await);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// A 400 that accepted some lines: nothing is re-sent (that would duplicate them); every line
/// is dead-lettered with the counts.
#[tokio::test]
async fn a_400_that_accepted_some_lines_resends_nothing() {
    let app = app("batch-partial")
        .webhook(&batched(3, "10s"))
        .build()
        .await;
    app.listener()
        .push_response(Scripted::status(400).with_body(
            r#"{"malformedLines":1,"successfulLines":2,"oversizedLines":0,"emptyLogLines":0}"#,
        ));
    for n in 0..3 {
        app.publish(&event(n)).await;
    }
    let mut app = app;
    app.start_worker();
    let letters = app.dead_letters(3, WAIT).await;
    assert_eq!(letters.len(), 3);
    for letter in &letters {
        let info = DeadLetterInfo::from_properties(&letter.properties);
        assert_eq!(info.reason, Some(Reason::Rejected));
        assert_eq!(info.last_status, Some(400));
        assert!(
            info.last_error
                .unwrap()
                .contains("accepted 2 of the batch's 3 lines")
        );
    }
    assert_eq!(app.listener().requests().len(), 1, "nothing re-sent");
    app.finish().await;
}

/// A batch that fails transiently is retried whole; each event is delivered once more, not
/// lost and not dead-lettered.
#[tokio::test]
async fn a_failing_batch_is_retried() {
    let app = app("batch-retry").webhook(&batched(5, "10s")).build().await;
    app.listener().push_response(Scripted::status(503));
    for n in 0..5 {
        app.publish(&event(n)).await;
    }
    let mut app = app;
    app.start_worker();
    let accepted = app.listener().wait_for_accepted(5, WAIT).await;
    assert_eq!(numbers(&accepted).len(), 5);
    let requests = app.listener().requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("idempotency-key"),
        requests[1].header("idempotency-key"),
        "the retry carries the same key"
    );
    assert!(app.wait_count(Metrics::acked, 5, WAIT).await);
    app.finish().await;
}

/// A batch still failing after the retry window parks each event on its own; when the
/// endpoint recovers they come back from the retry queue and are delivered in batches again.
#[tokio::test]
async fn a_batch_failing_past_the_window_parks_each_event() {
    let app = app("batch-park")
        .webhook(&batched(4, "200ms"))
        .delivery(
            r#"
timeout = "2s"
max_attempts = 10
initial_backoff = "100ms"
max_backoff = "200ms"
max_elapsed = "30s"
retry_window = "150ms"
"#,
        )
        .build()
        .await;
    for _ in 0..3 {
        app.listener().push_response(Scripted::status(503));
    }
    for n in 0..4 {
        app.publish(&event(n)).await;
    }
    let mut app = app;
    app.start_worker();
    assert!(
        app.wait_count(Metrics::parked, 4, WAIT).await,
        "each event parked on its own"
    );
    let accepted = app.listener().wait_for_accepted(4, WAIT).await;
    assert_eq!(numbers(&accepted).len(), 4, "delivered from the retry path");
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    assert!(
        app.eventually(WAIT, || app.metrics().delivered() >= 4)
            .await
    );
    app.finish().await;
}
