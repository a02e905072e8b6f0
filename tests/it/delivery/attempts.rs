//! Attempts within the in-process window: retries after 503s and 429s (`Retry-After`,
//! capped), timeouts, and the budget running out.

use super::{SIMPLE, WAIT, assert_all_acked, info, sample_id};
use crate::harness::app;
use crate::support::logzio::Scripted;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use webhook_relay::model::event::{Trigger, sample};
use webhook_relay::ops::metrics::Metrics;
use webhook_relay::pipeline::outcome::Reason;

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
