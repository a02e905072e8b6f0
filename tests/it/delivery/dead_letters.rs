//! What is dead-lettered and how: permanent failures, invalid events, render failures,
//! unmatched events (acked, not dead-lettered), and a dead letter that could not be stored.

use super::{SIMPLE, WAIT, assert_all_acked, info};
use crate::harness::app;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use webhook_relay::broker::Inbound;
use webhook_relay::broker::dead_letter::{self, DeadLetterInfo};
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::outcome::Reason;

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
        app.eventually(WAIT, || app.metrics().acked() == 1).await,
        "the input is acked once the dead letter is confirmed"
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    app.finish().await;
}

/// Whether a dead letter carries the header `name` at all.
fn has_header(letter: &Inbound, name: &str) -> bool {
    letter
        .properties
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key(name))
}

/// Bytes that are not an access-request event are dead-lettered as `invalid_event`, with the
/// original bytes and no webhook; the worker keeps going and delivers the next valid event.
#[tokio::test]
async fn invalid_events_are_dead_lettered_and_the_worker_keeps_going() {
    let app = app("invalid").webhook(SIMPLE).start().await;
    let invalid: [(&[u8], &str, &str); 5] = [
        (b"this is {not JSON", "RequestApproved", "not JSON"),
        (b"\xff\xfe\x00 binary", "RequestApproved", "not JSON"),
        (
            br#"{"event_time": 1764064800.5, "data": {"id": "req-1"}}"#,
            "RequestApproved",
            "missing `event_type`",
        ),
        (
            br#"{"event_type": "RequestExploded", "data": {"id": "req-2"}}"#,
            "RequestExploded",
            "unknown event_type `RequestExploded`",
        ),
        (b"[1, 2, 3]", "RequestApproved", "not a JSON object"),
    ];
    for (body, key, _) in &invalid {
        app.publish_raw(body, key, None).await;
    }
    app.publish(&sample(Trigger::RequestApproved)).await;

    let letters = app.dead_letters(invalid.len(), WAIT).await;
    assert_eq!(
        letters.len(),
        invalid.len(),
        "one dead letter per invalid event"
    );
    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "req-5f2c9a", "type": "RequestApproved"})],
        "the valid event after them is delivered"
    );
    assert_all_acked(&app, invalid.len() as u64 + 1).await;

    let mut matched = BTreeSet::new();
    for letter in &letters {
        let n = invalid
            .iter()
            .position(|(body, _, _)| *body == letter.body.as_slice())
            .unwrap_or_else(|| panic!("unexpected dead letter body {:?}", letter.body));
        assert!(matched.insert(n), "invalid event {n} dead-lettered twice");
        let (_, key, error) = invalid[n];
        let info = info(letter);
        assert_eq!(info.reason, Some(Reason::InvalidEvent), "{n}");
        assert!(!has_header(letter, dead_letter::WEBHOOK), "{n}: {info:?}");
        assert_eq!(info.webhook, None);
        assert_eq!(info.event_id, None, "no identity for an invalid event");
        assert_eq!(info.attempts, Some(0));
        assert_eq!(info.last_status, None);
        assert_eq!(info.routing_key.as_deref(), Some(key));
        let last_error = info.last_error.unwrap_or_default();
        assert!(last_error.starts_with(error), "{n}: {last_error}");
    }
    assert_eq!(
        app.listener().requests().len(),
        1,
        "only the valid event was sent"
    );
    assert_eq!(app.count(Metrics::dead_lettered), invalid.len() as u64);
    assert_eq!(app.count(Metrics::delivered), 1);
    app.finish().await;
}

/// A strict template naming a missing field, and a JSON webhook whose body renders invalid
/// JSON: both `render_failed`, and nothing is ever sent.
#[tokio::test]
async fn render_failures_are_dead_lettered_and_never_sent() {
    let app = app("render")
        .listeners(2)
        .webhook(
            r#"
[[webhook]]
name = "strict-missing"
url = "@URL0@"
triggers = ["RequestApproved"]
strict = true
body_template = '{"id": "{{ data.id }}", "ticket": "{{ data.custom_fields.ticket }}"}'

[[webhook]]
name = "bad-json"
url = "@URL1@"
triggers = ["RequestApproved"]
body_template = '{"a": {{ data.justification }} }'
"#,
        )
        .start()
        .await;
    let original = sample(Trigger::RequestApproved).to_string();
    app.publish_raw(original.as_bytes(), "RequestApproved", None)
        .await;

    let letters = app.dead_letters(2, WAIT).await;
    assert_eq!(letters.len(), 2, "one dead letter per webhook");
    assert_all_acked(&app, 1).await;
    let by_webhook: BTreeMap<String, (DeadLetterInfo, &Inbound)> = letters
        .iter()
        .map(|l| (info(l).webhook.expect("names its webhook"), (info(l), l)))
        .collect();
    let names: Vec<&str> = by_webhook.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["bad-json", "strict-missing"]);
    for (name, (info, letter)) in &by_webhook {
        assert_eq!(info.reason, Some(Reason::RenderFailed), "{name}");
        assert_eq!(info.attempts, Some(0), "{name}");
        assert_eq!(info.last_status, None, "{name}");
        assert_eq!(letter.body, original.as_bytes(), "{name}: original bytes");
    }
    let strict_error = by_webhook["strict-missing"].0.last_error.clone().unwrap();
    assert!(
        strict_error.contains("data.custom_fields.ticket") && strict_error.contains("strict"),
        "{strict_error}"
    );
    let json_error = by_webhook["bad-json"].0.last_error.clone().unwrap();
    assert!(json_error.contains("not valid JSON"), "{json_error}");
    assert!(app.listeners[0].requests().is_empty(), "strict: never sent");
    assert!(
        app.listeners[1].requests().is_empty(),
        "bad JSON: never sent"
    );
    assert_eq!(app.count(Metrics::dead_lettered), 2);
    assert_eq!(app.count(Metrics::delivered), 0);
    app.finish().await;
}

/// Events that match no webhook (wrong trigger, or filtered out) are acked and counted as
/// unmatched, not dead-lettered and not sent.
#[tokio::test]
async fn unmatched_events_are_acked_not_dead_lettered() {
    let app = app("unmatched")
        .webhook(
            r#"
[[webhook]]
name = "grants-for-fox"
url = "@URL0@"
triggers = ["RequestGranted"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.filters]
requester_emails = ["fox@example.com"]
"#,
        )
        .start()
        .await;
    // Wrong trigger.
    app.publish(&sample(Trigger::RequestCreated)).await;
    // Right trigger, filtered out (the sample's requester is dana@example.com).
    app.publish(&sample(Trigger::RequestGranted)).await;

    assert_all_acked(&app, 2).await;
    assert_eq!(app.count(Metrics::unmatched), 2);
    assert_eq!(app.count(Metrics::delivered), 0);
    assert_eq!(app.count(Metrics::dead_lettered), 0);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    assert!(app.listener().requests().is_empty());
    app.finish().await;
}

/// With the dead-letter queue gone, a dead letter is unroutable and not stored: the event is
/// never acked without it, and it is not requeued either (that would deliver it again). The
/// worker keeps the outcome, declares the queue again (`amqp.declare = true`) and stores the
/// dead letter; then the input is acked. Nothing is lost and nothing is sent twice.
#[tokio::test]
async fn a_dead_letter_that_is_not_stored_is_stored_again_without_delivering_again() {
    let app = app("dlq-gone")
        .webhook(
            r#"
[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT0@/?token=${WRONG}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
"#,
        )
        .env("WRONG", "not-the-token")
        .start()
        .await;
    // The worker declares the topology when it connects: delete the queue only after that.
    assert!(
        app.wait_count(Metrics::connections, 1, WAIT).await,
        "worker connected"
    );
    app.delete_dead_letter_queue().await;
    let original = sample(Trigger::RequestApproved).to_string();
    app.publish_raw(original.as_bytes(), "RequestApproved", Some("msg-dlq-gone"))
        .await;

    // The worker declares the queue again and stores the dead letter; only then is the input
    // acked.
    assert!(
        app.wait_count(Metrics::dead_lettered, 1, WAIT).await,
        "the dead letter is stored once its queue is declared again"
    );
    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(
        letters.len(),
        1,
        "the dead letter lands once the queue is back"
    );
    assert_eq!(
        app.count(Metrics::acked),
        1,
        "the input is acked with its dead letter stored"
    );
    let letter = &letters[0];
    assert_eq!(letter.body, original.as_bytes());
    assert_eq!(letter.message_id(), Some("msg-dlq-gone"));
    let info = info(letter);
    assert_eq!(info.reason, Some(Reason::Rejected));
    assert_eq!(info.webhook.as_deref(), Some("wrong-token"));
    assert_eq!(info.last_status, Some(401));
    assert_eq!(info.event_id.as_deref(), Some("msg-dlq-gone"));
    assert_eq!(app.count(Metrics::acked), 1);
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    assert_eq!(app.count(Metrics::requeued), 0, "never requeued");
    assert_eq!(app.count(Metrics::consumed), 1, "taken from the queue once");
    assert_eq!(
        app.ready_count(&app.config.amqp.queue).await,
        0,
        "input empty"
    );
    assert_eq!(
        app.listener().requests().len(),
        1,
        "the endpoint was asked once: a failing store never re-sends"
    );
    app.finish().await;
}

/// One event, two webhooks: one accepts, the other rejects for good. One body delivered,
/// exactly one dead letter naming the failing webhook, the input acked.
#[tokio::test]
async fn one_webhook_succeeds_and_another_fails_on_the_same_event() {
    let app = app("split")
        .listeners(2)
        .webhook(
            r#"
[[webhook]]
name = "good"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "hook": "good"}'

[[webhook]]
name = "wrong-token"
url = "https://127.0.0.1:@PORT1@/?token=${WRONG}&type=apono"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "hook": "wrong-token"}'
"#,
        )
        .env("WRONG", "not-the-token")
        .start()
        .await;
    app.publish(&sample(Trigger::RequestApproved)).await;

    assert_all_acked(&app, 1).await;
    assert_eq!(
        app.listeners[0].accepted(),
        vec![json!({"id": "req-5f2c9a", "hook": "good"})]
    );
    assert_eq!(app.listeners[0].requests().len(), 1);
    let rejected = app.listeners[1].requests();
    assert_eq!(rejected.len(), 1, "no retry of a 401");
    assert_eq!(rejected[0].status, 401);
    // The ack comes after every dead letter is confirmed, so the queue is complete now.
    assert_eq!(
        app.ready_count(&app.config.amqp.dead_letter_queue).await,
        1,
        "exactly one dead letter"
    );
    let letters = app.dead_letters(1, WAIT).await;
    let info = info(&letters[0]);
    assert_eq!(info.webhook.as_deref(), Some("wrong-token"));
    assert_eq!(info.reason, Some(Reason::Rejected));
    assert_eq!(app.count(Metrics::delivered), 1);
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    app.finish().await;
}
