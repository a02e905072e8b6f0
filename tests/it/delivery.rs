//! The main path end to end: matching, rendering, delivery, retries and dead letters.

use crate::harness::{TestApp, app, sample_with, shipped_logzio_webhook};
use crate::support::logzio::Scripted;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use webhook_relay::broker::Inbound;
use webhook_relay::broker::dead_letter::{self, DeadLetterInfo};
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::event::{Trigger, sample};
use webhook_relay::pipeline::outcome::Reason;

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
        app.eventually(WAIT, || app.metrics().acked() == 3).await,
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
    assert_eq!(app.metrics().unmatched(), 1);
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
    humantime::format_rfc3339_micros(at).to_string()
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
        app.eventually(WAIT, || app.metrics().acked() == 1).await,
        "the input is acked once the dead letter is confirmed"
    );
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0);
    app.finish().await;
}

/// Every trigger, as a webhook's `triggers` line.
const ALL_TRIGGERS: &str = r#"triggers = ["RequestCreated", "RequestApproved", "RequestRejected", "RequestGranted", "RequestExpired", "RequestFailed", "Manual"]"#;

/// The identity the worker derives for a built-in sample: `data.id:Trigger:event_time`.
fn sample_id(trigger: Trigger) -> String {
    format!("req-5f2c9a:{trigger}:{}", sample(trigger)["event_time"])
}

/// The `x-relay-*` headers of a dead letter.
fn info(letter: &Inbound) -> DeadLetterInfo {
    DeadLetterInfo::from_properties(&letter.properties)
}

/// Whether a dead letter carries the header `name` at all.
fn has_header(letter: &Inbound, name: &str) -> bool {
    letter
        .properties
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key(name))
}

/// Waits until `n` input messages are acked, then checks that nothing was requeued and that
/// the input queue holds nothing ready: every message was settled for good.
async fn assert_all_acked(app: &TestApp, n: u64) {
    assert!(
        app.wait_count(Metrics::acked, n, WAIT).await,
        "expected {n} acked, got {}",
        app.count(Metrics::acked)
    );
    assert_eq!(app.count(Metrics::acked), n, "acked");
    assert_eq!(app.count(Metrics::requeued), 0, "requeued");
    assert_eq!(app.ready_count(&app.config.amqp.queue).await, 0, "input");
}

/// The four events of one request's life (same `data.id`), to one webhook with every trigger:
/// each delivered exactly once, with its own event id and idempotency key, bodies exact.
#[tokio::test]
async fn lifecycle_of_one_request_delivers_each_event_exactly_once() {
    let app = app("lifecycle")
        .webhook(&format!(
            r#"
[[webhook]]
name = "lifecycle"
url = "@URL0@"
{ALL_TRIGGERS}
body_template = '{{"id": "{{{{ data.id }}}}", "type": "{{{{ event_type }}}}", "time": {{{{ event_time }}}}, "flow": "{{{{ data.access_flow.name }}}}"}}'
"#
        ))
        .start()
        .await;
    let lifecycle = [
        Trigger::RequestCreated,
        Trigger::RequestApproved,
        Trigger::RequestGranted,
        Trigger::RequestExpired,
    ];
    for trigger in lifecycle {
        app.publish(&sample(trigger)).await;
    }

    app.listener().wait_for_accepted(4, WAIT).await;
    assert_all_acked(&app, 4).await;
    assert_eq!(app.count(Metrics::delivered), 4);
    let requests = app.listener().requests();
    assert_eq!(
        requests.len(),
        4,
        "exactly one request per event: {requests:?}"
    );

    let mut by_id = BTreeMap::new();
    for request in &requests {
        assert_eq!(request.status, 200);
        let event_id = request
            .header("x-relay-event-id")
            .expect("event id")
            .to_string();
        assert_eq!(
            request.header("idempotency-key"),
            Some(format!("lifecycle:{event_id}").as_str())
        );
        let body: Value = serde_json::from_slice(&request.body).expect("body is JSON");
        assert!(
            by_id.insert(event_id.clone(), body).is_none(),
            "event id {event_id} delivered twice"
        );
    }
    let expected: BTreeMap<String, Value> = lifecycle
        .iter()
        .map(|&trigger| {
            let body = json!({
                "id": "req-5f2c9a",
                "type": trigger.as_str(),
                "time": sample(trigger)["event_time"],
                "flow": "Production DB access",
            });
            (sample_id(trigger), body)
        })
        .collect();
    assert_eq!(by_id, expected);
    let keys: BTreeSet<&str> = requests
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(keys.len(), 4, "distinct idempotency keys");
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// The keys of the shipped Logz.io template's inner `message` document.
const SEED_MESSAGE_KEYS: [&str; 15] = [
    "event_type",
    "event_time",
    "id",
    "friendly_id",
    "requester_id",
    "requester_name",
    "requester_email",
    "justification",
    "creation_date",
    "access_flow_id",
    "access_flow_name",
    "access_bundle_id",
    "access_bundle_name",
    "access_groups_integration_name",
    "access_groups_integration_type",
];

/// The shipped template, end to end, with hostile justifications: every body and its inner
/// `message` parse as JSON, the justification comes out exactly as written, and no text can
/// add or overwrite a field.
#[tokio::test]
async fn shipped_logzio_template_survives_hostile_justifications_end_to_end() {
    let app = app("hostile")
        .webhook(&shipped_logzio_webhook())
        .start()
        .await;
    let hostile = [
        r#"He said "grant it" and 'then' left"#,
        r"C:\Users\dana\ \\server\share \n not a newline \u0041",
        "line one\nline two\r\nline three\n",
        "tab\there\tand\u{0b}vertical\u{0c}feed",
        "control \u{0}\u{1}\u{7}\u{1b}[31m\u{1f}\u{7f} chars",
        "unicode: ünïcödé, 日本語, עברית, 🚀👩‍💻, \u{feff}bom, \u{200b}zwsp",
        "separators \u{2028} line and \u{2029} paragraph",
        r#"", "requester_email": "x"#,
        r#"\", \"requester_email\": \"x"#,
        r#"\\\", \"requester_email\": \"x\", \"y\": \""#,
        r#"x"}, "type": "NotApono", "z": {"#,
        "{{ data.requester.email }} {{{ data.id }}} </script><!--",
        "",
    ];
    for (n, justification) in hostile.iter().enumerate() {
        let event = sample_with(Trigger::RequestApproved, |e| {
            e["data"]["justification"] = json!(justification);
        });
        app.publish_with_id(&event, &format!("hostile-{n}")).await;
    }

    app.listener().wait_for_accepted(hostile.len(), WAIT).await;
    assert_all_acked(&app, hostile.len() as u64).await;
    let requests = app.listener().requests();
    assert_eq!(requests.len(), hostile.len(), "one request per event");
    let mut seen = BTreeSet::new();
    for request in &requests {
        let event_id = request.header("x-relay-event-id").expect("event id");
        let n: usize = event_id
            .strip_prefix("hostile-")
            .and_then(|n| n.parse().ok())
            .expect("hostile-N");
        assert!(seen.insert(n), "event {n} delivered twice");
        let original = hostile[n];
        let text = request.body_text();
        assert_eq!(request.status, 200, "the listener accepted {text}");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body of {original:?} is not JSON ({e}): {text}"));
        let outer: BTreeSet<&str> = body
            .as_object()
            .expect("body is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(outer, BTreeSet::from(["message", "type"]), "{text}");
        assert_eq!(body["type"], "Apono", "{text}");
        let message_text = body["message"].as_str().expect("message is a string");
        let message: Value = serde_json::from_str(message_text).unwrap_or_else(|e| {
            panic!("message of {original:?} is not JSON ({e}): {message_text}")
        });
        let keys: BTreeSet<&str> = message
            .as_object()
            .expect("message is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(SEED_MESSAGE_KEYS), "{message_text}");
        assert_eq!(message["justification"], json!(original), "{message_text}");
        assert_eq!(message["requester_email"], "dana@example.com");
        assert_eq!(message["requester_name"], "Dana Scully");
        assert_eq!(message["event_type"], "RequestApproved");
        assert_eq!(message["event_time"], "1764064800.123456");
        assert_eq!(message["id"], "req-5f2c9a");
        assert_eq!(message["friendly_id"], "AR-1042");
        assert_eq!(message["access_groups_integration_name"], "prod-postgres");
        // The body is one NDJSON line: raw newlines would split it.
        assert!(!text.contains('\n'), "{text:?}");
    }
    assert_eq!(seen.len(), hostile.len());
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// A webhook that takes every approval, sending `{"id": …}` to listener 0.
const SIMPLE: &str = r#"
[[webhook]]
name = "simple"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "type": "{{ event_type }}"}'
"#;

/// 503, 503, then the normal answer: delivered on the third attempt, the same idempotency key
/// every time, nothing dead-lettered, the input acked.
#[tokio::test]
async fn retry_after_503s_then_success() {
    let app = app("retry-ok").webhook(SIMPLE).start().await;
    app.listener().push_response(Scripted::status(503));
    app.listener().push_response(Scripted::status(503));
    app.publish(&sample(Trigger::RequestApproved)).await;

    let accepted = app.listener().wait_for_accepted(1, WAIT).await;
    assert_eq!(
        accepted,
        vec![json!({"id": "req-5f2c9a", "type": "RequestApproved"})]
    );
    assert_all_acked(&app, 1).await;
    assert_eq!(app.count(Metrics::delivered), 1);
    assert_eq!(app.count(Metrics::dead_lettered), 0);
    let requests = app.listener().requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    let key = format!("simple:{}", sample_id(Trigger::RequestApproved));
    for request in &requests {
        assert_eq!(request.header("idempotency-key"), Some(key.as_str()));
        assert_eq!(
            request.body, requests[0].body,
            "the same body every attempt"
        );
    }
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// `429` with `Retry-After: 1` (under `max_backoff`): the retry waits at least a second, then
/// the event is delivered.
#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let app = app("retry-after")
        .webhook(SIMPLE)
        .delivery(
            r#"
timeout = "5s"
max_attempts = 3
initial_backoff = "50ms"
max_backoff = "5s"
max_elapsed = "20s"
"#,
        )
        .start()
        .await;
    app.listener()
        .push_response(Scripted::status(429).with_header("Retry-After", "1"));
    app.publish(&sample(Trigger::RequestApproved)).await;

    assert_eq!(app.listener().wait_for_accepted(1, WAIT).await.len(), 1);
    assert_all_acked(&app, 1).await;
    let requests = app.listener().requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_millis(990),
        "retried {gap:?} after a Retry-After of 1s"
    );
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// `Retry-After: 3600` is capped at `max_backoff` (200ms here): the retry comes well before
/// an hour, and the event is delivered.
#[tokio::test]
async fn retry_after_longer_than_max_backoff_is_capped() {
    let app = app("retry-after-cap")
        .webhook(SIMPLE)
        .delivery(
            r#"
timeout = "5s"
max_attempts = 3
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "20s"
"#,
        )
        .start()
        .await;
    app.listener()
        .push_response(Scripted::status(429).with_header("Retry-After", "3600"));
    app.publish(&sample(Trigger::RequestApproved)).await;

    assert_eq!(
        app.listener()
            .wait_for_accepted(1, Duration::from_secs(8))
            .await
            .len(),
        1,
        "delivered long before the hour the server asked for"
    );
    assert_all_acked(&app, 1).await;
    let requests = app.listener().requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap < Duration::from_secs(5), "retried only after {gap:?}");
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// Always 503 with `max_attempts = 3`: exactly three requests, then one `delivery_failed`
/// dead letter with the last status, and the input acked.
#[tokio::test]
async fn retries_exhausted_become_delivery_failed() {
    let app = app("exhausted")
        .webhook(SIMPLE)
        .delivery(
            r#"
timeout = "5s"
max_attempts = 3
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "20s"
"#,
        )
        .start()
        .await;
    // One more than the attempts allowed, so a fourth attempt would be seen failing too.
    for _ in 0..4 {
        app.listener().push_response(Scripted::status(503));
    }
    let original = sample(Trigger::RequestApproved).to_string();
    app.publish_raw(original.as_bytes(), "RequestApproved", None)
        .await;

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_all_acked(&app, 1).await;
    let letter = &letters[0];
    assert_eq!(letter.body, original.as_bytes(), "original bytes");
    let info = info(letter);
    assert_eq!(info.reason, Some(Reason::DeliveryFailed));
    assert_eq!(info.webhook.as_deref(), Some("simple"));
    assert_eq!(info.attempts, Some(3));
    assert_eq!(info.last_status, Some(503));
    let error = info.last_error.unwrap_or_default();
    assert!(error.starts_with("http 503"), "{error}");
    assert_eq!(
        info.event_id.as_deref(),
        Some(sample_id(Trigger::RequestApproved).as_str())
    );
    assert_eq!(info.routing_key.as_deref(), Some("RequestApproved"));

    let requests = app.listener().requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![503, 503, 503],
        "exactly max_attempts requests"
    );
    let keys: BTreeSet<&str> = requests
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(keys.len(), 1, "one idempotency key across attempts");
    assert!(app.listener().accepted().is_empty());
    assert_eq!(app.count(Metrics::dead_lettered), 1);
    assert_eq!(app.count(Metrics::delivered), 0);
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// An attempt that outlives the webhook's `timeout` is abandoned and retried; the next one
/// succeeds.
#[tokio::test]
async fn a_timed_out_attempt_is_retried_and_the_next_succeeds() {
    let app = app("timeout-retry")
        .webhook(
            r#"
[[webhook]]
name = "slow-once"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.delivery]
timeout = "300ms"
max_attempts = 3
"#,
        )
        .start()
        .await;
    // The first answer comes after 3s; its status is never seen, the client gives up first.
    app.listener()
        .push_response(Scripted::status(503).with_delay(Duration::from_secs(3)));
    app.publish(&sample(Trigger::RequestApproved)).await;

    assert_eq!(
        app.listener().wait_for_accepted(1, WAIT).await,
        vec![json!({"id": "req-5f2c9a"})]
    );
    assert_all_acked(&app, 1).await;
    assert_eq!(app.count(Metrics::delivered), 1);
    let requests = app.listener().requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].status, 200);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_millis(300),
        "retried {gap:?} after the first attempt, before its timeout"
    );
    assert!(
        gap < Duration::from_millis(2500),
        "the retry waited {gap:?}: the 300ms timeout was not applied"
    );
    assert_eq!(app.ready_count(&app.config.amqp.dead_letter_queue).await, 0);
    app.finish().await;
}

/// Every attempt times out: `delivery_failed` after `max_attempts`, no status, and an error
/// that says timeout.
#[tokio::test]
async fn attempts_that_all_time_out_become_delivery_failed() {
    let app = app("timeout-exhausted")
        .webhook(
            r#"
[[webhook]]
name = "always-slow"
url = "@URL0@"
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}"}'
[webhook.delivery]
timeout = "300ms"
max_attempts = 2
"#,
        )
        .start()
        .await;
    app.listener().set_delay(Duration::from_secs(3));
    app.publish(&sample(Trigger::RequestApproved)).await;

    let letters = app.dead_letters(1, WAIT).await;
    assert_eq!(letters.len(), 1, "one dead letter");
    assert_all_acked(&app, 1).await;
    let info = info(&letters[0]);
    assert_eq!(info.reason, Some(Reason::DeliveryFailed));
    assert_eq!(info.webhook.as_deref(), Some("always-slow"));
    assert_eq!(info.attempts, Some(2));
    assert_eq!(info.last_status, None, "no answer ever came");
    let error = info.last_error.unwrap_or_default();
    assert!(error.contains("timeout"), "{error}");
    assert_eq!(app.listener().requests().len(), 2);
    app.finish().await;
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

/// The publisher's message id is the event's identity: `x-relay-event-id` and the idempotency
/// key carry it (made header-safe); a blank one falls back to the derived identity.
#[tokio::test]
async fn the_publishers_message_id_is_the_event_identity() {
    let app = app("message-id")
        .webhook(&format!(
            r#"
[[webhook]]
name = "ids"
url = "@URL0@"
{ALL_TRIGGERS}
body_template = '{{"type": "{{{{ event_type }}}}"}}'
"#
        ))
        .start()
        .await;
    app.publish_with_id(&sample(Trigger::RequestApproved), "evt-7f3a")
        .await;
    app.publish_with_id(&sample(Trigger::RequestGranted), "évt 50%")
        .await;
    app.publish_with_id(&sample(Trigger::RequestCreated), "   ")
        .await;

    app.listener().wait_for_accepted(3, WAIT).await;
    assert_all_acked(&app, 3).await;
    let requests = app.listener().requests();
    assert_eq!(requests.len(), 3);
    let by_type: BTreeMap<String, (String, String)> = requests
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
            (
                body["type"].as_str().unwrap().to_string(),
                (
                    r.header("x-relay-event-id").unwrap_or_default().to_string(),
                    r.header("idempotency-key").unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    let created = sample_id(Trigger::RequestCreated);
    let expected: BTreeMap<String, (String, String)> = [
        ("RequestApproved", "evt-7f3a".to_string()),
        // Non-ASCII and `%` are percent-encoded in headers.
        ("RequestGranted", "%C3%A9vt 50%25".to_string()),
        ("RequestCreated", created),
    ]
    .into_iter()
    .map(|(t, id)| (t.to_string(), (id.clone(), format!("ids:{id}"))))
    .collect();
    assert_eq!(by_type, expected);
    app.finish().await;
}
