//! Hostile input: random bytes, JSON nested far too deep, a 50 MB message, wrong types in
//! every field, unknown event types, mixed with good events.

use crate::common::{
    Outgoing, approval, assert_all_and_report, assert_settled, publish_bulk, scenario,
    wait_delivered,
};
use crate::relay::Relay;
use crate::support::harness::app;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use webhook_relay::broker::dead_letter::DeadLetterInfo;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::pipeline::outcome::Reason;

/// Matches approvals on `prod-postgres` (the sample's integration) only, so that a document
/// whose fields have the wrong types matches nothing.
const FILTERED_HOOK: &str = r#"
[[webhook]]
name = "filtered"
url = "@URL0@"
headers = { X-Chaos-Worker = "${CHAOS_WORKER}" }
triggers = ["RequestApproved"]
body_template = '{"id": "{{ data.id }}", "who": "{{ data.requester.email }}"}'
[webhook.filters]
integration_names = ["prod-postgres"]
"#;

const FAST_DELIVERY: &str = r#"
timeout = "5s"
max_attempts = 3
initial_backoff = "50ms"
max_backoff = "200ms"
max_elapsed = "20s"
retry_window = "1s"
"#;

/// A small deterministic generator (xorshift64*), so a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = 1 + (self.next() as usize) % max_len;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Every leaf replaced by a value of another type, containers kept (objects stay objects,
/// arrays stay arrays), so every typed field the worker reads is of the wrong type.
fn wrong_leaves(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), wrong_leaves(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(wrong_leaves).collect()),
        Value::String(_) => json!(12345),
        Value::Number(_) => json!("not a number"),
        Value::Bool(_) => json!("yes"),
        Value::Null => json!({"unexpected": true}),
    }
}

/// Every container swapped for the other kind and every leaf for another type.
fn wrong_shapes(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Array(map.values().map(wrong_shapes).collect()),
        Value::Array(items) => Value::Object(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), wrong_shapes(v)))
                .collect(),
        ),
        other => wrong_leaves(other),
    }
}

/// What the worker must do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Delivered,
    InvalidEvent,
    /// Over `amqp.max_message_bytes` (1 MiB by default): dead-lettered unparsed.
    TooLarge,
    Unmatched,
}

struct Case {
    message: Outgoing,
    expect: Expect,
}

fn raw(id: String, body: Vec<u8>, routing_key: &str, expect: Expect) -> Case {
    Case {
        message: Outgoing {
            body,
            routing_key: routing_key.to_string(),
            message_id: id,
        },
        expect,
    }
}

fn good(id: String) -> Case {
    Case {
        message: approval(&id),
        expect: Expect::Delivered,
    }
}

/// The bad messages, each with what must happen to it.
fn bad_cases() -> Vec<Case> {
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let mut cases = Vec::new();
    for i in 0..200 {
        let body = rng.bytes(2048);
        cases.push(raw(
            format!("bad-random-{i}"),
            body,
            "garbage",
            Expect::InvalidEvent,
        ));
    }

    let depth = 10_000;
    cases.push(raw(
        "bad-deep-open-arrays".into(),
        "[".repeat(depth).into_bytes(),
        "RequestApproved",
        Expect::InvalidEvent,
    ));
    cases.push(raw(
        "bad-deep-closed-objects".into(),
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).into_bytes(),
        "RequestApproved",
        Expect::InvalidEvent,
    ));
    let mut deep_event = sample(Trigger::RequestApproved).to_string();
    deep_event.pop(); // the closing brace
    deep_event.push_str(&format!(
        ",\"extra\":{}{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    cases.push(raw(
        "bad-deep-inside-an-event".into(),
        deep_event.into_bytes(),
        "RequestApproved",
        Expect::InvalidEvent,
    ));

    // 50 MB: a JSON object that parses, with an unknown event type. RabbitMQ's default
    // max_message_size is 128 MB (3.10 and later), so the broker takes it; it is over
    // amqp.max_message_bytes, so it is dead-lettered unparsed, and the dead letter carries
    // the same 50 MB.
    let padding = "x".repeat(50 * 1024 * 1024);
    cases.push(raw(
        "bad-50mb".into(),
        format!("{{\"event_type\":\"NotAnEvent\",\"padding\":\"{padding}\"}}").into_bytes(),
        "NotAnEvent",
        Expect::TooLarge,
    ));

    let approved = sample(Trigger::RequestApproved);
    cases.push(raw(
        "bad-wrong-types-everywhere".into(),
        wrong_leaves(&approved).to_string().into_bytes(),
        "RequestApproved",
        Expect::InvalidEvent,
    ));
    for (name, value) in [
        ("number", json!(7)),
        ("bool", json!(true)),
        ("null", Value::Null),
        ("array", json!(["RequestApproved"])),
        ("object", json!({"name": "RequestApproved"})),
    ] {
        let mut event = approved.clone();
        event["event_type"] = value;
        cases.push(raw(
            format!("bad-event-type-{name}"),
            event.to_string().into_bytes(),
            "RequestApproved",
            Expect::InvalidEvent,
        ));
    }
    let mut kept_type = wrong_leaves(&approved);
    kept_type["event_type"] = json!("RequestApproved");
    cases.push(raw(
        "bad-wrong-types-but-the-event-type".into(),
        kept_type.to_string().into_bytes(),
        "RequestApproved",
        Expect::Unmatched,
    ));
    let mut shapes = json!({ "event_type": "RequestApproved" });
    shapes["data"] = wrong_shapes(&approved["data"]);
    shapes["event_time"] = json!({"not": "a time"});
    cases.push(raw(
        "bad-wrong-shapes".into(),
        shapes.to_string().into_bytes(),
        "RequestApproved",
        Expect::Unmatched,
    ));
    for (i, name) in [
        "requestapproved",
        " RequestApproved",
        "RequestApproved ",
        "",
        "AccessRequestUnknown",
        "Request\nApproved\u{0}",
        "💥",
        &"A".repeat(10_000),
    ]
    .into_iter()
    .enumerate()
    {
        let mut event = approved.clone();
        event["event_type"] = json!(name);
        cases.push(raw(
            format!("bad-unknown-type-{i}"),
            event.to_string().into_bytes(),
            "RequestApproved",
            Expect::InvalidEvent,
        ));
    }
    cases
}

/// Scenario 7: bad input between good events. The worker (the real binary) stays up; each bad
/// message is dead-lettered as `invalid_event` or acked as unmatched; every good event is
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_or_unmatched_and_good_events_around_it_get_through() {
    scenario("7 bad input", async {
        let app = app("chaos-input")
            .webhook(FILTERED_HOOK)
            .delivery(FAST_DELIVERY)
            .env("CHAOS_WORKER", "harness")
            .build()
            .await;

        // Good events before, between and after the bad ones, plus one nested deeply but
        // within serde_json's limit.
        let bad = bad_cases();
        let mut cases = Vec::new();
        let mut n_good = 0;
        for (i, case) in bad.into_iter().enumerate() {
            if i % 4 == 0 {
                cases.push(good(format!("good-{n_good}")));
                n_good += 1;
            }
            cases.push(case);
        }
        let mut nested = sample(Trigger::RequestApproved);
        nested["data"]["id"] = json!("good-nested");
        let mut deep = json!("bottom");
        for _ in 0..100 {
            deep = json!([deep]);
        }
        nested["data"]["custom_fields"] = json!({ "deep": deep });
        cases.push(Case {
            message: Outgoing {
                body: nested.to_string().into_bytes(),
                routing_key: "RequestApproved".into(),
                message_id: "good-nested".into(),
            },
            expect: Expect::Delivered,
        });
        for _ in 0..10 {
            cases.push(good(format!("good-{n_good}")));
            n_good += 1;
        }

        let expect: BTreeMap<String, Expect> = cases
            .iter()
            .map(|c| (c.message.message_id.clone(), c.expect))
            .collect();
        assert_eq!(expect.len(), cases.len(), "message ids are unique");
        let of = |e: Expect| -> Vec<String> {
            expect
                .iter()
                .filter(|(_, x)| **x == e)
                .map(|(id, _)| id.clone())
                .collect()
        };
        let (good_ids, mut invalid_ids, unmatched_ids) = (
            of(Expect::Delivered),
            of(Expect::InvalidEvent),
            of(Expect::Unmatched),
        );
        let too_large_ids = of(Expect::TooLarge);
        invalid_ids.extend(too_large_ids.iter().cloned());
        let messages: Vec<Outgoing> = cases.into_iter().map(|c| c.message).collect();
        publish_bulk(&app, &messages).await;
        drop(messages);

        let mut relay = Relay::start(&app, "w1", &[]);
        let listener = app.listener();
        let got = wait_delivered(listener, &good_ids, |_| true, Duration::from_secs(40)).await;
        let lost = crate::common::missing(&good_ids, &got);
        assert!(
            lost.is_empty(),
            "good events not delivered: {lost:?}; stderr:\n{}",
            relay.tail(40)
        );
        let dups = assert_all_and_report("7 bad input", "filtered", &good_ids, &got, &got);
        let unexpected: Vec<String> = listener
            .requests()
            .iter()
            .filter_map(|r| crate::common::event_id(r).map(str::to_string))
            .filter(|id| !good_ids.contains(id))
            .collect();
        assert!(unexpected.is_empty(), "bad messages delivered: {unexpected:?}");

        let letters = app
            .dead_letters(invalid_ids.len(), Duration::from_secs(30))
            .await;
        let mut lettered = BTreeSet::new();
        let mut biggest = 0;
        for letter in &letters {
            let id = letter
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.as_str().to_string())
                .expect("the message id is kept");
            let info = DeadLetterInfo::from_properties(&letter.properties);
            let reason = if too_large_ids.contains(&id) {
                Reason::TooLarge
            } else {
                Reason::InvalidEvent
            };
            assert_eq!(info.reason, Some(reason), "{id}: {info:?}");
            assert_eq!(info.webhook, None, "{id}: for no webhook");
            biggest = biggest.max(letter.body.len());
            assert!(lettered.insert(id.clone()), "{id} dead-lettered twice");
        }
        let expected: BTreeSet<String> = invalid_ids.iter().cloned().collect();
        assert_eq!(
            lettered, expected,
            "exactly the invalid messages are dead-lettered"
        );
        assert!(biggest > 50 * 1024 * 1024, "the 50 MB message kept whole");

        assert!(relay.is_running(), "the worker is still up");
        let log = relay.stderr();
        for id in &unmatched_ids {
            assert!(
                log.lines()
                    .any(|l| l.contains("matched no webhook") && l.contains(&format!("event_id={id} "))),
                "{id} acked as unmatched; stderr:\n{}",
                relay.tail(40)
            );
        }
        for word in ["panicked", "reconnecting", "redelivered too often"] {
            assert!(!log.contains(word), "`{word}` in the worker's log:\n{}", relay.tail(40));
        }
        for letter in letters {
            webhook_relay::broker::settle::release(&letter).await.expect("requeue a dead letter");
        }
        assert_eq!(relay.terminate(Duration::from_secs(15)).await, Some(0));
        relay.print_problems();
        println!(
            "[chaos]   7 bad input: {} good delivered ({dups} duplicates), {} invalid dead-lettered, {} unmatched acked; worker stayed up",
            good_ids.len(),
            invalid_ids.len(),
            unmatched_ids.len()
        );
        assert_settled(&app, invalid_ids.len() as u32).await;
        app.finish().await;
    })
    .await;
}
