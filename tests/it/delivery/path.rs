//! Events matched, rendered and delivered: several webhooks, filters and an inactive one, one
//! request's life, the shipped template with hostile text, the event identity.

use super::{WAIT, assert_all_acked, sample_id};
use crate::harness::{app, sample_with, shipped_logzio_webhook};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::ops::metrics::Metrics;

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

/// Every trigger, as a webhook's `triggers` line.
const ALL_TRIGGERS: &str = r#"triggers = ["RequestCreated", "RequestApproved", "RequestRejected", "RequestGranted", "RequestExpired", "RequestFailed", "Manual"]"#;

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
