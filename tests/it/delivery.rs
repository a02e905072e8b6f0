//! The main path end to end: matching, rendering, delivery, retries and dead letters.

use crate::harness::{app, sample_with};
use serde_json::{Value, json};
use std::time::Duration;
use webhook_relay::dead_letter::DeadLetterInfo;
use webhook_relay::event::{Trigger, sample};
use webhook_relay::outcome::Reason;

const WAIT: Duration = Duration::from_secs(20);

/// Several webhooks with different triggers and filters, plus an inactive one: each listener
/// receives exactly the bodies of the events its webhook matches, rendered exactly.
#[tokio::test]
async fn happy_path_several_webhooks_filters_and_an_inactive_one() {
    let app = app("happy")
        .listeners(3)
        .webhook(
            r#"
[[webhook]]
name = "all-approvals"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "type": "{{ event_type }}", "who": "{{ data.requester.email }}"}'

[[webhook]]
name = "prod-postgres-grants"
url = "@URL1@"
triggers = ["RequestGranted", "RequestApproved"]
body_template = '{"grant": "{{ data.friendly_id }}", "integration": "{{ data.access_groups.[0].integration.name }}", "at": "{{ rfc3339 event_time }}"}'
[webhook.filters]
integration_names = ["prod-postgres"]
permissions = ["readonly", "admin"]

[[webhook]]
name = "switched-off"
status = "inactive"
url = "@URL2@"
triggers = ["RequestApproved", "RequestGranted"]
body_template = '{"never": true}'
"#,
        )
        .start()
        .await;

    // Matches both active webhooks.
    app.publish(&sample(Trigger::RequestApproved)).await;
    // Matches prod-postgres-grants only.
    app.publish(&sample(Trigger::RequestGranted)).await;
    // A grant on another integration: filtered out everywhere, acked without delivery.
    app.publish(&sample_with(Trigger::RequestGranted, |e| {
        e["data"]["access_groups"][0]["integration"]["name"] = json!("staging-mysql");
    }))
    .await;

    let first = app.listeners[0].wait_for_accepted(1, WAIT).await;
    let second = app.listeners[1].wait_for_accepted(2, WAIT).await;
    assert!(
        app.eventually(WAIT, || webhook_relay::worker::Stats::get(
            &app.stats().acked
        ) == 3)
            .await,
        "all three events are acked"
    );

    assert_eq!(
        first,
        vec![json!({"id": "req-5f2c9a", "type": "RequestApproved", "who": "dana@example.com"})]
    );
    let mut second_bodies: Vec<Value> = second;
    second_bodies.sort_by_key(|v| v["at"].as_str().unwrap_or("").to_string());
    assert_eq!(
        second_bodies,
        vec![
            json!({"grant": "AR-1042", "integration": "prod-postgres", "at": "2025-11-25T10:00:00.123456Z"}),
            json!({"grant": "AR-1042", "integration": "prod-postgres", "at": time_of(Trigger::RequestGranted)}),
        ]
    );
    assert!(
        app.listeners[2].requests().is_empty(),
        "the inactive webhook received nothing"
    );
    assert_eq!(app.listeners[0].requests().len(), 1, "no duplicate");
    assert_eq!(app.listeners[1].requests().len(), 2, "no duplicate");
    assert_eq!(webhook_relay::worker::Stats::get(&app.stats().unmatched), 1);
    assert_eq!(
        app.ready_count(&app.config.amqp.dead_letter_queue).await,
        0,
        "nothing was dead-lettered"
    );

    // The request carries the relay's headers.
    let request = &app.listeners[0].requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("user-agent"),
        Some(concat!("webhook-relay/", env!("CARGO_PKG_VERSION")))
    );
    let event_id = "req-5f2c9a:RequestApproved:1764064800.123456";
    assert_eq!(request.header("x-relay-event-id"), Some(event_id));
    assert_eq!(
        request.header("idempotency-key"),
        Some(format!("all-approvals:{event_id}").as_str())
    );
    app.finish().await;
}

fn time_of(trigger: Trigger) -> String {
    let seconds = sample(trigger)["event_time"].as_f64().unwrap();
    let at = std::time::UNIX_EPOCH + Duration::from_secs_f64(seconds);
    let text = humantime::format_rfc3339_micros(at).to_string();
    text
}

/// A 401 is permanent: one attempt, then a dead letter with the original bytes and every
/// `x-relay-*` header.
#[tokio::test]
async fn permanent_401_goes_to_the_dead_letter_queue_with_headers_and_original_bytes() {
    let app = app("unauthorized")
        .webhook(
            r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .env("WRONG", "definitely-not-the-token")
        .start()
        .await;
    let original = br#"{"event_type": "RequestApproved", "event_time": 1764064800.5, "data": {"id": "req-1", "extra": [1, 2]}}"#;
    app.publish_raw(original, "RequestApproved", Some("msg-401"))
        .await;

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    assert_eq!(letter.body, original.to_vec(), "original bytes, unchanged");
    assert_eq!(letter.message_id(), Some("msg-401"), "message id kept");
    let info = DeadLetterInfo::from_properties(&letter.properties);
    assert_eq!(info.reason, Some(Reason::Rejected));
    assert_eq!(info.webhook.as_deref(), Some("wrong-token"));
    assert_eq!(info.attempts, Some(1));
    assert_eq!(info.last_status, Some(401));
    assert_eq!(info.event_id.as_deref(), Some("msg-401"));
    assert_eq!(info.routing_key.as_deref(), Some("RequestApproved"));
    let error = info.last_error.unwrap();
    assert!(error.starts_with("http 401"), "{error}");
    assert!(!error.contains("definitely-not-the-token"), "{error}");
    let failed_at = info.failed_at.unwrap();
    assert!(
        humantime::parse_rfc3339(&failed_at).is_ok(),
        "failed-at is RFC 3339: {failed_at}"
    );
    assert_eq!(app.listener().requests().len(), 1, "no retry on 401");
    assert!(
        app.eventually(WAIT, || webhook_relay::worker::Stats::get(
            &app.stats().acked
        ) == 1)
            .await,
        "the input is acked once the dead letter is confirmed"
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    app.finish().await;
}
